//! Passkeys: registered by a signed-in user (the ceremony's first step
//! kept for its second, taken once), listed, removed with the password;
//! signing in alone with one, by a challenge taken once within five
//! minutes; refused alike for a forged answer, another user's passkey, a
//! disabled account; gone with an administrator's removal.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use todo_core::testing::FakePasskeys;
use todo_core::{
    ChallengeId, Clock as _, Error, MAX_PASSKEYS, PasskeyName, Principal, SecondFactorAnswer,
    SecondFactorStore as _, TokenPair, UserId,
};

use crate::auth::{Harness, harness};

const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

fn name(text: &str) -> PasskeyName {
    PasskeyName::parse(text).unwrap()
}

/// Registers a passkey with credential id `credential` for `me`, with the
/// password and, once they have one, a passkey's answer.
fn register(
    h: &Harness,
    me: &Principal,
    credential: &[u8],
    called: &str,
) -> todo_core::PasskeyRecord {
    let confirm = h
        .auth
        .account
        .list_passkeys(me)
        .unwrap()
        .first()
        .map(|p| proof(h, me, &p.credential_id.clone(), "ok"));
    let options = h
        .auth
        .account
        .start_passkey_registration(ADDR, me, "correct horse", confirm.as_ref())
        .unwrap();
    let answer = FakePasskeys::answer(&options, credential, me.user_id, "ok");
    h.auth
        .account
        .finish_passkey_registration(ADDR, me, name(called), &answer)
        .unwrap()
}

/// A passkey's answer confirming an action of `me`'s.
fn proof(h: &Harness, me: &Principal, credential: &[u8], signature: &str) -> SecondFactorAnswer {
    let challenge = h.auth.sessions.start_passkey_sign_in(ADDR).unwrap();
    SecondFactorAnswer::Passkey {
        answer: FakePasskeys::answer(&challenge.options, credential, me.user_id, signature),
        challenge_id: challenge.challenge_id,
    }
}

fn sign_in(
    h: &Harness,
    credential: &[u8],
    user: UserId,
    signature: &str,
) -> (ChallengeId, Result<TokenPair, Error>) {
    let challenge = h.auth.sessions.start_passkey_sign_in(ADDR).unwrap();
    let answer = FakePasskeys::answer(&challenge.options, credential, user, signature);
    let result =
        h.auth
            .sessions
            .finish_passkey_sign_in(ADDR, &challenge.challenge_id, &answer, None, None);
    (challenge.challenge_id, result)
}

#[test]
fn a_registered_passkey_signs_in_alone_and_its_challenge_once() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let passkey = register(&h, &me, b"phone", " Phone ");
    assert_eq!(passkey.name.as_str(), "Phone");
    assert_eq!(passkey.user_id, alice.id);
    assert_eq!(
        h.auth.account.second_factor_methods(&me).unwrap(),
        ["passkey"],
        "a passkey is no second step of the password's"
    );
    assert!(h.login("alice", "correct horse").is_ok());
    // Another takes one of the account's passkeys too, not the password alone.
    let alone = h
        .auth
        .account
        .start_passkey_registration(ADDR, &me, "correct horse", None);
    assert!(matches!(alone, Err(Error::Invalid(_))), "{alone:?}");
    let listed = h.auth.account.list_passkeys(&me).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_none());

    let (challenge, pair) = sign_in(&h, b"phone", alice.id, "ok");
    let pair = pair.unwrap();
    let signed_in = h.auth.sessions.authenticate(&pair.access_token).unwrap();
    assert_eq!(signed_in.user_id, alice.id);
    let used = &h.auth.account.list_passkeys(&me).unwrap()[0];
    assert_eq!(used.last_used_at, Some(h.clock.now()));
    assert!(
        used.credential.ends_with(b"+"),
        "the credential's counter is kept"
    );
    // The challenge is spent, whoever answers it again.
    let again = h.auth.sessions.finish_passkey_sign_in(
        ADDR,
        &challenge,
        &FakePasskeys::answer("challenge:00", b"phone", alice.id, "ok"),
        None,
        None,
    );
    assert!(matches!(again, Err(Error::InvalidPasskey(_))), "{again:?}");
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("SecondFactorAdded") && e.contains("passkey"))
    );
}

