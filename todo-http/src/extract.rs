//! Typed extractors: what a handler takes from a request, each failing with
//! the problem answer the contract gives (never axum's plain-text rejections).
//!
//! Handlers list them in the order they must be weighed: the caller first
//! (401 before anything else), then the path, then the body (read last,
//! and only for a caller who may send one).

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, IF_MATCH};
use http::request::Parts;
use serde::de::DeserializeOwned;
use todo_core::{Precondition, Principal, Scope, TaskId, TaskVersion, UserId};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};

use crate::admission::{BodyBudget, BodyShare};
use crate::problem::ApiError;
use crate::request::{HttpLimits, decode_json, read_limited};
use crate::sending::WriteRoom;

/// What the [`crate::Frontend`] knows of a request before routing it: the
/// client (past trusted proxies) and the limits its body is read under.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The client's address: the peer's, or the forwarded one behind a trusted proxy.
    pub client: IpAddr,
    /// The limits bodies are read under.
    pub limits: Arc<HttpLimits>,
    /// The process's budget for buffered bodies.
    pub(crate) budget: BodyBudget,
}

/// The context of a router mounted without a [`crate::Frontend`] (in
/// another program's axum app): default limits, one budget per process.
static STANDALONE: LazyLock<(Arc<HttpLimits>, BodyBudget)> = LazyLock::new(|| {
    let limits = HttpLimits::default();
    let budget = BodyBudget::new(limits.body_budget_bytes, limits.max_body_bytes);
    (Arc::new(limits), budget)
});

/// The client, limits and budget a body is read under: the frontend's;
/// else (a router mounted in another program's app, whose own layers bound
/// what clients send) the defaults, with the peer where the host gives it
/// ([`peer`]) and otherwise no client: no per-client share then (one share
/// for every unknown client would let one of them refuse everyone's
/// writes); the whole budget still bounds them together.
fn body_context(parts: &Parts) -> (Option<IpAddr>, Arc<HttpLimits>, BodyBudget) {
    match parts.extensions.get::<RequestContext>() {
        Some(context) => (
            Some(context.client),
            Arc::clone(&context.limits),
            context.budget.clone(),
        ),
        None => (peer(parts), Arc::clone(&STANDALONE.0), STANDALONE.1.clone()),
    }
}

/// The client behind a [`crate::Frontend`], else the peer a host app gives.
fn client_of(parts: &Parts) -> Option<IpAddr> {
    match parts.extensions.get::<RequestContext>() {
        Some(context) => Some(context.client),
        None => peer(parts),
    }
}

/// The peer of a router mounted in another program's app, when that app
/// serves it with `into_make_service_with_connect_info::<SocketAddr>()`.
fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The client's address: [`RequestContext::client`] behind a
/// [`crate::Frontend`]; the peer's where a host app gives it
/// (`ConnectInfo<SocketAddr>`); else unknown, and the per-client limits of
/// the services do not apply (one shared bucket would let any client lock
/// every other out; the per-account limits still hold).
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(client_of(parts)))
    }
}

/// The bearer token from `Authorization` (never from the query string).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::missing_token());
    };
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::invalid_token()),
    }
}

/// A state that can tell who a bearer token speaks for.
pub trait Authenticates: Send + Sync {
    /// The token's principal, or 401 (`invalid_token`), 403 or 503.
    fn principal(
        &self,
        token: &str,
    ) -> impl std::future::Future<Output = Result<Principal, ApiError>> + Send;
}

impl<T: Authenticates> Authenticates for Arc<T> {
    fn principal(
        &self,
        token: &str,
    ) -> impl std::future::Future<Output = Result<Principal, ApiError>> + Send {
        T::principal(self, token)
    }
}

/// The authenticated caller, signed in: a login's access token verified
/// and admitted by the access gate (see `todo_core::AccessGate`). An API
/// token is refused (403 `insufficient_scope`): what an operation does not
/// grant to a scope ([`Scoped`]), only a login may do.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Authenticates> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?;
        let principal = state.principal(token).await?;
        if !principal.grant.is_login() {
            return Err(ApiError::insufficient_scope(None));
        }
        Ok(Self(principal))
    }
}

