//! Building the auth service from settings: shared by auth-server and the
//! one-process `todo` binary, so both behave alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;
use todo_core::{ProjectLimits, ProjectService};

use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, BoundedHasher, CachingVerifier, JwtSigner,
    JwtVerifier, KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, PoolLimits, SigningKey,
    SystemClock,
};
use todo_core::{AuthLimits, AuthServices, SessionService, TaskLimits, TaskService, TokenPolicy};
use todo_http::Probe;
use todo_store::{SqlLoginBackoff, SqlStore};

use crate::Error;
use crate::config::ServerArgs;
use crate::keys;

/// A session's password confirmations (right or wrong: each costs a
/// hash): 5 at once, then one a minute, per instance.
const CONFIRMATIONS_PER_SESSION: LimitPolicy = LimitPolicy {
    burst: 5,
    period: Duration::from_secs(60),
    max_keys: 100_000,
};

/// auth-server's settings: keys, tokens, password hashing, login limits.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthSettings {
    /// The private signing key (PKCS#8 PEM); created (0600) if missing
    /// [default: DATA_DIR/signing-key.pem].
    #[arg(long, env = "TODO_SIGNING_KEY_FILE")]
    pub signing_key: Option<PathBuf>,
    /// The key (32 random bytes) that seals TOTP secrets in the database;
    /// created (0600) if missing. Keep it apart from the database's
    /// backups: with it, a stolen copy of the database yields no secret
    /// [default: DATA_DIR/second-factor.key].
    #[arg(long, env = "TODO_SECOND_FACTOR_KEY_FILE")]
    pub second_factor_key: Option<PathBuf>,
    /// The name authenticator apps show for this service.
    #[arg(long, env = "TODO_TOTP_ISSUER", default_value = "todo")]
    pub totp_issuer: String,
    /// Directory of extra public keys (PEM) that still verify: old signing
    /// keys after a rotation [default: DATA_DIR/verification-keys].
    #[arg(long, env = "TODO_VERIFICATION_KEYS_DIR")]
    pub verification_keys_dir: Option<PathBuf>,
    /// Algorithm of newly created signing keys.
    #[arg(long, env = "TODO_KEY_ALGORITHM", value_enum, default_value_t = Algorithm::Eddsa)]
    pub key_algorithm: Algorithm,
    /// Access-token issuer (`iss`).
    #[arg(long, env = "TODO_TOKEN_ISSUER", default_value = "todo-auth")]
    pub issuer: String,
    /// Access-token audience (`aud`).
    #[arg(long, env = "TODO_TOKEN_AUDIENCE", default_value = "todo")]
    pub audience: String,
    /// Access-token lifetime in seconds; at most 3600 (an ended session's
    /// tokens are refused by remembering the end that long).
    #[arg(long, env = "TODO_ACCESS_TTL_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "TODO_REFRESH_TTL_SECS", default_value_t = 14 * 24 * 3600)]
    pub refresh_ttl_secs: u64,
    /// Seconds after a refresh token's exchange in which exchanging it again
    /// (a second tab, a retry) gets a pair of its own instead of revoking
    /// the session as reuse; 0 turns this off; at most 60.
    #[arg(long, env = "TODO_REFRESH_REUSE_GRACE_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=60))]
    pub refresh_reuse_grace_secs: u64,
    /// argon2id memory in KiB.
    #[arg(long, env = "TODO_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    #[arg(long, env = "TODO_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// argon2id lanes.
    #[arg(long, env = "TODO_ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,
    /// Password hashes run at once [default: the number of cores].
    #[arg(long, env = "TODO_HASH_WORKERS")]
    pub hash_workers: Option<usize>,
    /// Logins that may wait for a hashing worker; beyond them, 503.
    #[arg(long, env = "TODO_HASH_QUEUE", default_value_t = 32)]
    pub hash_queue: usize,
    /// Registrations per client address: burst.
    #[arg(long, env = "TODO_REGISTER_BURST", default_value_t = 5)]
    pub register_burst: u32,
    /// Registrations per client address: seconds to refill one.
    #[arg(long, env = "TODO_REGISTER_PERIOD_SECS", default_value_t = 60)]
    pub register_period_secs: u64,
    /// Login attempts per client address: burst.
    #[arg(long, env = "TODO_LOGIN_BURST", default_value_t = 20)]
    pub login_burst: u32,
    /// Login attempts per client address: milliseconds to refill one.
    #[arg(long, env = "TODO_LOGIN_PERIOD_MS", default_value_t = 3000)]
    pub login_period_ms: u64,
    /// Refresh-token exchanges per client address: burst (a page refreshes
    /// once every few minutes a tab; past it, 429 with Retry-After).
    #[arg(long, env = "TODO_REFRESH_BURST", default_value_t = 60)]
    pub refresh_burst: u32,
    /// Refresh-token exchanges per client address: milliseconds to refill
    /// one (500: two a second, some 540 tabs behind one address).
    #[arg(long, env = "TODO_REFRESH_PERIOD_MS", default_value_t = 500)]
    pub refresh_period_ms: u64,
    /// Login attempts per account, from anywhere: burst.
    #[arg(long, env = "TODO_ACCOUNT_LOGIN_BURST", default_value_t = 10)]
    pub account_login_burst: u32,
    /// Login attempts per account: milliseconds to refill one.
    #[arg(long, env = "TODO_ACCOUNT_LOGIN_PERIOD_MS", default_value_t = 6000)]
    pub account_login_period_ms: u64,
    /// Failed logins on an account before the growing delay starts.
    #[arg(long, env = "TODO_FREE_LOGIN_FAILURES", default_value_t = 5)]
    pub free_login_failures: u32,
    /// The first delay after the free failures, in milliseconds; each further
    /// failure doubles it.
    #[arg(long, env = "TODO_LOGIN_DELAY_BASE_MS", default_value_t = 1000)]
    pub login_delay_base_ms: u64,
    /// The longest delay after failed logins, in seconds: an account under
    /// attack accepts one guess (and its owner, on a new device, one try)
    /// per this period.
    #[arg(long, env = "TODO_MAX_LOGIN_DELAY_SECS", default_value_t = 300)]
    pub max_login_delay_secs: u64,
    /// Who creates accounts: `open`, anyone (POST /v1/auth/register);
    /// `closed`, administrators only (`user create`); register answers 403.
    #[arg(long, env = "TODO_REGISTRATION", value_enum, default_value_t = RegistrationMode::Open)]
    pub registration: RegistrationMode,
    /// Mail: reset links asked for by login, address verification.
    #[command(flatten)]
    pub mail: crate::mail::MailSettings,
}

