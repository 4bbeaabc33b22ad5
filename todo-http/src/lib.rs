//! The HTTP layer of todo, shared by both servers: the auth and task
//! routers ([`AuthApi`], [`TaskApi`]), what every request goes through
//! ([`Frontend`]: request ids, routing, limits, security headers, logs,
//! metrics), the one map from errors to statuses ([`ApiError`]), the TLS
//! configuration ([`tls_server_config`]) and the accept loop with graceful
//! shutdown ([`serve`]). Configuration, key files, certificates and the
//! JWKS fetch live in `todo-server`, the servers' wiring.
//!
//! Handlers decode wire DTOs into domain types, call one core service method
//! on the blocking pool, and render the result; no business rule lives here.
//! Another program mounts either API as an axum `Router` ([`Api::routes`];
//! `examples/src/mounted.rs`), or serves it as our servers do, behind a
//! [`Frontend`] with [`serve`].

#![deny(missing_docs)]

mod admission;
pub mod audit;
mod auth_api;
mod blocking;
mod dto;
pub mod extract;
mod front;
mod gate;
mod keys;
mod metrics;
mod one_origin;
pub mod openapi;
mod probe;
mod problem;
mod request;
mod server;
mod task_api;
mod tls;
pub mod web;

pub use auth_api::AuthApi;
pub use front::{Api, ApiResponse, Frontend, MetricsExposure};
pub use keys::{KeyRefresh, RefreshError};
pub use metrics::{Metrics, gauge};
pub use one_origin::{AuthWithPage, OneOrigin};
pub use probe::{NotReady, Operations, Probe};
pub use problem::{ApiError, ProblemData};
pub use request::{HttpLimits, ProxyListError, RequestBody, TrustedProxies};
pub use server::{serve, shutdown_signal};
pub use task_api::TaskApi;
pub use tls::server_config as tls_server_config;

/// The route tables, for tests and documentation.
pub mod routes {
    pub use crate::auth_api::documented as auth;
    pub use crate::task_api::documented as tasks;
}

/// The decoders an attacker reaches, for fuzzing and tests: each turns wire
/// input into domain values or a problem.
pub mod decode {
    pub use crate::auth_api::{decode_credentials, decode_registration, decode_user_patch};
    pub use crate::request::{decode_json, query_pairs};
    pub use crate::task_api::{decode_list_query, decode_new_task, decode_task_patch};
}