/// Whether the caller may read the change log: a login, or an API token
/// whose grant reads what the log carries (`events:read` with
/// `tasks:read` and `projects:read`, no project; made only so, this holds
/// for any token made since). Else 403 `insufficient_scope`.
pub(crate) fn reads_events(principal: &Principal) -> Result<(), ApiError> {
    match principal.grant {
        todo_core::Grant::ApiToken(grant) if !grant.reads_events() => {
            let missing = [Scope::EventsRead, Scope::TasksRead, Scope::ProjectsRead]
                .into_iter()
                .find(|s| !grant.scopes.contains(*s));
            Err(ApiError::insufficient_scope(missing))
        }
        _ => Ok(()),
    }
}

/// A scope an operation needs of an API token (a login has them all).
pub trait NeedsScope: Send + Sync {
    /// The scope.
    const SCOPE: Scope;
}

macro_rules! scopes_needed {
    ($($(#[$doc:meta])* $name:ident => $scope:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl NeedsScope for $name {
            const SCOPE: Scope = Scope::$scope;
        }
    )*};
}

scopes_needed! {
    /// `tasks:read`.
    TasksRead => TasksRead;
    /// `tasks:write`.
    TasksWrite => TasksWrite;
    /// `projects:read`.
    ProjectsRead => ProjectsRead;
    /// `projects:write`.
    ProjectsWrite => ProjectsWrite;
    /// `events:read`.
    EventsRead => EventsRead;
}

/// The authenticated caller of an operation an API token may make with
/// scope `N`: a login, or an API token that has it (else 403
/// `insufficient_scope` naming it). The handler still honours the
/// token's project, if it names one ([`Scoped::project`]).
#[derive(Debug, Clone)]
pub struct Scoped<N>(pub Principal, PhantomData<N>);

impl<N> Scoped<N> {
    /// The one project the caller's token is limited to, if any.
    #[must_use]
    pub fn project(&self) -> Option<todo_core::ProjectId> {
        self.0.grant.project()
    }

    /// `project`, if the caller's credentials reach it (a login, or a token
    /// not limited to another); else "not found", as for a project the
    /// caller is not a member of. The one place the project limit is
    /// weighed.
    pub fn within(&self, project: todo_core::ProjectId) -> Result<todo_core::ProjectId, ApiError> {
        match self.project() {
            Some(only) if only != project => Err(todo_core::Error::NotFound.into()),
            _ => Ok(project),
        }
    }
}

impl<S: Authenticates, N: NeedsScope> FromRequestParts<S> for Scoped<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?;
        let principal = state.principal(token).await?;
        if !principal.grant.allows(N::SCOPE) {
            return Err(ApiError::insufficient_scope(Some(N::SCOPE)));
        }
        Ok(Self(principal, PhantomData))
    }
}

/// An identifier in the path.
pub trait PathId: Sized {
    /// `None` for text that cannot be one (answered as not found).
    fn parse_id(raw: &str) -> Option<Self>;
}

macro_rules! uuid_path_ids {
    ($($id:ty),*) => {$(
        impl PathId for $id {
            fn parse_id(raw: &str) -> Option<Self> {
                Self::parse(raw).ok()
            }
        }
    )*};
}

uuid_path_ids!(
    TaskId,
    todo_core::WebhookId,
    UserId,
    todo_core::ProjectId,
    todo_core::SessionId,
    todo_core::PasskeyId
);

/// The path's `{id}` parameter as a domain identifier; an id that cannot be
/// one is simply not found (404), like an id of someone else's. Taken by
/// name, so a host app may nest the Router under a path with parameters of
/// its own (`/orgs/{org}/api`).
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: PathId> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        path_param(&params, "id")
            .and_then(T::parse_id)
            .map(Self)
            .ok_or_else(ApiError::not_found)
    }
}

/// The path's parameters, as the route matched them (a route with none
/// answers not found).
pub(crate) async fn path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<axum::extract::RawPathParams, ApiError> {
    axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::not_found())
}

