//! task-server's API: each user's own tasks. Tokens are verified here, with
//! public keys only; the database is touched only by the task service.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ETAG, HeaderValue, IF_MATCH, LOCATION};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use todo_core::{
    AccessGate, Description, Error as CoreError, Label, Labels, NewTask, PageLimit, Principal,
    Priority, SearchText, Task, TaskCursor, TaskId, TaskPatch, TaskQuery, TaskService, TaskSort,
    TaskVersion, Timestamp, Title, TokenRejection, ValidationError,
};

use crate::blocking::call;
use crate::front::{Api, ApiResponse, json_value, no_content};
use crate::metrics::Metrics;
use crate::probe::Probe;
use crate::problem::ApiError;
use crate::request::{ApiRequest, query_bool, query_int};
use crate::router::RouteSpec;

pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        template: "/v1/tasks",
        methods: &[Method::GET, Method::POST],
    },
    RouteSpec {
        template: "/v1/tasks/{id}",
        methods: &[Method::GET, Method::PATCH, Method::DELETE],
    },
];

/// The task API over a [`TaskService`].
pub struct TaskApi {
    service: TaskService,
    gate: Arc<AccessGate>,
    keys: Option<Arc<dyn crate::KeyRefresh>>,
    probes: Vec<Arc<dyn Probe>>,
    metrics: Metrics,
    openapi: Bytes,
}

impl std::fmt::Debug for TaskApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskApi").finish_non_exhaustive()
    }
}

impl TaskApi {
    /// `gate` verifies tokens with the keys task-server trusts and reads
    /// the accounts from the database the servers share.
    pub fn new(
        service: TaskService,
        gate: Arc<AccessGate>,
        probes: Vec<Arc<dyn Probe>>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            service,
            gate,
            keys: None,
            probes,
            metrics: Metrics::default(),
            openapi: Bytes::from(serde_json::to_vec(&crate::openapi::tasks())?),
        })
    }

    /// Refetches the JWKS when a token names an unknown key (rate-limited).
    #[must_use]
    pub fn with_key_source(mut self, keys: Arc<dyn crate::KeyRefresh>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The bearer token's principal: verified in-process (refetching the
    /// JWKS once for an unknown key), then admitted by the gate.
    async fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        let claims = match self.gate.verify(token) {
            Ok(claims) => claims,
            Err(CoreError::InvalidToken(TokenRejection::UnknownKey)) if self.keys.is_some() => {
                let refreshed = match &self.keys {
                    Some(keys) => keys.refresh().await.unwrap_or_else(|error| {
                        tracing::warn!(target: "todo::http", %error, "refetching the JWKS failed");
                        false
                    }),
                    None => false,
                };
                if !refreshed {
                    return Err(ApiError::invalid_token());
                }
                self.gate
                    .verify(token)
                    .map_err(|_| ApiError::invalid_token())?
            }
            Err(_) => return Err(ApiError::invalid_token()),
        };
        crate::gate::admit(&self.gate, claims).await
    }
}

/// The `ETag` of a version: strong, `"v<version>"`.
pub fn etag(version: TaskVersion) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{}\"", version.get()))
        .unwrap_or(HeaderValue::from_static("\"v0\""))
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precondition {
    /// No header, or `*`: any version will do.
    Any,
    /// `"v<version>"`: that version only.
    Version(TaskVersion),
    /// A value that names no version of ours: it can match nothing, but
    /// that is weighed only once the task is found (RFC 9110 §13.2.1:
    /// another user's task is 404 whatever the header says).
    Unmatchable,
}

fn if_match(request: &ApiRequest) -> Precondition {
    let Some(value) = request.headers.get(IF_MATCH) else {
        return Precondition::Any;
    };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Precondition::Any;
    }
    value
        .strip_prefix("\"v")
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|v| TaskVersion::new(v).ok())
        .map_or(Precondition::Unmatchable, Precondition::Version)
}

