//! The one-origin mode of the `todo` binary: both APIs, the page, and the
//! refresh token in an HttpOnly cookie.

use http::Method;
use serde_json::json;
use todo_store::testing::TestBackend;

use crate::harness::{Options, System, on_both_backends, spawn};

on_both_backends!(
    the_page_and_both_apis_share_one_origin,
    refresh_tokens_travel_in_an_http_only_cookie,
    head_is_answered_where_allow_says_so,
);

/// HEAD is served by the page's files and the shared endpoints; the API's
/// routes (as the contract lists them) refuse it with the path's 405.
async fn head_is_answered_where_allow_says_so(backend: TestBackend) {
    let Some(sys) = one_origin(backend).await else {
        return;
    };
    let client = &sys.auth.client;
    for path in ["/", "/app.js", "/healthz"] {
        let head = client.send(Method::HEAD, path, &[], None).await.unwrap();
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path}");
    }
    let post = client
        .send(Method::POST, "/healthz", &[], None)
        .await
        .unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    for (path, allow) in [
        ("/v1/tasks", "GET, POST"),
        (
            "/v1/tasks/00000000-0000-7000-8000-000000000000",
            "GET, PATCH, DELETE",
        ),
        ("/v1/users/me", "GET, PATCH, DELETE"),
        ("/.well-known/jwks.json", "GET"),
    ] {
        let head = client.send(Method::HEAD, path, &[], None).await.unwrap();
        assert_eq!(head.status, 405, "HEAD {path}");
        assert_eq!(head.headers["allow"], allow, "HEAD {path}");
        let put = client.send(Method::PUT, path, &[], None).await.unwrap();
        assert_eq!(put.headers["allow"], allow, "PUT {path}");
    }
}

/// `todo`'s one-origin system on `backend`; `None` only when PostgreSQL is
/// skipped on purpose.
async fn one_origin(backend: TestBackend) -> Option<System> {
    let options = Options {
        one_origin: true,
        ..Options::default()
    };
    spawn(backend, options).await
}

async fn the_page_and_both_apis_share_one_origin(backend: TestBackend) {
    let Some(sys) = one_origin(backend).await else {
        return;
    };
    let client = &sys.auth.client;
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/api.js", "text/javascript"),
        ("/dates.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let reply = client.send(Method::GET, path, &[], None).await.unwrap();
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
    }
    let html = String::from_utf8(
        client
            .send(Method::GET, "/", &[], None)
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );
    assert_eq!(
        client
            .send(Method::POST, "/app.js", &[], None)
            .await
            .unwrap()
            .status,
        405
    );

    let (_, access, _) = sys.user("alice").await;
    let created = sys
        .post(
            client,
            "/v1/tasks",
            Some(&access),
            json!({"title": "one origin"}),
        )
        .await;
    assert_eq!(created.status, 201, "the task API on the same origin");
    let doc = client
        .json(Method::GET, "/openapi.json", None, None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(doc["paths"]["/v1/tasks"].is_object() && doc["paths"]["/v1/auth/login"].is_object());
}

async fn refresh_tokens_travel_in_an_http_only_cookie(backend: TestBackend) {
    let Some(sys) = spawn(
        backend,
        Options {
            one_origin: true,
            // A replayed cookie is reuse at once (the grace has its own test).
            refresh_reuse_grace: std::time::Duration::ZERO,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    sys.register("alice", "correct horse").await;
    let client = &sys.auth.client;
    let login = sys
        .post(
            client,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, 200);
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["; HttpOnly", "; Secure", "; SameSite=Strict", "; Path=/;"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let body_token = login.json().unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        cookie,
        format!("__Host-todo_refresh={body_token}"),
        "an API client's JSON contract is unchanged"
    );

    // Refresh with the cookie and an empty body; the cookie rotates too.
    let headers = [
        ("content-type", "application/json"),
        ("cookie", cookie.as_str()),
    ];
    let refreshed = client
        .send(
            Method::POST,
            "/v1/auth/refresh",
            &headers,
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(refreshed.status, 200);
    let pair = refreshed.json().unwrap();
    assert!(
        pair["access_token"].is_string() && pair.get("refresh_token").is_none(),
        "a refresh by cookie answers without the refresh token: {pair}"
    );
    let rotated = refreshed.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, cookie);
    let reused = client
        .send(
            Method::POST,
            "/v1/auth/refresh",
            &headers,
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(
        reused.status, 401,
        "the old cookie is dead, and its reuse revokes the family"
    );

    // Logout with the cookie clears it.
    let fresh = sys
        .post(
            client,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.body);
    let cookie = fresh.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let headers = [
        ("content-type", "application/json"),
        ("cookie", cookie.as_str()),
    ];
    let out = client
        .send(
            Method::POST,
            "/v1/auth/logout",
            &headers,
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(out.status, 204);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = client
        .send(
            Method::POST,
            "/v1/auth/refresh",
            &headers,
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(after.status, 401);
    let nothing = client
        .send(
            Method::POST,
            "/v1/auth/refresh",
            &[("content-type", "application/json")],
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(nothing.status, 401, "no body token and no cookie");
}
