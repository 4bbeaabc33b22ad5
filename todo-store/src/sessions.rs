//! Sessions: a login and the refresh tokens that descend from it
//! (`refresh_tokens.family_id` is the session's id). The trait's methods
//! are in `users.rs`, with the refresh tokens'; these are their statements.
//!
//! Lock order on PostgreSQL, shared with the refresh-token exchange: a
//! session's tokens before the session's row. An exchange locks its token,
//! stores the next one and then moves the session's last use; an ending
//! revokes the tokens (waiting for an exchange in flight) and then marks
//! the session. Taken in the same order, one waits for the other.

use diesel::prelude::*;
use todo_core::{SessionId, SessionKind, SessionRecord, StoreError, Timestamp, UserAgent, UserId};

use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{refresh_tokens, sessions};

/// The most sessions a list answers, newest first: a login is throttled,
/// so only a very old account with a very long refresh lifetime has more.
pub(crate) const MAX_SESSIONS_LISTED: i64 = 1000;

#[derive(Queryable, Insertable)]
#[diesel(table_name = sessions)]
pub(crate) struct SessionRow {
    id: String,
    user_id: String,
    kind: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    user_agent: Option<String>,
    address: Option<String>,
    ended_at: Option<i64>,
}

impl SessionRow {
    pub(crate) fn from_record(session: &SessionRecord) -> Self {
        Self {
            id: session.id.to_string(),
            user_id: session.user_id.to_string(),
            kind: session.kind.as_str().to_owned(),
            created_at: session.created_at.unix_micros(),
            last_used_at: session.last_used_at.unix_micros(),
            expires_at: session.expires_at.unix_micros(),
            user_agent: session.user_agent.as_ref().map(|ua| ua.as_str().to_owned()),
            address: session.address.map(|ip| ip.to_string()),
            ended_at: session.ended_at.map(Timestamp::unix_micros),
        }
    }

    pub(crate) fn into_record(self) -> Result<SessionRecord, StoreError> {
        let bad = |_| corrupt("session");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(SessionRecord {
            id: SessionId::parse(&self.id).map_err(bad)?,
            user_id: UserId::parse(&self.user_id).map_err(bad)?,
            kind: SessionKind::parse(&self.kind).ok_or_else(|| corrupt("session"))?,
            created_at: time(self.created_at)?,
            last_used_at: time(self.last_used_at)?,
            expires_at: time(self.expires_at)?,
            user_agent: self.user_agent.as_deref().and_then(UserAgent::from_header),
            address: self
                .address
                .map(|a| a.parse().map_err(|_| corrupt("session")))
                .transpose()?,
            ended_at: self.ended_at.map(time).transpose()?,
        })
    }
}

/// The session `family` was used at `now` and lives until `expires_at`
/// (its newest refresh token's expiry); in the exchange's transaction.
pub(crate) fn used(
    conn: &mut AnyConnection,
    family: &str,
    now: i64,
    expires_at: i64,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(family))
        .set((
            sessions::last_used_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Which of a user's sessions an ending picks.
pub(crate) enum Which<'a> {
    /// This one.
    One(&'a str),
    /// Every one but this (or every one).
    AllBut(Option<&'a str>),
}

/// Revokes the picked sessions' refresh tokens, then ends the sessions at
/// `now` (the lock order above); returns how many sessions it ended. Only
/// the user's own are touched. Runs in the caller's transaction.
pub(crate) fn end(
    conn: &mut AnyConnection,
    user: &str,
    which: &Which<'_>,
    now: i64,
) -> QueryResult<u64> {
    let tokens = refresh_tokens::table
        .filter(refresh_tokens::user_id.eq(user))
        .filter(refresh_tokens::revoked.eq(0));
    let live = sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::ended_at.is_null());
    let revoke = refresh_tokens::revoked.eq(1);
    let end = sessions::ended_at.eq(Some(now));
    let ended = match *which {
        Which::One(id) => {
            diesel::update(tokens.filter(refresh_tokens::family_id.eq(id)))
                .set(revoke)
                .execute(conn)?;
            diesel::update(live.filter(sessions::id.eq(id)))
                .set(end)
                .execute(conn)?
        }
        Which::AllBut(keep) => {
            // No session's id is empty: without one to keep, all go.
            let keep = keep.unwrap_or("");
            diesel::update(tokens.filter(refresh_tokens::family_id.ne(keep)))
                .set(revoke)
                .execute(conn)?;
            diesel::update(live.filter(sessions::id.ne(keep)))
                .set(end)
                .execute(conn)?
        }
    };
    Ok(ended as u64)
}
