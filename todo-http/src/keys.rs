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

/// What asking for the verification keys again came to, for a token that
/// names a key the gate does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// A new key set was installed: verify the token again.
    Installed,
    /// The keys were fetched (now, or lately and successfully) and the
    /// token's key is not among them: it is unknown (401).
    Unchanged,
    /// The keys cannot be known now: a fetch is running, or the last one
    /// failed and the next is not due yet. The token may be good: "try
    /// again shortly" (503), not "unauthenticated" (a client told 401 with
    /// a token just issued would end its session).
    Unavailable,
}

/// Refetches the verification keys on demand (rate-limited by the
/// implementation), installing them where the access gate verifies.
pub trait KeyRefresh: Send + Sync + std::fmt::Debug {
    /// Asks for the keys again, if due; an error is a fetch that failed.
    fn refresh(&self) -> Pin<Box<dyn Future<Output = Result<Refetch, RefreshError>> + Send + '_>>;
}
