//! Starts auth and task APIs on real TLS sockets with a fresh database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, BoundedHasher, FailedLoginBackoff, JwtSigner,
    JwtVerifier, KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, PoolLimits, SigningKey,
    SystemClock,
};
use todo_core::{
    AccessGate, AuthLimits, AuthServices, PasswordHasher, ProjectService, Registration, Role,
    TaskService, TokenPolicy,
};
use todo_http::{
    AuthApi, AuthWithPage, Frontend, HttpLimits, OneOrigin, Probe, TaskApi, TrustedProxies, serve,
};
use todo_server::{StoreProbe, TlsIdentity};
use todo_store::SqlStore;
use todo_store::testing::{TestBackend, TestDatabase};
use todo_testkit::gateway::Gateway;
use todo_testkit::{Client, Reply};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Cheap argon2 parameters: same code path, faster tests.
pub const LIGHT: Argon2Config = Argon2Config {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

pub struct Options {
    pub hasher: Option<Arc<dyn PasswordHasher>>,
    pub probe_hasher: bool,
    pub register_burst: u32,
    /// Refresh-token exchanges per client address a minute.
    pub refresh_burst: u32,
    /// Password confirmations per session a minute.
    pub confirm_burst: u32,
    pub limits: HttpLimits,
    /// Serve both APIs and the page on one origin (the `todo` binary's mode).
    pub one_origin: bool,
    /// Believe `X-Forwarded-For` from loopback (to play several clients).
    pub trust_loopback_proxy: bool,
    /// argon2 at its production parameters instead of cheap ones, and no
    /// failed-login delay (for timing the failure path itself).
    pub real_argon2: bool,
    /// The refresh-token reuse grace (the default's, as deployed; zero to
    /// see reuse detected at once).
    pub refresh_reuse_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            hasher: None,
            probe_hasher: true,
            register_burst: 1000,
            refresh_burst: 1000,
            confirm_burst: 1000,
            limits: HttpLimits::default(),
            one_origin: false,
            trust_loopback_proxy: false,
            real_argon2: false,
            refresh_reuse_grace: TokenPolicy::default().refresh_reuse_grace,
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts draining; returns when the server has finished.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap();
        }
    }

    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.done.take().unwrap()
    }
}

pub struct System {
    pub auth: Server,
    pub tasks: Server,
    pub service: AuthServices,
    /// The auth service's signer and its key, for tests that forge tokens.
    pub signer: Arc<JwtSigner>,
    pub key_pem: String,
    /// The database both APIs use.
    db_store: SqlStore,
    /// Where that database is, for tests that read it as an operator would.
    db_url: todo_store::DatabaseUrl,
    /// Kept alive for the servers; dropped (and removed) with the system.
    /// None for a deployment running elsewhere.
    _db: Option<TestDatabase>,
    /// A deployment running elsewhere: the connection that holds its
    /// advisory lock while this test uses it (see [`Running`]).
    _exclusive: Option<std::sync::Mutex<diesel::PgConnection>>,
    pub cert: rustls_pki_types::CertificateDer<'static>,
    _dir: tempfile::TempDir,
    /// Behind a gateway: the instances nginx forwards to (auth, tasks, auth,
    /// tasks), each with a plain-HTTP client; empty otherwise.
    pub instances: Vec<Server>,
    gateway: Option<Gateway>,
    /// A deployment running elsewhere (containers): see [`Running`].
    running: bool,
    /// Behind the gateway: each task instance's change listener.
    _listeners: Vec<todo_store::ChangeListener>,
}

impl System {
    /// The database both APIs use, for tests that act as the operator's
    /// housekeeping does (pruning the change log, say).
    pub fn store(&self) -> &todo_store::SqlStore {
        &self.db_store
    }

    /// Every text column of every table, with how many of its rows hold
    /// `needle` anywhere in that column (an id in a JSON list too): what
    /// is left of someone in the database, read as an operator would.
    pub fn rows_holding(&self, needle: &str) -> Vec<(String, String, i64)> {
        todo_store::testing::rows_holding(&self.db_url, needle)
    }
}

