//! Sessions: registering, logging in, exchanging and ending refresh tokens,
//! and deciding whether an access token may act.

use std::net::IpAddr;
use std::sync::Arc;

use super::second_factors::SignIn;
use super::{Credentials, Registration, Shared};
use crate::access::AccessGate;
use crate::device::{DEVICE_TOKEN_TTL, DeviceToken};
use crate::error::{Error, HashError, Result, StoreError, ValidationError};
use crate::ports::{AccessTokenSigner, AuditEvent, RefreshTokenHasher, ThrottleKey, client_key};
use crate::random::new_v7;
use crate::session::{SessionKind, SessionRecord};
use crate::time::Timestamp;
use crate::token::{
    AccessClaims, Principal, RefreshToken, RefreshTokenRecord, SessionId, TokenPair, TokenPolicy,
};
use crate::user::{Role, User};

/// Registration, login, refresh-token rotation, logout, and the gate's
/// verdict on access tokens.
///
/// # Example
///
/// Register and log in, on the in-memory store with the fakes of
/// `todo_core::testing` (the [`testing`](crate#features) feature; the
/// production parts are todo-auth's and
/// todo-store's):
///
/// ```
/// use std::sync::Arc;
///
/// use todo_core::memory::MemoryStore;
/// use todo_core::testing::{
///     CountingHasher, ManualClock, ReversingDigest, SeededRandom, TableTokens,
/// };
/// use todo_core::{AuthServices, Credentials, Error, Registration};
///
/// let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
/// let auth = AuthServices::builder()
///     .store(Arc::new(MemoryStore::new()))
///     .hasher(Arc::new(CountingHasher::new(1)))
///     .signer(tokens.clone())
///     .verifier(tokens)
///     .refresh_hasher(Arc::new(ReversingDigest))
///     .clock(Arc::new(ManualClock::new()))
///     .random(Arc::new(SeededRandom::new(1)))
///     .limits(todo_core::AuthLimits::unlimited())
///     .build()?;
/// let sessions = &auth.sessions;
///
/// let registration = Registration::parse("Alice", "correct horse", None)
///     .map_err(|errors| format!("{errors:?}"))?;
/// let alice = sessions.register(None, registration)?;
/// assert_eq!(alice.username.as_str(), "alice");
///
/// let pair = sessions.login(None, &Credentials::offered("alice", "correct horse"))?;
/// let me = sessions.authenticate(&pair.access_token)?;
/// assert_eq!(me.user_id, alice.id);
///
/// // A wrong password and an unknown user fail alike.
/// let wrong = sessions.login(None, &Credentials::offered("alice", "wrong horse"));
/// assert!(matches!(wrong, Err(Error::InvalidCredentials)));
/// let unknown = sessions.login(None, &Credentials::offered("bob", "correct horse"));
/// assert!(matches!(unknown, Err(Error::InvalidCredentials)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SessionService {
    shared: Arc<Shared>,
    signer: Arc<dyn AccessTokenSigner>,
    refresh_hasher: Arc<dyn RefreshTokenHasher>,
    /// Whether anyone may register (else only administrators create users).
    registration_open: bool,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("policy", &self.shared.policy)
            .field("registration_open", &self.registration_open)
            .finish_non_exhaustive()
    }
}

impl SessionService {
    pub(super) fn new(
        shared: Arc<Shared>,
        signer: Arc<dyn AccessTokenSigner>,
        refresh_hasher: Arc<dyn RefreshTokenHasher>,
        registration_open: bool,
    ) -> Self {
        Self {
            shared,
            signer,
            refresh_hasher,
            registration_open,
        }
    }

    /// Decides whether access tokens may act; the services forget a user's
    /// remembered standing whenever they change it.
    #[must_use]
    pub fn gate(&self) -> &Arc<AccessGate> {
        &self.shared.gate
    }

    /// The same service with self-service registration open or closed
    /// (the builder's [`registration_open`](super::AuthServicesBuilder::registration_open)).
    #[must_use]
    pub fn with_registration_open(mut self, open: bool) -> Self {
        self.registration_open = open;
        self
    }

    /// The policy tokens are issued under.
    #[must_use]
    pub fn policy(&self) -> &TokenPolicy {
        &self.shared.policy
    }

