//! todo-store's tests, in one binary to save link time.

mod backends;
mod conformance;
mod sql;