/// `--registration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistrationMode {
    /// Anyone may register.
    Open,
    /// Administrators create accounts.
    Closed,
}

/// What each user may write: the task service's quota and write rate.
#[derive(Debug, Clone, clap::Args)]
pub struct TaskSettings {
    /// Tasks one user may keep; creating more answers 403
    /// (urn:todo:problem:quota-exceeded). 0: no limit.
    #[arg(long, env = "TODO_MAX_TASKS_PER_USER", default_value_t = 10_000)]
    pub max_tasks_per_user: u64,
    /// Task writes (create, update, delete) per user, per instance: burst;
    /// past it, 429 with Retry-After. 0: no limit.
    #[arg(long, env = "TODO_TASK_WRITE_BURST", default_value_t = 120)]
    pub task_write_burst: u32,
    /// Task writes per user: milliseconds to refill one (100: 10 a second).
    #[arg(long, env = "TODO_TASK_WRITE_PERIOD_MS", default_value_t = 100)]
    pub task_write_period_ms: u64,
    /// Days the change log keeps each change (`GET /v1/changes`); a client
    /// whose cursor is older is answered 410 and lists its tasks again.
    #[arg(long, env = "TODO_CHANGE_RETENTION_DAYS", default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub change_retention_days: u32,
    /// Webhooks one user may have; creating more answers 403. 0: no limit.
    #[arg(long, env = "TODO_MAX_WEBHOOKS_PER_USER", default_value_t = 10)]
    pub max_webhooks_per_user: u64,
    /// Let webhooks use plain http and private, loopback and link-local
    /// addresses: for tests only; anyone could then reach this server's
    /// own network through a webhook.
    #[arg(long, env = "TODO_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// Certificates (PEM) that webhook receivers' TLS may also chain to,
    /// beside the Mozilla roots (a private CA, or a test receiver's own).
    #[arg(long, env = "TODO_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<std::path::PathBuf>,
    /// Live streams (`GET /v1/events`) one instance holds at once; past
    /// it, 503. Each holds a connection: at most three quarters of
    /// `--max-connections` are taken, whatever this says.
    #[arg(long, env = "TODO_MAX_LIVE_STREAMS", default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_live_streams: u32,
    /// Live streams from one client address (an IPv6 /64 counting as
    /// one); past it, 429. Behind a gateway that forwards the client's
    /// address (`--trusted-proxies`), per end client.
    #[arg(long, env = "TODO_MAX_LIVE_STREAMS_PER_CLIENT", default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_live_streams_per_client: u32,
    /// Publish every change to this RabbitMQ broker
    /// (`amqp://user:password@host:5672/vhost`, the vhost URL-encoded:
    /// `%2f` for `/`), at least once and in order per user. Every
    /// instance may relay; each user's stream is leased to one at a time.
    #[arg(long, env = "TODO_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// A file holding `--amqp-url` (a mounted secret).
    #[arg(long, env = "TODO_AMQP_URL_FILE", conflicts_with = "amqp_url")]
    pub amqp_url_file: Option<std::path::PathBuf>,
    /// Certificates (PEM) an `amqps://` broker's TLS may also chain to,
    /// beside the Mozilla roots (a private CA).
    #[arg(long, env = "TODO_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// The durable topic exchange changes are published to; the routing
    /// key is the change's type (`task.created`, …).
    #[arg(long, env = "TODO_AMQP_EXCHANGE", default_value = "todo.changes")]
    pub amqp_exchange: String,
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            max_tasks_per_user: 10_000,
            task_write_burst: 120,
            task_write_period_ms: 100,
            change_retention_days: 30,
            max_webhooks_per_user: 10,
            webhooks_allow_private: false,
            webhook_ca_file: None,
            max_live_streams: 256,
            max_live_streams_per_client: 16,
            amqp_url: None,
            amqp_url_file: None,
            amqp_ca_file: None,
            amqp_exchange: "todo.changes".to_owned(),
        }
    }
}

