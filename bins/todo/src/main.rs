//! `todo`: see [`todo_server::all_in_one`].

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    todo_server::all_in_one::main(todo_server::all_in_one::Cli::parse())
}
