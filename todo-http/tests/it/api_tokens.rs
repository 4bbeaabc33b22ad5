//! API tokens (#17): made with the password, shown once, listed among the
//! sessions; each call outside a token's scopes or project refused with
//! 403 `insufficient_scope` on both servers; revoked on every instance
//! within a second.

use http::Method;
use serde_json::{Value, json};
use todo_testkit::{Client, Reply};

use crate::harness::{
    Deployment, Options, REVOCATION_WINDOW, System, on_every_deployment, spawn,
    within_revocation_window,
};

on_every_deployment!(
    api_tokens_act_within_their_scopes_and_project_on_both_servers_until_revoked,
    api_tokens_are_made_with_the_password_and_valid_fields_only,
);

async fn call(
    client: &Client,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    client
        .json(method, path, Some(token), body.as_ref())
        .await
        .unwrap()
}

/// A token of alice's with `scopes` (and `project`): its id and secret.
async fn make(
    sys: &System,
    access: &str,
    scopes: &[&str],
    project: Option<&str>,
) -> (String, String) {
    let reply = call(
        &sys.auth.client,
        Method::POST,
        "/v1/api-tokens",
        access,
        Some(json!({
            "name": format!("script {}", scopes.join("+")),
            "scopes": scopes,
            "project_id": project,
            "current_password": "correct horse",
        })),
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let made = reply.json().unwrap();
    (
        made["id"].as_str().unwrap().to_owned(),
        made["token"].as_str().unwrap().to_owned(),
    )
}

/// Whether `reply` is the refusal of a scope: 403, `insufficient_scope`
/// naming `scope` (or none, for what only a login may do).
fn lacks(reply: &Reply, scope: Option<&str>) -> bool {
    let challenge = reply
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let named = scope.is_none_or(|s| challenge.contains(&format!("scope=\"{s}\"")));
    reply.status == 403
        && challenge.contains("error=\"insufficient_scope\"")
        && named
        && reply
            .json()
            .is_ok_and(|b| b["type"] == "urn:todo:problem:insufficient-scope")
}

async fn api_tokens_act_within_their_scopes_and_project_on_both_servers_until_revoked(
    deployment: Deployment,
) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, access, _) = sys.user("alice").await;
    let (auth, tasks) = (&sys.auth.client, &sys.tasks.client);
    let garden = call(
        tasks,
        Method::POST,
        "/v1/projects",
        &access,
        Some(json!({"name": "Garden"})),
    )
    .await;
    assert_eq!(garden.status, 201, "{:?}", garden.body);
    let garden = garden.json().unwrap()["id"].as_str().unwrap().to_owned();
    let add = |title: &'static str, project: Option<String>| {
        let access = access.clone();
        async move {
            let body = json!({"title": title, "project_id": project});
            let reply = call(tasks, Method::POST, "/v1/tasks", &access, Some(body)).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            reply.json().unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let errand = add("Buy milk", None).await;
    let seeds = add("Buy seeds", Some(garden.clone())).await;

    // A reader: reads tasks, nothing else.
    let (reader_id, reader) = make(&sys, &access, &["tasks:read"], None).await;
    assert!(reader.starts_with("todo_pat_"), "{reader}");
    let listed = call(tasks, Method::GET, "/v1/tasks", &reader, None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.json().unwrap()["items"].as_array().unwrap().len(), 2);
    let one = call(
        tasks,
        Method::GET,
        &format!("/v1/tasks/{errand}"),
        &reader,
        None,
    )
    .await;
    assert_eq!(one.status, 200);
    let write = call(
        tasks,
        Method::POST,
        "/v1/tasks",
        &reader,
        Some(json!({"title": "x"})),
    )
    .await;
    assert!(lacks(&write, Some("tasks:write")), "{write:?}");
    let patch = call(
        tasks,
        Method::PATCH,
        &format!("/v1/tasks/{errand}"),
        &reader,
        Some(json!({"done": true})),
    )
    .await;
    assert!(lacks(&patch, Some("tasks:write")), "{patch:?}");
    let delete = call(
        tasks,
        Method::DELETE,
        &format!("/v1/tasks/{errand}"),
        &reader,
        None,
    )
    .await;
    assert!(lacks(&delete, Some("tasks:write")), "{delete:?}");
    for (path, scope) in [
        ("/v1/projects", "projects:read"),
        ("/v1/changes", "events:read"),
        ("/v1/events", "events:read"),
    ] {
        let reply = call(tasks, Method::GET, path, &reader, None).await;
        assert!(lacks(&reply, Some(scope)), "{path}: {reply:?}");
    }
    // What only a login may do: its account, its sessions, its tokens,
    // webhooks, exports.
    for (client, method, path) in [
        (auth, Method::GET, "/v1/users/me"),
        (auth, Method::GET, "/v1/sessions"),
        (auth, Method::GET, "/v1/api-tokens"),
        (auth, Method::POST, "/v1/sessions/revoke-others"),
        (auth, Method::DELETE, "/v1/users/me"),
        (auth, Method::GET, "/v1/users"),
        (tasks, Method::GET, "/v1/webhooks"),
        (tasks, Method::GET, "/v1/export"),
    ] {
        let reply = call(client, method.clone(), path, &reader, None).await;
        assert!(lacks(&reply, None), "{method} {path}: {reply:?}");
    }
    let more = call(
        auth,
        Method::POST,
        "/v1/api-tokens",
        &reader,
        Some(
            json!({"name": "more", "scopes": ["tasks:write"], "current_password": "correct horse"}),
        ),
    )
    .await;
    assert!(lacks(&more, None), "a token makes no token: {more:?}");
    // A gateway's question is answered for it, with its expiry.
    let validated = call(auth, Method::GET, "/v1/auth/validate", &reader, None).await;
    assert_eq!(validated.status, 200, "{:?}", validated.body);
    let validated = validated.json().unwrap();
    assert!(validated["exp"].as_i64().unwrap() > 0);
    assert_eq!(
        validated["scopes"],
        json!(["tasks:read"]),
        "a gateway learns its scopes"
    );
    let login = call(auth, Method::GET, "/v1/auth/validate", &access, None)
        .await
        .json()
        .unwrap();
    assert!(
        login.get("scopes").is_none() && login.get("project_id").is_none(),
        "{login}"
    );

    // A writer limited to the garden: sees and changes the garden only.
    let (_, gardener) = make(
        &sys,
        &access,
        &["tasks:read", "tasks:write", "projects:read"],
        Some(&garden),
    )
    .await;
    let listed = call(tasks, Method::GET, "/v1/tasks", &gardener, None).await;
    let titles: Vec<Value> = listed.json().unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("Buy seeds")]);
    let inbox = call(tasks, Method::GET, "/v1/projects", &gardener, None).await;
    let projects = inbox.json().unwrap()["items"].as_array().unwrap().clone();
    assert_eq!(projects.len(), 1, "{projects:?}");
    assert_eq!(projects[0]["id"], json!(garden));
    let inbox_id = call(tasks, Method::GET, "/v1/projects", &access, None)
        .await
        .json()
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["inbox"] == json!(true))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path, body) in [
        (Method::GET, format!("/v1/tasks/{errand}"), None),
        (
            Method::PATCH,
            format!("/v1/tasks/{errand}"),
            Some(json!({"done": true})),
        ),
        (Method::DELETE, format!("/v1/tasks/{errand}"), None),
        (Method::GET, format!("/v1/tasks?project={inbox_id}"), None),
        (
            Method::POST,
            "/v1/tasks".to_owned(),
            Some(json!({"title": "x", "project_id": inbox_id})),
        ),
        (Method::GET, format!("/v1/projects/{inbox_id}"), None),
        (
            Method::GET,
            format!("/v1/projects/{inbox_id}/members"),
            None,
        ),
    ] {
        let reply = call(tasks, method.clone(), &path, &gardener, body).await;
        assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
    }
    // A subtask goes where its parent is: not out of the garden.
    let outside = call(
        tasks,
        Method::POST,
        "/v1/tasks",
        &gardener,
        Some(json!({"title": "x", "parent_id": errand})),
    )
    .await;
    assert_eq!(outside.status, 400, "{outside:?}");
    assert_eq!(outside.json().unwrap()["errors"][0]["field"], "parent_id");
    let still = call(
        tasks,
        Method::GET,
        &format!("/v1/tasks/{errand}"),
        &access,
        None,
    )
    .await;
    assert_eq!(
        still.json().unwrap()["done"],
        json!(false),
        "the errand is untouched"
    );
    let added = call(
        tasks,
        Method::POST,
        "/v1/tasks",
        &gardener,
        Some(json!({"title": "Water"})),
    )
    .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(
        added.json().unwrap()["project_id"],
        json!(garden),
        "added where it may"
    );
    let done = call(
        tasks,
        Method::PATCH,
        &format!("/v1/tasks/{seeds}"),
        &gardener,
        Some(json!({"done": true})),
    )
    .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    let project = call(
        tasks,
        Method::POST,
        "/v1/projects",
        &gardener,
        Some(json!({"name": "Another"})),
    )
    .await;
    assert!(lacks(&project, None), "{project:?}");

    // projects:write changes projects; sharing one (a grant of access that
    // would outlive the token) is a login's, and deleting one takes its
    // tasks too (attack of session 26, 1).
    let (_, planner) = make(&sys, &access, &["projects:read", "projects:write"], None).await;
    sys.user("thief").await;
    let share = call(
        tasks,
        Method::PUT,
        &format!("/v1/projects/{garden}/members/thief"),
        &planner,
        Some(json!({"role": "editor"})),
    )
    .await;
    assert!(lacks(&share, None), "{share:?}");
    let unshare = call(
        tasks,
        Method::DELETE,
        &format!("/v1/projects/{garden}/members/thief"),
        &planner,
        None,
    )
    .await;
    assert!(lacks(&unshare, None), "{unshare:?}");
    let renamed = call(
        tasks,
        Method::PATCH,
        &format!("/v1/projects/{garden}"),
        &planner,
        Some(json!({"name": "Yard"})),
    )
    .await;
    assert_eq!(renamed.status, 200, "{:?}", renamed.body);
    let deleted = call(
        tasks,
        Method::DELETE,
        &format!("/v1/projects/{garden}"),
        &planner,
        None,
    )
    .await;
    assert!(lacks(&deleted, Some("tasks:write")), "{deleted:?}");
    assert_eq!(
        call(
            tasks,
            Method::GET,
            &format!("/v1/tasks/{seeds}"),
            &access,
            None
        )
        .await
        .status,
        200
    );

    // Signing out everywhere else without the password leaves API tokens
    // (no sign-in of the owner's; with the password they end too).
    let others = call(
        auth,
        Method::POST,
        "/v1/sessions/revoke-others",
        &access,
        None,
    )
    .await;
    assert_eq!(others.status, 204, "{:?}", others.body);
    assert_eq!(
        call(tasks, Method::GET, "/v1/projects", &planner, None)
            .await
            .status,
        200
    );

    // Listed among the sessions, never with a secret.
    let sessions = call(auth, Method::GET, "/v1/sessions", &access, None)
        .await
        .json()
        .unwrap();
    let kinds: Vec<&str> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "api_token").count(),
        3,
        "{kinds:?}"
    );
    let listed = call(auth, Method::GET, "/v1/api-tokens", &access, None).await;
    assert_eq!(listed.status, 200);
    let text = String::from_utf8_lossy(&listed.body);
    assert!(
        !text.contains("todo_pat_") && !text.contains("\"token\""),
        "{text}"
    );

    // Revoked with a click: refused on every instance of both servers
    // within a second, and gone from the list.
    let revoked = call(
        auth,
        Method::DELETE,
        &format!("/v1/api-tokens/{reader_id}"),
        &access,
        None,
    )
    .await;
    assert_eq!(revoked.status, 204, "{:?}", revoked.body);
    let refused =
        within_revocation_window(401, || call(tasks, Method::GET, "/v1/tasks", &reader, None))
            .await;
    assert_eq!(refused.status, 401);
    tokio::time::sleep(REVOCATION_WINDOW).await;
    for _ in 0..4 {
        assert_eq!(
            call(tasks, Method::GET, "/v1/tasks", &reader, None)
                .await
                .status,
            401
        );
        assert_eq!(
            call(auth, Method::GET, "/v1/auth/validate", &reader, None)
                .await
                .status,
            401
        );
    }
    let again = call(
        auth,
        Method::DELETE,
        &format!("/v1/api-tokens/{reader_id}"),
        &access,
        None,
    )
    .await;
    assert_eq!(again.status, 404);
    assert_eq!(
        call(auth, Method::GET, "/v1/api-tokens", &access, None)
            .await
            .json()
            .unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A password change ends the others.
    let changed = call(
        auth,
        Method::POST,
        "/v1/users/me/password",
        &access,
        Some(json!({"current_password": "correct horse", "new_password": "a new correct horse"})),
    )
    .await;
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    let refused = within_revocation_window(401, || {
        call(tasks, Method::GET, "/v1/tasks", &gardener, None)
    })
    .await;
    assert_eq!(refused.status, 401);
}

