//! Faults under load, against the real binaries: kill -9 and SIGTERM of
//! task-server while clients write, PostgreSQL stopped and started again
//! under the servers, and a full or read-only disk under SQLite.
//!
//! What each must show (OPERATIONS.md, "When things fail"): no write that
//! was acknowledged is lost, every failure is a quick 503 with Retry-After
//! (never a hang, never a 500), and service comes back by itself.
//!
//! PostgreSQL faults run on a cluster of their own (initdb, pg_ctl: the
//! `postgresql` package), since the test stops it. Disk faults put the
//! SQLite database on a small tmpfs in a private mount namespace (`unshare
//! -rm`, util-linux), which the test fills or remounts read-only while the
//! servers run in that namespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use todo_http::client::{Client, ClientError};

use common::{Running, binary, server_args, token};

// ---------------------------------------------------------------- load

/// What one request of a load got.
#[derive(Debug, Clone)]
struct Outcome {
    title: String,
    write: bool,
    started: Instant,
    elapsed: Duration,
    /// The status, or why there was none.
    answer: Result<u16, String>,
    retry_after: bool,
}

impl Outcome {
    fn finished(&self) -> Instant {
        self.started + self.elapsed
    }
}

/// Clients writing (and, if `reads`, also listing) until `stop` is set.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(
        client: &Client,
        token: &str,
        workers: usize,
        description: usize,
        reads: bool,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let description = "d".repeat(description);
        let workers = (0..workers)
            .map(|w| {
                let (client, token, stop) = (client.clone(), token.to_owned(), stop.clone());
                let description = description.clone();
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let title = format!("w{w}-{n}");
                        let write = !reads || n % 2 == 1;
                        let started = Instant::now();
                        let reply = if write {
                            let body = json!({"title": title, "description": description});
                            client
                                .json(Method::POST, "/v1/tasks", Some(&token), Some(&body))
                                .await
                        } else {
                            client
                                .json(Method::GET, "/v1/tasks?limit=5", Some(&token), None)
                                .await
                        };
                        let elapsed = started.elapsed();
                        let failed = reply.is_err();
                        outcomes.push(Outcome {
                            title,
                            write,
                            started,
                            elapsed,
                            retry_after: reply
                                .as_ref()
                                .is_ok_and(|r| r.headers.contains_key("retry-after")),
                            answer: reply.map(|r| r.status.as_u16()).map_err(|e| describe(&e)),
                        });
                        if failed {
                            // The server is gone: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    outcomes
                })
            })
            .collect();
        Self { stop, workers }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.unwrap());
        }
        all
    }
}

fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Connect(_) => "connect".to_owned(),
        other => other.to_string(),
    }
}

fn acknowledged(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter(|o| o.write && o.answer == Ok(201))
        .map(|o| o.title.as_str())
        .collect()
}

