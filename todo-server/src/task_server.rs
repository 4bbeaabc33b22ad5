//! task-server: each user's own tasks over HTTPS, around
//! [`todo_http::TaskApi`]. It verifies access tokens with public keys only
//! (key files, or auth-server's JWKS); it never holds a private key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use todo_auth::{CachingVerifier, JwtVerifier, KeySet, SystemClock};
use todo_core::AccessGate;

use crate::Error;
use crate::config::{main_with, run};
use crate::jwks::JwksSource;
use crate::setup::{
    CHANGE_PRUNE_INTERVAL, TaskSettings, VERIFIED_TOKENS_CACHED, prune_changes_periodically,
    task_api,
};

/// task-server's command line.
pub type Cli = crate::config::Cli<Settings, Command>;

/// Reads task-server's command line.
#[must_use]
pub fn parse() -> Cli {
    Cli::parse_as(
        "task-server",
        "todo's task service: each user's own tasks, over HTTPS",
    )
}

/// What task-server does besides serving.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

/// task-server's own settings: where its verification keys come from,
/// what tokens must say, and the task service's limits.
#[derive(Debug, Args)]
pub struct Settings {
    /// Public key(s) that verify access tokens (SPKI PEM; comma-separated in
    /// the environment). Give these or --jwks-url.
    #[arg(
        long = "jwt-public-key",
        env = "TODO_JWT_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    public_keys: Vec<PathBuf>,
    /// auth-server's JWKS URL, e.g. https://localhost:8443/.well-known/jwks.json
    #[arg(long, env = "TODO_JWKS_URL")]
    jwks_url: Option<String>,
    /// Certificate(s) to trust for the JWKS URL (PEM), e.g. auth-server's
    /// self-signed DATA_DIR/tls-cert.pem.
    #[arg(long, env = "TODO_JWKS_CA_FILE")]
    jwks_ca_file: Option<PathBuf>,
    /// Seconds between JWKS refetches triggered by unknown key ids.
    #[arg(long, env = "TODO_JWKS_MIN_REFRESH_SECS", default_value_t = 30)]
    jwks_min_refresh_secs: u64,
    /// Seconds between periodic JWKS refetches: a key auth-server no longer
    /// publishes stops verifying here within this time (0: never).
    #[arg(long, env = "TODO_JWKS_REFRESH_SECS", default_value_t = 300)]
    jwks_refresh_secs: u64,
    /// Expected access-token issuer (`iss`).
    #[arg(long, env = "TODO_TOKEN_ISSUER", default_value = "todo-auth")]
    issuer: String,
    /// Expected access-token audience (`aud`).
    #[arg(long, env = "TODO_TOKEN_AUDIENCE", default_value = "todo")]
    audience: String,
    /// Clock skew forgiven on `exp`/`nbf`, in seconds (at most 60).
    #[arg(long, env = "TODO_TOKEN_LEEWAY_SECS", default_value_t = 30)]
    leeway_secs: u64,
    #[command(flatten)]
    tasks: TaskSettings,
}

/// Runs task-server as the command line says.
#[must_use]
pub fn main(cli: Cli) -> ExitCode {
    let server = cli.server.clone();
    main_with(&server, "task-server", || dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<(), Error> {
    let store = cli.server.open_store()?;
    if matches!(cli.command, Some(Command::Migrate)) {
        return Ok(());
    }
    let keys = &cli.settings;
    let public = crate::keys::public_key_files(&keys.public_keys, "--jwt-public-key")?;
    if public.is_empty() && keys.jwks_url.is_none() {
        return Err(Error::setting(
            "--jwt-public-key",
            "give --jwt-public-key or --jwks-url: task-server needs auth-server's public key",
        ));
    }
    let verifier = Arc::new(JwtVerifier::new(
        KeySet::new(public),
        &keys.issuer,
        &keys.audience,
        keys.leeway_secs,
    ));
    let clock = Arc::new(SystemClock);
    let service = cli.settings.tasks.service(store.clone(), clock.clone());
    prune_changes_periodically(
        service.clone(),
        cli.settings.tasks.change_retention(),
        CHANGE_PRUNE_INTERVAL,
    );
    crate::setup::fire_reminders_periodically(service.clone(), crate::setup::REMINDER_INTERVAL);
    // Signature checks are a read's largest cost: remember verified tokens.
    let cached = Arc::new(CachingVerifier::new(
        verifier.clone(),
        VERIFIED_TOKENS_CACHED,
    ));
    // Every request is admitted against the accounts in the shared
    // database: deleted, disabled and revoked users are refused within 1 s.
    let gate = Arc::new(
        AccessGate::new(cached, Arc::new(store.clone()), clock)
            .with_api_tokens(Arc::new(todo_auth::Sha256Digest)),
    );
    // Changes committed through other instances wake this one's live
    // streams (PostgreSQL's LISTEN/NOTIFY; SQLite has no other writer).
    // Kept until the server stops.
    let listener = crate::setup::wake_on_changes(&store, &service)?;
    let mut workers = cli
        .settings
        .tasks
        .start_relay(store.clone(), Arc::new(SystemClock))?;
    let (webhooks, webhook_stats) = cli
        .settings
        .tasks
        .start_webhooks(store.clone(), Arc::new(SystemClock))?;
    workers.push(webhook_stats);
    let mut api = cli.settings.tasks.live_limits(
        task_api(service, gate, store.clone(), workers)?
            .with_webhooks(webhooks)
            .with_projects(cli.settings.tasks.projects(store, Arc::new(SystemClock))),
        cli.server.max_connections,
    );
    if listener.is_some() {
        // Woken by every instance's writes: an unwoken read is only the
        // net for a notification lost while the listener reconnects.
        api = api.with_live_poll(crate::setup::LIVE_POLL_WITH_LISTENER);
    }
    if let Some(url) = &keys.jwks_url {
        if url.starts_with("http://") {
            // Whoever sits on that path can hand us keys and forge any token.
            tracing::warn!(
                url = %todo_store::redact_url(url),
                "the JWKS URL is plain HTTP: anyone between task-server and auth-server can \
                 substitute keys and forge tokens; use https:// unless that path is private"
            );
        }
        let source = Arc::new(JwksSource::new(
            url,
            keys.jwks_ca_file.clone(),
            verifier,
            Duration::from_secs(keys.jwks_min_refresh_secs),
        )?);
        // auth-server may still be starting: a failed first fetch is retried
        // on the first token with an unknown key.
        match source.refresh_if_due().await {
            Ok(_) => tracing::info!(
                url = %todo_store::redact_url(url),
                "verification keys fetched"
            ),
            Err(error) => tracing::warn!(%error, "could not fetch the JWKS yet"),
        }
        if keys.jwks_refresh_secs > 0 {
            let period = Duration::from_secs(keys.jwks_refresh_secs);
            tokio::spawn(Arc::clone(&source).refresh_periodically(period));
        }
        api = api.with_key_source(source);
    }
    crate::memory::check_server(&cli.server, None, Some(&cli.settings.tasks))?;
    let served = run(Arc::new(api), &cli.server, 8444, "task-server", |_| {}).await;
    drop(listener);
    served
}
