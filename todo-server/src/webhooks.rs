//! Webhook deliveries: a worker that leases due webhooks from the database
//! (each to one instance at a time, however many run), posts their next
//! changes in order, signed (Standard Webhooks), and settles what happened
//! ([`WebhookService`] decides retries and disabling). Receivers are given
//! the policy's timeout each, and are sent to concurrently, so a slow one
//! delays only its own webhook, never the API (the worker's network waits
//! are async; its store calls run on the blocking pool).
//!
//! Where a delivery may go: only public addresses. The host is resolved at
//! creation ([`ResolvingTargets`]) and again for deliveries, at most 30 s
//! apart, and the connection goes to an address that was
//! checked (not to a second resolution, which a rebinding DNS server could
//! answer otherwise).
//! Redirects are not followed: a 3xx is a failure.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::DescriptorEncoder;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use todo_core::{
    ChangeCursor, Delivery, DeliveryAttempt, Leased, TargetCheck, ValidationError, WebhookService,
    WebhookUrl,
};

use crate::Error;

/// Webhooks delivered to at once by one instance.
const PLACES: usize = 16;
/// No delivery starts after a lease has run this long.
const LEASE_BUDGET: Duration = Duration::from_secs(10);
/// Changes sent to one webhook per lease.
const PER_LEASE: usize = 10;
/// How often the worker looks for due webhooks.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Name lookups of the worker running at once.
const LOOKUPS_AT_ONCE: usize = 4;
/// How long a host's checked addresses serve its deliveries before it is
/// resolved again. Lookups are few places shared by every user's webhooks
/// (above): a receiver's host takes one of them once in this time, not at
/// every delivery, so a user whose name server never answers can hold up
/// another user's deliveries only when that user's host is due a lookup.
/// A lookup that failed is not kept.
const RESOLVED_FOR: Duration = Duration::from_secs(30);
/// The most hosts whose addresses are kept (some 10 per user with webhooks).
const RESOLVED_HOSTS: usize = 4096;
/// The most of a receiver's answer read (the rest is dropped).
const ANSWER_BYTES: usize = 16 * 1024;

/// Whether an address is one a delivery may go to: not loopback, private,
/// link-local, shared (CGNAT), multicast, unspecified, broadcast,
/// documentation, benchmarking or reserved, nor Azure's host endpoint
/// (168.63.129.16: a public address that every Azure VM reaches its host's
/// agent and DNS at), nor an IPv6 form of one (IPv4-mapped, NAT64). Other
/// clouds' metadata services are in the ranges refused (169.254.169.254,
/// Alibaba's 100.100.100.200, Oracle's 192.0.0.192, AWS's fd00:ec2::254).
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 88 && c == 99)
                || v4.octets() == [168, 63, 129, 16]
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            // Only global unicast (2000::/3) is public: that leaves out
            // loopback, unspecified, IPv4-compatible (::/96), SIIT,
            // discard-only (100::/64), the local-use NAT64 prefix, unique
            // local (fc00::/7), link- and site-local, multicast, SRv6
            // (5f00::/16) and what is not allocated yet. Within it, not:
            // the IETF's protocol assignments (2001::/23: Teredo,
            // benchmarking, ORCHID, …), documentation (2001:db8::/32,
            // 3fff::/20), the retired 6bone (3ffe::/16) and 6to4
            // (2002::/16, which embeds an IPv4 address).
            (segments[0] & 0xe000) == 0x2000
                && !(segments[0] == 0x2001 && segments[1] < 0x0200)
                && !(segments[0] == 0x2001 && segments[1] == 0x0db8)
                && segments[0] != 0x2002
                && !(segments[0] == 0x3fff && segments[1] < 0x1000)
                && segments[0] != 0x3ffe
        }
    }
}

/// The addresses a URL's host resolves to, if every one of them may be
/// sent to (or private targets are allowed).
fn addresses(
    resolved: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, &'static str> {
    let all: Vec<SocketAddr> = resolved.into_iter().collect();
    if all.is_empty() {
        return Err("the host does not resolve");
    }
    // One private address among public ones is refused too: the
    // connection could go to it.
    if !allow_private && !all.iter().all(|addr| is_public(addr.ip())) {
        return Err("the host resolves to a private, loopback or link-local address");
    }
    Ok(all)
}

