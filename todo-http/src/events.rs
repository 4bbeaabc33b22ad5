//! `GET /v1/events`: the caller's changes live, as server-sent events.
//!
//! Each event is one change of the log (`id:` its cursor, `event:` its
//! type, `data:` the change as `GET /v1/changes` shows it), read from the
//! log after the subscription is woken ([`ChangeSubscription`]: by this
//! process's writes at once, by other instances' when the database
//! announces them, else within [`POLL`]), so a
//! stream has no gap and no duplicate, and resumes after the last id a
//! client saw (`Last-Event-ID`). A comment every 15 s keeps gateways from
//! closing an idle stream.
//!
//! What a stream may cost is bounded: a few per user
//! ([`MAX_STREAMS_PER_USER`]) and some hundreds per instance; each holds its connection and its client's
//! request slot, so the connection caps count it; what waits unsent is
//! [`BACKLOG`] events and [`BACKLOG_BYTES`] at most (one event, if it is
//! larger), counted until the connection has written them out; besides,
//! the pump holds the rest of its read and the frame it waits to queue;
//! and a client that does not take one for [`STALL`] loses the stream
//! (its HTTP/2 stream reset; over HTTP/1.1, its connection). A stream ends when its token expires or
//! is revoked (checked every [`RECHECK`]), when the server shuts down, and
//! when its client goes away.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response};
use hyper::body::{Body, Frame};
use todo_core::{
    AccessClaims, ApiTokenSecret, Change, ChangeCursor, ChangeLimit, ChangeSubscription,
    CursorError, Error as CoreError, Scope, UserId, ValidationError,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::admission::{ClientSlot, ClientSlots};
use crate::blocking::call;
use crate::extract::{Client, bearer};
use crate::front::LiveStream;
use crate::probe::{NotReady, Probe};
use crate::problem::ApiError;
use crate::server::LiveControl;
use crate::task_api::{ChangeDto, TaskApi};

/// Live streams one user may hold open at once (tabs and devices), per
/// instance.
pub const MAX_STREAMS_PER_USER: usize = 8;

/// The most of a user's streams that API tokens hold: the rest stay for
/// their sign-ins (a script's token must not keep its owner's page from
/// listening; attack of session 26, 4).
pub const MAX_TOKEN_STREAMS_PER_USER: usize = MAX_STREAMS_PER_USER / 2;
/// Live streams one client address (an IPv6 /64) may hold open at once,
/// per instance, whatever the accounts: so that a few addresses cannot
/// take every place of the instance (attack of #15).
pub const MAX_STREAMS_PER_CLIENT: usize = 16;
/// How often a stream's token is checked again: expiry, and revocation
/// (the gate re-reads the account at most a second old).
pub const RECHECK: Duration = Duration::from_millis(500);
/// How often a stream reads the log unwoken, by default
/// ([`TaskApi::with_live_poll`]): what another instance committed (this
/// process wakes its streams for its own writes) shows within this, unless
/// the database announces it.
pub const POLL: Duration = Duration::from_secs(1);
/// How often an idle stream sends a comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events made but not yet taken by the connection, per stream.
pub const BACKLOG: usize = 4;
/// Bytes of events made but not yet taken by the connection, per stream
/// (an event larger than this waits alone): four events of large tasks
/// were some 160 KB a stream, and 256 streams that never read held
/// 184 MiB (session 29's attack, F4).
pub const BACKLOG_BYTES: usize = 64 * 1024;
/// How long an event may wait for a client that does not read before the
/// stream is ended (its HTTP/2 stream reset, or its HTTP/1.1 connection
/// dropped).
pub const STALL: Duration = Duration::from_secs(10);

/// Events read from the log at once.
/// As many as may wait unsent, so that a stream holds at most twice its
/// backlog (a change may be some 40 KB), even while it catches up. (A page
/// this short is never cut for its bytes, `todo_core::PAGE_BYTES`: a full
/// one says more may follow.)
const READ: ChangeLimit = ChangeLimit::clamped(BACKLOG);

/// Streams open, per user ([`MAX_STREAMS_PER_USER`]), per client address
/// ([`MAX_STREAMS_PER_CLIENT`], counted as connections are:
/// [`ClientSlots`]) and in all ([`LiveStreams::DEFAULT_TOTAL`]): each
/// holds a connection for as long as its client keeps it, so that streams
/// cannot take every connection that other requests need.
#[derive(Debug)]
pub(crate) struct LiveStreams {
    open: Arc<Mutex<Open>>,
    clients: Arc<ClientSlots>,
    max_total: usize,
    /// Streams ended because their client stopped reading ([`STALL`]).
    stalled: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Open {
    per_user: HashMap<UserId, usize>,
    /// Of those, the ones opened with an API token.
    by_token: HashMap<UserId, usize>,
    total: usize,
}

impl Default for LiveStreams {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TOTAL)
    }
}