/// The raw text of the path's parameter `wanted`, by name (so that a host
/// app may nest a Router under a path with parameters of its own).
pub(crate) fn path_param<'a>(
    params: &'a axum::extract::RawPathParams,
    wanted: &str,
) -> Option<&'a str> {
    params
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, raw)| raw)
}

/// Documents the path's `{id}` (every identifier on the wire is a UUID).
impl<T> utoipa::IntoParams for Path<T> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_parameter()]
    }
}

fn id_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        ))
        .build()
}

/// A write to one identified object under `If-Match`: the path's `{id}`
/// ([`Path`]), then the precondition ([`IfMatch`]). The document gives
/// every operation that takes it a 412 ([`crate::openapi::document`]).
#[derive(Debug, Clone, Copy)]
pub struct Conditional<T>(pub T, pub Precondition);

impl<S: Send + Sync, T: PathId + Send> FromRequestParts<S> for Conditional<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<T>::from_request_parts(parts, state).await?;
        let IfMatch(condition) = IfMatch::from_request_parts(parts, state).await?;
        Ok(Self(id, condition))
    }
}

impl<T> utoipa::IntoParams for Conditional<T> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let if_match = ParameterBuilder::new()
            .name("If-Match")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(r#"An ETag ("v<version>"); a stale one gets 412"#))
            .schema(Some(
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            ))
            .build();
        vec![id_parameter(), if_match]
    }
}

/// What `If-Match` asks of a write: no header or `*`, any version; a
/// strong `"v<version>"` (as the `ETag` writes it, byte for byte: no
/// leading zero, no sign), that version; anything else can match nothing
/// (the core decides what that answers, see [`Precondition`]). A list
/// (several ETags, or several header lines) names one version at most:
/// one that names two can only be a stale read, and matches nothing.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Precondition);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut entries = parts
            .headers
            .get_all(IF_MATCH)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("\u{0}").split(','))
            .map(str::trim);
        let Some(first) = entries.next() else {
            return Ok(Self(Precondition::Any));
        };
        let rest: Vec<&str> = entries.collect();
        // `*` stands alone (RFC 9110): in a list it is malformed.
        if first == "*" && rest.is_empty() {
            return Ok(Self(Precondition::Any));
        }
        let Some(version) = strong_version(first) else {
            return Ok(Self(Precondition::Unmatchable));
        };
        if rest
            .iter()
            .all(|entry| strong_version(entry) == Some(version))
        {
            Ok(Self(Precondition::Version(version)))
        } else {
            Ok(Self(Precondition::Unmatchable))
        }
    }
}

/// `"v<version>"` exactly as [`crate::task_api`] writes an `ETag`.
fn strong_version(entry: &str) -> Option<TaskVersion> {
    let digits = entry.strip_prefix("\"v")?.strip_suffix('"')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    TaskVersion::new(digits.parse().ok()?).ok()
}

/// The body's bytes, read as JSON bodies are: 415 for another media type,
/// 413 past the size limit (before reading it whole), 408 past the time
/// limit, 503 when the process's body budget is spent. The bytes' share of
/// the budget is held as long as the extractor is: bind it for the whole
/// handler (`JsonBytes(body, _held)`), so that requests waiting on the
/// pools still count against the budget.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes, pub(crate) Option<BodyShare>);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let (bytes, _, share) = read_body(
            request,
            &["application/json", "application/merge-patch+json"],
            None,
        )
        .await?;
        Ok(Self(bytes, share))
    }
}

/// How a large body is read: its limit, and the budget it is paid from
/// (one of its own, so that large bodies cannot spend the one every other
/// request's body is paid from).
#[derive(Debug, Clone)]
pub(crate) struct LargeBody {
    pub(crate) limit: usize,
    pub(crate) budget: BodyBudget,
}