    /// Registers a user with the `user` role, under the per-client limit.
    /// Fails with [`Error::RegistrationClosed`] when registration is closed.
    pub fn register(&self, client: Option<IpAddr>, registration: Registration) -> Result<User> {
        if !self.registration_open {
            return Err(Error::RegistrationClosed);
        }
        if let Some(ip) = client {
            self.shared
                .limits
                .register_per_client
                .check(&client_key(ip))
                .map_err(|retry_after| {
                    self.shared.audit(&AuditEvent::Throttled {
                        action: "register",
                        username: None,
                        client,
                    });
                    Error::RateLimited { retry_after }
                })?;
        }
        let user = self.shared.create_user(registration, Role::User)?;
        self.shared.audit(&AuditEvent::Registered {
            user: user.id,
            client,
        });
        Ok(user)
    }

    /// Logs in with a password alone: [`Self::sign_in`], but an account
    /// with a second factor fails with [`Error::SecondFactorRequired`]
    /// (and its password counts as right: the two-step login it started
    /// is left to expire).
    pub fn login(&self, client: Option<IpAddr>, credentials: &Credentials) -> Result<TokenPair> {
        match self.sign_in(client, credentials)? {
            SignIn::Tokens(pair) => Ok(pair),
            SignIn::SecondFactor(_) => Err(Error::SecondFactorRequired),
        }
    }

    /// Signs in with a password: a token pair, or, for an account with a
    /// second factor, a two-step login for [`Self::complete_sign_in`].
    /// Unknown users, wrong passwords and disabled accounts answer alike,
    /// and each costs one password verification at today's cost.
    ///
    /// Throttling, cheapest first: the per-address limit; the per-account
    /// limit (skipped for a device that signed in to the account before);
    /// then the attempt's slot in the failure count (the device's, else the
    /// account's), taken before the password is weighed and counted as a
    /// failure until the password matches. A success answers a device token.
    pub fn sign_in(&self, client: Option<IpAddr>, credentials: &Credentials) -> Result<SignIn> {
        // A login the hashing queue would refuse is refused before it
        // spends the address's or the account's allowance: a flood that
        // fills the queue must not turn the owner's retries into 429s
        // (session 32's attack, F4). (It may still be shed at its hash.)
        if let Some(retry_after) = self.shared.hasher.shedding() {
            return Err(Error::Overloaded { retry_after });
        }
        let now = self.shared.clock.now();
        let username = credentials.username.as_ref();
        if let Some(ip) = client {
            self.shared
                .limits
                .login_per_client
                .check(&client_key(ip))
                .map_err(|retry_after| {
                    self.shared.audit(&AuditEvent::Throttled {
                        action: "login",
                        username,
                        client,
                    });
                    Error::RateLimited { retry_after }
                })?;
        }
        let throttled = |retry_after| {
            self.shared.audit(&AuditEvent::Throttled {
                action: "login",
                username,
                client,
            });
            Error::RateLimited { retry_after }
        };
        // The cheap guard: attempts on one account from anywhere, in this
        // instance's memory. Logins from a device that signed in to the
        // account before are exempt (they have their own failure count).
        let account_guard = || match username {
            Some(account) => self
                .shared
                .limits
                .login_per_account
                .check(account)
                .map_err(&throttled),
            None => Ok(()),
        };
        let device = credentials
            .device
            .as_ref()
            .map(|d| self.refresh_hasher.digest(d.secret()));
        let device_owner = match &device {
            Some(digest) if username.is_some() => self
                .shared
                .limits
                .login_failures
                .device_owner(digest, now)?,
            _ => None,
        };
        if device_owner.is_none() {
            account_guard()?;
        }
        let record = match username {
            Some(username) => self.shared.users.find_user_by_username(username)?,
            None => None,
        };
        // A device token counts only for the account it signed in to.
        let via_device = match (&device, device_owner, &record) {
            (Some(digest), Some(owner), Some(r)) if r.user.id == owner => Some(digest),
            _ => None,
        };
        if device_owner.is_some() && via_device.is_none() {
            account_guard()?;
        }
        // The attempt's slot, taken before the password is weighed: against
        // the device when it signed in here before, else the account.
        let key = match (via_device, username) {
            (Some(digest), _) => Some(ThrottleKey::Device(digest)),
            (None, Some(account)) => Some(ThrottleKey::Account(account)),
            (None, None) => None,
        };
        if let Some(key) = key {
            self.shared
                .limits
                .login_failures
                .reserve(key, now)?
                .map_err(&throttled)?;
        }
        // The attempt was counted as a failure when its slot was taken.
        let fail = || {
            self.shared
                .audit(&AuditEvent::LoginFailed { username, client });
            Err(Error::InvalidCredentials)
        };
        // An oversized password matches nothing; no hashing is spent on it.
        let Some(password) = &credentials.password else {
            return fail();
        };
        let stored = record
            .as_ref()
            .map_or(self.shared.hasher.dummy_hash(), |r| &r.password_hash);
        let verification = match self.shared.hasher.verify(password, stored) {
            Ok(verification) => verification,
            Err(busy @ HashError::Busy { .. }) => {
                // Shed unweighed (503): overload must not count against
                // the account, or a login flood would lock its owner out.
                if let Some(key) = key {
                    self.shared.limits.login_failures.release(key)?;
                }
                return Err(busy.into());
            }
            Err(e) => return Err(e.into()),
        };
        let Some(mut record) = record.filter(|_| verification.matches) else {
            return fail();
        };
        // Checked only after the password, so that it tells an attacker nothing.
        if record.user.disabled {
            return fail();
        }
        if let Some(key) = key {
            // A device's success clears the device's count only: the
            // owner signing in does not hand an attacker fresh guesses.
            self.shared.limits.login_failures.record_success(key)?;
        }
        if verification.needs_rehash {
            // Only the hash, and only if the password did not change while
            // it was weighed: an admin's disable or a password change that
            // landed meanwhile is kept (a lost race just skips the upgrade).
            let upgraded = self.shared.hasher.hash(password)?;
            self.shared.users.replace_password_hash(
                record.user.id,
                &record.password_hash,
                &upgraded,
                now,
                None,
            )?;
            record.password_hash = upgraded;
        }
        let factors = self.shared.users.second_factors(record.user.id)?;
        if factors.required() {
            return self
                .challenge(client, &record, &factors, now)
                .map(SignIn::SecondFactor);
        }
        let known_device = match (via_device, &credentials.device) {
            (Some(_), Some(token)) => Some(token.clone()),
            _ => None,
        };
        self.open_session(
            &record,
            client,
            credentials.user_agent.clone(),
            known_device,
        )
        .map(SignIn::Tokens)
    }

