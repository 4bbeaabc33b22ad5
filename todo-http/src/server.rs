//! The accept loop: a cap on connections and a smaller one per client
//! address, TCP_NODELAY, TLS with a handshake deadline, HTTP/1.1 and HTTP/2
//! with head-size and head-time limits, bounded HTTP/2 streams and windows,
//! a deadline for every stage of a connection, and a graceful shutdown that
//! answers every request on a connection it accepted.
//!
//! The stages, each bounded by `header_read_timeout` (T):
//! - the TLS handshake: T from accept;
//! - the first request (its whole head, after protocol detection and the
//!   HTTP/2 preface): T from the handshake, else the connection is dropped;
//! - idle: a connection with no request in flight for T is closed
//!   gracefully (HTTP/1.1 keep-alive, HTTP/2 without open streams: GOAWAY);
//!   one that has not finished T after that (a peer that stopped reading
//!   its responses) is dropped. HTTP/1.1 heads after the first are bounded
//!   by hyper's header timer (T); HTTP/2 peers are pinged every T and
//!   dropped when a ping goes unanswered for T;
//! - sending: a larger answer keeps its request in flight while it is
//!   sent, however slowly it is read, and is ended once it has handed no
//!   piece to the connection for T, each answer on its own clock; an answer
//!   that gives way to a read or write the response budget cannot pay
//!   (`sending`), or a live stream whose client stopped reading, is ended
//!   alike: its HTTP/2 stream is reset alone (the connection's other
//!   streams, another user's behind an HTTP/2 proxy, go on), or its
//!   HTTP/1.1 connection, which carries only it, is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http::header::HeaderValue;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::admission::{ClientSlot, ClientSlots};
use crate::front::{Answer, Api, Frontend, ResponseBody};
use crate::sending::{DropHandle, Paid, Reserved, ResponseBudget, WriteRoom};

/// How long, once shutdown has begun, a connection that has not yet
/// delivered a request may take to deliver its first one. Its client has
/// usually sent it already: closing the connection unanswered would leave
/// the client unsure whether a write happened.
const FIRST_REQUEST_WINDOW: Duration = Duration::from_secs(1);

/// Serves `front` on `listener` until `shutdown` resolves; then stops
/// accepting, answers every request on a connection it accepted (in-flight
/// ones, and the first request of connections that had none yet), within
/// the grace period, and returns.
pub async fn serve<A: Api>(
    front: Arc<Frontend<A>>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = front.limits().clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut builder = auto::Builder::new(StreamExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 when a head does not fit this buffer, which is
        // not exact (a kept-alive connection's may have grown): `Frontend`
        // weighs every head against the limit too.
        .max_buf_size(limits.max_head_bytes.max(8192));
    // Flow-control windows sized to the body limit: a stream never needs
    // more, and what a connection's streams hold unread stays small.
    let window = u32::try_from(limits.max_body_bytes)
        .unwrap_or(u32::MAX)
        .clamp(1, MAX_WINDOW);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams.max(1))
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .adaptive_window(false)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout)
        // What h2 buffers per stream beyond the client's window: the rest
        // of a response waits in its `Budgeted` body, paid for.
        .max_send_buf_size(RESPONSE_CHUNK * 2);
    // A trusted proxy's connection carries many clients' requests, whose
    // cancellations it passes on: its allowance of streams reset before
    // they are accepted is all its streams' many times over, so that one
    // client's burst of cancels does not close every client's connection
    // (session 33's second attack, F1; the proxy guards its own clients).
    let mut proxies_builder = builder.clone();
    proxies_builder
        .http2()
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS_FROM_PROXIES);
    let accepted = Accepted {
        slots: Arc::clone(front.client_slots()),
        front,
        builder: Arc::new(builder),
        proxies_builder: Arc::new(proxies_builder),
        tls,
        connections: Arc::clone(&connections),
        responses: Arc::new(ResponseBudget::new(
            limits.body_budget_bytes,
            limits.max_body_bytes,
        )),
        stopping,
        deadline: limits.header_read_timeout,
        send_stall: limits.send_stall,
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(target: "todo::http", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        accepted.spawn(stream, peer);
    }
    stopping_tx.send_replace(true);
    // Connections the kernel completed before we stopped carry requests
    // their clients already sent: serve them instead of resetting them.
    loop {
        tokio::select! {
            biased;
            Ok((stream, peer)) = listener.accept() => accepted.spawn(stream, peer),
            () = std::future::ready(()) => break,
        }
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => tracing::info!(target: "todo::http", "all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(target: "todo::http", "shutdown grace period over; closing the rest");
        }
    }
}

