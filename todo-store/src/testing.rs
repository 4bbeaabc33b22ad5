//! Fresh databases for tests (feature `test-support`): a SQLite file in a
//! temporary directory, or a new database on the PostgreSQL server that
//! `TODO_TEST_POSTGRES_URL` names.
//!
//! Without that URL, PostgreSQL tests fail rather than pass unseen, unless
//! `TODO_SKIP_POSTGRES=1` says that skipping is intended.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::prelude::*;

use crate::{DatabaseUrl, SqlStore, StoreConfig};

/// A migrated store on a fresh database, removed when dropped.
pub struct TestDatabase {
    /// The store, migrated.
    pub store: SqlStore,
    /// How it was opened, to open more stores on the same database.
    pub config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
    drop_database: Option<(String, String)>,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.drop_database.take()
            && let Ok(mut admin) = PgConnection::establish(&admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// The two backends, for tests that run on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A new database on the server `TODO_TEST_POSTGRES_URL` names.
    Postgres,
}

impl TestDatabase {
    /// A fresh database of `backend`; `None` only when PostgreSQL is skipped on purpose.
    #[must_use]
    pub fn new(backend: TestBackend) -> Option<Self> {
        match backend {
            TestBackend::Sqlite => Some(Self::sqlite()),
            TestBackend::Postgres => Self::postgres(),
        }
    }

    /// A fresh SQLite database in a temporary directory.
    #[must_use]
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = StoreConfig::new(DatabaseUrl::Sqlite(dir.path().join("todo.db")));
        let store = SqlStore::open_and_migrate(&config).expect("open SQLite");
        Self {
            store,
            config,
            _dir: Some(dir),
            drop_database: None,
        }
    }

    /// A fresh PostgreSQL database; `None` only when PostgreSQL is skipped
    /// on purpose (`TODO_SKIP_POSTGRES=1`); panics with what to do when no
    /// server is given.
    #[must_use]
    pub fn postgres() -> Option<Self> {
        let admin_url = postgres_admin_url()?;
        let (url, name) = fresh_postgres_database(&admin_url);
        let config = StoreConfig::new(DatabaseUrl::parse(&url).expect("postgres URL"));
        let store = SqlStore::open_and_migrate(&config).expect("open PostgreSQL");
        Some(Self {
            store,
            config,
            _dir: None,
            drop_database: Some((admin_url, name)),
        })
    }
}

/// The admin URL of the test PostgreSQL, or `None` when skipping is intended.
#[must_use]
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TODO_TEST_POSTGRES_URL") {
        // The tests' own connections take the store's settings.
        Ok(url) if !url.is_empty() => Some(crate::db::libpq_url(&url)),
        _ if std::env::var("TODO_SKIP_POSTGRES").as_deref() == Ok("1") => None,
        _ => panic!(
            "TODO_TEST_POSTGRES_URL is not set: run ./scripts/test (it starts a throwaway \
             PostgreSQL), or set TODO_SKIP_POSTGRES=1 to skip the PostgreSQL backend on purpose"
        ),
    }
}

/// Creates an empty database on the test server; returns its URL and name.
#[must_use]
pub fn fresh_postgres_database(admin_url: &str) -> (String, String) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    #[allow(clippy::disallowed_methods)] // a unique name, not business time
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!(
        "todo_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    );
    let mut admin = PgConnection::establish(admin_url).expect("connect to the test PostgreSQL");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .expect("create a database");
    let (address, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let (base, _) = address.rsplit_once('/').expect("a URL with a database");
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    (format!("{base}/{name}{query}"), name)
}

/// Every text column of every table, with how many of its rows hold
/// `needle` (an id: a UUID's characters only): what is left of a deleted
/// account, say.
///
/// # Panics
///
/// On a needle that is not a UUID's characters, or a database that
/// cannot be read.
pub fn rows_holding(db_url: &DatabaseUrl, needle: &str) -> Vec<(String, String, i64)> {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        c: String,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let columns_sqlite = "SELECT m.name AS t, p.name AS c FROM sqlite_master m, \
                          pragma_table_info(m.name) p WHERE m.type = 'table' \
                          AND p.type = 'TEXT' ORDER BY 1, 2";
    let columns_pg = "SELECT table_name::text AS t, column_name::text AS c \
                      FROM information_schema.columns WHERE table_schema = 'public' \
                      AND data_type = 'text' AND table_name IN (SELECT tablename \
                      FROM pg_tables WHERE schemaname = 'public') ORDER BY 1, 2";
    // (ids are UUIDs: no quote or wildcard to escape)
    assert!(
        needle
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    );
    let count = |t: &str, c: &str| {
        format!("SELECT count(*) AS n FROM \"{t}\" WHERE \"{c}\" LIKE '%{needle}%'")
    };
    let mut found = Vec::new();
    match db_url {
        DatabaseUrl::Sqlite(path) => {
            let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            let columns: Vec<Column> = diesel::sql_query(columns_sqlite).load(&mut conn).unwrap();
            for Column { t, c } in columns {
                let n = diesel::sql_query(count(&t, &c))
                    .get_result::<Count>(&mut conn)
                    .unwrap()
                    .n;
                found.push((t, c, n));
            }
        }
        DatabaseUrl::Postgres(url) => {
            let mut conn = diesel::PgConnection::establish(url).unwrap();
            let columns: Vec<Column> = diesel::sql_query(columns_pg).load(&mut conn).unwrap();
            for Column { t, c } in columns {
                let n = diesel::sql_query(count(&t, &c))
                    .get_result::<Count>(&mut conn)
                    .unwrap()
                    .n;
                found.push((t, c, n));
            }
        }
    }
    found
}
