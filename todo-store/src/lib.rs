//! Storage for todo: the core's store traits over diesel and r2d2, on SQLite
//! (the embedded default: WAL, foreign keys on, a busy timeout) and on
//! PostgreSQL, with embedded migrations for both.
//!
//! This is the only crate that knows SQL. Every task query is scoped to its
//! owner inside the query itself. No diesel error leaves the crate: callers
//! get [`todo_core::StoreError`], which tells "unavailable" (retryable) from
//! "conflict" from anything else.
//!
//! Calls block: run them on a blocking thread, not on an async executor;
//! only the `*_in_place` reads are for an async worker (SQLite: a read an
//! index serves from its first entry, on connections of their own, never
//! waited for; see `TaskStore::find_task_in_place`).
//!
//! **SQLite's process-wide settings.** As it is first opened on SQLite the
//! store puts SQLite, for the whole process, in multi-thread mode with no
//! memory statistics (its per-call mutexes cost about a tenth of a list's
//! CPU), keeping statement journals of up to 120 KiB in memory (group
//! commit's savepoints spilled them to temporary files): any other SQLite
//! user in the program gets no connection mutex unless it opens with
//! `SQLITE_OPEN_FULLMUTEX`. `SqlStore::open` makes them, on its caller's
//! thread: a program that uses SQLite on threads of its own opens its first
//! store before starting them; one that used SQLite before keeps SQLite as
//! it set it (the store logs a warning and works, slower; a program that
//! chose SQLite's single-thread mode must not open a store). The settings
//! are made by the `todo-sqlite-process` crate, which holds the workspace's
//! one non-test `unsafe`: this crate forbids it.
//!
//! # Example
//!
//! A SQLite store in a fresh directory, used through the core's traits: the
//! same calls work on PostgreSQL with a `postgres://` URL.
//!
//! ```
//! use std::sync::Arc;
//!
//! use todo_core::{TaskStore, UserStore};
//! use todo_store::{DatabaseUrl, SqlStore, StoreConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("todo.db").display()))?;
//! let store = SqlStore::open_and_migrate(&StoreConfig::new(url))?;
//!
//! // Nothing stored yet; a `TaskService` or `AuthServices` takes the store as
//! // its `Arc<dyn TaskStore>` / `Arc<dyn UserStore>`.
//! assert!(store.list_users(None, 10)?.is_empty());
//! let tasks: Arc<dyn TaskStore> = Arc::new(store.clone());
//! # let _ = tasks;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `test-support` (off by default): `todo_store::testing`, fresh SQLite
//!   and PostgreSQL databases for other crates' tests.

#![deny(missing_docs)]

mod changes;
mod db;
mod error;
mod group;
mod in_place;
mod listen;
#[cfg(all(test, feature = "test-support"))]
mod plans;
mod projects;
mod relay;
mod schema;
mod second_factors;
mod sessions;
mod tasks;
#[cfg(feature = "test-support")]
pub mod testing;
mod throttle;
mod users;
mod webhooks;

use diesel::prelude::*;
use todo_core::StoreError;

use db::{AnyConnection, Manager};
pub use db::{Backend, DatabaseUrl, SqliteSync, StoreConfig, redact_url};
pub use error::DatabaseUrlError;
use error::{from_diesel, from_pool};
use group::GroupCommit;
pub use group::GroupCommitStats;
use in_place::InPlace;
pub use listen::{ChangeListener, ChangeNotice};
pub use throttle::SqlLoginBackoff;