impl TaskSettings {
    /// How long the change log keeps a change.
    #[must_use]
    pub fn change_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.change_retention_days) * 24 * 3600)
    }

    /// The limits these settings describe, timed by `clock`.
    #[must_use]
    pub fn limits(&self, clock: Arc<dyn todo_core::Clock>) -> TaskLimits {
        let writes_per_user: Arc<dyn todo_core::RateLimiter<todo_core::UserId>> =
            if self.task_write_burst == 0 {
                Arc::new(todo_core::Unlimited)
            } else {
                Arc::new(KeyedLimiter::new(
                    LimitPolicy {
                        burst: self.task_write_burst,
                        period: Duration::from_millis(self.task_write_period_ms.max(1)),
                        max_keys: 100_000,
                    },
                    clock,
                ))
            };
        TaskLimits {
            max_tasks_per_user: (self.max_tasks_per_user > 0).then_some(self.max_tasks_per_user),
            writes_per_user,
        }
    }

    /// The task service over `store`, with these limits.
    #[must_use]
    pub fn service(&self, store: SqlStore, clock: Arc<SystemClock>) -> TaskService {
        TaskService::new(Arc::new(store), clock.clone(), Arc::new(OsRandom))
            .with_limits(self.limits(clock))
            .with_sha256(Arc::new(todo_auth::Sha256Digest))
    }

    /// Projects over `store`: their writes have an allowance per user of
    /// their own, as large as the task writes'.
    #[must_use]
    pub fn projects(&self, store: SqlStore, clock: Arc<SystemClock>) -> ProjectService {
        let store = Arc::new(store);
        let limits = ProjectLimits {
            writes_per_user: self.limits(clock.clone()).writes_per_user,
            ..ProjectLimits::default()
        };
        ProjectService::new(store.clone(), store, clock, Arc::new(OsRandom))
            .with_limits(limits)
            .with_sha256(Arc::new(todo_auth::Sha256Digest))
    }

    /// The webhook policy these settings describe.
    #[must_use]
    pub fn webhook_policy(&self) -> todo_core::WebhookPolicy {
        todo_core::WebhookPolicy {
            max_per_user: (self.max_webhooks_per_user > 0).then_some(self.max_webhooks_per_user),
            allow_private: self.webhooks_allow_private,
            ..todo_core::WebhookPolicy::default()
        }
    }

    /// Users' webhooks over `store`, and their delivery worker, started
    /// (call inside a tokio runtime): every instance may run one, each
    /// webhook is leased to one at a time.
    pub fn start_webhooks(
        &self,
        store: SqlStore,
        clock: Arc<SystemClock>,
    ) -> Result<(todo_core::WebhookService, Arc<dyn Probe>), Error> {
        let policy = self.webhook_policy();
        if policy.allow_private {
            tracing::warn!(
                "--webhooks-allow-private: webhooks may target http:// and private, loopback \
                 and link-local addresses; every user can reach this server's network through \
                 one. For tests only"
            );
        }
        let sender = crate::webhooks::WebhookSender::new(
            self.webhook_ca_file.as_deref(),
            policy.allow_private,
            policy.receiver_timeout,
        )?;
        let store = Arc::new(store);
        let service = todo_core::WebhookService::new(
            store.clone(),
            store,
            Arc::new(crate::webhooks::ResolvingTargets::new(policy.allow_private)),
            clock.clone(),
            Arc::new(OsRandom),
            policy,
        )
        // Creations and deletions: a few a minute (each creation looks a
        // name up), an allowance of their own.
        .with_write_limit(Arc::new(KeyedLimiter::new(
            LimitPolicy {
                burst: WEBHOOK_WRITE_BURST,
                period: WEBHOOK_WRITE_PERIOD,
                max_keys: 100_000,
            },
            clock,
        )));
        let stats = Arc::new(crate::webhooks::WebhookStats::default());
        crate::webhooks::deliver_webhooks_periodically(service.clone(), sender, stats.clone());
        Ok((service, stats))
    }

    /// `api` with these settings' caps on live streams, the instance's
    /// held to three quarters of the server's `max_connections` at most:
    /// other requests need the rest.
    #[must_use]
    pub fn live_limits(
        &self,
        api: todo_http::TaskApi,
        max_connections: usize,
    ) -> todo_http::TaskApi {
        let per_client = usize::try_from(self.max_live_streams_per_client).unwrap_or(usize::MAX);
        api.with_live_limits(self.live_streams_total(max_connections), per_client)
    }

    /// The live streams an instance holding `max_connections` serves at
    /// once: `max_live_streams`, and three quarters of the connections at
    /// most.
    #[must_use]
    pub fn live_streams_total(&self, max_connections: usize) -> usize {
        usize::try_from(self.max_live_streams)
            .unwrap_or(usize::MAX)
            .min((max_connections.saturating_mul(3) / 4).max(1))
    }

    /// Where `--amqp-url` says to relay changes, if it does.
    pub fn amqp_target(&self) -> Result<Option<crate::relay::AmqpTarget>, Error> {
        let url = match (&self.amqp_url, &self.amqp_url_file) {
            (Some(url), _) => url.clone(),
            (None, Some(file)) => crate::config::read_secret_file(file)?.trim().to_owned(),
            (None, None) => return Ok(None),
        };
        let target = crate::relay::AmqpTarget::new(&url, &self.amqp_exchange)?;
        match &self.amqp_ca_file {
            Some(file) => {
                let pem = std::fs::read_to_string(file).map_err(|e| Error::file(file, e))?;
                target.with_extra_roots(pem).map(Some)
            }
            None => Ok(Some(target)),
        }
    }

    /// The relay of every change to RabbitMQ, started if `--amqp-url` is
    /// given (call inside a tokio runtime): its metrics, as a probe.
    pub fn start_relay(
        &self,
        store: SqlStore,
        clock: Arc<SystemClock>,
    ) -> Result<Vec<Arc<dyn Probe>>, Error> {
        let Some(target) = self.amqp_target()? else {
            return Ok(Vec::new());
        };
        if !target.is_tls() {
            // Every user's task contents, and the broker's password, cross
            // the network as they are.
            tracing::warn!(
                "--amqp-url is plain amqp://: use amqps:// unless the path to the broker is private"
            );
        }
        let store = Arc::new(store);
        let service = todo_core::RelayService::new(store.clone(), store, clock);
        let stats = Arc::new(crate::relay::RelayStats::default());
        crate::relay::relay_changes(service, target, stats.clone());
        Ok(vec![stats])
    }
}

