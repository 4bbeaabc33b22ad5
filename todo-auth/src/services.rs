//! The auth services' builder with this crate's production parts in place.

use std::sync::Arc;

use todo_core::{AuthServices, AuthServicesBuilder};

use crate::{OsRandom, Sha256Digest, Sha256RefreshTokenHasher, SystemClock};

/// [`AuthServices::builder`] with the system clock, the operating system's
/// randomness and SHA-256 refresh-token and API-token digests already given: what is left
/// to name is the stores, the password hasher and the token signer and
/// verifier.
pub fn auth_services() -> AuthServicesBuilder {
    AuthServices::builder()
        .clock(Arc::new(SystemClock))
        .random(Arc::new(OsRandom))
        .refresh_hasher(Arc::new(Sha256RefreshTokenHasher))
        .sha256(Arc::new(Sha256Digest))
}
