//! `auth-server`: see [`todo_server::auth_server`].

fn main() -> std::process::ExitCode {
    todo_server::auth_server::main(todo_server::auth_server::parse())
}
