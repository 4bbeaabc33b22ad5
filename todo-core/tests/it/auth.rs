//! The auth service's rules, on the in-memory store with a fake clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use todo_core::memory::MemoryStore;
use todo_core::testing::{
    CountingHasher, ManualClock, RecordingAudit, ReversingDigest, SeededRandom, TableTokens,
};
use todo_core::{
    AccountPatch, AuthLimits, AuthServices, Clock, Credentials, Error, LoginBackoff, NewTask,
    PageLimit, Principal, RateLimiter, RefreshToken, RefreshTokenHasher, RefreshTokenStore,
    Registration, Role, StoreError, TaskService, ThrottleKey, Timestamp, Title, TokenPolicy,
    TokenRejection, UserPatch, UserRef, UserStore, Username,
};

pub struct Harness {
    pub clock: Arc<ManualClock>,
    pub hasher: Arc<CountingHasher>,
    pub store: Arc<MemoryStore>,
    pub audit: Arc<RecordingAudit>,
    pub mail: Arc<todo_core::testing::RecordingMailer>,
    pub auth: AuthServices,
}

/// The origin of the harness's mailed links.
pub const LINKS: &str = "https://todo.test";

/// The harness's quota of live API tokens per user.
pub const API_TOKEN_QUOTA: usize = 3;

pub fn harness() -> Harness {
    harness_with(AuthLimits::unlimited(), 2)
}

pub fn harness_with(limits: AuthLimits, cost: u32) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new());
    build(store, clock, limits, cost)
}

fn build(
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    limits: AuthLimits,
    cost: u32,
) -> Harness {
    build_with_policy(store, clock, limits, cost, TokenPolicy::default())
}

/// A harness whose tokens are issued under `policy`.
pub fn harness_with_policy(policy: TokenPolicy) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new());
    build_with_policy(store, clock, AuthLimits::unlimited(), 2, policy)
}

/// A harness whose services send no mail.
pub fn harness_without_mail() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new());
    mailing(
        store,
        clock,
        AuthLimits::unlimited(),
        2,
        TokenPolicy::default(),
        false,
    )
}

fn build_with_policy(
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    limits: AuthLimits,
    cost: u32,
    policy: TokenPolicy,
) -> Harness {
    mailing(store, clock, limits, cost, policy, true)
}

fn mailing(
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    limits: AuthLimits,
    cost: u32,
    policy: TokenPolicy,
    sends_mail: bool,
) -> Harness {
    let hasher = Arc::new(CountingHasher::new(cost));
    let audit = Arc::new(RecordingAudit::default());
    let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
    let mail = Arc::new(todo_core::testing::RecordingMailer::default());
    let builder = AuthServices::builder()
        .store(store.clone())
        .hasher(hasher.clone())
        .signer(tokens.clone())
        .verifier(tokens)
        .refresh_hasher(Arc::new(ReversingDigest))
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(1)))
        .limits(limits)
        .audit(audit.clone())
        .policy(policy)
        .sha256(Arc::new(todo_core::testing::FakeSha256))
        .second_factors(
            Arc::new(todo_core::testing::OpenSealer),
            Arc::new(todo_core::testing::FakeHmacSha1),
            "todo",
        )
        .passkeys(Arc::new(todo_core::testing::FakePasskeys::default()))
        .max_api_tokens(API_TOKEN_QUOTA);
    let builder = if sends_mail {
        builder.mail(mail.clone(), todo_core::LinkBase::parse(LINKS).unwrap())
    } else {
        builder
    };
    let auth = builder.build().unwrap();
    Harness {
        clock,
        hasher,
        store,
        audit,
        mail,
        auth,
    }
}

const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

impl Harness {
    pub fn register(&self, name: &str, password: &str) -> todo_core::User {
        self.auth
            .sessions
            .register(ADDR, Registration::parse(name, password, None).unwrap())
            .unwrap()
    }

    pub fn login(&self, name: &str, password: &str) -> Result<todo_core::TokenPair, Error> {
        self.auth
            .sessions
            .login(ADDR, &Credentials::offered(name, password))
    }

    pub fn principal(&self, name: &str, password: &str) -> (Principal, todo_core::TokenPair) {
        let pair = self.login(name, password).unwrap();
        (
            self.auth.sessions.authenticate(&pair.access_token).unwrap(),
            pair,
        )
    }

    pub fn admin(&self) -> Principal {
        let reg = Registration::parse("root", "admin-password", None).unwrap();
        self.auth.admin.create_user(reg, Role::Admin).unwrap();
        self.principal("root", "admin-password").0
    }
}

#[test]
fn registration_folds_the_username_and_refuses_a_taken_one() {
    let h = harness();
    let user = h.register("Alice", "correct horse");
    assert_eq!(user.username.as_str(), "alice");
    assert_eq!(user.role, Role::User);
    assert!(!user.disabled);
    assert_eq!(user.created_at, h.clock.now());
    let again = h.auth.sessions.register(
        ADDR,
        Registration::parse("ALICE", "other password", None).unwrap(),
    );
    assert!(matches!(again, Err(Error::UsernameTaken)), "{again:?}");
    assert_eq!(
        h.hasher.hashes(),
        2,
        "every registration hashes its password"
    );
}

#[test]
fn registration_reports_every_invalid_field_at_once() {
    let errors = Registration::parse("a!", "short", Some("not-an-email")).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field()).collect();
    assert_eq!(fields, ["username", "email", "password"]);
    let errors = Registration::parse("bob_smith", "bob_smith", None).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field(), "password");
}