/// `--key-algorithm`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Algorithm {
    /// Ed25519.
    Eddsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl From<Algorithm> for KeyAlgorithm {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Eddsa => KeyAlgorithm::EdDsa,
            Algorithm::Es256 => KeyAlgorithm::Es256,
        }
    }
}

/// Verified access tokens remembered (about 400 bytes each): see
/// `todo_auth::CachingVerifier`.
pub const VERIFIED_TOKENS_CACHED: usize = 50_000;

/// The auth services and the parts the server also needs.
pub struct AuthParts {
    /// The auth services.
    pub service: AuthServices,
    /// Every key that verifies: the signing key's and the rotated-out ones.
    pub keys: KeySet,
    /// argon2, bounded.
    pub hasher: Arc<BoundedHasher<Argon2Hasher>>,
    /// Verifies with every key in `keys`, remembering tokens it verified.
    pub verifier: Arc<CachingVerifier<JwtVerifier>>,
}

impl std::fmt::Debug for AuthParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthParts").finish_non_exhaustive()
    }
}

impl AuthSettings {
    /// Password hashes run at once: `--hash-workers`, else the cores.
    fn hash_workers(&self) -> usize {
        self.hash_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// The memory the password hashes running at once take (argon2's
    /// memory each).
    #[must_use]
    pub fn hashing_bytes(&self) -> u64 {
        let workers = u64::try_from(self.hash_workers()).unwrap_or(u64::MAX);
        workers.saturating_mul(u64::from(self.argon2_memory_kib) * 1024)
    }

    /// Where the signing key is.
    #[must_use]
    pub fn signing_key_path(&self, data_dir: &Path) -> PathBuf {
        self.signing_key
            .clone()
            .unwrap_or_else(|| data_dir.join("signing-key.pem"))
    }

    /// Where the rotated-out public keys are.
    #[must_use]
    pub fn verification_dir(&self, data_dir: &Path) -> PathBuf {
        self.verification_keys_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("verification-keys"))
    }

    /// The signing key, created (0600) on first start.
    pub fn load_or_create_signing_key(&self, data_dir: &Path) -> Result<SigningKey, Error> {
        keys::load_or_create_signing_key(
            &self.signing_key_path(data_dir),
            self.key_algorithm.into(),
        )
    }

    /// Makes a new signing key; the old public key moves to the verification
    /// directory, so tokens it signed stay valid.
    pub fn rotate_keys(&self, data_dir: &Path) -> Result<(), Error> {
        keys::rotate(
            &self.signing_key_path(data_dir),
            &self.verification_dir(data_dir),
            self.key_algorithm.into(),
        )
    }

