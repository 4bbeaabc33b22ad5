//! The HTTP layer of todo, shared by both servers: the auth and task
//! routers ([`AuthApi`], [`TaskApi`]), what every request goes through
//! ([`Frontend`]: request ids, routing, limits, security headers, logs,
//! metrics), the one map from errors to statuses ([`ApiError`]), the TLS
//! configuration ([`tls_server_config`]) and the accept loop with graceful
//! shutdown ([`serve`]). Configuration, key files, certificates and the
//! JWKS fetch live in `todo-server`, the servers' wiring.
//!
//! Handlers decode wire DTOs into domain types, call one core service method
//! on the blocking pool (a short read of one task or one page first asks
//! for the store's answer in place, on the worker), and render the result;
//! no business rule lives here.
//! Another program mounts either API as an axum `Router` ([`Api::routes`];
//! `examples/src/mounted.rs`), or serves it as our servers do, behind a
//! [`Frontend`] with [`serve`].
//!
//! The task API as a `Router`, over the in-memory store and the core's
//! test doubles, answering a caller with a token and one without:
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::body::Body;
//! use http::{Request, StatusCode, header};
//! use todo_core::memory::MemoryStore;
//! use todo_core::testing::{CountingHasher, ManualClock, ReversingDigest, SeededRandom, TableTokens};
//! use todo_core::{AuthLimits, AuthServices, Credentials, Registration, TaskService};
//! use todo_http::{Api, TaskApi};
//! use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new());
//! let clock = Arc::new(ManualClock::new());
//! let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
//! let auth = AuthServices::builder()
//!     .store(store.clone())
//!     .hasher(Arc::new(CountingHasher::new(1)))
//!     .signer(tokens.clone())
//!     .verifier(tokens)
//!     .refresh_hasher(Arc::new(ReversingDigest))
//!     .clock(clock.clone())
//!     .random(Arc::new(SeededRandom::new(1)))
//!     .limits(AuthLimits::unlimited())
//!     .build()?;
//! let alice = Registration::parse("alice", "correct horse", None).map_err(|e| format!("{e:?}"))?;
//! auth.sessions.register(None, alice)?;
//! let token = auth.sessions.login(None, &Credentials::offered("alice", "correct horse"))?.access_token;
//!
//! // The task API admits callers through the same gate as the auth services.
//! let tasks = TaskService::new(store, clock, Arc::new(SeededRandom::new(2)));
//! let api = Arc::new(TaskApi::new(tasks, Arc::clone(auth.sessions.gate()), Vec::new())?);
//! let app: axum::Router = api.routes().into();
//!
//! let create = Request::post("/v1/tasks")
//!     .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .header(header::CONTENT_TYPE, "application/json")
//!     .body(Body::from(r#"{"title": "Water the plants"}"#))?;
//! let created = app.clone().oneshot(create).await?;
//! assert_eq!(created.status(), StatusCode::CREATED);
//! assert_eq!(created.headers()[header::ETAG], "\"v1\"");
//!
//! // No token: the problem answer, before anything else is looked at.
//! let anonymous = app.oneshot(Request::get("/v1/tasks").body(Body::empty())?).await?;
//! assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod admission;
mod api_tokens_api;
pub mod audit;
mod auth_api;
mod blocking;
mod dto;
mod events;
mod export;
pub mod extract;
mod feed;
mod front;
mod gate;
mod import;
mod keys;
mod metrics;
mod one_origin;
pub mod openapi;
mod probe;
mod problem;
mod projects_api;
mod request;
mod scans;
mod second_factors_api;
mod sending;
mod server;
mod task_api;
mod tls;
pub mod web;
mod webhooks_api;

pub use auth_api::AuthApi;
pub use front::{
    Answer, Api, ApiResponse, Frontend, MetricsExposure, ResponseBody, with_problem_answers,
};
pub use keys::{KeyRefresh, Refetch, RefreshError};
pub use metrics::{Metrics, counter, gauge};
pub use one_origin::{AuthWithPage, OneOrigin};
pub use probe::{NotReady, Operations, Probe};
pub use problem::{ApiError, InternalDetail, ProblemData};
pub use request::{HttpLimits, ProxyListError, RequestBody, TrustedProxies};
pub use server::{serve, shutdown_signal};
pub use task_api::{TaskApi, change_event_body, change_json};
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
