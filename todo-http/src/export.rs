//! `GET /v1/export`: everything the caller owns (the projects they own and
//! every task in them, their Inbox's included), as JSON or as iCalendar
//! (VTODO, with RRULE). Written page by page as the client reads it: the
//! response holds at most a page and the channel's few in memory, whatever
//! the account keeps, and a client that stops reading stops the reads.
//! One export a user at a time, a few an instance, and each within a
//! deadline: a client that stops reading gives its place back.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use bytes::Bytes;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body, Frame};
use todo_core::{Error as CoreError, PageLimit, ProjectRole, TaskId, UserId};
use tokio::sync::mpsc;

use crate::api_tokens_api::ApiTokenDto;
use crate::auth_api::{SessionDto, UserDto};
use crate::blocking::call;
use crate::extract::Caller;
use crate::front::LiveStream;
use crate::problem::ApiError;
use crate::projects_api::ProjectDto;
use crate::task_api::{TaskApi, TaskDto};
use crate::webhooks_api::WebhookDto;

/// Tasks read and written at a time: 25 of the largest are 1 MB of text,
/// and an export holds `AHEAD + 1` pages (at 100, about 14 MiB an export,
/// 16 exports at once more than a container could spare: session 29's
/// attack, F3).
pub(crate) const PAGE: usize = 25;
/// Pages written ahead of the client's reading.
pub(crate) const AHEAD: usize = 2;
/// Exports an instance serves at once (each holds at most `AHEAD + 1`
/// pages in memory).
pub(crate) const MAX_EXPORTS: usize = 16;
/// How long a page may wait for the client to take it: a client that
/// stops reading loses its export (and gives its place back).
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// How long an export may take in all, however steadily it is read.
const EXPORT_DEADLINE: Duration = Duration::from_secs(600);
/// What a refused export is told to wait.
const BUSY: Duration = Duration::from_secs(5);

const EXPORT_PARAMS: &[&str] = &["format"];

/// Work running now, by user: one each, a few in all (exports, imports).
#[derive(Debug)]
pub(crate) struct OneAUser {
    running: Arc<Mutex<HashSet<UserId>>>,
    most: usize,
}

/// A running work's place, given back when it ends (however it ends).
pub(crate) struct UserPlace(Arc<Mutex<HashSet<UserId>>>, UserId);

impl OneAUser {
    /// One a user, `most` in all.
    pub(crate) fn new(most: usize) -> Self {
        Self {
            running: Arc::default(),
            most,
        }
    }

    /// `user`'s place, or 429 if they hold one or all are taken.
    pub(crate) fn enter(&self, user: UserId) -> Result<UserPlace, ApiError> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if running.len() >= self.most || !running.insert(user) {
            return Err(CoreError::RateLimited { retry_after: BUSY }.into());
        }
        Ok(UserPlace(Arc::clone(&self.running), user))
    }
}

impl Drop for UserPlace {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.1);
    }
}

/// The exports running now: one a user, [`MAX_EXPORTS`] in all.
pub(crate) fn exports() -> OneAUser {
    OneAUser::new(MAX_EXPORTS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Calendar,
}

/// Everything I own, to keep or to take elsewhere.
#[utoipa::path(get, path = "/v1/export",
    params(
        ("format" = Option<String>, Query, description = "`json` (the default): `{format, exported_at, projects, tasks}`, each as the API shows it; `ics`: an iCalendar of VTODOs"),
    ),
    responses(
        (status = 200, description = "The projects I own and every task in them (written as it is read: an export cut short ends without its closing bracket or END:VCALENDAR); with format=ics, text/calendar", content_type = "application/json", body = Object),
        (status = 429, description = "An export of mine is running, or the instance runs as many as it serves at once (Retry-After)"),
    ))]
