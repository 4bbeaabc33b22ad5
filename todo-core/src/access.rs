//! The one authority on whether an access token may act.
//!
//! A signature proves who issued a token, not that its holder may still use
//! it: the account may since have been deleted or disabled, its password
//! changed, or the session that issued the token ended. [`AccessGate`]
//! decides, for every authenticated request of every server: the token
//! verifies, its user exists and is enabled, it was issued after the user's
//! last revocation, and its session (`sid`) has not ended. The role it
//! answers with is the stored one, not the token's.
//!
//! Servers share the database, not memory, so each keeps what it read for a
//! short while (at most [`AccessGate::MAX_STALENESS`]): a revocation made on
//! one instance is honoured by every other within that time, and at once on
//! the instance that made it ([`AccessGate::forget`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::api_token::{ApiTokenHash, ApiTokenRecord, ApiTokenSecret, Grant};
use crate::error::{Error, Result, TokenRejection};
use crate::ports::{AccessTokenVerifier, Sha256, UserStore};
use crate::session::EndedSessions;
use crate::time::{Clock, Timestamp};
use crate::token::{AccessClaims, Principal, TokenPolicy};
use crate::user::{Role, UserId, UserRecord, Username};

/// What decides whether a user's tokens may act.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Standing {
    username: Username,
    role: Role,
    disabled: bool,
    /// Tokens issued before this instant are refused.
    revoked_before: Option<Timestamp>,
    /// Sessions ended within the last
    /// [`AccessGate::ENDED_SESSIONS_REMEMBERED`]: their tokens are refused
    /// (older ones have no live token left).
    ended_sessions: EndedSessions,
}

/// A standing as read at `read_at`; `None`: no such user.
#[derive(Debug, Clone)]
struct Remembered {
    standing: Option<Standing>,
    read_at: Timestamp,
}

/// Verifies access tokens and decides whether they may still act.
///
/// ```
/// use std::sync::Arc;
///
/// use todo_core::memory::MemoryStore;
/// use todo_core::testing::{ManualClock, SeededRandom, TableTokens};
/// use todo_core::{AccessClaims, AccessGate, AccessTokenSigner, Error, TokenRejection};
/// use todo_core::{Clock, Role, UserChange, Username};
/// # fn a_user(
/// #     store: &dyn todo_core::UserStore,
/// #     clock: &dyn todo_core::Clock,
/// #     name: &str,
/// # ) -> Result<todo_core::UserId, Box<dyn std::error::Error>> {
/// #     let now = clock.now();
/// #     let id = todo_core::UserId::from_uuid(todo_core::new_v7(now, &todo_core::testing::SeededRandom::new(name.len() as u64))?);
/// #     let user = todo_core::User {
/// #         id,
/// #         username: todo_core::Username::parse(name)?,
/// #         email: None,
/// #         email_verified: false,
/// #         role: todo_core::Role::User,
/// #         disabled: false,
/// #         created_at: now,
/// #         updated_at: now,
/// #     };
/// #     let password_hash = todo_core::PasswordHash::new("not a hash".to_owned());
/// #     store.insert_user(&todo_core::UserRecord { user, password_hash, tokens_revoked_before: None })?;
/// #     Ok(id)
/// # }
///
/// let store = Arc::new(MemoryStore::new());
/// let clock = Arc::new(ManualClock::new());
/// // In production: todo-auth's `JwtSigner` and `JwtVerifier`.
/// let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
/// let gate = AccessGate::new(tokens.clone(), store.clone(), clock.clone());
/// let alice = a_user(&*store, &*clock, "alice")?;
///
/// let now = clock.now();
/// let token = tokens.sign(&AccessClaims {
///     subject: alice,
///     username: Username::parse("alice")?,
///     role: Role::User,
///     issuer: "todo-auth".to_owned(),
///     audience: "todo".to_owned(),
///     issued_at: now.unix_seconds(),
///     not_before: now.unix_seconds(),
///     expires_at: now.unix_seconds() + 900,
///     token_id: todo_core::new_v7(now, &SeededRandom::new(3))?,
///     session: None,
/// })?;
/// assert_eq!(gate.authorize(&token)?.user_id, alice);
///
/// // Disabled later: the token still verifies, but may no longer act.
/// let disable = UserChange { disabled: Some(true), ..UserChange::at(now) };
/// todo_core::UserStore::change_user(&*store, alice, &disable)?;
/// gate.forget(alice); // this instance made the change: honour it at once
/// assert!(matches!(
///     gate.authorize(&token),
///     Err(Error::InvalidToken(TokenRejection::Revoked))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AccessGate {
    verifier: Arc<dyn AccessTokenVerifier>,
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    staleness: Duration,
    remembered: RwLock<HashMap<UserId, Remembered>>,
    capacity: usize,
    /// Grows with every [`AccessGate::forget`]: a reading taken before a
    /// forget is not remembered after it (it may predate the change).
    forgotten: AtomicU64,
    /// How API tokens are looked up (their SHA-256); `None`: refused.
    api_token_digest: Option<Arc<dyn Sha256>>,
    /// API tokens read lately, by digest, for at most the staleness, like
    /// standings (tokens not found are not remembered).
    remembered_tokens: RwLock<HashMap<ApiTokenHash, (ApiTokenRecord, Timestamp)>>,
}