/// The largest HTTP/2 flow-control window (RFC 9113, 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Streams a client may open and reset before the server has accepted
/// them (the "rapid reset" guard), per connection.
const MAX_PENDING_RESETS: usize = 20;

/// The same for a trusted proxy's connections, which carry many clients.
const MAX_PENDING_RESETS_FROM_PROXIES: usize = 1024;

tokio::task_local! {
    /// The HTTP/2 stream a request came on, which a stalled answer's
    /// give-way resets alone (see [`StreamExecutor`]).
    static STREAM: Arc<DropHandle>;
}

/// Runs hyper's HTTP/2 streams (each request's service call and answer)
/// as tasks that can be dropped one at a time: a stalled answer that gives
/// way to another read is ended with its stream (h2 resets a stream whose
/// handles are dropped), and its connection's other requests go on (the
/// attack of session 31, F1 and F3: dropping the whole connection ended
/// writes on it, and a write in flight kept every stalled read on it).
#[derive(Debug, Clone, Copy)]
struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let stream = Arc::new(DropHandle::default());
        tokio::spawn(STREAM.scope(Arc::clone(&stream), async move {
            tokio::select! {
                _ = future => {}
                () = stream.dropped() => {}
            }
        }));
    }
}

/// The answer to a write refused before its body is read: neither the
/// overdraft nor the budget has room for its answer, and no stalled
/// answer could free it ([`ResponseBudget::may_write`]).
fn write_refused(client: std::net::IpAddr) -> Response<Budgeted> {
    tracing::warn!(
        target: "todo::http",
        client = %client,
        status = 503,
        "write refused: the response budget has no room for its answer"
    );
    unavailable(None)
}

/// A 503 (Retry-After 1) sent in place of an answer the response budget
/// refused, or of a write refused before it was made: outside the API's
/// own answers, so with the headers the frontend gives them.
fn unavailable(request_id: Option<HeaderValue>) -> Response<Budgeted> {
    let mut refused =
        crate::problem::ApiError::unavailable(Duration::from_secs(1), None).into_response();
    let headers = refused.headers_mut();
    if let Some(id) = request_id {
        headers.insert(crate::front::REQUEST_ID, id);
    }
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    refused.map(|body| Budgeted::Whole {
        rest: whole(body),
        paid: ResponseBudget::unpaid(),
        sending: None,
    })
}

/// What each accepted connection needs.
struct Accepted<A: Api> {
    front: Arc<Frontend<A>>,
    builder: Arc<auto::Builder<StreamExecutor>>,
    /// The same, for a trusted proxy's connections.
    proxies_builder: Arc<auto::Builder<StreamExecutor>>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    slots: Arc<ClientSlots>,
    /// Response bytes not yet sent, across the process (see `Budgeted`).
    responses: Arc<ResponseBudget>,
    stopping: watch::Receiver<bool>,
    /// The deadline of every stage (the head timeout).
    deadline: Duration,
    /// How long sent data may stay unacknowledged (`HttpLimits::send_stall`).
    send_stall: Duration,
}

/// What the kernel may hold unsent for one connection (Linux:
/// `TCP_NOTSENT_LOWAT`: the socket takes more only below it). Answers leave
/// the response budget once the kernel takes them, and a client that never
/// reads had the kernel hold up to its autotuned 4 MiB a connection
/// (session 30's attack, F1: 256 connections of unread pages, 547 MiB of
/// send queues, charged to a cgroup v2 container's memory). What is in
/// flight is bounded by the client's window (shut, for a client that does
/// not read), so a connection that stalls holds about this plus one write;
/// an honest client's throughput keeps the kernel's autotuning.
pub(crate) const NOT_SENT_BYTES: u32 = 32 * 1024;

