//! Where task-server's verification keys come from when a token names one
//! it does not know: the HTTP layer asks, the servers' wiring (which owns
//! the JWKS fetch) answers. Keeping this a trait keeps todo-http free of
//! the HTTP client and the key files.

use std::future::Future;
use std::pin::Pin;

/// Why the key set could not be refreshed.
#[derive(Debug, thiserror::Error)]
#[error("refreshing the verification keys failed")]
pub struct RefreshError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Refetches the verification keys on demand (rate-limited by the
/// implementation), installing them where the access gate verifies.
pub trait KeyRefresh: Send + Sync + std::fmt::Debug {
    /// `Ok(true)` when a new key set was installed, `Ok(false)` when the
    /// refetch was skipped (too soon) or brought nothing new.
    fn refresh(&self) -> Pin<Box<dyn Future<Output = Result<bool, RefreshError>> + Send + '_>>;
}
