//! The task API mounted under `/api` in an axum program of one's own, on
//! plain HTTP at 127.0.0.1:3000 (put TLS in front in earnest):
//!
//! ```text
//! cargo run -p todo-examples --example mounted
//! curl http://127.0.0.1:3000/hello
//! ```

use std::error::Error;

use todo_auth::Argon2Config;
use todo_core::{Credentials, Registration};
use todo_examples::{embedded, mounted};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let parts = mounted::parts(embedded::memory_store(), Argon2Config::default())?;
    let registration = Registration::parse("demo", "correct horse battery", None)
        .map_err(|errors| format!("{errors:?}"))?;
    parts.sessions.register(None, registration)?;
    let pair = parts
        .sessions
        .login(None, &Credentials::offered("demo", "correct horse battery"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!(
        "listening on http://127.0.0.1:3000; try:\n  curl -H 'Authorization: Bearer {}' http://127.0.0.1:3000/api/v1/tasks",
        pair.access_token
    );
    mounted::serve(listener, parts.tasks).await?;
    Ok(())
}
