//! Second factors: users' TOTP authenticators, their recovery codes, and
//! the two-step logins waiting for a code (`migrations/*/…_second_factors`);
//! passkeys and their ceremonies' first steps (`migrations/*/…_passkeys`).
//!
//! Every answer that must be given once ("at most one gets `true`") rests
//! on one conditional statement whose row count or `RETURNING` row says
//! who won: PostgreSQL weighs the `WHERE` again on the row a concurrent
//! writer left (READ COMMITTED), SQLite has one writer at a time. Rows go
//! with their user by `ON DELETE CASCADE`. Writes that insert rows under a
//! user after writing others take the user's row first (`lock_owner`), as
//! a user's deletion does before it cascades: no deadlock between them. A
//! passkey is counted and stored under the user's row taken for writing
//! (`lock_for_count`): two adds for one user count in turn.

use diesel::prelude::*;
use diesel::upsert::excluded;
use todo_core::{
    CeremonyKind, CeremonyRecord, MfaChallengeRecord, MfaTokenHash, PasskeyId, PasskeyName,
    PasskeyRecord, RecoveryCodeHash, SecondFactorStore, SecondFactors, StoreError,
    TOTP_ENROLMENT_TTL, Timestamp, TotpRecord, UserId,
};

use crate::SqlStore;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{
    mfa_challenges, passkey_ceremonies, passkeys, recovery_codes, totp_authenticators, users,
};
use crate::tasks::native;
use crate::users::lock_owner;

#[derive(Queryable)]
struct TotpRow {
    user_id: String,
    sealed_secret: Vec<u8>,
    created_at: i64,
    confirmed_at: Option<i64>,
    last_step: Option<i64>,
}

impl TotpRow {
    fn into_record(self) -> Result<TotpRecord, StoreError> {
        let bad = |_| corrupt("TOTP authenticator");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(TotpRecord {
            user_id: UserId::parse(&self.user_id).map_err(bad)?,
            sealed_secret: self.sealed_secret,
            created_at: time(self.created_at)?,
            confirmed_at: self.confirmed_at.map(time).transpose()?,
            last_step: self
                .last_step
                .map(|step| u64::try_from(step).map_err(|_| corrupt("TOTP authenticator")))
                .transpose()?,
        })
    }
}

#[derive(Queryable)]
struct MfaChallengeRow {
    token_hash: String,
    user_id: String,
    created_at: i64,
    expires_at: i64,
    attempts_left: i32,
}

impl MfaChallengeRow {
    fn into_record(self) -> Result<MfaChallengeRecord, StoreError> {
        let bad = |_| corrupt("two-step login");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(MfaChallengeRecord {
            hash: MfaTokenHash::new(self.token_hash),
            user_id: UserId::parse(&self.user_id).map_err(bad)?,
            created_at: time(self.created_at)?,
            expires_at: time(self.expires_at)?,
            attempts_left: u32::try_from(self.attempts_left)
                .map_err(|_| corrupt("two-step login"))?,
        })
    }
}

