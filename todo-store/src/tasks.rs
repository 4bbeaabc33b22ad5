//! Tasks, their labels and reminder times: task-server's tables. Every read
//! is scoped by the caller's memberships; every write takes the caller's role
//! in the task's project in its own transaction.

use diesel::PgConnection;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Text};
use todo_core::import::{ImportCounts, ImportOutcome, ImportPlan};
use todo_core::{
    ChangeKind, ChangeLog, Description, Labels, LogPosition, PageLimit, Priority, ProjectId,
    ProjectRole, Recurrence, Reminder, Reminders, Series, SeriesId, Standing, StoreError, Task,
    TaskCursor, TaskId, TaskInsert, TaskQuery, TaskSort, TaskStore, TaskVersion, TaskWrite,
    TimeZoneName, Timestamp, Title, TreeRefusal, UserId,
};

use crate::SqlStore;
use crate::changes;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{
    change_streams, project_members, projects, task_labels, task_reminders, tasks,
};
use crate::users::lock_owner_pg;

/// Runs a query on the connection's own type. diesel's statement cache then
/// finds a query by its Rust type, with no SQL built per call; through
/// `AnyConnection` it builds the statement's text every time to look it up
/// (measured: a fifth of a `GET`'s CPU).
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            AnyConnection::Sqlite($c) => $body,
            AnyConnection::Postgresql($c) => $body,
        }
    };
}
pub(crate) use native;

/// The most text a page read in place may hold: a page of short tasks is
/// a few kilobytes; one of large ones (a description may hold 40 KB) is
/// read and rendered on the blocking pool, where its milliseconds stall
/// no other request.
const IN_PLACE_PAGE_BYTES: usize = 64 * 1024;

/// The most projects a list read in place reads from: each is a read of
/// one index range, at most a page of rows (a user of four projects, their
/// Inbox and three shared, is read in place; one of forty is not).
const IN_PLACE_PROJECTS: usize = 4;

/// The most projects a list reads in one statement, the database merging
/// their ranges ([`merged`]): those of a caller in an Inbox and three
/// shared projects. (The statement has that many arms whatever the caller
/// is a member of, each a lookup of one membership: an Inbox alone is
/// four lookups.)
const MERGED_PROJECTS: usize = 4;

// A merged read is tried only for a list that reads as many projects (a
// narrower one must not answer for a caller it would find too wide): with
// more merged than read in place, no list in place would be merged.
const _: () = assert!(MERGED_PROJECTS <= IN_PLACE_PROJECTS);

/// Labels never contain control characters, so a line break separates them.
const LABEL_SEPARATOR: char = '\n';

/// A task as written: every column. (`None` is written as NULL, not as
/// the column's default: one statement for every task, which diesel's
/// statement cache keeps.)
#[derive(Insertable, AsChangeset)]
#[diesel(
    table_name = tasks,
    treat_none_as_null = true,
    treat_none_as_default_value = false
)]
pub(crate) struct TaskRow {
    pub(crate) id: String,
    /// The project's owner, who keeps the task.
    pub(crate) owner_id: String,
    pub(crate) project_id: String,
    pub(crate) created_by: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) recurrence: Option<String>,
    pub(crate) time_zone: String,
    pub(crate) series_id: Option<String>,
    pub(crate) series_start: Option<i64>,
    pub(crate) occurrence: Option<i64>,
    pub(crate) reminders: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) search_text: String,
    pub(crate) done: i16,
    pub(crate) completed_at: Option<i64>,
    pub(crate) due_at: Option<i64>,
    pub(crate) priority: i16,
    pub(crate) labels: String,
    pub(crate) archived: i16,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) version: i64,
}

/// A task as read: every column but `search_text`, which only the `q`
/// filter reads, inside the database (as large as the title and
/// description together: loading it would double a read's bytes).
/// Selected by name (`StoredTask::as_select()`), not by position.
#[derive(Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub(crate) struct StoredTask {
    pub(crate) id: String,
    pub(crate) owner_id: String,
    pub(crate) project_id: String,
    pub(crate) created_by: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) recurrence: Option<String>,
    pub(crate) time_zone: String,
    pub(crate) series_id: Option<String>,
    pub(crate) series_start: Option<i64>,
    pub(crate) occurrence: Option<i64>,
    pub(crate) reminders: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) done: i16,
    pub(crate) completed_at: Option<i64>,
    pub(crate) due_at: Option<i64>,
    pub(crate) priority: i16,
    pub(crate) labels: String,
    pub(crate) archived: i16,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) version: i64,
}

/// One row of `task_labels`. SQLite inserts these one statement per label
/// (one cached text); PostgreSQL uses `InsertLabelsPg` instead.
#[derive(Insertable)]
#[diesel(table_name = task_labels)]
struct LabelRow<'a> {
    task_id: &'a str,
    owner_id: &'a str,
    label: &'a str,
}

impl TaskRow {
    /// The row of `task`, in a project owned by `owner_id`.
    fn from_task(task: &Task, owner_id: &str) -> Self {
        let labels: Vec<&str> = task.labels.iter().map(|l| l.as_str()).collect();
        Self {
            id: task.id.to_string(),
            owner_id: owner_id.to_owned(),
            project_id: task.project.to_string(),
            created_by: task.created_by.to_string(),
            parent_id: task.parent.map(|p| p.to_string()),
            recurrence: task.recurrence.as_ref().map(ToString::to_string),
            time_zone: task.time_zone.as_str().to_owned(),
            series_id: task.series.map(|s| s.id.to_string()),
            series_start: task.series.map(|s| s.start.unix_micros()),
            occurrence: task.series.map(|s| i64::from(s.occurrence)),
            reminders: write_reminders(&task.reminders),
            title: task.title.as_str().to_owned(),
            description: task.description.as_str().to_owned(),
            search_text: task.search_text(),
            done: i16::from(task.done),
            completed_at: task.completed_at.map(Timestamp::unix_micros),
            due_at: task.due_at.map(Timestamp::unix_micros),
            priority: i16::from(task.priority.get()),
            labels: labels.join(&LABEL_SEPARATOR.to_string()),
            archived: i16::from(task.archived),
            created_at: task.created_at.unix_micros(),
            updated_at: task.updated_at.unix_micros(),
            version: task.version.get(),
        }
    }

    fn label_rows(&self) -> Vec<LabelRow<'_>> {
        self.labels
            .split(LABEL_SEPARATOR)
            .filter(|l| !l.is_empty())
            .map(|label| LabelRow {
                task_id: &self.id,
                owner_id: &self.owner_id,
                label,
            })
            .collect()
    }
}

impl StoredTask {
    pub(crate) fn into_task(self) -> Result<Task, StoreError> {
        let bad = |_| corrupt("task");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        let labels = self.labels.split(LABEL_SEPARATOR).filter(|l| !l.is_empty());
        Ok(Task {
            id: TaskId::parse(&self.id).map_err(bad)?,
            project: ProjectId::parse(&self.project_id).map_err(bad)?,
            created_by: UserId::parse(&self.created_by).map_err(bad)?,
            parent: self
                .parent_id
                .as_deref()
                .map(TaskId::parse)
                .transpose()
                .map_err(bad)?,
            recurrence: self
                .recurrence
                .as_deref()
                .map(Recurrence::parse)
                .transpose()
                .map_err(bad)?,
            time_zone: TimeZoneName::parse(&self.time_zone).map_err(bad)?,
            series: match (&self.series_id, self.series_start, self.occurrence) {
                (Some(id), Some(start), Some(occurrence)) => Some(Series {
                    id: SeriesId::parse(id).map_err(bad)?,
                    start: time(start)?,
                    occurrence: u32::try_from(occurrence).map_err(|_| corrupt("task"))?,
                }),
                (None, None, None) => None,
                _ => return Err(corrupt("task")),
            },
            reminders: read_reminders(&self.reminders).ok_or_else(|| corrupt("task"))?,
            title: Title::parse(&self.title).map_err(bad)?,
            description: Description::parse(&self.description).map_err(bad)?,
            done: self.done != 0,
            completed_at: self.completed_at.map(time).transpose()?,
            due_at: self.due_at.map(time).transpose()?,
            priority: Priority::new(i64::from(self.priority)).map_err(bad)?,
            labels: Labels::parse_stored(labels).map_err(bad)?,
            archived: self.archived != 0,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            version: TaskVersion::new(self.version).map_err(bad)?,
        })
    }
}

/// A row read for a list: what the budget of a list read in place counts.
trait HeldText {
    /// The text it holds, about its bytes in a read.
    fn held_bytes(&self) -> usize;
}

impl HeldText for StoredTask {
    fn held_bytes(&self) -> usize {
        self.title.len() + self.description.len() + self.labels.len()
    }
}

/// A task with its sort key (a merged page's row).
impl<K> HeldText for (K, StoredTask) {
    fn held_bytes(&self) -> usize {
        self.1.held_bytes()
    }
}

/// Reminders as stored: one a line, `at:<micros>` or `before:<seconds>`.
fn write_reminders(reminders: &Reminders) -> String {
    let lines: Vec<String> = reminders
        .iter()
        .map(|r| match r {
            Reminder::At(at) => format!("at:{}", at.unix_micros()),
            Reminder::BeforeDue(before) => format!("before:{}", before.as_secs()),
        })
        .collect();
    lines.join("\n")
}

