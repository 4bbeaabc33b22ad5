//! Connections: which database, the pool, SQLite's settings, migrations.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use todo_core::StoreError;

use crate::error::{DatabaseUrlError, from_diesel};

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either database. Queries written once run on both.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database to use.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl DatabaseUrl {
    /// `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    /// Anything else is refused with a message that says why, rather than
    /// being taken for a file name.
    pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError> {
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"));
        match path {
            Some("") => Err(DatabaseUrlError::NoFile),
            Some(":memory:") => Err(DatabaseUrlError::InMemory),
            Some(path) => Ok(Self::Sqlite(PathBuf::from(path))),
            None => Err(DatabaseUrlError::Unsupported {
                redacted: redact_url(raw),
            }),
        }
    }

    /// Which database the URL names.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// The URL libpq is given: the operator's, with `gssencmode=disable` added
/// unless the URL or the environment (`PGGSSENCMODE`) chooses a mode itself.
///
/// libpq's default (`prefer`) loads Kerberos on every connection, and
/// Kerberos's thread-local destructors can abort a multi-threaded process as
/// it exits (`krb5int_getspecific: Assertion … failed`, met in CI). A
/// deployment that does use GSSAPI encryption says so in its URL.
pub(crate) fn libpq_url(url: &str) -> String {
    let chosen_in_url = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("gssencmode"))
    });
    if chosen_in_url || std::env::var_os("PGGSSENCMODE").is_some() {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}gssencmode=disable")
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The URL with its secrets replaced, for logs and errors: the password in
/// the user information, and the value of every query parameter whose name
/// looks secret (libpq reads `password`, `sslpassword` and more from the
/// query string).
pub fn redact_url(url: &str) -> String {
    let (head, query) = url
        .split_once('?')
        .map_or((url, None), |(head, query)| (head, Some(query)));
    let mut shown = redact_user_info(head);
    if let Some(query) = query {
        shown.push('?');
        for (n, pair) in query.split('&').enumerate() {
            if n > 0 {
                shown.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => {
                    shown.push_str(key);
                    shown.push_str("=***");
                }
                _ if is_secret_key(pair) => shown.push_str("***"),
                _ => shown.push_str(pair),
            }
        }
    }
    shown
}

/// Whether a query parameter's name looks like it names a secret. A name
/// with a percent escape counts as secret: it could spell anything.
fn is_secret_key(key: &str) -> bool {
    const SECRET: &[&str] = &[
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "code",
        "credential",
        "session",
    ];
    let key = key.to_ascii_lowercase();
    key.contains('%') || SECRET.iter().any(|word| key.contains(word))
}

fn redact_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            let sep = if path.is_empty() && !rest.contains('/') {
                ""
            } else {
                "/"
            };
            format!("{scheme}://{user}:***@{host}{sep}{path}")
        }
        None => url.to_owned(),
    }
}

/// The SQLite file holds the password hashes: only its owner may read it.
/// Creates the directory (0700) and the file (0600) when missing, and takes
/// group and other access away from an existing file and its `-wal` and
/// `-shm` (SQLite creates those with the database file's mode). A directory
/// that exists is left as it is: it may be shared, such as `/tmp`.
pub(crate) fn prepare_sqlite_files(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut names = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            names.push(name.into());
        }
        for name in names {
            match std::fs::metadata(&name) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    let private = meta.permissions().mode() & 0o700;
                    std::fs::set_permissions(&name, std::fs::Permissions::from_mode(private))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
    }
}

/// The two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, one file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Which database.
    pub url: DatabaseUrl,
    /// Pool size.
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the store
    /// answers "unavailable".
    pub acquire_timeout: Duration,
    /// How long a write waits for what another holds, then fails as
    /// unavailable: SQLite's write lock (`busy_timeout`), a PostgreSQL row
    /// (`lock_timeout`).
    pub busy_timeout: Duration,
    /// SQLite: when a commit is on the disk.
    pub sqlite_sync: SqliteSync,
}

/// When a SQLite commit reaches the disk (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// Every commit is synced before it is acknowledged: an acknowledged
    /// write survives a process crash, a power loss, and a disk that the
    /// kernel turns read-only after an error. (PostgreSQL's default too.)
    #[default]
    Full,
    /// Commits are synced at checkpoints only: about ten times cheaper per
    /// commit, and safe across a process crash, but a power loss or a
    /// failing disk loses the commits since the last checkpoint (the file
    /// stays sound).
    Normal,
}

