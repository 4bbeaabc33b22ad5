//! Second factors: a TOTP authenticator enrolled and confirmed with a
//! code, the two-step login it then asks for, recovery codes used once,
//! codes never accepted twice, guesses throttled per account, and the
//! ways out (the user's own removal, an administrator's).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use todo_core::testing::FakeHmacSha1;
use todo_core::{
    AuthLimits, Clock, Credentials, Error, LoginBackoff, MFA_TOKEN_ATTEMPTS, MfaToken, Principal,
    RECOVERY_CODES, RecoveryCode, SecondFactorAnswer, SecondFactorStore as _, SignIn, StoreError,
    ThrottleKey, Timestamp, TotpCode, TotpSecret, UserStore as _, step_of,
};

use crate::auth::{Harness, harness, harness_with};

const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

/// The authenticator app: the code it shows now.
fn code_now(h: &Harness, secret: &TotpSecret) -> TotpCode {
    secret.code_at(&FakeHmacSha1, step_of(h.clock.now()))
}

fn totp(code: TotpCode) -> SecondFactorAnswer {
    SecondFactorAnswer::Totp(code)
}

/// Registers `name`, enrols an authenticator and confirms it; answers the
/// signed-in principal, the secret and the recovery codes.
fn enrolled(h: &Harness, name: &str) -> (Principal, TotpSecret, Vec<RecoveryCode>) {
    h.register(name, "correct horse");
    let (me, _) = h.principal(name, "correct horse");
    let enrolment = h
        .auth
        .account
        .begin_totp(ADDR, &me, "correct horse", None)
        .unwrap();
    let codes = h
        .auth
        .account
        .confirm_totp(ADDR, &me, code_now(h, &enrolment.secret))
        .unwrap();
    // The next step's code: the confirming one is spent.
    h.clock.advance(Duration::from_secs(30));
    (me, enrolment.secret, codes)
}

/// The first step of a login: the `mfa_token`.
fn first_step(h: &Harness, name: &str) -> MfaToken {
    match h
        .auth
        .sessions
        .sign_in(ADDR, &Credentials::offered(name, "correct horse"))
        .unwrap()
    {
        SignIn::SecondFactor(challenge) => {
            assert_eq!(challenge.methods, ["totp", "recovery_code"]);
            assert_eq!(challenge.expires_in, 300);
            challenge.token
        }
        SignIn::Tokens(_) => panic!("signed in without the second factor"),
    }
}

fn second_step(
    h: &Harness,
    token: &MfaToken,
    answer: &SecondFactorAnswer,
) -> Result<todo_core::TokenPair, Error> {
    h.auth
        .sessions
        .complete_sign_in(ADDR, token, answer, None, None)
}

