//! What every request goes through, whichever API serves it: a request id,
//! the client address, the per-client caps, the shared endpoints
//! (`/healthz`, `/readyz`, `/openapi.json`, and `/metrics` where
//! [`MetricsExposure`] allows), then the API's axum [`Router`] (404, and 405
//! with `Allow`, as problem details), security headers, one log line and
//! the metrics.

use std::collections::HashSet;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::MatchedPath;
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;

use crate::admission::{BodyBudget, ClientSlots};
use crate::extract::RequestContext;
use crate::probe::Operations;
use crate::problem::{ApiError, InternalDetail};
use crate::request::{HttpLimits, RequestBody, TrustedProxies};
use crate::sending::WriteRoom;

/// A handler's response: a full, small body.
pub type ApiResponse = Response<Full<Bytes>>;

/// What a [`Frontend`] answers: a handler's whole body, or a live stream
/// (`GET /v1/events`) sent as it is made.
pub type Answer = Response<ResponseBody>;

/// The body of an [`Answer`].
#[derive(Debug)]
pub enum ResponseBody {
    /// Made whole before it is sent (every answer but a live stream).
    Whole(Full<Bytes>),
    /// Made while it is sent, until the stream ends.
    Live(axum::body::Body),
}

impl ResponseBody {
    fn empty() -> Self {
        Self::Whole(Full::new(Bytes::new()))
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        match self.get_mut() {
            Self::Whole(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Self::Live(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole(body) => body.is_end_stream(),
            Self::Live(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Whole(body) => body.size_hint(),
            Self::Live(body) => body.size_hint(),
        }
    }
}

/// Marks a handler's response whose body is a live stream: the frontend
/// passes it on as it is made instead of gathering it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveStream;

/// One REST API (auth or tasks), mounted behind a [`Frontend`].
pub trait Api: Send + Sync + 'static {
    /// Its routes, each documented by the handler that serves it (the
    /// shared endpoints aside).
    fn routes(self: Arc<Self>) -> OpenApiRouter;
    /// Its readiness, metrics and OpenAPI document.
    fn operations(&self) -> &Operations;
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where a [`Frontend`] answers `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsExposure {
    /// Not at all: `/metrics` is 404 (the default, for a public listener).
    #[default]
    Hidden,
    /// Beside the API (a listener that only the inside can reach).
    Shown,
    /// Only `/metrics`, `/healthz` and `/readyz`; the API is 404 (the
    /// separate metrics listener, `--metrics-listen`).
    Only,
}

/// Puts an [`Api`] on the wire's terms.
#[derive(Debug)]
pub struct Frontend<A> {
    api: Arc<A>,
    router: Router,
    limits: Arc<HttpLimits>,
    proxies: TrustedProxies,
    ids: RequestIds,
    /// Per-client slots: connections at accept (see `server`), and, for
    /// connections from trusted proxies, requests in flight here.
    slots: Arc<ClientSlots>,
    /// Requests in flight per client address, for peers that are not
    /// trusted proxies: HTTP/2 gives each connection 32 streams, so the
    /// connection cap alone would let one address run thousands at once.
    requests: Arc<ClientSlots>,
    budget: BodyBudget,
    metrics: MetricsExposure,
}

impl<A: Api> Frontend<A> {
    /// `api` behind `limits`, believing `X-Forwarded-For` from `proxies` only.
    ///
    /// # Panics
    ///
    /// When `api` has no routes at all (axum refuses a route layer on an
    /// empty router): a program error, found at start.
    pub fn new(api: Arc<A>, limits: HttpLimits, proxies: TrustedProxies) -> Self {
        let (router, document) = Arc::clone(&api).routes().split_for_parts();
        let names = RouteNames::of(&document);
        let router = router
            .route_layer(NameRouteLayer(names))
            .fallback(|| async { ApiError::not_found() })
            // axum adds `Allow`; `route` below words the problem.
            .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED })
            // Handlers that are still boxed (the page's files, the fallbacks)
            // made into routes once, not per request.
            .with_state(());
        Self {
            api,
            router,
            slots: ClientSlots::new(limits.max_connections_per_client),
            requests: ClientSlots::new(limits.max_requests_per_client),
            budget: BodyBudget::new(limits.body_budget_bytes, limits.max_body_bytes),
            limits: Arc::new(limits),
            proxies,
            ids: RequestIds::new(),
            metrics: MetricsExposure::Hidden,
        }
    }

    /// The same frontend answering `/metrics` as `exposure` says (hidden
    /// unless asked for: the metrics are for the operator, not the public).
    #[must_use]
    pub fn with_metrics(mut self, exposure: MetricsExposure) -> Self {
        self.metrics = exposure;
        self
    }

    /// The API it serves.
    #[must_use]
    pub fn api(&self) -> &Arc<A> {
        &self.api
    }

    /// The limits it holds clients to.
    #[must_use]
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// The proxies whose `X-Forwarded-For` it believes.
    #[must_use]
    pub fn proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    pub(crate) fn client_slots(&self) -> &Arc<ClientSlots> {
        &self.slots
    }

    /// Takes the room for the answer of a write that has no body (one with
    /// a body takes it once the body has arrived, `extract::read_body`);
    /// `false` when it cannot be had, and the write is refused before it is
    /// made. `true` for everything else, and where the server gives no
    /// room (the API mounted in another server).
    async fn room_for_bodiless_write(
        &self,
        parts: &http::request::Parts,
        bodiless: bool,
        client: IpAddr,
    ) -> bool {
        match parts.extensions.get::<WriteRoom>() {
            Some(room) if bodiless => room.reserve(client).await,
            _ => true,
        }
    }

    /// Serves one request from `peer`.
    pub async fn handle(&self, request: Request<RequestBody>, peer: IpAddr) -> Answer {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let bodiless = hyper::body::Body::is_end_stream(&body);
        let request_id = self.ids.for_request(&parts.headers);
        let client = self.proxies.client(peer, &parts.headers);
        let method = method_name(&parts.method);
        let path = parts.uri.path();
        // A trusted proxy's connections are shared by its clients: each
        // forwarded client may have as many requests in flight here as an
        // address may hold connections.
        let slot = if self.proxies.trusts(peer) {
            self.slots.try_take(client)
        } else {
            self.requests.try_take(client)
        }
        .ok_or(());
        // hyper holds HTTP/1.1 heads to its read buffer, which is not
        // exact (a connection kept alive may have a larger one: a 30 KB
        // head went through), and HTTP/2's header list counts differently:
        // the limit is weighed here, the same for both.
        let too_large = head_bytes(&parts) > self.limits.max_head_bytes;
        let hidden = match self.metrics {
            MetricsExposure::Hidden => path == "/metrics",
            MetricsExposure::Shown => false,
            MetricsExposure::Only => !matches!(path, "/metrics" | "/healthz" | "/readyz"),
        };
        let (route, result) = match (slot, path) {
            (_, _) if too_large => (
                "(head too large)",
                Err(ApiError::header_too_large(self.limits.max_head_bytes)),
            ),
            (Err(()), _) => (
                "(over the per-client cap)",
                Err(ApiError::unavailable(Duration::from_secs(1), None)),
            ),
            (Ok(_), _) if hidden => ("(unmatched)", Err(ApiError::not_found())),
            (Ok(slot), path) => match path {
                "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => {
                    let route = match path {
                        "/healthz" => "/healthz",
                        "/readyz" => "/readyz",
                        "/metrics" => "/metrics",
                        _ => "/openapi.json",
                    };
                    let answer = self.shared(route, &parts.method);
                    let answer = crate::blocking::REQUEST_SLOT.scope(Arc::new(slot), answer);
                    let answer = answer.await;
                    (route, answer.map(|whole| whole.map(ResponseBody::Whole)))
                }
                _ if !self.room_for_bodiless_write(&parts, bodiless, client).await => (
                    "(no room for the answer)",
                    Err(ApiError::unavailable(Duration::from_secs(1), None)),
                ),
                _ => {
                    let mut parts = parts;
                    // (HTTP/2 names the host in `:authority`; the one reader,
                    // the origin check, looks there: `auth_api::host`.)
                    parts.extensions.insert(RequestContext {
                        client,
                        limits: Arc::clone(&self.limits),
                        budget: self.budget.clone(),
                    });
                    let request = Request::from_parts(parts, axum::body::Body::new(body));
                    // Blocking work started for this request holds the
                    // client's slot until it ends (`blocking.rs`).
                    let routed = self.route(request, &request_id);
                    let (route, response) = crate::blocking::REQUEST_SLOT
                        .scope(Arc::new(slot), routed)
                        .await;
                    (route, Ok(response))
                }
            },
        };
        let mut response = result.unwrap_or_else(|error| {
            if let Some(internal) = &error.internal {
                tracing::error!(target: "todo::http", %request_id, route, error = %internal, "request failed");
            }
            error.into_response().map(ResponseBody::Whole)
        });
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID, value);
        }
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        headers
            .entry("content-security-policy")
            .or_insert(HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'",
            ));
        headers
            .entry(CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        let status = response.status().as_u16();
        let took = started.elapsed();
        self.api
            .operations()
            .metrics()
            .record(route, method, status, took);
        tracing::info!(
            target: "todo::http",
            %request_id,
            method,
            route,
            status,
            latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            client = %client,
        );
        // A HEAD answer has no body, in HTTP/2 too (where hyper would send
        // one as DATA frames, a protocol error to the client).
        if method == "HEAD" {
            *response.body_mut() = ResponseBody::empty();
        }
        response
    }

    /// Runs the router: the route's name for logs and metrics, and the
    /// answer with its body gathered (our handlers' bodies are whole).
    async fn route(
        &self,
        request: Request<axum::body::Body>,
        request_id: &str,
    ) -> (&'static str, Answer) {
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (mut parts, body) = response.into_parts();
        let route = parts
            .extensions
            .remove::<RouteName>()
            .map_or("(unmatched)", |name| name.0);
        if let Some(internal) = parts.extensions.remove::<InternalDetail>() {
            tracing::error!(target: "todo::http", %request_id, route, error = %internal.0, "request failed");
        }
        if parts.status == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = parts.headers.get(ALLOW).and_then(|v| v.to_str().ok())
        {
            // The router found the path but not the method: our problem.
            return (
                route,
                ApiError::method_not_allowed(allow_without_head(allow))
                    .into_response()
                    .map(ResponseBody::Whole),
            );
        }
        if parts.extensions.remove::<LiveStream>().is_some() {
            return (route, Response::from_parts(parts, ResponseBody::Live(body)));
        }
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                tracing::error!(target: "todo::http", %request_id, route, %error, "response body failed");
                return (
                    route,
                    ApiError::internal("response body failed")
                        .into_response()
                        .map(ResponseBody::Whole),
                );
            }
        };
        (
            route,
            Response::from_parts(parts, ResponseBody::Whole(Full::new(body))),
        )
    }

    async fn shared(&self, route: &'static str, method: &Method) -> Result<ApiResponse, ApiError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::method_not_allowed("GET, HEAD".to_owned()));
        }
        match route {
            "/healthz" => Ok(json(
                StatusCode::OK,
                Bytes::from_static(b"{\"status\":\"ok\"}"),
            )),
            "/readyz" => match self.api.operations().ready().await {
                Ok(()) => Ok(json(
                    StatusCode::OK,
                    Bytes::from_static(b"{\"status\":\"ready\"}"),
                )),
                Err(why) => Err(ApiError::unavailable(
                    std::time::Duration::from_secs(5),
                    Some(crate::problem::chain(&why)),
                )),
            },
            "/metrics" => {
                let mut text = String::with_capacity(4096);
                self.api.operations().metrics().render(&mut text);
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                Ok(response)
            }
            _ => Ok(json(StatusCode::OK, self.api.operations().openapi())),
        }
    }
}

/// The route a request matched, as logs and metrics name it.
#[derive(Debug, Clone, Copy)]
struct RouteName(&'static str);

/// Each route's template as a `&'static str`: a metric label and a log
/// field without an allocation or a lock per request. Made once per
/// frontend from the API's document and the page's files (routes are few
/// and fixed; every other route is refused by a test, see
/// `tests/it/openapi.rs`).
#[derive(Clone)]
struct RouteNames(Arc<HashSet<&'static str>>);

impl RouteNames {
    fn of(document: &utoipa::openapi::OpenApi) -> Self {
        let documented = document.paths.paths.keys().map(String::as_str);
        let page = crate::web::ASSETS.iter().map(|asset| asset.path);
        let names = documented.chain(page).map(intern).collect();
        Self(Arc::new(names))
    }
}

/// `template` as a `&'static str`, leaked once per process whatever the
/// number of frontends (routes are few and fixed). Called when a frontend
/// is built, never per request.
fn intern(template: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Option<HashSet<&'static str>>> = std::sync::Mutex::new(None);
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(name) = names.get(template) {
        return name;
    }
    let name: &'static str = Box::leak(template.to_owned().into_boxed_str());
    names.insert(name);
    name
}

/// Names the matched route on its response, for the frontend's log and
/// metrics: a layer on each route, where axum has set [`MatchedPath`].
/// Written by hand rather than with `from_fn`, which per request boxes its
/// future and `Next`, and clones the route's service once more (axum's
/// `Route` still clones and boxes its own service per call). A routed path
/// that is neither documented nor one of the page's files is named
/// `(route)`; what no route answers (404, an unknown method's 405) stays
/// `(unmatched)`.
#[derive(Clone)]
struct NameRouteLayer(RouteNames);

impl<S> tower::Layer<S> for NameRouteLayer {
    type Service = NameRoute<S>;

    fn layer(&self, inner: S) -> NameRoute<S> {
        NameRoute {
            inner,
            names: self.0.clone(),
        }
    }
}

/// A route's service, naming its responses (see [`NameRouteLayer`]).
#[derive(Clone)]
struct NameRoute<S> {
    inner: S,
    names: RouteNames,
}

impl<S> tower::Service<axum::extract::Request> for NameRoute<S>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = Named<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let name = request.extensions().get::<MatchedPath>().map(|matched| {
            self.names
                .0
                .get(matched.as_str())
                .copied()
                .unwrap_or("(route)")
        });
        Named {
            inner: self.inner.call(request),
            name,
        }
    }
}

pin_project_lite::pin_project! {
    /// A route's answer, to be named when it is ready.
    struct Named<F> {
        #[pin]
        inner: F,
        name: Option<&'static str>,
    }
}

impl<F, E> Future for Named<F>
where
    F: Future<Output = Result<axum::response::Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(name) = this.name.take() {
            response.extensions_mut().insert(RouteName(name));
        }
        Poll::Ready(Ok(response))
    }
}

