//! `GET /v1/events`: the caller's changes live, each once, resumable; the
//! stream's bounds (per-user cap, bad cursors, revocation, shutdown, a
//! client that stops reading).

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use todo_testkit::{SseBlock, Streamed};

use crate::harness::{
    Deployment, Options, REVOCATION_WINDOW, System, on_both_backends, on_every_deployment, spawn,
};

on_every_deployment!(
    events_carry_each_change_once_and_resume_after_the_last_id,
    a_stream_that_saw_no_change_resumes_from_where_it_started,
    a_stream_ends_when_its_users_tokens_are_revoked,
    an_api_token_with_events_read_follows_the_stream_until_it_is_revoked,
);
/// The cap is per instance: not through the gateway's two.
mod one_instance {
    use super::*;
    on_both_backends!(bad_event_requests_are_refused_and_streams_are_capped_per_user);
}

/// Long enough for a change to reach a stream on a loaded machine, through
/// the gateway to another instance (found by polling within a second).
const WITHIN: Duration = Duration::from_secs(5);

async fn open(sys: &System, token: &str, extra: &[(&str, &str)]) -> Streamed {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    sys.tasks
        .client
        .stream("/v1/events", &headers)
        .await
        .unwrap()
}

async fn next_event(stream: &mut Streamed) -> SseBlock {
    stream
        .next_event(WITHIN)
        .await
        .unwrap()
        .expect("the stream ended")
}

async fn write(
    sys: &System,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let reply = sys
        .tasks
        .client
        .json(method, path, Some(token), body.as_ref())
        .await
        .unwrap();
    assert!(reply.status.is_success(), "{path}: {}", reply.status);
    reply.json().unwrap_or(Value::Null)
}

async fn events_carry_each_change_once_and_resume_after_the_last_id(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    let before = write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "before"})),
    )
    .await;

    let mut stream = open(&sys, &alice, &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-store");
    write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &bob,
        Some(json!({"title": "bob's"})),
    )
    .await;
    let milk = write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "milk"})),
    )
    .await;
    let milk_path = format!("/v1/tasks/{}", milk["id"].as_str().unwrap());
    write(
        &sys,
        Method::PATCH,
        &milk_path,
        &alice,
        Some(json!({"done": true})),
    )
    .await;
    let before_path = format!("/v1/tasks/{}", before["id"].as_str().unwrap());
    write(&sys, Method::DELETE, &before_path, &alice, None).await;

    // Only what commits after the stream opened, only alice's, in order.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut stream).await);
    }
    let kinds: Vec<(String, String, bool)> = seen
        .iter()
        .map(|block| {
            let data = block.json().unwrap();
            assert_eq!(block.event.as_deref(), data["type"].as_str());
            assert_eq!(block.id.as_deref(), data["cursor"].as_str());
            (
                data["type"].as_str().unwrap().to_owned(),
                data["id"].as_str().unwrap().to_owned(),
                data["object"]["done"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let (milk_id, before_id) = (milk["id"].as_str().unwrap(), before["id"].as_str().unwrap());
    assert_eq!(
        kinds,
        [
            ("task.created".to_owned(), milk_id.to_owned(), false),
            ("task.updated".to_owned(), milk_id.to_owned(), true),
            ("task.deleted".to_owned(), before_id.to_owned(), false),
        ]
    );
    assert!(seen[2].json().unwrap()["object"].is_null(), "a tombstone");
    // The same cursors as the catch-up list gives.
    let listed = sys
        .tasks
        .client
        .json(Method::GET, "/v1/changes", Some(&alice), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    let listed: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cursor"].as_str().unwrap())
        .collect();
    let streamed: Vec<&str> = seen.iter().map(|b| b.id.as_deref().unwrap()).collect();
    assert_eq!(&listed[1..], &streamed[..]);

    // Gone for a while: what came meanwhile, after the last id, nothing twice.
    drop(stream);
    let last_id = seen[2].id.clone().unwrap();
    let missed = write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "missed"})),
    )
    .await;
    let mut resumed = open(&sys, &alice, &[("last-event-id", &last_id)]).await;
    assert_eq!(resumed.status, 200);
    let first = next_event(&mut resumed).await;
    assert_eq!(first.json().unwrap()["id"], missed["id"]);
    let after = write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "after"})),
    )
    .await;
    let second = next_event(&mut resumed).await;
    assert_eq!(second.json().unwrap()["id"], after["id"]);
    // `since` does what Last-Event-ID does.
    let mut from_query = sys
        .tasks
        .client
        .stream(
            &format!("/v1/events?since={last_id}"),
            &[("authorization", &format!("Bearer {alice}"))],
        )
        .await
        .unwrap();
    assert_eq!(next_event(&mut from_query).await.id, first.id);
    assert_eq!(next_event(&mut from_query).await.id, second.id);
}

