//! Configuration both servers share: flags, each also an environment
//! variable; secrets also from files (`*_FILE`). Checked at start, with an
//! error that names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use todo_http::{Api, Frontend, HttpLimits, MetricsExposure, TrustedProxies};
use todo_store::{DatabaseUrl, SqlStore, SqliteSync, StoreConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::tls::TlsIdentity;

/// `--sqlite-sync`: see [`todo_store::SqliteSync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSyncArg {
    /// Sync every commit.
    Full,
    /// Sync at checkpoints only.
    Normal,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// A todo server's command line, one definition for `auth-server`,
/// `task-server` and `todo`: the settings every server takes
/// ([`ServerArgs`]), the program's own (`S`), and its subcommand (`C`;
/// without one, it serves).
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct Cli<S: clap::Args, C: clap::Subcommand> {
    /// The settings every server takes.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The program's own settings.
    #[command(flatten)]
    pub settings: S,
    /// What to do, when not to serve.
    #[command(subcommand)]
    pub command: Option<C>,
}

impl<S: clap::Args, C: clap::Subcommand> Cli<S, C> {
    /// The process's command line, read as program `name` (described by
    /// `about` in `--help`); exits with clap's message on an error.
    #[must_use]
    pub fn parse_as(name: &'static str, about: &'static str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command()
            .name(name)
            .bin_name(name)
            .about(about)
            .get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The settings every server has.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1 and the server's port].
    #[arg(long, env = "TODO_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the server keeps its files (SQLite database, keys, certificate).
    #[arg(long, env = "TODO_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [default: sqlite://DATA_DIR/todo.db].
    #[arg(long, env = "TODO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A file holding the database URL (for secrets mounted as files).
    #[arg(long, env = "TODO_DATABASE_URL_FILE", conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,
    /// Database connections in the pool.
    #[arg(long, env = "TODO_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
    /// Milliseconds a request waits for a pooled connection before 503.
    #[arg(long, env = "TODO_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub db_acquire_timeout_ms: u64,

    /// SQLite: `full` syncs every commit before acknowledging it (survives
    /// power loss and a failing disk); `normal` syncs at checkpoints only
    /// (faster writes; survives a process crash only).
    #[arg(long, env = "TODO_SQLITE_SYNC", value_enum, default_value_t = SqliteSyncArg::Full)]
    pub sqlite_sync: SqliteSyncArg,
    /// TLS certificate chain (PEM). Without one, a self-signed certificate is
    /// created in the data directory on first start.
    #[arg(long, env = "TODO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "TODO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for use behind a TLS-terminating gateway only
    /// (not with --tls-cert/--tls-key; TODO_PLAIN_HTTP=false means off).
    // Not a clap conflict: clap counts an environment value as given, so
    // TODO_PLAIN_HTTP=false (an image's way to turn it off) would conflict
    // with a certificate. Checked in `tls` instead, when it is true.
    #[arg(long, env = "TODO_PLAIN_HTTP")]
    pub plain_http: bool,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, env = "TODO_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a connection has to deliver a request head (slowloris guard).
    #[arg(long, env = "TODO_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body has to arrive; later gets 408.
    #[arg(long, env = "TODO_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub body_timeout_secs: u64,
    /// Seconds data sent may stay unacknowledged (a client gone, or one
    /// that stopped reading: Linux 5.11 and later) before the kernel drops
    /// the connection and what it held for it (Linux: TCP_USER_TIMEOUT).
    #[arg(long, env = "TODO_SEND_STALL_SECS", default_value_t = 30)]
    pub send_stall_secs: u64,
    /// Open connections at most; more are closed at once.
    #[arg(long, env = "TODO_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Open connections one client address (an IPv6 /64) may hold; more are
    /// closed at once. From a trusted proxy: requests in flight per
    /// forwarded client; more get 503.
    #[arg(long, env = "TODO_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 32)]
    pub max_connections_per_client: usize,
    /// Requests one client address (an IPv6 /64) may have in flight at
    /// once, over all its connections (HTTP/2 multiplies them); more get
    /// 503 with Retry-After. Trusted proxies: see the flag above.
    #[arg(long, env = "TODO_MAX_REQUESTS_PER_CLIENT", default_value_t = 32)]
    pub max_requests_per_client: usize,
    /// Streams an HTTP/2 connection may have open at once (each costs some
    /// 7 KiB while its answer waits unread: OPERATIONS.md, "Connections").
    #[arg(long, env = "TODO_MAX_CONCURRENT_STREAMS", default_value_t = 16)]
    pub max_concurrent_streams: u32,
    /// Bytes of request bodies buffered at once across all connections; a
    /// body that cannot get its share gets 503 with Retry-After. One client
    /// may hold a quarter of it (at least one whole body). At least
    /// --max-body-bytes.
    #[arg(long, env = "TODO_BODY_BUDGET_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub body_budget_bytes: usize,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "TODO_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDRs).
    /// Empty: the peer address is the client.
    #[arg(long, env = "TODO_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Log format.
    #[arg(long, env = "TODO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve /metrics (and /healthz, /readyz) on this separate plain-HTTP
    /// address, e.g. 127.0.0.1:9464, for the scraper. Without it /metrics
    /// is not served at all; the main listener answers it 404 either way.
    #[arg(long, env = "TODO_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Threads for blocking work (database calls, password hashing).
    #[arg(long, env = "TODO_BLOCKING_THREADS", default_value_t = 64)]
    pub blocking_threads: usize,
}

impl ServerArgs {
    /// The database to use, from the URL, the URL file, or the default.
    pub fn store_config(&self) -> Result<StoreConfig, Error> {
        let url = match (&self.database_url, &self.database_url_file) {
            (Some(url), _) => url.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    Error::setting("--database-url-file", format!("{}: {e}", file.display()))
                })?,
            (None, None) => format!("sqlite://{}", self.data_dir.join("todo.db").display()),
        };
        let url = DatabaseUrl::parse(&url).map_err(|e| Error::setting("--database-url", e))?;
        let mut config = StoreConfig::new(url);
        if self.db_pool_size == 0 {
            return Err(Error::setting("--db-pool-size", "must be at least 1"));
        }
        config.max_connections = self.db_pool_size;
        config.acquire_timeout = Duration::from_millis(self.db_acquire_timeout_ms.max(1));
        config.sqlite_sync = match self.sqlite_sync {
            SqliteSyncArg::Full => SqliteSync::Full,
            SqliteSyncArg::Normal => SqliteSync::Normal,
        };
        Ok(config)
    }

    /// The connection and request limits.
    pub fn limits(&self) -> Result<HttpLimits, Error> {
        if self.max_body_bytes == 0
            || self.max_connections == 0
            || self.max_connections_per_client == 0
            || self.max_requests_per_client == 0
            || self.max_concurrent_streams == 0
        {
            return Err(Error::setting(
                "--max-body-bytes, --max-connections, --max-connections-per-client, --max-requests-per-client and --max-concurrent-streams",
                "must be positive",
            ));
        }
        if self.send_stall_secs == 0 {
            return Err(Error::setting("--send-stall-secs", "must be at least 1"));
        }
        if self.body_budget_bytes < self.max_body_bytes {
            return Err(Error::setting(
                "--body-budget-bytes",
                format!(
                    "({}) must be at least --max-body-bytes ({})",
                    self.body_budget_bytes, self.max_body_bytes
                ),
            ));
        }
        Ok(HttpLimits {
            max_body_bytes: self.max_body_bytes,
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            max_requests_per_client: self.max_requests_per_client,
            max_concurrent_streams: self.max_concurrent_streams,
            body_budget_bytes: self.body_budget_bytes,
            send_stall: Duration::from_secs(self.send_stall_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            ..HttpLimits::default()
        })
    }

    /// The proxies whose `X-Forwarded-For` is believed.
    pub fn proxies(&self) -> Result<TrustedProxies, Error> {
        TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| Error::setting("--trusted-proxies", e))
    }

    /// Opens the configured database and applies pending migrations: the
    /// one way every command reaches the store.
    pub fn open_store(&self) -> Result<SqlStore, Error> {
        let config = self.store_config()?;
        let store = SqlStore::open(&config).map_err(|source| Error::Store {
            context: format!("opening the database {}", config.url),
            source,
        })?;
        let ran = store.migrate().map_err(|source| Error::Store {
            context: "migrating".to_owned(),
            source,
        })?;
        tracing::info!(ran, backend = ?store.backend(), "database ready");
        Ok(store)
    }

    /// Creates the data directory, readable by its owner only (0700): it
    /// holds the signing key and, with SQLite, the password hashes. One
    /// that exists is left as it is.
    pub fn private_data_dir(&self) -> Result<(), Error> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.data_dir).map_err(|e| {
            Error::setting("--data-dir", format!("{}: {e}", self.data_dir.display()))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&self.data_dir)
                .map_err(|e| {
                    Error::setting("--data-dir", format!("{}: {e}", self.data_dir.display()))
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    data_dir = %self.data_dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the data directory is open to other users: chmod 700 it"
                );
            }
        }
        Ok(())
    }

    /// Sets up logging (once per process).
    pub fn init_logging(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
            LogFormat::Text => builder.try_init(),
        };
    }

    /// A runtime whose blocking pool is bounded by `--blocking-threads`.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(self.blocking_threads.max(2))
            .build()
    }

    /// TLS as configured: a given certificate, a self-signed one, or none
    /// (plain HTTP, with a loud warning).
    pub fn tls(&self) -> Result<Option<TlsAcceptor>, Error> {
        if self.plain_http {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(Error::setting(
                    "--plain-http",
                    "cannot be used with --tls-cert/--tls-key (TODO_PLAIN_HTTP=false turns it off)",
                ));
            }
            tracing::warn!(
                "serving PLAIN HTTP (--plain-http): passwords and tokens cross the network \
                 unencrypted unless a TLS-terminating gateway is in front"
            );
            return Ok(None);
        }
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                TlsIdentity::load(cert, key).map_err(|source| Error::Tls {
                    context: "--tls-cert/--tls-key",
                    source,
                })?
            }
            _ => {
                let names = vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                ];
                let (identity, created) = TlsIdentity::self_signed_in(&self.data_dir, &names)
                    .map_err(|source| Error::Tls {
                        context: "self-signed certificate",
                        source,
                    })?;
                let path = self.data_dir.join("tls-cert.pem");
                tracing::info!(
                    certificate = %path.display(),
                    sha256 = %identity.fingerprint(),
                    created,
                    "using a self-signed TLS certificate"
                );
                identity
            }
        };
        let config = identity.server_config().map_err(|source| Error::Tls {
            context: "TLS",
            source,
        })?;
        Ok(Some(TlsAcceptor::from(config)))
    }
}