/// Bounds what the kernel holds unsent for `stream`, and (Linux) has the
/// kernel drop the connection, and what it held for it, once data sent
/// has stayed unacknowledged for `send_stall` (a client gone, or one
/// whose shut window is probed: Linux 5.11 and later time those out too).
fn bound_kernel_buffers(stream: &TcpStream, send_stall: Duration) {
    #[cfg(target_os = "linux")]
    {
        let socket = socket2::SockRef::from(stream);
        if let Err(error) = socket.set_tcp_notsent_lowat(NOT_SENT_BYTES) {
            tracing::debug!(target: "todo::http", %error, "TCP_NOTSENT_LOWAT not set");
        }
        if let Err(error) = socket.set_tcp_user_timeout(Some(send_stall)) {
            tracing::debug!(target: "todo::http", %error, "TCP_USER_TIMEOUT not set");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, send_stall);
}

impl<A: Api> Accepted<A> {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr) {
        // A trusted proxy's connections carry many clients: those are
        // counted per forwarded client, per request (see `Frontend`).
        let from_proxy = self.front.proxies().trusts(peer.ip());
        let slot: Option<ClientSlot> = if from_proxy {
            None
        } else {
            let Some(slot) = self.slots.try_take(peer.ip()) else {
                tracing::debug!(target: "todo::http", %peer, "per-client connection limit reached; closing");
                return;
            };
            Some(slot)
        };
        let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            tracing::warn!(target: "todo::http", %peer, "connection limit reached; closing");
            return;
        };
        // Without it every small response waits for delayed ACKs (~40 ms).
        let _ = stream.set_nodelay(true);
        bound_kernel_buffers(&stream, self.send_stall);
        let front = Arc::clone(&self.front);
        let builder = Arc::clone(if from_proxy {
            &self.proxies_builder
        } else {
            &self.builder
        });
        let tls = self.tls.clone();
        let stopping = self.stopping.clone();
        let responses = Arc::clone(&self.responses);
        let deadline = self.deadline;
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
            let stream = match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(deadline, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    Stream::Tls(Box::new(stream))
                }
                None => Stream::Plain(stream),
            };
            let activity = Arc::new(Activity::new());
            let seen = Arc::clone(&activity);
            let stopping_here = stopping.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let front = Arc::clone(&front);
                let responses = Arc::clone(&responses);
                let in_flight = seen.begin();
                let stopping = stopping.clone();
                async move {
                    let read = matches!(*request.method(), Method::GET | Method::HEAD);
                    let http1 = request.version() < http::Version::HTTP_2;
                    // What may be dropped for its answer to give way: its
                    // HTTP/2 stream, or its HTTP/1.1 connection.
                    let carrier = STREAM
                        .try_with(Arc::clone)
                        .unwrap_or_else(|_| Arc::clone(&in_flight.0.connection));
                    let control = LiveControl {
                        carrier: Arc::clone(&carrier),
                        stopping,
                    };
                    // A write's answer is given room before the write is
                    // made: once its body has arrived (`extract::read_body`),
                    // or at once by the frontend when it has none.
                    let room = (!read)
                        .then(|| WriteRoom::new(Arc::clone(&responses), Arc::clone(&carrier)));
                    let bodiless = request.body().is_end_stream();
                    // The budget's shares are the client's: behind a
                    // trusted proxy, the address it forwards, as the
                    // request body's share and the write's room are.
                    let client = front.proxies().client(peer.ip(), request.headers());
                    if room.is_some() && !bodiless && !responses.may_write(client, &carrier) {
                        let mut refused = write_refused(client);
                        if http1 {
                            close_after(&mut refused);
                        }
                        return Ok(refused);
                    }
                    let body_ended = Arc::new(AtomicBool::new(bodiless));
                    let ended = Arc::clone(&body_ended);
                    let mut request = request.map(|body| {
                        WatchedBody { inner: body, ended }
                            .map_err(Into::into)
                            .boxed_unsync()
                    });
                    request.extensions_mut().insert(control);
                    if let Some(room) = &room {
                        request.extensions_mut().insert(room.clone());
                    }
                    let response = front.handle(request, peer.ip()).await;
                    let reserved = room.as_ref().and_then(WriteRoom::take);
                    if room.is_some() && reserved.is_none() && response.status().is_success() {
                        // (a route that reads no body, sent one: its answers
                        // are small; SECURITY.md, session 32, m1)
                        tracing::debug!(
                            target: "todo::http",
                            client = %client,
                            "a write was made without room for its answer"
                        );
                    }
                    let mut response = budgeted(
                        &responses, response, client, in_flight, &carrier, read, reserved,
                    )
                    .await;
                    if http1 && !body_ended.load(Ordering::Relaxed) {
                        close_after(&mut response);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            match stream {
                Stream::Tls(stream) => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    drive(connection, &activity, deadline, stopping_here).await;
                }
                Stream::Plain(stream) => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    drive(connection, &activity, deadline, stopping_here).await;
                }
            }
        });
    }
}

