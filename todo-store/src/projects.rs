//! Projects and their members. The owner is a member row too (role
//! `owner`), so a caller's standing in a project, and the project with it,
//! is one indexed join; a project the caller is not a member of is not
//! found. Writes that count before they insert (the owner's projects, a
//! project's members) take a row lock first on PostgreSQL (SQLite has one
//! writer), so the count holds until the insert.

use diesel::prelude::*;
use todo_core::{
    ChangeKind, Description, FeedTokenHash, Member, MemberPut, Project, ProjectColor, ProjectId,
    ProjectName, ProjectRole, ProjectStore, Standing, StoreError, TaskVersion, Timestamp, UserId,
    Username,
};

use crate::SqlStore;
use crate::changes::{self, Audience, Beyond};
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{project_feeds, project_members, projects, users};
use crate::tasks::native;

/// A project's row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = projects)]
struct ProjectRow {
    id: String,
    owner_id: String,
    name: String,
    description: String,
    color: Option<String>,
    inbox: i16,
    archived: i16,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

impl ProjectRow {
    fn of(project: &Project) -> Self {
        Self {
            id: project.id.to_string(),
            owner_id: project.owner.to_string(),
            name: project.name.as_str().to_owned(),
            description: project.description.as_str().to_owned(),
            color: project.color.map(|c| c.as_str().to_owned()),
            inbox: i16::from(project.inbox),
            archived: i16::from(project.archived),
            created_at: project.created_at.unix_micros(),
            updated_at: project.updated_at.unix_micros(),
            version: project.version.get(),
        }
    }

    fn into_project(self) -> Result<Project, StoreError> {
        let bad = |_| corrupt("project");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(Project {
            id: ProjectId::parse(&self.id).map_err(bad)?,
            owner: UserId::parse(&self.owner_id).map_err(bad)?,
            name: ProjectName::parse(&self.name).map_err(bad)?,
            description: Description::parse(&self.description).map_err(bad)?,
            color: self
                .color
                .as_deref()
                .map(ProjectColor::parse)
                .transpose()
                .map_err(bad)?,
            inbox: self.inbox != 0,
            archived: self.archived != 0,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            version: TaskVersion::new(self.version).map_err(bad)?,
        })
    }
}

/// What a change of a project writes: its writable fields only (never its
/// id, owner, Inbox flag or creation time).
#[derive(AsChangeset)]
#[diesel(table_name = projects, treat_none_as_null = true)]
struct ProjectChange<'a> {
    name: &'a str,
    description: &'a str,
    color: Option<&'a str>,
    archived: i16,
    updated_at: i64,
    version: i64,
}

/// A member's row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = project_members)]
struct MemberRow {
    project_id: String,
    user_id: String,
    role: String,
    added_at: i64,
}

impl MemberRow {
    fn of(project: ProjectId, member: &Member) -> Self {
        Self {
            project_id: project.to_string(),
            user_id: member.user.to_string(),
            role: member.role.as_str().to_owned(),
            added_at: member.added_at.unix_micros(),
        }
    }

    fn into_member(self) -> Result<Member, StoreError> {
        Ok(Member {
            user: UserId::parse(&self.user_id).map_err(|_| corrupt("project member"))?,
            role: role(&self.role)?,
            added_at: Timestamp::from_unix_micros(self.added_at)
                .map_err(|_| corrupt("project member"))?,
        })
    }
}

fn role(stored: &str) -> Result<ProjectRole, StoreError> {
    ProjectRole::parse_stored(stored).ok_or_else(|| corrupt("project member"))
}

/// Inserts `project` with its owner as its one member and records its
/// making (an Inbox's: nothing) as the project's first change.
pub(crate) fn insert_project(conn: &mut AnyConnection, project: &Project) -> QueryResult<()> {
    diesel::insert_into(projects::table)
        .values(ProjectRow::of(project))
        .execute(conn)?;
    diesel::insert_into(project_members::table)
        .values(owner_row(project))
        .execute(conn)?;
    // (An Inbox is made with its account, and announced by nothing.)
    if !project.inbox {
        record_project_change(
            conn,
            ChangeKind::ProjectCreated,
            project.id,
            Some(project),
            project.created_at,
        )?;
    }
    Ok(())
}

/// The projects `owner` owns, counted (their Inbox among them).
pub(crate) fn owned_projects(conn: &mut AnyConnection, owner: &str) -> QueryResult<i64> {
    projects::table
        .filter(projects::owner_id.eq(owner))
        .count()
        .get_result(conn)
}

