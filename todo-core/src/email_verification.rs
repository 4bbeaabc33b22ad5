//! Verifying an e-mail address: a single-use link, valid a day, mailed to
//! the address, that marks it verified when opened; only then can the
//! address receive password-reset links. The link names the address it
//! was sent to: after a change of address it verifies nothing. Only the
//! token's SHA-256 is stored.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::RandomError;
use crate::ports::Sha256;
use crate::random::Random;
use crate::time::Timestamp;
use crate::user::{Email, UserId};

/// How long a verification link may be used.
pub const EMAIL_VERIFICATION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The secret of a verification link: 256 random bits in URL-safe base64,
/// wiped from memory when dropped, never printed.
#[derive(Clone)]
pub struct EmailToken(Zeroizing<String>);

/// What the store keeps of an [`EmailToken`]: its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailTokenHash(String);

impl EmailToken {
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

    /// What the store keeps of it (domain-separated from a reset link's).
    #[must_use]
    pub fn digest(&self, sha: &dyn Sha256) -> EmailTokenHash {
        EmailTokenHash(crate::secret::sha256_hex(
            sha,
            &[b"verify-email:", self.0.as_bytes()],
        ))
    }
}

impl std::fmt::Debug for EmailToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailToken(<redacted>)")
    }
}

impl EmailTokenHash {
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
