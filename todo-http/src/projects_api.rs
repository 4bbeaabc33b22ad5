//! `/v1/projects`: projects and their members (task-server). Who may do
//! what is the core's one rule ([`todo_core::Standing`], applied by
//! [`ProjectService`]); here are only the wire forms.

use std::sync::Arc;

use axum::extract::{NestedPath, RawQuery, State};
use http::StatusCode;
use http::header::{ETAG, HeaderValue, LOCATION};
use serde::{Deserialize, Serialize};
use todo_core::{
    Description, Error as CoreError, Member, NewProject, Page, PageLimit, Project, ProjectColor,
    ProjectCursor, ProjectId, ProjectName, ProjectPatch, ProjectRole, ProjectService, Scope,
    Username,
};
use utoipa::ToSchema;

use crate::blocking::{blocking, call};
use crate::extract::{
    Caller, Conditional, JsonBytes, Path, PathId, ProjectsRead, ProjectsWrite, Scoped,
};
use crate::front::{ApiResponse, json_value, no_content};
use crate::problem::ApiError;
use crate::request::query_int;
use crate::task_api::{Errors, TaskApi, etag, null};

type Tasks = State<Arc<TaskApi>>;

/// The projects of this deployment, or 404 where none are configured (an
/// embedding that gave the API no [`ProjectService`]).
fn projects(api: &TaskApi) -> Result<&ProjectService, ApiError> {
    api.projects().ok_or_else(ApiError::not_found)
}

/// A new project on the wire.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectCreate)]
struct CreateBody {
    /// 1 to 100 characters, not blank.
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// `#rrggbb`.
    #[serde(default)]
    color: Option<String>,
}

/// A JSON merge patch: `null` clears `description` and `color`; `name` and
/// `archived` cannot be null.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectPatch)]
struct PatchBody {
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(nullable = false)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    color: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(nullable = false)]
    archived: Option<Option<bool>>,
}

/// A project on the wire, with the caller's role in it.
#[derive(Serialize, ToSchema)]
#[schema(as = Project)]
pub(crate) struct ProjectDto {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    description: String,
    color: Option<String>,
    /// The owner's Inbox: never shared or deleted.
    inbox: bool,
    archived: bool,
    /// `owner`, `editor` or `viewer`.
    role: &'static str,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    version: i64,
}

impl ProjectDto {
    pub(crate) fn of((project, role): &(Project, ProjectRole)) -> Self {
        Self {
            id: project.id.to_string(),
            name: project.name.as_str().to_owned(),
            description: project.description.as_str().to_owned(),
            color: project.color.map(|c| c.as_str().to_owned()),
            inbox: project.inbox,
            archived: project.archived,
            role: role.as_str(),
            created_at: project.created_at.to_string(),
            updated_at: project.updated_at.to_string(),
            version: project.version.get(),
        }
    }
}

/// A page of projects.
#[derive(Serialize, ToSchema)]
struct ProjectPage {
    items: Vec<ProjectDto>,
    next_cursor: Option<String>,
}

/// A member on the wire.
#[derive(Serialize, ToSchema)]
#[schema(as = ProjectMember)]
pub(crate) struct MemberDto {
    username: String,
    /// `owner`, `editor` or `viewer`.
    role: &'static str,
    #[schema(format = DateTime)]
    added_at: String,
}

