//! The change log's table (migration `…_project_log`): every write in
//! `tasks.rs` and `projects.rs` records its change here, once, inside its
//! own transaction: as a change of the project (`project_id`, seen by its
//! members from the change that made them members) or, for the few a user
//! must see without being a member, of that user (`recipient_id`). A
//! user's stream is the view `change_feed`.
//!
//! Numbers ([`LogPosition`], the view's `seq`): SQLite's writers take
//! turns, so a row's `pos` (`AUTOINCREMENT`: never handed out twice) is in
//! commit order and is its number. PostgreSQL's writers commit in any
//! order, so a row is written unnumbered and numbered once committed, by
//! [`number_committed`], which every reader of the log runs first: one at
//! a time (under `change_log_head`'s row), in the order it finds the rows,
//! each number after every number handed out before. A reader following
//! the numbers therefore never skips a change that commits late, and no
//! writer waits for another to number its change: a write to a shared
//! project costs what one to an Inbox does.
//!
//! `change_streams` keeps, per user, the count of the tasks they own (the
//! quota's check: `count_within`), how far their own changes are pruned,
//! and the relay's and webhooks' bookkeeping.

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text};
use todo_core::{
    Change, ChangeKind, ChangeLog, Description, LogPosition, MAX_CHANGES_PER_OWNER,
    MAX_CHANGES_PER_PROJECT, MIN_CHANGES_KEPT_PER_PROJECT, Member, Project, ProjectColor,
    ProjectId, ProjectName, ProjectRole, StoreError, Subject, TaskId, TaskVersion, Timestamp,
    UserId, Username, trims_at,
};

use crate::SqlStore;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{change_feed, change_log, change_streams, project_members};
use crate::tasks::{StoredTask, TaskRow, native};