async fn api_tokens_are_made_with_the_password_and_valid_fields_only(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, access, _) = sys.user("alice").await;
    let auth = &sys.auth.client;
    let post = |body: Value| {
        let access = access.clone();
        async move { call(auth, Method::POST, "/v1/api-tokens", &access, Some(body)).await }
    };
    let fields = |reply: &Reply| -> Vec<String> {
        reply.json().unwrap()["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let wrong =
        post(json!({"name": "n", "scopes": ["tasks:read"], "current_password": "wrong horse"}))
            .await;
    assert_eq!(wrong.status, 403, "{:?}", wrong.body);
    let bare = post(json!({"name": "n", "scopes": ["tasks:read"]})).await;
    assert_eq!(bare.status, 400, "{:?}", bare.body);
    for (body, field) in [
        (
            json!({"name": " ", "scopes": ["tasks:read"], "current_password": "correct horse"}),
            "name",
        ),
        (
            json!({"name": "n", "scopes": [], "current_password": "correct horse"}),
            "scopes",
        ),
        (
            json!({"name": "n", "scopes": ["tasks:admin"], "current_password": "correct horse"}),
            "scopes",
        ),
        (
            json!({"name": "n", "scopes": ["tasks:read"], "project_id": "nope", "current_password": "correct horse"}),
            "project_id",
        ),
        (
            json!({"name": "n", "scopes": ["events:read", "tasks:read", "projects:read"], "project_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "current_password": "correct horse"}),
            "scopes",
        ),
        // (the log carries whole tasks and projects: not without reading them)
        (
            json!({"name": "n", "scopes": ["events:read"], "current_password": "correct horse"}),
            "scopes",
        ),
        (
            json!({"name": "n", "scopes": ["tasks:read"], "expires_at": "2020-01-01T00:00:00Z", "current_password": "correct horse"}),
            "expires_at",
        ),
        (
            json!({"name": "n", "scopes": ["tasks:read"], "expires_at": "2999-01-01T00:00:00Z", "current_password": "correct horse"}),
            "expires_at",
        ),
        (
            json!({"name": "n", "scopes": ["tasks:read"], "expires_at": "soon", "current_password": "correct horse"}),
            "expires_at",
        ),
    ] {
        let reply = post(body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert!(
            fields(&reply).iter().any(|f| f == field),
            "{body}: {:?}",
            reply.body
        );
    }
    let made = post(json!({
        "name": "  nightly backup ",
        "scopes": ["tasks:read", "projects:read"],
        "current_password": "correct horse",
    }))
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let made = made.json().unwrap();
    let mut keys: Vec<&str> = made
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "project_id",
            "scopes",
            "token"
        ]
    );
    assert_eq!(made["name"], "nightly backup");
    assert_eq!(made["scopes"], json!(["tasks:read", "projects:read"]));
    assert_eq!(made["project_id"], Value::Null);
    // Another user's token is not theirs to revoke.
    let (_, mallory, _) = sys.user("mallory").await;
    let id = made["id"].as_str().unwrap();
    let foreign = call(
        auth,
        Method::DELETE,
        &format!("/v1/api-tokens/{id}"),
        &mallory,
        None,
    )
    .await;
    assert_eq!(foreign.status, 404);
    let token = made["token"].as_str().unwrap();
    assert_eq!(
        call(&sys.tasks.client, Method::GET, "/v1/tasks", token, None)
            .await
            .status,
        200
    );
    // A login's session is not a token to revoke here.
    let sessions = call(auth, Method::GET, "/v1/sessions", &access, None)
        .await
        .json()
        .unwrap();
    let login = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "login")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let not_a_token = call(
        auth,
        Method::DELETE,
        &format!("/v1/api-tokens/{login}"),
        &access,
        None,
    )
    .await;
    assert_eq!(not_a_token.status, 404);
}