/// The owner's member row of a project just made.
/// A project's owner as its member: they see all of its changes (their
/// view starts at 0; a member's is set where they were added, and one left
/// unset, NULL, sees nothing).
fn owner_row(project: &Project) -> OwnerRow {
    OwnerRow {
        member: MemberRow::of(
            project.id,
            &Member {
                user: project.owner,
                role: ProjectRole::Owner,
                added_at: project.created_at,
            },
        ),
        joined_seq: Some(0),
    }
}

#[derive(Insertable)]
#[diesel(table_name = project_members)]
struct OwnerRow {
    #[diesel(embed)]
    member: MemberRow,
    joined_seq: Option<i64>,
}

/// What a member's put did, inside its transaction.
enum Put {
    NoProject,
    Owner,
    Full,
    UserFull,
    Added,
    /// Changed; the member's `added_at` as stored.
    Changed(i64),
}

/// Takes the project's row for the rest of the transaction (PostgreSQL),
/// as [`crate::users::lock_user_for_count`] does a user's. Every project and
/// member write takes it first: its members are counted, changed and told
/// under it, and task writers of a shared project wait for it (`FOR SHARE`,
/// `tasks.rs`), so a member added or removed meanwhile gets each write or
/// none of it.
fn lock_project(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        projects::table
            .filter(projects::id.eq(id))
            .select(projects::id)
            .for_no_key_update()
            .execute(pg)?;
    }
    Ok(())
}

/// Makes `owner`'s Inbox on `conn` unless it is there (inside the caller's
/// transaction); whether it did.
pub(crate) fn ensure_inbox_on(conn: &mut AnyConnection, inbox: &Project) -> QueryResult<bool> {
    let row = ProjectRow::of(inbox);
    let made = native!(conn, |c| diesel::insert_into(projects::table)
        .values(&row)
        .on_conflict_do_nothing()
        .execute(c))?;
    if made == 1 {
        diesel::insert_into(project_members::table)
            .values(owner_row(inbox))
            .execute(conn)?;
    }
    Ok(made == 1)
}

