//! The load harness: drives the real auth-server and task-server binaries
//! over TLS with many users, and measures in the same run the two ceilings
//! they are judged against — a constant-answer hyper+rustls server with the
//! same TLS and HTTP settings (the most any endpoint can do here), and raw
//! argon2 throughput on all cores (the most logins can do). Reports
//! throughput and p50/p99/p99.9 latency per operation, errors and server
//! RSS; writes `report.json`, `report.md` and SVG charts.
//!
//! ```text
//! cargo build --release -p auth-server -p task-server -p todo-benches
//! ./target/release/load [--seconds 10] [--connections 32] [--out target/load]
//! ```
//! With `TODO_BENCH_POSTGRES_URL` set, the servers use that PostgreSQL
//! database (which must be empty); else SQLite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use todo_auth::{Argon2Config, Argon2Hasher};
use todo_core::{Password, PasswordHasher};
use todo_server::TlsIdentity;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
struct Args {
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections of the closed-loop phases.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Users the mixed workload spreads over.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Where the report and charts go.
    #[arg(long, default_value = "target/load")]
    out: PathBuf,
    /// Tasks stored before the phases, spread evenly over
    /// `--stored-owners` users (written straight to the database, not
    /// through the API); the load's users are the first of those owners.
    #[arg(long, default_value_t = 0)]
    stored_tasks: u64,
    /// Users the stored tasks belong to.
    #[arg(long, default_value_t = 1000)]
    stored_owners: usize,
    /// Spread the tasks over shared projects: each load user owns a
    /// project shared with the next two users (editors), so each is a
    /// member of their Inbox and three shared projects; the seeded tasks
    /// and the phases' creations take turns among the four (a write to a
    /// shared one is recorded in its three members' streams), and lists
    /// read across all four.
    #[arg(long)]
    shared_projects: bool,
}

/// Latencies (µs) and errors of one operation.
#[derive(Default, Clone)]
struct Samples {
    micros: Vec<u32>,
    errors: BTreeMap<u16, u64>,
}

impl Samples {
    fn record(&mut self, took: Duration, status: StatusCode, ok: bool) {
        if ok {
            self.micros
                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        } else {
            *self.errors.entry(status.as_u16()).or_default() += 1;
        }
    }

    fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    fn summary(&mut self, seconds: f64) -> Value {
        self.micros.sort_unstable();
        let pct = |p: f64| {
            if self.micros.is_empty() {
                0.0
            } else {
                let i = ((self.micros.len() as f64 * p).ceil() as usize)
                    .clamp(1, self.micros.len())
                    - 1;
                f64::from(self.micros[i]) / 1000.0
            }
        };
        json!({
            "ok": self.micros.len(),
            "per_second": self.micros.len() as f64 / seconds,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
            "errors": self.errors.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// A keep-alive HTTP/1.1 connection over TLS.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

async fn connect(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> Conn {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    Conn {
        sender,
        host: format!("localhost:{}", addr.port()),
    }
}

impl Conn {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Bytes, Duration) {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(body).unwrap()))
            }
            None => Full::new(Bytes::new()),
        };
        let started = Instant::now();
        self.sender.ready().await.unwrap();
        let response = self
            .sender
            .send_request(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, bytes, started.elapsed())
    }
}

/// The ceiling: a hyper+rustls server that answers a constant, with the
/// servers' TLS configuration and HTTP settings.
async fn constant_server(identity: TlsIdentity) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024);
    let builder = Arc::new(builder);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (acceptor, builder) = (acceptor.clone(), builder.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                        response
                            .headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    });
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    addr
}

