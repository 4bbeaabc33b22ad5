//! Several instances, as the real binaries: an auth-server and two
//! task-servers on one PostgreSQL, each task-server running its webhook
//! worker and its relay to RabbitMQ (claiming work in the database). Alice
//! writes through either instance while Bob writes too: each of her
//! changes reaches her live stream on the other instance within a second
//! (LISTEN/NOTIFY), her webhook once, and the broker once, in order; none
//! of Bob's reaches her stream or her webhook.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use todo_store::testing::TestDatabase;
use todo_testkit::broker::Consumer;

use common::{Received, Running, receiver, register, run, token};

const PASSWORD: &str = "correct horse";
const WRITES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_reaches_every_channel_once_whichever_instance_took_it() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let Some(broker) = todo_testkit::broker::start() else {
        return;
    };
    let todo_store::DatabaseUrl::Postgres(url) = &database.config.url else {
        unreachable!("a PostgreSQL database");
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrated = run("auth-server", &data, url, &["migrate"], "");
    assert!(migrated.status.success(), "{migrated:?}");
    let (port, mut deliveries) = receiver(&dir.path().join("receiver"), vec![]).await;
    let receiver_ca = dir.path().join("receiver/tls-cert.pem");
    let channel = Consumer::bind(&broker.url(), "todo.changes", "instances").await;

    let auth = Running::start("auth-server", &data, url, "127.0.0.1:0", &[]);
    let jwks = format!(
        "https://localhost:{}/.well-known/jwks.json",
        auth.addr.port()
    );
    let ca = data.join("tls-cert.pem");
    let amqp = broker.url();
    let task_server = || {
        Running::start(
            "task-server",
            &data,
            url,
            "127.0.0.1:0",
            &[
                "--jwks-url",
                &jwks,
                "--jwks-ca-file",
                ca.to_str().unwrap(),
                "--webhooks-allow-private",
                "--webhook-ca-file",
                receiver_ca.to_str().unwrap(),
                "--amqp-url",
                &amqp,
            ],
        )
    };
    let instances = [task_server(), task_server()];
    let [one, two] = [instances[0].client(&data), instances[1].client(&data)];
    let accounts = auth.client(&data);
    register(&accounts, "alice", PASSWORD).await;
    register(&accounts, "bob", PASSWORD).await;
    let alice = token(&accounts, "alice", PASSWORD).await;
    let bob = token(&accounts, "bob", PASSWORD).await;

    let hook = one
        .json(
            Method::POST,
            "/v1/webhooks",
            Some(&alice),
            Some(&json!({"url": format!("https://localhost:{port}/hook")})),
        )
        .await
        .unwrap();
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    // Alice's live stream on the second instance.
    let bearer = format!("Bearer {alice}");
    let mut stream = two
        .stream("/v1/events", &[("authorization", bearer.as_str())])
        .await
        .unwrap();
    assert_eq!(stream.status, 200);

    let mut alices = Vec::new();
    let mut bobs = HashSet::new();
    for n in 0..WRITES {
        // Bob's first, through the instance that serves Alice's stream.
        let created = two
            .json(
                Method::POST,
                "/v1/tasks",
                Some(&bob),
                Some(&json!({"title": format!("bob {n}")})),
            )
            .await
            .unwrap();
        assert_eq!(created.status, 201);
        bobs.insert(created.json().unwrap()["id"].as_str().unwrap().to_owned());
        // Alice's through each instance in turn.
        let through = if n % 2 == 0 { &one } else { &two };
        let created = through
            .json(
                Method::POST,
                "/v1/tasks",
                Some(&alice),
                Some(&json!({"title": format!("alice {n}")})),
            )
            .await
            .unwrap();
        assert_eq!(created.status, 201);
        let answered = Instant::now();
        let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
        let event = stream
            .next_event(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("the stream goes on");
        let took = answered.elapsed();
        let change = event.json().unwrap();
        assert_eq!(change["object"]["id"], id.as_str(), "{change}");
        assert!(
            took < Duration::from_secs(1),
            "alice {n} (through instance {}) reached the other instance's stream after {took:?}",
            if n % 2 == 0 { 1 } else { 2 }
        );
        alices.push(id);
    }

    // Her webhook: each change once, in order, none of Bob's.
    let mut delivered = Vec::new();
    while delivered.len() < WRITES {
        delivered.push(webhook_task(
            &common::next(&mut deliveries, Duration::from_secs(30)).await,
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(extra) = deliveries.try_recv() {
        delivered.push(webhook_task(&extra));
    }
    assert_eq!(delivered, alices, "each of her changes once, in order");

    // The broker: every change of both once, each user's in order.
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while messages.len() < 2 * WRITES {
        assert!(
            Instant::now() < deadline,
            "{} of {} messages",
            messages.len(),
            2 * WRITES
        );
        drain(&channel, &mut messages).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drain(&channel, &mut messages).await;
    assert_eq!(messages.len(), 2 * WRITES, "each change published once");
    let (theirs, hers): (Vec<_>, Vec<_>) = messages
        .iter()
        .partition(|(_, _, task)| bobs.contains(task));
    let tasks_of = |list: &[&(String, u64, String)]| -> Vec<String> {
        list.iter().map(|(_, _, task)| task.clone()).collect()
    };
    assert_eq!(tasks_of(&hers), alices, "hers, in order");
    let seqs: Vec<u64> = theirs.iter().map(|(_, seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=WRITES as u64).collect::<Vec<_>>(),
        "his, in order"
    );
    assert_eq!(
        theirs
            .iter()
            .map(|(owner, _, _)| owner)
            .collect::<HashSet<_>>()
            .len(),
        1
    );
}

/// The task a webhook delivery is about; fails on a delivery that is not
/// a creation of one of the test's tasks.
fn webhook_task(delivery: &Received) -> String {
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["type"], "task.created", "{body}");
    body["data"]["object"]["id"].as_str().unwrap().to_owned()
}

/// Takes every waiting message as (owner, seq, task id).
async fn drain(channel: &Consumer, into: &mut Vec<(String, u64, String)>) {
    for message in channel.drain().await {
        let task = message.body["data"]["object"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        into.push((message.owner, message.seq, task));
    }
}
