//! Webhooks: a user's URL to which every change of theirs (of the kinds
//! they chose) is posted, signed as Standard Webhooks do, at least once and
//! in the order of their stream. The change log is the queue: a webhook
//! remembers how far it has delivered (`delivered_through`, a number in
//! its owner's stream), so nothing is copied per delivery, a restart
//! resumes where it stopped, and a webhook made now starts after the
//! changes already made.
//!
//! What a delivery is and when it is tried again is decided here
//! ([`WebhookService`]); the sending (DNS, TCP, TLS, HTTP) is an adapter's.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use std::sync::Arc;

use crate::change::{Change, ChangeKind, LogPosition};
use crate::error::{Error, RandomError, Result, StoreError, TokenRejection, ValidationError};
use crate::ports::{RateLimiter, TaskStore, Unlimited};
use crate::random::{Random, new_v7};
use crate::time::{Clock, Timestamp};
use crate::user::{UserId, uuid_id};

uuid_id!(
    /// A webhook's id (UUIDv7).
    WebhookId,
    "id"
);

/// Where deliveries go: an `https` URL of at most 2 KiB (`http` only where
/// the operator allows it, for tests), with a host, no user name or
/// password, no fragment, and only visible ASCII.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    raw: String,
    secure: bool,
    /// Byte range of the host in `raw` (brackets of an IPv6 literal excluded).
    host: (usize, usize),
    port: u16,
    /// Where the path (and query) start in `raw`; `raw.len()` if none.
    path: usize,
}

impl WebhookUrl {
    /// The longest URL, in bytes.
    pub const MAX_BYTES: usize = 2048;

    /// Parses an `https` URL; `allow_plain` also takes `http`.
    pub fn parse(raw: &str, allow_plain: bool) -> Result<Self, ValidationError> {
        let bad = |what| ValidationError::Format { field: "url", what };
        if raw.len() > Self::MAX_BYTES {
            return Err(ValidationError::Length {
                field: "url",
                min: 1,
                max: Self::MAX_BYTES,
            });
        }
        // RFC 3986's characters only (visible ASCII but `"<>\\^`{|}`):
        // what an HTTP request line can carry.
        if !raw
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b))
        {
            return Err(bad("URL (the characters of RFC 3986 only)"));
        }
        let (secure, rest) = if let Some(rest) = strip_prefix_ignore_case(raw, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(raw, "http://") {
            if !allow_plain {
                return Err(bad("https URL"));
            }
            (false, rest)
        } else {
            return Err(bad("https URL"));
        };
        let start = raw.len() - rest.len();
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        if authority.contains('@') {
            return Err(bad("URL without a user name or password"));
        }
        if raw.contains('#') {
            return Err(bad("URL without a fragment"));
        }
        let (host, port) = if let Some(literal) = authority.strip_prefix('[') {
            let end = literal
                .find(']')
                .ok_or(bad("URL (an unclosed IPv6 address)"))?;
            let host = &literal[..end];
            match host.parse::<std::net::Ipv6Addr>() {
                Err(_) => return Err(bad("URL (not an IPv6 address)")),
                // Its TLS name would be the IPv6 form, which no certificate
                // carries: every delivery would fail.
                Ok(ip) if ip.to_ipv4_mapped().is_some() => {
                    return Err(bad("URL (an IPv4 address written as itself)"));
                }
                Ok(_) => {}
            }
            ((start + 1, start + 1 + end), &literal[end + 1..])
        } else {
            let end = authority.find(':').unwrap_or(authority.len());
            let host = &authority[..end];
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(bad("URL (a host name of letters, digits, '-' and '.')"));
            }
            // A host whose last label is a number is an IPv4 address to
            // URL parsers and resolvers (WHATWG, inet_aton), which read
            // `0127.0.0.1` as octal, `0x7f.1` as hex and `2130706433` as
            // one number: only the plain dotted-decimal form is taken, so
            // what is checked is what the URL says to everyone.
            let last = host.trim_end_matches('.').rsplit('.').next().unwrap_or("");
            let numeric = !last.is_empty()
                && (last.bytes().all(|b| b.is_ascii_digit())
                    || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")));
            if numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(bad("URL (an IPv4 address in plain dotted decimal)"));
            }
            ((start, start + end), &authority[end..])
        };
        let port = match port {
            "" => {
                if secure {
                    443
                } else {
                    80
                }
            }
            colon => colon
                .strip_prefix(':')
                .filter(|digits| !digits.is_empty() && digits.len() <= 5)
                .and_then(|digits| digits.parse::<u16>().ok())
                .filter(|port| *port != 0)
                .ok_or(bad("URL (a port of 1 to 65535)"))?,
        };
        Ok(Self {
            raw: raw.to_owned(),
            secure,
            host,
            port,
            path: start + authority_len,
        })
    }

    /// The URL as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether it is `https`.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.secure
    }

    /// The host: a name, or an IP address (an IPv6 one without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.raw[self.host.0..self.host.1]
    }

    /// The port, explicit or the scheme's.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query (`/` when the URL has no path).
    #[must_use]
    pub fn path_and_query(&self) -> std::borrow::Cow<'_, str> {
        match &self.raw[self.path..] {
            "" => "/".into(),
            query if query.starts_with('?') => format!("/{query}").into(),
            path => path.into(),
        }
    }
}

