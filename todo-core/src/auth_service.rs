//! The auth service: registration, login, token rotation, account and admin
//! operations. Every rule of the API contract about users and tokens is here.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::access::AccessGate;
use crate::device::{DEVICE_TOKEN_TTL, DeviceToken};
use crate::error::{Error, HashError, Result, StoreError, TokenRejection, ValidationError};
use crate::ports::{
    AccessTokenSigner, AccessTokenVerifier, AuditEvent, AuditSink, LoginBackoff, PasswordHasher,
    RateLimiter, RefreshTokenHasher, RefreshTokenStore, ThrottleKey, Unlimited, UserStore,
};
use crate::query::{Page, PageLimit, UserCursor};
use crate::random::{Random, new_v7};
use crate::time::{Clock, Timestamp};
use crate::token::{
    AccessClaims, FamilyId, Principal, RefreshToken, RefreshTokenRecord, TokenPair, TokenPolicy,
};
use crate::user::{
    Email, Password, Role, User, UserChange, UserId, UserPatch, UserRecord, Username,
};

/// The limits the auth service enforces itself.
#[derive(Clone)]
pub struct AuthLimits {
    /// Registrations per client address.
    pub register_per_client: Arc<dyn RateLimiter<IpAddr>>,
    /// Login attempts per client address.
    pub login_per_client: Arc<dyn RateLimiter<IpAddr>>,
    /// Login attempts per account (the username offered), whatever the address.
    pub login_per_account: Arc<dyn RateLimiter<Username>>,
    /// The growing delay after failed logins on one account.
    pub login_failures: Arc<dyn LoginBackoff>,
}

impl AuthLimits {
    /// No limits at all: for embedding in a trusted process, and for tests.
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            register_per_client: Arc::new(Unlimited),
            login_per_client: Arc::new(Unlimited),
            login_per_account: Arc::new(Unlimited),
            login_failures: Arc::new(Unlimited),
        }
    }
}

impl std::fmt::Debug for AuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimits").finish_non_exhaustive()
    }
}

/// Everything the auth service works with.
#[derive(Clone)]
pub struct AuthDeps {
    pub users: Arc<dyn UserStore>,
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub signer: Arc<dyn AccessTokenSigner>,
    pub verifier: Arc<dyn AccessTokenVerifier>,
    pub refresh_hasher: Arc<dyn RefreshTokenHasher>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub limits: AuthLimits,
    pub audit: Arc<dyn AuditSink>,
    pub policy: TokenPolicy,
}

impl std::fmt::Debug for AuthDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthDeps")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A registration, parsed: every field valid.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: Username,
    pub password: Password,
    pub email: Option<Email>,
}

impl Registration {
    /// Parses the three fields, reporting every invalid one.
    pub fn parse(
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> std::result::Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let username = Username::parse(username).map_err(|e| errors.push(e)).ok();
        let email = match email.map(Email::parse) {
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            Some(Ok(email)) => Some(email),
            None => None,
        };
        let password = match &username {
            Some(username) => Password::new_for(password, username),
            // Still check the password on its own, to report both fields at once.
            None => Username::parse("placeholder-user")
                .and_then(|placeholder| Password::new_for(password, &placeholder)),
        };
        let password = password.map_err(|e| errors.push(e)).ok();
        match (username, password) {
            (Some(username), Some(password)) if errors.is_empty() => Ok(Self {
                username,
                password,
                email,
            }),
            _ => Err(errors),
        }
    }
}

/// A login attempt as offered: fields that cannot be valid are `None`, and
/// fail like a wrong password.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: Option<Username>,
    pub password: Option<Password>,
    /// A device token from an earlier login, if the client has one.
    pub device: Option<DeviceToken>,
}

impl Credentials {
    #[must_use]
    pub fn offered(username: &str, password: &str) -> Self {
        Self {
            username: Username::parse(username).ok(),
            password: Password::offered(password),
            device: None,
        }
    }

    /// With the device token a client presents (ignored when malformed).
    #[must_use]
    pub fn with_device(mut self, raw: Option<&str>) -> Self {
        self.device = raw.and_then(DeviceToken::parse);
        self
    }
}

/// The auth service.
#[derive(Clone)]
pub struct AuthService {
    deps: AuthDeps,
    gate: Arc<AccessGate>,
    /// Whether anyone may register (else only administrators create users).
    registration_open: bool,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("policy", &self.deps.policy)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    #[must_use]
    pub fn new(deps: AuthDeps) -> Self {
        let gate = AccessGate::new(
            Arc::clone(&deps.verifier),
            Arc::clone(&deps.users),
            Arc::clone(&deps.clock),
        );
        Self {
            deps,
            gate: Arc::new(gate),
            registration_open: true,
        }
    }

