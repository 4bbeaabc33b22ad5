//! Examples of using todo from Rust, as library code so that tests run
//! exactly what the example programs run:
//!
//! - [`embedded`]: the library in-process, without HTTP;
//! - [`client`]: a small typed client for the running servers, over TLS.

pub mod client;
pub mod embedded;
