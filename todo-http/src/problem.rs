//! Errors as the API shows them: RFC 9457 problem details. The map from the
//! core's errors to HTTP statuses lives here and nowhere else. A 5xx body is
//! generic; the detail goes to the log with the request id.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, ETAG, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use todo_core::{Error as CoreError, TaskVersion, ValidationError, retry_after_seconds};

/// A failed request, before it is rendered. Boxed: errors are the rare
/// path, and a small `Result` keeps the common one cheap.
#[derive(Debug)]
pub struct ApiError(Box<ProblemData>);

/// The parts of an [`ApiError`].
#[derive(Debug)]
pub struct ProblemData {
    /// The HTTP status.
    pub status: StatusCode,
    /// The problem's `type`, a `urn:todo:problem:` URN.
    pub kind: &'static str,
    /// A short, fixed summary of the kind.
    pub title: &'static str,
    /// What went wrong with this request, for the client.
    pub detail: String,
    /// Per-field complaints (validation).
    pub errors: Vec<FieldError>,
    /// The `WWW-Authenticate` value of a 401.
    pub challenge: Option<&'static str>,
    /// When to retry (`Retry-After`), for 429 and 503.
    pub retry_after: Option<Duration>,
    /// The `Allow` value of a 405.
    pub allow: Option<String>,
    /// The current version's `ETag`, with a 412.
    pub etag: Option<TaskVersion>,
    /// What the log gets for a 5xx (never the client).
    pub internal: Option<String>,
}

/// One field's complaint in a 400's `errors`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, as the wire names it.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An error answer (RFC 9457 problem details); `errors` only for invalid input.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub(crate) struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    #[schema(required = false)]
    errors: &'a [FieldError],
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let internal = self.internal.clone();
        let mut response = ApiError::into_response(self).map(axum::body::Body::new);
        // For the frontend's log line, with the request id: never sent.
        if let Some(internal) = internal {
            response.extensions_mut().insert(InternalDetail(internal));
        }
        response
    }
}