    /// The auth service over `store`, with argon2 bounded, limits and audit log.
    pub fn build(&self, data_dir: &Path, store: SqlStore) -> Result<AuthParts, Error> {
        let store = Arc::new(store);
        let clock = Arc::new(SystemClock);
        let key = self.load_or_create_signing_key(data_dir)?;
        let mut public = vec![key.public_key().clone()];
        public.extend(keys::public_keys_in(&self.verification_dir(data_dir))?);
        let keys = KeySet::new(public);
        let argon2 = Argon2Config {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        };
        let workers = self.hash_workers();
        let hasher = Arc::new(BoundedHasher::new(
            Argon2Hasher::new(argon2).map_err(|e| Error::key("--argon2-*", e))?,
            PoolLimits {
                running: workers,
                waiting: self.hash_queue,
                retry_after: Duration::from_secs(1),
            },
        ));
        let limit = |burst, period| LimitPolicy {
            burst,
            period,
            max_keys: 100_000,
        };
        let policy = TokenPolicy {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: Duration::from_secs(self.access_ttl_secs.max(1)),
            refresh_ttl: Duration::from_secs(self.refresh_ttl_secs.max(1)),
            refresh_reuse_grace: Duration::from_secs(self.refresh_reuse_grace_secs)
                .min(TokenPolicy::MAX_REUSE_GRACE),
        };
        let verifier = Arc::new(CachingVerifier::new(
            JwtVerifier::new(keys.clone(), &policy.issuer, &policy.audience, 30),
            VERIFIED_TOKENS_CACHED,
        ));
        let register = limit(
            self.register_burst,
            Duration::from_secs(self.register_period_secs),
        );
        let login = limit(
            self.login_burst,
            Duration::from_millis(self.login_period_ms),
        );
        let refresh = limit(
            self.refresh_burst,
            Duration::from_millis(self.refresh_period_ms),
        );
        let account = limit(
            self.account_login_burst,
            Duration::from_millis(self.account_login_period_ms),
        );
        let backoff = BackoffPolicy {
            free_failures: self.free_login_failures,
            base_delay: Duration::from_millis(self.login_delay_base_ms),
            max_delay: Duration::from_secs(self.max_login_delay_secs),
            ..BackoffPolicy::default()
        };
        // Failure counts live in the database, so every instance sees them.
        let failures = Arc::new(SqlLoginBackoff::new((*store).clone(), backoff));
        let code_failures = Arc::new(SqlLoginBackoff::for_codes(
            (*store).clone(),
            BackoffPolicy::CODES,
        ));
        let mail = self.mail.mailer()?;
        let mails = LimitPolicy {
            burst: self.mail.mail_burst,
            period: Duration::from_secs(self.mail.mail_period_secs),
            max_keys: 100_000,
        };
        let mut service = todo_auth::auth_services()
            .store(store)
            .hasher(hasher.clone())
            .signer(Arc::new(JwtSigner::new(key)))
            .verifier(verifier.clone())
            .limits(AuthLimits {
                register_per_client: Arc::new(KeyedLimiter::new(register, clock.clone())),
                login_per_client: Arc::new(KeyedLimiter::new(login, clock.clone())),
                refresh_per_client: Arc::new(KeyedLimiter::new(refresh, clock.clone())),
                login_per_account: Arc::new(KeyedLimiter::new(account, clock.clone())),
                login_failures: failures,
                code_failures,
                confirmations_per_session: Arc::new(KeyedLimiter::new(
                    CONFIRMATIONS_PER_SESSION,
                    clock.clone(),
                )),
                mail_per_account: Arc::new(KeyedLimiter::new(mails, clock.clone())),
                mail_per_address: Arc::new(KeyedLimiter::new(mails, clock)),
            })
            .audit(Arc::new(todo_http::audit::TracingAudit))
            .policy(policy)
            .registration_open(self.registration == RegistrationMode::Open);
        if let Some((mailer, links)) = mail {
            service = service.mail(Arc::new(mailer), links);
        }
        let sealer_path = self
            .second_factor_key
            .clone()
            .unwrap_or_else(|| data_dir.join("second-factor.key"));
        let made = !sealer_path.exists();
        let sealer =
            todo_auth::AesGcmSealer::from_file(&sealer_path, Arc::new(todo_auth::OsRandom))
                .map_err(|e| Error::key("--second-factor-key", e))?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&sealer_path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %sealer_path.display(),
                    "the second-factor key is readable by others than its owner: chmod 600"
                );
            }
        }
        if made {
            // Said aloud: a mistyped path makes a new key, and the secrets
            // sealed under the old one no longer open.
            tracing::warn!(
                path = %sealer_path.display(),
                "second-factor key created; authenticators enrolled under another key will not open"
            );
        }
        service = service.second_factors(
            Arc::new(sealer),
            Arc::new(todo_auth::AwsHmacSha1),
            self.totp_issuer.clone(),
        );
        if let Some(origin) = &self.mail.public_url {
            // (an address for a host serves mail's links, but no passkeys:
            // browsers take no address as a relying party)
            match todo_auth::WebauthnCeremonies::new(origin, &self.totp_issuer) {
                Ok(ceremonies) => service = service.passkeys(Arc::new(ceremonies)),
                Err(e) => tracing::warn!(
                    error = %todo_core::error_chain(&e),
                    "no passkeys: --public-url cannot be their relying party"
                ),
            }
        }
        let service = service.build()?;
        Ok(AuthParts {
            service,
            keys,
            hasher,
            verifier,
        })
    }
}