/// Whose stream a change goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Audience<'a> {
    /// The members of this project.
    Project(&'a str),
    /// This user alone.
    User(&'a str),
}

/// A change as written: the task's columns as the write left them, or
/// none for a deletion. (`None` is written as NULL, not as the column's
/// default: one statement for every change, which diesel caches.)
#[derive(Insertable)]
#[diesel(table_name = change_log, treat_none_as_default_value = false)]
struct ChangeRow<'a> {
    project_id: Option<&'a str>,
    recipient_id: Option<&'a str>,
    kind: &'static str,
    subject_id: &'a str,
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
    /// A deletion of `subject_id`: none of its columns (and the row every
    /// other change starts from).
    fn tombstone(audience: Audience<'a>, kind: ChangeKind, subject_id: &'a str, at: i64) -> Self {
        let (project_id, recipient_id) = match audience {
            Audience::Project(project) => (Some(project), None),
            Audience::User(user) => (None, Some(user)),
        };
        Self {
            project_id,
            recipient_id,
            kind: kind.as_str(),
            subject_id,
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

    /// A write that left a task of `project` as `task`.
    fn of_task(project: &'a str, kind: ChangeKind, task: &'a TaskRow, at: i64) -> Self {
        Self {
            title: Some(task.title.as_str()),
            description: Some(task.description.as_str()),
            done: Some(task.done),
            completed_at: task.completed_at,
            due_at: task.due_at,
            priority: Some(task.priority),
            labels: Some(task.labels.as_str()),
            archived: Some(task.archived),
            created_at: Some(task.created_at),
            updated_at: Some(task.updated_at),
            version: Some(task.version),
            created_by: Some(task.created_by.as_str()),
            parent_id: task.parent_id.as_deref(),
            recurrence: task.recurrence.as_deref(),
            time_zone: Some(task.time_zone.as_str()),
            series_id: task.series_id.as_deref(),
            series_start: task.series_start,
            occurrence: task.occurrence,
            reminders: Some(task.reminders.as_str()),
            ..Self::tombstone(Audience::Project(project), kind, &task.id, at)
        }
    }
}

/// A change as read from a user's stream (`change_feed`).
#[derive(Queryable, Selectable)]
#[diesel(table_name = change_feed)]
struct StoredChange {
    reader_role: Option<String>,
    seq: i64,
    project_id: Option<String>,
    kind: String,
    subject_id: String,
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

/// A position as stored.
pub(crate) fn stored(position: LogPosition) -> i64 {
    i64::try_from(position.get()).unwrap_or(i64::MAX)
}

/// A position as read.
pub(crate) fn position(seq: i64) -> Result<LogPosition, StoreError> {
    u64::try_from(seq)
        .map(LogPosition::new)
        .map_err(|_| corrupt("change number"))
}

/// Records a write of the task `task_id` of `project`: `task` is the row
/// as the write left it, `None` when it deleted it. Inside the write's
/// transaction.
pub(crate) fn record_task(
    conn: &mut AnyConnection,
    kind: ChangeKind,
    project: &str,
    task_id: &str,
    task: Option<&TaskRow>,
    at: i64,
) -> QueryResult<()> {
    let row = match task {
        Some(task) => ChangeRow::of_task(project, kind, task, at),
        None => ChangeRow::tombstone(Audience::Project(project), kind, task_id, at),
    };
    insert(conn, &row).map(|_| ())
}

/// Records the deletion of each task of `ids`, tasks of `project`, in that
/// order, a few hundred a statement. Inside the write's transaction.
pub(crate) fn record_deletions(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
    at: i64,
) -> QueryResult<()> {
    let rows: Vec<ChangeRow<'_>> = ids
        .iter()
        .map(|id| ChangeRow::tombstone(Audience::Project(project), ChangeKind::TaskDeleted, id, at))
        .collect();
    // (29 columns a row: within both databases' bound on parameters)
    for chunk in rows.chunks(200) {
        let insert = diesel::insert_into(change_log::table).values(chunk);
        native!(&mut *conn, |c| insert.execute(c))?;
    }
    // Each of the deletion's changes draws as one write does: a deletion
    // of `n` tasks trims with the chance of `n` writes, and for certain
    // from `TRIM_EVERY` tasks, the subtrees large enough to take a
    // project past its cap. (Any deletion of two trimmed, and a parent
    // with one child cost two writes: one account made a third of its
    // writes count the owner's changes, 85 times the rate the budget was
    // sized for; review of session 23, minor 5.)
    if deletion_trims(ids.len()) {
        trim(conn, Audience::Project(project))?;
    }
    Ok(())
}

/// Whether a deletion of `tasks` tasks trims: one draw a change, as
/// [`trims_now`] draws for a write (the rows of a batch are not asked
/// their numbers), certain from [`todo_core::TRIM_EVERY`] changes.
fn deletion_trims(tasks: usize) -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    // (numbers no row has: the draw's key is the process's own, and a
    // counter keeps two deletions in one second from drawing alike)
    static DRAWS: AtomicI64 = AtomicI64::new(i64::MIN);
    if tasks as u64 >= todo_core::TRIM_EVERY {
        return true;
    }
    (0..tasks).any(|_| trims_now(DRAWS.fetch_add(1, Ordering::Relaxed)))
}

/// Inserts `row`, and trims its audience's changes to the cap when its
/// row's `pos` is one that trims. Returns the row's `pos` (on SQLite, its
/// number).
///
/// On SQLite the `pos` is asked for after the insert (`last_insert_rowid`,
/// a statement diesel keeps): `RETURNING` cost a creation 19,000
/// instructions more (callgrind, `scripts/instructions`), 6% of it.
fn insert(conn: &mut AnyConnection, row: &ChangeRow<'_>) -> QueryResult<i64> {
    let insert = diesel::insert_into(change_log::table).values(row);
    let at: i64 = match conn {
        AnyConnection::Sqlite(c) => {
            insert.execute(c)?;
            LastInsertRowid.get_result(c)?
        }
        AnyConnection::Postgresql(c) => insert.returning(change_log::pos).get_result(c)?,
    };
    if trims_now(at) {
        let audience = match (row.project_id, row.recipient_id) {
            (Some(project), _) => Audience::Project(project),
            (None, Some(user)) => Audience::User(user),
            (None, None) => return Ok(at),
        };
        trim(conn, audience)?;
    }
    Ok(at)
}

/// Whether the write of the row `pos` trims its audience: one write in
/// [`todo_core::TRIM_EVERY`], at random. (Every `TRIM_EVERY`-th number of
/// the whole log, first: a user who wrote two projects in turn, alone in
/// the log, never trimmed one of them; review of session 22.) The draw
/// hashes the row's number with keys drawn once per process, so no client
/// can tell which of its writes trim.
fn trims_now(pos: i64) -> bool {
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let draw = KEYS
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(pos);
    trims_at(draw)
}

/// `SELECT last_insert_rowid()` (SQLite), with a static query id, so that
/// diesel keeps it prepared.
#[derive(Debug, Clone, Copy)]
struct LastInsertRowid;

impl QueryId for LastInsertRowid {
    type QueryId = LastInsertRowid;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<diesel::sqlite::Sqlite> for LastInsertRowid {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::sqlite::Sqlite>) -> QueryResult<()> {
        out.push_sql("SELECT last_insert_rowid()");
        Ok(())
    }
}

impl Query for LastInsertRowid {
    type SqlType = BigInt;
}

impl<Conn> RunQueryDsl<Conn> for LastInsertRowid {}

/// Drops the audience's changes older than its newest
/// [`MAX_CHANGES_PER_PROJECT`] (a project's: older than what its owner's
/// other projects leave of [`MAX_CHANGES_PER_OWNER`], its newest
/// [`MIN_CHANGES_KEPT_PER_PROJECT`] kept whatever they hold), and says so in its pruned mark (numbered changes
/// only: on PostgreSQL one not numbered yet is one nobody could have
/// read).
///
/// The owner's budget is checked here, on the one write in
/// [`todo_core::TRIM_EVERY`] that trims, by counting (up to the budget)
/// the rows of their other projects: no other write reads or writes
/// anything of the owner's for it, and the trim still takes only its own
/// project's mark (attack of session 22, F2; `/work/notes/plog-s23.md`
/// weighs the other designs).
fn trim(conn: &mut AnyConnection, audience: Audience<'_>) -> QueryResult<()> {
    #[derive(QueryableByName)]
    struct Cut {
        #[diesel(sql_type = BigInt)]
        seq: i64,
    }
    let seq = numbering(conn);
    let (column, id, mark) = match audience {
        Audience::Project(project) => (
            "project_id",
            project,
            // (its own table: see the migration)
            "INSERT INTO change_pruned (project_id, pruned_through) VALUES ($1, $2) \
             ON CONFLICT (project_id) DO UPDATE SET pruned_through = excluded.pruned_through \
             WHERE change_pruned.pruned_through < excluded.pruned_through",
        ),
        Audience::User(user) => (
            "recipient_id",
            user,
            // ($1 named before $2: SQLite numbers `$n` by first appearance)
            "UPDATE change_streams SET pruned_through = \
             CASE WHEN owner_id = $1 THEN $2 ELSE pruned_through END \
             WHERE owner_id = $1 AND pruned_through < $2",
        ),
    };
    let mut keep = i64::try_from(MAX_CHANGES_PER_PROJECT).unwrap_or(i64::MAX);
    if let Audience::Project(project) = audience {
        let budget = i64::try_from(MAX_CHANGES_PER_OWNER).unwrap_or(i64::MAX);
        let others = owners_other_changes(conn, project, budget)?;
        let floor = i64::try_from(MIN_CHANGES_KEPT_PER_PROJECT).unwrap_or(i64::MAX);
        keep = keep.min(budget.saturating_sub(others)).max(floor);
    }
    let cut = diesel::sql_query(format!(
        "SELECT {seq} AS seq FROM change_log WHERE {column} = $1 AND {seq} IS NOT NULL \
         ORDER BY {seq} DESC LIMIT 1 OFFSET $2"
    ))
    .bind::<Text, _>(id)
    .bind::<BigInt, _>(keep);
    let cut: Option<Cut> = native!(&mut *conn, |c| cut.get_result(c).optional())?;
    let Some(Cut { seq: through }) = cut else {
        return Ok(());
    };
    let through = spare_unstarted(conn, audience, through)?;
    if through <= 0 {
        return Ok(());
    }
    // (parameters bound in the order they first appear: SQLite numbers
    // them so)
    let mark = diesel::sql_query(mark)
        .bind::<Text, _>(id)
        .bind::<BigInt, _>(through);
    native!(&mut *conn, |c| mark.execute(c))?;
    let drop = diesel::sql_query(format!(
        "DELETE FROM change_log WHERE {seq} <= $1 AND {column} = $2"
    ))
    .bind::<BigInt, _>(through)
    .bind::<Text, _>(id);
    native!(&mut *conn, |c| drop.execute(c)).map(|_| ())
}

/// The beginnings of the statements a trim runs ([`trim`], [`owners_other_changes`],
/// [`spare_unstarted`]): each a `sql_query`, which diesel prepares at every run,
/// on the one write in [`todo_core::TRIM_EVERY`] drawn at random. The tests of
/// the statement cache leave them out (a creation that drew a trim ran them).
#[cfg(test)]
pub(crate) const TRIM_STATEMENTS: [&str; 7] = [
    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM change_log c ",
    "SELECT pos AS seq FROM change_log WHERE ",
    "SELECT seq AS seq FROM change_log WHERE ",
    "SELECT MIN(c.seq) AS seq FROM project_members m ",
    "INSERT INTO change_pruned ",
    "UPDATE change_streams SET pruned_through = ",
    "DELETE FROM change_log WHERE ",
];

/// How many changes the log holds of the other projects of `project`'s
/// owner, counted up to `most`: index lookups of the owner's projects
/// (`projects_by_owner`) and of their changes (`change_log_by_project`).
fn owners_other_changes(conn: &mut AnyConnection, project: &str, most: i64) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM change_log c \
         WHERE c.project_id IN (SELECT o.id FROM projects o WHERE o.id <> $1 \
             AND o.owner_id = (SELECT p.owner_id FROM projects p WHERE p.id = $1)) \
         LIMIT $2) t",
    )
    .bind::<Text, _>(project)
    .bind::<BigInt, _>(most);
    let count: Count = native!(&mut *conn, |c| count.get_result(c))?;
    Ok(count.n)
}

