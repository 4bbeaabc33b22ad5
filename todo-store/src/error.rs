//! Turning diesel and r2d2 errors into the core's [`StoreError`]: the only
//! place that looks inside a driver error. None leaves the crate.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use todo_core::StoreError;

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
            // SQLite reports a writer that waited out its busy timeout so.
            _ if is_busy(info.message()) => StoreError::Unavailable(Box::new(error)),
            // The disk or the server, not the request: retry later (503).
            _ if is_outage(info.message()) => StoreError::Unavailable(Box::new(error)),
            _ => StoreError::Internal(Box::new(error)),
        },
        DieselError::BrokenTransactionManager => StoreError::Unavailable(Box::new(error)),
        _ => StoreError::Internal(Box::new(error)),
    }
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
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
