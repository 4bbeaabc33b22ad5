//! Password resets by an administrator's link (#17): the link works once,
//! ends every session of the user on every instance, and a used, unknown
//! or malformed link gets one answer.

use http::Method;
use serde_json::json;

use crate::harness::{Deployment, Options, on_every_deployment, spawn, within_revocation_window};

on_every_deployment!(an_administrators_reset_link_sets_a_new_password_once_and_ends_every_session);

async fn an_administrators_reset_link_sets_a_new_password_once_and_ends_every_session(
    deployment: Deployment,
) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (alice, access, _) = sys.user("alice").await;
    let (_, admin) = sys.admin().await;
    let auth = &sys.auth.client;
    let link = |token: &str| {
        let path = format!("/v1/users/{alice}/password-reset");
        let token = token.to_owned();
        async move {
            auth.json(Method::POST, &path, Some(&token), None)
                .await
                .unwrap()
        }
    };
    assert_eq!(link(&access).await.status, 403, "not an administrator");
    let missing = auth
        .json(
            Method::POST,
            "/v1/users/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/password-reset",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let made = link(&admin).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let made = made.json().unwrap();
    let url = made["reset_url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let (_, token) = url.split_once("/#reset=").unwrap();
    assert!(made["expires_at"].is_string());
    // Nothing ends until the link is used.
    let me = |token: String| async move {
        auth.json(Method::GET, "/v1/users/me", Some(&token), None)
            .await
            .unwrap()
    };
    assert_eq!(me(access.clone()).await.status, 200);

    let confirm = |token: &str, password: &str| {
        let body = json!({"token": token, "new_password": password});
        async move {
            auth.json(
                Method::POST,
                "/v1/auth/password-reset/confirm",
                None,
                Some(&body),
            )
            .await
            .unwrap()
        }
    };
    let weak = confirm(token, "short").await;
    assert_eq!(weak.status, 400, "{:?}", weak.body);
    assert_eq!(weak.json().unwrap()["errors"][0]["field"], "new_password");
    let done = confirm(token, "a brand new horse").await;
    assert_eq!(done.status, 204, "{:?}", done.body);
    let refused = within_revocation_window(401, || me(access.clone())).await;
    assert_eq!(refused.status, 401, "every session of alice ends");
    let old = sys
        .post(
            auth,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(old.status, 401);
    let (fresh, _) = sys.login("alice", "a brand new horse").await;
    assert_eq!(me(fresh).await.status, 200);

    // Used, made up, or not a token at all: one answer.
    for dead in [token, &"A".repeat(43), "x"] {
        let reply = confirm(dead, "another brand new horse").await;
        assert_eq!(reply.status, 400, "{dead}: {:?}", reply.body);
        assert_eq!(reply.json().unwrap()["errors"][0]["field"], "token");
    }
}