/// The first block names where the stream started: a client that loses
/// the stream before any change resumes from there (review of #15: it had
/// no id, reconnected "from now", and missed what came meanwhile).
async fn a_stream_that_saw_no_change_resumes_from_where_it_started(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let mut stream = open(&sys, &alice, &[]).await;
    assert_eq!(stream.status, 200);
    let first = stream.next_block(WITHIN).await.unwrap().unwrap();
    let start = first.id.expect("the first block names the start");
    drop(stream);
    let missed = write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "meanwhile"})),
    )
    .await;
    let mut resumed = open(&sys, &alice, &[("last-event-id", &start)]).await;
    assert_eq!(
        next_event(&mut resumed).await.json().unwrap()["id"],
        missed["id"]
    );
}

async fn a_stream_ends_when_its_users_tokens_are_revoked(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let mut stream = open(&sys, &alice, &[]).await;
    assert_eq!(stream.status, 200);
    // Tokens are cut at whole seconds: the change must come after this one's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let changed = sys
        .post(
            &sys.auth.client,
            "/v1/users/me/password",
            Some(&alice),
            json!({"current_password": "correct horse", "new_password": "new password 1"}),
        )
        .await;
    assert_eq!(changed.status, 204);
    let started = tokio::time::Instant::now();
    // Comments and events may still come; then the end, within the window
    // (plus one recheck).
    let limit = REVOCATION_WINDOW + Duration::from_secs(1);
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match stream.next_block(left).await {
            Ok(None) => break,
            Ok(Some(_)) => continue,
            Err(error) => panic!("the stream did not end within {limit:?}: {error}"),
        }
    }
}

async fn an_api_token_with_events_read_follows_the_stream_until_it_is_revoked(
    deployment: Deployment,
) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let make = |scopes: Value| {
        let alice = alice.clone();
        let sys = &sys;
        async move {
            let body =
                json!({"name": "feed", "scopes": scopes, "current_password": "correct horse"});
            let made = sys
                .post(&sys.auth.client, "/v1/api-tokens", Some(&alice), body)
                .await;
            assert_eq!(made.status, 201, "{:?}", made.body);
            let made = made.json().unwrap();
            (
                made["id"].as_str().unwrap().to_owned(),
                made["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    // Without events:read: refused before any stream starts.
    let (_, reader) = make(json!(["tasks:read"])).await;
    let refused = open(&sys, &reader, &[]).await;
    assert_eq!(refused.status, 403);
    let (id, follower) = make(json!(["events:read", "tasks:read", "projects:read"])).await;
    let mut stream = open(&sys, &follower, &[]).await;
    assert_eq!(stream.status, 200);
    write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "Heard"})),
    )
    .await;
    let event = next_event(&mut stream).await;
    assert_eq!(event.event.as_deref(), Some("task.created"), "{event:?}");
    // Revoked: the stream ends within the window (and one recheck).
    let revoked = sys
        .auth
        .client
        .json(
            Method::DELETE,
            &format!("/v1/api-tokens/{id}"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(revoked.status, 204);
    let started = tokio::time::Instant::now();
    let limit = REVOCATION_WINDOW + Duration::from_secs(1);
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match stream.next_block(left).await {
            Ok(None) => break,
            Ok(Some(_)) => continue,
            Err(error) => panic!("the stream did not end within {limit:?}: {error}"),
        }
    }
}

