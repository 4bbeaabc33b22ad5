//! SQLite's process-wide settings, made once before the store's first
//! SQLite connection: the crate's only `unsafe` (two calls of SQLite's C
//! API that diesel does not expose).
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
//! - nothing reads SQLite's memory statistics (`sqlite3_memory_used`,
//!   `sqlite3_status64`) or sets its heap limits, which need them.
//!
//! Both are settings of the process and can be made only before SQLite
//! is initialised (which its first connection does). In a program that
//! opened SQLite connections of its own first, they are refused
//! (`SQLITE_MISUSE`) and SQLite stays as it is: slower, as correct. A
//! program that shares one raw connection between threads at once (none in
//! Rust: every binding's connection is not `Sync`) opens it with
//! `SQLITE_OPEN_FULLMUTEX`, which the process's mode does not override.

use std::sync::OnceLock;

use diesel::{Connection, ConnectionResult, SqliteConnection};

/// What became of the process-wide settings, decided at the first call of
/// [`establish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// SQLite's answer to `SQLITE_CONFIG_MULTITHREAD`.
    pub(crate) multithread: i32,
    /// SQLite's answer to `SQLITE_CONFIG_MEMSTATUS` off.
    pub(crate) no_memory_statistics: i32,
}

impl Settings {
    /// Whether SQLite took both.
    pub(crate) fn applied(self) -> bool {
        self.multithread == libsqlite3_sys::SQLITE_OK
            && self.no_memory_statistics == libsqlite3_sys::SQLITE_OK
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings, made now if this is the first call in the process.
pub(crate) fn settings() -> Settings {
    *SETTINGS.get_or_init(|| {
        let settings = configure();
        if !settings.applied() {
            tracing::info!(
                target: "todo::store",
                ?settings,
                "SQLite was initialised before the store configured it: it keeps its own mutexes \
                 and memory statistics"
            );
        }
        settings
    })
}

#[allow(unsafe_code)]
fn configure() -> Settings {
    // SAFETY: `sqlite3_config` is safe to call from any thread, checks
    // itself that SQLite is not yet initialised (answering SQLITE_MISUSE
    // and changing nothing if it is), and `OnceLock` runs this once, so
    // no two threads call it at once (which SQLite's documentation rules
    // out). Each option takes the arguments SQLite documents for it:
    // MULTITHREAD none, MEMSTATUS one `int`. What multi-thread mode asks
    // of its callers (no connection used by two threads at once) is
    // upheld by the types, as the module's documentation says.
    unsafe {
        Settings {
            multithread: libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD),
            no_memory_statistics: libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                std::ffi::c_int::from(0u8),
            ),
        }
    }
}

/// A connection to the SQLite database at `path`, the process-wide
/// settings made first: every SQLite connection of the store opens here.
pub(crate) fn establish(path: &str) -> ConnectionResult<SqliteConnection> {
    settings();
    SqliteConnection::establish(path)
}

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
        assert_eq!(
            settings(),
            Settings {
                multithread: libsqlite3_sys::SQLITE_OK,
                no_memory_statistics: libsqlite3_sys::SQLITE_OK,
            }
        );
        assert!(settings().applied());
        // A connection and a table allocate: counted, this would be more.
        assert_eq!(memory_counted(), 0);
    }
}