/// The reminders of [`write_reminders`]' text; `None` if it is not that.
fn read_reminders(text: &str) -> Option<Reminders> {
    let reminders = text
        .lines()
        .map(|line| match line.split_once(':')? {
            ("at", micros) => Some(Reminder::At(
                Timestamp::from_unix_micros(micros.parse().ok()?).ok()?,
            )),
            ("before", seconds) => Some(Reminder::BeforeDue(std::time::Duration::from_secs(
                seconds.parse().ok()?,
            ))),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Reminders::new(reminders).ok()
}

/// Takes a task for the rest of the transaction (PostgreSQL), only if the
/// caller is a member of its project: nobody else can hold up its writers.
const LOCK_VISIBLE_TASK: &str = "SELECT 1 FROM tasks WHERE id = $1 AND EXISTS \
    (SELECT 1 FROM project_members m WHERE m.project_id = tasks.project_id AND m.user_id = $2) \
    FOR UPDATE";

/// What a write of one task takes first on PostgreSQL: its project if
/// shared ([`share_project_pg`]; a task's project never changes, so it is
/// read unlocked), then the caller's account (`KEY SHARE`, as every write
/// of theirs), then the task, if the caller is a member of its project.
/// Projects before accounts, as a user's deletion takes them.
fn lock_for_task_write(pg: &mut PgConnection, caller: &str, id: &str) -> QueryResult<()> {
    let project = tasks::table
        .filter(tasks::id.eq(id))
        .select(tasks::project_id)
        .single_value();
    projects::table
        .filter(projects::id.nullable().eq(project))
        .filter(projects::inbox.eq(0))
        .select(projects::id)
        .for_share()
        .execute(pg)?;
    lock_owner_pg(pg, caller)?;
    diesel::sql_query(LOCK_VISIBLE_TASK)
        .bind::<Text, _>(id)
        .bind::<Text, _>(caller)
        .execute(pg)
        .map(|_| ())
}

/// What a task's deletion takes first on PostgreSQL: its project's turn
/// for tree writes ([`take_tree_turn_pg`]), then what every task write
/// takes ([`lock_for_task_write`]).
fn lock_for_task_deletion(pg: &mut PgConnection, caller: &str, id: &str) -> QueryResult<()> {
    take_tree_turn_of_task_pg(pg, caller, id)?;
    lock_for_task_write(pg, caller, id)
}

/// The turn of the project of the task `id`, if `caller` may see the task
/// (a stranger takes no project's turn; review of session 24b, m1).
fn take_tree_turn_of_task_pg(pg: &mut PgConnection, caller: &str, id: &str) -> QueryResult<()> {
    let project: Option<String> = tasks::table
        .inner_join(
            project_members::table.on(project_members::project_id
                .eq(tasks::project_id)
                .and(project_members::user_id.eq(caller))),
        )
        .filter(tasks::id.eq(id))
        .select(tasks::project_id)
        .first(pg)
        .optional()?;
    match project {
        Some(project) => take_tree_turn_pg(pg, &project),
        None => Ok(()),
    }
}

/// Whether `user` is a member of `project` (read, not locked).
fn is_member_pg(pg: &mut PgConnection, project: &str, user: &str) -> QueryResult<bool> {
    let found: Option<String> = project_members::table
        .filter(project_members::project_id.eq(project))
        .filter(project_members::user_id.eq(user))
        .select(project_members::user_id)
        .first(pg)
        .optional()?;
    Ok(found.is_some())
}

/// Writes of one project's tree take turns on PostgreSQL: a creation under
/// a parent and a deletion (with its subtasks) take this lock (the
/// transaction's, on the project) before any row. A creation locks the
/// parent's chain upwards (`FOR SHARE`), a deletion its task and then the
/// subtree downwards: at once, each held the row the other wanted next
/// (attack of session 24, F2: 4–8% of such requests 503, "deadlock
/// detected"). Writes that do not change the tree do not take it; one that
/// learns it does once it holds its task (a move, a follow-up under a
/// parent) runs again with the turn first (`write_task`).
fn take_tree_turn_pg(pg: &mut PgConnection, project: &str) -> QueryResult<()> {
    // (the two-key form: a key space of its own, apart from the one-key
    // locks of the tests' harness; 1 names these turns)
    diesel::sql_query("SELECT pg_advisory_xact_lock(1, hashtext($1))")
        .bind::<Text, _>(project)
        .execute(pg)
        .map(|_| ())
}

/// A shared project's row, `FOR SHARE` (PostgreSQL), taken by a writer of
/// its tasks before the task and the members: project and member writes
/// take it first (`FOR NO KEY UPDATE`), so a member added meanwhile is
/// added before this write (and the members read after see them) or after
/// it (and their `member.added` follows it in their stream), never during.
/// An Inbox is never shared: nothing to wait for.
fn share_project_pg(pg: &mut PgConnection, project: &str) -> QueryResult<()> {
    projects::table
        .filter(projects::id.eq(project))
        .filter(projects::inbox.eq(0))
        .select(projects::id)
        .for_share()
        .execute(pg)
        .map(|_| ())
}

/// The earliest due reminder that no other instance holds, whose project
/// no write holds either: the reminder's row taken (`FOR UPDATE`), its
/// project's row shared (`FOR SHARE`), neither waited for.
const CLAIM_DUE_REMINDER: &str = "SELECT r.task_id, r.fire_at FROM task_reminders r \
    JOIN tasks t ON t.id = r.task_id JOIN projects p ON p.id = t.project_id \
    WHERE r.fired_at IS NULL AND r.fire_at <= $1 \
    ORDER BY r.fire_at, r.task_id LIMIT 1 \
    FOR UPDATE OF r SKIP LOCKED FOR SHARE OF p SKIP LOCKED";

#[derive(QueryableByName)]
struct DueReminder {
    #[diesel(sql_type = Text)]
    task_id: String,
    #[diesel(sql_type = BigInt)]
    fire_at: i64,
}

/// How a read of a project's members holds their rows (PostgreSQL).
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Not at all: a reminder firing, which holds the project's row shared
    /// instead and waits on no member.
    Nothing,
    /// `FOR SHARE`: a task's writer (a removal waits for it).
    Share,
}

/// Deletes the tasks of `project` (its deletion's first step, in its
/// transaction, which holds the project's row: no writer of its tasks is
/// running or can start) and counts them out of `owner`'s tasks. Nothing
/// is recorded a task: the `project.deleted` each member gets says they
/// went with it (a change a task and a member made a large project's
/// deletion one transaction of up to a million rows, minutes on
/// PostgreSQL with every member's stream held: the attack of session 13).
pub(crate) fn delete_project_tasks(
    conn: &mut AnyConnection,
    project: &str,
    owner: &str,
) -> QueryResult<()> {
    let gone = diesel::delete(tasks::table.filter(tasks::project_id.eq(project))).execute(conn)?;
    if gone > 0 {
        let gone = i64::try_from(gone).unwrap_or(i64::MAX);
        diesel::update(change_streams::table.find(owner))
            .set(change_streams::task_count.eq(change_streams::task_count - gone))
            .execute(conn)?;
    }
    Ok(())
}

/// Where a write to a project's tasks goes, read in the write's
/// transaction: the project, the caller's standing in it, its owner (who
/// keeps its tasks: their quota counts them) and the members read, in id
/// order (a write reads only the caller's row and the owner's: its change
/// is recorded once, for whoever is a member when it is read).
struct Reach {
    project: String,
    standing: Standing,
    owner: String,
    members: Vec<String>,
}

impl Reach {
    /// The Reach of a write by `caller` to `project`: the caller's row and
    /// the owner's. An Inbox (whose id is its owner's) has one member, its
    /// owner, and needs no read. On PostgreSQL the rows read are held
    /// (`FOR SHARE`) until the commit, and so is the project's (taken
    /// before, `share_project_pg`): a member added or removed meanwhile is
    /// so after this write, never during it.
    fn of(conn: &mut AnyConnection, caller: &str, project: &str) -> QueryResult<Self> {
        if caller == project {
            return Ok(Self {
                project: project.to_owned(),
                standing: Standing::Member(ProjectRole::Owner),
                owner: caller.to_owned(),
                members: vec![caller.to_owned()],
            });
        }
        Self::of_project(conn, caller, project)
    }

    /// The Reach of a write by `caller` to `project`, read from the
    /// caller's membership (held `FOR SHARE` on PostgreSQL) and the
    /// project's owner: two lookups by primary key. (One statement with
    /// `user_id = ? OR role = 'owner'` was prepared again at every run:
    /// SQLite re-plans a statement whose bound values its planner weighs,
    /// 80,000 instructions a write.)
    fn of_project(conn: &mut AnyConnection, caller: &str, project: &str) -> QueryResult<Self> {
        let mine = project_members::table
            .find((project, caller))
            .select(project_members::role);
        let role: Option<String> = match conn {
            AnyConnection::Postgresql(c) => mine.for_share().get_result(c).optional()?,
            AnyConnection::Sqlite(c) => mine.get_result(c).optional()?,
        };
        let Some(role) = role else {
            return Ok(Self {
                project: project.to_owned(),
                standing: Standing::Stranger,
                owner: String::new(),
                members: Vec::new(),
            });
        };
        let owner = projects::table.find(project).select(projects::owner_id);
        let owner: String = native!(&mut *conn, |c| owner.get_result(c))?;
        let mut rows = vec![(caller.to_owned(), role)];
        if owner != caller {
            rows.push((owner, ProjectRole::Owner.as_str().to_owned()));
        }
        Self::from_rows(caller, project, rows)
    }

    /// The Reach of a write by `caller` to `project` that must know every
    /// member (an import, which writes only where its importer is the only
    /// one), all held `FOR SHARE` on PostgreSQL.
    fn with_everyone(conn: &mut AnyConnection, caller: &str, project: &str) -> QueryResult<Self> {
        Self::read(conn, caller, project, Hold::Share)
    }

    /// The members of `project` as they are, unlocked: for a write of no
    /// member's (a reminder firing), whose members are woken.
    fn members_now(conn: &mut AnyConnection, project: &str) -> QueryResult<Self> {
        Self::read(conn, "", project, Hold::Nothing)
    }

    fn read(
        conn: &mut AnyConnection,
        caller: &str,
        project: &str,
        hold: Hold,
    ) -> QueryResult<Self> {
        let members = project_members::table
            .filter(project_members::project_id.eq(project))
            .select((project_members::user_id, project_members::role))
            .order(project_members::user_id);
        let rows: Vec<(String, String)> = match conn {
            AnyConnection::Postgresql(c) => match hold {
                Hold::Share => members.for_share().load(c)?,
                Hold::Nothing => members.load(c)?,
            },
            AnyConnection::Sqlite(c) => members.load(c)?,
        };
        Self::from_rows(caller, project, rows)
    }

    fn from_rows(caller: &str, project: &str, rows: Vec<(String, String)>) -> QueryResult<Self> {
        let mut reach = Self {
            project: project.to_owned(),
            standing: Standing::Stranger,
            owner: String::new(),
            members: Vec::with_capacity(rows.len()),
        };
        for (user, role) in rows {
            let role = ProjectRole::parse_stored(&role).ok_or_else(|| {
                diesel::result::Error::DeserializationError("a stored role".into())
            })?;
            if role == ProjectRole::Owner {
                reach.owner.clone_from(&user);
            }
            if user == caller {
                reach.standing = Standing::Member(role);
            }
            reach.members.push(user);
        }
        Ok(reach)
    }

    /// Records a write that left the task as `row` (`None`: deleted it)
    /// as a change of the project; a deletion counts the task out of its
    /// owner's.
    fn record(
        &self,
        conn: &mut AnyConnection,
        kind: ChangeKind,
        task_id: &str,
        row: Option<&TaskRow>,
        at: i64,
    ) -> QueryResult<()> {
        if kind == ChangeKind::TaskDeleted {
            changes::count_tasks(conn, &self.owner, -1)?;
        }
        changes::record_task(conn, kind, &self.project, task_id, row, at)
    }
}

/// The task's labels for the `label=` filter. SQLite: a row at a time, as
/// diesel inserts several rows there, each by one cached statement.
/// PostgreSQL: in one statement of one array, the same statement for any
/// number of labels, so the cache keeps it (diesel's multi-row `VALUES`
/// differs by count, and diesel prepares it anew every time).
fn insert_labels(conn: &mut AnyConnection, row: &TaskRow) -> QueryResult<()> {
    let labels = row.label_rows();
    if labels.is_empty() {
        return Ok(());
    }
    match conn {
        AnyConnection::Sqlite(c) => diesel::insert_into(task_labels::table)
            .values(&labels)
            .execute(c),
        AnyConnection::Postgresql(c) => InsertLabelsPg {
            task_id: &row.id,
            owner_id: &row.owner_id,
            labels: labels.iter().map(|l| l.label).collect(),
        }
        .execute(c),
    }
    .map(|_| ())
}

/// `INSERT … SELECT unnest($3)`: a task's labels in one statement, of one
/// text whatever their number, so that diesel caches it (diesel never
/// caches PostgreSQL's multi-row `VALUES`, whose text grows with the rows).
/// The SQL must therefore never depend on the values bound.
#[derive(Debug)]
struct InsertLabelsPg<'a> {
    task_id: &'a str,
    owner_id: &'a str,
    labels: Vec<&'a str>,
}

