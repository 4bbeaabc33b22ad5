//! task-server's API: each user's own tasks. Tokens are verified here, with
//! public keys only; the database is touched only by the task service.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{NestedPath, RawQuery, State};
use http::StatusCode;
use http::header::{ETAG, HeaderValue, LOCATION};
use serde::{Deserialize, Serialize};
use todo_core::{
    AccessClaims, AccessGate, Change, ChangeCursor, ChangeLimit, Description, Error as CoreError,
    Label, Labels, NewTask, Page, PageLimit, Principal, Priority, ProjectId, ProjectService,
    Recurrence, Reminder, Reminders, SearchText, Subject, Task, TaskCursor, TaskId, TaskPatch,
    TaskQuery, TaskService, TaskSort, TaskVersion, TimeZoneName, Timestamp, Title, TokenRejection,
    UserId, ValidationError, WebhookService,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::blocking::{blocking, call};
use crate::events::LiveStreams;
use crate::extract::{
    Authenticates, Conditional, EventsRead, JsonBytes, Path, Scoped, TasksRead, TasksWrite,
};
use crate::front::{Api, ApiResponse, json_value, no_content};
use crate::keys::{KeyRefresh, Refetch};

/// When to try again after a token's key could not be known (a JWKS fetch
/// running or failing): about when a failed fetch is retried.
const KEYS_UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);
use crate::probe::{Operations, Probe};
use crate::problem::ApiError;
use crate::projects_api::{MemberDto, ProjectDto};
use crate::request::{query_bool, query_int};
use crate::scans::ScanSlots;

/// Lists that scan or span many projects, at once, unless set
/// ([`TaskApi::with_scan_slots`]).
const DEFAULT_SCANS: usize = 4;

/// Projects a list may span and read without a scan slot. It reads a
/// range of a sort index for each: an account in a thousand projects made
/// each of its plain lists a thousand reads, and a flood of them held
/// every pooled connection (session 15's attack, F1). At 100 projects a
/// list cost 1.5–3 ms on SQLite and 4–12 ms on PostgreSQL in that attack.
const WIDE_LIST_PROJECTS: usize = 32;

/// Writes (and imports) one user may have at the database at once: a
/// write waiting on rows another transaction of the user's holds (their
/// import) holds a pooled connection meanwhile, so one user's writes could
/// otherwise take the pool from everyone (the attack of session 14 did, on
/// PostgreSQL). The rest wait in line, holding nothing, 2 s at most (429).
const WRITES_PER_USER: usize = 2;

/// Lists (of up to [`WIDE_LIST_PROJECTS`] projects, not read in place), and
/// reads of the change log (`GET /v1/changes`), one user may have reading
/// at once. Each holds a pooled connection while it
/// reads, a statement a project: one account in 31 projects, listing from
/// eight addresses at once, held the pool and made everyone's requests
/// take seconds (session 16's attack, F1). The rest wait in line, holding
/// nothing, 2 s at most (429).
const LISTS_PER_USER: usize = 2;

/// The task API over a [`TaskService`].
#[derive(Debug)]
pub struct TaskApi {
    service: TaskService,
    gate: Arc<AccessGate>,
    keys: Option<Arc<dyn KeyRefresh>>,
    ops: Operations,
    scans: ScanSlots,
    /// Writes a user may have waiting on the database at once.
    writes: ScanSlots,
    /// Lists (and reads of the change log) a user may have reading at
    /// once, and the instance (`LISTS_AT_ONCE`).
    lists: ScanSlots,
    live: LiveStreams,
    live_poll: Duration,
    webhooks: Option<WebhookService>,
    projects: Option<ProjectService>,
    /// Reads the account for its export (`/v1/users/me/export`).
    accounts: Option<todo_core::AccountReader>,
    exports: crate::export::OneAUser,
    imports: crate::import::Imports,
    feed_reads: crate::feed::FeedReads,
}

impl TaskApi {
    /// `gate` verifies tokens with the keys task-server trusts and reads
    /// the accounts from the database the servers share.
    pub fn new(
        service: TaskService,
        gate: Arc<AccessGate>,
        mut probes: Vec<Arc<dyn Probe>>,
    ) -> Result<Self, serde_json::Error> {
        let live = LiveStreams::default();
        probes.push(live.probe());
        Ok(Self {
            service,
            gate,
            keys: None,
            ops: Operations::new(probes, &crate::openapi::tasks())?,
            scans: ScanSlots::new(DEFAULT_SCANS),
            writes: ScanSlots::per_user(WRITES_PER_USER),
            lists: ScanSlots::bounded(Self::LISTS_AT_ONCE, LISTS_PER_USER),
            live,
            live_poll: crate::events::POLL,
            webhooks: None,
            projects: None,
            accounts: None,
            exports: crate::export::exports(),
            imports: crate::import::Imports::default(),
            feed_reads: crate::feed::FeedReads::default(),
        })
    }

    /// At most `slots` lists that scan (a filter checked row by row, or
    /// `q`) or span more than 32 projects (a read of an index range each)
    /// at once, one per user: a user's next such list waits behind their
    /// running one (429 after 2 s), others' for a free slot (503 after
    /// 2 s); then it waits for a pooled connection as any request does. Keep it below the database pool's size, so that scans cannot
    /// hold every connection (the default, 4, is half the store's default
    /// pool).
    #[must_use]
    pub fn with_scan_slots(mut self, slots: usize) -> Self {
        self.scans = ScanSlots::new(slots);
        self
    }

