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
//! neighbours alone; so does any other error of one statement that diesel's
//! savepoint undid. Its answer, too, waits for the commit (a refusal may
//! rest on a neighbour's write in the same batch). A failure of the
//! database itself (a full or read-only disk, an I/O error, a lost lock:
//! "unavailable" errors, after which SQLite may have rolled the transaction
//! back itself), a failed commit or a panicking write rolls the whole batch
//! back, and every write in it is answered "unavailable" with the cause,
//! which is logged once: none is acknowledged, none kept.
//!
//! Each write runs on its caller's thread (no hop to a writer thread, and
//! the closures may borrow); the callers are blocking threads, never the
//! async workers.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::result::Error as DieselError;
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
    /// The writes it holds (refusals aside).
    writes: u64,
    /// The writes that joined it, refused ones too: what `MAX_BATCH` bounds.
    joined: u64,
    /// How it ended, for its waiters.
    outcome: Arc<Outcome>,
}

/// How a batch ended: `None` while it is open. Each waiter holds its
/// batch's, so it reads its own even after later batches ended, and waits
/// on it without the writer connection's lock (which the next batch's
/// writes hold: waiting on that lock would queue the acknowledgements of
/// one batch behind the work of the next).
/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Committed,
    /// Rolled back, and why (for every write of it, and the log).
    RolledBack(Arc<str>),
}

#[derive(Default)]
struct Outcome {
    ended: Mutex<Option<Ended>>,
    signal: Condvar,
}

impl Outcome {
    fn set(&self, ended: Ended) {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(ended);
        self.signal.notify_all();
    }

    fn wait(&self) -> Ended {
        let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(ended) = &*ended {
                return ended.clone();
            }
            ended = self
                .signal
                .wait(ended)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// How many batches committed and writes they held: the writes per sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
            self.finish(
                &mut state,
                Ended::RolledBack("the writer connection is gone".into()),
            );
            return Err(StoreError::Internal("the writer connection is gone".into()));
        };
        // Its own savepoint: diesel nests a transaction inside the batch's.
        // The write's own error is kept here: when the savepoint cannot be
        // rolled back (SQLite rolled the whole transaction back itself, as
        // after a full disk), diesel answers the rollback's error instead.
        let mut own_error = None;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            conn.transaction(|c| {
                work(c).map_err(|error| {
                    own_error = Some(error);
                    DieselError::RollbackTransaction
                })
            })
        }));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                self.finish(&mut state, Ended::RolledBack("a write panicked".into()));
                drop(state);
                resume_unwind(panic);
            }
        };
        let outcome = match (outcome, own_error) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(error)) | (Err(error), None) => Err(from_diesel(error)),
        };
        if let Err(error) = &outcome
            && (matches!(error, StoreError::Unavailable(_)) || !in_transaction(conn))
        {
            // The disk or the lock failed, not the request (SQLite may
            // have rolled the transaction back itself): nothing of the
            // batch can be trusted to commit.
            self.finish(&mut state, Ended::RolledBack(error.to_string().into()));
            return outcome;
        }
        if outcome.is_err()
            && let Err(error) = release_rolled_back(conn)
        {
            let error = from_diesel(error);
            self.finish(&mut state, Ended::RolledBack(error.to_string().into()));
            return Err(error);
        }
        let Some(batch) = state.open.as_mut() else {
            return Err(StoreError::Internal("the batch is gone".into()));
        };
        batch.joined += 1;
        if outcome.is_ok() {
            batch.writes += 1;
        }
        let (writes, joined) = (batch.writes, batch.joined);
        let mine = Arc::clone(&batch.outcome);
        let last_in_line = self.queued.load(Ordering::SeqCst) == 0 || joined >= MAX_BATCH;
        let ended = if last_in_line {
            let ended = commit(&mut state);
            if ended == Ended::Committed {
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.writes.fetch_add(writes, Ordering::Relaxed);
            }
            self.finish(&mut state, ended.clone());
            ended
        } else {
            // Someone queued behind will commit (or fail) the batch.
            drop(state);
            mine.wait()
        };
        match ended {
            // A refusal of its own stands once the batch it saw is on the
            // disk (it may rest on a neighbour's write: a name taken by a
            // write in the same batch).
            Ended::Committed => outcome,
            Ended::RolledBack(cause) => Err(StoreError::Unavailable(
                format!("the group commit failed ({cause}); the write was rolled back").into(),
            )),
        }
    }

    /// Ends the open batch: rolls it back unless it `ended` committed, and
    /// wakes its waiters.
    fn finish(&self, state: &mut State, ended: Ended) {
        if let Ended::RolledBack(cause) = &ended {
            tracing::warn!(target: "todo::store", %cause, "a group commit of SQLite writes failed; its writes are answered 503");
            rollback(state);
        }
        if let Some(batch) = state.open.take() {
            batch.outcome.set(ended);
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
        joined: 0,
        outcome: Arc::default(),
    });
    Ok(())
}

