//! The gateway with several instances, as the real binaries: nginx
//! (`deploy/nginx/todo.conf`) in front of two auth-servers and two
//! task-servers on one PostgreSQL, each task-server running its webhook
//! worker and its relay to RabbitMQ (claiming work in the database). Alice
//! writes through the gateway and through each task-server while Bob
//! writes through the gateway too: each of her changes reaches her live
//! streams on both instances and through the gateway within a second, so
//! each reaches a stream on an instance that did not take it
//! (LISTEN/NOTIFY); her webhook once and the broker once, in order; none
//! of Bob's reaches her streams or her webhook.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use todo_server::TlsIdentity;
use todo_store::testing::TestDatabase;
use todo_testkit::Client;
use todo_testkit::broker::Consumer;
use todo_testkit::gateway::Gateway;

use common::{Received, Running, receiver, register, run, token};

const PASSWORD: &str = "correct horse";
const WRITES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_each_change_reaches_every_channel_once() {
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

    // Behind the gateway the servers speak plain HTTP and believe its
    // X-Forwarded-For. The second auth-server reads the signing key the
    // first one wrote.
    let behind = ["--plain-http", "--trusted-proxies", "127.0.0.1"];
    let auth = [
        Running::start("auth-server", &data, url, "127.0.0.1:0", &behind),
        Running::start("auth-server", &data, url, "127.0.0.1:0", &behind),
    ];
    let amqp = broker.url();
    let task_server = |auth: &Running| {
        let jwks = format!("http://{}/.well-known/jwks.json", auth.addr);
        let mut args = behind.to_vec();
        args.extend([
            "--jwks-url",
            &jwks,
            "--webhooks-allow-private",
            "--webhook-ca-file",
            receiver_ca.to_str().unwrap(),
            "--amqp-url",
            &amqp,
        ]);
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
    let [one, two] = [
        Client::plain(instances[0].addr),
        Client::plain(instances[1].addr),
    ];
    register(&edge, "alice", PASSWORD).await;
    register(&edge, "bob", PASSWORD).await;
    let alice = token(&edge, "alice", PASSWORD).await;
    let bob = token(&edge, "bob", PASSWORD).await;

    let hook = edge
        .json(
            Method::POST,
            "/v1/webhooks",
            Some(&alice),
            Some(&json!({"url": format!("https://localhost:{port}/hook")})),
        )
        .await
        .unwrap();
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    // Alice's live streams: on each instance directly, so that every write
    // (whichever instance takes it) reaches a stream on the other one, and
    // through the gateway (on whichever instance nginx chose).
    let bearer = format!("Bearer {alice}");
    let mut streams = Vec::new();
    for (name, client) in [
        ("instance 1", &one),
        ("instance 2", &two),
        ("the gateway", &edge),
    ] {
        let stream = client
            .stream("/v1/events", &[("authorization", bearer.as_str())])
            .await
            .unwrap();
        assert_eq!(stream.status, 200, "{name}");
        streams.push((name, stream));
    }

    let mut alices = Vec::new();
    let mut bobs = HashSet::new();
    let ways = [
        ("instance 1", &one),
        ("instance 2", &two),
        ("the gateway", &edge),
    ];
    for n in 0..WRITES {
        // Bob's first, through the gateway.
        let created = edge
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
        // Alice's through each way in turn.
        let (way, through) = ways[n % ways.len()];
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
        for (name, stream) in &mut streams {
            let event = stream
                .next_event(Duration::from_secs(5))
                .await
                .unwrap()
                .expect("the stream goes on");
            let took = answered.elapsed();
            let change = event.json().unwrap();
            assert_eq!(change["object"]["id"], id.as_str(), "{name}: {change}");
            assert!(
                took < Duration::from_secs(1),
                "alice {n} (through {way}) reached her stream on {name} after {took:?}"
            );
        }
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
    let owners = |list: &[&(String, u64, String)]| -> HashSet<String> {
        list.iter().map(|(owner, _, _)| owner.clone()).collect()
    };
    let (her_owner, his_owner) = (owners(&hers), owners(&theirs));
    assert_eq!(her_owner.len(), 1, "hers all name her: {her_owner:?}");
    assert_eq!(his_owner.len(), 1, "his all name him: {his_owner:?}");
    assert_ne!(her_owner, his_owner);
    // (numbers are the whole log's: his rise, each once)
    let seqs: Vec<u64> = theirs.iter().map(|(_, seq, _)| *seq).collect();
    assert_eq!(seqs.len(), WRITES);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "his, in order: {seqs:?}"
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
