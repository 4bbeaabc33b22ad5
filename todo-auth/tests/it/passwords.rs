//! argon2id hashing and the bounded hashing pool.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use todo_auth::{Argon2Config, Argon2Hasher, BoundedHasher, PoolLimits, Sha256RefreshTokenHasher};
use todo_core::{
    HashError, Password, PasswordHash, PasswordHasher, RefreshToken, RefreshTokenHasher,
    Verification,
};

/// Cheap parameters: the behaviour is the same, the tests are faster.
const LIGHT: Argon2Config = Argon2Config {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

fn pw(s: &str) -> Password {
    Password::offered(s).unwrap()
}

#[test]
fn default_parameters_are_owasps_and_hashes_are_phc_strings() {
    let hasher = Argon2Hasher::new(Argon2Config::default()).unwrap();
    let hash = hasher.hash(&pw("correct horse")).unwrap();
    assert!(
        hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        hash.as_str()
    );
    assert_eq!(
        hasher.verify(&pw("correct horse"), &hash).unwrap(),
        Verification {
            matches: true,
            needs_rehash: false
        }
    );
    assert!(!hasher.verify(&pw("correct horsE"), &hash).unwrap().matches);
    // Two hashes of one password differ: each has its own salt.
    assert_ne!(hasher.hash(&pw("correct horse")).unwrap(), hash);
    // The dummy hash is made with the same parameters, so it costs the same.
    assert!(
        hasher
            .dummy_hash()
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
}

#[test]
fn hashes_with_weaker_parameters_need_rehashing() {
    let light = Argon2Hasher::new(LIGHT).unwrap();
    let old = light.hash(&pw("correct horse")).unwrap();
    let stronger = Argon2Hasher::new(Argon2Config {
        memory_kib: 2048,
        ..LIGHT
    })
    .unwrap();
    let outcome = stronger.verify(&pw("correct horse"), &old).unwrap();
    assert!(outcome.matches, "old hashes still verify");
    assert!(outcome.needs_rehash);
    let more_passes = Argon2Hasher::new(Argon2Config {
        iterations: 2,
        ..LIGHT
    })
    .unwrap();
    assert!(
        more_passes
            .verify(&pw("correct horse"), &old)
            .unwrap()
            .needs_rehash
    );
    let more_lanes = Argon2Hasher::new(Argon2Config {
        parallelism: 2,
        ..LIGHT
    })
    .unwrap();
    assert!(more_lanes.needs_rehash(&old).unwrap());
    assert!(!light.needs_rehash(&old).unwrap(), "today's cost is kept");
    // An argon2i hash (another algorithm) still verifies, and is upgraded.
    use password_hash::PasswordHasher as _;
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let argon2i = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params);
    let legacy = argon2i
        .hash_password_with_salt(b"correct horse", b"sixteen byte salt")
        .unwrap();
    let legacy = PasswordHash::new(legacy.to_string());
    assert!(legacy.as_str().starts_with("$argon2i$"));
    let outcome = light.verify(&pw("correct horse"), &legacy).unwrap();
    assert_eq!(
        outcome,
        Verification {
            matches: true,
            needs_rehash: true
        }
    );
}

#[test]
fn verifying_a_cheaper_stored_hash_costs_what_todays_parameters_cost() {
    // A hash stored with one pass at 16 MiB, verified by a hasher whose
    // cost is four passes at 16 MiB, must take about as long as verifying
    // a hash at today's cost.
    let cheap = Argon2Hasher::new(Argon2Config {
        memory_kib: 16_384,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    let today = Argon2Hasher::new(Argon2Config {
        memory_kib: 16_384,
        iterations: 4,
        parallelism: 1,
    })
    .unwrap();
    let old = cheap.hash(&pw("correct horse")).unwrap();
    let current = today.hash(&pw("correct horse")).unwrap();
    let time = |hash: &PasswordHash| {
        let started = std::time::Instant::now();
        assert!(!today.verify(&pw("wrong"), hash).unwrap().matches);
        started.elapsed()
    };
    let _ = time(&current); // warm the memory pool
    // Interleaved, so that the load of a shared machine weighs on both.
    let (mut old_times, mut today_times) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        old_times.push(time(&old));
        today_times.push(time(&current));
    }
    old_times.sort();
    today_times.sort();
    let (old_cost, today_cost) = (old_times[7], today_times[7]);
    // Without the padding the ratio is about 1/4.
    let ratio = old_cost.as_secs_f64() / today_cost.as_secs_f64();
    assert!(
        (0.6..=1.6).contains(&ratio),
        "{old_cost:?} for the one-pass hash vs {today_cost:?} at today's four"
    );
}

#[test]
fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
    let hasher = Argon2Hasher::new(LIGHT).unwrap();
    for bad in [
        "",
        "plaintext",
        "$argon2id$v=19$m=1024,t=1,p=1$",
        "$argon2id$v=19$m=x$salt$hash",
    ] {
        let outcome = hasher.verify(&pw("anything"), &PasswordHash::new(bad.to_owned()));
        assert!(
            matches!(outcome, Err(HashError::Malformed(_))),
            "{bad:?}: {outcome:?}"
        );
    }
}

#[test]
fn stored_hashes_with_absurd_costs_are_refused_not_computed() {
    let hasher = Argon2Hasher::new(LIGHT).unwrap();
    let salt = "c29tZXNhbHRzb21lc2FsdA";
    let out = "uYjGGBxkqqCXKH6uUjUwaMOCU0QvYrtkjZMT9YHNUAo";
    for params in [
        "m=4194304,t=1,p=1",
        "m=1024,t=100000,p=1",
        "m=1024,t=1,p=255",
    ] {
        let stored = PasswordHash::new(format!("$argon2id$v=19${params}${salt}${out}"));
        let started = std::time::Instant::now();
        assert!(
            matches!(
                hasher.verify(&pw("x"), &stored),
                Err(HashError::Malformed(_))
            ),
            "{params}"
        );
        assert!(hasher.needs_rehash(&stored).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }
    let ok = hasher.hash(&pw("correct horse")).unwrap();
    assert!(!hasher.needs_rehash(&ok).unwrap());
}

#[test]
fn invalid_parameters_are_refused_at_construction() {
    let zero = Argon2Config {
        memory_kib: 0,
        ..LIGHT
    };
    assert!(Argon2Hasher::new(zero).is_err());
}

/// A hasher that blocks until told to finish.
struct Gate {
    entered: mpsc::SyncSender<()>,
    release: std::sync::Mutex<mpsc::Receiver<()>>,
    dummy: PasswordHash,
}

impl PasswordHasher for Gate {
    fn hash(&self, _password: &Password) -> Result<PasswordHash, HashError> {
        self.entered.send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
        Ok(self.dummy.clone())
    }
    fn verify(&self, password: &Password, _hash: &PasswordHash) -> Result<Verification, HashError> {
        self.hash(password).map(|_| Verification {
            matches: true,
            needs_rehash: false,
        })
    }
    fn dummy_hash(&self) -> &PasswordHash {
        &self.dummy
    }
}

#[test]
fn the_pool_sheds_work_beyond_its_queue_with_busy() {
    let (entered_tx, entered) = mpsc::sync_channel(8);
    let (release, release_rx) = mpsc::channel();
    let gate = Gate {
        entered: entered_tx,
        release: std::sync::Mutex::new(release_rx),
        dummy: PasswordHash::new("x".to_owned()),
    };
    let limits = PoolLimits {
        running: 1,
        waiting: 1,
        retry_after: Duration::from_secs(2),
    };
    let pool = Arc::new(BoundedHasher::new(gate, limits));
    assert_eq!(pool.shedding(), None);

    let first = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.hash(&pw("one")))
    };
    entered.recv().unwrap(); // the first one runs
    assert_eq!(pool.shedding(), None, "a free queue place takes the next");
    let second = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.hash(&pw("two")))
    };
    while pool.queue_depth() < 1 {
        std::thread::yield_now();
    }
    assert_eq!(pool.running(), 1);
    // The third finds the slot taken and the queue full, as `shedding`
    // says beforehand.
    assert_eq!(pool.shedding(), Some(Duration::from_secs(2)));
    match pool.hash(&pw("three")) {
        Err(HashError::Busy { retry_after }) => assert_eq!(retry_after, Duration::from_secs(2)),
        other => panic!("expected Busy, got {other:?}"),
    }
    release.send(()).unwrap();
    first.join().unwrap().unwrap();
    entered.recv().unwrap(); // the queued one runs next
    release.send(()).unwrap();
    second.join().unwrap().unwrap();
    assert_eq!((pool.running(), pool.queue_depth()), (0, 0));
}