/// Raw argon2 verifications per second on all cores.
fn argon2_ceiling(seconds: u64) -> f64 {
    let hasher = Arc::new(Argon2Hasher::new(Argon2Config::default()).unwrap());
    let password = Password::offered("correct horse battery").unwrap();
    let hash = hasher.hash(&password).unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stop = Instant::now() + Duration::from_secs(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (hasher, password, hash, done) =
                (hasher.clone(), password.clone(), hash.clone(), done.clone());
            std::thread::spawn(move || {
                while Instant::now() < stop {
                    assert!(hasher.verify(&password, &hash).unwrap().matches);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(binary: &Path, data: &Path, database: &str, args: &[&str]) -> Server {
    let addr = free_addr();
    let mut child = Command::new(binary)
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--database-url",
            database,
            "--listen",
            &addr.to_string(),
        ])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Server { child, addr };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{} did not start", binary.display());
}

/// Runs `work` on `connections` connections for `seconds`; merges samples per operation.
async fn closed_loop<F, Fut>(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    connections: usize,
    seconds: u64,
    work: F,
) -> BTreeMap<&'static str, Samples>
where
    F: Fn(usize, Conn, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = BTreeMap<&'static str, Samples>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..connections {
        let conn = connect(addr, roots).await;
        tasks.push(tokio::spawn(work(i, conn, stop.clone())));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all: BTreeMap<&'static str, Samples> = BTreeMap::new();
    for t in tasks {
        for (op, samples) in t.await.unwrap() {
            all.entry(op).or_default().merge(samples);
        }
    }
    all
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().with_file_name(name)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).unwrap();
    let secs = args.seconds;
    let conns = args.connections;
    let dir = tempfile_dir();
    let data = dir.join("data");
    let (identity, _) = TlsIdentity::self_signed_in(&data, &["localhost".to_owned()]).unwrap();
    let roots = vec![identity.certs[0].clone()];
    let database = std::env::var("TODO_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", data.join("todo.db").display()));
    let backend = if database.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut report = serde_json::Map::new();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    report.insert("machine".into(), json!({"cores": cores, "backend": backend, "seconds_per_phase": secs, "connections": conns}));

    // Ceiling 1: the constant answer.
    let constant = constant_server(
        TlsIdentity::load(&data.join("tls-cert.pem"), &data.join("tls-key.pem")).unwrap(),
    )
    .await;
    let mut c = closed_loop(
        constant,
        &roots,
        conns,
        secs,
        |_, mut conn, stop| async move {
            let mut s = Samples::default();
            while !stop.load(Ordering::Relaxed) {
                let (status, _, took) = conn.send(Method::GET, "/", None, None).await;
                s.record(took, status, status == StatusCode::OK);
            }
            BTreeMap::from([("constant", s)])
        },
    )
    .await;
    let ceiling = c.get_mut("constant").unwrap().summary(secs as f64);
    println!(
        "constant-answer ceiling: {:.0}/s",
        ceiling["per_second"].as_f64().unwrap()
    );
    report.insert("ceiling_constant".into(), ceiling.clone());

    // Ceiling 2: argon2 on all cores.
    let argon2 = argon2_ceiling(secs);
    println!("argon2 ceiling: {argon2:.1} verifications/s on {cores} cores");
    report.insert("ceiling_argon2_per_second".into(), json!(argon2));

    // The stored tasks, before the servers start.
    if args.stored_tasks > 0 {
        let started = Instant::now();
        seed(
            &database,
            args.stored_owners.max(args.users),
            args.stored_tasks,
        );
        println!(
            "stored {} tasks over {} users in {:.0} s",
            args.stored_tasks,
            args.stored_owners.max(args.users),
            started.elapsed().as_secs_f64()
        );
    }
    report.insert(
        "stored".into(),
        json!({"tasks": args.stored_tasks, "owners": if args.stored_tasks > 0 { args.stored_owners.max(args.users) } else { 0 }}),
    );

    // The real servers.
    let limits = [
        "--register-burst",
        "1000000",
        "--login-burst",
        "1000000",
        "--account-login-burst",
        "1000000",
        "--access-ttl-secs",
        "3600",
        // Every load connection comes from 127.0.0.1.
        "--max-connections-per-client",
        "1024",
        "--max-requests-per-client",
        "1024",
    ];
    let auth = start(&sibling("auth-server"), &data, &database, &limits);
    let jwks = format!(
        "https://localhost:{}/.well-known/jwks.json",
        auth.addr.port()
    );
    let ca = data.join("tls-cert.pem");
    let tasks = start(
        &sibling("task-server"),
        &data,
        &database,
        // The per-user quota stays on (it is on the write path: measured);
        // the per-user write rate would refuse the load's writes, and every
        // load connection comes from one address.
        &[
            "--jwks-url",
            &jwks,
            "--jwks-ca-file",
            ca.to_str().unwrap(),
            "--max-connections-per-client",
            "2048",
            "--max-requests-per-client",
            "2048",
            "--task-write-burst",
            "1000000",
            // The many-streams phase holds 1,000 streams from one address.
            "--max-connections",
            "2048",
            "--max-live-streams",
            "1100",
            "--max-live-streams-per-client",
            "1100",
        ],
    );

    // Users, and a token each.
    let mut setup = connect(auth.addr, &roots).await;
    let mut tokens = Vec::new();
    for u in 0..args.users {
        tokens.push(signed_up(&mut setup, &format!("load{u}")).await);
    }
    let tokens = Arc::new(tokens);
    // The login phase and the login flood sign in as users of their own: a
    // user's sessions are capped (100), and logins past the cap end the
    // oldest, which would be the one whose token the other phases use.
    let login_users = args.users.min(conns).max(1);
    for u in 0..login_users {
        signed_up(&mut setup, &format!("login{u}")).await;
    }
    signed_up(&mut setup, FLOOD_USER).await;

    // Logins, closed loop.
    let mut logins = closed_loop(auth.addr, &roots, conns, secs, move |i, mut conn, stop| async move {
        let mut s = Samples::default();
        let body = json!({"username": format!("login{}", i % login_users), "password": "correct horse battery"});
        while !stop.load(Ordering::Relaxed) {
            let (status, _, took) = conn.send(Method::POST, "/v1/auth/login", None, Some(&body)).await;
            s.record(took, status, status == StatusCode::OK);
        }
        BTreeMap::from([("login", s)])
    })
    .await;
    let login = logins.get_mut("login").unwrap().summary(secs as f64);
    println!(
        "logins: {:.1}/s ({:.0}% of the argon2 ceiling)",
        login["per_second"].as_f64().unwrap(),
        100.0 * login["per_second"].as_f64().unwrap() / argon2
    );
    report.insert("login".into(), login);

    // The projects each user's tasks take turns among: their Inbox alone,
    // or (--shared-projects) with the three shared ones they belong to.
    let mut seeder = connect(tasks.addr, &roots).await;
    let projects = Arc::new(if args.shared_projects {
        shared_projects(&mut seeder, &tokens).await
    } else {
        vec![vec![None]; tokens.len()]
    });

    // Seed 20+ tasks per user so reads have something to read.
    let mut ids: Vec<Vec<String>> = Vec::new();
    for (u, token) in tokens.iter().enumerate() {
        let mut mine = Vec::new();
        for n in 0..25 {
            let mut body =
                json!({"title": format!("Seed task {n}"), "labels": ["home"], "priority": n % 4});
            in_project(&mut body, &projects[u], n);
            let (status, bytes, _) = seeder
                .send(Method::POST, "/v1/tasks", Some(token), Some(&body))
                .await;
            assert_eq!(status, StatusCode::CREATED);
            mine.push(
                serde_json::from_slice::<Value>(&bytes).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids.push(mine);
    }
    let ids = Arc::new(ids);

    // Single-operation phases: the ratios to the constant ceiling.
    let mut single = serde_json::Map::new();
    for op in ["get", "list20", "create"] {
        let (tokens, ids, projects) = (tokens.clone(), ids.clone(), projects.clone());
        let mut r = closed_loop(tasks.addr, &roots, conns, secs, move |i, mut conn, stop| {
            let (tokens, ids, projects) = (tokens.clone(), ids.clone(), projects.clone());
            async move {
                let mut s = Samples::default();
                let u = i % tokens.len();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_add(7);
                    let (status, _, took, ok) = match op {
                        "get" => {
                            let path = format!("/v1/tasks/{}", ids[u][n % ids[u].len()]);
                            let (st, b, t) =
                                conn.send(Method::GET, &path, Some(&tokens[u]), None).await;
                            (st, b, t, st == StatusCode::OK)
                        }
                        "list20" => {
                            let (st, b, t) = conn
                                .send(Method::GET, "/v1/tasks?limit=20", Some(&tokens[u]), None)
                                .await;
                            (st, b, t, st == StatusCode::OK)
                        }
                        _ => {
                            let mut body = json!({"title": "Load task", "labels": ["work"]});
                            in_project(&mut body, &projects[u], n);
                            let (st, b, t) = conn
                                .send(Method::POST, "/v1/tasks", Some(&tokens[u]), Some(&body))
                                .await;
                            (st, b, t, st == StatusCode::CREATED)
                        }
                    };
                    s.record(took, status, ok);
                }
                BTreeMap::from([(op, s)])
            }
        })
        .await;
        let summary = r.get_mut(op).unwrap().summary(secs as f64);
        let ratio =
            summary["per_second"].as_f64().unwrap() / ceiling["per_second"].as_f64().unwrap();
        println!(
            "{op}: {:.0}/s ({:.0}% of the constant ceiling), p99 {:.2} ms",
            summary["per_second"].as_f64().unwrap(),
            ratio * 100.0,
            summary["p99_ms"].as_f64().unwrap()
        );
        let mut summary = summary;
        summary["ratio_to_constant"] = json!(ratio);
        single.insert(op.into(), summary);
    }
    report.insert("single".into(), Value::Object(single));

    // Lists with each filter, over whatever the users hold.
    let mut filters = serde_json::Map::new();
    for (name, query) in LIST_FILTERS {
        let t = tokens.clone();
        let mut r = closed_loop(
            tasks.addr,
            &roots,
            conns,
            secs.div_ceil(2),
            move |i, mut conn, stop| {
                let tokens = t.clone();
                async move {
                    let mut s = Samples::default();
                    let path = format!("/v1/tasks?{query}");
                    while !stop.load(Ordering::Relaxed) {
                        let token = &tokens[i % tokens.len()];
                        let (st, _, took) = conn.send(Method::GET, &path, Some(token), None).await;
                        s.record(took, st, st == StatusCode::OK);
                    }
                    BTreeMap::from([(name, s)])
                }
            },
        )
        .await;
        let summary = r.get_mut(name).unwrap().summary(secs.div_ceil(2) as f64);
        println!(
            "list {name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            summary["per_second"].as_f64().unwrap(),
            summary["p50_ms"].as_f64().unwrap(),
            summary["p99_ms"].as_f64().unwrap()
        );
        filters.insert(name.into(), summary);
    }
    report.insert("list_filters".into(), Value::Object(filters));

    // The mixed workload: list 30%, get 40%, create 15%, patch 10%, delete 5%.
    let (t2, i2, p2) = (tokens.clone(), ids.clone(), projects.clone());
    let mut mixed = closed_loop(tasks.addr, &roots, conns, secs, move |i, mut conn, stop| {
        let (tokens, ids, projects) = (t2.clone(), i2.clone(), p2.clone());
        async move {
            let mut out: BTreeMap<&'static str, Samples> = BTreeMap::new();
            let u = i % tokens.len();
            let token = tokens[u].as_str();
            let mut mine: Vec<(String, i64)> = Vec::new();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let roll = (n >> 8) % 100;
                let (op, status, took, ok) = if roll < 30 {
                    let (st, _, t) = conn
                        .send(
                            Method::GET,
                            "/v1/tasks?limit=20&sort=-priority",
                            Some(token),
                            None,
                        )
                        .await;
                    ("list", st, t, st == StatusCode::OK)
                } else if roll < 70 {
                    let path = format!("/v1/tasks/{}", ids[u][n % ids[u].len()]);
                    let (st, _, t) = conn.send(Method::GET, &path, Some(token), None).await;
                    ("get", st, t, st == StatusCode::OK)
                } else if roll < 85 || mine.is_empty() {
                    let mut body =
                        json!({"title": "Mixed task", "labels": ["mixed"], "priority": 1});
                    in_project(&mut body, &projects[u], n);
                    let (st, b, t) = conn
                        .send(Method::POST, "/v1/tasks", Some(token), Some(&body))
                        .await;
                    if st == StatusCode::CREATED {
                        let v: Value = serde_json::from_slice(&b).unwrap();
                        mine.push((
                            v["id"].as_str().unwrap().to_owned(),
                            v["version"].as_i64().unwrap(),
                        ));
                    }
                    ("create", st, t, st == StatusCode::CREATED)
                } else if roll < 95 {
                    let (id, version) = mine.last().cloned().unwrap();
                    let path = format!("/v1/tasks/{id}");
                    let (st, b, t) = conn
                        .send(
                            Method::PATCH,
                            &path,
                            Some(token),
                            Some(&json!({"done": version % 2 == 1})),
                        )
                        .await;
                    if st == StatusCode::OK {
                        let v: Value = serde_json::from_slice(&b).unwrap();
                        if let Some(last) = mine.last_mut() {
                            last.1 = v["version"].as_i64().unwrap();
                        }
                    }
                    ("patch", st, t, st == StatusCode::OK)
                } else {
                    let (id, _) = mine.pop().unwrap();
                    let (st, _, t) = conn
                        .send(
                            Method::DELETE,
                            &format!("/v1/tasks/{id}"),
                            Some(token),
                            None,
                        )
                        .await;
                    ("delete", st, t, st == StatusCode::NO_CONTENT)
                };
                out.entry(op).or_default().record(took, status, ok);
            }
            out
        }
    })
    .await;
    let mut mixed_report = serde_json::Map::new();
    for (op, samples) in mixed.iter_mut() {
        let s = samples.summary(secs as f64);
        println!(
            "mixed {op}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {}",
            s["per_second"].as_f64().unwrap(),
            s["p50_ms"].as_f64().unwrap(),
            s["p99_ms"].as_f64().unwrap(),
            s["p999_ms"].as_f64().unwrap(),
            s["errors"]
        );
        mixed_report.insert((*op).into(), s);
    }
    report.insert("mixed".into(), Value::Object(mixed_report));

    // Live: one event stream per user while their tasks are created; how
    // long after the creation's answer its event arrives.
    let live = live_phase(tasks.addr, &roots, &tokens, 1, secs).await;
    print_live("live", &live);
    report.insert("live".into(), live);
    // Many streams: LIVE_USERS users with 8 streams each (the per-user
    // cap), 1,000 in all, while their tasks are created.
    let mut live_tokens = Vec::new();
    let mut setup = connect(auth.addr, &roots).await;
    for u in 0..LIVE_USERS {
        live_tokens.push(signed_up(&mut setup, &format!("live{u}")).await);
    }
    let many = live_phase(tasks.addr, &roots, &live_tokens, 8, secs).await;
    print_live("live_1000", &many);
    report.insert("live_1000".into(), many);
    let (auth_rss, auth_peak) = auth.rss_kib();
    let (task_rss, task_peak) = tasks.rss_kib();
    println!(
        "RSS: auth-server {} MiB (peak {}), task-server {} MiB (peak {})",
        auth_rss / 1024,
        auth_peak / 1024,
        task_rss / 1024,
        task_peak / 1024
    );
    report.insert("rss_kib".into(), json!({"auth_server": auth_rss, "auth_server_peak": auth_peak, "task_server": task_rss, "task_server_peak": task_peak}));

    // Reads while logins arrive at twice the login ceiling (as FLOOD_USER).
    let flood_rate = 2.0 * argon2;
    let flood_stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, roots, addr) = (flood_stop.clone(), roots.clone(), auth.addr);
        tokio::spawn(async move {
            let mut shed = 0u64;
            let mut ok = 0u64;
            // Any other answer (a 401 would mean the flood's user is gone).
            let mut other = BTreeMap::<u16, u64>::new();
            let interval = Duration::from_secs_f64(1.0 / flood_rate);
            let mut ticker = tokio::time::interval(interval);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let (roots, tx) = (roots.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut conn = connect(addr, &roots).await;
                    let body = json!({"username": FLOOD_USER, "password": "correct horse battery"});
                    let (status, _, _) = conn
                        .send(Method::POST, "/v1/auth/login", None, Some(&body))
                        .await;
                    let _ = tx.send(status.as_u16());
                });
            }
            drop(tx);
            tokio::time::sleep(Duration::from_secs(3)).await;
            while let Ok(status) = rx.try_recv() {
                match status {
                    200 => ok += 1,
                    503 => shed += 1,
                    _ => *other.entry(status).or_default() += 1,
                }
            }
            (ok, shed, other)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t3, i3) = (tokens.clone(), ids.clone());
    let mut reads = closed_loop(tasks.addr, &roots, 4, secs, move |i, mut conn, stop| {
        let (tokens, ids) = (t3.clone(), i3.clone());
        async move {
            let mut s = Samples::default();
            let u = i % tokens.len();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(3);
                let path = format!("/v1/tasks/{}", ids[u][n % ids[u].len()]);
                let (status, _, took) = conn.send(Method::GET, &path, Some(&tokens[u]), None).await;
                s.record(took, status, status == StatusCode::OK);
            }
            BTreeMap::from([("read_under_login_flood", s)])
        }
    })
    .await;
    flood_stop.store(true, Ordering::Relaxed);
    let (flood_ok, flood_shed, flood_other) = flood.await.unwrap();
    let read = reads
        .get_mut("read_under_login_flood")
        .unwrap()
        .summary(secs as f64);
    println!(
        "reads during a login flood at {flood_rate:.0}/s: p99 {:.2} ms; logins ok {flood_ok}, shed with 503 {flood_shed}",
        read["p99_ms"].as_f64().unwrap()
    );
    let flood_other: serde_json::Map<_, _> = flood_other
        .into_iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    report.insert("read_under_login_flood".into(), json!({"reads": read, "login_rate": flood_rate, "logins_ok": flood_ok, "logins_shed": flood_shed, "logins_other": flood_other}));

    // A run with errors is not a clean measurement: say so where it is read.
    let mut errors = BTreeMap::new();
    for (name, phase) in &report {
        count_errors(name, phase, &mut errors);
    }
    let errors_total: u64 = errors.values().sum();
    if errors_total > 0 {
        println!("WARNING: {errors_total} answers were errors, not measurements: {errors:?}");
    }
    report.insert("errors_total".into(), json!(errors_total));

    let report = Value::Object(report);
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    charts(&report, &args.out);
    println!("report: {}", args.out.join("report.json").display());
}