#[test]
fn login_issues_a_five_minute_access_token_and_a_refresh_token() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let pair = h.login("ALICE", "correct horse").unwrap();
    assert_eq!(pair.expires_in, 300);
    assert_eq!(
        pair.refresh_token.expose().len(),
        43,
        "256 bits in URL-safe base64"
    );
    let principal = h.auth.sessions.authenticate(&pair.access_token).unwrap();
    assert_eq!(principal.user_id, alice.id);
    assert_eq!(principal.role, Role::User);
    // Only the digest is stored.
    let digest = ReversingDigest.digest(&pair.refresh_token);
    let stored = h.store.find_refresh_token(&digest).unwrap().unwrap();
    assert_eq!(stored.user_id, alice.id);
    assert_eq!(
        stored.expires_at,
        h.clock
            .now()
            .saturating_add(TokenPolicy::default().refresh_ttl)
    );

    h.clock.advance(Duration::from_secs(299));
    assert!(h.auth.sessions.authenticate(&pair.access_token).is_ok());
    h.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        h.auth.sessions.authenticate(&pair.access_token),
        Err(Error::InvalidToken(TokenRejection::Expired))
    ));
}

#[test]
fn unknown_user_wrong_password_and_disabled_account_fail_alike_with_one_verification_each() {
    let h = harness();
    h.register("alice", "correct horse");
    let bob = h.register("bob", "battery staple");
    let admin = h.admin();
    h.auth
        .admin
        .patch_user(
            &admin,
            bob.id,
            UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .unwrap();

    for (name, password) in [
        ("nobody", "correct horse"),     // unknown user
        ("alice", "wrong horse"),        // wrong password
        ("bob", "battery staple"),       // disabled, right password
        ("not a username!", "whatever"), // cannot even be a username
    ] {
        let before = h.hasher.verifications();
        let outcome = h.login(name, password);
        assert!(
            matches!(outcome, Err(Error::InvalidCredentials)),
            "{name}: {outcome:?}"
        );
        assert_eq!(
            h.hasher.verifications() - before,
            1,
            "{name}: exactly one verification"
        );
    }
    let before = h.hasher.verifications();
    h.login("alice", "correct horse").unwrap();
    assert_eq!(
        h.hasher.verifications() - before,
        1,
        "a good login costs the same"
    );
    let failures = h
        .audit
        .events()
        .iter()
        .filter(|e| e.starts_with("LoginFailed"))
        .count();
    assert_eq!(failures, 4);
}

#[test]
fn login_rehashes_a_password_stored_with_weaker_parameters() {
    let old = harness_with(AuthLimits::unlimited(), 1);
    old.register("alice", "correct horse");
    let stored = |store: &MemoryStore| {
        store
            .find_user_by_username(&Username::parse("alice").unwrap())
            .unwrap()
            .unwrap()
            .password_hash
    };
    assert!(stored(&old.store).as_str().starts_with("fake:1:"));
    // The same data, served with stronger parameters.
    let new = build(
        old.store.clone(),
        old.clock.clone(),
        AuthLimits::unlimited(),
        2,
    );
    new.login("alice", "correct horse").unwrap();
    assert!(
        stored(&new.store).as_str().starts_with("fake:2:"),
        "upgraded"
    );
    assert_eq!(new.hasher.hashes(), 1);
    new.login("alice", "correct horse").unwrap();
    assert_eq!(new.hasher.hashes(), 1, "no second rehash once upgraded");
}

#[test]
fn refresh_rotates_and_a_reused_token_revokes_its_whole_family() {
    let h = harness();
    h.register("alice", "correct horse");
    let first = h.login("alice", "correct horse").unwrap();
    let second = h.auth.sessions.refresh(ADDR, &first.refresh_token).unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(h.auth.sessions.authenticate(&second.access_token).is_ok());
    let third = h
        .auth
        .sessions
        .refresh(ADDR, &second.refresh_token)
        .unwrap();

    // The first token is dead; presenting it again, past the reuse grace,
    // is a theft signal.
    h.clock
        .advance(TokenPolicy::default().refresh_reuse_grace + Duration::from_millis(1));
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &first.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    // ...and the legitimate holder's newest token dies with the family.
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &third.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("RefreshTokenReused"))
    );

    // Another login is another family, untouched.
    let other = h.login("alice", "correct horse").unwrap();
    assert!(h.auth.sessions.refresh(ADDR, &other.refresh_token).is_ok());
}

/// Two instances whose clocks differ by a millisecond, or a racer that
/// read its clock just before the winner stamped the token: the later
/// `used_at` is still within the grace, not a replay.
#[test]
fn a_racer_whose_clock_reads_before_the_winners_stamp_keeps_the_session() {
    let h = harness();
    h.register("alice", "correct horse");
    let first = h.login("alice", "correct horse").unwrap();
    let behind = Arc::new(ManualClock::at(h.clock.now()));
    h.clock.advance(Duration::from_millis(1));
    let other = build(h.store.clone(), behind, AuthLimits::unlimited(), 2);
    let winner = h.auth.sessions.refresh(ADDR, &first.refresh_token).unwrap();
    let loser = other.auth.sessions.refresh(ADDR, &first.refresh_token);
    assert!(loser.is_ok(), "{loser:?}");
    assert!(h.auth.sessions.refresh(ADDR, &winner.refresh_token).is_ok());
}

#[test]
fn a_token_exchanged_again_within_the_grace_keeps_the_session() {
    let h = harness();
    h.register("alice", "correct horse");
    let first = h.login("alice", "correct horse").unwrap();
    // Two tabs, or a retry after a lost answer: both get a pair, and
    // neither pair is dead.
    let winner = h.auth.sessions.refresh(ADDR, &first.refresh_token).unwrap();
    h.clock.advance(Duration::from_secs(3));
    let retry = h.auth.sessions.refresh(ADDR, &first.refresh_token).unwrap();
    assert_ne!(winner.refresh_token, retry.refresh_token);
    let next = h
        .auth
        .sessions
        .refresh(ADDR, &winner.refresh_token)
        .unwrap();
    assert!(h.auth.sessions.refresh(ADDR, &retry.refresh_token).is_ok());
    assert!(
        !h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("RefreshTokenReused"))
    );

    // Past the grace, the same replay revokes the family: every pair.
    h.clock
        .advance(TokenPolicy::default().refresh_reuse_grace + Duration::from_millis(1));
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &first.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &next.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    // And a token revoked with its family gets nothing within any grace.
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &winner.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
}

