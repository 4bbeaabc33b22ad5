//! The relay to RabbitMQ (`--amqp-url`): every change of the log published
//! to a durable topic exchange, with publisher confirms.
//!
//! The log is the queue ([`todo_core::RelayService`]): the relay leases
//! streams that are behind, publishes each one's next changes in order on
//! one confirming channel, and settles how far the broker confirmed. A
//! change is settled only once the broker has confirmed it and every
//! change before it in its stream: a broker that restarts, a connection
//! that drops or an instance that dies leaves the rest to be published
//! again (at least once, in commit order per user, from where it stopped).
//!
//! A message: routing key the change's type (`task.created`, …); body
//! `{type, timestamp, data}` as a webhook's; `message_id`
//! `<owner>_<number>` (the same on every republication: consumers
//! deduplicate on it), headers `owner_id` and `seq`; persistent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prometheus_client::encoding::DescriptorEncoder;
use todo_core::{Change, ChangeCursor, LeasedStream, LogPosition, RelayBatch, RelayService};

use crate::error::Error;

/// Streams leased in one round.
const LEASED_AT_ONCE: usize = 32;
/// Changes of a stream published under one lease.
const PER_LEASE: usize = 100;
/// How long a lease lasts: well past one batch's confirmation.
const LEASE: Duration = Duration::from_secs(60);
/// How long the broker has to confirm one stream's batch; then the
/// connection is counted as lost.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle relay looks for new changes.
const IDLE_LOOK_EVERY: Duration = Duration::from_millis(250);
/// The first wait before reaching the broker again, doubling each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between attempts to reach the broker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the relay has done, for `/metrics` (a probe that is always
/// ready: a broker out of reach delays the relay, not the API).
#[derive(Debug, Default)]
pub struct RelayStats {
    connected: AtomicBool,
    published: AtomicU64,
    unroutable: AtomicU64,
}

impl RelayStats {
    /// Whether the relay holds a connection to the broker now.
    #[must_use]
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Changes the broker confirmed so far.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

impl todo_http::Probe for RelayStats {
    fn ready(&self) -> Result<(), todo_http::NotReady> {
        Ok(())
    }

    fn gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        todo_http::gauge(
            encoder,
            "todo_relay_connected",
            "Whether the relay holds a connection to the broker (1) or not (0).",
            i64::from(self.connected.load(Ordering::Relaxed)),
        )?;
        todo_http::counter(
            encoder,
            "todo_relay_published",
            "Changes the broker confirmed (a change published again counts again).",
            self.published.load(Ordering::Relaxed),
        )?;
        todo_http::counter(
            encoder,
            "todo_relay_unroutable",
            "Confirmed changes the exchange routed to no queue (dropped by the broker).",
            self.unroutable.load(Ordering::Relaxed),
        )
    }
}

/// Where to publish.
#[derive(Clone)]
pub struct AmqpTarget {
    url: String,
    exchange: String,
    /// Certificates (PEM) an `amqps://` broker may also chain to.
    extra_roots: Option<String>,
}

impl std::fmt::Debug for AmqpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTarget")
            .field("url", &todo_store::redact_url(&self.url))
            .field("exchange", &self.exchange)
            .finish()
    }
}

impl AmqpTarget {
    /// The broker at `url` (`amqp://user:password@host:5672/vhost`, or
    /// `amqps://…:5671/…` over TLS, the broker's certificate checked
    /// against the Mozilla roots), its exchange `exchange`. Refuses what
    /// cannot be used: a malformed URL, an empty exchange name or one of
    /// the broker's own.
    pub fn new(url: &str, exchange: &str) -> Result<Self, Error> {
        // The parser's own message may quote the URL, password and all.
        let parsed: lapin::uri::AMQPUri = url.parse().map_err(|_: String| {
            Error::setting(
                "--amqp-url",
                "not an AMQP URL (amqp://user:password@host:5672/vhost)",
            )
        })?;
        if parsed.authority.host.is_empty() {
            return Err(Error::setting("--amqp-url", "names no host"));
        }
        if exchange.is_empty() || exchange.len() > 127 || exchange.starts_with("amq.") {
            return Err(Error::setting(
                "--amqp-exchange",
                "1 to 127 bytes, not starting with amq. (the broker's own)",
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            exchange: exchange.to_owned(),
            extra_roots: None,
        })
    }

    /// The same target, an `amqps://` broker's certificate also trusted if
    /// it chains to one of `pem`'s (a private CA).
    pub fn with_extra_roots(mut self, pem: String) -> Result<Self, Error> {
        use rustls_pki_types::pem::PemObject as _;
        let parsed = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::setting("--amqp-ca-file", e.to_string()))?;
        if parsed.is_empty() {
            return Err(Error::setting("--amqp-ca-file", "holds no certificate"));
        }
        // Each must be a usable root: the TLS connector skips those that
        // are not, and every connection would then fail unexplained.
        let mut roots = rustls::RootCertStore::empty();
        for certificate in parsed {
            roots
                .add(certificate)
                .map_err(|e| Error::setting("--amqp-ca-file", e.to_string()))?;
        }
        if !self.is_tls() {
            return Err(Error::setting(
                "--amqp-ca-file",
                "given with a plain amqp:// URL: use amqps://",
            ));
        }
        self.extra_roots = Some(pem);
        Ok(self)
    }