impl std::fmt::Debug for AccessGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessGate")
            .field("staleness", &self.staleness)
            .finish_non_exhaustive()
    }
}

impl AccessGate {
    /// The longest a decision may rest on what was read from the store.
    pub const MAX_STALENESS: Duration = Duration::from_secs(1);
    /// How far back ended sessions are read: the longest access-token
    /// lifetime ([`TokenPolicy::MAX_ACCESS_TTL`], 3600 s), with 600 s for a
    /// verifier's leeway (at most 60 s) and clocks that differ between
    /// instances (up to 540 s). A token of a session ended longer ago has
    /// expired; past that skew, one could outlive the memory of its end.
    pub const ENDED_SESSIONS_REMEMBERED: Duration =
        Duration::from_secs(TokenPolicy::MAX_ACCESS_TTL.as_secs() + 600);
    /// Users whose standing is remembered at most (about 100 bytes each,
    /// and 16 more per session they ended lately: at most
    /// [`EndedSessions::MAX`]).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A gate that remembers standings for [`Self::MAX_STALENESS`].
    #[must_use]
    pub fn new(
        verifier: Arc<dyn AccessTokenVerifier>,
        users: Arc<dyn UserStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            verifier,
            users,
            clock,
            staleness: Self::MAX_STALENESS,
            remembered: RwLock::new(HashMap::new()),
            capacity: Self::DEFAULT_CAPACITY,
            forgotten: AtomicU64::new(0),
            api_token_digest: None,
            remembered_tokens: RwLock::new(HashMap::new()),
        }
    }

    /// Admits API tokens too, looked up by their SHA-256 (without this,
    /// one is refused like any token that does not verify).
    #[must_use]
    pub fn with_api_tokens(mut self, sha: Arc<dyn Sha256>) -> Self {
        self.api_token_digest = Some(sha);
        self
    }

    /// Remembers standings for `staleness` (capped at
    /// [`Self::MAX_STALENESS`]; zero reads the store on every decision).
    #[must_use]
    pub fn with_staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness.min(Self::MAX_STALENESS);
        self
    }

    /// Checks the token's signature, issuer, audience and times; touches no
    /// storage.
    pub fn verify(&self, access_token: &str) -> Result<AccessClaims> {
        Ok(self.verifier.verify(access_token, self.clock.now())?)
    }

    /// The decision for verified `claims` if it can be made from what was
    /// read recently; `None` when the store must be asked ([`Self::admit`]).
    pub fn admit_remembered(&self, claims: &AccessClaims) -> Option<Result<Principal>> {
        let now = self.clock.now();
        let remembered = self
            .remembered
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = remembered.get(&claims.subject)?;
        if now.duration_since(entry.read_at) >= self.staleness || now < entry.read_at {
            return None;
        }
        Some(decide(claims, entry.standing.as_ref()))
    }

    /// The decision for verified `claims`, reading the user from the store
    /// unless a recent reading is remembered. Blocks on the store.
    pub fn admit(&self, claims: &AccessClaims) -> Result<Principal> {
        if let Some(decision) = self.admit_remembered(claims) {
            return decision;
        }
        // Taken before the read: what is remembered is never younger than
        // it looks, and a forget during the read keeps it from being kept.
        let read_at = self.clock.now();
        let generation = self.forgotten.load(Ordering::Acquire);
        let since = read_at.saturating_sub(Self::ENDED_SESSIONS_REMEMBERED);
        let standing = self
            .users
            .find_standing(claims.subject, since)?
            .map(|(record, ended)| standing_of(&record, ended));
        let decision = decide(claims, standing.as_ref());
        self.remember(claims.subject, standing, read_at, generation);
        decision
    }

    /// Verifies the token and admits it: the whole check, for callers that
    /// may block.
    /// An API token ([`ApiTokenSecret`]) is admitted as such.
    pub fn authorize(&self, access_token: &str) -> Result<Principal> {
        if ApiTokenSecret::is_claimed_by(access_token) {
            let secret = ApiTokenSecret::parse(access_token)
                .ok_or(Error::InvalidToken(TokenRejection::Malformed))?;
            return self
                .admit_api_token(&secret)
                .map(|(principal, _)| principal);
        }
        let claims = self.verify(access_token)?;
        self.admit(&claims)
    }

    /// Whether verified `claims` have expired since, by the gate's clock:
    /// for a caller that holds a token past its verification (a live
    /// stream ends when its token does).
    #[must_use]
    pub fn has_expired(&self, claims: &AccessClaims) -> bool {
        claims.expires_at <= self.clock.now().unix_seconds()
    }

    /// Forgets what was read about `user`: call after changing their
    /// standing, so this instance honours it at once.
    pub fn forget(&self, user: UserId) {
        let mut remembered = self
            .remembered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        remembered.remove(&user);
        drop(remembered);
        self.remembered_tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (token, _)| token.session.user_id != user);
    }

    /// How often an API token's last use is written: a token used all day
    /// costs a write a minute on each instance, not one a request.
    pub const API_TOKEN_USE_RECORDED_EVERY: Duration = Duration::from_secs(60);

    /// The decision for an API token if it can be made from what was read
    /// recently (the token and its user's standing); `None` when the store
    /// must be asked ([`Self::admit_api_token`]).
    pub fn admit_api_token_remembered(
        &self,
        secret: &ApiTokenSecret,
    ) -> Option<Result<(Principal, Timestamp)>> {
        let sha = self.api_token_digest.as_ref()?;
        self.remembered_api_token(&secret.digest(&**sha))
    }

    /// [`Self::admit_api_token_remembered`] for a token already digested.
    fn remembered_api_token(&self, hash: &ApiTokenHash) -> Option<Result<(Principal, Timestamp)>> {
        let now = self.clock.now();
        let token = {
            let tokens = self
                .remembered_tokens
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let (token, read_at) = tokens.get(hash)?;
            if now.duration_since(*read_at) >= self.staleness || now < *read_at {
                return None;
            }
            token.clone()
        };
        let remembered = self
            .remembered
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = remembered.get(&token.session.user_id)?;
        if now.duration_since(entry.read_at) >= self.staleness || now < entry.read_at {
            return None;
        }
        Some(decide_api_token(&token, entry.standing.as_ref(), now))
    }

    /// The decision for an API token: looked up by its digest, then its
    /// user's standing, each from what was read within the staleness or
    /// from the store. Blocks on the store. Records the token's use every
    /// [`Self::API_TOKEN_USE_RECORDED_EVERY`]. With the principal, when
    /// the token expires.
    pub fn admit_api_token(&self, secret: &ApiTokenSecret) -> Result<(Principal, Timestamp)> {
        let revoked = Error::InvalidToken(TokenRejection::Revoked);
        let Some(sha) = self.api_token_digest.as_ref() else {
            return Err(revoked);
        };
        // (digested once, for the memory and the store alike)
        let hash = secret.digest(&**sha);
        if let Some(decision) = self.remembered_api_token(&hash) {
            return decision;
        }
        let read_at = self.clock.now();
        let generation = self.forgotten.load(Ordering::Acquire);
        // A miss is not remembered: text made up to look like a token
        // must not fill the memory and push real tokens out of it.
        let Some(token) = self.users.find_api_token(&hash)? else {
            return Err(revoked);
        };
        self.remember_token(hash, token.clone(), read_at, generation);
        let since = read_at.saturating_sub(Self::ENDED_SESSIONS_REMEMBERED);
        let user = token.session.user_id;
        let standing = self
            .users
            .find_standing(user, since)?
            .map(|(record, ended)| standing_of(&record, ended));
        let decision = decide_api_token(&token, standing.as_ref(), read_at);
        self.remember(user, standing, read_at, generation);
        if decision.is_ok()
            && read_at.duration_since(token.session.last_used_at)
                >= Self::API_TOKEN_USE_RECORDED_EVERY
        {
            // A failed write of the last use refuses nothing: it is shown,
            // not relied on.
            let _ = self.users.api_token_used(token.session.id, read_at);
        }
        decision
    }

    fn remember_token(
        &self,
        hash: ApiTokenHash,
        token: ApiTokenRecord,
        read_at: Timestamp,
        generation: u64,
    ) {
        if self.staleness.is_zero() {
            return;
        }
        let mut tokens = self
            .remembered_tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.forgotten.load(Ordering::Acquire) != generation {
            return;
        }
        if tokens.len() >= self.capacity {
            let (now, staleness) = (self.clock.now(), self.staleness);
            tokens.retain(|_, (_, at)| now.duration_since(*at) < staleness);
            if tokens.len() >= self.capacity {
                tokens.clear();
            }
        }
        tokens.insert(hash, (token, read_at));
    }

    fn remember(
        &self,
        user: UserId,
        standing: Option<Standing>,
        read_at: Timestamp,
        generation: u64,
    ) {
        if self.staleness.is_zero() {
            return;
        }
        let now = self.clock.now();
        let mut remembered = self
            .remembered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // A forget since the read: the reading may predate the change.
        if self.forgotten.load(Ordering::Acquire) != generation {
            return;
        }
        if remembered.len() >= self.capacity {
            // Drop the stale; if that is not enough, start afresh: a miss
            // costs one read, never a wrong answer.
            let staleness = self.staleness;
            remembered.retain(|_, r| now.duration_since(r.read_at) < staleness);
            if remembered.len() >= self.capacity {
                remembered.clear();
            }
        }
        remembered.insert(user, Remembered { standing, read_at });
    }
}

