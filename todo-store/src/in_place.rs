//! Reads in place (SQLite): short reads that an async worker runs itself,
//! with no hop to a blocking thread and back (which costs more than the
//! read: a SQLite lookup by key takes microseconds).
//!
//! What keeps them short, so that a worker never waits:
//! - connections of their own, apart from the pool: a read never waits for
//!   a connection; with none idle and the most open, it is not done in
//!   place (`None`) and the caller reads on a blocking thread instead;
//! - `busy_timeout = 0` and `query_only`: a WAL reader takes no lock that a
//!   writer holds, and in the rare case SQLite answers "busy" (another
//!   process recovering the WAL) it fails at once rather than sleeping;
//! - any failure is not answered here: the connection is dropped and the
//!   caller reads on a blocking thread, whose answer (and wait) counts;
//! - only queries served by an index (the store decides: a text search,
//!   which reads every task of its owner, is not done in place).
//!
//! PostgreSQL has none: each read is a network round trip.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryResult, SqliteConnection};

use crate::db::AnyConnection;

/// The in-place read connections of one SQLite store.
pub(crate) struct InPlace {
    path: PathBuf,
    idle: Mutex<Vec<AnyConnection>>,
    /// Connections open (idle or reading).
    open: AtomicUsize,
    /// The most open at once: one per async worker is the need; more only
    /// while a reader is being replaced.
    most: usize,
}

impl std::fmt::Debug for InPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlace")
            .field("open", &self.open)
            .field("most", &self.most)
            .finish_non_exhaustive()
    }
}

impl InPlace {
    pub(crate) fn new(path: PathBuf) -> Self {
        let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            path,
            idle: Mutex::default(),
            open: AtomicUsize::new(0),
            most: workers.saturating_mul(2).max(4),
        }
    }

    /// `work`'s answer, or `None` when it cannot be had now without
    /// waiting, or failed (the caller then reads on a blocking thread).
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
    ) -> Option<T> {
        let mut conn = self.take()?;
        match work(&mut conn) {
            Ok(value) => {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn);
                Some(value)
            }
            Err(_) => {
                drop(conn);
                self.open.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// An idle connection, else a new one while fewer than `most` are open.
    fn take(&self) -> Option<AnyConnection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if idle.is_some() {
            return idle;
        }
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.most).then_some(n + 1)
            })
            .ok()?;
        let conn = self.connect();
        if conn.is_none() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        conn
    }

    /// A new read connection; `None` if it cannot be opened now (the
    /// caller reads on the blocking pool, whose error is the answer).
    fn connect(&self) -> Option<AnyConnection> {
        let mut conn = SqliteConnection::establish(&self.path.to_string_lossy()).ok()?;
        conn.batch_execute("PRAGMA busy_timeout = 0; PRAGMA query_only = 1;")
            .ok()?;
        Some(AnyConnection::Sqlite(conn))
    }

    /// How many are open (for tests).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use diesel::RunQueryDsl;

    use super::*;
    use crate::{DatabaseUrl, SqlStore, StoreConfig};

    /// A read of a table (which takes SQLite's shared lock).
    fn one(conn: &mut AnyConnection) -> QueryResult<usize> {
        diesel::sql_query("SELECT id FROM users LIMIT 1").execute(conn)
    }

    fn store() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("todo.db");
        SqlStore::open_and_migrate(&StoreConfig::new(DatabaseUrl::Sqlite(path.clone()))).unwrap();
        (dir, path)
    }

    /// Reads nested `depth` deep hold `depth` connections at once.
    fn nested(in_place: &InPlace, depth: usize) -> Option<usize> {
        in_place.read(|conn| {
            one(conn)?;
            Ok(if depth <= 1 {
                Some(1)
            } else {
                nested(in_place, depth - 1)
            })
        })?
    }

    #[test]
    fn a_read_that_would_wait_for_a_connection_is_not_done_in_place() {
        let (_dir, path) = store();
        let in_place = InPlace::new(path);
        assert_eq!(nested(&in_place, in_place.most), Some(1));
        assert_eq!(in_place.open(), in_place.most, "kept for the next reads");
        assert_eq!(nested(&in_place, in_place.most + 1), None);
        assert_eq!(in_place.open(), in_place.most, "never more than the most");
        assert_eq!(nested(&in_place, 1), Some(1));
    }

    #[test]
    fn a_locked_database_is_not_waited_for() {
        let (_dir, path) = store();
        // Another connection takes the file for itself: any reader is
        // "busy", which the pool's connections would wait out (5 s).
        let mut owner = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        owner
            .batch_execute(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; \
                 INSERT INTO users (id) SELECT 'x' WHERE 0;",
            )
            .unwrap();
        let in_place = InPlace::new(path);
        let started = Instant::now();
        assert_eq!(in_place.read(one), None);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(in_place.open(), 0, "the failed connection is dropped");
        owner.batch_execute("COMMIT").unwrap();
    }
}
