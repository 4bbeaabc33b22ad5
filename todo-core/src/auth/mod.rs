//! The auth services: who may act, as three services a reader can hold in
//! their head, built together by [`AuthServices::builder`].
//!
//! - [`SessionService`]: register, log in, refresh, log out, and whether an
//!   access token may act; the purges of what sessions leave behind.
//! - [`AccountService`]: the caller's own account.
//! - [`UserAdmin`]: the administrators' operations on any user.
//!
//! The three share one state (stores, clock, randomness, limits, audit log,
//! token policy, and one [`AccessGate`]) by `Arc`: a change one of them makes
//! is seen by the others, and the gate forgets a user's standing whichever
//! service changed it.

#![deny(missing_docs)]

mod account;
mod admin;
mod api_tokens;
mod builder;
mod input;
mod mail;
mod passkeys;
mod reset;
mod second_factors;
mod sessions;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use account::{AccountPatch, AccountService};
pub use admin::{UserAdmin, UserRef};
pub use api_tokens::{NewApiToken, RequestOrigin};
pub use builder::{AuthLimits, AuthServicesBuilder, MissingDependency};
pub use input::{Credentials, Registration};
pub use mail::{OutgoingMail, ResetMail};
pub use passkeys::PasskeyChallenge;
pub use second_factors::{MfaChallenge, SignIn, TotpEnrolment};
pub use sessions::SessionService;

use crate::access::AccessGate;
use crate::error::{Error, HashError, Result, StoreError, TokenRejection};
use crate::ports::{
    AuditEvent, AuditSink, PasswordHasher, RefreshTokenStore, ThrottleKey, UserStore,
};
use crate::random::{Random, new_v7};
use crate::time::Clock;
use crate::token::{SessionId, TokenPolicy};
use crate::user::{Password, Role, User, UserId, UserRecord};

/// The three auth services, over one shared state.
#[derive(Clone)]
pub struct AuthServices {
    /// Register, log in, refresh, log out, validate.
    pub sessions: SessionService,
    /// The caller's own account.
    pub account: AccountService,
    /// The administrators' operations on users.
    pub admin: UserAdmin,
}

impl std::fmt::Debug for AuthServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServices")
            .field("policy", self.policy())
            .finish_non_exhaustive()
    }
}

impl AuthServices {
    /// A builder: name the stores, the hasher, the token signer and verifier,
    /// the refresh-token digest, the clock and the randomness; the rest has
    /// defaults. (`todo_auth::auth_services()` starts one with the
    /// production clock, randomness and digest in place.)
    pub fn builder() -> AuthServicesBuilder {
        AuthServicesBuilder::default()
    }

    /// The gate the three share: every authenticated request passes it, and
    /// it forgets a user's remembered standing whenever a service changes it.
    #[must_use]
    pub fn gate(&self) -> &Arc<AccessGate> {
        self.sessions.gate()
    }

    /// The token policy the services issue tokens under.
    #[must_use]
    pub fn policy(&self) -> &TokenPolicy {
        self.sessions.policy()
    }
}

/// What the three services share, by `Arc`.
pub(crate) struct Shared {
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub(crate) hasher: Arc<dyn PasswordHasher>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) limits: AuthLimits,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) gate: Arc<AccessGate>,
    pub(crate) policy: TokenPolicy,
    /// How API tokens and reset links are digested for storage; `None`:
    /// neither is offered.
    pub(crate) sha256: Option<Arc<dyn crate::ports::Sha256>>,
    /// The most live API tokens a user may have.
    pub(crate) max_api_tokens: usize,
    /// Where mail goes; `None`: this server sends none.
    pub(crate) outbox: Option<mail::Outbox>,
    /// What seals and checks second factors; `None`: this server offers
    /// none (and refuses a login that needs one).
    pub(crate) mfa: Option<second_factors::Mfa>,
    /// The passkey ceremonies' library; `None`: this server offers none.
    pub(crate) passkeys: Option<Arc<dyn crate::passkey::PasskeyCeremonies>>,
}

impl Shared {
    pub(crate) fn audit(&self, event: &AuditEvent<'_>) {
        self.audit.record(event);
    }

    /// Takes one of the client address's attempts from the allowance that
    /// logins, reset links and verification links share (audited when
    /// refused).
    pub(crate) fn client_allowance(
        &self,
        client: Option<IpAddr>,
        action: &'static str,
    ) -> Result<()> {
        self.client_limit(&*self.limits.login_per_client, client, action, None)
    }

    /// Takes one of the client address's attempts from `limit` (audited
    /// when refused, with the account concerned when there is one).
    pub(crate) fn client_limit(
        &self,
        limit: &dyn crate::ports::RateLimiter<IpAddr>,
        client: Option<IpAddr>,
        action: &'static str,
        username: Option<&crate::user::Username>,
    ) -> Result<()> {
        let Some(ip) = client else {
            return Ok(());
        };
        limit
            .check(&crate::ports::client_key(ip))
            .map_err(|retry_after| {
                self.audit(&AuditEvent::Throttled {
                    action,
                    username,
                    client,
                });
                Error::RateLimited { retry_after }
            })
    }

