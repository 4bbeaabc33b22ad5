//! task-server's keys from auth-server's JWKS: fetched at start, every
//! refresh period (so that a key auth-server no longer publishes stops
//! verifying here), and again when a token names an unknown `kid` (a
//! rotation), at most once per interval so that forged `kid`s cannot make us
//! hammer auth-server. Every fetch replaces the whole key set; a changed set
//! grows the verifier's key epoch, which empties the token cache.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use todo_auth::{JwkSet, JwtVerifier, KeySet};

use crate::client::Client;

/// Where the keys come from, and how often we may ask.
#[derive(Debug)]
pub struct JwksSource {
    url: String,
    ca_file: Option<std::path::PathBuf>,
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

impl JwksSource {
    /// `url` is `https://HOST:PORT/PATH` (or `http://` behind a trusted network);
    /// `ca_file` holds the certificate(s) to trust for it.
    pub fn new(
        url: &str,
        ca_file: Option<std::path::PathBuf>,
        verifier: Arc<JwtVerifier>,
        min_interval: Duration,
    ) -> Result<Self, String> {
        split_url(url)?;
        Ok(Self {
            url: url.to_owned(),
            ca_file,
            verifier,
            min_interval,
            last_fetch: Mutex::new(None),
        })
    }

    /// Fetches the key set and installs it, unless the last fetch was too
    /// recent. Returns whether the keys changed.
    pub async fn refresh(&self) -> Result<bool, String> {
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
    async fn fetch_and_install(&self) -> Result<bool, String> {
        let keys = self.fetch().await?;
        if keys.iter().next().is_none() {
            return Err(format!("{}: the key set is empty", self.url));
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

    async fn fetch(&self) -> Result<KeySet, String> {
        let (https, host, port, path) = split_url(&self.url)?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("{}: {e}", self.url))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.url))?;
        let client = match (https, &self.ca_file) {
            (false, _) => Client::plain(addr),
            (true, Some(ca)) => {
                Client::https_with_ca_file(addr, &host, ca).map_err(|e| e.to_string())?
            }
            (true, None) => return Err("--jwks-ca-file is needed for an https JWKS URL".to_owned()),
        }
        .with_timeout(Duration::from_secs(5));
        let reply = client
            .send(Method::GET, &path, &[], None)
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if reply.status != StatusCode::OK {
            return Err(format!("{}: answered {}", self.url, reply.status));
        }
        let jwks: JwkSet =
            serde_json::from_slice(&reply.body).map_err(|e| format!("{}: {e}", self.url))?;
        Ok(KeySet::from_jwks(&jwks))
    }
}

fn split_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("--jwks-url {url}: use https://HOST:PORT/PATH"));
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
            host,
            port.parse()
                .map_err(|_| format!("--jwks-url {url}: bad port"))?,
        ),
        _ => (authority, if https { 443 } else { 80 }),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(format!("--jwks-url {url}: no host"));
    }
    Ok((https, host, port, path))
}

impl crate::KeyRefresh for JwksSource {
    fn refresh(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<bool, crate::RefreshError>> + Send + '_>,
    > {
        Box::pin(async move {
            JwksSource::refresh(self)
                .await
                .map_err(|error| crate::RefreshError(error.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn jwks_urls_split_into_their_parts() {
        assert_eq!(
            split_url("https://localhost:8443/.well-known/jwks.json").unwrap(),
            (
                true,
                "localhost".to_owned(),
                8443,
                "/.well-known/jwks.json".to_owned()
            )
        );
        assert_eq!(
            split_url("http://auth/keys").unwrap(),
            (false, "auth".to_owned(), 80, "/keys".to_owned())
        );
        assert_eq!(split_url("https://[::1]:9/x").unwrap().1, "::1");
        assert!(split_url("ftp://x/y").is_err());
        assert!(split_url("https://:80/").is_err());
    }
}