/// #15 attack: one stolen refresh token, replayed in a loop within the
/// reuse grace, minted 7,533 live sibling sessions in 9 s. Now it is
/// exchanged again at most `MAX_GRACE_EXCHANGES` times; the next replay,
/// still within the grace, is reuse and revokes the family, siblings and
/// the owner's newest token with it.
#[test]
fn a_token_replayed_within_the_grace_mints_at_most_its_cap_of_siblings() {
    let h = harness();
    h.register("alice", "correct horse");
    let first = h.login("alice", "correct horse").unwrap();
    let owner = h.auth.sessions.refresh(ADDR, &first.refresh_token).unwrap();
    let start = h.clock.now();
    let mut siblings = Vec::new();
    let mut refused = 0;
    for _ in 0..50 {
        h.clock.advance(Duration::from_millis(10));
        match h.auth.sessions.refresh(ADDR, &first.refresh_token) {
            Ok(pair) => siblings.push(pair),
            Err(Error::InvalidRefreshToken) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    let cap = usize::try_from(TokenPolicy::MAX_GRACE_EXCHANGES).unwrap();
    assert_eq!(siblings.len(), cap, "at most the cap of siblings");
    assert_eq!(refused, 50 - cap);
    assert!(
        h.clock.now() < start.saturating_add(TokenPolicy::default().refresh_reuse_grace),
        "all within the grace"
    );
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("RefreshTokenReused")),
        "past the cap is reuse"
    );
    // The family is revoked: every sibling and the owner's token are dead.
    for pair in siblings.iter().chain([&owner]) {
        assert!(matches!(
            h.auth.sessions.refresh(ADDR, &pair.refresh_token),
            Err(Error::InvalidRefreshToken)
        ));
    }
    // Another login is another family, untouched.
    let other = h.login("alice", "correct horse").unwrap();
    assert!(h.auth.sessions.refresh(ADDR, &other.refresh_token).is_ok());
}

/// Refresh had no rate limit (#15 attack); now a per-client one, checked
/// before the token is looked at: a refused exchange does not use it.
#[test]
fn refresh_is_limited_per_client_before_the_token_is_used() {
    let limits = AuthLimits {
        refresh_per_client: Arc::new(Refuse),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &pair.refresh_token),
        Err(Error::RateLimited { retry_after }) if retry_after == Duration::from_secs(30)
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("Throttled") && e.contains("refresh"))
    );
    // Without a client address (in-process use) there is no per-address
    // limit, and the refused attempt did not use the token: past the reuse
    // grace (which would cover a use), it still rotates.
    h.clock
        .advance(TokenPolicy::default().refresh_reuse_grace + Duration::from_millis(1));
    let next = h.auth.sessions.refresh(None, &pair.refresh_token).unwrap();
    assert!(h.auth.sessions.refresh(None, &next.refresh_token).is_ok());
}

#[test]
fn refresh_tokens_expire_and_unknown_ones_are_refused() {
    let h = harness();
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    h.clock.advance(TokenPolicy::default().refresh_ttl);
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &pair.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    let unknown = RefreshToken::parse(&"A".repeat(43)).unwrap();
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &unknown),
        Err(Error::InvalidRefreshToken)
    ));
    assert!(RefreshToken::parse("short").is_none());
    assert!(RefreshToken::parse(&"+".repeat(43)).is_none());
}

#[test]
fn purging_drops_long_dead_refresh_tokens_and_keeps_reuse_detection() {
    let h = harness();
    h.register("alice", "correct horse");
    let first = h.login("alice", "correct horse").unwrap();
    // `first` is used, its replacement live: two tokens of one family.
    h.auth.sessions.refresh(ADDR, &first.refresh_token).unwrap();
    let ttl = TokenPolicy::default().refresh_ttl;
    assert_eq!(
        h.auth.sessions.purge_refresh_tokens().unwrap(),
        0,
        "none has expired"
    );

    // Both expired a moment ago: kept for one more lifetime.
    h.clock.advance(ttl + Duration::from_secs(1));
    assert_eq!(h.auth.sessions.purge_refresh_tokens().unwrap(), 0);
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &first.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("RefreshTokenReused")),
        "a replayed used token is still a reuse after it expired"
    );

    // A lifetime after their expiry both go; a live one stays.
    let live = h.login("alice", "correct horse").unwrap();
    h.clock.advance(ttl);
    assert_eq!(h.auth.sessions.purge_refresh_tokens().unwrap(), 2);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.auth.sessions.purge_refresh_tokens().unwrap(), 0);
    assert!(
        matches!(
            h.auth.sessions.refresh(ADDR, &live.refresh_token),
            Err(Error::InvalidRefreshToken)
        ),
        "expired, though not yet purged"
    );
}

#[test]
fn logout_revokes_the_family_and_is_idempotent() {
    let h = harness();
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    let rotated = h.auth.sessions.refresh(ADDR, &pair.refresh_token).unwrap();
    h.auth.sessions.logout(ADDR, &pair.refresh_token).unwrap();
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &rotated.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    h.auth.sessions.logout(ADDR, &pair.refresh_token).unwrap();
    h.auth
        .sessions
        .logout(ADDR, &RefreshToken::parse(&"B".repeat(43)).unwrap())
        .unwrap();
}