    /// Decides whether access tokens may act; the service forgets a user's
    /// remembered standing whenever it changes it.
    #[must_use]
    pub fn gate(&self) -> &Arc<AccessGate> {
        &self.gate
    }

    /// The same service with self-service registration open (the default)
    /// or closed: closed, [`AuthService::register`] fails with
    /// [`Error::RegistrationClosed`] and only [`AuthService::create_user`]
    /// (the administrators' command) makes users.
    #[must_use]
    pub fn with_registration_open(mut self, open: bool) -> Self {
        self.registration_open = open;
        self
    }

    #[must_use]
    pub fn policy(&self) -> &TokenPolicy {
        &self.deps.policy
    }

    /// Registers a user with the `user` role, under the per-client limit.
    /// Fails with [`Error::RegistrationClosed`] when registration is closed.
    pub fn register(&self, client: Option<IpAddr>, registration: Registration) -> Result<User> {
        if !self.registration_open {
            return Err(Error::RegistrationClosed);
        }
        if let Some(ip) = client {
            self.deps
                .limits
                .register_per_client
                .check(&ip)
                .map_err(|retry_after| {
                    self.audit(&AuditEvent::Throttled {
                        action: "register",
                        username: None,
                        client,
                    });
                    Error::RateLimited { retry_after }
                })?;
        }
        let user = self.create_user(registration, Role::User)?;
        self.audit(&AuditEvent::Registered {
            user: user.id,
            client,
        });
        Ok(user)
    }

