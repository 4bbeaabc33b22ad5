//! The backends the conformance suite runs on: the in-memory store always,
//! SQLite always, PostgreSQL whenever `TODO_TEST_POSTGRES_URL` is given.
//!
//! Without that URL a PostgreSQL test fails rather than passing unseen,
//! unless `TODO_SKIP_POSTGRES=1` says that skipping is intended.
//! `scripts/test` starts a throwaway server and sets the URL.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use todo_core::memory::MemoryStore;
use todo_core::{RefreshTokenStore, TaskStore, UserStore};
use todo_store::{DatabaseUrl, SqlStore, StoreConfig};

/// Every store trait at once.
pub trait Stores: UserStore + TaskStore + RefreshTokenStore {}
impl<T: UserStore + TaskStore + RefreshTokenStore> Stores for T {}

/// A fresh, empty, migrated store; dropped with its database.
pub struct Fixture {
    pub store: Arc<dyn Stores>,
    /// The SQL store, for tests of SQL-only behaviour.
    pub sql: Option<SqlStore>,
    pub config: Option<StoreConfig>,
    _dir: Option<tempfile::TempDir>,
    drop_database: Option<(String, String)>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Close our connections first, then drop the database.
        self.sql = None;
        self.store = Arc::new(MemoryStore::new());
        if let Some((admin_url, name)) = self.drop_database.take()
            && let Ok(mut admin) = PgConnection::establish(&admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

pub fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        sql: None,
        config: None,
        _dir: None,
        drop_database: None,
    }
}

pub fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = DatabaseUrl::Sqlite(dir.path().join("todo.db"));
    let config = StoreConfig::new(url);
    let store = SqlStore::open_and_migrate(&config).expect("open SQLite");
    Fixture {
        store: Arc::new(store.clone()),
        sql: Some(store),
        config: Some(config),
        _dir: Some(dir),
        drop_database: None,
    }
}

/// The admin URL of the test PostgreSQL, or `None` when skipping is intended.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TODO_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("TODO_SKIP_POSTGRES").as_deref() == Ok("1") => None,
        _ => panic!(
            "TODO_TEST_POSTGRES_URL is not set: run ./scripts/test (it starts a throwaway \
             PostgreSQL), or set TODO_SKIP_POSTGRES=1 to skip the PostgreSQL backend on purpose"
        ),
    }
}

/// A new, empty database on the test server.
pub fn fresh_postgres_database(admin_url: &str) -> (String, String) {
    let name = format!("todo_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(admin_url).expect("connect to test PostgreSQL");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .expect("create db");
    let (base, _) = admin_url.rsplit_once('/').expect("URL with a database");
    (format!("{base}/{name}"), name)
}

pub fn postgres() -> Option<Fixture> {
    let admin_url = postgres_admin_url()?;
    let (url, name) = fresh_postgres_database(&admin_url);
    let mut config = StoreConfig::new(DatabaseUrl::parse(&url).expect("postgres URL"));
    config.acquire_timeout = Duration::from_secs(10);
    let store = SqlStore::open_and_migrate(&config).expect("open PostgreSQL");
    Some(Fixture {
        store: Arc::new(store.clone()),
        sql: Some(store),
        config: Some(config),
        _dir: None,
        drop_database: Some((admin_url, name)),
    })
}