/// A server binary's `main`: logging, a runtime with a bounded blocking
/// pool, then `body`; an error is logged, printed as `NAME: message`, and
/// the process exits 1.
pub fn main_with<F, Fut>(server: &ServerArgs, name: &str, body: F) -> std::process::ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    server.init_logging();
    let outcome = server
        .private_data_dir()
        .and_then(|()| server.runtime().map_err(Error::Runtime))
        .and_then(|rt| rt.block_on(body()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{name}: {error}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds, then serves `api` until SIGTERM or SIGINT, then drains.
/// `announce` gets the URL once the server listens.
pub async fn run<A: Api>(
    api: Arc<A>,
    args: &ServerArgs,
    default_port: u16,
    name: &str,
    announce: impl FnOnce(&str),
) -> Result<(), Error> {
    if let Some(addr) = args.metrics_listen {
        let front = Arc::new(
            Frontend::new(Arc::clone(&api), args.limits()?, TrustedProxies::default())
                .with_metrics(MetricsExposure::Only),
        );
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                setting: "--metrics-listen",
                addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Bind {
            setting: "--metrics-listen",
            addr,
            source,
        })?;
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "metrics are served beyond loopback: keep the port inside");
        }
        tracing::info!(%local, "{name} metrics on http://{local}/metrics");
        tokio::spawn(todo_http::serve(
            front,
            listener,
            None,
            todo_http::shutdown_signal(),
        ));
    }
    let front = Arc::new(Frontend::new(api, args.limits()?, args.proxies()?));
    let tls = args.tls()?;
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            setting: "--listen",
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        setting: "--listen",
        addr: listen,
        source,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%local, "{name} listening on {scheme}://{local}");
    let host = if local.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        local.ip().to_string()
    };
    announce(&format!("{scheme}://{host}:{}", local.port()));
    todo_http::serve(front, listener, tls, todo_http::shutdown_signal()).await;
    tracing::info!("{name} stopped");
    Ok(())
}

