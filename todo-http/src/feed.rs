//! A project's read-only iCalendar feed. Its owner publishes it
//! (`PUT /v1/projects/{id}/feed`: a new URL, the old one revoked), sees
//! whether it is published, and revokes it (`DELETE`); a calendar program
//! reads it with no account (`GET /v1/feeds/{token}.ics`): the project's
//! tasks that are not archived, written page by page as the export is.
//! A token that opens no feed is not found, like any other path.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{NestedPath, State};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;
use todo_core::{Error as CoreError, FeedToken, ProjectId, TaskId, Timestamp, UserId};
use utoipa::ToSchema;

use crate::blocking::call;
use crate::export::{PAGE, PageSink, streamed};
use crate::extract::{Caller, Client, Path};
use crate::front::{ApiResponse, LiveStream, json_value, no_content};
use crate::problem::ApiError;
use crate::task_api::TaskApi;

/// Feeds an instance writes at once.
pub(crate) const MAX_FEED_READS: usize = 16;
/// Reads of one feed at once (a calendar program polls; a second reader of
/// a leaked URL does not lock the owner's own out).
pub(crate) const MAX_READS_PER_FEED: usize = 2;
/// Feeds of one owner written at once (their projects' feeds together): a
/// flood of one account's URLs takes this many places, not the instance's.
pub(crate) const MAX_FEED_READS_PER_OWNER: usize = 4;
/// Feeds written at once to one client address (an IPv6 /64): readers
/// need no account, so the address is what one of them is counted by.
pub(crate) const MAX_FEED_READS_PER_CLIENT: usize = 2;
/// How long a feed may take to be written in all (a calendar is a few
/// pages; a reader slower than this loses it and its place).
const FEED_DEADLINE: Duration = Duration::from_secs(120);
/// What a refused read is told to wait.
const BUSY: Duration = Duration::from_secs(5);

/// A feed read running: its project, owner and client address.
type Reading = (ProjectId, UserId, Option<IpAddr>);

/// The feeds being read now, counted per feed, owner, client address and
/// instance.
#[derive(Debug, Default)]
pub(crate) struct FeedReads(Arc<Mutex<Vec<(u64, Reading)>>>, AtomicU64);

/// A running read's place, given back when it ends.
struct FeedTicket(Arc<Mutex<Vec<(u64, Reading)>>>, u64);

impl FeedReads {
    fn enter(
        &self,
        project: ProjectId,
        owner: UserId,
        client: Option<IpAddr>,
    ) -> Result<FeedTicket, ApiError> {
        let client = client.map(todo_core::client_key);
        let mut running = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count =
            |same: &dyn Fn(&Reading) -> bool| running.iter().filter(|(_, r)| same(r)).count();
        if running.len() >= MAX_FEED_READS
            || count(&|r| r.0 == project) >= MAX_READS_PER_FEED
            || count(&|r| r.1 == owner) >= MAX_FEED_READS_PER_OWNER
            || (client.is_some() && count(&|r| r.2 == client) >= MAX_FEED_READS_PER_CLIENT)
        {
            return Err(CoreError::RateLimited { retry_after: BUSY }.into());
        }
        let id = self.1.fetch_add(1, Ordering::Relaxed);
        running.push((id, (project, owner, client)));
        Ok(FeedTicket(Arc::clone(&self.0), id))
    }
}

impl Drop for FeedTicket {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.1);
    }
}

/// A feed's token as its URL's last segment gives it (`{token}`, with
/// `.ics` or without); text that cannot be one is not found.
#[derive(Clone)]
pub(crate) struct FeedPath(String);

impl std::fmt::Debug for FeedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedPath(…)")
    }
}

impl FeedPath {
    fn parse(raw: &str) -> Option<Self> {
        let token = raw.strip_suffix(".ics").unwrap_or(raw);
        FeedToken::parse(token).map(|t| Self(t.as_str().to_owned()))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FeedPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let params = crate::extract::path_params(parts, state).await?;
        crate::extract::path_param(&params, "token")
            .and_then(Self::parse)
            .ok_or_else(ApiError::not_found)
    }
}

