//! todo-server's integration tests, one binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broker;
mod dependencies;
mod metrics;
mod relay;
