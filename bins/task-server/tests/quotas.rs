//! Issue #11, findings 10 and 11, on the real binaries: per-user task quotas
//! (also under concurrent creates), per-user write rates, closed
//! registration, atomic unconditional updates, preconditions weighed after
//! visibility (SQLite and PostgreSQL); private SQLite files, `/metrics` off
//! the public listener, and no secret from a database URL in the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use http::Method;
use serde_json::{Value, json};
use todo_store::testing::{TestBackend, TestDatabase};
use todo_testkit::{Client, Reply};

use common::{Running, run, token};

/// auth-server on a fresh database of `backend`, and what its tests need.
struct System {
    _dir: tempfile::TempDir,
    _database: TestDatabase,
    data: PathBuf,
    url: String,
    auth: Running,
    auth_client: Client,
}

impl System {
    fn start(backend: TestBackend, auth_extra: &[&str]) -> Option<Self> {
        let database = TestDatabase::new(backend)?;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let url = match &database.config.url {
            todo_store::DatabaseUrl::Sqlite(_) => {
                format!("sqlite://{}", data.join("todo.db").display())
            }
            todo_store::DatabaseUrl::Postgres(url) => url.clone(),
        };
        let mut extra = vec!["--register-burst", "1000"];
        extra.extend_from_slice(auth_extra);
        let auth = Running::start("auth-server", &data, &url, "127.0.0.1:0", &extra);
        let auth_client = auth.client(&data);
        Some(Self {
            _dir: dir,
            _database: database,
            data,
            url,
            auth,
            auth_client,
        })
    }

