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
//! ([`MAX_STREAMS_PER_USER`]); each holds its connection and its client's
//! request slot, so the connection caps count it; what waits unsent is a
//! channel of [`BACKLOG`] events, and a client that does not take one for
//! [`STALL`] loses its connection. A stream ends when its token expires or
//! is revoked (checked every [`RECHECK`]), when the server shuts down, and
//! when its client goes away.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
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
    AccessClaims, Change, ChangeCursor, ChangeLimit, ChangeSubscription, Error as CoreError,
    UserId, ValidationError,
};
use tokio::sync::mpsc;

use crate::admission::ClientSlot;
use crate::blocking::call;
use crate::extract::bearer;
use crate::front::LiveStream;
use crate::problem::ApiError;
use crate::server::LiveControl;
use crate::task_api::{ChangeDto, TaskApi};

/// Live streams one user may hold open at once (tabs and devices).
pub const MAX_STREAMS_PER_USER: usize = 8;
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
/// How long an event may wait for a client that does not read before the
/// connection is dropped.
pub const STALL: Duration = Duration::from_secs(10);

/// Events read from the log at once.
const READ: ChangeLimit = ChangeLimit::LARGEST;

/// Streams open per user (the cap of [`MAX_STREAMS_PER_USER`]).
#[derive(Debug, Default)]
pub(crate) struct LiveStreams {
    open: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl LiveStreams {
    fn enter(&self, user: UserId) -> Option<StreamTicket> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(user).or_default();
        if *count >= MAX_STREAMS_PER_USER {
            return None;
        }
        *count += 1;
        Some(StreamTicket {
            open: Arc::clone(&self.open),
            user,
        })
    }
}

/// One open stream, counted until dropped.
struct StreamTicket {
    open: Arc<Mutex<HashMap<UserId, usize>>>,
    user: UserId,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
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
    control: Option<Extension<LiveControl>>,
) -> Result<Response<axum::body::Body>, ApiError> {
    let claims = api.verified_claims(bearer(&headers)?).await?;
    crate::gate::admit(api.gate(), claims.clone()).await?;
    let owner = claims.subject;
    let since = resume_from(&headers, query.as_deref())?;
    let Some(ticket) = api.live_streams().enter(owner) else {
        return Err(CoreError::RateLimited {
            retry_after: Duration::from_secs(5),
        }
        .into());
    };
    let live = call(api.service(), move |s| s.subscribe(owner, since.as_ref())).await?;
    let (events, backlog) = mpsc::channel(BACKLOG);
    let pump = Pump {
        api,
        claims,
        events,
        control: control.map(|Extension(control)| control),
        _held: (
            ticket,
            crate::blocking::REQUEST_SLOT.try_with(Arc::clone).ok(),
        ),
    };
    tokio::spawn(pump.run(live));
    let mut response = Response::new(axum::body::Body::new(Backlog(backlog)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    // nginx would otherwise hold events back to fill its buffers.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.extensions_mut().insert(LiveStream);
    Ok(response)
}

/// Where a stream starts: after `Last-Event-ID`, else after `since`, else now.
fn resume_from(headers: &HeaderMap, query: Option<&str>) -> Result<Option<ChangeCursor>, ApiError> {
    let invalid = |e| ApiError::validation(vec![e]);
    let mut since = None;
    for (name, value) in crate::request::query_pairs(query, EVENTS_PARAMS)? {
        match name.as_str() {
            "since" => since = Some(ChangeCursor::parse(&value).map_err(invalid)?),
            other => return Err(ApiError::field(other, "unknown query parameter")),
        }
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
            ChangeCursor::parse(value).map(Some).map_err(|_| bad())
        }
        None => Ok(since),
    }
}

/// Feeds one stream: reads what is new when woken, sends it, and watches
/// the token, the server and the client.
struct Pump {
    api: Arc<TaskApi>,
    claims: AccessClaims,
    events: mpsc::Sender<Bytes>,
    control: Option<LiveControl>,
    /// Held for as long as the stream runs.
    _held: (StreamTicket, Option<Arc<ClientSlot>>),
}

impl Pump {
    async fn run(mut self, mut live: ChangeSubscription) {
        let owner = self.claims.subject;
        let start = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval_at(start + HEARTBEAT, HEARTBEAT);
        let mut recheck = tokio::time::interval_at(start + RECHECK, RECHECK);
        let every = self.api.live_poll();
        let mut poll = tokio::time::interval_at(start + every, every);
        for timer in [&mut heartbeat, &mut recheck, &mut poll] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        if !self.send(Bytes::from_static(b"retry: 2000\n\n")).await {
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
                Err(error) => {
                    // Gone (retention passed the stream) or the store
                    // failing: the client reconnects and hears which.
                    tracing::debug!(target: "todo::http", %error, "live stream ends");
                    return;
                }
            };
            let full = changes.len() == READ.get();
            for change in &changes {
                let Some(frame) = event(owner, change) else {
                    return;
                };
                if !self.send(frame).await {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = live.changed() => {}
                _ = poll.tick() => {}
                _ = heartbeat.tick() => {
                    if !self.send(Bytes::from_static(b": keep-alive\n\n")).await {
                        return;
                    }
                }
                _ = recheck.tick() => {
                    if !self.still_admitted().await {
                        return;
                    }
                }
                () = stopped(self.control.as_mut()) => return,
                () = self.events.closed() => return,
            }
        }
    }

    /// Hands a frame to the connection; false when the stream must end.
    async fn send(&mut self, frame: Bytes) -> bool {
        match tokio::time::timeout(STALL, self.events.send(frame)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                // The client stopped reading: free its connection too.
                tracing::info!(target: "todo::http", "live stream stalled; dropping its connection");
                if let Some(control) = &self.control {
                    control.drop_connection();
                }
                false
            }
        }
    }

    async fn still_admitted(&self) -> bool {
        let gate = self.api.gate();
        !gate.has_expired(&self.claims)
            && crate::gate::admit(gate, self.claims.clone()).await.is_ok()
    }
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
    let cursor = ChangeCursor::new(owner, change.seq).to_string();
    let mut frame = Vec::with_capacity(640);
    frame.extend_from_slice(b"id: ");
    frame.extend_from_slice(cursor.as_bytes());
    frame.extend_from_slice(b"\nevent: ");
    frame.extend_from_slice(change.kind.as_str().as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    // Compact JSON escapes every line break: one `data:` line.
    serde_json::to_writer(&mut frame, &ChangeDto::of(owner, change)).ok()?;
    frame.extend_from_slice(b"\n\n");
    Some(Bytes::from(frame))
}

/// The stream's body: the frames the pump made, as the connection takes them.
struct Backlog(mpsc::Receiver<Bytes>);

impl Body for Backlog {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}
