//! nginx in front of servers, as deployed: the committed gateway
//! configuration (`deploy/nginx/todo.conf`) with its upstream addresses,
//! port and certificate paths rewritten for loopback. todo-http's contract
//! tests and the binaries' several-instance test run behind it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// nginx from the system's packages with the committed gateway
/// configuration, its addresses and paths rewritten for loopback. Killed
/// when dropped.
#[derive(Debug)]
pub struct Gateway {
    /// Where nginx listens (TLS, HTTP/2 or 1.1).
    pub addr: SocketAddr,
    process: std::process::Child,
}

impl Gateway {
    /// Starts nginx in `dir`, which holds the gateway's certificate and key
    /// (`tls-cert.pem`, `tls-key.pem`, for `localhost`), in front of the
    /// auth-servers `auth` and the task-servers `tasks`, which serve plain
    /// HTTP and trust loopback's `X-Forwarded-For`. Panics if nginx is
    /// missing or does not listen within 5 s.
    #[must_use]
    pub fn start(dir: &Path, auth: &[SocketAddr], tasks: &[SocketAddr]) -> Self {
        let committed = include_str!("../../deploy/nginx/todo.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("    server {a};"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let d = dir.display();
        let conf = [
            (
                "    server 127.0.0.1:9101;\n    server 127.0.0.1:9102;".to_owned(),
                servers(auth),
            ),
            (
                "    server 127.0.0.1:9201;\n    server 127.0.0.1:9202;".to_owned(),
                servers(tasks),
            ),
            (
                "listen 8443 ssl http2;".to_owned(),
                format!("listen 127.0.0.1:{port} ssl http2;"),
            ),
            (
                "/etc/todo/tls/cert.pem".to_owned(),
                format!("{d}/tls-cert.pem"),
            ),
            (
                "/etc/todo/tls/key.pem".to_owned(),
                format!("{d}/tls-key.pem"),
            ),
            // The edge limits are tested in scripts/gateway-test; here they
            // would only throttle a suite that sends hundreds of requests a
            // second from one address.
            ("rate=10r/s".to_owned(), "rate=10000r/s".to_owned()),
            ("rate=100r/s".to_owned(), "rate=10000r/s".to_owned()),
        ]
        .into_iter()
        .fold(committed.to_owned(), |conf, (from, to)| {
            assert!(
                conf.contains(&from),
                "deploy/nginx/todo.conf no longer has {from:?}"
            );
            conf.replace(&from, &to)
        });
        std::fs::write(dir.join("todo.conf"), conf).unwrap();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
             events {{}}\nhttp {{ access_log off; client_body_temp_path {d}/body; \
             proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; \
             scgi_temp_path {d}/scgi; include {d}/todo.conf; }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| std::process::Command::new(p).arg("-v").output().is_ok())
            .expect(
                "nginx is not installed: apt-get install nginx-light (./scripts/test needs it)",
            );
        let process = std::process::Command::new(nginx)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut gateway = Self { addr, process };
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return gateway;
            }
            if let Ok(Some(status)) = gateway.process.try_wait() {
                let log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
                panic!("nginx exited with {status}: {log}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx did not listen on {addr} within 5 s");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