/// The API's routes answer the methods the contract lists, HEAD not among
/// them (axum would serve HEAD wherever GET is): each documented path with
/// a GET gets an explicit HEAD route answering the path's 405, its `Allow`
/// the path's documented methods. Routes, not a middleware: the requests
/// that are not HEAD pay nothing. (The page's files and the shared
/// endpoints do serve HEAD.)
pub(crate) fn api_layer<S: Clone + Send + Sync + 'static>(
    routes: OpenApiRouter<S>,
) -> OpenApiRouter<S> {
    let mut refusals = Vec::new();
    for (path, item) in &routes.get_openapi().paths.paths {
        if item.get.is_none() {
            continue;
        }
        let methods: Vec<&str> = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, documented)| documented.then_some(name))
        .collect();
        refusals.push((path.clone(), methods.join(", ")));
    }
    refusals.into_iter().fold(routes, |routes, (path, allow)| {
        let refuse = move || {
            let allow = allow.clone();
            async move { ApiError::method_not_allowed(allow) }
        };
        routes.route(&path, axum::routing::head(refuse))
    })
}

/// An `Allow` as we write it: comma and space, and without HEAD, which
/// goes with GET unsaid (the API's routes refuse it, see [`api_layer`]).
fn allow_without_head(allow: &str) -> String {
    allow
        .split(',')
        .map(str::trim)
        .filter(|m| *m != "HEAD")
        .collect::<Vec<_>>()
        .join(", ")
}