/// A stored value that does not parse, inside a transaction (rolled back;
/// reported as what it was).
fn stored_wrong(what: &'static str) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}

/// The project's members, in id order (the order their own marks are
/// taken in, when their `project.deleted` trims them), each with their
/// role.
fn members_in_order(conn: &mut AnyConnection, id: &str) -> QueryResult<Vec<(String, String)>> {
    project_members::table
        .filter(project_members::project_id.eq(id))
        .order(project_members::user_id.asc())
        .select((project_members::user_id, project_members::role))
        .load(conn)
}

/// Tells the others of a user's deletion (before it, in its transaction):
/// each project the user owns is deleted (a `project.deleted` addressed
/// to every member), each of their memberships in others' projects ends
/// (`member.removed`, the membership's row gone first so that the removed
/// member's own copy is recorded as for any removal).
pub(crate) fn tell_of_leaving(
    conn: &mut AnyConnection,
    user: &str,
    at: Timestamp,
) -> QueryResult<()> {
    let theirs: Vec<(String, String, i64, String, i16)> = project_members::table
        .inner_join(projects::table)
        .filter(project_members::user_id.eq(user))
        .filter(projects::inbox.eq(0))
        .order(project_members::project_id)
        .select((
            project_members::project_id,
            project_members::role,
            project_members::added_at,
            projects::owner_id,
            projects::inbox,
        ))
        .load(conn)?;
    for (project, role, added_at, owner, _) in theirs {
        let id = ProjectId::parse(&project).map_err(|_| stored_wrong("a stored project id"))?;
        if owner == user {
            record_project_change(conn, ChangeKind::ProjectDeleted, id, None, at)?;
            continue;
        }
        let member = Member {
            user: UserId::parse(user).map_err(|_| stored_wrong("a stored user id"))?,
            role: ProjectRole::parse_stored(&role).ok_or_else(|| stored_wrong("a stored role"))?,
            added_at: Timestamp::from_unix_micros(added_at)
                .map_err(|_| stored_wrong("a stored time"))?,
        };
        diesel::delete(project_members::table.find((&project, user))).execute(conn)?;
        record_member_change(conn, ChangeKind::MemberRemoved, id, &member, at)?;
    }
    Ok(())
}

/// Records a change of `project` as a change of the project (`None`:
/// deleted, a tombstone for each member, whose membership goes with it).
fn record_project_change(
    conn: &mut AnyConnection,
    kind: ChangeKind,
    id: ProjectId,
    project: Option<&Project>,
    at: Timestamp,
) -> QueryResult<()> {
    let project_id = id.to_string();
    match project {
        Some(project) => {
            let what = Beyond::Project(project);
            changes::record_beyond(
                conn,
                kind,
                Audience::Project(&project_id),
                &what,
                at.unix_micros(),
            )?;
        }
        None => {
            for (member, _) in members_in_order(conn, &project_id)? {
                let what = Beyond::ProjectGone(id);
                changes::record_beyond(
                    conn,
                    kind,
                    Audience::User(&member),
                    &what,
                    at.unix_micros(),
                )?;
            }
        }
    }
    Ok(())
}

/// Records a change of `member` as a change of the project, and for a
/// removal in the member's own changes too (a removed member no longer
/// sees the project's). Returns the project change's position.
fn record_member_change(
    conn: &mut AnyConnection,
    kind: ChangeKind,
    id: ProjectId,
    member: &Member,
    at: Timestamp,
) -> QueryResult<i64> {
    let user_id = member.user.to_string();
    let name: String = users::table
        .find(&user_id)
        .select(users::username)
        .first(conn)?;
    let username = Username::parse(&name).map_err(|_| stored_wrong("a stored username"))?;
    let what = Beyond::Member(id, member, &username);
    let project_id = id.to_string();
    let at = at.unix_micros();
    let position = changes::record_beyond(conn, kind, Audience::Project(&project_id), &what, at)?;
    if kind == ChangeKind::MemberRemoved {
        changes::record_beyond(conn, kind, Audience::User(&user_id), &what, at)?;
    }
    Ok(position)
}

impl ProjectStore for SqlStore {
    fn insert_project_within(
        &self,
        project: &Project,
        max: Option<u64>,
    ) -> Result<bool, StoreError> {
        let row = ProjectRow::of(project);
        let max = max.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                crate::users::lock_user_for_count(conn, &row.owner_id)?;
                if let Some(max) = max
                    && owned_projects(conn, &row.owner_id)? >= max
                {
                    return Ok(false);
                }
                insert_project(conn, project)?;
                Ok(true)
            })
        })
    }

    fn ensure_inbox(&self, inbox: &Project) -> Result<bool, StoreError> {
        self.with_write_conn(|conn| conn.transaction(|conn| ensure_inbox_on(conn, inbox)))
    }

    fn put_feed(
        &self,
        project: ProjectId,
        hash: &FeedTokenHash,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let row = (
            project_feeds::project_id.eq(project.to_string()),
            project_feeds::token_hash.eq(hash.as_str()),
            project_feeds::created_at.eq(at.unix_micros()),
        );
        self.with_write_conn(|conn| {
            let upsert = diesel::insert_into(project_feeds::table)
                .values(row)
                .on_conflict(project_feeds::project_id)
                .do_update()
                .set((
                    project_feeds::token_hash.eq(hash.as_str()),
                    project_feeds::created_at.eq(at.unix_micros()),
                ));
            native!(conn, |c| upsert.execute(c)).map(|_| ())
        })
    }

    fn delete_feed(&self, project: ProjectId) -> Result<bool, StoreError> {
        let project = project.to_string();
        let deleted = self.with_write_conn(|conn| {
            diesel::delete(project_feeds::table.filter(project_feeds::project_id.eq(&project)))
                .execute(conn)
        })?;
        Ok(deleted > 0)
    }

    fn find_feed(&self, project: ProjectId) -> Result<Option<Timestamp>, StoreError> {
        let project = project.to_string();
        let found: Option<(i64, i16, Option<i64>)> = self.with_conn(|conn| {
            project_feeds::table
                .inner_join(projects::table.on(projects::id.eq(project_feeds::project_id)))
                .inner_join(users::table.on(users::id.eq(projects::owner_id)))
                .filter(project_feeds::project_id.eq(&project))
                .select((
                    project_feeds::created_at,
                    users::disabled,
                    users::tokens_revoked_before,
                ))
                .first(conn)
                .optional()
        })?;
        // A feed its owner's account no longer stands by is no feed.
        found
            .filter(|&(published, disabled, revoked_before)| {
                feed_stands(published, disabled, revoked_before)
            })
            .map(|(at, _, _)| Timestamp::from_unix_micros(at).map_err(|_| corrupt("feed")))
            .transpose()
    }

    fn feed_project(
        &self,
        hash: &FeedTokenHash,
    ) -> Result<Option<(ProjectId, UserId)>, StoreError> {
        type Found = (String, String, i16, Option<i64>, i64);
        let found: Option<Found> = self.with_conn(|conn| {
            project_feeds::table
                .inner_join(projects::table.on(projects::id.eq(project_feeds::project_id)))
                .inner_join(users::table.on(users::id.eq(projects::owner_id)))
                .filter(project_feeds::token_hash.eq(hash.as_str()))
                .select((
                    project_feeds::project_id,
                    projects::owner_id,
                    users::disabled,
                    users::tokens_revoked_before,
                    project_feeds::created_at,
                ))
                .first(conn)
                .optional()
        })?;
        let Some((project, owner, disabled, revoked_before, published)) = found else {
            return Ok(None);
        };
        if !feed_stands(published, disabled, revoked_before) {
            return Ok(None);
        }
        let project = ProjectId::parse(&project).map_err(|_| corrupt("feed"))?;
        let owner = UserId::parse(&owner).map_err(|_| corrupt("feed"))?;
        Ok(Some((project, owner)))
    }

    fn find_project(
        &self,
        caller: UserId,
        id: ProjectId,
    ) -> Result<Option<(Project, ProjectRole)>, StoreError> {
        let (caller, id) = (caller.to_string(), id.to_string());
        let found: Option<(ProjectRow, String)> = self.with_conn(|conn| {
            projects::table
                .inner_join(project_members::table)
                .filter(projects::id.eq(&id))
                .filter(project_members::user_id.eq(&caller))
                .select((ProjectRow::as_select(), project_members::role))
                .first(conn)
                .optional()
        })?;
        found
            .map(|(row, stored)| Ok((row.into_project()?, role(&stored)?)))
            .transpose()
    }

    fn list_projects(
        &self,
        caller: UserId,
        after: Option<ProjectId>,
        limit: usize,
    ) -> Result<Vec<(Project, ProjectRole)>, StoreError> {
        let caller = caller.to_string();
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(ProjectRow, String)> = self.with_conn(|conn| {
            project_members::table
                .inner_join(projects::table)
                .filter(project_members::user_id.eq(&caller))
                .filter(project_members::project_id.gt(&after))
                .order(project_members::project_id.asc())
                .limit(limit)
                .select((ProjectRow::as_select(), project_members::role))
                .load(conn)
        })?;
        rows.into_iter()
            .map(|(row, stored)| Ok((row.into_project()?, role(&stored)?)))
            .collect()
    }

    fn modify_project(
        &self,
        editor: UserId,
        id: ProjectId,
        change: &mut dyn FnMut(&Project, ProjectRole) -> Option<Project>,
    ) -> Result<Option<(Project, ProjectRole)>, StoreError> {
        let (project_id, editor) = (id.to_string(), editor.to_string());
        // (a row that does not parse is corrupt, not a query failure)
        let mut corrupt_row = None;
        let written = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // The row first, held to the commit: concurrent changes
                // wait and then read this one's result (none is lost, none
                // refused), and member changes, which take it too, come
                // before or after, so the role read next and the members
                // the change is recorded for are those of the commit.
                lock_project(conn, &project_id)?;
                let found: Option<(ProjectRow, String)> = projects::table
                    .inner_join(project_members::table)
                    .filter(projects::id.eq(&project_id))
                    .filter(project_members::user_id.eq(&editor))
                    .select((ProjectRow::as_select(), project_members::role))
                    .first(conn)
                    .optional()?;
                let Some((row, stored)) = found else {
                    return Ok(None);
                };
                let (current, role) = match (row.into_project(), role(&stored)) {
                    (Ok(current), Ok(role)) => (current, role),
                    (Err(e), _) | (_, Err(e)) => {
                        corrupt_row = Some(e);
                        return Ok(None);
                    }
                };
                let Some(project) = change(&current, role) else {
                    return Ok(None);
                };
                diesel::update(projects::table.filter(projects::id.eq(&project_id)))
                    .set(&ProjectChange {
                        name: project.name.as_str(),
                        description: project.description.as_str(),
                        color: project.color.as_ref().map(ProjectColor::as_str),
                        archived: i16::from(project.archived),
                        updated_at: project.updated_at.unix_micros(),
                        version: project.version.get(),
                    })
                    .execute(conn)?;
                let written = Project {
                    name: project.name,
                    description: project.description,
                    color: project.color,
                    archived: project.archived,
                    updated_at: project.updated_at,
                    version: project.version,
                    ..current
                };
                record_project_change(
                    conn,
                    ChangeKind::ProjectUpdated,
                    id,
                    Some(&written),
                    written.updated_at,
                )?;
                Ok(Some((written, role)))
            })
        })?;
        match corrupt_row {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }

    fn delete_project(
        &self,
        owner: UserId,
        id: ProjectId,
        expected: Option<TaskVersion>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let project_id = id;
        let (id, owner) = (id.to_string(), owner.to_string());
        let mut raced = false;
        let deleted = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // The project's row first, as every project and member
                // write takes it, before the members and the log.
                lock_project(conn, &id)?;
                let doomed = projects::table
                    .filter(projects::id.eq(&id))
                    .filter(projects::owner_id.eq(&owner))
                    .filter(projects::inbox.eq(0));
                let current: Option<i64> =
                    doomed.select(projects::version).first(conn).optional()?;
                match (current, expected) {
                    (None, _) => return Ok(false),
                    (Some(version), Some(expected)) if version != expected.get() => {
                        return Ok(false);
                    }
                    _ => {}
                }
                crate::tasks::delete_project_tasks(conn, &id, &owner)?;
                record_project_change(conn, ChangeKind::ProjectDeleted, project_id, None, at)?;
                // (its changes go with it; the numbering passes over
                // the rows this holds meanwhile)
                let gone = match expected {
                    Some(version) => {
                        diesel::delete(doomed.filter(projects::version.eq(version.get())))
                            .execute(conn)
                    }
                    None => diesel::delete(doomed).execute(conn),
                }?;
                if gone != 1 {
                    // (changed meanwhile: nothing of the deletion stays)
                    raced = true;
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                Ok(true)
            })
        });
        if raced {
            return Ok(false);
        }
        deleted
    }

    fn members(&self, id: ProjectId) -> Result<Vec<(Member, Username)>, StoreError> {
        let id = id.to_string();
        // One join: a member deleted meanwhile is left out.
        let rows: Vec<(MemberRow, String)> = self.with_conn(|conn| {
            project_members::table
                .inner_join(users::table)
                .filter(project_members::project_id.eq(&id))
                .select((MemberRow::as_select(), users::username))
                .load(conn)
        })?;
        let mut members = rows
            .into_iter()
            .map(|(row, name)| {
                let name = Username::parse(&name).map_err(|_| corrupt("user"))?;
                Ok((row.into_member()?, name))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        members.sort_by_key(|(m, _)| m.listing_key());
        Ok(members)
    }

    fn standing(&self, user: UserId, id: ProjectId) -> Result<Standing, StoreError> {
        let (user, id) = (user.to_string(), id.to_string());
        let stored: Option<String> = self.with_conn(|conn| {
            project_members::table
                .find((&id, &user))
                .select(project_members::role)
                .first(conn)
                .optional()
        })?;
        Ok(match stored {
            Some(stored) => Standing::Member(role(&stored)?),
            None => Standing::Stranger,
        })
    }

    fn put_member(
        &self,
        id: ProjectId,
        member: &Member,
        max: usize,
        max_memberships: usize,
        at: Timestamp,
    ) -> Result<MemberPut, StoreError> {
        if member.role == ProjectRole::Owner {
            return Ok(MemberPut::Owner);
        }
        let row = MemberRow::of(id, member);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let max_memberships = i64::try_from(max_memberships).unwrap_or(i64::MAX);
        let put = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // The project's row, then the member's (user deletion takes
                // the user's, then only that user's own projects': no cycle).
                lock_project(conn, &row.project_id)?;
                let exists: i64 = projects::table
                    .filter(projects::id.eq(&row.project_id))
                    .filter(projects::inbox.eq(0))
                    .count()
                    .get_result(conn)?;
                if exists == 0 {
                    return Ok(Put::NoProject);
                }
                let key = (&row.project_id, &row.user_id);
                let stored: Option<MemberRow> = project_members::table
                    .find(key)
                    .select(MemberRow::as_select())
                    .first(conn)
                    .optional()?;
                if let Some(stored) = stored {
                    if stored.role == ProjectRole::Owner.as_str() {
                        return Ok(Put::Owner);
                    }
                    if stored.role == row.role {
                        // Nothing changes, and nobody is told of nothing.
                        return Ok(Put::Changed(stored.added_at));
                    }
                    diesel::update(project_members::table.find(key))
                        .set(project_members::role.eq(&row.role))
                        .execute(conn)?;
                    let changed = Member {
                        added_at: Timestamp::from_unix_micros(stored.added_at)
                            .map_err(|_| stored_wrong("a member's stored time"))?,
                        ..member.clone()
                    };
                    record_member_change(conn, ChangeKind::MemberAdded, id, &changed, at)?;
                    return Ok(Put::Changed(stored.added_at));
                }
                let count: i64 = project_members::table
                    .filter(project_members::project_id.eq(&row.project_id))
                    .count()
                    .get_result(conn)?;
                if count >= max {
                    return Ok(Put::Full);
                }
                crate::users::lock_user_for_count(conn, &row.user_id)?;
                let memberships: i64 = project_members::table
                    .filter(project_members::user_id.eq(&row.user_id))
                    .count()
                    .get_result(conn)?;
                if memberships >= max_memberships {
                    return Ok(Put::UserFull);
                }
                diesel::insert_into(project_members::table)
                    .values(&row)
                    .execute(conn)?;
                // Their view of the project starts with their addition.
                let joined = record_member_change(conn, ChangeKind::MemberAdded, id, member, at)?;
                changes::set_joined(conn, &row.project_id, &row.user_id, joined)?;
                Ok(Put::Added)
            })
        })?;
        Ok(match put {
            Put::NoProject => MemberPut::NoProject,
            Put::Owner => MemberPut::Owner,
            Put::Full => MemberPut::Full,
            Put::UserFull => MemberPut::UserFull,
            Put::Added => MemberPut::Added(member.clone()),
            Put::Changed(added_at) => MemberPut::Changed(Member {
                added_at: Timestamp::from_unix_micros(added_at)
                    .map_err(|_| corrupt("project member"))?,
                ..member.clone()
            }),
        })
    }

    fn remove_member(
        &self,
        id: ProjectId,
        user: UserId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let project_id = id;
        let (id, user) = (id.to_string(), user.to_string());
        let removed = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                lock_project(conn, &id)?;
                let gone: Option<MemberRow> = native!(conn, |c| diesel::delete(
                    project_members::table
                        .find((&id, &user))
                        .filter(project_members::role.ne(ProjectRole::Owner.as_str())),
                )
                .returning(MemberRow::as_returning())
                .get_result(c)
                .optional())?;
                let Some(gone) = gone else {
                    return Ok(false);
                };
                let member = gone
                    .into_member()
                    .map_err(|_| stored_wrong("a stored member"))?;
                record_member_change(conn, ChangeKind::MemberRemoved, project_id, &member, at)?;
                Ok(true)
            })
        })?;
        Ok(removed)
    }
}