    /// The end of a sign-in, once every factor is in: a device token (the
    /// one presented if it signed in to this account before, else a new
    /// one), a session and its first token pair.
    pub(super) fn open_session(
        &self,
        record: &crate::user::UserRecord,
        client: Option<IpAddr>,
        user_agent: Option<crate::session::UserAgent>,
        known_device: Option<DeviceToken>,
    ) -> Result<TokenPair> {
        let now = self.shared.clock.now();
        let username = Some(&record.user.username);
        let fail = || {
            self.shared
                .audit(&AuditEvent::LoginFailed { username, client });
            Err(Error::InvalidCredentials)
        };
        let device_token = match known_device {
            Some(token) => token,
            None => {
                let token = DeviceToken::generate(&*self.shared.random)?;
                let digest = self.refresh_hasher.digest(token.secret());
                let remembered = self.shared.limits.login_failures.remember_device(
                    &digest,
                    record.user.id,
                    now,
                    now.saturating_add(DEVICE_TOKEN_TTL),
                );
                match remembered {
                    Ok(()) => {}
                    // The account was deleted while the password was weighed.
                    Err(StoreError::MissingReference(_)) => return fail(),
                    Err(e) => return Err(e.into()),
                }
                token
            }
        };
        let session = SessionRecord {
            id: SessionId::from_uuid(new_v7(now, &*self.shared.random)?),
            user_id: record.user.id,
            kind: SessionKind::Login,
            created_at: now,
            last_used_at: now,
            expires_at: now.saturating_add(self.shared.policy.refresh_ttl),
            user_agent,
            address: client,
            ended_at: None,
        };
        let (mut pair, refresh) = self.issue(&record.user, session.id, now)?;
        pair.device_token = Some(device_token);
        match self.shared.refresh_tokens.start_session(&session, &refresh) {
            Ok(()) => {}
            // The account was deleted while the password was weighed.
            Err(StoreError::MissingReference(_)) => return fail(),
            Err(e) => return Err(e.into()),
        }
        self.shared.audit(&AuditEvent::LoginSucceeded {
            user: record.user.id,
            client,
        });
        Ok(pair)
    }

