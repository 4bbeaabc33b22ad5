//! Reminders as the real binaries fire them: nginx in front of two
//! auth-servers and two task-servers on one PostgreSQL, every task-server
//! looking for due reminders every second. Each reminder of a shared
//! project's task reaches each member's changes once, as `reminder.due`,
//! however many instances look; one due while every task-server is down
//! (killed, then started again after its time) fires once after the
//! restart, and none fires twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use todo_server::TlsIdentity;
use todo_store::testing::TestDatabase;
use todo_testkit::Client;
use todo_testkit::gateway::Gateway;

use common::{Running, register, run, token};

const PASSWORD: &str = "correct horse";

/// RFC 3339 for `from_now` after now (the servers' clock).
fn in_a_while(from_now: Duration) -> String {
    use todo_core::Clock as _;
    todo_auth::SystemClock
        .now()
        .saturating_add(from_now)
        .to_string()
}

/// How many `reminder.due` changes each task has in the caller's changes.
async fn reminders_seen(client: &Client, token: &str) -> HashMap<String, usize> {
    let reply = client
        .json(Method::GET, "/v1/changes?limit=100", Some(token), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let mut seen = HashMap::new();
    for item in reply.json().unwrap()["items"].as_array().unwrap() {
        if item["type"] == "reminder.due" {
            *seen
                .entry(item["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_fire_once_across_instances_and_after_a_restart() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let todo_store::DatabaseUrl::Postgres(url) = &database.config.url else {
        unreachable!("a PostgreSQL database");
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrated = run("auth-server", &data, url, &["migrate"], "");
    assert!(migrated.status.success(), "{migrated:?}");
    let behind = ["--plain-http", "--trusted-proxies", "127.0.0.1"];
    let auth = [
        Running::start("auth-server", &data, url, "127.0.0.1:0", &behind),
        Running::start("auth-server", &data, url, "127.0.0.1:0", &behind),
    ];
    let task_server = |auth: &Running| {
        let jwks = format!("http://{}/.well-known/jwks.json", auth.addr);
        let mut args = behind.to_vec();
        args.extend(["--jwks-url", &jwks]);
        Running::start("task-server", &data, url, "127.0.0.1:0", &args)
    };
    let instances = [task_server(&auth[0]), task_server(&auth[1])];
    let edge_dir = dir.path().join("gateway");
    std::fs::create_dir(&edge_dir).unwrap();
    TlsIdentity::self_signed_in(&edge_dir, &["localhost".to_owned()]).unwrap();
    let gateway = Gateway::start(
        &edge_dir,
        &[auth[0].addr, auth[1].addr],
        &[instances[0].addr, instances[1].addr],
    );
    let edge =
        Client::https_with_ca_file(gateway.addr, "localhost", &edge_dir.join("tls-cert.pem"))
            .unwrap();
    register(&edge, "alice", PASSWORD).await;
    register(&edge, "bob", PASSWORD).await;
    register(&edge, "eve", PASSWORD).await;
    let alice = token(&edge, "alice", PASSWORD).await;
    let bob = token(&edge, "bob", PASSWORD).await;
    let eve = token(&edge, "eve", PASSWORD).await;
    let garden = edge
        .json(
            Method::POST,
            "/v1/projects",
            Some(&alice),
            Some(&json!({"name": "Garden"})),
        )
        .await
        .unwrap();
    assert_eq!(garden.status, 201);
    let garden = garden.json().unwrap()["id"].as_str().unwrap().to_owned();
    let share = json!({"role": "editor"});
    let shared = edge
        .json(
            Method::PUT,
            &format!("/v1/projects/{garden}/members/bob"),
            Some(&alice),
            Some(&share),
        )
        .await
        .unwrap();
    assert_eq!(shared.status, 200);

    // Five tasks reminded 4 s from now, one 14 s from now (due while every
    // task-server is down), one already done (never reminded).
    let mut soon = Vec::new();
    let create = |body: Value| {
        let edge = &edge;
        let alice = &alice;
        async move {
            let reply = edge
                .json(Method::POST, "/v1/tasks", Some(alice), Some(&body))
                .await
                .unwrap();
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            reply.json().unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    for n in 0..5 {
        soon.push(
            create(json!({
                "title": format!("Water bed {n}"),
                "project_id": garden,
                "reminders": [{"at": in_a_while(Duration::from_secs(4))}],
            }))
            .await,
        );
    }
    let later = create(json!({
        "title": "Harvest",
        "project_id": garden,
        "due_at": in_a_while(Duration::from_secs(74)),
        "reminders": [{"before_due": "PT1M"}],
    }))
    .await;
    let finished = create(json!({
        "title": "Already done",
        "project_id": garden,
        "done": true,
        "reminders": [{"at": in_a_while(Duration::from_secs(4))}],
    }))
    .await;

    // Both instances look every second: each reminder reaches each member
    // once, and no one else.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (who, token) in [("alice", &alice), ("bob", &bob)] {
        let seen = reminders_seen(&edge, token).await;
        for task in &soon {
            assert_eq!(seen.get(task), Some(&1), "{who}: {seen:?}");
        }
        assert_eq!(seen.get(&later), None, "{who}: not yet");
        assert_eq!(seen.get(&finished), None, "{who}: a done task");
    }
    assert!(reminders_seen(&edge, &eve).await.is_empty());

    // Every task-server goes down, hard, before Harvest's reminder (14 s
    // after it was made) and comes back after it: it fires then, once.
    for mut instance in instances {
        instance.kill_9();
    }
    tokio::time::sleep(Duration::from_secs(9)).await;
    let back = [task_server(&auth[0]), task_server(&auth[1])];
    let direct = Client::plain(back[0].addr);
    let mut seen = HashMap::new();
    for _ in 0..50 {
        seen = reminders_seen(&direct, &bob).await;
        if seen.contains_key(&later) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.get(&later), Some(&1), "{seen:?}");
    // And nothing fires again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for token in [&alice, &bob] {
        let seen = reminders_seen(&Client::plain(back[1].addr), token).await;
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    }
}
