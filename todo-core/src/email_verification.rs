//! Verifying an e-mail address: a single-use link, valid a day, mailed to
//! the address, that marks it verified when opened; only then can the
//! address receive password-reset links. The link names the address it
//! was sent to: after a change of address it verifies nothing. Only the
//! token's SHA-256 is stored.

use std::time::Duration;

use crate::time::Timestamp;
use crate::user::{Email, UserId};

/// How long a verification link may be used.
pub const EMAIL_VERIFICATION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

crate::secret::link_secret!(
    /// The secret of a verification link: 256 random bits in URL-safe
    /// base64, wiped from memory when dropped, never printed.
    EmailToken,
    /// What the store keeps of an [`EmailToken`]: its SHA-256, in hex.
    EmailTokenHash,
    b"verify-email:"
);

/// A verification link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailVerificationRecord {
    /// The token's digest.
    pub hash: EmailTokenHash,
    /// Whose address it verifies.
    pub user_id: UserId,
    /// The address it was sent to: it verifies that one only.
    pub email: Email,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeSha256, SeededRandom};

    #[test]
    fn a_token_parses_back_and_digests_apart_from_a_reset_link() {
        let token = EmailToken::generate(&SeededRandom::new(4)).unwrap();
        let back = EmailToken::parse(token.expose()).unwrap();
        assert_eq!(back.digest(&FakeSha256), token.digest(&FakeSha256));
        assert!(EmailToken::parse("short").is_none());
        assert!(!format!("{token:?}").contains(token.expose()));
        let reset = crate::ResetToken::parse(token.expose()).unwrap();
        assert_ne!(
            reset.digest(&FakeSha256).as_str(),
            token.digest(&FakeSha256).as_str()
        );
    }
}
