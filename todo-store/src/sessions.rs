//! Sessions: a login and the refresh tokens that descend from it
//! (`refresh_tokens.family_id` is the session's id). The trait's methods
//! are in `users.rs`, with the refresh tokens'; these are their statements.
//!
//! Lock order on PostgreSQL, shared with the refresh-token exchange: the
//! user's row (`FOR KEY SHARE` for an exchange, `FOR NO KEY UPDATE` for an
//! ending, so that endings take turns; a deletion of the user waits for
//! both), then a session's tokens, then the session's row. An exchange locks its token, stores the next one and then moves
//! the session's last use; an ending revokes the tokens (waiting for an
//! exchange in flight) and then marks the session. Taken in the same
//! order, one waits for the other. An exchange that committed while an
//! ending waited may leave its new token unrevoked (the ending's statement
//! did not see it), but never usable: its family holds a revoked token, so
//! its exchange fails, and its session is ended, so the gate refuses what
//! it issued.

use diesel::prelude::*;
use todo_core::{
    ApiTokenGrant, ApiTokenHash, ApiTokenName, ApiTokenRecord, MAX_LIVE_SESSIONS, ProjectId,
    Scopes, SessionId, SessionKind, SessionRecord, StoreError, Timestamp, UserAgent, UserId,
};

use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{api_tokens, refresh_tokens, sessions};
use crate::tasks::native;