fn standing_of(record: &UserRecord, ended_sessions: EndedSessions) -> Standing {
    Standing {
        username: record.user.username.clone(),
        role: record.user.role,
        disabled: record.user.disabled,
        revoked_before: record.tokens_revoked_before,
        ended_sessions,
    }
}

/// A token may act when its user exists, is enabled, revoked nothing after
/// the token was issued, and its session has not ended. Every refusal is
/// the same 401.
fn decide(claims: &AccessClaims, standing: Option<&Standing>) -> Result<Principal> {
    let revoked = Error::InvalidToken(TokenRejection::Revoked);
    let Some(standing) = standing else {
        return Err(revoked);
    };
    if standing.disabled {
        return Err(revoked);
    }
    if let Some(cut) = standing.revoked_before
        && issued_at_millis(claims) < cut.unix_micros().div_euclid(1000)
    {
        return Err(revoked);
    }
    if let Some(session) = claims.session {
        // Ended sessions are read back one longest lifetime: a token that
        // claims to live longer could outlive the memory of its end.
        let lifetime = claims.expires_at.saturating_sub(claims.issued_at);
        let longest = i64::try_from(TokenPolicy::MAX_ACCESS_TTL.as_secs()).unwrap_or(i64::MAX);
        let issued_at = Timestamp::from_unix_micros(issued_at_millis(claims).saturating_mul(1000))
            .unwrap_or(Timestamp::MIN);
        if lifetime > longest || standing.ended_sessions.refuses(session, issued_at) {
            return Err(revoked);
        }
    }
    Ok(Principal {
        user_id: claims.subject,
        username: standing.username.clone(),
        role: standing.role,
        session: claims.session,
        grant: Grant::Login,
    })
}

