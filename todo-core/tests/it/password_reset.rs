//! Password resets by an administrator's link: single use, 30 minutes,
//! refused alike whatever the reason, ending every session and token.

use std::time::Duration;

use todo_core::{Error, PASSWORD_RESET_TTL, RequestOrigin, TokenRejection, ValidationError};

use crate::auth::harness;

fn dead(result: Result<(), Error>) -> bool {
    matches!(&result, Err(Error::Invalid(e)) if matches!(e[..], [ValidationError::Format { field: "token", .. }]))
}

#[test]
fn a_link_sets_a_new_password_once_and_ends_every_session() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let (me, pair) = h.principal("alice", "correct horse");
    let (_, api_token) = h
        .auth
        .sessions
        .create_api_token(
            RequestOrigin::default(),
            &me,
            todo_core::NewApiToken {
                name: todo_core::ApiTokenName::parse("script").unwrap(),
                grant: todo_core::ApiTokenGrant::new(
                    todo_core::Scopes::parse(["tasks:read"]).unwrap(),
                    None,
                )
                .unwrap(),
                expires_at: None,
            },
            Some("correct horse"),
        )
        .unwrap();
    let admin = h.admin();
    // Nobody but an administrator makes one, and not for a user who is not.
    assert!(matches!(
        h.auth.admin.password_reset_link(&me, alice.id),
        Err(Error::Forbidden)
    ));
    let nobody = todo_core::UserId::from_uuid(uuid::Uuid::from_u128(1));
    assert!(matches!(
        h.auth.admin.password_reset_link(&admin, nobody),
        Err(Error::NotFound)
    ));
    let (link, expires_at) = h.auth.admin.password_reset_link(&admin, alice.id).unwrap();
    assert_eq!(
        expires_at,
        todo_core::Clock::now(&*h.clock).saturating_add(PASSWORD_RESET_TTL)
    );
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.contains("password_reset_link")),
        "{:?}",
        h.audit.events()
    );
    // Made, nothing changed yet.
    assert!(h.auth.sessions.authenticate(&pair.access_token).is_ok());

    // A refused new password leaves the link usable.
    assert!(matches!(
        h.auth.sessions.reset_password(None, link.expose(), "short"),
        Err(Error::Invalid(_))
    ));
    h.clock.advance(Duration::from_millis(5));
    h.auth
        .sessions
        .reset_password(None, link.expose(), "a brand new horse")
        .unwrap();
    let revoked = |token: &str| {
        matches!(
            h.auth.sessions.authenticate(token),
            Err(Error::InvalidToken(TokenRejection::Revoked))
        )
    };
    assert!(revoked(&pair.access_token), "the login's token ends");
    assert!(revoked(api_token.expose()), "the API token ends");
    let refreshed = h.auth.sessions.refresh(None, &pair.refresh_token);
    assert!(
        matches!(refreshed, Err(Error::InvalidRefreshToken)),
        "{refreshed:?}"
    );
    assert!(h.login("alice", "correct horse").is_err());
    assert!(h.login("alice", "a brand new horse").is_ok());
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("PasswordReset"))
    );
    // Once only.
    assert!(dead(h.auth.sessions.reset_password(
        None,
        link.expose(),
        "yet another horse"
    )));
    assert!(h.login("alice", "a brand new horse").is_ok());
}

#[test]
fn a_dead_or_made_up_link_is_refused_alike_before_any_hashing() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let admin = h.admin();
    let (old, _) = h.auth.admin.password_reset_link(&admin, alice.id).unwrap();
    let (newer, _) = h.auth.admin.password_reset_link(&admin, alice.id).unwrap();
    let hashes = h.hasher.hashes();
    assert!(
        dead(
            h.auth
                .sessions
                .reset_password(None, old.expose(), "a brand new horse")
        ),
        "replaced by the newer"
    );
    assert!(dead(h.auth.sessions.reset_password(
        None,
        "made up",
        "a brand new horse"
    )));
    assert!(dead(h.auth.sessions.reset_password(
        None,
        &"A".repeat(43),
        "a brand new horse"
    )));
    h.clock.advance(PASSWORD_RESET_TTL);
    assert!(
        dead(
            h.auth
                .sessions
                .reset_password(None, newer.expose(), "a brand new horse")
        ),
        "expired"
    );
    assert_eq!(h.hasher.hashes(), hashes, "no password was hashed");
    assert!(h.login("alice", "correct horse").is_ok());
}

#[test]
fn an_api_token_makes_no_link() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let admin = h.admin();
    let (_, secret) = h
        .auth
        .sessions
        .create_api_token(
            RequestOrigin::default(),
            &admin,
            todo_core::NewApiToken {
                name: todo_core::ApiTokenName::parse("admin script").unwrap(),
                grant: todo_core::ApiTokenGrant::new(
                    todo_core::Scopes::parse(["tasks:read"]).unwrap(),
                    None,
                )
                .unwrap(),
                expires_at: None,
            },
            Some("admin-password"),
        )
        .unwrap();
    let token = h.auth.sessions.authenticate(secret.expose()).unwrap();
    assert!(matches!(
        h.auth.admin.password_reset_link(&token, alice.id),
        Err(Error::Forbidden)
    ));
}

#[test]
fn a_password_change_or_a_disabling_kills_a_pending_link() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let admin = h.admin();
    let (link, _) = h.auth.admin.password_reset_link(&admin, alice.id).unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    h.auth
        .account
        .change_password(None, &me, "correct horse", "a horse of her own")
        .unwrap();
    assert!(dead(h.auth.sessions.reset_password(
        None,
        link.expose(),
        "the holder's horse"
    )));

    let (link, _) = h.auth.admin.password_reset_link(&admin, alice.id).unwrap();
    let disable = todo_core::UserPatch {
        disabled: Some(true),
        ..todo_core::UserPatch::default()
    };
    h.auth.admin.patch_user(&admin, alice.id, disable).unwrap();
    assert!(dead(h.auth.sessions.reset_password(
        None,
        link.expose(),
        "the holder's horse"
    )));
}
