//! Security primitives for todo, implementing `todo-core`'s edge traits:
//!
//! - [`Argon2Hasher`]: argon2id password hashing, and [`BoundedHasher`], which
//!   bounds how much of it runs and waits at once;
//! - [`JwtSigner`] / [`JwtVerifier`]: EdDSA (default) or ES256 access tokens
//!   with a `kid`, over a [`KeySet`] that rotates; JWKS rendering;
//! - [`Sha256RefreshTokenHasher`]: refresh tokens are stored only as digests;
//! - [`KeyedLimiter`] (governor) and [`FailedLoginBackoff`]: rate limits with
//!   bounded memory;
//! - [`CachingVerifier`]: a bounded cache of verified tokens;
//! - [`SystemClock`] and [`OsRandom`]: the real clock and randomness;
//! - [`auth_services`]: todo-core's auth services' builder with the three
//!   above in place.

mod cache;
mod error;
mod jwt;
mod limit;
mod password;
mod refresh;
mod services;
mod system;

pub use cache::{CacheableVerifier, CachingVerifier};
pub use error::KeyError;
pub use jwt::{
    JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, MAX_LEEWAY_SECONDS, PublicKey, SigningKey,
};
pub use limit::{FailedLoginBackoff, KeyedLimiter, LimitPolicy};
pub use password::{Argon2Config, Argon2Hasher, BoundedHasher, PoolLimits};
pub use refresh::Sha256RefreshTokenHasher;
pub use services::auth_services;
pub use system::{OsRandom, SystemClock};
pub use todo_core::BackoffPolicy;

/// jsonwebtoken's JWKS types, for callers that serve or fetch key sets.
pub use jsonwebtoken::jwk::JwkSet;