enum Stream {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Plain(TcpStream),
}

pin_project_lite::pin_project! {
    /// A request's body that says when it was read to its end.
    struct WatchedBody<B> {
        #[pin]
        inner: B,
        ended: Arc<AtomicBool>,
    }
}

impl<B: Body> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            this.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Says `Connection: close` on an HTTP/1 answer given before its request's
/// body was read to its end (a 401, 404, 405, 413 or 415 decided from the
/// head): hyper ends such a connection, since it cannot tell where the
/// next request would begin, and a client told so opens a new one rather
/// than send its next request into the closing one (RFC 9112 §9.6; attack
/// of session 24, F3: a broken pipe on the request after a 401).
fn close_after(response: &mut Response<Budgeted>) {
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
}

/// What a connection's requests have been doing, for its deadlines.
#[derive(Debug)]
struct Activity {
    /// When the connection became ready for HTTP (after the handshake).
    born: Instant,
    /// Requests delivered so far.
    requests: AtomicU64,
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// When the last request was answered, in milliseconds after `born`.
    last_done_ms: AtomicU64,
    /// A permit once the connection has delivered a request.
    first: Notify,
    /// Told when an HTTP/1.1 connection's one answer or live stream is to
    /// end (its client stopped reading, or it gave way to a read the
    /// response budget could not pay): the connection is then dropped,
    /// whatever it is doing (see [`LiveControl`], [`ResponseBudget`]).
    connection: Arc<DropHandle>,
    /// Larger answers being sent now (see [`SendingAnswer`]): at most one
    /// over HTTP/1.1, one a stream over HTTP/2.
    sending: Mutex<Vec<Arc<AnswerPace>>>,
}

/// How a larger answer is being taken by its client.
#[derive(Debug)]
struct AnswerPace {
    /// When it last handed a piece to the connection (or began), in
    /// milliseconds after the connection's `born`.
    handed_ms: AtomicU64,
    /// What ends it: its HTTP/2 stream, or its HTTP/1.1 connection.
    carrier: Arc<DropHandle>,
    /// Told to end already (its stream's task ends a moment later).
    ended: AtomicBool,
}

/// What a live stream (`GET /v1/events`) needs of its connection: to end
/// when shutdown begins, and to be ended when its client stops reading:
/// over HTTP/2 its stream is reset, and the connection's other streams,
/// which behind an HTTP/2 proxy are other users', go on (session 33's
/// attack, F1); over HTTP/1.1 the connection is dropped (an answer that
/// cannot be written holds it, so ending the body alone would not free
/// it). In the request's extensions; absent when the API is mounted in
/// another server.
#[derive(Clone)]
pub(crate) struct LiveControl {
    /// The request's HTTP/2 stream, or its HTTP/1.1 connection.
    carrier: Arc<DropHandle>,
    stopping: watch::Receiver<bool>,
}

impl LiveControl {
    /// Resolves once shutdown has begun.
    pub(crate) async fn stopped(&mut self) {
        stopped(&mut self.stopping).await;
    }