async fn bad_event_requests_are_refused_and_streams_are_capped_per_user(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "one"})),
    )
    .await;
    let alices = sys
        .tasks
        .client
        .json(Method::GET, "/v1/changes", Some(&alice), None)
        .await
        .unwrap()
        .json()
        .unwrap()["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    let refused = |path: &str, token: Option<&str>, header: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization".to_owned(), auth.clone()));
        }
        if let Some(id) = header {
            headers.push(("last-event-id".to_owned(), id.to_owned()));
        }
        let (client, path) = (sys.tasks.client.clone(), path.to_owned());
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let reply = client
                .send(Method::GET, &path, &headers, None)
                .await
                .unwrap();
            (reply.status.as_u16(), reply.json().unwrap_or(Value::Null))
        }
    };
    let (status, _) = refused("/v1/events", None, None).await;
    assert_eq!(status, 401);
    // Not a cursor, and alice's cursor with bob's token: 400 naming where
    // the cursor came from.
    for (id, field) in [
        ("not a cursor", "Last-Event-ID"),
        (alices.as_str(), "Last-Event-ID"),
    ] {
        let (status, problem) = refused("/v1/events", Some(&bob), Some(id)).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, problem) = refused(&format!("/v1/events?since={alices}"), Some(&bob), None).await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "since", "{problem}");
    let (status, problem) = refused("/v1/events?after=1", Some(&alice), None).await;
    assert_eq!(status, 400, "{problem}");
    let head = sys
        .tasks
        .client
        .send(
            Method::HEAD,
            "/v1/events",
            &[("authorization", &format!("Bearer {alice}"))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(head.status, 405);

    // Eight streams at once; the ninth waits for one to close.
    let mut open_streams = Vec::new();
    for _ in 0..8 {
        let stream = open(&sys, &alice, &[]).await;
        assert_eq!(stream.status, 200);
        open_streams.push(stream);
    }
    let ninth = open(&sys, &alice, &[]).await;
    assert_eq!(ninth.status, 429);
    assert!(ninth.headers.contains_key("retry-after"));
    // Bob's allowance is his own.
    assert_eq!(open(&sys, &bob, &[]).await.status, 200);
    open_streams.pop();
    let mut again = None;
    for _ in 0..50 {
        let stream = open(&sys, &alice, &[]).await;
        if stream.status == 200 {
            again = Some(stream);
            break;
        }
        // The closed stream's end is noticed by its pump, not at once.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed stream's place is not given back");
}

mod bounds {
    use super::*;
    on_both_backends!(
        a_stream_ends_at_shutdown_without_holding_it_up,
        a_client_that_stops_reading_loses_its_connection,
    );
}

async fn a_stream_ends_at_shutdown_without_holding_it_up(deployment: Deployment) {
    let Some(mut sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let mut stream = open(&sys, &alice, &[]).await;
    assert_eq!(stream.status, 200);
    // The shutdown grace is 30 s: a stream that held the server would
    // keep it that long.
    tokio::time::timeout(Duration::from_secs(5), sys.tasks.shutdown())
        .await
        .expect("the live stream held up the shutdown");
    loop {
        match stream.next_block(Duration::from_secs(1)).await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(todo_testkit::ClientError::Http(_)) => break,
            Err(error) => panic!("the stream did not end: {error}"),
        }
    }
}

/// A client that opens a stream and stops reading holds at most what the
/// socket buffers and the stream's small backlog take; when the backlog
/// waits longer than its limit, the server drops the connection.
async fn a_client_that_stops_reading_loses_its_connection(deployment: Deployment) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(sys.tasks.addr).await.unwrap();
    let mut tls = crate::harness::tls_connector(&sys)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "GET /v1/events HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {alice}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();

    // Some megabytes of events that nobody reads.
    let task = write(
        &sys,
        Method::POST,
        "/v1/tasks",
        &alice,
        Some(json!({"title": "big"})),
    )
    .await;
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    for n in 0..600 {
        let description = format!("{n:04}").repeat(2400);
        write(
            &sys,
            Method::PATCH,
            &path,
            &alice,
            Some(json!({"description": description})),
        )
        .await;
    }
    // The stream ends, once the buffers are full and an event has waited
    // its 10 s: seen in the metrics, not slept for, since how far behind
    // the writes the stream's reads of the log run depends on the load.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = sys
            .tasks
            .client
            .json(Method::GET, "/metrics", None, None)
            .await
            .unwrap();
        let text = String::from_utf8(metrics.body.to_vec()).unwrap();
        if text.lines().any(|line| line == "todo_http_live_streams 0") {
            assert!(
                text.lines()
                    .any(|line| line == "todo_http_live_streams_stalled_total 1"),
                "the stream ended, but not for its stalled client: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream of a client that stopped reading is still open: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Dropped: what was buffered drains, then the connection ends at once.
    // Kept, the read would wait for more after it (the stream's end, then
    // the connection's idle deadline, 10 s).
    let mut sink = vec![0u8; 64 * 1024];
    let mut drained = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tls.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection stayed open after {drained} bytes"
    );
    // Far less than the 600 events (about 6 MB) that were made.
    assert!(
        drained < 6_000_000,
        "{drained} bytes were held for the client"
    );
}
