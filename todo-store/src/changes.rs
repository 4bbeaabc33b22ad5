//! The change log's tables (migration `…_change_log`): every task write in
//! `tasks.rs` records its change here, inside its own transaction, in the
//! stream of each member of the task's project (`Reach`), streams taken in
//! member-id order.
//!
//! An owner's changes are numbered from `change_streams.last_seq`, bumped
//! by an upsert. On PostgreSQL the upsert locks the owner's stream row
//! until the write commits, so the owner's writers take numbers one after
//! another, each after the previous one committed: a reader can never see
//! number `n + 1` before `n` (a sequence would hand out numbers that commit
//! out of order, and a reader following "the largest seen" would skip the
//! late one). On SQLite every write already holds the database's one write
//! lock. Taken last in each write, the lock is held only from the append
//! to the commit; a creation under the quota takes it first, as the
//! quota's check (`take_seq_within`: the stream counts its owner's tasks).

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text};
use todo_core::{
    Change, ChangeKind, ChangeLog, Description, Member, Project, ProjectColor, ProjectId,
    ProjectName, ProjectRole, StoreError, Subject, TRIM_EVERY, TaskId, TaskVersion, Timestamp,
    UserId, Username, trim_through,
};

use crate::SqlStore;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{change_streams, changes};
use crate::tasks::{StoredTask, TaskRow, native};

/// A change as written: the task's columns as the write left them, or
/// none for a deletion. (`None` is written as NULL, not as the column's
/// default: one statement for every change, which diesel caches.)
#[derive(Insertable)]
#[diesel(table_name = changes, treat_none_as_default_value = false)]
struct ChangeRow<'a> {
    owner_id: &'a str,
    seq: i64,
    kind: &'static str,
    task_id: &'a str,
    recorded_at: i64,
    title: Option<&'a str>,
    description: Option<&'a str>,
    done: Option<i16>,
    completed_at: Option<i64>,
    due_at: Option<i64>,
    priority: Option<i16>,
    labels: Option<&'a str>,
    archived: Option<i16>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    version: Option<i64>,
    project_id: Option<&'a str>,
    created_by: Option<&'a str>,
    parent_id: Option<&'a str>,
    recurrence: Option<&'a str>,
    time_zone: Option<&'a str>,
    series_id: Option<&'a str>,
    series_start: Option<i64>,
    occurrence: Option<i64>,
    reminders: Option<&'a str>,
    color: Option<&'a str>,
    inbox: Option<i16>,
    role: Option<&'a str>,
    member_id: Option<&'a str>,
    username: Option<&'a str>,
}

impl<'a> ChangeRow<'a> {
    /// A task's deletion: its id, and none of its columns (and the row
    /// every other change without a task starts from).
    fn tombstone(owner_id: &'a str, seq: i64, task_id: &'a str, at: i64) -> Self {
        Self {
            owner_id,
            seq,
            kind: ChangeKind::TaskDeleted.as_str(),
            task_id,
            recorded_at: at,
            title: None,
            description: None,
            done: None,
            completed_at: None,
            due_at: None,
            priority: None,
            labels: None,
            archived: None,
            created_at: None,
            updated_at: None,
            version: None,
            project_id: None,
            created_by: None,
            parent_id: None,
            recurrence: None,
            time_zone: None,
            series_id: None,
            series_start: None,
            occurrence: None,
            reminders: None,
            color: None,
            inbox: None,
            role: None,
            member_id: None,
            username: None,
        }
    }
}

/// A change as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = changes)]
struct StoredChange {
    owner_id: String,
    seq: i64,
    kind: String,
    task_id: String,
    recorded_at: i64,
    title: Option<String>,
    description: Option<String>,
    done: Option<i16>,
    completed_at: Option<i64>,
    due_at: Option<i64>,
    priority: Option<i16>,
    labels: Option<String>,
    archived: Option<i16>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    version: Option<i64>,
    project_id: Option<String>,
    created_by: Option<String>,
    parent_id: Option<String>,
    recurrence: Option<String>,
    time_zone: Option<String>,
    series_id: Option<String>,
    series_start: Option<i64>,
    occurrence: Option<i64>,
    reminders: Option<String>,
    color: Option<String>,
    inbox: Option<i16>,
    role: Option<String>,
    member_id: Option<String>,
    username: Option<String>,
}