/// The column that holds a row's number: `pos` on SQLite (numbered as
/// written), `seq` on PostgreSQL (numbered by [`number_committed`]).
fn numbering(conn: &AnyConnection) -> &'static str {
    match conn {
        AnyConnection::Sqlite(_) => "pos",
        AnyConnection::Postgresql(_) => "seq",
    }
}

/// SQL that is true when the stream of the user named by `user` (a column
/// of the enclosing query) has a change numbered above `after` (another
/// column), written against the tables rather than the view: a correlated
/// predicate over the view's `UNION ALL` cannot be narrowed to one user on
/// PostgreSQL, which read the whole log for every stream (review of
/// session 22: 231 s for an idle relay's look at 12,000 users).
pub(crate) fn stream_past(conn: &AnyConnection, user: &str, after: &str) -> String {
    let seq = numbering(conn);
    let joined = joined_from(conn, "fm");
    format!(
        "(EXISTS (SELECT 1 FROM project_members fm JOIN change_log fc \
            ON fc.project_id = fm.project_id \
            WHERE fm.user_id = {user} AND fc.{seq} >= {joined} AND fc.{seq} > {after}) \
         OR EXISTS (SELECT 1 FROM change_log fr \
            WHERE fr.recipient_id = {user} AND fr.{seq} > {after}))"
    )
}

/// SQL for the number from which the member row `member` (an alias of
/// `project_members`) sees its project: their start (`joined_seq`) or,
/// while it is not set (PostgreSQL: the numbering sets it after it has
/// committed the number, and passes over a member whose row is held), the
/// number of the change that added them, read from its row (`joined_pos`).
/// A read that looks past that number therefore sees the addition
/// whatever the cached start says: reading the cache alone, a new member
/// whose start was not set yet saw nothing of the project while their
/// cursor moved past their addition, and missed it and the project's
/// first changes for good (review of session 23, blocker 1). NULL while
/// the addition is not numbered: any number it gets is above the head, so
/// the member sees nothing yet and misses nothing. The view
/// `change_feed` says the same in SQL (PostgreSQL migration).
fn joined_from(conn: &AnyConnection, member: &str) -> String {
    match conn {
        AnyConnection::Sqlite(_) => format!("{member}.joined_seq"),
        AnyConnection::Postgresql(_) => format!(
            "COALESCE({member}.joined_seq, \
             (SELECT j.seq FROM change_log j WHERE j.pos = {member}.joined_pos))"
        ),
    }
}

/// The most a trim or prune of `audience` may cut, given that it would cut
/// up to `through`: below the addition of every member of the project
/// whose start is not set yet. Cut, the addition's row could no longer
/// tell where their view starts ([`joined_from`]), nor the numbering set
/// it: they would see nothing of the project for good (review of session
/// 23, blocker 1). On SQLite every start is set with the addition. Run
/// after `through` was chosen among numbered rows: an addition numbered
/// since has a number above it.
fn spare_unstarted(
    conn: &mut AnyConnection,
    audience: Audience<'_>,
    through: i64,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct First {
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        seq: Option<i64>,
    }
    let (AnyConnection::Postgresql(pg), Audience::Project(project)) = (conn, audience) else {
        return Ok(through);
    };
    let first: First = diesel::sql_query(
        "SELECT MIN(c.seq) AS seq FROM project_members m \
         JOIN change_log c ON c.pos = m.joined_pos \
         WHERE m.project_id = $1 AND m.joined_seq IS NULL AND c.seq IS NOT NULL",
    )
    .bind::<Text, _>(project)
    .get_result(pg)?;
    Ok(first.seq.map_or(through, |first| through.min(first - 1)))
}

/// Whether any change waits to be numbered, or any member's view of a
/// project waits to start at a numbered change (PostgreSQL; never on
/// SQLite).
pub(crate) fn any_unnumbered(conn: &mut AnyConnection) -> QueryResult<bool> {
    let AnyConnection::Postgresql(pg) = conn else {
        return Ok(false);
    };
    let waiting = waiting(pg)?;
    Ok(waiting.rows || waiting.members)
}

