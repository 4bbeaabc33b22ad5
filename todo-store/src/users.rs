//! Users and refresh tokens: auth-server's tables.

use diesel::prelude::*;
use todo_core::{
    ApiTokenHash, ApiTokenRecord, Email, EmailTokenHash, EmailVerificationRecord, EndedSessions,
    PasswordHash, PasswordResetRecord, Project, RefreshTokenHash, RefreshTokenRecord,
    RefreshTokenStore, ResetTokenHash, Role, SessionId, SessionRecord, StoreError, Timestamp, User,
    UserChange, UserId, UserRecord, UserStore, Username,
};

use crate::SqlStore;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{
    api_tokens, email_verifications, login_failures, password_resets, project_members, projects,
    refresh_tokens, sessions, users,
};
use crate::sessions::{ApiTokenRow, LISTED_SESSIONS, SessionRow, Which};

#[diesel::declare_sql_function]
extern "SQL" {
    /// SQL's `lower` (ASCII case on SQLite; more on PostgreSQL).
    fn lower(
        text: diesel::sql_types::Nullable<diesel::sql_types::Text>,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

#[derive(Queryable, Insertable, AsChangeset)]
#[diesel(table_name = users, treat_none_as_null = true)]
struct UserRow {
    id: String,
    username: String,
    email: Option<String>,
    role: String,
    disabled: i16,
    password_hash: String,
    tokens_revoked_before: Option<i64>,
    created_at: i64,
    updated_at: i64,
    email_verified: i16,
}

/// The columns one write changes: `None` leaves a column alone.
#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChangeRow {
    email: Option<Option<String>>,
    email_verified: Option<i16>,
    role: Option<String>,
    disabled: Option<i16>,
    tokens_revoked_before: Option<Option<i64>>,
    updated_at: i64,
}

impl UserRow {
    fn from_record(record: &UserRecord) -> Self {
        let user = &record.user;
        Self {
            id: user.id.to_string(),
            username: user.username.as_str().to_owned(),
            email: user.email.as_ref().map(|e| e.as_str().to_owned()),
            role: user.role.as_str().to_owned(),
            disabled: i16::from(user.disabled),
            password_hash: record.password_hash.as_str().to_owned(),
            tokens_revoked_before: record.tokens_revoked_before.map(Timestamp::unix_micros),
            created_at: user.created_at.unix_micros(),
            updated_at: user.updated_at.unix_micros(),
            email_verified: i16::from(user.email_verified),
        }
    }

    fn into_record(self) -> Result<UserRecord, StoreError> {
        let bad = |_| corrupt("user");
        let user = User {
            id: UserId::parse(&self.id).map_err(bad)?,
            username: Username::parse(&self.username).map_err(bad)?,
            email: self
                .email
                .as_deref()
                .map(Email::from_stored)
                .transpose()
                .map_err(bad)?,
            email_verified: self.email_verified != 0,
            role: Role::parse(&self.role).map_err(bad)?,
            disabled: self.disabled != 0,
            created_at: Timestamp::from_unix_micros(self.created_at).map_err(bad)?,
            updated_at: Timestamp::from_unix_micros(self.updated_at).map_err(bad)?,
        };
        let tokens_revoked_before = self
            .tokens_revoked_before
            .map(Timestamp::from_unix_micros)
            .transpose()
            .map_err(bad)?;
        Ok(UserRecord {
            user,
            password_hash: PasswordHash::new(self.password_hash),
            tokens_revoked_before,
        })
    }
}

impl UserStore for SqlStore {
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let row = UserRow::from_record(user);
        // Every account comes with its Inbox, in the same transaction.
        let inbox = Project::inbox(user.user.id, user.user.created_at);
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                diesel::insert_into(users::table)
                    .values(&row)
                    .execute(conn)?;
                // Their stream's bookkeeping (the relay and webhooks go
                // through these rows, one a user).
                diesel::insert_into(crate::schema::change_streams::table)
                    .values(crate::schema::change_streams::owner_id.eq(&row.id))
                    .execute(conn)?;
                crate::projects::ensure_inbox_on(conn, &inbox)
            })
        })?;
        Ok(())
    }

    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let id = id.to_string();
        let row =
            self.with_conn(|conn| users::table.find(&id).first::<UserRow>(conn).optional())?;
        row.map(UserRow::into_record).transpose()
    }

    fn find_user_by_username(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let row = self.with_conn(|conn| {
            users::table
                .filter(users::username.eq(username.as_str()))
                .first::<UserRow>(conn)
                .optional()
        })?;
        row.map(UserRow::into_record).transpose()
    }

    fn update_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let row = UserRow::from_record(user);
        let n = self.with_write_conn(|conn| {
            diesel::update(users::table.find(&row.id))
                .set(&row)
                .execute(conn)
        })?;
        Ok(n == 1)
    }

    fn change_user(&self, id: UserId, change: &UserChange) -> Result<bool, StoreError> {
        let row = UserChangeRow {
            email: change
                .email
                .as_ref()
                .map(|e| e.as_ref().map(|e| e.as_str().to_owned())),
            // (a change of address unverifies it, in the same write)
            email_verified: change.email.as_ref().map(|_| 0),
            role: change.role.map(|r| r.as_str().to_owned()),
            disabled: change.disabled.map(i16::from),
            tokens_revoked_before: change.revoke_before.map(|t| Some(t.unix_micros())),
            updated_at: change.updated_at.unix_micros(),
        };
        let id = id.to_string();
        let moved = change.email.is_some();
        let n = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                let n = diesel::update(users::table.find(&id))
                    .set(&row)
                    .execute(conn)?;
                // (links mailed to the old address die with the move)
                if moved {
                    diesel::delete(password_resets::table.filter(password_resets::user_id.eq(&id)))
                        .execute(conn)?;
                    diesel::delete(
                        email_verifications::table.filter(email_verifications::user_id.eq(&id)),
                    )
                    .execute(conn)?;
                }
                Ok::<_, diesel::result::Error>(n)
            })
        })?;
        Ok(n == 1)
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
        updated_at: Timestamp,
        revoke_before: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let row = UserChangeRow {
            email: None,
            email_verified: None,
            role: None,
            disabled: None,
            tokens_revoked_before: revoke_before.map(|t| Some(t.unix_micros())),
            updated_at: updated_at.unix_micros(),
        };
        let id = id.to_string();
        let n = self.with_write_conn(|conn| {
            let unchanged = users::table
                .find(&id)
                .filter(users::password_hash.eq(expected.as_str()));
            diesel::update(unchanged)
                .set((&row, users::password_hash.eq(new.as_str())))
                .execute(conn)
        })?;
        Ok(n == 1)
    }

    fn delete_user(&self, id: UserId, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_string();
        // Tasks, labels, refresh tokens, their bookkeeping row
        // (`change_streams`), the changes addressed to them, their projects
        // (with their changes) and memberships go with the user (ON DELETE
        // CASCADE). On PostgreSQL
        // the projects they belong to are taken first, in id order, as
        // every project write and every writer of a shared project's tasks
        // takes its project before any account or count: then the user's
        // row, as every exchange of a refresh token locks it first
        // (`lock_owner`). No deadlock either way.
        let n = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                if let AnyConnection::Postgresql(pg) = conn {
                    let theirs = project_members::table
                        .filter(project_members::user_id.eq(&id))
                        .select(project_members::project_id);
                    projects::table
                        .filter(projects::id.eq_any(theirs))
                        .order(projects::id)
                        .select(projects::id)
                        .for_no_key_update()
                        .execute(pg)?;
                }
                crate::projects::tell_of_leaving(conn, &id, at)?;
                // Their password confirmations' counts (`u:<id>`, per
                // session `u:<id>:<session>`), their codes' (`f:<id>`, per
                // device `f:<id>:<device>`) and
                // their name's login failures go too: nothing keyed by
                // them stays.
                let counted = format!("u:{id}%");
                let name: Option<String> = users::table
                    .find(&id)
                    .select(users::username)
                    .first(conn)
                    .optional()?;
                let failures = login_failures::table.filter(
                    login_failures::throttle_key
                        .like(&counted)
                        .or(login_failures::throttle_key
                            .eq(format!("a:{}", name.unwrap_or_default())))
                        .or(login_failures::throttle_key.like(format!("f:{id}%"))),
                );
                diesel::delete(failures).execute(conn)?;
                // (their changes and their projects' go with them; the
                // numbering passes over the rows this holds meanwhile)
                diesel::delete(users::table.find(&id)).execute(conn)
            })
        })?;
        Ok(n == 1)
    }

    fn list_users(&self, after: Option<UserId>, limit: usize) -> Result<Vec<User>, StoreError> {
        let after = after.map(|id| id.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_conn(|conn| {
            let mut query = users::table
                .order(users::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = &after {
                query = query.filter(users::id.gt(after));
            }
            query.load::<UserRow>(conn)
        })?;
        rows.into_iter()
            .map(|row| row.into_record().map(|r| r.user))
            .collect()
    }

    fn find_standing(
        &self,
        id: UserId,
        ended_since: Timestamp,
    ) -> Result<Option<(UserRecord, EndedSessions)>, StoreError> {
        let id = id.to_string();
        let read = self.with_conn(|conn| {
            let Some(user) = users::table.find(&id).first::<UserRow>(conn).optional()? else {
                return Ok(None);
            };
            let ended: Vec<(String, Option<i64>)> = sessions::table
                .filter(sessions::user_id.eq(&id))
                .filter(sessions::ended_at.ge(ended_since.unix_micros()))
                .order(sessions::ended_at.desc())
                .select((sessions::id, sessions::ended_at))
                .limit(
                    i64::try_from(EndedSessions::MAX)
                        .unwrap_or(i64::MAX)
                        .saturating_add(1),
                )
                .load(conn)?;
            Ok(Some((user, ended)))
        })?;
        let Some((user, ended)) = read else {
            return Ok(None);
        };
        let bad = |_| corrupt("session");
        let ended = ended
            .into_iter()
            .map(|(id, at)| {
                let at = Timestamp::from_unix_micros(at.unwrap_or(i64::MIN)).map_err(bad)?;
                Ok((SessionId::parse(&id).map_err(bad)?, at))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((user.into_record()?, EndedSessions::read(ended))))
    }

    fn find_api_token(&self, hash: &ApiTokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        let row = self.with_conn(|conn| {
            api_tokens::table
                .inner_join(sessions::table)
                .filter(api_tokens::token_hash.eq(hash.as_str()))
                .select((api_tokens::all_columns, sessions::all_columns))
                .first::<(ApiTokenRow, SessionRow)>(conn)
                .optional()
        })?;
        row.map(|(token, session)| token.into_record(session))
            .transpose()
    }

    fn create_password_reset(&self, reset: &PasswordResetRecord) -> Result<(), StoreError> {
        let row = (
            password_resets::token_hash.eq(reset.hash.as_str()),
            password_resets::user_id.eq(reset.user_id.to_string()),
            password_resets::created_at.eq(reset.created_at.unix_micros()),
            password_resets::expires_at.eq(reset.expires_at.unix_micros()),
        );
        let user = reset.user_id.to_string();
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                diesel::delete(password_resets::table.filter(password_resets::user_id.eq(&user)))
                    .execute(conn)?;
                diesel::insert_into(password_resets::table)
                    .values(row)
                    .execute(conn)
            })
        })?;
        Ok(())
    }

    fn find_password_reset(
        &self,
        hash: &ResetTokenHash,
    ) -> Result<Option<PasswordResetRecord>, StoreError> {
        let row: Option<(String, String, i64, i64, Option<i64>)> = self.with_conn(|conn| {
            password_resets::table
                .find(hash.as_str())
                .first(conn)
                .optional()
        })?;
        let Some((token_hash, user_id, created_at, expires_at, used_at)) = row else {
            return Ok(None);
        };
        let bad = |_| corrupt("password reset");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(Some(PasswordResetRecord {
            hash: ResetTokenHash::new(token_hash),
            user_id: UserId::parse(&user_id).map_err(bad)?,
            created_at: time(created_at)?,
            expires_at: time(expires_at)?,
            used_at: used_at.map(time).transpose()?,
        }))
    }

    fn delete_password_resets(&self, user: UserId) -> Result<(), StoreError> {
        let user = user.to_string();
        self.with_write_conn(|conn| {
            diesel::delete(password_resets::table.filter(password_resets::user_id.eq(&user)))
                .execute(conn)
        })?;
        Ok(())
    }

    fn use_password_reset(
        &self,
        hash: &ResetTokenHash,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let now = now.unix_micros();
        let n = self.with_write_conn(|conn| {
            // Its user enabled, and no cut since it was made (a password
            // change or a disabling that committed first): in the same
            // statement, so neither can be overtaken.
            let standing =
                users::table
                    .filter(users::disabled.eq(0))
                    .filter(users::tokens_revoked_before.is_null().or(
                        users::tokens_revoked_before.le(password_resets::created_at.nullable()),
                    ))
                    .select(users::id);
            diesel::update(
                password_resets::table
                    .filter(password_resets::token_hash.eq(hash.as_str()))
                    .filter(password_resets::used_at.is_null())
                    .filter(password_resets::expires_at.gt(now))
                    .filter(password_resets::user_id.eq_any(standing)),
            )
            .set(password_resets::used_at.eq(Some(now)))
            .execute(conn)
        })?;
        Ok(n == 1)
    }

    fn find_users_by_verified_email(
        &self,
        email: &Email,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_conn(|conn| {
            // (`lower` on both sides: the index on `lower(email)`; more
            // rows than asked for, as the ASCII filter below may drop some)
            users::table
                .filter(users::email_verified.eq(1))
                .filter(lower(users::email).eq(lower(Some(email.as_str()))))
                .order((users::created_at, users::id))
                .limit(limit.saturating_mul(4))
                .load::<UserRow>(conn)
        })?;
        // PostgreSQL's `lower` folds more than ASCII: what it found beyond
        // ASCII case is left out, as SQLite and the memory store leave it.
        rows.into_iter()
            .filter(|row| {
                row.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email.as_str()))
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(UserRow::into_record)
            .collect()
    }

    fn create_email_verification(&self, link: &EmailVerificationRecord) -> Result<(), StoreError> {
        let row = (
            email_verifications::token_hash.eq(link.hash.as_str()),
            email_verifications::user_id.eq(link.user_id.to_string()),
            email_verifications::email.eq(link.email.as_str()),
            email_verifications::created_at.eq(link.created_at.unix_micros()),
            email_verifications::expires_at.eq(link.expires_at.unix_micros()),
        );
        let user = link.user_id.to_string();
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                diesel::delete(
                    email_verifications::table.filter(email_verifications::user_id.eq(&user)),
                )
                .execute(conn)?;
                diesel::insert_into(email_verifications::table)
                    .values(row)
                    .execute(conn)
            })
        })?;
        Ok(())
    }

    fn use_email_verification(
        &self,
        hash: &EmailTokenHash,
        now: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        let now = now.unix_micros();
        let verified = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                let link: Option<(String, String)> = email_verifications::table
                    .find(hash.as_str())
                    .filter(email_verifications::expires_at.gt(now))
                    .select((email_verifications::user_id, email_verifications::email))
                    .first(conn)
                    .optional()?;
                let Some((user, email)) = link else {
                    return Ok(None);
                };
                // Spent first: of two uses at once, the one whose delete
                // took the row goes on.
                let spent =
                    diesel::delete(email_verifications::table.find(hash.as_str())).execute(conn)?;
                if spent != 1 {
                    return Ok(None);
                }
                // Only the address it was sent to: a change since wins.
                let marked = diesel::update(
                    users::table
                        .find(&user)
                        .filter(users::email.eq(Some(&email))),
                )
                .set(users::email_verified.eq(1))
                .execute(conn)?;
                Ok::<_, diesel::result::Error>((marked == 1).then_some(user))
            })
        })?;
        verified
            .map(|id| UserId::parse(&id).map_err(|_| corrupt("email verification")))
            .transpose()
    }

    fn api_token_used(&self, session: SessionId, at: Timestamp) -> Result<(), StoreError> {
        let (id, at) = (session.to_string(), at.unix_micros());
        self.with_write_conn(|conn| {
            diesel::update(
                sessions::table
                    .filter(sessions::id.eq(&id))
                    .filter(sessions::last_used_at.lt(at)),
            )
            .set(sessions::last_used_at.eq(at))
            .execute(conn)
        })?;
        Ok(())
    }
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = refresh_tokens)]
struct RefreshTokenRow {
    token_hash: String,
    family_id: String,
    user_id: String,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked: i16,
    grace_exchanges: i32,
}