/// An API's Router ([`Api::routes`]) mounted in a host app answering as it
/// does behind a [`Frontend`]: 404 for an unknown path and 405 (with its
/// `Allow`) for an unknown method, both as problem details, where axum
/// alone gives empty answers. (Behind a frontend, it does this itself.)
pub fn with_problem_answers(router: Router) -> Router {
    let router = router
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED });
    // Around the whole Router: axum adds `Allow` outside the routes' layers.
    let answers = axum::middleware::map_response(problem_for_405);
    Router::new().fallback_service(tower::Layer::layer(&answers, router))
}

/// axum's 405 (an empty body and its `Allow`) as our problem.
async fn problem_for_405(response: axum::response::Response) -> axum::response::Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    match response.headers().get(ALLOW).and_then(|v| v.to_str().ok()) {
        Some(allow) => axum::response::IntoResponse::into_response(ApiError::method_not_allowed(
            allow_without_head(allow),
        )),
        None => response,
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: Bytes) -> ApiResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Serialises `value` as a JSON response.
pub fn json_value<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<ApiResponse, ApiError> {
    json_sized(status, value, 512)
}

/// Serialises `value` as a JSON response into a buffer of `capacity` bytes
/// to start with (one allocation where the guess is right).
pub fn json_sized<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
    capacity: usize,
) -> Result<ApiResponse, ApiError> {
    let mut body = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut body, value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(status, Bytes::from(fitted(body))))
}

