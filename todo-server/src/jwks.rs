//! task-server's keys from auth-server's JWKS: fetched at start, every
//! refresh period (so that a key auth-server no longer publishes stops
//! verifying here), and again when a token names an unknown `kid` (a
//! rotation), at most once per interval so that forged `kid`s cannot make us
//! hammer auth-server. Every fetch replaces the whole key set; a changed set
//! grows the verifier's key epoch, which empties the token cache.
//!
//! The fetch runs on hyper-util's client over hyper-rustls (aws-lc provider),
//! trusting only the certificates of `--jwks-ca-file`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use todo_auth::{JwkSet, JwtVerifier, KeySet};
use todo_http::{KeyRefresh, Refetch, RefreshError};

/// Why the key set could not be fetched, or the URL is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// `--jwks-url` is not an `http(s)://HOST[:PORT]/PATH` URL.
    #[error("--jwks-url {url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An https URL needs the certificates to trust.
    #[error("--jwks-ca-file is needed for an https JWKS URL")]
    NoCa,
    /// The CA file could not be read.
    #[error("--jwks-ca-file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("--jwks-ca-file {}: {reason}", path.display())]
    CaPem {
        /// The file.
        path: PathBuf,
        /// What rustls or the PEM parser said.
        reason: String,
    },
    /// No answer: connecting, TLS or HTTP failed.
    #[error("{url}: {source}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("{url}: timed out")]
    Timeout {
        /// The JWKS URL.
        url: String,
    },
    /// An answer other than 200.
    #[error("{url}: answered {status}")]
    Status {
        /// The JWKS URL.
        url: String,
        /// What it answered.
        status: StatusCode,
    },
    /// The answer is not a JWK set.
    #[error("{url}: {source}")]
    Decode {
        /// The JWKS URL.
        url: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The answer is a JWK set with no usable key.
    #[error("{url}: the key set is empty")]
    Empty {
        /// The JWKS URL.
        url: String,
    },
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Where the keys come from, and how often we may ask.
#[derive(Debug)]
pub struct JwksSource {
    url: Uri,
    ca_file: Option<PathBuf>,
    /// The client, and the CA file's bytes it was built from (built at the
    /// first fetch: auth-server may create its certificate after we start).
    client: Mutex<Option<(Vec<u8>, HttpsClient)>>,
    verifier: Arc<JwtVerifier>,
    min_interval: Duration,
    /// When fetches were tried and how they went: at most one on demand at
    /// a time, and failures back off.
    fetches: Mutex<Fetches>,
}

/// The record of on-demand fetches.
#[derive(Debug, Default)]
struct Fetches {
    /// When the last one started.
    last: Option<Instant>,
    /// Failures since the last success (0: the last one worked).
    failures: u32,
    /// Whether one is running now.
    in_flight: bool,
}

impl Fetches {
    /// How long after the last fetch the next may start: the minimum
    /// interval after a success; after failures, from 100 ms doubling to
    /// that interval, so that a task-server started before auth-server
    /// gets its keys at once, and an auth-server that is down is not asked
    /// ten times a second for every token with an invented `kid`.
    fn wait(&self, min_interval: Duration) -> Duration {
        if self.failures == 0 {
            return min_interval;
        }
        let doublings = self.failures.saturating_sub(1).min(16);
        RETRY_AFTER_FAILURE
            .saturating_mul(1 << doublings)
            .min(min_interval)
    }
}

/// Marks the on-demand fetch done however it ends (an error, or its future
/// dropped by a client that went away).
struct InFlight<'a>(&'a Mutex<Fetches>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_flight = false;
    }
}

/// After a failed fetch (auth-server still starting, say) the next one may
/// come this soon, whatever the interval (doubling with each failure in a
/// row): a task-server that starts first must not refuse every token for
/// the whole interval.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);