fn strip_prefix_ignore_case<'a>(raw: &'a str, prefix: &str) -> Option<&'a str> {
    let head = raw.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &raw[prefix.len()..])
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.raw)
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The kinds of change a webhook is sent: a non-empty set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Vec<ChangeKind>);

impl EventFilter {
    /// Every kind.
    #[must_use]
    pub fn all() -> Self {
        Self(ChangeKind::ALL.to_vec())
    }

    /// Parses a list of kind names (`task.created`, …): at least one, each once.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, ValidationError> {
        let mut kinds = Vec::new();
        for name in names {
            let kind = ChangeKind::parse(name).ok_or(ValidationError::Format {
                field: "events",
                what: "list of event types (task.*, reminder.due, project.*, member.*)",
            })?;
            if kinds.contains(&kind) {
                return Err(ValidationError::Duplicate { field: "events" });
            }
            kinds.push(kind);
        }
        if kinds.is_empty() {
            return Err(ValidationError::Blank { field: "events" });
        }
        Ok(Self(kinds))
    }

    /// Whether a change of `kind` is sent.
    #[must_use]
    pub fn accepts(&self, kind: ChangeKind) -> bool {
        self.0.contains(&kind)
    }

    /// The kinds, in the order given.
    #[must_use]
    pub fn kinds(&self) -> &[ChangeKind] {
        &self.0
    }
}

/// The key deliveries are signed with: `whsec_` and 32 random bytes in
/// base64, shown to its owner once, at creation. Printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    const PREFIX: &'static str = "whsec_";

    /// A new random secret.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        let mut key = Zeroizing::new([0u8; 32]);
        random.fill(&mut key[..])?;
        Ok(Self(Zeroizing::new(format!(
            "{}{}",
            Self::PREFIX,
            STANDARD.encode(&key[..])
        ))))
    }

    /// The secret as shown and stored.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret read back from storage, if it is one this crate made.
    pub fn parse_stored(secret: String) -> Result<Self, ValidationError> {
        let secret = Self(Zeroizing::new(secret));
        match secret.decode() {
            Some(key) if key.len() >= 24 => Ok(secret),
            _ => Err(ValidationError::Format {
                field: "secret",
                what: "webhook secret",
            }),
        }
    }

    fn decode(&self) -> Option<Zeroizing<Vec<u8>>> {
        let encoded = self.0.strip_prefix(Self::PREFIX)?;
        STANDARD.decode(encoded).ok().map(Zeroizing::new)
    }

    /// The HMAC key: the bytes after the prefix (Standard Webhooks); empty
    /// only for a secret not made by [`WebhookSecret::generate`] (which
    /// [`WebhookSecret::parse_stored`] refuses).
    #[must_use]
    pub fn key(&self) -> Zeroizing<Vec<u8>> {
        self.decode().unwrap_or_default()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// Whose changes it is sent.
    pub owner: UserId,
    /// Where.
    pub url: WebhookUrl,
    /// Which kinds.
    pub events: EventFilter,
    /// The signing key.
    pub secret: WebhookSecret,
    /// When it was made.
    pub created_at: Timestamp,
    /// The owner's changes up to here are delivered (or skipped).
    pub delivered_through: LogPosition,
    /// Failed attempts in a row (0 while deliveries succeed).
    pub attempts: u32,
    /// Not tried again before this.
    pub next_attempt_at: Timestamp,
    /// Since when deliveries fail without a success between.
    pub failing_since: Option<Timestamp>,
    /// When it was disabled (failing for [`WebhookPolicy::retry_for`]).
    pub disabled_at: Option<Timestamp>,
}

