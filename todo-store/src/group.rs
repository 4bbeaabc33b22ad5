//! Group commit for SQLite: the writes of one process share transactions,
//! so that one sync to the disk acknowledges many of them.
//!
//! SQLite has one writer at a time, and with `synchronous = FULL` each
//! commit waits for the disk; one transaction per write caps writes at the
//! disk's syncs per second. Here a write takes the writer connection (a
//! mutex), joins the open transaction (or begins one, `BEGIN IMMEDIATE`) and
//! runs in a savepoint of its own. The last write in line — no other is
//! waiting for the connection, or the batch is full — commits, and so syncs
//! once for all; the others wait for that commit before they return. So a
//! write is acknowledged only once it is on the disk, as before, while the
//! writes that queued during one sync share the next.
//!
//! Each write keeps its own outcome: one that fails by its own rules (a
//! taken id, a stale version, a quota: errors of the request, or `Ok`
//! answers that say no) has its savepoint rolled back and leaves its
//! neighbours alone. A failure of the database itself (a full or read-only
//! disk, an I/O error, a lost lock) rolls the whole batch back, and every
//! write in it is answered "unavailable": none is acknowledged, none kept.
//!
//! Each write runs on its caller's thread (no hop to a writer thread, and
//! the closures may borrow); the callers are blocking threads, never the
//! async workers.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, QueryResult, SqliteConnection};
use todo_core::StoreError;

use crate::db::{AnyConnection, Manager};
use crate::error::from_diesel;

/// The most writes one transaction takes: a bound on how long the first of
/// them waits when writes keep arriving.
pub(crate) const MAX_BATCH: u64 = 64;

/// The writer connection of one store, and its open batch.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    /// Writes waiting for the connection: while there are any, the holder
    /// leaves the commit to them.
    queued: AtomicUsize,
    batches: AtomicU64,
    writes: AtomicU64,
}

#[derive(Default)]
struct State {
    connection: Option<AnyConnection>,
    /// The open batch, if any.
    open: Option<Batch>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("open", &self.open.as_ref().map(|b| b.writes))
            .finish_non_exhaustive()
    }
}

/// A transaction shared by writes.
struct Batch {
    /// The writes it holds (refusals and failures aside).
    writes: u64,
    /// How it ended, for its waiters.
    outcome: Arc<Outcome>,
}

/// How a batch ended: `None` while it is open. Each waiter holds its
/// batch's, so it reads its own even after later batches ended, and waits
/// on it without the writer connection's lock (which the next batch's
/// writes hold: waiting on that lock would queue the acknowledgements of
/// one batch behind the work of the next).
#[derive(Default)]
struct Outcome {
    committed: Mutex<Option<bool>>,
    ended: Condvar,
}

impl Outcome {
    fn set(&self, committed: bool) {
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(committed);
        self.ended.notify_all();
    }