/// `user create` (auth-server) and `create-user` (todo): who to make.
#[derive(Debug, Clone, clap::Args)]
pub struct NewUser {
    /// The user's name.
    #[arg(long)]
    pub username: String,
    /// Make the user an administrator.
    #[arg(long)]
    pub admin: bool,
    /// The user's e-mail address.
    #[arg(long)]
    pub email: Option<String>,
    /// A file holding the password (else it is read from standard input).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// `user create`: makes a user (an admin with `admin`), the password read
/// from `password_file` or standard input, never from an argument.
pub fn create_user(server: &ServerArgs, auth: &AuthSettings, user: &NewUser) -> Result<(), Error> {
    use std::io::Read as _;
    let password = match &user.password_file {
        Some(file) => crate::config::read_secret_file(file)?,
        None => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| Error::file("standard input", e))?;
            input.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let registration =
        todo_core::Registration::parse(&user.username, &password, user.email.as_deref()).map_err(
            |errors| {
                Error::InvalidUser(
                    errors
                        .iter()
                        .map(|e| format!("{}: {e}", e.field()))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            },
        )?;
    let store = server.open_store()?;
    let service = auth.build(&server.data_dir, store)?.service;
    let role = if user.admin {
        todo_core::Role::Admin
    } else {
        todo_core::Role::User
    };
    let user = service
        .admin
        .create_user(registration, role)
        .map_err(|source| Error::Service {
            context: "creating the user",
            source,
        })?;
    tracing::info!(user = %user.id, username = %user.username, role = %user.role, "user created");
    Ok(())
}

/// How often auth-server deletes long-dead refresh tokens.
pub const REFRESH_TOKEN_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Deletes long-dead refresh tokens every `every`
/// ([`SessionService::purge_refresh_tokens`]), stale failed-login counts
/// ([`SessionService::purge_login_failures`]), and expired two-step logins
/// and enrolments ([`SessionService::purge_second_factors`]), on the
/// blocking pool, until the
/// runtime stops. Several instances may all do it: the delete is idempotent.
pub fn purge_refresh_tokens_periodically(
    service: SessionService,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    periodically(every, move || {
        let service = service.clone();
        async move {
            purge(
                &service,
                "refresh tokens",
                SessionService::purge_refresh_tokens,
            )
            .await;
            purge(
                &service,
                "stale login failures",
                SessionService::purge_login_failures,
            )
            .await;
            purge(
                &service,
                "expired two-step logins",
                SessionService::purge_second_factors,
            )
            .await;
        }
    })
}

/// Webhook creations and deletions per user: a burst, then one per period.
const WEBHOOK_WRITE_BURST: u32 = 5;
const WEBHOOK_WRITE_PERIOD: Duration = Duration::from_secs(12);

/// How often a live stream reads the log unwoken where the database
/// announces every change ([`wake_on_changes`]): only the net for
/// announcements lost while the listener reconnects.
pub const LIVE_POLL_WITH_LISTENER: Duration = Duration::from_secs(15);

/// Wakes `service`'s live subscribers for the changes other instances
/// commit to the same database (PostgreSQL's LISTEN/NOTIFY; `None` on
/// SQLite, which has no other writer). Keep the listener for as long as
/// the server runs.
pub fn wake_on_changes(
    store: &SqlStore,
    service: &TaskService,
) -> Result<Option<todo_store::ChangeListener>, Error> {
    let service = service.clone();
    store
        .listen_for_changes(move |notice| match notice {
            todo_store::ChangeNotice::Owner(owner) => service.notify_changed(owner),
            todo_store::ChangeNotice::Projects(projects) => {
                service.notify_projects_changed(&projects);
            }
            todo_store::ChangeNotice::Anyone => service.notify_all_changed(),
        })
        .map_err(|e| Error::setting("--database-url", format!("listening for changes: {e}")))
}

/// How often task-server prunes the change log.
pub const CHANGE_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Forgets the changes older than `keep` every `every`
/// ([`TaskService::prune_changes`](todo_core::TaskService::prune_changes)),
/// on the blocking pool, until the runtime stops. Several instances may all
/// do it: the prune is idempotent.
pub fn prune_changes_periodically(
    service: todo_core::TaskService,
    keep: Duration,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    periodically(every, move || {
        let service = service.clone();
        async move { purge(&service, "old changes", move |s| s.prune_changes(keep)).await }
    })
}

/// How often an instance looks for reminders that are due: a reminder
/// fires within this of its time.
pub const REMINDER_INTERVAL: Duration = Duration::from_secs(1);

/// The most reminders one look fires (a backlog after an outage drains at
/// this a second, per instance).
const REMINDERS_PER_LOOK: usize = 500;

/// Fires due reminders every `every` ([`TaskService::fire_due_reminders`](
/// todo_core::TaskService::fire_due_reminders)), on the blocking pool,
/// until the runtime stops. Every instance may: each reminder fires once.
pub fn fire_reminders_periodically(
    service: todo_core::TaskService,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    periodically(every, move || {
        let service = service.clone();
        async move {
            let fired =
                tokio::task::spawn_blocking(move || service.fire_due_reminders(REMINDERS_PER_LOOK))
                    .await;
            if let Ok(Err(error)) = fired {
                tracing::warn!(target: "todo::reminders", %error, "firing due reminders failed; trying again at the next look");
            }
        }
    })
}

/// When a periodic job first runs after the start, at the latest: a
/// process that restarts more often than the job's interval (a desktop
/// `todo`, a rollout) must still run it.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);

/// Runs `job` once [`FIRST_RUN_AFTER`] the start (or `every`, if sooner)
/// and then every `every`, until the runtime stops; a late tick is not
/// made up for.
fn periodically<F, Fut>(every: Duration, mut job: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + FIRST_RUN_AFTER.min(every);
        let mut ticks = tokio::time::interval_at(first, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            job().await;
        }
    })
}