/// One attempt to deliver a change, as the delivery log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The change's position in the log.
    pub position: LogPosition,
    /// The change's kind.
    pub kind: ChangeKind,
    /// When the attempt started.
    pub at: Timestamp,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// How long the attempt took, in milliseconds.
    pub latency_ms: u32,
    /// Why it failed, in a few words, if it did.
    pub error: Option<String>,
}

impl DeliveryAttempt {
    /// Whether the receiver took it (a 2xx answer).
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// How many times as long as its lease took a slow webhook waits before
/// its next ([`WebhookPolicy::slow_after`]): it holds a worker's place a
/// fifth of the time at most.
pub const SLOW_COOL_DOWN: u32 = 4;

/// When deliveries are tried again, and given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// The wait after the first failure; it doubles with each one after.
    pub first_retry: Duration,
    /// The longest wait between attempts.
    pub longest_wait: Duration,
    /// How long a webhook may fail without a success before it is disabled.
    pub retry_for: Duration,
    /// How long a receiver is given to answer.
    pub receiver_timeout: Duration,
    /// Webhooks one user may have; `None`: no limit.
    pub max_per_user: Option<u64>,
    /// Attempts kept in a webhook's delivery log.
    pub attempts_kept: usize,
    /// A lease in which one attempt took longer than this (answered or
    /// not) makes the webhook wait [`SLOW_COOL_DOWN`] times as long as the
    /// lease took before its next: a receiver that answers slowly cannot
    /// keep the delivery worker's places from everyone else's. Judged per
    /// attempt, so a distant receiver that answers each delivery in half
    /// a second is not slowed for taking ten of them.
    pub slow_after: Duration,
    /// Webhooks of one owner leased at once, across every instance (a
    /// race of two instances' leases may give one more each): a user's
    /// slow receivers take this many of the workers' places at most,
    /// however many webhooks and accounts' worth of writes they have.
    /// (The attack of #15 held every place of an instance with 16
    /// receivers answering in 2.9 s, from two accounts.)
    pub leases_per_owner: usize,
    /// `http` URLs and private, loopback and link-local targets allowed:
    /// for tests, never for a deployment others use.
    pub allow_private: bool,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(5),
            longest_wait: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
            receiver_timeout: Duration::from_secs(10),
            max_per_user: Some(10),
            attempts_kept: 100,
            slow_after: Duration::from_secs(3),
            leases_per_owner: 1,
            allow_private: false,
        }
    }
}

impl WebhookPolicy {
    /// The wait before the next attempt after `failures` failures in a row.
    #[must_use]
    pub fn wait_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.longest_wait)
    }
}

/// What a delivery carries: the change as `GET /v1/changes` shows it,
/// rendered by the adapter, and the ids the signature covers.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook it goes to.
    pub webhook: Webhook,
    /// The change.
    pub change: Change,
    /// `webhook-id`: the same for every attempt of this change to this
    /// webhook, so a receiver can drop duplicates.
    pub message_id: String,
}

impl Delivery {
    pub(crate) fn new(webhook: Webhook, change: Change) -> Self {
        let message_id = format!(
            "msg_{}_{}",
            webhook.id.as_uuid().simple(),
            change.position.get()
        );
        Self {
            webhook,
            change,
            message_id,
        }
    }
}