/// Whether a feed published at `published` still opens: its owner's
/// account is not disabled and has had no revocation of its tokens since.
fn feed_stands(published: i64, disabled: i16, revoked_before: Option<i64>) -> bool {
    disabled == 0 && revoked_before.is_none_or(|cut| cut <= published)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use diesel::connection::SimpleConnection as _;
    use diesel::migration::MigrationSource;
    use diesel_migrations::MigrationHarness as _;

    use super::*;
    use crate::db::SQLITE_MIGRATIONS;

    /// Users made before projects existed get their Inbox from the
    /// migration that brings projects, with themselves as its owner.
    #[test]
    fn the_migration_gives_every_existing_user_an_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = todo_sqlite_process::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        let names: Vec<String> =
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect();
        let before = names.iter().position(|n| n.ends_with("_projects")).unwrap();
        for _ in 0..before {
            conn.run_next_migration(SQLITE_MIGRATIONS).unwrap();
        }
        conn.batch_execute(
            "INSERT INTO users (id, username, email, role, disabled, password_hash, \
             tokens_revoked_before, created_at, updated_at) VALUES \
             ('0190a5b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b', 'alice', NULL, 'user', 0, 'x', NULL, 7, 8)",
        )
        .unwrap();
        conn.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        let inbox: ProjectRow = projects::table
            .select(ProjectRow::as_select())
            .first(&mut conn)
            .unwrap();
        let alice = UserId::parse("0190a5b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b").unwrap();
        let expected = Project::inbox(alice, Timestamp::from_unix_micros(7).unwrap());
        assert_eq!(inbox.into_project().unwrap(), expected);
        let owner: Vec<MemberRow> = project_members::table
            .select(MemberRow::as_select())
            .load(&mut conn)
            .unwrap();
        assert_eq!(owner.len(), 1);
        let owner = owner.into_iter().next().unwrap();
        assert_eq!(owner.project_id, expected.id.to_string());
        assert_eq!(owner.into_member().unwrap().role, ProjectRole::Owner);
    }
}
