//! Sessions: each login is one; its user lists them and ends one or every
//! other, and an ended session's tokens are refused, on every instance
//! within a second.

use std::sync::Arc;
use std::time::Duration;

use todo_core::testing::TableTokens;
use todo_core::{
    AccessGate, AccessTokenSigner, Clock, Credentials, Error, MAX_LIVE_SESSIONS, SessionKind,
    Timestamp, TokenPolicy, TokenRejection,
};

use crate::auth::harness;

fn refused(result: Result<todo_core::Principal, Error>) -> bool {
    matches!(result, Err(Error::InvalidToken(TokenRejection::Revoked)))
}

const PHONE: Option<std::net::IpAddr> = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
    198, 51, 100, 7,
)));

#[test]
fn each_login_is_a_session_listed_with_its_device_and_address() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    let laptop = h.login("alice", "correct horse").unwrap();
    h.clock.advance(Duration::from_secs(5));
    let credentials = Credentials::offered("alice", "correct horse")
        .with_user_agent(Some("Phone\u{7}Browser/1.0"));
    let phone = h.auth.sessions.login(PHONE, &credentials).unwrap();
    let me = h.auth.sessions.authenticate(&phone.access_token).unwrap();
    assert_eq!(me.user_id, alice.id);

    let sessions = h.auth.sessions.list_sessions(&me).unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    // Newest first: the phone's, which the caller's token names.
    assert_eq!(Some(sessions[0].id), me.session);
    assert_eq!(sessions[0].kind, SessionKind::Login);
    assert_eq!(
        sessions[0].user_agent.as_ref().map(|ua| ua.as_str()),
        Some("Phone Browser/1.0")
    );
    assert_eq!(sessions[0].address, PHONE);
    assert_eq!(sessions[0].created_at, h.clock.now());
    let laptop_session = h
        .auth
        .sessions
        .authenticate(&laptop.access_token)
        .unwrap()
        .session;
    assert_eq!(Some(sessions[1].id), laptop_session);
    assert_eq!(sessions[1].user_agent, None);

    // A refresh is a use: it moves the session's last use, not its start.
    h.clock.advance(Duration::from_secs(60));
    h.auth
        .sessions
        .refresh(None, &laptop.refresh_token)
        .unwrap();
    let sessions = h.auth.sessions.list_sessions(&me).unwrap();
    let laptop_row = sessions
        .iter()
        .find(|s| Some(s.id) == laptop_session)
        .unwrap();
    assert_eq!(laptop_row.last_used_at, h.clock.now());
    assert!(laptop_row.created_at < laptop_row.last_used_at);
}

