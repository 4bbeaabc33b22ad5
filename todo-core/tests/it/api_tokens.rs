//! API tokens: made by a signed-in user with their password, each a session
//! of its own; admitted by the gate with their scopes and project while
//! they live; refused once revoked, expired, or their user's password
//! changed or account disabled.

use std::time::Duration;

use todo_core::{
    API_TOKEN_PREFIX, ApiTokenGrant, ApiTokenName, Clock, Error, Grant, NewApiToken, Principal,
    ProjectId, RequestOrigin, Scope, Scopes, SessionKind, TokenRejection, UserPatch,
    ValidationError,
};

use crate::auth::{API_TOKEN_QUOTA, Harness, harness};

fn refused(result: Result<Principal, Error>) -> bool {
    matches!(result, Err(Error::InvalidToken(TokenRejection::Revoked)))
}

fn new_token(name: &str, scopes: &[&str], project: Option<ProjectId>) -> NewApiToken {
    NewApiToken {
        name: ApiTokenName::parse(name).unwrap(),
        grant: ApiTokenGrant {
            scopes: Scopes::parse(scopes.iter().copied()).unwrap(),
            project,
        },
        expires_at: None,
    }
}

/// alice signed in, and an API token of hers with `scopes`: her principal
/// and the token's secret.
fn alice_with_token(h: &Harness, scopes: &[&str]) -> (Principal, String) {
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let (_, secret) = h
        .auth
        .sessions
        .create_api_token(
            RequestOrigin::default(),
            &me,
            new_token("backup", scopes, None),
            Some("correct horse"),
        )
        .unwrap();
    (me, secret.expose().to_owned())
}

#[test]
fn a_token_is_made_with_the_password_and_acts_with_its_scopes() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let make = |password: Option<&str>| {
        h.auth.sessions.create_api_token(
            RequestOrigin::default(),
            &me,
            new_token("backup", &["tasks:read"], None),
            password,
        )
    };
    assert!(matches!(make(None), Err(Error::Invalid(_))));
    assert!(matches!(
        make(Some("wrong horse")),
        Err(Error::WrongPassword)
    ));
    let hashes = h.hasher.verifications();
    let (record, secret) = make(Some("correct horse")).unwrap();
    assert_eq!(
        h.hasher.verifications(),
        hashes + 1,
        "one hash, the password's"
    );
    assert!(secret.expose().starts_with(API_TOKEN_PREFIX));
    assert_eq!(record.session.kind, SessionKind::ApiToken);
    assert_eq!(
        record.session.expires_at,
        h.clock
            .now()
            .saturating_add(todo_core::DEFAULT_API_TOKEN_LIFETIME)
    );
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.starts_with("ApiTokenCreated")),
        "{:?}",
        h.audit.events()
    );

    let acting = h.auth.sessions.authenticate(secret.expose()).unwrap();
    assert_eq!(acting.user_id, me.user_id);
    assert_eq!(acting.session, Some(record.session.id));
    assert!(acting.grant.allows(Scope::TasksRead));
    assert!(!acting.grant.allows(Scope::TasksWrite));
    assert!(!acting.grant.is_login());
    assert!(me.grant.is_login());

    // Listed, as a token and among the sessions; its secret is nowhere.
    let listed = h.auth.sessions.list_api_tokens(&me).unwrap();
    assert_eq!(listed, std::slice::from_ref(&record));
    let sessions = h.auth.sessions.list_sessions(&me).unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.id == record.session.id && s.kind == SessionKind::ApiToken)
    );

    // A token cannot make another: only a login can.
    assert!(matches!(
        h.auth.sessions.create_api_token(
            RequestOrigin::default(),
            &acting,
            new_token("more", &["tasks:read"], None),
            Some("correct horse"),
        ),
        Err(Error::Forbidden)
    ));
    // Text that is not a token of ours, or one that never was, is refused.
    assert!(matches!(
        h.auth.sessions.authenticate("todo_pat_short"),
        Err(Error::InvalidToken(_))
    ));
    let mut forged = secret.expose().to_owned();
    forged.replace_range(API_TOKEN_PREFIX.len()..API_TOKEN_PREFIX.len() + 4, "AAAA");
    assert!(refused(h.auth.sessions.authenticate(&forged)));
}

#[test]
fn an_expiry_is_in_the_future_and_at_most_a_year_away() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let now = h.clock.now();
    let make = |expires_at| {
        let mut new = new_token("backup", &["tasks:read"], None);
        new.expires_at = Some(expires_at);
        h.auth
            .sessions
            .create_api_token(RequestOrigin::default(), &me, new, Some("correct horse"))
    };
    let year = todo_core::MAX_API_TOKEN_LIFETIME;
    for bad in [
        now,
        now.saturating_add(year)
            .saturating_add(Duration::from_secs(1)),
    ] {
        assert!(
            matches!(&make(bad), Err(Error::Invalid(e)) if matches!(e[..], [ValidationError::Range { field: "expires_at", .. }])),
            "{bad}"
        );
    }
    let (record, secret) = make(now.saturating_add(year)).unwrap();
    assert_eq!(record.session.expires_at, now.saturating_add(year));

    // It acts until then, and not a moment after.
    h.clock.advance(year - Duration::from_secs(1));
    assert!(h.auth.sessions.authenticate(secret.expose()).is_ok());
    h.clock.advance(Duration::from_secs(1));
    assert!(refused(h.auth.sessions.authenticate(secret.expose())));
    assert!(h.auth.sessions.list_api_tokens(&me).unwrap().is_empty());
}