impl TaskApi {
    /// The version the write must find: `Ok(None)` for any. An unmatchable
    /// `If-Match` fails here: 404 if the owner has no such task, else 412.
    async fn expected_version(
        &self,
        precondition: Precondition,
        owner: todo_core::UserId,
        id: TaskId,
    ) -> Result<Option<TaskVersion>, ApiError> {
        match precondition {
            Precondition::Any => Ok(None),
            Precondition::Version(version) => Ok(Some(version)),
            Precondition::Unmatchable => {
                let task = call(&self.service, move |s| s.get(owner, id)).await?;
                let mut error = ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "urn:todo:problem:version-mismatch",
                    "Precondition failed",
                    "If-Match names no version of this task",
                );
                error.etag = Some(task.version);
                Err(error)
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    due_at: Option<String>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    archived: Option<bool>,
}

/// A JSON merge patch: `null` resets `description`, `due_at`, `priority`
/// and `labels` to their defaults; `title`, `done` and `archived` cannot be null.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default, deserialize_with = "crate::dto::present")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    done: Option<Option<bool>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    due_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    priority: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    labels: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    archived: Option<Option<bool>>,
}

/// A task on the wire.
#[derive(Serialize)]
pub struct TaskDto {
    id: String,
    title: String,
    description: String,
    done: bool,
    completed_at: Option<String>,
    due_at: Option<String>,
    priority: u8,
    labels: Vec<String>,
    archived: bool,
    created_at: String,
    updated_at: String,
    version: i64,
}

impl From<&Task> for TaskDto {
    fn from(task: &Task) -> Self {
        Self {
            id: task.id.to_string(),
            title: task.title.to_string(),
            description: task.description.to_string(),
            done: task.done,
            completed_at: task.completed_at.map(|t| t.to_string()),
            due_at: task.due_at.map(|t| t.to_string()),
            priority: task.priority.get(),
            labels: task.labels.iter().map(ToString::to_string).collect(),
            archived: task.archived,
            created_at: task.created_at.to_string(),
            updated_at: task.updated_at.to_string(),
            version: task.version.get(),
        }
    }
}

#[derive(Serialize)]
struct TaskPage {
    items: Vec<TaskDto>,
    next_cursor: Option<String>,
}

/// Collects every field's errors before failing.
#[derive(Default)]
struct Errors(Vec<ValidationError>);

impl Errors {
    fn take<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(ApiError::validation(self.0)),
        }
    }
}

fn labels(raw: Vec<String>) -> Result<Labels, ValidationError> {
    Labels::parse(raw.iter().map(String::as_str))
}

fn null(field: &'static str) -> ValidationError {
    ValidationError::Format {
        field,
        what: "value (it cannot be null)",
    }
}

/// Decodes a `POST /v1/tasks` body into a new task.
pub fn decode_new_task(body: &[u8]) -> Result<NewTask, ApiError> {
    new_task(crate::request::decode_json(body)?)
}

/// Decodes a `PATCH /v1/tasks/{id}` body into a patch.
pub fn decode_task_patch(body: &[u8]) -> Result<TaskPatch, ApiError> {
    task_patch(crate::request::decode_json(body)?)
}

fn new_task(body: CreateBody) -> Result<NewTask, ApiError> {
    let mut errors = Errors::default();
    let title = errors.take(Title::parse(&body.title));
    let description = errors.take(
        body.description
            .as_deref()
            .map_or(Ok(Description::default()), Description::parse),
    );
    let due_at = errors.take(
        body.due_at
            .as_deref()
            .map(|d| Timestamp::parse_rfc3339(d, "due_at"))
            .transpose(),
    );
    let priority = errors.take(body.priority.map_or(Ok(Priority::default()), Priority::new));
    let labels = errors.take(body.labels.map_or(Ok(Labels::default()), labels));
    let task = match (title, description, due_at, priority, labels) {
        (Some(title), Some(description), Some(due_at), Some(priority), Some(labels)) => {
            Some(NewTask {
                title,
                description,
                done: body.done.unwrap_or(false),
                due_at,
                priority,
                labels,
                archived: body.archived.unwrap_or(false),
            })
        }
        _ => None,
    };
    errors.finish(task)
}

fn task_patch(body: PatchBody) -> Result<TaskPatch, ApiError> {
    let mut errors = Errors::default();
    let mut patch = TaskPatch::default();
    if let Some(title) = body.title {
        patch.title = errors.take(title.ok_or(null("title")).and_then(|t| Title::parse(&t)));
    }
    if let Some(description) = body.description {
        patch.description =
            errors.take(description.map_or(Ok(Description::default()), |d| Description::parse(&d)));
    }
    if let Some(done) = body.done {
        patch.done = errors.take(done.ok_or(null("done")));
    }
    if let Some(due_at) = body.due_at {
        patch.due_at = errors.take(
            due_at
                .map(|d| Timestamp::parse_rfc3339(&d, "due_at"))
                .transpose(),
        );
    }
    if let Some(priority) = body.priority {
        patch.priority = errors.take(priority.map_or(Ok(Priority::default()), Priority::new));
    }
    if let Some(raw) = body.labels {
        patch.labels = errors.take(raw.map_or(Ok(Labels::default()), labels));
    }
    if let Some(archived) = body.archived {
        patch.archived = errors.take(archived.ok_or(null("archived")));
    }
    errors.finish(Some(patch))
}

