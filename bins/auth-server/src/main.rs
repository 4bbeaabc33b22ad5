//! auth-server: configuration and wiring around `todo_http::AuthApi`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, BoundedHasher, FailedLoginBackoff, JwtSigner,
    JwtVerifier, KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, PoolLimits, PublicKey,
    Sha256RefreshTokenHasher, SigningKey, SystemClock,
};
use todo_core::{AuthDeps, AuthLimits, AuthService, Registration, Role, TokenPolicy};
use todo_http::config::{ServerArgs, read_secret_file, run};
use todo_http::{AuthApi, Probe};
use todo_store::SqlStore;

#[derive(Parser, Debug)]
#[command(
    name = "auth-server",
    version,
    about = "todo's auth service: registration, login, tokens and users, over HTTPS"
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password comes from --password-file or standard input, never an argument.
    Create {
        #[arg(long)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// A file holding the password (else it is read from standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Make a new signing key; the old one keeps verifying tokens it signed.
    Rotate,
}

#[derive(Debug, Clone, clap::Args)]
struct AuthArgs {
    /// The private signing key (PKCS#8 PEM); created (0600) if missing
    /// [default: DATA_DIR/signing-key.pem].
    #[arg(long, env = "TODO_SIGNING_KEY_FILE")]
    signing_key: Option<PathBuf>,
    /// Directory of extra public keys (PEM) that still verify: old signing
    /// keys after a rotation [default: DATA_DIR/verification-keys].
    #[arg(long, env = "TODO_VERIFICATION_KEYS_DIR")]
    verification_keys_dir: Option<PathBuf>,
    /// Algorithm of newly created signing keys.
    #[arg(long, env = "TODO_KEY_ALGORITHM", value_enum, default_value_t = Algorithm::Eddsa)]
    key_algorithm: Algorithm,
    /// Access-token issuer (`iss`).
    #[arg(long, env = "TODO_TOKEN_ISSUER", default_value = "todo-auth")]
    issuer: String,
    /// Access-token audience (`aud`).
    #[arg(long, env = "TODO_TOKEN_AUDIENCE", default_value = "todo")]
    audience: String,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "TODO_ACCESS_TTL_SECS", default_value_t = 300)]
    access_ttl_secs: u64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "TODO_REFRESH_TTL_SECS", default_value_t = 14 * 24 * 3600)]
    refresh_ttl_secs: u64,
    /// argon2id memory in KiB.
    #[arg(long, env = "TODO_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    argon2_memory_kib: u32,
    /// argon2id passes.
    #[arg(long, env = "TODO_ARGON2_ITERATIONS", default_value_t = 2)]
    argon2_iterations: u32,
    /// argon2id lanes.
    #[arg(long, env = "TODO_ARGON2_PARALLELISM", default_value_t = 1)]
    argon2_parallelism: u32,
    /// Password hashes run at once [default: the number of cores].
    #[arg(long, env = "TODO_HASH_WORKERS")]
    hash_workers: Option<usize>,
    /// Logins that may wait for a hashing worker; beyond them, 503.
    #[arg(long, env = "TODO_HASH_QUEUE", default_value_t = 32)]
    hash_queue: usize,
    /// Registrations per client address: burst.
    #[arg(long, env = "TODO_REGISTER_BURST", default_value_t = 5)]
    register_burst: u32,
    /// Registrations per client address: seconds to refill one.
    #[arg(long, env = "TODO_REGISTER_PERIOD_SECS", default_value_t = 60)]
    register_period_secs: u64,
    /// Login attempts per client address: burst.
    #[arg(long, env = "TODO_LOGIN_BURST", default_value_t = 20)]
    login_burst: u32,
    /// Login attempts per client address: milliseconds to refill one.
    #[arg(long, env = "TODO_LOGIN_PERIOD_MS", default_value_t = 3000)]
    login_period_ms: u64,
    /// Login attempts per account, from anywhere: burst.
    #[arg(long, env = "TODO_ACCOUNT_LOGIN_BURST", default_value_t = 10)]
    account_login_burst: u32,
    /// Login attempts per account: milliseconds to refill one.
    #[arg(long, env = "TODO_ACCOUNT_LOGIN_PERIOD_MS", default_value_t = 6000)]
    account_login_period_ms: u64,
    /// Failed logins on an account before the growing delay starts.
    #[arg(long, env = "TODO_FREE_LOGIN_FAILURES", default_value_t = 5)]
    free_login_failures: u32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Algorithm {
    Eddsa,
    Es256,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.server.init_logging();
    let outcome = cli
        .server
        .runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("auth-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), String> {
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => serve(&cli).await,
        Command::Migrate => {
            let store = open_store(&cli.server)?;
            let ran = store.migrate().map_err(|e| format!("migrating: {e}"))?;
            tracing::info!(ran, "migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create {
            username,
            admin,
            email,
            password_file,
        }) => {
            let password = match password_file {
                Some(file) => read_secret_file(file)?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_to_string(&mut line)
                        .map_err(|e| format!("reading the password from stdin: {e}"))?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let registration =
                Registration::parse(username, &password, email.as_deref()).map_err(|errors| {
                    errors
                        .iter()
                        .map(|e| format!("{}: {e}", e.field()))
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
            let store = open_store(&cli.server)?;
            store.migrate().map_err(|e| format!("migrating: {e}"))?;
            let (service, _) = build(&cli, store)?;
            let role = if *admin { Role::Admin } else { Role::User };
            let user = service
                .create_user(registration, role)
                .map_err(|e| format!("creating the user: {e}"))?;
            tracing::info!(user = %user.id, username = %user.username, role = %user.role, "user created");
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => rotate_keys(&cli),
    }
}

fn open_store(args: &ServerArgs) -> Result<SqlStore, String> {
    let config = args.store_config()?;
    SqlStore::open(&config).map_err(|e| format!("opening the database {}: {e}", config.url))
}

fn signing_key_path(cli: &Cli) -> PathBuf {
    cli.auth
        .signing_key
        .clone()
        .unwrap_or_else(|| cli.server.data_dir.join("signing-key.pem"))
}

fn verification_dir(cli: &Cli) -> PathBuf {
    cli.auth
        .verification_keys_dir
        .clone()
        .unwrap_or_else(|| cli.server.data_dir.join("verification-keys"))
}

/// The signing key, created on first start.
fn signing_key(cli: &Cli) -> Result<SigningKey, String> {
    let path = signing_key_path(cli);
    if path.exists() {
        return SigningKey::load(&path).map_err(|e| format!("--signing-key: {e}"));
    }
    let algorithm = match cli.auth.key_algorithm {
        Algorithm::Eddsa => KeyAlgorithm::EdDsa,
        Algorithm::Es256 => KeyAlgorithm::Es256,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let key = SigningKey::generate(algorithm).map_err(|e| e.to_string())?;
    key.save(&path).map_err(|e| format!("--signing-key: {e}"))?;
    tracing::info!(path = %path.display(), kid = key.public_key().kid(), "created a signing key");
    Ok(key)
}

/// Old public keys that still verify.
fn verification_keys(dir: &Path) -> Result<Vec<PublicKey>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let pem =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            keys.push(PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    Ok(keys)
}

fn rotate_keys(cli: &Cli) -> Result<(), String> {
    let path = signing_key_path(cli);
    let old = signing_key(cli)?;
    let dir = verification_dir(cli);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kept = dir.join(format!("{}.pem", old.public_key().kid()));
    std::fs::write(&kept, old.public_key().to_pem())
        .map_err(|e| format!("{}: {e}", kept.display()))?;
    let new = SigningKey::generate(old.public_key().algorithm()).map_err(|e| e.to_string())?;
    let staged = path.with_extension("pem.new");
    let _ = std::fs::remove_file(&staged);
    new.save(&staged).map_err(|e| e.to_string())?;
    std::fs::rename(&staged, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(
        old = old.public_key().kid(),
        new = new.public_key().kid(),
        "signing key rotated; restart the servers to use it"
    );
    Ok(())
}

type Hasher = BoundedHasher<Argon2Hasher>;

fn build(cli: &Cli, store: SqlStore) -> Result<(AuthService, (KeySet, Arc<Hasher>)), String> {
    let a = &cli.auth;
    let store = Arc::new(store);
    let clock = Arc::new(SystemClock);
    let key = signing_key(cli)?;
    let mut public = vec![key.public_key().clone()];
    public.extend(verification_keys(&verification_dir(cli))?);
    let keys = KeySet::new(public);
    let argon2 = Argon2Config {
        memory_kib: a.argon2_memory_kib,
        iterations: a.argon2_iterations,
        parallelism: a.argon2_parallelism,
    };
    let workers = a
        .hash_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let hasher = Arc::new(BoundedHasher::new(
        Argon2Hasher::new(argon2).map_err(|e| format!("--argon2-*: {e}"))?,
        PoolLimits {
            running: workers,
            waiting: a.hash_queue,
            retry_after: Duration::from_secs(1),
        },
    ));
    let limit = |burst, period| LimitPolicy {
        burst,
        period,
        max_keys: 100_000,
    };
    let policy = TokenPolicy {
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        access_ttl: Duration::from_secs(a.access_ttl_secs.max(1)),
        refresh_ttl: Duration::from_secs(a.refresh_ttl_secs.max(1)),
    };
    let verifier = JwtVerifier::new(keys.clone(), &policy.issuer, &policy.audience, 30);
    let service = AuthService::new(AuthDeps {
        users: store.clone(),
        refresh_tokens: store.clone(),
        hasher: hasher.clone(),
        signer: Arc::new(JwtSigner::new(key)),
        verifier: Arc::new(verifier),
        refresh_hasher: Arc::new(Sha256RefreshTokenHasher),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        limits: AuthLimits {
            register_per_client: Arc::new(KeyedLimiter::new(
                limit(
                    a.register_burst,
                    Duration::from_secs(a.register_period_secs),
                ),
                clock.clone(),
            )),
            login_per_client: Arc::new(KeyedLimiter::new(
                limit(a.login_burst, Duration::from_millis(a.login_period_ms)),
                clock.clone(),
            )),
            login_per_account: Arc::new(KeyedLimiter::new(
                limit(
                    a.account_login_burst,
                    Duration::from_millis(a.account_login_period_ms),
                ),
                clock.clone(),
            )),
            login_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy {
                free_failures: a.free_login_failures,
                ..BackoffPolicy::default()
            })),
        },
        audit: Arc::new(todo_http::audit::TracingAudit),
        policy,
    });
    Ok((service, (keys, hasher)))
}

async fn serve(cli: &Cli) -> Result<(), String> {
    let store = open_store(&cli.server)?;
    let ran = store.migrate().map_err(|e| format!("migrating: {e}"))?;
    tracing::info!(ran, backend = ?store.backend(), "database ready");
    let (service, (keys, hasher)) = build(cli, store.clone())?;
    let jwks = keys.to_jwks().map_err(|e| e.to_string())?;
    let probes: Vec<Arc<dyn Probe>> = vec![Arc::new(store), hasher];
    let api = AuthApi::new(service, &jwks, probes).map_err(|e| e.to_string())?;
    run(Arc::new(api), &cli.server, 8443, "auth-server").await
}