#[test]
fn a_disabled_or_deleted_account_cannot_refresh_or_validate() {
    let h = harness();
    let admin = h.admin();
    let alice = h.register("alice", "correct horse");
    let bob = h.register("bob", "battery staple");
    let (_, alice_pair) = h.principal("alice", "correct horse");
    let (_, bob_pair) = h.principal("bob", "battery staple");
    assert!(h.auth.sessions.validate(&alice_pair.access_token).is_ok());

    let disabled = h
        .auth
        .admin
        .patch_user(
            &admin,
            alice.id,
            UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .unwrap();
    assert!(disabled.disabled);
    assert!(matches!(
        h.auth.sessions.validate(&alice_pair.access_token),
        Err(Error::InvalidToken(TokenRejection::Revoked))
    ));
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &alice_pair.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    // Enabling again does not bring revoked refresh tokens back.
    h.auth
        .admin
        .patch_user(
            &admin,
            alice.id,
            UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            },
        )
        .unwrap();
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &alice_pair.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));

    h.auth.admin.delete_user(&admin, bob.id).unwrap();
    assert!(matches!(
        h.auth.sessions.validate(&bob_pair.access_token),
        Err(Error::InvalidToken(_))
    ));
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &bob_pair.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
}

#[test]
fn changing_the_password_checks_the_old_one_and_revokes_every_session() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, first) = h.principal("alice", "correct horse");
    let (_, second) = h.principal("alice", "correct horse");
    h.clock.advance(Duration::from_secs(2));

    let wrong = h
        .auth
        .account
        .change_password(ADDR, &me, "wrong horse", "new password 1");
    assert!(matches!(wrong, Err(Error::WrongPassword)));
    let weak = h
        .auth
        .account
        .change_password(ADDR, &me, "correct horse", "short");
    assert!(matches!(weak, Err(Error::Invalid(ref e)) if e[0].field() == "new_password"));

    h.auth
        .account
        .change_password(ADDR, &me, "correct horse", "new password 1")
        .unwrap();
    for pair in [&first, &second] {
        assert!(matches!(
            h.auth.sessions.refresh(ADDR, &pair.refresh_token),
            Err(Error::InvalidRefreshToken)
        ));
        assert!(matches!(
            h.auth.sessions.validate(&pair.access_token),
            Err(Error::InvalidToken(TokenRejection::Revoked))
        ));
    }
    assert!(matches!(
        h.login("alice", "correct horse"),
        Err(Error::InvalidCredentials)
    ));
    h.clock.advance(Duration::from_secs(1));
    let fresh = h.login("alice", "new password 1").unwrap();
    assert!(h.auth.sessions.validate(&fresh.access_token).is_ok());
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("PasswordChanged"))
    );
}

#[test]
fn users_see_and_change_their_own_account() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    assert_eq!(h.auth.account.me(&me).unwrap().username.as_str(), "alice");
    h.clock.advance(Duration::from_secs(1));
    let email = todo_core::Email::parse("alice@example.org").unwrap();
    let pw = Some("correct horse");
    let updated = h
        .auth
        .account
        .update_me(ADDR, &me, Some(email.clone()), pw)
        .unwrap();
    assert_eq!(updated.email, Some(email.clone()));
    assert!(updated.updated_at > updated.created_at);
    // The same address again: nothing to confirm.
    h.auth
        .account
        .update_me(ADDR, &me, Some(email), None)
        .unwrap();
    assert_eq!(
        h.auth.account.update_me(ADDR, &me, None, pw).unwrap().email,
        None
    );
}

/// A change of address takes the password again: a verified address
/// receives reset links, so a stolen session must not be able to move it.
#[test]
fn a_change_of_address_takes_the_password() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let email = Some(todo_core::Email::parse("mallory@example.net").unwrap());
    let missing = h.auth.account.update_me(ADDR, &me, email.clone(), None);
    assert!(
        matches!(&missing, Err(Error::Invalid(e)) if e[0].field() == "current_password"),
        "{missing:?}"
    );
    assert!(matches!(
        h.auth
            .account
            .update_me(ADDR, &me, email.clone(), Some("wrong horse")),
        Err(Error::WrongPassword)
    ));
    assert_eq!(h.auth.account.me(&me).unwrap().email, None, "unchanged");
    let removal = AccountPatch { email: Some(None) };
    h.auth
        .account
        .update_me(ADDR, &me, email, Some("correct horse"))
        .unwrap();
    assert!(matches!(
        h.auth.account.patch_me(ADDR, &me, removal, None),
        Err(Error::Invalid(_))
    ));
}

/// A patch of one's own account that names no field (`PATCH /v1/users/me`
/// with `{}`) was the handler's decision; it is the service's now.
#[test]
fn an_account_patch_changes_only_what_it_names() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let email = todo_core::Email::parse("alice@example.org").unwrap();
    let set = AccountPatch {
        email: Some(Some(email.clone())),
    };
    let pw = Some("correct horse");
    let with_email = h.auth.account.patch_me(ADDR, &me, set, pw).unwrap();
    assert_eq!(with_email.email, Some(email.clone()));

    h.clock.advance(Duration::from_secs(1));
    let unchanged = h
        .auth
        .account
        .patch_me(ADDR, &me, AccountPatch::default(), None)
        .unwrap();
    assert_eq!(unchanged, with_email, "an empty patch changes nothing");
    assert_eq!(
        h.store.find_user(me.user_id).unwrap().unwrap().user,
        with_email,
        "nor writes anything"
    );

    let remove = AccountPatch { email: Some(None) };
    let removed = h.auth.account.patch_me(ADDR, &me, remove, pw).unwrap();
    assert_eq!(removed.email, None);
    assert!(removed.updated_at > with_email.updated_at);

    // A disabled account, even with an empty patch, is answered like its
    // revoked token.
    let root = h.admin();
    let disable = UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&root, me.user_id, disable).unwrap();
    assert!(matches!(
        h.auth
            .account
            .patch_me(ADDR, &me, AccountPatch::default(), None),
        Err(Error::InvalidToken(TokenRejection::Revoked))
    ));
}

