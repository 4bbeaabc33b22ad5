//! What only the SQL stores do: migrations, readiness, error classes.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use todo_core::StoreError;
use todo_store::{Backend, DatabaseUrl, SqlStore, StoreConfig};

use crate::backends;

fn migrations_run_once_even_when_started_together(url: DatabaseUrl) {
    const INSTANCES: usize = 4;
    let barrier = Arc::new(Barrier::new(INSTANCES));
    let runs: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store = SqlStore::open(&StoreConfig::new(url)).unwrap();
                barrier.wait();
                store.migrate()
            })
        })
        .collect();
    let ran: Vec<usize> = runs
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    assert_eq!(
        ran.iter().sum::<usize>(),
        1,
        "the one migration ran once: {ran:?}"
    );
    let store = SqlStore::open(&StoreConfig::new(url)).unwrap();
    assert_eq!(store.migrate().unwrap(), 0, "nothing left to run");
    store.ping().unwrap();
}

#[test]
fn sqlite_migrations_run_once_even_when_started_together() {
    let dir = tempfile::tempdir().unwrap();
    migrations_run_once_even_when_started_together(DatabaseUrl::Sqlite(dir.path().join("t.db")));
}

#[test]
fn postgres_migrations_run_once_even_when_started_together() {
    let Some(admin) = backends::postgres_admin_url() else {
        return;
    };
    let (url, _name) = backends::fresh_postgres_database(&admin);
    migrations_run_once_even_when_started_together(DatabaseUrl::parse(&url).unwrap());
}

#[test]
fn sqlite_store_creates_its_directory_and_reports_its_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/todo.db");
    let store =
        SqlStore::open_and_migrate(&StoreConfig::new(DatabaseUrl::Sqlite(path.clone()))).unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    let state = store.pool_state();
    assert!(state.connections >= 1 && state.max == 8, "{state:?}");
}

#[test]
fn an_unreachable_database_is_unavailable_within_the_acquire_timeout() {
    // Nothing listens on port 1 of loopback.
    let mut config =
        StoreConfig::new(DatabaseUrl::parse("postgres://todo@127.0.0.1:1/todo").unwrap());
    config.acquire_timeout = Duration::from_millis(500);
    let store = SqlStore::open(&config).expect("opening is lazy");
    let started = Instant::now();
    let error = store.ping().unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_store_on_a_fresh_fixture_answers_pings() {
    let fixture = backends::sqlite();
    fixture.sql.as_ref().unwrap().ping().unwrap();
    assert!(fixture.config.is_some());
    if let Some(pg) = backends::postgres() {
        let store = pg.sql.as_ref().unwrap();
        store.ping().unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
    }
}