async fn start<A: todo_http::Api>(
    api: A,
    identity: TlsIdentity,
    limits: HttpLimits,
    proxies: TrustedProxies,
) -> (Server, rustls_pki_types::CertificateDer<'static>) {
    let cert = identity.certs[0].clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    // The tests scrape each server directly, as an operator's inside
    // listener would (`--metrics-listen`); the binaries hide it by default.
    let front = Arc::new(
        Frontend::new(Arc::new(api), limits, proxies)
            .with_metrics(todo_http::MetricsExposure::Shown),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(front, listener, Some(acceptor), async move {
        let _ = stopped.await;
    }));
    let client = Client::https(addr, "localhost", std::slice::from_ref(&cert))
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    (
        Server {
            addr,
            client,
            stop: Some(stop),
            done: Some(done),
        },
        cert,
    )
}

/// Where the servers under test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One auth-server and one task-server, each on its own TLS socket.
    Direct(TestBackend),
    /// Two of each on one PostgreSQL database, plain HTTP on loopback, behind
    /// nginx running `deploy/nginx/todo.conf`: clients talk to nginx only,
    /// and nginx spreads their requests over the instances.
    Gateway,
}

impl From<TestBackend> for Deployment {
    fn from(backend: TestBackend) -> Self {
        Self::Direct(backend)
    }
}

/// One instance of each API over `store`, as the binaries assemble them.
struct Instance {
    service: AuthServices,
    auth: AuthApi,
    tasks: TaskApi,
    task_service: TaskService,
}

fn instance(
    store: Arc<SqlStore>,
    options: &Options,
    signer: &Arc<JwtSigner>,
    keys: &KeySet,
) -> Instance {
    let clock = Arc::new(SystemClock);
    let policy = TokenPolicy {
        refresh_reuse_grace: options.refresh_reuse_grace,
        ..TokenPolicy::default()
    };
    let verifier = Arc::new(JwtVerifier::new(
        keys.clone(),
        &policy.issuer,
        &policy.audience,
        5,
    ));
    let bounded = Arc::new(BoundedHasher::new(
        Argon2Hasher::new(if options.real_argon2 {
            Argon2Config::default()
        } else {
            LIGHT
        })
        .unwrap(),
        PoolLimits {
            running: 2,
            waiting: 64,
            retry_after: Duration::from_secs(1),
        },
    ));
    let hasher: Arc<dyn PasswordHasher> = options.hasher.clone().unwrap_or_else(|| bounded.clone());
    let per = |burst| LimitPolicy {
        burst,
        period: Duration::from_secs(60),
        max_keys: 10_000,
    };
    let service = todo_auth::auth_services()
        .store(store.clone())
        .hasher(hasher)
        .signer(signer.clone())
        .verifier(verifier.clone())
        .limits(AuthLimits {
            register_per_client: Arc::new(KeyedLimiter::new(
                per(options.register_burst),
                clock.clone(),
            )),
            login_per_client: Arc::new(KeyedLimiter::new(per(1000), clock.clone())),
            refresh_per_client: Arc::new(KeyedLimiter::new(
                per(options.refresh_burst),
                clock.clone(),
            )),
            login_per_account: Arc::new(KeyedLimiter::new(per(1000), clock.clone())),
            confirmations_per_session: Arc::new(KeyedLimiter::new(
                per(options.confirm_burst),
                clock.clone(),
            )),
            mail_per_account: Arc::new(KeyedLimiter::new(per(1000), clock.clone())),
            mail_per_address: Arc::new(KeyedLimiter::new(per(1000), clock.clone())),
            login_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy {
                free_failures: if options.real_argon2 { u32::MAX } else { 5 },
                ..BackoffPolicy::default()
            })),
            code_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy::CODES)),
        })
        .policy(policy)
        // One key for every instance, as the deployments mount one.
        .second_factors(
            Arc::new(todo_auth::AesGcmSealer::new(&[0x5a; 32], Arc::new(OsRandom)).unwrap()),
            Arc::new(todo_auth::AwsHmacSha1),
            "todo",
        )
        .passkeys(Arc::new(
            todo_auth::WebauthnCeremonies::new("https://localhost", "todo").unwrap(),
        ))
        .build()
        .unwrap();
    let mut auth_probes: Vec<Arc<dyn Probe>> = vec![StoreProbe::shared((*store).clone())];
    if options.probe_hasher {
        auth_probes.push(bounded);
    }
    let auth = AuthApi::new(service.clone(), &keys.to_jwks().unwrap(), auth_probes).unwrap();
    let task_service = TaskService::new(store.clone(), clock.clone(), Arc::new(OsRandom))
        .with_sha256(Arc::new(todo_auth::Sha256Digest));
    // task-server's own gate, as when the servers run apart.
    let gate = Arc::new(
        AccessGate::new(verifier, store.clone(), clock.clone())
            .with_api_tokens(Arc::new(todo_auth::Sha256Digest)),
    );
    let accounts = todo_core::AccountReader::new(store.clone(), store.clone(), clock.clone());
    let projects = ProjectService::new(store.clone(), store.clone(), clock, Arc::new(OsRandom))
        .with_sha256(Arc::new(todo_auth::Sha256Digest));
    let tasks = TaskApi::new(
        task_service.clone(),
        gate,
        vec![StoreProbe::shared((*store).clone())],
    )
    .unwrap()
    .with_projects(projects)
    .with_accounts(accounts);
    Instance {
        service,
        auth,
        tasks,
        task_service,
    }
}