impl RefreshTokenRow {
    fn from_record(token: &RefreshTokenRecord) -> Self {
        Self {
            token_hash: token.hash.as_str().to_owned(),
            family_id: token.family.to_string(),
            user_id: token.user_id.to_string(),
            issued_at: token.issued_at.unix_micros(),
            expires_at: token.expires_at.unix_micros(),
            used_at: token.used_at.map(Timestamp::unix_micros),
            revoked: i16::from(token.revoked),
            grace_exchanges: i32::try_from(token.grace_exchanges).unwrap_or(i32::MAX),
        }
    }

    fn into_record(self) -> Result<RefreshTokenRecord, StoreError> {
        let bad = |_| corrupt("refresh token");
        Ok(RefreshTokenRecord {
            hash: RefreshTokenHash::new(self.token_hash),
            family: SessionId::parse(&self.family_id).map_err(bad)?,
            user_id: UserId::parse(&self.user_id).map_err(bad)?,
            issued_at: Timestamp::from_unix_micros(self.issued_at).map_err(bad)?,
            expires_at: Timestamp::from_unix_micros(self.expires_at).map_err(bad)?,
            used_at: self
                .used_at
                .map(Timestamp::from_unix_micros)
                .transpose()
                .map_err(bad)?,
            revoked: self.revoked != 0,
            grace_exchanges: u32::try_from(self.grace_exchanges)
                .map_err(|_| corrupt("refresh token"))?,
        })
    }
}