/// The most live sessions a user has, as a query's limit.
pub(crate) const LIVE_SESSIONS: i64 = MAX_LIVE_SESSIONS as i64;

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
/// (its newest refresh token's expiry); in the exchange's transaction. A
/// family without a session row (a login made by a version before
/// sessions, during a roll) gets one here, so that it is listed and can be
/// ended.
pub(crate) fn used(
    conn: &mut AnyConnection,
    family: &str,
    user: &str,
    now: i64,
    expires_at: i64,
) -> QueryResult<()> {
    let row = (
        sessions::id.eq(family),
        sessions::user_id.eq(user),
        sessions::kind.eq(SessionKind::Login.as_str()),
        sessions::created_at.eq(now),
        sessions::last_used_at.eq(now),
        sessions::expires_at.eq(expires_at),
    );
    native!(conn, |c| diesel::insert_into(sessions::table)
        .values(row)
        .on_conflict(sessions::id)
        .do_update()
        .set((
            sessions::last_used_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(c))
    .map(|_| ())
}

/// Ends the user's oldest live logins past [`MAX_LIVE_SESSIONS`] (in a
/// login's transaction, after its session is stored); API tokens have a
/// quota of their own.
pub(crate) fn end_past_cap(conn: &mut AnyConnection, user: &str, now: i64) -> QueryResult<()> {
    let past: Vec<String> = sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::kind.eq(SessionKind::Login.as_str()))
        .filter(sessions::ended_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .order(sessions::id.desc())
        .offset(LIVE_SESSIONS)
        .limit(LIVE_SESSIONS)
        .select(sessions::id)
        .load(conn)?;
    for id in &past {
        end(conn, user, &Which::One(id), now)?;
    }
    Ok(())
}

/// Ends the user's live logins (not API tokens) older than `than` (by id: `COLLATE "C"`
/// on PostgreSQL, bytes on SQLite, so UUIDv7 text sorts by sign-in) at
/// `now`, in the caller's transaction, as [`end`] ends each; a session
/// started meanwhile is newer and untouched. Returns how many it ended.
pub(crate) fn end_older(
    conn: &mut AnyConnection,
    user: &str,
    than: &str,
    now: i64,
) -> QueryResult<u64> {
    crate::users::lock_user_for_count(conn, user)?;
    let older: Vec<String> = sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::kind.eq(SessionKind::Login.as_str()))
        .filter(sessions::ended_at.is_null())
        .filter(sessions::id.lt(than))
        .select(sessions::id)
        .load(conn)?;
    let mut ended = 0;
    for id in &older {
        ended += end(conn, user, &Which::One(id), now)?;
    }
    Ok(ended)
}

/// Which of a user's sessions an ending picks.
pub(crate) enum Which<'a> {
    /// This one.
    One(&'a str),
    /// Every one but this (or every one).
    AllBut(Option<&'a str>),
}

/// Revokes the picked sessions' refresh tokens, then ends the sessions at
/// `now` (the lock order above), recording a family without a session row
/// (a version before sessions) as an ended session when a token of it could
/// still be exchanged; returns how many live sessions it ended (an expired
/// one is ended too, uncounted). Only the user's own are touched. Runs in
/// the caller's transaction.
pub(crate) fn end(
    conn: &mut AnyConnection,
    user: &str,
    which: &Which<'_>,
    now: i64,
) -> QueryResult<u64> {
    // Endings of one user take turns (`FOR NO KEY UPDATE` on their row:
    // two endings updating the same rows in different orders would
    // deadlock); exchanges, which share the row (`FOR KEY SHARE`), go on.
    crate::users::lock_user_for_count(conn, user)?;
    let (id, keep) = match *which {
        Which::One(id) => (Some(id), None),
        // No session's id is empty: without one to keep, all go.
        Which::AllBut(keep) => (None, Some(keep.unwrap_or(""))),
    };
    // Families without a row, read before their tokens are revoked: only
    // those with a token that could still be exchanged (one whose session
    // was purged long ago stays purged).
    let mut orphans = refresh_tokens::table
        .filter(refresh_tokens::user_id.eq(user))
        .filter(refresh_tokens::revoked.eq(0))
        .filter(refresh_tokens::expires_at.gt(now))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            sessions::table.filter(sessions::id.eq(refresh_tokens::family_id)),
        )))
        .select((
            refresh_tokens::family_id,
            refresh_tokens::issued_at,
            refresh_tokens::expires_at,
        ))
        .into_boxed();
    let mut live = sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::ended_at.is_null())
        .select(sessions::id)
        .into_boxed();
    if let Some(id) = id {
        orphans = orphans.filter(refresh_tokens::family_id.eq(id));
        live = live.filter(sessions::id.eq(id));
    }
    if let Some(keep) = keep {
        orphans = orphans.filter(refresh_tokens::family_id.ne(keep));
        live = live.filter(sessions::id.ne(keep));
    }
    let orphans = orphans.load::<(String, i64, i64)>(conn)?;
    let tokens = refresh_tokens::table
        .filter(refresh_tokens::user_id.eq(user))
        .filter(refresh_tokens::revoked.eq(0));
    let revoke = refresh_tokens::revoked.eq(1);
    match (id, keep) {
        (Some(id), _) => diesel::update(tokens.filter(refresh_tokens::family_id.eq(id)))
            .set(revoke)
            .execute(conn)?,
        (None, keep) => {
            let keep = keep.unwrap_or("");
            diesel::update(tokens.filter(refresh_tokens::family_id.ne(keep)))
                .set(revoke)
                .execute(conn)?
        }
    };
    let mut families: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for (family, issued, expires) in orphans {
        let seen = families.entry(family).or_insert((issued, expires));
        seen.0 = seen.0.min(issued);
        seen.1 = seen.1.max(expires);
    }
    for (family, (first, expires)) in &families {
        let row = (
            sessions::id.eq(family),
            sessions::user_id.eq(user),
            sessions::kind.eq(SessionKind::Login.as_str()),
            sessions::created_at.eq(first),
            sessions::last_used_at.eq(first),
            sessions::expires_at.eq(expires),
            sessions::ended_at.eq(Some(now)),
        );
        native!(&mut *conn, |c| diesel::insert_into(sessions::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    let ending: Vec<String> = live.load(conn)?;
    let mut ended = 0;
    for ids in ending.chunks(500) {
        let these = sessions::table
            .filter(sessions::id.eq_any(ids))
            .filter(sessions::ended_at.is_null());
        let end = sessions::ended_at.eq(Some(now));
        let live = diesel::update(these.clone().filter(sessions::expires_at.gt(now)))
            .set(end)
            .execute(conn)?;
        diesel::update(these).set(end).execute(conn)?;
        ended += live as u64;
    }
    Ok(ended)
}

/// The most sessions a list holds: every live login, and up to a thousand
/// live API tokens (each user's quota is 50 by default).
pub(crate) const LISTED_SESSIONS: i64 = LIVE_SESSIONS + 1000;

/// What `api_tokens` keeps of a token beside its session.
#[derive(Queryable, Insertable)]
#[diesel(table_name = api_tokens)]
pub(crate) struct ApiTokenRow {
    session_id: String,
    token_hash: String,
    name: String,
    scopes: String,
    project_id: Option<String>,
}

impl ApiTokenRow {
    pub(crate) fn from_record(token: &ApiTokenRecord) -> Self {
        Self {
            session_id: token.session.id.to_string(),
            token_hash: token.hash.as_str().to_owned(),
            name: token.name.as_str().to_owned(),
            scopes: token.grant.scopes.to_stored(),
            project_id: token.grant.project.map(|p| p.to_string()),
        }
    }

    pub(crate) fn into_record(self, session: SessionRow) -> Result<ApiTokenRecord, StoreError> {
        let bad = || corrupt("API token");
        Ok(ApiTokenRecord {
            session: session.into_record()?,
            hash: ApiTokenHash::new(self.token_hash),
            name: ApiTokenName::parse(&self.name).map_err(|_| bad())?,
            grant: ApiTokenGrant {
                scopes: Scopes::from_stored(&self.scopes).ok_or_else(bad)?,
                project: self
                    .project_id
                    .map(|p| ProjectId::parse(&p).map_err(|_| bad()))
                    .transpose()?,
            },
        })
    }
}

/// Stores an API token and its session unless the user has `max_live`
/// live ones already (`Some(false)`), or is gone, disabled, or revoked
/// their tokens at or after its making (`None`: a password change or a
/// disabling that committed while it was being made, whose ending of
/// every session did not see it); in the caller's transaction. The user's
/// row is taken first (PostgreSQL), so that two at once count in turn,
/// and a password change or disabling waits or is waited for.
pub(crate) fn create_api_token(
    conn: &mut AnyConnection,
    token: &ApiTokenRecord,
    max_live: usize,
) -> QueryResult<Option<bool>> {
    let user = token.session.user_id.to_string();
    let now = token.session.created_at.unix_micros();
    crate::users::lock_user_for_count(conn, &user)?;
    let standing: Option<(i16, Option<i64>)> = crate::schema::users::table
        .find(&user)
        .select((
            crate::schema::users::disabled,
            crate::schema::users::tokens_revoked_before,
        ))
        .first(conn)
        .optional()?;
    let cut = match standing {
        Some((0, cut)) if cut.is_none_or(|cut| cut < now) => cut.unwrap_or(i64::MIN),
        _ => return Ok(None),
    };
    // (tokens made before the cut are dead, whatever their rows say)
    let live: i64 = sessions::table
        .filter(sessions::user_id.eq(&user))
        .filter(sessions::created_at.ge(cut))
        .filter(sessions::kind.eq(SessionKind::ApiToken.as_str()))
        .filter(sessions::ended_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .count()
        .get_result(conn)?;
    if usize::try_from(live).unwrap_or(usize::MAX) >= max_live {
        return Ok(Some(false));
    }
    diesel::insert_into(sessions::table)
        .values(SessionRow::from_record(&token.session))
        .execute(conn)?;
    diesel::insert_into(api_tokens::table)
        .values(ApiTokenRow::from_record(token))
        .execute(conn)?;
    Ok(Some(true))
}