#[test]
fn revoking_a_token_refuses_it_at_once_and_needs_no_password() {
    let h = harness();
    let (me, secret) = alice_with_token(&h, &["tasks:read", "tasks:write"]);
    let id = h.auth.sessions.list_api_tokens(&me).unwrap()[0].session.id;
    assert!(h.auth.sessions.authenticate(&secret).is_ok());
    let hashes = h.hasher.verifications();
    // Newer than alice's sign-in, and still no password: a token is no
    // sign-in of hers to protect.
    h.auth.sessions.revoke_api_token(None, &me, id).unwrap();
    assert_eq!(h.hasher.verifications(), hashes);
    assert!(refused(h.auth.sessions.authenticate(&secret)));
    assert!(h.auth.sessions.list_api_tokens(&me).unwrap().is_empty());
    assert!(matches!(
        h.auth.sessions.revoke_api_token(None, &me, id),
        Err(Error::NotFound)
    ));
}

#[test]
fn a_token_is_no_one_elses_to_revoke_and_a_login_is_no_token() {
    let h = harness();
    let (me, secret) = alice_with_token(&h, &["tasks:read"]);
    let id = h.auth.sessions.list_api_tokens(&me).unwrap()[0].session.id;
    h.register("mallory", "battery staple");
    let (mallory, _) = h.principal("mallory", "battery staple");
    assert!(matches!(
        h.auth.sessions.revoke_api_token(None, &mallory, id),
        Err(Error::NotFound)
    ));
    assert!(h.auth.sessions.authenticate(&secret).is_ok());
    // A login's session is not an API token, even the caller's own.
    assert!(matches!(
        h.auth
            .sessions
            .revoke_api_token(None, &me, me.session.unwrap()),
        Err(Error::NotFound)
    ));
}

#[test]
fn a_password_change_or_a_disabled_account_ends_every_token() {
    let h = harness();
    let (me, secret) = alice_with_token(&h, &["tasks:read"]);
    h.clock.advance(Duration::from_secs(1));
    h.auth
        .account
        .change_password(None, &me, "correct horse", "new correct horse")
        .unwrap();
    assert!(refused(h.auth.sessions.authenticate(&secret)));

    let h = harness();
    let (me, secret) = alice_with_token(&h, &["tasks:read"]);
    let admin = h.admin();
    let disable = |disabled| UserPatch {
        disabled: Some(disabled),
        ..UserPatch::default()
    };
    h.auth
        .admin
        .patch_user(&admin, me.user_id, disable(true))
        .unwrap();
    assert!(refused(h.auth.sessions.authenticate(&secret)));
    // Enabled again: the token stays dead (disabling cut every token).
    h.clock.advance(Duration::from_secs(1));
    h.auth
        .admin
        .patch_user(&admin, me.user_id, disable(false))
        .unwrap();
    assert!(refused(h.auth.sessions.authenticate(&secret)));
}

#[test]
fn ending_every_other_session_with_the_password_ends_tokens_too() {
    let h = harness();
    let (me, secret) = alice_with_token(&h, &["tasks:read"]);
    let ended = h
        .auth
        .sessions
        .end_other_sessions(None, &me, Some("correct horse"))
        .unwrap();
    assert_eq!(ended, 1);
    assert!(refused(h.auth.sessions.authenticate(&secret)));
}

#[test]
fn a_user_has_at_most_their_quota_of_live_tokens() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let make = || {
        h.auth.sessions.create_api_token(
            RequestOrigin::default(),
            &me,
            new_token("script", &["tasks:read"], None),
            Some("correct horse"),
        )
    };
    let made: Vec<_> = (0..API_TOKEN_QUOTA).map(|_| make().unwrap()).collect();
    assert!(matches!(
        make(),
        Err(Error::QuotaExceeded { limit, .. }) if limit == API_TOKEN_QUOTA as u64
    ));
    // Logins do not count against it, nor it against logins.
    for _ in 0..3 {
        h.login("alice", "correct horse").unwrap();
    }
    assert!(
        made.iter()
            .all(|(_, secret)| { h.auth.sessions.authenticate(secret.expose()).is_ok() })
    );
    // A revoked one makes room.
    h.auth
        .sessions
        .revoke_api_token(None, &me, made[0].0.session.id)
        .unwrap();
    assert!(make().is_ok());
}