pub(crate) async fn export(
    State(api): State<Arc<TaskApi>>,
    Caller(caller): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response<axum::body::Body>, ApiError> {
    let mut format = Format::Json;
    for (name, value) in crate::request::query_pairs(query.as_deref(), EXPORT_PARAMS)? {
        match (name.as_str(), value.as_str()) {
            ("format", "json") => format = Format::Json,
            ("format", "ics") => format = Format::Calendar,
            (name, _) => return Err(ApiError::field(name, "json or ics")),
        }
    }
    let owner = caller.user_id;
    let ticket = api.exports().enter(owner)?;
    let head = head(&api, format)?;
    // JSON: the projects the caller owns, then their tasks.
    let sections: &'static [Section] = match format {
        Format::Json => &[Section {
            projects: Owned::Owned,
            then: b"],\"tasks\":[",
        }],
        Format::Calendar => &[],
    };
    let body = streamed("export", EXPORT_DEADLINE, move |sink| async move {
        let _ticket = ticket;
        pump(api, owner, format, head, sections, sink).await;
    });
    let mut response = Response::new(axum::body::Body::new(body));
    *response.status_mut() = StatusCode::OK;
    // Passed on as it is made, not gathered first (as a live stream is).
    response.extensions_mut().insert(LiveStream);
    let (kind, file) = match format {
        Format::Json => (
            "application/json",
            "attachment; filename=\"todo-export.json\"",
        ),
        Format::Calendar => (
            "text/calendar; charset=utf-8",
            "attachment; filename=\"todo-export.ics\"",
        ),
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CONTENT_DISPOSITION, HeaderValue::from_static(file));
    Ok(response)
}

/// What the export starts with: for JSON, up to its first project.
fn head(api: &Arc<TaskApi>, format: Format) -> Result<Vec<u8>, ApiError> {
    if format == Format::Calendar {
        return Ok(todo_core::ical::calendar_start().into_bytes());
    }
    let mut head = Vec::with_capacity(128);
    head.extend_from_slice(b"{\"format\":\"todo.export/1\",\"exported_at\":");
    json_into(&mut head, &api.service().now().to_string())?;
    head.extend_from_slice(b",\"projects\":[");
    Ok(head)
}

/// Which of the caller's projects a section of an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owned {
    /// Those they own.
    Owned,
    /// The others they are a member of (with their role in each).
    Others,
}

/// A JSON array of projects written before the tasks, page by page as
/// they are read (a user may own a thousand projects of long
/// descriptions: read whole, 40 MB an export; session 30's review, M3),
/// and what follows its last.
struct Section {
    projects: Owned,
    then: &'static [u8],
}

fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), ApiError> {
    serde_json::to_writer(out, value).map_err(|e| ApiError::internal(e.to_string()))
}

/// Everything my account holds, to keep or to take elsewhere, as JSON:
/// the account (sessions, API tokens, webhooks, the projects of others I
/// am a member of), then the projects I own and every task in them. No
/// secret and no hash.
#[utoipa::path(get, path = "/v1/users/me/export",
    responses(
        (status = 200, description = "`{format: \"todo.account-export/1\", exported_at, account: {user, sessions, api_tokens, webhooks, memberships}, projects, tasks}`, each as the API shows it (written as it is read: an export cut short ends without its closing brackets)", content_type = "application/json", body = Object),
        (status = 403, description = "An API token: only a sign-in exports the account"),
        (status = 429, description = "An export of mine is running, or the instance runs as many as it serves at once (Retry-After)"),
    ))]
