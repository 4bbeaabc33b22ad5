//! Password hashing: argon2id, and a bound on how much of it runs at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use password_hash::phc;
use todo_core::{HashError, Password, PasswordHash, PasswordHasher, Random, Verification};

use crate::error::KeyError;
use crate::system::OsRandom;

/// argon2id cost parameters. The default is OWASP's: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    /// Memory per hash, in KiB: what makes guessing on GPUs costly.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// argon2id with a random 128-bit salt per hash, stored as a PHC string.
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    params: Params,
    config: Argon2Config,
    dummy: PasswordHash,
    /// Where salts come from: the system's randomness, or a seeded one in
    /// tests, like every other random value of the library.
    random: Arc<dyn Random>,
    /// argon2's working memory (19 MiB at the defaults), kept for the next
    /// hash: allocating it anew each time makes glibc keep freed copies
    /// around (the mmap threshold adapts upwards), and RSS grows into
    /// gigabytes under a login flood. The pool holds one buffer per hash
    /// that ran at once — bounded by `BoundedHasher`.
    memory: Mutex<Vec<Vec<Block>>>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// A hasher with these parameters, salting with the operating system's
    /// randomness ([`OsRandom`]); hashes a random password once, for the
    /// dummy hash that unknown users are checked against.
    pub fn new(config: Argon2Config) -> Result<Self, KeyError> {
        Self::with_random(config, Arc::new(OsRandom))
    }

    /// A hasher whose salts (and dummy password) come from `random`.
    pub fn with_random(config: Argon2Config, random: Arc<dyn Random>) -> Result<Self, KeyError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| KeyError::Argon2Params(Box::new(e)))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut hasher = Self {
            argon2,
            params,
            config,
            dummy: PasswordHash::new(String::new()),
            random,
            memory: Mutex::default(),
        };
        let mut secret = [0u8; 24];
        hasher
            .random
            .fill(&mut secret)
            .map_err(|e| KeyError::Generation(Box::new(e)))?;
        let secret: String = secret.iter().map(|b| char::from(b'a' + b % 26)).collect();
        let dummy = Password::offered(&secret).ok_or(KeyError::Generation("dummy".into()))?;
        hasher.dummy = hasher
            .hash(&dummy)
            .map_err(|e| KeyError::Generation(Box::new(e)))?;
        Ok(hasher)
    }

    /// The parameters new hashes are made with.
    #[must_use]
    pub fn config(&self) -> Argon2Config {
        self.config
    }

    /// Runs `work` with a working-memory buffer of `blocks` blocks from the pool.
    fn with_memory<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let pooled = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = pooled.unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let out = work(&mut buffer[..blocks]);
        // Only buffers of today's size go back: an old hash with a larger
        // cost gets a one-off buffer.
        if buffer.len() <= self.params.block_count() {
            self.memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(buffer);
        }
        out
    }

    /// Whether a stored hash was made with other than argon2id at (at least)
    /// today's parameters.
    fn is_weaker(&self, stored: &phc::PasswordHash) -> bool {
        if stored.algorithm != Algorithm::Argon2id.ident() {
            return true;
        }
        match Params::try_from(stored) {
            Ok(p) => {
                p.m_cost() < self.config.memory_kib
                    || p.t_cost() < self.config.iterations
                    || p.p_cost() < self.config.parallelism
            }
            Err(_) => true,
        }
    }
}

impl Argon2Hasher {
    /// Runs argon2id for what today's parameters cost beyond `stored`'s.
    /// argon2's time is proportional to memory times passes (lanes run one
    /// after another here), so the padding fills the missing KiB-passes at
    /// today's passes and lanes, with at most today's memory.
    fn spend_difference(&self, stored: &Params) -> Result<(), HashError> {
        let today = u64::from(self.config.memory_kib) * u64::from(self.config.iterations);
        let spent = u64::from(stored.m_cost()) * u64::from(stored.t_cost());
        let Some(missing) = today.checked_sub(spent).filter(|m| *m > 0) else {
            return Ok(());
        };
        let passes = self.config.iterations.max(1);
        let lanes = self.config.parallelism.max(1);
        let memory = u32::try_from(missing.div_ceil(u64::from(passes)))
            .unwrap_or(u32::MAX)
            .clamp(8 * lanes, self.config.memory_kib.max(8 * lanes));
        let internal = |e: &dyn std::fmt::Display| HashError::Internal(e.to_string().into());
        let params = Params::new(memory, passes, lanes, None).map_err(|e| internal(&e))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; 32];
        self.with_memory(params.block_count(), |memory| {
            argon2.hash_password_into_with_memory(b"padding", b"padding salt", &mut out, memory)
        })
        .map_err(|e| internal(&e))
    }
}

/// Stored hashes asking for more than this are refused as malformed rather
/// than computed: a tampered row must not make one login take minutes or
/// gigabytes.
const MAX_STORED_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_STORED_ITERATIONS: u32 = 64;
const MAX_STORED_PARALLELISM: u32 = 16;

/// Parses a stored PHC string and bounds its cost.
fn parse_stored(hash: &PasswordHash) -> Result<phc::PasswordHash, HashError> {
    let parsed =
        phc::PasswordHash::new(hash.as_str()).map_err(|e| HashError::Malformed(Box::new(e)))?;
    let params = Params::try_from(&parsed).map_err(|e| HashError::Malformed(Box::new(e)))?;
    if params.m_cost() > MAX_STORED_MEMORY_KIB
        || params.t_cost() > MAX_STORED_ITERATIONS
        || params.p_cost() > MAX_STORED_PARALLELISM
    {
        return Err(HashError::Malformed(
            "stored hash parameters are out of bounds".into(),
        ));
    }
    Ok(parsed)
}

