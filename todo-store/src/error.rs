//! The crate's errors. Its one error type is [`DatabaseUrlError`], a URL
//! refused before any connection; every failure after that is the core's
//! [`StoreError`], made here from diesel and r2d2 errors: the only place
//! that looks inside a driver error. None leaves the crate.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use todo_core::StoreError;

/// Why [`crate::DatabaseUrl::parse`] refused a URL. Its message says what
/// to write instead and never shows a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseUrlError {
    /// `sqlite://` with no path.
    #[error("the SQLite URL names no file (use sqlite://PATH)")]
    NoFile,
    /// `sqlite://:memory:`: each pooled connection would see its own
    /// database.
    #[error("an in-memory SQLite database would be one per connection; use a file")]
    InMemory,
    /// Neither SQLite nor PostgreSQL; refused rather than taken for a file
    /// name.
    #[error("unsupported database URL {redacted:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    Unsupported {
        /// The URL as given, its secrets replaced ([`crate::redact_url`]).
        redacted: String,
    },
}

/// Classifies a diesel error: retryable, a broken rule, or a failure.
pub(crate) fn from_diesel(error: DieselError) -> StoreError {
    match &error {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::UniqueViolation => StoreError::Conflict("unique key taken"),
            DatabaseErrorKind::ForeignKeyViolation => {
                StoreError::MissingReference("referenced row is missing")
            }
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::SerializationFailure => {
                StoreError::Unavailable(Box::new(error))
            }
            // SQLite reports a writer that waited out its busy timeout so;
            // a deadlock that outlasted its retries is as transient.
            _ if is_busy(info.message()) || is_deadlock(info.message()) => {
                StoreError::Unavailable(Box::new(error))
            }
            // The disk or the server, not the request: retry later (503).
            _ if is_outage(info.message()) => StoreError::Unavailable(Box::new(error)),
            _ => StoreError::Internal(Box::new(error)),
        },
        DieselError::BrokenTransactionManager => StoreError::Unavailable(Box::new(error)),
        _ => StoreError::Internal(Box::new(error)),
    }
}

/// PostgreSQL's 40P01: this transaction was chosen to break a deadlock
/// (diesel reports it with no kind of its own). Rolled back whole: the
/// client may send it again (503 with `Retry-After`, not a 500). The
/// writes lock rows in one order (users before their tokens) so that none
/// is expected.
fn is_deadlock(message: &str) -> bool {
    message.contains("deadlock detected")
}

/// SQLite's writer that waited out its busy timeout; PostgreSQL's
/// statement that waited out its `lock_timeout` (55P03) for a row another
/// transaction holds: both transient, both the connection's to give back.
fn is_busy(message: &str) -> bool {
    message.contains("database is locked")
        || message.contains("database is busy")
        || message.contains("canceling statement due to lock timeout")
}

/// Failures of the machinery under the database rather than of the request:
/// a full or read-only disk, an I/O error (SQLite's result-code texts,
/// stable across versions), and PostgreSQL going away or refusing writes
/// (shutdown, disk full, a read-only standby after a failover). diesel
/// exposes neither SQLite's result codes nor PostgreSQL's SQLSTATE, so the
/// messages are matched.
fn is_outage(message: &str) -> bool {
    const OUTAGES: &[&str] = &[
        // SQLite: SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN.
        "database or disk is full",
        "attempt to write a readonly database",
        "disk I/O error",
        "unable to open database file",
        // PostgreSQL: 57P01/57P02/57P03, 53100, 25006, a dropped connection.
        "terminating connection",
        "the database system is",
        "No space left on device",
        "could not extend file",
        "read-only transaction",
        "server closed the connection",
        "connection to server",
        "no connection to the server",
    ];
    OUTAGES.iter().any(|outage| message.contains(outage))
}

/// A connection could not be had in time: the pool is exhausted or the
/// database is down. Either way, retryable.
pub(crate) fn from_pool(error: r2d2::Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

/// Data read back that breaks a domain rule: corruption, or a write that
/// bypassed this crate.
pub(crate) fn corrupt(what: &'static str) -> StoreError {
    StoreError::Internal(format!("stored {what} is invalid").into())
}