/// Where webhooks are kept, with their delivery logs. Every call about a
/// user's webhook takes the owner, and another owner's is not found.
pub trait WebhookStore: Send + Sync {
    /// Stores `webhook` if its owner has fewer than `max` (`None`: no
    /// limit), in one atomic step; `false` when at the limit.
    fn insert_webhook_within(
        &self,
        webhook: &Webhook,
        max: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// The owner's webhooks, oldest first.
    fn webhooks_of(&self, owner: UserId) -> Result<Vec<Webhook>, StoreError>;
    /// Deletes the owner's webhook, and its log; `false` if there is none.
    fn delete_webhook(&self, owner: UserId, id: WebhookId) -> Result<bool, StoreError>;
    /// The newest `limit` attempts of the owner's webhook, newest first;
    /// `None` if the owner has no such webhook.
    fn delivery_log(
        &self,
        owner: UserId,
        id: WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError>;
    /// Leases, until `lease_until`, up to `limit` webhooks that are
    /// enabled, due at `now`, behind their owner's stream, and not leased
    /// (or whose lease ran out): atomically, so that of several instances
    /// asking at once each webhook goes to one. An owner with `per_owner`
    /// webhooks leased (until `now` or later) gets no more; of an owner's
    /// due webhooks, those due first are leased first; and the owners
    /// whose last lease was done longest ago (never, first) come before
    /// the others, so that a place that frees goes to whoever waited
    /// longest, not to the owner whose lease just freed it. Returns them
    /// as leased.
    fn lease_due_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        per_owner: usize,
    ) -> Result<Vec<Webhook>, StoreError>;
    /// Writes what a lease did, if the webhook is still leased until
    /// `settled.lease_until` (else another instance has it now, and
    /// nothing is written: its deliveries may repeat, at least once).
    /// Keeps the newest `settled.log_kept` attempts of the log.
    fn settle_webhook(&self, settled: &WebhookSettlement) -> Result<bool, StoreError>;
}

/// What one lease of a webhook did: [`WebhookStore::settle_webhook`].
#[derive(Debug, Clone)]
pub struct WebhookSettlement {
    /// The webhook.
    pub id: WebhookId,
    /// The lease it was done under.
    pub lease_until: Timestamp,
    /// Delivered (or skipped) through this change now.
    pub delivered_through: LogPosition,
    /// Failed attempts in a row now.
    pub attempts: u32,
    /// When to try again.
    pub next_attempt_at: Timestamp,
    /// Since when it has been failing, if it is.
    pub failing_since: Option<Timestamp>,
    /// Set if it is disabled now.
    pub disabled_at: Option<Timestamp>,
    /// The attempts made under the lease, oldest first.
    pub log: Vec<DeliveryAttempt>,
    /// How many attempts the log keeps.
    pub log_kept: usize,
    /// When the lease was done: the owner's turn ends then, and owners who
    /// finished longer ago are leased before them.
    pub settled_at: Timestamp,
}

/// Whether a webhook's host may be sent to: the adapter resolves it and
/// refuses private, loopback and link-local addresses (the server's own
/// network must not be reachable through a user's webhook).
pub trait TargetCheck: Send + Sync {
    /// `Ok` if every address of the URL's host is one deliveries may go to;
    /// invalid input (naming `url`) if not; [`Error::Overloaded`] when it
    /// cannot look now (lookups are bounded: they hold threads).
    fn check(&self, url: &WebhookUrl) -> Result<()>;
}

/// Users' webhooks, and the rules of their deliveries.
#[derive(Clone)]
pub struct WebhookService {
    store: Arc<dyn WebhookStore>,
    tasks: Arc<dyn TaskStore>,
    targets: Arc<dyn TargetCheck>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    policy: WebhookPolicy,
    writes_per_user: Arc<dyn RateLimiter<UserId>>,
}

impl fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl WebhookService {
    /// Webhooks in `store`, reading changes from `tasks`, their hosts
    /// checked by `targets`.
    #[must_use]
    pub fn new(
        store: Arc<dyn WebhookStore>,
        tasks: Arc<dyn TaskStore>,
        targets: Arc<dyn TargetCheck>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        policy: WebhookPolicy,
    ) -> Self {
        Self {
            store,
            tasks,
            targets,
            clock,
            random,
            policy,
            writes_per_user: Arc::new(Unlimited),
        }
    }

    /// The same service, limiting each user's creations and deletions
    /// (each creation resolves a host name: not at any rate).
    #[must_use]
    pub fn with_write_limit(mut self, writes_per_user: Arc<dyn RateLimiter<UserId>>) -> Self {
        self.writes_per_user = writes_per_user;
        self
    }

    fn spend_write(&self, owner: UserId) -> Result<()> {
        self.writes_per_user
            .check(&owner)
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }

    /// The rules it applies.
    #[must_use]
    pub fn policy(&self) -> &WebhookPolicy {
        &self.policy
    }