/// Records a write of the task `task_id` in the stream of `owner_id` (a
/// member of the task's project): `task` is the row as the write left it,
/// `None` when it deleted it. Runs inside the write's transaction, after
/// its other statements but the commit (see the module's note on the
/// lock). In the stream of the project's owner (`counts`), a creation
/// counts the task in the stream's `task_count`, a deletion out.
pub(crate) fn record(
    conn: &mut AnyConnection,
    kind: ChangeKind,
    owner_id: &str,
    counts: bool,
    task_id: &str,
    task: Option<&TaskRow>,
    at: i64,
) -> QueryResult<()> {
    let delta: i64 = match kind {
        _ if !counts => 0,
        ChangeKind::TaskCreated => 1,
        ChangeKind::TaskDeleted => -1,
        _ => 0,
    };
    let seq = take_seq(conn, owner_id, delta)?;
    append(conn, seq, kind, owner_id, task_id, task, at)
}

/// Records the deletion of each task of `ids` in `owner_id`'s stream, in
/// that order (in the stream of the project's owner, `counts`: counted
/// out of their tasks): the stream's numbers taken in one step, the
/// changes written a few hundred a statement. Inside the write's
/// transaction, after its other statements, as [`record`].
pub(crate) fn record_deletions(
    conn: &mut AnyConnection,
    owner_id: &str,
    counts: bool,
    ids: &[String],
    at: i64,
) -> QueryResult<()> {
    let Ok(step) = i64::try_from(ids.len()) else {
        return Err(diesel::result::Error::RollbackTransaction);
    };
    if step == 0 {
        return Ok(());
    }
    let bump = BumpStream {
        owner_id,
        step,
        delta: if counts { -step } else { 0 },
        below: i64::MAX,
    };
    let last: i64 = native!(&mut *conn, |c| bump.get_result(c))?;
    let first = last - step + 1;
    let rows: Vec<ChangeRow<'_>> = ids
        .iter()
        .zip(first..)
        .map(|(id, seq)| ChangeRow::tombstone(owner_id, seq, id, at))
        .collect();
    // (30 columns a row: within both databases' bound on parameters)
    for chunk in rows.chunks(200) {
        let insert = diesel::insert_into(changes::table).values(chunk);
        native!(&mut *conn, |c| insert.execute(c))?;
    }
    // A trim point within the numbers taken trims as its own write would.
    let every = i64::try_from(TRIM_EVERY).unwrap_or(i64::MAX);
    let point = last - last.rem_euclid(every);
    if point >= first
        && let Some(through) = u64::try_from(point).ok().and_then(trim_through)
    {
        trim(conn, owner_id, i64::try_from(through).unwrap_or(0))?;
    }
    Ok(())
}

/// Takes the next number of `owner_id`'s stream, adding `delta` to the
/// tasks it counts; the caller then [`append`]s its change under it.
pub(crate) fn take_seq(conn: &mut AnyConnection, owner_id: &str, delta: i64) -> QueryResult<i64> {
    let bump = BumpStream {
        owner_id,
        step: 1,
        delta,
        below: i64::MAX,
    };
    native!(&mut *conn, |c| bump.get_result(c))
}

/// Takes the owner's next number for a task about to be created, counting
/// it in, only while the stream counts fewer than `max` tasks: `None` when
/// the owner is at the quota. This is the quota's check (no `COUNT` of the
/// owner's tasks per creation), atomic as the number is: the stream's row
/// is locked (PostgreSQL) or the database is (SQLite) until the commit.
/// The caller then inserts the task and [`append`]s its change.
///
/// A count that drifted (tasks written by an older version during a
/// rolling upgrade, which counted nothing) is repaired where it would
/// refuse: at the quota by the count, the tasks are counted, once.
pub(crate) fn take_seq_within(
    conn: &mut AnyConnection,
    owner_id: &str,
    max: i64,
) -> QueryResult<Option<i64>> {
    if max <= 0 {
        return Ok(None);
    }
    if let Some(seq) = bump_within(conn, owner_id, max)? {
        return Ok(Some(seq));
    }
    let count = crate::schema::tasks::table
        .filter(crate::schema::tasks::owner_id.eq(owner_id))
        .count();
    let owned: i64 = native!(&mut *conn, |c| count.get_result(c))?;
    if owned >= max {
        return Ok(None);
    }
    let repair = diesel::update(change_streams::table.find(owner_id))
        .set(change_streams::task_count.eq(owned));
    native!(&mut *conn, |c| repair.execute(c))?;
    bump_within(conn, owner_id, max)
}