impl QueryId for InsertLabelsPg<'_> {
    type QueryId = InsertLabelsPg<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<diesel::pg::Pg> for InsertLabelsPg<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO task_labels (task_id, owner_id, label) SELECT ");
        out.push_bind_param::<Text, str>(self.task_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(self.owner_id)?;
        out.push_sql(", unnest(");
        out.push_bind_param::<Array<Text>, Vec<&str>>(&self.labels)?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for InsertLabelsPg<'_> {}

/// `%` and `_` match only themselves: escape them (and the escape character).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Runs `body` so that no other writer of the same rows can interleave
/// with it. SQLite: as every write, inside the group commit's immediate
/// transaction (`crate::group`), which holds the database's write lock
/// from before anything is read. PostgreSQL: a transaction whose first
/// statement, `lock`, takes the locks that serialise the writers
/// concerned; what `body` reads after it is current (READ COMMITTED takes
/// a snapshot per statement).
fn exclusive<T>(
    conn: &mut AnyConnection,
    lock: impl FnOnce(&mut PgConnection) -> QueryResult<()>,
    body: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    match conn {
        AnyConnection::Postgresql(_) => conn.transaction(|conn| {
            if let AnyConnection::Postgresql(pg) = conn {
                lock(pg)?;
            }
            body(conn)
        }),
        AnyConnection::Sqlite(_) => body(conn),
    }
}

/// Writes an import's plan (see [`TaskStore::import`]); a refusal is
/// answered after part of it may be written: the caller rolls back.
fn import_on(
    conn: &mut AnyConnection,
    owner: &str,
    plan: &ImportPlan,
    max_tasks: Option<i64>,
    max_projects: Option<i64>,
) -> QueryResult<ImportOutcome> {
    let mut counts = ImportCounts::default();
    for project in &plan.projects {
        let id = project.id.to_string();
        let there: i64 = projects::table
            .filter(projects::id.eq(&id))
            .count()
            .get_result(conn)?;
        if there > 0 {
            counts.unchanged += 1;
            continue;
        }
        if let Some(max) = max_projects
            && crate::projects::owned_projects(conn, owner)? >= max
        {
            return Ok(ImportOutcome::AtQuota { what: "projects" });
        }
        crate::projects::insert_project(conn, project)?;
        counts.projects_created += 1;
    }
    for (index, (_, task)) in plan.tasks.iter().enumerate() {
        let id = task.id.to_string();
        let there: i64 = tasks::table
            .filter(tasks::id.eq(&id))
            .count()
            .get_result(conn)?;
        if there > 0 {
            counts.unchanged += 1;
            continue;
        }
        let project = task.project.to_string();
        let reach = if project == owner {
            Reach::of(conn, owner, &project)?
        } else {
            Reach::with_everyone(conn, owner, &project)?
        };
        if reach.owner != owner {
            return Ok(ImportOutcome::NotOwned { index });
        }
        if reach.members.len() > 1 {
            return Ok(ImportOutcome::Shared { index });
        }
        let row = TaskRow::from_task(task, &reach.owner);
        if let Some(parent) = &row.parent_id
            && let Some(refusal) = tree_refusal(conn, &row.id, &project, parent, true)?
        {
            return Ok(ImportOutcome::BadParent { index, refusal });
        }
        if !create_row(conn, &reach, task, &row, max_tasks)? {
            return Ok(ImportOutcome::AtQuota { what: "tasks" });
        }
        counts.tasks_created += 1;
    }
    Ok(ImportOutcome::Imported(counts))
}

/// Inserts `row`, a new task of `reach`'s project, with its labels, and
/// records its creation as a change of the project. The owner's count
/// comes first, under `max` (their row, locked from there to the commit,
/// serialises the owner's creations on PostgreSQL; SQLite's writes are),
/// before the task is there to be counted. `false`: the owner is at
/// `max`: the caller rolls the transaction back.
fn create_row(
    conn: &mut AnyConnection,
    reach: &Reach,
    task: &Task,
    row: &TaskRow,
    max: Option<i64>,
) -> QueryResult<bool> {
    match max {
        Some(max) => {
            if !changes::count_within(conn, &reach.owner, max)? {
                return Ok(false);
            }
        }
        None => changes::count_tasks(conn, &reach.owner, 1)?,
    }
    let insert = diesel::insert_into(tasks::table).values(row);
    native!(&mut *conn, |c| insert.execute(c))?;
    insert_labels(conn, row)?;
    schedule_reminders(conn, task, false)?;
    changes::record_task(
        conn,
        ChangeKind::TaskCreated,
        &reach.project,
        &row.id,
        Some(row),
        row.updated_at,
    )?;
    Ok(true)
}

/// Schedules `task`'s reminders anew, as written at its `updated_at`, by
/// difference: a row that is still one of its reminder times stays,
/// fired or not (one due but not fired yet still fires: a write in the
/// second before the look loses nothing); rows of times it no longer has
/// go; new times are put only if they fall after the write. A task done
/// or archived keeps none unfired. A task that had none and has none
/// costs nothing.
fn schedule_reminders(conn: &mut AnyConnection, task: &Task, had_any: bool) -> QueryResult<()> {
    if !had_any && task.reminders.is_empty() {
        return Ok(());
    }
    let id = task.id.to_string();
    let wanted: Vec<i64> = if task.done || task.archived {
        Vec::new()
    } else {
        task.reminders
            .iter()
            .filter_map(|r| r.fires_at(task.due_at))
            .map(Timestamp::unix_micros)
            .collect()
    };
    diesel::delete(
        task_reminders::table
            .filter(task_reminders::task_id.eq(&id))
            .filter(task_reminders::fired_at.is_null())
            .filter(task_reminders::fire_at.ne_all(&wanted)),
    )
    .execute(conn)?;
    let written = task.updated_at.unix_micros();
    for at in wanted.into_iter().filter(|at| *at > written) {
        let row = (
            task_reminders::task_id.eq(&id),
            task_reminders::fire_at.eq(at),
        );
        native!(&mut *conn, |c| diesel::insert_into(task_reminders::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    Ok(())
}

/// A task's project and parent, for walking up the tree (held `FOR
/// SHARE` on PostgreSQL: two tasks made each other's parents at once
/// wait on each other, and one is refused, rather than both making a
/// cycle).
fn project_and_parent(
    conn: &mut AnyConnection,
    id: &str,
) -> QueryResult<Option<(String, Option<String>)>> {
    let row = tasks::table
        .find(id)
        .select((tasks::project_id, tasks::parent_id));
    match conn {
        AnyConnection::Sqlite(c) => row.first(c).optional(),
        AnyConnection::Postgresql(c) => row.for_share().first(c).optional(),
    }
}

/// The subtasks of `parents`, one level down.
fn children(conn: &mut AnyConnection, parents: &[String]) -> QueryResult<Vec<String>> {
    tasks::table
        .filter(tasks::parent_id.eq_any(parents))
        .select(tasks::id)
        .load(conn)
}

/// Why the task `id` of `project` cannot have `parent`, if it cannot: the
/// parent is not in the project, is the task or one of its subtasks, or
/// is so deep that the task (with its own subtasks, unless `new`) would
/// be more than [`Task::MAX_DEPTH`] levels from the top.
fn tree_refusal(
    conn: &mut AnyConnection,
    id: &str,
    project: &str,
    parent: &str,
    new: bool,
) -> QueryResult<Option<TreeRefusal>> {
    match project_and_parent(conn, parent)? {
        Some((parents_project, _)) if parents_project == project => {}
        _ => return Ok(Some(TreeRefusal::NoSuchParent)),
    }
    let mut depth = 0;
    let mut at = Some(parent.to_owned());
    while let Some(ancestor) = at {
        if ancestor == id {
            return Ok(Some(TreeRefusal::Cycle));
        }
        depth += 1;
        if depth > Task::MAX_DEPTH {
            return Ok(Some(TreeRefusal::TooDeep));
        }
        at = project_and_parent(conn, &ancestor)?.and_then(|(_, up)| up);
    }
    let mut height = 1;
    if !new {
        let mut level = vec![id.to_owned()];
        while height <= Task::MAX_DEPTH {
            level = children(conn, &level)?;
            if level.is_empty() {
                break;
            }
            height += 1;
        }
    }
    Ok((depth + height > Task::MAX_DEPTH).then_some(TreeRefusal::TooDeep))
}

/// The task and its subtasks, every level, the task first.
fn subtree(conn: &mut AnyConnection, id: &str) -> QueryResult<Vec<String>> {
    let mut all = vec![id.to_owned()];
    let mut seen: std::collections::HashSet<String> = all.iter().cloned().collect();
    let mut level = all.clone();
    // (depth is bounded; the bound here keeps a corrupt cycle finite)
    for _ in 0..=Task::MAX_DEPTH {
        level = children(conn, &level)?;
        level.retain(|child| seen.insert(child.clone()));
        if level.is_empty() {
            break;
        }
        all.extend(level.iter().cloned());
    }
    Ok(all)
}

/// Makes `next`, the follow-up of a write, unless a task of its series
/// and occurrence is there already: the id of the one made or found. At
/// the owner's quota it sets `at_quota` and fails (the caller's
/// transaction is rolled back).
fn make_follow_up(
    conn: &mut AnyConnection,
    reach: &Reach,
    next: &Task,
    owner_id: &str,
    max: Option<i64>,
    at_quota: &mut bool,
) -> QueryResult<TaskId> {
    let row = TaskRow::from_task(next, owner_id);
    if let (Some(series), Some(occurrence)) = (&row.series_id, row.occurrence) {
        let there: Option<String> = tasks::table
            .filter(tasks::series_id.eq(series))
            .filter(tasks::occurrence.eq(occurrence))
            .select(tasks::id)
            .first(conn)
            .optional()?;
        if let Some(there) = there {
            return TaskId::parse(&there)
                .map_err(|_| diesel::result::Error::DeserializationError("a task id".into()));
        }
    }
    if !create_row(conn, reach, next, &row, max)? {
        *at_quota = true;
        return Err(diesel::result::Error::RollbackTransaction);
    }
    Ok(next.id)
}

impl TaskStore for SqlStore {
    fn insert_task_within(
        &self,
        task: &Task,
        max_tasks: Option<u64>,
        may: &mut dyn FnMut(Standing) -> bool,
    ) -> Result<TaskInsert, StoreError> {
        let caller = task.created_by.to_string();
        let project = task.project.to_string();
        let max = max_tasks.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        let mut outcome = TaskInsert::Inserted;
        let written = self.with_write_conn(|conn| {
            exclusive(
                conn,
                |pg| {
                    // (a stranger takes no project's turn: review of
                    // session 24b, m1)
                    if task.parent.is_some() && is_member_pg(pg, &project, &caller)? {
                        take_tree_turn_pg(pg, &project)?;
                    }
                    if project != caller {
                        share_project_pg(pg, &project)?;
                    }
                    lock_owner_pg(pg, &caller)
                },
                |conn| {
                    let reach = Reach::of(conn, &caller, &project)?;
                    if reach.members.is_empty() || !may(reach.standing) {
                        outcome = TaskInsert::Refused(reach.standing);
                        return Ok(());
                    }
                    let row = TaskRow::from_task(task, &reach.owner);
                    if let Some(parent) = &row.parent_id
                        && let Some(refusal) = tree_refusal(conn, &row.id, &project, parent, true)?
                    {
                        outcome = TaskInsert::BadParent(refusal);
                        return Ok(());
                    }
                    if !create_row(conn, &reach, task, &row, max)? {
                        // (undoes the numbers taken)
                        outcome = TaskInsert::AtQuota;
                        return Err(diesel::result::Error::RollbackTransaction);
                    }
                    Ok(())
                },
            )
        });
        match (written, outcome) {
            (Err(_), TaskInsert::AtQuota) => Ok(TaskInsert::AtQuota),
            (written, outcome) => written.map(|()| outcome),
        }
    }

    fn import(
        &self,
        owner: UserId,
        plan: &ImportPlan,
        max_tasks: Option<u64>,
        max_projects: Option<u64>,
    ) -> Result<ImportOutcome, StoreError> {
        let owner = owner.to_string();
        let max_tasks = max_tasks.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        let max_projects = max_projects.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        // On PostgreSQL everything the writes below take is taken first, in
        // the order every writer takes it (projects, accounts, tasks,
        // members, then the owner's task count and the log), since the
        // writes take the count from the first task on: the plan's projects that may be there, the
        // account, the parents named that may be there with their
        // ancestors, the members of every project written to.
        let mut shared: Vec<String> = plan.projects.iter().map(|p| p.id.to_string()).collect();
        shared.extend(plan.tasks.iter().map(|(_, t)| t.project.to_string()));
        shared.sort_unstable();
        shared.dedup();
        let mut parents: Vec<String> = plan
            .tasks
            .iter()
            .filter_map(|(_, t)| t.parent.map(|p| p.to_string()))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        // (the projects whose trees it writes, in one order: each turn is
        // taken before any row, as a single creation's is)
        let mut trees: Vec<String> = plan
            .tasks
            .iter()
            .filter(|(_, t)| t.parent.is_some())
            .map(|(_, t)| t.project.to_string())
            .collect();
        trees.sort_unstable();
        trees.dedup();
        let mut outcome = None;
        let written = self.with_write_conn(|conn| {
            exclusive(
                conn,
                |pg| {
                    for project in &trees {
                        take_tree_turn_pg(pg, project)?;
                    }
                    for project in &shared {
                        share_project_pg(pg, project)?;
                    }
                    // (`FOR NO KEY UPDATE`: the projects are counted, as
                    // a project's making counts them)
                    crate::users::lock_user_for_count_pg(pg, &owner)?;
                    for parent in &parents {
                        let mut at = Some(parent.clone());
                        for _ in 0..=Task::MAX_DEPTH {
                            let Some(id) = at.take() else { break };
                            at = tasks::table
                                .find(&id)
                                .select(tasks::parent_id)
                                .for_share()
                                .first::<Option<String>>(pg)
                                .optional()?
                                .flatten();
                        }
                    }
                    for project in shared.iter().filter(|p| **p != owner) {
                        project_members::table
                            .filter(project_members::project_id.eq(project))
                            .order(project_members::user_id)
                            .select(project_members::user_id)
                            .for_share()
                            .load::<String>(pg)?;
                    }
                    Ok(())
                },
                |conn| {
                    let result = conn
                        .transaction(|conn| import_on(conn, &owner, plan, max_tasks, max_projects));
                    match result {
                        Ok(ImportOutcome::Imported(counts)) => Ok(ImportOutcome::Imported(counts)),
                        // A refusal undoes what was written before it.
                        Ok(refused) => {
                            outcome = Some(refused);
                            Err(diesel::result::Error::RollbackTransaction)
                        }
                        Err(error) => Err(error),
                    }
                },
            )
        });
        match (written, outcome) {
            (Err(_), Some(refused)) => Ok(refused),
            (written, _) => written,
        }
    }

    fn write_task(
        &self,
        caller: UserId,
        id: TaskId,
        change: &mut dyn FnMut(&Task, ProjectRole) -> Option<Task>,
        follow_up: &mut dyn FnMut(&Task, &Task) -> Option<Task>,
        max_tasks: Option<u64>,
    ) -> Result<TaskWrite, StoreError> {
        let (caller_id, task_id) = (caller, id);
        let (caller, id) = (caller.to_string(), id.to_string());
        let max = max_tasks.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        // The closures' answers are kept apart from diesel's errors: a
        // stored row that does not parse is corrupt, not a query failure.
        let mut corrupt_row = None;
        let mut at_quota = false;
        // A write that moves the task under another parent, or makes a
        // follow-up under one, writes its project's tree: it learns so only
        // after it has locked the task, so it rolls back and runs again
        // with the project's turn taken first (PostgreSQL; review of
        // session 24b, M1 and M2: without the turn it met a deletion of
        // the tree in a deadlock, or its follow-up, made first, went with
        // the tree's cascade unrecorded).
        let mut tree_turn = false;
        let mut needs_turn = false;
        let written = loop {
            let written = self.with_write_conn(|conn| {
                exclusive(
                    conn,
                    |pg| {
                        if tree_turn {
                            take_tree_turn_of_task_pg(pg, &caller, &id)?;
                        }
                        lock_for_task_write(pg, &caller, &id)
                    },
                    |conn| {
                        let Some(row) = find_row(conn, caller_id, task_id)? else {
                            return Ok(TaskWrite::NotFound);
                        };
                        let owner_id = row.owner_id.clone();
                        let current = match row.into_task() {
                            Ok(task) => task,
                            Err(error) => {
                                corrupt_row = Some(error);
                                return Ok(TaskWrite::NotFound);
                            }
                        };
                        let project = current.project.to_string();
                        let reach = Reach::of(conn, &caller, &project)?;
                        let Standing::Member(role) = reach.standing else {
                            // (removed between the read and the lock)
                            return Ok(TaskWrite::NotFound);
                        };
                        let Some(changed) = change(&current, role) else {
                            return Ok(TaskWrite::Written {
                                task: Box::new(current),
                                follow_up: None,
                            });
                        };
                        if changed.id != current.id
                            || changed.project != current.project
                            || changed.created_by != current.created_by
                        {
                            return Err(diesel::result::Error::RollbackTransaction);
                        }
                        let new = TaskRow::from_task(&changed, &owner_id);
                        let moved = new.parent_id != current.parent.map(|p| p.to_string());
                        let next = follow_up(&current, &changed);
                        if !tree_turn
                            && matches!(conn, AnyConnection::Postgresql(_))
                            && ((moved && new.parent_id.is_some())
                                || next.as_ref().is_some_and(|next| next.parent.is_some()))
                        {
                            needs_turn = true;
                            return Err(diesel::result::Error::RollbackTransaction);
                        }
                        if moved
                            && let Some(parent) = &new.parent_id
                            && let Some(refusal) = tree_refusal(conn, &id, &project, parent, false)?
                        {
                            return Ok(TaskWrite::BadParent(refusal));
                        }
                        let target = tasks::table.filter(tasks::id.eq(&id));
                        let update = diesel::update(target).set(&new);
                        native!(&mut *conn, |c| update.execute(c))?;
                        let old_labels =
                            diesel::delete(task_labels::table.filter(task_labels::task_id.eq(&id)));
                        native!(&mut *conn, |c| old_labels.execute(c))?;
                        insert_labels(conn, &new)?;
                        // (before the change: a firing holds a reminder's row,
                        // then records; this takes them in that order too)
                        schedule_reminders(conn, &changed, !current.reminders.is_empty())?;
                        reach.record(
                            conn,
                            ChangeKind::TaskUpdated,
                            &new.id,
                            Some(&new),
                            new.updated_at,
                        )?;
                        let follow_up = match next {
                            Some(next) => Some(make_follow_up(
                                conn,
                                &reach,
                                &next,
                                &owner_id,
                                max,
                                &mut at_quota,
                            )?),
                            None => None,
                        };
                        Ok(TaskWrite::Written {
                            task: Box::new(changed),
                            follow_up,
                        })
                    },
                )
            });
            if needs_turn && !tree_turn {
                tree_turn = true;
                continue;
            }
            break written;
        };
        if at_quota {
            return Ok(TaskWrite::AtQuota);
        }
        let written = written?;
        match corrupt_row {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }

    fn find_task(&self, caller: UserId, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.replenish_in_place();
        let row = self.with_conn(|conn| find_row(conn, caller, id))?;
        row.map(StoredTask::into_task).transpose()
    }

    fn find_occurrence(
        &self,
        caller: UserId,
        series: SeriesId,
        occurrence: u32,
    ) -> Result<Option<TaskId>, StoreError> {
        let (caller, series) = (caller.to_string(), series.to_string());
        let found: Option<String> = self.with_conn(|conn| {
            tasks::table
                .filter(tasks::series_id.eq(&series))
                .filter(tasks::occurrence.eq(i64::from(occurrence)))
                .filter(seen_by(&caller))
                .select(tasks::id)
                .first(conn)
                .optional()
        })?;
        found
            .map(|id| TaskId::parse(&id).map_err(|_| corrupt("task")))
            .transpose()
    }

    fn find_task_in_place(
        &self,
        caller: UserId,
        id: TaskId,
    ) -> Option<Result<Option<Task>, StoreError>> {
        let row = self
            .in_place
            .as_ref()?
            .read(|conn| find_row(conn, caller, id))?;
        Some(row.map(StoredTask::into_task).transpose())
    }

    fn list_tasks_in_place(
        &self,
        caller: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Option<Result<Vec<Task>, StoreError>> {
        // Only a page an index gives from its first entry: any other
        // filter is checked row by row, and one that matches little would
        // read every task of the caller's projects.
        if query.scans() {
            return None;
        }
        let in_place = self.in_place.as_ref()?;
        let rows = in_place.read(|conn| {
            list_rows(
                conn,
                caller,
                query,
                after,
                limit,
                IN_PLACE_PROJECTS,
                IN_PLACE_PAGE_BYTES,
            )
        })??;
        Some(rows.into_iter().map(StoredTask::into_task).collect())
    }

    fn list_tasks_within(
        &self,
        caller: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
        max_projects: usize,
    ) -> Result<Option<Vec<Task>>, StoreError> {
        self.replenish_in_place();
        let rows = self.with_conn(|conn| {
            list_rows(conn, caller, query, after, limit, max_projects, usize::MAX)
        })?;
        rows.map(|rows| rows.into_iter().map(StoredTask::into_task).collect())
            .transpose()
    }

    fn list_tasks(
        &self,
        caller: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.replenish_in_place();
        let rows = self.with_conn(|conn| {
            list_rows(conn, caller, query, after, limit, usize::MAX, usize::MAX)
        })?;
        let rows =
            rows.ok_or_else(|| StoreError::Internal("a read with no budget stopped".into()))?;
        rows.into_iter().map(StoredTask::into_task).collect()
    }

    fn delete_task(
        &self,
        caller: UserId,
        id: TaskId,
        at: Timestamp,
        may: &mut dyn FnMut(&Task, ProjectRole) -> bool,
    ) -> Result<Option<Task>, StoreError> {
        let (caller_id, task_id) = (caller, id);
        let (caller, id) = (caller.to_string(), id.to_string());
        let mut corrupt_row = None;
        let found = self.with_write_conn(|conn| {
            exclusive(
                conn,
                |pg| lock_for_task_deletion(pg, &caller, &id),
                |conn| {
                    let Some(row) = find_row(conn, caller_id, task_id)? else {
                        return Ok(None);
                    };
                    let current = match row.into_task() {
                        Ok(task) => task,
                        Err(error) => {
                            corrupt_row = Some(error);
                            return Ok(None);
                        }
                    };
                    let reach = Reach::of(conn, &caller, &current.project.to_string())?;
                    let Standing::Member(role) = reach.standing else {
                        return Ok(None);
                    };
                    if !may(&current, role) {
                        return Ok(Some(current));
                    }
                    // The subtasks go too, in one statement, each recorded
                    // as a deletion of the project, a few hundred a
                    // statement. (Labels and reminders go with their task.)
                    let mut doomed = subtree(conn, &id)?;
                    doomed.reverse(); // (told the deepest first)
                    let gone = tasks::table.filter(tasks::id.eq_any(&doomed));
                    native!(&mut *conn, |c| diesel::delete(gone).execute(c))?;
                    let count = i64::try_from(doomed.len()).unwrap_or(i64::MAX);
                    changes::count_tasks(conn, &reach.owner, -count)?;
                    changes::record_deletions(conn, &reach.project, &doomed, at.unix_micros())?;
                    Ok(Some(current))
                },
            )
        })?;
        match corrupt_row {
            Some(error) => Err(error),
            None => Ok(found),
        }
    }

    fn owned_tasks(
        &self,
        owner: UserId,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let owner = owner.to_string();
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // (`tasks_by_owner`: at most the owner's quota of entries a page)
        let rows: Vec<StoredTask> = self.with_conn(|conn| {
            tasks::table
                .filter(tasks::owner_id.eq(&owner))
                .filter(tasks::id.gt(&after))
                .order(tasks::id)
                .limit(limit)
                .select(StoredTask::as_select())
                .load(conn)
        })?;
        rows.into_iter().map(StoredTask::into_task).collect()
    }

    fn project_tasks(
        &self,
        project: ProjectId,
        after: Option<(Timestamp, TaskId)>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let project = project.to_string();
        let (after_at, after_id) = after.map_or((i64::MIN, String::new()), |(at, id)| {
            (at.unix_micros(), id.to_string())
        });
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // (`tasks_by_project_created`, walked from the cursor)
        let rows: Vec<StoredTask> = self.with_conn(|conn| {
            tasks::table
                .filter(tasks::project_id.eq(&project))
                .filter(tasks::archived.eq(0))
                // (the first condition starts the index's range at the
                // cursor; the second passes over the cursor's own time's
                // tasks up to it)
                .filter(tasks::created_at.ge(after_at))
                .filter(
                    tasks::created_at
                        .gt(after_at)
                        .or(tasks::created_at.eq(after_at).and(tasks::id.gt(&after_id))),
                )
                .order((tasks::created_at, tasks::id))
                .limit(limit)
                .select(StoredTask::as_select())
                .load(conn)
        })?;
        rows.into_iter().map(StoredTask::into_task).collect()
    }

    fn project_members(&self, project: ProjectId) -> Result<Vec<UserId>, StoreError> {
        let project = project.to_string();
        let members: Vec<String> = self.with_conn(|conn| {
            project_members::table
                .filter(project_members::project_id.eq(&project))
                .select(project_members::user_id)
                .load(conn)
        })?;
        members
            .iter()
            .map(|m| UserId::parse(m).map_err(|_| corrupt("project member")))
            .collect()
    }

    fn members_of_projects(&self, projects: &[ProjectId]) -> Result<Vec<UserId>, StoreError> {
        // (a statement a few hundred projects at a time: within both
        // databases' bound on parameters)
        let mut members: Vec<String> = Vec::new();
        for chunk in projects.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            members.extend(self.with_conn(|conn| {
                project_members::table
                    .filter(project_members::project_id.eq_any(&ids))
                    .select(project_members::user_id)
                    .distinct()
                    .load::<String>(conn)
            })?);
        }
        let mut members = members
            .iter()
            .map(|m| UserId::parse(m).map_err(|_| corrupt("project member")))
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    fn fire_due_reminders(&self, now: Timestamp, limit: usize) -> Result<Vec<UserId>, StoreError> {
        let at = now.unix_micros();
        let mut woken = Vec::new();
        // One reminder a transaction: each takes only its own project's
        // row (shared) and its reminder's, as every writer does (a batch
        // would take several projects' in no one order, and deadlock).
        for _ in 0..limit {
            let fired = self.with_write_conn(|conn| {
                conn.transaction(|conn| {
                    let due = task_reminders::table
                        .filter(task_reminders::fired_at.is_null())
                        .filter(task_reminders::fire_at.le(at))
                        .order((task_reminders::fire_at, task_reminders::task_id))
                        .select((task_reminders::task_id, task_reminders::fire_at))
                        .limit(1);
                    // Each instance takes a reminder nobody else holds, and
                    // its project's row shared, so that no member comes or
                    // goes until this commits (a removed member is told of
                    // nothing after their removal); both in one statement,
                    // skipping what is held (PostgreSQL): a project being
                    // written waits for the next look, and the reminders
                    // of every other project go on. Never waited for: a
                    // project's deletion holds the project and wants its
                    // reminders.
                    let due: Option<(String, i64)> = match conn {
                        AnyConnection::Sqlite(c) => due.first(c).optional()?,
                        AnyConnection::Postgresql(c) => diesel::sql_query(CLAIM_DUE_REMINDER)
                            .bind::<BigInt, _>(at)
                            .get_result::<DueReminder>(c)
                            .optional()?
                            .map(|due| (due.task_id, due.fire_at)),
                    };
                    let Some((task_id, fire_at)) = due else {
                        return Ok(None);
                    };
                    diesel::update(task_reminders::table.find((&task_id, fire_at)))
                        .set(task_reminders::fired_at.eq(at))
                        .execute(conn)?;
                    let stored: Option<StoredTask> = tasks::table
                        .find(&task_id)
                        .select(StoredTask::as_select())
                        .first(conn)
                        .optional()?;
                    let Some(stored) = stored else {
                        return Ok(Some(Vec::new()));
                    };
                    let owner = stored.owner_id.clone();
                    let task = match stored.into_task() {
                        Ok(task) => task,
                        Err(error) => {
                            // Fired, and said: retrying a row that does not
                            // parse would hold up every reminder behind it.
                            tracing::warn!(target: "todo::reminders", task = %task_id, %error, "a due reminder's task does not parse; it is not sent");
                            return Ok(Some(Vec::new()));
                        }
                    };
                    let mut row = TaskRow::from_task(&task, &owner);
                    // Without its description (up to 40 KB): a reminder says
                    // which task, not all of it (the attack of #16 filled
                    // gigabytes with copies, when each member had one).
                    row.description.clear();
                    // (the members as they are under the project's share;
                    // unlocked themselves: a firing waits on no member)
                    let reach = Reach::members_now(conn, &row.project_id)?;
                    reach.record(conn, ChangeKind::ReminderDue, &row.id, Some(&row), at)?;
                    Ok(Some(reach.members))
                })
            })?;
            match fired {
                Some(members) => woken.extend(members),
                None => break,
            }
        }
        woken.sort_unstable();
        woken.dedup();
        woken
            .iter()
            .map(|m| UserId::parse(m).map_err(|_| corrupt("project member")))
            .collect()
    }

    fn changes_after(
        &self,
        owner: UserId,
        after: LogPosition,
        limit: usize,
    ) -> Result<ChangeLog, StoreError> {
        self.read_changes(owner, after, limit)
    }

    fn prune_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.prune_old_changes(before)
    }
}

/// Whether `caller` is a member of the task's project: the scope of every
/// read of tasks (one lookup on the membership's primary key).
#[diesel::dsl::auto_type]
fn seen_by<'a>(caller: &'a str) -> _ {
    diesel::dsl::exists(
        project_members::table
            .filter(project_members::project_id.eq(tasks::project_id))
            .filter(project_members::user_id.eq(caller)),
    )
}

/// The task with this id, as stored, if it is in a project `caller` is a
/// member of.
fn find_row(
    conn: &mut AnyConnection,
    caller: UserId,
    id: TaskId,
) -> QueryResult<Option<StoredTask>> {
    let (mut caller_text, mut id_text) = ([0u8; 36], [0u8; 36]);
    let caller = &*caller.as_uuid().hyphenated().encode_lower(&mut caller_text);
    let id = &*id.as_uuid().hyphenated().encode_lower(&mut id_text);
    native!(conn, |c| tasks::table
        .select(StoredTask::as_select())
        .filter(tasks::id.eq(id))
        .filter(seen_by(caller))
        .first(c)
        .optional())
}

/// The rows of [`TaskStore::list_tasks`]; `None`, with no task read, when
/// the list spans more than `max_projects` projects, and `None` once the
/// text the rows hold passes `budget` bytes (the read stops there).
fn list_rows(
    conn: &mut AnyConnection,
    caller: UserId,
    query: &TaskQuery,
    after: Option<&TaskCursor>,
    limit: usize,
    max_projects: usize,
    budget: usize,
) -> QueryResult<Option<Vec<StoredTask>>> {
    let caller = caller.to_string();
    let after = after.map(|c| (c.key, c.id.to_string()));
    let pattern = query.text.as_ref().map(|q| like_pattern(q.folded()));
    let parent = query.parent.map(|p| p.to_string());
    let filter = ListFilter {
        caller: &caller,
        query,
        parent: parent.as_deref(),
        label: query.label.as_ref().map(|l| l.as_str()),
        pattern: pattern.as_deref(),
        after: after.as_ref(),
        limit: i64::try_from(limit).unwrap_or(i64::MAX),
    };
    let range =
        |conn: &mut AnyConnection, project: &str| read_range(conn, &filter, project, limit, budget);
    // One project asked for: its range, read only while the caller is a
    // member of it, as every project's range is.
    if let Some(project) = query.project {
        return range(conn, &project.to_string());
    }
    // A parent's children: in its project (a subtask is always in its
    // parent's, and a task never changes project), one range; a parent the
    // caller does not see has no children they see.
    if let Some(parent) = filter.parent {
        let project: Option<String> = tasks::table
            .filter(tasks::id.eq(parent))
            .filter(seen_by(&caller))
            .select(tasks::project_id)
            .first(conn)
            .optional()?;
        return match project {
            Some(project) => range(conn, &project),
            None => Ok(Some(Vec::new())),
        };
    }
    // Most callers are members of a few projects (an Inbox, a few shared):
    // their ranges merged by the database in one statement, the memberships
    // read in it. That answers with a page only then: else (more projects,
    // none, or an empty list) the memberships are read. Not first for a
    // list that filters row by row, which may read whole ranges to find
    // nothing, and would then read them again: it is merged after the
    // memberships are read, below.
    if max_projects >= MERGED_PROJECTS && !query.scans() {
        let rows = merged(conn, &filter, limit, budget)?;
        if rows.as_ref().is_none_or(|rows| !rows.is_empty()) {
            return Ok(rows);
        }
    }
    // The memberships, the keys and the rows, in one snapshot, so that the
    // rows are those whose keys were merged (none changed, deleted or left
    // with its project meanwhile).
    conn.transaction(|conn| {
        if let AnyConnection::Postgresql(pg) = conn {
            // (the first statement of the transaction)
            pg.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        let projects = memberships(conn, &caller, max_projects.saturating_add(1))?;
        match projects.as_slice() {
            [] => return Ok(Some(Vec::new())),
            // Many projects are many reads: not in place, and not without
            // the slot the caller takes for them.
            _ if projects.len() > max_projects => return Ok(None),
            // One project: a list filtered row by row, or the caller's only
            // project was empty (or they left the others since that read).
            [project] => return range(conn, project),
            // A few: merged in one statement, which reads the memberships
            // again in this snapshot, so finds these (an empty page is the
            // answer, not a sign of a wide caller).
            few if few.len() <= MERGED_PROJECTS && max_projects >= MERGED_PROJECTS => {
                return merged(conn, &filter, limit, budget);
            }
            _ => {}
        }
        let keys = first_keys(conn, &projects, &filter)?;
        if keys.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
        let by_id = IdIn::new(&ids)?;
        // Scoped by the caller's memberships as every read is, though the
        // keys were.
        let rows = native!(&mut *conn, |c| tasks::table
            .select(StoredTask::as_select())
            .filter(by_id)
            .filter(seen_by(&caller))
            .load_iter::<StoredTask, diesel::connection::DefaultLoadingMode>(c)
            .and_then(|rows| within_budget(rows, ids.len(), budget)))?;
        let Some(mut rows) = rows else {
            return Ok(None);
        };
        if rows.len() != ids.len() {
            // In one snapshot, never: a page cut short would end the
            // client's walk with no error.
            return Err(diesel::result::Error::DeserializationError(
                "a listed task was not found again within the read's snapshot".into(),
            ));
        }
        // In the merged order (a page is at most a hundred rows).
        rows.sort_by_key(|row| ids.iter().position(|id| *id == row.id));
        Ok(Some(rows))
    })
}

/// The rows of one project's range, while `filter`'s caller is a member of
/// it, `None` once the text they hold passes `budget` bytes.
fn read_range<'a>(
    conn: &mut AnyConnection,
    filter: &ListFilter<'a>,
    project: &'a str,
    limit: usize,
    budget: usize,
) -> QueryResult<Option<Vec<StoredTask>>> {
    let rows = filter
        .tasks(project)
        .select(StoredTask::as_select())
        .load_iter::<StoredTask, diesel::connection::DefaultLoadingMode>(conn)?;
    within_budget(rows, limit, budget)
}

/// `$body` with `$page` the [`MergedPage`] of the [`ListFilter`] `$filter`
/// whose rows pass `$rows` (a [`RowFilter`]), and `$key` the type its sort
/// key is read as: a type of statement for each sort key, direction, first
/// or later page, and type of row filter.
macro_rules! with_merged_page {
    ($filter:expr, $rows:expr, |$page:ident, $key:ident| $body:expr) => {{
        let filter: &$crate::tasks::ListFilter<'_> = $filter;
        macro_rules! page {
            ($column:expr, $descending:literal, $after:expr) => {{
                let $page = $crate::tasks::MergedPage::<_, _, _, _, $descending> {
                    key: $column,
                    columns: $crate::tasks::StoredTask::as_select(),
                    caller: filter.caller,
                    archived: i16::from(filter.query.archived),
                    rows: $rows,
                    after: $after,
                    limit: filter.limit,
                };
                $body
            }};
        }
        macro_rules! sorted {
            ($column:expr, $cursor_key:expr) => {{
                let after = filter
                    .after
                    .map(|(key, id)| ($cursor_key(*key), id.as_str()));
                match (filter.query.sort.is_descending(), after) {
                    (false, None) => page!($column, false, $crate::tasks::FirstPage),
                    (true, None) => page!($column, true, $crate::tasks::FirstPage),
                    (false, Some((cursor_key, cursor_id))) => page!(
                        $column,
                        false,
                        $crate::tasks::RowAfter::<_, _, true> {
                            key: $column,
                            cursor_key,
                            cursor_id,
                        }
                    ),
                    (true, Some((cursor_key, cursor_id))) => page!(
                        $column,
                        true,
                        $crate::tasks::RowAfter::<_, _, false> {
                            key: $column,
                            cursor_key,
                            cursor_id,
                        }
                    ),
                }
            }};
        }
        match filter.query.sort {
            todo_core::TaskSort::CreatedAsc | todo_core::TaskSort::CreatedDesc => {
                type $key = i64;
                sorted!($crate::schema::tasks::created_at, |k: i64| k)
            }
            todo_core::TaskSort::DueAsc | todo_core::TaskSort::DueDesc => {
                type $key = i64;
                sorted!($crate::schema::tasks::due_key, |k: i64| k)
            }
            todo_core::TaskSort::PriorityAsc | todo_core::TaskSort::PriorityDesc => {
                type $key = i16;
                sorted!($crate::schema::tasks::priority, $crate::tasks::priority_key)
            }
        }
    }};
}

/// The rows of a page across the caller's projects, while they are a
/// member of [`MERGED_PROJECTS`] at most, in one statement ([`MergedPage`]):
/// at most a page of rows is taken from each project (a page in all;
/// with filters checked row by row, a range is read until a page of it
/// passes them, all of it if few do). `None` once the text they hold
/// passes `budget` bytes.
fn merged(
    conn: &mut AnyConnection,
    filter: &ListFilter<'_>,
    limit: usize,
    budget: usize,
) -> QueryResult<Option<Vec<StoredTask>>> {
    debug_assert!(
        filter.query.project.is_none(),
        "a merged page reads the caller's projects, not one"
    );
    macro_rules! load {
        ($c:ident, $page:ident, $key:ident) => {{
            let rows = $page
                .load_iter::<($key, StoredTask), diesel::connection::DefaultLoadingMode>($c)?;
            Ok(within_budget(rows, limit, budget)?.map(|mut rows| {
                // In the merge's order, by the keys the database cut the
                // page on, whatever order the statement gave the rows in.
                in_page_order(&mut rows, filter.query.sort.is_descending());
                rows.into_iter().map(|(_, task)| task).collect()
            }))
        }};
    }
    // On the backend's own connection: `AnyConnection` writes a query's
    // text on every read, even of a statement it keeps.
    if filter.query.scans() {
        let rows = QueryFilters::of(filter);
        native!(conn, |c| with_merged_page!(
            filter,
            rows,
            |page, Key| load!(c, page, Key)
        ))
    } else {
        native!(conn, |c| with_merged_page!(
            filter,
            EveryRow,
            |page, Key| load!(c, page, Key)
        ))
    }
}

/// Sorts `rows`, each a task with its sort key, by the key and then the id.
fn in_page_order<K: Ord>(rows: &mut [(K, StoredTask)], descending: bool) {
    rows.sort_unstable_by(|(a_key, a), (b_key, b)| {
        let ascending = (a_key, &a.id).cmp(&(b_key, &b.id));
        if descending {
            ascending.reverse()
        } else {
            ascending
        }
    });
}

/// A cursor's key as the priority sort's (a cursor is forged at will: one
/// out of range is clamped, never an error).
fn priority_key(key: i64) -> i16 {
    i16::try_from(key.clamp(i64::from(i16::MIN), i64::from(i16::MAX))).unwrap_or_default()
}

/// The projects `caller` is a member of, `most` of them at most (a list
/// wider than it allows needs to know no more than that).
fn memberships(conn: &mut AnyConnection, caller: &str, most: usize) -> QueryResult<Vec<String>> {
    let mine = project_members::table
        .filter(project_members::user_id.eq(caller))
        .select(project_members::project_id)
        .limit(i64::try_from(most).unwrap_or(i64::MAX));
    native!(&mut *conn, |c| mine.load::<String>(c))
}

/// The rows, or `None` once the text they hold passes `budget` bytes (the
/// read stops there).
fn within_budget<T: HeldText>(
    rows: impl Iterator<Item = QueryResult<T>>,
    limit: usize,
    budget: usize,
) -> QueryResult<Option<Vec<T>>> {
    // (`limit` is the client's, up to the page limit: no larger reservation.)
    let mut page = Vec::with_capacity(limit.min(usize::from(PageLimit::MAX) + 1));
    let mut held = 0usize;
    for row in rows {
        let row = row?;
        held = held.saturating_add(row.held_bytes());
        if held > budget {
            return Ok(None);
        }
        page.push(row);
    }
    Ok(Some(page))
}

/// The first `filter.limit` (sort key, id) of the projects' tasks, in the
/// sort's order: each project's from its own range of a sort index (at
/// most a page a project, however many tasks it holds; on SQLite with no
/// filter beyond the index's, from the index alone, the due key's
/// expression aside), merged as they come (at most two pages held). One
/// `IN (…)` would read and sort every task of every project, and reading
/// whole rows here would decode a page a project to keep one page.
fn first_keys(
    conn: &mut AnyConnection,
    projects: &[String],
    filter: &ListFilter<'_>,
) -> QueryResult<Vec<(i64, String)>> {
    let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    let descending = filter.query.sort.is_descending();
    let mut keys = Vec::new();
    for project in projects {
        let tasks = filter.tasks(project);
        match filter.query.sort {
            TaskSort::CreatedAsc | TaskSort::CreatedDesc => keys.extend(
                tasks
                    .select((tasks::created_at, tasks::id))
                    .load::<(i64, String)>(conn)?,
            ),
            TaskSort::DueAsc | TaskSort::DueDesc => keys.extend(
                tasks
                    .select((tasks::due_key, tasks::id))
                    .load::<(i64, String)>(conn)?,
            ),
            TaskSort::PriorityAsc | TaskSort::PriorityDesc => keys.extend(
                tasks
                    .select((tasks::priority, tasks::id))
                    .load::<(i16, String)>(conn)?
                    .into_iter()
                    .map(|(priority, id)| (i64::from(priority), id)),
            ),
        }
        if descending {
            keys.sort_unstable_by(|a, b| b.cmp(a));
        } else {
            keys.sort_unstable();
        }
        keys.truncate(limit);
    }
    Ok(keys)
}

/// `tasks.id` among `ids`, as one bound value however many they are
/// (diesel's `eq_any` binds one value an id on SQLite: a statement of its
/// own for each count, prepared anew every time).
struct IdIn<'a> {
    ids: &'a [&'a str],
    /// The ids as a JSON array, for SQLite's `json_each` (3.38 or later).
    json: String,
}

impl<'a> IdIn<'a> {
    /// Fails on an id that is not a task id (read from a corrupt row): the
    /// JSON is written unescaped.
    fn new(ids: &'a [&'a str]) -> QueryResult<Self> {
        let mut json = String::with_capacity(ids.len() * 39 + 2);
        json.push('[');
        for (n, id) in ids.iter().enumerate() {
            if TaskId::parse(id).is_err() {
                return Err(diesel::result::Error::DeserializationError(
                    "a stored task id that is no UUID".into(),
                ));
            }
            if n > 0 {
                json.push(',');
            }
            json.push('"');
            json.push_str(id);
            json.push('"');
        }
        json.push(']');
        Ok(Self { ids, json })
    }
}

impl diesel::expression::Expression for IdIn<'_> {
    type SqlType = diesel::sql_types::Bool;
}

