//! Reads in place (SQLite): short reads that an async worker runs itself,
//! with no hop to a blocking thread and back (which costs more than the
//! read: a SQLite lookup by key takes microseconds).
//!
//! What keeps them short:
//! - only reads an index serves from where it seeks to: one task by id, or
//!   a page in an index's order, from its start or from the cursor (a row
//!   value, ties included), with no filter the index does not hold (the
//!   store decides: `done`, `parent`, `label`, `due_*` and `q` filter row
//!   by row, and one that matches little would read every task of the
//!   caller's projects), and of
//!   little text: a list read stops, and goes to the blocking pool, once
//!   its rows hold more than 64 KiB (a page of large tasks is megabytes to
//!   read and render);
//! - connections of their own, apart from the pool, never waited for: with
//!   none idle the read is not done in place (`None`) and the caller reads
//!   on a blocking thread instead; they are opened there too
//!   ([`InPlace::replenish`]), never on a worker;
//! - `busy_timeout = 0` and `query_only`: a WAL reader takes no lock that a
//!   writer holds, and where SQLite answers "busy" (another process
//!   recovering the WAL) it fails at once rather than sleeping in the busy
//!   handler;
//! - any failure is not answered here: it is logged, the connection is
//!   dropped, and the caller reads on a blocking thread, whose answer (and
//!   wait) counts.
//!
//! What can still wait: a page that is in neither SQLite's cache nor the
//! operating system's is read from the disk (`pread`) on the worker, and
//! SQLite's WAL may spin briefly while a checkpoint restarts the log. On a
//! database larger than memory, reads belong on the blocking pool.
//!
//! PostgreSQL has none: each read is a network round trip.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use diesel::QueryResult;
use diesel::connection::SimpleConnection;

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
        let mut conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        match work(&mut conn) {
            Ok(value) => {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn);
                Some(value)
            }
            Err(error) => {
                drop(conn);
                self.open.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(target: "todo::store", %error, "a read in place failed; read again on the blocking pool");
                None
            }
        }
    }

    /// Opens connections until `most` are: called by reads on the blocking
    /// pool (where opening a file may wait), which run when a read in place
    /// found none idle.
    pub(crate) fn replenish(&self) {
        while self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.most).then_some(n + 1)
            })
            .is_ok()
        {
            match self.connect() {
                Ok(conn) => self
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn),
                Err(error) => {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(target: "todo::store", %error, "opening a connection for reads in place failed");
                    return;
                }
            }
        }
    }

    fn connect(&self) -> Result<AnyConnection, diesel::r2d2::Error> {
        use diesel::r2d2::Error::{ConnectionError, QueryError};
        let mut conn = todo_sqlite_process::establish(&self.path.to_string_lossy())
            .map_err(ConnectionError)?;
        conn.batch_execute("PRAGMA busy_timeout = 0; PRAGMA query_only = 1;")
            .map_err(QueryError)?;
        Ok(AnyConnection::Sqlite(conn))
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
        assert_eq!(nested(&in_place, 1), None, "none is opened on a worker");
        assert_eq!(in_place.open(), 0);
        in_place.replenish();
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
        let mut owner = todo_sqlite_process::establish(&path.to_string_lossy()).unwrap();
        owner
            .batch_execute(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; \
                 INSERT INTO users (id) SELECT 'x' WHERE 0;",
            )
            .unwrap();
        let in_place = InPlace::new(path);
        in_place.replenish();
        assert_eq!(in_place.open(), in_place.most, "opening takes no lock");
        let started = Instant::now();
        assert_eq!(in_place.read(one), None);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            in_place.open(),
            in_place.most - 1,
            "the connection that failed is dropped"
        );
        owner.batch_execute("COMMIT").unwrap();
    }
}