/// What waits for the numbering (every reader asks, in one statement).
struct Waiting {
    /// A committed change waits for its number.
    rows: bool,
    /// A member's view of a project waits for its start (`joined_seq`)
    /// though their addition is numbered: a [`number_committed`] passed
    /// them over, their row held by a writer.
    members: bool,
}

fn waiting(pg: &mut diesel::PgConnection) -> QueryResult<Waiting> {
    let (rows, members) = WaitingQuery.get_result::<(bool, bool)>(pg)?;
    Ok(Waiting { rows, members })
}

/// [`waiting`]'s statement, with a static query id, so that diesel keeps
/// it prepared (a `sql_query` is prepared again at every run, and every
/// read of the log runs this one).
#[derive(Debug, Clone, Copy)]
struct WaitingQuery;

impl QueryId for WaitingQuery {
    type QueryId = WaitingQuery;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<diesel::pg::Pg> for WaitingQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT EXISTS (SELECT 1 FROM change_log WHERE seq IS NULL), \
             EXISTS (SELECT 1 FROM project_members m JOIN change_log c ON c.pos = m.joined_pos \
                 WHERE m.joined_seq IS NULL AND c.seq IS NOT NULL)",
        );
        Ok(())
    }
}

impl Query for WaitingQuery {
    type SqlType = (diesel::sql_types::Bool, diesel::sql_types::Bool);
}

impl<Conn> RunQueryDsl<Conn> for WaitingQuery {}

/// Numbers the changes that committed unnumbered (PostgreSQL: see the
/// module's note), oldest row first, each after every number handed out
/// before, and starts the view of members added by them there. One
/// numbering at a time: each takes `change_log_head`'s row first, and
/// reads the rows to number only then (a statement of its own, so that
/// it sees what the one before it numbered). A no-op on SQLite, and where
/// nothing waits.
pub(crate) fn number_committed(conn: &mut AnyConnection) -> QueryResult<()> {
    let AnyConnection::Postgresql(pg) = conn else {
        return Ok(());
    };
    let waiting = waiting(pg)?;
    let numbered_any = waiting.rows && number_rows(pg)?;
    // Members whose addition is numbered now see the project from it: in
    // a statement of its own, after the head's row is let go (holding it
    // while waiting on a member row a writer holds made every reader wait
    // on that writer: review of session 22). It waits on no row either:
    // it would hold some members' rows while waiting for others', which a
    // project's deletion (its members, in its order) or an import (every
    // member, `FOR SHARE`) may hold while waiting for the first. A member
    // whose row is held is passed over, and started by a numbering after
    // (`any_unnumbered` looks for them).
    if numbered_any || waiting.members {
        diesel::sql_query(
            "UPDATE project_members m SET joined_seq = c.seq FROM change_log c \
             WHERE (m.project_id, m.user_id) IN (SELECT w.project_id, w.user_id \
                 FROM project_members w WHERE w.joined_seq IS NULL \
                 FOR NO KEY UPDATE SKIP LOCKED) \
             AND m.joined_seq IS NULL AND c.pos = m.joined_pos AND c.seq IS NOT NULL",
        )
        .execute(pg)?;
    }
    Ok(())
}

/// Numbers committed rows, a batch at a time, under the head's row (see
/// [`number_committed`]); whether it numbered any.
fn number_rows(pg: &mut diesel::PgConnection) -> QueryResult<bool> {
    // A batch at a time, each in a transaction of its own (the head's row
    // held briefly); a burst past the last batch is numbered by the next
    // reader. The batch's rows are locked before they are ranked: a row
    // deleted meanwhile (its project's or user's deletion) drops out
    // before it takes a rank, so the ranks handed out are contiguous and
    // the head moves by as many (review of session 22: ranked first, a
    // deleted row's rank was skipped, a number went above the head, and
    // every numbering after failed on the unique index).
    //
    // Rows another transaction holds are passed over (`SKIP LOCKED`): the
    // only ones are rows a deletion's cascade is deleting (writers' rows
    // are not seen before they commit; trims and prunes delete numbered
    // rows), gone at its commit. So the numbering waits on no row of the
    // log, a deletion (which locks its rows project by project, in no
    // order of `pos`) cannot wait on it in a cycle, and it need not take
    // the head first: it did (`FOR SHARE`), and every reader with a change
    // waiting waited for any account's deletion from its cascade to its
    // commit (review of session 23, major 3). The price: if such a
    // deletion rolls back, its rows are numbered by a later numbering,
    // after rows written after them (a client orders two changes of one
    // task by its `version`). Nothing is lost: the later number is above
    // every head a reader has seen.
    //
    // Readers do not queue to number one after another (review of session
    // 22, M7): one that finds the head taken waits for that numbering to
    // end (`FOR KEY SHARE`, a statement of its own: no lock kept), and
    // queues to number (`FOR UPDATE`) only if a change that had committed
    // when it looked still waits.
    let reach = waiting_through(pg)?;
    if reach == 0 {
        return Ok(false);
    }
    let mut numbered_any = false;
    match pg.transaction(|pg| number_batch(pg, true))? {
        Some(numbered) if numbered < NUMBERING_BATCH => return Ok(numbered > 0),
        Some(_) => numbered_any = true,
        None => {
            diesel::sql_query("SELECT 1 FROM change_log_head WHERE id = 1 FOR KEY SHARE")
                .execute(pg)?;
            if !still_waiting(pg, reach)? {
                return Ok(false);
            }
        }
    }
    for _ in 0..NUMBERING_BATCHES {
        let numbered = pg.transaction(|pg| number_batch(pg, false))?.unwrap_or(0);
        numbered_any |= numbered > 0;
        if numbered < NUMBERING_BATCH {
            break;
        }
    }
    Ok(numbered_any)
}

