//! The log and the metrics name a request by its route's template: never
//! the path itself (a label per task id), never lost.

use http::Method;
use serde_json::json;
use todo_store::testing::TestBackend;

use crate::harness::{Options, spawn};

async fn scrape(client: &todo_testkit::Client) -> String {
    let reply = client
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_their_routes_template() {
    let Some(sys) = spawn(TestBackend::Sqlite, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let created = sys
        .post(client, "/v1/tasks", Some(&alice), json!({"title": "named"}))
        .await;
    assert_eq!(created.status, 201);
    let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/tasks/{id}");
    for (method, path, status) in [
        (Method::GET, path.as_str(), 200),
        (Method::HEAD, path.as_str(), 405),
        (Method::PUT, path.as_str(), 405),
        (Method::GET, "/no/such/path", 404),
    ] {
        let reply = client
            .json(method.clone(), path, Some(&alice), None)
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{method} {path}");
    }
    let text = scrape(client).await;
    for series in [
        r#"todo_http_requests_total{route="/v1/tasks",method="POST",status="201"} 1"#,
        r#"todo_http_requests_total{route="/v1/tasks/{id}",method="GET",status="200"} 1"#,
        r#"todo_http_requests_total{route="/v1/tasks/{id}",method="HEAD",status="405"} 1"#,
        r#"todo_http_requests_total{route="(unmatched)",method="GET",status="404"} 1"#,
        // An unknown method is axum's fallback, outside the route layers.
        r#"todo_http_requests_total{route="(unmatched)",method="PUT",status="405"} 1"#,
    ] {
        assert!(text.contains(series), "no {series}: {text}");
    }
    assert!(!text.contains(&id), "a task id became a label: {text}");
    assert!(!text.contains("/no/such/path"), "{text}");
    assert!(!text.contains(r#"route="(route)""#), "{text}");
    let auth = scrape(&sys.auth.client).await;
    assert!(
        auth.contains(
            r#"todo_http_requests_total{route="/v1/auth/login",method="POST",status="200"} 1"#
        ),
        "{auth}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_files_are_counted_by_their_paths() {
    let options = Options {
        one_origin: true,
        ..Options::default()
    };
    let Some(sys) = spawn(TestBackend::Sqlite, options).await else {
        return;
    };
    let client = &sys.auth.client;
    for method in [Method::GET, Method::HEAD] {
        let reply = client.json(method, "/app.js", None, None).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    let text = scrape(client).await;
    for series in [
        r#"todo_http_requests_total{route="/app.js",method="GET",status="200"} 1"#,
        r#"todo_http_requests_total{route="/app.js",method="HEAD",status="200"} 1"#,
    ] {
        assert!(text.contains(series), "no {series}: {text}");
    }
}