impl diesel::expression::ValidGrouping<()> for IdIn<'_> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl diesel::expression::AppearsOnTable<tasks::table> for IdIn<'_> {}

impl QueryId for IdIn<'_> {
    type QueryId = IdIn<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<diesel::sqlite::Sqlite> for IdIn<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::sqlite::Sqlite>) -> QueryResult<()> {
        out.push_sql("tasks.id IN (SELECT value FROM json_each(");
        out.push_bind_param::<Text, str>(&self.json)?;
        out.push_sql("))");
        Ok(())
    }
}

impl QueryFragment<diesel::pg::Pg> for IdIn<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("tasks.id = ANY(");
        out.push_bind_param::<Array<Text>, [&str]>(self.ids)?;
        out.push_sql(")");
        Ok(())
    }
}

/// `(key, tasks.id) < (?, ?)` (`>` when `ASCENDING`): the rows after a
/// cursor in a sort's order, as a row value, which both planners seek a
/// sort index's range to (the `OR` of two comparisons is read from the
/// range's start, so a walk was quadratic, and a forged cursor at the end
/// of a run of equal keys read the run). Written here rather than with
/// `diesel::dsl::sql`, which marks a statement unsafe to cache: every later
/// page was prepared anew.
struct RowAfter<'a, K, V, const ASCENDING: bool> {
    /// The sort key's column (the cursor's key is bound as its type).
    key: K,
    /// The cursor's key and id.
    cursor_key: V,
    cursor_id: &'a str,
}

