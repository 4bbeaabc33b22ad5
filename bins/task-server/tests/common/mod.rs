//! Running the real binaries from tests: start, stop, kill, one-shot
//! commands, and a token for a user.
//!
//! auth-server is found beside task-server in the target directory: run
//! these through `./scripts/test` (or `cargo test --workspace`), which
//! builds both.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use todo_testkit::Client;

pub fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_task-server")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (./scripts/test does)",
        path.display()
    );
    path
}

/// The database URL the servers are given for a test database: its own
/// for PostgreSQL, a file in `data` for SQLite.
pub fn database_url(database: &todo_store::testing::TestDatabase, data: &Path) -> String {
    match &database.config.url {
        todo_store::DatabaseUrl::Sqlite(_) => {
            format!("sqlite://{}", data.join("todo.db").display())
        }
        todo_store::DatabaseUrl::Postgres(url) => url.clone(),
    }
}

/// The arguments every server in these tests gets.
pub fn server_args(data: &Path, database_url: &str, listen: &str) -> Vec<String> {
    [
        "--data-dir",
        data.to_str().unwrap(),
        "--database-url",
        database_url,
        "--listen",
        listen,
        "--log-format",
        "json",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A running server and the address it logged.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything it logged so far (kept for failure messages).
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn start(
        name: &str,
        data: &Path,
        database_url: &str,
        listen: &str,
        extra: &[&str],
    ) -> Self {
        let mut command = Command::new(binary(name));
        command
            .args(server_args(data, database_url, listen))
            .args(extra);
        Self::spawn(name, command)
    }

    /// Starts `command` (a server, perhaps behind a wrapper such as
    /// nsenter) and waits until it logs its address.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let after = line
                    .split("listening on https://")
                    .nth(1)
                    .or_else(|| line.split("listening on http://").nth(1));
                if let Some(rest) = after {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| *c != '"' && !c.is_whitespace())
                        .collect();
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                // Keep draining so the server never blocks on a full pipe.
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name} did not start: {}", log.lock().unwrap().join("\n")));
        Self { child, addr, log }
    }

    pub fn client(&self, data: &Path) -> Client {
        Client::https_with_ca_file(self.addr, "localhost", &data.join("tls-cert.pem")).unwrap()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The address the server logged for its metrics listener
    /// (`--metrics-listen`).
    #[allow(dead_code)] // not every test binary scrapes
    pub fn metrics_address(&self) -> SocketAddr {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(rest) = log.split("metrics on http://").nth(1) {
                let addr: String = rest.chars().take_while(|c| *c != '/').collect();
                return addr.parse().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no metrics listener logged: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM; does not wait.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.shut_down()
    }

    /// SIGTERM, then the exit status, keeping the handle.
    pub fn shut_down(&mut self) -> ExitStatus {
        self.terminate();
        self.wait(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("did not stop within 10 s of SIGTERM"))
    }

    /// The exit status, if the process ends within `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed midway leaves no server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(
    name: &str,
    data: &Path,
    database_url: &str,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let mut child = Command::new(binary(name))
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--database-url",
            database_url,
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Registers `username`; the new user's id.
pub async fn register(client: &Client, username: &str, password: &str) -> String {
    let reply = client
        .json(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"username": username, "password": password})),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.json().unwrap()["id"].as_str().unwrap().to_owned()
}

pub async fn token(client: &Client, username: &str, password: &str) -> String {
    let reply = client
        .json(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"username": username, "password": password})),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// What a receiver was sent.
