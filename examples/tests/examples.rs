//! The examples run here exactly as their programs run them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use clap::Parser;
use todo_auth::Argon2Config;
use todo_examples::client::{TodoClient, demo};
use todo_examples::embedded;
use todo_http::{Frontend, HttpLimits, TrustedProxies, serve};
use todo_server::TlsIdentity;
use todo_server::setup::{AuthSettings, one_origin};
use todo_store::testing::TestDatabase;
use todo_testkit::Client;

const LIGHT: Argon2Config = Argon2Config {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

#[test]
fn the_embedded_example_runs_on_the_memory_store() {
    let lines = embedded::run(embedded::memory_store(), LIGHT).unwrap();
    assert!(lines[0].starts_with("registered demo"), "{lines:?}");
    assert!(
        lines.contains(&"tasks labelled 'home' (2 shown, newest first):".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"  [ ] p2 Call the bank".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn the_embedded_example_keeps_its_data_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("embedded.db").display());
    let first = embedded::run(embedded::sql_store(&url).unwrap(), LIGHT).unwrap();
    assert!(first[0].starts_with("registered demo"));
    let second = embedded::run(embedded::sql_store(&url).unwrap(), LIGHT).unwrap();
    assert_eq!(second[0], "demo user exists: logging in");
    assert!(
        second.contains(&"tasks labelled 'home' (4 shown, newest first):".to_owned()),
        "{second:?}"
    );
}

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    auth: AuthSettings,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_example_talks_to_the_one_origin_system_over_tls() {
    let database = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::parse_from([
        "test",
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
    ]);
    let app = one_origin(&settings.auth, dir.path(), database.store.clone()).unwrap();
    let (identity, _) = TlsIdentity::self_signed_in(dir.path(), &["localhost".to_owned()]).unwrap();
    let cert = identity.certs[0].clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    let front = Arc::new(Frontend::new(
        Arc::new(app),
        HttpLimits::default(),
        TrustedProxies::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        front,
        listener,
        Some(acceptor),
        std::future::pending(),
    ));

    let http = Client::https(addr, "localhost", &[cert]).unwrap();
    let lines = demo(TodoClient::new(http.clone(), http), "bob")
        .await
        .unwrap();
    assert_eq!(
        lines,
        [
            "registered bob",
            "completed 'Buy milk' (version 2)",
            "open tasks: Write the report",
            "after deleting the report: 1 task(s)",
            "logged out"
        ]
    );
}