#[test]
fn an_enrolment_confirmed_with_a_code_makes_the_login_two_steps() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let refused = h.auth.account.begin_totp(ADDR, &me, "wrong horse", None);
    assert!(matches!(refused, Err(Error::WrongPassword)), "{refused:?}");

    let enrolment = h
        .auth
        .account
        .begin_totp(ADDR, &me, "correct horse", None)
        .unwrap();
    assert!(
        enrolment
            .uri
            .starts_with("otpauth://totp/todo:alice?secret=")
    );
    assert!(enrolment.uri.contains(enrolment.secret.base32().as_str()));
    // Pending: nothing asked of a login yet.
    assert!(
        h.auth
            .account
            .second_factor_methods(&me)
            .unwrap()
            .is_empty()
    );
    assert!(h.login("alice", "correct horse").is_ok());

    let wrong = TotpCode::parse("000000").unwrap();
    let wrong = if wrong == code_now(&h, &enrolment.secret) {
        TotpCode::parse("111111").unwrap()
    } else {
        wrong
    };
    let refused = h.auth.account.confirm_totp(ADDR, &me, wrong);
    assert!(matches!(refused, Err(Error::WrongCode)), "{refused:?}");
    let confirming = code_now(&h, &enrolment.secret);
    let codes = h.auth.account.confirm_totp(ADDR, &me, confirming).unwrap();
    assert_eq!(codes.len(), RECOVERY_CODES);
    let distinct: std::collections::BTreeSet<_> = codes.iter().map(RecoveryCode::expose).collect();
    assert_eq!(distinct.len(), RECOVERY_CODES);
    assert_eq!(
        h.auth.account.second_factor_methods(&me).unwrap(),
        ["totp", "recovery_code"]
    );
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("SecondFactorAdded"))
    );

    // A password alone signs in no more.
    let alone = h.login("alice", "correct horse");
    assert!(
        matches!(alone, Err(Error::SecondFactorRequired)),
        "{alone:?}"
    );
    let token = first_step(&h, "alice");
    // The code that confirmed the enrolment is spent.
    let replay = second_step(&h, &token, &totp(confirming));
    assert!(
        matches!(replay, Err(Error::InvalidSecondFactor)),
        "{replay:?}"
    );
    h.clock.advance(Duration::from_secs(30));
    let pair = second_step(&h, &token, &totp(code_now(&h, &enrolment.secret))).unwrap();
    let signed_in = h.auth.sessions.authenticate(&pair.access_token).unwrap();
    assert_eq!(signed_in.user_id, me.user_id);
    assert!(pair.device_token.is_some());
    // The token is single-use, even with a fresh code.
    h.clock.advance(Duration::from_secs(30));
    let again = second_step(&h, &token, &totp(code_now(&h, &enrolment.secret)));
    assert!(matches!(again, Err(Error::InvalidMfaToken)), "{again:?}");
    // A wrong password still answers as before, and hands out no token.
    assert!(matches!(
        h.auth
            .sessions
            .sign_in(ADDR, &Credentials::offered("alice", "wrong horse")),
        Err(Error::InvalidCredentials)
    ));
}

#[test]
fn a_code_is_accepted_once_within_its_window_and_neighbours_count() {
    let h = harness();
    let (_, secret, _) = enrolled(&h, "alice");
    let code = code_now(&h, &secret);
    let first = first_step(&h, "alice");
    second_step(&h, &first, &totp(code)).unwrap();
    // The same code on a new login, in the same step: refused.
    let second = first_step(&h, "alice");
    let replay = second_step(&h, &second, &totp(code));
    assert!(
        matches!(replay, Err(Error::InvalidSecondFactor)),
        "{replay:?}"
    );
    // One step late is still taken (the clock of a phone may lag)...
    h.clock.advance(Duration::from_secs(60));
    let third = first_step(&h, "alice");
    let lagging = second_step(&h, &third, &totp(code));
    assert!(
        matches!(lagging, Err(Error::InvalidSecondFactor)),
        "two steps old"
    );
    let previous = secret.code_at(&FakeHmacSha1, step_of(h.clock.now()) - 1);
    second_step(&h, &third, &totp(previous)).unwrap();
    // ...but two steps late is not.
    h.clock.advance(Duration::from_secs(90));
    let stale = secret.code_at(&FakeHmacSha1, step_of(h.clock.now()) - 2);
    let fourth = first_step(&h, "alice");
    assert!(matches!(
        second_step(&h, &fourth, &totp(stale)),
        Err(Error::InvalidSecondFactor)
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("SecondFactorFailed"))
    );
}

#[test]
fn a_recovery_code_signs_in_once() {
    let h = harness();
    let (me, _, codes) = enrolled(&h, "alice");
    let token = first_step(&h, "alice");
    let typed = codes[3].expose().to_uppercase();
    let answer = SecondFactorAnswer::RecoveryCode(RecoveryCode::parse(&typed).unwrap());
    second_step(&h, &token, &answer).unwrap();
    let token = first_step(&h, "alice");
    let reused = second_step(&h, &token, &answer);
    assert!(
        matches!(reused, Err(Error::InvalidSecondFactor)),
        "{reused:?}"
    );
    let factors = h.store.second_factors(me.user_id).unwrap();
    assert_eq!(factors.recovery_codes_left, 9);
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("RecoveryCodeUsed") && e.contains("left: 9"))
    );
    // Another user's code is no code of alice's.
    let (_, _, bobs) = enrolled(&h, "bob");
    let token = first_step(&h, "alice");
    let foreign = SecondFactorAnswer::RecoveryCode(bobs[0].clone());
    assert!(matches!(
        second_step(&h, &token, &foreign),
        Err(Error::InvalidSecondFactor)
    ));
}