#[test]
fn an_ended_session_refuses_its_tokens_and_leaves_the_others() {
    let h = harness();
    h.register("alice", "correct horse");
    let laptop = h.login("alice", "correct horse").unwrap();
    h.clock.advance(Duration::from_millis(1));
    let phone = h.login("alice", "correct horse").unwrap();
    let me = h.auth.sessions.authenticate(&phone.access_token).unwrap();
    let stolen = h.auth.sessions.authenticate(&laptop.access_token).unwrap();

    // The older (a thief's, say) cannot end the newer without the password.
    let newer = me.session.unwrap();
    assert!(matches!(
        h.auth.sessions.end_session(None, &stolen, newer, None),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        h.auth
            .sessions
            .end_session(None, &stolen, newer, Some("wrong horse")),
        Err(Error::WrongPassword)
    ));
    assert!(h.auth.sessions.authenticate(&phone.access_token).is_ok());
    // The newer ends the older as API.md says: nothing more.
    let other = stolen.session.unwrap();
    h.auth.sessions.end_session(None, &me, other, None).unwrap();
    assert!(refused(h.auth.sessions.authenticate(&laptop.access_token)));
    assert!(matches!(
        h.auth.sessions.refresh(None, &laptop.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    // The caller's own session goes on, and no longer lists the other.
    assert!(h.auth.sessions.authenticate(&phone.access_token).is_ok());
    let left = h.auth.sessions.list_sessions(&me).unwrap();
    assert_eq!(
        left.iter().map(|s| s.id).collect::<Vec<_>>(),
        [me.session.unwrap()]
    );
    // Ending it again: already ended, not found.
    assert!(matches!(
        h.auth
            .sessions
            .end_session(None, &me, other, Some("correct horse")),
        Err(Error::NotFound)
    ));
}

#[test]
fn another_users_session_is_not_found_and_goes_on() {
    let h = harness();
    h.register("alice", "correct horse");
    h.register("mallory", "mallory's pass");
    let alice = h.login("alice", "correct horse").unwrap();
    let theirs = h.auth.sessions.authenticate(&alice.access_token).unwrap();
    let (mallory, _) = h.principal("mallory", "mallory's pass");

    assert!(matches!(
        h.auth.sessions.end_session(
            None,
            &mallory,
            theirs.session.unwrap(),
            Some("mallory's pass")
        ),
        Err(Error::NotFound)
    ));
    assert!(h.auth.sessions.authenticate(&alice.access_token).is_ok());
    assert!(h.auth.sessions.refresh(None, &alice.refresh_token).is_ok());
    assert!(
        h.auth
            .sessions
            .list_sessions(&mallory)
            .unwrap()
            .iter()
            .all(|s| Some(s.id) != theirs.session)
    );
}

#[test]
fn ending_every_other_session_keeps_the_callers() {
    let h = harness();
    h.register("alice", "correct horse");
    h.register("bob", "bob's password");
    let others: Vec<_> = (0..3)
        .map(|_| h.login("alice", "correct horse").unwrap())
        .collect();
    let bob = h.login("bob", "bob's password").unwrap();
    let (me, mine) = h.principal("alice", "correct horse");

    assert_eq!(
        h.auth
            .sessions
            .end_other_sessions(None, &me, Some("correct horse"))
            .unwrap(),
        3
    );
    for pair in &others {
        assert!(refused(h.auth.sessions.authenticate(&pair.access_token)));
    }
    assert!(h.auth.sessions.authenticate(&mine.access_token).is_ok());
    assert!(h.auth.sessions.refresh(None, &mine.refresh_token).is_ok());
    // Someone else's sessions are not the caller's to end.
    assert!(h.auth.sessions.authenticate(&bob.access_token).is_ok());
    assert_eq!(h.auth.sessions.list_sessions(&me).unwrap().len(), 1);
}

#[test]
fn logout_and_a_reused_refresh_token_end_the_session_and_its_access_tokens() {
    let h = harness();
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    h.auth.sessions.logout(None, &pair.refresh_token).unwrap();
    assert!(refused(h.auth.sessions.authenticate(&pair.access_token)));

    // A thief exchanged the refresh token first; the owner's replay of it
    // ends the session: the thief's fresh access token goes with it.
    let pair = h.login("alice", "correct horse").unwrap();
    let thief = h.auth.sessions.refresh(None, &pair.refresh_token).unwrap();
    assert!(h.auth.sessions.authenticate(&thief.access_token).is_ok());
    h.clock
        .advance(TokenPolicy::default().refresh_reuse_grace + Duration::from_secs(1));
    assert!(h.auth.sessions.refresh(None, &pair.refresh_token).is_err());
    assert!(refused(h.auth.sessions.authenticate(&thief.access_token)));
}

#[test]
fn another_instance_refuses_an_ended_sessions_tokens_within_a_second() {
    let h = harness();
    h.register("alice", "correct horse");
    let laptop = h.login("alice", "correct horse").unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    let other = AccessGate::new(
        Arc::new(TableTokens::new("todo-auth", "todo")),
        h.store.clone(),
        h.clock.clone(),
    );
    let claims = h.auth.gate().verify(&laptop.access_token).unwrap();
    assert!(other.admit(&claims).is_ok());

    h.auth
        .sessions
        .end_session(None, &me, claims.session.unwrap(), Some("correct horse"))
        .unwrap();
    h.clock.advance(Duration::from_millis(900));
    assert!(other.admit_remembered(&claims).is_some_and(|d| d.is_ok()));
    h.clock.advance(Duration::from_millis(100));
    assert!(other.admit_remembered(&claims).is_none());
    assert!(refused(other.admit(&claims)));

    // It is remembered as ended as long as a token of it can live.
    h.clock.advance(TokenPolicy::MAX_ACCESS_TTL);
    assert!(refused(other.admit(&claims)));
}

#[test]
fn a_token_naming_a_session_may_not_claim_a_longer_life_than_the_policy_allows() {
    let h = harness();
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    let mut claims = h.auth.gate().verify(&pair.access_token).unwrap();
    assert!(h.auth.gate().admit(&claims).is_ok());
    let longest = i64::try_from(TokenPolicy::MAX_ACCESS_TTL.as_secs()).unwrap();
    claims.expires_at = claims.issued_at + longest + 1;
    let signer = TableTokens::new("todo-auth", "todo");
    let token = signer.sign(&claims).unwrap();
    let gate = AccessGate::new(Arc::new(signer), h.store.clone(), h.clock.clone());
    assert!(refused(gate.authorize(&token)));
}

#[test]
fn a_policy_cannot_issue_access_tokens_longer_than_an_hour() {
    let h = crate::auth::harness_with_policy(TokenPolicy {
        access_ttl: Duration::from_secs(2 * 3600),
        ..TokenPolicy::default()
    });
    assert_eq!(
        h.auth.sessions.policy().access_ttl,
        TokenPolicy::MAX_ACCESS_TTL
    );
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    assert_eq!(pair.expires_in, TokenPolicy::MAX_ACCESS_TTL.as_secs());
    assert!(h.auth.sessions.authenticate(&pair.access_token).is_ok());
}

#[test]
fn a_user_keeps_at_most_the_cap_of_live_sessions_the_oldest_ending() {
    let h = harness();
    h.register("alice", "correct horse");
    let login = || {
        h.clock.advance(Duration::from_millis(1));
        h.login("alice", "correct horse").unwrap()
    };
    let oldest = login();
    let second = login();
    for _ in 2..MAX_LIVE_SESSIONS {
        login();
    }
    h.clock.advance(Duration::from_millis(1));
    let (me, newest) = h.principal("alice", "correct horse");
    assert_eq!(
        h.auth.sessions.list_sessions(&me).unwrap().len(),
        MAX_LIVE_SESSIONS
    );
    assert!(refused(h.auth.sessions.authenticate(&oldest.access_token)));
    assert!(
        h.auth
            .sessions
            .refresh(None, &oldest.refresh_token)
            .is_err()
    );
    assert!(h.auth.sessions.authenticate(&second.access_token).is_ok());
    assert!(h.auth.sessions.authenticate(&newest.access_token).is_ok());
}

#[test]
fn a_token_naming_no_session_cannot_end_every_other() {
    let h = harness();
    h.register("alice", "correct horse");
    let other = h.login("alice", "correct horse").unwrap();
    let (me, mine) = h.principal("alice", "correct horse");
    let unnamed = todo_core::Principal {
        session: None,
        ..me.clone()
    };
    assert!(matches!(
        h.auth
            .sessions
            .end_other_sessions(None, &unnamed, Some("correct horse")),
        Err(Error::Conflict(_))
    ));
    for pair in [&other, &mine] {
        assert!(h.auth.sessions.authenticate(&pair.access_token).is_ok());
    }
    assert_eq!(h.auth.sessions.list_sessions(&me).unwrap().len(), 2);
}

#[test]
fn a_signed_out_devices_refresh_is_refused_without_a_theft_alarm() {
    let h = harness();
    h.register("alice", "correct horse");
    let laptop = h.login("alice", "correct horse").unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    let session = h
        .auth
        .gate()
        .verify(&laptop.access_token)
        .unwrap()
        .session
        .unwrap();
    h.auth
        .sessions
        .end_session(None, &me, session, Some("correct horse"))
        .unwrap();
    assert!(matches!(
        h.auth.sessions.refresh(None, &laptop.refresh_token),
        Err(Error::InvalidRefreshToken)
    ));
    let alarms = h.audit.events();
    assert!(
        !alarms.iter().any(|e| e.starts_with("RefreshTokenReused")),
        "{alarms:?}"
    );
    assert!(alarms.iter().any(|e| e.starts_with("SessionsEnded")));
}

#[test]
fn an_ended_session_outlives_a_short_refresh_lifetime_in_the_gates_memory() {
    let h = crate::auth::harness_with_policy(TokenPolicy {
        refresh_ttl: Duration::from_secs(600),
        ..TokenPolicy::default()
    });
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    let claims = h.auth.gate().verify(&pair.access_token).unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    h.auth
        .sessions
        .end_session(None, &me, claims.session.unwrap(), Some("correct horse"))
        .unwrap();
    let other = AccessGate::new(
        Arc::new(TableTokens::new("todo-auth", "todo")),
        h.store.clone(),
        h.clock.clone(),
    );
    // Past the refresh lifetime, just within the gate's memory: the purge
    // keeps it, and a gate reading afresh still refuses its tokens.
    h.clock
        .advance(AccessGate::ENDED_SESSIONS_REMEMBERED - Duration::from_secs(1));
    h.auth.sessions.purge_refresh_tokens().unwrap();
    assert!(refused(other.admit(&claims)));
    h.clock.advance(Duration::from_secs(2));
    h.auth.sessions.purge_refresh_tokens().unwrap();
    let standing = todo_core::UserStore::find_standing(&*h.store, me.user_id, Timestamp::MIN);
    assert!(standing.unwrap().unwrap().1.ids().is_empty());
}

#[test]
fn a_password_change_ends_every_session() {
    let h = harness();
    h.register("alice", "correct horse");
    h.login("alice", "correct horse").unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    h.auth
        .account
        .change_password(None, &me, "correct horse", "battery staple")
        .unwrap();
    let (me, _) = h.principal("alice", "battery staple");
    let live = h.auth.sessions.list_sessions(&me).unwrap();
    assert_eq!(
        live.iter().map(|s| s.id).collect::<Vec<_>>(),
        [me.session.unwrap()]
    );
}

#[test]
fn purging_drops_sessions_ended_long_ago_and_keeps_recent_ones() {
    let h = harness();
    h.register("alice", "correct horse");
    let pair = h.login("alice", "correct horse").unwrap();
    let claims = h.auth.gate().verify(&pair.access_token).unwrap();
    let (me, _) = h.principal("alice", "correct horse");
    let ended = claims.session.unwrap();
    h.auth
        .sessions
        .end_session(None, &me, ended, Some("correct horse"))
        .unwrap();
    let ended_since = |h: &crate::auth::Harness| {
        let standing = todo_core::UserStore::find_standing(&*h.store, me.user_id, Timestamp::MIN);
        standing.unwrap().unwrap().1.ids().to_vec()
    };
    h.clock.advance(Duration::from_secs(60));
    h.auth.sessions.purge_refresh_tokens().unwrap();
    assert_eq!(ended_since(&h), [ended]);
    h.clock.advance(TokenPolicy::default().refresh_ttl);
    h.auth.sessions.purge_refresh_tokens().unwrap();
    assert!(ended_since(&h).is_empty());
}

#[test]
fn an_administrator_sees_and_ends_a_users_sessions_and_is_audited() {
    let h = harness();
    let alice = h.register("alice", "correct horse");
    h.register("mallory", "mallory's pass");
    let laptop = h.login("alice", "correct horse").unwrap();
    let phone = h.login("alice", "correct horse").unwrap();
    let admin = h.admin();
    let (mallory, _) = h.principal("mallory", "mallory's pass");

    let seen = h.auth.admin.user_sessions(&admin, alice.id).unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.user_id == alice.id));
    // Nobody else may look or end, whatever they name.
    assert!(matches!(
        h.auth.admin.user_sessions(&mallory, alice.id),
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        h.auth.admin.end_user_sessions(&mallory, alice.id),
        Err(Error::Forbidden)
    ));
    assert!(h.auth.sessions.authenticate(&laptop.access_token).is_ok());
    let nobody = todo_core::UserRef::parse("01890a5d-ac96-774b-bcce-b302099a8057");
    assert!(matches!(
        h.auth.admin.end_user_sessions(&admin, nobody),
        Err(Error::NotFound)
    ));

    assert_eq!(h.auth.admin.end_user_sessions(&admin, alice.id).unwrap(), 2);
    for pair in [&laptop, &phone] {
        assert!(refused(h.auth.sessions.authenticate(&pair.access_token)));
        assert!(h.auth.sessions.refresh(None, &pair.refresh_token).is_err());
    }
    assert!(
        h.auth
            .admin
            .user_sessions(&admin, alice.id)
            .unwrap()
            .is_empty()
    );
    // The account stays enabled: alice signs in again.
    assert!(h.login("alice", "correct horse").is_ok());
    let actions: Vec<String> = h
        .audit
        .events()
        .iter()
        .filter(|e| e.contains("AdminAction"))
        .cloned()
        .collect();
    assert!(
        actions.iter().any(|e| e.contains("list_sessions"))
            && actions.iter().any(|e| e.contains("end_sessions")),
        "{actions:?}"
    );
}

#[test]
fn ones_own_session_ends_without_the_password_and_a_newer_one_with_it() {
    let h = harness();
    h.register("alice", "correct horse");
    let (older, older_pair) = h.principal("alice", "correct horse");
    h.clock.advance(Duration::from_millis(1));
    let (me, mine) = h.principal("alice", "correct horse");
    // From the older: a newer lives, so every other takes the password.
    assert!(matches!(
        h.auth
            .sessions
            .end_other_sessions(None, &older, Some("wrong horse")),
        Err(Error::WrongPassword)
    ));
    assert!(matches!(
        h.auth.sessions.end_other_sessions(None, &older, None),
        Err(Error::Invalid(_))
    ));
    assert!(h.auth.sessions.authenticate(&mine.access_token).is_ok());
    // From the newest: every other, with nothing more.
    assert_eq!(
        h.auth.sessions.end_other_sessions(None, &me, None).unwrap(),
        1
    );
    assert!(refused(
        h.auth.sessions.authenticate(&older_pair.access_token)
    ));
    // A logout from the sessions screen: no password needed.
    h.auth
        .sessions
        .end_session(None, &me, me.session.unwrap(), None)
        .unwrap();
    assert!(refused(h.auth.sessions.authenticate(&mine.access_token)));
}

#[test]
fn password_confirmations_are_throttled_per_session() {
    use todo_core::ThrottleKey;
    let user = todo_core::UserId::from_uuid(uuid::Uuid::from_u128(1));
    let session = todo_core::SessionId::from_uuid(uuid::Uuid::from_u128(2));
    let other = todo_core::SessionId::from_uuid(uuid::Uuid::from_u128(3));
    let keys = [
        ThrottleKey::SignedIn(user, Some(session)).to_key(),
        ThrottleKey::SignedIn(user, Some(other)).to_key(),
        ThrottleKey::SignedIn(user, None).to_key(),
    ];
    assert!(
        keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2],
        "{keys:?}"
    );
}

#[test]
fn a_password_is_weighed_only_for_a_live_session_of_the_callers() {
    let h = harness();
    h.register("alice", "correct horse");
    let (me, _) = h.principal("alice", "correct horse");
    let verifications = h.hasher.verifications();
    let nobody = todo_core::SessionId::from_uuid(uuid::Uuid::from_u128(u128::MAX));
    assert!(matches!(
        h.auth
            .sessions
            .end_session(None, &me, nobody, Some("correct horse")),
        Err(Error::NotFound)
    ));
    assert_eq!(
        h.hasher.verifications(),
        verifications,
        "no hash for nothing"
    );
}
