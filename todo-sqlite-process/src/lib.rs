//! SQLite's process-wide settings for todo's store, made once as a SQLite
//! store is first opened, before its first connection: the workspace's
//! one non-test `unsafe` (calls of SQLite's C API that diesel does not
//! expose), in a crate of its own so that every other crate forbids
//! `unsafe` outright. todo-store opens every SQLite connection through
//! [`establish`] and checks [`usable`] as a store opens.
//!
//! SQLite as built by distributions starts in its "serialized" mode: every
//! call on a connection (each column of each row read) takes and releases
//! a mutex of that connection, and, with memory statistics on, every
//! allocation SQLite makes takes one mutex shared by the whole process. A
//! profile of the load harness's lists put these at about a tenth of the
//! task-server's CPU, the shared one contended between the async workers.
//! Neither buys the store anything:
//! - each connection is used by one thread at a time (diesel's
//!   `SqliteConnection` is `Send` and not `Sync`; r2d2 and the readers in
//!   place lend it to one user at once), which is what SQLite's
//!   "multi-thread" mode asks: the connections' mutexes go, while SQLite
//!   still guards its shared state (caches, the VFS list) as before;
//! - nothing of ours reads SQLite's memory statistics or sets its heap
//!   limits, which need them.
//!
//! A third setting is a size, not a mode: how much of a statement journal
//! SQLite keeps in memory before it spills it to a temporary file
//! (120 KiB, where SQLite's default is 64 KiB). Group commit runs each
//! write in a savepoint of the batch's transaction, and SQLite copies each
//! page a savepoint (or a statement in it) changes into that journal,
//! 4,100 bytes a page, so that the one write can be undone alone. At the
//! default, about one batch in two of the load harness's creations spilled,
//! and two thirds of the task-server's file writes went to those files
//! (BENCHMARKS.md, "Session 34", has the counts, by size).
//!
//! **They are the process's, not the store's.** Any other user of SQLite in
//! the same process (a C library, an extension) gets them too: its
//! connections have no mutex unless it opens them with
//! `SQLITE_OPEN_FULLMUTEX`, and `sqlite3_soft_heap_limit64` and
//! `sqlite3_memory_used` do nothing, and its statement journals stay in
//! memory up to 120 KiB, allocated in pieces of that size. (rusqlite turns
//! a connection's mutex off with `SQLITE_OPEN_NO_MUTEX` as it opens it,
//! which diesel's open does not take: the process's mode is the way left.)
//! They can be made only before SQLite is initialised: in a program that
//! used SQLite before its first store, they are refused (logged) and SQLite
//! works as that program set it, slower. SQLite requires that no other
//! thread is inside SQLite while they are made (see `configure`);
//! todo-store's `SqlStore::open` makes them, on the caller's thread. A
//! SQLite built without mutexes (`SQLITE_THREADSAFE=0`) is refused: the
//! store's connections move between threads.

#![deny(missing_docs)]

use std::sync::OnceLock;

use diesel::{Connection, ConnectionResult, SqliteConnection};

/// What became of the process-wide settings, decided at the first call of
/// [`settings`] (`SqlStore::open`'s, or a connection's): SQLite's answers.
/// Where `threadsafe` is 0 nothing is asked, and the others read
/// `SQLITE_MISUSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    /// `sqlite3_threadsafe()`: 0 for a build without mutexes, where
    /// nothing is set (and connections moved between threads are unsafe).
    threadsafe: i32,
    /// To `SQLITE_CONFIG_MULTITHREAD`.
    multithread: i32,
    /// To `SQLITE_CONFIG_MEMSTATUS` off.
    no_memory_statistics: i32,
    /// To `SQLITE_CONFIG_STMTJRNL_SPILL` at [`STATEMENT_JOURNAL_IN_MEMORY`].
    statement_journal_spill: i32,
    /// To `sqlite3_initialize()`, right after.
    initialised: i32,
}