    /// Creates a user with any role, without limits: for bootstrapping the
    /// first admin from the command line.
    pub fn create_user(&self, registration: Registration, role: Role) -> Result<User> {
        let now = self.deps.clock.now();
        let Registration {
            username,
            password,
            email,
        } = registration;
        let password_hash = self.deps.hasher.hash(&password)?;
        let user = User {
            id: UserId::from_uuid(new_v7(now, &*self.deps.random)?),
            username,
            email,
            role,
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        let record = UserRecord {
            user,
            password_hash,
            tokens_revoked_before: None,
        };
        match self.deps.users.insert_user(&record) {
            Ok(()) => Ok(record.user),
            Err(StoreError::Conflict(_)) => Err(Error::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Logs in. Unknown users, wrong passwords and disabled accounts answer
    /// alike, and each costs one password verification at today's cost.
    ///
    /// Throttling, cheapest first: the per-address limit; the per-account
    /// limit (skipped for a device that signed in to the account before);
    /// then the attempt's slot in the failure count (the device's, else the
    /// account's), taken before the password is weighed and counted as a
    /// failure until the password matches. A success answers a device token.
    pub fn login(&self, client: Option<IpAddr>, credentials: &Credentials) -> Result<TokenPair> {
        let now = self.deps.clock.now();
        let username = credentials.username.as_ref();
        if let Some(ip) = client {
            self.deps
                .limits
                .login_per_client
                .check(&ip)
                .map_err(|retry_after| {
                    self.audit(&AuditEvent::Throttled {
                        action: "login",
                        username,
                        client,
                    });
                    Error::RateLimited { retry_after }
                })?;
        }
        let throttled = |retry_after| {
            self.audit(&AuditEvent::Throttled {
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
                .deps
                .limits
                .login_per_account
                .check(account)
                .map_err(&throttled),
            None => Ok(()),
        };
        let device = credentials
            .device
            .as_ref()
            .map(|d| self.deps.refresh_hasher.digest(d.secret()));
        let device_owner = match &device {
            Some(digest) if username.is_some() => {
                self.deps.limits.login_failures.device_owner(digest, now)?
            }
            _ => None,
        };
        if device_owner.is_none() {
            account_guard()?;
        }
        let record = match username {
            Some(username) => self.deps.users.find_user_by_username(username)?,
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
            self.deps
                .limits
                .login_failures
                .reserve(key, now)?
                .map_err(&throttled)?;
        }
        // The attempt was counted as a failure when its slot was taken.
        let fail = || {
            self.audit(&AuditEvent::LoginFailed { username, client });
            Err(Error::InvalidCredentials)
        };
        // An oversized password matches nothing; no hashing is spent on it.
        let Some(password) = &credentials.password else {
            return fail();
        };
        let stored = record
            .as_ref()
            .map_or(self.deps.hasher.dummy_hash(), |r| &r.password_hash);
        let verification = match self.deps.hasher.verify(password, stored) {
            Ok(verification) => verification,
            Err(busy @ HashError::Busy { .. }) => {
                // Shed unweighed (503): overload must not count against
                // the account, or a login flood would lock its owner out.
                if let Some(key) = key {
                    self.deps.limits.login_failures.release(key)?;
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
            self.deps.limits.login_failures.record_success(key)?;
        }
        if verification.needs_rehash {
            // Only the hash, and only if the password did not change while
            // it was weighed: an admin's disable or a password change that
            // landed meanwhile is kept (a lost race just skips the upgrade).
            let upgraded = self.deps.hasher.hash(password)?;
            self.deps.users.replace_password_hash(
                record.user.id,
                &record.password_hash,
                &upgraded,
                now,
                None,
            )?;
            record.password_hash = upgraded;
        }
        let device_token = match (via_device, &credentials.device) {
            (Some(_), Some(token)) => token.clone(),
            _ => {
                let token = DeviceToken::generate(&*self.deps.random)?;
                let digest = self.deps.refresh_hasher.digest(token.secret());
                let remembered = self.deps.limits.login_failures.remember_device(
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
        let family = FamilyId::from_uuid(new_v7(now, &*self.deps.random)?);
        let (mut pair, refresh) = self.issue(&record.user, family, now)?;
        pair.device_token = Some(device_token);
        match self.deps.refresh_tokens.insert_refresh_token(&refresh) {
            Ok(()) => {}
            // The account was deleted while the password was weighed.
            Err(StoreError::MissingReference(_)) => return fail(),
            Err(e) => return Err(e.into()),
        }
        self.audit(&AuditEvent::LoginSucceeded {
            user: record.user.id,
            client,
        });
        Ok(pair)
    }

    /// Exchanges a refresh token for a new pair. The old token dies; a dead
    /// token presented again revokes its whole family, except within the
    /// reuse grace just after it was exchanged, when it gets a pair of its
    /// own (a second tab, a retry after a lost answer).
    pub fn refresh(&self, client: Option<IpAddr>, token: &RefreshToken) -> Result<TokenPair> {
        let now = self.deps.clock.now();
        let hash = self.deps.refresh_hasher.digest(token);
        let Some(old) = self.deps.refresh_tokens.find_refresh_token(&hash)? else {
            return Err(Error::InvalidRefreshToken);
        };
        if old.revoked {
            return Err(self.reused(&old, client));
        }
        let grace = self.deps.policy.refresh_reuse_grace;
        let grace_since = now.saturating_sub(grace);
        let within_grace = match old.used_at {
            None => false,
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
        let user = match self.deps.users.find_user(old.user_id)? {
            Some(record)
                if !record.user.disabled
                    && record
                        .tokens_revoked_before
                        .is_none_or(|cut| old.issued_at >= cut) =>
            {
                record.user
            }
            _ => {
                self.deps.refresh_tokens.revoke_refresh_family(old.family)?;
                return Err(Error::InvalidRefreshToken);
            }
        };
        let (pair, replacement) = self.issue(&user, old.family, now)?;
        let tokens = &self.deps.refresh_tokens;
        // Used already (within the grace), or lost the race to another
        // exchange: the grace decides, in the store, atomically.
        let stored = (!within_grace && tokens.rotate_refresh_token(&hash, &replacement, now)?)
            || (!grace.is_zero()
                && tokens.exchange_again_within_grace(&hash, &replacement, grace_since)?);
        if stored {
            Ok(pair)
        } else {
            Err(self.reused(&old, client))
        }
    }

    /// Deletes the refresh tokens that expired more than one refresh
    /// lifetime ago; returns how many. Those that expired more recently are
    /// kept, so that replaying a used one still revokes its family.
    pub fn purge_refresh_tokens(&self) -> Result<u64> {
        let cutoff = self
            .deps
            .clock
            .now()
            .saturating_sub(self.deps.policy.refresh_ttl);
        Ok(self
            .deps
            .refresh_tokens
            .purge_expired_refresh_tokens(cutoff)?)
    }

    /// Forgets failed-login counts that no longer delay anything and are
    /// older than the backoff remembers; returns how many.
    pub fn purge_login_failures(&self) -> Result<u64> {
        let now = self.deps.clock.now();
        Ok(self.deps.limits.login_failures.purge(now)?)
    }

    fn reused(&self, token: &RefreshTokenRecord, client: Option<IpAddr>) -> Error {
        if let Err(e) = self.deps.refresh_tokens.revoke_refresh_family(token.family) {
            return e.into();
        }
        self.audit(&AuditEvent::RefreshTokenReused {
            user: token.user_id,
            family: token.family,
            client,
        });
        Error::InvalidRefreshToken
    }

    /// Revokes the token's family. Unknown tokens are ignored: logging out
    /// twice is not an error.
    pub fn logout(&self, client: Option<IpAddr>, token: &RefreshToken) -> Result<()> {
        let hash = self.deps.refresh_hasher.digest(token);
        if let Some(record) = self.deps.refresh_tokens.find_refresh_token(&hash)? {
            self.deps
                .refresh_tokens
                .revoke_refresh_family(record.family)?;
            self.audit(&AuditEvent::LoggedOut {
                user: record.user_id,
                client,
            });
        }
        Ok(())
    }

    /// Verifies an access token and checks that it may still act: its user
    /// exists and is enabled, and it was issued after the user's last
    /// revocation. The principal's role is the stored one.
    pub fn authenticate(&self, access_token: &str) -> Result<Principal> {
        self.gate.authorize(access_token)
    }

    /// [`Self::authenticate`], with the token's claims: what a gateway asks
    /// before each request.
    pub fn validate(&self, access_token: &str) -> Result<(AccessClaims, Principal)> {
        let claims = self.gate.verify(access_token)?;
        let principal = self.gate.admit(&claims)?;
        Ok((claims, principal))
    }

    /// The caller's own account.
    pub fn me(&self, principal: &Principal) -> Result<User> {
        self.current_user(principal.user_id)
            .map(|record| record.user)
    }

    /// Changes the caller's e-mail address (`None` removes it).
    pub fn update_me(&self, principal: &Principal, email: Option<Email>) -> Result<User> {
        let mut record = self.current_user(principal.user_id)?;
        if record.user.email != email {
            let now = self.deps.clock.now();
            let change = UserChange {
                email: Some(email.clone()),
                ..UserChange::at(now)
            };
            if !self.deps.users.change_user(record.user.id, &change)? {
                return Err(Error::NotFound);
            }
            record.user.email = email;
            record.user.updated_at = now;
        }
        Ok(record.user)
    }

    /// Changes the caller's password after checking the current one, and
    /// revokes every refresh token and every access token issued before.
    pub fn change_password(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        current: &str,
        new: &str,
    ) -> Result<()> {
        let now = self.deps.clock.now();
        let record = self.current_user(principal.user_id)?;
        let username = &record.user.username;
        let new = Password::new_for(new, username)?;
        // The attempt's slot is taken before the current password is weighed.
        self.deps
            .limits
            .login_failures
            .reserve(ThrottleKey::SignedIn(record.user.id), now)?
            .map_err(|retry_after| {
                let username = Some(username);
                self.audit(&AuditEvent::Throttled {
                    action: "change_password",
                    username,
                    client,
                });
                Error::RateLimited { retry_after }
            })?;
        let matches = match Password::offered(current) {
            Some(current) => match self.deps.hasher.verify(&current, &record.password_hash) {
                Ok(verification) => verification.matches,
                Err(busy @ HashError::Busy { .. }) => {
                    let key = ThrottleKey::SignedIn(record.user.id);
                    self.deps.limits.login_failures.release(key)?;
                    return Err(busy.into());
                }
                Err(e) => return Err(e.into()),
            },
            None => false,
        };
        if !matches {
            return Err(Error::WrongPassword);
        }
        self.deps
            .limits
            .login_failures
            .record_success(ThrottleKey::SignedIn(record.user.id))?;
        let new_hash = self.deps.hasher.hash(&new)?;
        // Only if nobody changed the password while both were weighed; the
        // other fields (an admin's disable, say) are left as they are now.
        if !self.deps.users.replace_password_hash(
            record.user.id,
            &record.password_hash,
            &new_hash,
            now,
            Some(now),
        )? {
            return Err(Error::Conflict(
                "the password was changed meanwhile; try again",
            ));
        }
        self.gate.forget(record.user.id);
        self.deps
            .refresh_tokens
            .revoke_user_refresh_tokens(record.user.id)?;
        // A device that signed in with the old password keeps no allowance
        // of its own against the new one.
        self.deps
            .limits
            .login_failures
            .forget_devices(record.user.id)?;
        self.audit(&AuditEvent::PasswordChanged {
            user: record.user.id,
            client,
        });
        Ok(())
    }

    /// A page of users in creation order (admins only).
    pub fn list_users(
        &self,
        principal: &Principal,
        limit: PageLimit,
        cursor: Option<UserCursor>,
    ) -> Result<Page<User, UserCursor>> {
        self.require_admin(principal)?;
        let mut items = self
            .deps
            .users
            .list_users(cursor.map(|c| c.0), limit.get().saturating_add(1))?;
        let next_cursor = if items.len() > limit.get() {
            items.truncate(limit.get());
            items.last().map(|u| UserCursor(u.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Any user (admins only).
    pub fn get_user(&self, principal: &Principal, id: UserId) -> Result<User> {
        self.require_admin(principal)?;
        self.deps
            .users
            .find_user(id)?
            .map(|r| r.user)
            .ok_or(Error::NotFound)
    }

    /// Disables, enables, promotes, demotes or re-addresses a user (admins
    /// only). Disabling revokes the user's refresh tokens. Admins cannot
    /// disable or demote themselves, so that there is always one left.
    pub fn patch_user(&self, principal: &Principal, id: UserId, patch: UserPatch) -> Result<User> {
        self.require_admin(principal)?;
        let self_harm = patch.disabled == Some(true) || patch.role == Some(Role::User);
        if id == principal.user_id && self_harm {
            return Err(Error::Conflict(
                "admins cannot disable or demote themselves",
            ));
        }
        let mut record = self.deps.users.find_user(id)?.ok_or(Error::NotFound)?;
        let before = record.user.clone();
        if let Some(disabled) = patch.disabled {
            record.user.disabled = disabled;
        }
        if let Some(role) = patch.role {
            record.user.role = role;
        }
        if let Some(email) = &patch.email {
            record.user.email.clone_from(email);
        }
        if record.user != before {
            let now = self.deps.clock.now();
            record.user.updated_at = now;
            // Only the fields the patch names are written: a password
            // change landing meanwhile is kept. Disabling ends every token
            // issued so far, so that enabling the account again does not
            // revive a stolen one.
            let change = UserChange {
                email: patch.email,
                role: patch.role,
                disabled: patch.disabled,
                revoke_before: (record.user.disabled && !before.disabled).then_some(now),
                updated_at: now,
            };
            if !self.deps.users.change_user(id, &change)? {
                return Err(Error::NotFound);
            }
            self.gate.forget(id);
            self.audit(&AuditEvent::AdminAction {
                actor: principal.user_id,
                action: "patch_user",
                target: id,
            });
        }
        if record.user.disabled && !before.disabled {
            self.deps.refresh_tokens.revoke_user_refresh_tokens(id)?;
            self.deps.limits.login_failures.forget_devices(id)?;
        }
        Ok(record.user)
    }

    /// Deletes a user with their tasks and tokens (admins only, not themselves).
    pub fn delete_user(&self, principal: &Principal, id: UserId) -> Result<()> {
        self.require_admin(principal)?;
        if id == principal.user_id {
            return Err(Error::Conflict("admins cannot delete themselves"));
        }
        if !self.deps.users.delete_user(id)? {
            return Err(Error::NotFound);
        }
        self.gate.forget(id);
        self.audit(&AuditEvent::AdminAction {
            actor: principal.user_id,
            action: "delete_user",
            target: id,
        });
        Ok(())
    }

    /// The role in a token may be minutes old: admin rights are checked
    /// against the stored account on every admin call.
    fn require_admin(&self, principal: &Principal) -> Result<()> {
        let record = self.current_user(principal.user_id)?;
        if record.user.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// The account behind a principal, if it still exists and is enabled
    /// (read afresh: the gate's reading may be a second old).
    fn current_user(&self, id: UserId) -> Result<UserRecord> {
        let revoked = Error::InvalidToken(TokenRejection::Revoked);
        match self.deps.users.find_user(id)? {
            Some(record) if !record.user.disabled => Ok(record),
            _ => Err(revoked),
        }
    }

    fn issue(
        &self,
        user: &User,
        family: FamilyId,
        now: Timestamp,
    ) -> Result<(TokenPair, RefreshTokenRecord)> {
        let policy = &self.deps.policy;
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
            token_id: new_v7(now, &*self.deps.random)?,
        };
        let access_token = self.deps.signer.sign(&claims)?;
        let refresh_token = RefreshToken::generate(&*self.deps.random)?;
        let record = RefreshTokenRecord {
            hash: self.deps.refresh_hasher.digest(&refresh_token),
            family,
            user_id: user.id,
            issued_at: now,
            expires_at: now.saturating_add(policy.refresh_ttl),
            used_at: None,
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

    fn audit(&self, event: &AuditEvent<'_>) {
        self.deps.audit.record(event);
    }
}

/// How long a client should wait, in whole seconds, at least one.
#[must_use]
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}