pub struct Received {
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// An HTTPS receiver on a free port with a certificate of its own for
/// `localhost`, answering the statuses queued (then 200).
pub async fn receiver(
    dir: &std::path::Path,
    answers: Vec<u16>,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    slow_receiver(dir, answers, Duration::ZERO).await
}

/// As [`receiver`], answering each request `delay` after it arrived
/// (recorded on arrival).
pub async fn slow_receiver(
    dir: &std::path::Path,
    answers: Vec<u16>,
    delay: Duration,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let (identity, _) =
        todo_server::TlsIdentity::self_signed_in(dir, &["localhost".to_owned()]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx, answers) = (acceptor.clone(), tx.clone(), answers.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (tx, answers) = (tx.clone(), answers.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send(Received {
                                headers: parts.headers,
                                body,
                            });
                            let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                            tokio::time::sleep(delay).await;
                            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, rx)
}

pub async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>,
    within: Duration,
) -> Received {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no delivery in time")
        .expect("the receiver stopped")
}

/// A real SMTP server for the tests (Python's aiosmtpd, from PyPI; CI
/// installs it): STARTTLS required, with a certificate of its own for
/// `localhost` (trusted by the servers through `--smtp-ca-file`); every
/// message it takes is a file in a maildir.
pub struct Smtp {
    child: Child,
    pub port: u16,
    /// The certificate to trust (`--smtp-ca-file`).
    pub cert: PathBuf,
    maildir: PathBuf,
}

impl Smtp {
    pub fn start(dir: &Path) -> Self {
        Self::with_delay(dir, Duration::ZERO)
    }

    /// As [`Smtp::start`], taking each message only `delay` after its
    /// data arrived (a slow mail server).
    pub fn with_delay(dir: &Path, delay: Duration) -> Self {
        // A Mailbox that waits before it answers the data.
        let handlers = dir.join("smtp-handlers");
        std::fs::create_dir_all(&handlers).unwrap();
        std::fs::write(
            handlers.join("slow_mailbox.py"),
            format!(
                "import asyncio\nfrom aiosmtpd.handlers import Mailbox\n\n\
                 class SlowMailbox(Mailbox):\n\
                 \x20   async def handle_DATA(self, server, session, envelope):\n\
                 \x20       await asyncio.sleep({})\n\
                 \x20       return await super().handle_DATA(server, session, envelope)\n",
                delay.as_secs_f64()
            ),
        )
        .unwrap();
        let tls = dir.join("smtp-tls");
        todo_server::TlsIdentity::self_signed_in(&tls, &["localhost".to_owned()]).unwrap();
        // (aiosmtpd makes the maildir: one made before has no cur/new/tmp)
        let maildir = dir.join("maildir");
        let port = free_port()
            .rsplit_once(':')
            .unwrap()
            .1
            .parse::<u16>()
            .unwrap();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tlscert")
            .arg(tls.join("tls-cert.pem"))
            .arg("--tlskey")
            .arg(tls.join("tls-key.pem"))
            .env("PYTHONPATH", &handlers)
            .args(["-c", "slow_mailbox.SlowMailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd; scripts/install-deps does)");
        let mut smtp = Self {
            child,
            port,
            cert: tls.join("tls-cert.pem"),
            maildir,
        };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = smtp.child.try_wait() {
                panic!("aiosmtpd exited ({status}): is it installed? pip install aiosmtpd");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "aiosmtpd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        smtp
    }

    /// The servers' mail flags, sending here.
    pub fn server_args(&self) -> Vec<String> {
        [
            "--smtp-url",
            &format!("smtp://localhost:{}", self.port),
            "--smtp-ca-file",
            self.cert.to_str().unwrap(),
            "--mail-from",
            "todo <todo@todo.test>",
            "--public-url",
            "https://todo.test",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Every message taken so far, decoded enough to read (quoted-printable
    /// undone), in no particular order.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path()).ok())
            .map(|raw| unquote(&String::from_utf8_lossy(&raw)))
            .collect()
    }

    /// The messages to `to` once there are at least `count`, waiting up to
    /// 20 s; fails naming what arrived.
    pub fn wait_for(&self, to: &str, count: usize) -> Vec<String> {
        let started = std::time::Instant::now();
        loop {
            let mine: Vec<String> = self
                .messages()
                .into_iter()
                .filter(|m| m.lines().any(|l| l.starts_with("To: ") && l.contains(to)))
                .collect();
            if mine.len() >= count {
                return mine;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} of {count} mails to {to} arrived",
                mine.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Undoes quoted-printable (soft line breaks, `=XX`): enough to read the
/// links in a message's parts.
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tokens of the page links after `#{what}=` in `message`.
pub fn link_tokens(message: &str, what: &str) -> Vec<String> {
    let prefix = format!("https://todo.test/#{what}=");
    message
        .match_indices(&prefix)
        .map(|(at, _)| {
            message[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        })
        .collect()
}