/// Numbers one batch under the head's row, in the caller's transaction;
/// `None` if `skip` and the row is taken.
fn number_batch(pg: &mut diesel::PgConnection, skip: bool) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
    }
    let head = if skip {
        let head = diesel::sql_query(
            "SELECT last_seq FROM change_log_head WHERE id = 1 FOR UPDATE SKIP LOCKED",
        );
        let Some(head) = head.get_result::<Head>(pg).optional()? else {
            return Ok(None);
        };
        head
    } else {
        // Without its row nothing is ever numbered, and every feed reads
        // empty: an error, not a numbering of nothing (a test harness that
        // emptied every table did it, and the feeds were silently empty).
        diesel::sql_query("SELECT last_seq FROM change_log_head WHERE id = 1 FOR UPDATE")
            .get_result::<Head>(pg)?
    };
    // A row passed over holds back the later rows of its audience (its
    // project, or its recipient): each audience's rows are numbered in
    // `pos` order, so a member's start (the number of their addition's
    // row) still divides the project's rows into before and after they
    // joined, whatever a deletion that rolls back did meanwhile (review of
    // session 24, minor 2). Only a deletion's rows are passed over, and
    // the later rows of a project it deletes go with it.
    let numbered = diesel::sql_query(
        "WITH batch AS (SELECT pos, project_id, recipient_id FROM change_log \
             WHERE seq IS NULL ORDER BY pos LIMIT $2 FOR UPDATE SKIP LOCKED), \
         passed AS (SELECT x.project_id, x.recipient_id, MIN(x.pos) AS first \
             FROM change_log x WHERE x.seq IS NULL \
             AND x.pos < (SELECT MAX(b.pos) FROM batch b) \
             AND NOT EXISTS (SELECT 1 FROM batch b WHERE b.pos = x.pos) \
             GROUP BY x.project_id, x.recipient_id), \
         kept AS (SELECT b.pos FROM batch b WHERE NOT EXISTS (SELECT 1 FROM passed h \
             WHERE h.first < b.pos \
             AND (h.project_id = b.project_id OR h.recipient_id = b.recipient_id))), \
         ranked AS (SELECT pos, row_number() OVER (ORDER BY pos) AS rank FROM kept) \
         UPDATE change_log c SET seq = $1 + r.rank FROM ranked r WHERE c.pos = r.pos",
    )
    .bind::<BigInt, _>(head.last_seq)
    .bind::<BigInt, _>(NUMBERING_BATCH)
    .execute(pg)?;
    let numbered = i64::try_from(numbered).unwrap_or(i64::MAX);
    if numbered > 0 {
        diesel::sql_query("UPDATE change_log_head SET last_seq = last_seq + $1 WHERE id = 1")
            .bind::<BigInt, _>(numbered)
            .execute(pg)?;
    }
    Ok(Some(numbered))
}

/// The last committed change waiting for its number (0: none).
fn waiting_through(pg: &mut diesel::PgConnection) -> QueryResult<i64> {
    let last = change_log::table
        .filter(change_log::seq.is_null())
        .select(diesel::dsl::max(change_log::pos));
    Ok(last.get_result::<Option<i64>>(pg)?.unwrap_or(0))
}

/// Whether a change at or before `reach` still waits for its number.
fn still_waiting(pg: &mut diesel::PgConnection, reach: i64) -> QueryResult<bool> {
    let first = change_log::table
        .filter(change_log::seq.is_null())
        .filter(change_log::pos.le(reach))
        .select(change_log::pos)
        .limit(1);
    Ok(first.get_result::<i64>(pg).optional()?.is_some())
}

/// How many changes one numbering takes at most, and how many numberings
/// a reader runs at most before it reads.
const NUMBERING_BATCH: i64 = 10_000;
const NUMBERING_BATCHES: usize = 10;

/// Adds `delta` to the tasks `owner_id` is counted to own (a creation
/// outside the quota, a deletion). Inside the write's transaction.
pub(crate) fn count_tasks(conn: &mut AnyConnection, owner_id: &str, delta: i64) -> QueryResult<()> {
    if delta == 0 {
        return Ok(());
    }
    let count = CountTasks {
        owner_id,
        delta,
        below: i64::MAX,
    };
    native!(&mut *conn, |c| count.get_result::<i64>(c)).map(|_| ())
}

/// Counts one more task of `owner_id`'s, only while they are counted to own
/// fewer than `max`: `false` when the owner is at the quota. This is the
/// quota's check (no `COUNT` of the owner's tasks per creation), atomic:
/// the owner's row is locked (PostgreSQL) or the database is (SQLite)
/// until the commit. The caller then inserts the task.
///
/// A count that drifted (tasks written by an older version during a
/// rolling upgrade, which counted nothing) is repaired where it would
/// refuse: at the quota by the count, the tasks are counted, once.
pub(crate) fn count_within(
    conn: &mut AnyConnection,
    owner_id: &str,
    max: i64,
) -> QueryResult<bool> {
    if max <= 0 {
        return Ok(false);
    }
    if count_one_within(conn, owner_id, max)? {
        return Ok(true);
    }
    let count = crate::schema::tasks::table
        .filter(crate::schema::tasks::owner_id.eq(owner_id))
        .count();
    let owned: i64 = native!(&mut *conn, |c| count.get_result(c))?;
    if owned >= max {
        return Ok(false);
    }
    let repair = diesel::update(change_streams::table.find(owner_id))
        .set(change_streams::task_count.eq(owned));
    native!(&mut *conn, |c| repair.execute(c))?;
    count_one_within(conn, owner_id, max)
}

fn count_one_within(conn: &mut AnyConnection, owner_id: &str, max: i64) -> QueryResult<bool> {
    let count = CountTasks {
        owner_id,
        delta: 1,
        below: max,
    };
    let counted: Option<i64> = native!(&mut *conn, |c| count.get_result(c).optional())?;
    Ok(counted.is_some())
}

/// Adds `delta` to the owner's task count (creating their row), if the
/// count is below `below`: `RETURNING` the count, or no row when it is not
/// below.
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
/// `below` is checked on conflict only: an owner's first creation makes
/// the row with a count of at most 1, and `count_within` refuses a `max`
/// of 0 or less before it gets here.
#[derive(Debug, Clone, Copy)]
struct CountTasks<'a> {
    owner_id: &'a str,
    delta: i64,
    below: i64,
}