/// The stream's next number, counting one more task, if it counts fewer
/// than `max`.
fn bump_within(conn: &mut AnyConnection, owner_id: &str, max: i64) -> QueryResult<Option<i64>> {
    let bump = BumpStream {
        owner_id,
        step: 1,
        delta: 1,
        below: max,
    };
    native!(&mut *conn, |c| bump.get_result(c).optional())
}

/// Takes the next `step` numbers of `owner_id`'s stream (creating it at `step`),
/// and adds `delta` to its task count, if the count is below `below`:
/// `RETURNING` the last number, or no row when the count is not below.
///
/// Written out rather than in diesel's form for its statement cache: diesel
/// never caches an upsert (its `DO UPDATE` may turn out empty), so the
/// upsert was parsed and planned again on every write, 8% of a creation's
/// time on SQLite (perf over the load harness's creations). With a static
/// query id this statement is prepared once per connection; a unit test
/// (`tasks::statement_cache`) holds every statement of a task's creation
/// to that. Its SQL text must therefore never depend on the values bound:
/// one text per query id, whatever `delta` and `below` are.
///
/// `below` is checked on conflict only: a stream's first write creates it
/// with a count of at most 1, and `take_seq_within` refuses a `max` of 0 or
/// less before it gets here. `record` passes `i64::MAX` (no limit), so
/// every write shares the one statement.
#[derive(Debug, Clone, Copy)]
struct BumpStream<'a> {
    owner_id: &'a str,
    /// How many numbers to take (1 but for a subtree's deletions).
    step: i64,
    delta: i64,
    below: i64,
}

impl QueryId for BumpStream<'_> {
    type QueryId = BumpStream<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for BumpStream<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("INSERT INTO change_streams (owner_id, last_seq, task_count) VALUES (");
        out.push_bind_param::<Text, str>(self.owner_id)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, i64>(&self.step)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, i64>(if self.delta > 0 { &self.delta } else { &0 })?;
        out.push_sql(
            ") ON CONFLICT (owner_id) DO UPDATE SET last_seq = change_streams.last_seq + ",
        );
        out.push_bind_param::<BigInt, i64>(&self.step)?;
        out.push_sql(", task_count = change_streams.task_count + ");
        out.push_bind_param::<BigInt, i64>(&self.delta)?;
        out.push_sql(" WHERE change_streams.task_count < ");
        out.push_bind_param::<BigInt, i64>(&self.below)?;
        out.push_sql(" RETURNING last_seq");
        Ok(())
    }
}

impl Query for BumpStream<'_> {
    type SqlType = BigInt;
}

impl<Conn> RunQueryDsl<Conn> for BumpStream<'_> {}

