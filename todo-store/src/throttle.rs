//! Failed-login counts in the database, so that every instance sees them
//! (issue #11, finding 5): a login takes its slot with a compare-and-set
//! before its password is weighed.

use std::time::Duration;

use diesel::prelude::*;
use todo_core::{
    BackoffPolicy, LoginBackoff, RefreshTokenHash, StoreError, ThrottleKey, Timestamp, UserId,
};

use crate::SqlStore;
use crate::error::corrupt;
use crate::schema::{login_devices, login_failures};

/// A [`LoginBackoff`] over the `login_failures` table.
#[derive(Debug, Clone)]
pub struct SqlLoginBackoff {
    store: SqlStore,
    policy: BackoffPolicy,
    /// Whether this one counts second factors' codes (`f:` keys), whose
    /// policy remembers longer: each purges its own keys only.
    codes: bool,
}

/// Compare-and-set rounds before a hotly contended key answers "wait":
/// each lost round means another attempt on the key took a slot meanwhile.
const ROUNDS: usize = 8;

/// What a caller that lost every round is told to wait.
const CONTENDED: Duration = Duration::from_secs(1);

/// Devices remembered per user; older ones are forgotten.
const DEVICES_PER_USER: i64 = 16;

impl SqlLoginBackoff {
    /// Failed-login counts in `store`'s database, so every instance sees the same.
    #[must_use]
    pub fn new(store: SqlStore, policy: BackoffPolicy) -> Self {
        Self {
            store,
            policy,
            codes: false,
        }
    }

    /// Failed second-factor codes (`f:` keys) in `store`'s database,
    /// under a policy of their own: the purge of either leaves the other's
    /// keys alone.
    #[must_use]
    pub fn for_codes(store: SqlStore, policy: BackoffPolicy) -> Self {
        Self {
            store,
            policy,
            codes: true,
        }
    }

    /// One round: read the row, then insert or update it only if nobody
    /// changed it since. `None` when another attempt got there first.
    fn try_reserve(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Result<(), Duration>>, StoreError> {
        let row: Option<(i64, i64, i64)> = self.store.with_conn(|conn| {
            login_failures::table
                .find(key)
                .select((
                    login_failures::failures,
                    login_failures::last_at,
                    login_failures::blocked_until,
                ))
                .first(conn)
                .optional()
        })?;
        let at = now.unix_micros();
        let Some((failures, last_at, blocked_until)) = row else {
            let blocked = now.saturating_add(self.policy.delay_after(1)).unix_micros();
            let inserted = self.store.with_write_conn(|conn| {
                diesel::insert_into(login_failures::table)
                    .values((
                        login_failures::throttle_key.eq(key),
                        login_failures::failures.eq(1_i64),
                        login_failures::last_at.eq(at),
                        login_failures::blocked_until.eq(blocked),
                    ))
                    .execute(conn)
            });
            return match inserted {
                Ok(_) => Ok(Some(Ok(()))),
                // Another attempt inserted it first: read again.
                Err(StoreError::Conflict(_)) => Ok(None),
                Err(e) => Err(e),
            };
        };
        if at < blocked_until {
            let wait = u64::try_from(blocked_until - at).unwrap_or(0);
            return Ok(Some(Err(Duration::from_micros(wait))));
        }
        let last = Timestamp::from_unix_micros(last_at).unwrap_or(Timestamp::UNIX_EPOCH);
        let count = self
            .policy
            .next_count(u32::try_from(failures).unwrap_or(u32::MAX), last, now);
        let blocked = now
            .saturating_add(self.policy.delay_after(count))
            .unix_micros();
        let updated = self.store.with_write_conn(|conn| {
            let unchanged = login_failures::table
                .filter(login_failures::throttle_key.eq(key))
                .filter(login_failures::failures.eq(failures))
                .filter(login_failures::last_at.eq(last_at))
                .filter(login_failures::blocked_until.eq(blocked_until));
            diesel::update(unchanged)
                .set((
                    login_failures::failures.eq(i64::from(count)),
                    login_failures::last_at.eq(at),
                    login_failures::blocked_until.eq(blocked),
                ))
                .execute(conn)
        })?;
        Ok((updated == 1).then_some(Ok(())))
    }
}

impl LoginBackoff for SqlLoginBackoff {
    fn reserve(
        &self,
        key: ThrottleKey<'_>,
        now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        let key = key.to_key();
        for _ in 0..ROUNDS {
            if let Some(outcome) = self.try_reserve(&key, now)? {
                return Ok(outcome);
            }
        }
        Ok(Err(CONTENDED))
    }

