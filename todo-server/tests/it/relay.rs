//! The relay to RabbitMQ against a real broker: two relays (as two
//! instances) publish every change once while the broker is up; the broker
//! killed and started again under a steady write load loses nothing, and
//! each user's changes arrive in the order they committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use todo_auth::{OsRandom, SystemClock};
use todo_core::{
    LogPosition, NewTask, RelayService, TaskPatch, TaskService, TaskStore, Title, UserId,
};
use todo_server::relay::{AmqpTarget, RelayStats, relay_changes};
use todo_store::SqlStore;
use todo_store::testing::TestDatabase;

use todo_testkit::broker::{self, Consumer};

const EXCHANGE: &str = "todo.changes";
const QUEUE: &str = "relay-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_relay_publishes_each_change_once_and_survives_a_broker_crash() {
    relay_survives_a_broker_crash(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_relay_publishes_each_change_once_and_survives_a_broker_crash() {
    if let Some(database) = TestDatabase::postgres() {
        relay_survives_a_broker_crash(database).await;
    }
}

/// One message as the test consumer read it.
type Received = todo_testkit::broker::Relayed;

async fn relay_survives_a_broker_crash(database: TestDatabase) {
    let Some(mut broker) = broker::start() else {
        return;
    };
    let store = database.store.clone();
    let clock = Arc::new(SystemClock);
    let tasks = TaskService::new(Arc::new(store.clone()), clock.clone(), Arc::new(OsRandom));
    let users: Vec<UserId> = ["ada", "grace", "edsger"]
        .into_iter()
        .map(|name| todo_core::testing::a_user(&store, &*clock, name).unwrap())
        .collect();
    // A change made before the relay started is relayed too: the relay
    // starts from the log, not from when it started.
    tasks.create(users[0], titled("before the relay")).unwrap();

    // The consumer's durable queue, bound to every change.
    let channel = Consumer::bind(&broker.url(), EXCHANGE, QUEUE).await;
    // Two relays on two instances of the store (their own pools), as two
    // task-servers would run them.
    let target = AmqpTarget::new(&broker.url(), EXCHANGE).unwrap();
    let second = SqlStore::open(&database.config).unwrap();
    let stats: [Arc<RelayStats>; 2] = [Arc::default(), Arc::default()];
    let relays = [
        relay_changes(
            relay_service(store.clone()),
            target.clone(),
            stats[0].clone(),
        ),
        relay_changes(relay_service(second), target, stats[1].clone()),
    ];

    // Phase 1, the broker up: every change once, in order.
    let writes = write_round(&tasks, &users, 0);
    let expected = streams(&store, &users);
    assert_eq!(
        expected.values().map(Vec::len).sum::<usize>() as u64,
        1 + writes
    );
    let mut received = Vec::new();
    drain_until(&channel, &mut received, &expected, Duration::from_secs(30)).await;
    // Nothing more comes: no change was published twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drain(&channel, &mut received).await;
    let mut seen = HashSet::new();
    for message in &received {
        assert!(
            seen.insert((message.owner.clone(), message.seq)),
            "published twice while the broker was up: {message:?}"
        );
    }
    check_order_and_completeness(&received, &expected);
    // Both relays are connected, and between them confirmed each change once.
    assert!(stats.iter().all(|s| s.connected()), "both relays connected");
    assert_eq!(
        stats.iter().map(|s| s.published()).sum::<u64>(),
        u64::try_from(received.len()).unwrap()
    );
    let first = received
        .iter()
        .find(|m| m.owner == users[0].to_string())
        .unwrap();
    assert_eq!(first.routing_key, "task.created");
    assert_eq!(
        first.message_id,
        format!(
            "{}_{}",
            users[0].as_uuid().simple(),
            expected[&users[0].to_string()][0]
        )
    );
    drop(channel);

    // Phase 2, under a steady load of writes: the broker hangs (it reads
    // and confirms nothing: what the relays publish meanwhile is never
    // stored), crashes, and starts again on its data a few seconds later.
    // A relay that counted a change as relayed once published, not once
    // confirmed, loses what it published into the hung broker.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (tasks, users, writing) = (tasks.clone(), users.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut round = 1;
            while writing.load(Ordering::SeqCst) {
                write_round(&tasks, &users, round);
                round += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let store_for_heads = store.clone();
    let users_for_heads = users.clone();
    let at_crash = streams(&store_for_heads, &users_for_heads);
    let broker = tokio::task::spawn_blocking(move || {
        broker.pause();
        std::thread::sleep(Duration::from_secs(2));
        broker.kill();
        std::thread::sleep(Duration::from_secs(2));
        broker.run();
        broker
    })
    .await
    .unwrap();
    let at_restart = streams(&store, &users);
    tokio::time::sleep(Duration::from_millis(700)).await;
    writing.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(
        at_restart.values().map(Vec::len).sum::<usize>()
            > at_crash.values().map(Vec::len).sum::<usize>() + 10,
        "changes were written while the broker was down: {at_crash:?} -> {at_restart:?}"
    );

    let expected = streams(&store, &users);
    let channel = Consumer::bind(&broker.url(), EXCHANGE, QUEUE).await;
    // After a restart the relays reconnect with backoff (up to 8 s here).
    drain_until(&channel, &mut received, &expected, Duration::from_secs(60)).await;
    check_order_and_completeness(&received, &expected);
    let distinct: HashSet<(&str, u64)> =
        received.iter().map(|m| (m.owner.as_str(), m.seq)).collect();
    eprintln!(
        "relayed {} changes as {} messages ({} written while the broker was down)",
        distinct.len(),
        received.len(),
        at_restart.values().map(Vec::len).sum::<usize>()
            - at_crash.values().map(Vec::len).sum::<usize>()
    );
    for relay in relays {
        relay.abort();
    }
}

fn relay_service(store: SqlStore) -> RelayService {
    let store = Arc::new(store);
    RelayService::new(store.clone(), store, Arc::new(SystemClock))
}

fn titled(title: &str) -> NewTask {
    NewTask::titled(Title::parse(title).unwrap())
}

/// Each user creates a task and completes it: two changes each.
fn write_round(tasks: &TaskService, users: &[UserId], round: u32) -> u64 {
    let mut written = 0;
    for user in users {
        let task = tasks
            .create(*user, titled(&format!("round {round}")))
            .unwrap();
        let patch = TaskPatch {
            done: Some(true),
            ..TaskPatch::default()
        };
        tasks.update(*user, task.id, patch, None).unwrap();
        written += 2;
    }
    written
}

/// The numbers of each user's changes, in order.
fn streams(store: &SqlStore, users: &[UserId]) -> BTreeMap<String, Vec<u64>> {
    users
        .iter()
        .map(|user| {
            let log = store
                .changes_after(*user, LogPosition::START, 100_000)
                .unwrap();
            let numbers = log.changes.iter().map(|c| c.position.get()).collect();
            (user.to_string(), numbers)
        })
        .collect()
}

/// Takes every message waiting, checking that each body says what its
/// headers do.
async fn drain(channel: &Consumer, into: &mut Vec<Received>) {
    for message in channel.drain().await {
        assert_eq!(
            message.body["type"].as_str(),
            Some(message.routing_key.as_str()),
            "{}",
            message.body
        );
        assert!(
            message.body["data"]["cursor"].is_string(),
            "{}",
            message.body
        );
        into.push(message);
    }
}

/// Drains until every change up to `expected` has arrived, or fails.
async fn drain_until(
    channel: &Consumer,
    into: &mut Vec<Received>,
    expected: &BTreeMap<String, Vec<u64>>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        drain(channel, into).await;
        let seen: HashSet<(&str, u64)> = into.iter().map(|m| (m.owner.as_str(), m.seq)).collect();
        let missing = expected
            .iter()
            .flat_map(|(owner, numbers)| numbers.iter().map(move |seq| (owner.as_str(), *seq)))
            .filter(|key| !seen.contains(key))
            .count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} changes never arrived (received {})",
            into.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every change arrived, and each user's first arrivals are in the order
/// the changes committed (a republished change may come again later).
fn check_order_and_completeness(received: &[Received], expected: &BTreeMap<String, Vec<u64>>) {
    for (owner, numbers) in expected {
        let mut firsts = Vec::new();
        let mut seen = HashSet::new();
        for message in received.iter().filter(|m| &m.owner == owner) {
            if seen.insert(message.seq) {
                firsts.push(message.seq);
            }
        }
        assert_eq!(&firsts, numbers, "{owner}'s changes, in order of arrival");
    }
    assert!(
        received.iter().all(|m| expected.contains_key(&m.owner)),
        "only these users' changes"
    );
}

/// amqps: a relay that trusts the broker's certificate (given as an extra
/// root) publishes over TLS; one that does not never connects, and so
/// takes no stream from the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_over_tls_only_to_a_broker_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    todo_server::TlsIdentity::self_signed_in(dir.path(), &["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("tls-cert.pem");
    let key_file = dir.path().join("tls-key.pem");
    let Some(broker) = broker::start_with_tls(&cert_file, &key_file) else {
        return;
    };
    let tls_url = broker.tls_url().unwrap();
    let channel = Consumer::bind(&broker.url(), EXCHANGE, QUEUE).await;
    let database = TestDatabase::sqlite();
    let store = database.store.clone();
    let clock = Arc::new(SystemClock);
    let tasks = TaskService::new(Arc::new(store.clone()), clock.clone(), Arc::new(OsRandom));
    let ada = todo_core::testing::a_user(&store, &*clock, "ada").unwrap();
    tasks.create(ada, titled("over TLS")).unwrap();

    // Not trusted: the Mozilla roots do not hold a self-signed certificate.
    let untrusting = relay_changes(
        relay_service(store.clone()),
        AmqpTarget::new(&tls_url, EXCHANGE).unwrap(),
        Arc::default(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        channel.drain().await.is_empty(),
        "published to an untrusted broker"
    );
    untrusting.abort();

    let pem = std::fs::read_to_string(&cert_file).unwrap();
    let trusting = relay_changes(
        relay_service(store.clone()),
        AmqpTarget::new(&tls_url, EXCHANGE)
            .unwrap()
            .with_extra_roots(pem)
            .unwrap(),
        Arc::default(),
    );
    let expected = streams(&store, &[ada]);
    let mut received = Vec::new();
    drain_until(&channel, &mut received, &expected, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["data"]["object"]["title"], "over TLS");
    trusting.abort();
}