/// Appends the change numbered `seq` (taken by the write, which holds the
/// stream's row) to the owner's stream, and trims the stream when `seq`
/// is one that trims.
pub(crate) fn append(
    conn: &mut AnyConnection,
    seq: i64,
    kind: ChangeKind,
    owner_id: &str,
    task_id: &str,
    task: Option<&TaskRow>,
    at: i64,
) -> QueryResult<()> {
    let row = ChangeRow {
        owner_id,
        seq,
        kind: kind.as_str(),
        task_id,
        recorded_at: at,
        title: task.map(|t| t.title.as_str()),
        description: task.map(|t| t.description.as_str()),
        done: task.map(|t| t.done),
        completed_at: task.and_then(|t| t.completed_at),
        due_at: task.and_then(|t| t.due_at),
        priority: task.map(|t| t.priority),
        labels: task.map(|t| t.labels.as_str()),
        archived: task.map(|t| t.archived),
        created_at: task.map(|t| t.created_at),
        updated_at: task.map(|t| t.updated_at),
        version: task.map(|t| t.version),
        project_id: task.map(|t| t.project_id.as_str()),
        created_by: task.map(|t| t.created_by.as_str()),
        parent_id: task.and_then(|t| t.parent_id.as_deref()),
        recurrence: task.and_then(|t| t.recurrence.as_deref()),
        time_zone: task.map(|t| t.time_zone.as_str()),
        series_id: task.and_then(|t| t.series_id.as_deref()),
        series_start: task.and_then(|t| t.series_start),
        occurrence: task.and_then(|t| t.occurrence),
        reminders: task.map(|t| t.reminders.as_str()),
        color: None,
        inbox: None,
        role: None,
        member_id: None,
        username: None,
    };
    insert_and_trim(conn, &row, seq)
}

fn insert_and_trim(conn: &mut AnyConnection, row: &ChangeRow<'_>, seq: i64) -> QueryResult<()> {
    let insert = diesel::insert_into(changes::table).values(row);
    native!(&mut *conn, |c| insert.execute(c))?;
    if let Some(through) = u64::try_from(seq).ok().and_then(trim_through) {
        trim(conn, row.owner_id, i64::try_from(through).unwrap_or(0))?;
    }
    Ok(())
}

/// What a change of a project or of its members records.
pub(crate) enum Beyond<'a> {
    /// The project as the write left it, with the stream owner's role.
    Project(&'a Project, ProjectRole),
    /// The project was deleted.
    ProjectGone(ProjectId),
    /// The member as the write left them (a removal: as they were).
    Member(ProjectId, &'a Member, &'a Username),
}

/// Records a change of a project or of its members in `owner_id`'s stream:
/// as [`record`] does a task's, inside the write's transaction, after its
/// other statements.
pub(crate) fn record_beyond(
    conn: &mut AnyConnection,
    kind: ChangeKind,
    owner_id: &str,
    what: &Beyond<'_>,
    at: i64,
) -> QueryResult<()> {
    let seq = take_seq(conn, owner_id, 0)?;
    let (project_id, owner, member_id) = match what {
        Beyond::Project(project, _) => (project.id, Some(project.owner.to_string()), None),
        Beyond::ProjectGone(id) => (*id, None, None),
        Beyond::Member(project, member, _) => (*project, None, Some(member.user.to_string())),
    };
    let project_id = project_id.to_string();
    let project = match what {
        Beyond::Project(project, _) => Some(*project),
        Beyond::ProjectGone(_) | Beyond::Member(..) => None,
    };
    // (the task columns a project has, its own, and none of the rest)
    let row = ChangeRow {
        kind: kind.as_str(),
        title: project.map(|p| p.name.as_str()),
        description: project.map(|p| p.description.as_str()),
        archived: project.map(|p| i16::from(p.archived)),
        created_at: match what {
            Beyond::Project(project, _) => Some(project.created_at.unix_micros()),
            Beyond::Member(_, member, _) => Some(member.added_at.unix_micros()),
            Beyond::ProjectGone(_) => None,
        },
        updated_at: project.map(|p| p.updated_at.unix_micros()),
        version: project.map(|p| p.version.get()),
        project_id: Some(&project_id),
        created_by: owner.as_deref(),
        color: project.and_then(|p| p.color.as_ref().map(ProjectColor::as_str)),
        inbox: project.map(|p| i16::from(p.inbox)),
        role: match what {
            Beyond::Project(_, role) => Some(role.as_str()),
            Beyond::Member(_, member, _) => Some(member.role.as_str()),
            Beyond::ProjectGone(_) => None,
        },
        member_id: member_id.as_deref(),
        username: match what {
            Beyond::Member(_, _, username) => Some(username.as_str()),
            Beyond::Project(..) | Beyond::ProjectGone(_) => None,
        },
        ..ChangeRow::tombstone(owner_id, seq, &project_id, at)
    };
    insert_and_trim(conn, &row, seq)
}

