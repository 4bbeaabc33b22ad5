//! Closed registration: only the administrators' command makes users.

use todo_core::{Credentials, Error, Registration, Role};

use crate::auth::harness;

#[test]
fn closed_registration_refuses_before_any_work_and_admins_still_create_users() {
    let h = harness();
    let mut closed = h.auth.clone();
    closed.sessions = closed.sessions.with_registration_open(false);
    let offered = Registration::parse("mallory", "correct horse", None).unwrap();
    assert!(matches!(
        closed.sessions.register(None, offered),
        Err(Error::RegistrationClosed)
    ));
    assert_eq!(h.hasher.hashes(), 0, "refused before hashing anything");
    let carol = Registration::parse("carol", "carol's password", None).unwrap();
    closed.admin.create_user(carol, Role::User).unwrap();
    closed
        .sessions
        .login(None, &Credentials::offered("carol", "carol's password"))
        .unwrap();
    assert!(
        closed
            .sessions
            .login(None, &Credentials::offered("mallory", "correct horse"))
            .is_err()
    );
    // Open (the default) registers as before.
    h.register("alice", "correct horse");
}
