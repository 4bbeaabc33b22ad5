//! `auth-server`: see [`todo_server::auth_server`].

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    todo_server::auth_server::main(todo_server::auth_server::Cli::parse())
}