impl MemberDto {
    pub(crate) fn of(member: &Member, username: &Username) -> Self {
        Self {
            username: username.as_str().to_owned(),
            role: member.role.as_str(),
            added_at: member.added_at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct MemberList {
    items: Vec<MemberDto>,
}

/// A member's role on the wire.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectMemberPut)]
struct RoleBody {
    /// `editor` or `viewer`.
    role: String,
}

fn new_project(body: CreateBody) -> Result<NewProject, ApiError> {
    let mut errors = Errors::default();
    let name = errors.take(ProjectName::parse(&body.name));
    let description = errors.take(
        body.description
            .as_deref()
            .map_or(Ok(Description::default()), Description::parse),
    );
    let color = errors.take(body.color.as_deref().map(ProjectColor::parse).transpose());
    let new = match (name, description, color) {
        (Some(name), Some(description), Some(color)) => Some(NewProject {
            name,
            description,
            color,
        }),
        _ => None,
    };
    errors.finish(new)
}

fn project_patch(body: PatchBody) -> Result<ProjectPatch, ApiError> {
    let mut errors = Errors::default();
    let mut patch = ProjectPatch::default();
    if let Some(name) = body.name {
        patch.name = errors.take(
            name.ok_or(null("name"))
                .and_then(|n| ProjectName::parse(&n)),
        );
    }
    if let Some(description) = body.description {
        patch.description =
            errors.take(description.map_or(Ok(Description::default()), |d| Description::parse(&d)));
    }
    if let Some(color) = body.color {
        patch.color = errors.take(color.as_deref().map(ProjectColor::parse).transpose());
    }
    if let Some(archived) = body.archived {
        patch.archived = errors.take(archived.ok_or(null("archived")));
    }
    errors.finish(Some(patch))
}

/// A project as the body of `status`, with its version as the `ETag`.
fn project_response(
    status: StatusCode,
    found: &(Project, ProjectRole),
) -> Result<ApiResponse, ApiError> {
    let mut response = json_value(status, &ProjectDto::of(found))?;
    response.headers_mut().insert(ETAG, etag(found.0.version));
    Ok(response)
}

/// Create a project (its creator its owner).
#[utoipa::path(post, path = "/v1/projects", request_body = CreateBody,
    responses(
        (status = 201, description = "The project", body = ProjectDto,
            headers(("Location" = String), ("ETag" = String, description = "\"v<version>\""))),
        (status = 403, description = "The user's project quota is used up (urn:todo:problem:quota-exceeded)"),
    ))]
pub(crate) async fn create_project(
    State(api): Tasks,
    caller: Scoped<ProjectsWrite>,
    mounted_at: Option<axum::Extension<NestedPath>>,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    // (a token limited to one project makes no other)
    if caller.project().is_some() {
        return Err(ApiError::limited_to_project());
    }
    let new = new_project(crate::request::decode_json(&body)?)?;
    let owner = caller.0.user_id;
    let made = api
        .write(owner, service, move |s| s.create(owner, new))
        .await?;
    let mut response = project_response(StatusCode::CREATED, &made)?;
    let prefix = mounted_at.as_ref().map_or("", |nested| nested.as_str());
    let location = format!("{}/v1/projects/{}", prefix.trim_end_matches('/'), made.0.id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List the projects I own or am a member of (keyset pages, oldest first).
#[utoipa::path(get, path = "/v1/projects",
    params(
        ("limit" = Option<i64>, Query, description = "page size (a page of large projects holds fewer, about 2 MiB of them: follow next_cursor)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, description = "A page of projects, each with my role", body = ProjectPage)))]
pub(crate) async fn list_projects(
    State(api): Tasks,
    caller: Scoped<ProjectsRead>,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    let invalid = |e| ApiError::validation(vec![e]);
    let mut limit = PageLimit::default();
    let mut cursor = None;
    for (name, value) in crate::request::query_pairs(query.as_deref(), &["limit", "cursor"])? {
        if name == "limit" {
            limit = PageLimit::new(query_int("limit", &value)?).map_err(invalid)?;
        } else {
            cursor = Some(ProjectCursor::parse(&value).map_err(invalid)?);
        }
    }
    let (limited, caller) = (caller.project(), caller.0.user_id);
    let page = match limited {
        // A token limited to one project sees that one, on one page.
        Some(only) => {
            let found = call(service, move |s| match s.get(caller, only) {
                Err(CoreError::NotFound) => Ok(None),
                found => found.map(Some),
            })
            .await?;
            Page {
                items: found.into_iter().filter(|_| cursor.is_none()).collect(),
                next_cursor: None,
            }
        }
        None => {
            // A list slot, and the page built under it, as for tasks: a
            // hundred projects of long descriptions are megabytes
            // (session 30's review, M2).
            let slot = api.list_slots().take(caller).await?;
            let service = service.clone();
            return blocking(move || {
                let _slot = slot;
                page_response(&service.list(caller, limit, cursor)?)
            })
            .await;
        }
    };
    page_response(&page)
}

fn page_response(
    page: &Page<(Project, ProjectRole), ProjectCursor>,
) -> Result<ApiResponse, ApiError> {
    let items = page.items.iter().map(ProjectDto::of).collect();
    let next_cursor = page.next_cursor.map(|c| c.to_string());
    json_value(StatusCode::OK, &ProjectPage { items, next_cursor })
}

/// Get a project.
#[utoipa::path(get, path = "/v1/projects/{id}",
    params(Path<ProjectId>),
    responses(
        (status = 200, description = "The project, with my role", body = ProjectDto,
            headers(("ETag" = String, description = "\"v<version>\""))),
        (status = 404, description = "No such project, or I am not a member"),
    ))]
pub(crate) async fn get_project(
    State(api): Tasks,
    caller: Scoped<ProjectsRead>,
    Path(id): Path<ProjectId>,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    let caller = caller.within(id).map(|_| caller.0.user_id)?;
    let found = call(service, move |s| s.get(caller, id)).await?;
    project_response(StatusCode::OK, &found)
}

/// Change a project (JSON merge patch; editors and the owner).
#[utoipa::path(patch, path = "/v1/projects/{id}",
    params(Conditional<ProjectId>),
    request_body(content(
        (PatchBody = "application/json"),
        (PatchBody = "application/merge-patch+json"),
    )),
    responses(
        (status = 200, description = "The project", body = ProjectDto,
            headers(("ETag" = String, description = "\"v<version>\""))),
        (status = 403, description = "I am a viewer"),
        (status = 404, description = "No such project, or I am not a member"),
        (status = 409, description = "An Inbox keeps its name and is never archived"),
    ))]
pub(crate) async fn update_project(
    State(api): Tasks,
    caller: Scoped<ProjectsWrite>,
    Conditional(id, condition): Conditional<ProjectId>,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    let patch = project_patch(crate::request::decode_json(&body)?)?;
    let caller = caller.within(id).map(|_| caller.0.user_id)?;
    let changed = api
        .write(caller, service, move |s| {
            s.update(caller, id, patch, condition)
        })
        .await?;
    project_response(StatusCode::OK, &changed)
}

/// Delete a project and everything in it (the owner only).
#[utoipa::path(delete, path = "/v1/projects/{id}",
    params(Conditional<ProjectId>),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "I am not its owner"),
        (status = 404, description = "No such project, or I am not a member"),
        (status = 409, description = "An Inbox is never deleted"),
    ))]