/// Both APIs on one fresh database; `None` only when PostgreSQL is skipped on purpose.
pub async fn spawn(deployment: impl Into<Deployment>, options: Options) -> Option<System> {
    let deployment = deployment.into();
    if deployment == Deployment::Gateway
        && let Some(running) = Running::from_env()
    {
        return Some(running.system(&options).await);
    }
    let backend = match deployment {
        Deployment::Direct(backend) => backend,
        Deployment::Gateway => TestBackend::Postgres,
    };
    let db = TestDatabase::new(backend)?;
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_owned()];
    TlsIdentity::self_signed_in(dir.path(), &names).unwrap();
    let identity = || {
        TlsIdentity::load(
            &dir.path().join("tls-cert.pem"),
            &dir.path().join("tls-key.pem"),
        )
        .unwrap()
    };

    let key = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    let keys = KeySet::new([key.public_key().clone()]);
    let key_pem = key.to_pem().to_string();
    let signer = Arc::new(JwtSigner::new(key));

    if deployment == Deployment::Gateway {
        return Some(behind_gateway(db, dir, &options, signer, &keys, key_pem).await);
    }

    let store = Arc::new(db.store.clone());
    let proxies = if options.trust_loopback_proxy {
        TrustedProxies::parse("127.0.0.1").unwrap()
    } else {
        TrustedProxies::default()
    };
    let Instance {
        service,
        auth: auth_api,
        tasks: task_api,
        ..
    } = instance(store, &options, &signer, &keys);
    if options.one_origin {
        // Both APIs and the page on one origin, cookie sessions on: `auth`
        // and `tasks` are two clients of the same server.
        let one = OneOrigin::new(auth_api.with_cookie_sessions(), task_api).unwrap();
        let (auth, cert) = start(one, identity(), options.limits.clone(), proxies.clone()).await;
        let client = auth.client.clone();
        let tasks = Server {
            addr: auth.addr,
            client,
            stop: None,
            done: None,
        };
        return Some(System {
            auth,
            tasks,
            service,
            signer,
            key_pem,
            db_store: db.store.clone(),
            db_url: db.config.url.clone(),
            _db: Some(db),
            _exclusive: None,
            cert,
            _dir: dir,
            instances: Vec::new(),
            gateway: None,
            running: false,
            _listeners: Vec::new(),
        });
    }
    let (auth, cert) = start(
        auth_api,
        identity(),
        options.limits.clone(),
        proxies.clone(),
    )
    .await;
    let (tasks, _) = start(
        task_api,
        identity(),
        options.limits.clone(),
        proxies.clone(),
    )
    .await;
    Some(System {
        auth,
        tasks,
        service,
        signer,
        key_pem,
        db_store: db.store.clone(),
        db_url: db.config.url.clone(),
        _db: Some(db),
        _exclusive: None,
        cert,
        _dir: dir,
        instances: Vec::new(),
        gateway: None,
        running: false,
        _listeners: Vec::new(),
    })
}