    /// At most `slots` lists (of tasks and projects) and reads of the
    /// change log, not read in place, read and built at once across users
    /// (each user two at most): each holds its page in memory until it
    /// is an answer. The default is [`TaskApi::LISTS_AT_ONCE`]; servers give
    /// their pool's size when it is smaller.
    #[must_use]
    pub fn with_list_slots(mut self, slots: usize) -> Self {
        self.lists = ScanSlots::bounded(slots, LISTS_PER_USER);
        self
    }

    /// How often a live stream (`GET /v1/events`) reads the log without
    /// being woken (default 1 s): what bounds how late a change committed
    /// by another process shows, unless that process's changes are
    /// announced through [`TaskService::notify_changed`] (then this is
    /// only a safety net, and may be long).
    #[must_use]
    pub fn with_live_poll(mut self, every: Duration) -> Self {
        self.live_poll = every.max(crate::events::RECHECK);
        self
    }

    /// At most `total` live streams (`GET /v1/events`) open at once on
    /// this instance (default 256; past it 503) and `per_client` from one
    /// client address (default 16, an IPv6 /64 counting as one; past it
    /// 429); a user has at most 8 whatever these are. Each stream holds a
    /// connection for as long as its client keeps it: keep `total` well
    /// under the server's connection cap, so that streams cannot take
    /// every connection.
    #[must_use]
    pub fn with_live_limits(mut self, total: usize, per_client: usize) -> Self {
        self.live = self.live.with_caps(total, per_client);
        self
    }

    /// Serves `/v1/webhooks` with `webhooks` (without it, 404): the
    /// deliveries are made by whoever runs the service's worker.
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: WebhookService) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Serves the account's export (`GET /v1/users/me/export`), reading
    /// the account with `accounts` (without it, that path answers 404).
    #[must_use]
    pub fn with_accounts(mut self, accounts: todo_core::AccountReader) -> Self {
        self.accounts = Some(accounts);
        self
    }

    pub(crate) fn accounts(&self) -> Option<&todo_core::AccountReader> {
        self.accounts.as_ref()
    }

    /// Serves `/v1/projects` and their members from `projects` (without
    /// it, those routes answer 404).
    #[must_use]
    pub fn with_projects(mut self, projects: ProjectService) -> Self {
        // (its writes wake this API's live streams, as task writes do)
        self.projects = Some(projects.waking(&self.service));
        self
    }

    /// Refetches the JWKS when a token names an unknown key (rate-limited).
    #[must_use]
    pub fn with_key_source(mut self, keys: Arc<dyn KeyRefresh>) -> Self {
        self.keys = Some(keys);
        self
    }
}

impl Authenticates for TaskApi {
    /// The bearer token's principal: verified in-process (refetching the
    /// JWKS once for an unknown key), then admitted by the gate. A key
    /// that cannot be known now (a fetch running or failing) is a 503 with
    /// `Retry-After`, not a 401: the token may be one just issued.
    async fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        if todo_core::ApiTokenSecret::is_claimed_by(token) {
            let (principal, _) = crate::gate::admit_api_token(&self.gate, token).await?;
            return Ok(principal);
        }
        let claims = self.verified_claims(token).await?;
        crate::gate::admit(&self.gate, claims).await
    }
}

impl TaskApi {
    /// The claims of a bearer token whose signature and times hold (the
    /// account's standing is not read: see [`crate::gate::admit`]).
    pub(crate) async fn verified_claims(&self, token: &str) -> Result<AccessClaims, ApiError> {
        Ok(match (self.gate.verify(token), &self.keys) {
            (Ok(claims), _) => claims,
            (Err(CoreError::InvalidToken(TokenRejection::UnknownKey)), Some(keys)) => {
                let refetch = keys.refresh().await.unwrap_or_else(|error| {
                    tracing::warn!(target: "todo::http", error = %crate::problem::chain(&error), "refetching the JWKS failed");
                    Refetch::Unavailable
                });
                match refetch {
                    Refetch::Installed => self
                        .gate
                        .verify(token)
                        .map_err(|_| ApiError::invalid_token())?,
                    Refetch::Unchanged => return Err(ApiError::invalid_token()),
                    Refetch::Unavailable => {
                        return Err(ApiError::unavailable(
                            KEYS_UNAVAILABLE_RETRY,
                            Some("the token's key is not known yet and the JWKS cannot be fetched now".into()),
                        ));
                    }
                }
            }
            (Err(_), _) => return Err(ApiError::invalid_token()),
        })
    }

    pub(crate) fn gate(&self) -> &Arc<AccessGate> {
        &self.gate
    }

    pub(crate) fn exports(&self) -> &crate::export::OneAUser {
        &self.exports
    }

    /// Runs a write of `user`'s on the blocking pool, holding one of their
    /// write slots until the work ends (a client that leaves does not
    /// free it: the work runs on).
    pub(crate) async fn write<S, T>(
        &self,
        user: todo_core::UserId,
        service: &S,
        work: impl FnOnce(&S) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        S: Clone + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.writes.take(user).await?;
        call(service, move |s| {
            let _slot = slot;
            work(s)
        })
        .await
    }

    /// A write slot of `user`'s, for work that holds it with more (an
    /// import): hold it (moved into the blocking work) for as long as the
    /// write runs.
    pub(crate) async fn write_slot(
        &self,
        user: todo_core::UserId,
    ) -> Result<crate::scans::ScanSlot, ApiError> {
        self.writes.take(user).await
    }

    pub(crate) fn imports(&self) -> &crate::import::Imports {
        &self.imports
    }

    pub(crate) fn feed_reads(&self) -> &crate::feed::FeedReads {
        &self.feed_reads
    }

    pub(crate) fn service(&self) -> &TaskService {
        &self.service
    }

