//! The library embedded in-process, without HTTP (see `src/embedded.rs`).
//!
//! ```text
//! cargo run -p todo-examples --example embedded              # SQLite in ./data
//! cargo run -p todo-examples --example embedded -- memory    # no database
//! cargo run -p todo-examples --example embedded -- postgres://…
//! ```

use todo_auth::Argon2Config;
use todo_examples::embedded;

#[allow(clippy::print_stdout)] // an example talks to its reader
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://data/embedded.db".to_owned());
    let store = if url == "memory" {
        embedded::memory_store()
    } else {
        embedded::sql_store(&url)?
    };
    for line in embedded::run(store, Argon2Config::default())? {
        println!("{line}");
    }
    Ok(())
}
