//! `task-server`: see [`todo_server::task_server`].

fn main() -> std::process::ExitCode {
    todo_server::task_server::main(todo_server::task_server::parse())
}

/// mimalloc for Rust and, through `override`, for SQLite and aws-lc (see
/// the workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
