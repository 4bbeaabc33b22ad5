//! Building the three auth services: what they need named, the rest
//! defaulted.

use std::net::IpAddr;
use std::sync::Arc;

use super::{AccountService, AuthServices, SessionService, Shared, UserAdmin};
use crate::access::AccessGate;
use crate::api_token::DEFAULT_MAX_API_TOKENS;
use crate::mail::{LinkBase, Mailer};
use crate::ports::{
    AccessTokenSigner, AccessTokenVerifier, AuditSink, LoginBackoff, NoAudit, PasswordHasher,
    RateLimiter, RefreshTokenHasher, RefreshTokenStore, Sha256, Unlimited, UserStore,
};
use crate::random::Random;
use crate::time::Clock;
use crate::token::TokenPolicy;
use crate::user::Username;

/// The limits the auth services enforce themselves.
#[derive(Clone)]
pub struct AuthLimits {
    /// Registrations per client address.
    pub register_per_client: Arc<dyn RateLimiter<IpAddr>>,
    /// Login attempts per client address.
    pub login_per_client: Arc<dyn RateLimiter<IpAddr>>,
    /// Refresh-token exchanges per client address.
    pub refresh_per_client: Arc<dyn RateLimiter<IpAddr>>,
    /// Login attempts per account (the username offered), whatever the address.
    pub login_per_account: Arc<dyn RateLimiter<Username>>,
    /// The growing delay after failed logins on one account (and after
    /// wrong current passwords on a password change).
    pub login_failures: Arc<dyn LoginBackoff>,
    /// The growing delay after wrong second-factor codes on one account
    /// (`f:` and its id), under a policy of its own that remembers longer
    /// ([`crate::BackoffPolicy::CODES`]); a right code does not clear it, so the
    /// owner's sign-ins do not hand a password thief fresh guesses.
    pub code_failures: Arc<dyn LoginBackoff>,
    /// A signed-in caller's confirmations of their password (a password
    /// change, ending a newer session, the account's deletion), right or
    /// wrong, per session (`s:` and its id; `u:` and the user's id for a
    /// token naming none): each costs a password hash, so even right ones
    /// must not come in a loop (attack of session 25, F1 of the second
    /// pass: some 90 hashes a second from one account slowed everyone's
    /// logins into 503s).
    pub confirmations_per_session: Arc<dyn RateLimiter<String>>,
    /// Mail sent to one account (reset and verification links), whoever
    /// asks: a reset asked for by login that is over it is dropped
    /// silently, a verification answered 429.
    /// Keyed by what the mail is for and the account (`reset:<id>`,
    /// `verify:<id>`).
    pub mail_per_account: Arc<dyn RateLimiter<String>>,
    /// Mail sent to one recipient mailbox, whichever accounts give it: as
    /// `mail_per_account`, keyed by what the mail is for and the mailbox
    /// (`verify:victim@example.com`: lower-cased, without a `+tag`).
    pub mail_per_address: Arc<dyn RateLimiter<String>>,
}

impl AuthLimits {
    /// No limits at all: for embedding in a trusted process, and for tests.
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            register_per_client: Arc::new(Unlimited),
            login_per_client: Arc::new(Unlimited),
            refresh_per_client: Arc::new(Unlimited),
            login_per_account: Arc::new(Unlimited),
            login_failures: Arc::new(Unlimited),
            code_failures: Arc::new(Unlimited),
            confirmations_per_session: Arc::new(Unlimited),
            mail_per_account: Arc::new(Unlimited),
            mail_per_address: Arc::new(Unlimited),
        }
    }
}

impl std::fmt::Debug for AuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimits").finish_non_exhaustive()
    }
}

/// What [`AuthServicesBuilder::build`] was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the auth services need: {}", .missing.join(", "))]
pub struct MissingDependency {
    missing: Vec<&'static str>,
}

impl MissingDependency {
    /// The names of the builder's methods that were not called.
    #[must_use]
    pub fn missing(&self) -> &[&'static str] {
        &self.missing
    }
}