/// A feed as its owner sees it.
#[derive(Serialize, ToSchema)]
#[schema(as = Feed)]
struct FeedDto {
    /// The feed's URL, relative to this origin: whoever holds it reads
    /// the project's tasks. Shown once, when it is published.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// When it was published.
    #[schema(format = DateTime)]
    published_at: String,
}

/// Publish the project's iCalendar feed under a new URL (the one it had stops working).
#[utoipa::path(post, path = "/v1/projects/{id}/feed",
    params(Path<ProjectId>),
    responses(
        (status = 201, description = "Published: its URL, shown this once (not in a Location header either: it is the feed's key)", body = FeedDto),
        (status = 403, description = "I am a member but not the owner"),
        (status = 404, description = "No such project, or I am not a member"),
    ))]
pub(crate) async fn publish_feed(
    State(api): State<Arc<TaskApi>>,
    Caller(caller): Caller,
    Path(id): Path<ProjectId>,
    mounted_at: Option<axum::Extension<NestedPath>>,
) -> Result<ApiResponse, ApiError> {
    let service = api.projects().ok_or_else(ApiError::not_found)?;
    let caller = caller.user_id;
    let (token, at) = api
        .write(caller, service, move |s| s.publish_feed(caller, id))
        .await?;
    let prefix = mounted_at.as_ref().map_or("", |nested| nested.as_str());
    let url = format!(
        "{}/v1/feeds/{}.ics",
        prefix.trim_end_matches('/'),
        token.as_str()
    );
    let mut response = json_value(
        StatusCode::CREATED,
        &FeedDto {
            url: Some(url),
            published_at: at.to_string(),
        },
    )?;
    // (the answer holds a secret)
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Whether the project's feed is published, and since when.
#[utoipa::path(get, path = "/v1/projects/{id}/feed",
    params(Path<ProjectId>),
    responses(
        (status = 200, description = "Published (its URL is not shown again)", body = FeedDto),
        (status = 403, description = "I am a member but not the owner"),
        (status = 404, description = "No such project, I am not a member, or it has no feed (or none that still opens: ended with the owner's sessions)"),
    ))]
pub(crate) async fn get_feed(
    State(api): State<Arc<TaskApi>>,
    Caller(caller): Caller,
    Path(id): Path<ProjectId>,
) -> Result<ApiResponse, ApiError> {
    let service = api.projects().ok_or_else(ApiError::not_found)?;
    let caller = caller.user_id;
    let at = call(service, move |s| s.feed(caller, id)).await?;
    let at = at.ok_or_else(ApiError::not_found)?;
    json_value(
        StatusCode::OK,
        &FeedDto {
            url: None,
            published_at: at.to_string(),
        },
    )
}

/// Revoke the project's feed: its URL answers 404 from now on.
#[utoipa::path(delete, path = "/v1/projects/{id}/feed",
    params(Path<ProjectId>),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "I am a member but not the owner"),
        (status = 404, description = "No such project, I am not a member, or it has no feed"),
    ))]
pub(crate) async fn delete_feed(
    State(api): State<Arc<TaskApi>>,
    Caller(caller): Caller,
    Path(id): Path<ProjectId>,
) -> Result<ApiResponse, ApiError> {
    let service = api.projects().ok_or_else(ApiError::not_found)?;
    let caller = caller.user_id;
    api.write(caller, service, move |s| s.revoke_feed(caller, id))
        .await?;
    Ok(no_content())
}

/// Read a project's feed (no account: the URL is the key).
#[utoipa::path(get, path = "/v1/feeds/{token}",
    params(("token" = String, Path, description = "The feed's token, as its URL gives it (with `.ics` or without)")),
    security(()),
    responses(
        (status = 200, description = "The project's tasks that are not archived, as VTODOs (written as read: a feed cut short ends without END:VCALENDAR)", content_type = "text/calendar", body = String),
        (status = 404, description = "No feed has this token (any more)"),
        (status = 429, description = "This feed, its owner's feeds, or this client address has as many reads running as it may, or the instance writes as many as it serves at once (Retry-After)"),
    ))]
