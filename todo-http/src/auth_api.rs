//! auth-server's API: registration, login, tokens, accounts, admin. One
//! handler per operation, each taking typed extractors (the caller, the
//! path's id, the JSON body) and describing itself for the OpenAPI document.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawQuery, State};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use todo_core::{
    AccountPatch, AuthServices, ChallengeId, Credentials, DeviceToken, Email, Error as CoreError,
    MfaToken, PageLimit, Principal, RecoveryCode, RefreshToken, Registration, Role,
    SecondFactorAnswer, SessionId, SessionRecord, SignIn, TokenPair, TotpCode, User, UserAdmin,
    UserAgent, UserCursor, UserPatch, UserRef,
};
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::blocking::call;
use crate::extract::{
    Authenticates, Caller, Client, Json, JsonBytes, OptionalJson, Path, PathId, bearer,
};
use crate::front::{Api, ApiResponse, json, json_value, no_content};
use crate::probe::{Operations, Probe};
use crate::problem::ApiError;
use crate::request::query_int;

/// The auth API over the [`AuthServices`]: an axum `Router` by
/// [`Api::routes`], each operation one handler.
///
/// ```
/// use std::sync::Arc;
///
/// use axum::body::Body;
/// use http::{Request, StatusCode, header};
/// use todo_core::memory::MemoryStore;
/// use todo_core::testing::{CountingHasher, ManualClock, ReversingDigest, SeededRandom, TableTokens};
/// use todo_core::{AuthLimits, AuthServices};
/// use todo_http::{Api, AuthApi};
/// use tower::ServiceExt as _;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
/// let services = AuthServices::builder()
///     .store(Arc::new(MemoryStore::new()))
///     .hasher(Arc::new(CountingHasher::new(1)))
///     .signer(tokens.clone())
///     .verifier(tokens)
///     .refresh_hasher(Arc::new(ReversingDigest))
///     .clock(Arc::new(ManualClock::new()))
///     .random(Arc::new(SeededRandom::new(1)))
///     .limits(AuthLimits::unlimited())
///     .build()?;
/// let no_keys = todo_auth::JwkSet { keys: Vec::new() };
/// let app: axum::Router = Arc::new(AuthApi::new(services, &no_keys, Vec::new())?).routes().into();
///
/// let register = |body: &'static str| {
///     Request::post("/v1/auth/register")
///         .header(header::CONTENT_TYPE, "application/json")
///         .body(Body::from(body))
/// };
/// let created = app.clone().oneshot(register(r#"{"username": "Alice", "password": "correct horse"}"#)?).await?;
/// assert_eq!(created.status(), StatusCode::CREATED);
/// // Usernames are folded: the same name again is taken.
/// let again = app.oneshot(register(r#"{"username": "alice", "password": "another horse"}"#)?).await?;
/// assert_eq!(again.status(), StatusCode::CONFLICT);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AuthApi {
    service: AuthServices,
    /// The refresh token's cookie lifetime, when the one-origin web page's
    /// cookie sessions are on.
    cookie_max_age: Option<u64>,
    jwks: Bytes,
    ops: Operations,
    /// Places for reset mails asked for by login, sent after answering.
    mail_jobs: Arc<tokio::sync::Semaphore>,
}

impl AuthApi {
    /// The services it serves.
    pub(crate) fn services(&self) -> &AuthServices {
        &self.service
    }

    /// `jwks` is the served key set; `probes` answer readiness and add gauges.
    pub fn new(
        service: AuthServices,
        jwks: &todo_auth::JwkSet,
        probes: Vec<Arc<dyn Probe>>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            service,
            cookie_max_age: None,
            jwks: Bytes::from(serde_json::to_vec(jwks)?),
            ops: Operations::new(probes, &crate::openapi::auth())?,
            mail_jobs: Arc::new(tokio::sync::Semaphore::new(MAIL_JOBS)),
        })
    }

    /// Also hands the refresh token out as a `__Host-` cookie (`Path=/;
    /// Secure; HttpOnly; SameSite=Strict`), and accepts it on refresh and
    /// logout when the body names no token. A browser's request (one that
    /// carries `Sec-Fetch-Site` or the page's `Todo-Session: cookie`) and any
    /// refresh by cookie get the token pair without `refresh_token`: the page
    /// never holds a refresh token where script can read it. Session requests
    /// that a browser marks as cross-origin are refused (403).
    #[must_use]
    pub fn with_cookie_sessions(mut self) -> Self {
        self.cookie_max_age = Some(self.service.policy().refresh_ttl.as_secs());
        self
    }

    /// The refresh token from the body, else (with cookie sessions) the
    /// cookie; and whether it came from the cookie.
    fn refresh_token(
        &self,
        body: Option<String>,
        session: &Session,
    ) -> Result<(Option<RefreshToken>, bool), ApiError> {
        let (raw, from_cookie) = match (body, &session.refresh_cookie) {
            (Some(raw), _) => (raw, false),
            (None, Some(raw)) => (raw.clone(), true),
            (None, None) if self.cookie_max_age.is_some() => return Ok((None, false)),
            (None, None) => return Err(ApiError::field("refresh_token", "is required")),
        };
        Ok((RefreshToken::parse(&raw), from_cookie))
    }

    /// Whether the token pair's body leaves `refresh_token` out: with cookie
    /// sessions, for a browser, and whenever the token came from the cookie
    /// (so that a script in the page cannot trade the cookie for a readable
    /// token).
    fn cookie_only(&self, session: &Session, from_cookie: bool) -> bool {
        self.cookie_max_age.is_some() && (from_cookie || session.from_browser)
    }

    /// The answer that hands out a token pair: its body ([`token_pair`]),
    /// and with cookie sessions the refresh and device cookies.
    fn issue(&self, pair: &TokenPair, cookie_only: bool) -> Result<ApiResponse, ApiError> {
        let body = token_pair(pair, cookie_only)?;
        let response = self.with_cookie(body, Some(&pair.refresh_token));
        Ok(self.with_device_cookie(response, pair.device_token.as_ref()))
    }

    fn with_cookie(&self, mut response: ApiResponse, token: Option<&RefreshToken>) -> ApiResponse {
        if let Some(max_age) = self.cookie_max_age {
            let value = match token {
                Some(token) => format!(
                    "{REFRESH_COOKIE}={}; {COOKIE_ATTRIBUTES}; Max-Age={max_age}",
                    token.expose()
                ),
                None => format!("{REFRESH_COOKIE}=; {COOKIE_ATTRIBUTES}; Max-Age=0"),
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }

    /// Counts a login refused (401) in the metrics; other errors are no
    /// login's verdict.
    fn count_failed_login(&self, error: &ApiError) {
        if error.status == StatusCode::UNAUTHORIZED {
            self.ops.metrics().login_failed();
        }
    }

    /// A sign-in's last step, as the two-step login and the passkey's
    /// finish it: the device token (the body's, else the cookie) and the
    /// `User-Agent` handed to `finish` with the client, on the blocking
    /// pool; the outcome counted, and the token pair issued as a login's.
    async fn finish_sign_in(
        &self,
        session: Session,
        device_token: Option<String>,
        finish: impl FnOnce(
            &todo_core::SessionService,
            Option<IpAddr>,
            Option<UserAgent>,
            Option<DeviceToken>,
        ) -> Result<TokenPair, CoreError>
        + Send
        + 'static,
    ) -> Result<ApiResponse, ApiError> {
        let cookie_only = self.cookie_only(&session, false);
        let device = device_token
            .as_deref()
            .or(session.device_cookie.as_deref())
            .and_then(DeviceToken::parse);
        let user_agent = session
            .user_agent
            .as_deref()
            .and_then(UserAgent::from_header);
        let client = session.client;
        let outcome = call(&self.service.sessions, move |s| {
            finish(s, client, user_agent, device)
        })
        .await;
        match &outcome {
            Ok(_) => self.ops.metrics().login_succeeded(),
            Err(e) => self.count_failed_login(e),
        }
        self.issue(&outcome?, cookie_only)
    }

    /// With cookie sessions, the device token also goes in its own cookie.
    fn with_device_cookie(
        &self,
        mut response: ApiResponse,
        device: Option<&DeviceToken>,
    ) -> ApiResponse {
        if let (Some(_), Some(device)) = (self.cookie_max_age, device) {
            let value = format!(
                "{DEVICE_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
                device.expose(),
                todo_core::DEVICE_TOKEN_TTL.as_secs()
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }
}

impl AuthApi {
    /// The bearer token's principal, admitted by the services' gate, and
    /// when the token expires.
    async fn admit(&self, token: &str) -> Result<(Principal, i64), ApiError> {
        if todo_core::ApiTokenSecret::is_claimed_by(token) {
            let (principal, expires_at) =
                crate::gate::admit_api_token(self.service.gate(), token).await?;
            return Ok((principal, expires_at.unix_seconds()));
        }
        let claims = self
            .service
            .gate()
            .verify(token)
            .map_err(|_| ApiError::invalid_token())?;
        let expires_at = claims.expires_at;
        let principal = crate::gate::admit(self.service.gate(), claims).await?;
        Ok((principal, expires_at))
    }
}

impl Authenticates for AuthApi {
    /// The bearer token's principal, admitted by the services' gate.
    async fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        self.admit(token).await.map(|(principal, _)| principal)
    }
}

/// An administrator's request: the caller, refused (403) as soon as the
/// token is admitted if they are no admin, before a path, query or body is
/// read ([`UserAdmin::screen`]; the service checks the stored role again).
pub(crate) struct Admin(pub(crate) Principal);

impl FromRequestParts<Arc<AuthApi>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<AuthApi>) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, api).await?;
        UserAdmin::screen(&principal)?;
        Ok(Self(principal))
    }
}