/// Reads a secret from a file, trimmed.
pub fn read_secret_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| Error::file(path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The settings alone, as a server reads them.
    #[derive(Debug, clap::Parser)]
    struct Settings {
        #[command(flatten)]
        server: ServerArgs,
    }

    /// What the child process (this test binary, re-run on one test with
    /// `TODO_CONFIG_TEST_CHILD` set) does with its environment: parse it as
    /// a server does, then build its TLS; prints `tls`, `plain` or the error.
    #[allow(clippy::print_stdout)] // what the parent reads
    fn child() {
        use clap::Parser as _;
        match Settings::try_parse_from(["server"]) {
            Err(e) => println!("parse error: {e}"),
            Ok(s) => match s.server.tls() {
                Ok(Some(_)) => println!("outcome: tls"),
                Ok(None) => println!("outcome: plain"),
                Err(e) => println!("outcome: error: {e}"),
            },
        }
    }

    /// Runs `test` of this binary again with `env` (and no other TODO_
    /// variable): what it printed. Environment variables cannot be set
    /// in-process here (`unsafe`, and racing other tests).
    fn in_child(test: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", test, "--nocapture", "--test-threads", "1"]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TODO_") {
                command.env_remove(name);
            }
        }
        command.env("TODO_CONFIG_TEST_CHILD", "1");
        for (name, value) in env {
            command.env(name, value);
        }
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // (libtest prints the test's name on the same line, before it.)
        stdout
            .lines()
            .find_map(|l| {
                l.find("outcome: ")
                    .or_else(|| l.find("parse error: "))
                    .map(|at| l[at..].to_owned())
            })
            .unwrap_or_else(|| panic!("the child said nothing: {stdout}"))
    }

    /// The flags' defaults are the library's (one literal each side: a
    /// default changed on one side alone would serve other limits than
    /// the docs give), and each limit the flags set reaches `HttpLimits`.
    /// (Run in a child: the `TODO_` variables of the test's environment
    /// are clap's defaults too.)
    #[test]
    fn the_flags_defaults_are_the_librarys_and_the_stream_cap_is_set_by_its_flag() {
        use clap::Parser as _;
        if std::env::var_os("TODO_CONFIG_TEST_CHILD").is_none() {
            let test = "config::tests::the_flags_defaults_are_the_librarys_and_the_stream_cap_is_set_by_its_flag";
            assert_eq!(in_child(test, &[]), "outcome: checked");
            return;
        }
        let limits = |args: &[&str]| {
            Settings::try_parse_from(std::iter::once("server").chain(args.iter().copied()))
                .unwrap()
                .server
                .limits()
        };
        assert_eq!(limits(&[]).unwrap(), HttpLimits::default());
        let streams = limits(&["--max-concurrent-streams", "24"]).unwrap();
        assert_eq!(streams.max_concurrent_streams, 24);
        let refused = limits(&["--max-concurrent-streams", "0"]).unwrap_err();
        assert!(
            refused.to_string().contains("--max-concurrent-streams"),
            "{refused}"
        );
        #[allow(clippy::print_stdout)] // what the parent reads
        {
            println!("outcome: checked");
        }
    }

    /// An image that sets TODO_PLAIN_HTTP=true cannot unset it: false must
    /// mean off, and then a certificate is usable (clap's conflict counted
    /// `false` from the environment as given, and refused the pair).
    #[test]
    fn plain_http_false_from_the_environment_goes_with_a_certificate() {
        if std::env::var_os("TODO_CONFIG_TEST_CHILD").is_some() {
            return child();
        }
        let dir = tempfile::tempdir().unwrap();
        TlsIdentity::self_signed_in(dir.path(), &["localhost".to_owned()]).unwrap();
        let cert = dir.path().join("tls-cert.pem");
        let key = dir.path().join("tls-key.pem");
        let data = dir.path().join("data");
        let test = "config::tests::plain_http_false_from_the_environment_goes_with_a_certificate";
        let with = |plain: Option<&str>, tls: bool| {
            let mut env = vec![("TODO_DATA_DIR", data.as_os_str())];
            if let Some(plain) = plain {
                env.push(("TODO_PLAIN_HTTP", std::ffi::OsStr::new(plain)));
            }
            if tls {
                env.push(("TODO_TLS_CERT", cert.as_os_str()));
                env.push(("TODO_TLS_KEY", key.as_os_str()));
            }
            in_child(test, &env)
        };
        assert_eq!(with(Some("false"), true), "outcome: tls");
        assert_eq!(with(Some("false"), false), "outcome: tls");
        assert_eq!(with(None, true), "outcome: tls");
        assert_eq!(with(Some("true"), false), "outcome: plain");
        let both = with(Some("true"), true);
        assert!(
            both.starts_with("outcome: error: ") && both.contains("--plain-http"),
            "{both}"
        );
    }
}