/// Builds [`AuthServices`]. Required: [`users`](Self::users) and
/// [`refresh_tokens`](Self::refresh_tokens) (or both at once with
/// [`store`](Self::store)), [`hasher`](Self::hasher),
/// [`signer`](Self::signer), [`verifier`](Self::verifier),
/// [`refresh_hasher`](Self::refresh_hasher), [`clock`](Self::clock),
/// [`random`](Self::random) and [`limits`](Self::limits) (no default: a
/// program that forgot them would take unlimited password guesses; say
/// [`AuthLimits::unlimited`] to mean it). Defaulted: no audit log
/// ([`NoAudit`]), [`TokenPolicy::default`], registration open.
#[must_use = "a builder does nothing until built"]
pub struct AuthServicesBuilder {
    users: Option<Arc<dyn UserStore>>,
    refresh_tokens: Option<Arc<dyn RefreshTokenStore>>,
    hasher: Option<Arc<dyn PasswordHasher>>,
    signer: Option<Arc<dyn AccessTokenSigner>>,
    verifier: Option<Arc<dyn AccessTokenVerifier>>,
    refresh_hasher: Option<Arc<dyn RefreshTokenHasher>>,
    clock: Option<Arc<dyn Clock>>,
    random: Option<Arc<dyn Random>>,
    limits: Option<AuthLimits>,
    audit: Arc<dyn AuditSink>,
    policy: TokenPolicy,
    registration_open: bool,
    sha256: Option<Arc<dyn Sha256>>,
    max_api_tokens: usize,
    outbox: Option<super::mail::Outbox>,
    mfa: Option<super::second_factors::Mfa>,
    passkeys: Option<Arc<dyn crate::passkey::PasskeyCeremonies>>,
}

impl Default for AuthServicesBuilder {
    fn default() -> Self {
        Self {
            users: None,
            refresh_tokens: None,
            hasher: None,
            signer: None,
            verifier: None,
            refresh_hasher: None,
            clock: None,
            random: None,
            limits: None,
            audit: Arc::new(NoAudit),
            policy: TokenPolicy::default(),
            registration_open: true,
            sha256: None,
            max_api_tokens: DEFAULT_MAX_API_TOKENS,
            outbox: None,
            mfa: None,
            passkeys: None,
        }
    }
}

impl std::fmt::Debug for AuthServicesBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServicesBuilder")
            .field("missing", &self.missing())
            .field("policy", &self.policy)
            .field("registration_open", &self.registration_open)
            .finish_non_exhaustive()
    }
}

impl AuthServicesBuilder {
    /// Where users are kept (required).
    pub fn users(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    /// Where refresh tokens are kept (required).
    pub fn refresh_tokens(mut self, refresh_tokens: Arc<dyn RefreshTokenStore>) -> Self {
        self.refresh_tokens = Some(refresh_tokens);
        self
    }

    /// One store for both users and refresh tokens.
    pub fn store<S: UserStore + RefreshTokenStore + 'static>(self, store: Arc<S>) -> Self {
        self.users(store.clone()).refresh_tokens(store)
    }

    /// Hashes and verifies passwords (required).
    pub fn hasher(mut self, hasher: Arc<dyn PasswordHasher>) -> Self {
        self.hasher = Some(hasher);
        self
    }