/// What a failed request's log line gets and its client never does (a
/// 5xx's cause), carried on the response's extensions from the handler to
/// whoever logs: the [`crate::Frontend`], or, for a Router mounted in
/// another program's app, that app's own layer (it is removed from the
/// response before it is sent only by the frontend).
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl std::ops::Deref for ApiError {
    type Target = ProblemData;
    fn deref(&self) -> &ProblemData {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ProblemData {
        &mut self.0
    }
}

impl ApiError {
    /// A problem of `kind`, with its status, title and detail.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(ProblemData {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            challenge: None,
            retry_after: None,
            allow: None,
            etag: None,
            internal: None,
        }))
    }

    /// With a `WWW-Authenticate` challenge (a 401).
    #[must_use]
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// With the current version's `ETag` (a 412).
    #[must_use]
    pub fn with_etag(mut self, version: TaskVersion) -> Self {
        self.etag = Some(version);
        self
    }

    /// With `Retry-After` (a 429 or 503).
    #[must_use]
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "urn:todo:problem:bad-request",
            "Bad request",
            detail,
        )
    }

    /// 400 with each invalid field's complaint.
    pub fn validation(errors: Vec<ValidationError>) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "urn:todo:problem:validation",
            "Invalid input",
            "one or more fields are invalid",
        );
        error.errors = errors
            .iter()
            .map(|e| FieldError {
                field: e.field().to_owned(),
                message: e.to_string(),
            })
            .collect();
        error
    }

    /// 400 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut error = Self::bad_request("one or more fields are invalid");
        error.kind = "urn:todo:problem:validation";
        error.title = "Invalid input";
        error.errors = vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }];
        error
    }

    /// 404: nothing here (or nothing of the caller's).
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "urn:todo:problem:not-found",
            "Not found",
            "no such resource",
        )
    }

    /// A cookie-session request that a browser says comes from another
    /// origin or site (`Origin`, `Sec-Fetch-Site`): refused, whatever it carries.
    pub fn cross_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "urn:todo:problem:cross-origin",
            "Forbidden",
            "cross-origin requests may not use the session cookie",
        )
    }

    /// 405 with the methods the path allows.
    pub fn method_not_allowed(allow: String) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "urn:todo:problem:method-not-allowed",
            "Method not allowed",
            format!("this resource allows {allow}"),
        );
        error.allow = Some(allow);
        error
    }

    /// 415: the body is not JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "urn:todo:problem:unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json",
        )
    }

    /// 413: the body is over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:todo:problem:payload-too-large",
            "Payload too large",
            format!("the body may be at most {limit} bytes"),
        )
    }

    /// 431: the request head is over `limit` bytes.
    pub fn header_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "urn:todo:problem:bad-request",
            "Request header fields too large",
            format!("the request head may be at most {limit} bytes"),
        )
    }

    /// 408: the body did not arrive in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "urn:todo:problem:request-timeout",
            "Request timeout",
            "the body did not arrive in time",
        )
    }

    /// No `Authorization: Bearer` header.
    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "urn:todo:problem:unauthorized",
            "Unauthorized",
            "an access token is required",
        )
        .with_challenge("Bearer")
    }

    /// Any invalid access token: one body whichever check failed.
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "urn:todo:problem:invalid-token",
            "Unauthorized",
            "the access token is invalid or expired",
        )
        .with_challenge("Bearer error=\"invalid_token\"")
    }

    /// 403 for an API token whose scopes do not cover the call (or a call
    /// only a login may make), naming the scope it lacks (RFC 6750 §3.1).
    pub fn insufficient_scope(scope: Option<todo_core::Scope>) -> Self {
        use todo_core::Scope;
        let challenge = match scope {
            Some(Scope::TasksRead) => "Bearer error=\"insufficient_scope\", scope=\"tasks:read\"",
            Some(Scope::TasksWrite) => "Bearer error=\"insufficient_scope\", scope=\"tasks:write\"",
            Some(Scope::ProjectsRead) => {
                "Bearer error=\"insufficient_scope\", scope=\"projects:read\""
            }
            Some(Scope::ProjectsWrite) => {
                "Bearer error=\"insufficient_scope\", scope=\"projects:write\""
            }
            Some(Scope::EventsRead) => "Bearer error=\"insufficient_scope\", scope=\"events:read\"",
            None => "Bearer error=\"insufficient_scope\"",
        };
        let detail = match scope {
            Some(scope) => format!("this API token does not have the scope {}", scope.as_str()),
            None => "an API token cannot do this: sign in".to_owned(),
        };
        Self::new(
            StatusCode::FORBIDDEN,
            "urn:todo:problem:insufficient-scope",
            "Forbidden",
            detail,
        )
        .with_challenge(challenge)
    }

    /// 403 for an API token limited to one project asked for something
    /// beyond it that is no object (a new project).
    pub fn limited_to_project() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "urn:todo:problem:insufficient-scope",
            "Forbidden",
            "this API token is limited to one project",
        )
        .with_challenge("Bearer error=\"insufficient_scope\"")
    }

    /// 500; `detail` goes to the log, never to the client.
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:todo:problem:internal",
            "Internal server error",
            "something went wrong on our side; the request id identifies it in our logs",
        );
        error.internal = Some(detail.into());
        error
    }

    /// 503 with `Retry-After`; `internal` (the cause) goes to the log.
    pub fn unavailable(retry_after: Duration, internal: Option<String>) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "urn:todo:problem:unavailable",
            "Service unavailable",
            "the service is busy or a dependency is down; try again shortly",
        );
        error.retry_after = Some(retry_after);
        error.internal = internal;
        error
    }

    /// The problem as a response: `application/problem+json` and its headers.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let problem = *self.0;
        let body = serde_json::to_vec(&Problem {
            kind: problem.kind,
            title: problem.title,
            status: problem.status.as_u16(),
            detail: &problem.detail,
            errors: &problem.errors,
        })
        .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = problem.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = problem.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(wait) = problem.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(wait)));
        }
        if let Some(allow) = problem.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(ALLOW, allow);
        }
        if let Some(version) = problem.etag {
            headers.insert(ETAG, crate::task_api::etag(version));
        }
        response
    }
}