impl LiveStreams {
    /// Streams an instance holds at once unless told otherwise (a quarter
    /// of the default connection cap).
    pub(crate) const DEFAULT_TOTAL: usize = 256;

    pub(crate) fn new(max_total: usize) -> Self {
        Self::with_client_cap(max_total, MAX_STREAMS_PER_CLIENT)
    }

    pub(crate) fn with_client_cap(max_total: usize, per_client: usize) -> Self {
        Self {
            open: Arc::default(),
            clients: ClientSlots::new(per_client),
            max_total,
            stalled: Arc::default(),
        }
    }

    /// The same streams under other caps: the counts in all and per user
    /// carry over (and so does the [`LiveStreams::probe`] already handed
    /// out); the places per client start anew, so this is for a server
    /// being set up, before any stream is open.
    pub(crate) fn with_caps(&self, max_total: usize, per_client: usize) -> Self {
        Self {
            open: Arc::clone(&self.open),
            clients: ClientSlots::new(per_client),
            max_total,
            stalled: Arc::clone(&self.stalled),
        }
    }

    /// Their gauge and counter, for the API's metrics.
    pub(crate) fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(LiveStreamsProbe {
            open: Arc::clone(&self.open),
            stalled: Arc::clone(&self.stalled),
        })
    }

    /// Counts a stream ended because its client stopped reading.
    fn count_stalled(&self) {
        self.stalled.fetch_add(1, Ordering::Relaxed);
    }

    /// A place for one more of `user`'s streams from `client`: 429 past
    /// the user's or the client's, 503 past the instance's.
    fn enter(
        &self,
        user: UserId,
        client: Option<IpAddr>,
        api_token: bool,
    ) -> Result<StreamTicket, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(ApiError::unavailable(Duration::from_secs(5), None));
        }
        let too_many = || -> ApiError {
            CoreError::RateLimited {
                retry_after: Duration::from_secs(5),
            }
            .into()
        };
        if open.per_user.get(&user).copied().unwrap_or(0) >= MAX_STREAMS_PER_USER
            || (api_token
                && open.by_token.get(&user).copied().unwrap_or(0) >= MAX_TOKEN_STREAMS_PER_USER)
        {
            return Err(too_many());
        }
        let client_slot = match client {
            Some(client) => Some(self.clients.try_take(client).ok_or_else(too_many)?),
            None => None,
        };
        *open.per_user.entry(user).or_default() += 1;
        if api_token {
            *open.by_token.entry(user).or_default() += 1;
        }
        open.total += 1;
        Ok(StreamTicket {
            open: Arc::clone(&self.open),
            user,
            api_token,
            _client: client_slot,
        })
    }
}

/// What [`LiveStreams`] report when scraped.
struct LiveStreamsProbe {
    open: Arc<Mutex<Open>>,
    stalled: Arc<AtomicU64>,
}

impl Probe for LiveStreamsProbe {
    fn ready(&self) -> Result<(), NotReady> {
        Ok(())
    }

    fn gauges(
        &self,
        encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        let open = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total;
        crate::metrics::gauge(
            encoder,
            "todo_http_live_streams",
            "Live streams (GET /v1/events) open on this instance.",
            i64::try_from(open).unwrap_or(i64::MAX),
        )?;
        crate::metrics::counter(
            encoder,
            "todo_http_live_streams_stalled",
            "Live streams ended because their clients stopped reading (HTTP/2: the stream reset; HTTP/1.1: the connection dropped).",
            self.stalled.load(Ordering::Relaxed),
        )
    }
}

