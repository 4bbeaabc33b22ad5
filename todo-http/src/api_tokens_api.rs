//! API tokens on the wire (`/v1/api-tokens`): made, listed and revoked by a
//! signed-in user; an API token itself can do none of it.

use std::sync::Arc;

use axum::extract::State;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use todo_core::{
    ApiTokenGrant, ApiTokenName, ApiTokenRecord, NewApiToken, ProjectId, RequestOrigin, Scope,
    Scopes, SessionId, Timestamp, UserAgent, ValidationError,
};
use utoipa::ToSchema;

use crate::auth_api::AuthApi;
use crate::blocking::call;
use crate::extract::{Caller, Client, Json, Path};
use crate::front::{ApiResponse, json_value, no_content};
use crate::problem::ApiError;

type Auth = State<Arc<AuthApi>>;

/// A request for an API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiTokenRequest)]
pub(crate) struct CreateBody {
    /// What to call it: 1 to 100 characters.
    name: String,
    /// At least one of `tasks:read`, `tasks:write`, `projects:read`,
    /// `projects:write`, `events:read`.
    scopes: Vec<String>,
    /// The one project it may touch (not with `events:read`, whose stream
    /// spans every project).
    #[schema(format = Uuid)]
    project_id: Option<String>,
    /// When it expires: in the future, at most a year ahead; 30 days if
    /// not given.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// The caller's password, again.
    current_password: String,
}

/// An API token on the wire (never its secret, but when it is made).
#[derive(Serialize, ToSchema)]
#[schema(as = ApiToken)]
pub(crate) struct ApiTokenDto {
    /// Its id, which is its session's.
    #[schema(format = Uuid)]
    id: String,
    name: String,
    scopes: Vec<&'static str>,
    #[schema(format = Uuid)]
    project_id: Option<String>,
    created_at: String,
    /// Within a minute of its last use.
    last_used_at: String,
    expires_at: String,
    /// The secret, shown once: in the answer that made it, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl ApiTokenDto {
    pub(crate) fn of(token: &ApiTokenRecord) -> Self {
        Self {
            id: token.session.id.to_string(),
            name: token.name.as_str().to_owned(),
            scopes: token.grant.scopes.iter().map(Scope::as_str).collect(),
            project_id: token.grant.project.map(|p| p.to_string()),
            created_at: token.session.created_at.to_string(),
            last_used_at: token.session.last_used_at.to_string(),
            expires_at: token.session.expires_at.to_string(),
            token: None,
        }
    }
}

/// The caller's API tokens, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiTokenList)]
pub(crate) struct ApiTokenList {
    items: Vec<ApiTokenDto>,
}

/// The request's token, every field checked, each fault named.
fn new_token(body: &CreateBody) -> Result<NewApiToken, ApiError> {
    let mut errors = Vec::new();
    let name = ApiTokenName::parse(&body.name)
        .map_err(|e| errors.push(e))
        .ok();
    let scopes = Scopes::parse(body.scopes.iter().map(String::as_str))
        .map_err(|e| errors.push(e))
        .ok();
    let project = match body.project_id.as_deref().map(ProjectId::parse) {
        None => None,
        Some(Ok(project)) => Some(project),
        Some(Err(_)) => {
            errors.push(ValidationError::Format {
                field: "project_id",
                what: "project id",
            });
            None
        }
    };
    let expires_at = match body.expires_at.as_deref() {
        None => None,
        Some(raw) => Timestamp::parse_rfc3339(raw, "expires_at")
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let grant = scopes.and_then(|scopes| {
        ApiTokenGrant::new(scopes, project)
            .map_err(|e| errors.push(e))
            .ok()
    });
    match (name, grant) {
        (Some(name), Some(grant)) if errors.is_empty() => Ok(NewApiToken {
            name,
            grant,
            expires_at,
        }),
        _ => Err(ApiError::validation(errors)),
    }
}

/// Make an API token (my password again); its secret is in this answer only.
#[utoipa::path(post, path = "/v1/api-tokens", request_body = CreateBody,
    responses(
        (status = 201, description = "The token, with its secret (`token`, shown once)", body = ApiTokenDto),
        (status = 400, description = "A field is invalid (named), or no current_password"),
        (status = 403, description = "Current password wrong; an API token cannot make one (insufficient_scope); or the quota of live tokens is used up (urn:todo:problem:quota-exceeded)"),
        (status = 429, description = "Too many password confirmations in this session"),
    ))]
pub(crate) async fn create_api_token(
    State(api): Auth,
    Client(client): Client,
    headers: HeaderMap,
    Caller(me): Caller,
    Json(body, _held): Json<CreateBody>,
) -> Result<ApiResponse, ApiError> {
    let new = new_token(&body)?;
    let origin = RequestOrigin {
        client,
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(UserAgent::from_header),
    };
    let password = body.current_password;
    let (token, secret) = call(&api.services().sessions, move |s| {
        s.create_api_token(origin, &me, new, Some(&password))
    })
    .await?;
    let mut dto = ApiTokenDto::of(&token);
    dto.token = Some(secret.expose().to_owned());
    json_value(StatusCode::CREATED, &dto)
}

/// My live API tokens (never their secrets).
#[utoipa::path(get, path = "/v1/api-tokens",
    responses((status = 200, description = "My live API tokens, newest first", body = ApiTokenList)))]
pub(crate) async fn list_api_tokens(
    State(api): Auth,
    Caller(me): Caller,
) -> Result<ApiResponse, ApiError> {
    let tokens = call(&api.services().sessions, move |s| s.list_api_tokens(&me)).await?;
    let items = tokens.iter().map(ApiTokenDto::of).collect();
    json_value(StatusCode::OK, &ApiTokenList { items })
}

/// Revoke one of my API tokens: every server refuses it within a second.
#[utoipa::path(delete, path = "/v1/api-tokens/{id}",
    params(Path<SessionId>),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such live API token of mine"),
    ))]
pub(crate) async fn revoke_api_token(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Path(id): Path<SessionId>,
) -> Result<ApiResponse, ApiError> {
    call(&api.services().sessions, move |s| {
        s.revoke_api_token(client, &me, id)
    })
    .await?;
    Ok(no_content())
}