    /// The bytes of files the API holds at once at most: import files
    /// uploading or imported (a budget of their own), and the pages of the
    /// exports running (16 at once, each three pages of 25 tasks ahead of
    /// its client, a task's JSON some 41 KB at most: 10,000 characters of
    /// description, four bytes each, and the rest).
    pub const FILES_HELD_BYTES: usize = crate::import::IMPORT_BUDGET_BYTES
        + crate::export::MAX_EXPORTS
            * (crate::export::AHEAD + 1)
            * crate::export::PAGE
            * (4 * todo_core::Description::MAX_CHARS + 1024);

    /// The gauge of the live streams open (`todo_http_live_streams`) and
    /// the count of those ended for a client that stopped reading
    /// (`todo_http_live_streams_stalled_total`), read when scraped: this
    /// API's metrics carry them; a program that serves another's metrics
    /// in their place (one origin) adds this to that one's probes.
    #[must_use]
    pub fn live_streams_probe(&self) -> Arc<dyn Probe> {
        self.live.probe()
    }

    pub(crate) fn live_streams(&self) -> &LiveStreams {
        &self.live
    }

    pub(crate) fn webhooks(&self) -> Option<&WebhookService> {
        self.webhooks.as_ref()
    }

    pub(crate) fn projects(&self) -> Option<&ProjectService> {
        self.projects.as_ref()
    }

    pub(crate) fn live_poll(&self) -> Duration {
        self.live_poll
    }
}

/// The `ETag` of a version: strong, `"v<version>"`.
pub fn etag(version: TaskVersion) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{}\"", version.get()))
        .unwrap_or(HeaderValue::from_static("\"v0\""))
}

/// A new task on the wire.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskCreate)]
struct CreateBody {
    /// The project to put it in (a member's, as editor or owner); the
    /// caller's Inbox if left out.
    #[serde(default)]
    #[schema(format = Uuid)]
    project_id: Option<String>,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    #[schema(format = DateTime)]
    due_at: Option<String>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    archived: Option<bool>,
    /// The task it is a subtask of (of the same project; the project is
    /// the parent's when `project_id` is left out).
    #[serde(default)]
    #[schema(format = Uuid)]
    parent_id: Option<String>,
    /// An RRULE (`FREQ=WEEKLY;BYDAY=MO,WE`); needs `due_at`.
    #[serde(default)]
    recurrence: Option<String>,
    /// The IANA zone the rule is read in (default `UTC`).
    #[serde(default)]
    time_zone: Option<String>,
    /// At most 10: `{at}` or `{before_due}` (an ISO 8601 duration of
    /// weeks, days, hours, minutes, or seconds in whole minutes).
    #[serde(default)]
    reminders: Option<Vec<ReminderBody>>,
}

/// One reminder on the wire: exactly one of the two.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reminder)]
pub(crate) struct ReminderBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "PT15M")]
    before_due: Option<String>,
}

pub(crate) fn reminders(raw: Vec<ReminderBody>) -> Result<Reminders, ValidationError> {
    let bad = ValidationError::Format {
        field: "reminders",
        what: "reminder: {at} or {before_due}",
    };
    if raw.len() > Reminders::MAX {
        return Err(ValidationError::TooMany {
            field: "reminders",
            max: Reminders::MAX,
        });
    }
    let items = raw
        .into_iter()
        .map(|r| match (r.at, r.before_due) {
            (Some(at), None) => Timestamp::parse_rfc3339(&at, "reminders").map(Reminder::At),
            (None, Some(before)) => Reminder::parse_before_due(&before),
            _ => Err(bad.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Reminders::new(items)
}

fn reminder_bodies(reminders: &Reminders) -> Vec<ReminderBody> {
    reminders
        .iter()
        .map(|r| match r {
            Reminder::At(at) => ReminderBody {
                at: Some(at.to_string()),
                before_due: None,
            },
            Reminder::BeforeDue(_) => ReminderBody {
                at: None,
                before_due: Some(r.to_string()),
            },
        })
        .collect()
}

/// A JSON merge patch: `null` resets `description`, `due_at`, `priority`,
/// `labels`, `parent_id`, `recurrence` and `reminders` to their defaults;
/// `title`, `done`, `archived` and `time_zone` cannot be null.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskPatch)]
struct PatchBody {
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(nullable = false)]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(nullable = false)]
    done: Option<Option<bool>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(format = DateTime)]
    due_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    priority: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    labels: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(nullable = false)]
    archived: Option<Option<bool>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(format = Uuid)]
    parent_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    recurrence: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(nullable = false)]
    time_zone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    reminders: Option<Option<Vec<ReminderBody>>>,
}

/// A task on the wire.
// Serialised straight from the task: no `String` of its own per field.
#[derive(Serialize, ToSchema)]
#[schema(as = Task)]
pub struct TaskDto<'a> {
    #[schema(value_type = String, format = Uuid)]
    id: Shown<TaskId>,
    #[schema(value_type = String, format = Uuid)]
    project_id: Shown<ProjectId>,
    #[schema(value_type = String, format = Uuid)]
    created_by: Shown<UserId>,
    #[schema(value_type = Option<String>, format = Uuid, required = true)]
    parent_id: Option<Shown<TaskId>>,
    #[schema(value_type = Option<String>, required = true)]
    recurrence: Option<Shown<&'a Recurrence>>,
    time_zone: &'a str,
    reminders: Vec<ReminderBody>,
    /// In the answer to the change that completed a recurring task: its
    /// next occurrence (made then, or before).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    next_occurrence_id: Option<Shown<TaskId>>,
    title: &'a str,
    description: &'a str,
    done: bool,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    completed_at: Option<Shown<Timestamp>>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    due_at: Option<Shown<Timestamp>>,
    priority: u8,
    #[schema(value_type = Vec<String>)]
    labels: LabelList<'a>,
    archived: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Shown<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Shown<Timestamp>,
    version: i64,
}