/// A gateway's question (`validate`): the bearer token's principal, admitted
/// as every request's is, and when the token expires.
struct Validated(Principal, i64);

impl FromRequestParts<Arc<AuthApi>> for Validated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<AuthApi>) -> Result<Self, ApiError> {
        let (principal, expires_at) = api.admit(bearer(&parts.headers)?).await?;
        Ok(Self(principal, expires_at))
    }
}

/// A request to a session endpoint (login, refresh, logout): its client,
/// and, with cookie sessions, its cookies and whether a browser sent it.
/// With cookie sessions, refused (403) when a browser says it comes from
/// another origin or site, before its body is read, since these endpoints
/// act on (or hand out) the cookie.
struct Session {
    client: Option<IpAddr>,
    /// The `User-Agent`, shown among the user's sessions (login).
    user_agent: Option<String>,
    /// The refresh token's cookie (cookie sessions only).
    refresh_cookie: Option<String>,
    /// The device token's cookie (cookie sessions only).
    device_cookie: Option<String>,
    /// Whether a browser sent it (cookie sessions only).
    from_browser: bool,
}

impl FromRequestParts<Arc<AuthApi>> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<AuthApi>) -> Result<Self, ApiError> {
        let Client(client) = Client::from_request_parts(parts, api).await?;
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if api.cookie_max_age.is_none() {
            return Ok(Self {
                client,
                user_agent,
                refresh_cookie: None,
                device_cookie: None,
                from_browser: false,
            });
        }
        if cross_origin(&parts.headers, host(parts)) {
            return Err(ApiError::cross_origin());
        }
        Ok(Self {
            client,
            user_agent,
            refresh_cookie: cookie(&parts.headers, REFRESH_COOKIE),
            device_cookie: cookie(&parts.headers, DEVICE_COOKIE),
            from_browser: from_browser(&parts.headers),
        })
    }
}

/// A user named in the path: text that cannot be an id is answered by the
/// service (not found, after the admin check).
impl PathId for UserRef {
    fn parse_id(raw: &str) -> Option<Self> {
        Some(Self::parse(raw))
    }
}

/// A registration on the wire.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Registration)]
struct RegisterBody {
    #[schema(schema_with = limits::offered_username)]
    username: String,
    #[schema(schema_with = limits::new_password)]
    password: String,
    #[serde(default)]
    #[schema(schema_with = limits::email)]
    email: Option<String>,
}

/// A login attempt on the wire.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Credentials)]
struct LoginBody {
    username: String,
    password: String,
    /// From an earlier login: exempts this login from its account's lockout.
    #[serde(default)]
    device_token: Option<String>,
}

/// A refresh or logout request: the token in the body, else (with cookie
/// sessions) the cookie.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RefreshRequest)]
struct RefreshBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `__Host-`: the browser takes it only with `Secure`, `Path=/` and no
/// `Domain`, so neither a sibling subdomain nor plain HTTP can plant or
/// shadow it.
const REFRESH_COOKIE: &str = "__Host-todo_refresh";
const COOKIE_ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Strict";

/// The header the page sends to ask for a cookie-only session (browsers
/// without `Sec-Fetch-Site`).
const PAGE_SESSION_HEADER: &str = "todo-session";

/// Whether the request comes from a browser: it carries `Sec-Fetch-Site`
/// (a header script can neither set nor remove) or the page's own header.
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key("sec-fetch-site")
        || headers
            .get(PAGE_SESSION_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cookie"))
}