/// `bytes` holding little more than they are: an answer is paid for, and
/// waits to be sent, by its length, and a buffer sized by a guess (or
/// grown by doubling) may be half again as large, or three times as large
/// for text full of escapes that a weight counts six to a character. (A
/// small answer is left as it is: its spare room is small, and fitting
/// it would copy it on every request.)
pub(crate) fn fitted(mut bytes: Vec<u8>) -> Vec<u8> {
    let spare = bytes.capacity() - bytes.len();
    if spare > 16 * 1024 && spare > bytes.len() / 4 {
        bytes.shrink_to_fit();
    }
    bytes
}

/// A response without a body.
pub fn no_content() -> ApiResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Request ids: the client's when it is sane, else a process prefix and a counter.
#[derive(Debug)]
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut bytes = [0u8; 4];
        // Only a prefix to tell processes apart in the logs: zeros, should
        // the generator fail, would do no harm.
        let _ = todo_core::Random::fill(&todo_auth::OsRandom, &mut bytes);
        Self {
            prefix: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(1),
        }
    }

    fn for_request(&self, headers: &http::HeaderMap) -> String {
        let offered = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            });
        match offered {
            Some(id) => id.to_owned(),
            None => format!(
                "{}-{}",
                self.prefix,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }
}

/// The size of a request's head as HTTP/1.1 writes it: the request line,
/// each field as `name: value` and its line end, and the empty line (an
/// HTTP/2 request's `:authority` counted as its `Host`).
fn head_bytes(parts: &http::request::Parts) -> usize {
    // Two spaces, "HTTP/1.1" and CRLF; the empty line's CRLF.
    const FRAMING: usize = 2 + 8 + 2 + 2;
    let target = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let host = match parts.uri.authority() {
        Some(authority) if !parts.headers.contains_key(http::header::HOST) => {
            "host: \r\n".len() + authority.as_str().len()
        }
        _ => 0,
    };
    parts.headers.iter().fold(
        parts.method.as_str().len() + target + FRAMING + host,
        |sum, (name, value)| sum.saturating_add(name.as_str().len() + value.len() + 4),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_head_is_weighed_as_http_1_1_writes_it() {
        let written = "GET /v1/tasks?limit=5 HTTP/1.1\r\nhost: localhost\r\nx-a: bbb\r\n\r\n";
        let h1 = Request::get("/v1/tasks?limit=5")
            .header("host", "localhost")
            .header("x-a", "bbb")
            .body(())
            .unwrap();
        assert_eq!(head_bytes(&h1.into_parts().0), written.len());
        // HTTP/2: the authority stands for the Host field.
        let h2 = Request::get("https://localhost/v1/tasks?limit=5")
            .header("x-a", "bbb")
            .body(())
            .unwrap();
        assert_eq!(head_bytes(&h2.into_parts().0), written.len());
    }

    /// Counts ERROR events whose fields mention the secret.
    struct Count(Arc<AtomicUsize>);

    impl tracing::Subscriber for Count {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Find(bool);
            impl tracing::field::Visit for Find {
                fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    self.0 |= format!("{value:?}").contains("database exploded");
                }
            }
            let mut find = Find(false);
            event.record(&mut find);
            if *event.metadata().level() == tracing::Level::ERROR && find.0 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    struct Boom(Operations);

    impl Api for Boom {
        fn routes(self: Arc<Self>) -> OpenApiRouter {
            OpenApiRouter::new().route(
                "/boom",
                axum::routing::get(|| async {
                    Err::<ApiResponse, _>(ApiError::internal("database exploded"))
                }),
            )
        }
        fn operations(&self) -> &Operations {
            &self.0
        }
    }

    /// Mounted without a frontend, an API's 5xx carries its cause on the
    /// response's extensions for the host's own log, never in the body.
    #[test]
    fn a_mounted_apis_500_carries_its_cause_for_the_host() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let app: Router = OpenApiRouter::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    Err::<ApiResponse, _>(ApiError::internal("database exploded"))
                }),
            )
            .into();
        let request = Request::builder()
            .uri("/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = runtime.block_on(app.oneshot(request)).unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let cause = response.extensions().get::<InternalDetail>().cloned();
        assert_eq!(cause.map(|c| c.0).as_deref(), Some("database exploded"));
        let body = runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("exploded"));
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// A request without a body.
    fn empty(method: Method, path: &str) -> Request<RequestBody> {
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().unwrap();
        request
    }

    /// A runtime, and a frontend over [`Boom`].
    fn boom() -> (tokio::runtime::Runtime, Frontend<Boom>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let operations = Operations::new(Vec::new(), &utoipa::openapi::OpenApi::default());
        let front = Frontend::new(
            Arc::new(Boom(operations.unwrap())),
            HttpLimits::default(),
            TrustedProxies::default(),
        );
        (runtime, front)
    }

    /// No HEAD answer carries a body, whoever answers it (over HTTP/2 hyper
    /// would send one; v1.1 attack: a PROTOCOL_ERROR for `HEAD /healthz`).
    #[test]
    fn head_answers_have_no_body() {
        let (runtime, front) = boom();
        for path in ["/healthz", "/openapi.json", "/boom", "/nothing"] {
            let response = runtime.block_on(front.handle(empty(Method::HEAD, path), CLIENT));
            let body = runtime
                .block_on(response.into_body().collect())
                .unwrap()
                .to_bytes();
            assert!(body.is_empty(), "HEAD {path}: {body:?}");
        }
    }

    /// A handler's 5xx: a generic body for the client, its cause in the log.
    #[test]
    fn a_handlers_500_reaches_the_log_and_not_the_client() {
        let logged = Arc::new(AtomicUsize::new(0));
        let _guard = tracing::subscriber::set_default(Count(Arc::clone(&logged)));
        let (runtime, front) = boom();
        let response = runtime.block_on(front.handle(empty(Method::GET, "/boom"), CLIENT));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            response
                .extensions()
                .get::<crate::problem::InternalDetail>()
                .is_none()
        );
        let body = runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("exploded"));
        assert_eq!(
            logged.load(Ordering::SeqCst),
            1,
            "the 500's cause was logged once"
        );
    }

    /// An API whose one route blocks on the pool until released.
    struct Slow {
        operations: Operations,
        started: std::sync::mpsc::SyncSender<()>,
        release: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
    }

    impl Api for Slow {
        fn routes(self: Arc<Self>) -> OpenApiRouter {
            OpenApiRouter::new().route(
                "/slow",
                axum::routing::get(move || {
                    let api = Arc::clone(&self);
                    async move {
                        crate::blocking::blocking(move || {
                            api.started.send(()).unwrap();
                            api.release.lock().unwrap().recv().unwrap();
                            Ok::<_, ApiError>(no_content())
                        })
                        .await
                    }
                }),
            )
        }
        fn operations(&self) -> &Operations {
            &self.operations
        }
    }

    /// Blocking work runs on when its request is cancelled (a reset
    /// stream): it keeps the client's request slot until it ends, so a
    /// client cannot leave more work behind than it may have requests.
    #[test]
    fn cancelled_requests_blocking_work_holds_its_clients_slot() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (started_tx, started) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::channel();
        let api = Slow {
            operations: Operations::new(Vec::new(), &utoipa::openapi::OpenApi::default()).unwrap(),
            started: started_tx,
            release: Arc::new(std::sync::Mutex::new(release_rx)),
        };
        let limits = HttpLimits {
            max_requests_per_client: 1,
            ..HttpLimits::default()
        };
        let front = Arc::new(Frontend::new(
            Arc::new(api),
            limits,
            TrustedProxies::default(),
        ));
        let request = {
            let front = Arc::clone(&front);
            runtime.spawn(async move { front.handle(empty(Method::GET, "/slow"), CLIENT).await })
        };
        started.recv().unwrap();
        request.abort();
        assert!(runtime.block_on(request).unwrap_err().is_cancelled());

        // The work still runs: the client's one slot is still taken.
        let refused = runtime.block_on(front.handle(empty(Method::GET, "/healthz"), CLIENT));
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

        release.send(()).unwrap();
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..200 {
            status = runtime
                .block_on(front.handle(empty(Method::GET, "/healthz"), CLIENT))
                .status();
            if status == StatusCode::OK {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            status,
            StatusCode::OK,
            "the slot is given back when the work ends"
        );
    }
    /// The page's files alone, behind a frontend.
    struct Page(Operations);

    impl Api for Page {
        fn routes(self: Arc<Self>) -> OpenApiRouter {
            crate::web::router()
        }
        fn operations(&self) -> &Operations {
            &self.0
        }
    }

    /// Each routed request is named by its route for the log and the
    /// metrics; what no route answered (404, an unknown method's 405) is
    /// `(unmatched)`.
    #[test]
    fn routed_requests_are_named_by_their_route() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let operations = Operations::new(Vec::new(), &utoipa::openapi::OpenApi::default());
        let front = Frontend::new(
            Arc::new(Page(operations.unwrap())),
            HttpLimits::default(),
            TrustedProxies::default(),
        );
        for (method, path, status, name) in [
            (Method::GET, "/app.js", StatusCode::OK, "/app.js"),
            (Method::HEAD, "/app.js", StatusCode::OK, "/app.js"),
            (Method::GET, "/", StatusCode::OK, "/"),
            (
                Method::POST,
                "/app.js",
                StatusCode::METHOD_NOT_ALLOWED,
                "(unmatched)",
            ),
            (
                Method::GET,
                "/nothing",
                StatusCode::NOT_FOUND,
                "(unmatched)",
            ),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let (route, response) = runtime.block_on(front.route(request, "test"));
            assert_eq!(
                (route, response.status()),
                (name, status),
                "{method} {path}"
            );
        }
    }
}