#[derive(Queryable)]
struct PasskeyRow {
    id: String,
    user_id: String,
    name: String,
    credential_id: Vec<u8>,
    credential: Vec<u8>,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl PasskeyRow {
    fn into_record(self) -> Result<PasskeyRecord, StoreError> {
        let bad = |_| corrupt("passkey");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(PasskeyRecord {
            id: PasskeyId::parse(&self.id).map_err(bad)?,
            user_id: UserId::parse(&self.user_id).map_err(bad)?,
            name: PasskeyName::parse(&self.name).map_err(bad)?,
            credential_id: self.credential_id,
            credential: self.credential,
            created_at: time(self.created_at)?,
            last_used_at: self.last_used_at.map(time).transpose()?,
        })
    }
}

#[derive(Queryable)]
struct CeremonyRow {
    key: String,
    kind: String,
    user_id: Option<String>,
    state: Vec<u8>,
    expires_at: i64,
}

impl CeremonyRow {
    fn into_record(self) -> Result<CeremonyRecord, StoreError> {
        let bad = || corrupt("passkey ceremony");
        Ok(CeremonyRecord {
            key: self.key,
            kind: CeremonyKind::parse(&self.kind).ok_or_else(bad)?,
            user_id: self
                .user_id
                .map(|user| UserId::parse(&user).map_err(|_| bad()))
                .transpose()?,
            state: self.state,
            expires_at: Timestamp::from_unix_micros(self.expires_at).map_err(|_| bad())?,
        })
    }
}

/// What [`SecondFactorStore::add_passkey`] found.
enum Added {
    Stored,
    Full,
    Registered,
    NoUser,
}

/// A TOTP step as stored (`BIGINT`): steps are seconds since the epoch
/// over 30, far below `i64::MAX`; one beyond is a caller's bug.
fn stored_step(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step)
        .map_err(|_| StoreError::Internal("a TOTP step beyond the store's range".into()))
}

/// The foreign-key failure of a write under a user, named for the log.
fn missing_user(what: &'static str) -> impl FnOnce(StoreError) -> StoreError {
    move |error| match error {
        StoreError::MissingReference(_) => StoreError::MissingReference(what),
        other => other,
    }
}

/// A passkey's credential id or id stored already (a unique key's
/// failure), named for the log.
fn registered(error: StoreError) -> StoreError {
    match error {
        StoreError::Conflict(_) => StoreError::Conflict("passkey registered already"),
        other => other,
    }
}

/// Takes the user's row for the rest of the transaction, as
/// [`crate::users::lock_user_for_count`] does (PostgreSQL, `FOR NO KEY
/// UPDATE`: writers that count rows under it take turns; SQLite has one
/// writer), and answers whether the user is there.
fn lock_for_count(conn: &mut AnyConnection, user: &str) -> QueryResult<bool> {
    match conn {
        AnyConnection::Postgresql(pg) => users::table
            .filter(users::id.eq(user))
            .select(users::id)
            .for_no_key_update()
            .execute(pg)
            .map(|locked| locked == 1),
        AnyConnection::Sqlite(c) => {
            diesel::select(diesel::dsl::exists(users::table.find(user))).get_result(c)
        }
    }
}

/// Deletes `user`'s authenticator, its recovery codes and the sign-ins
/// waiting for a code (within a transaction that holds the user's row, in
/// confirm_totp's order); whether there was an authenticator.
fn delete_totp(conn: &mut AnyConnection, user: &str) -> QueryResult<bool> {
    let totp = diesel::delete(totp_authenticators::table.find(user)).execute(conn)?;
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user))).execute(conn)?;
    diesel::delete(mfa_challenges::table.filter(mfa_challenges::user_id.eq(user))).execute(conn)?;
    Ok(totp == 1)
}

impl SecondFactorStore for SqlStore {
    fn second_factors(&self, user: UserId) -> Result<SecondFactors, StoreError> {
        let user = user.to_string();
        // (reads of the login's path, each one statement kept in diesel's
        // cache: `native!`)
        let (totp, left, passkeys) = self.with_conn(|conn| {
            let totp = native!(&mut *conn, |c| totp_authenticators::table
                .find(&user)
                .first::<TotpRow>(c)
                .optional())?;
            let left: i64 = native!(&mut *conn, |c| recovery_codes::table
                .filter(recovery_codes::user_id.eq(&user))
                .filter(recovery_codes::used_at.is_null())
                .count()
                .get_result(c))?;
            let passkeys: i64 = native!(&mut *conn, |c| passkeys::table
                .filter(passkeys::user_id.eq(&user))
                .count()
                .get_result(c))?;
            Ok((totp, left, passkeys))
        })?;
        Ok(SecondFactors {
            totp: totp.map(TotpRow::into_record).transpose()?,
            recovery_codes_left: u32::try_from(left).unwrap_or(u32::MAX),
            passkeys: u32::try_from(passkeys).unwrap_or(u32::MAX),
        })
    }