    /// Signs the access tokens the services issue (required).
    pub fn signer(mut self, signer: Arc<dyn AccessTokenSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Verifies access tokens for the shared [`AccessGate`] (required).
    pub fn verifier(mut self, verifier: Arc<dyn AccessTokenVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Digests refresh and device tokens for storage (required).
    pub fn refresh_hasher(mut self, refresh_hasher: Arc<dyn RefreshTokenHasher>) -> Self {
        self.refresh_hasher = Some(refresh_hasher);
        self
    }

    /// The clock (required).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The randomness for ids and tokens (required).
    pub fn random(mut self, random: Arc<dyn Random>) -> Self {
        self.random = Some(random);
        self
    }

    /// Rate limits and the failed-login delay (required).
    pub fn limits(mut self, limits: AuthLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Where security events are recorded (default: nowhere).
    pub fn audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = audit;
        self
    }

    /// Issuer, audience, lifetimes and reuse grace of the tokens issued
    /// (default: [`TokenPolicy::default`]); an access-token lifetime past
    /// [`TokenPolicy::MAX_ACCESS_TTL`] is cut to it.
    pub fn policy(mut self, mut policy: TokenPolicy) -> Self {
        policy.access_ttl = policy.access_ttl.min(TokenPolicy::MAX_ACCESS_TTL);
        self.policy = policy;
        self
    }

    /// Offers API tokens and password-reset links, stored and looked up by
    /// their SHA-256 with `digest` (without it, making either fails and
    /// the gate refuses any API token).
    pub fn sha256(mut self, digest: Arc<dyn Sha256>) -> Self {
        self.sha256 = Some(digest);
        self
    }

    /// The most live API tokens a user may have (default
    /// [`DEFAULT_MAX_API_TOKENS`]); one more is refused as over quota.
    pub fn max_api_tokens(mut self, max: usize) -> Self {
        self.max_api_tokens = max;
        self
    }

    /// Sends mail with `mailer`: password-reset links asked for by login,
    /// and address verification, their links pointing to the page at
    /// `links` (without it, both fail with [`crate::Error::NoMail`]; they
    /// also need [`sha256`](Self::sha256)).
    pub fn mail(mut self, mailer: Arc<dyn Mailer>, links: LinkBase) -> Self {
        self.outbox = Some(super::mail::Outbox { mailer, links });
        self
    }

    /// Offers second factors (a TOTP authenticator and recovery codes):
    /// secrets sealed by `sealer`, codes computed with `hmac`, and
    /// `issuer` the name authenticator apps show (without it, enrolling
    /// fails with [`crate::Error::NoSecondFactors`], and so does the login
    /// of an account enrolled elsewhere; it also needs
    /// [`sha256`](Self::sha256)).
    pub fn second_factors(
        mut self,
        sealer: Arc<dyn crate::second_factor::SecretSealer>,
        hmac: Arc<dyn crate::second_factor::HmacSha1>,
        issuer: impl Into<String>,
    ) -> Self {
        self.mfa = Some(super::second_factors::Mfa {
            sealer,
            hmac,
            issuer: issuer.into(),
        });
        self
    }

    /// Offers passkeys, their ceremonies run by `ceremonies` (without it,
    /// registering or signing in with one fails with
    /// [`crate::Error::NoPasskeys`]; it also needs [`sha256`](Self::sha256)).
    pub fn passkeys(mut self, ceremonies: Arc<dyn crate::passkey::PasskeyCeremonies>) -> Self {
        self.passkeys = Some(ceremonies);
        self
    }

    /// Whether anyone may register (the default), or only administrators
    /// create users: closed, [`SessionService::register`] fails with
    /// [`crate::Error::RegistrationClosed`].
    pub fn registration_open(mut self, open: bool) -> Self {
        self.registration_open = open;
        self
    }

    fn missing(&self) -> Vec<&'static str> {
        [
            ("users", self.users.is_none()),
            ("refresh_tokens", self.refresh_tokens.is_none()),
            ("hasher", self.hasher.is_none()),
            ("signer", self.signer.is_none()),
            ("verifier", self.verifier.is_none()),
            ("refresh_hasher", self.refresh_hasher.is_none()),
            ("clock", self.clock.is_none()),
            ("random", self.random.is_none()),
            ("limits", self.limits.is_none()),
            // (mail's links are digested for storage)
            // (and so are recovery codes and two-step logins)
            (
                "sha256",
                (self.outbox.is_some() || self.mfa.is_some() || self.passkeys.is_some())
                    && self.sha256.is_none(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect()
    }

    /// The three services, sharing one state and one [`AccessGate`].
    ///
    /// # Errors
    ///
    /// [`MissingDependency`], naming every required part not given.
    pub fn build(self) -> Result<AuthServices, MissingDependency> {
        let missing = self.missing();
        let (
            Some(users),
            Some(refresh_tokens),
            Some(hasher),
            Some(signer),
            Some(verifier),
            Some(refresh_hasher),
            Some(clock),
            Some(random),
            Some(limits),
        ) = (
            self.users,
            self.refresh_tokens,
            self.hasher,
            self.signer,
            self.verifier,
            self.refresh_hasher,
            self.clock,
            self.random,
            self.limits,
        )
        else {
            return Err(MissingDependency { missing });
        };
        let mut gate = AccessGate::new(verifier, Arc::clone(&users), Arc::clone(&clock));
        if let Some(digest) = &self.sha256 {
            gate = gate.with_api_tokens(Arc::clone(digest));
        }
        let gate = Arc::new(gate);
        let shared = Arc::new(Shared {
            users,
            refresh_tokens,
            hasher,
            clock,
            random,
            limits,
            audit: self.audit,
            gate,
            policy: self.policy,
            sha256: self.sha256,
            max_api_tokens: self.max_api_tokens,
            outbox: self.outbox,
            mfa: self.mfa,
            passkeys: self.passkeys,
        });
        Ok(AuthServices {
            sessions: SessionService::new(
                Arc::clone(&shared),
                signer,
                refresh_hasher,
                self.registration_open,
            ),
            account: AccountService::new(Arc::clone(&shared)),
            admin: UserAdmin::new(shared),
        })
    }
}
