//! `todo`: see [`todo_server::all_in_one`].

fn main() -> std::process::ExitCode {
    todo_server::all_in_one::main(todo_server::all_in_one::parse())
}
