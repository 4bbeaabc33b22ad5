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

/// The most live sessions a user keeps: a login past it ends the oldest.
/// Bounds what a list, an ending of every other session and the access
/// gate's reading of a user's ended sessions cost (a script that signs in
/// with a password at each run and never logs out would otherwise pile up
/// thousands).
pub const MAX_LIVE_SESSIONS: usize = 100;

/// How a session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionKind {
    /// A login with a password: its refresh tokens keep it going.
    Login,
    /// An API token ([`crate::ApiTokenRecord`]): it acts by itself until
    /// it expires or is ended.
    ApiToken,
}

impl SessionKind {
    /// The name the API and the store use.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::ApiToken => "api_token",
        }
    }

    /// The kind with this name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "login" => Some(Self::Login),
            "api_token" => Some(Self::ApiToken),
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

/// A user's sessions ended recently, as the access gate reads them with
/// the user: a token naming one of them is refused. At most
/// [`EndedSessions::MAX`] are kept, the most recently ended; when there
/// were more, the end of the newest one left out is kept instead, and a
/// token naming a session is refused if it was issued by then (a session
/// issues nothing after its end): failing closed for what was not read,
/// never silently short, while tokens of later sign-ins still act (attack
/// of session 25, second pass, F2: refusing every token locked the account
/// out for 70 minutes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndedSessions {
    /// Sorted, for a binary search on every request.
    ids: Vec<SessionId>,
    /// The end of the newest ended session not kept, if any.
    unread_through: Option<Timestamp>,
}

impl EndedSessions {
    /// The most ended sessions a reading holds. A password change or an
    /// ending of every other session ends at most [`MAX_LIVE_SESSIONS`];
    /// more takes a loop of logins (with a device token they skip the
    /// per-account limit) and logouts within the gate's memory's 70
    /// minutes.
    pub const MAX: usize = 2048;

    /// What a store read: sessions with their ends, the most recently
    /// ended first, at most `MAX + 1` of them (one more than `MAX` says
    /// that some were left out, and when).
    #[must_use]
    pub fn read(mut newest_first: Vec<(SessionId, Timestamp)>) -> Self {
        let unread_through = newest_first.get(Self::MAX).map(|(_, at)| *at);
        newest_first.truncate(Self::MAX);
        let mut ids: Vec<SessionId> = newest_first.into_iter().map(|(id, _)| id).collect();
        ids.sort_unstable();
        Self {
            ids,
            unread_through,
        }
    }

    /// None ended.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether a token of `session`, issued at `issued_at`, must be
    /// refused: its session is among those read, or the reading left some
    /// out and the token was issued before the newest of those ended.
    #[must_use]
    pub fn refuses(&self, session: SessionId, issued_at: Timestamp) -> bool {
        self.unread_through.is_some_and(|end| issued_at <= end)
            || self.ids.binary_search(&session).is_ok()
    }

    /// The sessions read, in id order.
    #[must_use]
    pub fn ids(&self) -> &[SessionId] {
        &self.ids
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
    /// and the invisible ones that reorder or hide text (bidirectional
    /// overrides, zero-width characters) become spaces, the ends are
    /// trimmed, and it is cut to [`Self::MAX_CHARS`]. `None` when nothing
    /// is left.
    #[must_use]
    pub fn from_header(raw: &str) -> Option<Self> {
        let shown = |c: char| !(c.is_control() || invisible(c));
        let kept: String = raw
            .trim()
            .chars()
            .take(Self::MAX_CHARS)
            .map(|c| if shown(c) { c } else { ' ' })
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

/// Format characters that change how text around them shows without
/// showing themselves: a device name could pass for another with them.
pub(crate) fn invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}' | '\u{061C}' | '\u{00AD}')
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
        assert_eq!(
            UserAgent::from_header("Safe\u{202E}exe.txt\u{200B}").map(|ua| ua.0),
            Some("Safe exe.txt".to_owned())
        );
    }

    #[test]
    fn a_reading_past_its_size_refuses_what_was_issued_before_what_it_left_out() {
        let id = |n| SessionId::from_uuid(uuid::Uuid::from_u128(n));
        let at = |s| Timestamp::from_unix_micros(s * 1_000_000).unwrap();
        let read = EndedSessions::read(vec![(id(3), at(30)), (id(1), at(10))]);
        assert!(read.refuses(id(1), at(0)) && read.refuses(id(3), at(0)));
        assert!(!read.refuses(id(2), at(0)));
        let max = u128::try_from(EndedSessions::MAX).unwrap();
        // Ended at 100 + n: the newest first.
        let ended = |n: u128| (id(n), at(100 + i64::try_from(n).unwrap()));
        let full = EndedSessions::read((0..max).rev().map(ended).collect());
        assert!(!full.refuses(id(max + 5), at(0)));
        let over = EndedSessions::read((0..=max).rev().map(ended).collect());
        // (the oldest, id 0 ended at 100, was left out)
        assert!(
            over.refuses(id(max + 5), at(100)),
            "issued before what was left out ended"
        );
        assert!(!over.refuses(id(max + 5), at(101)), "a later sign-in acts");
        assert!(
            over.refuses(id(max), at(5000)),
            "one read is refused whenever issued"
        );
        assert!(!EndedSessions::none().refuses(id(1), at(1)));
    }

    #[test]
    fn kinds_read_back_as_written() {
        for kind in [SessionKind::Login, SessionKind::ApiToken] {
            assert_eq!(SessionKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SessionKind::parse("Login"), None);
    }
}