#[test]
fn a_token_limited_to_a_project_says_so() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let project = ProjectId::inbox_of(me.user_id);
    let (_, secret) = h
        .auth
        .sessions
        .create_api_token(
            RequestOrigin::default(),
            &me,
            new_token("inbox only", &["tasks:write"], Some(project)),
            Some("correct horse"),
        )
        .unwrap();
    let acting = h.auth.sessions.authenticate(secret.expose()).unwrap();
    assert_eq!(acting.grant.project(), Some(project));
    assert_eq!(Grant::Login.project(), None);
}

#[test]
fn the_gate_writes_a_tokens_use_once_a_minute_and_honours_a_revocation_within_a_second() {
    let h = harness();
    let (me, secret) = alice_with_token(&h, &["tasks:read"]);
    let made = h.auth.sessions.list_api_tokens(&me).unwrap()[0].clone();
    // A second gate, as another instance would hold, remembering readings.
    let other = todo_core::AccessGate::new(
        std::sync::Arc::new(todo_core::testing::TableTokens::new("todo-auth", "todo")),
        h.store.clone(),
        h.clock.clone(),
    )
    .with_api_tokens(std::sync::Arc::new(todo_core::testing::FakeSha256));
    assert!(other.authorize(&secret).is_ok());
    h.clock.advance(Duration::from_secs(30));
    assert!(other.authorize(&secret).is_ok());
    let listed = h.auth.sessions.list_api_tokens(&me).unwrap();
    assert_eq!(listed[0].session.last_used_at, made.session.last_used_at);
    h.clock.advance(Duration::from_secs(31));
    assert!(other.authorize(&secret).is_ok());
    let listed = h.auth.sessions.list_api_tokens(&me).unwrap();
    assert_eq!(listed[0].session.last_used_at, h.clock.now());

    // Revoked through the first: the other instance still has its reading
    // for under a second, and refuses the token once that is a second old.
    h.auth
        .sessions
        .revoke_api_token(None, &me, made.session.id)
        .unwrap();
    let remembered = other.authorize(&secret);
    h.clock.advance(todo_core::AccessGate::MAX_STALENESS);
    assert!(refused(other.authorize(&secret)), "{remembered:?}");
}

#[test]
fn the_auth_services_refuse_an_api_tokens_principal() {
    let h = harness();
    let (me, secret) = alice_with_token(
        &h,
        &[
            "tasks:read",
            "tasks:write",
            "projects:read",
            "projects:write",
        ],
    );
    let token = h.auth.sessions.authenticate(&secret).unwrap();
    let forbidden = |result: Result<(), Error>| matches!(result, Err(Error::Forbidden));
    assert!(forbidden(h.auth.account.me(&token).map(|_| ())));
    assert!(forbidden(h.auth.account.change_password(
        None,
        &token,
        "correct horse",
        "another horse"
    )));
    assert!(forbidden(h.auth.account.delete_me(
        None,
        &token,
        "correct horse",
        None
    )));
    assert!(forbidden(h.auth.sessions.list_sessions(&token).map(|_| ())));
    assert!(forbidden(
        h.auth.sessions.list_api_tokens(&token).map(|_| ())
    ));
    assert!(forbidden(h.auth.sessions.end_session(
        None,
        &token,
        me.session.unwrap(),
        Some("correct horse")
    )));
    assert!(forbidden(
        h.auth
            .sessions
            .end_other_sessions(None, &token, Some("correct horse"))
            .map(|_| ())
    ));
    // Nothing was done: alice is signed in as before.
    assert_eq!(h.auth.sessions.list_sessions(&me).unwrap().len(), 2);

    // An administrator's token administers nothing.
    let admin = h.admin();
    let (_, admins) = h
        .auth
        .sessions
        .create_api_token(
            RequestOrigin::default(),
            &admin,
            new_token("admin script", &["tasks:read"], None),
            Some("admin-password"),
        )
        .unwrap();
    let admins = h.auth.sessions.authenticate(admins.expose()).unwrap();
    assert!(forbidden(todo_core::UserAdmin::screen(&admins)));
    let limit = todo_core::PageLimit::new(10).unwrap();
    assert!(forbidden(
        h.auth.admin.list_users(&admins, limit, None).map(|_| ())
    ));
    assert!(forbidden(h.auth.admin.delete_user(&admins, me.user_id)));
}

#[test]
fn signing_out_everywhere_else_without_the_password_leaves_api_tokens() {
    let h = harness();
    h.register("alice", "correct horse");
    let older = h.login("alice", "correct horse").unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    let (_, secret) = h
        .auth
        .sessions
        .create_api_token(
            RequestOrigin::default(),
            &me,
            new_token("script", &["tasks:read"], None),
            Some("correct horse"),
        )
        .unwrap();
    // A token newer than this sign-in asks for no password: it is no
    // sign-in; the older login ends, the token stays.
    let ended = h.auth.sessions.end_other_sessions(None, &me, None).unwrap();
    assert_eq!(ended, 1);
    assert!(refused(h.auth.sessions.authenticate(&older.access_token)));
    assert!(h.auth.sessions.authenticate(secret.expose()).is_ok());
}
