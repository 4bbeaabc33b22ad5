//! todo's task API inside an axum program of one's own: the program keeps
//! its own routes and listener, and mounts the API under `/api`. The task
//! API verifies each bearer token itself (the access gate); tokens come from
//! todo's session service, here in the same process.
//!
//! Mounted this way, the API runs without todo's `Frontend`: the host
//! program's own layers bound connections and clients (todo's extractors
//! still bound each body's size and time). `Location` headers name
//! `/v1/tasks/{id}`, the API's own paths, without the `/api` prefix.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, FailedLoginBackoff, JwtSigner, JwtVerifier,
    KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, SigningKey, SystemClock,
};
use todo_core::{AccessGate, AuthLimits, SessionService, TaskService, TokenPolicy};
use todo_http::{Api, TaskApi};

use crate::embedded::Store;

/// The host program's application: its own `/hello`, and todo's task API
/// under `/api` (`/api/v1/tasks`, `/api/v1/tasks/{id}`).
pub fn app(tasks: Arc<TaskApi>) -> Router {
    let api: Router = tasks.routes().into();
    Router::new()
        .route("/hello", get(|| async { "hello from the host program" }))
        .nest("/api", api)
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
    let key = SigningKey::generate(KeyAlgorithm::EdDsa)?;
    let policy = TokenPolicy::default();
    let keys = KeySet::new([key.public_key().clone()]);
    let verifier = Arc::new(JwtVerifier::new(keys, &policy.issuer, &policy.audience, 30));
    let per_client = LimitPolicy {
        burst: 10,
        period: Duration::from_secs(6),
        max_keys: 10_000,
    };
    let sessions = todo_auth::auth_services()
        .users(store.clone())
        .refresh_tokens(store.clone())
        .hasher(Arc::new(Argon2Hasher::new(argon2)?))
        .signer(Arc::new(JwtSigner::new(key)))
        .verifier(verifier.clone())
        .limits(AuthLimits {
            register_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_per_account: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy::default())),
        })
        .policy(policy)
        .build()?
        .sessions;
    let gate = Arc::new(AccessGate::new(verifier, store.clone(), clock.clone()));
    let service = TaskService::new(store, clock, Arc::new(OsRandom));
    let tasks = Arc::new(TaskApi::new(service, gate, Vec::new())?);
    Ok(Parts { tasks, sessions })
}