/// Checks a new webhook's host by resolving it (blocking: the service
/// runs on the blocking pool). At most 4 lookups at once
/// per instance; past them 503: a lookup cannot be cancelled, and one
/// whose name server never answers holds its thread for seconds (attack
/// of #15: creations with such names stalled every user's writes).
#[derive(Debug, Clone)]
pub struct ResolvingTargets {
    /// Private targets allowed (for tests).
    pub allow_private: bool,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

impl ResolvingTargets {
    /// A checker; `allow_private` lets every address through (tests).
    #[must_use]
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            running: Arc::default(),
        }
    }
}

/// A place among the lookups running, given back when dropped.
struct LookupPlace<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for LookupPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl TargetCheck for ResolvingTargets {
    fn check(&self, url: &WebhookUrl) -> todo_core::Result<()> {
        use std::sync::atomic::Ordering;
        let refused = || {
            todo_core::Error::Invalid(vec![ValidationError::Format {
                field: "url",
                what: "URL whose host resolves to public addresses only",
            }])
        };
        if self.running.fetch_add(1, Ordering::AcqRel) >= LOOKUPS_AT_ONCE {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err(todo_core::Error::Overloaded {
                retry_after: Duration::from_secs(2),
            });
        }
        let _place = LookupPlace(&self.running);
        let resolved = (url.host(), url.port())
            .to_socket_addrs()
            .map_err(|_| refused())?;
        addresses(resolved, self.allow_private)
            .map(|_| ())
            .map_err(|_| refused())
    }
}

/// Posts deliveries: TLS with the Mozilla roots (and the operator's extra
/// CA file, if any), one connection per delivery, to a checked address.
#[derive(Clone)]
pub struct WebhookSender {
    tls: tokio_rustls::TlsConnector,
    allow_private: bool,
    timeout: Duration,
    /// Name lookups running at once ([`LOOKUPS_AT_ONCE`]).
    lookups: Arc<tokio::sync::Semaphore>,
    /// Hosts' checked addresses, with when they were resolved.
    resolved: Arc<std::sync::Mutex<ResolvedHosts>>,
}