#[test]
fn forged_foreign_late_or_disabled_sign_ins_are_refused_alike() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let bob = h.register("bob", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    register(&h, &me, b"alices key", "Laptop");
    // A bad signature.
    let (_, forged) = sign_in(&h, b"alices key", alice.id, "forged");
    assert!(
        matches!(forged, Err(Error::InvalidPasskey(_))),
        "{forged:?}"
    );
    // Alice's passkey claimed for bob.
    let (_, foreign) = sign_in(&h, b"alices key", bob.id, "ok");
    assert!(
        matches!(foreign, Err(Error::InvalidPasskey(_))),
        "{foreign:?}"
    );
    // A passkey nobody registered.
    let (_, unknown) = sign_in(&h, b"made up", alice.id, "ok");
    assert!(
        matches!(unknown, Err(Error::InvalidPasskey(_))),
        "{unknown:?}"
    );
    // Five minutes and the challenge is gone.
    let challenge = h.auth.sessions.start_passkey_sign_in(ADDR).unwrap();
    h.clock.advance(Duration::from_secs(5 * 60));
    let late = h.auth.sessions.finish_passkey_sign_in(
        ADDR,
        &challenge.challenge_id,
        &FakePasskeys::answer(&challenge.options, b"alices key", alice.id, "ok"),
        None,
        None,
    );
    assert!(matches!(late, Err(Error::InvalidPasskey(_))), "{late:?}");
    // A disabled account.
    let admin = h.admin();
    let patch = todo_core::UserPatch {
        disabled: Some(true),
        role: None,
        email: None,
    };
    h.auth.admin.patch_user(&admin, alice.id, patch).unwrap();
    let (_, disabled) = sign_in(&h, b"alices key", alice.id, "ok");
    assert!(
        matches!(disabled, Err(Error::InvalidPasskey(_))),
        "{disabled:?}"
    );
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("SecondFactorFailed") && e.contains("passkey"))
    );
}

#[test]
fn a_registration_is_finished_once_by_its_own_user_within_five_minutes() {
    let h = harness();
    h.register("alice", "correct horse");
    h.register("bob", "correct horse");
    let (alice, _) = h.principal("alice", "correct horse");
    let (bob, _) = h.principal("bob", "correct horse");
    let options = h
        .auth
        .account
        .start_passkey_registration(ADDR, &alice, "correct horse", None)
        .unwrap();
    let answer = FakePasskeys::answer(&options, b"k", alice.user_id, "ok");
    // A session alone adds no passkey: the password, and once there is a
    // passkey, one of them too.
    let no_password = h
        .auth
        .account
        .start_passkey_registration(ADDR, &bob, "wrong horse", None);
    assert!(
        matches!(no_password, Err(Error::WrongPassword)),
        "{no_password:?}"
    );
    // Bob has no registration begun: alice's answer registers nothing of his.
    let stolen = h
        .auth
        .account
        .finish_passkey_registration(ADDR, &bob, name("x"), &answer);
    assert!(
        matches!(stolen, Err(Error::PasskeyRefused(_))),
        "{stolen:?}"
    );
    // An answer to another challenge spends this one.
    let wrong = FakePasskeys::answer("challenge:ffff", b"k", alice.user_id, "ok");
    let refused = h
        .auth
        .account
        .finish_passkey_registration(ADDR, &alice, name("x"), &wrong);
    assert!(
        matches!(refused, Err(Error::PasskeyRefused(_))),
        "{refused:?}"
    );
    let spent = h
        .auth
        .account
        .finish_passkey_registration(ADDR, &alice, name("x"), &answer);
    assert!(matches!(spent, Err(Error::PasskeyRefused(_))), "{spent:?}");
    let options = h
        .auth
        .account
        .start_passkey_registration(ADDR, &alice, "correct horse", None)
        .unwrap();
    h.clock.advance(Duration::from_secs(5 * 60));
    let late = h.auth.account.finish_passkey_registration(
        ADDR,
        &alice,
        name("x"),
        &FakePasskeys::answer(&options, b"k", alice.user_id, "ok"),
    );
    assert!(matches!(late, Err(Error::PasskeyRefused(_))), "{late:?}");
    // The same credential twice is one passkey.
    register(&h, &alice, b"k", "first");
    let options = h
        .auth
        .account
        .start_passkey_registration(
            ADDR,
            &alice,
            "correct horse",
            Some(&proof(&h, &alice, b"k", "ok")),
        )
        .unwrap();
    let twice = h.auth.account.finish_passkey_registration(
        ADDR,
        &alice,
        name("again"),
        &FakePasskeys::answer(&options, b"k", alice.user_id, "ok"),
    );
    assert!(matches!(twice, Err(Error::Conflict(_))), "{twice:?}");
}

