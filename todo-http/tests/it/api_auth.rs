//! Every row of the auth-server contract, with its error statuses.

use http::Method;
use serde_json::json;

use crate::harness::{
    Deployment, Options, REVOCATION_WINDOW, on_every_deployment, spawn, within_revocation_window,
};

on_every_deployment!(
    registration_creates_users_and_refuses_bad_or_taken_names,
    login_answers_unknown_wrong_and_disabled_alike,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_and_validate_checks_the_account,
    the_jwks_names_the_signing_key,
    users_read_and_change_their_own_account,
    password_change_revokes_every_session,
    admins_list_get_patch_and_delete_users,
    non_admins_get_nothing_from_admin_endpoints,
    sessions_are_listed_and_ended_and_their_tokens_refused_everywhere,
    admins_see_and_end_a_users_sessions,
    an_account_its_owner_deletes_leaves_nothing_of_its_own,
    the_account_export_holds_everything_it_owns_and_no_secret,
);

async fn registration_creates_users_and_refuses_bad_or_taken_names(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let client = &sys.auth.client;
    let reply = sys
        .post(
            client,
            "/v1/auth/register",
            None,
            json!({"username": "Alice", "password": "correct horse", "email": "a@example.org"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let user = reply.json().unwrap();
    assert_eq!(user["username"], "alice");
    assert_eq!(user["role"], "user");
    assert_eq!(user["disabled"], false);
    assert_eq!(user["email"], "a@example.org");
    let fields: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "created_at",
            "disabled",
            "email",
            "email_verified",
            "id",
            "role",
            "updated_at",
            "username"
        ],
        "never a password or hash"
    );

    let taken = sys
        .post(
            client,
            "/v1/auth/register",
            None,
            json!({"username": "ALICE", "password": "other password"}),
        )
        .await;
    assert_eq!(taken.status, 409);
    assert_eq!(taken.headers["content-type"], "application/problem+json");

    let invalid = sys
        .post(
            client,
            "/v1/auth/register",
            None,
            json!({"username": "a!", "password": "short"}),
        )
        .await;
    assert_eq!(invalid.status, 400);
    let problem = invalid.json().unwrap();
    assert_eq!(problem["status"], 400);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "password"]);

    let same = sys
        .post(
            client,
            "/v1/auth/register",
            None,
            json!({"username": "bob_smith", "password": "BOB_SMITH"}),
        )
        .await;
    assert_eq!(same.status, 400, "a password may not equal the username");
    let unknown = sys
        .post(
            client,
            "/v1/auth/register",
            None,
            json!({"username": "carol", "password": "correct horse", "role": "admin"}),
        )
        .await;
    assert_eq!(
        unknown.status, 400,
        "unknown fields are refused, not ignored"
    );
    assert_eq!(unknown.json().unwrap()["errors"][0]["field"], "role");
    let text = client
        .send(
            Method::POST,
            "/v1/auth/register",
            &[("content-type", "text/plain")],
            Some(b"username=x".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(text.status, 415);
}

async fn login_answers_unknown_wrong_and_disabled_alike(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, admin) = sys.admin().await;
    sys.register("alice", "correct horse").await;
    let bob = sys.register("bob", "battery staple").await;
    let path = format!("/v1/users/{}", bob["id"].as_str().unwrap());
    let disabled = sys
        .auth
        .client
        .json(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(&json!({"disabled": true})),
        )
        .await
        .unwrap();
    assert_eq!(disabled.status, 200);

    let ok = sys
        .post(
            &sys.auth.client,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(ok.status, 200);
    let pair = ok.json().unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 300);
    assert_eq!(pair["refresh_token"].as_str().unwrap().len(), 43);

    let mut bodies = Vec::new();
    for (username, password) in [
        ("nobody", "correct horse"),
        ("alice", "wrong horse"),
        ("bob", "battery staple"),
    ] {
        let reply = sys
            .post(
                &sys.auth.client,
                "/v1/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(reply.status, 401, "{username}");
        bodies.push(reply.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "byte-identical: {bodies:?}"
    );
}

async fn refresh_rotates_and_reuse_revokes_the_family(deployment: Deployment) {
    // No reuse grace: a replay is reuse at once (the grace has its own test).
    let options = Options {
        refresh_reuse_grace: std::time::Duration::ZERO,
        ..Options::default()
    };
    let Some(sys) = spawn(deployment, options).await else {
        return;
    };
    let (_, _, first) = sys.user("alice").await;
    let client = &sys.auth.client;
    let rotated = sys
        .post(
            client,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(rotated.status, 200);
    let second = rotated.json().unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, first);
    let reused = sys
        .post(
            client,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(reused.status, 401);
    let revoked = sys
        .post(
            client,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": second}),
        )
        .await;
    assert_eq!(revoked.status, 401, "reuse revoked the whole family");
    for junk in ["", "short", &"x".repeat(5000)] {
        let reply = sys
            .post(
                client,
                "/v1/auth/refresh",
                None,
                json!({"refresh_token": junk}),
            )
            .await;
        assert!(
            reply.status == 401 || reply.status == 413,
            "{}",
            reply.status
        );
    }
    let missing = sys.post(client, "/v1/auth/refresh", None, json!({})).await;
    // Behind the gateway auth-server also serves the page, whose session is
    // a cookie: no token and no cookie is no session (401), as in `todo`.
    let expected = if sys.behind_gateway() { 401 } else { 400 };
    assert_eq!(missing.status, expected);
}

async fn logout_revokes_and_validate_checks_the_account(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, admin) = sys.admin().await;
    let (id, access, refresh) = sys.user("alice").await;
    let client = &sys.auth.client;

    let valid = client
        .json(Method::GET, "/v1/auth/validate", Some(&access), None)
        .await
        .unwrap();
    assert_eq!(valid.status, 200);
    let claims = valid.json().unwrap();
    assert_eq!(
        (
            claims["sub"].as_str().unwrap(),
            claims["username"].as_str().unwrap(),
            claims["role"].as_str().unwrap()
        ),
        (id.as_str(), "alice", "user")
    );
    assert!(claims["exp"].as_i64().unwrap() > 0);

    let missing = client
        .json(Method::GET, "/v1/auth/validate", None, None)
        .await
        .unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let bad = client
        .json(Method::GET, "/v1/auth/validate", Some("not.a.token"), None)
        .await
        .unwrap();
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );

    assert_eq!(
        sys.post(
            client,
            "/v1/auth/logout",
            None,
            json!({"refresh_token": refresh})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        sys.post(
            client,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh})
        )
        .await
        .status,
        401
    );
    assert_eq!(
        sys.post(
            client,
            "/v1/auth/logout",
            None,
            json!({"refresh_token": refresh})
        )
        .await
        .status,
        204,
        "idempotent"
    );
    assert_eq!(
        sys.post(
            client,
            "/v1/auth/logout",
            None,
            json!({"refresh_token": "junk"})
        )
        .await
        .status,
        204
    );

    let path = format!("/v1/users/{id}");
    assert_eq!(
        client
            .json(
                Method::PATCH,
                &path,
                Some(&admin),
                Some(&json!({"disabled": true}))
            )
            .await
            .unwrap()
            .status,
        200
    );
    // Behind the gateway another instance may answer from a reading up to
    // a second old.
    let disabled = within_revocation_window(401, || async {
        client
            .json(Method::GET, "/v1/auth/validate", Some(&access), None)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        disabled.status, 401,
        "a disabled account's token no longer validates"
    );
    assert_eq!(
        disabled.body, bad.body,
        "the same body whichever check failed"
    );
}

async fn the_jwks_names_the_signing_key(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, access, _) = sys.user("alice").await;
    let reply = sys
        .auth
        .client
        .json(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let jwks = reply.json().unwrap();
    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [header.kid.unwrap().as_str()]);
}

