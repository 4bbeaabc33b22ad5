//! Fakes of the core's edge traits, for tests and examples: a clock you move
//! by hand, seeded randomness, a password hasher that counts its work, and
//! tokens kept in a table. None of them is secure; none belongs in production.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::{HashError, RandomError, TokenError, TokenRejection};
use crate::ports::{
    AccessTokenSigner, AccessTokenVerifier, AuditEvent, AuditSink, PasswordHasher,
    RefreshTokenHasher, Verification,
};
use crate::random::Random;
use crate::time::{Clock, Timestamp};
use crate::token::{AccessClaims, RefreshToken, RefreshTokenHash};
use crate::user::{Password, PasswordHash};

/// A clock that stands still until moved.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `start`.
    #[must_use]
    pub fn at(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.unix_micros()))
    }

    /// 2026-01-01T00:00:00Z.
    #[must_use]
    pub fn new() -> Self {
        Self(AtomicI64::new(1_767_225_600_000_000))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.unix_micros(), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(self.0.load(Ordering::SeqCst)).unwrap_or(Timestamp::MAX)
    }
}

/// A digest of the [`Sha256`](crate::Sha256) port's shape that is not
/// SHA-256 (four FNV-1a lanes): deterministic, spread, and no protection
/// against anyone who chooses its input. For tests of what derives ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeSha256;

impl crate::Sha256 for FakeSha256 {
    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (lane, chunk) in (0u64..).zip(out.chunks_mut(8)) {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ lane.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for byte in parts.iter().flat_map(|p| p.iter()) {
                h = (h ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
            chunk.copy_from_slice(&h.to_le_bytes());
        }
        out
    }
}

/// Deterministic, non-secure randomness (splitmix64 from a seed).
#[derive(Debug)]
pub struct SeededRandom(AtomicU64);

impl SeededRandom {
    /// The same `seed` gives the same bytes: runs repeat exactly.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        for chunk in buf.chunks_mut(8) {
            let mut z = self.0.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// A "hasher" that stores `fake:<cost>:<password>` and counts its calls.
/// Hashes made at a lower cost than the current one report `needs_rehash`.
#[derive(Debug)]
pub struct CountingHasher {
    cost: u32,
    dummy: PasswordHash,
    hashes: AtomicUsize,
    verifications: AtomicUsize,
}

impl CountingHasher {
    /// A hasher at `cost`: hashes stored at a lower cost need a rehash.
    #[must_use]
    pub fn new(cost: u32) -> Self {
        Self {
            cost,
            dummy: PasswordHash::new(format!("fake:{cost}:\u{0}no one's password")),
            hashes: AtomicUsize::new(0),
            verifications: AtomicUsize::new(0),
        }
    }

    /// How many hashes it made.
    #[must_use]
    pub fn hashes(&self) -> usize {
        self.hashes.load(Ordering::SeqCst)
    }

    /// How many verifications it made (dummy ones included).
    #[must_use]
    pub fn verifications(&self) -> usize {
        self.verifications.load(Ordering::SeqCst)
    }
}

impl PasswordHasher for CountingHasher {
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        self.hashes.fetch_add(1, Ordering::SeqCst);
        Ok(PasswordHash::new(format!(
            "fake:{}:{}",
            self.cost,
            password.expose()
        )))
    }

    fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<Verification, HashError> {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let malformed = || HashError::Malformed("not a fake hash".into());
        let rest = hash.as_str().strip_prefix("fake:").ok_or_else(malformed)?;
        let (cost, secret) = rest.split_once(':').ok_or_else(malformed)?;
        let cost: u32 = cost.parse().map_err(|_| malformed())?;
        Ok(Verification {
            matches: secret == password.expose(),
            needs_rehash: cost < self.cost,
        })
    }

    fn dummy_hash(&self) -> &PasswordHash {
        &self.dummy
    }
}

/// Access tokens kept in a table: `sign` files the claims under a fresh
/// handle, `verify` looks them up and checks the times and audience.
#[derive(Debug)]
pub struct TableTokens {
    issuer: String,
    audience: String,
    issued: Mutex<HashMap<String, AccessClaims>>,
}

impl TableTokens {
    /// Tokens for this issuer and audience; any other fails verification.
    #[must_use]
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            issued: Mutex::default(),
        }
    }
}