impl RefreshTokenStore for SqlStore {
    fn start_session(
        &self,
        session: &SessionRecord,
        first: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        if first.family != session.id || first.user_id != session.user_id {
            return Err(StoreError::Conflict(
                "a session's first token is of another",
            ));
        }
        let now = session.created_at.unix_micros();
        let session = SessionRow::from_record(session);
        let token = RefreshTokenRow::from_record(first);
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                lock_owner(conn, &token.user_id)?;
                diesel::insert_into(sessions::table)
                    .values(&session)
                    .execute(conn)?;
                diesel::insert_into(refresh_tokens::table)
                    .values(&token)
                    .execute(conn)?;
                crate::sessions::end_past_cap(conn, &token.user_id, now)
            })
        })?;
        Ok(())
    }

    fn find_refresh_token(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let row = self.with_conn(|conn| {
            refresh_tokens::table
                .find(hash.as_str())
                .first::<RefreshTokenRow>(conn)
                .optional()
        })?;
        row.map(RefreshTokenRow::into_record).transpose()
    }

    fn rotate_refresh_token(
        &self,
        old: &RefreshTokenHash,
        replacement: &RefreshTokenRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let row = RefreshTokenRow::from_record(replacement);
        let now = now.unix_micros();
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                lock_owner(conn, &row.user_id)?;
                // The conditional update is the race's referee: the row lock
                // (PostgreSQL) or the write lock (SQLite) lets one caller
                // through; the others then see `used_at` set and match nothing.
                let live = refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(old.as_str()))
                    .filter(refresh_tokens::used_at.is_null())
                    .filter(refresh_tokens::revoked.eq(0))
                    .filter(refresh_tokens::expires_at.gt(now));
                let claimed = diesel::update(live)
                    .set(refresh_tokens::used_at.eq(Some(now)))
                    .execute(conn)?;
                if claimed == 0 || family_revoked(conn, &row.family_id)? {
                    // Rolled back: nothing of this exchange stays.
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                diesel::insert_into(refresh_tokens::table)
                    .values(&row)
                    .execute(conn)?;
                crate::sessions::used(conn, &row.family_id, &row.user_id, now, row.expires_at)?;
                Ok(true)
            })
            .or_else(rolled_back_is_no)
        })
    }

    fn exchange_again_within_grace(
        &self,
        old: &RefreshTokenHash,
        replacement: &RefreshTokenRecord,
        since: Timestamp,
        max: u32,
    ) -> Result<bool, StoreError> {
        let row = RefreshTokenRow::from_record(replacement);
        let since = since.unix_micros();
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                lock_owner(conn, &row.user_id)?;
                // The conditional increment is the count's referee: it takes
                // the old token's row lock (PostgreSQL, which weighs the
                // `WHERE` again on the row a concurrent exchange left) or
                // the write lock (SQLite), so of any number of racing
                // replays at most `max` match. It also orders a family
                // revocation before this transaction (the filter finds the
                // token revoked) or after it; a sibling that slips past
                // one is caught by `family_revoked` at its own exchange.
                let lately = refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(old.as_str()))
                    .filter(refresh_tokens::revoked.eq(0))
                    .filter(refresh_tokens::used_at.ge(since))
                    .filter(refresh_tokens::grace_exchanges.lt(max));
                let touched = diesel::update(lately)
                    .set(refresh_tokens::grace_exchanges.eq(refresh_tokens::grace_exchanges + 1))
                    .execute(conn)?;
                if touched == 0 || family_revoked(conn, &row.family_id)? {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                diesel::insert_into(refresh_tokens::table)
                    .values(&row)
                    .execute(conn)?;
                let at = row.issued_at;
                crate::sessions::used(conn, &row.family_id, &row.user_id, at, row.expires_at)?;
                Ok(true)
            })
            .or_else(rolled_back_is_no)
        })
    }

    fn list_sessions(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let user = user.to_string();
        let rows = self.with_conn(|conn| {
            // (a login that raced its account's revocation cut started dead)
            let cut = revocation_cut(conn, &user)?;
            sessions::table
                .filter(sessions::user_id.eq(&user))
                .filter(sessions::ended_at.is_null())
                .filter(sessions::expires_at.gt(now.unix_micros()))
                .filter(sessions::created_at.ge(cut))
                .order(sessions::id.desc())
                .limit(LISTED_SESSIONS)
                .load::<SessionRow>(conn)
        })?;
        rows.into_iter().map(SessionRow::into_record).collect()
    }

    fn end_session(&self, user: UserId, id: SessionId, now: Timestamp) -> Result<bool, StoreError> {
        let (user, id) = (user.to_string(), id.to_string());
        let ended = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                crate::sessions::end(conn, &user, &Which::One(&id), now.unix_micros())
            })
        })?;
        Ok(ended == 1)
    }

    fn end_other_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (user, keep) = (user.to_string(), keep.map(|k| k.to_string()));
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                let which = Which::AllBut(keep.as_deref());
                crate::sessions::end(conn, &user, &which, now.unix_micros())
            })
        })
    }

    fn end_older_sessions(
        &self,
        user: UserId,
        than: SessionId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (user, than) = (user.to_string(), than.to_string());
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                crate::sessions::end_older(conn, &user, &than, now.unix_micros())
            })
        })
    }

    fn create_api_token(
        &self,
        token: &ApiTokenRecord,
        max_live: usize,
    ) -> Result<bool, StoreError> {
        self.with_write_conn(|conn| {
            conn.transaction(|conn| crate::sessions::create_api_token(conn, token, max_live))
        })?
        .ok_or(StoreError::MissingReference(
            "API token of a user gone, disabled or revoked since",
        ))
    }

    fn list_api_tokens(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let user = user.to_string();
        let rows = self.with_conn(|conn| {
            // (a token made as its account's cut was taken is dead: the gate
            // refuses it, so it is not listed either)
            let cut = revocation_cut(conn, &user)?;
            api_tokens::table
                .inner_join(sessions::table)
                .filter(sessions::user_id.eq(&user))
                .filter(sessions::created_at.ge(cut))
                .filter(sessions::ended_at.is_null())
                .filter(sessions::expires_at.gt(now.unix_micros()))
                .order(sessions::id.desc())
                .limit(LISTED_SESSIONS)
                .select((api_tokens::all_columns, sessions::all_columns))
                .load::<(ApiTokenRow, SessionRow)>(conn)
        })?;
        rows.into_iter()
            .map(|(token, session)| token.into_record(session))
            .collect()
    }

    fn purge_expired_refresh_tokens(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now = now.unix_micros();
        let n = self.with_write_conn(|conn| {
            diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)?;
            diesel::delete(sessions::table.filter(sessions::ended_at.le(now))).execute(conn)?;
            diesel::delete(password_resets::table.filter(password_resets::expires_at.le(now)))
                .execute(conn)?;
            diesel::delete(
                email_verifications::table.filter(email_verifications::expires_at.le(now)),
            )
            .execute(conn)?;
            diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.le(now)))
                .execute(conn)
        })?;
        Ok(n as u64)
    }
}