pub(crate) async fn read_feed(
    State(api): State<Arc<TaskApi>>,
    Client(client): Client,
    FeedPath(token): FeedPath,
) -> Result<Response<axum::body::Body>, ApiError> {
    let service = api.projects().ok_or_else(ApiError::not_found)?;
    let (project, owner) = call(service, move |s| s.feed_project(&token)).await?;
    let ticket = api.feed_reads().enter(project, owner, client)?;
    let body = streamed("feed", FEED_DEADLINE, move |sink| async move {
        let _ticket = ticket;
        write_feed(api, project, sink).await;
    });
    let mut response = Response::new(axum::body::Body::new(body));
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(LiveStream);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    // Read again each time (a revoked feed must not live on in a cache),
    // and kept out of shared caches and search engines.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    headers.insert(
        http::HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    Ok(response)
}

/// The calendar, page after page, until the last or until the client is
/// gone, stops reading, or a read fails.
async fn write_feed(api: Arc<TaskApi>, project: ProjectId, sink: PageSink) {
    if !sink
        .send(Bytes::from(todo_core::ical::calendar_start()))
        .await
    {
        return;
    }
    let now = api.service().now();
    let mut after: Option<(Timestamp, TaskId)> = None;
    loop {
        let page = call(api.service(), move |s| s.feed_page(project, after, PAGE)).await;
        let tasks = match page {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(target: "todo::feed", project = %project, ?error, "a feed failed part way");
                return;
            }
        };
        let mut out = String::with_capacity(600 * tasks.len());
        for task in &tasks {
            todo_core::ical::write_todo(&mut out, task, now);
        }
        after = tasks.last().map(|t| (t.created_at, t.id));
        if !out.is_empty() && !sink.send(Bytes::from(out)).await {
            return;
        }
        if tasks.len() < PAGE {
            break;
        }
    }
    sink.finish(Bytes::from_static(todo_core::ical::CALENDAR_END.as_bytes()))
        .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_feeds_path_is_its_token_with_or_without_ics() {
        let token = FeedToken::generate(&todo_core::testing::SeededRandom::new(3)).unwrap();
        let plain = FeedPath::parse(token.as_str()).unwrap();
        let with_ics = FeedPath::parse(&format!("{}.ics", token.as_str())).unwrap();
        assert_eq!(plain.0, token.as_str());
        assert_eq!(with_ics.0, token.as_str());
        assert!(FeedPath::parse("nothing.ics").is_none());
        assert!(FeedPath::parse(&format!("{}.ics.ics", token.as_str())).is_none());
    }

    #[test]
    fn reads_are_counted_by_feed_owner_address_and_instance() {
        let project = |n: u128| ProjectId::from_uuid(uuid::Uuid::from_u128(n));
        let owner = |n: u128| UserId::from_uuid(uuid::Uuid::from_u128(1000 + n));
        let ip = |n: u8| Some(IpAddr::from([10, 0, 0, n]));
        let reads = FeedReads::default();
        let a = reads.enter(project(1), owner(1), ip(1)).unwrap();
        let b = reads.enter(project(1), owner(1), ip(2)).unwrap();
        assert!(
            reads.enter(project(1), owner(1), ip(3)).is_err(),
            "a third of one feed"
        );
        let c = reads.enter(project(2), owner(1), ip(3)).unwrap();
        let d = reads.enter(project(3), owner(1), ip(4)).unwrap();
        assert!(
            reads.enter(project(4), owner(1), ip(5)).is_err(),
            "a fifth of one owner"
        );
        let e = reads.enter(project(5), owner(2), ip(1)).unwrap();
        assert!(
            reads.enter(project(6), owner(3), ip(1)).is_err(),
            "a third of one address"
        );
        let others: Vec<_> = (7..7 + MAX_FEED_READS as u128 - 5)
            .map(|n| {
                reads
                    .enter(project(n), owner(n), ip(100 + n as u8))
                    .unwrap()
            })
            .collect();
        assert!(
            reads.enter(project(99), owner(99), ip(99)).is_err(),
            "past the instance's"
        );
        drop(a);
        assert!(reads.enter(project(1), owner(1), ip(9)).is_ok());
        drop((b, c, d, e, others));
    }
}