/// The SQL store: users, refresh tokens and tasks in one database.
#[derive(Clone)]
pub struct SqlStore {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    /// SQLite: the writes of this process share transactions, one sync to
    /// the disk for many ([`group`]); SQLite's lock is left to arbitrate
    /// between processes only.
    writer: Option<std::sync::Arc<(GroupCommit, Manager)>>,
    /// SQLite: the connections of reads done in place ([`in_place`]).
    in_place: Option<std::sync::Arc<InPlace>>,
    /// Shared with the pool's manager: see `Manager::suspect_outage`.
    probes_left: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Where it connects (for a connection of its own: [`listen`]).
    url: DatabaseUrl,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The pool's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open.
    pub connections: u32,
    /// Of them, idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl SqlStore {
    /// Opens a pool. It connects lazily, so a database that is down now does
    /// not stop the caller from starting; [`SqlStore::ping`] tells. For
    /// SQLite it makes SQLite's process-wide settings first, on this thread
    /// (the crate's documentation), and refuses a SQLite built without
    /// mutexes.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        if let DatabaseUrl::Sqlite(path) = &config.url {
            todo_sqlite_process::usable().map_err(|why| StoreError::Internal(why.into()))?;
            db::prepare_sqlite_files(path).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        let probes_left = std::sync::Arc::default();
        let pool = r2d2::Pool::builder()
            .max_size(config.max_connections.max(1))
            .min_idle(Some(0))
            .connection_timeout(config.acquire_timeout)
            .test_on_check_out(false)
            .build_unchecked(Manager::new(config, std::sync::Arc::clone(&probes_left)));
        let writer = matches!(config.url, DatabaseUrl::Sqlite(_)).then(|| {
            let manager = Manager::new(config, std::sync::Arc::clone(&probes_left));
            std::sync::Arc::new((GroupCommit::new(), manager))
        });
        let in_place = match &config.url {
            DatabaseUrl::Sqlite(path) => Some(std::sync::Arc::new(InPlace::new(path.clone()))),
            DatabaseUrl::Postgres(_) => None,
        };
        Ok(Self {
            pool,
            backend: config.url.backend(),
            writer,
            in_place,
            probes_left,
            url: config.url.clone(),
        })
    }

    /// Opens a pool and runs the pending migrations: what every server does
    /// at start. Instances started together migrate once (an advisory lock
    /// on PostgreSQL, an immediate transaction on SQLite); a URL that names
    /// nothing usable fails here rather than at the first request.
    ///
    /// ```
    /// use todo_store::{Backend, DatabaseUrl, SqlStore, StoreConfig};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let config = StoreConfig::new(DatabaseUrl::Sqlite(dir.path().join("todo.db")));
    /// let store = SqlStore::open_and_migrate(&config)?;
    /// assert_eq!(store.backend(), Backend::Sqlite);
    ///
    /// // Opening again finds nothing left to migrate.
    /// let again = SqlStore::open_and_migrate(&config)?;
    /// assert_eq!(again.pool_state().max, config.max_connections);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_and_migrate(config: &StoreConfig) -> Result<Self, StoreError> {
        let store = Self::open(config)?;
        store.migrate()?;
        Ok(store)
    }

    /// Runs the pending migrations; returns how many ran. Safe when several
    /// instances start at once on one database.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.pool.get().map_err(from_pool)?;
        db::migrate(&mut conn)
    }

    /// One round trip to the database (for readiness checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ()))
    }

    /// Asks the database whether its files are sound: SQLite's
    /// `PRAGMA integrity_check` (reads the whole file; for operators and
    /// tests, not for probes). PostgreSQL checks its own pages (and has
    /// `amcheck` for more): there it is one round trip.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        #[derive(QueryableByName)]
        struct Check {
            #[diesel(sql_type = diesel::sql_types::Text)]
            integrity_check: String,
        }
        match self.backend {
            Backend::Postgres => self.ping(),
            Backend::Sqlite => {
                let rows = self.with_conn(|conn| {
                    diesel::sql_query("PRAGMA integrity_check").load::<Check>(conn)
                })?;
                match rows.as_slice() {
                    [row] if row.integrity_check == "ok" => Ok(()),
                    _ => Err(StoreError::Internal(
                        format!(
                            "integrity check failed: {}",
                            rows.iter()
                                .map(|r| r.integrity_check.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                        .into(),
                    )),
                }
            }
        }
    }

    /// Which database this store is on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool's state now, for metrics.
    #[must_use]
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool.max_size(),
        }
    }

    /// SQLite: how many group commits there were and the writes they held
    /// (the writes per sync to the disk); `None` on PostgreSQL.
    #[must_use]
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.writer.as_ref().map(|writer| writer.0.stats())
    }

    /// Like `with_conn`, for statements that write: on SQLite `work` runs in
    /// a savepoint of a shared transaction ([`group`]), and this returns
    /// once that is committed. `work` opens no transaction of its own
    /// (nested ones are savepoints).
    fn with_write_conn<T>(
        &self,
        work: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
    ) -> Result<T, StoreError> {
        match &self.writer {
            Some(writer) => writer.0.write(&writer.1, work),
            None => self.with_conn(work),
        }
    }

    /// Opens the connections of reads in place that are missing: on a
    /// blocking read, which runs when a read in place found none idle.
    fn replenish_in_place(&self) {
        if let Some(in_place) = &self.in_place {
            in_place.replenish();
        }
    }

    fn with_conn<T>(
        &self,
        work: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get().map_err(from_pool)?;
        work(&mut conn).map_err(|error| {
            let error = from_diesel(error);
            if matches!(error, StoreError::Unavailable(_))
                && matches!(&*conn, AnyConnection::Postgresql(_))
            {
                Manager::suspect_outage(&self.probes_left, self.pool.max_size());
            }
            error
        })
    }
}