/// Opens `GET /v1/events` `per_user` times for each token (a connection
/// each), creates tasks for `seconds` on four connections (one user each
/// in turn), and measures when each creation's event arrives on each of
/// its owner's streams, after the 201.
async fn live_phase(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    tokens: &[String],
    per_user: usize,
    seconds: u64,
) -> Value {
    use std::collections::HashMap;
    use std::sync::Mutex;
    // (stream, task id) -> when its event arrived on that stream.
    let arrived: Arc<Mutex<HashMap<(usize, String), Instant>>> = Arc::default();
    let mut readers = Vec::new();
    let opening = Instant::now();
    for (stream, token) in tokens
        .iter()
        .flat_map(|token| std::iter::repeat_n(token, per_user))
        .enumerate()
    {
        let mut conn = connect(addr, roots).await;
        let request = Request::get("/v1/events")
            .header("host", &conn.host)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        conn.sender.ready().await.unwrap();
        let response = conn.sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET /v1/events");
        let mut body = response.into_body();
        let arrived = Arc::clone(&arrived);
        readers.push(tokio::spawn(async move {
            let _conn = conn;
            let mut pending = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let now = Instant::now();
                pending.extend_from_slice(&data);
                while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = pending.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&block);
                    let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let event: Value = serde_json::from_str(data).unwrap();
                    if event["type"] == "task.created" {
                        let id = event["id"].as_str().unwrap().to_owned();
                        arrived.lock().unwrap().insert((stream, id), now);
                    }
                }
            }
        }));
    }
    let opened_ms = opening.elapsed().as_secs_f64() * 1000.0;
    let answered: Arc<Mutex<Vec<(usize, String, Instant)>>> = Arc::default();
    let (t, a) = (tokens.to_vec(), Arc::clone(&answered));
    closed_loop(addr, roots, 4, seconds, move |i, mut conn, stop| {
        let (tokens, answered) = (t.clone(), Arc::clone(&a));
        async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                n += 4;
                let user = n % tokens.len();
                let body = json!({"title": "Live task"});
                let (status, bytes, _) = conn
                    .send(Method::POST, "/v1/tasks", Some(&tokens[user]), Some(&body))
                    .await;
                if status == StatusCode::CREATED {
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    let id = v["id"].as_str().unwrap().to_owned();
                    answered.lock().unwrap().push((user, id, Instant::now()));
                }
            }
            BTreeMap::new()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in &readers {
        reader.abort();
    }
    let answered = answered.lock().unwrap();
    let arrived = arrived.lock().unwrap();
    // Each creation is expected on every stream of its owner.
    let expected = answered.len() * per_user;
    let mut delays: Vec<f64> = answered
        .iter()
        .flat_map(|(user, id, at)| {
            (user * per_user..(user + 1) * per_user).filter_map(|stream| {
                let came = arrived.get(&(stream, id.clone()))?;
                Some(came.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Value {
        if delays.is_empty() {
            return Value::Null;
        }
        let i = ((delays.len() as f64 * p).ceil() as usize).clamp(1, delays.len()) - 1;
        json!(delays[i])
    };
    json!({
        "streams": tokens.len() * per_user,
        "opened_ms": opened_ms,
        "creations": answered.len(),
        "events": delays.len(),
        "missing": expected - delays.len(),
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
    })
}

/// Registers `username` (if new) and logs in: an access token.
async fn signed_up(setup: &mut Conn, username: &str) -> String {
    let body = json!({"username": username, "password": "correct horse battery"});
    let (status, _, _) = setup
        .send(Method::POST, "/v1/auth/register", None, Some(&body))
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::CONFLICT,
        "register: {status}"
    );
    let (status, bytes, _) = setup
        .send(Method::POST, "/v1/auth/login", None, Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK);
    let pair: Value = serde_json::from_slice(&bytes).unwrap();
    pair["access_token"].as_str().unwrap().to_owned()
}

/// Adds up, by where they are in `value` (at `at` in the report), the
/// counts of every `errors` and `logins_other` map (the phases' answers
/// that were not what they measure).
fn count_errors(at: &str, value: &Value, errors: &mut BTreeMap<String, u64>) {
    let Value::Object(fields) = value else {
        return;
    };
    for (name, field) in fields {
        let here = format!("{at}.{name}");
        match (name.as_str(), field) {
            ("errors" | "logins_other", Value::Object(counts)) => {
                let n: u64 = counts.values().filter_map(Value::as_u64).sum();
                if n > 0 {
                    errors.insert(here, n);
                }
            }
            _ => count_errors(&here, field, errors),
        }
    }
}

/// The user the login flood signs in as (no other phase's).
const FLOOD_USER: &str = "flood";

/// Users of the many-streams phase: 8 streams each, 1,000 in all.
const LIVE_USERS: usize = 125;

fn print_live(name: &str, live: &Value) {
    println!(
        "{name}: {} streams (opened in {:.0} ms), {} events of {} creations ({} missing), after the 201: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        live["streams"],
        live["opened_ms"].as_f64().unwrap_or(f64::NAN),
        live["events"],
        live["creations"],
        live["missing"],
        live["p50_ms"].as_f64().unwrap_or(f64::NAN),
        live["p99_ms"].as_f64().unwrap_or(f64::NAN),
        live["max_ms"].as_f64().unwrap_or(f64::NAN)
    );
}

/// The list queries measured at every size: each filter, dense and
/// sparse (a filter the sort's index does not hold is checked row by row,
/// so a sparse one reads many tasks per page), an order by another key,
/// and the text search (which reads every task of the user).
const LIST_FILTERS: [(&str, &str); 9] = [
    ("plain", "limit=20"),
    ("not_done", "limit=20&done=false"),
    ("label", "limit=20&label=work"),
    ("due_before", "limit=20&due_before=2027-01-01T00:00:00Z"),
    ("label_rare", "limit=20&label=rare"),
    ("due_early", "limit=20&due_before=2026-09-23T00:00:00Z"),
    ("by_priority", "limit=20&sort=-priority"),
    ("by_due", "limit=20&sort=due"),
    ("q", "limit=20&q=report"),
];

/// Each user makes a project and shares it with the next two as editors;
/// returns each user's projects to take turns among: their Inbox (`None`),
/// their own shared project and the two shared with them.
async fn shared_projects(conn: &mut Conn, tokens: &[String]) -> Vec<Vec<Option<String>>> {
    let n = tokens.len();
    assert!(n >= 3, "--shared-projects needs three users or more");
    let mut owned = Vec::with_capacity(n);
    for (u, token) in tokens.iter().enumerate() {
        let body = json!({"name": format!("Shared {u}")});
        let (status, bytes, _) = conn
            .send(Method::POST, "/v1/projects", Some(token), Some(&body))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = serde_json::from_slice::<Value>(&bytes).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for step in 1..=2 {
            let path = format!("/v1/projects/{id}/members/load{}", (u + step) % n);
            let (status, _, _) = conn
                .send(
                    Method::PUT,
                    &path,
                    Some(token),
                    Some(&json!({"role": "editor"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        owned.push(id);
    }
    (0..n)
        .map(|u| {
            vec![
                None,
                Some(owned[u].clone()),
                Some(owned[(u + n - 1) % n].clone()),
                Some(owned[(u + n - 2) % n].clone()),
            ]
        })
        .collect()
}

/// Puts the `n`th write of a user into one of their projects, in turn.
fn in_project(body: &mut Value, projects: &[Option<String>], n: usize) {
    if let Some(project) = &projects[n % projects.len()] {
        body["project_id"] = json!(project);
    }
}

/// Stores `tasks` tasks over `owners` users named `load0`, `load1`, … (the
/// load's users log in as them), straight into the database, from four
/// threads per core. Commits are not synced while seeding. One task in a
/// thousand carries the label `rare`; one in ninety is due within two days.
fn seed(database: &str, owners: usize, tasks: u64) {
    use todo_core::{
        Description, Labels, PasswordHash, Priority, Role, Task, TaskId, TaskStore, TaskVersion,
        Timestamp, Title, User, UserId, UserRecord, UserStore, Username,
    };
    let mut config =
        todo_store::StoreConfig::new(todo_store::DatabaseUrl::parse(database).unwrap());
    config.sqlite_sync = todo_store::SqliteSync::Normal;
    let store = Arc::new(todo_store::SqlStore::open_and_migrate(&config).unwrap());
    let hasher = Argon2Hasher::new(Argon2Config::default()).unwrap();
    let hash: PasswordHash = hasher
        .hash(&Password::offered("correct horse battery").unwrap())
        .unwrap();
    let start = Timestamp::from_unix_micros(1_790_000_000_000_000).unwrap();
    let owner_ids: Vec<UserId> = (0..owners)
        .map(|u| {
            let id = UserId::from_uuid(uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0000 | u as u128,
            ));
            let record = UserRecord {
                user: User {
                    id,
                    username: Username::parse(&format!("load{u}")).unwrap(),
                    email: None,
                    email_verified: false,
                    role: Role::User,
                    disabled: false,
                    created_at: start,
                    updated_at: start,
                },
                password_hash: hash.clone(),
                tokens_revoked_before: None,
            };
            store.insert_user(&record).unwrap();
            id
        })
        .collect();
    let owner_ids = Arc::new(owner_ids);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
    let words = [
        "report",
        "invoice",
        "garden",
        "call",
        "groceries",
        "review",
        "plan",
        "fix",
    ];
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (store, owner_ids) = (Arc::clone(&store), Arc::clone(&owner_ids));
            std::thread::spawn(move || {
                let mut n = t;
                while n < tasks {
                    let owner = owner_ids[(n % owner_ids.len() as u64) as usize];
                    let at = Timestamp::from_unix_micros(start.unix_micros() + n as i64 * 1_000)
                        .unwrap();
                    let word = words[(n / 7 % words.len() as u64) as usize];
                    let labels: &[&str] = match n % 3 {
                        _ if n % 1000 == 0 => &["work", "rare"],
                        0 => &["work"],
                        1 => &["home", "errand"],
                        _ => &[],
                    };
                    let task = Task {
                        id: TaskId::from_uuid(uuid::Uuid::from_u128(
                            0x0191_0000_0000_7000_8000_0000_0000_0000 | u128::from(n),
                        )),
                        project: todo_core::ProjectId::inbox_of(owner),
                        created_by: owner,
                        parent: None,
                        recurrence: None,
                        time_zone: todo_core::TimeZoneName::utc(),
                        series: None,
                        reminders: todo_core::Reminders::default(),
                        title: Title::parse(&format!("{word} task {n}")).unwrap(),
                        description: Description::parse("stored by the load harness").unwrap(),
                        done: n % 3 == 0,
                        completed_at: (n % 3 == 0).then_some(at),
                        due_at: (n % 2 == 0).then(|| {
                            Timestamp::from_unix_micros(
                                at.unix_micros() + (n % 90) as i64 * 86_400_000_000,
                            )
                            .unwrap()
                        }),
                        priority: Priority::new((n % 4) as i64).unwrap(),
                        labels: Labels::parse(labels.iter().copied()).unwrap(),
                        archived: n % 10 == 9,
                        created_at: at,
                        updated_at: at,
                        version: TaskVersion::new(1).unwrap(),
                    };
                    let inserted = store.insert_task_within(&task, None, &mut |_| true);
                    assert_eq!(inserted.unwrap(), todo_core::TaskInsert::Inserted);
                    n += threads as u64;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("todo-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Throughput and latency charts, as SVG.
fn charts(report: &Value, out: &Path) {
    use plotters::prelude::*;
    let mut bars: Vec<(String, f64, f64)> = vec![(
        "constant".into(),
        report["ceiling_constant"]["per_second"]
            .as_f64()
            .unwrap_or(0.0),
        report["ceiling_constant"]["p99_ms"].as_f64().unwrap_or(0.0),
    )];
    for op in ["get", "list20", "create"] {
        let s = &report["single"][op];
        bars.push((
            op.to_owned(),
            s["per_second"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
        ));
    }
    if let Some(mixed) = report["mixed"].as_object() {
        for (op, s) in mixed {
            bars.push((
                format!("mixed {op}"),
                s["per_second"].as_f64().unwrap_or(0.0),
                s["p99_ms"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    for (file, title, pick) in [
        ("throughput.svg", "requests per second", 1usize),
        ("latency-p99.svg", "p99 latency (ms)", 2),
    ] {
        let path = out.join(file);
        let root = SVGBackend::new(&path, (900, 420)).into_drawing_area();
        root.fill(&WHITE).unwrap();
        let max = bars
            .iter()
            .map(|b| if pick == 1 { b.1 } else { b.2 })
            .fold(0.0_f64, f64::max)
            * 1.15
            + 0.001;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..max)
            .unwrap();
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .unwrap();
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let v = if pick == 1 { b.1 } else { b.2 };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    RGBColor(79, 70, 229).filled(),
                );
                bar.set_margin(0, 0, 8, 8);
                bar
            }))
            .unwrap();
        root.present().unwrap();
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| operation | per second | p50 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|"
    );
    let row = |md: &mut String, name: &str, s: &Value| {
        let _ = writeln!(
            md,
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
            s["per_second"].as_f64().unwrap_or(0.0),
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["p999_ms"].as_f64().unwrap_or(0.0)
        );
    };
    row(
        &mut md,
        "constant answer (ceiling)",
        &report["ceiling_constant"],
    );
    row(&mut md, "login", &report["login"]);
    for op in ["get", "list20", "create"] {
        row(&mut md, op, &report["single"][op]);
    }
    if let Some(mixed) = report["mixed"].as_object() {
        for (op, s) in mixed {
            row(&mut md, &format!("mixed: {op}"), s);
        }
    }
    row(
        &mut md,
        "get, during a login flood",
        &report["read_under_login_flood"]["reads"],
    );
    std::fs::write(out.join("report.md"), md).unwrap();
}