impl<K, V, const ASCENDING: bool> diesel::expression::Expression for RowAfter<'_, K, V, ASCENDING> {
    type SqlType = diesel::sql_types::Bool;
}

impl<K, V, const ASCENDING: bool> diesel::expression::ValidGrouping<()>
    for RowAfter<'_, K, V, ASCENDING>
{
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl<K: AppearsOnTable<tasks::table>, V, const ASCENDING: bool> AppearsOnTable<tasks::table>
    for RowAfter<'_, K, V, ASCENDING>
{
}

impl<K: AppearsOnTable<tasks::table>, V, const ASCENDING: bool> SelectableExpression<tasks::table>
    for RowAfter<'_, K, V, ASCENDING>
{
}

impl<K: QueryId, V: 'static, const ASCENDING: bool> QueryId for RowAfter<'_, K, V, ASCENDING> {
    type QueryId = RowAfter<'static, K::QueryId, V, ASCENDING>;
    const HAS_STATIC_QUERY_ID: bool = K::HAS_STATIC_QUERY_ID;
}

impl<DB, K, V, const ASCENDING: bool> QueryFragment<DB> for RowAfter<'_, K, V, ASCENDING>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<K::SqlType>
        + diesel::sql_types::HasSqlType<Text>,
    K: diesel::expression::Expression + QueryFragment<DB>,
    tasks::id: QueryFragment<DB>,
    V: diesel::serialize::ToSql<K::SqlType, DB>,
    str: diesel::serialize::ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("(");
        self.key.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        tasks::id.walk_ast(out.reborrow())?;
        out.push_sql(if ASCENDING { ") > (" } else { ") < (" });
        out.push_bind_param::<K::SqlType, V>(&self.cursor_key)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(self.cursor_id)?;
        out.push_sql(")");
        Ok(())
    }
}

/// A page across `caller`'s first [`MERGED_PROJECTS`] projects (by id),
/// while they are a member of that many at most, in one statement that
/// reads their memberships with their tasks (in its snapshot): one range a
/// project, `project_id = (the caller's nth project)`, a value each planner
/// computes once and seeks a sort index's range with (NULL for a project
/// they do not have, or for every one when they have more: nothing is
/// read), the ranges merged as they are read, in the order each index
/// gives (SQLite merges the arms of a compound `ORDER BY`, each in its
/// index's order, PostgreSQL a `UNION ALL` of ordered pages as a `Merge
/// Append`), up to
/// `limit` rows. Each row is the sort key, then the task's columns.
///
/// Its text depends on its type alone (the sort's key column, its
/// direction, whether a page starts after a cursor, and whether its rows
/// are filtered: [`RowFilter`]), so that diesel
/// keeps the prepared statement by type and never writes the text again
/// (a boxed query's text, here four ranges of 23 columns, is written on
/// every read to look its statement up), and it is run on the backend's
/// own connection: `AnyConnection` writes every query's text on every run.
struct MergedPage<'a, K, S, F, A, const DESCENDING: bool> {
    /// The sort key's column.
    key: K,
    /// The task's columns (`StoredTask::as_select()` for the backend).
    columns: S,
    caller: &'a str,
    archived: i16,
    /// What else a row must pass: [`EveryRow`], or the list's
    /// [`QueryFilters`].
    rows: F,
    /// Where the page starts: [`FirstPage`], or a [`RowAfter`] the cursor.
    after: A,
    limit: i64,
}

/// The offsets of the projects a [`MergedPage`] reads, and of the one
/// that makes a caller too wide for it (bound as values: a static, for
/// the bind's lifetime).
static PROJECT_OFFSETS: [i64; MERGED_PROJECTS + 1] = [0, 1, 2, 3, 4];

/// What a row of a [`MergedPage`] must pass beyond its range.
trait RowFilter<DB: diesel::backend::Backend>: QueryId {
    /// Writes the conditions on a range's rows (each ` AND …`), if any.
    fn walk_filter<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()>;
}

/// Every row of the ranges (a list that filters by nothing but
/// `archived`, which the sort indexes hold).
struct EveryRow;

impl QueryId for EveryRow {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: diesel::backend::Backend> RowFilter<DB> for EveryRow {
    fn walk_filter<'b>(&'b self, _out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        Ok(())
    }
}

/// The filters of a list checked row by row (`done`, `parent`, `label`,
/// `q`, `due_before`, `due_after`), each written whether the list has it
/// or not, as `(? IS NULL OR …)` with its value bound (NULL when the list
/// lacks it): one statement's text for every combination, so diesel keeps
/// one statement a sort and page type, where a text a combination would
/// be 64 of them. The conditions are [`ListFilter::tasks`]'s. (`parent`
/// is always NULL from `list_rows`, which reads a `parent=` list from its
/// parent's project alone; it stays so that the statement filters all
/// that `ListFilter::tasks` does, whoever calls it.)
struct QueryFilters<'a> {
    done: Option<i16>,
    parent: Option<&'a str>,
    label: Option<&'a str>,
    /// `q` as a `LIKE` pattern (escaped with `\`).
    pattern: Option<&'a str>,
    due_before: Option<i64>,
    due_after: Option<i64>,
}

impl<'a> QueryFilters<'a> {
    fn of(filter: &ListFilter<'a>) -> Self {
        // Every field named: a filter added to `TaskQuery` does not compile
        // until it is weighed here and in `TaskQuery::scans` (and, by
        // hand, in `ListFilter::tasks`).
        let TaskQuery {
            project: _,
            parent: _,
            done,
            archived: _,
            label: _,
            text: _,
            due_before,
            due_after,
            sort: _,
            limit: _,
        } = filter.query;
        Self {
            done: done.map(i16::from),
            parent: filter.parent,
            label: filter.label,
            pattern: filter.pattern,
            due_before: due_before.map(Timestamp::unix_micros),
            due_after: due_after.map(Timestamp::unix_micros),
        }
    }
}

impl QueryId for QueryFilters<'_> {
    type QueryId = QueryFilters<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// The `LIKE` escape character of `q`'s pattern ([`like_pattern`]), bound
/// (a literal `'\'` would depend on PostgreSQL's string settings).
static LIKE_ESCAPE: &str = "\\";

