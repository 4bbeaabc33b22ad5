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
use todo_http::{KeyRefresh, RefreshError};

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
    /// When the last fetch was tried, and whether it worked.
    last_fetch: Mutex<Option<(Instant, bool)>>,
}

/// After a failed fetch (auth-server still starting, say) the next one may
/// come this soon, whatever the interval: a task-server that starts first
/// must not refuse every token for the whole interval.
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
            last_fetch: Mutex::new(None),
        })
    }

    /// Fetches the key set and installs it, unless the last fetch was too
    /// recent. Returns whether the keys changed.
    pub async fn refresh_if_due(&self) -> Result<bool, JwksError> {
        {
            let mut last = self
                .last_fetch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let wait = |ok: bool| {
                if ok {
                    self.min_interval
                } else {
                    RETRY_AFTER_FAILURE.min(self.min_interval)
                }
            };
            if last.is_some_and(|(at, ok)| at.elapsed() < wait(ok)) {
                return Ok(false);
            }
            *last = Some((Instant::now(), false));
        }
        self.fetch_and_install().await
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
        let changed = self.verifier.set_keys(keys);
        *self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), true));
        Ok(changed)
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
                    if changed {
                        tracing::info!(target: "todo::http", url = %self.url, "verification keys changed");
                    }
                    period
                }
                Err(error) => {
                    tracing::warn!(target: "todo::http", %error, "refetching the JWKS failed; keeping the keys in use");
                    PERIODIC_RETRY.min(period)
                }
            };
        }
    }

    /// The client for this fetch. The CA file is read at every fetch (at
    /// most every `--jwks-min-refresh-secs`, and once a period): a new
    /// certificate for auth-server is trusted without a restart, and the
    /// client (with its pooled connections) is rebuilt only when it changed.
    fn client(&self) -> Result<HttpsClient, JwksError> {
        let https = self.url.scheme() == Some(&http::uri::Scheme::HTTPS);
        let pem = match (&self.ca_file, https) {
            (Some(path), _) => std::fs::read(path).map_err(|source| JwksError::CaFile {
                path: path.clone(),
                source,
            })?,
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
        let client = https_client(roots).map_err(|reason| JwksError::CaPem {
            path: self.ca_file.clone().unwrap_or_default(),
            reason,
        })?;
        *slot = Some((pem, client.clone()));
        Ok(client)
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let url = || self.url.to_string();
        let client = self.client()?;
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
    fn refresh(&self) -> Pin<Box<dyn Future<Output = Result<bool, RefreshError>> + Send + '_>> {
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
fn https_client(roots: Vec<CertificateDer<'static>>) -> Result<HttpsClient, String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
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
        // A failed fetch is retried soon, but not at once.
        assert!(!source.refresh_if_due().await.unwrap());
    }
}