impl<'a> From<&'a Task> for TaskDto<'a> {
    fn from(task: &'a Task) -> Self {
        Self {
            id: Shown(task.id),
            project_id: Shown(task.project),
            created_by: Shown(task.created_by),
            parent_id: task.parent.map(Shown),
            recurrence: task.recurrence.as_ref().map(Shown),
            time_zone: task.time_zone.as_str(),
            reminders: reminder_bodies(&task.reminders),
            next_occurrence_id: None,
            title: task.title.as_str(),
            description: task.description.as_str(),
            done: task.done,
            completed_at: task.completed_at.map(Shown),
            due_at: task.due_at.map(Shown),
            priority: task.priority.get(),
            labels: LabelList(&task.labels),
            archived: task.archived,
            created_at: Shown(task.created_at),
            updated_at: Shown(task.updated_at),
            version: task.version.get(),
        }
    }
}

/// A value written as a JSON string by its `Display`, with no `String` between.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A task's labels as a JSON array of strings.
struct LabelList<'a>(&'a Labels);

impl Serialize for LabelList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|label| label.as_str()))
    }
}

/// A page of tasks.
#[derive(Serialize, ToSchema)]
struct TaskPage<'a> {
    items: Vec<TaskDto<'a>>,
    next_cursor: Option<String>,
}

/// Collects every field's errors before failing.
#[derive(Default)]
pub(crate) struct Errors(Vec<ValidationError>);

impl Errors {
    pub(crate) fn take<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(ApiError::validation(self.0)),
        }
    }
}

/// A parent's id, named as its field is.
fn parent_id(raw: &str) -> Result<TaskId, ValidationError> {
    TaskId::parse(raw).map_err(|_| ValidationError::Format {
        field: "parent_id",
        what: "task id",
    })
}

fn labels(raw: Vec<String>) -> Result<Labels, ValidationError> {
    Labels::parse(raw.iter().map(String::as_str))
}

pub(crate) fn null(field: &'static str) -> ValidationError {
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
    let project = errors.take(body.project_id.as_deref().map(ProjectId::parse).transpose());
    let parent = errors.take(body.parent_id.as_deref().map(parent_id).transpose());
    let recurrence = errors.take(
        body.recurrence
            .as_deref()
            .map(Recurrence::parse)
            .transpose(),
    );
    let time_zone = errors.take(
        body.time_zone
            .as_deref()
            .map(TimeZoneName::parse)
            .transpose(),
    );
    let reminder_list = errors.take(body.reminders.map_or(Ok(Reminders::default()), reminders));
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
    let task = match (project, title, description, due_at, priority, labels) {
        (
            Some(project),
            Some(title),
            Some(description),
            Some(due_at),
            Some(priority),
            Some(labels),
        ) => Some(NewTask {
            project,
            parent: parent.flatten(),
            recurrence: recurrence.flatten(),
            time_zone: time_zone.flatten(),
            reminders: reminder_list.unwrap_or_default(),
            title,
            description,
            done: body.done.unwrap_or(false),
            due_at,
            priority,
            labels,
            archived: body.archived.unwrap_or(false),
        }),
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
    if let Some(parent) = body.parent_id {
        patch.parent = errors.take(parent.as_deref().map(parent_id).transpose());
    }
    if let Some(recurrence) = body.recurrence {
        patch.recurrence = errors.take(recurrence.as_deref().map(Recurrence::parse).transpose());
    }
    if let Some(time_zone) = body.time_zone {
        patch.time_zone = errors.take(
            time_zone
                .ok_or(null("time_zone"))
                .and_then(|z| TimeZoneName::parse(&z)),
        );
    }
    if let Some(raw) = body.reminders {
        patch.reminders = errors.take(raw.map_or(Ok(Reminders::default()), reminders));
    }
    errors.finish(Some(patch))
}

const QUERY_PARAMS: &[&str] = &[
    "done",
    "archived",
    "label",
    "project",
    "parent",
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
            "project" => {
                let project = ProjectId::parse(&value).map_err(|_| ValidationError::Format {
                    field: "project",
                    what: "project id",
                });
                query.project = Some(project.map_err(invalid)?);
            }
            "parent" => {
                let parent = TaskId::parse(&value).map_err(|_| ValidationError::Format {
                    field: "parent",
                    what: "task id",
                });
                query.parent = Some(parent.map_err(invalid)?);
            }
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
            "cursor" => cursor = Some(TaskCursor::parse(&value).map_err(invalid)?),
            // (`query_pairs` let through only the names above.)
            other => return Err(ApiError::field(other, "unknown query parameter")),
        }
    }
    Ok((query, cursor))
}

/// A task as the body of `status`, with its version as the `ETag`.
fn task_response(status: StatusCode, task: &Task) -> Result<ApiResponse, ApiError> {
    let mut response = json_value(status, &TaskDto::from(task))?;
    response.headers_mut().insert(ETAG, etag(task.version));
    Ok(response)
}