const QUERY_PARAMS: &[&str] = &[
    "done",
    "archived",
    "label",
    "q",
    "due_before",
    "due_after",
    "sort",
    "limit",
    "cursor",
];

/// Decodes a task list's query string (what follows `?`).
pub fn decode_list_query(raw: Option<&str>) -> Result<(TaskQuery, Option<TaskCursor>), ApiError> {
    let mut query = TaskQuery::default();
    let mut cursor = None;
    let invalid = |e| ApiError::validation(vec![e]);
    for (name, value) in crate::request::query_pairs(raw, QUERY_PARAMS)? {
        match name.as_str() {
            "done" => query.done = Some(query_bool("done", &value)?),
            "archived" => query.archived = query_bool("archived", &value)?,
            "label" => query.label = Some(Label::parse(&value).map_err(invalid)?),
            "q" => query.text = Some(SearchText::parse(&value).map_err(invalid)?),
            "due_before" => {
                query.due_before =
                    Some(Timestamp::parse_rfc3339(&value, "due_before").map_err(invalid)?)
            }
            "due_after" => {
                query.due_after =
                    Some(Timestamp::parse_rfc3339(&value, "due_after").map_err(invalid)?)
            }
            "sort" => query.sort = TaskSort::parse(&value).map_err(invalid)?,
            "limit" => {
                query.limit = PageLimit::new(query_int("limit", &value)?).map_err(invalid)?
            }
            _ => cursor = Some(TaskCursor::parse(&value).map_err(invalid)?),
        }
    }
    Ok((query, cursor))
}

fn with_etag(mut response: ApiResponse, task: &Task) -> ApiResponse {
    response.headers_mut().insert(ETAG, etag(task.version));
    response
}

impl Api for TaskApi {
    fn routes(&self) -> &'static [RouteSpec] {
        ROUTES
    }

    async fn handle(
        &self,
        route: &'static RouteSpec,
        param: Option<String>,
        mut request: ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let token = request.bearer()?.to_owned();
        let owner = self.principal(&token).await?.user_id;
        if route.template == "/v1/tasks" {
            if request.method == Method::POST {
                let new = decode_new_task(&request.json_bytes().await?)?;
                let task = call(&self.service, move |s| s.create(owner, new)).await?;
                let mut response = with_etag(
                    json_value(StatusCode::CREATED, &TaskDto::from(&task))?,
                    &task,
                );
                if let Ok(location) = HeaderValue::from_str(&format!("/v1/tasks/{}", task.id)) {
                    response.headers_mut().insert(LOCATION, location);
                }
                return Ok(response);
            }
            let (query, cursor) = decode_list_query(request.query.as_deref())?;
            let page = call(&self.service, move |s| {
                s.list(owner, &query, cursor.as_ref())
            })
            .await?;
            return json_value(
                StatusCode::OK,
                &TaskPage {
                    items: page.items.iter().map(TaskDto::from).collect(),
                    next_cursor: page.next_cursor.map(|c| c.to_string()),
                },
            );
        }
        // An id that cannot be one is simply not found.
        let id = param
            .as_deref()
            .and_then(|p| TaskId::parse(p).ok())
            .ok_or_else(ApiError::not_found)?;
        match request.method {
            Method::GET => {
                let task = call(&self.service, move |s| s.get(owner, id)).await?;
                Ok(with_etag(
                    json_value(StatusCode::OK, &TaskDto::from(&task))?,
                    &task,
                ))
            }
            Method::PATCH => {
                // The request must be valid before its precondition is weighed.
                let patch = decode_task_patch(&request.json_bytes().await?)?;
                let expected = self.expected_version(if_match(&request), owner, id).await?;
                let task =
                    call(&self.service, move |s| s.update(owner, id, patch, expected)).await?;
                Ok(with_etag(
                    json_value(StatusCode::OK, &TaskDto::from(&task))?,
                    &task,
                ))
            }
            _ => {
                let expected = self.expected_version(if_match(&request), owner, id).await?;
                call(&self.service, move |s| s.delete(owner, id, expected)).await?;
                Ok(no_content())
            }
        }
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

    fn gauges(&self, out: &mut String) {
        for probe in &self.probes {
            probe.gauges(out);
        }
    }
}