/// The host the request was sent to: `Host`, or, in HTTP/2 (where a
/// mounted router sees no `Host`), the URI's `:authority`.
fn host(parts: &Parts) -> Option<&[u8]> {
    match parts.headers.get(http::header::HOST) {
        Some(host) => Some(host.as_bytes()),
        None => parts.uri.authority().map(|a| a.as_str().as_bytes()),
    }
}

/// Whether a browser says the request is not from this origin:
/// `Sec-Fetch-Site` other than `same-origin`, or an `Origin` other than
/// `https://` and the request's own host. A request with neither header (an
/// API client) is not cross-origin; one whose headers cannot be read is.
fn cross_origin(headers: &HeaderMap, host: Option<&[u8]>) -> bool {
    let mut sites = headers.get_all("sec-fetch-site").iter();
    let site_ok = sites.all(|v| v.as_bytes() == b"same-origin");
    let mut origins = headers.get_all(http::header::ORIGIN).iter();
    let origin_ok =
        origins.all(
            |origin| match (origin.as_bytes().strip_prefix(b"https://"), host) {
                (Some(origin), Some(host)) => same_authority(origin, host),
                _ => false,
            },
        );
    !(site_ok && origin_ok)
}

/// `host[:port]` against `host[:port]`, ignoring case and an explicit `:443`.
fn same_authority(a: &[u8], b: &[u8]) -> bool {
    let a = a.strip_suffix(b":443").unwrap_or(a);
    let b = b.strip_suffix(b":443").unwrap_or(b);
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}
/// The device token's cookie (with cookie sessions): sent to every path of
/// this origin only, never readable by script.
const DEVICE_COOKIE: &str = "__Host-todo-device";

/// A cookie's value from the `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// A change to one's own account: `email: null` removes the address.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MePatch)]
struct PatchMeBody {
    #[serde(default, deserialize_with = "crate::dto::present")]
    email: Option<Option<String>>,
    /// Required to change the address (a verified address receives
    /// password-reset links).
    current_password: Option<String>,
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordChange)]
struct PasswordBody {
    current_password: String,
    #[schema(schema_with = limits::new_password)]
    new_password: String,
}

/// The caller's password again: to delete the account, or to end other
/// sessions than their own.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordConfirmation)]
struct ConfirmBody {
    current_password: String,
}

/// An administrator's change to a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserPatch)]
struct AdminPatchBody {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    email: Option<Option<String>>,
}

/// A user on the wire: never a password or hash.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserDto {
    id: String,
    #[schema(schema_with = limits::username)]
    username: String,
    email: Option<String>,
    /// Whether the address was proved by its link (only a verified
    /// address receives reset links); a change of address clears it.
    email_verified: bool,
    role: &'static str,
    disabled: bool,
    created_at: String,
    updated_at: String,
    /// The second factors a login asks for (`totp`, `recovery_code`);
    /// given on `/v1/users/me`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa: Option<Vec<&'static str>>,
}

impl UserDto {
    fn with_mfa(mut self, methods: Vec<&'static str>) -> Self {
        self.mfa = Some(methods);
        self
    }
}

impl From<&User> for UserDto {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.to_string(),
            email: user.email.as_ref().map(ToString::to_string),
            email_verified: user.email_verified,
            role: user.role.as_str(),
            disabled: user.disabled,
            created_at: user.created_at.to_string(),
            updated_at: user.updated_at.to_string(),
            mfa: None,
        }
    }
}

/// The tokens a login or refresh answers.
#[derive(Serialize, ToSchema)]
#[schema(as = TokenPair)]
struct TokenPairDto<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<&'a str>,
}

/// A login's first step, when a second factor is next: no tokens.
#[derive(Serialize, ToSchema)]
#[schema(as = MfaRequired)]
struct MfaRequiredDto<'a> {
    /// Always true: tells this answer from a token pair.
    mfa_required: bool,
    /// For `/v1/auth/login/mfa`: single-use, five attempts, five minutes.
    mfa_token: &'a str,
    /// What the second step takes: `totp`, `recovery_code`.
    methods: Vec<&'static str>,
    /// Seconds until `mfa_token` expires.
    expires_in: u64,
}

/// What a login answers: tokens, or the second step's token.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // (the schema of the login's two answers; each is written as itself)
enum LoginAnswer<'a> {
    Tokens(TokenPairDto<'a>),
    SecondFactor(MfaRequiredDto<'a>),
}

/// The token pair; without `refresh_token` when the cookie carries it.
fn token_pair(pair: &TokenPair, cookie_only: bool) -> Result<ApiResponse, ApiError> {
    json_value(
        StatusCode::OK,
        &TokenPairDto {
            access_token: &pair.access_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_token: (!cookie_only).then(|| pair.refresh_token.expose()),
            device_token: pair
                .device_token
                .as_ref()
                .filter(|_| !cookie_only)
                .map(DeviceToken::expose),
        },
    )
}

/// What a gateway learns of a valid token.
#[derive(Serialize, ToSchema)]
#[schema(as = Validation)]
struct ValidateDto<'a> {
    sub: String,
    username: &'a str,
    role: &'static str,
    exp: i64,
    /// An API token's scopes (absent for a login's access token, which
    /// may do everything its user may): a service behind the gateway
    /// must honour them.
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<&'static str>>,
    /// The one project an API token is limited to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    project_id: Option<String>,
}

/// A session on the wire: where the user is signed in.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub(crate) struct SessionDto {
    id: String,
    /// `login`: a sign-in with a password; `api_token`: an API token
    /// (`/v1/api-tokens`).
    #[schema(value_type = String, pattern = "^(login|api_token)$")]
    kind: &'static str,
    created_at: String,
    /// A login's last token issued (a login or refresh: within one
    /// access-token lifetime of its last use); an API token's last use,
    /// within a minute.
    last_used_at: String,
    /// As the client sent it when the session started, cut to 256
    /// characters.
    user_agent: Option<String>,
    /// The client's address when the session started.
    address: Option<String>,
    /// Whether the caller's token comes from it.
    current: bool,
}

impl SessionDto {
    pub(crate) fn of(session: &SessionRecord, caller: &Principal) -> Self {
        Self {
            id: session.id.to_string(),
            kind: session.kind.as_str(),
            created_at: session.created_at.to_string(),
            last_used_at: session.last_used_at.to_string(),
            user_agent: session.user_agent.as_ref().map(|ua| ua.as_str().to_owned()),
            address: session.address.map(|ip| ip.to_string()),
            current: caller.session == Some(session.id),
        }
    }
}

/// The caller's sessions, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = SessionList)]
struct SessionsDto {
    items: Vec<SessionDto>,
}