/// Whether any token of the family is revoked: a family once revoked stays
/// dead, whatever joined it since.
/// PostgreSQL: the token's user's row, locked against deletion (`FOR KEY
/// SHARE`, which other exchanges share) before the token's row is. Deleting
/// a user locks the user's row and then, cascading, the tokens'; an
/// exchange that locked its token first and then (inserting the next one)
/// the user deadlocked with it (v1.1 attack: 500s). Locked in the same
/// order, one waits for the other. Task writes take it first for the same
/// reason: each ends by recording its change, whose reference to the owner
/// locks the owner's row after the task's. (SQLite has one writer at a time.)
pub(crate) fn lock_owner(conn: &mut AnyConnection, user: &str) -> diesel::QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(pg) => lock_owner_pg(pg, user),
        AnyConnection::Sqlite(_) => Ok(()),
    }
}

/// [`lock_owner`] on PostgreSQL. (In diesel's form, so that it is prepared
/// once per connection: `sql_query` text is prepared at every use.)
pub(crate) fn lock_owner_pg(pg: &mut diesel::PgConnection, user: &str) -> diesel::QueryResult<()> {
    users::table
        .filter(users::id.eq(user))
        .select(users::id)
        .for_key_share()
        .execute(pg)
        .map(|_| ())
}