    /// The account behind a principal, if it still exists and is enabled
    /// (read afresh: the gate's reading may be a second old).
    pub(crate) fn current_user(&self, id: UserId) -> Result<UserRecord> {
        let revoked = Error::InvalidToken(TokenRejection::Revoked);
        match self.users.find_user(id)? {
            Some(record) if !record.user.disabled => Ok(record),
            _ => Err(revoked),
        }
    }

    /// Weighs a signed-in caller's current password, under a throttle of
    /// their session's own (apart from the login form's, so that guessing
    /// there does not block the owner here; and per session, so that a
    /// thief guessing with a stolen session does not block the owner's
    /// other sessions): [`Error::WrongPassword`] when it does not match.
    pub(crate) fn confirm_password(
        &self,
        client: Option<IpAddr>,
        record: &UserRecord,
        session: Option<SessionId>,
        current: &str,
        action: &'static str,
    ) -> Result<()> {
        let allowance = match session {
            Some(session) => format!("s:{session}"),
            None => format!("u:{}", record.user.id),
        };
        let throttled = |retry_after| {
            self.audit(&AuditEvent::Throttled {
                action,
                username: Some(&record.user.username),
                client,
            });
            Error::RateLimited { retry_after }
        };
        self.limits
            .confirmations_per_session
            .check(&allowance)
            .map_err(throttled)?;
        // And as a login from its address: each costs a hash, and sessions
        // are cheap to make, so an address gets no more hashes this way than
        // by logging in (third review, 2).
        if let Some(ip) = client {
            self.limits
                .login_per_client
                .check(&crate::ports::client_key(ip))
                .map_err(throttled)?;
        }
        let now = self.clock.now();
        let key = ThrottleKey::SignedIn(record.user.id, session);
        // The attempt's slot is taken before the current password is weighed.
        self.limits
            .login_failures
            .reserve(key, now)?
            .map_err(throttled)?;
        let matches = match Password::offered(current) {
            Some(current) => match self.hasher.verify(&current, &record.password_hash) {
                Ok(verification) => verification.matches,
                Err(busy @ HashError::Busy { .. }) => {
                    self.limits.login_failures.release(key)?;
                    return Err(busy.into());
                }
                Err(e) => return Err(e.into()),
            },
            None => false,
        };
        if !matches {
            return Err(Error::WrongPassword);
        }
        self.limits.login_failures.record_success(key)?;
        Ok(())
    }

    /// Puts `new_hash` in place of the password `record` was read with,
    /// and ends everything the old one let in: every session (logins and
    /// API tokens), the devices' allowances, and every token issued before
    /// (the revocation cut, taken after the writes). Fails with
    /// [`Error::Conflict`] if the password was changed meanwhile.
    pub(crate) fn install_password(
        &self,
        record: &UserRecord,
        new_hash: &crate::user::PasswordHash,
    ) -> Result<()> {
        // Only if nobody changed the password while it was weighed; the
        // other fields (an admin's disable, say) are left as they are now.
        // The cut is taken now, after the hashing: a token issued while the
        // password was weighed (by a thief's refresh, say) is older.
        let written = self.clock.now();
        if !self.users.replace_password_hash(
            record.user.id,
            &record.password_hash,
            new_hash,
            written,
            Some(written),
        )? {
            return Err(Error::Conflict(
                "the password was changed meanwhile; try again",
            ));
        }
        self.refresh_tokens
            .end_other_sessions(record.user.id, None, written)?;
        // A reset link made before would undo this password (attack of
        // session 26, reset, 2).
        self.users.delete_password_resets(record.user.id)?;
        // A device that signed in with the old password keeps no allowance
        // of its own against the new one; whoever guessed codes with the
        // old password has no password now (and the owner waits no more).
        self.limits.login_failures.forget_devices(record.user.id)?;
        self.forget_code_guesses(record.user.id)?;
        // The last cut, after every write: a login that read the old hash
        // just before it was replaced, or a refresh that found its token
        // just before it was revoked, issues tokens older than this.
        let done = self.clock.now();
        let cut = crate::user::UserChange {
            revoke_before: Some(done),
            ..crate::user::UserChange::at(done)
        };
        self.users.change_user(record.user.id, &cut)?;
        self.gate.forget(record.user.id);
        Ok(())
    }

    /// Makes a user with `role`: the one way users come to exist, whether
    /// they register or an administrator creates them.
    pub(crate) fn create_user(&self, registration: Registration, role: Role) -> Result<User> {
        let now = self.clock.now();
        let Registration {
            username,
            password,
            email,
        } = registration;
        let password_hash = self.hasher.hash(&password)?;
        let user = User {
            id: UserId::from_uuid(new_v7(now, &*self.random)?),
            username,
            email,
            email_verified: false,
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
        match self.users.insert_user(&record) {
            Ok(()) => Ok(record.user),
            Err(StoreError::Conflict(_)) => Err(Error::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }
}

/// Refuses an API token's principal: a caller's account, sessions and
/// tokens, and the administration of users, are a login's to act on, never
/// a script's (whatever its scopes, which name tasks, projects and events
/// only). [`Error::Forbidden`] for an API token.
pub(crate) fn require_login(principal: &crate::token::Principal) -> Result<()> {
    if principal.grant.is_login() {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// How long a client should wait, in whole seconds, at least one.
#[must_use]
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}