#[test]
fn a_user_has_at_most_ten_and_removes_them_with_the_password_and_a_passkey() {
    let h = harness();
    h.register("alice", "correct horse");
    h.register("bob", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let (bob, _) = h.principal("bob", "correct horse");
    let mut first = None;
    for i in 0..MAX_PASSKEYS {
        let passkey = register(&h, &me, format!("key {i}").as_bytes(), &format!("key {i}"));
        first.get_or_insert(passkey);
    }
    let over = h.auth.account.start_passkey_registration(
        ADDR,
        &me,
        "correct horse",
        Some(&proof(&h, &me, b"key 0", "ok")),
    );
    assert!(matches!(over, Err(Error::QuotaExceeded { .. })), "{over:?}");
    let first = first.unwrap();
    // Bob cannot remove alice's (not even with a passkey of his own); a
    // wrong password removes nothing; nor does the password alone (a
    // stolen session and password must not strip the account's ways in),
    // nor another user's passkey, nor a forged answer.
    register(&h, &bob, b"bobs key", "Bob's");
    let foreign = h.auth.account.remove_passkey(
        ADDR,
        &bob,
        first.id,
        "correct horse",
        Some(&proof(&h, &bob, b"bobs key", "ok")),
    );
    assert!(matches!(foreign, Err(Error::NotFound)), "{foreign:?}");
    let wrong = h.auth.account.remove_passkey(
        ADDR,
        &me,
        first.id,
        "wrong horse",
        Some(&proof(&h, &me, b"key 1", "ok")),
    );
    assert!(matches!(wrong, Err(Error::WrongPassword)), "{wrong:?}");
    let alone = h
        .auth
        .account
        .remove_passkey(ADDR, &me, first.id, "correct horse", None);
    assert!(matches!(alone, Err(Error::Invalid(_))), "{alone:?}");
    for refused in [
        proof(&h, &me, b"key 1", "forged"),
        proof(&h, &bob, b"bobs key", "ok"),
    ] {
        let outcome =
            h.auth
                .account
                .remove_passkey(ADDR, &me, first.id, "correct horse", Some(&refused));
        assert!(matches!(outcome, Err(Error::WrongCode)), "{outcome:?}");
    }
    h.auth
        .account
        .remove_passkey(
            ADDR,
            &me,
            first.id,
            "correct horse",
            Some(&proof(&h, &me, b"key 1", "ok")),
        )
        .unwrap();
    assert_eq!(
        h.auth.account.list_passkeys(&me).unwrap().len(),
        MAX_PASSKEYS - 1
    );
    let (_, gone) = sign_in(&h, b"key 0", me.user_id, "ok");
    assert!(matches!(gone, Err(Error::InvalidPasskey(_))), "{gone:?}");
    let (_, kept) = sign_in(&h, b"key 1", me.user_id, "ok");
    assert!(kept.is_ok(), "{kept:?}");
}

#[test]
fn an_administrators_removal_takes_passkeys_too() {
    let h = harness();
    let admin = h.admin();
    let alice = h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    register(&h, &me, b"k", "Phone");
    h.auth
        .admin
        .remove_second_factors(&admin, alice.id)
        .unwrap();
    assert!(h.store.list_passkeys(alice.id).unwrap().is_empty());
    let (_, refused) = sign_in(&h, b"k", alice.id, "ok");
    assert!(
        matches!(refused, Err(Error::InvalidPasskey(_))),
        "{refused:?}"
    );
}

#[test]
fn a_server_without_a_relying_party_offers_no_passkeys() {
    let h = harness();
    h.register("alice", "correct horse");
    let tokens = Arc::new(todo_core::testing::TableTokens::new("todo-auth", "todo"));
    let without = todo_core::AuthServices::builder()
        .store(h.store.clone())
        .hasher(h.hasher.clone())
        .signer(tokens.clone())
        .verifier(tokens)
        .refresh_hasher(Arc::new(todo_core::testing::ReversingDigest))
        .clock(h.clock.clone())
        .random(Arc::new(todo_core::testing::SeededRandom::new(9)))
        .limits(todo_core::AuthLimits::unlimited())
        .sha256(Arc::new(todo_core::testing::FakeSha256))
        .build()
        .unwrap();
    assert!(matches!(
        without.sessions.start_passkey_sign_in(ADDR),
        Err(Error::NoPasskeys)
    ));
    let pair = without
        .sessions
        .login(
            ADDR,
            &todo_core::Credentials::offered("alice", "correct horse"),
        )
        .unwrap();
    let me = without.sessions.authenticate(&pair.access_token).unwrap();
    assert!(matches!(
        without
            .account
            .start_passkey_registration(ADDR, &me, "correct horse", None),
        Err(Error::NoPasskeys)
    ));
}

#[test]
fn an_account_with_a_passkey_is_deleted_with_one_too() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    register(&h, &me, b"k", "Phone");
    let alone = h.auth.account.delete_me(ADDR, &me, "correct horse", None);
    assert!(matches!(alone, Err(Error::Invalid(_))), "{alone:?}");
    let forged = h.auth.account.delete_me(
        ADDR,
        &me,
        "correct horse",
        Some(&proof(&h, &me, b"k", "forged")),
    );
    assert!(matches!(forged, Err(Error::WrongCode)), "{forged:?}");
    h.auth
        .account
        .delete_me(
            ADDR,
            &me,
            "correct horse",
            Some(&proof(&h, &me, b"k", "ok")),
        )
        .unwrap();
    assert!(h.store.list_passkeys(me.user_id).unwrap().is_empty());
}