/// The task API's routes, each with the description its handler carries.
fn task_routes() -> OpenApiRouter<Arc<TaskApi>> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, update_task, delete_task))
        .routes(routes!(list_changes))
        .routes(routes!(crate::export::export))
        .routes(routes!(crate::export::account_export))
        .routes(routes!(crate::import::import))
        .routes(routes!(
            crate::feed::publish_feed,
            crate::feed::get_feed,
            crate::feed::delete_feed
        ))
        .routes(routes!(crate::feed::read_feed))
        .routes(routes!(crate::events::events))
        .routes(routes!(
            crate::webhooks_api::create_webhook,
            crate::webhooks_api::list_webhooks
        ))
        .routes(routes!(crate::webhooks_api::delete_webhook))
        .routes(routes!(crate::webhooks_api::list_deliveries))
        .routes(routes!(
            crate::projects_api::create_project,
            crate::projects_api::list_projects
        ))
        .routes(routes!(
            crate::projects_api::get_project,
            crate::projects_api::update_project,
            crate::projects_api::delete_project
        ))
        .routes(routes!(crate::projects_api::list_members))
        .routes(routes!(
            crate::projects_api::put_member,
            crate::projects_api::delete_member
        ))
}

/// The operations the task API serves, as its handlers describe them.
#[must_use]
pub fn documented() -> utoipa::openapi::OpenApi {
    task_routes().into_openapi()
}

type Tasks = State<Arc<TaskApi>>;

/// Create a task.
#[utoipa::path(post, path = "/v1/tasks", request_body = CreateBody,
    responses(
        (status = 201, description = "The task", body = TaskDto<'_>,
            headers(("Location" = String), ("ETag" = String, description = "\"v<version>\""))),
        (status = 403, description = "The project's owner's task quota is used up (urn:todo:problem:quota-exceeded), or the caller only views the project"),
        (status = 404, description = "No project with this id that the caller is a member of"),
    ))]
async fn create_task(
    State(api): Tasks,
    caller: Scoped<TasksWrite>,
    mounted_at: Option<axum::Extension<NestedPath>>,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let mut new = decode_new_task(&body)?;
    // A token limited to a project adds there (a subtask, where its parent
    // is: the store refuses a parent elsewhere).
    if let Some(limit) = caller.project() {
        new.project = Some(caller.within(new.project.unwrap_or(limit))?);
    }
    let owner = caller.0.user_id;
    let task = api
        .write(owner, &api.service, move |s| s.create(owner, new))
        .await?;
    let mut response = task_response(StatusCode::CREATED, &task)?;
    // Nested in a host's app (under `/api`, say), the task is there too.
    let prefix = mounted_at.as_ref().map_or("", |nested| nested.as_str());
    let prefix = prefix.trim_end_matches('/');
    if let Ok(location) = HeaderValue::from_str(&format!("{prefix}/v1/tasks/{}", task.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List the tasks of my projects, or of one (keyset pages).
#[utoipa::path(get, path = "/v1/tasks",
    params(
        ("done" = Option<bool>, Query, description = "only done or not done"),
        ("archived" = Option<bool>, Query, description = "archived tasks instead of the others"),
        ("label" = Option<String>, Query, description = "tasks with this label"),
        ("project" = Option<String>, Query, format = Uuid, description = "only this project's tasks (404 for a project the caller is not a member of, as for everything in it)"),
        ("parent" = Option<String>, Query, format = Uuid, description = "only the subtasks of this task"),
        ("q" = Option<String>, Query, description = "case-insensitive literal substring of title or description"),
        ("due_before" = Option<String>, Query, format = DateTime, description = "strictly before; tasks without a due date are left out"),
        ("due_after" = Option<String>, Query, format = DateTime, description = "strictly after; tasks without a due date are left out"),
        ("sort" = Option<String>, Query, description = "order; ties break on id"),
        ("limit" = Option<i64>, Query, description = "page size (a page of large tasks holds fewer, about 2 MiB of them: follow next_cursor)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page, same query"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage<'_>),
        (status = 404, description = "`project` names a project the caller is not a member of"),
    ))]
async fn list_tasks(
    State(api): Tasks,
    caller: Scoped<TasksRead>,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    let (mut query, cursor) = decode_list_query(query.as_deref())?;
    if let Some(limit) = caller.project() {
        query.project = Some(caller.within(query.project.unwrap_or(limit))?);
    }
    let owner = caller.0.user_id;
    // In place on this worker when the store can answer without waiting
    // (a short page of little text); else read and rendered on the blocking
    // pool, since a page of large tasks is megabytes of JSON.
    if let Some(page) = api.service.list_in_place(owner, &query, cursor.as_ref()) {
        return task_page(&page?);
    }
    // A scan, and a list across many projects (a read a project), hold a
    // connection for as long as they read: they take a scan slot, held by
    // the blocking work itself (which runs on if the request is cancelled).
    // Any other list takes one of its user's list slots, under which the
    // store says whether the list is that wide before it reads.
    let (query, cursor) = if query.scans() {
        (query, cursor)
    } else {
        let slot = api.lists.take(owner).await?;
        let service = api.service.clone();
        let first = blocking(move || {
            let _slot = slot;
            Ok::<_, ApiError>(
                match service.list_within(owner, &query, cursor.as_ref(), WIDE_LIST_PROJECTS)? {
                    Some(page) => Listed::Page(task_page(&page)?),
                    None => Listed::Wide(query, cursor),
                },
            )
        })
        .await?;
        match first {
            Listed::Page(page) => return Ok(page),
            Listed::Wide(query, cursor) => (query, cursor),
        }
    };
    let slot = api.scans.take(owner).await?;
    let service = api.service.clone();
    blocking(move || {
        let _slot = slot;
        task_page(&service.list(owner, &query, cursor.as_ref())?)
    })
    .await
}

/// A list's first try without a slot.
enum Listed {
    /// The page, as a 200.
    Page(ApiResponse),
    /// Too wide to read without a slot: the request, to list with one.
    Wide(TaskQuery, Option<TaskCursor>),
}

/// A page of tasks as a 200.
fn task_page(page: &Page<Task, TaskCursor>) -> Result<ApiResponse, ApiError> {
    crate::dto::page_json(page, |items, next_cursor| TaskPage { items, next_cursor })
}

/// Get a task.
#[utoipa::path(get, path = "/v1/tasks/{id}",
    params(Path<TaskId>),
    responses(
        (status = 200, description = "The task", body = TaskDto<'_>,
            headers(("ETag" = String, description = "\"v<version>\""))),
        (status = 404, description = "No such task in a project of yours"),
    ))]