pub(crate) async fn account_export(
    State(api): State<Arc<TaskApi>>,
    Caller(caller): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response<axum::body::Body>, ApiError> {
    // (JSON only: a `format` or anything else is refused, not ignored)
    crate::request::query_pairs(query.as_deref(), &[])?;
    let Some(accounts) = api.accounts().cloned() else {
        return Err(CoreError::NotFound.into());
    };
    let owner = caller.user_id;
    let ticket = api.exports().enter(owner)?;
    let principal = caller.clone();
    let account = call(&accounts, move |r| r.read(&principal)).await?;
    let webhooks = match api.webhooks() {
        Some(service) => call(service, move |s| s.list(owner)).await?,
        None => Vec::new(),
    };
    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(b"{\"format\":\"todo.account-export/1\",\"exported_at\":");
    json_into(&mut head, &api.service().now().to_string())?;
    head.extend_from_slice(b",\"account\":{\"user\":");
    json_into(&mut head, &UserDto::from(&account.user))?;
    head.extend_from_slice(b",\"sessions\":");
    let sessions: Vec<SessionDto> = account
        .sessions
        .iter()
        .map(|s| SessionDto::of(s, &caller))
        .collect();
    json_into(&mut head, &sessions)?;
    head.extend_from_slice(b",\"api_tokens\":");
    let tokens: Vec<ApiTokenDto> = account.api_tokens.iter().map(ApiTokenDto::of).collect();
    json_into(&mut head, &tokens)?;
    head.extend_from_slice(b",\"webhooks\":");
    // (never a webhook's signing key)
    let hooks: Vec<WebhookDto> = webhooks.iter().map(|w| WebhookDto::of(w, false)).collect();
    json_into(&mut head, &hooks)?;
    head.extend_from_slice(b",\"memberships\":[");
    // The projects of others they are a member of, then those they own,
    // then the tasks.
    const SECTIONS: &[Section] = &[
        Section {
            projects: Owned::Others,
            then: b"]},\"projects\":[",
        },
        Section {
            projects: Owned::Owned,
            then: b"],\"tasks\":[",
        },
    ];
    let body = streamed("account export", EXPORT_DEADLINE, move |sink| async move {
        let _ticket = ticket;
        pump(api, owner, Format::Json, head, SECTIONS, sink).await;
    });
    let mut response = Response::new(axum::body::Body::new(body));
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(LiveStream);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"todo-account.json\""),
    );
    Ok(response)
}

/// Where a response written page by page goes: each page waits at most
/// [`PAGE_WAIT`] for the client to take it (a client that stops reading
/// ends the response), and the last is marked as such.
pub(crate) struct PageSink {
    pages: mpsc::Sender<Bytes>,
    whole: Arc<AtomicBool>,
}