/// A body of one of the media types `types` (415 for another), read
/// whole under the limits: 413 past the frontend's body limit, or past a
/// `large` body's, before reading it whole, 408 past the body time (four
/// times it for a large body), 503 when the budget is spent. Answers the
/// bytes, the index of the media type in `types`, and the bytes' share of
/// the budget (bind it for as long as the bytes are used).
pub(crate) async fn read_body(
    request: Request,
    types: &[&str],
    large: Option<&LargeBody>,
) -> Result<(Bytes, usize, Option<BodyShare>), ApiError> {
    let (parts, body) = request.into_parts();
    let media = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    let Some(kind) = media.and_then(|m| types.iter().position(|t| t.eq_ignore_ascii_case(m)))
    else {
        return Err(ApiError::unsupported_media_type());
    };
    let (client, limits, budget) = body_context(&parts);
    let (limit, body_timeout, budget) = match large {
        Some(large) => (large.limit, limits.body_timeout * 4, large.budget.clone()),
        None => (limits.max_body_bytes, limits.body_timeout, budget),
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        // Read what was sent (within a bound) before refusing it: see
        // `request::DRAIN_BYTES`.
        if n <= crate::request::DRAIN_BYTES as u64 {
            crate::request::drain(body, crate::request::DRAIN_BYTES).await;
        }
        return Err(ApiError::payload_too_large(limit));
    }
    let declared = declared.and_then(|n| usize::try_from(n).ok());
    let mut share = None;
    let read = read_limited(body, limit, declared, (&budget, client), &mut share);
    let bytes = tokio::time::timeout(body_timeout, read)
        .await
        .map_err(|_| ApiError::request_timeout())??;
    // A write's answer is given room now that its body has arrived, before
    // the write is made (absent where the API is mounted in another server).
    if let Some(room) = parts.extensions.get::<WriteRoom>()
        && let Some(client) = client
        && !room.reserve(client).await
    {
        return Err(ApiError::unavailable(
            std::time::Duration::from_secs(1),
            None,
        ));
    }
    Ok((bytes, kind, share))
}

/// A JSON body decoded into a wire type: the rules of [`JsonBytes`], then
/// 400 for malformed JSON, a missing or an unknown field. Holds the body's
/// share of the budget as [`JsonBytes`] does (`Json(body, _held)`).
#[derive(Debug)]
pub struct Json<T>(pub T, pub(crate) Option<BodyShare>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBytes(bytes, held) = JsonBytes::from_request(request, state).await?;
        decode_json(&bytes).map(|value| Self(value, held))
    }
}

