//! Second factors: users' TOTP authenticators, their recovery codes, and
//! the two-step logins waiting for a code (`migrations/*/…_second_factors`).
//!
//! Every answer that must be given once ("at most one gets `true`") rests
//! on one conditional statement whose row count or `RETURNING` row says
//! who won: PostgreSQL weighs the `WHERE` again on the row a concurrent
//! writer left (READ COMMITTED), SQLite has one writer at a time. Rows go
//! with their user by `ON DELETE CASCADE`. Writes that insert rows under a
//! user after writing others take the user's row first (`lock_owner`), as
//! a user's deletion does before it cascades: no deadlock between them.

use diesel::prelude::*;
use diesel::upsert::excluded;
use todo_core::{
    MfaChallengeRecord, MfaTokenHash, RecoveryCodeHash, SecondFactorStore, SecondFactors,
    StoreError, TOTP_ENROLMENT_TTL, Timestamp, TotpRecord, UserId,
};

use crate::SqlStore;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{mfa_challenges, recovery_codes, totp_authenticators};
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

impl SecondFactorStore for SqlStore {
    fn second_factors(&self, user: UserId) -> Result<SecondFactors, StoreError> {
        let user = user.to_string();
        // (two reads of the login's path, each one statement kept in
        // diesel's cache: `native!`)
        let (totp, left) = self.with_conn(|conn| {
            let totp = native!(&mut *conn, |c| totp_authenticators::table
                .find(&user)
                .first::<TotpRow>(c)
                .optional())?;
            let left: i64 = native!(&mut *conn, |c| recovery_codes::table
                .filter(recovery_codes::user_id.eq(&user))
                .filter(recovery_codes::used_at.is_null())
                .count()
                .get_result(c))?;
            Ok((totp, left))
        })?;
        Ok(SecondFactors {
            totp: totp.map(TotpRow::into_record).transpose()?,
            recovery_codes_left: u32::try_from(left).unwrap_or(u32::MAX),
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
                let totp = diesel::delete(totp_authenticators::table.find(&user)).execute(conn)?;
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user)))
                    .execute(conn)?;
                diesel::delete(mfa_challenges::table.filter(mfa_challenges::user_id.eq(&user)))
                    .execute(conn)?;
                Ok::<_, diesel::result::Error>(totp)
            })
        })?;
        Ok(removed == 1)
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
            Ok(challenges + enrolments)
        })?;
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
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