    /// Exchanges a refresh token for a new pair. The old token dies; a dead
    /// token presented again revokes its whole family, except within the
    /// reuse grace just after it was exchanged, when it gets a pair of its
    /// own (a second tab, a retry after a lost answer), at most
    /// [`TokenPolicy::MAX_GRACE_EXCHANGES`] times: one more is reuse.
    ///
    /// Under the per-client limit, checked first: a refused request reads
    /// nothing and counts as no use of the token.
    pub fn refresh(&self, client: Option<IpAddr>, token: &RefreshToken) -> Result<TokenPair> {
        if let Some(ip) = client {
            self.shared
                .limits
                .refresh_per_client
                .check(&client_key(ip))
                .map_err(|retry_after| {
                    self.shared.audit(&AuditEvent::Throttled {
                        action: "refresh",
                        username: None,
                        client,
                    });
                    Error::RateLimited { retry_after }
                })?;
        }
        let now = self.shared.clock.now();
        let hash = self.refresh_hasher.digest(token);
        let Some(old) = self.shared.refresh_tokens.find_refresh_token(&hash)? else {
            return Err(Error::InvalidRefreshToken);
        };
        if old.revoked {
            // Never exchanged: its session was ended (logout, signed out from
            // another device, a password change), not stolen and replayed.
            if old.used_at.is_none() {
                return Err(Error::InvalidRefreshToken);
            }
            return Err(self.reused(&old, client));
        }
        let grace = self.shared.policy.refresh_reuse_grace;
        let grace_since = now.saturating_sub(grace);
        let within_grace = match old.used_at {
            None => false,
            // Exchanged again as often as the grace allows: a replay (the
            // store weighs the count again, atomically; this spares the
            // signing).
            Some(used_at)
                if !grace.is_zero()
                    && used_at >= grace_since
                    && old.grace_exchanges >= TokenPolicy::MAX_GRACE_EXCHANGES =>
            {
                return Err(self.reused(&old, client));
            }
            // (No upper bound: a racing exchange may stamp `used_at` after
            // this request read its clock, or on an instance whose clock is
            // a little ahead; the store weighs the grace again, atomically.)
            Some(used_at) if !grace.is_zero() && used_at >= grace_since => true,
            // Used before the grace: a replay, even of a token since expired.
            Some(_) => return Err(self.reused(&old, client)),
        };
        if now >= old.expires_at {
            return Err(Error::InvalidRefreshToken);
        }
        // A token issued before the user's last password change or
        // disabling is dead, even if its family was stored after the
        // revocation ran (a login that finished just after it).
        let user = match self.shared.users.find_user(old.user_id)? {
            Some(record)
                if !record.user.disabled
                    && record
                        .tokens_revoked_before
                        .is_none_or(|cut| old.issued_at >= cut) =>
            {
                record.user
            }
            _ => {
                self.shared
                    .refresh_tokens
                    .end_session(old.user_id, old.family, now)?;
                return Err(Error::InvalidRefreshToken);
            }
        };
        let (pair, replacement) = self.issue(&user, old.family, now)?;
        let tokens = &self.shared.refresh_tokens;
        // Used already (within the grace), or lost the race to another
        // exchange: the grace and its count decide, in the store,
        // atomically; past them, this is reuse.
        let stored = (!within_grace && tokens.rotate_refresh_token(&hash, &replacement, now)?)
            || (!grace.is_zero()
                && tokens.exchange_again_within_grace(
                    &hash,
                    &replacement,
                    grace_since,
                    TokenPolicy::MAX_GRACE_EXCHANGES,
                )?);
        if stored {
            Ok(pair)
        } else {
            Err(self.reused(&old, client))
        }
    }

    /// Deletes the refresh tokens that expired more than one refresh
    /// lifetime (at least [`AccessGate::ENDED_SESSIONS_REMEMBERED`]) ago;
    /// returns how many. Those that expired more recently are kept, so
    /// that replaying a used one still revokes its family.
    ///
    /// Sessions that ended or expired as long ago go too, but never sooner
    /// than [`AccessGate::ENDED_SESSIONS_REMEMBERED`] after they ended:
    /// until then the access gate must still find them ended.
    pub fn purge_refresh_tokens(&self) -> Result<u64> {
        let kept = self
            .shared
            .policy
            .refresh_ttl
            .max(AccessGate::ENDED_SESSIONS_REMEMBERED);
        let cutoff = self.shared.clock.now().saturating_sub(kept);
        Ok(self
            .shared
            .refresh_tokens
            .purge_expired_refresh_tokens(cutoff)?)
    }

    /// Forgets failed-login counts that no longer delay anything and are
    /// older than the backoff remembers; returns how many.
    pub fn purge_login_failures(&self) -> Result<u64> {
        let now = self.shared.clock.now();
        let limits = &self.shared.limits;
        Ok(limits.login_failures.purge(now)? + limits.code_failures.purge(now)?)
    }