    /// Whether the broker is reached over TLS (`amqps://`).
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("amqps://"))
    }

    /// The exchange published to.
    #[must_use]
    pub fn exchange(&self) -> &str {
        &self.exchange
    }
}

/// Relays changes to `target` until the runtime stops: reconnecting with
/// backoff whenever the broker is out of reach, and started again should
/// the relay itself fail.
pub fn relay_changes(
    service: RelayService,
    target: AmqpTarget,
    stats: Arc<RelayStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let relay = tokio::spawn(relay_until_stopped(
                service.clone(),
                target.clone(),
                stats.clone(),
            ));
            match relay.await {
                Err(error) if error.is_panic() => {
                    stats.connected.store(false, Ordering::Relaxed);
                    tracing::error!(target: "todo::relay", "the relay failed; starting it again");
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
                // Cancelled: the runtime is stopping.
                _ => return,
            }
        }
    })
}

async fn relay_until_stopped(service: RelayService, target: AmqpTarget, stats: Arc<RelayStats>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match connect(&target).await {
            Ok((connection, channel)) => {
                tracing::info!(target: "todo::relay", exchange = %target.exchange, "connected to the broker");
                stats.connected.store(true, Ordering::Relaxed);
                let ended = relay_while_connected(&service, &target, &channel, &stats).await;
                stats.connected.store(false, Ordering::Relaxed);
                tracing::warn!(target: "todo::relay", error = %ended.why, "the broker connection was lost; unconfirmed changes will be published again");
                if ended.moved {
                    // Back off from the first wait only after progress: a
                    // broker that accepts connections but refuses every
                    // message is not retried twice a second for ever.
                    backoff = FIRST_BACKOFF;
                }
                // Closing may fail, or hang, on a dead connection; it is
                // dropped anyway.
                let _ = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    connection.close(0, "relay reconnecting".into()),
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(target: "todo::relay", %error, url = %todo_store::redact_url(&target.url), "cannot reach the broker");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A connection, and a confirming channel with the exchange declared.
async fn connect(target: &AmqpTarget) -> Result<(Connection, Channel), Unreachable> {
    let properties =
        ConnectionProperties::default().with_connection_name("todo change relay".into());
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: target.extra_roots.clone(),
    };
    let runtime = lapin::runtime::default_runtime()?;
    let connection = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect_with_config(&target.url, properties, tls, runtime),
    )
    .await
    .map_err(|_| Unreachable::TimedOut("connecting"))??;
    let channel = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .exchange_declare(
                target.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>(channel)
    })
    .await
    .map_err(|_| Unreachable::TimedOut("opening a channel"))??;
    Ok((connection, channel))
}