/// Drops the owner's changes through `through` (the stream's cap,
/// `todo_core::MAX_CHANGES_PER_OWNER`), and says so in `pruned_through`.
/// Runs in the write that crossed the cap, which holds the stream's row.
fn trim(conn: &mut AnyConnection, owner_id: &str, through: i64) -> QueryResult<()> {
    let stream = change_streams::table
        .filter(change_streams::owner_id.eq(owner_id))
        .filter(change_streams::pruned_through.lt(through));
    let mark = diesel::update(stream).set(change_streams::pruned_through.eq(through));
    native!(&mut *conn, |c| mark.execute(c))?;
    let old = changes::table
        .filter(changes::owner_id.eq(owner_id))
        .filter(changes::seq.le(through));
    native!(&mut *conn, |c| diesel::delete(old).execute(c)).map(|_| ())
}

impl StoredChange {
    fn into_change(self) -> Result<Change, StoreError> {
        let bad = |_| corrupt("change");
        let kind = ChangeKind::parse(&self.kind).ok_or_else(|| corrupt("change"))?;
        let seq = u64::try_from(self.seq).map_err(|_| corrupt("change"))?;
        let at = Timestamp::from_unix_micros(self.recorded_at).map_err(bad)?;
        let subject = match kind {
            ChangeKind::TaskCreated
            | ChangeKind::TaskUpdated
            | ChangeKind::TaskDeleted
            | ChangeKind::ReminderDue => self.into_task_subject(kind)?,
            ChangeKind::ProjectCreated
            | ChangeKind::ProjectUpdated
            | ChangeKind::ProjectDeleted
            | ChangeKind::MemberAdded
            | ChangeKind::MemberRemoved => self.into_beyond_subject(kind)?,
        };
        Ok(Change {
            seq,
            kind,
            subject,
            at,
        })
    }

    fn into_beyond_subject(self, kind: ChangeKind) -> Result<Subject, StoreError> {
        let bad = |_| corrupt("change");
        let missing = || corrupt("change");
        let time = |micros: Option<i64>| {
            micros
                .ok_or_else(missing)
                .and_then(|m| Timestamp::from_unix_micros(m).map_err(bad))
        };
        let id = ProjectId::parse(&self.task_id).map_err(bad)?;
        let role = |stored: Option<&str>| {
            stored
                .and_then(ProjectRole::parse_stored)
                .ok_or_else(missing)
        };
        Ok(match kind {
            ChangeKind::ProjectDeleted => Subject::Project { id, project: None },
            ChangeKind::MemberAdded | ChangeKind::MemberRemoved => Subject::Member {
                project: id,
                member: Member {
                    user: UserId::parse(self.member_id.as_deref().ok_or_else(missing)?)
                        .map_err(bad)?,
                    role: role(self.role.as_deref())?,
                    added_at: time(self.created_at)?,
                },
                username: Username::parse(self.username.as_deref().ok_or_else(missing)?)
                    .map_err(bad)?,
            },
            _ => {
                let project = Project {
                    id,
                    owner: UserId::parse(self.created_by.as_deref().ok_or_else(missing)?)
                        .map_err(bad)?,
                    name: ProjectName::parse(self.title.as_deref().ok_or_else(missing)?)
                        .map_err(bad)?,
                    description: Description::parse(
                        self.description.as_deref().ok_or_else(missing)?,
                    )
                    .map_err(bad)?,
                    color: self
                        .color
                        .as_deref()
                        .map(ProjectColor::parse)
                        .transpose()
                        .map_err(bad)?,
                    inbox: self.inbox.ok_or_else(missing)? != 0,
                    archived: self.archived.ok_or_else(missing)? != 0,
                    created_at: time(self.created_at)?,
                    updated_at: time(self.updated_at)?,
                    version: TaskVersion::new(self.version.ok_or_else(missing)?).map_err(bad)?,
                };
                Subject::Project {
                    id,
                    project: Some((project, role(self.role.as_deref())?)),
                }
            }
        })
    }