impl QueryId for CountTasks<'_> {
    type QueryId = CountTasks<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for CountTasks<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("INSERT INTO change_streams (owner_id, task_count) VALUES (");
        out.push_bind_param::<Text, str>(self.owner_id)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, i64>(if self.delta > 0 { &self.delta } else { &0 })?;
        out.push_sql(
            ") ON CONFLICT (owner_id) DO UPDATE SET task_count = change_streams.task_count + ",
        );
        out.push_bind_param::<BigInt, i64>(&self.delta)?;
        out.push_sql(" WHERE change_streams.task_count < ");
        out.push_bind_param::<BigInt, i64>(&self.below)?;
        out.push_sql(" RETURNING task_count");
        Ok(())
    }
}

impl Query for CountTasks<'_> {
    type SqlType = BigInt;
}

impl<Conn> RunQueryDsl<Conn> for CountTasks<'_> {}

/// What a change of a project or of its members records.
pub(crate) enum Beyond<'a> {
    /// The project as the write left it.
    Project(&'a Project),
    /// The project was deleted.
    ProjectGone(ProjectId),
    /// The member as the write left them (a removal: as they were).
    Member(ProjectId, &'a Member, &'a Username),
}

/// Records a change of a project or of its members for `audience`, as
/// [`record_task`] does a task's; returns its row's `pos` (a member's
/// addition is where their view of the project starts).
pub(crate) fn record_beyond(
    conn: &mut AnyConnection,
    kind: ChangeKind,
    audience: Audience<'_>,
    what: &Beyond<'_>,
    at: i64,
) -> QueryResult<i64> {
    let (project_id, owner, member_id) = match what {
        Beyond::Project(project) => (project.id, Some(project.owner.to_string()), None),
        Beyond::ProjectGone(id) => (*id, None, None),
        Beyond::Member(project, member, _) => (*project, None, Some(member.user.to_string())),
    };
    let project_id = project_id.to_string();
    let project = match what {
        Beyond::Project(project) => Some(*project),
        Beyond::ProjectGone(_) | Beyond::Member(..) => None,
    };
    // (the task columns a project has, its own, and none of the rest)
    let row = ChangeRow {
        title: project.map(|p| p.name.as_str()),
        description: project.map(|p| p.description.as_str()),
        archived: project.map(|p| i16::from(p.archived)),
        created_at: match what {
            Beyond::Project(project) => Some(project.created_at.unix_micros()),
            Beyond::Member(_, member, _) => Some(member.added_at.unix_micros()),
            Beyond::ProjectGone(_) => None,
        },
        updated_at: project.map(|p| p.updated_at.unix_micros()),
        version: project.map(|p| p.version.get()),
        created_by: owner.as_deref(),
        color: project.and_then(|p| p.color.as_ref().map(ProjectColor::as_str)),
        inbox: project.map(|p| i16::from(p.inbox)),
        role: match what {
            Beyond::Member(_, member, _) => Some(member.role.as_str()),
            Beyond::Project(_) | Beyond::ProjectGone(_) => None,
        },
        member_id: member_id.as_deref(),
        username: match what {
            Beyond::Member(_, _, username) => Some(username.as_str()),
            Beyond::Project(..) | Beyond::ProjectGone(_) => None,
        },
        ..ChangeRow::tombstone(audience, kind, &project_id, at)
    };
    insert(conn, &row)
}

/// Where `user`'s view of `project` starts: at the change that made them a
/// member, the row `pos`. Its number on SQLite; on PostgreSQL the number
/// it will get ([`number_committed`] sets it; until then reads take it
/// from the addition's row: [`joined_from`]).
pub(crate) fn set_joined(
    conn: &mut AnyConnection,
    project: &str,
    user: &str,
    pos: i64,
) -> QueryResult<()> {
    let member = project_members::table.find((project, user));
    let seq = match conn {
        AnyConnection::Sqlite(_) => Some(pos),
        AnyConnection::Postgresql(_) => None,
    };
    let set = diesel::update(member).set((
        project_members::joined_pos.eq(Some(pos)),
        project_members::joined_seq.eq(seq),
    ));
    native!(&mut *conn, |c| set.execute(c)).map(|_| ())
}