#[test]
fn an_mfa_token_allows_five_attempts_and_five_minutes() {
    let h = harness();
    let (_, secret, _) = enrolled(&h, "alice");
    let token = first_step(&h, "alice");
    let right = code_now(&h, &secret);
    let wrong = if right == TotpCode::parse("123456").unwrap() {
        TotpCode::parse("654321").unwrap()
    } else {
        TotpCode::parse("123456").unwrap()
    };
    for _ in 0..MFA_TOKEN_ATTEMPTS {
        assert!(matches!(
            second_step(&h, &token, &totp(wrong)),
            Err(Error::InvalidSecondFactor)
        ));
    }
    let spent = second_step(&h, &token, &totp(right));
    assert!(matches!(spent, Err(Error::InvalidMfaToken)), "{spent:?}");

    let token = first_step(&h, "alice");
    h.clock.advance(Duration::from_secs(5 * 60));
    let expired = second_step(&h, &token, &totp(code_now(&h, &secret)));
    assert!(
        matches!(expired, Err(Error::InvalidMfaToken)),
        "{expired:?}"
    );
    let unknown = MfaToken::parse(&"A".repeat(43)).unwrap();
    assert!(matches!(
        second_step(&h, &unknown, &totp(right)),
        Err(Error::InvalidMfaToken)
    ));
}

#[test]
fn a_password_change_or_a_disabling_ends_a_waiting_login() {
    let h = harness();
    let (me, secret, _) = enrolled(&h, "alice");
    let token = first_step(&h, "alice");
    h.clock.advance(Duration::from_secs(1));
    h.auth
        .account
        .change_password(ADDR, &me, "correct horse", "battery staple")
        .unwrap();
    let after = second_step(&h, &token, &totp(code_now(&h, &secret)));
    assert!(matches!(after, Err(Error::InvalidMfaToken)), "{after:?}");

    let admin = h.admin();
    let (_, bob_secret, _) = enrolled(&h, "bob");
    let token = first_step(&h, "bob");
    let bob = h
        .store
        .find_user_by_username(&todo_core::Username::parse("bob").unwrap())
        .unwrap()
        .unwrap();
    let patch = todo_core::UserPatch {
        disabled: Some(true),
        role: None,
        email: None,
    };
    h.auth.admin.patch_user(&admin, bob.user.id, patch).unwrap();
    let disabled = second_step(&h, &token, &totp(code_now(&h, &bob_secret)));
    assert!(
        matches!(disabled, Err(Error::InvalidMfaToken)),
        "{disabled:?}"
    );
}

/// A backoff that blocks a key after three failures, counting each key
/// apart, and remembers which keys it saw.
#[derive(Default)]
struct PerKey(
    Mutex<BTreeMap<String, u32>>,
    Mutex<BTreeMap<String, todo_core::UserId>>,
);

