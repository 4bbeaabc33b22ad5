//! Webhooks on the real binary (`todo`, SQLite): a receiver of ours over
//! HTTPS gets each change signed as Standard Webhooks do, a failure is
//! retried with the same message id, a receiver that was down gets every
//! change written meanwhile, once and in order; the delivery log shows the
//! attempts;
//! and, with the default policy, targets that are not public, not https or
//! too long are refused with 400 naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use todo_testkit::Client;

use common::{Running, next, receiver, register, slow_receiver, token};

const PASSWORD: &str = "correct horse";

fn sqlite(data: &std::path::Path) -> String {
    format!("sqlite://{}", data.join("todo.db").display())
}

async fn signed_in(server: &Running, data: &std::path::Path) -> (Client, String) {
    let client = server.client(data);
    register(&client, "alice", PASSWORD).await;
    let access = token(&client, "alice", PASSWORD).await;
    (client, access)
}

/// Creates a task titled `title` as the holder of `access` (201), and
/// answers its id.
async fn new_task(client: &Client, access: &str, title: &str) -> String {
    let created = client
        .json(
            Method::POST,
            "/v1/tasks",
            Some(access),
            Some(&json!({ "title": title })),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    created.json().unwrap()["id"].as_str().unwrap().to_owned()
}

/// `todo` on SQLite, allowed to send to a receiver of ours that answers
/// `answers` (then 200), each `delay` after the request; Alice signed in.
struct Hooked {
    _server: Running,
    client: Client,
    alice: String,
    /// The receiver's port on loopback (a certificate for `localhost`).
    port: u16,
    deliveries: tokio::sync::mpsc::UnboundedReceiver<common::Received>,
}

async fn hooked(dir: &std::path::Path, answers: Vec<u16>, delay: Duration) -> Hooked {
    let data = dir.join("data");
    let (port, deliveries) = slow_receiver(&dir.join("receiver"), answers, delay).await;
    let ca = dir.join("receiver/tls-cert.pem");
    let server = Running::start(
        "todo",
        &data,
        &sqlite(&data),
        "127.0.0.1:0",
        &[
            "--webhooks-allow-private",
            "--webhook-ca-file",
            ca.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let (client, alice) = signed_in(&server, &data).await;
    Hooked {
        _server: server,
        client,
        alice,
        port,
        deliveries,
    }
}

impl Hooked {
    /// Alice's new webhook to the receiver at `path`, as created (201).
    async fn webhook(&self, path: &str) -> Value {
        let created = self
            .client
            .json(
                Method::POST,
                "/v1/webhooks",
                Some(&self.alice),
                Some(&json!({"url": format!("https://localhost:{}{path}", self.port)})),
            )
            .await
            .unwrap();
        assert_eq!(created.status, 201, "{:?}", created.body);
        created.json().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_receiver_signed_and_failures_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let hooked = hooked(dir.path(), vec![500], Duration::ZERO).await;
    let webhook = hooked.webhook("/hook?from=todo").await;
    let Hooked {
        _server: server,
        client,
        alice,
        mut deliveries,
        ..
    } = hooked;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        webhook["events"],
        json!([
            "task.created",
            "task.updated",
            "task.deleted",
            "reminder.due",
            "project.created",
            "project.updated",
            "project.deleted",
            "member.added",
            "member.removed"
        ])
    );
    // The secret is shown once.
    let listed = client
        .json(Method::GET, "/v1/webhooks", Some(&alice), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["items"][0]["id"], webhook["id"]);
    assert!(listed["items"][0].get("secret").is_none());

    let task_id = new_task(&client, &alice, "Tell the hook").await;
    // First attempt: answered 500.
    let first = next(&mut deliveries, Duration::from_secs(10)).await;
    // While the receiver is down (its retry waits 5 s), Alice goes on: an
    // update, another creation and its deletion.
    let mut written = vec![("task.created", task_id.clone())];
    let done = client
        .json(
            Method::PATCH,
            &format!("/v1/tasks/{task_id}"),
            Some(&alice),
            Some(&json!({"done": true})),
        )
        .await
        .unwrap();
    assert_eq!(done.status, 200);
    written.push(("task.updated", task_id.clone()));
    let other = new_task(&client, &alice, "Written while it was down").await;
    written.push(("task.created", other.clone()));
    let gone = client
        .json(
            Method::DELETE,
            &format!("/v1/tasks/{other}"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(gone.status, 204);
    written.push(("task.deleted", other));
    // Then again, after the first wait (5 s), with the same message id.
    let second = next(&mut deliveries, Duration::from_secs(15)).await;
    for received in [&first, &second] {
        let id = received.headers["webhook-id"].to_str().unwrap();
        let timestamp: i64 = received.headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let signature = received.headers["webhook-signature"].to_str().unwrap();
        let expected = todo_auth::webhook_signature(
            &todo_core::WebhookSecret::parse_stored(secret.clone()).unwrap(),
            id,
            timestamp,
            &received.body,
        );
        assert_eq!(signature, expected, "signed with the webhook's secret");
        let body: Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(body["type"], "task.created");
        assert_eq!(body["data"]["id"], task_id.as_str());
        assert_eq!(body["data"]["object"]["title"], "Tell the hook");
        assert_eq!(received.headers["content-type"], "application/json");
    }
    assert_eq!(first.headers["webhook-id"], second.headers["webhook-id"]);
    // Back up, the receiver gets everything written meanwhile, once each,
    // in order, and nothing more.
    let mut after = vec![second];
    while after.len() < written.len() {
        after.push(next(&mut deliveries, Duration::from_secs(10)).await);
    }
    let got: Vec<(String, String)> = after
        .iter()
        .map(|received| {
            let body: Value = serde_json::from_slice(&received.body).unwrap();
            let kind = body["type"].as_str().unwrap().to_owned();
            (kind, body["data"]["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let wanted: Vec<(String, String)> = written
        .iter()
        .map(|(kind, id)| ((*kind).to_owned(), id.clone()))
        .collect();
    assert_eq!(got, wanted);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), deliveries.recv())
            .await
            .is_err(),
        "a change was sent twice"
    );

    // The log: the success, then the failure (newest first).
    let path = format!(
        "/v1/webhooks/{}/deliveries",
        webhook["id"].as_str().unwrap()
    );
    let mut log = Value::Null;
    for _ in 0..50 {
        log = client
            .json(Method::GET, &path, Some(&alice), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        if log["items"]
            .as_array()
            .is_some_and(|items| items.len() == 5)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    let (ok, failed) = (json!(200), json!(500));
    assert_eq!(statuses, [&ok, &ok, &ok, &ok, &failed], "{log}");
    assert_eq!(log["items"][4]["error"], "answered 500");
    // The worker's metrics count them, and hold no place once done.
    let scraper = Client::plain(server.metrics_address());
    let mut text = String::new();
    for _ in 0..50 {
        let scraped = scraper
            .json(Method::GET, "/metrics", None, None)
            .await
            .unwrap();
        text = String::from_utf8(scraped.body.to_vec()).unwrap();
        if text.contains("\ntodo_webhook_places_busy 0\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in [
        "todo_webhook_deliveries_total 4",
        "todo_webhook_failures_total 1",
        "todo_webhook_places_busy 0",
        // (the live streams' gauges reach `todo`'s one scrape too)
        "todo_http_live_streams 0",
        "todo_http_live_streams_stalled_total 0",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line}: {text}");
    }

    // Deleted: nothing more is sent.
    let deleted = client
        .json(
            Method::DELETE,
            &format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(deleted.status, 204);
    new_task(&client, &alice, "Unheard").await;
    assert!(
        tokio::time::timeout(Duration::from_secs(3), deliveries.recv())
            .await
            .is_err(),
        "a deleted webhook was sent a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_private_plain_or_overlong_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start("todo", &data, &sqlite(&data), "127.0.0.1:0", &[]);
    let (client, alice) = signed_in(&server, &data).await;
    register(&client, "bob", PASSWORD).await;
    let bob = token(&client, "bob", PASSWORD).await;
    let long = format!("https://example.com/{}", "a".repeat(2100));
    // Each refusal after a name lookup spends the user's creation
    // allowance (5 at once): the cases go to two users in turn.
    for (n, (url, events)) in [
        ("https://127.0.0.1/hook", None),
        ("https://localhost:8443/hook", None),
        ("https://10.1.2.3/hook", None),
        ("https://169.254.169.254/latest/meta-data", None),
        ("https://[::1]/hook", None),
        ("https://[::ffff:127.0.0.1]/hook", None),
        ("http://example.com/hook", None),
        ("https://user:pw@example.com/hook", None),
        ("https://example.com:22/hook", None),
        (long.as_str(), None),
        ("https://example.com/hook", Some(json!(["task.exploded"]))),
    ]
    .into_iter()
    .enumerate()
    {
        let user = if n % 2 == 0 { &alice } else { &bob };
        let mut body = json!({"url": url});
        if let Some(events) = events {
            body["events"] = events;
        }
        let refused = client
            .json(Method::POST, "/v1/webhooks", Some(user), Some(&body))
            .await
            .unwrap();
        assert_eq!(refused.status, 400, "{url}: {:?}", refused.body);
        let problem = refused.json().unwrap();
        let field = if body.get("events").is_some() {
            "events"
        } else {
            "url"
        };
        assert_eq!(problem["errors"][0]["field"], field, "{url}: {problem}");
    }
    // Someone else's webhook, or none: 404.
    let other = "/v1/webhooks/01890a5d-ac96-774b-bcce-b302099a8057";
    let missing = client
        .json(Method::DELETE, other, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let missing = client
        .json(
            Method::GET,
            &format!("{other}/deliveries"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    // Lookups past the allowance: 429, the name never looked up.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let refused = client
            .json(
                Method::POST,
                "/v1/webhooks",
                Some(&alice),
                Some(&json!({"url": "https://127.0.0.1/again"})),
            )
            .await
            .unwrap();
        statuses.push(refused.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let unknown = client
        .json(Method::GET, "/v1/webhooks?x=1", Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(unknown.status, 400, "an unknown query parameter");
    let anonymous = client
        .json(Method::GET, "/v1/webhooks", None, None)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

/// One user's receiver that answers 200 after 8 s, with 20 changes to
/// take, does not hold up another user's webhook (attack of #15: the
/// worker delivered in rounds, and a slow receiver held each round for
/// up to 100 s, every webhook of the instance behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_does_not_hold_up_other_users_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (slow_port, mut slow) =
        slow_receiver(&dir.path().join("slow"), vec![], Duration::from_secs(8)).await;
    let (fast_port, mut fast) = receiver(&dir.path().join("fast"), vec![]).await;
    // Both receivers' certificates, in one file.
    let mut roots = std::fs::read_to_string(dir.path().join("slow/tls-cert.pem")).unwrap();
    roots.push_str(&std::fs::read_to_string(dir.path().join("fast/tls-cert.pem")).unwrap());
    let ca = dir.path().join("roots.pem");
    std::fs::write(&ca, roots).unwrap();
    let server = Running::start(
        "todo",
        &data,
        &sqlite(&data),
        "127.0.0.1:0",
        &[
            "--webhooks-allow-private",
            "--webhook-ca-file",
            ca.to_str().unwrap(),
        ],
    );
    let client = server.client(&data);
    let mut tokens = Vec::new();
    for (name, port) in [("alice", slow_port), ("bob", fast_port)] {
        register(&client, name, PASSWORD).await;
        let access = token(&client, name, PASSWORD).await;
        let hook = client
            .json(
                Method::POST,
                "/v1/webhooks",
                Some(&access),
                Some(&json!({"url": format!("https://localhost:{port}/hook")})),
            )
            .await
            .unwrap();
        assert_eq!(hook.status, 201, "{:?}", hook.body);
        tokens.push(access);
    }
    for n in 0..20 {
        new_task(&client, &tokens[0], &format!("alice {n}")).await;
    }
    // Her receiver is busy with the first of them.
    next(&mut slow, Duration::from_secs(10)).await;
    new_task(&client, &tokens[1], "bob's").await;
    let written = std::time::Instant::now();
    let delivered = next(&mut fast, Duration::from_secs(30)).await;
    let took = written.elapsed();
    let body: Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(body["data"]["object"]["title"], "bob's");
    assert!(
        took < Duration::from_secs(4),
        "bob's webhook waited {took:?} behind alice's slow receiver"
    );
}

/// A receiver is given 10 s for an attempt (the contract's figure), then the
/// attempt is counted as failed: one that reads the delivery and would
/// answer only after 12 s is logged as a timeout after 10 s, and the
/// webhook is failing from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_is_given_ten_seconds_then_counted_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    // It reads each delivery, and would answer 12 s later.
    let hooked = hooked(dir.path(), vec![], Duration::from_secs(12)).await;
    let created = hooked.webhook("/hook").await;
    let Hooked {
        _server,
        client,
        alice,
        mut deliveries,
        ..
    } = hooked;
    let log_path = format!(
        "/v1/webhooks/{}/deliveries",
        created["id"].as_str().unwrap()
    );
    new_task(&client, &alice, "Slow to hear").await;
    let first = next(&mut deliveries, Duration::from_secs(10)).await;
    let sent = std::time::Instant::now();
    let mut log = Value::Null;
    while sent.elapsed() < Duration::from_secs(20) {
        log = client
            .json(Method::GET, &log_path, Some(&alice), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        if log["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let attempt = &log["items"][0];
    assert_eq!(attempt["error"], "timeout", "{log}");
    assert_eq!(attempt["status"], Value::Null, "{log}");
    let took = attempt["latency_ms"].as_u64().unwrap();
    assert!((10_000..11_000).contains(&took), "{log}");
    // Counted as failed: the webhook is failing since that attempt (its
    // change waits to be sent again, as the same message, after a backoff
    // and the slow receiver's cool-down: 40 s and more).
    let listed = client
        .json(Method::GET, "/v1/webhooks", Some(&alice), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(listed["items"][0]["failing_since"].is_string(), "{listed}");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), deliveries.recv())
            .await
            .is_err(),
        "sent again at once"
    );
    assert!(first.headers.contains_key("webhook-id"));
}

/// A lease starts no delivery after it has run 10 s, so a slow receiver
/// holds one of the worker's places for that budget and one delivery at
/// most: with a receiver answering each delivery in 4 s and five changes
/// waiting, a lease sends three (started at 0, 4 and 8 s) and leaves the
/// rest to a later lease (after the slow receiver's cool-down, 48 s on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_starts_no_delivery_after_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let hooked = hooked(dir.path(), vec![], Duration::from_secs(4)).await;
    hooked.webhook("/hook").await;
    let Hooked {
        _server,
        client,
        alice,
        mut deliveries,
        ..
    } = hooked;
    // The first lease sends the first change; its 4 s make the webhook
    // wait (16 s) while five more changes are written.
    new_task(&client, &alice, "task 0").await;
    let title = |delivery: &common::Received| -> String {
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        body["data"]["object"]["title"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        title(&next(&mut deliveries, Duration::from_secs(10)).await),
        "task 0"
    );
    for n in 1..=5 {
        new_task(&client, &alice, &format!("task {n}")).await;
    }
    // The next lease: three deliveries, 4 s apart, then none for the
    // rest of the 20 s (without the budget the fourth would come at 12 s).
    let second = next(&mut deliveries, Duration::from_secs(40)).await;
    let leased = std::time::Instant::now();
    let mut sent = vec![(title(&second), Duration::ZERO)];
    while let Ok(Some(delivery)) =
        tokio::time::timeout_at((leased + Duration::from_secs(20)).into(), deliveries.recv()).await
    {
        sent.push((title(&delivery), leased.elapsed()));
    }
    let titles: Vec<&str> = sent.iter().map(|(title, _)| title.as_str()).collect();
    assert_eq!(titles, ["task 1", "task 2", "task 3"], "{sent:?}");
    assert!(sent[2].1 >= Duration::from_secs(8), "{sent:?}");
}
