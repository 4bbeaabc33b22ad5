//! A bounded cache of verified access tokens: signature verification
//! (EdDSA ~58 µs, ES256 ~80 µs) is the largest cost of a task read, and a
//! client presents the same token for minutes.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use todo_core::{AccessClaims, AccessTokenVerifier, Timestamp, TokenError};

use crate::JwtVerifier;

/// What [`CachingVerifier`] needs of the verifier it wraps so that a hit
/// answers exactly as a miss would.
pub trait CacheableVerifier: AccessTokenVerifier {
    /// Grows whenever the verifier's keys change: what was verified under
    /// another epoch is forgotten (a withdrawn key verifies nothing more).
    fn key_epoch(&self) -> u64;

    /// The time checks `verify` makes (`exp`, `nbf`, with its leeway) on
    /// claims that it accepted before.
    fn check_times(&self, claims: &AccessClaims, now: Timestamp) -> Result<(), TokenError>;
}

impl CacheableVerifier for JwtVerifier {
    fn key_epoch(&self) -> u64 {
        JwtVerifier::key_epoch(self)
    }

    fn check_times(&self, claims: &AccessClaims, now: Timestamp) -> Result<(), TokenError> {
        JwtVerifier::check_times(self, claims.expires_at, claims.not_before, now)
    }
}

impl<T: CacheableVerifier + ?Sized> CacheableVerifier for Arc<T> {
    fn key_epoch(&self) -> u64 {
        (**self).key_epoch()
    }

    fn check_times(&self, claims: &AccessClaims, now: Timestamp) -> Result<(), TokenError> {
        (**self).check_times(claims, now)
    }
}

/// Remembers tokens that verified, keyed by their SHA-256, until they
/// expire. A hit makes the inner verifier's own time checks (its leeway
/// included), so hit and miss answer alike; only the signature, issuer and
/// audience checks are skipped, which cannot change for the same bytes
/// while the key set is unchanged — and every entry belongs to the key
/// epoch it was verified under: when the keys change, all are forgotten.
#[derive(Debug)]
pub struct CachingVerifier<V> {
    inner: V,
    entries: RwLock<Entries>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    /// The key epoch every entry was verified under.
    epoch: u64,
    claims: HashMap<[u8; 32], AccessClaims>,
}

impl<V: CacheableVerifier> CachingVerifier<V> {
    /// At most `capacity` tokens are remembered (about 400 bytes each).
    #[must_use]
    pub fn new(inner: V, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(Entries {
                epoch: inner.key_epoch(),
                claims: HashMap::new(),
            }),
            inner,
            capacity: capacity.max(1),
        }
    }

    /// The verifier behind the cache.
    #[must_use]
    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Forgets every remembered token.
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .claims
            .clear();
    }

    /// How many tokens are remembered (of the current key epoch or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .claims
            .len()
    }

    /// Whether no token is remembered.
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

impl<V: CacheableVerifier> AccessTokenVerifier for CachingVerifier<V> {
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let key = digest(token);
        // Read before verifying: an entry is filed under an epoch no newer
        // than the keys that verified it.
        let epoch = self.inner.key_epoch();
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if entries.epoch == epoch
                && let Some(claims) = entries.claims.get(&key)
            {
                self.inner.check_times(claims, now)?;
                return Ok(claims.clone());
            }
        }
        let claims = self.inner.verify(token, now)?;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.epoch != epoch {
            if entries.epoch > epoch {
                // Newer keys came in meanwhile: not remembered under them.
                return Ok(claims);
            }
            entries.claims.clear();
            entries.epoch = epoch;
        }
        if entries.claims.len() >= self.capacity {
            // Drop the expired; if that is not enough, start afresh: a miss
            // costs one verification, never a wrong answer.
            entries
                .claims
                .retain(|_, c| self.inner.check_times(c, now).is_ok());
            if entries.claims.len() >= self.capacity {
                entries.claims.clear();
            }
        }
        entries.claims.insert(key, claims.clone());
        Ok(claims)
    }
}
