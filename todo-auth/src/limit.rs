//! Rate limits with bounded memory: a governor (GCRA) limiter per key, and a
//! growing delay after repeated failed logins on one account. Both read time
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
use todo_core::{Clock, LoginBackoff, RateLimiter, Timestamp, Username};

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
    pub burst: u32,
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

/// The growing delay after failed logins on one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A failure this old no longer counts.
    pub forget_after: Duration,
    /// Accounts tracked at most; the stalest is dropped first.
    pub max_accounts: usize,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
            max_accounts: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Timestamp,
    blocked_until: Timestamp,
}

/// Per-account failed-login bookkeeping with bounded memory. Keyed by the
/// username offered, whether or not it exists, so it tells nothing about
/// which accounts do.
#[derive(Debug)]
pub struct FailedLoginBackoff {
    policy: BackoffPolicy,
    accounts: Mutex<HashMap<Username, Failures>>,
}

impl FailedLoginBackoff {
    #[must_use]
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            accounts: Mutex::default(),
        }
    }

    fn delay_after(&self, failures: u32) -> Duration {
        let over = failures.saturating_sub(self.policy.free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
        self.policy
            .base_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay)
    }

    /// How many accounts are tracked now.
    #[must_use]
    pub fn tracked_accounts(&self) -> usize {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl LoginBackoff for FailedLoginBackoff {
    fn check(&self, account: &Username, now: Timestamp) -> Result<(), Duration> {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        match accounts.get(account) {
            Some(f) if now < f.blocked_until => Err(f.blocked_until.duration_since(now)),
            _ => Ok(()),
        }
    }

    fn record_failure(&self, account: &Username, now: Timestamp) {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let forget = self.policy.forget_after;
        if accounts.len() >= self.policy.max_accounts && !accounts.contains_key(account) {
            accounts.retain(|_, f| now.duration_since(f.last) < forget);
            if accounts.len() >= self.policy.max_accounts
                && let Some(stalest) = accounts
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
            {
                accounts.remove(&stalest);
            }
        }
        let entry = accounts.entry(account.clone()).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: now,
        });
        if now.duration_since(entry.last) >= forget {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        entry.blocked_until = now.saturating_add(self.delay_after(entry.count));
    }

    fn record_success(&self, account: &Username) {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(account);
    }
}
