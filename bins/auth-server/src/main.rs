//! `auth-server`: see [`todo_server::auth_server`].

fn main() -> std::process::ExitCode {
    todo_server::auth_server::main(todo_server::auth_server::parse())
}

/// mimalloc for Rust and, through `override`, for SQLite and aws-lc (see
/// the workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