/// One purge on the blocking pool; its outcome goes to the log (a failure
/// is retried at the next tick).
async fn purge<S: Clone + Send + 'static>(
    service: &S,
    what: &'static str,
    delete: impl FnOnce(&S) -> Result<u64, todo_core::Error> + Send + 'static,
) {
    let service = service.clone();
    match tokio::task::spawn_blocking(move || delete(&service)).await {
        Ok(Ok(purged)) => tracing::info!(target: "todo::housekeeping", purged, "{what} purged"),
        Ok(Err(error)) => {
            tracing::warn!(target: "todo::housekeeping", %error, "purging {what} failed; retrying at the next tick");
        }
        Err(join) => tracing::warn!(target: "todo::housekeeping", %join, "purging {what} panicked"),
    }
}

/// The one-origin application of the `todo` binary over `store`: both APIs
/// (cookie sessions on, the task API verifying with the same public keys
/// in-process) and the web page. Starts the hourly refresh-token purge: call
/// it inside a tokio runtime.
pub fn one_origin(
    auth: &AuthSettings,
    data_dir: &Path,
    store: SqlStore,
) -> Result<todo_http::OneOrigin, Error> {
    // The servers' default connection cap (`--max-connections`).
    one_origin_with(
        auth,
        &TaskSettings::default(),
        data_dir,
        store,
        todo_http::HttpLimits::default().max_connections,
    )
}

/// [`one_origin`] with the task service's limits given, for a server
/// that holds `max_connections` at most.
pub fn one_origin_with(
    auth: &AuthSettings,
    task_settings: &TaskSettings,
    data_dir: &Path,
    store: SqlStore,
    max_connections: usize,
) -> Result<todo_http::OneOrigin, Error> {
    let AuthParts {
        service,
        keys,
        hasher,
        verifier: _,
    } = auth.build(data_dir, store.clone())?;
    // One gate for both APIs: a password change on the auth side is
    // honoured by the task side at once.
    let gate = Arc::clone(service.gate());
    purge_refresh_tokens_periodically(service.sessions.clone(), REFRESH_TOKEN_PURGE_INTERVAL);
    let jwks = keys
        .to_jwks()
        .map_err(|e| Error::key("publishing the keys", e))?;
    let clock = Arc::new(SystemClock);
    let mut workers = task_settings.start_relay(store.clone(), clock.clone())?;
    let (webhooks, webhook_stats) = task_settings.start_webhooks(store.clone(), clock.clone())?;
    workers.push(webhook_stats);
    let tasks = task_settings.service(store.clone(), clock.clone());
    prune_changes_periodically(
        tasks.clone(),
        task_settings.change_retention(),
        CHANGE_PRUNE_INTERVAL,
    );
    fire_reminders_periodically(tasks.clone(), REMINDER_INTERVAL);
    let task_api = task_settings.live_limits(
        task_api(tasks, gate, store.clone(), workers.clone())?
            .with_webhooks(webhooks)
            .with_projects(task_settings.projects(store.clone(), Arc::new(SystemClock))),
        max_connections,
    );
    // One origin serves one /metrics, the auth side's (the store's gauges
    // once, not twice): the relay's, the webhook worker's and the live
    // streams' gauges go there too (the attack of #15 found the relay's
    // missing from `todo`; session 33's review, the live streams').
    let mut probes: Vec<Arc<dyn Probe>> = vec![StoreProbe::shared(store), hasher];
    probes.extend(workers);
    probes.push(task_api.live_streams_probe());
    let auth_api = todo_http::AuthApi::new(service, &jwks, probes)
        .map_err(Error::api("auth"))?
        .with_cookie_sessions();
    todo_http::OneOrigin::new(auth_api, task_api).map_err(Error::api("one-origin"))
}