/// A path id that cannot be an id (`/v1/users/nope`) was the handler's
/// decision; it is the service's now: not found, but only for an admin.
#[test]
fn a_malformed_user_id_is_not_found_after_the_admin_check() {
    let h = harness();
    let root = h.admin();
    let alice = h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let nope = UserRef::parse("nope");
    assert_eq!(nope, UserRef::Malformed);
    assert_eq!(UserRef::parse(&alice.id.to_string()), UserRef::Id(alice.id));

    let patch = UserPatch {
        role: Some(Role::Admin),
        ..UserPatch::default()
    };
    // Not an admin: refused, whatever the shape of the id.
    assert!(matches!(
        h.auth.admin.get_user(&me, nope),
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        h.auth.admin.patch_user(&me, nope, patch.clone()),
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        h.auth.admin.delete_user(&me, nope),
        Err(Error::Forbidden)
    ));
    // An admin: no such user.
    assert!(matches!(
        h.auth.admin.get_user(&root, nope),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        h.auth.admin.patch_user(&root, nope, patch.clone()),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        h.auth.admin.delete_user(&root, nope),
        Err(Error::NotFound)
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .all(|e| !e.starts_with("AdminAction")),
        "nothing was done"
    );
    // A well-formed id parsed from text is the user's.
    let by_text = UserRef::parse(&alice.id.to_string());
    assert_eq!(h.auth.admin.get_user(&root, by_text).unwrap().id, alice.id);
    // A disabled admin is refused first, as for any admin call.
    let second = h.register("second", "second password");
    let (second_admin, _) = h.principal("second", "second password");
    h.auth.admin.patch_user(&root, second.id, patch).unwrap();
    let disable = UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&root, second.id, disable).unwrap();
    assert!(matches!(
        h.auth.admin.get_user(&second_admin, nope),
        Err(Error::InvalidToken(TokenRejection::Revoked))
    ));
}

#[test]
fn admin_endpoints_refuse_non_admins_and_stale_admin_tokens() {
    let h = harness();
    let admin = h.admin();
    let alice = h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let limit = PageLimit::default();
    assert!(matches!(
        h.auth.admin.list_users(&me, limit, None),
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        h.auth.admin.get_user(&me, alice.id),
        Err(Error::Forbidden)
    ));
    let raise = UserPatch {
        role: Some(Role::Admin),
        ..UserPatch::default()
    };
    assert!(matches!(
        h.auth.admin.patch_user(&me, alice.id, raise.clone()),
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        h.auth.admin.delete_user(&me, admin.user_id),
        Err(Error::Forbidden)
    ));
    // A principal claiming admin in a token is checked against the store.
    let forged = Principal {
        role: Role::Admin,
        ..me.clone()
    };
    assert!(matches!(
        h.auth.admin.list_users(&forged, limit, None),
        Err(Error::Forbidden)
    ));

    // Promote, then demote: the old admin token stops working at once.
    h.auth.admin.patch_user(&admin, alice.id, raise).unwrap();
    assert!(h.auth.admin.list_users(&me, limit, None).is_ok());
    h.auth
        .admin
        .patch_user(
            &admin,
            alice.id,
            UserPatch {
                role: Some(Role::User),
                ..UserPatch::default()
            },
        )
        .unwrap();
    assert!(matches!(
        h.auth.admin.list_users(&forged, limit, None),
        Err(Error::Forbidden)
    ));
}