/// A page of users.
#[derive(Serialize, ToSchema)]
#[schema(as = UserPage)]
struct UsersPage {
    items: Vec<UserDto>,
    next_cursor: Option<String>,
}

fn email(raw: Option<Option<String>>) -> Result<Option<Option<Email>>, ApiError> {
    raw.map(|e| e.as_deref().map(Email::parse).transpose())
        .transpose()
        .map_err(|e| ApiError::validation(vec![e]))
}

/// Decodes a `POST /v1/auth/register` body.
pub fn decode_registration(body: &[u8]) -> Result<Registration, ApiError> {
    let body: RegisterBody = crate::request::decode_json(body)?;
    Registration::parse(&body.username, &body.password, body.email.as_deref())
        .map_err(ApiError::validation)
}

/// Decodes a `POST /v1/auth/login` body.
pub fn decode_credentials(body: &[u8]) -> Result<Credentials, ApiError> {
    let body: LoginBody = crate::request::decode_json(body)?;
    Ok(Credentials::offered(&body.username, &body.password)
        .with_device(body.device_token.as_deref()))
}

/// Decodes a `PATCH /v1/users/{id}` body.
pub fn decode_user_patch(body: &[u8]) -> Result<UserPatch, ApiError> {
    let body: AdminPatchBody = crate::request::decode_json(body)?;
    let role = body
        .role
        .as_deref()
        .map(Role::parse)
        .transpose()
        .map_err(|e| ApiError::validation(vec![e]))?;
    Ok(UserPatch {
        disabled: body.disabled,
        role,
        email: email(body.email)?,
    })
}

/// The auth API's routes, each with the description its handler carries.
fn auth_routes() -> OpenApiRouter<Arc<AuthApi>> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(passkey_start))
        .routes(routes!(passkey_finish))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(validate))
        .routes(routes!(jwks))
        .routes(routes!(me, patch_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(
            crate::second_factors_api::begin_totp,
            crate::second_factors_api::remove_totp
        ))
        .routes(routes!(crate::second_factors_api::confirm_totp))
        .routes(routes!(crate::second_factors_api::remove_second_factors))
        .routes(routes!(
            crate::second_factors_api::start_passkey_registration
        ))
        .routes(routes!(
            crate::second_factors_api::finish_passkey_registration
        ))
        .routes(routes!(crate::second_factors_api::list_passkeys))
        .routes(routes!(crate::second_factors_api::remove_passkey))
        .routes(routes!(list_sessions))
        .routes(routes!(end_session))
        .routes(routes!(end_other_sessions))
        .routes(routes!(
            crate::api_tokens_api::create_api_token,
            crate::api_tokens_api::list_api_tokens
        ))
        .routes(routes!(crate::api_tokens_api::revoke_api_token))
        .routes(routes!(list_users))
        .routes(routes!(get_user, patch_user, delete_user))
        .routes(routes!(user_sessions, end_user_sessions))
        .routes(routes!(password_reset_link))
        .routes(routes!(confirm_password_reset))
        .routes(routes!(request_password_reset))
        .routes(routes!(request_email_verification))
        .routes(routes!(verify_email))
}

/// The operations the auth API serves, as its handlers describe them.
#[must_use]
pub fn documented() -> utoipa::openapi::OpenApi {
    auth_routes().into_openapi()
}

type Auth = State<Arc<AuthApi>>;

/// Register a user.
#[utoipa::path(post, path = "/v1/auth/register", request_body = RegisterBody, security(()),
    responses(
        (status = 201, description = "The new user", body = UserDto),
        (status = 403, description = "Registration is closed (urn:todo:problem:registration-closed): an administrator creates users"),
        (status = 409, description = "Username taken"),
    ))]
async fn register(
    State(api): Auth,
    Client(client): Client,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let registration = decode_registration(&body)?;
    let user = call(&api.service.sessions, move |s| {
        s.register(client, registration)
    })
    .await?;
    json_value(StatusCode::CREATED, &UserDto::from(&user))
}

/// Log in: tokens, or, for an account with a second factor, the
/// two-step login's `mfa_token` (for `/v1/auth/login/mfa`).
#[utoipa::path(post, path = "/v1/auth/login", request_body = LoginBody, security(()),
    responses(
        (status = 200, description = "Tokens; or, with a second factor enrolled, `mfa_required` and no tokens", body = LoginAnswer<'_>),
        (status = 401, description = "Unknown user, wrong password or disabled account, alike"),
        CrossOrigin,
    ))]
async fn login(
    State(api): Auth,
    session: Session,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let cookie_only = api.cookie_only(&session, false);
    let mut credentials = decode_credentials(&body)?;
    if credentials.device.is_none() {
        credentials = credentials.with_device(session.device_cookie.as_deref());
    }
    credentials = credentials.with_user_agent(session.user_agent.as_deref());
    let client = session.client;
    let outcome = call(&api.service.sessions, move |s| {
        s.sign_in(client, &credentials)
    })
    .await;
    match &outcome {
        Ok(SignIn::Tokens(_)) => api.ops.metrics().login_succeeded(),
        Ok(SignIn::SecondFactor(_)) => {}
        Err(e) => api.count_failed_login(e),
    };
    match outcome? {
        SignIn::Tokens(pair) => api.issue(&pair, cookie_only),
        SignIn::SecondFactor(challenge) => json_value(
            StatusCode::OK,
            &MfaRequiredDto {
                mfa_required: true,
                mfa_token: challenge.token.expose(),
                methods: challenge.methods,
                expires_in: challenge.expires_in,
            },
        ),
    }
}

/// A login's second step: the `mfa_token` and one code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MfaLogin)]
struct MfaBody {
    /// From the login's first step.
    mfa_token: String,
    /// Six digits from the authenticator (or `recovery_code`).
    #[serde(default)]
    totp: Option<String>,
    /// One of the recovery codes (or `totp`).
    #[serde(default)]
    recovery_code: Option<String>,
    /// From an earlier login, as at the first step.
    #[serde(default)]
    device_token: Option<String>,
}

/// Finish a two-step login with a code: tokens.
#[utoipa::path(post, path = "/v1/auth/login/mfa", request_body = MfaBody, security(()),
    responses(
        (status = 200, description = "Tokens", body = TokenPairDto<'_>),
        (status = 400, description = "Neither or both of totp and recovery_code, or a code that is not one"),
        (status = 401, description = "Wrong or used code (urn:todo:problem:invalid-second-factor), or an mfa_token unknown, used, expired or out of its five attempts (urn:todo:problem:invalid-mfa-token)"),
        (status = 429, description = "Too many wrong codes on this account"),
        CrossOrigin,
    ))]