impl StoreConfig {
    /// A configuration for `url` with the defaults: 8 connections, 5 s waits, synced commits.
    #[must_use]
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_sync: SqliteSync::Full,
        }
    }
}

/// Opens connections of one kind, and sets SQLite up on each.
#[derive(Debug)]
pub(crate) struct Manager {
    url: DatabaseUrl,
    busy_timeout: Duration,
    sqlite_sync: SqliteSync,
    /// Connections still to be probed as they come back to the pool: set
    /// after a PostgreSQL outage error (see [`Manager::suspect_outage`]).
    probes_left: Arc<AtomicU32>,
}

impl Manager {
    pub(crate) fn new(config: &StoreConfig, probes_left: Arc<AtomicU32>) -> Self {
        Self {
            url: match &config.url {
                DatabaseUrl::Postgres(url) => DatabaseUrl::Postgres(libpq_url(url)),
                sqlite => sqlite.clone(),
            },
            busy_timeout: config.busy_timeout,
            sqlite_sync: config.sqlite_sync,
            probes_left,
        }
    }

    /// After a PostgreSQL restart every pooled connection is dead, but
    /// diesel calls a connection broken only inside a failed transaction:
    /// without a probe, dead connections would go back to the pool and
    /// fail every request that draws them, for ever. So after an outage
    /// error the next `connections` returned (twice the pool) are probed,
    /// and the dead ones are dropped. Costs nothing while all is well.
    pub(crate) fn suspect_outage(probes_left: &AtomicU32, connections: u32) {
        probes_left.store(connections.saturating_mul(2), Ordering::Relaxed);
    }
}

/// libpq quotes the whole URL in some of its messages (a malformed one,
/// say), password and all; r2d2 logs them as they are. The URL goes,
/// redacted.
fn without_url(error: diesel::ConnectionError, url: &str) -> diesel::ConnectionError {
    match error {
        diesel::ConnectionError::BadConnection(message) if message.contains(url) => {
            diesel::ConnectionError::BadConnection(message.replace(url, &redact_url(url)))
        }
        diesel::ConnectionError::InvalidConnectionUrl(message) if message.contains(url) => {
            diesel::ConnectionError::InvalidConnectionUrl(message.replace(url, &redact_url(url)))
        }
        other => other,
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        use diesel::r2d2::Error::{ConnectionError, QueryError};
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url)
                    .map_err(|e| ConnectionError(without_url(e, url)))?;
                // A statement waits this long for a row another holds, then
                // fails (503, retryable) and gives its pooled connection
                // back: one long transaction cannot take every connection
                // of an instance with writes waiting behind it.
                conn.batch_execute(&format!(
                    "SET lock_timeout = '{}ms'",
                    self.busy_timeout.as_millis()
                ))
                .map_err(QueryError)?;
                Ok(AnyConnection::Postgresql(conn))
            }
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_string_lossy();
                let mut conn = todo_sqlite_process::establish(&path).map_err(ConnectionError)?;
                // WAL lets readers run beside the writer; `synchronous` says
                // whether an acknowledged commit is on the disk (SqliteSync);
                // foreign keys are off in SQLite unless asked for.
                let sync = match self.sqlite_sync {
                    SqliteSync::Full => "FULL",
                    SqliteSync::Normal => "NORMAL",
                };
                let pragmas = format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;",
                    self.busy_timeout.as_millis()
                );
                conn.batch_execute(&pragmas).map_err(QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        use diesel::connection::TransactionManager;
        match conn {
            AnyConnection::Postgresql(c) => {
                if <PgConnection as Connection>::TransactionManager::is_broken_transaction_manager(
                    c,
                ) {
                    return true;
                }
                let probe = self
                    .probes_left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                probe && c.batch_execute("SELECT 1").is_err()
            }
            AnyConnection::Sqlite(c) => {
                <SqliteConnection as Connection>::TransactionManager::is_broken_transaction_manager(
                    c,
                )
            }
        }
    }
}

/// A lock key that every instance uses to run migrations one at a time.
const MIGRATION_LOCK: i64 = 0x746f_646f_6d69_6772; // "todomigr"