#[test]
fn admins_page_through_users_and_cannot_lock_themselves_out() {
    let h = harness();
    let admin = h.admin();
    for i in 0..5 {
        h.clock.advance(Duration::from_millis(5));
        h.register(&format!("user{i}"), "correct horse");
    }
    let limit = PageLimit::new(2).unwrap();
    let mut names = Vec::new();
    let mut cursor = None;
    loop {
        let page = h.auth.admin.list_users(&admin, limit, cursor).unwrap();
        names.extend(page.items.iter().map(|u| u.username.as_str().to_owned()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(names, ["root", "user0", "user1", "user2", "user3", "user4"]);

    let me = admin.user_id;
    let demote = UserPatch {
        role: Some(Role::User),
        ..UserPatch::default()
    };
    assert!(matches!(
        h.auth.admin.patch_user(&admin, me, demote),
        Err(Error::Conflict(_))
    ));
    let disable = UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    };
    assert!(matches!(
        h.auth.admin.patch_user(&admin, me, disable),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        h.auth.admin.delete_user(&admin, me),
        Err(Error::Conflict(_))
    ));
    let missing = todo_core::UserId::parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
    assert!(matches!(
        h.auth.admin.get_user(&admin, missing),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        h.auth
            .admin
            .patch_user(&admin, missing, UserPatch::default()),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        h.auth.admin.delete_user(&admin, missing),
        Err(Error::NotFound)
    ));
    assert!(h.audit.events().iter().all(|e| !e.contains("delete_user")));
}

#[test]
fn deleting_a_user_takes_their_tasks_and_tokens() {
    let h = harness();
    let admin = h.admin();
    let alice = h.register("alice", "correct horse");
    let (_, pair) = h.principal("alice", "correct horse");
    let tasks = TaskService::new(
        h.store.clone(),
        h.clock.clone(),
        Arc::new(SeededRandom::new(3)),
    );
    let task = tasks
        .create(alice.id, NewTask::titled(Title::parse("mine").unwrap()))
        .unwrap();
    h.auth.admin.delete_user(&admin, alice.id).unwrap();
    assert!(matches!(tasks.get(alice.id, task.id), Err(Error::NotFound)));
    assert!(
        h.store
            .find_refresh_token(&ReversingDigest.digest(&pair.refresh_token))
            .unwrap()
            .is_none()
    );
    assert!(h.audit.events().iter().any(|e| e.contains("delete_user")));
}

/// A limiter that refuses everything.
struct Refuse;
impl<K> RateLimiter<K> for Refuse {
    fn check(&self, _key: &K) -> Result<(), Duration> {
        Err(Duration::from_secs(30))
    }
}

/// Blocks an account after `threshold` recorded failures.
#[derive(Default)]
struct BlockAfterThree(AtomicUsize);
impl LoginBackoff for BlockAfterThree {
    fn reserve(
        &self,
        _key: ThrottleKey<'_>,
        _now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        if self.0.load(Ordering::SeqCst) >= 3 {
            Ok(Err(Duration::from_millis(1500)))
        } else {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Ok(()))
        }
    }
    fn record_success(&self, _key: ThrottleKey<'_>) -> Result<(), StoreError> {
        self.0.store(0, Ordering::SeqCst);
        Ok(())
    }
    fn purge(&self, _now: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[test]
fn limits_answer_rate_limited_before_any_hashing() {
    let limits = AuthLimits {
        register_per_client: Arc::new(Refuse),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    let refused = h.auth.sessions.register(
        ADDR,
        Registration::parse("alice", "correct horse", None).unwrap(),
    );
    assert!(
        matches!(refused, Err(Error::RateLimited { retry_after }) if retry_after == Duration::from_secs(30))
    );
    assert_eq!(h.hasher.hashes(), 0);
    // Without a client address (in-process use) there is no per-address limit.
    h.auth
        .sessions
        .register(
            None,
            Registration::parse("alice", "correct horse", None).unwrap(),
        )
        .unwrap();

    let limits = AuthLimits {
        login_per_client: Arc::new(Refuse),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    h.register("alice", "correct horse");
    assert!(matches!(
        h.login("alice", "correct horse"),
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(h.hasher.verifications(), 0);
}

/// Remembers the keys it was asked about.
#[derive(Default)]
struct Keys(std::sync::Mutex<Vec<IpAddr>>);
impl RateLimiter<IpAddr> for Keys {
    fn check(&self, key: &IpAddr) -> Result<(), Duration> {
        self.0.lock().unwrap().push(*key);
        Ok(())
    }
}

/// Per-client limits count an IPv6 client by its /64 (one subscriber's
/// block: one by one, a /64 would be 2^64 clients) and a mapped IPv4 as
/// IPv4 (v1.1 attack: 5 registrations per address, unlimited per /64).
#[test]
fn per_client_limits_count_ipv6_by_its_64() {
    let (registers, logins) = (Arc::new(Keys::default()), Arc::new(Keys::default()));
    let limits = AuthLimits {
        register_per_client: registers.clone(),
        login_per_client: logins.clone(),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    let clients: [IpAddr; 3] = [
        "2001:db8:0:7::10".parse().unwrap(),
        "2001:db8:0:7:ffff::3".parse().unwrap(),
        "::ffff:192.0.2.9".parse().unwrap(),
    ];
    for (i, client) in clients.iter().enumerate() {
        let name = format!("user{i}");
        let registration = Registration::parse(&name, "correct horse", None).unwrap();
        h.auth
            .sessions
            .register(Some(*client), registration)
            .unwrap();
        let credentials = Credentials::offered(&name, "correct horse");
        h.auth.sessions.login(Some(*client), &credentials).unwrap();
    }
    let block: IpAddr = "2001:db8:0:7::".parse().unwrap();
    let v4: IpAddr = "192.0.2.9".parse().unwrap();
    for keys in [&registers, &logins] {
        assert_eq!(*keys.0.lock().unwrap(), [block, block, v4]);
    }
}

/// A hasher that sheds (as a full queue does) while told to.
struct SheddingHasher {
    inner: CountingHasher,
    shedding: std::sync::atomic::AtomicBool,
}

impl todo_core::PasswordHasher for SheddingHasher {
    fn hash(
        &self,
        password: &todo_core::Password,
    ) -> Result<todo_core::PasswordHash, todo_core::HashError> {
        self.inner.hash(password)
    }
    fn verify(
        &self,
        password: &todo_core::Password,
        hash: &todo_core::PasswordHash,
    ) -> Result<todo_core::Verification, todo_core::HashError> {
        self.inner.verify(password, hash)
    }
    fn dummy_hash(&self) -> &todo_core::PasswordHash {
        self.inner.dummy_hash()
    }
    fn shedding(&self) -> Option<Duration> {
        self.shedding
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(Duration::from_secs(2))
    }
}

/// Session 32's attack, F4: a login refused for a full hashing queue had
/// spent the address's and the account's allowances, so an owner retrying
/// through a flood was locked out (429) after it. It is refused first now.
#[test]
fn a_login_shed_for_a_full_hashing_queue_spends_no_allowance() {
    let h = harness();
    h.register("alice", "correct horse");
    let logins = Arc::new(Keys::default());
    let hasher = Arc::new(SheddingHasher {
        inner: CountingHasher::new(2),
        shedding: std::sync::atomic::AtomicBool::new(true),
    });
    let limits = AuthLimits {
        login_per_client: logins.clone(),
        ..AuthLimits::unlimited()
    };
    let auth = with_hasher_and_limits(&h, hasher.clone(), limits);
    let alice = Credentials::offered("alice", "correct horse");
    let shed = auth.sessions.login(ADDR, &alice);
    assert!(matches!(shed, Err(Error::Overloaded { .. })), "{shed:?}");
    assert!(logins.0.lock().unwrap().is_empty(), "no allowance spent");
    assert_eq!(hasher.inner.verifications(), 0);
    hasher
        .shedding
        .store(false, std::sync::atomic::Ordering::SeqCst);
    auth.sessions.login(ADDR, &alice).unwrap();
    assert_eq!(logins.0.lock().unwrap().len(), 1);
}

#[test]
fn repeated_failures_on_an_account_are_throttled_and_success_resets() {
    let limits = AuthLimits {
        login_failures: Arc::new(BlockAfterThree::default()),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    h.register("alice", "correct horse");
    for _ in 0..3 {
        assert!(matches!(
            h.login("alice", "wrong"),
            Err(Error::InvalidCredentials)
        ));
    }
    let verifications = h.hasher.verifications();
    let throttled = h.login("alice", "correct horse");
    assert!(
        matches!(throttled, Err(Error::RateLimited { .. })),
        "{throttled:?}"
    );
    assert_eq!(
        h.hasher.verifications(),
        verifications,
        "no hashing while throttled"
    );
    assert!(h.audit.events().iter().any(|e| e.starts_with("Throttled")));
    assert_eq!(
        todo_core::retry_after_seconds(Duration::from_millis(1500)),
        2
    );
    assert_eq!(todo_core::retry_after_seconds(Duration::ZERO), 1);
}

/// Runs `hook` once, in the middle of the next hash: a write that lands
/// while a login or password change weighs a password.
struct InterleavingHasher {
    inner: CountingHasher,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl todo_core::PasswordHasher for InterleavingHasher {
    fn hash(
        &self,
        password: &todo_core::Password,
    ) -> Result<todo_core::PasswordHash, todo_core::HashError> {
        if let Some(hook) = self.hook.lock().unwrap().take() {
            hook();
        }
        self.inner.hash(password)
    }
    fn verify(
        &self,
        password: &todo_core::Password,
        hash: &todo_core::PasswordHash,
    ) -> Result<todo_core::Verification, todo_core::HashError> {
        self.inner.verify(password, hash)
    }
    fn dummy_hash(&self) -> &todo_core::PasswordHash {
        self.inner.dummy_hash()
    }
}

fn with_hasher(h: &Harness, hasher: Arc<InterleavingHasher>) -> AuthServices {
    with_hasher_and_limits(h, hasher, AuthLimits::unlimited())
}

/// Services over `h`'s store and clock with `hasher` and `limits`.
fn with_hasher_and_limits(
    h: &Harness,
    hasher: Arc<dyn todo_core::PasswordHasher>,
    limits: AuthLimits,
) -> AuthServices {
    let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
    AuthServices::builder()
        .store(h.store.clone())
        .hasher(hasher)
        .signer(tokens.clone())
        .verifier(tokens)
        .refresh_hasher(Arc::new(ReversingDigest))
        .clock(h.clock.clone())
        .random(Arc::new(SeededRandom::new(9)))
        .audit(Arc::new(RecordingAudit::default()))
        .limits(limits)
        .build()
        .unwrap()
}

/// v1 wrote the whole user row back after weighing a password: an admin's
/// disable (or a password change) that landed meanwhile was undone.
#[test]
fn a_rehash_or_password_change_keeps_what_an_admin_changed_meanwhile() {
    let h = harness();
    let root = h.admin();
    let alice = h.register("alice", "correct horse");
    // Costs raised: alice's next login rehashes her password.
    let disable = {
        let (auth, root) = (h.auth.clone(), root.clone());
        move || {
            let patch = UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            };
            auth.admin.patch_user(&root, alice.id, patch).unwrap();
        }
    };
    let raised = with_hasher(
        &h,
        Arc::new(InterleavingHasher {
            inner: CountingHasher::new(3),
            hook: std::sync::Mutex::new(Some(Box::new(disable))),
        }),
    );
    let _ = raised
        .sessions
        .login(ADDR, &Credentials::offered("alice", "correct horse"));
    let stored = h.store.find_user(alice.id).unwrap().unwrap();
    assert!(
        stored.user.disabled,
        "the admin's disable survives the rehash"
    );
    assert!(stored.tokens_revoked_before.is_some());

    // A password change whose new hash is made while an admin demotes the
    // user keeps the demotion.
    let bob = h.register("bob", "correct horse");
    let promote = UserPatch {
        role: Some(Role::Admin),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&root, bob.id, promote).unwrap();
    let demote = {
        let (auth, root) = (h.auth.clone(), root.clone());
        move || {
            let patch = UserPatch {
                role: Some(Role::User),
                ..UserPatch::default()
            };
            auth.admin.patch_user(&root, bob.id, patch).unwrap();
        }
    };
    let changing = with_hasher(
        &h,
        Arc::new(InterleavingHasher {
            inner: CountingHasher::new(2),
            hook: std::sync::Mutex::new(Some(Box::new(demote))),
        }),
    );
    let (bob_principal, _) = h.principal("bob", "correct horse");
    changing
        .account
        .change_password(None, &bob_principal, "correct horse", "battery staple")
        .unwrap();
    let stored = h.store.find_user(bob.id).unwrap().unwrap();
    assert_eq!(stored.user.role, Role::User, "the demotion survives");
    assert!(
        h.login("bob", "battery staple").is_ok(),
        "the new password holds"
    );
}

/// A thief refreshing while the owner changes the password: the tokens the
/// thief got while the passwords were weighed are refused after the change
/// (v1.1 attack: the cut was taken before the hashing, so 12 of 17 such
/// tokens still worked for five minutes).
#[test]
fn tokens_issued_while_a_password_change_hashes_are_refused_after_it() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let stolen = h.login("alice", "correct horse").unwrap().refresh_token;
    let during = Arc::new(std::sync::Mutex::new(None));
    let thief = {
        let (auth, clock, during) = (h.auth.clone(), h.clock.clone(), Arc::clone(&during));
        move || {
            // The hashing takes a while; the thief refreshes meanwhile.
            clock.advance(Duration::from_millis(400));
            let pair = auth.sessions.refresh(ADDR, &stolen).unwrap();
            clock.advance(Duration::from_millis(400));
            *during.lock().unwrap() = Some(pair.access_token);
        }
    };
    let changing = with_hasher(
        &h,
        Arc::new(InterleavingHasher {
            inner: CountingHasher::new(2),
            hook: std::sync::Mutex::new(Some(Box::new(thief))),
        }),
    );
    changing
        .account
        .change_password(None, &me, "correct horse", "battery staple")
        .unwrap();
    let token = during.lock().unwrap().take().expect("the thief refreshed");
    // (Past the second for which another instance's gate may trust its
    // reading of the account: `changing` and `h.auth` are two instances.)
    h.clock.advance(Duration::from_millis(1100));
    assert!(
        h.auth.sessions.authenticate(&token).is_err(),
        "a token issued during the change outlived it"
    );
}

/// A login that finished just after the password change revoked every
/// refresh token stores a family the revocation never saw: its token was
/// issued before the change, so it must not refresh (v1.1 attack finding).
#[test]
fn a_refresh_token_issued_before_the_password_change_is_dead_whenever_it_was_stored() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let issued_at = h.clock.now();
    h.clock.advance(Duration::from_millis(30));
    h.auth
        .account
        .change_password(None, &me, "correct horse", "battery staple")
        .unwrap();
    // The racing login's family lands now, after the revocation.
    let token = RefreshToken::generate(&SeededRandom::new(77)).unwrap();
    let late = todo_core::RefreshTokenRecord {
        hash: ReversingDigest.digest(&token),
        family: todo_core::SessionId::from_uuid(
            todo_core::new_v7(issued_at, &SeededRandom::new(78)).unwrap(),
        ),
        user_id: alice.id,
        issued_at,
        expires_at: issued_at.saturating_add(TokenPolicy::default().refresh_ttl),
        used_at: None,
        grace_exchanges: 0,
        revoked: false,
    };
    let session = todo_core::SessionRecord {
        id: late.family,
        user_id: alice.id,
        kind: todo_core::SessionKind::Login,
        created_at: issued_at,
        last_used_at: issued_at,
        expires_at: late.expires_at,
        user_agent: None,
        address: None,
        ended_at: None,
    };
    h.store.start_session(&session, &late).unwrap();
    assert!(matches!(
        h.auth.sessions.refresh(ADDR, &token),
        Err(Error::InvalidRefreshToken)
    ));
}

/// The builder names every part it was not given, the limits among them:
/// forgetting them must not mean unlimited password guesses.
#[test]
fn a_builder_without_limits_or_a_store_is_refused_naming_them() {
    let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
    let missing = AuthServices::builder()
        .hasher(Arc::new(CountingHasher::new(1)))
        .signer(tokens.clone())
        .verifier(tokens)
        .refresh_hasher(Arc::new(ReversingDigest))
        .clock(Arc::new(ManualClock::new()))
        .random(Arc::new(SeededRandom::new(1)))
        .build()
        .map(drop)
        .unwrap_err();
    assert_eq!(missing.missing(), ["users", "refresh_tokens", "limits"]);
    assert_eq!(
        missing.to_string(),
        "the auth services need: users, refresh_tokens, limits"
    );
}

#[test]
fn deleting_ones_own_account_needs_the_password_and_ends_its_tokens() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let (me, pair) = h.principal("alice", "correct horse");
    let wrong = h.auth.account.delete_me(ADDR, &me, "wrong horse", None);
    assert!(matches!(wrong, Err(Error::WrongPassword)), "{wrong:?}");
    assert!(h.store.find_user(alice.id).unwrap().is_some());

    h.auth
        .account
        .delete_me(ADDR, &me, "correct horse", None)
        .unwrap();
    assert_eq!(h.store.find_user(alice.id).unwrap(), None);
    assert!(matches!(
        h.auth.sessions.authenticate(&pair.access_token),
        Err(Error::InvalidToken(TokenRejection::Revoked))
    ));
    assert!(h.auth.sessions.refresh(ADDR, &pair.refresh_token).is_err());
    assert!(matches!(
        h.login("alice", "correct horse"),
        Err(Error::InvalidCredentials)
    ));
    // Once gone, a second deletion finds no account to weigh against.
    assert!(matches!(
        h.auth.account.delete_me(ADDR, &me, "correct horse", None),
        Err(Error::InvalidToken(TokenRejection::Revoked))
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("AccountDeleted"))
    );
}

/// Every password confirmation costs a hash, a right one too: past the
/// session's allowance it is refused before any hashing (attack of session
/// 25, second pass, F1: revoke-others with the right password in a loop).
#[test]
fn password_confirmations_spend_an_allowance_before_any_hashing() {
    let limits = AuthLimits {
        confirmations_per_session: Arc::new(Refuse),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let hashes = h.hasher.hashes();
    let verifications = h.hasher.verifications();
    for refused in [
        h.auth
            .account
            .change_password(ADDR, &me, "correct horse", "battery staple"),
        h.auth.account.delete_me(ADDR, &me, "correct horse", None),
    ] {
        assert!(
            matches!(refused, Err(Error::RateLimited { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        (h.hasher.hashes(), h.hasher.verifications()),
        (hashes, verifications)
    );
    assert!(h.store.find_user(me.user_id).unwrap().is_some());
}

#[test]
fn an_administrator_cannot_delete_their_own_account_by_themselves() {
    let h = harness();
    let admin = h.admin();
    assert!(matches!(
        h.auth
            .account
            .delete_me(ADDR, &admin, "admin-password", None),
        Err(Error::Conflict(_))
    ));
    assert!(h.store.find_user(admin.user_id).unwrap().is_some());
}