/// Serves `api` in plain HTTP on loopback, believing the gateway's
/// `X-Forwarded-For`.
async fn start_plain<A: todo_http::Api>(api: A, limits: HttpLimits) -> Server {
    let front = Arc::new(
        Frontend::new(
            Arc::new(api),
            limits,
            TrustedProxies::parse("127.0.0.1").unwrap(),
        )
        .with_metrics(todo_http::MetricsExposure::Shown),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(front, listener, None, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        client: Client::plain(addr),
        stop: Some(stop),
        done: Some(done),
    }
}

async fn behind_gateway(
    db: TestDatabase,
    dir: tempfile::TempDir,
    options: &Options,
    signer: Arc<JwtSigner>,
    keys: &KeySet,
    key_pem: String,
) -> System {
    let mut instances = Vec::new();
    let mut listeners = Vec::new();
    let mut service = None;
    let (mut auth_addrs, mut task_addrs) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        // Each instance has its own pool, limiters and caches, as separate
        // processes would; only the database is shared.
        let store = Arc::new(SqlStore::open(&db.config).unwrap());
        let parts = instance(store.clone(), options, &signer, keys);
        service.get_or_insert(parts.service);
        // As task-server wires it: woken by the other instance's changes
        // (LISTEN/NOTIFY), reading unwoken only every 15 s.
        let listener = todo_server::setup::wake_on_changes(&store, &parts.task_service)
            .unwrap()
            .expect("PostgreSQL announces changes");
        listeners.push(listener);
        let task_api = parts
            .tasks
            .with_live_poll(todo_server::setup::LIVE_POLL_WITH_LISTENER);
        // As deployed behind the gateway: with the page (`--web-page`).
        let auth = start_plain(AuthWithPage::new(parts.auth), options.limits.clone()).await;
        let tasks = start_plain(task_api, options.limits.clone()).await;
        auth_addrs.push(auth.addr);
        task_addrs.push(tasks.addr);
        instances.extend([auth, tasks]);
    }
    let gateway = Gateway::start(dir.path(), &auth_addrs, &task_addrs);
    let cert = TlsIdentity::load(
        &dir.path().join("tls-cert.pem"),
        &dir.path().join("tls-key.pem"),
    )
    .unwrap()
    .certs[0]
        .clone();
    let client = Client::https(gateway.addr, "localhost", std::slice::from_ref(&cert))
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    let through = || Server {
        addr: gateway.addr,
        client: client.clone(),
        stop: None,
        done: None,
    };
    System {
        auth: through(),
        tasks: through(),
        service: service.unwrap(),
        signer,
        key_pem,
        db_store: db.store.clone(),
        db_url: db.config.url.clone(),
        _db: Some(db),
        _exclusive: None,
        cert,
        _dir: dir,
        instances,
        gateway: Some(gateway),
        running: false,
        _listeners: listeners,
    }
}

impl System {
    /// Whether the clients talk to nginx rather than to the servers.
    pub fn behind_gateway(&self) -> bool {
        self.gateway.is_some() || self.running
    }

    /// Behind this test's own gateway: the two auth-server instances,
    /// each asked directly (a deployment running elsewhere shows only
    /// their metrics listeners).
    pub fn auth_instances(&self) -> Option<(&Client, &Client)> {
        self.gateway
            .as_ref()
            .map(|_| (&self.instances[0].client, &self.instances[2].client))
    }

