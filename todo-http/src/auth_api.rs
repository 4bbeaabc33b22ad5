//! auth-server's API: registration, login, tokens, accounts, admin.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use todo_core::{
    AuthService, Credentials, DeviceToken, Email, Error as CoreError, PageLimit, Principal,
    RefreshToken, Registration, Role, TokenPair, User, UserCursor, UserId, UserPatch,
};

use crate::blocking::call;
use crate::front::{Api, ApiResponse, json, json_value, no_content};
use crate::metrics::Metrics;
use crate::probe::Probe;
use crate::problem::ApiError;
use crate::request::{ApiRequest, query_int};
use crate::router::RouteSpec;
use utoipa_axum::router::OpenApiRouter;

pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        template: "/v1/auth/register",
        methods: &[Method::POST],
    },
    RouteSpec {
        template: "/v1/auth/login",
        methods: &[Method::POST],
    },
    RouteSpec {
        template: "/v1/auth/refresh",
        methods: &[Method::POST],
    },
    RouteSpec {
        template: "/v1/auth/logout",
        methods: &[Method::POST],
    },
    RouteSpec {
        template: "/v1/auth/validate",
        methods: &[Method::GET],
    },
    RouteSpec {
        template: "/.well-known/jwks.json",
        methods: &[Method::GET],
    },
    RouteSpec {
        template: "/v1/users/me",
        methods: &[Method::GET, Method::PATCH],
    },
    RouteSpec {
        template: "/v1/users/me/password",
        methods: &[Method::POST],
    },
    RouteSpec {
        template: "/v1/users",
        methods: &[Method::GET],
    },
    RouteSpec {
        template: "/v1/users/{id}",
        methods: &[Method::GET, Method::PATCH, Method::DELETE],
    },
];

/// The auth API over an [`AuthService`].
pub struct AuthApi {
    service: AuthService,
    /// The refresh token's cookie lifetime, when the one-origin web page's
    /// cookie sessions are on.
    cookie_max_age: Option<u64>,
    jwks: Bytes,
    probes: Vec<Arc<dyn Probe>>,
    metrics: Metrics,
    openapi: Bytes,
}

impl std::fmt::Debug for AuthApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthApi").finish_non_exhaustive()
    }
}

impl AuthApi {
    /// `jwks` is the served key set; `probes` answer readiness and add gauges.
    pub fn new(
        service: AuthService,
        jwks: &todo_auth::JwkSet,
        probes: Vec<Arc<dyn Probe>>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            service,
            cookie_max_age: None,
            jwks: Bytes::from(serde_json::to_vec(jwks)?),
            metrics: Metrics::new(&probes),
            probes,
            openapi: Bytes::from(serde_json::to_vec(&crate::openapi::auth())?),
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
        request: &ApiRequest,
    ) -> Result<(Option<RefreshToken>, bool), ApiError> {
        let (raw, from_cookie) = match body {
            Some(raw) => (raw, false),
            None => match self
                .cookie_max_age
                .and_then(|_| cookie(request, REFRESH_COOKIE))
            {
                Some(raw) => (raw, true),
                None if self.cookie_max_age.is_some() => return Ok((None, false)),
                None => return Err(ApiError::field("refresh_token", "is required")),
            },
        };
        Ok((RefreshToken::parse(&raw), from_cookie))
    }

    /// With cookie sessions, refuses what a browser says comes from another
    /// origin or site: the session endpoints act on (or hand out) the cookie.
    fn same_origin_only(&self, request: &ApiRequest) -> Result<(), ApiError> {
        if self.cookie_max_age.is_some() && cross_origin(request) {
            return Err(ApiError::cross_origin());
        }
        Ok(())
    }