    fn begin_totp(&self, enrolment: &TotpRecord) -> Result<bool, StoreError> {
        use totp_authenticators::{confirmed_at, created_at, last_step, sealed_secret};
        let row = (
            totp_authenticators::user_id.eq(enrolment.user_id.to_string()),
            sealed_secret.eq(enrolment.sealed_secret.as_slice()),
            created_at.eq(enrolment.created_at.unix_micros()),
            confirmed_at.eq(enrolment.confirmed_at.map(Timestamp::unix_micros)),
            last_step.eq(enrolment.last_step.map(stored_step).transpose()?),
        );
        // One statement: it inserts, or replaces a pending enrolment (the
        // `WHERE` of its `DO UPDATE`), or matches nothing when a confirmed
        // one is there. PostgreSQL locks the row it conflicts with and
        // weighs the `WHERE` on its latest version: a confirmation that
        // committed meanwhile is never overwritten.
        let stored = self
            .with_write_conn(|conn| {
                let upsert = diesel::insert_into(totp_authenticators::table)
                    .values(row)
                    .on_conflict(totp_authenticators::user_id)
                    .do_update()
                    .set((
                        sealed_secret.eq(excluded(sealed_secret)),
                        created_at.eq(excluded(created_at)),
                        confirmed_at.eq(excluded(confirmed_at)),
                        last_step.eq(excluded(last_step)),
                    ));
                // (the `WHERE` of `DO UPDATE`: `QueryDsl` has no `filter` for it)
                let unless_confirmed =
                    diesel::query_dsl::methods::FilterDsl::filter(upsert, confirmed_at.is_null());
                native!(conn, |c| unless_confirmed.execute(c))
            })
            .map_err(missing_user("enrolment of an unknown user"))?;
        Ok(stored == 1)
    }

