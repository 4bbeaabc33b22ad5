//! `task-server`: see [`todo_server::task_server`].

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    todo_server::task_server::main(todo_server::task_server::Cli::parse())
}