impl PageSink {
    /// Hands `bytes` to the response; `false` once the client is gone or
    /// has not taken a page in time (the writer should stop).
    pub(crate) async fn send(&self, bytes: Bytes) -> bool {
        matches!(
            tokio::time::timeout(PAGE_WAIT, self.pages.send(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Hands the last page over: the response ends whole, if the client
    /// took it.
    pub(crate) async fn finish(self, tail: Bytes) {
        if self.send(tail).await {
            // (before the channel closes, as this returns: the body reads
            // the end only then, and must know by then that it is whole)
            self.whole.store(true, Ordering::Release);
        }
    }
}

/// A body written by `write` as the client reads it, within `deadline`:
/// ended by anything but [`PageSink::finish`], it ends in an error, which
/// cuts the connection short.
pub(crate) fn streamed<F, W>(what: &'static str, deadline: Duration, write: W) -> Pages
where
    W: FnOnce(PageSink) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (pages, body) = mpsc::channel(AHEAD);
    let whole = Arc::new(AtomicBool::new(false));
    let sink = PageSink {
        pages,
        whole: Arc::clone(&whole),
    };
    tokio::spawn(async move {
        if tokio::time::timeout(deadline, write(sink)).await.is_err() {
            tracing::warn!(target: "todo::http", what, "a paged answer ran past its deadline");
        }
    });
    Pages { pages: body, whole }
}

/// Reads the sections' projects, then the tasks, page after page, and
/// hands each to the response, until the last, or until the client is gone
/// or stops reading, or a read fails.
async fn pump(
    api: Arc<TaskApi>,
    owner: UserId,
    format: Format,
    head: Vec<u8>,
    sections: &'static [Section],
    sink: PageSink,
) {
    if !sink.send(Bytes::from(head)).await {
        return;
    }
    for section in sections {
        if !write_projects(&api, owner, section, &sink).await {
            return;
        }
    }
    let now = api.service().now();
    let mut after: Option<TaskId> = None;
    let mut first = true;
    loop {
        let page = call(api.service(), move |s| s.export_page(owner, after, PAGE)).await;
        let tasks = match page {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(target: "todo::export", user = %owner, ?error, "an export failed part way");
                return;
            }
        };
        let mut out = Vec::with_capacity(600 * tasks.len());
        for task in &tasks {
            match format {
                Format::Json => {
                    if !first {
                        out.push(b',');
                    }
                    if serde_json::to_writer(&mut out, &TaskDto::from(task)).is_err() {
                        return;
                    }
                }
                Format::Calendar => {
                    let mut todo = String::new();
                    todo_core::ical::write_todo(&mut todo, task, now);
                    out.extend_from_slice(todo.as_bytes());
                }
            }
            first = false;
        }
        after = tasks.last().map(|t| t.id);
        if !out.is_empty() && !sink.send(Bytes::from(out)).await {
            return;
        }
        if tasks.len() < PAGE {
            break;
        }
    }
    let tail: &'static [u8] = match format {
        Format::Json => b"]}",
        Format::Calendar => todo_core::ical::CALENDAR_END.as_bytes(),
    };
    sink.finish(Bytes::from_static(tail)).await;
}

/// Writes a section's projects page by page (each a page of the caller's
/// projects, cut at `todo_core::PAGE_BYTES`), then what follows them;
/// false when the export must end.
async fn write_projects(
    api: &Arc<TaskApi>,
    owner: UserId,
    section: &Section,
    sink: &PageSink,
) -> bool {
    let mut first = true;
    if let Some(service) = api.projects() {
        let mut cursor = None;
        loop {
            // (pages of `PAGE`, as the tasks': the pump holds a few)
            let limit = PageLimit::clamped(PAGE);
            let page = call(service, move |s| s.list(owner, limit, cursor)).await;
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(target: "todo::export", user = %owner, ?error, "an export failed part way");
                    return false;
                }
            };
            let mut out = Vec::new();
            for member in &page.items {
                let owned = member.1 == ProjectRole::Owner;
                if owned != (section.projects == Owned::Owned) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                if json_into(&mut out, &ProjectDto::of(member)).is_err() {
                    return false;
                }
            }
            if !out.is_empty() && !sink.send(Bytes::from(out)).await {
                return false;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    sink.send(Bytes::from_static(section.then)).await
}

/// The response's body: the pages the pump wrote, as the connection takes
/// them. Ended by anything but the whole export (a failed read, a client
/// too slow, the deadline), it ends in an error, which cuts the connection
/// short: a cut export never looks whole.
pub(crate) struct Pages {
    pages: mpsc::Receiver<Bytes>,
    /// Set once the last page is handed over.
    whole: Arc<AtomicBool>,
}

impl Body for Pages {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.pages.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(None) if self.whole.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => {
                Poll::Ready(Some(Err(io::Error::other("the export was cut short"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// The pages sent, then the end: whole only if the pump said so.
    async fn read(whole: bool) -> Result<Bytes, io::Error> {
        use http_body_util::BodyExt as _;
        let (pages, body) = mpsc::channel(AHEAD);
        pages
            .send(Bytes::from_static(b"{\"tasks\":["))
            .await
            .unwrap();
        drop(pages);
        let body = Pages {
            pages: body,
            whole: Arc::new(AtomicBool::new(whole)),
        };
        body.collect()
            .await
            .map(http_body_util::Collected::to_bytes)
    }

    #[tokio::test]
    async fn an_export_cut_short_ends_in_an_error() {
        assert!(read(false).await.is_err(), "cut: an error, not an end");
        assert_eq!(&read(true).await.unwrap()[..], b"{\"tasks\":[");
    }

    #[test]
    fn one_export_a_user_and_a_few_an_instance() {
        let exports = exports();
        let first = exports.enter(user(1)).unwrap();
        assert!(exports.enter(user(1)).is_err(), "a second of the same user");
        let others: Vec<_> = (2..=u128::try_from(MAX_EXPORTS).unwrap())
            .map(|n| exports.enter(user(n)).unwrap())
            .collect();
        assert!(exports.enter(user(99)).is_err(), "past the instance's cap");
        drop(first);
        let again = exports.enter(user(1));
        assert!(again.is_ok(), "a place given back is taken again");
        drop(others);
    }
}