    /// A task-server on the same database, with `extra` flags.
    fn task_server(&self, extra: &[&str]) -> (Running, Client) {
        let jwks = format!(
            "https://localhost:{}/.well-known/jwks.json",
            self.auth.addr.port()
        );
        let ca = self.data.join("tls-cert.pem");
        let mut args = vec![
            "--jwks-url",
            jwks.as_str(),
            "--jwks-ca-file",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let tasks = Running::start("task-server", &self.data, &self.url, "127.0.0.1:0", &args);
        let client = tasks.client(&self.data);
        (tasks, client)
    }

    /// Registers `name` and returns an access token.
    async fn user(&self, name: &str) -> String {
        let reply = self
            .auth_client
            .json(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(&json!({"username": name, "password": "correct horse"})),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        token(&self.auth_client, name, "correct horse").await
    }
}

async fn create(client: &Client, token: &str, title: &str) -> Reply {
    client
        .json(
            Method::POST,
            "/v1/tasks",
            Some(token),
            Some(&json!({"title": title})),
        )
        .await
        .unwrap()
}

async fn count_tasks(client: &Client, token: &str) -> usize {
    let reply = client
        .json(Method::GET, "/v1/tasks?limit=100", Some(token), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json().unwrap()["items"].as_array().unwrap().len()
}

fn problem_type(reply: &Reply) -> String {
    reply.json().unwrap()["type"].as_str().unwrap().to_owned()
}

/// A PATCH or DELETE with a raw `If-Match` value.
async fn with_if_match(
    client: &Client,
    method: Method,
    path: &str,
    token: &str,
    if_match: &str,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str()), ("if-match", if_match)];
    let body = (method == Method::PATCH).then(|| {
        headers.push(("content-type", "application/json"));
        serde_json::to_vec(&json!({"title": "changed"})).unwrap()
    });
    client.send(method, path, &headers, body).await.unwrap()
}

async fn task_quota_holds_also_under_racing_creates(backend: TestBackend) {
    let Some(sys) = System::start(backend, &[]) else {
        return;
    };
    let (_tasks, client) = sys.task_server(&["--max-tasks-per-user", "3"]);

    let alice = sys.user("alice").await;
    for i in 0..3 {
        assert_eq!(create(&client, &alice, &format!("t{i}")).await.status, 201);
    }
    let refused = create(&client, &alice, "one too many").await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(problem_type(&refused), "urn:todo:problem:quota-exceeded");
    assert_eq!(
        count_tasks(&client, &alice).await,
        3,
        "nothing stored beyond the quota"
    );

    // Another user has a quota of their own.
    let bob = sys.user("bob").await;
    assert_eq!(create(&client, &bob, "bob's").await.status, 201);

    // At quota - 1, racing creates: exactly one wins, every time.
    for round in 0..3 {
        let name = format!("racer{round}");
        let racer = sys.user(&name).await;
        for i in 0..2 {
            assert_eq!(create(&client, &racer, &format!("r{i}")).await.status, 201);
        }
        let racing: Vec<_> = (0..8)
            .map(|i| {
                let (client, racer) = (client.clone(), racer.clone());
                tokio::spawn(async move { create(&client, &racer, &format!("race {i}")).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for reply in racing {
            statuses.push(reply.await.unwrap().status);
        }
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 403, 403, 403, 403, 403, 403, 403],
            "round {round}: one create wins the last place"
        );
        assert_eq!(count_tasks(&client, &racer).await, 3, "round {round}");
    }

    // Deleting makes room again.
    let list = client
        .json(Method::GET, "/v1/tasks", Some(&alice), None)
        .await
        .unwrap();
    let id = list.json().unwrap()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = client
        .json(
            Method::DELETE,
            &format!("/v1/tasks/{id}"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(create(&client, &alice, "room again").await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_task_quota_holds_also_under_racing_creates() {
    task_quota_holds_also_under_racing_creates(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_task_quota_holds_also_under_racing_creates() {
    task_quota_holds_also_under_racing_creates(TestBackend::Postgres).await;
}

async fn task_writes_past_the_rate_get_429(backend: TestBackend) {
    let Some(sys) = System::start(backend, &[]) else {
        return;
    };
    let (_tasks, client) = sys.task_server(&[
        "--task-write-burst",
        "3",
        "--task-write-period-ms",
        "600000",
    ]);
    let alice = sys.user("alice").await;
    let first = create(&client, &alice, "first").await;
    assert_eq!(first.status, 201);
    let path = first.headers["location"].to_str().unwrap().to_owned();
    let patched = client
        .json(
            Method::PATCH,
            &path,
            Some(&alice),
            Some(&json!({"done": true})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status, 200);
    assert_eq!(create(&client, &alice, "third").await.status, 201);
    let limited = create(&client, &alice, "fourth").await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    let also_limited = client
        .json(Method::DELETE, &path, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(also_limited.status, 429, "deletes are writes too");
    assert_eq!(
        count_tasks(&client, &alice).await,
        2,
        "reads are not limited"
    );
    // The limit is per user.
    let bob = sys.user("bob").await;
    assert_eq!(create(&client, &bob, "bob's").await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_task_writes_past_the_rate_get_429() {
    task_writes_past_the_rate_get_429(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_task_writes_past_the_rate_get_429() {
    task_writes_past_the_rate_get_429(TestBackend::Postgres).await;
}

async fn closed_registration_answers_403(backend: TestBackend) {
    let Some(sys) = System::start(backend, &["--registration", "closed"]) else {
        return;
    };
    let reply = sys
        .auth_client
        .json(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"username": "mallory", "password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    assert_eq!(problem_type(&reply), "urn:todo:problem:registration-closed");
    // An administrator still creates users, with the same flags.
    let created = run(
        "auth-server",
        &sys.data,
        &sys.url,
        &[
            "--registration",
            "closed",
            "user",
            "create",
            "--username",
            "carol",
        ],
        "carol's password\n",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    token(&sys.auth_client, "carol", "carol's password").await;
    let login = sys
        .auth_client
        .json(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"username": "mallory", "password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(
        login.status, 401,
        "the refused registration made no account"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_closed_registration_answers_403() {
    closed_registration_answers_403(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_closed_registration_answers_403() {
    closed_registration_answers_403(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_on_the_one_process_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("todo.db").display());
    let todo = Running::start(
        "todo",
        &data,
        &url,
        "127.0.0.1:0",
        &["--registration", "closed"],
    );
    let reply = todo
        .client(&data)
        .json(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"username": "mallory", "password": "correct horse"})),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    assert_eq!(problem_type(&reply), "urn:todo:problem:registration-closed");
}

async fn preconditions_are_weighed_after_visibility(backend: TestBackend) {
    let Some(sys) = System::start(backend, &[]) else {
        return;
    };
    let (_tasks, client) = sys.task_server(&[]);
    let alice = sys.user("alice").await;
    let bob = sys.user("bob").await;
    let created = create(&client, &alice, "shared title").await;
    assert_eq!(created.status, 201);
    let path = created.headers["location"].to_str().unwrap().to_owned();

    // Another user's task is 404 whatever If-Match says.
    for method in [Method::PATCH, Method::DELETE] {
        for value in ["garbage", "\"v1\"", "*"] {
            let reply = with_if_match(&client, method.clone(), &path, &bob, value).await;
            assert_eq!(
                reply.status, 404,
                "{method} If-Match {value}: {:?}",
                reply.body
            );
        }
        // The owner gets 412 for a value that can match nothing.
        let reply = with_if_match(&client, method.clone(), &path, &alice, "garbage").await;
        assert_eq!(reply.status, 412, "{method}: {:?}", reply.body);
        assert_eq!(reply.headers["etag"], "\"v1\"");
        // Said as what it is: the task did not change, the condition is void.
        let text = String::from_utf8_lossy(&reply.body);
        assert!(
            text.contains("If-Match names no version of this object"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_preconditions_are_weighed_after_visibility() {
    preconditions_are_weighed_after_visibility(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_preconditions_are_weighed_after_visibility() {
    preconditions_are_weighed_after_visibility(TestBackend::Postgres).await;
}

async fn concurrent_patches_without_if_match_all_succeed(backend: TestBackend) {
    let Some(sys) = System::start(backend, &[]) else {
        return;
    };
    let (_tasks, client) = sys.task_server(&[]);
    let alice = sys.user("alice").await;
    let created = create(&client, &alice, "shared title").await;
    assert_eq!(created.status, 201);
    let path = created.headers["location"].to_str().unwrap().to_owned();

    // Eight at once, three times: every one applies, one after another.
    let mut expected_version = 1;
    for round in 0..3 {
        let patches: Vec<_> = (0..8)
            .map(|i| {
                let (client, alice, path) = (client.clone(), alice.clone(), path.clone());
                tokio::spawn(async move {
                    let body = json!({"title": format!("round {round} writer {i}")});
                    client
                        .json(Method::PATCH, &path, Some(&alice), Some(&body))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for patch in patches {
            let reply = patch.await.unwrap();
            assert_eq!(reply.status, 200, "round {round}: {:?}", reply.body);
        }
        expected_version += 8;
        let task: Value = client
            .json(Method::GET, &path, Some(&alice), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            task["version"], expected_version,
            "round {round}: one version per patch"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_patches_without_if_match_all_succeed() {
    concurrent_patches_without_if_match_all_succeed(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_patches_without_if_match_all_succeed() {
    concurrent_patches_without_if_match_all_succeed(TestBackend::Postgres).await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_and_the_data_directory_are_private() {
    let Some(sys) = System::start(TestBackend::Sqlite, &[]) else {
        return;
    };
    // A write, so that the WAL and its index exist.
    sys.user("alice").await;
    assert_eq!(mode(&sys.data), 0o700, "the data directory");
    for file in ["todo.db", "todo.db-wal", "todo.db-shm"] {
        assert_eq!(mode(&sys.data.join(file)), 0o600, "{file}");
    }
    drop(sys);

    // Files an older version left readable are made private at start; a
    // directory that exists is left alone, with a warning.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["todo.db", "todo.db-wal", "todo.db-shm"] {
        std::fs::write(data.join(file), b"").unwrap();
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let url = format!("sqlite://{}", data.join("todo.db").display());
    let auth = Running::start("auth-server", &data, &url, "127.0.0.1:0", &[]);
    for file in ["todo.db", "todo.db-wal", "todo.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file} of an older install");
    }
    assert_eq!(mode(&data), 0o755);
    assert!(
        auth.log()
            .contains("the data directory is open to other users"),
        "{}",
        auth.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_public() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("todo.db").display());
    let todo = Running::start("todo", &data, &url, "127.0.0.1:0", &[]);
    let public = todo.client(&data);
    let reply = public
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 404, "todo serves /metrics to the public");
    drop(todo);

    // With a relay whose broker is not there: its gauges are scraped too
    // (the attack of #15 found them missing from `todo`).
    let todo = Running::start(
        "todo",
        &data,
        &url,
        "127.0.0.1:0",
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/",
        ],
    );
    let public = todo.client(&data);
    let reply = public
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 404, "the public listener still hides them");
    let inside = Client::plain(todo.metrics_address());
    let scraped = inside
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(scraped.status, 200);
    let text = String::from_utf8(scraped.body.to_vec()).unwrap();
    assert!(text.contains("todo_http_requests_total"), "{text}");
    assert!(text.contains("\ntodo_relay_connected 0\n"), "{text}");
    assert!(text.contains("\ntodo_webhook_places_busy 0\n"), "{text}");
    assert_eq!(
        text.matches("# TYPE todo_db_pool_max ").count(),
        1,
        "each gauge once: {text}"
    );
    let api = inside
        .json(Method::GET, "/v1/tasks", None, None)
        .await
        .unwrap();
    assert_eq!(api.status, 404, "the metrics listener serves no API");
    assert!(
        todo.stop().success(),
        "exits 0 on SIGTERM with both listeners"
    );

    // The split servers alike.
    let sys = System::start(TestBackend::Sqlite, &[]).unwrap();
    let reply = sys
        .auth_client
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(
        reply.status, 404,
        "auth-server serves /metrics to the public"
    );
    let (_tasks, client) = sys.task_server(&[]);
    let reply = client
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(
        reply.status, 404,
        "task-server serves /metrics to the public"
    );
}

#[test]
fn database_url_secrets_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for url in [
        "mysql://root@db.local/todo?password=hunter2",
        "postgres://todo@127.0.0.1:1/todo?sslmode=disable&password=hunter2",
        "postgresql://todo:hunter2@127.0.0.1:1/todo?connect_timeout=1",
    ] {
        for binary in ["auth-server", "task-server", "todo"] {
            let out = run(
                binary,
                &data,
                url,
                &["--db-acquire-timeout-ms", "300", "migrate"],
                "",
            );
            assert!(!out.status.success(), "{binary} {url}: migrated nowhere?");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.is_empty(), "{binary} {url}: said nothing");
            assert!(
                !stderr.contains("hunter2"),
                "{binary} logged a password: {stderr}"
            );
        }
    }
}