impl Settings {
    /// Whether SQLite took them all.
    fn applied(self) -> bool {
        use libsqlite3_sys::SQLITE_OK;
        self.threadsafe != 0
            && self.multithread == SQLITE_OK
            && self.no_memory_statistics == SQLITE_OK
            && self.statement_journal_spill == SQLITE_OK
            && self.initialised == SQLITE_OK
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings, made now if this is the first call in the process.
fn settings() -> Settings {
    *SETTINGS.get_or_init(|| {
        let settings = configure();
        if settings.threadsafe == 0 {
            tracing::error!(target: "todo::store", "{WITHOUT_MUTEXES}");
        } else if !settings.applied() {
            tracing::warn!(
                target: "todo::store",
                ?settings,
                "SQLite refused the store's process-wide settings (it was initialised \
                 before the store was first opened): it keeps its connection mutexes and \
                 memory statistics, which cost about a tenth of a list's CPU, and spills \
                 group commit's savepoint journals to temporary files"
            );
        }
        settings
    })
}

/// Makes the settings and initialises SQLite.
///
/// Sound while no other thread is inside SQLite meanwhile (SQLite's rule
/// for `sqlite3_config`, which reads and writes its global configuration
/// unlocked). The store's own SQLite calls all wait for this: every
/// connection of the store opens through [`establish`], whose `OnceLock`
/// lets none open until this returns, and initialising SQLite here closes
/// the window at once (after it, `sqlite3_config` only refuses). What no
/// type here can rule out is another part of the same program making its
/// first SQLite call at the same instant as the store's first: the
/// store's binaries have none, and an embedding program that uses SQLite
/// on its own threads opens its first store before starting them (the
/// crate's documentation says so; `SqlStore::open` makes the settings).
#[allow(unsafe_code)]
fn configure() -> Settings {
    use libsqlite3_sys::{
        SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_MULTITHREAD, SQLITE_CONFIG_STMTJRNL_SPILL,
        sqlite3_config, sqlite3_initialize, sqlite3_threadsafe,
    };
    // SAFETY: as the function's documentation says: called once (the
    // `OnceLock`), before any other SQLite call of the store; each option
    // takes the arguments SQLite documents for it (MULTITHREAD none,
    // MEMSTATUS and STMTJRNL_SPILL one `int`), and SQLite itself refuses
    // them (SQLITE_MISUSE, changing nothing) once initialised. What
    // multi-thread mode asks of its callers (no connection used by two
    // threads at once) is upheld by the types, as the module's
    // documentation says.
    unsafe {
        let threadsafe = sqlite3_threadsafe();
        if threadsafe == 0 {
            return Settings {
                threadsafe,
                multithread: libsqlite3_sys::SQLITE_MISUSE,
                no_memory_statistics: libsqlite3_sys::SQLITE_MISUSE,
                statement_journal_spill: libsqlite3_sys::SQLITE_MISUSE,
                initialised: sqlite3_initialize(),
            };
        }
        Settings {
            threadsafe,
            multithread: sqlite3_config(SQLITE_CONFIG_MULTITHREAD),
            no_memory_statistics: sqlite3_config(
                SQLITE_CONFIG_MEMSTATUS,
                std::ffi::c_int::from(0u8),
            ),
            statement_journal_spill: sqlite3_config(
                SQLITE_CONFIG_STMTJRNL_SPILL,
                STATEMENT_JOURNAL_IN_MEMORY,
            ),
            initialised: sqlite3_initialize(),
        }
    }
}

/// The bytes of a statement journal SQLite keeps in memory before it
/// spills the journal to a temporary file: 120 KiB, 29 pages' records.
/// SQLite allocates an in-memory journal in pieces of this size (the
/// first as the first page is journaled, freed when the journal is), so
/// the size is also each write's allocation: kept under glibc's 128 KiB,
/// past which glibc maps the first such piece and, as it unmaps it, raises
/// its threshold for the whole process, so that later pieces stay in its
/// heaps (at 4 MiB the task-server ended the load harness at 96–104 MiB,
/// against 87–91 at 120 KiB). A journal lives while a write runs (group
/// commit releases a refused write's savepoint: `todo-store`'s `group.rs`),
/// and SQLite lets one connection write to a database at a time.
const STATEMENT_JOURNAL_IN_MEMORY: std::ffi::c_int = 120 << 10;

/// Makes the settings, if this is the first call in the process, or says
/// why the store cannot use this SQLite: one built without mutexes.
///
/// # Soundness
///
/// No other thread may be inside SQLite while the first call in the
/// process runs (SQLite's rule for its global configuration, which that
/// call writes unlocked): todo-store makes it in `SqlStore::open`, on its
/// caller's thread, before its first connection. A program that used
/// SQLite before is safe (SQLite refuses the settings, and keeps its own);
/// a program that put SQLite in single-thread mode must not open a store,
/// and another SQLite user in the process that shares a connection between
/// threads opens it with `SQLITE_OPEN_FULLMUTEX` (the crate's
/// documentation). Later calls only read what the first decided.
pub fn usable() -> Result<(), &'static str> {
    if settings().threadsafe == 0 {
        return Err(WITHOUT_MUTEXES);
    }
    Ok(())
}

/// A connection to the SQLite database at `path`, the process-wide
/// settings made first ([`usable`]): every SQLite connection of the store
/// opens here. Refused for a SQLite built without mutexes.
///
/// # Soundness
///
/// As [`usable`]'s: its first call (of either) with no other thread
/// inside SQLite.
pub fn establish(path: &str) -> ConnectionResult<SqliteConnection> {
    usable().map_err(|why| diesel::ConnectionError::BadConnection(why.to_owned()))?;
    SqliteConnection::establish(path)
}

/// Why a SQLite built without mutexes is refused.
const WITHOUT_MUTEXES: &str = "this SQLite is built without mutexes \
    (SQLITE_THREADSAFE=0): the store's connections are used from several threads, which it \
    does not allow";

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::*;