    /// Ends the stream now: resets its HTTP/2 stream, or drops its
    /// HTTP/1.1 connection.
    pub(crate) fn end_stream(&self) {
        self.carrier.drop_it();
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            first: Notify::new(),
            connection: Arc::new(DropHandle::default()),
            sending: Mutex::default(),
        }
    }

    /// Milliseconds since `born`.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn sending(&self) -> std::sync::MutexGuard<'_, Vec<Arc<AnswerPace>>> {
        self.sending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the first of the connection's answers will have stalled for
    /// `stall` (handed no piece to the connection for it), if it is
    /// sending any.
    fn stalled_at(&self, stall: Duration) -> Option<Instant> {
        let last = self
            .sending()
            .iter()
            .filter(|pace| !pace.ended.load(Ordering::SeqCst))
            .map(|pace| pace.handed_ms.load(Ordering::SeqCst))
            .min()?;
        Some(self.born + Duration::from_millis(last) + stall)
    }

    /// Ends the answers that have handed nothing to the connection for
    /// `stall`, each alone: its HTTP/2 stream reset, or its HTTP/1.1
    /// connection dropped. How many it ended.
    fn end_stalled(&self, stall: Duration) -> usize {
        let stall_ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let mut ended = 0;
        for pace in self.sending().iter() {
            let last = pace.handed_ms.load(Ordering::SeqCst);
            if last.saturating_add(stall_ms) <= now && !pace.ended.swap(true, Ordering::SeqCst) {
                pace.carrier.drop_it();
                ended += 1;
            }
        }
        ended
    }

    /// A request has arrived; it is in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.requests.fetch_add(1, Ordering::SeqCst) == 0 {
            self.first.notify_one();
        }
        InFlight(Arc::clone(self))
    }

    /// When the connection will have been idle for `idle`, if it is idle
    /// now; with a request in flight, when to look again.
    fn idle_at(&self, idle: Duration) -> Instant {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Instant::now() + idle;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst));
        self.born + last + idle
    }

    fn served_any(&self) -> bool {
        self.requests.load(Ordering::SeqCst) > 0
    }
}

/// A request in flight on a connection.
struct InFlight(Arc<Activity>);

/// A larger answer being sent: its request stays in flight (a client that
/// reads it slowly is not taken for idle, session 30's second attack, F3:
/// a 2 MB page was cut ~20 s after it was built, however it was read), and
/// it is ended once it has handed nothing to the connection for the
/// deadline (a client that stopped reading): over HTTP/2 its stream alone,
/// since the connection's other streams may be other users' behind an
/// HTTP/2 proxy (session 33's attack, F1: the whole connection was
/// dropped, and another user's live stream with it).
struct SendingAnswer {
    pace: Arc<AnswerPace>,
    in_flight: InFlight,
}

impl SendingAnswer {
    fn new(in_flight: InFlight, carrier: &Arc<DropHandle>) -> Self {
        let activity = &in_flight.0;
        let pace = Arc::new(AnswerPace {
            handed_ms: AtomicU64::new(activity.now_ms()),
            carrier: Arc::clone(carrier),
            ended: AtomicBool::new(false),
        });
        activity.sending().push(Arc::clone(&pace));
        Self { pace, in_flight }
    }

    /// A piece was handed to the connection.
    fn handed(&self) {
        let now = self.in_flight.0.now_ms();
        self.pace.handed_ms.fetch_max(now, Ordering::SeqCst);
    }
}

