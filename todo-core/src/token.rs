//! Access tokens (signed, short-lived) and refresh tokens (opaque, rotating).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::RandomError;
use crate::random::Random;
use crate::time::Timestamp;
use crate::user::{Role, UserId, Username, uuid_id};

/// What an access token says. Signers add nothing; verifiers check every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`: the user the token speaks for.
    pub subject: UserId,
    /// The username at issue, for display; rights come from the store.
    pub username: Username,
    /// The role at issue; the access gate answers with the stored one.
    pub role: Role,
    /// `iss`: who issued it.
    pub issuer: String,
    /// `aud`: who it is for.
    pub audience: String,
    /// Whole seconds, as JWT keeps them.
    pub issued_at: i64,
    /// `nbf`, in whole seconds.
    pub not_before: i64,
    /// `exp`, in whole seconds.
    pub expires_at: i64,
    /// `jti`: a UUIDv7, whose time gives the issue instant to the millisecond.
    pub token_id: Uuid,
    /// `sid`: the session that issued it; ending the session refuses the
    /// token. `None` only in tokens issued before sessions were named.
    pub session: Option<SessionId>,
}

impl AccessClaims {
    /// Who the token speaks for.
    #[must_use]
    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.subject,
            username: self.username.clone(),
            role: self.role,
            session: self.session,
            grant: crate::Grant::Login,
        }
    }
}

/// An authenticated caller, as a verified access token names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: UserId,
    /// Their username.
    pub username: Username,
    /// Their role, as the store has it now.
    pub role: Role,
    /// The session the caller's token came from, if it names one (an API
    /// token's own session).
    pub session: Option<SessionId>,
    /// What the caller's credentials allow: everything for a login's
    /// access token, its scopes and project for an API token.
    pub grant: crate::Grant,
}

/// Issuer, audience and lifetimes of the tokens the auth service hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `iss` of the tokens issued and accepted.
    pub issuer: String,
    /// `aud` of the tokens issued and accepted.
    pub audience: String,
    /// How long an access token is valid: short, since it is not revoked by itself.
    pub access_ttl: Duration,
    /// How long a refresh token is valid if not exchanged.
    pub refresh_ttl: Duration,
    /// How long after a refresh token was exchanged it may be exchanged
    /// again without counting as reuse: two tabs refreshing at once, or a
    /// retry after a lost response, must not end the session. Zero turns
    /// the grace off; at most [`TokenPolicy::MAX_REUSE_GRACE`].
    pub refresh_reuse_grace: Duration,
}

impl TokenPolicy {
    /// The longest access-token lifetime a policy may set. The access gate
    /// remembers ended sessions this long and a margin more
    /// (`AccessGate::ENDED_SESSIONS_REMEMBERED`), so no token of one
    /// outlives that memory (it refuses a token that claims a longer life).
    pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(3600);

    /// The longest reuse grace a policy may set.
    pub const MAX_REUSE_GRACE: Duration = Duration::from_secs(60);

    /// How many times one refresh token may be exchanged again within the
    /// reuse grace after its exchange; one more is reuse and revokes the
    /// family. Why 3: what the grace is for needs one to three: a second
    /// client racing the first (1), or the page's retries of a lost answer
    /// (it waits 5 s for one, then retries 2 s and 4 s later: 2 within the
    /// 10 s grace; its tabs take turns, so they do not race each other).
    /// Unbounded, one stolen token replayed in a loop
    /// within the grace minted 7,533 live siblings in 9 s (attack, #15).
    pub const MAX_GRACE_EXCHANGES: u32 = 3;
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: "todo-auth".to_owned(),
            audience: "todo".to_owned(),
            access_ttl: Duration::from_secs(5 * 60),
            refresh_ttl: Duration::from_secs(14 * 24 * 3600),
            refresh_reuse_grace: Duration::from_secs(10),
        }
    }
}

/// A refresh token: 256 random bits in URL-safe base64. A secret: zeroed when
/// dropped, never printed; only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(Zeroizing<String>);

impl RefreshToken {
    const BYTES: usize = 32;
    /// The length of the encoding of 32 bytes.
    const CHARS: usize = 43;

    /// A fresh token.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new([0u8; Self::BYTES]);
        random.fill(&mut bytes[..])?;
        Ok(Self(Zeroizing::new(URL_SAFE_NO_PAD.encode(&bytes[..]))))
    }

    /// A token as a client presents it; `None` when it cannot be one of ours.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.len() == Self::CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(Zeroizing::new(raw.to_owned())))
    }

    /// The token's text, to send to the client; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// The stored digest of a refresh token (hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash(String);

impl RefreshTokenHash {
    /// Wraps a digest made by a [`crate::RefreshTokenHasher`].
    #[must_use]
    pub fn new(digest: String) -> Self {
        Self(digest)
    }

    /// The digest, as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

uuid_id!(
    /// A session: one login and the lineage of refresh tokens that descends
    /// from it (its "family": reuse of any one of them ends it), named by
    /// the access tokens it issues (`sid`), so that ending it refuses them.
    SessionId,
    "session"
);

/// A refresh token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// The token's digest; the token itself is never stored.
    pub hash: RefreshTokenHash,
    /// The session (login) it descends from.
    pub family: SessionId,
    /// Whose it is.
    pub user_id: UserId,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being exchangeable.
    pub expires_at: Timestamp,
    /// When it was exchanged for its successor; a used token is dead.
    pub used_at: Option<Timestamp>,
    /// How many times it was exchanged again within the reuse grace after
    /// `used_at` (at most [`TokenPolicy::MAX_GRACE_EXCHANGES`]).
    pub grace_exchanges: u32,
    /// Revoked with its family (logout, reuse, password change).
    pub revoked: bool,
}

impl RefreshTokenRecord {
    /// Whether it can still be exchanged at `now`.
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && !self.revoked && now < self.expires_at
    }
}

/// What login and refresh answer.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The access token (a JWS), for `Authorization: Bearer`.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token: exchanged once for the next pair.
    pub refresh_token: RefreshToken,
    /// Login only: the device token to present at the next login (see
    /// [`crate::DeviceToken`]).
    pub device_token: Option<crate::DeviceToken>,
}
