//! `task-server`: see [`todo_server::task_server`].

fn main() -> std::process::ExitCode {
    todo_server::task_server::main(todo_server::task_server::parse())
}
