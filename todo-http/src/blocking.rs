//! Service calls block (diesel, argon2): they run on tokio's blocking pool,
//! not on the executor's workers, so a slow query or a hash cannot stall
//! other requests. The one exception is a store's answer in place
//! (`TaskService::get_in_place` / `list_in_place`): a SQLite read that an
//! index serves from its first entry, on connections never waited for. The pool is bounded by the runtime (`max_blocking_threads`);
//! argon2 is further bounded by `todo_auth::BoundedHasher`, the database by
//! the r2d2 pool's size and acquire timeout.

use crate::problem::ApiError;

/// Runs `work` on the blocking pool and maps its error for the wire.
pub async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
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