/// An API token may act while it lives (not ended, not expired) and its
/// user exists, is enabled and revoked nothing after the token was made (a
/// password change ends API tokens as it ends logins). Every refusal is the
/// same 401.
fn decide_api_token(
    token: &ApiTokenRecord,
    standing: Option<&Standing>,
    now: Timestamp,
) -> Result<(Principal, Timestamp)> {
    let revoked = Error::InvalidToken(TokenRejection::Revoked);
    let session = &token.session;
    let Some(standing) = standing else {
        return Err(revoked);
    };
    if !session.is_live(now) || standing.disabled {
        return Err(revoked);
    }
    // (its end is read with the token itself, not from the user's ended
    // sessions: always whole, however many sessions ended lately)
    if standing
        .revoked_before
        .is_some_and(|cut| session.created_at < cut)
    {
        return Err(revoked);
    }
    let principal = Principal {
        user_id: session.user_id,
        username: standing.username.clone(),
        role: standing.role,
        session: Some(session.id),
        grant: Grant::ApiToken(token.grant),
    };
    Ok((principal, session.expires_at))
}

/// When the token was issued, in milliseconds: from its `jti` (a UUIDv7
/// made at issue, signed with the rest) when it is one, else from `iat`
/// (whole seconds). Milliseconds matter: a token stolen in the second
/// before a password change must not outlive it.
fn issued_at_millis(claims: &AccessClaims) -> i64 {
    let from_iat = claims.issued_at.saturating_mul(1000);
    match claims.token_id.get_timestamp() {
        Some(at) if claims.token_id.get_version_num() == 7 => {
            let (seconds, nanos) = at.to_unix();
            let millis = i64::try_from(seconds)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000)
                .saturating_add(i64::from(nanos / 1_000_000));
            // The jti must agree with iat to the second; if not, trust the
            // coarser claim rather than a finer one that contradicts it.
            if millis.div_euclid(1000) == claims.issued_at {
                millis
            } else {
                from_iat
            }
        }
        _ => from_iat,
    }
}
