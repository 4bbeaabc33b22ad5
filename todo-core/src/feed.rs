//! A project's read-only iCalendar feed: a URL a calendar program polls,
//! which whoever holds it may read without an account. Its token is 256
//! random bits; only the token's SHA-256 is stored, so the database gives
//! no feed away, and the owner revokes a URL by publishing anew or by
//! deleting the feed.

use zeroize::Zeroizing;

use crate::error::RandomError;
use crate::ports::Sha256;
use crate::random::Random;

/// The secret part of a feed's URL (43 characters of URL-safe base64),
/// wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedToken(Zeroizing<String>);

/// What the store keeps of a [`FeedToken`]: its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedTokenHash(String);

impl FeedToken {
    /// The token's length in characters.
    pub const CHARS: usize = 43;

    /// A new token of 256 random bits.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        crate::secret::generate(random, "").map(Self)
    }

    /// A token as a URL gives it; `None` for text that cannot be one.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        crate::secret::is_canonical(raw).then(|| Self(Zeroizing::new(raw.to_owned())))
    }

    /// The token, for the URL.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the store keeps of it: its SHA-256, in hex.
    #[must_use]
    pub fn digest(&self, sha: &dyn Sha256) -> FeedTokenHash {
        FeedTokenHash(crate::secret::sha256_hex(sha, &[self.0.as_bytes()]))
    }
}

impl std::fmt::Debug for FeedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedToken(…)")
    }
}

impl FeedTokenHash {
    /// A hash as the store keeps it.
    #[must_use]
    pub fn new(hex: String) -> Self {
        Self(hex)
    }

    /// The hash in hex.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::SeededRandom;

    /// SHA-256 itself (a dev-dependency: the core's build has none).
    struct RealSha;

    impl Sha256 for RealSha {
        fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
            use sha2::Digest as _;
            let mut hash = sha2::Sha256::new();
            for part in parts {
                hash.update(part);
            }
            hash.finalize().into()
        }
    }

    #[test]
    fn a_token_round_trips_and_only_its_hash_is_kept() {
        let token = FeedToken::generate(&SeededRandom::new(1)).unwrap();
        assert_eq!(token.as_str().len(), FeedToken::CHARS);
        assert_eq!(FeedToken::parse(token.as_str()), Some(token.clone()));
        let hash = token.digest(&RealSha);
        assert_eq!(hash.as_str().len(), 64);
        // SHA-256 of its text, in lower-case hex (a known vector).
        let known = FeedToken(Zeroizing::new("A".repeat(43)));
        assert_eq!(
            known.digest(&RealSha).as_str(),
            "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a"
        );
        assert_ne!(
            FeedToken::generate(&SeededRandom::new(2))
                .unwrap()
                .digest(&RealSha),
            hash
        );
        assert_eq!(format!("{token:?}"), "FeedToken(…)");
    }

    #[test]
    fn text_that_cannot_be_a_token_is_refused() {
        let good = FeedToken::generate(&SeededRandom::new(1)).unwrap();
        for bad in [
            "",
            "short",
            &format!("{}A", good.as_str()),
            &good.as_str().replace(|_| true, "+"),
        ] {
            assert_eq!(FeedToken::parse(bad), None, "{bad:?}");
        }
    }
}