async fn login_mfa(
    State(api): Auth,
    session: Session,
    Json(body, _held): Json<MfaBody>,
) -> Result<ApiResponse, ApiError> {
    let answer = match (&body.totp, &body.recovery_code) {
        (Some(code), None) => SecondFactorAnswer::Totp(
            TotpCode::parse(code).ok_or_else(|| ApiError::field("totp", "is not six digits"))?,
        ),
        (None, Some(code)) => SecondFactorAnswer::RecoveryCode(
            RecoveryCode::parse(code)
                .ok_or_else(|| ApiError::field("recovery_code", "is not a recovery code"))?,
        ),
        _ => {
            return Err(ApiError::field(
                "totp",
                "give totp or recovery_code, one of them",
            ));
        }
    };
    let token = MfaToken::parse(&body.mfa_token).ok_or(CoreError::InvalidMfaToken)?;
    api.finish_sign_in(
        session,
        body.device_token,
        move |s, client, user_agent, device| {
            s.complete_sign_in(client, &token, &answer, user_agent, device)
        },
    )
    .await
}

/// Begin signing in with a passkey: the browser's options, and the
/// `challenge_id` its answer names (no username: nothing tells whether an
/// account exists or has a passkey).
#[utoipa::path(post, path = "/v1/auth/passkey/start", security(()),
    responses(
        (status = 200, description = "WebAuthn request options (`{publicKey: …}`) and `challenge_id`: single-use, five minutes", body = Object),
        (status = 429, description = "Too many sign-ins from this address"),
        (status = 503, description = "This server offers no passkeys (no --public-url)"),
        CrossOrigin,
    ))]
async fn passkey_start(State(api): Auth, session: Session) -> Result<ApiResponse, ApiError> {
    let client = session.client;
    let challenge = call(&api.service.sessions, move |s| {
        s.start_passkey_sign_in(client)
    })
    .await?;
    let mut options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&challenge.options)
            .map_err(|e| ApiError::internal(format!("passkey options: {e}")))?;
    options.insert(
        "challenge_id".to_owned(),
        challenge.challenge_id.expose().into(),
    );
    let mut response = json_value(StatusCode::OK, &options)?;
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// A passkey sign-in's second step.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasskeySignIn)]
struct PasskeyFinishBody {
    /// From the first step.
    challenge_id: String,
    /// What `navigator.credentials.get` answered (a `PublicKeyCredential`,
    /// its binary fields in base64url).
    #[schema(value_type = Object)]
    credential: Box<serde_json::value::RawValue>,
    /// From an earlier login, as at `/v1/auth/login`.
    #[serde(default)]
    device_token: Option<String>,
}

/// Finish signing in with a passkey: tokens (a passkey is both factors).
#[utoipa::path(post, path = "/v1/auth/passkey/finish", request_body = PasskeyFinishBody, security(()),
    responses(
        (status = 200, description = "Tokens", body = TokenPairDto<'_>),
        (status = 401, description = "Refused, alike whatever the reason (urn:todo:problem:invalid-passkey): an unknown, used or expired challenge_id, an unknown passkey, a disabled account, an answer that does not verify"),
        (status = 429, description = "Too many sign-ins from this address"),
        CrossOrigin,
    ))]
async fn passkey_finish(
    State(api): Auth,
    session: Session,
    Json(body, _held): Json<PasskeyFinishBody>,
) -> Result<ApiResponse, ApiError> {
    let challenge_id = ChallengeId::parse(&body.challenge_id).ok_or_else(|| {
        ApiError::from(CoreError::InvalidPasskey(
            "a malformed challenge_id".to_owned(),
        ))
    })?;
    let credential = body.credential;
    api.finish_sign_in(
        session,
        body.device_token,
        move |s, client, user_agent, device| {
            s.finish_passkey_sign_in(client, &challenge_id, credential.get(), user_agent, device)
        },
    )
    .await
}

/// Exchange a refresh token (rotates it; reuse revokes its family).
#[utoipa::path(post, path = "/v1/auth/refresh", request_body = RefreshBody, security(()),
    responses(
        (status = 200, description = "New tokens", body = TokenPairDto<'_>),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token"),
        CrossOrigin,
    ))]
async fn refresh(
    State(api): Auth,
    session: Session,
    Json(body, _held): Json<RefreshBody>,
) -> Result<ApiResponse, ApiError> {
    let (token, from_cookie) = api.refresh_token(body.refresh_token, &session)?;
    let token = token.ok_or_else(|| ApiError::from(CoreError::InvalidRefreshToken))?;
    let cookie_only = api.cookie_only(&session, from_cookie);
    let client = session.client;
    let pair = call(&api.service.sessions, move |s| s.refresh(client, &token)).await?;
    api.issue(&pair, cookie_only)
}

/// Revoke a refresh token's family.
#[utoipa::path(post, path = "/v1/auth/logout", request_body = RefreshBody, security(()),
    responses(
        (status = 204, description = "Logged out (also for unknown tokens)"),
        CrossOrigin,
    ))]
async fn logout(
    State(api): Auth,
    session: Session,
    Json(body, _held): Json<RefreshBody>,
) -> Result<ApiResponse, ApiError> {
    if let (Some(token), _) = api.refresh_token(body.refresh_token, &session)? {
        let client = session.client;
        call(&api.service.sessions, move |s| s.logout(client, &token)).await?;
    }
    Ok(api.with_cookie(no_content(), None))
}

/// Check a token for a gateway (account enabled, not revoked).
#[utoipa::path(get, path = "/v1/auth/validate",
    responses((status = 200, description = "The token's subject", body = ValidateDto<'_>)))]
async fn validate(Validated(me, expires_at): Validated) -> Result<ApiResponse, ApiError> {
    json_value(
        StatusCode::OK,
        &ValidateDto {
            sub: me.user_id.to_string(),
            username: me.username.as_str(),
            role: me.role.as_str(),
            exp: expires_at,
            scopes: match me.grant {
                todo_core::Grant::ApiToken(grant) => {
                    Some(grant.scopes.iter().map(todo_core::Scope::as_str).collect())
                }
                todo_core::Grant::Login => None,
            },
            project_id: me.grant.project().map(|p| p.to_string()),
        },
    )
}

/// Public verification keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", security(()),
    responses((status = 200, description = "JWKS", content_type = "application/json")))]
async fn jwks(State(api): Auth) -> ApiResponse {
    let mut response = json(StatusCode::OK, api.jwks.clone());
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// My account.
#[utoipa::path(get, path = "/v1/users/me",
    responses((status = 200, description = "Me", body = UserDto)))]