impl AccessTokenSigner for TableTokens {
    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let handle = format!("table-token.{}", claims.token_id);
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.insert(handle.clone(), claims.clone());
        Ok(handle)
    }
}

impl AccessTokenVerifier for TableTokens {
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let claims = issued
            .get(token)
            .ok_or(TokenError::Rejected(TokenRejection::Malformed))?;
        let now = now.unix_seconds();
        if claims.issuer != self.issuer || claims.audience != self.audience {
            return Err(TokenError::Rejected(TokenRejection::WrongAudience));
        }
        if now >= claims.expires_at {
            return Err(TokenError::Rejected(TokenRejection::Expired));
        }
        if now < claims.not_before {
            return Err(TokenError::Rejected(TokenRejection::NotYetValid));
        }
        Ok(claims.clone())
    }
}

/// Reverses the token: distinct tokens get distinct "digests". Not a hash.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReversingDigest;

impl RefreshTokenHasher for ReversingDigest {
    fn digest(&self, token: &RefreshToken) -> RefreshTokenHash {
        RefreshTokenHash::new(token.expose().chars().rev().collect())
    }
}

/// A MAC of the [`HmacSha1`](crate::HmacSha1) port's shape that is not
/// HMAC-SHA-1 ([`FakeSha256`] of the key and message): deterministic and
/// spread, for tests of what computes TOTP codes. todo-auth's is checked
/// against RFC 6238's vectors.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeHmacSha1;

impl crate::HmacSha1 for FakeHmacSha1 {
    fn mac(&self, key: &[u8], message: &[u8]) -> [u8; 20] {
        let digest = crate::Sha256::digest(&FakeSha256, &[b"hmac", key, b":", message]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest[..20]);
        out
    }
}

/// A sealer of the [`SecretSealer`](crate::SecretSealer) port's shape
/// that hides nothing: the user's id, then the bytes reversed. It refuses
/// another user's, as the real one does.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenSealer;

impl crate::SecretSealer for OpenSealer {
    fn seal(&self, user: crate::UserId, plain: &[u8]) -> Result<Vec<u8>, crate::SealError> {
        let mut sealed = user.as_uuid().as_bytes().to_vec();
        sealed.extend(plain.iter().rev());
        Ok(sealed)
    }

    fn open(
        &self,
        user: crate::UserId,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::SealError> {
        match sealed.split_at_checked(16) {
            Some((owner, body)) if owner == user.as_uuid().as_bytes() => Ok(
                zeroize::Zeroizing::new(body.iter().rev().copied().collect()),
            ),
            _ => Err(crate::SealError("sealed for another user".into())),
        }
    }
}

/// Passkey ceremonies of the [`PasskeyCeremonies`](crate::PasskeyCeremonies)
/// port's shape, with no cryptography: a state is a counter's bytes, and
/// an answer is `STATE|CREDENTIAL|USER|SIGNATURE` (the state and the
/// credential id in hex), which holds when it names the kept state and,
/// for a sign-in, signs with `ok` for the stored credential. For tests of
/// what the core does around the ceremonies; todo-auth's are webauthn-rs.
#[derive(Debug, Default)]
pub struct FakePasskeys(std::sync::atomic::AtomicU64);

impl FakePasskeys {
    fn state(&self) -> Vec<u8> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        n.to_be_bytes().to_vec()
    }

    /// What a browser answers to the ceremony whose options are `options`,
    /// with the credential `credential_id` of `user`, signed `signature`.
    #[must_use]
    pub fn answer(
        options: &str,
        credential_id: &[u8],
        user: crate::UserId,
        signature: &str,
    ) -> String {
        let state = options.trim_start_matches("challenge:");
        format!("{state}|{}|{user}|{signature}", hex(credential_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn refused(what: &'static str) -> crate::PasskeyRefusal {
    crate::PasskeyRefusal(what.into())
}

fn parts(answer: &str) -> Result<[&str; 4], crate::PasskeyRefusal> {
    let parts: Vec<&str> = answer.split('|').collect();
    parts.try_into().map_err(|_| refused("not an answer"))
}

fn unhex(text: &str) -> Result<Vec<u8>, crate::PasskeyRefusal> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| refused("not hex"))
        })
        .collect()
}