    /// The memory SQLite counts as in use: 0 for ever with its memory
    /// statistics off.
    #[allow(unsafe_code)]
    fn memory_counted() -> i64 {
        // SAFETY: no arguments; safe from any thread.
        unsafe { libsqlite3_sys::sqlite3_memory_used() }
    }

    /// Fails if SQLite was initialised before the settings (by a
    /// connection opened some other way first) or refused them: then
    /// connections keep their mutexes, and allocations are counted.
    #[test]
    fn sqlite_takes_the_settings_before_its_first_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.db");
        let mut conn = establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a');")
            .unwrap();
        let settings = settings();
        assert_ne!(settings.threadsafe, 0, "{settings:?}");
        assert_eq!(settings.multithread, libsqlite3_sys::SQLITE_OK);
        assert_eq!(settings.no_memory_statistics, libsqlite3_sys::SQLITE_OK);
        assert_eq!(settings.statement_journal_spill, libsqlite3_sys::SQLITE_OK);
        assert_eq!(settings.initialised, libsqlite3_sys::SQLITE_OK);
        assert!(settings.applied());
        // A connection and a table allocate: counted, this would be more.
        assert_eq!(memory_counted(), 0);
    }

    /// SQLite's temporary files open in this process: it unlinks each as
    /// it opens it (`etilqs_…`, then "(deleted)").
    fn temporary_files_open() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("etilqs_"))
            .count()
    }

    /// The temporary files open while a savepoint of the transaction
    /// group commit would hold (in WAL mode, where a transaction has no
    /// rollback journal of its own) changes `pages` pages of a table of one
    /// row a page.
    fn temporary_files_while_changing(pages: u32) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let mut conn = establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); \
             WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 600) \
             INSERT INTO t SELECT k, zeroblob(3000) FROM n;",
        )
        .unwrap();
        conn.batch_execute(&format!(
            "BEGIN; SAVEPOINT one; UPDATE t SET v = randomblob(3000) WHERE k <= {pages};"
        ))
        .unwrap();
        let open = temporary_files_open();
        conn.batch_execute("RELEASE one; COMMIT;").unwrap();
        open
    }

    /// A savepoint that changes 20 pages (80 KiB of journal, past SQLite's
    /// default 64 KiB) keeps its journal in memory; one that changes 500
    /// (about 2 MiB) spills it to a temporary file, which this scan sees:
    /// the first answer is not the scan's blindness, and the journal is
    /// still bounded.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_savepoints_journal_of_twenty_pages_stays_in_memory() {
        assert_eq!(
            temporary_files_while_changing(20),
            0,
            "the savepoint's journal went to a temporary file"
        );
        assert_eq!(
            temporary_files_while_changing(500),
            1,
            "a journal of 2 MiB should have spilled"
        );
    }
}