async fn me(State(api): Auth, Caller(me): Caller) -> Result<ApiResponse, ApiError> {
    let (user, methods) = call(&api.service.account, move |s| {
        Ok((s.me(&me)?, s.second_factor_methods(&me)?))
    })
    .await?;
    json_value(StatusCode::OK, &UserDto::from(&user).with_mfa(methods))
}

/// Change my e-mail address (null removes it).
#[utoipa::path(patch, path = "/v1/users/me", request_body = PatchMeBody,
    responses(
        (status = 200, description = "Me", body = UserDto),
        (status = 400, description = "A new address without current_password, or an address that is not one"),
        (status = 403, description = "Current password wrong"),
        (status = 429, description = "Too many wrong passwords in this session"),
    ))]
async fn patch_me(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<PatchMeBody>,
) -> Result<ApiResponse, ApiError> {
    let patch = AccountPatch {
        email: email(body.email)?,
    };
    let current = body.current_password;
    let user = call(&api.service.account, move |s| {
        s.patch_me(client, &me, patch, current.as_deref())
    })
    .await?;
    json_value(StatusCode::OK, &UserDto::from(&user))
}

/// Change my password (revokes every session).
#[utoipa::path(post, path = "/v1/users/me/password", request_body = PasswordBody,
    responses(
        (status = 204, description = "Changed"),
        (status = 403, description = "Current password wrong"),
    ))]
async fn change_password(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<PasswordBody>,
) -> Result<ApiResponse, ApiError> {
    call(&api.service.account, move |s| {
        s.change_password(client, &me, &body.current_password, &body.new_password)
    })
    .await?;
    Ok(no_content())
}

/// The password again, and with a second factor enrolled a code: to
/// delete the account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AccountDeletion)]
struct DeleteMeBody {
    current_password: String,
    /// Six digits from the authenticator, or a recovery code: this or a
    /// passkey's answer is required when the account has a second factor.
    #[serde(default)]
    code: Option<String>,
    /// Or one of the caller's passkeys.
    #[serde(default)]
    passkey: Option<crate::second_factors_api::PasskeyProof>,
}

/// Delete my account, with everything it owns (the password again, and a
/// code when a second factor is enrolled).
#[utoipa::path(delete, path = "/v1/users/me", request_body = DeleteMeBody,
    responses(
        (status = 204, description = "Deleted: its tokens are refused, its data gone"),
        (status = 400, description = "A second factor is enrolled and no code given"),
        (status = 403, description = "Current password or code wrong"),
        (status = 409, description = "An administrator's account: another administrator deletes it"),
        (status = 429, description = "Too many wrong passwords"),
    ))]
async fn delete_me(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<DeleteMeBody>,
) -> Result<ApiResponse, ApiError> {
    let answer = crate::second_factors_api::confirmation(body.code.as_deref(), body.passkey)?;
    call(&api.service.account, move |s| {
        s.delete_me(client, &me, &body.current_password, answer.as_ref())
    })
    .await?;
    // (with cookie sessions, the page's refresh cookie goes too)
    Ok(api.with_cookie(no_content(), None))
}

/// My sessions: each sign-in, newest first.
#[utoipa::path(get, path = "/v1/sessions",
    responses((status = 200, description = "My live sessions", body = SessionsDto)))]
async fn list_sessions(State(api): Auth, Caller(me): Caller) -> Result<ApiResponse, ApiError> {
    let caller = me.clone();
    let sessions = call(&api.service.sessions, move |s| s.list_sessions(&caller)).await?;
    let items = sessions.iter().map(|s| SessionDto::of(s, &me)).collect();
    json_value(StatusCode::OK, &SessionsDto { items })
}

/// End one of my sessions (its tokens are refused within a second); a
/// newer one than this, with my password again.
#[utoipa::path(delete, path = "/v1/sessions/{id}",
    params(Path<SessionId>),
    request_body(content = Option<ConfirmBody>, description = "Needed to end a newer session than the caller's"),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "A newer session than the caller's, and no current_password"),
        (status = 403, description = "Current password wrong"),
        (status = 404, description = "No such live session of mine"),
        (status = 429, description = "Too many wrong passwords in this session"),
    ))]
async fn end_session(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Path(id): Path<SessionId>,
    OptionalJson(body, _held): OptionalJson<ConfirmBody>,
) -> Result<ApiResponse, ApiError> {
    let password = body.map(|b| b.current_password);
    call(&api.service.sessions, move |s| {
        s.end_session(client, &me, id, password.as_deref())
    })
    .await?;
    Ok(no_content())
}

/// End every session of mine but the one this token comes from (while a
/// newer one lives, with my password again).
#[utoipa::path(post, path = "/v1/sessions/revoke-others",
    request_body(content = Option<ConfirmBody>, description = "Needed while a newer session than the caller's lives"),
    responses(
        (status = 204, description = "Every other session ended"),
        (status = 400, description = "A newer session lives, and no current_password"),
        (status = 403, description = "Current password wrong"),
        (status = 409, description = "The token names no session (issued before sessions were named): sign in again"),
        (status = 429, description = "Too many wrong passwords in this session"),
    ))]
async fn end_other_sessions(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    OptionalJson(body, _held): OptionalJson<ConfirmBody>,
) -> Result<ApiResponse, ApiError> {
    let password = body.map(|b| b.current_password);
    call(&api.service.sessions, move |s| {
        s.end_other_sessions(client, &me, password.as_deref())
    })
    .await?;
    Ok(no_content())
}

/// List users (admin).
#[utoipa::path(get, path = "/v1/users",
    params(
        ("limit" = Option<i64>, Query, description = "page size"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of users", body = UsersPage),
        (status = 403, description = "Not an admin"),
    ))]
async fn list_users(
    State(api): Auth,
    Admin(me): Admin,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    let mut limit = PageLimit::default();
    let mut cursor = None;
    let invalid = |e| ApiError::validation(vec![e]);
    for (name, value) in crate::request::query_pairs(query.as_deref(), &["limit", "cursor"])? {
        match name.as_str() {
            "limit" => limit = PageLimit::new(query_int("limit", &value)?).map_err(invalid)?,
            "cursor" => cursor = Some(UserCursor::parse(&value).map_err(invalid)?),
            // (`query_pairs` let through only the names above.)
            other => return Err(ApiError::field(other, "unknown query parameter")),
        }
    }
    let page = call(&api.service.admin, move |s| {
        s.list_users(&me, limit, cursor)
    })
    .await?;
    crate::dto::page_json(&page, |items, next_cursor| UsersPage { items, next_cursor })
}

