//! Service calls block (diesel, argon2): they run on tokio's blocking pool,
//! not on the executor's workers, so a slow query or a hash cannot stall
//! other requests. The one exception is a store's answer in place
//! (`TaskService::get_in_place` / `list_in_place`): a SQLite read that an
//! index serves from its first entry, on connections never waited for. The pool is bounded by the runtime (`max_blocking_threads`);
//! argon2 is further bounded by `todo_auth::BoundedHasher`, the database by
//! the r2d2 pool's size and acquire timeout.
//!
//! Blocking work cannot be cancelled: once started it runs to its end, even
//! when its request is gone (a closed connection, a reset HTTP/2 stream).
//! So it holds its client's request slot (`admission::ClientSlot`) itself,
//! for as long as it runs: a client that cancels its requests cannot leave
//! more work behind than it may have requests in flight (v1.1 attack: a
//! few connections resetting requests for large pages queued orphaned work
//! without bound, and everyone's logins waited seconds behind it).

use std::sync::Arc;

use crate::admission::ClientSlot;
use crate::problem::ApiError;

tokio::task_local! {
    /// The request slot of the client whose request runs in this task (set
    /// by the frontend around its routing).
    pub(crate) static REQUEST_SLOT: Arc<ClientSlot>;
}

/// `spawn_blocking`, the work holding the slot of the request this task
/// serves until it ends (no slot when mounted without a frontend: the host
/// bounds its own).
pub(crate) fn spawn_held<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let slot = REQUEST_SLOT.try_with(Arc::clone).ok();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
}

/// Runs `work` on the blocking pool and maps its error for the wire.
pub async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match spawn_held(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(join) => Err(ApiError::internal(format!("blocking task failed: {join}"))),
    }
}

/// Runs `work` on the blocking pool with a clone of `service` (services are
/// cheap to clone: handles to shared state).
pub async fn call<S, T>(
    service: &S,
    work: impl FnOnce(&S) -> Result<T, todo_core::Error> + Send + 'static,
) -> Result<T, ApiError>
where
    S: Clone + Send + 'static,
    T: Send + 'static,
{
    let service = service.clone();
    blocking(move || work(&service)).await
}
