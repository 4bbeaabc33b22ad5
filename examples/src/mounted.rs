//! todo's task API inside an axum program of one's own: the program keeps
//! its own routes and listener, and mounts the API under `/api`. The task
//! API verifies each bearer token itself (the access gate); tokens come from
//! todo's session service, here in the same process.
//!
//! Mounted this way, the API runs without todo's `Frontend`: the host
//! program's own layers bound connections and clients (todo's extractors
//! still bound each body's size and time). `Location` headers name the
//! task under the prefix (`/api/v1/tasks/{id}`).

use std::error::Error;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use todo_auth::{Argon2Config, OsRandom, SystemClock};
use todo_core::{AccessGate, SessionService, TaskService};
use todo_http::{Api, TaskApi};

use crate::embedded::{self, Store};

/// The host program's application: its own `/hello`, and todo's task API
/// under `/api` (`/api/v1/tasks`, `/api/v1/tasks/{id}`).
pub fn app(tasks: Arc<TaskApi>) -> Router {
    // 404 and 405 as problem details, as behind todo's own server.
    let api = todo_http::with_problem_answers(tasks.routes().into());
    Router::new()
        .route("/hello", get(|| async { "hello from the host program" }))
        .nest("/api", api)
}

/// Serves [`app`] on `listener` with axum's own server, giving each request
/// its peer's address (`ConnectInfo`): todo's per-client limits key on it
/// (without it, they do not apply).
pub async fn serve(listener: tokio::net::TcpListener, tasks: Arc<TaskApi>) -> std::io::Result<()> {
    let app = app(tasks).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).await
}

/// What the host program builds once: the task API to mount, and the
/// session service that hands out the tokens it accepts.
pub struct Parts {
    /// The task API, ready to mount with [`app`].
    pub tasks: Arc<TaskApi>,
    /// Register, log in, refresh, log out.
    pub sessions: SessionService,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// Builds both over `store`, with a fresh Ed25519 signing key (fine in one
/// process: tokens live minutes).
pub fn parts(store: Arc<dyn Store>, argon2: Argon2Config) -> Result<Parts, Box<dyn Error>> {
    let clock = Arc::new(SystemClock);
    let (sessions, verifier) = embedded::sessions(&store, argon2)?;
    let gate = Arc::new(AccessGate::new(verifier, store.clone(), clock.clone()));
    let service = TaskService::new(store, clock, Arc::new(OsRandom))
        .with_sha256(Arc::new(todo_auth::Sha256Digest));
    let tasks = Arc::new(TaskApi::new(service, gate, Vec::new())?);
    Ok(Parts { tasks, sessions })
}