/// Get a user (admin).
#[utoipa::path(get, path = "/v1/users/{id}",
    params(Path<UserRef>),
    responses(
        (status = 200, description = "The user", body = UserDto),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
async fn get_user(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
) -> Result<ApiResponse, ApiError> {
    let user = call(&api.service.admin, move |s| s.get_user(&me, id)).await?;
    json_value(StatusCode::OK, &UserDto::from(&user))
}

/// Disable, enable, change role or e-mail (admin).
#[utoipa::path(patch, path = "/v1/users/{id}", request_body = AdminPatchBody,
    params(Path<UserRef>),
    responses(
        (status = 200, description = "The user", body = UserDto),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
        (status = 409, description = "Admins cannot disable or demote themselves"),
    ))]
async fn patch_user(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let patch = decode_user_patch(&body)?;
    let user = call(&api.service.admin, move |s| s.patch_user(&me, id, patch)).await?;
    json_value(StatusCode::OK, &UserDto::from(&user))
}

/// Delete a user with their tasks and tokens (admin).
#[utoipa::path(delete, path = "/v1/users/{id}",
    params(Path<UserRef>),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
        (status = 409, description = "Admins cannot delete themselves"),
    ))]
async fn delete_user(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
) -> Result<ApiResponse, ApiError> {
    call(&api.service.admin, move |s| s.delete_user(&me, id)).await?;
    Ok(no_content())
}

/// A user's live sessions (admin; audited).
#[utoipa::path(get, path = "/v1/users/{id}/sessions",
    params(Path<UserRef>),
    responses(
        (status = 200, description = "The user's sessions, newest first", body = SessionsDto),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
async fn user_sessions(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
) -> Result<ApiResponse, ApiError> {
    let caller = me.clone();
    let sessions = call(&api.service.admin, move |s| s.user_sessions(&caller, id)).await?;
    let items = sessions.iter().map(|s| SessionDto::of(s, &me)).collect();
    json_value(StatusCode::OK, &SessionsDto { items })
}

/// End every session of a user (admin; audited): their tokens are refused
/// within a second; the account stays enabled.
#[utoipa::path(delete, path = "/v1/users/{id}/sessions",
    params(Path<UserRef>),
    responses(
        (status = 204, description = "Every session of the user ended"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
async fn end_user_sessions(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
) -> Result<ApiResponse, ApiError> {
    call(&api.service.admin, move |s| s.end_user_sessions(&me, id)).await?;
    Ok(no_content())
}

/// A password-reset link for a user (admin; audited): for a user without
/// mail, handed to them by the administrator. Their password, sessions and
/// tokens stay as they are until the link is used.
#[utoipa::path(post, path = "/v1/users/{id}/password-reset",
    params(Path<UserRef>),
    responses(
        (status = 201, description = "The link, shown once, and when it expires (30 minutes)", body = ResetLinkDto),
        (status = 400, description = "The request names no host (Host, or HTTP/2's :authority) a link can be built on"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
async fn password_reset_link(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Result<ApiResponse, ApiError> {
    // The page takes the token from the fragment, which no server, log or
    // `Referer` sees; the origin is the configured one (`--public-url`),
    // else the one the administrator used (`Host`, or HTTP/2's
    // `:authority`). Checked before the link is made.
    let origin = match api.service.admin.link_base() {
        Some(base) => base.as_str().to_owned(),
        None => headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(http::uri::Authority::as_str))
            .filter(|h| link_host(h))
            .map(|h| format!("https://{h}"))
            .ok_or_else(|| {
                ApiError::bad_request("the request names no host to build the link on")
            })?,
    };
    let (token, expires_at) =
        call(&api.service.admin, move |s| s.password_reset_link(&me, id)).await?;
    json_value(
        StatusCode::CREATED,
        &ResetLinkDto {
            reset_url: format!("{origin}/#reset={}", token.expose()),
            expires_at: expires_at.to_string(),
        },
    )
}

/// Whether `host` may be the host of a reset link: a DNS name, an IPv4
/// address or a bracketed IPv6 one, and an optional port from 1 to 65535;
/// nothing else (attack and review of session 26: `x]evil[`, `:`, port
/// 99999 and the like were taken).
fn link_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => {
                match after.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None if after.is_empty() => (None, None),
                    None => return false,
                }
            }
            _ => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let name_ok = name.is_none_or(|n| n.len() <= 253 && n.split('.').all(label));
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0)
    });
    name_ok && port_ok
}

/// A reset link, as its administrator receives it.
#[derive(Serialize, ToSchema)]
#[schema(as = ResetLink)]
struct ResetLinkDto {
    /// The page's address (`https://` and the host the request named)
    /// with the token in its fragment (`#reset=…`).
    reset_url: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A new password, with the reset link's token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordReset)]
struct ResetBody {
    token: String,
    #[schema(schema_with = limits::new_password)]
    new_password: String,
}

/// Choose a new password with a reset link (once): every session and token
/// of the account ends.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", request_body = ResetBody, security(()),
    responses(
        (status = 204, description = "The password is set; every session ended"),
        (status = 400, description = "The link cannot be used (unknown, used or expired: one answer), or the new password is refused"),
        (status = 429, description = "Too many attempts from this address"),
    ))]
async fn confirm_password_reset(
    State(api): Auth,
    Client(client): Client,
    Json(body, _held): Json<ResetBody>,
) -> Result<ApiResponse, ApiError> {
    call(&api.service.sessions, move |s| {
        s.reset_password(client, &body.token, &body.new_password)
    })
    .await?;
    Ok(no_content())
}

/// A reset asked for by login: a username or an address.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordResetRequest)]
struct ResetRequestBody {
    /// A username, or an e-mail address.
    #[schema(max_length = 254)]
    login: String,
}

/// Ask for a password-reset link by mail. The answer is the same, and
/// comes as soon, whether or not the account exists, has a verified
/// address or is over its mail allowance: the account is looked up, and
/// the mail sent, after answering.
#[utoipa::path(post, path = "/v1/auth/password-reset", request_body = ResetRequestBody, security(()),
    responses(
        (status = 202, description = "If the login names an account with a verified address, a link valid 30 minutes is on its way"),
        (status = 429, description = "Too many requests from this address"),
        (status = 503, description = "This server sends no mail (urn:todo:problem:no-mail)"),
    ))]
async fn request_password_reset(
    State(api): Auth,
    Client(client): Client,
    Json(body, _held): Json<ResetRequestBody>,
) -> Result<ApiResponse, ApiError> {
    // (a username or an address: at most an address's length)
    if body.login.chars().count() > todo_core::Email::MAX_CHARS {
        return Err(ApiError::field("login", "is too long"));
    }
    // Only the address's limit and whether mail is configured, both the
    // same for any login, before answering.
    let mail = api
        .service
        .sessions
        .password_reset_by_mail(client, &body.login)?;
    // The rest runs after the answer (a place taken, else dropped: the
    // client cannot tell).
    match Arc::clone(&api.mail_jobs).try_acquire_owned() {
        Ok(place) => mail_job(place, "password_reset", move || mail.send().map(drop)),
        Err(_) => tracing::warn!("a reset mail was dropped: {MAIL_JOBS} are being sent already"),
    }
    Ok(accepted())
}