    /// Deletes two-step logins past their five minutes and enrolments
    /// never confirmed; returns how many rows.
    pub fn purge_second_factors(&self) -> Result<u64> {
        let now = self.shared.clock.now();
        Ok(self.shared.users.purge_second_factors(now)?)
    }

    /// A dead refresh token came back: its session ends, and with it the
    /// access tokens it issued (the thief's among them).
    fn reused(&self, token: &RefreshTokenRecord, client: Option<IpAddr>) -> Error {
        let now = self.shared.clock.now();
        if let Err(e) = self
            .shared
            .refresh_tokens
            .end_session(token.user_id, token.family, now)
        {
            return e.into();
        }
        self.shared.gate.forget(token.user_id);
        self.shared.audit(&AuditEvent::RefreshTokenReused {
            user: token.user_id,
            family: token.family,
            client,
        });
        Error::InvalidRefreshToken
    }

    /// Ends the token's session: its refresh tokens are revoked and its
    /// access tokens refused. Unknown tokens are ignored: logging out twice
    /// is not an error.
    pub fn logout(&self, client: Option<IpAddr>, token: &RefreshToken) -> Result<()> {
        let hash = self.refresh_hasher.digest(token);
        if let Some(record) = self.shared.refresh_tokens.find_refresh_token(&hash)? {
            let now = self.shared.clock.now();
            self.shared
                .refresh_tokens
                .end_session(record.user_id, record.family, now)?;
            self.shared.gate.forget(record.user_id);
            self.shared.audit(&AuditEvent::LoggedOut {
                user: record.user_id,
                client,
            });
        }
        Ok(())
    }

    /// The caller's live sessions, newest first.
    pub fn list_sessions(&self, caller: &Principal) -> Result<Vec<SessionRecord>> {
        super::require_login(caller)?;
        let now = self.shared.clock.now();
        Ok(self
            .shared
            .refresh_tokens
            .list_sessions(caller.user_id, now)?)
    }

    /// Ends one of the caller's sessions; its access tokens are refused on
    /// every instance within [`AccessGate::MAX_STALENESS`], on this one at
    /// once. Ending the current one is a logout, and an older one needs
    /// nothing more; ending a newer one than the caller's needs the
    /// password again (`current_password`): a stolen session must not sign
    /// its owner out of every new sign-in before they change the password
    /// (attack of session 25, F1), while the owner, who signs in again and
    /// so holds the newest session, ends the thief's as API.md says. An API
    /// token's session ends without it, however new.
    /// [`Error::Invalid`] without the password where it is needed,
    /// [`Error::WrongPassword`] when wrong (throttled per session).
    /// Another user's session, or one ended or expired, is
    /// [`Error::NotFound`].
    pub fn end_session(
        &self,
        client: Option<IpAddr>,
        caller: &Principal,
        id: SessionId,
        current_password: Option<&str>,
    ) -> Result<()> {
        super::require_login(caller)?;
        let now = self.shared.clock.now();
        if caller.session.is_none_or(|mine| id > mine) {
            // Found first: a password is weighed (a hash) only for a live
            // session of the caller's.
            let live = self
                .shared
                .refresh_tokens
                .list_sessions(caller.user_id, now)?;
            let Some(ending) = live.iter().find(|s| s.id == id) else {
                return Err(Error::NotFound);
            };
            // A newer login, only: the rule keeps a stolen session from
            // signing its owner out of their new sign-ins; an API token is
            // no sign-in (and is made with the password), so its owner
            // revokes it with a click, whenever they made it.
            if ending.kind == SessionKind::Login {
                self.confirm(client, caller, current_password, "end_session")?;
            }
        }
        let ended = self
            .shared
            .refresh_tokens
            .end_session(caller.user_id, id, now)?;
        self.shared.gate.forget(caller.user_id);
        if !ended {
            return Err(Error::NotFound);
        }
        self.shared.audit(&AuditEvent::SessionsEnded {
            user: caller.user_id,
            session: Some(id),
            client,
        });
        Ok(())
    }