/// Takes the user's row for the rest of the transaction (PostgreSQL), so
/// that writers that count rows under it take turns. `FOR NO KEY UPDATE`:
/// the key-share locks of rows that refer to it (task writes) go on.
pub(crate) fn lock_user_for_count(conn: &mut AnyConnection, id: &str) -> diesel::QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        lock_user_for_count_pg(pg, id)?;
    }
    Ok(())
}

/// [`lock_user_for_count`] on PostgreSQL.
pub(crate) fn lock_user_for_count_pg(pg: &mut PgConnection, id: &str) -> diesel::QueryResult<()> {
    users::table
        .filter(users::id.eq(id))
        .select(users::id)
        .for_no_key_update()
        .execute(pg)
        .map(|_| ())
}

/// The user's revocation cut in microseconds (`i64::MIN` without one, or
/// without the user): sessions and tokens made before it are dead.
fn revocation_cut(conn: &mut AnyConnection, user: &str) -> diesel::QueryResult<i64> {
    Ok(users::table
        .find(user)
        .select(users::tokens_revoked_before)
        .first::<Option<i64>>(conn)
        .optional()?
        .flatten()
        .unwrap_or(i64::MIN))
}

fn family_revoked(conn: &mut AnyConnection, family: &str) -> diesel::QueryResult<bool> {
    let revoked = refresh_tokens::table
        .filter(refresh_tokens::family_id.eq(family))
        .filter(refresh_tokens::revoked.ne(0))
        .count()
        .get_result::<i64>(conn)?;
    Ok(revoked > 0)
}

/// A transaction rolled back on purpose answers "did not".
fn rolled_back_is_no(error: diesel::result::Error) -> diesel::QueryResult<bool> {
    match error {
        diesel::result::Error::RollbackTransaction => Ok(false),
        other => Err(other),
    }
}