/// Why the relay could not reach the broker, or set up its channel.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    #[error("{0} timed out")]
    TimedOut(&'static str),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// Why a connection's relaying ended, and whether it moved any stream.
struct Ended {
    why: String,
    moved: bool,
}

/// How one leased stream went.
enum Relayed {
    /// Published and confirmed through this change (perhaps no further
    /// than before).
    Through(LogPosition),
    /// Confirmed through this change, then the broker failed.
    Failed(LogPosition, String),
    /// Its changes could not be read: the lease is left to run out, so
    /// that the stream is tried again a lease later, not at once.
    Unread,
}

/// Relays rounds until the connection fails.
async fn relay_while_connected(
    service: &RelayService,
    target: &AmqpTarget,
    channel: &Channel,
    stats: &RelayStats,
) -> Ended {
    let mut moved_at_all = false;
    loop {
        let leased = {
            let service = service.clone();
            tokio::task::spawn_blocking(move || service.lease(LEASED_AT_ONCE, LEASE)).await
        };
        let leased_at = tokio::time::Instant::now();
        let leased = match leased {
            Ok(Ok(leased)) => leased,
            Ok(Err(error)) => {
                tracing::warn!(target: "todo::relay", %error, "leasing streams failed");
                tokio::time::sleep(IDLE_LOOK_EVERY).await;
                continue;
            }
            Err(_) => {
                return Ended {
                    why: "the runtime is stopping".to_owned(),
                    moved: moved_at_all,
                };
            }
        };
        if !channel.status().connected() {
            // Released unmoved below, as after any failure.
        } else if leased.is_empty() {
            tokio::time::sleep(IDLE_LOOK_EVERY).await;
            continue;
        }
        let mut lost = (!channel.status().connected()).then(|| "the channel closed".to_owned());
        let mut moved = false;
        for stream in leased {
            // After a failure, the remaining leases are released unmoved;
            // so are those too near their end to finish a batch under
            // them (a slow broker): another relay could take them over
            // meanwhile and publish the same changes.
            let time_left = LEASE.saturating_sub(leased_at.elapsed());
            let outcome = if lost.is_some() || time_left < CONFIRM_TIMEOUT * 3 {
                Relayed::Through(stream.stream.relayed_through)
            } else {
                relay_stream(service, target, channel, &stream, stats).await
            };
            let through = match outcome {
                Relayed::Through(through) => through,
                Relayed::Failed(through, error) => {
                    lost = Some(error);
                    through
                }
                Relayed::Unread => continue,
            };
            moved |= through > stream.stream.relayed_through;
            let service = service.clone();
            let settled =
                tokio::task::spawn_blocking(move || service.settle(&stream, through)).await;
            match settled {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::info!(target: "todo::relay", owner = %stream.stream.owner, "a lease ended before it was settled (it ran out, or the user is gone); its changes will be published again if they remain");
                }
                Ok(Err(error)) => {
                    tracing::warn!(target: "todo::relay", %error, "settling a relayed stream failed");
                }
                Err(_) => {}
            }
        }
        moved_at_all |= moved;
        if let Some(why) = lost {
            return Ended {
                why,
                moved: moved_at_all,
            };
        }
        if !moved {
            // Nothing moved (streams that could not be read, or were near
            // their lease's end): not again at once.
            tokio::time::sleep(IDLE_LOOK_EVERY).await;
        }
    }
}