/// Commits the open batch: the one sync of all its writes. A failure's
/// cause, as text, goes to every write of the batch.
fn commit(state: &mut State) -> Ended {
    let Some(AnyConnection::Sqlite(sqlite)) = state.connection.as_mut() else {
        return Ended::RolledBack("the writer connection is gone".into());
    };
    // A failed commit is rolled back by the manager itself (or leaves it
    // broken: then the connection goes).
    let committed = AnsiTransactionManager::commit_transaction(sqlite);
    if committed.is_err() && (is_broken(sqlite) || in_transaction_sqlite(sqlite)) {
        state.connection = None;
    }
    match committed {
        Ok(()) => Ended::Committed,
        Err(error) => Ended::RolledBack(error.to_string().into()),
    }
}

/// Rolls the open batch back; a connection that cannot is dropped (SQLite
/// then rolls back what it holds as the file is closed).
fn rollback(state: &mut State) {
    let Some(AnyConnection::Sqlite(sqlite)) = state.connection.as_mut() else {
        return;
    };
    if is_broken(sqlite) {
        state.connection = None;
        return;
    }
    if in_transaction_sqlite(sqlite) {
        let rolled_back = AnsiTransactionManager::rollback_transaction(sqlite);
        if let Err(error) = &rolled_back {
            tracing::warn!(target: "todo::store", %error, "rolling back a group commit failed; the writer connection is closed");
        }
        if rolled_back.is_err() || is_broken(sqlite) || in_transaction_sqlite(sqlite) {
            state.connection = None;
        }
    }
}