async fn get_task(
    State(api): Tasks,
    caller: Scoped<TasksRead>,
    Path(id): Path<TaskId>,
) -> Result<ApiResponse, ApiError> {
    let task = read_task(&api, &caller.0, id).await?;
    caller.within(task.project)?;
    task_response(StatusCode::OK, &task)
}

/// The task as `caller` sees it (404 if they do not).
async fn read_task(api: &Arc<TaskApi>, caller: &Principal, id: TaskId) -> Result<Task, ApiError> {
    let owner = caller.user_id;
    Ok(match api.service.get_in_place(owner, id) {
        Some(task) => task?,
        None => call(&api.service, move |s| s.get(owner, id)).await?,
    })
}

/// For a caller limited to one project: the task must be in it (a task
/// never changes project, so what is read here holds for the write after).
async fn check_within<N>(
    api: &Arc<TaskApi>,
    caller: &Scoped<N>,
    id: TaskId,
) -> Result<(), ApiError> {
    if caller.project().is_some() {
        caller.within(read_task(api, &caller.0, id).await?.project)?;
    }
    Ok(())
}

/// Change a task (JSON merge patch).
#[utoipa::path(patch, path = "/v1/tasks/{id}",
    params(Conditional<TaskId>),
    request_body(content(
        (PatchBody = "application/json"),
        (PatchBody = "application/merge-patch+json"),
    )),
    responses(
        (status = 200, description = "The task", body = TaskDto<'_>,
            headers(("ETag" = String, description = "\"v<version>\""))),
        (status = 403, description = "The caller only views the task's project"),
        (status = 404, description = "No such task in a project of yours, whatever If-Match says"),
    ))]
async fn update_task(
    State(api): Tasks,
    caller: Scoped<TasksWrite>,
    Conditional(id, condition): Conditional<TaskId>,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    // The request must be valid before its precondition is weighed.
    let patch = decode_task_patch(&body)?;
    check_within(&api, &caller, id).await?;
    let owner = caller.0.user_id;
    let written = api
        .write(owner, &api.service, move |s| {
            s.write_if(owner, id, patch, condition)
        })
        .await?;
    let mut dto = TaskDto::from(&written.task);
    dto.next_occurrence_id = written.next_occurrence.map(Shown);
    let mut response = json_value(StatusCode::OK, &dto)?;
    response
        .headers_mut()
        .insert(ETAG, etag(written.task.version));
    Ok(response)
}

/// Delete a task.
#[utoipa::path(delete, path = "/v1/tasks/{id}",
    params(Conditional<TaskId>),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The caller only views the task's project"),
        (status = 404, description = "No such task in a project of yours, whatever If-Match says"),
    ))]
async fn delete_task(
    State(api): Tasks,
    caller: Scoped<TasksWrite>,
    Conditional(id, condition): Conditional<TaskId>,
) -> Result<ApiResponse, ApiError> {
    check_within(&api, &caller, id).await?;
    let owner = caller.0.user_id;
    api.write(owner, &api.service, move |s| {
        s.delete_if(owner, id, condition)
    })
    .await?;
    Ok(no_content())
}

/// A change on the wire: its cursor, kind, the id of what it changed (a
/// task, or a project for `project.*` and `member.*`), and that as the
/// change left it (`null` for a deletion).
#[derive(Serialize, ToSchema)]
#[schema(as = Change)]
pub(crate) struct ChangeDto<'a> {
    /// Where a client that has applied this change asks again from.
    cursor: String,
    /// `task.created`, `task.updated`, `task.deleted`, `reminder.due`,
    /// `project.created`, `project.updated`, `project.deleted`,
    /// `member.added` or `member.removed`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[schema(value_type = String, format = Uuid)]
    id: String,
    object: Option<ChangeObject<'a>>,
}

/// What a change left: a task (`task.*`, `reminder.due`), a project with
/// the reader's role (`project.*`), or a member (`member.*`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ChangeObject<'a> {
    Task(TaskDto<'a>),
    Project(ProjectDto),
    Member(MemberChangeDto),
}

/// A member of a project, as a `member.*` change carries them.
#[derive(Serialize, ToSchema)]
#[schema(as = MemberChange)]
pub(crate) struct MemberChangeDto {
    #[schema(format = Uuid)]
    project_id: String,
    #[serde(flatten)]
    member: MemberDto,
}

impl<'a> ChangeDto<'a> {
    /// `change` of `owner`'s stream, with its cursor.
    pub(crate) fn of(owner: UserId, change: &'a Change) -> Self {
        let (id, object) = match &change.subject {
            Subject::Task { id, task } => (
                id.to_string(),
                task.as_ref().map(|t| ChangeObject::Task(TaskDto::from(t))),
            ),
            Subject::Project { id, project } => (
                id.to_string(),
                project
                    .as_ref()
                    .map(|seen| ChangeObject::Project(ProjectDto::of(seen))),
            ),
            Subject::Member {
                project,
                member,
                username,
            } => (
                project.to_string(),
                Some(ChangeObject::Member(MemberChangeDto {
                    project_id: project.to_string(),
                    member: MemberDto::of(member, username),
                })),
            ),
        };
        Self {
            cursor: ChangeCursor::new(owner, change.position).to_string(),
            kind: change.kind.as_str(),
            id,
            object,
        }
    }
}