impl<DB> RowFilter<DB> for QueryFilters<'_>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::SmallInt>
        + diesel::sql_types::HasSqlType<Text>
        + diesel::sql_types::HasSqlType<BigInt>,
    Option<i16>:
        diesel::serialize::ToSql<diesel::sql_types::Nullable<diesel::sql_types::SmallInt>, DB>,
    for<'x> Option<&'x str>: diesel::serialize::ToSql<diesel::sql_types::Nullable<Text>, DB>,
    Option<i64>: diesel::serialize::ToSql<diesel::sql_types::Nullable<BigInt>, DB>,
    str: diesel::serialize::ToSql<Text, DB>,
{
    fn walk_filter<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        use diesel::sql_types::{Nullable, SmallInt};
        // ` AND (? IS NULL OR <before>?<after>)`, the value bound twice.
        macro_rules! either {
            ($ty:ty, $value:expr, $before:literal, $after:literal) => {
                out.push_sql(" AND (");
                out.push_bind_param::<Nullable<$ty>, _>($value)?;
                out.push_sql(concat!(" IS NULL OR ", $before));
                out.push_bind_param::<Nullable<$ty>, _>($value)?;
                out.push_sql($after);
            };
        }
        either!(SmallInt, &self.done, "tasks.done = ", ")");
        either!(Text, &self.parent, "tasks.parent_id = ", ")");
        either!(
            Text,
            &self.label,
            "EXISTS (SELECT 1 FROM task_labels WHERE task_labels.task_id = tasks.id \
             AND task_labels.label = ",
            "))"
        );
        either!(Text, &self.pattern, "tasks.search_text LIKE ", " ESCAPE ");
        out.push_bind_param::<Text, str>(LIKE_ESCAPE)?;
        out.push_sql(")");
        either!(BigInt, &self.due_before, "tasks.due_at < ", ")");
        either!(BigInt, &self.due_after, "tasks.due_at > ", ")");
        Ok(())
    }
}

/// Where a page of a [`MergedPage`] starts.
trait PageStart<DB: diesel::backend::Backend>: QueryId {
    /// Whether it seeks rows after a cursor in descending order, if it
    /// seeks at all (a page in one order may not seek in the other).
    const DESCENDING: Option<bool>;

    /// Writes the condition on a range's rows (` AND …`), if any.
    fn walk_condition<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()>;
}

/// A first page: every row of each range.
struct FirstPage;

impl QueryId for FirstPage {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: diesel::backend::Backend> PageStart<DB> for FirstPage {
    const DESCENDING: Option<bool> = None;

    fn walk_condition<'b>(&'b self, _out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        Ok(())
    }
}

impl<DB, K, V, const ASCENDING: bool> PageStart<DB> for RowAfter<'_, K, V, ASCENDING>
where
    DB: diesel::backend::Backend,
    Self: QueryFragment<DB> + QueryId,
{
    const DESCENDING: Option<bool> = Some(!ASCENDING);

    fn walk_condition<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(" AND ");
        self.walk_ast(out)
    }
}

/// The type a [`MergedPage`]'s statement is kept by: each of its parts'
/// (diesel finds a kept statement by this type alone, never by its text).
struct MergedPageId<K, S, F, A, const DESCENDING: bool>(std::marker::PhantomData<(K, S, F, A)>);

impl<K: QueryId, S: QueryId, F: QueryId, A: QueryId, const DESCENDING: bool> QueryId
    for MergedPage<'_, K, S, F, A, DESCENDING>
{
    type QueryId = MergedPageId<K::QueryId, S::QueryId, F::QueryId, A::QueryId, DESCENDING>;
    const HAS_STATIC_QUERY_ID: bool = K::HAS_STATIC_QUERY_ID
        && S::HAS_STATIC_QUERY_ID
        && F::HAS_STATIC_QUERY_ID
        && A::HAS_STATIC_QUERY_ID;
}

impl<K, S, F, A, const DESCENDING: bool> Query for MergedPage<'_, K, S, F, A, DESCENDING>
where
    (K, S): diesel::expression::Expression,
{
    type SqlType = <(K, S) as diesel::expression::Expression>::SqlType;
}

impl<K, S, F, A, const DESCENDING: bool> MergedPage<'_, K, S, F, A, DESCENDING> {
    /// Writes the ranges as the arms of a `UNION ALL`, each arm's rows the
    /// sort key (`k`), then `rest`: the task's columns, or (SQLite) its id
    /// and rowid (`r`), the id named `id` either way (the order names it);
    /// each arm a page in the sort's order of its own if `ordered_arms`.
    fn walk_merge<'b, DB>(
        &'b self,
        mut out: AstPass<'_, 'b, DB>,
        rest: fn(&'b Self, AstPass<'_, 'b, DB>) -> QueryResult<()>,
        ordered_arms: bool,
    ) -> QueryResult<()>
    where
        DB: diesel::backend::Backend
            + diesel::sql_types::HasSqlType<diesel::sql_types::SmallInt>
            + diesel::sql_types::HasSqlType<Text>
            + diesel::sql_types::HasSqlType<BigInt>,
        i16: diesel::serialize::ToSql<diesel::sql_types::SmallInt, DB>,
        str: diesel::serialize::ToSql<Text, DB>,
        i64: diesel::serialize::ToSql<BigInt, DB>,
        K: QueryFragment<DB>,
        F: RowFilter<DB>,
        A: PageStart<DB>,
    {
        // (Checked as each type of page is compiled.)
        const {
            assert!(
                !matches!(A::DESCENDING, Some(d) if d != DESCENDING),
                "a page seeks in its own order"
            );
        }
        for (n, offset) in PROJECT_OFFSETS[..MERGED_PROJECTS].iter().enumerate() {
            if n > 0 {
                out.push_sql(" UNION ALL ");
            }
            out.push_sql(if ordered_arms { "(SELECT " } else { "SELECT " });
            self.key.walk_ast(out.reborrow())?;
            out.push_sql(" AS k, ");
            rest(self, out.reborrow())?;
            out.push_sql(" FROM tasks WHERE tasks.archived = ");
            out.push_bind_param::<diesel::sql_types::SmallInt, i16>(&self.archived)?;
            // (Both lookups seek `project_members_by_user`.)
            out.push_sql(
                " AND tasks.project_id = (SELECT project_id FROM project_members \
                 WHERE user_id = ",
            );
            out.push_bind_param::<Text, str>(self.caller)?;
            out.push_sql(" AND ");
            self.walk_narrow_enough(out.reborrow())?;
            out.push_sql(" ORDER BY project_id LIMIT 1 OFFSET ");
            out.push_bind_param::<BigInt, i64>(offset)?;
            out.push_sql(")");
            self.rows.walk_filter(out.reborrow())?;
            self.after.walk_condition(out.reborrow())?;
            if ordered_arms {
                self.walk_order(out.reborrow())?;
                out.push_sql(")");
            }
        }
        Ok(())
    }

    /// Writes the page's order (by the key, then the id, by their names:
    /// no column's place in [`StoredTask`] matters) and its limit.
    fn walk_order<'b, DB>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        DB: diesel::backend::Backend + diesel::sql_types::HasSqlType<BigInt>,
        i64: diesel::serialize::ToSql<BigInt, DB>,
    {
        out.push_sql(if DESCENDING {
            " ORDER BY k DESC, id DESC LIMIT "
        } else {
            " ORDER BY k, id LIMIT "
        });
        out.push_bind_param::<BigInt, i64>(&self.limit)
    }

    /// Writes "the caller is a member of [`MERGED_PROJECTS`] projects at
    /// most".
    fn walk_narrow_enough<'b, DB>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        DB: diesel::backend::Backend
            + diesel::sql_types::HasSqlType<Text>
            + diesel::sql_types::HasSqlType<BigInt>,
        str: diesel::serialize::ToSql<Text, DB>,
        i64: diesel::serialize::ToSql<BigInt, DB>,
    {
        out.push_sql("(SELECT project_id FROM project_members WHERE user_id = ");
        out.push_bind_param::<Text, str>(self.caller)?;
        out.push_sql(" ORDER BY project_id LIMIT 1 OFFSET ");
        out.push_bind_param::<BigInt, i64>(&PROJECT_OFFSETS[MERGED_PROJECTS])?;
        out.push_sql(") IS NULL");
        Ok(())
    }
}

/// On SQLite the arms merge the keys alone (a task's id and rowid, read
/// from the sort index), and the page's rows are then read by rowid: a
/// merge copies each row it holds (every text column an allocation,
/// under SQLite's global allocator mutex), and one of whole rows cost a
/// list a sixth more than reading one range. The rows come in the merge's
/// order (the merge is the outer loop), and are sorted again by the
/// caller, which no text promises.
impl<K, S, F, A, const DESCENDING: bool> QueryFragment<diesel::sqlite::Sqlite>
    for MergedPage<'_, K, S, F, A, DESCENDING>
where
    K: QueryFragment<diesel::sqlite::Sqlite>,
    S: QueryFragment<diesel::sqlite::Sqlite>,
    F: RowFilter<diesel::sqlite::Sqlite>,
    A: PageStart<diesel::sqlite::Sqlite>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::sqlite::Sqlite>) -> QueryResult<()> {
        out.push_sql("SELECT m.k, ");
        self.columns.walk_ast(out.reborrow())?;
        out.push_sql(" FROM (");
        self.walk_merge(
            out.reborrow(),
            |_, mut out| {
                out.push_sql("tasks.id AS id, tasks.rowid AS r");
                Ok(())
            },
            false,
        )?;
        self.walk_order(out.reborrow())?;
        out.push_sql(") AS m CROSS JOIN tasks ON tasks.rowid = m.r");
        Ok(())
    }
}

/// On PostgreSQL the arms are whole rows, merged by a `Merge Append`, each
/// a page in the sort's order of its own: the planner plans an arm with
/// no order and no limit of its own as if all its rows were wanted (by a
/// scan of the table, then a sort of all of them).
impl<K, S, F, A, const DESCENDING: bool> QueryFragment<diesel::pg::Pg>
    for MergedPage<'_, K, S, F, A, DESCENDING>
where
    K: QueryFragment<diesel::pg::Pg>,
    S: QueryFragment<diesel::pg::Pg>,
    F: RowFilter<diesel::pg::Pg>,
    A: PageStart<diesel::pg::Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("SELECT * FROM (");
        self.walk_merge(out.reborrow(), |page, out| page.columns.walk_ast(out), true)?;
        out.push_sql(") AS m");
        self.walk_order(out)
    }
}

impl<K, S, F, A, const DESCENDING: bool, C> RunQueryDsl<C>
    for MergedPage<'_, K, S, F, A, DESCENDING>
{
}

/// The backend of [`AnyConnection`]: the one query serves both databases.
type AnyBackend = <AnyConnection as Connection>::Backend;

/// What a list read asks of the tasks, but their projects.
struct ListFilter<'a> {
    /// Whose list: each project's range is read while they are a member.
    caller: &'a str,
    query: &'a TaskQuery,
    parent: Option<&'a str>,
    label: Option<&'a str>,
    /// `query.text` as a `LIKE` pattern.
    pattern: Option<&'a str>,
    /// The cursor's sort key and id.
    after: Option<&'a (i64, String)>,
    limit: i64,
}

impl<'a> ListFilter<'a> {
    /// The tasks of `project` the filter asks for, in its order, at most
    /// its limit: built once for both databases (and for the query-plan
    /// tests); the caller selects the columns.
    fn tasks(&self, project: &'a str) -> tasks::BoxedQuery<'a, AnyBackend> {
        let Self {
            caller,
            query,
            parent,
            label,
            pattern,
            after,
            limit,
        } = *self;
        let mut q = tasks::table
            .filter(tasks::archived.eq(i16::from(query.archived)))
            .limit(limit)
            .into_boxed();
        // The project, while the caller is a member of it (the memberships
        // may have been read by an earlier statement): `project_id = (the
        // membership's project)`, a value each planner computes once and
        // seeks the sort index's range with, so that for one no longer a
        // member it is NULL and nothing is read. (Not with `project_id = ?`
        // beside it: SQLite seeks with that one and then compares every row
        // with the membership; nor as `EXISTS`, checked row by row.)
        q = q.filter(
            tasks::project_id.nullable().eq(project_members::table
                .filter(project_members::project_id.eq(project))
                .filter(project_members::user_id.eq(caller))
                .select(project_members::project_id)
                .single_value()),
        );
        if let Some(done) = query.done {
            q = q.filter(tasks::done.eq(i16::from(done)));
        }
        if let Some(parent) = parent {
            q = q.filter(tasks::parent_id.eq(parent));
        }
        if let Some(label) = label {
            q = q.filter(diesel::dsl::exists(
                task_labels::table
                    .filter(task_labels::task_id.eq(tasks::id))
                    .filter(task_labels::label.eq(label)),
            ));
        }
        if let Some(pattern) = pattern {
            q = q.filter(tasks::search_text.like(pattern).escape('\\'));
        }
        if let Some(before) = query.due_before {
            q = q.filter(tasks::due_at.lt(before.unix_micros()));
        }
        if let Some(since) = query.due_after {
            q = q.filter(tasks::due_at.gt(since.unix_micros()));
        }
        // Keyset pagination: rows after (key, id) of the cursor, in the
        // sort's direction, ties broken by id, as a row value each planner
        // seeks the sort index's range to (the due key is a generated
        // column for this: SQLite seeks no row value to an expression).
        macro_rules! keyset {
            ($key:expr, $cursor_key:expr) => {{
                let cursor = after.map(|(key, id)| ($cursor_key(*key), id.as_str()));
                if query.sort.is_descending() {
                    if let Some((cursor_key, cursor_id)) = cursor {
                        q = q.filter(RowAfter::<_, _, false> {
                            key: $key,
                            cursor_key,
                            cursor_id,
                        });
                    }
                    q.order_by(($key.desc(), tasks::id.desc()))
                } else {
                    if let Some((cursor_key, cursor_id)) = cursor {
                        q = q.filter(RowAfter::<_, _, true> {
                            key: $key,
                            cursor_key,
                            cursor_id,
                        });
                    }
                    q.order_by(($key.asc(), tasks::id.asc()))
                }
            }};
        }
        match query.sort {
            TaskSort::CreatedAsc | TaskSort::CreatedDesc => keyset!(tasks::created_at, |k: i64| k),
            TaskSort::DueAsc | TaskSort::DueDesc => keyset!(tasks::due_key, |k: i64| k),
            TaskSort::PriorityAsc | TaskSort::PriorityDesc => {
                keyset!(tasks::priority, priority_key)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    /// `tasks.due_key`, the due sort's key, is generated by each
    /// database from the value the core sorts undated tasks by.
    #[test]
    fn the_due_key_puts_undated_tasks_where_the_core_does() {
        let undated = format!("COALESCE(due_at, {})", todo_core::TaskSort::NO_DUE_DATE);
        for migration in [
            include_str!("../migrations/sqlite/2026-12-05-000150_due_key/up.sql"),
            include_str!("../migrations/postgres/2026-12-05-000150_due_key/up.sql"),
        ] {
            assert!(
                migration.contains(&format!("GENERATED ALWAYS AS ({undated})")),
                "{migration}"
            );
        }
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("plain"), "%plain%");
    }
}

/// Each statement of a task's creation is prepared once per connection and
/// kept in diesel's statement cache: parsing and planning one again on
/// every creation cost 8% of it on SQLite. (diesel leaves some statements
/// out of its cache, silently: upserts, updates, inserts of a `Vec`.)
#[cfg(test)]
mod statement_cache {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use diesel::connection::{Connection as _, InstrumentationEvent};
    use todo_core::testing::SeededRandom;
    use todo_core::{
        Description, Labels, PasswordHash, Priority, Role, Task, TaskId, TaskStore as _,
        TaskVersion, Timestamp, Title, User, UserId, UserRecord, UserStore as _, Username, new_v7,
    };

    use crate::db::AnyConnection;
    use crate::testing::TestDatabase;
    use crate::{SqlStore, StoreConfig};

    #[derive(Default)]
    struct Seen {
        /// The statements run, as SQL text (binds aside).
        run: Vec<String>,
        /// The statements put in the cache.
        cached: BTreeSet<String>,
    }

    fn watch(conn: &mut AnyConnection, seen: &Arc<Mutex<Seen>>) {
        let seen = seen.clone();
        let instrument = move |event: InstrumentationEvent<'_>| match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                let text = query.to_string();
                let sql = text.split(" -- binds:").next().unwrap_or_default();
                seen.lock().unwrap().run.push(sql.trim().to_owned());
            }
            InstrumentationEvent::CacheQuery { sql, .. } => {
                seen.lock().unwrap().cached.insert(sql.trim().to_owned());
            }
            _ => {}
        };
        native!(conn, |c| c.set_instrumentation(instrument.clone()));
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_767_225_600_000_000 + seconds * 1_000_000).unwrap()
    }