impl Drop for SendingAnswer {
    fn drop(&mut self) {
        self.in_flight
            .0
            .sending()
            .retain(|pace| !Arc::ptr_eq(pace, &self.pace));
        // (then the request's `InFlight` ends)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let since = activity.now_ms();
        // Written before the count falls, so a watcher that sees no request
        // in flight sees this one's end.
        activity.last_done_ms.fetch_max(since, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves a connection until it ends, falls idle, is dropped, or shutdown
/// begins. Idle: a connection that never delivered a request is dropped at
/// its deadline; one with no request in flight for `deadline` is closed
/// gracefully, and dropped if that takes another `deadline`. Stalled: each
/// larger answer that has handed nothing to it for `deadline` is ended
/// (`Activity::end_stalled`: its HTTP/2 stream reset, or its HTTP/1.1
/// connection dropped). At shutdown,
/// lets it deliver its first request if it had none yet, and closes it
/// gracefully: requests in flight are answered (HTTP/1.1 with
/// `Connection: close`, HTTP/2 with GOAWAY).
async fn drive<C: GracefulConnection>(
    connection: C,
    activity: &Activity,
    deadline: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    let mut check = activity.born + deadline;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = activity.connection.dropped() => return,
            () = stopped(&mut stopping) => break,
            () = tokio::time::sleep_until(check.into()) => {
                let now = Instant::now();
                if activity.stalled_at(deadline).is_some_and(|at| at <= now) {
                    let ended = activity.end_stalled(deadline);
                    crate::sending::COUNTS.answers_stalled.fetch_add(u64::try_from(ended).unwrap_or(u64::MAX), Ordering::Relaxed);
                    tracing::info!(target: "todo::http", ended, "answers whose clients stopped reading ended (HTTP/2: their streams reset; HTTP/1.1: the connection dropped)");
                }
                let stalled_at = activity.stalled_at(deadline);
                let idle_at = activity.idle_at(deadline);
                if idle_at > now {
                    check = stalled_at.map_or(idle_at, |at| at.min(idle_at));
                    continue;
                }
                if !activity.served_any() {
                    // Silent since the handshake: nothing to answer.
                    return;
                }
                connection.as_mut().graceful_shutdown();
                // (an HTTP/1.1 connection whose answer is told to end while
                // it closes, given way or stalled, is dropped at once)
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = activity.connection.dropped() => {}
                    () = tokio::time::sleep(deadline) => {}
                }
                return;
            }
        }
    }
    tokio::select! {
        _ = connection.as_mut() => return,
        () = activity.connection.dropped() => return,
        () = activity.first.notified() => {}
        () = tokio::time::sleep(FIRST_REQUEST_WINDOW) => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        () = activity.connection.dropped() => {}
    }
}

/// Resolves once shutdown has begun (or the accept loop is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A response body that holds its share of the response budget until it
/// has been sent (or the connection is gone). A client that opens no
/// HTTP/2 flow-control window leaves finished responses in memory: without
/// a bound, 12 connections of 32 stalled 3 MB lists took a server from
/// 24 MiB to 1.4 GiB.
///
/// A live stream is sent as it is made; its own channel bounds what it
/// holds, and it keeps its connection's request in flight (the connection
/// is not idle while it streams).
enum Budgeted {
    Whole {
        rest: Bytes,
        paid: Paid,
        /// A larger answer's place on its connection, as it is sent.
        sending: Option<SendingAnswer>,
    },
    Live {
        body: axum::body::Body,
        _in_flight: InFlight,
    },
}

/// A response goes out in pieces of this size: hyper hands a piece to h2
/// only when the stream has room for it, so what a client does not read
/// stays here, in the budget, not in h2's buffers.
const RESPONSE_CHUNK: usize = 16 * 1024;

impl Body for Budgeted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut() {
            Self::Whole {
                rest,
                paid,
                sending,
            } => {
                if rest.is_empty() {
                    return std::task::Poll::Ready(None);
                }
                let take = rest.len().min(RESPONSE_CHUNK);
                let piece = rest.split_to(take);
                paid.handed(take);
                if let Some(sending) = sending {
                    sending.handed();
                }
                std::task::Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            Self::Live { body, .. } => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole { rest, .. } => rest.is_empty(),
            Self::Live { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Whole { rest, .. } => SizeHint::with_exact(rest.len() as u64),
            Self::Live { body, .. } => body.size_hint(),
        }
    }
}