    /// Parses a webhook URL as this deployment takes them: `https` on port
    /// 443 only, unless the policy allows private targets (a receiver on
    /// any port would let users probe which ports of a host answer, from
    /// the server's address, through the delivery log).
    pub fn parse_url(&self, raw: &str) -> std::result::Result<WebhookUrl, ValidationError> {
        let url = WebhookUrl::parse(raw, self.policy.allow_private)?;
        if !self.policy.allow_private && url.port() != 443 {
            return Err(ValidationError::Format {
                field: "url",
                what: "https URL on port 443",
            });
        }
        Ok(url)
    }

    /// A new webhook of `owner`'s, sent the changes made from now on.
    /// Fails as invalid input when the host resolves to an address that
    /// is not public (unless the policy allows it), and with
    /// [`Error::QuotaExceeded`] past the owner's allowance.
    pub fn create(&self, owner: UserId, url: WebhookUrl, events: EventFilter) -> Result<Webhook> {
        self.spend_write(owner)?;
        // The quota first: a user at it makes no name lookup.
        if let Some(max) = self.policy.max_per_user
            && self.store.webhooks_of(owner)?.len() as u64 >= max
        {
            return Err(Error::QuotaExceeded {
                what: "webhooks",
                limit: max,
            });
        }
        if !self.policy.allow_private {
            self.targets.check(&url)?;
        }
        let now = self.clock.now();
        let head = self.tasks.changes_after(owner, LogPosition::START, 0)?.head;
        let webhook = Webhook {
            id: WebhookId::from_uuid(new_v7(now, &*self.random)?),
            owner,
            url,
            events,
            secret: WebhookSecret::generate(&*self.random)?,
            created_at: now,
            delivered_through: head,
            attempts: 0,
            next_attempt_at: now,
            failing_since: None,
            disabled_at: None,
        };
        match self
            .store
            .insert_webhook_within(&webhook, self.policy.max_per_user)
        {
            Ok(true) => Ok(webhook),
            Ok(false) => Err(Error::QuotaExceeded {
                what: "webhooks",
                limit: self.policy.max_per_user.unwrap_or_default(),
            }),
            Err(StoreError::MissingReference(_)) => {
                Err(Error::InvalidToken(TokenRejection::Revoked))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The owner's webhooks, oldest first.
    pub fn list(&self, owner: UserId) -> Result<Vec<Webhook>> {
        Ok(self.store.webhooks_of(owner)?)
    }

    /// Deletes the owner's webhook; [`Error::NotFound`] if there is none.
    pub fn delete(&self, owner: UserId, id: WebhookId) -> Result<()> {
        self.spend_write(owner)?;
        if self.store.delete_webhook(owner, id)? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// The owner's webhook's newest attempts, newest first.
    pub fn deliveries(&self, owner: UserId, id: WebhookId) -> Result<Vec<DeliveryAttempt>> {
        self.store
            .delivery_log(owner, id, self.policy.attempts_kept)?
            .ok_or(Error::NotFound)
    }

    /// Leases up to `limit` webhooks that have changes to deliver, for
    /// `lease`; each is this caller's until then.
    pub fn lease_due(&self, limit: usize, lease: Duration) -> Result<Vec<Leased>> {
        let now = self.clock.now();
        let until = now.saturating_add(lease);
        let leased =
            self.store
                .lease_due_webhooks(now, until, limit, self.policy.leases_per_owner)?;
        Ok(leased
            .into_iter()
            .map(|webhook| Leased { webhook, until })
            .collect())
    }

    /// The next changes a leased webhook is to be sent, of those among
    /// the next `limit` of its owner's stream, in order: deliver them in
    /// order, stopping at the first failure. Changes of other kinds, and
    /// those retention dropped, are passed over.
    pub fn pending(&self, webhook: &Webhook, limit: usize) -> Result<Pending> {
        let log = self
            .tasks
            .changes_after(webhook.owner, webhook.delivered_through, limit)?;
        // Changes dropped before they were sent (retention, a project's
        // cap) are not in the read, and counted for the log. The mark is
        // no floor for the rest: it is one project's (or the owner's
        // own), and the stream's other changes below it are still there
        // to send (review of session 22, M2: another user's busy project
        // made a member's webhook skip the member's own changes).
        let dropped = log.pruned_through > webhook.delivered_through;
        let mut skipped_through = webhook.delivered_through;
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut covers: Vec<LogPosition> = Vec::new();
        for change in log.changes {
            if change.position <= skipped_through {
                continue;
            }
            let seq = change.position;
            if webhook.events.accepts(change.kind) {
                deliveries.push(Delivery::new(webhook.clone(), change));
                covers.push(seq);
            } else if let Some(last) = covers.last_mut() {
                // Passed over once the delivery before it is taken.
                *last = seq;
            } else {
                skipped_through = seq;
            }
        }
        // Nothing to send in what the read looked at: the webhook moves on
        // past it (a quiet owner behind a busy log would otherwise be read
        // from the same place for ever: review of session 22).
        if deliveries.is_empty() {
            skipped_through = skipped_through.max(log.scanned_through);
        }
        Ok(Pending {
            deliveries,
            covers,
            skipped_through,
            dropped,
        })
    }

    /// Writes what a lease did: the attempts made, one per delivery of
    /// `pending` in its order (a failure ends them), and how far it got. A failure waits longer each time
    /// ([`WebhookPolicy::wait_after`]); a webhook failing for
    /// [`WebhookPolicy::retry_for`] without a success is disabled.
    pub fn settle(
        &self,
        leased: &Leased,
        pending: &Pending,
        attempts: Vec<DeliveryAttempt>,
    ) -> Result<bool> {
        let (webhook, lease_until) = (&leased.webhook, leased.until);
        let now = self.clock.now();
        let mut through = pending.skipped_through;
        let (mut failed, mut succeeded) = (false, false);
        for (attempt, covers) in attempts.iter().zip(&pending.covers) {
            if attempt.succeeded() {
                through = through.max(*covers);
                succeeded = true;
            } else {
                failed = true;
                break;
            }
        }
        // A receiver slow to answer (any one attempt over `slow_after`,
        // failed or not) waits at least SLOW_COOL_DOWN times as long as
        // the lease took: it cannot keep a place of the worker busy.
        let took = Duration::from_millis(attempts.iter().map(|a| u64::from(a.latency_ms)).sum());
        let slow = attempts
            .iter()
            .any(|a| Duration::from_millis(u64::from(a.latency_ms)) > self.policy.slow_after);
        let cool_down = if slow {
            took.saturating_mul(SLOW_COOL_DOWN)
        } else {
            Duration::ZERO
        };
        let (attempts_in_a_row, failing_since, next, disabled_at) = if failed {
            // A success earlier in the lease ends the run of failures: a
            // receiver that takes most deliveries is not disabled.
            let (before, since) = if succeeded {
                (0, now)
            } else {
                (webhook.attempts, webhook.failing_since.unwrap_or(now))
            };
            let in_a_row = before.saturating_add(1);
            let disabled = (now.duration_since(since) >= self.policy.retry_for).then_some(now);
            let wait = self.policy.wait_after(in_a_row).max(cool_down);
            (in_a_row, Some(since), now.saturating_add(wait), disabled)
        } else {
            (0, None, now.saturating_add(cool_down), None)
        };
        Ok(self.store.settle_webhook(&WebhookSettlement {
            id: webhook.id,
            lease_until,
            delivered_through: through,
            attempts: attempts_in_a_row,
            next_attempt_at: next,
            failing_since,
            disabled_at,
            log: attempts,
            log_kept: self.policy.attempts_kept,
            settled_at: now,
        })?)
    }

    /// The time, for adapters that stamp attempts.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A webhook leased to the caller until `until` ([`WebhookService::lease_due`]).
#[derive(Debug, Clone)]
pub struct Leased {
    /// The webhook, as leased.
    pub webhook: Webhook,
    /// The lease's end, which also names it.
    pub until: Timestamp,
}

/// What a leased webhook is to be sent next: [`WebhookService::pending`].
#[derive(Debug, Clone)]
pub struct Pending {
    /// The changes to send, in order.
    pub deliveries: Vec<Delivery>,
    /// How far the webhook has got once each delivery is taken: its own
    /// change, and those of other kinds after it.
    pub covers: Vec<LogPosition>,
    /// How far the webhook moves on without sending anything (changes of
    /// other kinds before the first delivery, or, when there is nothing to
    /// send, as far as the read looked).
    pub skipped_through: LogPosition,
    /// Whether the log dropped changes before they were sent (retention,
    /// or a project's cap): passed over.
    pub dropped: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_https_with_a_host_and_nothing_that_hides_where_they_go() {
        let url = WebhookUrl::parse("https://hooks.example.com:8443/in?x=1", false).unwrap();
        assert_eq!(
            (url.host(), url.port(), url.path_and_query(), url.is_https()),
            ("hooks.example.com", 8443, "/in?x=1".into(), true)
        );
        let bare = WebhookUrl::parse("HTTPS://example.com", false).unwrap();
        assert_eq!((bare.port(), bare.path_and_query()), (443, "/".into()));
        let query = WebhookUrl::parse("https://example.com?x=1", false).unwrap();
        assert_eq!(query.path_and_query(), "/?x=1");
        let v6 = WebhookUrl::parse("https://[2001:db8::1]/h", false).unwrap();
        assert_eq!((v6.host(), v6.port()), ("2001:db8::1", 443));
        assert!(WebhookUrl::parse("http://127.0.0.1:9/x", true).is_ok());
        // Dotted decimal, and names with digits that are not numbers.
        for fine in [
            "https://93.184.216.34/",
            "https://123.example.com/",
            "https://example.com1/",
            "https://0xcafe.example/",
        ] {
            assert!(WebhookUrl::parse(fine, false).is_ok(), "{fine}");
        }
        for bad in [
            "http://example.com/",
            "ftp://example.com/",
            "example.com",
            "https://",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://exa mple.com/",
            "https://example.com:0/",
            "https://example.com:65536/",
            "https://example.com:/",
            "https://[::1/",
            "https://[nope]/",
            "https://ex_ample.com/",
            "https://example.com/\u{e9}",
            "https://example.com/<script>",
            "https://example.com/a`b",
            "https://example.com/{x}",
            "https://[::ffff:1.1.1.1]/",
            // Numbers that parsers read as IPv4 addresses in other forms.
            "https://0127.0.0.1/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://127.1/",
            "https://1.2.3.04/",
            "https://example.0x10/",
            "https://foo.123/",
            "https://1.2.3.4./",
        ] {
            let refused = WebhookUrl::parse(bad, false);
            assert!(refused.is_err(), "{bad}");
            assert_eq!(refused.unwrap_err().field(), "url");
        }
        let long = format!("https://example.com/{}", "a".repeat(WebhookUrl::MAX_BYTES));
        assert!(matches!(
            WebhookUrl::parse(&long, false),
            Err(ValidationError::Length { field: "url", .. })
        ));
    }

    #[test]
    fn filters_take_known_kinds_once_each() {
        let filter = EventFilter::parse(["task.deleted", "task.created"]).unwrap();
        assert!(
            filter.accepts(ChangeKind::TaskCreated) && !filter.accepts(ChangeKind::TaskUpdated)
        );
        for bad in [
            vec![],
            vec!["task.created", "task.created"],
            vec!["task.exploded"],
        ] {
            let refused = EventFilter::parse(bad.iter().copied());
            assert_eq!(refused.unwrap_err().field(), "events", "{bad:?}");
        }
    }

    #[test]
    fn waits_double_from_the_first_to_the_longest() {
        let policy = WebhookPolicy::default();
        let waits: Vec<u64> = (1..=12).map(|n| policy.wait_after(n).as_secs()).collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(policy.wait_after(u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn secrets_carry_32_random_bytes_and_never_print() {
        struct Sevens;
        impl Random for Sevens {
            fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
                buf.fill(7);
                Ok(())
            }
        }
        let secret = WebhookSecret::generate(&Sevens).unwrap();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(*secret.key(), vec![7u8; 32]);
        assert_eq!(format!("{secret:?}"), "<redacted>");
        let stored = WebhookSecret::parse_stored(secret.expose().to_owned()).unwrap();
        assert_eq!(*stored.key(), vec![7u8; 32]);
        for corrupt in ["", "whsec_", "whsec_!!!", "nope_AAAA", "whsec_AAAA"] {
            assert!(
                WebhookSecret::parse_stored(corrupt.to_owned()).is_err(),
                "{corrupt}"
            );
        }
    }
}