/// The one map from the core's errors to HTTP.
impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        use StatusCode as S;
        match error {
            CoreError::Invalid(errors) => Self::validation(errors),
            CoreError::InvalidCredentials => Self::new(
                S::UNAUTHORIZED,
                "urn:todo:problem:invalid-credentials",
                "Unauthorized",
                "invalid username or password",
            )
            .with_challenge("Bearer"),
            CoreError::WrongPassword => Self::new(
                S::FORBIDDEN,
                "urn:todo:problem:wrong-password",
                "Forbidden",
                "the current password is wrong",
            ),
            CoreError::SecondFactorRequired => Self::new(
                S::UNAUTHORIZED,
                "urn:todo:problem:second-factor-required",
                "Unauthorized",
                "the account needs a second factor: sign in in two steps",
            ),
            CoreError::InvalidMfaToken => Self::new(
                S::UNAUTHORIZED,
                "urn:todo:problem:invalid-mfa-token",
                "Unauthorized",
                "the mfa_token is unknown, used, expired or out of attempts; log in again",
            ),
            CoreError::InvalidSecondFactor => Self::new(
                S::UNAUTHORIZED,
                "urn:todo:problem:invalid-second-factor",
                "Unauthorized",
                "the code is wrong or was used",
            ),
            CoreError::WrongCode => Self::new(
                S::FORBIDDEN,
                "urn:todo:problem:wrong-code",
                "Forbidden",
                "the code is wrong or was used",
            ),
            CoreError::NoSecondFactors => Self::new(
                S::SERVICE_UNAVAILABLE,
                "urn:todo:problem:no-second-factors",
                "Service unavailable",
                "this server offers no second factors",
            ),
            CoreError::InvalidPasskey(why) => {
                let mut problem = Self::new(
                    S::UNAUTHORIZED,
                    "urn:todo:problem:invalid-passkey",
                    "Unauthorized",
                    "the passkey sign-in was refused; start again",
                );
                problem.internal = Some(why);
                problem
            }
            CoreError::PasskeyRefused(why) => {
                let mut problem = Self::new(
                    S::BAD_REQUEST,
                    "urn:todo:problem:passkey-refused",
                    "Bad Request",
                    "the passkey was not registered; start again",
                );
                problem.internal = Some(why);
                problem
            }
            CoreError::NoPasskeys => Self::new(
                S::SERVICE_UNAVAILABLE,
                "urn:todo:problem:no-passkeys",
                "Service unavailable",
                "this server offers no passkeys",
            ),
            CoreError::InvalidToken(_) => Self::invalid_token(),
            CoreError::InvalidRefreshToken => {
                let mut e = Self::new(
                    S::UNAUTHORIZED,
                    "urn:todo:problem:invalid-refresh-token",
                    "Unauthorized",
                    "the refresh token is invalid, expired or revoked; log in again",
                );
                e.challenge = Some("Bearer error=\"invalid_token\"");
                e
            }
            CoreError::UsernameTaken => Self::new(
                S::CONFLICT,
                "urn:todo:problem:username-taken",
                "Conflict",
                "the username is taken",
            ),
            CoreError::NotFound => Self::not_found(),
            CoreError::Gone => Self::new(
                S::GONE,
                "urn:todo:problem:changes-gone",
                "Gone",
                "changes after this cursor are no longer kept: list the tasks again and follow the changes from there",
            ),
            CoreError::VersionMismatch { current } => Self::new(
                S::PRECONDITION_FAILED,
                "urn:todo:problem:version-mismatch",
                "Precondition failed",
                format!("it has changed since: its version is now {current}"),
            )
            .with_etag(current),
            CoreError::Unmatchable { current } => Self::new(
                S::PRECONDITION_FAILED,
                "urn:todo:problem:version-mismatch",
                "Precondition failed",
                "If-Match names no version of this object",
            )
            .with_etag(current),
            CoreError::Forbidden => Self::new(
                S::FORBIDDEN,
                "urn:todo:problem:forbidden",
                "Forbidden",
                "your role does not allow this",
            ),
            CoreError::Conflict(why) => {
                Self::new(S::CONFLICT, "urn:todo:problem:conflict", "Conflict", why)
            }
            CoreError::RateLimited { retry_after } => Self::new(
                S::TOO_MANY_REQUESTS,
                "urn:todo:problem:rate-limited",
                "Too many requests",
                "slow down and try again later",
            )
            .with_retry_after(retry_after),
            CoreError::QuotaExceeded { what, limit } => Self::new(
                S::FORBIDDEN,
                "urn:todo:problem:quota-exceeded",
                "Quota exceeded",
                format!("the quota of {what} is used up: at most {limit}"),
            ),
            CoreError::RegistrationClosed => Self::new(
                S::FORBIDDEN,
                "urn:todo:problem:registration-closed",
                "Registration closed",
                "registration is closed: an administrator creates accounts",
            ),
            CoreError::Overloaded { retry_after } => Self::unavailable(retry_after, None),
            CoreError::NoMail => Self::new(
                S::SERVICE_UNAVAILABLE,
                "urn:todo:problem:no-mail",
                "Service unavailable",
                "this server sends no mail",
            ),
            CoreError::MailFailed(source) => {
                let mut problem = Self::unavailable(Duration::from_secs(30), Some(chain(&source)));
                problem.detail = "the mail server did not take the message; try again later".into();
                problem
            }
            CoreError::Unavailable(source) => {
                Self::unavailable(Duration::from_secs(1), Some(chain(&source)))
            }
            CoreError::BadImport(error) => {
                let mut problem = Self::field("file", error.to_string());
                problem.detail = format!("the file was not imported (nothing of it was): {error}");
                problem
            }
            CoreError::Internal(source) => Self::internal(chain(&*source)),
            other => Self::internal(chain(&other)),
        }
    }
}

/// An error and its sources, for the log.
pub fn chain(error: &dyn std::error::Error) -> String {
    todo_core::error_chain(error)
}