    fn settle(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        let text = key.to_key();
        let failures: Option<i64> = self.store.with_conn(|conn| {
            login_failures::table
                .find(&text)
                .select(login_failures::failures)
                .first(conn)
                .optional()
        })?;
        // (this attempt was counted as one of them when its slot was taken)
        let before = failures.unwrap_or(0).saturating_sub(1);
        if before <= i64::from(self.policy.free_failures) {
            self.record_success(key)
        } else {
            self.release(key)
        }
    }

    fn release(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        let key = key.to_key();
        let row: Option<(i64, i64)> = self.store.with_conn(|conn| {
            login_failures::table
                .find(&key)
                .select((login_failures::failures, login_failures::last_at))
                .first(conn)
                .optional()
        })?;
        let Some((failures, last_at)) = row.filter(|(failures, _)| *failures > 0) else {
            return Ok(());
        };
        let count = u32::try_from(failures - 1).unwrap_or(0);
        let last = Timestamp::from_unix_micros(last_at).unwrap_or(Timestamp::UNIX_EPOCH);
        let blocked = last
            .saturating_add(self.policy.delay_after(count))
            .unix_micros();
        // Only if no other attempt changed the row since: theirs stands.
        self.store.with_write_conn(|conn| {
            let unchanged = login_failures::table
                .filter(login_failures::throttle_key.eq(&key))
                .filter(login_failures::failures.eq(failures))
                .filter(login_failures::last_at.eq(last_at));
            diesel::update(unchanged)
                .set((
                    login_failures::failures.eq(i64::from(count)),
                    login_failures::blocked_until.eq(blocked),
                ))
                .execute(conn)
        })?;
        Ok(())
    }

    fn record_success(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        let key = key.to_key();
        self.store.with_write_conn(|conn| {
            diesel::delete(login_failures::table.find(&key)).execute(conn)
        })?;
        Ok(())
    }

    fn purge(&self, now: Timestamp) -> Result<u64, StoreError> {
        let at = now.unix_micros();
        let cutoff = now.saturating_sub(self.policy.forget_after).unix_micros();
        let codes = self.codes;
        let (failures, devices) = self.store.with_write_conn(|conn| {
            let stale = login_failures::table
                .filter(login_failures::last_at.lt(cutoff))
                .filter(login_failures::blocked_until.le(at));
            let failures = if codes {
                diesel::delete(stale.filter(login_failures::throttle_key.like("f:%")))
                    .execute(conn)?
            } else {
                diesel::delete(stale.filter(login_failures::throttle_key.not_like("f:%")))
                    .execute(conn)?
            };
            let expired = login_devices::table.filter(login_devices::expires_at.le(at));
            let devices = diesel::delete(expired).execute(conn)?;
            Ok((failures, devices))
        })?;
        Ok((failures + devices) as u64)
    }

    fn remember_device(
        &self,
        device: &RefreshTokenHash,
        user: UserId,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let user = user.to_string();
        self.store.with_write_conn(|conn| {
            diesel::insert_into(login_devices::table)
                .values((
                    login_devices::token_hash.eq(device.as_str()),
                    login_devices::user_id.eq(&user),
                    login_devices::issued_at.eq(now.unix_micros()),
                    login_devices::expires_at.eq(expires_at.unix_micros()),
                ))
                .execute(conn)?;
            // A client that never presents its device token leaves one row
            // per login: keep the newest few per user.
            let newest = login_devices::table
                .filter(login_devices::user_id.eq(&user))
                .order(login_devices::issued_at.desc())
                .select(login_devices::token_hash)
                .limit(DEVICES_PER_USER)
                .load::<String>(conn)?;
            diesel::delete(
                login_devices::table
                    .filter(login_devices::user_id.eq(&user))
                    .filter(login_devices::token_hash.ne_all(newest)),
            )
            .execute(conn)
        })?;
        Ok(())
    }

    fn forget_devices(&self, user: UserId) -> Result<u64, StoreError> {
        let user = user.to_string();
        let n = self.store.with_write_conn(|conn| {
            diesel::delete(login_devices::table.filter(login_devices::user_id.eq(&user)))
                .execute(conn)
        })?;
        Ok(n as u64)
    }

    fn device_owner(
        &self,
        device: &RefreshTokenHash,
        now: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        let owner: Option<String> = self.store.with_conn(|conn| {
            login_devices::table
                .find(device.as_str())
                .filter(login_devices::expires_at.gt(now.unix_micros()))
                .select(login_devices::user_id)
                .first(conn)
                .optional()
        })?;
        owner
            .map(|id| UserId::parse(&id).map_err(|_| corrupt("login device")))
            .transpose()
    }
}
