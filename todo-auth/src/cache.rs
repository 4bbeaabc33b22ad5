//! A bounded cache of verified access tokens: signature verification
//! (EdDSA ~58 µs, ES256 ~80 µs) is the largest cost of a task read, and a
//! client presents the same token for minutes.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use todo_core::{AccessClaims, AccessTokenVerifier, Timestamp, TokenError, TokenRejection};

/// Remembers tokens that verified, keyed by their SHA-256, until they
/// expire. A hit still checks `exp` and `nbf` against `now`; only the
/// signature, issuer and audience checks are skipped, which cannot change
/// for the same bytes while the key set is unchanged (replacing keys through
/// [`CachingVerifier::clear`] forgets everything).
#[derive(Debug)]
pub struct CachingVerifier<V> {
    inner: V,
    entries: RwLock<HashMap<[u8; 32], AccessClaims>>,
    capacity: usize,
}

impl<V: AccessTokenVerifier> CachingVerifier<V> {
    /// At most `capacity` tokens are remembered (about 400 bytes each).
    #[must_use]
    pub fn new(inner: V, capacity: usize) -> Self {
        Self {
            inner,
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    #[must_use]
    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Forgets every remembered token (after the key set changed).
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    );
    out
}

impl<V: AccessTokenVerifier> AccessTokenVerifier for CachingVerifier<V> {
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let key = digest(token);
        let seconds = now.unix_seconds();
        if let Some(claims) = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            if seconds >= claims.expires_at {
                return Err(TokenError::Rejected(TokenRejection::Expired));
            }
            if seconds < claims.not_before {
                return Err(TokenError::Rejected(TokenRejection::NotYetValid));
            }
            return Ok(claims.clone());
        }
        let claims = self.inner.verify(token, now)?;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            // Drop the expired; if that is not enough, start afresh: a miss
            // costs one verification, never a wrong answer.
            entries.retain(|_, c| c.expires_at > seconds);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, claims.clone());
        Ok(claims)
    }
}