    pub async fn post(
        &self,
        client: &Client,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Reply {
        client
            .json(Method::POST, path, token, Some(&body))
            .await
            .unwrap()
    }

    pub async fn register(&self, username: &str, password: &str) -> Value {
        let reply = self
            .post(
                &self.auth.client,
                "/v1/auth/register",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        reply.json().unwrap()
    }

    /// Logs in; returns (access token, refresh token).
    pub async fn login(&self, username: &str, password: &str) -> (String, String) {
        let reply = self
            .post(
                &self.auth.client,
                "/v1/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let body = reply.json().unwrap();
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A user registered and logged in: (id, access token, refresh token).
    pub async fn user(&self, username: &str) -> (String, String, String) {
        let user = self.register(username, "correct horse").await;
        let (access, refresh) = self.login(username, "correct horse").await;
        (user["id"].as_str().unwrap().to_owned(), access, refresh)
    }

    /// An administrator, made as `auth-server user create --admin` does.
    pub async fn admin(&self) -> (String, String) {
        let registration = Registration::parse("root", "admin password", None).unwrap();
        let admin = self
            .service
            .admin
            .create_user(registration, Role::Admin)
            .unwrap();
        let (access, _) = self.login("root", "admin password").await;
        (admin.id.to_string(), access)
    }
}

/// A TLS connector trusting the system's certificate.
pub fn tls_connector(sys: &System) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(sys.cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A raw TLS connection to `addr`, for requests the client will not send.
pub async fn tls(
    sys: &System,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls_connector(sys)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Runs each named test on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(todo_store::testing::TestBackend::Sqlite.into()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(todo_store::testing::TestBackend::Postgres.into()).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// Runs each named test on SQLite, on PostgreSQL, and behind nginx (two
/// instances of each server on PostgreSQL): the contract through the gateway.
macro_rules! on_every_deployment {
    ($($name:ident),* $(,)?) => {
        $crate::harness::on_both_backends!($($name),*);
        mod gateway {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Deployment::Gateway).await;
                }
            )*
        }
    };
}
pub(crate) use on_every_deployment;

/// How long a revocation may take to reach every instance (API.md: 1 s),
/// with a margin for a loaded test machine.
pub const REVOCATION_WINDOW: Duration = Duration::from_millis(1500);

/// Sends `request` until it answers `status` or [`REVOCATION_WINDOW`] has
/// passed; returns the last reply, for the caller to assert on.
pub async fn within_revocation_window<F, Fut>(status: u16, mut request: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = tokio::time::Instant::now() + REVOCATION_WINDOW;
    loop {
        let reply = request().await;
        if reply.status == status || tokio::time::Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway deployment running elsewhere, which `Deployment::Gateway` tests
/// use instead of starting their own when `TODO_TEST_DEPLOYMENT` names a
/// directory that describes it (scripts/container-test writes one for its
/// compose set): `address` (nginx's, such as `127.0.0.1:8443`, for the name
/// `localhost`), `ca.pem` (the certificate nginx presents, or its CA),
/// `database-url` (the deployment's PostgreSQL, reachable from here),
/// `signing-key.pem` (auth-server's) and `instances` (each instance's
/// metrics listener, one a line: auth, tasks, auth, tasks).
///
/// Its database must say it is disposable (`COMMENT ON DATABASE … IS
/// 'todo-test-disposable'`, as container-test does): every test empties its
/// tables, and a URL of a real deployment must not lose its users to a
/// test run. Tests share it one after another: each holds an advisory lock
/// on it for its lifetime (parallel runs wait their turn), and starts on
/// empty tables, the schema left as migrated.
///
/// The deployment is configured for the suite (deploy/compose.test.yaml):
/// argon2 cheap, the edge limits raised, client limits at least
/// [`Options::default`]'s (the register burst 1000 as here; the login and
/// refresh bursts 10000, not 1000; the hash queue 32). A test whose
/// options differ from the default in anything fails rather than pass
/// against a deployment it does not describe; none may rely on a default
/// limit being reached.
struct Running {
    address: SocketAddr,
    cert: rustls_pki_types::CertificateDer<'static>,
    database_url: String,
    key_pem: String,
    instances: Vec<SocketAddr>,
}

impl Running {
    fn from_env() -> Option<Self> {
        let dir = std::path::PathBuf::from(std::env::var_os("TODO_TEST_DEPLOYMENT")?);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| {
                panic!(
                    "TODO_TEST_DEPLOYMENT={}: cannot read {name}: {e}",
                    dir.display()
                )
            })
        };
        let cert_pem = read("ca.pem");
        use rustls_pki_types::pem::PemObject;
        let cert = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .expect("ca.pem holds no certificate")
            .unwrap()
            .into_owned();
        Some(Self {
            address: read("address").trim().parse().unwrap(),
            cert,
            database_url: read("database-url").trim().to_owned(),
            key_pem: read("signing-key.pem"),
            instances: read("instances")
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim().parse().unwrap())
                .collect(),
        })
    }

    async fn system(self, options: &Options) -> System {
        // Every field by name: a new one does not compile here until
        // someone decides whether the deployment has it.
        let Options {
            hasher,
            probe_hasher,
            register_burst,
            refresh_burst,
            confirm_burst,
            limits,
            one_origin,
            trust_loopback_proxy,
            real_argon2,
            refresh_reuse_grace,
        } = options;
        let defaults = Options::default();
        assert!(
            hasher.is_none()
                && *probe_hasher
                && *register_burst == defaults.register_burst
                && *refresh_burst == defaults.refresh_burst
                && *confirm_burst == defaults.confirm_burst
                && *limits == defaults.limits
                && !*one_origin
                && !*trust_loopback_proxy
                && !*real_argon2
                && *refresh_reuse_grace == defaults.refresh_reuse_grace,
            "this test needs options other than the running deployment's (TODO_TEST_DEPLOYMENT)"
        );
        assert_eq!(
            self.instances.len(),
            4,
            "TODO_TEST_DEPLOYMENT: instances names 4 metrics listeners"
        );
        let exclusive = take_the_deployment(&self.database_url);
        let url = todo_store::DatabaseUrl::parse(&self.database_url).unwrap();
        let store = SqlStore::open(&todo_store::StoreConfig::new(url.clone())).unwrap();
        // The operator's side (an administrator made as `auth-server user
        // create` makes one) over the deployment's database, signing with
        // its key.
        let key = SigningKey::from_pem(&self.key_pem).unwrap();
        let keys = KeySet::new([key.public_key().clone()]);
        let signer = Arc::new(JwtSigner::new(key));
        let parts = instance(Arc::new(store.clone()), options, &signer, &keys);
        let client = Client::https(self.address, "localhost", std::slice::from_ref(&self.cert))
            .unwrap()
            .with_timeout(Duration::from_secs(20));
        let through = || Server {
            addr: self.address,
            client: client.clone(),
            stop: None,
            done: None,
        };
        let instances = self
            .instances
            .iter()
            .map(|&addr| Server {
                addr,
                client: Client::plain(addr),
                stop: None,
                done: None,
            })
            .collect();
        System {
            auth: through(),
            tasks: through(),
            service: parts.service,
            signer,
            key_pem: self.key_pem,
            db_store: store,
            db_url: url,
            _db: None,
            _exclusive: Some(std::sync::Mutex::new(exclusive)),
            cert: self.cert,
            _dir: tempfile::tempdir().unwrap(),
            instances,
            gateway: None,
            running: true,
            _listeners: Vec::new(),
        }
    }
}

/// What marks a deployment's database as the tests' to empty.
const DISPOSABLE: &str = "todo-test-disposable";

/// The running deployment's database, for this test alone: refuses one
/// not marked disposable, waits for the advisory lock (held by the
/// returned connection until the System is dropped), then empties every
/// table but the migrations' record and the change log's head (identities
/// and the log's numbers go on counting: the servers remember the last
/// change they saw, and the log is numbered from its head's one row).
fn take_the_deployment(url: &str) -> diesel::PgConnection {
    use diesel::{Connection, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Comment {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        comment: Option<String>,
    }
    let mut db = diesel::PgConnection::establish(url).unwrap();
    let comment = diesel::sql_query(
        "SELECT shobj_description(oid, 'pg_database') AS comment \
         FROM pg_database WHERE datname = current_database()",
    )
    .get_result::<Comment>(&mut db)
    .unwrap()
    .comment;
    assert_eq!(
        comment.as_deref(),
        Some(DISPOSABLE),
        "TODO_TEST_DEPLOYMENT: its database is not marked disposable \
         (COMMENT ON DATABASE … IS '{DISPOSABLE}'); the tests empty every table"
    );
    // One test at a time, whatever the runner's threads (a constant key:
    // "todo" in ASCII), waiting two minutes at most (a test holding two
    // systems of it at once would wait for itself).
    diesel::sql_query("SET lock_timeout = '120s'")
        .execute(&mut db)
        .unwrap();
    diesel::sql_query("SELECT pg_advisory_lock(1953457263)")
        .execute(&mut db)
        .expect("TODO_TEST_DEPLOYMENT: another test held the deployment for two minutes");
    diesel::sql_query("RESET lock_timeout")
        .execute(&mut db)
        .unwrap();
    // The deployment's servers go on working meanwhile (refreshes, the
    // change listener's numbering, housekeeping), each transaction taking
    // its tables in its own order; TRUNCATE takes them all, in the order
    // the catalogue lists them, and PostgreSQL may find a deadlock and
    // pick the TRUNCATE (CI run a of session 25): it rolled back whole, so
    // try again.
    let empty = "DO $$ DECLARE t text; BEGIN \
           SELECT string_agg(format('%I', tablename), ', ') INTO t FROM pg_tables \
             WHERE schemaname = current_schema() \
             AND tablename NOT IN ('__diesel_schema_migrations', 'change_log_head'); \
           IF t IS NOT NULL THEN EXECUTE 'TRUNCATE ' || t || ' CASCADE'; END IF; \
         END $$";
    for attempt in 1.. {
        match diesel::sql_query(empty).execute(&mut db) {
            Ok(_) => break,
            Err(diesel::result::Error::DatabaseError(_, info))
                if attempt < 5 && info.message().contains("deadlock") =>
            {
                eprintln!("TODO_TEST_DEPLOYMENT: emptying it deadlocked, trying again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("TODO_TEST_DEPLOYMENT: emptying it failed: {e}"),
        }
    }
    db
}
