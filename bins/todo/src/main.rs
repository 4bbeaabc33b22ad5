//! `todo`: see [`todo_server::all_in_one`].

fn main() -> std::process::ExitCode {
    todo_server::all_in_one::main(todo_server::all_in_one::parse())
}

/// mimalloc for Rust and, through `override`, for SQLite and aws-lc (see
/// the workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
