//! The servers' wiring around todo-http: configuration (clap flags, each
//! also an environment variable), logging, TLS files and the self-signed
//! certificate, key files and rotation, JWKS fetching, store opening
//! (open, then migrate, once), `user create` and the periodic jobs. The
//! three binaries (`auth-server`, `task-server`, `todo`) parse their
//! command line and call [`auth_server::main`], [`task_server::main`] or
//! [`all_in_one::main`].
//!
//! An embedder who wants the HTTP APIs without this wiring depends on
//! todo-http alone; this crate is what pulls in clap, tracing-subscriber,
//! rcgen and the database.
//!
//! ```no_run
//! // What the `auth-server` binary does:
//! let cli = todo_server::auth_server::parse();
//! std::process::exit(if todo_server::auth_server::main(cli) == std::process::ExitCode::SUCCESS { 0 } else { 1 });
//! ```

#![deny(missing_docs)]

pub mod all_in_one;
pub mod auth_server;
pub mod config;
mod error;
pub mod jwks;
pub mod keys;
pub mod mail;
pub mod memory;
pub mod relay;
pub mod setup;
pub mod task_server;
pub mod tls;
pub mod webhooks;

pub use error::{Cause, Error};
pub use setup::StoreProbe;
pub use tls::{TlsError, TlsIdentity};