impl LoginBackoff for PerKey {
    fn reserve(
        &self,
        key: ThrottleKey<'_>,
        _now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        let mut counts = self.0.lock().unwrap();
        let count = counts.entry(key.to_key()).or_default();
        if *count >= 3 {
            return Ok(Err(Duration::from_secs(2)));
        }
        *count += 1;
        Ok(Ok(()))
    }
    fn record_success(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        self.0.lock().unwrap().remove(&key.to_key());
        Ok(())
    }
    fn release(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        if let Some(count) = self.0.lock().unwrap().get_mut(&key.to_key()) {
            *count = count.saturating_sub(1);
        }
        Ok(())
    }
    /// (free failures: two)
    fn settle(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        let before = self
            .0
            .lock()
            .unwrap()
            .get(&key.to_key())
            .map_or(0, |c| c.saturating_sub(1));
        if before <= 2 {
            self.record_success(key)
        } else {
            self.release(key)
        }
    }
    fn purge(&self, _now: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn remember_device(
        &self,
        device: &todo_core::RefreshTokenHash,
        user: todo_core::UserId,
        _now: Timestamp,
        _expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.1
            .lock()
            .unwrap()
            .insert(device.as_str().to_owned(), user);
        Ok(())
    }
    fn device_owner(
        &self,
        device: &todo_core::RefreshTokenHash,
        _now: Timestamp,
    ) -> Result<Option<todo_core::UserId>, StoreError> {
        Ok(self.1.lock().unwrap().get(device.as_str()).copied())
    }
}

#[test]
fn guessing_codes_is_throttled_per_account_across_tokens() {
    let backoff = Arc::new(PerKey::default());
    let limits = AuthLimits {
        code_failures: backoff.clone(),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    let (me, secret, _) = enrolled(&h, "alice");
    // (the code that confirmed the enrolment was right: it counts nothing)
    let key = format!("f:{}", me.user_id);
    assert_eq!(backoff.0.lock().unwrap().get(&key), None);
    let wrong = |h: &Harness| {
        let right = code_now(h, &secret).digits();
        let guess = if right == "000000" {
            "999999"
        } else {
            "000000"
        };
        TotpCode::parse(guess).unwrap()
    };
    // Three wrong codes on three fresh tokens: a new token is no new
    // allowance.
    for _ in 0..3 {
        let token = first_step(&h, "alice");
        assert!(matches!(
            second_step(&h, &token, &totp(wrong(&h))),
            Err(Error::InvalidSecondFactor)
        ));
    }
    let token = first_step(&h, "alice");
    let throttled = second_step(&h, &token, &totp(code_now(&h, &secret)));
    assert!(
        matches!(throttled, Err(Error::RateLimited { .. })),
        "{throttled:?}"
    );
    // The same allowance for the account's own screens.
    let removal =
        h.auth
            .account
            .remove_totp(ADDR, &me, "correct horse", &totp(code_now(&h, &secret)));
    assert!(
        matches!(removal, Err(Error::RateLimited { .. })),
        "{removal:?}"
    );
    assert_eq!(backoff.0.lock().unwrap().get(&key), Some(&3));
    // The password's count is another: the owner's password still works.
    assert!(matches!(
        h.auth
            .sessions
            .sign_in(ADDR, &Credentials::offered("alice", "correct horse")),
        Ok(SignIn::SecondFactor(_))
    ));
    // A right code settles the count: the owner's typos (within the free
    // ones) are forgotten. (A guesser's count past them stays: the SQL
    // backoff's test, `codes_keep_a_guessers_count_…`.)
    backoff.0.lock().unwrap().insert(key.clone(), 2);
    let token = first_step(&h, "alice");
    h.clock.advance(Duration::from_secs(30));
    second_step(&h, &token, &totp(code_now(&h, &secret))).unwrap();
    assert_eq!(backoff.0.lock().unwrap().get(&key), None);
    // A new password forgets the count too.
    backoff.0.lock().unwrap().insert(key.clone(), 3);
    h.auth
        .account
        .change_password(ADDR, &me, "correct horse", "battery staple")
        .unwrap();
    assert_eq!(backoff.0.lock().unwrap().get(&key), None);
}

#[test]
fn a_thiefs_wrong_codes_do_not_shut_the_owners_device_out() {
    let backoff = Arc::new(PerKey::default());
    let limits = AuthLimits {
        code_failures: backoff.clone(),
        // (it remembers the devices that signed in)
        login_failures: backoff.clone(),
        ..AuthLimits::unlimited()
    };
    let h = harness_with(limits, 2);
    let (_, secret, _) = enrolled(&h, "alice");
    // The owner's device signed in before the thief came.
    let token = first_step(&h, "alice");
    let device = second_step(&h, &token, &totp(code_now(&h, &secret)))
        .unwrap()
        .device_token
        .unwrap();
    h.clock.advance(Duration::from_secs(30));
    let wrong = if code_now(&h, &secret).digits() == "000000" {
        "999999"
    } else {
        "000000"
    };
    for _ in 0..3 {
        let token = first_step(&h, "alice");
        let refused = second_step(&h, &token, &totp(TotpCode::parse(wrong).unwrap()));
        assert!(
            matches!(refused, Err(Error::InvalidSecondFactor)),
            "{refused:?}"
        );
    }
    let token = first_step(&h, "alice");
    let shut = second_step(&h, &token, &totp(code_now(&h, &secret)));
    assert!(matches!(shut, Err(Error::RateLimited { .. })), "{shut:?}");
    // The owner's device has its own count.
    let token = first_step(&h, "alice");
    let pair = h
        .auth
        .sessions
        .complete_sign_in(
            ADDR,
            &token,
            &totp(code_now(&h, &secret)),
            None,
            Some(device),
        )
        .unwrap();
    assert!(h.auth.sessions.authenticate(&pair.access_token).is_ok());
}

#[test]
fn removing_your_own_needs_the_password_and_a_code() {
    let h = harness();
    let (me, secret, codes) = enrolled(&h, "alice");
    let answer = totp(code_now(&h, &secret));
    let refused = h
        .auth
        .account
        .remove_totp(ADDR, &me, "wrong horse", &answer);
    assert!(matches!(refused, Err(Error::WrongPassword)), "{refused:?}");
    let bad = SecondFactorAnswer::RecoveryCode(RecoveryCode::parse("aaaa-aaaa-aaaa-aaaa").unwrap());
    let refused = h.auth.account.remove_totp(ADDR, &me, "correct horse", &bad);
    assert!(matches!(refused, Err(Error::WrongCode)), "{refused:?}");
    // A recovery code does it (the authenticator may be what was lost).
    let recovery = SecondFactorAnswer::RecoveryCode(codes[0].clone());
    h.auth
        .account
        .remove_totp(ADDR, &me, "correct horse", &recovery)
        .unwrap();
    assert!(
        h.auth
            .account
            .second_factor_methods(&me)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.store
            .second_factors(me.user_id)
            .unwrap()
            .recovery_codes_left,
        0
    );
    assert!(h.login("alice", "correct horse").is_ok());
    let none = h
        .auth
        .account
        .remove_totp(ADDR, &me, "correct horse", &answer);
    assert!(matches!(none, Err(Error::NotFound)), "{none:?}");
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("SecondFactorRemoved"))
    );
}