fn summary(outcomes: &[Outcome]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for o in outcomes {
        let key = match &o.answer {
            Ok(status) => format!("{} {status}", if o.write { "POST" } else { "GET" }),
            Err(e) => format!("error: {e}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// Waits until at least `count` writes of the running load were answered.
async fn until_acknowledged(client: &Client, token: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_titles(client, token).await.len() < count {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every task title the user has, walking the pages.
async fn stored_titles(client: &Client, token: &str) -> HashMap<String, String> {
    let mut titles = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=100&cursor={c}"),
            None => "/v1/tasks?limit=100".to_owned(),
        };
        let reply = client
            .json(Method::GET, &path, Some(token), None)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let page = reply.json().unwrap();
        for item in page["items"].as_array().unwrap() {
            titles.insert(
                item["title"].as_str().unwrap().to_owned(),
                item["id"].as_str().unwrap().to_owned(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return titles,
        }
    }
}

// ---------------------------------------------------------------- systems

/// auth-server and task-server on one database, and a user's token.
struct System {
    data: PathBuf,
    auth: Running,
    tasks: Running,
    token: String,
}

/// How to launch a server: directly, or inside a mount namespace.
type Launcher<'a> = &'a dyn Fn(&str) -> Command;

fn direct(name: &str) -> Command {
    Command::new(binary(name))
}

impl System {
    async fn start(data: &Path, url: &str, extra: &[&str], launch: Launcher<'_>) -> Self {
        let mut auth = launch("auth-server");
        auth.args(server_args(data, url, "127.0.0.1:0")).args(extra);
        let auth = Running::spawn("auth-server", auth);
        let auth_client = auth.client(data);
        let register = json!({"username": "alice", "password": "correct horse"});
        let registered = auth_client
            .json(Method::POST, "/v1/auth/register", None, Some(&register))
            .await
            .unwrap();
        assert_eq!(registered.status, 201, "{:?}", registered.body);
        let token = token(&auth_client, "alice", "correct horse").await;
        let system = Self {
            data: data.to_owned(),
            tasks: Self::task_server(data, url, &auth, extra, launch),
            auth,
            token,
        };
        system.check_tasks_answer().await;
        system
    }

    fn task_server(
        data: &Path,
        url: &str,
        auth: &Running,
        extra: &[&str],
        launch: Launcher<'_>,
    ) -> Running {
        let jwks = format!(
            "https://localhost:{}/.well-known/jwks.json",
            auth.addr.port()
        );
        let ca = data.join("tls-cert.pem");
        let mut tasks = launch("task-server");
        tasks
            .args(server_args(data, url, "127.0.0.1:0"))
            .args(["--jwks-url", &jwks, "--jwks-ca-file", ca.to_str().unwrap()])
            .args(extra);
        Running::spawn("task-server", tasks)
    }

    /// A task-server again, on the same database, after the last one died.
    fn restart_tasks(&mut self, url: &str, extra: &[&str], launch: Launcher<'_>) {
        self.tasks = Self::task_server(&self.data, url, &self.auth, extra, launch);
    }

    fn client(&self) -> Client {
        self.tasks
            .client(&self.data)
            .with_timeout(Duration::from_secs(15))
    }

    async fn check_tasks_answer(&self) {
        let list = self
            .client()
            .json(Method::GET, "/v1/tasks", Some(&self.token), None)
            .await
            .unwrap();
        assert_eq!(list.status, 200, "{:?}", list.body);
    }

    async fn ready(&self, server: &Running) -> u16 {
        server
            .client(&self.data)
            .json(Method::GET, "/readyz", None, None)
            .await
            .unwrap()
            .status
            .as_u16()
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("todo.db").display())
}

/// Every acknowledged write is stored; nothing is stored that was never sent.
fn assert_no_acknowledged_write_lost(outcomes: &[Outcome], stored: &HashMap<String, String>) {
    let acked = acknowledged(outcomes);
    let lost: Vec<_> = acked.iter().filter(|t| !stored.contains_key(**t)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    let sent: std::collections::HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.write)
        .map(|o| o.title.as_str())
        .collect();
    let phantom: Vec<_> = stored
        .keys()
        .filter(|t| !sent.contains(t.as_str()))
        .collect();
    assert!(phantom.is_empty(), "stored but never sent: {phantom:?}");
}

// ---------------------------------------------------------------- kill -9

async fn acknowledged_writes_survive_kill_9(url: &str, data: &Path) {
    let mut sys = System::start(data, url, &[], &direct).await;
    let load = Load::start(&sys.client(), &sys.token, 8, 0, false);
    until_acknowledged(&sys.client(), &sys.token, 200).await;
    sys.tasks.kill_9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    let acked = acknowledged(&outcomes).len();
    let failed = outcomes.iter().filter(|o| o.answer.is_err()).count();
    eprintln!("kill -9 under load: {:?}", summary(&outcomes));
    assert!(acked >= 200, "{acked} acknowledged");
    assert!(
        failed > 0,
        "the kill cut no request off: it was not under load"
    );

    sys.restart_tasks(url, &[], &direct);
    let stored = stored_titles(&sys.client(), &sys.token).await;
    assert_no_acknowledged_write_lost(&outcomes, &stored);
    // The requests cut off may or may not have committed; no other write is
    // missing or extra.
    assert!(stored.len() >= acked && stored.len() <= acked + failed);
    // Writes go on after the restart.
    let reply = sys
        .client()
        .json(
            Method::POST,
            "/v1/tasks",
            Some(&sys.token),
            Some(&json!({"title": "after the crash"})),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    acknowledged_writes_survive_kill_9(&sqlite_url(dir.path()), &dir.path().join("data")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_writes_survive_kill_9() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    let todo_store::DatabaseUrl::Postgres(url) = &database.config.url else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    acknowledged_writes_survive_kill_9(url, &dir.path().join("data")).await;
}

// ---------------------------------------------------------------- SIGTERM

async fn graceful_shutdown_under_load_drops_nothing(url: &str, data: &Path) {
    let mut sys = System::start(data, url, &[], &direct).await;
    let load = Load::start(&sys.client(), &sys.token, 16, 0, false);
    until_acknowledged(&sys.client(), &sys.token, 100).await;
    let terminated = Instant::now();
    sys.tasks.terminate();
    let status = sys.tasks.wait(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "task-server did not exit 0 after SIGTERM: {status:?}\n{}",
        sys.tasks.log()
    );
    let outcomes = load.finish().await;
    eprintln!("SIGTERM under load: {:?}", summary(&outcomes));
    let answered_after = outcomes
        .iter()
        .filter(|o| o.answer.is_ok() && o.started < terminated && o.finished() > terminated)
        .count();
    assert!(
        answered_after > 0,
        "no request was in flight at SIGTERM: the test proves nothing"
    );
    for o in &outcomes {
        match &o.answer {
            Ok(status) => assert_eq!(*status, 201, "{o:?}"),
            // Only requests that were never sent: refused once the
            // listener closed, or reset before the TLS handshake ended (a
            // connection the kernel completed after our last accept). A
            // request sent on an accepted connection is always answered.
            Err(e) => assert!(
                o.finished() >= terminated && (e == "connect" || e.starts_with("TLS")),
                "{o:?}"
            ),
        }
    }

    sys.restart_tasks(url, &[], &direct);
    let stored = stored_titles(&sys.client(), &sys.token).await;
    assert_no_acknowledged_write_lost(&outcomes, &stored);
    // Nothing was written without an answer: every request the server took
    // was answered.
    assert_eq!(
        stored.len(),
        acknowledged(&outcomes).len(),
        "a write committed but its answer was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_graceful_shutdown_under_load_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    graceful_shutdown_under_load_drops_nothing(&sqlite_url(dir.path()), &dir.path().join("data"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_graceful_shutdown_under_load_drops_nothing() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    let todo_store::DatabaseUrl::Postgres(url) = &database.config.url else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    graceful_shutdown_under_load_drops_nothing(url, &dir.path().join("data")).await;
}