/// After a failed periodic fetch the next comes this soon (or at the
/// period, if shorter); the keys in use stay meanwhile.
const PERIODIC_RETRY: Duration = Duration::from_secs(10);

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl JwksSource {
    /// `url` is `https://HOST:PORT/PATH` (or `http://` behind a trusted network);
    /// `ca_file` holds the certificate(s) to trust for it.
    pub fn new(
        url: &str,
        ca_file: Option<PathBuf>,
        verifier: Arc<JwtVerifier>,
        min_interval: Duration,
    ) -> Result<Self, JwksError> {
        Ok(Self {
            url: parse_url(url)?,
            ca_file,
            client: Mutex::new(None),
            verifier,
            min_interval,
            fetches: Mutex::new(Fetches::default()),
        })
    }

    /// Fetches the key set and installs it, unless another fetch is running
    /// or the last was too recent (failures back off from 100 ms to the
    /// minimum interval). Skipped, the keys are [`Refetch::Unavailable`]
    /// while a fetch runs or after one failed, [`Refetch::Unchanged`] after
    /// one that worked.
    pub async fn refresh_if_due(&self) -> Result<Refetch, JwksError> {
        let _in_flight = {
            let mut fetches = self.fetches.lock().unwrap_or_else(PoisonError::into_inner);
            let too_soon = fetches
                .last
                .is_some_and(|at| at.elapsed() < fetches.wait(self.min_interval));
            if fetches.in_flight || (too_soon && fetches.failures > 0) {
                return Ok(Refetch::Unavailable);
            }
            if too_soon {
                return Ok(Refetch::Unchanged);
            }
            fetches.last = Some(Instant::now());
            fetches.in_flight = true;
            InFlight(&self.fetches)
        };
        let outcome = self.fetch_and_install().await;
        let mut fetches = self.fetches.lock().unwrap_or_else(PoisonError::into_inner);
        fetches.failures = match outcome {
            Ok(_) => 0,
            Err(_) => fetches.failures.saturating_add(1),
        };
        outcome.map(|changed| {
            if changed {
                Refetch::Installed
            } else {
                Refetch::Unchanged
            }
        })
    }

    /// Fetches the key set now and installs it; returns whether it changed.
    /// An empty or unreadable set changes nothing.
    async fn fetch_and_install(&self) -> Result<bool, JwksError> {
        let keys = self.fetch().await?;
        if keys.iter().next().is_none() {
            return Err(JwksError::Empty {
                url: self.url.to_string(),
            });
        }
        Ok(self.verifier.set_keys(keys))
    }

    /// Refetches the key set every `period`, for ever: a key withdrawn from
    /// auth-server's JWKS stops verifying here within one period (and the
    /// token cache forgets what it verified). A failed fetch keeps the keys
    /// in use and is retried sooner.
    pub async fn refresh_periodically(self: Arc<Self>, period: Duration) {
        let mut wait = period;
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.fetch_and_install().await {
                Ok(changed) => {
                    self.fetches
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .failures = 0;
                    if changed {
                        tracing::info!(target: "todo::keys", url = %self.url, "verification keys changed");
                    }
                    period
                }
                Err(error) => {
                    tracing::warn!(target: "todo::keys", %error, "refetching the JWKS failed; keeping the keys in use");
                    PERIODIC_RETRY.min(period)
                }
            };
        }
    }

    /// The client for this fetch. The CA file is read at every fetch (at
    /// most every `--jwks-min-refresh-secs`, and once a period): a new
    /// certificate for auth-server is trusted without a restart, and the
    /// client (with its pooled connections) is rebuilt only when it changed.
    async fn client(&self) -> Result<HttpsClient, JwksError> {
        let https = self.url.scheme() == Some(&http::uri::Scheme::HTTPS);
        let pem = match (&self.ca_file, https) {
            // Off the async workers: a file read can block.
            (Some(path), _) => {
                let file = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read(file))
                    .await
                    .unwrap_or_else(|join| Err(std::io::Error::other(join)))
                    .map_err(|source| JwksError::CaFile {
                        path: path.clone(),
                        source,
                    })?
            }
            (None, true) => return Err(JwksError::NoCa),
            (None, false) => Vec::new(),
        };
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_from, client)) = slot.as_ref()
            && *built_from == pem
        {
            return Ok(client.clone());
        }
        let roots = match &self.ca_file {
            Some(path) => parse_roots(path, &pem)?,
            None => Vec::new(),
        };
        let client = https_client(roots).map_err(|e| JwksError::CaPem {
            path: self.ca_file.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        *slot = Some((pem, client.clone()));
        Ok(client)
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let url = || self.url.to_string();
        let client = self.client().await?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.url.clone())
            .body(Empty::new())
            .map_err(|e| JwksError::Fetch {
                url: url(),
                source: Box::new(e),
            })?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| JwksError::Fetch {
                    url: url(),
                    source: Box::new(e),
                })?;
            let status = response.status();
            // A key set is a few KiB: a larger answer is not one.
            let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| JwksError::Fetch {
                    url: url(),
                    source: e,
                })?
                .to_bytes();
            Ok::<_, JwksError>((status, body))
        };
        let (status, body) = tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| JwksError::Timeout { url: url() })??;
        if status != StatusCode::OK {
            return Err(JwksError::Status { url: url(), status });
        }
        let jwks: JwkSet = serde_json::from_slice(&body)
            .map_err(|source| JwksError::Decode { url: url(), source })?;
        Ok(KeySet::from_jwks(&jwks))
    }
}