/// The task API on `store`, its probe, and its scans bounded to half the
/// database pool (the other half stays for logins, writes and short
/// reads; a pool of one connection is the one exception, shared by all).
pub(crate) fn task_api(
    service: todo_core::TaskService,
    gate: Arc<todo_core::AccessGate>,
    store: SqlStore,
    more_probes: Vec<Arc<dyn Probe>>,
) -> Result<todo_http::TaskApi, Error> {
    let pool = usize::try_from(store.pool_state().max).unwrap_or(1);
    let scans = (pool / 2).max(1);
    // Lists read and built at once: no more than the pool could read, and
    // no more than the default, whatever the pool (each holds its page in
    // memory: a larger pool must not mean more memory).
    let lists = pool.clamp(1, todo_http::TaskApi::LISTS_AT_ONCE);
    // The account's export is served beside the tasks it holds, reading
    // the account from the tables auth-server writes.
    let shared = Arc::new(store.clone());
    let accounts = todo_core::AccountReader::new(shared.clone(), shared, Arc::new(SystemClock));
    let mut probes = vec![StoreProbe::shared(store)];
    probes.extend(more_probes);
    Ok(todo_http::TaskApi::new(service, gate, probes)
        .map_err(Error::api("task"))?
        .with_scan_slots(scans)
        .with_list_slots(lists)
        .with_accounts(accounts))
}

/// The database as a readiness probe with its pool gauges.
#[derive(Debug, Clone)]
pub struct StoreProbe(SqlStore);

impl StoreProbe {
    /// `store` as a probe, ready to hand to an API.
    #[must_use]
    pub fn shared(store: SqlStore) -> Arc<dyn Probe> {
        Arc::new(Self(store))
    }
}

impl Probe for StoreProbe {
    fn ready(&self) -> Result<(), todo_http::NotReady> {
        self.0.ping().map_err(|e| todo_http::NotReady(Box::new(e)))
    }

    fn gauges(
        &self,
        encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        let state = self.0.pool_state();
        todo_http::gauge(
            encoder,
            "todo_db_pool_connections",
            "Open database connections.",
            state.connections,
        )?;
        todo_http::gauge(
            encoder,
            "todo_db_pool_idle",
            "Idle database connections.",
            state.idle,
        )?;
        todo_http::gauge(
            encoder,
            "todo_db_pool_max",
            "Database pool size.",
            state.max,
        )?;
        // SQLite's group commit: writes over batches is the writes per sync.
        if let Some(stats) = self.0.group_commit_stats() {
            todo_http::counter(
                encoder,
                "todo_db_group_commits",
                "SQLite transactions committed by the group-commit writer.",
                stats.batches,
            )?;
            todo_http::counter(
                encoder,
                "todo_db_group_commit_writes",
                "Writes acknowledged in those transactions.",
                stats.writes,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use todo_core::memory::MemoryStore;
    use todo_core::testing::{
        CountingHasher, ManualClock, ReversingDigest, SeededRandom, TableTokens,
    };
    use todo_core::{Credentials, Registration, Role};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn long_dead_refresh_tokens_are_purged_every_interval() {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new());
        let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
        let AuthServices {
            sessions: service,
            admin,
            ..
        } = AuthServices::builder()
            .store(store)
            .hasher(Arc::new(CountingHasher::new(1)))
            .signer(tokens.clone())
            .verifier(tokens)
            .refresh_hasher(Arc::new(ReversingDigest))
            .clock(clock.clone())
            .random(Arc::new(SeededRandom::new(7)))
            .limits(todo_core::AuthLimits::unlimited())
            .build()
            .unwrap();
        let registration = Registration::parse("alice", "correct horse", None).unwrap();
        admin.create_user(registration, Role::User).unwrap();
        let credentials = Credentials::offered("alice", "correct horse");
        service.login(None, &credentials).unwrap();
        service.login(None, &credentials).unwrap();
        // Both expired more than a lifetime ago.
        clock.advance(TokenPolicy::default().refresh_ttl * 3);

        let every = Duration::from_secs(60);
        let purging = purge_refresh_tokens_periodically(service.clone(), every);
        // Nothing before the first interval has passed...
        tokio::time::sleep(every / 2).await;
        assert_eq!(service.purge_refresh_tokens().unwrap(), 2, "not yet purged");
        // ...(which purged them by hand); two more, then the tick.
        service.login(None, &credentials).unwrap();
        service.login(None, &credentials).unwrap();
        clock.advance(TokenPolicy::default().refresh_ttl * 3);
        for _ in 0..100 {
            tokio::time::sleep(every / 10).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(
            service.purge_refresh_tokens().unwrap(),
            0,
            "the periodic purge took them"
        );
        purging.abort();
    }
}