impl crate::PasskeyCeremonies for FakePasskeys {
    fn start_registration(
        &self,
        _user: crate::UserId,
        _username: &crate::Username,
        _existing: &[Vec<u8>],
    ) -> Result<(String, Vec<u8>), crate::PasskeyRefusal> {
        let state = self.state();
        Ok((format!("challenge:{}", hex(&state)), state))
    }

    fn finish_registration(
        &self,
        answer: &str,
        state: &[u8],
    ) -> Result<crate::NewCredential, crate::PasskeyRefusal> {
        let [answered, credential, _, _] = parts(answer)?;
        if answered != hex(state) {
            return Err(refused("another challenge"));
        }
        let credential_id = unhex(credential)?;
        let mut key = b"key:".to_vec();
        key.extend_from_slice(&credential_id);
        Ok(crate::NewCredential {
            credential_id,
            credential: key,
        })
    }

    fn start_authentication(&self) -> Result<(String, Vec<u8>), crate::PasskeyRefusal> {
        let state = self.state();
        Ok((format!("challenge:{}", hex(&state)), state))
    }

    fn identify(&self, answer: &str) -> Result<(crate::UserId, Vec<u8>), crate::PasskeyRefusal> {
        let [_, credential, user, _] = parts(answer)?;
        let user = crate::UserId::parse(user).map_err(|_| refused("no user"))?;
        Ok((user, unhex(credential)?))
    }

    fn finish_authentication(
        &self,
        answer: &str,
        state: &[u8],
        credential: &[u8],
    ) -> Result<Option<Vec<u8>>, crate::PasskeyRefusal> {
        let [answered, credential_id, _, signature] = parts(answer)?;
        let mut key = b"key:".to_vec();
        key.extend_from_slice(&unhex(credential_id)?);
        if answered != hex(state) || signature != "ok" || !credential.starts_with(&key) {
            return Err(refused("does not verify"));
        }
        // (a counter, as a real credential's moves)
        let mut used = credential.to_vec();
        used.push(b'+');
        Ok(Some(used))
    }
}

/// Keeps every audit event, printed with `{:?}`.
#[derive(Debug, Default)]
pub struct RecordingAudit(Mutex<Vec<String>>);

impl RecordingAudit {
    /// The events recorded so far, oldest first.
    #[must_use]
    pub fn events(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl AuditSink for RecordingAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{event:?}"));
    }
}

/// Keeps every mail it is given (or refuses each, when told to fail).
#[derive(Debug, Default)]
pub struct RecordingMailer {
    sent: Mutex<Vec<crate::mail::Mail>>,
    failing: std::sync::atomic::AtomicBool,
}

impl RecordingMailer {
    /// The mail taken so far, oldest first.
    #[must_use]
    pub fn sent(&self) -> Vec<crate::mail::Mail> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// From now on, refuse every mail (or take them again).
    pub fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

impl crate::mail::Mailer for RecordingMailer {
    fn send(&self, mail: &crate::mail::Mail) -> Result<(), crate::mail::MailError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::mail::MailError("refused by the test".into()));
        }
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(mail.clone());
        Ok(())
    }
}

/// A user named `name` in `store`, made at `clock`'s time with a password
/// hash nobody can match: the owner of tasks in examples and tests.
pub fn a_user(
    store: &dyn crate::ports::UserStore,
    clock: &dyn Clock,
    name: &str,
) -> Result<crate::user::UserId, crate::error::Error> {
    let now = clock.now();
    let seed = name
        .bytes()
        .fold(0u64, |seed, byte| seed.wrapping_mul(31) ^ u64::from(byte));
    let id = crate::user::UserId::from_uuid(crate::random::new_v7(now, &SeededRandom::new(seed))?);
    let user = crate::user::User {
        id,
        username: crate::user::Username::parse(name)?,
        email: None,
        email_verified: false,
        role: crate::user::Role::User,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&crate::user::UserRecord {
        user,
        password_hash: PasswordHash::new("not a hash".to_owned()),
        tokens_revoked_before: None,
    })?;
    Ok(id)
}

/// Runs `future` to its end on this thread, parking it while the future
/// waits: enough for examples of the async parts of the core (which
/// assume no runtime), not a scheduler.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
