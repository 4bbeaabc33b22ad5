//! `/v1/webhooks`: a user's webhooks and their delivery logs (task-server).
//! What is checked and sent is the core's ([`WebhookService`]); the
//! deliveries themselves are made by the servers' worker.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use todo_core::{
    ChangeCursor, DeliveryAttempt, EventFilter, Timestamp, UserId, Webhook, WebhookId,
    WebhookService,
};
use utoipa::ToSchema;

use crate::blocking::call;
use crate::extract::{Caller, JsonBytes, Path};
use crate::front::{ApiResponse, json_value, no_content};
use crate::problem::ApiError;
use crate::task_api::TaskApi;

type Tasks = State<Arc<TaskApi>>;

/// The webhooks of this deployment, or 404 where none are configured
/// (an embedding that gave the API no [`WebhookService`]).
fn webhooks(api: &TaskApi) -> Result<&WebhookService, ApiError> {
    api.webhooks().ok_or_else(ApiError::not_found)
}

/// A new webhook on the wire.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookCreate)]
struct CreateBody {
    /// `https` on port 443, at most 2 KiB; its host must resolve to public addresses only.
    url: String,
    /// The change types sent; all of them when left out.
    #[serde(default)]
    events: Option<Vec<String>>,
}

/// A webhook on the wire.
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook)]
pub(crate) struct WebhookDto {
    #[schema(format = Uuid)]
    id: String,
    url: String,
    #[schema(value_type = Vec<String>)]
    events: Vec<&'static str>,
    #[schema(format = DateTime)]
    created_at: String,
    /// Since when deliveries fail without a success between.
    #[schema(format = DateTime)]
    failing_since: Option<String>,
    /// Set once deliveries have failed for 24 h: nothing more is sent.
    #[schema(format = DateTime)]
    disabled_at: Option<String>,
    /// The signing key: in the answer to its creation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookDto {
    pub(crate) fn of(webhook: &Webhook, with_secret: bool) -> Self {
        let time = |t: Timestamp| t.to_string();
        Self {
            id: webhook.id.to_string(),
            url: webhook.url.as_str().to_owned(),
            events: webhook.events.kinds().iter().map(|k| k.as_str()).collect(),
            created_at: time(webhook.created_at),
            failing_since: webhook.failing_since.map(time),
            disabled_at: webhook.disabled_at.map(time),
            secret: with_secret.then(|| webhook.secret.expose().to_owned()),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct WebhookList {
    items: Vec<WebhookDto>,
}

/// One delivery attempt on the wire.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
struct AttemptDto {
    #[schema(format = DateTime)]
    at: String,
    /// The change's type.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// The change's cursor (as in `GET /v1/changes`).
    cursor: String,
    /// The receiver's status; null when it did not answer.
    status: Option<u16>,
    latency_ms: u32,
    /// Why it failed, if it did (`timeout`, `connection refused`, …).
    error: Option<String>,
}

impl AttemptDto {
    fn of(owner: UserId, attempt: &DeliveryAttempt) -> Self {
        Self {
            at: attempt.at.to_string(),
            kind: attempt.kind.as_str(),
            cursor: ChangeCursor::new(owner, attempt.position).to_string(),
            status: attempt.status,
            latency_ms: attempt.latency_ms,
            error: attempt.error.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct AttemptList {
    items: Vec<AttemptDto>,
}

/// Create a webhook.
#[utoipa::path(post, path = "/v1/webhooks", request_body = CreateBody,
    responses(
        (status = 201, description = "The webhook, with its secret (shown this once)", body = WebhookDto),
        (status = 400, description = "A URL that is not https, over 2 KiB, or whose host resolves to a private, loopback or link-local address; an unknown event type"),
        (status = 403, description = "The user's webhook quota is used up (urn:todo:problem:quota-exceeded)"),
    ))]
pub(crate) async fn create_webhook(
    State(api): Tasks,
    Caller(caller): Caller,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let service = webhooks(&api)?.clone();
    let body: CreateBody = crate::request::decode_json(&body)?;
    let url = service.parse_url(&body.url);
    let events = match &body.events {
        Some(names) => EventFilter::parse(names.iter().map(String::as_str)),
        None => Ok(EventFilter::all()),
    };
    let (url, events) = match (url, events) {
        (Ok(url), Ok(events)) => (url, events),
        (url, events) => {
            let errors = [url.err(), events.err()].into_iter().flatten().collect();
            return Err(ApiError::validation(errors));
        }
    };
    let owner = caller.user_id;
    // Resolving the host blocks: on the blocking pool, as every service call.
    let webhook = call(&service, move |s| s.create(owner, url, events)).await?;
    // (No `Location`: the contract has no GET of one webhook.)
    json_value(StatusCode::CREATED, &WebhookDto::of(&webhook, true))
}

/// List my webhooks.
#[utoipa::path(get, path = "/v1/webhooks",
    responses((status = 200, description = "My webhooks, oldest first (without their secrets)", body = WebhookList)))]
pub(crate) async fn list_webhooks(
    State(api): Tasks,
    Caller(caller): Caller,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    // No parameters: an unknown one is 400, as on every list.
    crate::request::query_pairs(query.as_deref(), &[])?;
    let service = webhooks(&api)?;
    let owner = caller.user_id;
    let list = call(service, move |s| s.list(owner)).await?;
    let items = list.iter().map(|w| WebhookDto::of(w, false)).collect();
    json_value(StatusCode::OK, &WebhookList { items })
}

/// Delete a webhook.
#[utoipa::path(delete, path = "/v1/webhooks/{id}",
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 204, description = "Deleted: nothing more is sent"),
        (status = 404, description = "No such webhook of yours"),
    ))]
pub(crate) async fn delete_webhook(
    State(api): Tasks,
    Caller(caller): Caller,
    Path(id): Path<WebhookId>,
) -> Result<ApiResponse, ApiError> {
    let service = webhooks(&api)?;
    let owner = caller.user_id;
    call(service, move |s| s.delete(owner, id)).await?;
    Ok(no_content())
}

/// A webhook's delivery log.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries",
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, description = "The newest attempts, newest first", body = AttemptList),
        (status = 404, description = "No such webhook of yours"),
    ))]
pub(crate) async fn list_deliveries(
    State(api): Tasks,
    Caller(caller): Caller,
    Path(id): Path<WebhookId>,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    crate::request::query_pairs(query.as_deref(), &[])?;
    let service = webhooks(&api)?;
    let owner = caller.user_id;
    let attempts = call(service, move |s| s.deliveries(owner, id)).await?;
    let items = attempts.iter().map(|a| AttemptDto::of(owner, a)).collect();
    json_value(StatusCode::OK, &AttemptList { items })
}
