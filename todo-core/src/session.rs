//! Sessions: where a user is signed in, as they see it and can end it.
//!
//! A login starts a session; its refresh tokens descend from it (see
//! [`crate::RefreshTokenRecord::family`]) and its access tokens name it
//! (`sid`). Ending it revokes the refresh tokens and, through the access
//! gate, refuses its access tokens on every instance within a second.

use std::net::IpAddr;

use crate::time::Timestamp;
use crate::token::SessionId;
use crate::user::UserId;

/// How a session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A login with a password: its refresh tokens keep it going.
    Login,
}

impl SessionKind {
    /// The name the API and the store use.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
        }
    }

    /// The kind with this name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "login" => Some(Self::Login),
            _ => None,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id, which its access tokens name.
    pub id: SessionId,
    /// Whose it is.
    pub user_id: UserId,
    /// How it came to be.
    pub kind: SessionKind,
    /// When it started.
    pub created_at: Timestamp,
    /// When it last issued tokens (a login or a refresh): access tokens
    /// are used without touching the store, so this is the last use to
    /// within one access-token lifetime.
    pub last_used_at: Timestamp,
    /// When it ends unless used again (its newest refresh token expires).
    pub expires_at: Timestamp,
    /// The client's `User-Agent` when it started, if it sent one.
    pub user_agent: Option<UserAgent>,
    /// The client's address when it started, if known.
    pub address: Option<IpAddr>,
    /// When it was ended (logout, ended by its user, a password change,
    /// reuse of a refresh token); `None` while it lives.
    pub ended_at: Option<Timestamp>,
}

impl SessionRecord {
    /// Whether it can still be used at `now`.
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// A client's `User-Agent`, as shown to the user among their sessions:
/// printable characters only, at most [`UserAgent::MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(String);

impl UserAgent {
    /// The most characters kept; the rest is cut.
    pub const MAX_CHARS: usize = 256;

    /// The header's value made safe to store and show: control characters
    /// become spaces, the ends are trimmed, and it is cut to
    /// [`Self::MAX_CHARS`]. `None` when nothing is left.
    #[must_use]
    pub fn from_header(raw: &str) -> Option<Self> {
        let kept: String = raw
            .chars()
            .take(Self::MAX_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let trimmed = kept.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_agent_is_cut_and_loses_its_control_characters() {
        let long = "a".repeat(1000);
        assert_eq!(
            UserAgent::from_header(&long).map(|ua| ua.as_str().len()),
            Some(UserAgent::MAX_CHARS)
        );
        assert_eq!(
            UserAgent::from_header(" curl/8\r\n\u{1b}[31m ").map(|ua| ua.0),
            Some("curl/8   [31m".to_owned())
        );
        assert_eq!(UserAgent::from_header(" \t "), None);
    }

    #[test]
    fn kinds_read_back_as_written() {
        assert_eq!(
            SessionKind::parse(SessionKind::Login.as_str()),
            Some(SessionKind::Login)
        );
        assert_eq!(SessionKind::parse("api_token"), None);
    }
}