/// One open stream, counted until dropped.
#[derive(Debug)]
struct StreamTicket {
    open: Arc<Mutex<Open>>,
    user: UserId,
    /// Whether an API token opened it.
    api_token: bool,
    /// Its client's place, given back with it.
    _client: Option<ClientSlot>,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        let Open {
            per_user, by_token, ..
        } = &mut *open;
        let counted = [(per_user, true), (by_token, self.api_token)];
        for (counts, _) in counted.into_iter().filter(|(_, counted)| *counted) {
            if let Some(count) = counts.get_mut(&self.user) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.user);
                }
            }
        }
    }
}

const EVENTS_PARAMS: &[&str] = &["since"];

/// My changes, live (server-sent events).
#[utoipa::path(get, path = "/v1/events",
    params(
        ("since" = Option<String>, Query, description = "a change's cursor: start after it (without it, and without Last-Event-ID, from now)"),
        ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received: resume after it (wins over since)"),
    ),
    responses(
        (status = 200, description = "text/event-stream: one event per change (id: its cursor, event: its type, data: the change as in GET /v1/changes), a comment every 15 s; ends when the token expires or is revoked", content_type = "text/event-stream", body = String),
        (status = 410, description = "Changes after the cursor are no longer kept (urn:todo:problem:changes-gone): list the tasks again"),
        (status = 429, description = "The user has as many live streams open as allowed"),
    ))]
pub(crate) async fn events(
    State(api): State<Arc<TaskApi>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Client(client): Client,
    control: Option<Extension<LiveControl>>,
) -> Result<Response<axum::body::Body>, ApiError> {
    let token = bearer(&headers)?;
    let (owner, credential) = if ApiTokenSecret::is_claimed_by(token) {
        let secret = ApiTokenSecret::parse(token).ok_or_else(ApiError::invalid_token)?;
        let (principal, _) = crate::gate::admit_api_secret(api.gate(), secret.clone()).await?;
        if !principal.grant.allows(Scope::EventsRead) {
            return Err(ApiError::insufficient_scope(Some(Scope::EventsRead)));
        }
        crate::extract::reads_events(&principal)?;
        (principal.user_id, Credential::ApiToken(secret))
    } else {
        let claims = api.verified_claims(token).await?;
        // Within the verifier's leeway past `exp`: the first recheck would
        // end the stream at once, and the client would come straight back.
        if api.gate().has_expired(&claims) {
            return Err(ApiError::invalid_token());
        }
        crate::gate::admit(api.gate(), claims.clone()).await?;
        (claims.subject, Credential::Access(claims))
    };
    let (since, field) = resume_from(&headers, query.as_deref())?;
    let by_token = matches!(credential, Credential::ApiToken(_));
    let ticket = api.live_streams().enter(owner, client, by_token)?;
    let live = call(api.service(), move |s| {
        // A cursor that is not this stream's is named where it came from.
        s.subscribe(owner, since.as_ref())
            .map_err(|error| match error {
                CoreError::Invalid(_) => CoreError::Invalid(vec![ValidationError::Format {
                    field,
                    what: "change cursor",
                }]),
                other => other,
            })
    })
    .await?;
    let (events, backlog) = queue();
    let pump = Pump {
        api,
        owner,
        credential,
        events,
        control: control.map(|Extension(control)| control),
        _held: (
            ticket,
            crate::blocking::REQUEST_SLOT.try_with(Arc::clone).ok(),
        ),
    };
    tokio::spawn(pump.run(live));
    let mut response = Response::new(axum::body::Body::new(backlog));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    // nginx would otherwise hold events back to fill its buffers.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.extensions_mut().insert(LiveStream);
    Ok(response)
}

/// How a `since` cursor that does not parse is answered: 400, or 410 for
/// a cursor of the log as it was before it was recorded once per project
/// (its reader starts over, as after retention).
pub(crate) fn cursor_refused(error: CursorError) -> ApiError {
    match error {
        CursorError::Malformed => ApiError::validation(vec![todo_core::BAD_CURSOR]),
        CursorError::Outdated => ApiError::from(CoreError::Gone),
    }
}