impl KeyRefresh for JwksSource {
    fn refresh(&self) -> Pin<Box<dyn Future<Output = Result<Refetch, RefreshError>> + Send + '_>> {
        Box::pin(async move {
            self.refresh_if_due()
                .await
                .map_err(|e| RefreshError(Box::new(e)))
        })
    }
}

/// The most a JWKS answer may weigh.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The certificates in the PEM text of the file at `path`.
fn parse_roots(
    path: &std::path::Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, JwksError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| JwksError::CaPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// hyper-util's client over rustls (aws-lc), trusting `roots` only, HTTP/1.1
/// and h2 by ALPN; plain `http://` allowed (behind a trusted network).
fn https_client(roots: Vec<CertificateDer<'static>>) -> Result<HttpsClient, rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

fn parse_url(url: &str) -> Result<Uri, JwksError> {
    let bad = |reason| JwksError::Url {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| bad("use https://HOST:PORT/PATH"))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(bad("use https://HOST:PORT/PATH")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn jwks_urls_must_be_http_or_https_with_a_host() {
        let uri = parse_url("https://localhost:8443/.well-known/jwks.json").unwrap();
        assert_eq!(uri.host(), Some("localhost"));
        assert_eq!(uri.port_u16(), Some(8443));
        assert_eq!(uri.path(), "/.well-known/jwks.json");
        assert_eq!(parse_url("http://auth/keys").unwrap().path(), "/keys");
        assert_eq!(
            parse_url("https://[::1]:9/x").unwrap().host(),
            Some("[::1]")
        );
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("https://:80/").is_err());
        assert!(parse_url("localhost:8443/keys").is_err());
    }

    #[tokio::test]
    async fn an_https_url_without_a_ca_file_is_refused_at_the_fetch() {
        let verifier = Arc::new(JwtVerifier::new(KeySet::new([]), "i", "a", 0));
        let source = JwksSource::new(
            "https://localhost:1/keys",
            None,
            verifier,
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(matches!(
            source.refresh_if_due().await,
            Err(JwksError::NoCa)
        ));
        // A failed fetch is retried soon, but not at once; meanwhile the
        // keys are not known (a token's key may be among them).
        assert_eq!(source.refresh_if_due().await.unwrap(), Refetch::Unavailable);
    }

    /// Failures back off from 100 ms, doubling, to the minimum interval; a
    /// success waits the whole interval.
    #[test]
    fn failed_fetches_back_off_to_the_minimum_interval() {
        let interval = Duration::from_secs(30);
        let after = |failures| {
            Fetches {
                failures,
                ..Fetches::default()
            }
            .wait(interval)
        };
        assert_eq!(after(0), interval);
        assert_eq!(after(1), Duration::from_millis(100));
        assert_eq!(after(2), Duration::from_millis(200));
        assert_eq!(after(5), Duration::from_millis(1600));
        assert_eq!(after(9), Duration::from_millis(25_600));
        assert_eq!(after(10), interval);
        assert_eq!(after(u32::MAX), interval);
    }

    /// While one on-demand fetch runs, another is not started (a flood of
    /// tokens with invented key ids makes one fetch, not one each).
    #[tokio::test]
    async fn one_on_demand_fetch_at_a_time() {
        // A listener that accepts and never answers: the fetch hangs.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", silent.local_addr().unwrap());
        let verifier = Arc::new(JwtVerifier::new(KeySet::new([]), "i", "a", 0));
        let source =
            Arc::new(JwksSource::new(&url, None, verifier, Duration::from_secs(30)).unwrap());
        let first = tokio::spawn({
            let source = Arc::clone(&source);
            async move { source.refresh_if_due().await }
        });
        let (_held, _) = silent.accept().await.unwrap();
        assert!(source.fetches.lock().unwrap().in_flight);
        assert_eq!(
            source.refresh_if_due().await.unwrap(),
            Refetch::Unavailable,
            "a second fetch while one runs"
        );
        first.abort();
        let _ = first.await;
        assert!(
            !source.fetches.lock().unwrap().in_flight,
            "a dropped fetch is done"
        );
    }
}