pub(crate) async fn delete_project(
    State(api): Tasks,
    caller: Scoped<ProjectsWrite>,
    Conditional(id, condition): Conditional<ProjectId>,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    // (its tasks go with it: not without the right to delete them)
    if !caller.0.grant.allows(Scope::TasksWrite) {
        return Err(ApiError::insufficient_scope(Some(Scope::TasksWrite)));
    }
    let caller = caller.within(id).map(|_| caller.0.user_id)?;
    api.write(caller, service, move |s| s.delete(caller, id, condition))
        .await?;
    Ok(no_content())
}

/// A project's members.
#[utoipa::path(get, path = "/v1/projects/{id}/members",
    params(Path<ProjectId>),
    responses(
        (status = 200, description = "The members, the owner first", body = MemberList),
        (status = 404, description = "No such project, or I am not a member"),
    ))]
pub(crate) async fn list_members(
    State(api): Tasks,
    caller: Scoped<ProjectsRead>,
    Path(id): Path<ProjectId>,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    crate::request::query_pairs(query.as_deref(), &[])?;
    let service = projects(&api)?;
    let caller = caller.within(id).map(|_| caller.0.user_id)?;
    let members = call(service, move |s| s.members(caller, id)).await?;
    let items = members
        .iter()
        .map(|(member, name)| MemberDto::of(member, name))
        .collect();
    json_value(StatusCode::OK, &MemberList { items })
}

/// The path's project `{id}` and member `{username}`; text that cannot be
/// either is not found.
pub(crate) struct MemberPath(ProjectId, Username);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let params = crate::extract::path_params(parts, state).await?;
        let named = |wanted: &str| crate::extract::path_param(&params, wanted);
        let id = named("id").and_then(ProjectId::parse_id);
        let username = named("username").and_then(|raw| Username::parse(raw).ok());
        match (id, username) {
            (Some(id), Some(username)) => Ok(Self(id, username)),
            _ => Err(ApiError::not_found()),
        }
    }
}

/// Share a project, or change a member's role (the owner only).
#[utoipa::path(put, path = "/v1/projects/{id}/members/{username}",
    params(
        ("id" = String, Path, format = Uuid),
        ("username" = String, Path),
    ),
    request_body = RoleBody,
    responses(
        (status = 200, description = "The member", body = MemberDto),
        (status = 400, description = "A role other than editor or viewer"),
        (status = 403, description = "I am not the owner; or the project's members are at their limit (urn:todo:problem:quota-exceeded)"),
        (status = 404, description = "No such project or user, or I am not a member"),
        (status = 409, description = "The owner's role never changes; an Inbox is never shared"),
    ))]
pub(crate) async fn put_member(
    State(api): Tasks,
    Caller(caller): Caller,
    MemberPath(id, username): MemberPath,
    JsonBytes(body, _held): JsonBytes,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    let body: RoleBody = crate::request::decode_json(&body)?;
    let role =
        ProjectRole::parse_grantable(&body.role).map_err(|e| ApiError::validation(vec![e]))?;
    let caller = caller.user_id;
    let (member, name) = api
        .write(caller, service, move |s| {
            s.set_member(caller, id, &username, role)
        })
        .await?;
    json_value(StatusCode::OK, &MemberDto::of(&member, &name))
}

/// Remove a member: the owner removes anyone else, a member may leave.
#[utoipa::path(delete, path = "/v1/projects/{id}/members/{username}",
    params(
        ("id" = String, Path, format = Uuid),
        ("username" = String, Path),
    ),
    responses(
        (status = 204, description = "Removed: they lose the project at once"),
        (status = 403, description = "Neither the owner nor the member leaving"),
        (status = 404, description = "No such project or member, or I am not a member"),
        (status = 409, description = "The owner cannot be removed"),
    ))]
pub(crate) async fn delete_member(
    State(api): Tasks,
    Caller(caller): Caller,
    MemberPath(id, username): MemberPath,
) -> Result<ApiResponse, ApiError> {
    let service = projects(&api)?;
    let caller = caller.user_id;
    api.write(caller, service, move |s| {
        s.remove_member(caller, id, &username)
    })
    .await?;
    Ok(no_content())
}