    fn id_at(seconds: i64, seed: u64) -> uuid::Uuid {
        new_v7(at(seconds), &SeededRandom::new(seed)).unwrap()
    }

    fn task(owner: UserId, n: u64) -> Task {
        Task {
            id: TaskId::from_uuid(id_at(100 + n as i64, n)),
            project: todo_core::ProjectId::inbox_of(owner),
            created_by: owner,
            parent: None,
            recurrence: None,
            time_zone: todo_core::TimeZoneName::utc(),
            series: None,
            reminders: todo_core::Reminders::default(),
            title: Title::parse(&format!("Task {n}")).unwrap(),
            description: Description::parse("").unwrap(),
            done: false,
            completed_at: None,
            // Every other task has no due time, and each a different number
            // of labels: none of it may change a statement's text.
            due_at: n.is_multiple_of(2).then(|| at(5_000)),
            priority: Priority::new((n % 4) as i64).unwrap(),
            labels: Labels::parse(["home", "work", "errands"].into_iter().take(match n {
                0 => 2,
                1 => 1,
                2 => 3,
                _ => 0,
            }))
            .unwrap(),
            archived: false,
            created_at: at(100),
            updated_at: at(100),
            version: TaskVersion::FIRST,
        }
    }

    /// A store of `database` with one pooled connection, so that every
    /// read or write runs on the one watched.
    fn one_connection(database: &TestDatabase) -> SqlStore {
        SqlStore::open(&StoreConfig {
            max_connections: 1,
            ..database.config.clone()
        })
        .unwrap()
    }

    /// The `n`th project of `owner`'s, a shed, in `store`.
    fn shed(store: &SqlStore, owner: UserId, n: u64) -> todo_core::Project {
        let project = todo_core::Project {
            id: todo_core::ProjectId::from_uuid(id_at(50 + n as i64, 0x9e0 + n)),
            owner,
            name: todo_core::ProjectName::parse("Shed").unwrap(),
            description: Description::parse("").unwrap(),
            color: None,
            inbox: false,
            archived: false,
            created_at: at(50),
            updated_at: at(50),
            version: todo_core::TaskVersion::FIRST,
        };
        assert!(todo_core::ProjectStore::insert_project_within(store, &project, None).unwrap());
        project
    }

    /// A user, alice, in `store` (and so her Inbox).
    fn alice(store: &SqlStore) -> UserId {
        user(store, "alice", 1)
    }

    /// A user named `name` in `store`.
    fn user(store: &SqlStore, name: &str, seed: u64) -> UserId {
        let owner = UserId::from_uuid(id_at(1, seed));
        store
            .insert_user(&UserRecord {
                user: User {
                    id: owner,
                    username: Username::parse(name).unwrap(),
                    email: None,
                    email_verified: false,
                    role: Role::User,
                    disabled: false,
                    created_at: at(1),
                    updated_at: at(1),
                },
                password_hash: PasswordHash::new(format!("$fake${name}")),
                tokens_revoked_before: None,
            })
            .unwrap();
        owner
    }

    /// The statements of `run` but the transactions' own.
    fn statements(run: &[String]) -> impl Iterator<Item = &String> {
        run.iter().filter(|sql| {
            !["SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK"]
                .iter()
                .any(|control| sql.to_uppercase().starts_with(control))
        })
    }

    /// The statements of `run` not among those `cached`: prepared anew.
    /// A trim's are left out: it runs on one write in `TRIM_EVERY`, drawn
    /// at random, so any creation may run them (prepared each time, as
    /// every `sql_query` is).
    fn prepared_again<'a>(run: &'a [String], cached: &BTreeSet<String>) -> Vec<&'a String> {
        statements(run)
            .filter(|sql| !cached.contains(sql.as_str()))
            .filter(|sql| {
                !crate::changes::TRIM_STATEMENTS
                    .iter()
                    .any(|trim| sql.starts_with(trim))
            })
            .collect()
    }

    fn creations_reuse_their_statements(store: &SqlStore) {
        let owner = alice(store);
        let seen = Arc::new(Mutex::new(Seen::default()));
        store
            .with_write_conn(|conn| {
                watch(conn, &seen);
                Ok(())
            })
            .unwrap();
        // The first creation of the connection prepares; the later ones
        // must find every statement they run in the cache.
        assert_eq!(
            store
                .insert_task_within(&task(owner, 0), Some(100), &mut |_| true)
                .unwrap(),
            todo_core::TaskInsert::Inserted
        );
        let cached_by_the_first = {
            let mut seen = seen.lock().unwrap();
            seen.run.clear();
            std::mem::take(&mut seen.cached)
        };
        for n in 1..4 {
            assert_eq!(
                store
                    .insert_task_within(&task(owner, n), Some(100), &mut |_| true)
                    .unwrap(),
                todo_core::TaskInsert::Inserted
            );
        }
        let mut guard = seen.lock().unwrap();
        let seen_once = &mut *guard;
        assert!(
            seen_once.cached.is_empty(),
            "cached anew by a later creation: {:#?}",
            seen_once.cached
        );
        assert!(
            statements(&seen_once.run).count() >= 4,
            "{:#?}",
            seen_once.run
        );
        let again = prepared_again(&seen_once.run, &cached_by_the_first);
        assert!(again.is_empty(), "prepared on every creation: {again:#?}");
        let mut cached = cached_by_the_first;
        drop(guard);

        // In a project of three members: nothing prepared again.
        let project = shed(store, owner, 0);
        for (name, seed) in [("bob", 2), ("carol", 3)] {
            let member = todo_core::Member {
                user: user(store, name, seed),
                role: todo_core::ProjectRole::Editor,
                added_at: at(60),
            };
            let put =
                todo_core::ProjectStore::put_member(store, project.id, &member, 10, 100, at(60));
            assert!(matches!(put.unwrap(), todo_core::MemberPut::Added(_)));
        }
        let in_shed = |n: u64| Task {
            project: project.id,
            ..task(owner, 20 + n)
        };
        let create = |n: u64| {
            assert_eq!(
                store
                    .insert_task_within(&in_shed(n), Some(100), &mut |_| true)
                    .unwrap(),
                todo_core::TaskInsert::Inserted
            );
        };
        create(0);
        {
            let mut seen = seen.lock().unwrap();
            seen.run.clear();
            cached.append(&mut seen.cached);
        }
        for n in 1..4 {
            create(n);
        }
        let seen = seen.lock().unwrap();
        assert!(
            seen.cached.is_empty(),
            "cached anew by a later creation: {:#?}",
            seen.cached
        );
        // (a statement diesel never keeps is prepared at every run, and
        // says nothing of it: each must be one the first creations kept)
        let again = prepared_again(&seen.run, &cached);
        assert!(again.is_empty(), "prepared on every creation: {again:#?}");
        let count = |prefix: &str| {
            let unquoted = seen.run.iter().map(|sql| sql.replace(['`', '"'], ""));
            unquoted.filter(|sql| sql.starts_with(prefix)).count()
        };
        // Recorded once, whatever the members: the owner's count and the
        // project's change, one each a creation.
        assert_eq!(count("INSERT INTO change_streams"), 3, "{:#?}", seen.run);
        assert_eq!(count("INSERT INTO change_log"), 3, "{:#?}", seen.run);
    }

    /// Lists of a caller in one project (an Inbox), then in three and four:
    /// one statement each, first and later pages of every sort, each
    /// prepared once; in five, more (the memberships are read).
    fn lists_reuse_their_statements(store: &SqlStore) {
        let owner = alice(store);
        for n in 0..6 {
            store
                .insert_task_within(&task(owner, n), Some(100), &mut |_| true)
                .unwrap();
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        store
            .with_conn(|conn| {
                watch(conn, &seen);
                Ok(())
            })
            .unwrap();
        let list_all = || {
            for sort in todo_core::TaskSort::ALL {
                let query = todo_core::TaskQuery {
                    sort,
                    ..todo_core::TaskQuery::default()
                };
                let first = store.list_tasks(owner, &query, None, 2).unwrap();
                assert_eq!(first.len(), 2, "{sort:?}");
                let after = query.cursor_after(&first[1]);
                let later = store.list_tasks(owner, &query, Some(&after), 2).unwrap();
                assert_eq!(later.len(), 2, "{sort:?}");
            }
        };
        list_all();
        let cached_by_the_first = {
            let mut seen = seen.lock().unwrap();
            assert_eq!(seen.run.len(), 12, "one statement a list: {:#?}", seen.run);
            seen.run.clear();
            std::mem::take(&mut seen.cached)
        };
        assert!(!cached_by_the_first.is_empty());
        let one_statement_a_list = |projects: usize| {
            list_all();
            let mut seen = seen.lock().unwrap();
            assert_eq!(
                seen.run.len(),
                12,
                "one statement a list in {projects} projects: {:#?}",
                seen.run
            );
            assert!(
                seen.cached.is_empty(),
                "prepared again by a later list: {:#?}",
                seen.cached
            );
            seen.run.clear();
        };
        one_statement_a_list(1);
        // In another project, with two tasks in it.
        let join_one_more = |n: u64| {
            let project = shed(store, owner, n);
            for m in 0..2 {
                let task = Task {
                    project: project.id,
                    ..task(owner, 10 + 2 * n + m)
                };
                store
                    .insert_task_within(&task, Some(100), &mut |_| true)
                    .unwrap();
            }
            let mut seen = seen.lock().unwrap();
            seen.run.clear();
            seen.cached.clear();
        };
        // In three projects, then in four (as many as a merged read
        // holds): the same statement, one a list, never prepared again.
        join_one_more(0);
        join_one_more(1);
        one_statement_a_list(3);
        join_one_more(2);
        one_statement_a_list(4);
        // Lists filtered row by row, in four projects: the memberships
        // read, then one merged statement whatever the filters (bound, not
        // written: one text a sort), kept from the first round on; an
        // empty page is the answer (nothing read again).
        let filtered_all = || {
            for sort in todo_core::TaskSort::ALL {
                for query in [
                    todo_core::TaskQuery {
                        done: Some(false),
                        ..todo_core::TaskQuery::default()
                    },
                    todo_core::TaskQuery {
                        done: Some(true),
                        text: Some(todo_core::SearchText::parse("no such").unwrap()),
                        ..todo_core::TaskQuery::default()
                    },
                ] {
                    let query = todo_core::TaskQuery { sort, ..query };
                    let page = store.list_tasks(owner, &query, None, 2).unwrap();
                    if query.done == Some(false) {
                        // And a later page (a statement of its own type).
                        assert_eq!(page.len(), 2);
                        let after = query.cursor_after(&page[1]);
                        let later = store.list_tasks(owner, &query, Some(&after), 2).unwrap();
                        assert_eq!(later.len(), 2, "{sort:?}");
                    } else {
                        assert!(page.is_empty());
                    }
                }
            }
        };
        for round in 0..2 {
            filtered_all();
            let mut seen = seen.lock().unwrap();
            let merged = seen.run.iter().filter(|sql| sql.contains("UNION ALL"));
            assert_eq!(merged.count(), 18, "{round}: {:#?}", seen.run);
            assert!(
                seen.run.len() <= 18 * 5,
                "{round}: the memberships, the merge, the transaction (and on \
                 PostgreSQL its isolation): {:#?}",
                seen.run
            );
            if round > 0 {
                assert!(seen.cached.is_empty(), "prepared again: {:#?}", seen.cached);
            }
            seen.run.clear();
            seen.cached.clear();
        }
        // In five: the merged read finds them too wide (it reads nothing),
        // and the memberships are read.
        join_one_more(3);
        list_all();
        {
            let seen = seen.lock().unwrap();
            assert!(seen.run.len() > 12, "{:#?}", seen.run);
            assert!(
                seen.run.iter().any(|sql| !sql.contains("UNION ALL")),
                "{:#?}",
                seen.run
            );
        }
        seen.lock().unwrap().run.clear();
        // A list filtered row by row that finds nothing (no task is done)
        // does not try the merged read first: it would read the whole
        // ranges twice.
        let done = todo_core::TaskQuery {
            done: Some(true),
            ..todo_core::TaskQuery::default()
        };
        assert!(store.list_tasks(owner, &done, None, 2).unwrap().is_empty());
        {
            let run = &mut seen.lock().unwrap().run;
            assert!(!run.is_empty());
            assert!(!run.iter().any(|sql| sql.contains("UNION ALL")), "{run:#?}");
            run.clear();
        }
        // A list of one parent's children, of a caller in five projects:
        // the parent's project is read, then that project's range alone.
        let parent = task(owner, 40);
        let children: Vec<Task> = (41..43)
            .map(|n| Task {
                parent: Some(parent.id),
                ..task(owner, n)
            })
            .collect();
        for task in std::iter::once(&parent).chain(&children) {
            store
                .insert_task_within(task, Some(100), &mut |_| true)
                .unwrap();
        }
        seen.lock().unwrap().run.clear();
        let of_parent = todo_core::TaskQuery {
            parent: Some(parent.id),
            ..todo_core::TaskQuery::default()
        };
        let listed = store.list_tasks(owner, &of_parent, None, 10).unwrap();
        let mut ids: Vec<TaskId> = listed.iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, [children[0].id, children[1].id]);
        let stranger = user(store, "zed", 9);
        let theirs = store.list_tasks(stranger, &of_parent, None, 10).unwrap();
        assert!(theirs.is_empty(), "a parent they do not see: no children");
        let run = &seen.lock().unwrap().run;
        let reads: Vec<&String> = run.iter().filter(|sql| sql.starts_with("SELECT")).collect();
        assert_eq!(
            reads.len(),
            3,
            "the parent's project, then its range; the stranger's look: {run:#?}"
        );
        assert!(
            !reads.iter().any(|sql| sql.contains("UNION ALL")),
            "{run:#?}"
        );
    }

    #[test]
    fn sqlite_lists_prepare_each_statement_once() {
        lists_reuse_their_statements(&one_connection(&TestDatabase::sqlite()));
    }

    #[test]
    fn postgres_lists_prepare_each_statement_once() {
        let Some(database) = TestDatabase::postgres() else {
            return;
        };
        lists_reuse_their_statements(&one_connection(&database));
    }

    #[test]
    fn sqlite_creations_prepare_each_statement_once() {
        creations_reuse_their_statements(&TestDatabase::sqlite().store);
    }

    #[test]
    fn postgres_creations_prepare_each_statement_once() {
        let Some(database) = TestDatabase::postgres() else {
            return;
        };
        creations_reuse_their_statements(&one_connection(&database));
    }
}