impl StoredChange {
    fn into_change(self) -> Result<Change, StoreError> {
        let bad = |_| corrupt("change");
        let kind = ChangeKind::parse(&self.kind).ok_or_else(|| corrupt("change"))?;
        let position = position(self.seq)?;
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
            position,
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
        let id = ProjectId::parse(&self.subject_id).map_err(bad)?;
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
                // (the reader's role now: a project's change is one row
                // for every member)
                Subject::Project {
                    id,
                    project: Some((project, role(self.reader_role.as_deref())?)),
                }
            }
        })
    }

    fn into_task_subject(self, kind: ChangeKind) -> Result<Subject, StoreError> {
        let bad = |_| corrupt("change");
        let id = TaskId::parse(&self.subject_id).map_err(bad)?;
        let task = match kind {
            ChangeKind::TaskDeleted => None,
            _ => {
                let missing = || corrupt("change");
                let row = StoredTask {
                    id: self.subject_id,
                    // (not read back: a task's owner is its project's)
                    owner_id: String::new(),
                    project_id: self.project_id.ok_or_else(missing)?,
                    created_by: self.created_by.ok_or_else(missing)?,
                    parent_id: self.parent_id,
                    recurrence: self.recurrence,
                    time_zone: self.time_zone.ok_or_else(missing)?,
                    series_id: self.series_id,
                    series_start: self.series_start,
                    occurrence: self.occurrence,
                    reminders: self.reminders.ok_or_else(missing)?,
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
        after: LogPosition,
        limit: usize,
    ) -> Result<ChangeLog, StoreError> {
        let owner_id = owner.to_string();
        let after = stored(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (rows, pruned, head, scanned) = self.with_conn(|conn| {
            number_committed(conn)?;
            // The head first (every number up to it is handed out), the
            // changes, then the pruned mark: a pruning in between shows in
            // the mark (the reader is told to start over) rather than as
            // a silent gap. (Three statements, no one snapshot: a trim
            // that commits between the changes and the mark can tell a
            // reader who did get everything to start over. Conservative,
            // never a gap: review of session 22, m8.)
            let head = head(conn)?;
            let (rows, scanned) = read_windows(conn, &owner_id, after, head, limit)?;
            let pruned = pruned_for(conn, &owner_id)?;
            Ok((rows, pruned, head, scanned))
        })?;
        Ok(ChangeLog {
            changes: rows
                .into_iter()
                .map(StoredChange::into_change)
                .collect::<Result<_, _>>()?,
            head: position(head)?,
            pruned_through: position(pruned)?,
            scanned_through: position(scanned)?,
        })
    }

    pub(crate) fn prune_old_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        let before = before.unix_micros();
        let pruned = self.with_write_conn(|conn| {
            number_committed(conn)?;
            let (projects, users) = prune_targets(conn, before)?;
            // SQLite's writers take turns: one transaction. PostgreSQL's
            // don't: one project (or user) a transaction, each taking its
            // mark before its rows, as a trim does, and never more than
            // one mark (all of them at once, in no order, could wait on an
            // import's or a deletion's in another: review of session 22,
            // m4).
            let mut dropped = 0;
            match conn {
                AnyConnection::Sqlite(_) => conn.transaction(|conn| {
                    for (project, through) in &projects {
                        dropped += cut(conn, Audience::Project(project), *through)?;
                    }
                    for (user, through) in &users {
                        dropped += cut(conn, Audience::User(user), *through)?;
                    }
                    Ok::<_, diesel::result::Error>(())
                })?,
                AnyConnection::Postgresql(_) => {
                    for (project, through) in &projects {
                        dropped += conn
                            .transaction(|conn| cut(conn, Audience::Project(project), *through))?;
                    }
                    for (user, through) in &users {
                        dropped +=
                            conn.transaction(|conn| cut(conn, Audience::User(user), *through))?;
                    }
                }
            }
            Ok(dropped)
        })?;
        Ok(u64::try_from(pruned).unwrap_or(0))
    }
}

/// What a prune cuts: each project up to its newest change made before
/// `before`, and further where its owner holds more than
/// [`MAX_CHANGES_PER_OWNER`] (up to the newest change of theirs past that
/// budget, in each of their projects that has one); each user's own
/// changes up to their newest made before `before`. So what each keeps is
/// a suffix of its changes, whatever its writers' clocks (numbered
/// changes only: on PostgreSQL one not numbered yet is kept for the
/// next). Reads only; in project and user id order.
#[allow(clippy::type_complexity)]
fn prune_targets(
    conn: &mut AnyConnection,
    before: i64,
) -> QueryResult<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    #[derive(QueryableByName)]
    struct Target {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        through: Option<i64>,
    }
    let seq = numbering(conn);
    let budget = i64::try_from(MAX_CHANGES_PER_OWNER).unwrap_or(i64::MAX);
    let old = |column: &str| {
        format!(
            "SELECT {column} AS id, MAX({seq}) AS through FROM change_log \
             WHERE {column} IS NOT NULL AND recorded_at < $1 AND {seq} IS NOT NULL \
             GROUP BY {column}"
        )
    };
    let mut projects: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let mut users: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (column, into) in [("project_id", &mut projects), ("recipient_id", &mut users)] {
        let found = diesel::sql_query(old(column)).bind::<BigInt, _>(before);
        let found: Vec<Target> = native!(&mut *conn, |c| found.load(c))?;
        into.extend(found.into_iter().filter_map(|t| Some((t.id, t.through?))));
    }
    let over = diesel::sql_query(format!(
        "SELECT o.owner_id AS id, (SELECT c.{seq} FROM change_log c \
             JOIN projects q ON q.id = c.project_id \
             WHERE q.owner_id = o.owner_id AND c.{seq} IS NOT NULL \
             ORDER BY c.{seq} DESC LIMIT 1 OFFSET $1) AS through \
         FROM (SELECT p.owner_id FROM change_log c JOIN projects p ON p.id = c.project_id \
             WHERE c.{seq} IS NOT NULL GROUP BY p.owner_id HAVING COUNT(*) > $1) o"
    ))
    .bind::<BigInt, _>(budget);
    let over: Vec<Target> = native!(&mut *conn, |c| over.load(c))?;
    for owner in over {
        let Some(through) = owner.through else {
            continue;
        };
        let theirs = diesel::sql_query(format!(
            "SELECT DISTINCT c.project_id AS id, CAST(NULL AS BIGINT) AS through \
             FROM change_log c JOIN projects p ON p.id = c.project_id \
             WHERE p.owner_id = $1 AND c.{seq} <= $2"
        ))
        .bind::<Text, _>(&owner.id)
        .bind::<BigInt, _>(through);
        let theirs: Vec<Target> = native!(&mut *conn, |c| theirs.load(c))?;
        for project in theirs {
            let at = projects.entry(project.id).or_insert(through);
            *at = (*at).max(through);
        }
    }
    Ok((projects.into_iter().collect(), users.into_iter().collect()))
}

/// Drops the audience's changes up to `through` and marks them gone, in
/// that order: its mark, then its rows, as [`trim`] takes them. On
/// PostgreSQL, a project or user being deleted (its row held `FOR
/// UPDATE`) is passed over (its rows go with it), and one taken here
/// (`FOR KEY SHARE`, which writers' shares do not conflict with) waits to
/// be deleted until this commits: a deletion's cascade takes its rows and
/// its mark in an order of its own. Returns how many rows it dropped.
fn cut(conn: &mut AnyConnection, audience: Audience<'_>, through: i64) -> QueryResult<usize> {
    let seq = numbering(conn);
    let (column, id, mark, holder) = match audience {
        Audience::Project(project) => (
            "project_id",
            project,
            "INSERT INTO change_pruned (project_id, pruned_through) VALUES ($1, $2) \
             ON CONFLICT (project_id) DO UPDATE SET pruned_through = excluded.pruned_through \
             WHERE change_pruned.pruned_through < excluded.pruned_through",
            "SELECT 1 AS n FROM projects WHERE id = $1 FOR KEY SHARE SKIP LOCKED",
        ),
        Audience::User(user) => (
            "recipient_id",
            user,
            "UPDATE change_streams SET pruned_through = \
             CASE WHEN owner_id = $1 THEN $2 ELSE pruned_through END \
             WHERE owner_id = $1 AND pruned_through < $2",
            "SELECT 1 AS n FROM users WHERE id = $1 FOR KEY SHARE SKIP LOCKED",
        ),
    };
    if let AnyConnection::Postgresql(pg) = conn {
        #[derive(QueryableByName)]
        struct Held {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            #[allow(dead_code)] // (read only to be there)
            n: i32,
        }
        let held: Option<Held> = diesel::sql_query(holder)
            .bind::<Text, _>(id)
            .get_result(pg)
            .optional()?;
        if held.is_none() {
            return Ok(0);
        }
    }
    let through = spare_unstarted(conn, audience, through)?;
    if through <= 0 {
        return Ok(0);
    }
    let mark = diesel::sql_query(mark)
        .bind::<Text, _>(id)
        .bind::<BigInt, _>(through);
    native!(&mut *conn, |c| mark.execute(c))?;
    let drop = diesel::sql_query(format!(
        "DELETE FROM change_log WHERE {seq} <= $1 AND {column} = $2"
    ))
    .bind::<BigInt, _>(through)
    .bind::<Text, _>(id);
    native!(&mut *conn, |c| drop.execute(c))
}

/// The first window of numbers a read looks into, and the largest.
const FIRST_WINDOW: i64 = 4_096;
const LARGEST_WINDOW: i64 = 1 << 20;
/// The most windows one read looks into: a reader far behind a busy log
/// gets a short page (and a cursor past what it looked at), not a scan of
/// everything since its cursor.
const MOST_WINDOWS: usize = 8;

/// Up to `limit` of `owner_id`'s changes after `after`, and how far the
/// read looked (`scanned`: every change of theirs up to there is in the
/// page). The stream is read a window of the log's numbers at a time,
/// each twice the one before: a user's stream is the changes of all of
/// their projects, which no index orders together, so one read of
/// "everything after `after`, the first `limit`" would read and sort all
/// of it for a reader far behind (up to every project's cap, for a user
/// in thousands); a window bounds what a statement reads to the changes
/// it holds.
fn read_windows(
    conn: &mut AnyConnection,
    owner_id: &str,
    after: i64,
    head: i64,
    limit: i64,
) -> QueryResult<(Vec<StoredChange>, i64)> {
    let mut rows: Vec<StoredChange> = Vec::new();
    let (mut from, mut window) = (after, FIRST_WINDOW);
    for _ in 0..MOST_WINDOWS {
        let wanted = limit - i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if wanted <= 0 || from >= head {
            break;
        }
        let to = from.saturating_add(window).min(head);
        let page: Vec<StoredChange> = change_feed::table
            .filter(change_feed::reader.eq(owner_id))
            .filter(change_feed::seq.gt(from))
            .filter(change_feed::seq.le(to))
            .order(change_feed::seq)
            .limit(wanted)
            .select(StoredChange::as_select())
            .load(conn)?;
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) == wanted;
        rows.extend(page);
        if full {
            // (the page is full: the read looked as far as its last)
            let last = rows.last().map_or(from, |row| row.seq);
            return Ok((rows, last));
        }
        from = to;
        window = window.saturating_mul(2).min(LARGEST_WINDOW);
    }
    Ok((rows, from.max(after)))
}

