//! Password resets: a single-use link, valid 30 minutes, that lets its
//! holder choose a new password without the old one. An administrator makes
//! one for a user without mail; a user with a verified address asks for one
//! by mail. Only the token's SHA-256 is stored; using it ends every session
//! of the user.

use std::time::Duration;

use crate::time::Timestamp;
use crate::user::UserId;

/// How long a reset link may be used.
pub const PASSWORD_RESET_TTL: Duration = Duration::from_secs(30 * 60);

crate::secret::link_secret!(
    /// The secret of a reset link: 256 random bits in URL-safe base64,
    /// wiped from memory when dropped, never printed.
    ResetToken,
    /// What the store keeps of a [`ResetToken`]: its SHA-256, in hex.
    ResetTokenHash,
    b"password-reset:"
);

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