/// Where a stream starts: after `Last-Event-ID`, else after `since`, else
/// now; and the name of where the cursor came from.
fn resume_from(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Option<ChangeCursor>, &'static str), ApiError> {
    let invalid = |e| ApiError::validation(vec![e]);
    let mut since = None;
    // (`query_pairs` lets through only the names listed.)
    for (_, value) in crate::request::query_pairs(query, EVENTS_PARAMS)? {
        since = Some(ChangeCursor::parse(&value).map_err(cursor_refused)?);
    }
    match headers.get("last-event-id") {
        Some(value) => {
            let bad = || {
                invalid(ValidationError::Format {
                    field: "Last-Event-ID",
                    what: "change cursor",
                })
            };
            let value = value.to_str().map_err(|_| bad())?;
            let cursor = ChangeCursor::parse(value).map_err(|e| match e {
                CursorError::Outdated => ApiError::from(CoreError::Gone),
                CursorError::Malformed => bad(),
            })?;
            Ok((Some(cursor), "Last-Event-ID"))
        }
        None => Ok((since, "since")),
    }
}

/// Feeds one stream: reads what is new when woken, sends it, and watches
/// the token, the server and the client.
struct Pump {
    api: Arc<TaskApi>,
    owner: UserId,
    credential: Credential,
    events: EventSender,
    control: Option<LiveControl>,
    /// Held for as long as the stream runs.
    _held: (StreamTicket, Option<Arc<ClientSlot>>),
}

impl Pump {
    async fn run(mut self, mut live: ChangeSubscription) {
        let owner = self.owner;
        let start = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval_at(start + HEARTBEAT, HEARTBEAT);
        let mut recheck = tokio::time::interval_at(start + RECHECK, RECHECK);
        let every = self.api.live_poll();
        let mut poll = tokio::time::interval_at(start + every, every);
        for timer in [&mut heartbeat, &mut recheck, &mut poll] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // The starting point as the first id: a client that loses the
        // stream before any change resumes from it, not from a later now.
        let start = format!("retry: 2000\nid: {}\n\n", live.cursor());
        if !self.send(Bytes::from(start)).await {
            return;
        }
        loop {
            // The read blocks on the store: off the async workers.
            let read = tokio::task::spawn_blocking(move || {
                let changes = live.read(READ);
                (live, changes)
            })
            .await;
            let Ok((back, changes)) = read else { return };
            live = back;
            let changes = match changes {
                Ok(changes) => changes,
                Err(CoreError::Gone) => {
                    // Retention passed the stream: the client reconnects
                    // and hears 410.
                    return;
                }
                Err(error) => {
                    // The store failing (a database restarting, say): the
                    // stream waits and reads again, rather than sending
                    // every client back at once to a 503.
                    tracing::warn!(target: "todo::http", %error, "a live stream's read failed; retrying");
                    tokio::select! {
                        () = stopped(self.control.as_mut()) => return,
                        () = self.events.closed() => return,
                        () = tokio::time::sleep(POLL) => continue,
                    }
                }
            };
            let full = changes.len() == READ.get();
            // (each change let go once it is an event: a stream that waits
            // on its client holds the rest, not the whole read twice)
            for change in changes {
                let Some(frame) = event(owner, &change) else {
                    return;
                };
                if !self.send(frame).await {
                    return;
                }
            }
            // Shutdown, a client gone and a due recheck come first, also
            // while catching up (a full page reads on at once).
            tokio::select! {
                biased;
                () = stopped(self.control.as_mut()) => return,
                () = self.events.closed() => return,
                _ = recheck.tick() => {
                    if !self.still_admitted().await {
                        return;
                    }
                }
                () = std::future::ready(()), if full => {}
                () = live.changed() => {}
                _ = poll.tick() => {}
                _ = heartbeat.tick() => {
                    if !self.send(Bytes::from_static(b": keep-alive\n\n")).await {
                        return;
                    }
                }
            }
        }
    }

    /// Hands a frame to the connection; false when the stream must end.
    async fn send(&mut self, frame: Bytes) -> bool {
        match tokio::time::timeout(STALL, self.events.send(frame)).await {
            Ok(sent) => sent,
            Err(_) => {
                // The client stopped reading: free what its stream holds
                // (over HTTP/1.1, its connection).
                tracing::info!(target: "todo::http", "live stream stalled; ending it");
                self.api.live_streams().count_stalled();
                if let Some(control) = &self.control {
                    control.end_stream();
                }
                false
            }
        }
    }