/// A change of `owner`'s stream as `GET /v1/changes` shows it, as JSON:
/// what a webhook delivery carries as its `data`.
#[must_use]
pub fn change_json(owner: UserId, change: &Change) -> serde_json::Value {
    serde_json::to_value(ChangeDto::of(owner, change)).unwrap_or(serde_json::Value::Null)
}

/// A change as a webhook delivery and a relayed message carry it, as JSON
/// bytes: `{type, timestamp, data}`, `data` being [`change_json`].
#[must_use]
pub fn change_event_body(owner: UserId, change: &Change) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": change.kind.as_str(),
        // When the change was made (the same on every attempt).
        "timestamp": change.at.to_string(),
        "data": change_json(owner, change),
    }))
    .unwrap_or_default()
}

/// A page of changes.
#[derive(Serialize, ToSchema)]
struct ChangesPage<'a> {
    items: Vec<ChangeDto<'a>>,
    /// After this page's last change (where to ask again when caught up).
    next_cursor: String,
}

const CHANGES_PARAMS: &[&str] = &["since", "limit"];

/// My changes since a cursor, for a client catching up.
#[utoipa::path(get, path = "/v1/changes",
    params(
        ("since" = Option<String>, Query, description = "a change's cursor, or the next_cursor of the previous page; without it, from the oldest change kept"),
        ("limit" = Option<i64>, Query, description = "page size (a page of large changes holds fewer, about 2 MiB of them)"),
    ),
    responses(
        (status = 200, description = "The changes after the cursor, in the order they committed; an empty page means caught up (a page of large changes may hold fewer than the limit while more follow)", body = ChangesPage<'_>),
        (status = 410, description = "Changes after the cursor are no longer kept (urn:todo:problem:changes-gone): list the tasks again"),
    ))]
async fn list_changes(
    State(api): Tasks,
    caller: Scoped<EventsRead>,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    crate::extract::reads_events(&caller.0)?;
    let caller = caller.0;
    let invalid = |e| ApiError::validation(vec![e]);
    let (mut since, mut limit) = (None, ChangeLimit::default());
    for (name, value) in crate::request::query_pairs(query.as_deref(), CHANGES_PARAMS)? {
        match name.as_str() {
            "since" => {
                since = Some(ChangeCursor::parse(&value).map_err(crate::events::cursor_refused)?)
            }
            "limit" => limit = ChangeLimit::new(query_int("limit", &value)?).map_err(invalid)?,
            other => return Err(ApiError::field(other, "unknown query parameter")),
        }
    }
    let owner = caller.user_id;
    // One of the user's list slots, held by the read itself: a read of
    // the log is a statement a window over every project the user is in
    // (4-10 ms for one in 999), and one account reading from 32
    // connections made everyone's reads of the log take 85-206 ms (attack
    // of session 22, F5); its own reads now wait in line, holding nothing
    // (429 after 2 s), as its lists do.
    // The page is built under the slot too: it is held in memory until
    // it is an answer (`LISTS_AT_ONCE`).
    let slot = api.lists.take(owner).await?;
    let service = api.service.clone();
    blocking(move || {
        let _slot = slot;
        let page = service.changes(owner, since.as_ref(), limit)?;
        let items = page
            .items
            .iter()
            .map(|change| ChangeDto::of(owner, change))
            .collect();
        let body = ChangesPage {
            items,
            next_cursor: page.next_cursor.to_string(),
        };
        let capacity = 64 + page.items.iter().map(Change::json_bytes).sum::<usize>();
        crate::front::json_sized(StatusCode::OK, &body, capacity)
    })
    .await
}

impl TaskApi {
    /// Lists of tasks and projects and reads of the change log (those not
    /// read in place) an instance reads and builds at once, across users,
    /// at most. Each holds its page in memory while it is read and made an
    /// answer (up to a hundred tasks of 40 KB read, and up to
    /// `todo_core::PAGE_BYTES` of JSON; once an answer, it is paid from the
    /// response budget): 32 at once from each of four addresses, over
    /// accounts of their own, took an instance to 256–280 MiB (session
    /// 29's attack, F2). A default pool's connections: more could not read
    /// at once anyway; servers give fewer for a smaller pool
    /// ([`TaskApi::with_list_slots`]), never more for a larger one. The
    /// rest wait, holding nothing, 2 s at most (503).
    pub const LISTS_AT_ONCE: usize = 8;

    /// The slots lists take (`LISTS_PER_USER`, `LISTS_AT_ONCE`): for the
    /// project lists too.
    pub(crate) fn list_slots(&self) -> &ScanSlots {
        &self.lists
    }
}

impl Api for TaskApi {
    fn routes(self: Arc<Self>) -> OpenApiRouter {
        crate::front::api_layer(task_routes()).with_state(self)
    }