/// Every sort order is served by an index: the list query reads the owner's
/// tasks in index order and stops at the page's end, instead of sorting all
/// of them first. Checked on the planner's own account of the query, as
/// built for the store (binds included), on SQLite and PostgreSQL.
#[cfg(test)]
mod plans {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::marker::PhantomData;

    use diesel::prelude::*;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::{Integer, Text};
    use todo_core::{TaskQuery, TaskSort};

    use super::{AnyBackend, IdIn, ListFilter, MERGED_PROJECTS, StoredTask};
    use crate::db::AnyConnection;
    use crate::schema::tasks;

    const SORTS: [TaskSort; 6] = TaskSort::ALL;

    /// `prefix` (`EXPLAIN …`) followed by the query, with the query's binds.
    struct Explain<Q, ST> {
        prefix: &'static str,
        query: Q,
        rows: PhantomData<ST>,
    }

    impl<Q, ST> QueryId for Explain<Q, ST> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<DB: diesel::backend::Backend, Q: QueryFragment<DB>, ST> QueryFragment<DB> for Explain<Q, ST> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
            out.push_sql(self.prefix);
            self.query.walk_ast(out.reborrow())
        }
    }

    impl<Q, ST> Query for Explain<Q, ST> {
        type SqlType = ST;
    }

    impl<Q, ST, C> RunQueryDsl<C> for Explain<Q, ST> {}

    /// The plan of the list query for `sort` (the first page, or a later
    /// one), one line of text a step: of the whole rows, or (`keys`) of
    /// the sort keys a read of many projects merges, of a project the
    /// caller is a member of; or (`merged`) of the caller's first projects
    /// merged in one statement.
    fn plan(
        conn: &mut AnyConnection,
        sort: TaskSort,
        later_page: bool,
        keys: bool,
        merged: bool,
        filtered: bool,
    ) -> Vec<String> {
        let query = TaskQuery {
            sort,
            ..TaskQuery::default()
        };
        // Every filter checked row by row, for a merged read's `filtered`.
        let filters = super::QueryFilters {
            done: Some(0),
            parent: Some("0190a5d1-0000-7000-8000-000000000003"),
            label: Some("work"),
            pattern: Some("%milk%"),
            due_before: Some(2),
            due_after: Some(1),
        };
        let project = "0190a5d1-0000-7000-8000-000000000001";
        let after = (0_i64, "0190a5d1-0000-7000-8000-000000000002".to_owned());
        let filter = ListFilter {
            caller: "0190a5d1-0000-7000-8000-00000000000a",
            query: &query,
            parent: None,
            label: None,
            pattern: None,
            after: later_page.then_some(&after),
            limit: 51,
        };
        if merged {
            return if filtered {
                super::native!(conn, |c| with_merged_page!(
                    &filter,
                    filters,
                    |page, _Key| c.plan_of(page)
                ))
            } else {
                super::native!(conn, |c| with_merged_page!(
                    &filter,
                    super::EveryRow,
                    |page, _Key| c.plan_of(page)
                ))
            };
        }
        let tasks = filter.tasks(project);
        if keys {
            match sort {
                TaskSort::CreatedAsc | TaskSort::CreatedDesc => {
                    explain(conn, tasks.select((tasks::created_at, tasks::id)))
                }
                TaskSort::DueAsc | TaskSort::DueDesc => {
                    explain(conn, tasks.select((tasks::due_key, tasks::id)))
                }
                TaskSort::PriorityAsc | TaskSort::PriorityDesc => {
                    explain(conn, tasks.select((tasks::priority, tasks::id)))
                }
            }
        } else {
            explain(conn, tasks.select(StoredTask::as_select()))
        }
    }

    /// Whether a step of SQLite's plan seeks a sort index's range to the
    /// cursor's key and id as a row value (`… AND (created_at,id)<(?,?))`),
    /// rather than reading it, or a run of equal keys, from its start.
    fn seeks_past_the_cursor(step: &str, sort: TaskSort) -> bool {
        let key = key_column(sort);
        let bound = if sort.is_descending() {
            "<(?,?))"
        } else {
            ">(?,?))"
        };
        step.contains("INDEX tasks_by_project_") && step.ends_with(&format!("({key},id){bound}"))
    }

    /// The column `sort` orders by, as a plan names it.
    fn key_column(sort: TaskSort) -> &'static str {
        match sort {
            TaskSort::CreatedAsc | TaskSort::CreatedDesc => "created_at",
            TaskSort::DueAsc | TaskSort::DueDesc => "due_key",
            TaskSort::PriorityAsc | TaskSort::PriorityDesc => "priority",
        }
    }

    /// The plan of a statement written for the backend's own connection
    /// (as the store runs it).
    trait Plan: Connection {
        fn plan_of(&mut self, q: impl QueryFragment<Self::Backend>) -> Vec<String>;
    }

    impl Plan for diesel::SqliteConnection {
        fn plan_of(&mut self, q: impl QueryFragment<Self::Backend>) -> Vec<String> {
            let explain = Explain::<_, (Integer, Integer, Integer, Text)> {
                prefix: "EXPLAIN QUERY PLAN ",
                query: q,
                rows: PhantomData,
            };
            let steps = explain.load::<(i32, i32, i32, String)>(self).unwrap();
            steps.into_iter().map(|(_, _, _, detail)| detail).collect()
        }
    }

    impl Plan for diesel::PgConnection {
        fn plan_of(&mut self, q: impl QueryFragment<Self::Backend>) -> Vec<String> {
            let explain = Explain::<_, Text> {
                prefix: "EXPLAIN ",
                query: q,
                rows: PhantomData,
            };
            explain.load::<String>(self).unwrap()
        }
    }

    fn explain(conn: &mut AnyConnection, q: impl QueryFragment<AnyBackend>) -> Vec<String> {
        if matches!(conn, AnyConnection::Sqlite(_)) {
            // id, parent, unused, detail: the detail is what tells.
            let explain = Explain::<_, (Integer, Integer, Integer, Text)> {
                prefix: "EXPLAIN QUERY PLAN ",
                query: q,
                rows: PhantomData,
            };
            let steps = explain.load::<(i32, i32, i32, String)>(conn).unwrap();
            steps.into_iter().map(|(_, _, _, detail)| detail).collect()
        } else {
            let explain = Explain::<_, Text> {
                prefix: "EXPLAIN ",
                query: q,
                rows: PhantomData,
            };
            explain.load::<String>(conn).unwrap()
        }
    }

    #[test]
    fn every_sort_order_is_read_from_an_index_on_sqlite() {
        let database = crate::testing::TestDatabase::sqlite();
        let mut conn = database.store.pool.get().unwrap();
        for sort in SORTS {
            for later_page in [false, true] {
                // The whole rows, and the keys of a read of several
                // projects: from the index alone, but the due key (SQLite
                // before 3.41 reads the row to compute a generated column,
                // even one the index holds).
                let due = matches!(sort, TaskSort::DueAsc | TaskSort::DueDesc);
                let keys_from = if due { "INDEX" } else { "COVERING INDEX" };
                for (keys, from, merged, filtered) in [
                    (false, "INDEX", false, false),
                    (true, keys_from, false, false),
                    (false, "INDEX", true, false),
                    (false, "INDEX", true, true),
                ] {
                    let steps = plan(&mut conn, sort, later_page, keys, merged, filtered);
                    let shown = format!(
                        "{sort:?}, keys {keys}, merged {merged}, filtered {filtered}, \
                         later page {later_page}: {steps:?}"
                    );
                    // Each range read (one, or one a merged project) a
                    // search of the range the membership's value seeks
                    // to, not a scan of the index.
                    let ranges = if merged { MERGED_PROJECTS } else { 1 };
                    let searches = steps.iter().filter(|step| {
                        step.starts_with("SEARCH tasks ")
                            && (step.contains(&format!("USING {from} tasks_by_project_"))
                                || step.contains("USING COVERING INDEX tasks_by_project_"))
                            && step.contains("(project_id=? AND archived=?")
                    });
                    assert_eq!(searches.count(), ranges, "{shown}");
                    assert!(
                        !steps.iter().any(|step| step.contains("TEMP B-TREE")),
                        "sorted after reading: {shown}"
                    );
                    // The ranges merged as they are read.
                    assert_eq!(
                        steps
                            .iter()
                            .filter(|step| *step == "MERGE (UNION ALL)")
                            .count(),
                        ranges - 1,
                        "{shown}"
                    );
                    if later_page {
                        let seeks = steps
                            .iter()
                            .filter(|step| seeks_past_the_cursor(step, sort));
                        assert_eq!(
                            seeks.count(),
                            ranges,
                            "a later page read from the range's start: {shown}"
                        );
                    }
                }
            }
        }
    }

    /// The rows of a page across several projects, by id: looked up by
    /// the primary key's index, not a scan of the table.
    #[test]
    fn a_page_by_ids_is_read_by_key() {
        let database = crate::testing::TestDatabase::sqlite();
        let mut conn = database.store.pool.get().unwrap();
        let ids = [
            "0190a5d1-0000-7000-8000-000000000001",
            "0190a5d1-0000-7000-8000-000000000002",
        ];
        let q = tasks::table
            .select(StoredTask::as_select())
            .filter(IdIn::new(&ids).unwrap());
        let AnyConnection::Sqlite(sqlite) = &mut *conn else {
            panic!("a SQLite store")
        };
        let explain = Explain::<_, (Integer, Integer, Integer, Text)> {
            prefix: "EXPLAIN QUERY PLAN ",
            query: q,
            rows: PhantomData,
        };
        let steps: Vec<String> = explain
            .load::<(i32, i32, i32, String)>(sqlite)
            .unwrap()
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect();
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH tasks USING INDEX sqlite_autoindex_tasks")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN tasks")),
            "{steps:?}"
        );
        // Text that is no task id never reaches the statement.
        assert!(IdIn::new(&["a\"]"]).is_err());
    }

    #[test]
    fn every_sort_order_is_read_from_an_index_on_postgres() {
        let Some(database) = crate::testing::TestDatabase::postgres() else {
            return;
        };
        let mut conn = database.store.pool.get().unwrap();
        // An empty table is cheaper to scan than to look up, and its rows
        // cheaper to sort than to merge: take those choices away, and what
        // is left shows whether an index gives the order. (Neither is
        // refused: a plan that needs one still has it.)
        diesel::sql_query("SET enable_seqscan = off")
            .execute(&mut *conn)
            .unwrap();
        diesel::sql_query("SET enable_sort = off")
            .execute(&mut *conn)
            .unwrap();
        let reads = SORTS.into_iter().flat_map(|s| {
            [
                (s, false, false, false),
                (s, true, false, false),
                (s, false, true, false),
                (s, false, true, true),
            ]
        });
        for (sort, keys, merged, filtered) in reads {
            for later_page in [false, true] {
                let plan = plan(&mut conn, sort, later_page, keys, merged, filtered);
                let shown = format!(
                    "{sort:?}, keys {keys}, merged {merged}, filtered {filtered}, \
                     later page {later_page}: {plan:#?}"
                );
                let key = key_column(sort);
                let ranges = if merged { MERGED_PROJECTS } else { 1 };
                let scans = plan.iter().filter(|step| {
                    (step.contains("Index Scan") || step.contains("Index Only Scan"))
                        && step.contains("tasks_by_project_")
                });
                assert_eq!(scans.count(), ranges, "{shown}");
                // Each range is sought by the membership's value (an
                // initplan's parameter), computed once.
                let sought = plan
                    .iter()
                    .filter(|step| step.contains("Index Cond: ((project_id = $"));
                assert_eq!(
                    sought.count(),
                    ranges,
                    "not sought by the membership: {shown}"
                );
                // The ranges merged as they are read.
                assert_eq!(
                    plan.iter().any(|step| step.contains("Merge Append")),
                    merged,
                    "{shown}"
                );
                // No sort node, full or incremental (a `Merge Append`'s
                // "Sort Key" is the order it keeps), with sorts off: the
                // plan that needs none is there to be chosen (on a small
                // table the server may well sort the memberships, a few
                // rows, to find one). A node is written
                // "Name  (cost=…)": so is the plan's first, or the test
                // no longer reads the plan it asks for.
                assert!(plan[0].contains("  (cost="), "{shown}: {plan:#?}");
                // (A node's line is the first, or starts with "->"; the
                // others, "Sort Key: …" among them, are its properties.)
                let sorts = plan.iter().enumerate().any(|(n, step)| {
                    let node = if n == 0 {
                        Some(step.as_str())
                    } else {
                        step.trim_start().strip_prefix("->").map(str::trim_start)
                    };
                    node.is_some_and(|node| {
                        node.starts_with("Sort ") || node.starts_with("Incremental Sort ")
                    })
                });
                assert!(!sorts, "sorted after reading: {shown}: {plan:#?}");
                if later_page {
                    // The cursor's key and id are in the index condition
                    // as a row value, not a filter applied to the range (or
                    // a run of equal keys) read from its start.
                    let bound = if sort.is_descending() {
                        ") < ROW("
                    } else {
                        ") > ROW("
                    };
                    let seeks = plan.iter().filter(|step| {
                        step.contains("Index Cond")
                            && step.contains(&format!("ROW({key}, id{bound}"))
                    });
                    assert_eq!(
                        seeks.count(),
                        ranges,
                        "a later page read from the range's start: {shown}"
                    );
                }
            }
        }
        diesel::sql_query("RESET enable_seqscan")
            .execute(&mut *conn)
            .unwrap();
        diesel::sql_query("RESET enable_sort")
            .execute(&mut *conn)
            .unwrap();
    }
}