#[test]
fn the_pool_runs_no_more_than_its_slots_at_once() {
    let hasher = Argon2Hasher::new(LIGHT).unwrap();
    let limits = PoolLimits {
        running: 2,
        waiting: 64,
        retry_after: Duration::from_secs(1),
    };
    let pool = Arc::new(BoundedHasher::new(hasher, limits));
    let barrier = Arc::new(Barrier::new(8));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let hash = pool.hash(&pw("correct horse")).unwrap();
                assert!(pool.running() <= 2);
                pool.verify(&pw("correct horse"), &hash).unwrap().matches
            })
        })
        .collect();
    assert!(workers.into_iter().all(|w| w.join().unwrap()));
}

#[test]
fn refresh_tokens_are_stored_as_sha256_hex() {
    let token = RefreshToken::parse(&"A".repeat(43)).unwrap();
    let digest = Sha256RefreshTokenHasher.digest(&token);
    assert_eq!(digest.as_str().len(), 64);
    assert!(
        digest
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        Sha256RefreshTokenHasher.digest(&token),
        digest,
        "deterministic"
    );
    let other = RefreshToken::parse(&"B".repeat(43)).unwrap();
    assert_ne!(Sha256RefreshTokenHasher.digest(&other), digest);
    // SHA-256("A" * 43), computed independently (Python hashlib).
    assert_eq!(
        digest.as_str(),
        "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a"
    );
}

/// Salts come from the hasher's `Random`, as every random value of the
/// library does: the same seed salts alike, another seed does not.
#[test]
fn salts_are_drawn_from_the_random_given() {
    use todo_core::testing::SeededRandom;

    let seeded =
        |seed| Argon2Hasher::with_random(LIGHT, Arc::new(SeededRandom::new(seed))).unwrap();
    let (one, same, other) = (seeded(7), seeded(7), seeded(8));
    let first = one.hash(&pw("correct horse")).unwrap();
    assert_eq!(same.hash(&pw("correct horse")).unwrap(), first);
    assert_ne!(other.hash(&pw("correct horse")).unwrap(), first);
    // A second hash of the same password draws a new salt.
    assert_ne!(one.hash(&pw("correct horse")).unwrap(), first);
    assert!(one.verify(&pw("correct horse"), &first).unwrap().matches);
}
