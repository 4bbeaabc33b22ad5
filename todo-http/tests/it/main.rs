//! todo-http's tests: both APIs on real TLS sockets (port 0), on SQLite and
//! on PostgreSQL, and the contract again behind nginx; in one binary to save
//! link time.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_auth;
mod api_tasks;
mod api_tokens;
mod attacks;
mod changes;
mod events;
mod gateway;
mod hardening;
mod harness;
mod one_origin;
mod openapi;
mod password_reset;
mod projects;
mod route_names;
mod scans;
mod second_factors;