/// Mail jobs running at once, per instance.
const MAIL_JOBS: usize = 16;

/// Runs a mail job (store reads and writes, then the mail server) on a
/// thread of its own, holding its place: neither the async workers nor
/// the blocking pool wait for a mail server, which may be slow past any
/// timeout (lettre's bounds each read and write, not the whole message;
/// attack of session 27, F3: a slow one held logins two minutes). A
/// failure is logged (and, for a refused message, audited by the core).
fn mail_job(
    place: tokio::sync::OwnedSemaphorePermit,
    what: &'static str,
    job: impl FnOnce() -> Result<(), CoreError> + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("todo-mail".to_owned())
        .spawn(move || {
            let _place = place;
            if let Err(e) = job() {
                tracing::warn!(mail = what, error = %crate::problem::chain(&e), "mail not sent");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(mail = what, error = %e, "mail not sent: no thread for it");
    }
}

fn accepted() -> ApiResponse {
    let mut response = no_content();
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// Mail my address a link that verifies it (valid a day, once).
#[utoipa::path(post, path = "/v1/users/me/email/verify",
    responses(
        (status = 202, description = "The link is on its way"),
        (status = 409, description = "The account has no address, it is verified already, or mail cannot be sent to it as written"),
        (status = 429, description = "The account's or the address's mail allowance is spent for now, or this client address asked too often"),
        (status = 503, description = "This server sends no mail (urn:todo:problem:no-mail), or is sending as much as it may"),
    ))]
async fn request_email_verification(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
) -> Result<ApiResponse, ApiError> {
    let Ok(place) = Arc::clone(&api.mail_jobs).try_acquire_owned() else {
        return Err(CoreError::Overloaded {
            retry_after: std::time::Duration::from_secs(30),
        }
        .into());
    };
    let mail = call(&api.service.account, move |s| {
        s.request_email_verification(client, &me)
    })
    .await?;
    mail_job(place, "verify_email", move || mail.send());
    Ok(accepted())
}

/// A verification link's token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailVerification)]
struct VerifyBody {
    token: String,
}

/// Verify an address with its link (once): the account's `email_verified`
/// turns true, if the address is still the one the link was mailed to.
#[utoipa::path(post, path = "/v1/auth/verify-email", request_body = VerifyBody, security(()),
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "The link cannot be used (unknown, used, expired, or the address changed since: one answer)"),
        (status = 429, description = "Too many attempts from this address"),
    ))]
async fn verify_email(
    State(api): Auth,
    Client(client): Client,
    Json(body, _held): Json<VerifyBody>,
) -> Result<ApiResponse, ApiError> {
    call(&api.service.sessions, move |s| {
        s.verify_email(client, &body.token)
    })
    .await?;
    Ok(no_content())
}

/// The 403 of the session endpoints ([`Session`]), in their documents.
struct CrossOrigin;

impl utoipa::IntoResponses for CrossOrigin {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let refusal = Response::new(
            "Web page sessions only: a browser marked the request as cross-origin (Origin, Sec-Fetch-Site)",
        );
        BTreeMap::from([("403".to_owned(), RefOr::T(refusal))])
    }
}

impl Api for AuthApi {
    fn routes(self: Arc<Self>) -> OpenApiRouter {
        crate::front::api_layer(auth_routes()).with_state(self)
    }

    fn operations(&self) -> &Operations {
        &self.ops
    }
}

/// Schemas whose limits are the domain's own constants, never repeated as
/// literals.
mod limits {
    use todo_core::{Email, Password, Username};
    use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaFormat, SchemaType, Type};

    fn username_pattern(letters: &str) -> String {
        format!(
            "^[{letters}0-9_.-]{{{},{}}}$",
            Username::MIN_CHARS,
            Username::MAX_CHARS
        )
    }

    /// A username as stored: folded to lower case.
    pub(super) fn username() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(username_pattern("a-z")))
            .build()
    }

    /// A username as offered: any case (folded when stored).
    pub(super) fn offered_username() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(username_pattern("A-Za-z")))
            .build()
    }

    /// A new password.
    pub(super) fn new_password() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(Password::MIN_CHARS))
            .max_length(Some(Password::MAX_CHARS))
            .build()
    }

    /// An optional e-mail address.
    pub(super) fn email() -> Object {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .format(Some(SchemaFormat::Custom("email".to_owned())))
            .max_length(Some(Email::MAX_CHARS))
            .build()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reset_links_host_is_a_host_and_port_or_nothing() {
        for good in [
            "todo.example.com",
            "127.0.0.1:8443",
            "[::1]:443",
            "localhost",
        ] {
            assert!(link_host(good), "{good}");
        }
        for bad in [
            "",
            ":",
            "x]evil[",
            "a:99999",
            "user@evil.example",
            "evil.example/path",
            "a b",
            "a:0",
            "x[::1]",
            "[a]b",
            "[evil.example]",
            "-a.example",
            "a..example",
        ] {
            assert!(!link_host(bad), "{bad}");
        }
    }

    fn parts(request: http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    /// An HTTP/2 request names its host in `:authority`: a page on that
    /// origin is same-origin, another origin is not.
    #[test]
    fn an_http2_requests_origin_is_weighed_against_its_authority() {
        let same = parts(
            http::Request::post("https://todo.example/v1/auth/login")
                .version(http::Version::HTTP_2)
                .header("origin", "https://todo.example"),
        );
        assert_eq!(host(&same), Some(&b"todo.example"[..]));
        assert!(!cross_origin(&same.headers, host(&same)));

        let foreign = parts(
            http::Request::post("https://todo.example/v1/auth/login")
                .version(http::Version::HTTP_2)
                .header("origin", "https://evil.example"),
        );
        assert!(cross_origin(&foreign.headers, host(&foreign)));

        // HTTP/1.1: `Host` it is, whatever the URI says.
        let http1 = parts(
            http::Request::post("/v1/auth/login")
                .header("host", "todo.example:443")
                .header("origin", "https://todo.example"),
        );
        assert!(!cross_origin(&http1.headers, host(&http1)));
        // No host at all: an `Origin` cannot be weighed, so it is refused.
        let hostless =
            parts(http::Request::post("/v1/auth/login").header("origin", "https://todo.example"));
        assert!(cross_origin(&hostless.headers, host(&hostless)));
    }
}
