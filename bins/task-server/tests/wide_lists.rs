//! #16, on the real binaries: a list across many projects reads each
//! project's range of a sort index, so an account in a thousand projects
//! makes every plain `GET /v1/tasks` a thousand reads. A flood of those from
//! one account (session 15's attack, F1) held every pooled connection, and
//! everyone else's requests waited seconds and were answered 503. Such a
//! list now takes a slot first, as a search does: one at a time for its
//! user, at most half the pool across users. A list of up to 32 projects
//! takes none, but a user has at most two lists reading at once (session
//! 16's attack flooded lists of 31 projects). The pool here is small, with
//! a short wait for a connection, so that the flood holding more than its
//! share shows as bystanders' 503s (SQLite and PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use todo_store::testing::{TestBackend, TestDatabase};
use todo_testkit::Client;

use common::{Running, register, token};

/// The flood: how many projects the account has of its own (and its
/// Inbox), how many lists it keeps in flight, against how large a pool with
/// how long a wait for a connection (ms).
struct Flood {
    projects: usize,
    in_flight: usize,
    pool: &'static str,
    acquire_ms: &'static str,
}

struct Servers {
    _dir: tempfile::TempDir,
    _database: TestDatabase,
    _auth: Running,
    _tasks: Running,
    auth: Client,
    tasks: Client,
}

/// The servers, task-server with the flood's pool.
fn start(backend: TestBackend, flood: &Flood) -> Option<Servers> {
    let database = TestDatabase::new(backend)?;
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let url = match &database.config.url {
        todo_store::DatabaseUrl::Sqlite(_) => {
            format!("sqlite://{}", data.join("todo.db").display())
        }
        todo_store::DatabaseUrl::Postgres(url) => url.clone(),
    };
    let auth = Running::start(
        "auth-server",
        &data,
        &url,
        "127.0.0.1:0",
        &["--register-burst", "1000"],
    );
    let jwks = format!(
        "https://localhost:{}/.well-known/jwks.json",
        auth.addr.port()
    );
    let ca = data.join("tls-cert.pem");
    let tasks = Running::start(
        "task-server",
        &data,
        &url,
        "127.0.0.1:0",
        &[
            "--jwks-url",
            &jwks,
            "--jwks-ca-file",
            ca.to_str().unwrap(),
            // (the setup's thousand projects at once)
            "--task-write-burst",
            "0",
            // A short wait for a connection: the flood holding more than
            // its share shows as 503s to the others.
            "--db-pool-size",
            flood.pool,
            "--db-acquire-timeout-ms",
            flood.acquire_ms,
            // One address plays every client here.
            "--max-requests-per-client",
            "256",
            "--max-connections-per-client",
            "256",
        ],
    );
    let (auth_client, tasks_client) = (auth.client(&data), tasks.client(&data));
    Some(Servers {
        _dir: dir,
        _database: database,
        _auth: auth,
        _tasks: tasks,
        auth: auth_client,
        tasks: tasks_client,
    })
}

async fn user(servers: &Servers, name: &str) -> String {
    register(&servers.auth, name, "correct horse").await;
    token(&servers.auth, name, "correct horse").await
}

/// `count` projects of `token`'s, made 16 at a time.
async fn make_projects(tasks: &Client, token: &str, count: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let makers: Vec<_> = (0..16)
        .map(|_| {
            let (tasks, token, next) = (tasks.clone(), token.to_owned(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let reply = tasks
                        .json(
                            Method::POST,
                            "/v1/projects",
                            Some(&token),
                            Some(&json!({"name": format!("project {n}")})),
                        )
                        .await
                        .unwrap();
                    assert_eq!(reply.status, 201, "{:?}", reply.body);
                }
            })
        })
        .collect();
    for maker in makers {
        maker.await.unwrap();
    }
}

/// An account floods plain lists; everyone else's requests answer.
async fn a_flood_of_lists_leaves_others_answering(backend: TestBackend, flood: Flood) {
    let Some(servers) = start(backend, &flood) else {
        return;
    };
    let wide = user(&servers, "wide").await;
    // A bystander in six projects (their lists go to the pool, never in
    // place) and one with their Inbox alone.
    let carol = user(&servers, "carol").await;
    let bob = user(&servers, "bob").await;
    make_projects(&servers.tasks, &wide, flood.projects).await;
    make_projects(&servers.tasks, &carol, 5).await;

    // The flood: the costliest plain list (every project's range for one
    // task), as fast as answers come.
    let stop = Arc::new(AtomicBool::new(false));
    let lists: Vec<_> = (0..flood.in_flight)
        .map(|_| {
            let (tasks, wide, stop) = (servers.tasks.clone(), wide.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut answered = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = tasks
                        .json(
                            Method::GET,
                            "/v1/tasks?sort=-due&limit=1",
                            Some(&wide),
                            None,
                        )
                        .await
                        .unwrap();
                    answered.push(reply.status.as_u16());
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut failures = Vec::new();
    let mut answered = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let requests = [
            (&carol, Method::GET, "/v1/tasks", None),
            (
                &carol,
                Method::POST,
                "/v1/tasks",
                Some(json!({"title": "still here"})),
            ),
            (&carol, Method::GET, "/v1/projects", None),
            (&bob, Method::GET, "/v1/tasks", None),
        ];
        for (token, method, path, body) in requests {
            let reply = servers
                .tasks
                .json(method.clone(), path, Some(token), body.as_ref())
                .await
                .unwrap();
            answered += 1;
            if !reply.status.is_success() {
                failures.push(format!(
                    "{method} {path}: {} {:?}",
                    reply.status, reply.body
                ));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for list in lists {
        statuses.extend(list.await.unwrap());
    }

    assert!(
        failures.is_empty(),
        "{} of {answered} bystander requests failed under the flood, first: {}",
        failures.len(),
        failures[0]
    );
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        ok >= 10,
        "the flood's lists were answered ({ok} of {})",
        statuses.len()
    );
    // Its lists wait behind its own, then 429; never another status.
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "the flood's statuses: {statuses:?}"
    );
}

/// A thousand projects (the quota, with the Inbox): a slot a list, one at
/// a time, against a pool of two.
const THOUSAND: Flood = Flood {
    projects: 999,
    in_flight: 32,
    pool: "2",
    acquire_ms: "300",
};

/// 32 projects (the most a list spans without a slot): two lists of the
/// user's at once, against a pool of four.
const THIRTY_TWO: Flood = Flood {
    projects: 31,
    in_flight: 128,
    pool: "4",
    acquire_ms: "100",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_flood_of_lists_across_many_projects_leaves_others_answering() {
    a_flood_of_lists_leaves_others_answering(TestBackend::Sqlite, THOUSAND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_flood_of_lists_across_many_projects_leaves_others_answering() {
    a_flood_of_lists_leaves_others_answering(TestBackend::Postgres, THOUSAND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_flood_of_lists_across_32_projects_leaves_others_answering() {
    a_flood_of_lists_leaves_others_answering(TestBackend::Sqlite, THIRTY_TWO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_flood_of_lists_across_32_projects_leaves_others_answering() {
    a_flood_of_lists_leaves_others_answering(TestBackend::Postgres, THIRTY_TWO).await;
}