    fn wait(&self) -> bool {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(committed) = *committed {
                return committed;
            }
            committed = self
                .ended
                .wait(committed)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// How many batches committed and writes they held: the writes per sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes acknowledged in them.
    pub writes: u64,
}

impl GroupCommit {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::default(),
            queued: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    /// Whether no write holds the connection now (for tests).
    #[cfg(test)]
    fn lock_is_free(&self) -> bool {
        self.state.try_lock().is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` in the shared transaction and returns once it is on the
    /// disk (or known to be lost: then "unavailable").
    pub(crate) fn write<T>(
        &self,
        manager: &Manager,
        work: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
    ) -> Result<T, StoreError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        self.queued.fetch_sub(1, Ordering::SeqCst);

        if state.open.is_none() {
            begin(&mut state, manager)?;
        }
        let Some(conn) = state.connection.as_mut() else {
            return Err(StoreError::Internal("the writer connection is gone".into()));
        };
        // Its own savepoint: diesel nests a transaction inside the batch's.
        let outcome = catch_unwind(AssertUnwindSafe(|| conn.transaction(work)));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                self.finish(&mut state, false);
                drop(state);
                resume_unwind(panic);
            }
        };
        if let Err(error) = &outcome
            && (fails_the_batch(error) || !in_transaction(conn))
        {
            // The database failed, not the request: nothing of the batch
            // can be trusted to commit.
            self.finish(&mut state, false);
            return Err(from_diesel(
                outcome.err().unwrap_or(DieselError::NotInTransaction),
            ));
        }
        let Some(batch) = state.open.as_mut() else {
            return Err(StoreError::Internal("the batch is gone".into()));
        };
        if outcome.is_ok() {
            batch.writes += 1;
        }
        let writes = batch.writes;
        let mine = Arc::clone(&batch.outcome);
        let last_in_line = self.queued.load(Ordering::SeqCst) == 0 || writes >= MAX_BATCH;
        if !last_in_line && let Err(error) = outcome {
            // Refused by its own rules and undone: nothing to wait for.
            return Err(from_diesel(error));
        }
        let committed = if last_in_line {
            let committed = commit(&mut state);
            if committed {
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.writes.fetch_add(writes, Ordering::Relaxed);
            }
            self.finish(&mut state, committed);
            committed
        } else {
            // Someone queued behind will commit (or fail) the batch.
            drop(state);
            mine.wait()
        };
        match outcome {
            // A refusal of its own stands whatever became of the batch.
            Err(error) => Err(from_diesel(error)),
            Ok(_) if !committed => Err(StoreError::Unavailable(
                "the group commit failed; the write was rolled back".into(),
            )),
            Ok(value) => Ok(value),
        }
    }

    /// Ends the open batch: rolls it back unless `committed`, and wakes
    /// its waiters.
    fn finish(&self, state: &mut State, committed: bool) {
        if !committed {
            rollback(state);
        }
        if let Some(batch) = state.open.take() {
            batch.outcome.set(committed);
        }
    }
}

/// Opens the writer connection if need be and begins a batch: `BEGIN
/// IMMEDIATE` takes SQLite's write lock first (other processes wait for it,
/// up to the busy timeout).
fn begin(state: &mut State, manager: &Manager) -> Result<(), StoreError> {
    if state.connection.is_none() {
        let conn = r2d2::ManageConnection::connect(manager)
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        state.connection = Some(conn);
    }
    let Some(AnyConnection::Sqlite(sqlite)) = state.connection.as_mut() else {
        return Err(StoreError::Internal("group commit is for SQLite".into()));
    };
    if let Err(error) = AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE") {
        if is_broken(sqlite) {
            state.connection = None;
        }
        return Err(from_diesel(error));
    }
    state.open = Some(Batch {
        writes: 0,
        outcome: Arc::default(),
    });
    Ok(())
}

/// Commits the open batch: the one sync of all its writes.
fn commit(state: &mut State) -> bool {
    let Some(AnyConnection::Sqlite(sqlite)) = state.connection.as_mut() else {
        return false;
    };
    // A failed commit is rolled back by the manager itself (or leaves it
    // broken: then the connection goes).
    let committed = AnsiTransactionManager::commit_transaction(sqlite).is_ok();
    if !committed && (is_broken(sqlite) || in_transaction_sqlite(sqlite)) {
        state.connection = None;
    }
    committed
}

/// Rolls the open batch back; a connection that cannot is dropped (SQLite
/// then rolls back what it holds as the file is closed).
fn rollback(state: &mut State) {
    let Some(AnyConnection::Sqlite(sqlite)) = state.connection.as_mut() else {
        return;
    };
    if in_transaction_sqlite(sqlite) {
        let rolled_back = AnsiTransactionManager::rollback_transaction(sqlite).is_ok();
        if !rolled_back || is_broken(sqlite) || in_transaction_sqlite(sqlite) {
            state.connection = None;
        }
    }
}

fn in_transaction(conn: &mut AnyConnection) -> bool {
    match conn {
        AnyConnection::Sqlite(sqlite) => in_transaction_sqlite(sqlite),
        AnyConnection::Postgresql(_) => false,
    }
}

fn in_transaction_sqlite(sqlite: &mut SqliteConnection) -> bool {
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(sqlite).transaction_depth(),
        Ok(Some(_))
    )
}

fn is_broken(sqlite: &mut SqliteConnection) -> bool {
    <SqliteConnection as Connection>::TransactionManager::is_broken_transaction_manager(sqlite)
}

/// Whether a write's error is the database's (the batch cannot commit
/// safely: SQLite may have rolled the transaction back itself) rather than
/// the request's (a broken key or reference, or the write's own choice to
/// roll back), which its savepoint undid.
fn fails_the_batch(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(kind, _) => !matches!(
            kind,
            DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
        ),
        DieselError::NotFound
        | DieselError::RollbackTransaction
        | DieselError::DeserializationError(_)
        | DieselError::SerializationError(_)
        | DieselError::QueryBuilderError(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use diesel::connection::SimpleConnection;
    use diesel::sql_types::Text;
    use diesel::{QueryableByName, RunQueryDsl};

    use super::*;
    use crate::db::{DatabaseUrl, StoreConfig};

    /// A group commit on a fresh SQLite file with one table of its own.
    struct Fixture {
        group: Arc<GroupCommit>,
        manager: Arc<Manager>,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(DatabaseUrl::Sqlite(dir.path().join("group.db")));
        let manager = Arc::new(Manager::new(&config, Arc::default()));
        let mut conn = r2d2::ManageConnection::connect(&*manager).unwrap();
        conn.batch_execute("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL)")
            .unwrap();
        Fixture {
            group: Arc::new(GroupCommit::new()),
            manager,
            _dir: dir,
        }
    }

    fn insert(conn: &mut AnyConnection, id: &str) -> QueryResult<usize> {
        diesel::sql_query("INSERT INTO notes (id) VALUES ($1)")
            .bind::<Text, _>(id)
            .execute(conn)
    }

    /// What is on the disk, read by a connection of its own.
    fn stored(f: &Fixture) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Note {
            #[diesel(sql_type = Text)]
            id: String,
        }
        let mut conn = r2d2::ManageConnection::connect(&*f.manager).unwrap();
        let notes: Vec<Note> = diesel::sql_query("SELECT id FROM notes ORDER BY id")
            .load(&mut conn)
            .unwrap();
        notes.into_iter().map(|n| n.id).collect()
    }

    type Work<T> = Box<dyn FnOnce(&mut AnyConnection) -> QueryResult<T> + Send>;

    /// Runs `first` while `others` queue for the connection, so that all
    /// of them share one batch: `first`'s work waits until they are queued.
    fn one_batch<T: Send + 'static>(
        f: &Fixture,
        first: impl FnOnce(&mut AnyConnection) -> QueryResult<T> + Send + 'static,
        others: Vec<Work<T>>,
    ) -> Vec<Result<T, StoreError>> {
        let waiting = others.len();
        let (group, manager) = (Arc::clone(&f.group), Arc::clone(&f.manager));
        let lead = std::thread::spawn(move || {
            let queued = Arc::clone(&group);
            group.write(&manager, move |conn| {
                let deadline = Instant::now() + Duration::from_secs(10);
                while queued.queued.load(Ordering::SeqCst) < waiting {
                    assert!(Instant::now() < deadline, "the others never queued");
                    std::thread::sleep(Duration::from_millis(1));
                }
                first(conn)
            })
        });
        // The lead holds the connection before the others ask for it.
        while f.group.lock_is_free() {
            std::thread::yield_now();
        }
        let rest: Vec<_> = others
            .into_iter()
            .map(|work| {
                let (group, manager) = (Arc::clone(&f.group), Arc::clone(&f.manager));
                std::thread::spawn(move || group.write(&manager, work))
            })
            .collect();
        let mut outcomes = vec![lead.join().unwrap()];
        outcomes.extend(rest.into_iter().map(|t| t.join().unwrap()));
        outcomes
    }