async fn users_read_and_change_their_own_account(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (id, access, _) = sys.user("alice").await;
    let client = &sys.auth.client;
    let me = client
        .json(Method::GET, "/v1/users/me", Some(&access), None)
        .await
        .unwrap();
    assert_eq!(me.status, 200);
    assert_eq!(me.json().unwrap()["id"], id.as_str());
    let set = client
        .json(
            Method::PATCH,
            "/v1/users/me",
            Some(&access),
            Some(&json!({"email": "alice@example.org", "current_password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(set.json().unwrap()["email"], "alice@example.org");
    let bad = client
        .json(
            Method::PATCH,
            "/v1/users/me",
            Some(&access),
            Some(&json!({"email": "nope"})),
        )
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json().unwrap()["errors"][0]["field"], "email");
    let cleared = client
        .json(
            Method::PATCH,
            "/v1/users/me",
            Some(&access),
            Some(&json!({"email": null, "current_password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(cleared.json().unwrap()["email"], serde_json::Value::Null);
    let role = client
        .json(
            Method::PATCH,
            "/v1/users/me",
            Some(&access),
            Some(&json!({"role": "admin"})),
        )
        .await
        .unwrap();
    assert_eq!(role.status, 400, "a user cannot raise their own role");
    assert_eq!(
        client
            .json(Method::GET, "/v1/users/me", None, None)
            .await
            .unwrap()
            .status,
        401
    );
}

async fn password_change_revokes_every_session(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, access, refresh) = sys.user("alice").await;
    let client = &sys.auth.client;
    let wrong = sys
        .post(
            client,
            "/v1/users/me/password",
            Some(&access),
            json!({"current_password": "wrong horse", "new_password": "new password 1"}),
        )
        .await;
    assert_eq!(wrong.status, 403);
    let weak = sys
        .post(
            client,
            "/v1/users/me/password",
            Some(&access),
            json!({"current_password": "correct horse", "new_password": "short"}),
        )
        .await;
    assert_eq!(weak.status, 400);
    assert_eq!(weak.json().unwrap()["errors"][0]["field"], "new_password");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // tokens are cut at whole seconds
    let changed = sys
        .post(
            client,
            "/v1/users/me/password",
            Some(&access),
            json!({"current_password": "correct horse", "new_password": "new password 1"}),
        )
        .await;
    assert_eq!(changed.status, 204);
    assert_eq!(
        sys.post(
            client,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh})
        )
        .await
        .status,
        401
    );
    assert_eq!(
        client
            .json(Method::GET, "/v1/auth/validate", Some(&access), None)
            .await
            .unwrap()
            .status,
        401
    );
    let old = sys
        .post(
            client,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(old.status, 401);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sys.login("alice", "new password 1").await;
}

async fn admins_list_get_patch_and_delete_users(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (admin_id, admin) = sys.admin().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            sys.register(&format!("user{i}"), "correct horse").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let client = &sys.auth.client;
    let mut seen = Vec::new();
    let mut path = "/v1/users?limit=2".to_owned();
    loop {
        let page = client
            .json(Method::GET, &path, Some(&admin), None)
            .await
            .unwrap();
        assert_eq!(page.status, 200);
        let page = page.json().unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/users?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["root", "user0", "user1", "user2", "user3"]);
    for bad in [
        "/v1/users?limit=0",
        "/v1/users?limit=101",
        "/v1/users?cursor=zzz",
        "/v1/users?sort=name",
    ] {
        assert_eq!(
            client
                .json(Method::GET, bad, Some(&admin), None)
                .await
                .unwrap()
                .status,
            400,
            "{bad}"
        );
    }

    let target = format!("/v1/users/{}", ids[0]);
    let got = client
        .json(Method::GET, &target, Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(got.json().unwrap()["username"], "user0");
    for missing in [
        "/v1/users/01890a5d-ac96-774b-bcce-b302099a8057",
        "/v1/users/not-a-uuid",
    ] {
        assert_eq!(
            client
                .json(Method::GET, missing, Some(&admin), None)
                .await
                .unwrap()
                .status,
            404,
            "{missing}"
        );
    }
    let promoted = client
        .json(
            Method::PATCH,
            &target,
            Some(&admin),
            Some(&json!({"role": "admin", "email": "u0@example.org"})),
        )
        .await
        .unwrap();
    assert_eq!(promoted.json().unwrap()["role"], "admin");
    let bad_role = client
        .json(
            Method::PATCH,
            &target,
            Some(&admin),
            Some(&json!({"role": "root"})),
        )
        .await
        .unwrap();
    assert_eq!(bad_role.status, 400);
    let me = format!("/v1/users/{admin_id}");
    assert_eq!(
        client
            .json(
                Method::PATCH,
                &me,
                Some(&admin),
                Some(&json!({"disabled": true}))
            )
            .await
            .unwrap()
            .status,
        409
    );
    assert_eq!(
        client
            .json(Method::DELETE, &me, Some(&admin), None)
            .await
            .unwrap()
            .status,
        409
    );

    // Deleting a user takes their tasks.
    let (access, _) = sys.login("user1", "correct horse").await;
    let task = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&access),
            json!({"title": "mine"}),
        )
        .await;
    let task_path = task.headers["location"].to_str().unwrap().to_owned();
    let victim = format!("/v1/users/{}", ids[1]);
    assert_eq!(
        client
            .json(Method::DELETE, &victim, Some(&admin), None)
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        client
            .json(Method::DELETE, &victim, Some(&admin), None)
            .await
            .unwrap()
            .status,
        404
    );
    // The deleted user's access token is still signed and unexpired, but
    // its account is gone: 401 on every server, within the revocation window.
    let reply = within_revocation_window(401, || async {
        sys.tasks
            .client
            .json(Method::GET, &task_path, Some(&access), None)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(reply.status, 401, "a deleted user's token is refused");
}

async fn non_admins_get_nothing_from_admin_endpoints(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (admin_id, _) = sys.admin().await;
    let (id, access, _) = sys.user("alice").await;
    let client = &sys.auth.client;
    let mine = format!("/v1/users/{id}");
    let theirs = format!("/v1/users/{admin_id}");
    for (method, path, body) in [
        (Method::GET, "/v1/users", None),
        (Method::GET, theirs.as_str(), None),
        (Method::GET, mine.as_str(), None),
        (Method::PATCH, mine.as_str(), Some(json!({"role": "admin"}))),
        (
            Method::PATCH,
            theirs.as_str(),
            Some(json!({"disabled": true})),
        ),
        (Method::DELETE, theirs.as_str(), None),
        (Method::GET, "/v1/users/not-a-uuid", None),
    ] {
        let reply = client
            .json(method.clone(), path, Some(&access), body.as_ref())
            .await
            .unwrap();
        assert_eq!(reply.status, 403, "{method} {path}");
    }
    // Refused before anything else is read: a malformed body, a body of
    // another type, an absurd query are a non-admin's 403 all the same.
    let bearer = format!("Bearer {access}");
    for (method, path, content_type, body) in [
        (Method::PATCH, theirs.as_str(), "application/json", "{bad"),
        (
            Method::PATCH,
            theirs.as_str(),
            "application/json",
            r#"{"zzz": 1}"#,
        ),
        (Method::PATCH, theirs.as_str(), "text/plain", "x"),
        (Method::GET, "/v1/users?limit=abc", "application/json", ""),
    ] {
        let reply = client
            .send(
                method.clone(),
                path,
                &[("authorization", &bearer), ("content-type", content_type)],
                Some(body.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 403, "{method} {path} {body}");
    }
    let me = client
        .json(Method::GET, "/v1/users/me", Some(&access), None)
        .await
        .unwrap();
    assert_eq!(
        me.json().unwrap()["role"],
        "user",
        "no way to raise one's own role"
    );
}

/// Logs in with a `User-Agent`; returns (access token, refresh token).
async fn login_as(sys: &crate::harness::System, user_agent: &str) -> (String, String) {
    let body = json!({"username": "alice", "password": "correct horse"});
    let reply = sys
        .auth
        .client
        .send(
            Method::POST,
            "/v1/auth/login",
            &[
                ("content-type", "application/json"),
                ("user-agent", user_agent),
            ],
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let pair = reply.json().unwrap();
    (
        pair["access_token"].as_str().unwrap().to_owned(),
        pair["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn sessions_are_listed_and_ended_and_their_tokens_refused_everywhere(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    sys.register("alice", "correct horse").await;
    let (_, mallory_access, _) = sys.user("mallory").await;
    let (laptop, laptop_refresh) = login_as(&sys, "Laptop Browser/1").await;
    let (tablet, _) = login_as(&sys, "Tablet Browser/2").await;
    let (phone, _) = login_as(&sys, "Phone\tBrowser/3").await;
    let auth = &sys.auth.client;
    let tasks = &sys.tasks.client;
    let get = |path: &'static str, token: String| async move {
        let client = if path.starts_with("/v1/tasks") {
            tasks
        } else {
            auth
        };
        client
            .json(Method::GET, path, Some(&token), None)
            .await
            .unwrap()
    };

    let listed = get("/v1/sessions", phone.clone()).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let items = listed.json().unwrap()["items"].as_array().unwrap().clone();
    assert_eq!(
        items.len(),
        3,
        "alice's three, none of mallory's: {items:?}"
    );
    // Newest first; the caller's own is marked.
    let agents: Vec<&str> = items
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        ["Phone Browser/3", "Tablet Browser/2", "Laptop Browser/1"]
    );
    let current: Vec<bool> = items
        .iter()
        .map(|s| s["current"].as_bool().unwrap())
        .collect();
    assert_eq!(current, [true, false, false]);
    let fields: Vec<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "address",
            "created_at",
            "current",
            "id",
            "kind",
            "last_used_at",
            "user_agent"
        ]
    );
    assert_eq!(items[0]["kind"], "login");
    assert!(items[0]["address"].is_string(), "{:?}", items[0]);
    let laptop_id = items[2]["id"].as_str().unwrap().to_owned();

    let password = json!({"current_password": "correct horse"});
    let end = |token: String, id: String, body: Option<serde_json::Value>| async move {
        auth.json(
            Method::DELETE,
            &format!("/v1/sessions/{id}"),
            Some(&token),
            body.as_ref(),
        )
        .await
        .unwrap()
    };
    // Another user's session is not found, and goes on.
    let foreign = end(
        mallory_access.clone(),
        laptop_id.clone(),
        Some(password.clone()),
    )
    .await;
    assert_eq!(foreign.status, 404, "{:?}", foreign.body);
    assert_eq!(get("/v1/users/me", laptop.clone()).await.status, 200);
    // A newer session than one's own: the password again, or nothing ends
    // (a stolen, older session cannot sign its owner out of a new one).
    let phone_id = items[0]["id"].as_str().unwrap().to_owned();
    let bare = end(laptop.clone(), phone_id.clone(), None).await;
    assert_eq!(bare.status, 400, "{:?}", bare.body);
    let wrong = end(
        laptop.clone(),
        phone_id.clone(),
        Some(json!({"current_password": "wrong horse"})),
    )
    .await;
    assert_eq!(wrong.status, 403, "{:?}", wrong.body);
    assert_eq!(get("/v1/users/me", phone.clone()).await.status, 200);

    // Ended from the phone: the laptop's tokens are refused on every
    // instance of both servers within a second, its refresh token dies.
    // (an older one: as API.md says, nothing more than the token)
    let ended = end(phone.clone(), laptop_id.clone(), None).await;
    assert_eq!(ended.status, 204, "{:?}", ended.body);
    let refused = within_revocation_window(401, || get("/v1/tasks", laptop.clone())).await;
    assert_eq!(refused.status, 401);
    // Past the window, every instance refuses (the gateway spreads these
    // over two of each).
    tokio::time::sleep(REVOCATION_WINDOW).await;
    for path in ["/v1/users/me", "/v1/tasks", "/v1/auth/validate"] {
        for _ in 0..4 {
            assert_eq!(get(path, laptop.clone()).await.status, 401, "{path}");
        }
    }
    let refresh = sys
        .post(
            auth,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": laptop_refresh}),
        )
        .await;
    assert_eq!(refresh.status, 401);
    let again = end(phone.clone(), laptop_id.clone(), Some(password.clone())).await;
    assert_eq!(again.status, 404, "already ended");
    let malformed = end(
        phone.clone(),
        "not-an-id".to_owned(),
        Some(password.clone()),
    )
    .await;
    assert_eq!(malformed.status, 404);

    // Every other session: the tablet's goes, the phone's stays.
    let others = auth
        .json(
            Method::POST,
            "/v1/sessions/revoke-others",
            Some(&phone),
            None,
        )
        .await
        .unwrap();
    assert_eq!(others.status, 204, "{:?}", others.body);
    let refused = within_revocation_window(401, || get("/v1/tasks", tablet.clone())).await;
    assert_eq!(refused.status, 401);
    assert_eq!(get("/v1/tasks", phone.clone()).await.status, 200);
    let left = get("/v1/sessions", phone.clone()).await.json().unwrap();
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    assert_eq!(left["items"][0]["current"], true);
    // Mallory's sessions are not alice's to end.
    assert_eq!(
        get("/v1/users/me", mallory_access.clone()).await.status,
        200
    );

    let anonymous = auth
        .json(Method::GET, "/v1/sessions", None, None)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

async fn admins_see_and_end_a_users_sessions(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, admin) = sys.admin().await;
    let (alice, alice_access, alice_refresh) = sys.user("alice").await;
    let (_, mallory, _) = sys.user("mallory").await;
    let auth = &sys.auth.client;
    let sessions = format!("/v1/users/{alice}/sessions");

    let seen = auth
        .json(Method::GET, &sessions, Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{:?}", seen.body);
    let items = seen.json().unwrap()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["current"], false,
        "the admin's own session is not alice's"
    );
    for (method, who) in [
        (Method::GET, &mallory),
        (Method::DELETE, &mallory),
        (Method::DELETE, &alice_access),
    ] {
        let refused = auth.json(method, &sessions, Some(who), None).await.unwrap();
        assert_eq!(refused.status, 403, "only administrators");
    }
    let nobody = auth
        .json(
            Method::DELETE,
            "/v1/users/01890a5d-ac96-774b-bcce-b302099a8057/sessions",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(nobody.status, 404);
    assert_eq!(
        auth.json(Method::GET, "/v1/users/me", Some(&alice_access), None)
            .await
            .unwrap()
            .status,
        200
    );

    let ended = auth
        .json(Method::DELETE, &sessions, Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(ended.status, 204, "{:?}", ended.body);
    tokio::time::sleep(REVOCATION_WINDOW).await;
    for _ in 0..4 {
        let me = sys
            .tasks
            .client
            .json(Method::GET, "/v1/tasks", Some(&alice_access), None)
            .await
            .unwrap();
        assert_eq!(me.status, 401, "every instance refuses alice's token");
    }
    let refresh = sys
        .post(
            auth,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": alice_refresh}),
        )
        .await;
    assert_eq!(refresh.status, 401);
    let left = auth
        .json(Method::GET, &sessions, Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(left.json().unwrap()["items"], json!([]));
    // The account stays: alice signs in again; the admin's session goes on.
    sys.login("alice", "correct horse").await;
    assert_eq!(
        auth.json(Method::GET, "/v1/users", Some(&admin), None)
            .await
            .unwrap()
            .status,
        200
    );
}

async fn an_account_its_owner_deletes_leaves_nothing_of_its_own(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (alice, alice_access, _) = sys.user("alice").await;
    let (other_session, _) = sys.login("alice", "correct horse").await;
    let (_, bob, _) = sys.user("bob").await;
    let sys = &sys;
    let tasks = &sys.tasks.client;
    let auth = &sys.auth.client;
    let made = |token: &str, body: serde_json::Value, path: &'static str| {
        let token = token.to_owned();
        async move {
            let reply = sys.post(tasks, path, Some(&token), body).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            reply.json().unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    // Alice's own: a task in her Inbox, a project shared with Bob and a
    // task in it; and a task she makes in Bob's project, which is Bob's.
    let inbox_task = made(&alice_access, json!({"title": "Mine"}), "/v1/tasks").await;
    let hers = made(&alice_access, json!({"name": "Alice's"}), "/v1/projects").await;
    let in_hers = made(
        &alice_access,
        json!({"title": "Ours", "project_id": hers}),
        "/v1/tasks",
    )
    .await;
    let his = made(&bob, json!({"name": "Bob's"}), "/v1/projects").await;
    for (project, owner, member) in [(&hers, &alice_access, "bob"), (&his, &bob, "alice")] {
        let put = tasks
            .json(
                Method::PUT,
                &format!("/v1/projects/{project}/members/{member}"),
                Some(owner),
                Some(&json!({"role": "editor"})),
            )
            .await
            .unwrap();
        assert_eq!(put.status, 200, "{:?}", put.body);
    }
    let in_his = made(
        &alice_access,
        json!({"title": "For Bob", "project_id": his}),
        "/v1/tasks",
    )
    .await;

    let access = &alice_access;
    let delete = |body: serde_json::Value| async move {
        auth.json(Method::DELETE, "/v1/users/me", Some(access), Some(&body))
            .await
            .unwrap()
    };
    assert_eq!(
        delete(json!({"current_password": "wrong horse"}))
            .await
            .status,
        403
    );
    assert_eq!(
        delete(json!({"current_password": "correct horse", "all": true}))
            .await
            .status,
        400
    );
    assert_eq!(delete(json!({})).await.status, 400);
    // Nothing went with the refusals.
    assert_eq!(
        sys.rows_holding(&alice)
            .iter()
            .filter(|(t, _, n)| t == "users" && *n > 0)
            .count(),
        1
    );
    let deleted = delete(json!({"current_password": "correct horse"})).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);

    // Its tokens are refused on both servers, every instance; it cannot
    // sign in; Bob keeps what is his.
    tokio::time::sleep(REVOCATION_WINDOW).await;
    for token in [&alice_access, &other_session] {
        for _ in 0..2 {
            let me = auth
                .json(Method::GET, "/v1/users/me", Some(token), None)
                .await
                .unwrap();
            assert_eq!(me.status, 401);
            let list = tasks
                .json(Method::GET, "/v1/tasks", Some(token), None)
                .await
                .unwrap();
            assert_eq!(list.status, 401);
        }
    }
    let login = sys
        .post(
            auth,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, 401);
    let gone = tasks
        .json(
            Method::GET,
            &format!("/v1/projects/{hers}"),
            Some(&bob),
            None,
        )
        .await
        .unwrap();
    assert_eq!(gone.status, 404, "her project went with her");
    let kept = tasks
        .json(
            Method::GET,
            &format!("/v1/tasks/{in_his}"),
            Some(&bob),
            None,
        )
        .await
        .unwrap();
    assert_eq!(kept.status, 200, "what she made in Bob's project is Bob's");
    let members = tasks
        .json(
            Method::GET,
            &format!("/v1/projects/{his}/members"),
            Some(&bob),
            None,
        )
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&members.body).contains("alice"));

    // In the database: nothing of hers, and of her id only what Bob's
    // project keeps (the task she made there, and its history: her
    // joining, that task, her leaving).
    let held = |id: &str| -> Vec<(String, String, i64)> {
        let rows = sys.rows_holding(id).into_iter();
        rows.filter(|(_, _, n)| *n > 0).collect()
    };
    for gone in [&inbox_task, &in_hers] {
        assert!(held(gone).is_empty(), "{gone} is still in {:?}", held(gone));
    }
    // Of her project, only the news of its end, in Bob's stream.
    let told = [("change_log".to_owned(), "subject_id".to_owned(), 1)];
    assert_eq!(held(&hers), told);
    let left: Vec<_> = sys
        .rows_holding(&alice)
        .into_iter()
        .filter(|(_, _, n)| *n > 0)
        .collect();
    let bobs = |(table, column, _): &&(String, String, i64)| {
        (table == "tasks" && column == "created_by") || table == "change_log"
    };
    assert!(left.iter().all(|row| bobs(&row)), "{left:?}");
    assert!(
        left.iter()
            .any(|(t, c, n)| t == "tasks" && c == "created_by" && *n == 1),
        "{left:?}"
    );
}

async fn the_account_export_holds_everything_it_owns_and_no_secret(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let sys = &sys;
    let (_, access, refresh) = sys.user("alice").await;
    let (other_session, _) = sys.login("alice", "correct horse").await;
    let (_, bob, _) = sys.user("bob").await;
    let (tasks, auth) = (&sys.tasks.client, &sys.auth.client);
    let made = |token: &str, path: &'static str, body: serde_json::Value| {
        let token = token.to_owned();
        async move {
            let reply = sys.post(tasks, path, Some(&token), body).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            reply.json().unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    made(&access, "/v1/tasks", json!({"title": "In my Inbox"})).await;
    let hers = made(&access, "/v1/projects", json!({"name": "Alice's"})).await;
    made(
        &access,
        "/v1/tasks",
        json!({"title": "In my project", "project_id": hers}),
    )
    .await;
    let his = made(&bob, "/v1/projects", json!({"name": "Bob's"})).await;
    made(
        &bob,
        "/v1/tasks",
        json!({"title": "Bob's own", "project_id": his}),
    )
    .await;
    let shared = tasks
        .json(
            Method::PUT,
            &format!("/v1/projects/{his}/members/alice"),
            Some(&bob),
            Some(&json!({"role": "editor"})),
        )
        .await
        .unwrap();
    assert_eq!(shared.status, 200, "{:?}", shared.body);
    let addressed = auth
        .json(
            Method::PATCH,
            "/v1/users/me",
            Some(&access),
            Some(&json!({"email": "alice@example.org", "current_password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(addressed.status, 200, "{:?}", addressed.body);
    let token = auth
        .json(
            Method::POST,
            "/v1/api-tokens",
            Some(&access),
            Some(&json!({"name": "script", "scopes": ["tasks:read"], "current_password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(token.status, 201, "{:?}", token.body);
    let secret = token.json().unwrap()["token"].as_str().unwrap().to_owned();

    let export = tasks
        .json(Method::GET, "/v1/users/me/export", Some(&access), None)
        .await
        .unwrap();
    assert_eq!(export.status, 200, "{:?}", export.body);
    assert!(
        export.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let text = String::from_utf8(export.body.to_vec()).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(all["format"], "todo.account-export/1");
    let account = &all["account"];
    assert_eq!(account["user"]["username"], "alice");
    assert_eq!(account["user"]["email"], "alice@example.org");
    let kinds: Vec<&str> = account["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "login").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "api_token").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(account["api_tokens"][0]["name"], "script");
    assert!(account["api_tokens"][0].get("token").is_none());
    let memberships = account["memberships"].as_array().unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0]["name"], "Bob's");
    assert_eq!(memberships[0]["role"], "editor");
    let mut projects: Vec<&str> = all["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    projects.sort_unstable();
    assert_eq!(projects, ["Alice's", "Inbox"]);
    let mut titles: Vec<&str> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    titles.sort_unstable();
    assert_eq!(titles, ["In my Inbox", "In my project"], "hers, not Bob's");
    // No secret and no hash.
    for secret in [
        secret.as_str(),
        access.as_str(),
        other_session.as_str(),
        refresh.as_str(),
        "$argon2",
        "password",
    ] {
        assert!(!text.contains(secret), "the export holds {secret:?}");
    }

    // Only a sign-in exports the account; nobody else's.
    let by_token = tasks
        .json(Method::GET, "/v1/users/me/export", Some(&secret), None)
        .await
        .unwrap();
    assert_eq!(by_token.status, 403, "{:?}", by_token.body);
    let anonymous = tasks
        .json(Method::GET, "/v1/users/me/export", None, None)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let bobs = tasks
        .json(Method::GET, "/v1/users/me/export", Some(&bob), None)
        .await
        .unwrap();
    let bobs: serde_json::Value = serde_json::from_slice(&bobs.body).unwrap();
    assert_eq!(bobs["account"]["user"]["username"], "bob");
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&bobs).unwrap()).contains("In my"));
}