    /// Whether the token pair's body leaves `refresh_token` out: with cookie
    /// sessions, for a browser, and whenever the token came from the cookie
    /// (so that a script in the page cannot trade the cookie for a readable
    /// token).
    fn cookie_only(&self, request: &ApiRequest, from_cookie: bool) -> bool {
        self.cookie_max_age.is_some() && (from_cookie || from_browser(request))
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

    /// The bearer token's principal, admitted by the service's gate.
    async fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        let claims = self
            .service
            .gate()
            .verify(token)
            .map_err(|_| ApiError::invalid_token())?;
        crate::gate::admit(self.service.gate(), claims).await
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
    /// From an earlier login: exempts this login from its account's lockout.
    #[serde(default)]
    device_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
fn from_browser(request: &ApiRequest) -> bool {
    request.headers.contains_key("sec-fetch-site")
        || request
            .headers
            .get(PAGE_SESSION_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cookie"))
}

/// Whether a browser says the request is not from this origin:
/// `Sec-Fetch-Site` other than `same-origin`, or an `Origin` other than
/// `https://` and the request's own host. A request with neither header (an
/// API client) is not cross-origin; one whose headers cannot be read is.
fn cross_origin(request: &ApiRequest) -> bool {
    let headers = &request.headers;
    let mut sites = headers.get_all("sec-fetch-site").iter();
    let site_ok = sites.all(|v| v.as_bytes() == b"same-origin");
    let mut origins = headers.get_all(http::header::ORIGIN).iter();
    let origin_ok = origins.all(|origin| {
        let host = headers.get(http::header::HOST).map(HeaderValue::as_bytes);
        match (origin.as_bytes().strip_prefix(b"https://"), host) {
            (Some(origin), Some(host)) => same_authority(origin, host),
            _ => false,
        }
    });
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
fn cookie(request: &ApiRequest, name: &str) -> Option<String> {
    request
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchMeBody {
    #[serde(default, deserialize_with = "crate::dto::present")]
    email: Option<Option<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminPatchBody {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    email: Option<Option<String>>,
}

/// A user on the wire: never a password or hash.
#[derive(Serialize)]
pub struct UserDto {
    id: String,
    username: String,
    email: Option<String>,
    role: &'static str,
    disabled: bool,
    created_at: String,
    updated_at: String,
}

impl From<&User> for UserDto {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.to_string(),
            email: user.email.as_ref().map(ToString::to_string),
            role: user.role.as_str(),
            disabled: user.disabled,
            created_at: user.created_at.to_string(),
            updated_at: user.updated_at.to_string(),
        }
    }
}

#[derive(Serialize)]
struct TokenPairDto<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<&'a str>,
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

#[derive(Serialize)]
struct ValidateDto<'a> {
    sub: String,
    username: &'a str,
    role: &'static str,
    exp: i64,
}

#[derive(Serialize)]
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

impl Api for AuthApi {
    fn routes(self: Arc<Self>) -> OpenApiRouter {
        crate::router::bridge(&self, ROUTES)
    }

    fn openapi(&self) -> Bytes {
        self.openapi.clone()
    }

    async fn ready(&self) -> Result<(), String> {
        crate::probe::ready(self.probes.clone()).await
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl crate::router::LegacyApi for AuthApi {
    async fn handle(
        &self,
        route: &'static RouteSpec,
        param: Option<String>,
        mut request: ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let client = Some(request.client);
        match (route.template, &request.method) {
            ("/v1/auth/register", _) => {
                let registration = decode_registration(&request.json_bytes().await?)?;
                let user = call(&self.service, move |s| s.register(client, registration)).await?;
                json_value(StatusCode::CREATED, &UserDto::from(&user))
            }
            ("/v1/auth/login", _) => {
                self.same_origin_only(&request)?;
                let cookie_only = self.cookie_only(&request, false);
                let mut credentials = decode_credentials(&request.json_bytes().await?)?;
                if credentials.device.is_none() && self.cookie_max_age.is_some() {
                    credentials =
                        credentials.with_device(cookie(&request, DEVICE_COOKIE).as_deref());
                }
                let outcome = call(&self.service, move |s| s.login(client, &credentials)).await;
                match &outcome {
                    Ok(_) => self.metrics.login_succeeded(),
                    Err(e) if e.status == StatusCode::UNAUTHORIZED => self.metrics.login_failed(),
                    Err(_) => {}
                };
                let pair = outcome?;
                let body = token_pair(&pair, cookie_only)?;
                let response = self.with_cookie(body, Some(&pair.refresh_token));
                Ok(self.with_device_cookie(response, pair.device_token.as_ref()))
            }
            ("/v1/auth/refresh", _) => {
                self.same_origin_only(&request)?;
                let body: RefreshBody = request.json().await?;
                let (token, from_cookie) = self.refresh_token(body.refresh_token, &request)?;
                let token = token.ok_or_else(|| ApiError::from(CoreError::InvalidRefreshToken))?;
                let cookie_only = self.cookie_only(&request, from_cookie);
                let pair = call(&self.service, move |s| s.refresh(client, &token)).await?;
                let body = token_pair(&pair, cookie_only)?;
                Ok(self.with_cookie(body, Some(&pair.refresh_token)))
            }
            ("/v1/auth/logout", _) => {
                self.same_origin_only(&request)?;
                let body: RefreshBody = request.json().await?;
                if let (Some(token), _) = self.refresh_token(body.refresh_token, &request)? {
                    call(&self.service, move |s| s.logout(client, &token)).await?;
                }
                Ok(self.with_cookie(no_content(), None))
            }
            ("/v1/auth/validate", _) => {
                let claims = self
                    .service
                    .gate()
                    .verify(request.bearer()?)
                    .map_err(|_| ApiError::invalid_token())?;
                let expires_at = claims.expires_at;
                let me = crate::gate::admit(self.service.gate(), claims).await?;
                json_value(
                    StatusCode::OK,
                    &ValidateDto {
                        sub: me.user_id.to_string(),
                        username: me.username.as_str(),
                        role: me.role.as_str(),
                        exp: expires_at,
                    },
                )
            }
            ("/.well-known/jwks.json", _) => {
                let mut response = json(StatusCode::OK, self.jwks.clone());
                response.headers_mut().insert(
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                Ok(response)
            }
            ("/v1/users/me", &Method::GET) => {
                let me = self.principal(request.bearer()?).await?;
                let user = call(&self.service, move |s| s.me(&me)).await?;
                json_value(StatusCode::OK, &UserDto::from(&user))
            }
            ("/v1/users/me", _) => {
                let me = self.principal(request.bearer()?).await?;
                let body: PatchMeBody = request.json().await?;
                let user = match email(body.email)? {
                    Some(email) => call(&self.service, move |s| s.update_me(&me, email)).await?,
                    None => call(&self.service, move |s| s.me(&me)).await?,
                };
                json_value(StatusCode::OK, &UserDto::from(&user))
            }
            ("/v1/users/me/password", _) => {
                let me = self.principal(request.bearer()?).await?;
                let body: PasswordBody = request.json().await?;
                call(&self.service, move |s| {
                    s.change_password(client, &me, &body.current_password, &body.new_password)
                })
                .await?;
                Ok(no_content())
            }
            ("/v1/users", _) => {
                let me = self.principal(request.bearer()?).await?;
                let mut limit = PageLimit::default();
                let mut cursor = None;
                for (name, value) in request.query_pairs(&["limit", "cursor"])? {
                    match name.as_str() {
                        "limit" => {
                            limit = PageLimit::new(query_int("limit", &value)?)
                                .map_err(|e| ApiError::validation(vec![e]))?
                        }
                        _ => {
                            cursor = Some(
                                UserCursor::parse(&value)
                                    .map_err(|e| ApiError::validation(vec![e]))?,
                            )
                        }
                    }
                }
                let page = call(&self.service, move |s| s.list_users(&me, limit, cursor)).await?;
                json_value(
                    StatusCode::OK,
                    &UsersPage {
                        items: page.items.iter().map(UserDto::from).collect(),
                        next_cursor: page.next_cursor.map(|c| c.to_string()),
                    },
                )
            }
            ("/v1/users/{id}", method) => {
                let me = self.principal(request.bearer()?).await?;
                // An id that cannot be one is simply not found.
                let id = param.as_deref().and_then(|p| UserId::parse(p).ok());
                match *method {
                    Method::GET => {
                        let user = call(&self.service, move |s| match id {
                            Some(id) => s.get_user(&me, id),
                            None => s.get_user(&me, me.user_id).and(Err(CoreError::NotFound)),
                        })
                        .await?;
                        json_value(StatusCode::OK, &UserDto::from(&user))
                    }
                    Method::PATCH => {
                        let patch = decode_user_patch(&request.json_bytes().await?)?;
                        let user = call(&self.service, move |s| match id {
                            Some(id) => s.patch_user(&me, id, patch),
                            None => s.get_user(&me, me.user_id).and(Err(CoreError::NotFound)),
                        })
                        .await?;
                        json_value(StatusCode::OK, &UserDto::from(&user))
                    }
                    _ => {
                        call(&self.service, move |s| match id {
                            Some(id) => s.delete_user(&me, id),
                            None => s.get_user(&me, me.user_id).and(Err(CoreError::NotFound)),
                        })
                        .await?;
                        Ok(no_content())
                    }
                }
            }
            _ => Err(ApiError::not_found()),
        }
    }
}