impl Argon2Hasher {
    /// Whether a stored hash should be upgraded, without checking a password:
    /// the stored-hash parse path alone (what fuzzing exercises).
    pub fn needs_rehash(&self, hash: &PasswordHash) -> Result<bool, HashError> {
        Ok(self.is_weaker(&parse_stored(hash)?))
    }
}

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let internal = |e: &dyn std::fmt::Display| HashError::Internal(e.to_string().into());
        let mut salt = [0u8; 16];
        self.random
            .fill(&mut salt)
            .map_err(|e| HashError::Internal(Box::new(e)))?;
        let mut out = [0u8; 32];
        self.with_memory(self.params.block_count(), |memory| {
            self.argon2.hash_password_into_with_memory(
                password.expose().as_bytes(),
                &salt,
                &mut out,
                memory,
            )
        })
        .map_err(|e| internal(&e))?;
        let phc = phc::PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: phc::ParamsString::try_from(&self.params).map_err(|e| internal(&e))?,
            salt: Some(phc::Salt::new(&salt).map_err(|e| internal(&e))?),
            hash: Some(phc::Output::new(&out).map_err(|e| internal(&e))?),
        };
        Ok(PasswordHash::new(phc.to_string()))
    }

    fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<Verification, HashError> {
        let parsed = parse_stored(hash)?;
        let malformed = |e: &dyn std::fmt::Display| HashError::Malformed(e.to_string().into());
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return Err(malformed(&"no salt or output"));
        };
        let algorithm =
            Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| malformed(&e))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| malformed(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.as_bytes().len()];
        self.with_memory(params.block_count(), |memory| {
            argon2.hash_password_into_with_memory(
                password.expose().as_bytes(),
                salt.as_ref(),
                &mut out,
                memory,
            )
        })
        .map_err(|e| malformed(&e))?;
        let matches =
            aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok();
        // A hash stored at a lower cost than today's verifies faster than
        // the dummy hash that unknown users are checked against: make up
        // the difference, match or not, so that no login tells whether the
        // account exists. (A successful login then stores today's cost.)
        self.spend_difference(&params)?;
        Ok(Verification {
            matches,
            needs_rehash: self.is_weaker(&parsed),
        })
    }

    fn dummy_hash(&self) -> &PasswordHash {
        &self.dummy
    }
}

/// Bounds the hashing work of a [`PasswordHasher`]: at most `running` hashes
/// at once (one per core is right for argon2), at most `waiting` callers
/// queued behind them; beyond that, [`HashError::Busy`] at once, so a login
/// flood is shed instead of piling up.
///
/// Callers block while queued: call it from a blocking thread, never from an
/// async executor's worker.
pub struct BoundedHasher<H> {
    inner: H,
    state: Mutex<PoolState>,
    freed: Condvar,
    limits: PoolLimits,
}

/// The bounds of a [`BoundedHasher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Hashes running at once: one per core suits argon2.
    pub running: usize,
    /// Callers queued behind them; more are refused at once.
    pub waiting: usize,
    /// What a shed caller is told to wait.
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
struct PoolState {
    running: usize,
    waiting: usize,
}

impl<H> std::fmt::Debug for BoundedHasher<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedHasher")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<H: PasswordHasher> BoundedHasher<H> {
    /// Bounds `inner` by `limits` (at least one running).
    #[must_use]
    pub fn new(inner: H, limits: PoolLimits) -> Self {
        let limits = PoolLimits {
            running: limits.running.max(1),
            ..limits
        };
        Self {
            inner,
            state: Mutex::default(),
            freed: Condvar::new(),
            limits,
        }
    }

    /// How many callers wait for a hashing slot now.
    pub fn queue_depth(&self) -> usize {
        self.lock().waiting
    }

    /// How many hashes run now.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_slot<T>(&self, work: impl FnOnce(&H) -> Result<T, HashError>) -> Result<T, HashError> {
        let mut state = self.lock();
        if state.running >= self.limits.running {
            if state.waiting >= self.limits.waiting {
                return Err(HashError::Busy {
                    retry_after: self.limits.retry_after,
                });
            }
            state.waiting += 1;
            while state.running >= self.limits.running {
                state = self
                    .freed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.waiting -= 1;
        }
        state.running += 1;
        drop(state);
        let _slot = SlotGuard(self);
        work(&self.inner)
    }
}

/// Gives the slot back even if the work panics.
struct SlotGuard<'a, H>(&'a BoundedHasher<H>);

impl<H> Drop for SlotGuard<'_, H> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.running -= 1;
        drop(state);
        self.0.freed.notify_one();
    }
}

impl<H: PasswordHasher> PasswordHasher for BoundedHasher<H> {
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        self.with_slot(|inner| inner.hash(password))
    }

    fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<Verification, HashError> {
        self.with_slot(|inner| inner.verify(password, hash))
    }

    fn dummy_hash(&self) -> &PasswordHash {
        self.inner.dummy_hash()
    }

    fn shedding(&self) -> Option<Duration> {
        let state = self.lock();
        (state.running >= self.limits.running && state.waiting >= self.limits.waiting)
            .then_some(self.limits.retry_after)
    }
}