#[test]
fn an_enrolment_is_confirmed_once_and_a_new_one_replaces_a_pending_one() {
    let h = harness();
    let (me, _, _) = enrolled(&h, "alice");
    let again = h.auth.account.begin_totp(ADDR, &me, "correct horse", None);
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");

    h.register("bob", "correct horse");
    let (bob, _) = h.principal("bob", "correct horse");
    let first = h
        .auth
        .account
        .begin_totp(ADDR, &bob, "correct horse", None)
        .unwrap();
    h.clock.advance(Duration::from_secs(1));
    let second = h
        .auth
        .account
        .begin_totp(ADDR, &bob, "correct horse", None)
        .unwrap();
    assert_ne!(
        first.secret.base32().as_str(),
        second.secret.base32().as_str()
    );
    let stale = h
        .auth
        .account
        .confirm_totp(ADDR, &bob, code_now(&h, &first.secret));
    assert!(matches!(stale, Err(Error::WrongCode)), "{stale:?}");
    // An enrolment left a quarter of an hour waits no more.
    h.clock.advance(Duration::from_secs(15 * 60));
    let late = h
        .auth
        .account
        .confirm_totp(ADDR, &bob, code_now(&h, &second.secret));
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
}

#[test]
fn deleting_an_enrolled_account_takes_a_code_too() {
    let h = harness();
    let (me, secret, _) = enrolled(&h, "alice");
    let missing = h.auth.account.delete_me(ADDR, &me, "correct horse", None);
    assert!(
        matches!(&missing, Err(Error::Invalid(errors)) if format!("{errors:?}").contains("code")),
        "{missing:?}"
    );
    let wrong = totp(
        TotpCode::parse(if code_now(&h, &secret).digits() == "111111" {
            "222222"
        } else {
            "111111"
        })
        .unwrap(),
    );
    let refused = h
        .auth
        .account
        .delete_me(ADDR, &me, "correct horse", Some(&wrong));
    assert!(matches!(refused, Err(Error::WrongCode)), "{refused:?}");
    h.auth
        .account
        .delete_me(
            ADDR,
            &me,
            "correct horse",
            Some(&totp(code_now(&h, &secret))),
        )
        .unwrap();
    let factors = h.store.second_factors(me.user_id).unwrap();
    assert!(factors.totp.is_none());
    assert_eq!(factors.recovery_codes_left, 0);
}

