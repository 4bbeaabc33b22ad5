//! Starts auth and task APIs on real TLS sockets with a fresh database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, BoundedHasher, FailedLoginBackoff, JwtSigner,
    JwtVerifier, KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, PoolLimits,
    Sha256RefreshTokenHasher, SigningKey, SystemClock,
};
use todo_core::{
    AuthDeps, AuthLimits, AuthService, NoAudit, PasswordHasher, Registration, Role, TaskService,
    TokenPolicy,
};
use todo_http::client::{Client, Reply};
use todo_http::{
    AuthApi, Frontend, HttpLimits, OneOrigin, Probe, TaskApi, TlsIdentity, TrustedProxies, serve,
};
use todo_store::testing::{TestBackend, TestDatabase};
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
    pub limits: HttpLimits,
    /// Serve both APIs and the page on one origin (the `todo` binary's mode).
    pub one_origin: bool,
    /// Believe `X-Forwarded-For` from loopback (to play several clients).
    pub trust_loopback_proxy: bool,
    /// argon2 at its production parameters instead of cheap ones, and no
    /// failed-login delay (for timing the failure path itself).
    pub real_argon2: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            hasher: None,
            probe_hasher: true,
            register_burst: 1000,
            limits: HttpLimits::default(),
            one_origin: false,
            trust_loopback_proxy: false,
            real_argon2: false,
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
    pub service: AuthService,
    /// The auth service's signer and its key, for tests that forge tokens.
    pub signer: Arc<JwtSigner>,
    pub key_pem: String,
    /// Kept alive for the servers; dropped (and removed) with the system.
    _db: TestDatabase,
    pub cert: rustls_pki_types::CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

async fn start<A: todo_http::Api>(
    api: A,
    identity: TlsIdentity,
    limits: HttpLimits,
    proxies: TrustedProxies,
) -> (Server, rustls_pki_types::CertificateDer<'static>) {
    let cert = identity.certs[0].clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    let front = Arc::new(Frontend::new(Arc::new(api), limits, proxies));
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

/// Both APIs on one fresh database; `None` only when PostgreSQL is skipped on purpose.
pub async fn spawn(backend: TestBackend, options: Options) -> Option<System> {
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

    let store = Arc::new(db.store.clone());
    let proxies = if options.trust_loopback_proxy {
        TrustedProxies::parse("127.0.0.1").unwrap()
    } else {
        TrustedProxies::default()
    };
    let clock = Arc::new(SystemClock);
    let key = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    let keys = KeySet::new([key.public_key().clone()]);
    let key_pem = key.to_pem().to_string();
    let signer = Arc::new(JwtSigner::new(key));
    let policy = TokenPolicy::default();
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
    let service = AuthService::new(AuthDeps {
        users: store.clone(),
        refresh_tokens: store.clone(),
        hasher,
        signer: signer.clone(),
        verifier: verifier.clone(),
        refresh_hasher: Arc::new(Sha256RefreshTokenHasher),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        limits: AuthLimits {
            register_per_client: Arc::new(KeyedLimiter::new(
                per(options.register_burst),
                clock.clone(),
            )),
            login_per_client: Arc::new(KeyedLimiter::new(per(1000), clock.clone())),
            login_per_account: Arc::new(KeyedLimiter::new(per(1000), clock.clone())),
            login_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy {
                free_failures: if options.real_argon2 { u32::MAX } else { 5 },
                ..BackoffPolicy::default()
            })),
        },
        audit: Arc::new(NoAudit),
        policy,
    });
    let mut auth_probes: Vec<Arc<dyn Probe>> = vec![store.clone()];
    if options.probe_hasher {
        auth_probes.push(bounded);
    }
    let auth_api = AuthApi::new(service.clone(), &keys.to_jwks().unwrap(), auth_probes).unwrap();
    let task_service = TaskService::new(store.clone(), clock.clone(), Arc::new(OsRandom));
    let task_api = TaskApi::new(
        task_service,
        verifier,
        clock,
        vec![store.clone() as Arc<dyn Probe>],
    )
    .unwrap();
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
            _db: db,
            cert,
            _dir: dir,
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
        _db: db,
        cert,
        _dir: dir,
    })
}

impl System {
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
        let admin = self.service.create_user(registration, Role::Admin).unwrap();
        let (access, _) = self.login("root", "admin password").await;
        (admin.id.to_string(), access)
    }
}

/// Runs each named test on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(todo_store::testing::TestBackend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(todo_store::testing::TestBackend::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
