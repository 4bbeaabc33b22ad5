//! The HTTP client of todo's tests and examples: [`Client`] sends one
//! request at a time to one server and returns the whole [`Reply`].
//!
//! It is hyper-util's client over hyper-rustls (the aws-lc provider),
//! trusting only the roots it is given, speaking HTTP/1.1 (no ALPN, as
//! before), with a fresh connection for every request (no pool: tests that
//! count connections or stop servers see no idle connection of ours) and
//! no retries. The host name checked against the certificate (and sent as
//! `Host`) is given apart from the address, so a test can reach a server
//! on `127.0.0.1:PORT` that presents a certificate for `localhost`.
//!
//! A crate of its own, `publish = false`, so that no production crate
//! carries test code: todo-http's and the binaries' tests and the
//! examples depend on it.
//!
//! [`broker`] starts a throwaway RabbitMQ for the relay's tests;
//! [`gateway`] puts nginx in front of servers.

pub mod broker;
pub mod gateway;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// What a request answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection (refused, reset, unreachable).
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    /// The TLS set-up or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection broke, or the answer was not HTTP.
    #[error("HTTP: {0}")]
    Http(String),
    /// No whole answer within the client's timeout.
    #[error("timed out")]
    Timeout,
}

type Legacy<C> = hyper_util::client::legacy::Client<C, Full<Bytes>>;

/// hyper-util's client, without TLS or over rustls.
#[derive(Clone)]
enum Transport {
    Plain(Legacy<HttpConnector>),
    Tls(Legacy<HttpsConnector<HttpConnector>>),
}

/// TCP with TCP_NODELAY, as the server sets it: without it a request
/// whose head and body go out in two writes waits ~40 ms (Nagle and the
/// peer's delayed ACK).
fn tcp() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    tcp
}

/// The client's settings, whatever the transport.
fn builder() -> hyper_util::client::legacy::Builder {
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    builder
        // One connection per request, as a test expects: none left idle.
        .pool_max_idle_per_host(0)
        .retry_canceled_requests(false)
        .set_host(false);
    builder
}

/// A client for one server.
#[derive(Clone)]
pub struct Client {
    inner: Transport,
    /// `http://ADDR` or `https://ADDR`: requests go to this address.
    base: String,
    host: String,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Plain HTTP to `addr`.
    #[must_use]
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            inner: Transport::Plain(builder().build(tcp())),
            base: format!("http://{addr}"),
            host: addr.to_string(),
            timeout: Duration::from_secs(30),
        }
    }

    /// HTTPS to `addr`, checking the certificate against `roots` for `server_name`.
    pub fn https(
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
    ) -> Result<Self, ClientError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| ClientError::Tls(e.to_string()))?;
        }
        let config = tls_config(store).map_err(|e| ClientError::Tls(e.to_string()))?;
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(name))
            .enable_http1()
            .wrap_connector(tcp());
        Ok(Self {
            inner: Transport::Tls(builder().build(connector)),
            base: format!("https://{addr}"),
            host: server_name.to_owned(),
            timeout: Duration::from_secs(30),
        })
    }

    /// HTTPS trusting the certificates in a PEM file (a self-signed server's own).
    pub fn https_with_ca_file(
        addr: SocketAddr,
        server_name: &str,
        ca: &Path,
    ) -> Result<Self, ClientError> {
        let pem = std::fs::read(ca).map_err(ClientError::Connect)?;
        let roots: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::Tls(format!("{}: {e}", ca.display())))?;
        Self::https(addr, server_name, &roots)
    }

    /// The same client with another timeout for each whole exchange.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, headers, body))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends a JSON body (or none) with an optional bearer token.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        self.send(method, path, &headers, body).await
    }

    /// Sends a GET and returns the answer as it starts to arrive, its body
    /// to be read block by block (a server-sent event stream). The
    /// client's timeout bounds the wait for the head only.
    pub async fn stream(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Streamed, ClientError> {
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.base))
            .header("host", &self.host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = tokio::time::timeout(self.timeout, async {
            match &self.inner {
                Transport::Plain(client) => client.request(request).await,
                Transport::Tls(client) => client.request(request).await,
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(classify)?;
        let (parts, body) = response.into_parts();
        Ok(Streamed {
            status: parts.status,
            headers: parts.headers,
            body,
            pending: Vec::new(),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("host", &self.host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = match &self.inner {
            Transport::Plain(client) => client.request(request).await,
            Transport::Tls(client) => client.request(request).await,
        }
        .map_err(classify)?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Http(chain(&e)))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// rustls with the aws-lc provider and its default versions, trusting `roots`.
fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connector failure is `Connect` (or `Tls` when rustls refused the
/// handshake); anything later is `Http`, as with the hand-made client.
fn classify(error: hyper_util::client::legacy::Error) -> ClientError {
    if error.is_connect() {
        let mut source: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(&error);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                let tls = io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
                return if tls {
                    ClientError::Tls(io.to_string())
                } else {
                    ClientError::Connect(std::io::Error::new(io.kind(), io.to_string()))
                };
            }
            if cause.downcast_ref::<rustls::Error>().is_some() {
                return ClientError::Tls(cause.to_string());
            }
            source = cause.source();
        }
        return ClientError::Connect(std::io::Error::other(chain(&error)));
    }
    ClientError::Http(chain(&error))
}

/// An error and its causes, colon-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An answer read as it arrives: [`Client::stream`].
#[derive(Debug)]
pub struct Streamed {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    body: hyper::body::Incoming,
    /// Bytes received after the last whole block.
    pending: Vec<u8>,
}

/// One block of a server-sent event stream (the lines up to a blank one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseBlock {
    /// `id:`
    pub id: Option<String>,
    /// `event:`
    pub event: Option<String>,
    /// The `data:` lines, joined by line breaks.
    pub data: Option<String>,
    /// `retry:`
    pub retry: Option<String>,
    /// The comment lines (`:` first), without the colon.
    pub comments: Vec<String>,
}

impl SseBlock {
    /// The data as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.data.as_deref().unwrap_or_default())
    }

    fn parse(text: &str) -> Self {
        let mut block = Self::default();
        for line in text.split('\n') {
            if let Some(comment) = line.strip_prefix(':') {
                block.comments.push(comment.trim_start().to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => block.id = Some(value),
                "event" => block.event = Some(value),
                "retry" => block.retry = Some(value),
                "data" => {
                    block.data = Some(match block.data.take() {
                        Some(before) => format!("{before}\n{value}"),
                        None => value,
                    });
                }
                _ => {}
            }
        }
        block
    }
}

impl Streamed {
    /// The next block; `None` once the stream has ended; [`ClientError::Timeout`]
    /// when no whole block arrives `within`.
    pub async fn next_block(&mut self, within: Duration) -> Result<Option<SseBlock>, ClientError> {
        tokio::time::timeout(within, self.read_block())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// The next block that is an event (skipping comments and `retry:`).
    pub async fn next_event(&mut self, within: Duration) -> Result<Option<SseBlock>, ClientError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_block(left).await? {
                Some(block) if block.data.is_none() => {}
                other => return Ok(other),
            }
        }
    }

    async fn read_block(&mut self) -> Result<Option<SseBlock>, ClientError> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block[..end]);
                return Ok(Some(SseBlock::parse(&text)));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(error)) => return Err(ClientError::Http(chain(&error))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