    fn operations(&self) -> &Operations {
        &self.ops
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use todo_core::{
        ChangeKind, LogPosition, Project, ProjectColor, ProjectId, ProjectName, ProjectRole,
        Series, SeriesId, TaskId, UserId,
    };
    use uuid::Uuid;

    use super::*;

    /// A task with every field at its longest, its text of `fill`.
    fn longest_task(fill: &str) -> Task {
        let at = Timestamp::parse_rfc3339("2031-12-31T23:59:59.999999Z", "t").unwrap();
        let id = |n: u128| Uuid::from_u128(u128::MAX - n);
        // (a letter first: text of spaces alone is blank)
        let text = |chars: usize| format!("a{}", fill.repeat(chars - 1));
        let labels = (0..Labels::MAX_LABELS)
            .map(|n| Label::parse(&format!("{n:02}{}", "x".repeat(30))).unwrap())
            .collect();
        let reminders = (0..Reminders::MAX)
            .map(|n| Reminder::At(Timestamp::from_unix_micros(1_000_000 * n as i64 + 1).unwrap()));
        Task {
            id: TaskId::from_uuid(id(1)),
            project: ProjectId::from_uuid(id(2)),
            created_by: UserId::from_uuid(id(3)),
            // (a title takes no line break or tab: quotes, escaped too)
            title: Title::parse(&text(Title::MAX_CHARS))
                .or_else(|_| Title::parse(&"\"".repeat(Title::MAX_CHARS)))
                .unwrap(),
            description: Description::parse(&text(Description::MAX_CHARS)).unwrap(),
            done: true,
            completed_at: Some(at),
            due_at: Some(at),
            priority: Priority::new(3).unwrap(),
            labels: Labels::new(labels).unwrap(),
            archived: true,
            created_at: at,
            updated_at: at,
            version: TaskVersion::new(i64::MAX).unwrap(),
            parent: Some(TaskId::from_uuid(id(4))),
            recurrence: Some(longest_rule()),
            time_zone: TimeZoneName::parse("America/Argentina/ComodRivadavia").unwrap(),
            series: Some(Series {
                id: SeriesId::from_uuid(id(5)),
                start: at,
                occurrence: u32::MAX,
            }),
            reminders: Reminders::new(reminders).unwrap(),
        }
    }

    /// A rule of as many month days as [`Recurrence::MAX_CHARS`] holds.
    fn longest_rule() -> Recurrence {
        let mut rule = "FREQ=MONTHLY;INTERVAL=1000;UNTIL=20991231T235959Z;BYMONTHDAY=".to_owned();
        let days = (1..=31).chain((1..=31).map(|d: i32| -d));
        for (n, day) in days.enumerate() {
            let item = if n == 0 {
                day.to_string()
            } else {
                format!(",{day}")
            };
            if rule.len() + item.len() > Recurrence::MAX_CHARS {
                break;
            }
            rule.push_str(&item);
        }
        assert!(rule.len() > Recurrence::MAX_CHARS - 4, "{rule}");
        Recurrence::parse(&rule).unwrap()
    }

    #[test]
    fn a_projects_weight_is_never_less_than_its_json() {
        for fill in ["\"", "\\", "\u{1D11E}", "x", "é"] {
            let text = |chars: usize| format!("a{}", fill.repeat(chars - 1));
            let at = Timestamp::parse_rfc3339("2031-12-31T23:59:59.999999Z", "t").unwrap();
            let project = Project {
                id: ProjectId::from_uuid(Uuid::from_u128(u128::MAX)),
                owner: UserId::from_uuid(Uuid::from_u128(u128::MAX - 1)),
                name: ProjectName::parse(&text(ProjectName::MAX_CHARS)).unwrap(),
                description: Description::parse(&text(Description::MAX_CHARS)).unwrap(),
                color: Some(ProjectColor::parse("#aabbcc").unwrap()),
                inbox: true,
                archived: true,
                created_at: at,
                updated_at: at,
                version: TaskVersion::new(i64::MAX).unwrap(),
            };
            let member = (project, ProjectRole::Editor);
            let wire = serde_json::to_vec(&crate::projects_api::ProjectDto::of(&member))
                .unwrap()
                .len();
            assert!(wire <= member.0.json_bytes(), "{fill:?}: {wire}");
            assert!(member.0.json_bytes() <= member.0.json_bytes_at_most());
            let change = Change {
                position: LogPosition::new(u64::MAX >> 1),
                kind: ChangeKind::ProjectUpdated,
                subject: Subject::Project {
                    id: member.0.id,
                    project: Some(member.clone()),
                },
                at,
            };
            let wire = serde_json::to_vec(&ChangeDto::of(member.0.owner, &change))
                .unwrap()
                .len();
            assert!(wire <= change.json_bytes(), "{fill:?}: a change of {wire}");
            assert!(change.json_bytes() <= change.json_bytes_at_most());
        }
    }

    #[test]
    fn a_tasks_weight_is_never_less_than_its_json() {
        // Text JSON escapes, text of four-byte characters, plain text.
        for fill in ["\n", "\"", "\\", "\t", "\u{1D11E}", "x", "é"] {
            let task = longest_task(fill);
            let wire = serde_json::to_vec(&TaskDto::from(&task)).unwrap().len();
            assert!(
                wire <= task.json_bytes(),
                "{fill:?}: {wire} bytes on the wire, weighed {}",
                task.json_bytes()
            );
            assert!(task.json_bytes() <= task.json_bytes_at_most(), "{fill:?}");
            let owner = task.created_by;
            let change = Change {
                position: LogPosition::new(u64::MAX >> 1),
                kind: ChangeKind::TaskUpdated,
                subject: Subject::Task {
                    id: task.id,
                    task: Some(task),
                },
                at: Timestamp::from_unix_micros(1).unwrap(),
            };
            let wire = serde_json::to_vec(&ChangeDto::of(owner, &change))
                .unwrap()
                .len();
            assert!(
                wire <= change.json_bytes(),
                "{fill:?}: a change of {wire} bytes on the wire, weighed {}",
                change.json_bytes()
            );
            assert!(
                change.json_bytes() <= change.json_bytes_at_most(),
                "{fill:?}"
            );
        }
    }
}