#[test]
fn turning_the_authenticator_off_keeps_the_passkeys() {
    let h = harness();
    let (me, _) = {
        h.register("alice", "correct horse");
        h.principal("alice", "correct horse")
    };
    register(&h, &me, b"k", "Phone");
    // (the password alone does not add an authenticator to an account
    // with a passkey: a thief's would become its second factor)
    let alone = h.auth.account.begin_totp(ADDR, &me, "correct horse", None);
    assert!(matches!(alone, Err(Error::Invalid(_))), "{alone:?}");
    let foreign = {
        h.register("mallory", "correct horse");
        let (mallory, _) = h.principal("mallory", "correct horse");
        register(&h, &mallory, b"m", "Mallory's");
        proof(&h, &mallory, b"m", "ok")
    };
    let stolen = h
        .auth
        .account
        .begin_totp(ADDR, &me, "correct horse", Some(&foreign));
    assert!(matches!(stolen, Err(Error::WrongCode)), "{stolen:?}");
    let enrolment = h
        .auth
        .account
        .begin_totp(
            ADDR,
            &me,
            "correct horse",
            Some(&proof(&h, &me, b"k", "ok")),
        )
        .unwrap();
    let step = todo_core::step_of(h.clock.now());
    let codes = h
        .auth
        .account
        .confirm_totp(
            ADDR,
            &me,
            enrolment
                .secret
                .code_at(&todo_core::testing::FakeHmacSha1, step),
        )
        .unwrap();
    h.auth
        .account
        .remove_totp(
            ADDR,
            &me,
            "correct horse",
            &SecondFactorAnswer::RecoveryCode(codes[0].clone()),
        )
        .unwrap();
    assert_eq!(h.auth.account.list_passkeys(&me).unwrap().len(), 1);
    let (_, pair) = sign_in(&h, b"k", me.user_id, "ok");
    assert!(pair.is_ok(), "{pair:?}");
}
