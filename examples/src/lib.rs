//! Examples of using todo from Rust, as library code so that tests run
//! exactly what the example programs run:
//!
//! - [`embedded`]: the library in-process, without HTTP;
//! - [`client`]: a small typed client for the running servers, over TLS;
//! - [`mounted`]: the task API mounted in an axum program of one's own.

pub mod client;
pub mod embedded;
pub mod mounted;
