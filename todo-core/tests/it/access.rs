//! The access gate: one decision for every authenticated request, on every
//! instance, honouring revocations within a second.

use std::sync::Arc;
use std::time::Duration;

use todo_core::testing::TableTokens;
use todo_core::{AccessGate, Clock, Error, Role, TokenRejection, UserPatch};

use crate::auth::harness;

const REVOKED: TokenRejection = TokenRejection::Revoked;

fn refused(result: Result<todo_core::Principal, Error>) -> bool {
    matches!(result, Err(Error::InvalidToken(REVOKED)))
}

#[test]
fn another_instance_honours_a_password_change_within_a_second() {
    let h = harness();
    h.register("alice", "correct horse");
    let (_, pair) = h.principal("alice", "correct horse");
    // A second instance: its own gate (own memory), the same store. Its
    // verifier is never asked here: claims come from the service's gate.
    let other = AccessGate::new(
        Arc::new(TableTokens::new("todo-auth", "todo")),
        h.store.clone(),
        h.clock.clone(),
    );
    let claims = h.auth.gate().verify(&pair.access_token).unwrap();
    assert!(other.admit(&claims).is_ok());

    h.clock.advance(Duration::from_millis(300));
    let (me, _) = h.principal("alice", "correct horse");
    h.auth
        .account
        .change_password(None, &me, "correct horse", "battery staple")
        .unwrap();
    // This instance changed it: it refuses at once.
    assert!(refused(h.auth.sessions.authenticate(&pair.access_token)));
    // The other answers from what it read, for less than a second...
    h.clock.advance(Duration::from_millis(600));
    assert!(other.admit_remembered(&claims).is_some_and(|d| d.is_ok()));
    // ...and then reads again.
    h.clock.advance(Duration::from_millis(400));
    assert!(other.admit_remembered(&claims).is_none());
    assert!(refused(other.admit(&claims)));
}

#[test]
fn a_token_from_the_same_second_as_the_password_change_is_refused() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, stolen) = h.principal("alice", "correct horse");
    h.clock.advance(Duration::from_millis(20));
    h.auth
        .account
        .change_password(None, &me, "correct horse", "battery staple")
        .unwrap();
    let claims = h.auth.gate().verify(&stolen.access_token).unwrap();
    let changed_at = h.clock.now();
    assert_eq!(
        claims.issued_at,
        changed_at.unix_seconds(),
        "both in one second (the clock starts at a whole second)"
    );
    assert!(refused(h.auth.sessions.authenticate(&stolen.access_token)));
    h.clock.advance(Duration::from_millis(1));
    let fresh = h.login("alice", "battery staple").unwrap();
    assert!(h.auth.sessions.authenticate(&fresh.access_token).is_ok());
}

#[test]
fn disabled_deleted_and_unknown_users_are_refused_alike() {
    let h = harness();
    let root = {
        let reg = todo_core::Registration::parse("root", "admin-password", None).unwrap();
        h.auth.admin.create_user(reg, Role::Admin).unwrap();
        h.principal("root", "admin-password").0
    };
    let alice = h.register("alice", "correct horse");
    let bob = h.register("bob", "correct horse");
    let (_, alice_pair) = h.principal("alice", "correct horse");
    let (_, bob_pair) = h.principal("bob", "correct horse");

    h.clock.advance(Duration::from_millis(5));
    let disable = UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&root, alice.id, disable).unwrap();
    assert!(refused(
        h.auth.sessions.authenticate(&alice_pair.access_token)
    ));
    // Enabled again: the tokens issued before the disabling stay dead.
    h.clock.advance(Duration::from_millis(5));
    let enable = UserPatch {
        disabled: Some(false),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&root, alice.id, enable).unwrap();
    assert!(refused(
        h.auth.sessions.authenticate(&alice_pair.access_token)
    ));
    h.clock.advance(Duration::from_millis(5));
    let again = h.login("alice", "correct horse").unwrap();
    assert!(h.auth.sessions.authenticate(&again.access_token).is_ok());

    h.auth.admin.delete_user(&root, bob.id).unwrap();
    assert!(
        refused(h.auth.sessions.authenticate(&bob_pair.access_token)),
        "a deleted user's token is refused like a revoked one, not a store error"
    );
}

#[test]
fn the_role_is_the_stored_one() {
    let h = harness();
    let reg = todo_core::Registration::parse("root", "admin-password", None).unwrap();
    h.auth.admin.create_user(reg, Role::Admin).unwrap();
    let (root, _) = h.principal("root", "admin-password");
    let carol = h.register("carol", "correct horse");
    let (_, pair) = h.principal("carol", "correct horse");
    let promote = UserPatch {
        role: Some(Role::Admin),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&root, carol.id, promote).unwrap();
    let principal = h.auth.sessions.authenticate(&pair.access_token).unwrap();
    assert_eq!(
        principal.role,
        Role::Admin,
        "the token said user; the store says admin"
    );
}

#[test]
fn staleness_is_capped_at_a_second() {
    let h = harness();
    h.register("alice", "correct horse");
    let (_, pair) = h.principal("alice", "correct horse");
    let gate = AccessGate::new(
        Arc::new(TableTokens::new("todo-auth", "todo")),
        h.store.clone(),
        h.clock.clone(),
    )
    .with_staleness(Duration::from_secs(3600));
    let claims = h.auth.gate().verify(&pair.access_token).unwrap();
    assert!(gate.admit(&claims).is_ok());
    h.clock.advance(AccessGate::MAX_STALENESS);
    assert!(gate.admit_remembered(&claims).is_none());
}