/// Releases the savepoint of a write diesel has rolled back: diesel undoes
/// it with `ROLLBACK TO` alone, which leaves the savepoint open, empty,
/// until the batch ends, and SQLite's statement journal would then hold
/// every later write of the batch as one (spilling to a temporary file
/// past its size, as before the store kept 120 KiB in memory). The batch's
/// transaction is diesel's first level, a write's savepoint its second:
/// `diesel_savepoint_1`, by diesel's naming (were it to change, this
/// `RELEASE` would fail and roll its batch back, which the refusal tests
/// here would show).
fn release_rolled_back(conn: &mut AnyConnection) -> QueryResult<()> {
    diesel::connection::SimpleConnection::batch_execute(
        conn,
        "RELEASE SAVEPOINT diesel_savepoint_1",
    )
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

    /// SQLite's temporary files open in this process (`etilqs_…`, unlinked
    /// as they are opened).
    fn temporary_files_open() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("etilqs_"))
            .count()
    }

    /// After a refused write, each later write of the batch has a
    /// statement journal of its own: three that change 20 pages each (80
    /// KiB of journal) keep theirs in memory. With the refused write's
    /// savepoint left open, as diesel leaves it, the journal holds the
    /// batch's writes since, and spills at the second.
    #[test]
    #[cfg(target_os = "linux")]
    fn after_a_refused_write_the_next_writes_journal_alone() {
        let f = fixture();
        let mut conn = r2d2::ManageConnection::connect(&*f.manager).unwrap();
        conn.batch_execute(
            "CREATE TABLE pages (k INTEGER PRIMARY KEY, v BLOB); \
             WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 100) \
             INSERT INTO pages SELECT k, zeroblob(3000) FROM n;",
        )
        .unwrap();
        let twenty_pages = |from: u32| -> Work<usize> {
            Box::new(move |c: &mut AnyConnection| {
                c.batch_execute(&format!(
                    "UPDATE pages SET v = randomblob(3000) WHERE k > {from} AND k <= {}",
                    from + 20
                ))?;
                Ok(temporary_files_open())
            })
        };
        let outcomes = one_batch(
            &f,
            |c| insert(c, "refused").and_then(|_| Err(DieselError::NotFound)),
            vec![twenty_pages(0), twenty_pages(20), twenty_pages(40)],
        );
        assert!(outcomes[0].is_err(), "{outcomes:?}");
        let spilled: Vec<_> = outcomes[1..]
            .iter()
            .map(|o| o.as_ref().ok().copied())
            .collect();
        assert_eq!(spilled, [Some(0); 3], "temporary files seen by each write");
        assert_eq!(stored(&f), Vec::<String>::new());
        assert_eq!(f.group.stats().batches, 1);
    }

    /// Fills the database: SQLite answers "database or disk is full", as
    /// on a full disk (the limit holds on the writer connection until
    /// `unfill`).
    fn fill(c: &mut AnyConnection) -> QueryResult<usize> {
        c.batch_execute("PRAGMA max_page_count = 1")?;
        insert(c, &"x".repeat(100_000))
    }

    fn unfill(c: &mut AnyConnection) -> QueryResult<()> {
        c.batch_execute("PRAGMA max_page_count = 1073741823")
    }

    #[test]
    fn a_failure_of_the_database_fails_and_undoes_the_whole_batch() {
        let f = fixture();
        let outcomes = one_batch(
            &f,
            |c| insert(c, "a"),
            vec![Box::new(fill), Box::new(|c| insert(c, "c"))],
        );
        // The write that came after the failure began a batch of its own.
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        assert!(failed >= 2, "{outcomes:?}");
        assert!(
            matches!(outcomes[0], Err(StoreError::Unavailable(_))),
            "the first write shared the failed batch: {outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], Err(StoreError::Unavailable(_))),
            "{outcomes:?}"
        );
        assert!(!stored(&f).contains(&"a".to_owned()), "{:?}", stored(&f));
        // And the next write goes through.
        f.group
            .write(&f.manager, |c| {
                unfill(c)?;
                insert(c, "d")
            })
            .unwrap();
        assert!(stored(&f).contains(&"d".to_owned()));
    }

    #[test]
    fn an_error_of_one_statement_stays_with_its_write() {
        let f = fixture();
        let outcomes = one_batch(
            &f,
            |c| insert(c, "a"),
            vec![
                Box::new(|c| diesel::sql_query("INSERT INTO missing VALUES (1)").execute(c)),
                Box::new(|c| insert(c, "c")),
            ],
        );
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(
            matches!(outcomes[1], Err(StoreError::Internal(_))),
            "{outcomes:?}"
        );
        assert_eq!(stored(&f), ["a", "c"]);
    }

    #[test]
    fn a_failed_commit_answers_every_write_unavailable_and_keeps_none() {
        let f = fixture();
        // A reference checked only at COMMIT: the one way to make a
        // commit fail on a sound disk.
        f.group
            .write(&f.manager, |c| {
                c.batch_execute(
                    "CREATE TABLE refs (id TEXT PRIMARY KEY NOT NULL, note TEXT \
                     REFERENCES notes (id) DEFERRABLE INITIALLY DEFERRED)",
                )
                .map(|()| 0)
            })
            .unwrap();
        let outcomes = one_batch(
            &f,
            |c| insert(c, "a"),
            vec![
                Box::new(|c| {
                    diesel::sql_query("INSERT INTO refs VALUES ('r', 'nowhere')").execute(c)
                }),
                // A refusal in the failed batch: its "taken" rested on "a",
                // which is not kept, so it is not answered as a refusal.
                Box::new(|c| insert(c, "a")),
            ],
        );
        for outcome in &outcomes {
            assert!(
                matches!(outcome, Err(StoreError::Unavailable(_))),
                "{outcomes:?}"
            );
        }
        assert!(stored(&f).is_empty(), "{:?}", stored(&f));
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