/// A JSON body that may be left out: a request without a body (a
/// `Content-Length` of 0, or none and no `Content-Type` nor chunked body,
/// or an empty one of `application/json`) is `None`; any other is read as
/// [`Json`] (415, 413, 400 alike).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>, pub(crate) Option<BodyShare>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers();
        let bodiless = match headers.get(CONTENT_LENGTH) {
            Some(length) => length.as_bytes() == b"0",
            None => {
                !headers.contains_key(CONTENT_TYPE)
                    && !headers.contains_key(http::header::TRANSFER_ENCODING)
            }
        };
        if bodiless {
            return Ok(Self(None, None));
        }
        // (an HTTP/2 request names no length: an empty body is none too)
        let JsonBytes(bytes, held) = JsonBytes::from_request(request, state).await?;
        if bytes.is_empty() {
            return Ok(Self(None, held));
        }
        crate::request::decode_json(&bytes).map(|value| Self(Some(value), held))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http_body_util::BodyExt as _;

    use super::*;

    /// The id is taken by name: a host's own path parameters around it
    /// change nothing.
    #[tokio::test]
    async fn a_path_id_is_found_by_name_among_the_hosts_parameters() {
        use tower::ServiceExt as _;
        let app: axum::Router = axum::Router::new().route(
            "/orgs/{org}/things/{id}",
            axum::routing::get(|Path(id): Path<TaskId>| async move { id.to_string() }),
        );
        let get = |uri: &str| {
            let request = Request::get(uri).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(request)
        };
        let id = "0190a5b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
        let found = get(&format!("/orgs/acme/things/{id}")).await.unwrap();
        assert_eq!(found.status(), http::StatusCode::OK);
        let body = found.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], id.as_bytes());
        let bad = get("/orgs/acme/things/not-an-id").await.unwrap();
        assert_eq!(bad.status(), http::StatusCode::NOT_FOUND);
    }

    /// An `If-Match` matches only as the `ETag` is written; a list names
    /// one version or none.
    #[tokio::test]
    async fn if_match_takes_the_etag_as_written() {
        async fn precondition(values: &[&str]) -> Precondition {
            let mut request = Request::new(());
            for value in values {
                request
                    .headers_mut()
                    .append(IF_MATCH, http::HeaderValue::from_str(value).unwrap());
            }
            let (mut parts, ()) = request.into_parts();
            IfMatch::from_request_parts(&mut parts, &())
                .await
                .unwrap()
                .0
        }
        let v3 = Precondition::Version(TaskVersion::new(3).unwrap());
        assert_eq!(precondition(&[]).await, Precondition::Any);
        assert_eq!(precondition(&["*"]).await, Precondition::Any);
        assert_eq!(precondition(&["\"v3\""]).await, v3);
        assert_eq!(precondition(&[" \"v3\" , \"v3\""]).await, v3);
        assert_eq!(precondition(&["\"v3\"", "\"v3\""]).await, v3);
        for unmatchable in [
            &["\"v03\""][..],
            &["\"v+3\""],
            &["\"v\""],
            &["W/\"v3\""],
            &["v3"],
            &["\"v3\", \"v4\""],
            &["\"v3\"", "\"v4\""],
            &["\"v3\", junk"],
            &["*, junk"],
            &["junk, *"],
            &["*", "\"v3\""],
        ] {
            assert_eq!(
                precondition(unmatchable).await,
                Precondition::Unmatchable,
                "{unmatchable:?}"
            );
        }
    }

    /// Mounted without a frontend, a client is its peer where the host
    /// app gives it, else unknown: never one address shared by all, whose
    /// per-client limits one client could use up for everyone.
    #[tokio::test]
    async fn a_mounted_routers_client_is_its_peer_or_unknown() {
        let (mut bare, ()) = Request::new(()).into_parts();
        assert!(
            Client::from_request_parts(&mut bare, &())
                .await
                .unwrap()
                .0
                .is_none()
        );

        let (mut connected, ()) = Request::new(()).into_parts();
        let peer: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        connected.extensions.insert(ConnectInfo(peer));
        let Client(client) = Client::from_request_parts(&mut connected, &())
            .await
            .unwrap();
        assert_eq!(client, Some(peer.ip()));
        assert_eq!(body_context(&connected).0, Some(peer.ip()));
        assert_eq!(
            body_context(&bare).0,
            None,
            "no share for every unknown client"
        );

        // Behind the frontend, its context wins (the address past trusted proxies).
        let forwarded = IpAddr::from([198, 51, 100, 1]);
        let (mut fronted, ()) = Request::new(()).into_parts();
        fronted.extensions.insert(ConnectInfo(peer));
        fronted.extensions.insert(RequestContext {
            client: forwarded,
            limits: Arc::new(HttpLimits::default()),
            budget: STANDALONE.1.clone(),
        });
        let Client(client) = Client::from_request_parts(&mut fronted, &()).await.unwrap();
        assert_eq!(client, Some(forwarded));
    }

    /// A request's body stays paid for while its handler holds it (the
    /// handler may wait on the pools; unpaid, waiting bodies would grow
    /// past the budget).
    #[tokio::test]
    async fn the_body_share_is_held_while_the_handler_holds_the_bytes() {
        let limits = HttpLimits::default();
        let budget = BodyBudget::new(1 << 20, limits.max_body_bytes);
        let before = budget.available();
        let body = vec![b' '; 10_000];
        let mut request = http::Request::builder()
            .method("POST")
            .uri("/v1/tasks")
            .header("content-type", "application/json")
            .header("content-length", body.len().to_string())
            .body(axum::body::Body::new(
                http_body_util::Full::new(Bytes::from(body)).map_err(|never| match never {}),
            ))
            .unwrap();
        request.extensions_mut().insert(RequestContext {
            client: "192.0.2.1".parse().unwrap(),
            limits: Arc::new(limits),
            budget: budget.clone(),
        });
        let JsonBytes(bytes, held) = JsonBytes::from_request(request, &()).await.unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert!(
            budget.available() <= before - 10_000,
            "available {} of {before} while the body is held",
            budget.available()
        );
        drop(held);
        assert_eq!(budget.available(), before, "given back with the extractor");
    }
}
