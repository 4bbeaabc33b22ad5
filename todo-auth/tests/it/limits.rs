//! Rate limits and the failed-login delay, on a fake clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use todo_auth::{
    BackoffPolicy, FailedLoginBackoff, KeyedLimiter, LimitPolicy, OsRandom, SystemClock,
};
use todo_core::testing::ManualClock;
use todo_core::{Clock, LoginBackoff, Random, RateLimiter, ThrottleKey, Username};

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

#[test]
fn a_key_gets_its_burst_then_waits_for_the_refill() {
    let clock = Arc::new(ManualClock::new());
    let policy = LimitPolicy {
        burst: 3,
        period: Duration::from_secs(10),
        max_keys: 100,
    };
    let limiter = KeyedLimiter::new(policy, clock.clone());
    for _ in 0..3 {
        assert!(limiter.check(&ip(1)).is_ok());
    }
    let wait = limiter.check(&ip(1)).unwrap_err();
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    assert!(
        limiter.check(&ip(2)).is_ok(),
        "another key has its own allowance"
    );
    clock.advance(Duration::from_secs(10));
    assert!(limiter.check(&ip(1)).is_ok());
    assert!(limiter.check(&ip(1)).is_err());
}

#[test]
fn idle_keys_are_pruned_so_memory_stays_bounded() {
    let clock = Arc::new(ManualClock::new());
    let policy = LimitPolicy {
        burst: 2,
        period: Duration::from_secs(1),
        max_keys: 50,
    };
    let limiter = KeyedLimiter::new(policy, clock.clone());
    for round in 0..10 {
        for n in 0..50 {
            let _ = limiter.check(&ip(round * 1000 + n));
        }
        assert!(limiter.tracked_keys() <= 50, "{}", limiter.tracked_keys());
        clock.advance(Duration::from_secs(5));
    }
    // Full of active keys, a new key is refused rather than stored.
    let busy = KeyedLimiter::new(policy, clock.clone());
    for n in 0..50 {
        busy.check(&ip(n)).unwrap();
    }
    assert!(busy.check(&ip(999)).is_err());
    assert!(busy.tracked_keys() <= 50);
}

/// Takes a slot for `who`; the wait when refused.
fn take(backoff: &FailedLoginBackoff, who: &Username, clock: &ManualClock) -> Result<(), Duration> {
    backoff
        .reserve(ThrottleKey::Account(who), clock.now())
        .unwrap()
}

#[test]
fn failed_logins_earn_a_growing_delay_and_success_clears_it() {
    let clock = ManualClock::new();
    let backoff = FailedLoginBackoff::new(BackoffPolicy::default());
    let alice = Username::parse("alice").unwrap();
    let bob = Username::parse("bob").unwrap();
    // Each attempt counts as a failure when it takes its slot.
    for _ in 0..5 {
        take(&backoff, &alice, &clock).unwrap();
    }
    // The sixth is the first with a delay: 1 s, then 2, 4, 8...
    take(&backoff, &alice, &clock).unwrap();
    assert_eq!(
        take(&backoff, &alice, &clock).unwrap_err(),
        Duration::from_secs(1)
    );
    let mut expected = 1;
    for _ in 0..4 {
        clock.advance(Duration::from_secs(expected));
        take(&backoff, &alice, &clock).unwrap();
        expected *= 2;
        assert_eq!(
            take(&backoff, &alice, &clock).unwrap_err(),
            Duration::from_secs(expected)
        );
    }
    assert!(
        take(&backoff, &bob, &clock).is_ok(),
        "other accounts are untouched"
    );
    backoff
        .record_success(ThrottleKey::Account(&alice))
        .unwrap();
    assert!(take(&backoff, &alice, &clock).is_ok());
}

#[test]
fn concurrent_attempts_past_the_allowance_find_the_slot_taken() {
    let clock = Arc::new(ManualClock::new());
    let backoff = Arc::new(FailedLoginBackoff::new(BackoffPolicy {
        free_failures: 2,
        ..BackoffPolicy::default()
    }));
    let alice = Username::parse("alice").unwrap();
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| s.spawn(|| take(&backoff, &alice, &clock).is_ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(taken, 3, "two free attempts and one more; nine refused");
}

/// An attempt shed for overload (never weighed) gives its slot back, so a
/// login flood does not lock the account's owner out.
#[test]
fn a_released_attempt_counts_for_nothing() {
    let clock = ManualClock::new();
    let backoff = FailedLoginBackoff::new(BackoffPolicy {
        free_failures: 2,
        ..BackoffPolicy::default()
    });
    let alice = Username::parse("alice").unwrap();
    for _ in 0..10 {
        take(&backoff, &alice, &clock).unwrap();
        backoff.release(ThrottleKey::Account(&alice)).unwrap();
    }
    take(&backoff, &alice, &clock).unwrap();
    take(&backoff, &alice, &clock).unwrap();
    take(&backoff, &alice, &clock).unwrap();
    assert!(
        take(&backoff, &alice, &clock).is_err(),
        "a third real failure, past the two free ones, delays the next"
    );
}

#[test]
fn the_delay_is_capped_and_old_failures_are_forgotten() {
    let clock = ManualClock::new();
    let policy = BackoffPolicy {
        max_delay: Duration::from_secs(60),
        ..BackoffPolicy::default()
    };
    let backoff = FailedLoginBackoff::new(policy);
    let alice = Username::parse("alice").unwrap();
    for _ in 0..40 {
        clock.advance(Duration::from_secs(60));
        take(&backoff, &alice, &clock).unwrap();
    }
    assert_eq!(
        take(&backoff, &alice, &clock).unwrap_err(),
        Duration::from_secs(60)
    );
    clock.advance(policy.forget_after);
    take(&backoff, &alice, &clock).unwrap();
    assert!(
        take(&backoff, &alice, &clock).is_ok(),
        "counted afresh after an idle hour"
    );
}

#[test]
fn backoff_memory_is_bounded() {
    let clock = ManualClock::new();
    let policy = BackoffPolicy {
        max_accounts: 100,
        ..BackoffPolicy::default()
    };
    let backoff = FailedLoginBackoff::new(policy);
    for n in 0..1000 {
        clock.advance(Duration::from_millis(1));
        take(
            &backoff,
            &Username::parse(&format!("user{n}")).unwrap(),
            &clock,
        )
        .unwrap();
    }
    assert!(backoff.tracked_accounts() <= 100);
}

#[test]
fn the_system_adapters_give_real_time_and_randomness() {
    let now = SystemClock.now();
    assert!(
        now.unix_seconds() > 1_767_225_600,
        "after 2026-01-01: {now}"
    );
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    OsRandom.fill(&mut a).unwrap();
    OsRandom.fill(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
}
