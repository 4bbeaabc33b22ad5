//! todo-core's tests, in one binary to save link time.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod api_tokens;
mod auth;
mod dependencies;
mod domain;
mod errors;
mod live;
mod mail;
mod passkeys;
mod password_reset;
mod properties;
mod registration;
mod second_factors;
mod sessions;
mod tasks;
