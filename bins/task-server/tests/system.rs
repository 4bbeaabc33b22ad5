//! The real binaries, end to end: auth-server and task-server as a newcomer
//! starts them (README), on SQLite and on PostgreSQL. Bootstrap an admin,
//! register, log in, manage tasks, rotate the signing key without logging
//! anyone out, and stop on SIGTERM with exit status 0.
//!
//! auth-server is found beside task-server in the target directory: run
//! these through `./scripts/test` (or `cargo test --workspace`), which
//! builds both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http::Method;
use serde_json::json;
use todo_store::testing::TestDatabase;

use common::{Running, free_port, run, token};

async fn the_whole_system_runs_from_its_binaries(database: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = match &database.config.url {
        todo_store::DatabaseUrl::Sqlite(_) => {
            format!("sqlite://{}", data.join("todo.db").display())
        }
        todo_store::DatabaseUrl::Postgres(url) => url.clone(),
    };

    let migrated = run("auth-server", &data, &url, &["migrate"], "");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let admin = run(
        "auth-server",
        &data,
        &url,
        &["user", "create", "--admin", "--username", "admin"],
        "admin password\n",
    );
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let weak = run(
        "auth-server",
        &data,
        &url,
        &["user", "create", "--username", "weak"],
        "short\n",
    );
    assert!(
        !weak.status.success(),
        "a weak bootstrap password is refused"
    );

    // auth-server restarts on the same port, where task-server fetches keys.
    let auth_listen = free_port();
    let auth = Running::start("auth-server", &data, &url, &auth_listen, &[]);
    let jwks = format!(
        "https://localhost:{}/.well-known/jwks.json",
        auth.addr.port()
    );
    let ca = data.join("tls-cert.pem");
    let task_args = [
        "--jwks-url",
        jwks.as_str(),
        "--jwks-ca-file",
        ca.to_str().unwrap(),
        "--jwks-min-refresh-secs",
        "0",
    ];
    let tasks = Running::start("task-server", &data, &url, "127.0.0.1:0", &task_args);
    let (auth_client, task_client) = (auth.client(&data), tasks.client(&data));

    let admin_token = token(&auth_client, "admin", "admin password").await;
    let users = auth_client
        .json(Method::GET, "/v1/users", Some(&admin_token), None)
        .await
        .unwrap();
    assert_eq!(users.status, 200, "the bootstrapped admin is an admin");
    let register = json!({"username": "alice", "password": "correct horse"});
    assert_eq!(
        auth_client
            .json(Method::POST, "/v1/auth/register", None, Some(&register))
            .await
            .unwrap()
            .status,
        201
    );
    let alice = token(&auth_client, "alice", "correct horse").await;
    let created = task_client
        .json(
            Method::POST,
            "/v1/tasks",
            Some(&alice),
            Some(&json!({"title": "Buy milk"})),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    let task = created.headers["location"].to_str().unwrap().to_owned();

    // Rotate the signing key and restart auth-server: old tokens keep working.
    let rotated = run("auth-server", &data, &url, &["keys", "rotate"], "");
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(auth.stop().success(), "auth-server exits 0 on SIGTERM");
    let auth = Running::start("auth-server", &data, &url, &auth_listen, &[]);
    let auth_client = auth.client(&data);
    let fresh = token(&auth_client, "alice", "correct horse").await;
    // task-server has never seen the new key: it refetches the JWKS.
    let reply = task_client
        .json(Method::GET, &task, Some(&fresh), None)
        .await
        .unwrap();
    assert_eq!(
        reply.status, 200,
        "a token from the new key verifies after a refetch: {:?}",
        reply.body
    );
    let old = task_client
        .json(Method::GET, &task, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(old.status, 200, "a token from the old key still verifies");
    let validate = auth_client
        .json(Method::GET, "/v1/auth/validate", Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(validate.status, 200, "auth-server verifies the old key too");

    assert!(tasks.stop().success(), "task-server exits 0 on SIGTERM");
    assert!(auth.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_system_runs_from_its_binaries() {
    let database = TestDatabase::sqlite();
    the_whole_system_runs_from_its_binaries(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_system_runs_from_its_binaries() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    the_whole_system_runs_from_its_binaries(&database).await;
}
