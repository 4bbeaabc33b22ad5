//! Passkeys (WebAuthn): credentials a user registers, names and removes,
//! each of which signs them in alone (user verification makes it both
//! factors).
//!
//! The ceremonies themselves (the options sent to the browser, the checks
//! of what comes back, the credential's format) are a library's
//! ([`PasskeyCeremonies`]: todo-auth's is webauthn-rs, kanidm's); the core
//! keeps what they need between their two steps where every instance sees
//! it (a [`CeremonyRecord`], single-use, five minutes), decides who may
//! start and finish one, and stores the credentials.

use std::time::Duration;

use crate::error::{BoxError, ValidationError};
use crate::time::Timestamp;
use crate::user::{UserId, Username};

crate::user::uuid_id!(
    /// A passkey's id (UUIDv7).
    PasskeyId,
    "id"
);

/// How long a ceremony's first step waits for its second.
pub const CEREMONY_TTL: Duration = Duration::from_secs(5 * 60);
/// The most passkeys one user may have.
pub const MAX_PASSKEYS: usize = 10;

/// The name a user gives a passkey: 1 to 64 characters, trimmed, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyName(String);

impl PasskeyName {
    /// The most characters a name has.
    pub const MAX_CHARS: usize = 64;

    /// A name as a request gives it.
    ///
    /// # Errors
    ///
    /// [`ValidationError`] naming `name`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        crate::api_token::shown_name(raw, Self::MAX_CHARS).map(Self)
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A passkey as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// Its id.
    pub id: PasskeyId,
    /// Whose it is.
    pub user_id: UserId,
    /// What its user called it.
    pub name: PasskeyName,
    /// The credential's id, as the authenticator gave it (unique).
    pub credential_id: Vec<u8>,
    /// The credential as the ceremonies' library keeps it (its public key,
    /// counter and flags), opaque here.
    pub credential: Vec<u8>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last signed its user in.
    pub last_used_at: Option<Timestamp>,
}

/// A passkey registered, as the library hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// The credential's id.
    pub credential_id: Vec<u8>,
    /// The credential, opaque.
    pub credential: Vec<u8>,
}

/// Why a ceremony's answer was refused (a bad signature, another origin,
/// a stale challenge, no user verification, a malformed answer): the
/// reason is for the log only.
#[derive(Debug, thiserror::Error)]
#[error("the passkey's answer was refused")]
pub struct PasskeyRefusal(#[source] pub BoxError);

/// The WebAuthn ceremonies, as a library runs them. Options and answers
/// are the browser's JSON, passed through; states are the library's, kept
/// by the core between the two steps.
pub trait PasskeyCeremonies: Send + Sync {
    /// The options for `navigator.credentials.create` (user verification
    /// required; `existing` credentials excluded), and the state to keep.
    ///
    /// # Errors
    ///
    /// When the library cannot make them.
    fn start_registration(
        &self,
        user: UserId,
        username: &Username,
        existing: &[Vec<u8>],
    ) -> Result<(String, Vec<u8>), PasskeyRefusal>;
    /// The credential the browser's answer registers, checked against the
    /// kept state.
    ///
    /// # Errors
    ///
    /// [`PasskeyRefusal`] for an answer that does not hold.
    fn finish_registration(
        &self,
        answer: &str,
        state: &[u8],
    ) -> Result<NewCredential, PasskeyRefusal>;
    /// The options for `navigator.credentials.get` for any of this site's
    /// discoverable credentials, and the state to keep.
    ///
    /// # Errors
    ///
    /// When the library cannot make them.
    fn start_authentication(&self) -> Result<(String, Vec<u8>), PasskeyRefusal>;
    /// Whose the answer claims to be, and with which credential (to look
    /// the credential up; nothing is verified yet).
    ///
    /// # Errors
    ///
    /// [`PasskeyRefusal`] for an answer that names none.
    fn identify(&self, answer: &str) -> Result<(UserId, Vec<u8>), PasskeyRefusal>;
    /// Verifies the answer with the stored credential and the kept state;
    /// the credential to store back when it changed (its counter).
    ///
    /// # Errors
    ///
    /// [`PasskeyRefusal`] for an answer that does not hold.
    fn finish_authentication(
        &self,
        answer: &str,
        state: &[u8],
        credential: &[u8],
    ) -> Result<Option<Vec<u8>>, PasskeyRefusal>;
}

/// What a ceremony's first step is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// A signed-in user registering a passkey.
    Registration,
    /// Anyone signing in with a passkey.
    Authentication,
}

impl CeremonyKind {
    /// The name stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Authentication => "authentication",
        }
    }

    /// The kind with this stored name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "registration" => Some(Self::Registration),
            "authentication" => Some(Self::Authentication),
            _ => None,
        }
    }
}

/// A ceremony's first step, kept for its second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CeremonyRecord {
    /// What finds it: `registration:<user id>` (one at a time per user),
    /// or the digest of a sign-in's `challenge_id`.
    pub key: String,
    /// What it is for.
    pub kind: CeremonyKind,
    /// The user registering; `None` for a sign-in.
    pub user_id: Option<UserId>,
    /// The library's state.
    pub state: Vec<u8>,
    /// When it stops.
    pub expires_at: Timestamp,
}

crate::secret::link_secret!(
    /// A passkey sign-in's `challenge_id`, which names its first step to
    /// the second: 256 random bits in URL-safe base64, never printed.
    ChallengeId,
    /// What the store keeps of a [`ChallengeId`]: its SHA-256, in hex.
    ChallengeIdHash,
    b"passkey-challenge:"
);

/// The key a user's registration ceremony is kept under.
#[must_use]
pub fn registration_key(user: UserId) -> String {
    format!("registration:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(PasskeyName::parse("  Phone ").unwrap().as_str(), "Phone");
        assert!(PasskeyName::parse("   ").is_err());
        assert!(PasskeyName::parse(&"x".repeat(65)).is_err());
        assert!(PasskeyName::parse("a\u{7}b").is_err());
        assert!(PasskeyName::parse(&"é".repeat(64)).is_ok());
    }

    #[test]
    fn ceremony_kinds_read_back() {
        for kind in [CeremonyKind::Registration, CeremonyKind::Authentication] {
            assert_eq!(CeremonyKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CeremonyKind::parse("other"), None);
    }
}
