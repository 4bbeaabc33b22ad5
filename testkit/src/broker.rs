//! A throwaway RabbitMQ broker for the relay's tests: Debian's
//! `rabbitmq-server` started on its own ports, node name and data
//! directory, killed and started again on the same data as a crashed
//! broker would be.
//!
//! Without the broker installed the tests fail, saying how to install it,
//! unless `TODO_SKIP_RABBITMQ=1` says skipping is intended (CI installs it:
//! scripts/install-deps).
//! [`Consumer`] reads what the relay published, as a consumer would.
//! A test harness: it panics, saying why, on anything that goes wrong.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A running (or stopped) broker; killed when dropped.
#[derive(Debug)]
pub struct Broker {
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    dist_port: u16,
    /// The port of its TLS listener, if it has one.
    tls_port: Option<u16>,
    process: Option<Child>,
}

/// A broker to test against, or `None` when skipping is intended.
#[must_use]
pub fn start() -> Option<Broker> {
    start_with(None)
}

/// As [`start`], with a TLS listener too, presenting the certificate and
/// key in the PEM files `cert` and `key`.
#[must_use]
pub fn start_with_tls(cert: &Path, key: &Path) -> Option<Broker> {
    start_with(Some((cert, key)))
}

fn start_with(tls: Option<(&Path, &Path)>) -> Option<Broker> {
    if !Path::new(SERVER).exists() {
        assert!(
            std::env::var("TODO_SKIP_RABBITMQ").is_ok_and(|v| v == "1"),
            "{SERVER} is missing: install Debian's rabbitmq-server \
             (scripts/install-deps does), or set TODO_SKIP_RABBITMQ=1 to skip the relay's tests"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("broker dir");
    std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins file");
    let (port, dist_port) = (free_port(), free_port());
    let tls_port = tls.map(|(cert, key)| {
        let tls_port = free_port();
        let config = format!(
            "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.cacertfile = {cert}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(dir.path().join("rabbitmq.conf"), config).expect("broker config");
        tls_port
    });
    let mut broker = Broker {
        node: format!("todo-test-{}-{port}@localhost", std::process::id()),
        dir,
        port,
        dist_port,
        tls_port,
        process: None,
    };
    broker.run();
    Some(broker)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    /// The URL the relay and the tests connect to.
    #[must_use]
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The URL of its TLS listener (for the name `localhost`), if it has one.
    #[must_use]
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("amqps://guest:guest@localhost:{port}/%2f"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the broker on its data directory and waits until it serves.
    pub fn run(&mut self) {
        assert!(self.process.is_none(), "already running");
        let _ = std::fs::remove_file(self.path("pid"));
        // The node and `rabbitmqctl` share one Erlang cookie, written before
        // either starts: left to them, both may make one at once, and the
        // CLI is refused ("Invalid challenge reply") until its wait ends
        // (met in CI).
        let cookie = self.path(".erlang.cookie");
        if !cookie.exists() {
            std::fs::write(&cookie, format!("TODOTEST{}", self.port)).expect("erlang cookie");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
                    .expect("erlang cookie mode");
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("broker.log"))
            .expect("broker log");
        let child = Command::new(SERVER)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.path("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq"))
            .env("RABBITMQ_PID_FILE", self.path("pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        self.process = Some(child);
        let waited = Command::new(CTL)
            .env("HOME", self.dir.path())
            .args(["-n", &self.node, "wait", "--timeout", "90"])
            .arg(self.path("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmqctl wait");
        assert!(
            waited.success(),
            "the broker did not start; its log: {}",
            std::fs::read_to_string(self.path("broker.log")).unwrap_or_default()
        );
        // Serving AMQP, not only booted.
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in std::iter::once(self.port).chain(self.tls_port) {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the broker's port {port} never opened"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Stops the broker's process without ending it (SIGSTOP): it reads
    /// nothing more and confirms nothing, as a hung broker would.
    pub fn pause(&self) {
        let pid = std::fs::read_to_string(self.path("pid")).expect("broker pid file");
        let status = Command::new("kill")
            .args(["-STOP", pid.trim()])
            .status()
            .expect("kill -STOP");
        assert!(status.success(), "kill -STOP {pid}");
    }

    /// Kills the broker as a crash would (SIGKILL of the Erlang VM).
    pub fn kill(&mut self) {
        let pid = std::fs::read_to_string(self.path("pid")).expect("broker pid file");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid}");
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Gone: its port refuses.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "the broker outlived kill -9");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.path("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A durable queue bound to every change of the relay's exchange, read
/// message by message.
#[derive(Debug)]
pub struct Consumer {
    channel: lapin::Channel,
    queue: String,
    _connection: lapin::Connection,
}

/// A message as a [`Consumer`] took it.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// The `owner_id` header.
    pub owner: String,
    /// The `seq` header.
    pub seq: u64,
    /// The routing key (the change's type).
    pub routing_key: String,
    /// The `message_id` property.
    pub message_id: String,
    /// The body, as JSON.
    pub body: serde_json::Value,
}

impl Consumer {
    /// Connects to `url` (retrying for 30 s, as after a broker restart),
    /// declares `exchange` as the relay does and the durable `queue`, bound
    /// to every change (`task.*`).
    pub async fn bind(url: &str, exchange: &str, queue: &str) -> Self {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let deadline = Instant::now() + Duration::from_secs(30);
        let connection = loop {
            match lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await {
                Ok(connection) => break connection,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot reach the broker: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let channel = connection.create_channel().await.expect("a channel");
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                exchange.into(),
                lapin::ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .expect("declare the exchange");
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), durable, FieldTable::default())
            .await
            .expect("declare the queue");
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                "task.*".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the queue");
        Self {
            channel,
            queue: queue.to_owned(),
            _connection: connection,
        }
    }

    /// Takes (and acknowledges) every message waiting in the queue.
    pub async fn drain(&self) -> Vec<Relayed> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        use lapin::types::AMQPValue;
        let mut taken = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            let delivery = &message.delivery;
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            let owner = match headers.inner().get("owner_id") {
                Some(AMQPValue::LongString(owner)) => owner.to_string(),
                other => panic!("owner_id header: {other:?}"),
            };
            let seq = match headers.inner().get("seq") {
                Some(AMQPValue::LongLongInt(seq)) => u64::try_from(*seq).expect("a seq"),
                other => panic!("seq header: {other:?}"),
            };
            taken.push(Relayed {
                owner,
                seq,
                routing_key: delivery.routing_key.to_string(),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                body: serde_json::from_slice(&delivery.data).expect("a JSON body"),
            });
            delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("basic.ack");
        }
        taken
    }
}