#[test]
fn an_administrator_removes_a_users_second_factors_audited() {
    let h = harness();
    let admin = h.admin();
    let (alice, _, _) = enrolled(&h, "alice");
    let (bob, _, _) = enrolled(&h, "bob");
    let forbidden = h.auth.admin.remove_second_factors(&bob, alice.user_id);
    assert!(matches!(forbidden, Err(Error::Forbidden)), "{forbidden:?}");
    // Not their own with a bearer token alone: that takes the password and a code.
    let own = h.auth.admin.remove_second_factors(&admin, admin.user_id);
    assert!(matches!(own, Err(Error::Conflict(_))), "{own:?}");
    let waiting = first_step(&h, "alice");
    h.auth
        .admin
        .remove_second_factors(&admin, alice.user_id)
        .unwrap();
    assert!(h.login("alice", "correct horse").is_ok());
    // A login waiting for the removed factor ends with it.
    let code = TotpCode::parse("123456").unwrap();
    assert!(matches!(
        second_step(&h, &waiting, &totp(code)),
        Err(Error::InvalidMfaToken)
    ));
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.contains("remove_second_factors"))
    );
    let nobody = h
        .auth
        .admin
        .remove_second_factors(&admin, todo_core::UserRef::parse("not-an-id"));
    assert!(matches!(nobody, Err(Error::NotFound)), "{nobody:?}");
    // Bob's are his still.
    assert!(matches!(
        h.login("bob", "correct horse"),
        Err(Error::SecondFactorRequired)
    ));
}

#[test]
fn a_server_without_the_key_refuses_an_enrolled_login_rather_than_skip_it() {
    let h = harness();
    enrolled(&h, "alice");
    let tokens = Arc::new(todo_core::testing::TableTokens::new("todo-auth", "todo"));
    let keyless = todo_core::AuthServices::builder()
        .store(h.store.clone())
        .hasher(h.hasher.clone())
        .signer(tokens.clone())
        .verifier(tokens)
        .refresh_hasher(Arc::new(todo_core::testing::ReversingDigest))
        .clock(h.clock.clone())
        .random(Arc::new(todo_core::testing::SeededRandom::new(9)))
        .limits(AuthLimits::unlimited())
        .sha256(Arc::new(todo_core::testing::FakeSha256))
        .build()
        .unwrap();
    let refused = keyless
        .sessions
        .sign_in(ADDR, &Credentials::offered("alice", "correct horse"));
    assert!(
        matches!(refused, Err(Error::NoSecondFactors)),
        "{refused:?}"
    );
    let missing = todo_core::AuthServices::builder()
        .store(h.store.clone())
        .second_factors(
            Arc::new(todo_core::testing::OpenSealer),
            Arc::new(FakeHmacSha1),
            "todo",
        )
        .build();
    assert!(
        missing
            .err()
            .is_some_and(|e| e.missing().contains(&"sha256"))
    );
}