/// Pays `response`'s body from the response budget. A read whose answer
/// cannot be paid for, even once stalled answers have given way (see
/// [`ResponseBudget`]), gets 503 instead (it can be asked again); the
/// answer to a write is always sent: from the room `reserved` for it
/// before it was made ([`WriteRoom`]), and what that does not cover from
/// the budget, the overdraft, or unpaid if need be.
async fn budgeted(
    budget: &ResponseBudget,
    response: Answer,
    client: std::net::IpAddr,
    in_flight: InFlight,
    carrier: &Arc<DropHandle>,
    read: bool,
    reserved: Option<Reserved>,
) -> Response<Budgeted> {
    let (parts, body) = response.into_parts();
    let body = match body {
        ResponseBody::Whole(body) => body,
        ResponseBody::Live(body) => {
            let live = Budgeted::Live {
                body,
                _in_flight: in_flight,
            };
            return Response::from_parts(parts, live);
        }
    };
    let response = Response::from_parts(parts, body);
    let bytes = response
        .body()
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let paid = if bytes == 0 {
        Some(ResponseBudget::unpaid())
    } else {
        budget.pay(client, bytes, carrier, read, reserved).await
    };
    if let Some(paid) = paid {
        let sending = paid
            .is_tracked()
            .then(|| SendingAnswer::new(in_flight, carrier));
        return response.map(|body| Budgeted::Whole {
            rest: whole(body),
            paid,
            sending,
        });
    }
    drop(in_flight);
    let request_id = response.headers().get(crate::front::REQUEST_ID).cloned();
    // (the request's own line, written before this, says what it was
    // answered before the budget refused it: this one says what was sent)
    tracing::warn!(
        target: "todo::http",
        request_id = request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or(""),
        client = %client,
        bytes,
        status = 503,
        "answer refused: the response budget is spent"
    );
    unavailable(request_id)
}

/// The bytes of a full body (one frame, taken at once).
fn whole(body: Full<Bytes>) -> Bytes {
    use std::task::{Context, Poll, Waker};
    let mut body = body;
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hyper_util::rt::TokioExecutor;

    use super::*;

    /// Review of session 31, M1: an answer may be told to end (given way,
    /// or stalled) while its idle connection closes; over HTTP/1.1 that
    /// drops the connection, which must be heeded in that phase too, not
    /// only when the deadline ends it.
    #[tokio::test(start_paused = true)]
    async fn a_connection_closing_gracefully_is_dropped_when_told() {
        let deadline = Duration::from_secs(5);
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let builder = auto::Builder::new(TokioExecutor::new());
        // An answer this service gives stays unsent while its client does
        // not read; the service does not count it in flight, so the
        // connection closes as idle with the answer unsent.
        let service = service_fn(|_request: Request<Incoming>| async {
            let body = Full::new(Bytes::from(vec![b'x'; 1024 * 1024]));
            Ok::<_, Infallible>(Response::new(body))
        });
        let activity = Arc::new(Activity::new());
        let (_stopping_tx, stopping) = watch::channel(false);
        let served = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move {
                let connection = builder.serve_connection(TokioIo::new(server_io), service);
                drive(connection, &activity, deadline, stopping).await;
            }
        });
        // (HTTP/1.1: over HTTP/2 an answer told to end resets its stream,
        // and nothing drops the connection)
        let (mut sender, mut client) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(client_io))
            .await
            .unwrap();
        drop(activity.begin());
        let request = Request::get("http://localhost/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        // The client's side is driven until the head arrives; afterwards
        // it reads nothing and acknowledges nothing.
        let response = tokio::select! {
            response = sender.send_request(request) => response.unwrap(),
            _ = &mut client => panic!("the client's connection ended"),
        };
        assert_eq!(response.status(), 200);
        let began = Instant::now();
        // Past the idle deadline: closing, the answer unsent.
        tokio::time::sleep(deadline + Duration::from_secs(1)).await;
        assert!(!served.is_finished(), "closing, not yet closed");
        activity.connection.drop_it();
        tokio::time::timeout(Duration::from_millis(100), served)
            .await
            .expect("dropped when told, not at the end of the closing deadline")
            .unwrap();
        assert!(began.elapsed() < deadline * 2);
        drop((response, client));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_hold_little_unsent_and_give_up_on_a_stalled_client() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        bound_kernel_buffers(&accepted, Duration::from_secs(7));
        let socket = socket2::SockRef::from(&accepted);
        assert_eq!(socket.tcp_notsent_lowat().unwrap(), NOT_SENT_BYTES);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(7))
        );
    }
}
