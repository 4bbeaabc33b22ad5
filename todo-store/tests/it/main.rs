//! todo-store's tests, in one binary to save link time.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backends;
mod caps;
mod conformance;
mod locks;
mod properties;
mod sql;
