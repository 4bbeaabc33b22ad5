//! The mounted example: todo's task API under `/api` in an axum program,
//! served on that program's own listener, beside its own route.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use todo_auth::Argon2Config;
use todo_core::{Credentials, Registration};
use todo_examples::{embedded, mounted};

const LIGHT: Argon2Config = Argon2Config {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_api_serves_under_api_beside_the_programs_own_routes() {
    let parts = mounted::parts(embedded::memory_store(), LIGHT).unwrap();
    let registration = Registration::parse("host", "correct horse", None).unwrap();
    parts.sessions.register(None, registration).unwrap();
    let token = parts
        .sessions
        .login(None, &Credentials::offered("host", "correct horse"))
        .unwrap()
        .access_token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mounted::serve(listener, parts.tasks));

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let send = |method: Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body, headers)
        }
    };

    // The host's own route.
    let (status, body, _) = send(Method::GET, "/hello", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"hello from the host program");
    // The mounted API: the token is checked, the task created and listed.
    let (status, _, _) = send(Method::GET, "/api/v1/tasks", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, headers) = send(
        Method::POST,
        "/api/v1/tasks",
        Some(&token),
        Some(json!({"title": "Mounted"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let created: Value = serde_json::from_slice(&body).unwrap();
    // `Location` names the task where it is: under the host's prefix.
    let location = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/api/v1/tasks/{}", created["id"].as_str().unwrap())
    );
    let (status, _, _) = send(Method::GET, &location, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(Method::GET, "/api/v1/tasks", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["items"][0]["id"], created["id"]);
    assert_eq!(page["items"][0]["title"], "Mounted");
    // Its rules hold as they do behind todo's own server: a body that is
    // not JSON is 415, a forged token 401.
    let (status, _, _) = send(Method::POST, "/api/v1/tasks", Some("not-a-token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(Method::POST, "/api/v1/tasks", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // HEAD is no method of the API's: the path's 405, as behind todo's server.
    let (status, _, headers) = send(Method::HEAD, "/api/v1/tasks", Some(&token), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, POST");
    // An unknown path or method under the API: its problem answers.
    let (status, body, headers) = send(Method::GET, "/api/v1/nothing", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(String::from_utf8_lossy(&body).contains("urn:todo:problem:not-found"));
    let (status, _, headers) = send(Method::PUT, "/api/v1/tasks", Some(&token), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["allow"], "GET, POST");
    // Outside both: 404.
    let (status, _, _) = send(Method::GET, "/v1/tasks", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
