//! Password resets: a single-use link, valid 30 minutes, that lets its
//! holder choose a new password without the old one. An administrator makes
//! one for a user without mail (the mailed link of #17 will be another way
//! to make the same thing). Only the token's SHA-256 is stored; using it
//! ends every session of the user.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::RandomError;
use crate::ports::Sha256;
use crate::random::Random;
use crate::time::Timestamp;
use crate::user::UserId;

/// How long a reset link may be used.
pub const PASSWORD_RESET_TTL: Duration = Duration::from_secs(30 * 60);

/// The secret of a reset link: 256 random bits in URL-safe base64, wiped
/// from memory when dropped, never printed.
#[derive(Clone)]
pub struct ResetToken(Zeroizing<String>);

/// What the store keeps of a [`ResetToken`]: its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResetTokenHash(String);

impl ResetToken {
    /// A new token.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        crate::secret::generate(random, "").map(Self)
    }

    /// A token as a client sends it back; `None` for text that cannot be
    /// one (no lookup made).
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        crate::secret::is_canonical(raw).then(|| Self(Zeroizing::new(raw.to_owned())))
    }

    /// The token, for the link; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps of it.
    #[must_use]
    pub fn digest(&self, sha: &dyn Sha256) -> ResetTokenHash {
        ResetTokenHash(crate::secret::sha256_hex(
            sha,
            &[b"password-reset:", self.0.as_bytes()],
        ))
    }
}

impl std::fmt::Debug for ResetToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetToken(<redacted>)")
    }
}

impl ResetTokenHash {
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

/// A reset link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordResetRecord {
    /// The token's digest.
    pub hash: ResetTokenHash,
    /// Whose password it resets.
    pub user_id: UserId,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used; a used link is dead.
    pub used_at: Option<Timestamp>,
}

impl PasswordResetRecord {
    /// Whether it can still be used at `now`.
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeSha256, SeededRandom};

    #[test]
    fn a_token_parses_back_and_its_digest_is_not_an_api_tokens() {
        let token = ResetToken::generate(&SeededRandom::new(3)).unwrap();
        let back = ResetToken::parse(token.expose()).unwrap();
        assert_eq!(back.digest(&FakeSha256), token.digest(&FakeSha256));
        assert!(ResetToken::parse(&format!("{}=", token.expose())).is_none());
        assert!(ResetToken::parse("short").is_none());
        assert!(!format!("{token:?}").contains(token.expose()));
        // (domain-separated: the same text digests apart from a feed's)
        let feed = crate::FeedToken::parse(token.expose()).unwrap();
        assert_ne!(
            feed.digest(&FakeSha256).as_str(),
            token.digest(&FakeSha256).as_str()
        );
    }
}
