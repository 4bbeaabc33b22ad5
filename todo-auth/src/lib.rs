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
//! - [`AwsHmacSha1`] and [`AesGcmSealer`]: TOTP codes, and their secrets
//!   sealed under a key of their own;
//! - [`WebauthnCeremonies`]: passkeys' ceremonies, on webauthn-rs;
//! - [`SystemClock`] and [`OsRandom`]: the real clock and randomness;
//! - [`auth_services`]: todo-core's auth services' builder with the clock,
//!   the randomness and the refresh-token digest above in place.
//!
//! Everything here that touches key material, password hashes or the
//! system's clock and randomness sits behind one of those traits, so the
//! core's rules can be tested with fakes and this crate reviewed on its own.
//!
//! # Example
//!
//! Hashing a password and checking it, then signing and verifying an access
//! token, as the auth service does through the core's traits.
//!
//! ```
//! use todo_auth::{Argon2Config, Argon2Hasher, JwtSigner, JwtVerifier, KeyAlgorithm, KeySet};
//! use todo_auth::{OsRandom, SigningKey, SystemClock};
//! use todo_core::{AccessClaims, AccessTokenSigner, AccessTokenVerifier, Clock};
//! use todo_core::{Password, PasswordHasher, Role, UserId, Username, new_v7};
//!
//! // Cheap parameters for the example; the default is OWASP's (19 MiB, 2 passes).
//! let hasher = Argon2Hasher::new(Argon2Config { memory_kib: 1024, iterations: 1, parallelism: 1 })?;
//! let password = Password::offered("correct horse battery").ok_or("no password")?;
//! let stored = hasher.hash(&password)?;
//! assert!(hasher.verify(&password, &stored)?.matches);
//!
//! let key = SigningKey::generate(KeyAlgorithm::EdDsa)?;
//! let verifier = JwtVerifier::new(KeySet::new([key.public_key().clone()]), "todo-auth", "todo", 0);
//! let signer = JwtSigner::new(key);
//! let now = SystemClock.now();
//! let claims = AccessClaims {
//!     subject: UserId::from_uuid(new_v7(now, &OsRandom)?),
//!     username: Username::parse("alice")?,
//!     role: Role::User,
//!     issuer: "todo-auth".to_owned(),
//!     audience: "todo".to_owned(),
//!     issued_at: now.unix_seconds(),
//!     not_before: now.unix_seconds(),
//!     expires_at: now.unix_seconds() + 900,
//!     token_id: new_v7(now, &OsRandom)?,
//!     session: None,
//! };
//! let token = signer.sign(&claims)?;
//! assert_eq!(verifier.verify(&token, now)?, claims);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod cache;
mod error;
mod jwt;
mod limit;
mod passkey;
mod password;
mod refresh;
mod second_factor;
mod services;
mod system;
mod webhook;

pub use cache::{CacheableVerifier, CachingVerifier};
pub use error::KeyError;
pub use jwt::{
    JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, MAX_LEEWAY_SECONDS, PublicKey, SigningKey,
};
pub use limit::{FailedLoginBackoff, KeyedLimiter, LimitPolicy};
pub use passkey::WebauthnCeremonies;
pub use password::{Argon2Config, Argon2Hasher, BoundedHasher, PoolLimits};
pub use refresh::{Sha256Digest, Sha256RefreshTokenHasher};
pub use second_factor::{AesGcmSealer, AwsHmacSha1};
pub use services::auth_services;
pub use system::{OsRandom, SystemClock};
pub use todo_core::BackoffPolicy;
pub use webhook::webhook_signature;

/// jsonwebtoken's JWKS types, for callers that serve or fetch key sets.
pub use jsonwebtoken::jwk::JwkSet;