/// Runs the pending migrations; returns how many ran. On PostgreSQL an
/// advisory lock makes instances that start together take turns, so the
/// schema is migrated once.
pub(crate) fn migrate(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Internal(e);
    match conn {
        AnyConnection::Sqlite(c) => {
            // An immediate transaction takes SQLite's write lock first: a
            // second instance waits for it, then finds nothing pending.
            c.immediate_transaction(|c| {
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|ran| ran.len())
                    .map_err(MigrationError::Migration)
            })
            .map_err(|e| match e {
                MigrationError::Database(e) => from_diesel(e),
                MigrationError::Migration(e) => failed(e),
            })
        }
        AnyConnection::Postgresql(c) => {
            // (an instance waits for another's migrations however long they
            // take: its connection's lock timeout is lifted meanwhile)
            c.batch_execute(&format!(
                "SELECT set_config('todo.lock_timeout', current_setting('lock_timeout'), false); \
                 SET lock_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK})"
            ))
            .map_err(from_diesel)?;
            let ran = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|ran| ran.len());
            let unlocked = c
                .batch_execute(&format!(
                    "SELECT pg_advisory_unlock({MIGRATION_LOCK}); \
                     SELECT set_config('lock_timeout', current_setting('todo.lock_timeout'), false)"
                ))
                .map_err(from_diesel);
            let ran = ran.map_err(failed)?;
            unlocked?;
            Ok(ran)
        }
    }
}

enum MigrationError {
    Database(diesel::result::Error),
    Migration(Box<dyn std::error::Error + Send + Sync>),
}

impl From<diesel::result::Error> for MigrationError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_is_told_no_gss_encryption_unless_the_url_chooses() {
        // (PGGSSENCMODE is not set where the tests run.)
        assert_eq!(
            libpq_url("postgres://u@h/db"),
            "postgres://u@h/db?gssencmode=disable"
        );
        assert_eq!(
            libpq_url("postgres://u@h/db?sslmode=require"),
            "postgres://u@h/db?sslmode=require&gssencmode=disable"
        );
        assert_eq!(
            libpq_url("postgres://u@h/db?gssencmode=require"),
            "postgres://u@h/db?gssencmode=require"
        );
    }

    /// A malformed PostgreSQL URL: libpq's message quotes it, password and
    /// all; what reaches r2d2 (and its log) does not (v1.1 attack finding).
    #[test]
    fn a_connection_error_never_carries_the_password() {
        let url = "postgres://postgres:s3c%40retpw@[::1:1/db";
        let error = PgConnection::establish(url).map(drop).unwrap_err();
        assert!(
            error.to_string().contains("s3c"),
            "libpq quotes it: {error}"
        );
        let shown = without_url(error, url).to_string();
        assert!(!shown.contains("s3c"), "{shown}");
    }

    #[test]
    fn parses_both_databases_and_refuses_the_rest() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/todo.db"),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("data/todo.db")))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:/var/lib/todo.db"),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("/var/lib/todo.db")))
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").map(|u| u.backend()),
            Ok(Backend::Postgres)
        );
        assert!(DatabaseUrl::parse("postgresql://u@h/db").is_ok());
        assert!(DatabaseUrl::parse("postgress://u@h/db").is_err());
        assert!(DatabaseUrl::parse("todo.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("sqlite://:memory:").is_err());
    }

    #[test]
    fn never_prints_a_password() {
        let url = DatabaseUrl::parse("postgres://todo:s3cret@db.local:5432/todo").unwrap();
        let shown = url.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(shown, "postgres://todo:***@db.local:5432/todo");
        let err = DatabaseUrl::parse("mysql://root:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn never_prints_a_secret_from_the_query() {
        for (url, shown) in [
            (
                "postgres://todo@db/todo?password=hunter2",
                "postgres://todo:***@db/todo?password=***",
            ),
            (
                "postgresql://db/todo?sslmode=require&PassWord=hunter2&sslpassword=hunter2",
                "postgresql://db/todo?sslmode=require&PassWord=***&sslpassword=***",
            ),
            (
                "postgres://db/todo?access_token=hunter2&refresh_token=hunter2&secret=hunter2",
                "postgres://db/todo?access_token=***&refresh_token=***&secret=***",
            ),
            (
                "postgres://db/todo?code=hunter2&pass%77ord=hunter2&hunter2",
                "postgres://db/todo?code=***&pass%77ord=***&hunter2",
            ),
            (
                "postgres://db/todo?application_name=todo&connect_timeout=5",
                "postgres://db/todo?application_name=todo&connect_timeout=5",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            let parsed = DatabaseUrl::parse(url).unwrap().to_string();
            assert!(!parsed.contains("=hunter2"), "{parsed}");
        }
        let err = DatabaseUrl::parse("mysql://root@h/db?password=hunter2")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