    /// Ends every session of the caller's but the one their token came
    /// from; returns how many it ended. With the password (weighed), every
    /// other; without it, only the older ones, and [`Error::Invalid`] while
    /// a newer one lives, as [`Self::end_session`] of it would need it. A token that names no session
    /// (one issued before sessions were named) cannot tell which to keep:
    /// [`Error::Conflict`], ending nothing.
    pub fn end_other_sessions(
        &self,
        client: Option<IpAddr>,
        caller: &Principal,
        current_password: Option<&str>,
    ) -> Result<u64> {
        super::require_login(caller)?;
        let Some(keep) = caller.session else {
            return Err(Error::Conflict(
                "this sign-in names no session: sign in again to end the others",
            ));
        };
        let now = self.shared.clock.now();
        let store = &self.shared.refresh_tokens;
        let ended = if current_password.is_some() {
            self.confirm(client, caller, current_password, "end_other_sessions")?;
            store.end_other_sessions(caller.user_id, Some(keep), now)?
        } else {
            // Without the password only older sign-ins end, in the store's
            // own step: one started meanwhile (the owner signing in again)
            // is newer and stays (third review, 1). API tokens stay too:
            // they are no sign-in, and a stolen session must not stop its
            // owner's scripts; with the password, they end with the rest.
            let live = store.list_sessions(caller.user_id, now)?;
            if live
                .iter()
                .any(|s| s.id > keep && s.kind == SessionKind::Login)
            {
                return Err(Error::Invalid(vec![ValidationError::Blank {
                    field: "current_password",
                }]));
            }
            store.end_older_sessions(caller.user_id, keep, now)?
        };
        self.shared.gate.forget(caller.user_id);
        if ended > 0 {
            self.shared.audit(&AuditEvent::SessionsEnded {
                user: caller.user_id,
                session: None,
                client,
            });
        }
        Ok(ended)
    }

    /// The shared state, for the service's other files.
    pub(super) fn refresh_hasher(&self) -> &dyn RefreshTokenHasher {
        &*self.refresh_hasher
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The caller's password, again, before they end another session.
    pub(super) fn confirm(
        &self,
        client: Option<IpAddr>,
        caller: &Principal,
        current_password: Option<&str>,
        action: &'static str,
    ) -> Result<()> {
        let Some(current) = current_password else {
            return Err(Error::Invalid(vec![ValidationError::Blank {
                field: "current_password",
            }]));
        };
        let record = self.shared.current_user(caller.user_id)?;
        self.shared
            .confirm_password(client, &record, caller.session, current, action)
    }

    /// Verifies an access token and checks that it may still act: its user
    /// exists and is enabled, it was issued after the user's last
    /// revocation, and its session has not ended. The principal's role is
    /// the stored one. An API token (`todo_pat_…`) is admitted too, with a
    /// principal whose [`crate::Grant`] names its scopes and project: the
    /// auth services refuse it, but the task and project services take a
    /// user id, so a caller that hands them one must honour the grant
    /// itself (todo-http's `Scoped` does).
    pub fn authenticate(&self, access_token: &str) -> Result<Principal> {
        self.shared.gate.authorize(access_token)
    }

    /// [`Self::authenticate`], with the token's claims: what a gateway asks
    /// before each request.
    pub fn validate(&self, access_token: &str) -> Result<(AccessClaims, Principal)> {
        let claims = self.shared.gate.verify(access_token)?;
        let principal = self.shared.gate.admit(&claims)?;
        Ok((claims, principal))
    }

    fn issue(
        &self,
        user: &User,
        session: SessionId,
        now: Timestamp,
    ) -> Result<(TokenPair, RefreshTokenRecord)> {
        let policy = &self.shared.policy;
        let issued_at = now.unix_seconds();
        let ttl = i64::try_from(policy.access_ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = AccessClaims {
            subject: user.id,
            username: user.username.clone(),
            role: user.role,
            issuer: policy.issuer.clone(),
            audience: policy.audience.clone(),
            issued_at,
            not_before: issued_at,
            expires_at: issued_at.saturating_add(ttl),
            token_id: new_v7(now, &*self.shared.random)?,
            session: Some(session),
        };
        let access_token = self.signer.sign(&claims)?;
        let refresh_token = RefreshToken::generate(&*self.shared.random)?;
        let record = RefreshTokenRecord {
            hash: self.refresh_hasher.digest(&refresh_token),
            family: session,
            user_id: user.id,
            issued_at: now,
            expires_at: now.saturating_add(policy.refresh_ttl),
            used_at: None,
            grace_exchanges: 0,
            revoked: false,
        };
        let pair = TokenPair {
            access_token,
            expires_in: policy.access_ttl.as_secs(),
            refresh_token,
            device_token: None,
        };
        Ok((pair, record))
    }
}