    fn into_task_subject(self, kind: ChangeKind) -> Result<Subject, StoreError> {
        let bad = |_| corrupt("change");
        let id = TaskId::parse(&self.task_id).map_err(bad)?;
        let task = match kind {
            ChangeKind::TaskDeleted => None,
            _ => {
                let missing = || corrupt("change");
                let row = StoredTask {
                    id: self.task_id.clone(),
                    owner_id: self.owner_id.clone(),
                    // (A change an older instance recorded during a rolling
                    // upgrade has none of the newer columns: its task was in
                    // its owner's Inbox, by its owner, in UTC, unreminded.)
                    project_id: self.project_id.unwrap_or_else(|| self.owner_id.clone()),
                    created_by: self.created_by.unwrap_or_else(|| self.owner_id.clone()),
                    parent_id: self.parent_id,
                    recurrence: self.recurrence,
                    time_zone: self.time_zone.unwrap_or_else(|| "UTC".to_owned()),
                    series_id: self.series_id,
                    series_start: self.series_start,
                    occurrence: self.occurrence,
                    reminders: self.reminders.unwrap_or_default(),
                    title: self.title.ok_or_else(missing)?,
                    description: self.description.ok_or_else(missing)?,
                    done: self.done.ok_or_else(missing)?,
                    completed_at: self.completed_at,
                    due_at: self.due_at,
                    priority: self.priority.ok_or_else(missing)?,
                    labels: self.labels.ok_or_else(missing)?,
                    archived: self.archived.ok_or_else(missing)?,
                    created_at: self.created_at.ok_or_else(missing)?,
                    updated_at: self.updated_at.ok_or_else(missing)?,
                    version: self.version.ok_or_else(missing)?,
                };
                Some(row.into_task()?)
            }
        };
        Ok(Subject::Task { id, task })
    }
}

impl SqlStore {
    pub(crate) fn read_changes(
        &self,
        owner: UserId,
        after: u64,
        limit: usize,
    ) -> Result<ChangeLog, StoreError> {
        let owner_id = owner.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (rows, stream) = self.with_conn(|conn| {
            // The changes first, the stream's bounds after: a pruning in
            // between then shows in `pruned_through` (the reader is told
            // to start over) rather than as a silent gap.
            let page = changes::table
                .filter(changes::owner_id.eq(&owner_id))
                .filter(changes::seq.gt(after))
                .order(changes::seq)
                .limit(limit)
                .select(StoredChange::as_select());
            let rows: Vec<StoredChange> = page.load(conn)?;
            let stream = change_streams::table
                .find(&owner_id)
                .select((change_streams::last_seq, change_streams::pruned_through));
            let stream: Option<(i64, i64)> = stream.get_result(conn).optional()?;
            Ok((rows, stream))
        })?;
        let (head, pruned_through) = stream.unwrap_or((0, 0));
        let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("change stream"));
        Ok(ChangeLog {
            changes: rows
                .into_iter()
                .map(StoredChange::into_change)
                .collect::<Result<_, _>>()?,
            head: count(head)?,
            pruned_through: count(pruned_through)?,
        })
    }

    pub(crate) fn prune_old_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        // Up to each stream's newest change made before `before`, so that
        // what a stream keeps is a suffix whatever its writers' clocks.
        const MARK: &str = "UPDATE change_streams SET pruned_through = \
            (SELECT MAX(seq) FROM changes \
             WHERE changes.owner_id = change_streams.owner_id AND changes.recorded_at < $1) \
            WHERE EXISTS (SELECT 1 FROM changes \
             WHERE changes.owner_id = change_streams.owner_id AND changes.recorded_at < $1)";
        const DROP: &str = "DELETE FROM changes WHERE seq <= \
            (SELECT pruned_through FROM change_streams \
             WHERE change_streams.owner_id = changes.owner_id)";
        let before = before.unix_micros();
        let pruned = self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                diesel::sql_query(MARK)
                    .bind::<BigInt, _>(before)
                    .execute(conn)?;
                diesel::sql_query(DROP).execute(conn)
            })
        })?;
        Ok(u64::try_from(pruned).unwrap_or(0))
    }
}