type ResolvedHosts = std::collections::HashMap<(String, u16), (Instant, Arc<[SocketAddr]>)>;

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// A sender trusting the Mozilla roots and those of `ca_file`.
    pub fn new(
        ca_file: Option<&Path>,
        allow_private: bool,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| {
                    Error::setting("--webhook-ca-file", format!("{}: {e}", path.display()))
                })?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::setting("--webhook-ca-file", e.to_string()))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::setting("webhooks", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            allow_private,
            timeout,
            lookups: Arc::new(tokio::sync::Semaphore::new(LOOKUPS_AT_ONCE)),
            resolved: Arc::default(),
        })
    }

    /// Sends one delivery; the attempt as the log keeps it.
    pub async fn send(&self, delivery: &Delivery, at: todo_core::Timestamp) -> DeliveryAttempt {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, self.post(delivery, at)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failed("timeout".to_owned())),
        };
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let (status, error) = match outcome {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) if (300..400).contains(&status) => {
                (Some(status), Some("redirect (not followed)".to_owned()))
            }
            Ok(status) => (Some(status), Some(format!("answered {status}"))),
            Err(Failed(error)) => (None, Some(error)),
        };
        DeliveryAttempt {
            webhook_id: delivery.webhook.id,
            position: delivery.change.position,
            kind: delivery.change.kind,
            at,
            status,
            latency_ms,
            error,
        }
    }

    async fn post(&self, delivery: &Delivery, at: todo_core::Timestamp) -> Result<u16, Failed> {
        let url = &delivery.webhook.url;
        if !url.is_https() && !self.allow_private {
            return Err("not https".into());
        }
        let addresses = self.addresses_of(url).await?;
        let body = Bytes::from(todo_http::change_event_body(
            delivery.webhook.owner,
            &delivery.change,
        ));
        let timestamp = at.unix_seconds();
        let signature = todo_auth::webhook_signature(
            &delivery.webhook.secret,
            &delivery.message_id,
            timestamp,
            &body,
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(url.path_and_query().as_ref())
            .header("host", host_header(url))
            .header("content-type", "application/json")
            .header("user-agent", "todo-webhooks/1")
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let mut last = String::from("no address");
        for &address in addresses.iter() {
            let tcp = match tokio::net::TcpStream::connect(address).await {
                Ok(tcp) => tcp,
                Err(error) => {
                    last = format!("connecting: {}", error.kind());
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return if url.is_https() {
                let name = ServerName::try_from(url.host().to_owned())
                    .map_err(|_| "not a host name".to_owned())?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                exchange(TokioIo::new(tls), request).await
            } else {
                exchange(TokioIo::new(tcp), request).await
            };
        }
        Err(last.into())
    }
}

impl WebhookSender {
    /// The checked addresses of `url`'s host: kept ones younger than
    /// [`RESOLVED_FOR`], or a lookup's.
    async fn addresses_of(&self, url: &WebhookUrl) -> Result<Arc<[SocketAddr]>, Failed> {
        let target = (url.host().to_owned(), url.port());
        let now = Instant::now();
        if let Some((at, kept)) = self.kept().get(&target)
            && now.duration_since(*at) < RESOLVED_FOR
        {
            return Ok(Arc::clone(kept));
        }
        // Name lookups block a thread of the pool the API's database calls
        // use, and cannot be cancelled: at most a few at once (a receiver's
        // slow DNS must not take that pool), each holding its place until
        // it ends.
        let place = Arc::clone(&self.lookups)
            .acquire_owned()
            .await
            .map_err(|_| "no name lookup".to_owned())?;
        let lookup = target.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            let _place = place;
            lookup.to_socket_addrs().map(Vec::from_iter)
        })
        .await
        .map_err(|_| "no name lookup".to_owned())?
        .map_err(|_| "the host does not resolve".to_owned())?;
        let checked: Arc<[SocketAddr]> = addresses(resolved, self.allow_private)
            .map_err(str::to_owned)?
            .into();
        let mut kept = self.kept();
        if kept.len() >= RESOLVED_HOSTS {
            let fresh = Instant::now();
            kept.retain(|_, (at, _)| fresh.duration_since(*at) < RESOLVED_FOR);
            if kept.len() >= RESOLVED_HOSTS {
                kept.clear();
            }
        }
        kept.insert(target, (Instant::now(), Arc::clone(&checked)));
        Ok(checked)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, ResolvedHosts> {
        self.resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why an attempt got no status, in a few words for the delivery log.
#[derive(Debug)]
struct Failed(String);

impl<T: Into<String>> From<T> for Failed {
    fn from(why: T) -> Self {
        Self(why.into())
    }
}

/// One HTTP/1.1 request on a fresh connection; its status.
async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> Result<u16, Failed>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    // Read a little of the answer (a receiver's connection may wait for
    // it), never all of it.
    let mut body = response.into_body();
    let mut read = 0usize;
    while read < ANSWER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    driver.abort();
    Ok(status)
}

fn host_header(url: &WebhookUrl) -> String {
    let default = if url.is_https() { 443 } else { 80 };
    let host = if url.host().contains(':') {
        format!("[{}]", url.host())
    } else {
        url.host().to_owned()
    };
    if url.port() == default {
        host
    } else {
        format!("{host}:{}", url.port())
    }
}

/// What the delivery worker does, for `/metrics`: how many of its places
/// are taken now (all 16 for long, while others' deliveries lag, is what
/// the attacks of #15 did), and its attempts that succeeded and failed.
#[derive(Debug, Default)]
pub struct WebhookStats {
    busy: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl WebhookStats {
    /// The worker's places taken now.
    #[must_use]
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Attempts answered with a 2xx so far.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

impl todo_http::Probe for WebhookStats {
    fn ready(&self) -> Result<(), todo_http::NotReady> {
        Ok(())
    }

    fn gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        todo_http::gauge(
            encoder,
            "todo_webhook_places_busy",
            "Places of the webhook delivery worker taken now.",
            i64::try_from(self.busy.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )?;
        todo_http::counter(
            encoder,
            "todo_webhook_deliveries",
            "Delivery attempts a receiver answered with a 2xx.",
            self.delivered.load(Ordering::Relaxed),
        )?;
        todo_http::counter(
            encoder,
            "todo_webhook_failures",
            "Delivery attempts that failed (an error answer, a timeout, no connection).",
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One of the worker's places, counted in [`WebhookStats`] while held.
struct Taken(Arc<WebhookStats>);

impl Taken {
    fn new(stats: Arc<WebhookStats>) -> Self {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Delivers due webhooks until the runtime stops: up to 16 at
/// once, each place leased again as soon as it frees (not in rounds: a
/// slow receiver holds its own place, never a round of others'); when
/// nothing is due, it looks again every second.
pub fn deliver_webhooks_periodically(
    service: WebhookService,
    sender: WebhookSender,
    stats: Arc<WebhookStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let worker = tokio::spawn(deliver_until_stopped(
                service.clone(),
                sender.clone(),
                stats.clone(),
            ));
            match worker.await {
                Err(error) if error.is_panic() => {
                    tracing::error!(target: "todo::webhooks", "the delivery worker failed; starting it again");
                    tokio::time::sleep(LOOK_EVERY).await;
                }
                // Cancelled: the runtime is stopping.
                _ => return,
            }
        }
    })
}

async fn deliver_until_stopped(
    service: WebhookService,
    sender: WebhookSender,
    stats: Arc<WebhookStats>,
) {
    {
        let places = Arc::new(tokio::sync::Semaphore::new(PLACES));
        let lease = lease_length(service.policy());
        loop {
            // Only this loop takes places: once one is free, the others
            // free now stay free until it takes them.
            let Ok(first) = places.clone().acquire_owned().await else {
                return;
            };
            let free = places.available_permits() + 1;
            let leased = {
                let service = service.clone();
                tokio::task::spawn_blocking(move || service.lease_due(free, lease)).await
            };
            let leased = match leased {
                Ok(Ok(leased)) => leased,
                Ok(Err(error)) => {
                    tracing::warn!(target: "todo::webhooks", %error, "leasing due webhooks failed");
                    Vec::new()
                }
                Err(error) if error.is_panic() => {
                    tracing::error!(target: "todo::webhooks", "leasing due webhooks panicked");
                    Vec::new()
                }
                Err(_) => return,
            };
            if leased.is_empty() {
                drop(first);
                tokio::time::sleep(LOOK_EVERY).await;
                continue;
            }
            let mut first = Some(first);
            for leased in leased {
                let place = match first.take() {
                    Some(place) => place,
                    None => match places.clone().try_acquire_owned() {
                        Ok(place) => place,
                        // Cannot happen (see above); the lease runs out.
                        Err(_) => break,
                    },
                };
                let (service, sender) = (service.clone(), sender.clone());
                let taken = Taken::new(stats.clone());
                tokio::spawn(async move {
                    deliver_one(&service, &sender, leased, &taken.0).await;
                    // (The place and the count go back when the task ends,
                    // however it ends: a panic too.)
                    drop((taken, place));
                });
            }
        }
    }
}

/// How long a lease lasts: its time budget ([`LEASE_BUDGET`]), the
/// delivery that may still run when the budget ends, and a margin.
fn lease_length(policy: &todo_core::WebhookPolicy) -> Duration {
    LEASE_BUDGET
        .saturating_add(policy.receiver_timeout)
        .saturating_add(Duration::from_secs(30))
}

/// Sends a leased webhook its next changes, in order, stopping at the
/// first failure, and settles.
async fn deliver_one(
    service: &WebhookService,
    sender: &WebhookSender,
    leased: Leased,
    stats: &WebhookStats,
) {
    let webhook = &leased.webhook;
    let pending = {
        let (service, webhook) = (service.clone(), webhook.clone());
        tokio::task::spawn_blocking(move || service.pending(&webhook, PER_LEASE)).await
    };
    let Ok(Ok(pending)) = pending else {
        tracing::warn!(target: "todo::webhooks", webhook = %webhook.id, "reading a webhook's changes failed");
        return;
    };
    if pending.dropped {
        tracing::warn!(
            target: "todo::webhooks",
            webhook = %webhook.id,
            "changes the log no longer keeps were passed over unsent"
        );
    }
    let mut attempts = Vec::new();
    let started = Instant::now();
    for delivery in &pending.deliveries {
        if started.elapsed() >= LEASE_BUDGET {
            // The rest waits for the next lease: a slow receiver holds a
            // place for one budget (and a delivery) at most.
            break;
        }
        let attempt = sender.send(delivery, service.now()).await;
        let failed = !attempt.succeeded();
        let counted = if failed {
            &stats.failed
        } else {
            &stats.delivered
        };
        counted.fetch_add(1, Ordering::Relaxed);
        if failed {
            tracing::info!(
                target: "todo::webhooks",
                webhook = %webhook.id,
                cursor = %ChangeCursor::new(webhook.owner, delivery.change.position),
                error = attempt.error.as_deref().unwrap_or(""),
                "delivery failed"
            );
        }
        attempts.push(attempt);
        if failed {
            break;
        }
    }
    let settled = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || service.settle(&leased, &pending, attempts)).await
    };
    if !matches!(settled, Ok(Ok(_))) {
        tracing::warn!(target: "todo::webhooks", "settling a webhook's deliveries failed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "168.63.129.16",
            "100.100.100.200",
            "192.0.0.192",
            "fd00:ec2::254",
            "::ffff:168.63.129.16",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "3ffe::1",
            "5f00::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:1ff::1",
            "2002:a00:1::1",
            "100::1",
            "4000::1",
            "::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "168.63.129.17",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            "3fff:1000::1",
            "2a00:1450:4001::1",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_hosts_checked_addresses_serve_its_deliveries_for_a_while() {
        let sender = WebhookSender::new(None, true, Duration::from_secs(1)).unwrap();
        let url = WebhookUrl::parse("https://localhost/hook", false).unwrap();
        let first = sender.addresses_of(&url).await.unwrap();
        assert!(first.iter().all(|a| a.ip().is_loopback()), "{first:?}");
        // Within RESOLVED_FOR: the same addresses, not looked up again.
        let again = sender.addresses_of(&url).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Past it: looked up (and checked) again.
        let key = ("localhost".to_owned(), 443);
        sender.kept().get_mut(&key).unwrap().0 = Instant::now() - RESOLVED_FOR;
        let later = sender.addresses_of(&url).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &later));
        // A host refused is not kept: it is refused at every delivery.
        let strict = WebhookSender::new(None, false, Duration::from_secs(1)).unwrap();
        for _ in 0..2 {
            assert!(strict.addresses_of(&url).await.is_err());
        }
        assert!(strict.kept().is_empty());
    }

    #[test]
    fn lookups_past_the_cap_are_refused_as_overloaded() {
        use std::sync::atomic::Ordering::SeqCst;
        let targets = ResolvingTargets::new(false);
        let url = WebhookUrl::parse("https://127.0.0.1/x", false).unwrap();
        targets.running.store(LOOKUPS_AT_ONCE, SeqCst);
        assert!(matches!(
            targets.check(&url),
            Err(todo_core::Error::Overloaded { .. })
        ));
        targets.running.store(0, SeqCst);
        assert!(matches!(
            targets.check(&url),
            Err(todo_core::Error::Invalid(_))
        ));
        assert_eq!(targets.running.load(SeqCst), 0, "the place is given back");
    }

    #[test]
    fn one_private_address_among_public_ones_refuses_the_host() {
        let public: SocketAddr = "1.1.1.1:443".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:443".parse().unwrap();
        assert_eq!(addresses([public], false), Ok(vec![public]));
        assert!(addresses([public, private], false).is_err());
        assert!(addresses([], false).is_err());
        assert_eq!(addresses([private], true), Ok(vec![private]));
    }

    #[test]
    fn the_host_header_names_the_port_unless_it_is_the_schemes() {
        let url = |raw| WebhookUrl::parse(raw, true).unwrap();
        assert_eq!(host_header(&url("https://example.com/x")), "example.com");
        assert_eq!(
            host_header(&url("https://example.com:8443/x")),
            "example.com:8443"
        );
        assert_eq!(host_header(&url("http://[::1]:80/x")), "[::1]");
        assert_eq!(
            host_header(&url("https://[2001:db8::1]:9/x")),
            "[2001:db8::1]:9"
        );
    }
}