/// Publishes a leased stream's next changes and waits for the broker's
/// confirmations: how far the stream got (every change through it
/// confirmed, in order), and why it stopped if it failed.
async fn relay_stream(
    service: &RelayService,
    target: &AmqpTarget,
    channel: &Channel,
    leased: &LeasedStream,
    stats: &RelayStats,
) -> Relayed {
    let batch: RelayBatch = {
        let (service, leased) = (service.clone(), *leased);
        match tokio::task::spawn_blocking(move || service.pending(&leased, PER_LEASE)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::warn!(target: "todo::relay", owner = %leased.stream.owner, %error, "reading a stream's changes failed; trying again after its lease");
                return Relayed::Unread;
            }
            Err(_) => return Relayed::Unread,
        }
    };
    if batch.dropped {
        tracing::warn!(
            target: "todo::relay",
            owner = %leased.stream.owner,
            "changes the log no longer keeps were passed over unpublished"
        );
    }
    let mut through = batch.skipped_through;
    // Published back to back, then confirmed: the broker confirms a
    // channel's messages in the order they were published.
    let mut confirms = Vec::with_capacity(batch.changes.len());
    for change in &batch.changes {
        let (body, properties) = message(leased.stream.owner, change);
        // Bounded: a broker short of memory or disk blocks publishers.
        let published = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            channel.basic_publish(
                target.exchange.as_str().into(),
                change.kind.as_str().into(),
                // Returned when no queue takes it: counted and logged.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            ),
        )
        .await;
        let error = match published {
            Ok(Ok(confirm)) => {
                confirms.push((change.position, confirm));
                continue;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "publishing timed out (is the broker blocking publishers?)".to_owned(),
        };
        // What was published before it may still be confirmed.
        let through = confirmed_through(through, confirms).await;
        return Relayed::Failed(through, error);
    }
    let mut unroutable = 0_u64;
    let result = tokio::time::timeout(CONFIRM_TIMEOUT, async {
        for (seq, confirm) in confirms {
            match confirm.await {
                Ok(answer) if answer.is_ack() => {
                    // Acked but returned: the exchange routed it to no
                    // queue, and the broker dropped it, as it does any
                    // publisher's (OPERATIONS.md: bind queues first).
                    unroutable += u64::from(answer.take_message().is_some());
                    stats.published.fetch_add(1, Ordering::Relaxed);
                    through = seq;
                }
                Ok(_) => return Err("the broker refused a message (nack)".to_owned()),
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    })
    .await;
    if unroutable > 0 {
        stats.unroutable.fetch_add(unroutable, Ordering::Relaxed);
        tracing::warn!(
            target: "todo::relay",
            owner = %leased.stream.owner,
            unroutable,
            exchange = %target.exchange,
            "changes were routed to no queue: bind a queue to the exchange for them"
        );
    }
    match result {
        Ok(Ok(())) => Relayed::Through(through),
        Ok(Err(error)) => Relayed::Failed(through, error),
        Err(_) => Relayed::Failed(through, "the broker did not confirm in time".to_owned()),
    }
}

/// The number of the last change of an unbroken run of confirmations
/// from the start, waiting a little for each.
async fn confirmed_through(
    mut through: LogPosition,
    confirms: Vec<(LogPosition, lapin::PublisherConfirm)>,
) -> LogPosition {
    for (seq, confirm) in confirms {
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(answer)) if answer.is_ack() => through = seq,
            _ => break,
        }
    }
    through
}

/// A change as a message: its body and properties.
fn message(owner: todo_core::UserId, change: &Change) -> (Vec<u8>, BasicProperties) {
    let body = todo_http::change_event_body(owner, change);
    let mut headers = FieldTable::default();
    headers.insert(
        "owner_id".into(),
        AMQPValue::LongString(owner.to_string().into()),
    );
    // (the change's number in the log, rising in each owner's messages;
    // `cursor` resumes `GET /v1/changes` after it)
    headers.insert(
        "seq".into(),
        AMQPValue::LongLongInt(i64::try_from(change.position.get()).unwrap_or(i64::MAX)),
    );
    headers.insert(
        "cursor".into(),
        AMQPValue::LongString(ChangeCursor::new(owner, change.position).to_string().into()),
    );
    let seconds = u64::try_from(change.at.unix_micros() / 1_000_000).unwrap_or(0);
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2) // persistent: kept across a broker restart
        .with_message_id(format!("{}_{}", owner.as_uuid().simple(), change.position.get()).into())
        .with_timestamp(seconds)
        .with_type(change.kind.as_str().into())
        .with_app_id("todo".into())
        .with_headers(headers);
    (body, properties)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_refuse_what_cannot_be_used() {
        assert!(AmqpTarget::new("amqp://guest:guest@127.0.0.1:5672/%2f", "todo.changes").is_ok());
        assert!(AmqpTarget::new("amqps://relay:pw@broker.example:5671/%2f", "x").is_ok());
        for (url, exchange) in [
            ("http://broker.example/", "todo.changes"),
            ("not a url", "todo.changes"),
            ("amqp://127.0.0.1:5672/%2f", ""),
            ("amqp://127.0.0.1:5672/%2f", "amq.topic"),
        ] {
            assert!(AmqpTarget::new(url, exchange).is_err(), "{url} {exchange}");
        }
        // The password is never printed, nor in a malformed URL's error.
        let target = AmqpTarget::new("amqp://relay:s3cret@127.0.0.1:5672/%2f", "x").unwrap();
        assert!(!format!("{target:?}").contains("s3cret"));
        assert!(
            target
                .clone()
                .with_extra_roots("not pem".to_owned())
                .is_err()
        );
        for malformed in [
            "amqp://relay:s3cret@[::1/%2f",
            "amqp://relay:s3cret@host:99999/",
        ] {
            let error = AmqpTarget::new(malformed, "x").unwrap_err();
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }
}