    #[test]
    fn queued_writes_share_one_commit() {
        let f = fixture();
        let outcomes = one_batch(
            &f,
            |c| insert(c, "a"),
            vec![Box::new(|c| insert(c, "b")), Box::new(|c| insert(c, "c"))],
        );
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(stored(&f), ["a", "b", "c"]);
        assert_eq!(
            f.group.stats(),
            GroupCommitStats {
                batches: 1,
                writes: 3
            }
        );
    }

    #[test]
    fn a_write_refused_by_its_own_rules_leaves_its_neighbours_alone() {
        let f = fixture();
        let outcomes = one_batch(
            &f,
            |c| insert(c, "a"),
            vec![
                // A taken key, after a first statement of its own that its
                // savepoint must undo.
                Box::new(|c| insert(c, "x").and_then(|_| insert(c, "a"))),
                Box::new(|c| insert(c, "c")),
            ],
        );
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(
            matches!(outcomes[1], Err(StoreError::Conflict(_))),
            "{outcomes:?}"
        );
        assert_eq!(stored(&f), ["a", "c"]);
        assert_eq!(f.group.stats().batches, 1);
    }

    #[test]
    fn a_failure_of_the_database_fails_and_undoes_the_whole_batch() {
        let f = fixture();
        let outcomes = one_batch(
            &f,
            |c| insert(c, "a"),
            vec![
                Box::new(|c| diesel::sql_query("INSERT INTO missing VALUES (1)").execute(c)),
                Box::new(|c| insert(c, "c")),
            ],
        );
        // The write that came after the failure began a batch of its own.
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        assert!(failed >= 2, "{outcomes:?}");
        assert!(
            matches!(outcomes[0], Err(StoreError::Unavailable(_))),
            "the first write shared the failed batch: {outcomes:?}"
        );
        assert!(!stored(&f).contains(&"a".to_owned()), "{:?}", stored(&f));
        // And the next write goes through.
        f.group.write(&f.manager, |c| insert(c, "d")).unwrap();
        assert!(stored(&f).contains(&"d".to_owned()));
    }

    #[test]
    fn a_panicking_write_fails_its_batch_and_the_writer_recovers() {
        let f = fixture();
        let (group, manager) = (Arc::clone(&f.group), Arc::clone(&f.manager));
        let panicked = std::thread::spawn(move || {
            group.write(&manager, |c| {
                insert(c, "a")?;
                panic!("a bug in a write");
                #[allow(unreachable_code)]
                Ok(())
            })
        })
        .join();
        assert!(panicked.is_err());
        f.group.write(&f.manager, |c| insert(c, "b")).unwrap();
        assert_eq!(stored(&f), ["b"]);
    }

    #[test]
    fn many_concurrent_writers_are_all_acknowledged_with_fewer_syncs() {
        let f = fixture();
        let next = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, manager) = (Arc::clone(&f.group), Arc::clone(&f.manager));
                let next = Arc::clone(&next);
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        group
                            .write(&manager, |c| insert(c, &format!("{n:04}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stored(&f).len(), 320);
        let stats = f.group.stats();
        assert_eq!(stats.writes, 320);
        assert!(stats.batches < 320, "no write shared a sync: {stats:?}");
    }
}