    async fn still_admitted(&self) -> bool {
        let gate = self.api.gate();
        match &self.credential {
            Credential::Access(claims) => {
                !gate.has_expired(claims) && crate::gate::admit(gate, claims.clone()).await.is_ok()
            }
            // (an API token's expiry and end are weighed by its admission)
            Credential::ApiToken(secret) => crate::gate::admit_api_secret(gate, secret.clone())
                .await
                .is_ok(),
        }
    }
}

/// What a stream was opened with, weighed again every recheck: the stream
/// ends with it.
enum Credential {
    /// A login's access token, by its verified claims.
    Access(AccessClaims),
    /// An API token with `events:read`.
    ApiToken(ApiTokenSecret),
}

/// Resolves when shutdown begins; never without a server of ours.
async fn stopped(control: Option<&mut LiveControl>) {
    match control {
        Some(control) => control.stopped().await,
        None => std::future::pending().await,
    }
}

/// One change as an event.
fn event(owner: UserId, change: &Change) -> Option<Bytes> {
    let cursor = ChangeCursor::new(owner, change.position).to_string();
    // (the change's weight is at least its JSON: the frame never grows,
    // and is fitted to what it holds after)
    let mut frame = Vec::with_capacity(128 + change.json_bytes());
    frame.extend_from_slice(b"id: ");
    frame.extend_from_slice(cursor.as_bytes());
    frame.extend_from_slice(b"\nevent: ");
    frame.extend_from_slice(change.kind.as_str().as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    // Compact JSON escapes every line break: one `data:` line.
    serde_json::to_writer(&mut frame, &ChangeDto::of(owner, change)).ok()?;
    frame.extend_from_slice(b"\n\n");
    Some(Bytes::from(crate::front::fitted(frame)))
}

/// A stream's frames between its pump and its connection: at most
/// [`BACKLOG`] of them and [`BACKLOG_BYTES`] (one frame, if it is larger).
fn queue() -> (EventSender, Backlog) {
    let (events, backlog) = mpsc::channel(BACKLOG);
    let room = Arc::new(Semaphore::new(BACKLOG_BYTES));
    (
        EventSender { events, room },
        Backlog {
            frames: backlog,
            taken: None,
        },
    )
}

/// The pump's end of a stream's [`queue`].
struct EventSender {
    events: mpsc::Sender<(Bytes, OwnedSemaphorePermit)>,
    /// Bytes the queue may still take.
    room: Arc<Semaphore>,
}

impl EventSender {
    /// Queues `frame` once there is room for it; false when the connection
    /// is gone.
    async fn send(&self, frame: Bytes) -> bool {
        // (`BACKLOG_BYTES` fits in a u32: the conversion cannot fail)
        let bytes = u32::try_from(frame.len().min(BACKLOG_BYTES)).unwrap_or(u32::MAX);
        let Ok(room) = Arc::clone(&self.room).acquire_many_owned(bytes).await else {
            return false;
        };
        self.events.send((frame, room)).await.is_ok()
    }

    /// Resolves when the connection is gone.
    async fn closed(&self) {
        self.events.closed().await;
    }
}

/// The stream's body: the frames the pump made, as the connection takes
/// them. A frame's room in the queue is given back when the connection
/// asks for the next one: by then it has written the frame out (an HTTP/1
/// connection holds the frame it writes whole).
struct Backlog {
    frames: mpsc::Receiver<(Bytes, OwnedSemaphorePermit)>,
    /// The room of the frame the connection took last.
    taken: Option<OwnedSemaphorePermit>,
}

impl Body for Backlog {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.taken = None;
        self.frames.poll_recv(cx).map(|frame| {
            frame.map(|(bytes, room)| {
                self.taken = Some(room);
                Ok(Frame::data(bytes))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use uuid::Uuid;

    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_queues_its_backlog_of_events_and_of_bytes_at_most() {
        use http_body_util::BodyExt;
        let (events, mut backlog) = queue();
        let waits = |sending: &tokio::task::JoinHandle<bool>| !sending.is_finished();
        // Large events: one fits, the next waits until the first is taken.
        let large = Bytes::from(vec![b'x'; 40 * 1024]);
        assert!(events.send(large.clone()).await);
        let events = Arc::new(events);
        let second = tokio::spawn({
            let events = Arc::clone(&events);
            let large = large.clone();
            async move { events.send(large).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(waits(&second), "80 KB would be queued");
        // Taken, the first is still counted while the connection writes
        // it out: until the connection asks for the next.
        let taken = backlog.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(taken.len(), large.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(waits(&second), "the first is being written");
        let taken = backlog.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            taken.len(),
            large.len(),
            "the second, once the first was written"
        );
        assert!(second.await.unwrap());
        // One event larger than the whole room still goes, alone.
        let huge = Bytes::from(vec![b'y'; BACKLOG_BYTES * 2]);
        let huge = tokio::spawn({
            let events = Arc::clone(&events);
            async move { events.send(huge).await }
        });
        let taken = backlog.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(taken.len(), BACKLOG_BYTES * 2);
        assert!(huge.await.unwrap());
        let small = tokio::spawn({
            let events = Arc::clone(&events);
            async move { events.send(Bytes::from_static(b": keep-alive\n\n")).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(waits(&small), "the large one fills the room");
        drop(backlog.frame().await);
        assert!(small.await.unwrap());
        // Small events: at most BACKLOG of them.
        for _ in 0..BACKLOG {
            assert!(events.send(Bytes::from_static(b"e")).await);
        }
        let over = tokio::spawn({
            let events = Arc::clone(&events);
            async move { events.send(Bytes::from_static(b"e")).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(waits(&over), "past the backlog's count");
        // A connection gone: the pump hears it.
        drop(backlog);
        assert!(!over.await.unwrap());
        assert!(!events.send(Bytes::from_static(b"e")).await);
    }

    #[test]
    fn places_are_capped_per_user_per_client_address_and_in_all() {
        let streams = LiveStreams::new(40);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held = Vec::new();
        // One user: 8.
        for _ in 0..MAX_STREAMS_PER_USER {
            held.push(streams.enter(user(1), Some(here), false).unwrap());
        }
        assert_eq!(
            streams
                .enter(user(1), None, false)
                .unwrap_err()
                .status
                .as_u16(),
            429
        );
        // One address, other users: 16 in all.
        for n in 2..=9 {
            held.push(streams.enter(user(n), Some(here), false).unwrap());
        }
        assert_eq!(
            streams
                .enter(user(10), Some(here), false)
                .unwrap_err()
                .status
                .as_u16(),
            429
        );
        // An IPv6 /64 is one client.
        let (a, b): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        for n in 0..16 {
            let from = if n % 2 == 0 { a } else { b };
            held.push(streams.enter(user(100 + n), Some(from), false).unwrap());
        }
        assert_eq!(
            streams
                .enter(user(200), Some(a), false)
                .unwrap_err()
                .status
                .as_u16(),
            429
        );
        // The instance's 40: 32 held, 8 more from elsewhere, then 503.
        for n in 0..8 {
            held.push(streams.enter(user(300 + n), None, false).unwrap());
        }
        assert_eq!(
            streams
                .enter(user(400), None, false)
                .unwrap_err()
                .status
                .as_u16(),
            503
        );
        // Places come back.
        held.clear();
        assert!(streams.enter(user(1), Some(here), false).is_ok());
        let open = streams.open.lock().unwrap();
        assert_eq!(
            (open.total, open.per_user.len(), streams.clients.addresses()),
            (0, 0, 0)
        );
    }

    #[test]
    fn api_tokens_hold_at_most_half_of_a_users_places() {
        let streams = LiveStreams::new(40);
        let mut held = Vec::new();
        for _ in 0..MAX_TOKEN_STREAMS_PER_USER {
            held.push(streams.enter(user(1), None, true).unwrap());
        }
        assert_eq!(
            streams
                .enter(user(1), None, true)
                .unwrap_err()
                .status
                .as_u16(),
            429
        );
        // The sign-ins keep the rest.
        for _ in MAX_TOKEN_STREAMS_PER_USER..MAX_STREAMS_PER_USER {
            held.push(streams.enter(user(1), None, false).unwrap());
        }
        // A sign-in's place that comes back is no token's.
        held.pop();
        assert_eq!(
            streams
                .enter(user(1), None, true)
                .unwrap_err()
                .status
                .as_u16(),
            429
        );
        // Places come back, the tokens' counted apart.
        held.clear();
        assert!(streams.enter(user(1), None, true).is_ok());
        let open = streams.open.lock().unwrap();
        assert_eq!((open.total, open.by_token.len()), (0, 0));
    }
}
