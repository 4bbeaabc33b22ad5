//! Rate limits with bounded memory: a governor (GCRA) limiter per key, and a
//! growing delay after repeated failed logins on one account (in memory;
//! servers keep it in the database). Both read time
//! from the core's [`Clock`], so tests drive them with a fake one.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::Quota;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use todo_core::{
    BackoffPolicy, Clock, LoginBackoff, RateLimiter, RefreshTokenHash, StoreError, ThrottleKey,
    Timestamp, UserId,
};

/// governor's view of the core clock: time since the Unix epoch.
#[derive(Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.0.now().unix_micros()).unwrap_or(0))
    }
}

/// How fast a key may go: a burst, refilled one unit per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Units a key may spend at once.
    pub burst: u32,
    /// Time to earn one unit back.
    pub period: Duration,
    /// Keys tracked at most; idle keys are pruned first.
    pub max_keys: usize,
}

impl LimitPolicy {
    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.period.max(Duration::from_nanos(1)))
            .unwrap_or(Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

type Governor<K> =
    governor::RateLimiter<K, DashMapStateStore<K>, GovernorClock, NoOpMiddleware<Duration>>;

/// A keyed limiter (by client address, by account) whose memory is bounded:
/// every `PRUNE_EVERY` checks, and whenever it is full, keys whose allowance
/// has refilled are dropped. When it is full of active keys it refuses new
/// work rather than grow: under a flood from many addresses, memory wins.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    governor: Governor<K>,
    clock: GovernorClock,
    max_keys: usize,
    checks: AtomicU64,
}

const PRUNE_EVERY: u64 = 1024;

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter with `policy`, reading time from `clock` (a fake one in tests).
    #[must_use]
    pub fn new(policy: LimitPolicy, clock: Arc<dyn Clock>) -> Self {
        let clock = GovernorClock(clock);
        Self {
            governor: governor::RateLimiter::dashmap_with_clock(policy.quota(), clock.clone()),
            clock,
            max_keys: policy.max_keys.max(1),
            checks: AtomicU64::new(0),
        }
    }

    /// How many keys are tracked now.
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.governor.len()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync> RateLimiter<K> for KeyedLimiter<K> {
    fn check(&self, key: &K) -> Result<(), Duration> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(PRUNE_EVERY) || self.governor.len() >= self.max_keys {
            self.governor.retain_recent();
            if self.governor.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        use governor::clock::Clock as _;
        self.governor
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Timestamp,
    blocked_until: Timestamp,
}

/// Per-key failed-login bookkeeping in this process's memory, with bounded
/// memory: for embedding in one process. Servers keep the counts in the
/// database instead (`todo_store::SqlLoginBackoff`), so every instance sees
/// them. Keyed by the username offered, whether or not it exists, so it
/// tells nothing about which accounts do.
#[derive(Debug)]
pub struct FailedLoginBackoff {
    policy: BackoffPolicy,
    accounts: Mutex<HashMap<String, Failures>>,
    /// Device digests and (owner, expiry); at most `max_accounts` of them.
    devices: Mutex<HashMap<RefreshTokenHash, (UserId, Timestamp)>>,
}

impl FailedLoginBackoff {
    /// A delay with `policy`, kept in this process's memory.
    #[must_use]
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            accounts: Mutex::default(),
            devices: Mutex::default(),
        }
    }

    /// How many keys are tracked now.
    #[must_use]
    pub fn tracked_accounts(&self) -> usize {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl LoginBackoff for FailedLoginBackoff {
    fn reserve(
        &self,
        key: ThrottleKey<'_>,
        now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        let key = key.to_key();
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = accounts.get(&key)
            && now < f.blocked_until
        {
            return Ok(Err(f.blocked_until.duration_since(now)));
        }
        let forget = self.policy.forget_after;
        if accounts.len() >= self.policy.max_accounts && !accounts.contains_key(&key) {
            accounts.retain(|_, f| now.duration_since(f.last) < forget || now < f.blocked_until);
            if accounts.len() >= self.policy.max_accounts
                && let Some(stalest) = accounts
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
            {
                accounts.remove(&stalest);
            }
        }
        let entry = accounts.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: now,
        });
        entry.count = self.policy.next_count(entry.count, entry.last, now);
        entry.last = now;
        entry.blocked_until = now.saturating_add(self.policy.delay_after(entry.count));
        Ok(Ok(()))
    }

    fn settle(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        let before = self
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key.to_key())
            .map_or(0, |f| f.count.saturating_sub(1));
        if before <= self.policy.free_failures {
            self.record_success(key)
        } else {
            self.release(key)
        }
    }

    fn release(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = accounts.get_mut(&key.to_key()) {
            f.count = f.count.saturating_sub(1);
            f.blocked_until = f.last.saturating_add(self.policy.delay_after(f.count));
        }
        Ok(())
    }

    fn record_success(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key.to_key());
        Ok(())
    }

    fn purge(&self, now: Timestamp) -> Result<u64, StoreError> {
        let forget = self.policy.forget_after;
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let before = accounts.len();
        accounts.retain(|_, f| now.duration_since(f.last) < forget || now < f.blocked_until);
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let known = devices.len();
        devices.retain(|_, (_, expires)| now < *expires);
        Ok((before - accounts.len() + known - devices.len()) as u64)
    }

    fn remember_device(
        &self,
        device: &RefreshTokenHash,
        user: UserId,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        if devices.len() >= self.policy.max_accounts {
            devices.retain(|_, (_, expires)| now < *expires);
            if devices.len() >= self.policy.max_accounts
                && let Some(soonest) = devices
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone())
            {
                devices.remove(&soonest);
            }
        }
        devices.insert(device.clone(), (user, expires_at));
        Ok(())
    }

    fn forget_devices(&self, user: UserId) -> Result<u64, StoreError> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let before = devices.len();
        devices.retain(|_, (owner, _)| *owner != user);
        Ok((before - devices.len()) as u64)
    }

    fn device_owner(
        &self,
        device: &RefreshTokenHash,
        now: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(devices
            .get(device)
            .filter(|(_, expires)| now < *expires)
            .map(|(owner, _)| *owner))
    }
}