    fn confirm_totp(
        &self,
        user: UserId,
        created_at: Timestamp,
        step: u64,
        confirmed_at: Timestamp,
        codes: &[RecoveryCodeHash],
    ) -> Result<bool, StoreError> {
        let user = user.to_string();
        let step = stored_step(step)?;
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // (the user's row first, as their deletion takes it before
                // it cascades to the rows written here)
                lock_owner(conn, &user)?;
                // Only the enrolment read (its `created_at`), still pending.
                let pending = totp_authenticators::table
                    .find(&user)
                    .filter(totp_authenticators::confirmed_at.is_null())
                    .filter(totp_authenticators::created_at.eq(created_at.unix_micros()));
                let confirmed = diesel::update(pending)
                    .set((
                        totp_authenticators::confirmed_at.eq(Some(confirmed_at.unix_micros())),
                        totp_authenticators::last_step.eq(Some(step)),
                    ))
                    .execute(conn)?;
                if confirmed != 1 {
                    return Ok(false);
                }
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user)))
                    .execute(conn)?;
                for code in codes {
                    insert_recovery_code(conn, &user, code)?;
                }
                Ok(true)
            })
        })
    }

    fn use_totp_step(&self, user: UserId, step: u64) -> Result<bool, StoreError> {
        let user = user.to_string();
        let step = stored_step(step)?;
        // The conditional update is the referee: of racing uses of one
        // step, the first to write it leaves a row the others' `WHERE`
        // no longer matches.
        let taken = self.with_write_conn(|conn| {
            let later = totp_authenticators::table
                .find(&user)
                .filter(totp_authenticators::confirmed_at.is_not_null())
                .filter(
                    totp_authenticators::last_step
                        .is_null()
                        .or(totp_authenticators::last_step.lt(step)),
                );
            diesel::update(later)
                .set(totp_authenticators::last_step.eq(Some(step)))
                .execute(conn)
        })?;
        Ok(taken == 1)
    }

    fn use_recovery_code(
        &self,
        user: UserId,
        code: &RecoveryCodeHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let user = user.to_string();
        let used = self.with_write_conn(|conn| {
            let unused = recovery_codes::table
                .find((&user, code.as_str()))
                .filter(recovery_codes::used_at.is_null());
            diesel::update(unused)
                .set(recovery_codes::used_at.eq(Some(at.unix_micros())))
                .execute(conn)
        })?;
        Ok(used == 1)
    }

    fn remove_second_factors(&self, user: UserId) -> Result<bool, StoreError> {
        let user = user.to_string();
        let removed = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // (the user's row first, then the rows in confirm_totp's
                // order: no deadlock with it nor with a deletion)
                lock_owner(conn, &user)?;
                let totp = delete_totp(conn, &user)?;
                let passkeys = diesel::delete(passkeys::table.filter(passkeys::user_id.eq(&user)))
                    .execute(conn)?;
                // (their registration; sign-ins' ceremonies name no user)
                diesel::delete(
                    passkey_ceremonies::table
                        .filter(passkey_ceremonies::user_id.eq(Some(user.as_str()))),
                )
                .execute(conn)?;
                Ok::<_, diesel::result::Error>(totp || passkeys > 0)
            })
        })?;
        Ok(removed)
    }

    fn remove_totp(&self, user: UserId) -> Result<bool, StoreError> {
        let user = user.to_string();
        let removed = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // (the lock order of remove_second_factors)
                lock_owner(conn, &user)?;
                delete_totp(conn, &user)
            })
        })?;
        Ok(removed)
    }

    fn create_mfa_challenge(&self, challenge: &MfaChallengeRecord) -> Result<(), StoreError> {
        let row = (
            mfa_challenges::token_hash.eq(challenge.hash.as_str()),
            mfa_challenges::user_id.eq(challenge.user_id.to_string()),
            mfa_challenges::created_at.eq(challenge.created_at.unix_micros()),
            mfa_challenges::expires_at.eq(challenge.expires_at.unix_micros()),
            mfa_challenges::attempts_left
                .eq(i32::try_from(challenge.attempts_left).unwrap_or(i32::MAX)),
        );
        self.with_write_conn(|conn| {
            diesel::insert_into(mfa_challenges::table)
                .values(row)
                .execute(conn)
        })
        .map_err(missing_user("two-step login of an unknown user"))?;
        Ok(())
    }

    fn take_mfa_attempt(
        &self,
        hash: &MfaTokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallengeRecord>, StoreError> {
        let now = now.unix_micros();
        // One statement: of racing attempts, each takes one of those left
        // (PostgreSQL weighs `attempts_left > 0` again on the row the
        // previous one left), none below zero.
        let row = self.with_write_conn(|conn| {
            native!(conn, |c| diesel::update(
                mfa_challenges::table
                    .find(hash.as_str())
                    .filter(mfa_challenges::expires_at.gt(now))
                    .filter(mfa_challenges::attempts_left.gt(0)),
            )
            .set(mfa_challenges::attempts_left.eq(mfa_challenges::attempts_left - 1))
            .returning(mfa_challenges::all_columns)
            .get_result::<MfaChallengeRow>(c)
            .optional())
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut before = row.into_record()?;
        // (as it was before this attempt)
        before.attempts_left = before.attempts_left.saturating_add(1);
        Ok(Some(before))
    }

    fn finish_mfa_challenge(&self, hash: &MfaTokenHash) -> Result<bool, StoreError> {
        let deleted = self.with_write_conn(|conn| {
            diesel::delete(mfa_challenges::table.find(hash.as_str())).execute(conn)
        })?;
        Ok(deleted == 1)
    }

    fn purge_second_factors(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let stale = cutoff.saturating_sub(TOTP_ENROLMENT_TTL).unix_micros();
        let cutoff = cutoff.unix_micros();
        let purged = self.with_write_conn(|conn| {
            let challenges =
                diesel::delete(mfa_challenges::table.filter(mfa_challenges::expires_at.le(cutoff)))
                    .execute(conn)?;
            // (a confirmation that commits first takes its row out of the
            // `WHERE`, which PostgreSQL weighs again after waiting for it)
            let enrolments = diesel::delete(
                totp_authenticators::table
                    .filter(totp_authenticators::confirmed_at.is_null())
                    .filter(totp_authenticators::created_at.le(stale)),
            )
            .execute(conn)?;
            let ceremonies = diesel::delete(
                passkey_ceremonies::table.filter(passkey_ceremonies::expires_at.le(cutoff)),
            )
            .execute(conn)?;
            Ok(challenges + enrolments + ceremonies)
        })?;
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }

    fn list_passkeys(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let user = user.to_string();
        // (ids are UUIDv7 text, `COLLATE "C"` on PostgreSQL, bytes on
        // SQLite: their order is the memory store's, by UUID)
        let rows = self.with_conn(|conn| {
            passkeys::table
                .filter(passkeys::user_id.eq(&user))
                .order((passkeys::created_at, passkeys::id))
                .load::<PasskeyRow>(conn)
        })?;
        rows.into_iter().map(PasskeyRow::into_record).collect()
    }

    fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        // (a passkey sign-in's read: one statement kept in diesel's cache)
        let row = self.with_conn(|conn| {
            native!(conn, |c| passkeys::table
                .filter(passkeys::credential_id.eq(credential_id))
                .first::<PasskeyRow>(c)
                .optional())
        })?;
        row.map(PasskeyRow::into_record).transpose()
    }

    fn add_passkey(&self, passkey: &PasskeyRecord, max: usize) -> Result<bool, StoreError> {
        let user = passkey.user_id.to_string();
        let id = passkey.id.to_string();
        let row = (
            passkeys::id.eq(&id),
            passkeys::user_id.eq(&user),
            passkeys::name.eq(passkey.name.as_str()),
            passkeys::credential_id.eq(passkey.credential_id.as_slice()),
            passkeys::credential.eq(passkey.credential.as_slice()),
            passkeys::created_at.eq(passkey.created_at.unix_micros()),
            passkeys::last_used_at.eq(passkey.last_used_at.map(Timestamp::unix_micros)),
        );
        let added = self
            .with_write_conn(|conn| {
                conn.transaction(|conn| {
                    // (the user's row first, taken for writing: of two adds
                    // for one user, the second counts the first's row; and
                    // a deletion waits, or is waited for, before it
                    // cascades)
                    if !lock_for_count(conn, &user)? {
                        return Ok(Added::NoUser);
                    }
                    let theirs: i64 = passkeys::table
                        .filter(passkeys::user_id.eq(&user))
                        .count()
                        .get_result(conn)?;
                    if usize::try_from(theirs).unwrap_or(usize::MAX) >= max {
                        // (a credential stored already is a conflict first,
                        // as the memory store answers it)
                        let stored = passkeys::table
                            .filter(
                                passkeys::credential_id
                                    .eq(passkey.credential_id.as_slice())
                                    .or(passkeys::id.eq(&id)),
                            )
                            .select(passkeys::id);
                        let stored: bool =
                            diesel::select(diesel::dsl::exists(stored)).get_result(conn)?;
                        return Ok(if stored {
                            Added::Registered
                        } else {
                            Added::Full
                        });
                    }
                    // (a credential id or id stored already fails its
                    // unique key: a conflict, whoever's it is)
                    diesel::insert_into(passkeys::table)
                        .values(row)
                        .execute(conn)?;
                    Ok(Added::Stored)
                })
            })
            .map_err(registered)
            .map_err(missing_user("passkey of an unknown user"))?;
        match added {
            Added::Stored => Ok(true),
            Added::Full => Ok(false),
            Added::Registered => Err(StoreError::Conflict("passkey registered already")),
            Added::NoUser => Err(StoreError::MissingReference("passkey of an unknown user")),
        }
    }

    fn passkey_used(
        &self,
        id: PasskeyId,
        read: &[u8],
        credential: Option<&[u8]>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        let at = Some(at.unix_micros());
        let updated = self.with_write_conn(|conn| {
            // (compare and set: a credential changed since it was read is
            // a sign-in that lost a race, attack of session 28, F2)
            let passkey = passkeys::table
                .find(&id)
                .filter(passkeys::credential.eq(read));
            match credential {
                Some(credential) => diesel::update(passkey)
                    .set((
                        passkeys::last_used_at.eq(at),
                        passkeys::credential.eq(credential),
                    ))
                    .execute(conn),
                None => diesel::update(passkey)
                    .set(passkeys::last_used_at.eq(at))
                    .execute(conn),
            }
        })?;
        Ok(updated == 1)
    }

    fn remove_passkey(&self, user: UserId, id: PasskeyId) -> Result<bool, StoreError> {
        let (user, id) = (user.to_string(), id.to_string());
        // (owner scoping in the statement: another user's id matches nothing)
        let removed = self.with_write_conn(|conn| {
            diesel::delete(
                passkeys::table
                    .find(&id)
                    .filter(passkeys::user_id.eq(&user)),
            )
            .execute(conn)
        })?;
        Ok(removed == 1)
    }

    fn put_ceremony(&self, ceremony: &CeremonyRecord) -> Result<(), StoreError> {
        use passkey_ceremonies::{expires_at, kind, state, user_id};
        let row = (
            passkey_ceremonies::key.eq(ceremony.key.as_str()),
            kind.eq(ceremony.kind.as_str()),
            user_id.eq(ceremony.user_id.map(|user| user.to_string())),
            state.eq(ceremony.state.as_slice()),
            expires_at.eq(ceremony.expires_at.unix_micros()),
        );
        // One statement, which writes one row: no lock of the user's row
        // first (a deletion's cascade and this wait for each other's one
        // row at most).
        self.with_write_conn(|conn| {
            native!(conn, |c| diesel::insert_into(passkey_ceremonies::table)
                .values(row)
                .on_conflict(passkey_ceremonies::key)
                .do_update()
                .set((
                    kind.eq(excluded(kind)),
                    user_id.eq(excluded(user_id)),
                    state.eq(excluded(state)),
                    expires_at.eq(excluded(expires_at)),
                ))
                .execute(c))
        })
        .map_err(missing_user("passkey ceremony of an unknown user"))?;
        Ok(())
    }

    fn take_ceremony(
        &self,
        key: &str,
        kind: CeremonyKind,
        now: Timestamp,
    ) -> Result<Option<CeremonyRecord>, StoreError> {
        // One statement deletes it and answers it: of racing takes, the
        // one whose delete finds the row gets it (PostgreSQL's others
        // wait for it, then find it gone).
        let row = self.with_write_conn(|conn| {
            native!(conn, |c| diesel::delete(
                passkey_ceremonies::table.find(key)
            )
            .returning(passkey_ceremonies::all_columns)
            .get_result::<CeremonyRow>(c)
            .optional())
        })?;
        let Some(taken) = row.map(CeremonyRow::into_record).transpose()? else {
            return Ok(None);
        };
        // (a dead one, or one of another kind, is gone all the same)
        Ok((taken.kind == kind && now < taken.expires_at).then_some(taken))
    }
}

/// Stores one of a confirmation's recovery codes (a code given twice is
/// stored once, as the memory store keeps it).
fn insert_recovery_code(
    conn: &mut AnyConnection,
    user: &str,
    code: &RecoveryCodeHash,
) -> QueryResult<usize> {
    let row = (
        recovery_codes::user_id.eq(user),
        recovery_codes::code_hash.eq(code.as_str()),
        recovery_codes::used_at.eq(None::<i64>),
    );
    native!(conn, |c| diesel::insert_into(recovery_codes::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))
}