/// How far `owner`'s stream is pruned: the furthest of their own changes'
/// mark and those of the projects they are members of, where it passed
/// the change that made them members.
fn pruned_for(conn: &mut AnyConnection, owner_id: &str) -> QueryResult<i64> {
    let own = change_streams::table
        .find(owner_id)
        .select(change_streams::pruned_through);
    let own: Option<i64> = native!(&mut *conn, |c| own.get_result(c).optional())?;
    #[derive(QueryableByName)]
    struct Theirs {
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        joined_seq: Option<i64>,
        #[diesel(sql_type = BigInt)]
        pruned_through: i64,
    }
    let theirs = diesel::sql_query(format!(
        "SELECT {} AS joined_seq, p.pruned_through FROM project_members m \
         JOIN change_pruned p ON p.project_id = m.project_id WHERE m.user_id = $1",
        joined_from(conn, "m")
    ))
    .bind::<Text, _>(owner_id);
    let theirs: Vec<Theirs> = native!(&mut *conn, |c| theirs.load(c))?;
    let theirs = theirs.into_iter().map(|t| (t.joined_seq, t.pruned_through));
    Ok(theirs
        .filter_map(|(joined, pruned)| joined.filter(|j| pruned >= *j).map(|_| pruned))
        .chain(own)
        .max()
        .unwrap_or(0))
}

/// The last number handed out: on SQLite, `sqlite_sequence`'s (which
/// deleting rows does not move back); on PostgreSQL, `change_log_head`'s.
fn head(conn: &mut AnyConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let sql = match conn {
        AnyConnection::Sqlite(_) => {
            "SELECT seq AS n FROM sqlite_sequence WHERE name = 'change_log'"
        }
        AnyConnection::Postgresql(_) => "SELECT last_seq AS n FROM change_log_head WHERE id = 1",
    };
    let head: Option<Head> = native!(&mut *conn, |c| diesel::sql_query(sql)
        .get_result(c)
        .optional())?;
    Ok(head.map_or(0, |h| h.n))
}

#[cfg(test)]
mod tests {
    use super::deletion_trims;

    /// A deletion of two tasks trims about as often as two writes (review
    /// of session 23, minor 5: it trimmed every time), one of
    /// `TRIM_EVERY` tasks always.
    #[test]
    fn a_deletion_trims_with_the_chance_of_its_changes() {
        const DRAWS: u32 = 10_000;
        let trims = (0..DRAWS).filter(|_| deletion_trims(2)).count();
        // (expected: 2 / 256 of them, 78, standard deviation 8.8)
        assert!((1..400).contains(&trims), "{trims} of {DRAWS}");
        let every = usize::try_from(todo_core::TRIM_EVERY).unwrap();
        assert!((0..100).all(|_| deletion_trims(every)));
        assert!(!deletion_trims(0));
    }
}
