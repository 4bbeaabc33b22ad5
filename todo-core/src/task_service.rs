//! The task service: the tasks of the projects each user is a member of,
//! and nobody else's.

use std::sync::Arc;

use crate::change::{ChangeCursor, ChangeLimit, ChangeLog, ChangePage, LogPosition};
use crate::error::{Error, Result, StoreError, TokenRejection, ValidationError};
use crate::import::{self, ImportCounts, ImportError, ImportFile, ImportOutcome, Place};
use crate::live::{ChangeBells, ChangeSubscription};
use crate::ports::{RateLimiter, Sha256, TaskInsert, TaskStore, TaskWrite, Unlimited};
use crate::precondition::Precondition;
use crate::project::{ProjectAction, ProjectId, Standing};
use crate::query::{Page, TaskCursor, TaskQuery};
use crate::random::{Random, new_v7};
use crate::recurrence::TimeZoneName;
use crate::reminder::Reminder;
use crate::task::{NewTask, Series, SeriesId, Task, TaskId, TaskPatch, TaskVersion, TreeRefusal};
use crate::time::{Clock, Timestamp};
use crate::user::UserId;

/// A service asked to import with no SHA-256 given
/// ([`TaskService::with_sha256`]): a wiring fault, not the caller's.
#[derive(Debug, thiserror::Error)]
#[error("the task service was given no SHA-256: imports are off")]
struct NoSha256;

/// How many objects of an import cost one write of the caller's allowance
/// (besides the one every import costs).
const IMPORT_OBJECTS_A_WRITE: usize = 100;
/// A task as a write left it, and the next occurrence that completing it
/// made (or found made already), if it repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The task.
    pub task: Task,
    /// Its next occurrence's id.
    pub next_occurrence: Option<TaskId>,
}

/// The limits the task service enforces on each user.
#[derive(Clone)]
pub struct TaskLimits {
    /// Tasks one user may keep in the projects they own (whoever created
    /// them); `None`: as many as the database holds.
    pub max_tasks_per_user: Option<u64>,
    /// Writes (create, update, delete) per user; past it, 429.
    pub writes_per_user: Arc<dyn RateLimiter<UserId>>,
}

impl TaskLimits {
    /// No limits at all: for embedding in a trusted process, and for tests.
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            max_tasks_per_user: None,
            writes_per_user: Arc::new(Unlimited),
        }
    }
}

impl std::fmt::Debug for TaskLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLimits")
            .field("max_tasks_per_user", &self.max_tasks_per_user)
            .finish_non_exhaustive()
    }
}

/// The task service. Every call takes the caller, and the store scopes
/// every query by the caller's memberships: a task of a project they are
/// not a member of is simply not found; what a member may do is
/// [`Standing::may`], on the role the store reads in the write's own
/// transaction.
///
/// Each call is one business operation; what the caller may do is already
/// decided (an owner from a verified token), what they send is already
/// parsed.
///
/// ```
/// use std::sync::Arc;
///
/// use todo_core::memory::MemoryStore;
/// use todo_core::testing::{ManualClock, SeededRandom};
/// use todo_core::{Error, NewTask, TaskQuery, TaskService, TaskSort, Title};
/// # fn a_user(
/// #     store: &dyn todo_core::UserStore,
/// #     clock: &dyn todo_core::Clock,
/// #     name: &str,
/// # ) -> Result<todo_core::UserId, Box<dyn std::error::Error>> {
/// #     let now = clock.now();
/// #     let id = todo_core::UserId::from_uuid(todo_core::new_v7(now, &todo_core::testing::SeededRandom::new(name.len() as u64))?);
/// #     let user = todo_core::User {
/// #         id,
/// #         username: todo_core::Username::parse(name)?,
/// #         email: None,
/// #         email_verified: false,
/// #         role: todo_core::Role::User,
/// #         disabled: false,
/// #         created_at: now,
/// #         updated_at: now,
/// #     };
/// #     let password_hash = todo_core::PasswordHash::new("not a hash".to_owned());
/// #     store.insert_user(&todo_core::UserRecord { user, password_hash, tokens_revoked_before: None })?;
/// #     Ok(id)
/// # }
///
/// let store = Arc::new(MemoryStore::new());
/// let clock = Arc::new(ManualClock::new());
/// let tasks = TaskService::new(store.clone(), clock.clone(), Arc::new(SeededRandom::new(1)));
/// let alice = a_user(&*store, &*clock, "alice")?;
/// let bob = a_user(&*store, &*clock, "bob")?;
///
/// let milk = tasks.create(alice, NewTask::titled(Title::parse("Buy milk")?))?;
/// clock.advance(std::time::Duration::from_secs(1));
/// let bread = tasks.create(alice, NewTask::titled(Title::parse("Buy bread")?))?;
///
/// // Newest first by default; `sort` and the filters narrow it.
/// let page = tasks.list(alice, &TaskQuery::default(), None)?;
/// assert_eq!(page.items, vec![bread.clone(), milk.clone()]);
/// let oldest_first = TaskQuery { sort: TaskSort::CreatedAsc, ..TaskQuery::default() };
/// assert_eq!(tasks.list(alice, &oldest_first, None)?.items, vec![milk.clone(), bread]);
///
/// // Another user's task is not found, exactly like a missing one.
/// assert!(tasks.list(bob, &TaskQuery::default(), None)?.items.is_empty());
/// assert!(matches!(tasks.get(bob, milk.id), Err(Error::NotFound)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TaskService {
    store: Arc<dyn TaskStore>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    limits: TaskLimits,
    /// The subscribers to ring when a change commits (shared by clones).
    bells: Arc<ChangeBells>,
    /// What an import derives its ids with (`None`: no imports here).
    sha256: Option<Arc<dyn Sha256>>,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl TaskService {
    /// A service without limits; see [`TaskService::with_limits`].
    #[must_use]
    pub fn new(store: Arc<dyn TaskStore>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Self {
        Self {
            store,
            clock,
            random,
            limits: TaskLimits::unlimited(),
            bells: Arc::default(),
            sha256: None,
        }
    }

    /// The same service, importing files ([`TaskService::import`]) with
    /// ids derived by `sha256` (`todo_auth::Sha256Digest`).
    #[must_use]
    pub fn with_sha256(mut self, sha256: Arc<dyn Sha256>) -> Self {
        self.sha256 = Some(sha256);
        self
    }

    /// The same service, enforcing `limits` on every user.
    #[must_use]
    pub fn with_limits(mut self, limits: TaskLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Takes one write from the owner's allowance.
    fn spend_write(&self, owner: UserId) -> Result<()> {
        self.limits
            .writes_per_user
            .check(&owner)
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }

    /// Wakes this process's subscribers of the streams a write to
    /// `project`'s tasks went to: its members' (an Inbox's: its owner's).
    /// Read after the write: a member added meanwhile had no change in
    /// their stream, one removed meanwhile costs one empty read.
    fn ring_project(&self, caller: UserId, project: ProjectId) {
        if project == ProjectId::inbox_of(caller) {
            self.bells.ring(caller);
            return;
        }
        self.bells
            .ring_members(|| self.store.project_members(project));
    }

    /// Creates a task at version 1 in `new.project` (the caller's Inbox
    /// if none); `done: true` sets `completed_at`. Fails with
    /// [`Error::NotFound`] for a project the caller is not a member of,
    /// [`Error::Forbidden`] for one they only view,
    /// [`Error::QuotaExceeded`] when the project's owner keeps as many
    /// tasks as the limits allow, and [`Error::RateLimited`] past the
    /// caller's write rate.
    pub fn create(&self, caller: UserId, new: NewTask) -> Result<Task> {
        self.spend_write(caller)?;
        // A subtask goes where its parent is, unless a project is named
        // (the store then checks that the two are the same).
        let project = match (new.project, new.parent) {
            (Some(project), _) => project,
            (None, Some(parent)) => {
                let found = self.store.find_task(caller, parent)?;
                found
                    .ok_or(ValidationError::from(TreeRefusal::NoSuchParent))?
                    .project
            }
            (None, None) => ProjectId::inbox_of(caller),
        };
        let now = self.clock.now();
        let mut task = Task {
            id: TaskId::from_uuid(new_v7(now, &*self.random)?),
            project,
            created_by: caller,
            title: new.title,
            description: new.description,
            done: new.done,
            completed_at: new.done.then_some(now),
            due_at: new.due_at,
            priority: new.priority,
            labels: new.labels,
            archived: new.archived,
            created_at: now,
            updated_at: now,
            version: TaskVersion::FIRST,
            parent: new.parent,
            recurrence: new.recurrence,
            time_zone: new.time_zone.unwrap_or_else(TimeZoneName::utc),
            series: None,
            reminders: new.reminders,
        };
        self.settle_series(None, &mut task, now)?;
        let may = &mut |standing: Standing| standing.may(ProjectAction::WriteTasks).is_ok();
        match self
            .store
            .insert_task_within(&task, self.limits.max_tasks_per_user, may)
        {
            Ok(TaskInsert::Inserted) => {
                self.ring_project(caller, task.project);
                Ok(task)
            }
            Ok(TaskInsert::AtQuota) => Err(Error::QuotaExceeded {
                what: "tasks",
                limit: self.limits.max_tasks_per_user.unwrap_or_default(),
            }),
            Ok(TaskInsert::Refused(standing)) => {
                // (the rule's own answer: NotFound or Forbidden)
                standing.may(ProjectAction::WriteTasks)?;
                Err(Error::Forbidden)
            }
            Ok(TaskInsert::BadParent(refusal)) => Err(ValidationError::from(refusal).into()),
            // The caller was deleted after their token was admitted: their
            // token is revoked, which is what the caller must hear.
            Err(StoreError::MissingReference(_)) => {
                Err(Error::InvalidToken(TokenRejection::Revoked))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The task, if it is in a project the caller is a member of;
    /// [`Error::NotFound`] if it is missing or not the caller's to see.
    pub fn get(&self, caller: UserId, id: TaskId) -> Result<Task> {
        self.store.find_task(caller, id)?.ok_or(Error::NotFound)
    }

    /// [`TaskService::get`] if the store can answer in place, without
    /// waiting (see [`TaskStore::find_task_in_place`]): what an async
    /// worker may call. `None`: call `get` on a blocking thread.
    pub fn get_in_place(&self, caller: UserId, id: TaskId) -> Option<Result<Task>> {
        let found = self.store.find_task_in_place(caller, id)?;
        Some(
            found
                .map_err(Error::from)
                .and_then(|t| t.ok_or(Error::NotFound)),
        )
    }

    /// [`TaskService::list`] if the store can answer in place, as
    /// [`TaskService::get_in_place`]. `None` also for an empty page of one
    /// named project that is not the caller's Inbox: whether the caller is
    /// a member of it (an empty page, or 404) is a read of its own, made by
    /// `list` on a blocking thread.
    pub fn list_in_place(
        &self,
        caller: UserId,
        query: &TaskQuery,
        cursor: Option<&TaskCursor>,
    ) -> Option<Result<Page<Task, TaskCursor>>> {
        if let Err(error) = check_cursor(query, cursor) {
            return Some(Err(error));
        }
        let items = self
            .store
            .list_tasks_in_place(caller, query, cursor, read_limit(query))?;
        match items {
            // (whether the caller is a member is a read of its own: on the
            // blocking path, `list`)
            Ok(items) if items.is_empty() && another_project(caller, query).is_some() => None,
            items => Some(items.map_err(Error::from).map(|items| page(query, items))),
        }
    }

    /// A page of the tasks of the projects the caller is a member of (of
    /// `query.project` only, if it names one: [`Error::NotFound`] for a
    /// project the caller is not a member of, as for everything in it);
    /// `cursor` must come from the same query.
    pub fn list(
        &self,
        caller: UserId,
        query: &TaskQuery,
        cursor: Option<&TaskCursor>,
    ) -> Result<Page<Task, TaskCursor>> {
        check_cursor(query, cursor)?;
        let items = self
            .store
            .list_tasks(caller, query, cursor, read_limit(query))?;
        self.member_if_empty(caller, query, &items)?;
        Ok(page(query, items))
    }

    /// A list of one named project that came back empty: empty for a
    /// member, [`Error::NotFound`] for anyone else (a page with a task in
    /// it was read through the caller's memberships, so they are one).
    fn member_if_empty(&self, caller: UserId, query: &TaskQuery, items: &[Task]) -> Result<()> {
        match another_project(caller, query) {
            Some(project)
                if items.is_empty() && !self.store.project_members(project)?.contains(&caller) =>
            {
                Err(Error::NotFound)
            }
            _ => Ok(()),
        }
    }

    /// [`TaskService::list`], unless the list would span more than
    /// `max_projects` projects ([`TaskStore::list_tasks_within`]): then
    /// `None`, with no task read. Such a list costs a read a project, and
    /// the caller makes room for it (a slot) before calling `list`.
    pub fn list_within(
        &self,
        caller: UserId,
        query: &TaskQuery,
        cursor: Option<&TaskCursor>,
        max_projects: usize,
    ) -> Result<Option<Page<Task, TaskCursor>>> {
        check_cursor(query, cursor)?;
        let items =
            self.store
                .list_tasks_within(caller, query, cursor, read_limit(query), max_projects)?;
        if let Some(items) = &items {
            self.member_if_empty(caller, query, items)?;
        }
        Ok(items.map(|items| page(query, items)))
    }

    /// Applies a merge patch. With `expected`, a task at another version is
    /// left alone ([`Error::VersionMismatch`]). A patch that changes nothing
    /// keeps the version. The read, the patch and the write are one atomic
    /// step of the store: without `expected`, a concurrent change is never a
    /// failure, the patch applies on top of it. A viewer of the task's
    /// project gets [`Error::Forbidden`], anyone else who is not a member
    /// [`Error::NotFound`].
    pub fn update(
        &self,
        caller: UserId,
        id: TaskId,
        patch: TaskPatch,
        expected: Option<TaskVersion>,
    ) -> Result<Task> {
        self.write_task(caller, id, patch, expected.into())
            .map(|written| written.task)
    }

    /// [`TaskService::update`] under any precondition.
    pub(crate) fn write_task(
        &self,
        caller: UserId,
        id: TaskId,
        patch: TaskPatch,
        precondition: Precondition,
    ) -> Result<Written> {
        self.spend_write(caller)?;
        let mut refused = None;
        let now = std::cell::Cell::new(self.clock.now());
        let change = &mut |current: &Task, role| {
            // Read while the store holds the task: the versions' times
            // follow their order.
            let now_read = self.clock.now();
            now.set(now_read);
            let allowed = Standing::Member(role).may(ProjectAction::WriteTasks);
            if let Err(error) = allowed.and_then(|()| precondition.check(current.version)) {
                refused = Some(error);
                return None;
            }
            let mut task = current.clone();
            if !patch.clone().apply(&mut task, now_read) {
                return None;
            }
            if let Err(error) = self.settle_series(Some(current), &mut task, now_read) {
                refused = Some(error);
                return None;
            }
            task.version = current.version.next();
            task.updated_at = now_read;
            Some(task)
        };
        let follow_up =
            &mut |before: &Task, after: &Task| self.next_occurrence(before, after, now.get());
        let written = self.store.write_task(
            caller,
            id,
            change,
            follow_up,
            self.limits.max_tasks_per_user,
        )?;
        match (written, refused) {
            (TaskWrite::NotFound, _) => Err(Error::NotFound),
            (_, Some(error)) => Err(error),
            (TaskWrite::BadParent(refusal), None) => Err(ValidationError::from(refusal).into()),
            (TaskWrite::AtQuota, None) => Err(Error::QuotaExceeded {
                what: "tasks",
                limit: self.limits.max_tasks_per_user.unwrap_or_default(),
            }),
            (TaskWrite::Written { task, follow_up }, None) => {
                // (A patch that changed nothing recorded no change: a
                // spurious ring costs a subscriber one empty read.)
                self.ring_project(caller, task.project);
                // Completed again (or at once elsewhere): the next one was
                // made by the first completion; the answer names it too.
                let next_occurrence = match (follow_up, task.series) {
                    (Some(next), _) => Some(next),
                    (None, Some(series)) if task.done && task.recurrence.is_some() => self
                        .store
                        .find_occurrence(caller, series.id, series.occurrence.saturating_add(1))?,
                    (None, _) => None,
                };
                Ok(Written {
                    task: *task,
                    next_occurrence,
                })
            }
        }
    }

    /// Keeps a task's series in step with its rule: none without a rule; a
    /// rule needs a due time (and reminders before it do too); a new rule,
    /// zone or due time starts a new series from that due time.
    fn settle_series(&self, before: Option<&Task>, task: &mut Task, now: Timestamp) -> Result<()> {
        let relative = task
            .reminders
            .iter()
            .any(|r| matches!(r, Reminder::BeforeDue(_)));
        if relative && task.due_at.is_none() {
            return Err(ValidationError::Format {
                field: "reminders",
                what: "reminder before the due time of a task with a due time",
            }
            .into());
        }
        let Some(_) = task.recurrence else {
            task.series = None;
            return Ok(());
        };
        let due = task.due_at.ok_or(ValidationError::Format {
            field: "recurrence",
            what: "rule of a task with a due time",
        })?;
        let same_series = before.is_some_and(|before| {
            before.recurrence == task.recurrence
                && before.time_zone == task.time_zone
                && before.due_at == task.due_at
        });
        if task.series.is_none() || !same_series {
            task.series = Some(Series {
                id: SeriesId::from_uuid(new_v7(now, &*self.random)?),
                start: due,
                occurrence: 1,
            });
        }
        Ok(())
    }

    /// The next occurrence to make when `after` completes `before`, a
    /// recurring task: its rule's next date, as a new open task of the
    /// same series (its reminders those relative to the due time).
    fn next_occurrence(&self, before: &Task, after: &Task, now: Timestamp) -> Option<Task> {
        if before.done || !after.done {
            return None;
        }
        let rule = after.recurrence.as_ref()?;
        let series = after.series?;
        let occurrence = series.occurrence.checked_add(1)?;
        let due = rule.nth(series.start, &after.time_zone, occurrence)?;
        Some(Task {
            id: TaskId::from_uuid(new_v7(now, &*self.random).ok()?),
            done: false,
            completed_at: None,
            due_at: Some(due),
            archived: false,
            created_at: now,
            updated_at: now,
            version: TaskVersion::FIRST,
            series: Some(Series {
                occurrence,
                ..series
            }),
            reminders: after.reminders.relative(),
            ..after.clone()
        })
    }

    /// Deletes a task; with `expected`, only at that version. Who may is
    /// as for [`TaskService::update`].
    pub fn delete(&self, caller: UserId, id: TaskId, expected: Option<TaskVersion>) -> Result<()> {
        self.delete_task(caller, id, expected.into())
    }

    /// [`TaskService::delete`] under any precondition.
    pub(crate) fn delete_task(
        &self,
        caller: UserId,
        id: TaskId,
        precondition: Precondition,
    ) -> Result<()> {
        self.spend_write(caller)?;
        let mut refused = None;
        let now = self.clock.now();
        let found = self
            .store
            .delete_task(caller, id, now, &mut |current, role| {
                let allowed = Standing::Member(role).may(ProjectAction::WriteTasks);
                match allowed.and_then(|()| precondition.check(current.version)) {
                    Ok(()) => true,
                    Err(error) => {
                        refused = Some(error);
                        false
                    }
                }
            })?;
        match (found, refused) {
            (None, _) => Err(Error::NotFound),
            (Some(_), Some(error)) => Err(error),
            (Some(task), None) => {
                self.ring_project(caller, task.project);
                Ok(())
            }
        }
    }
}

impl TaskService {
    /// The owner's changes after `since`, oldest first; without `since`,
    /// from the oldest one kept. Fails with [`Error::Gone`] when retention
    /// has dropped changes after `since` (the client must list its tasks
    /// again), and as invalid input for another user's cursor or one ahead
    /// of the stream (not made by this deployment's database).
    pub fn changes(
        &self,
        owner: UserId,
        since: Option<&ChangeCursor>,
        limit: ChangeLimit,
    ) -> Result<ChangePage> {
        // Without a cursor: from where the stream is whole, after what
        // retention or a project's cap dropped (the oldest change kept of
        // one project can be older than another's cut: read from there,
        // the next page would be answered as gone; review of session 22).
        let after = match since {
            Some(cursor) => cursor.position_for(owner)?,
            None => {
                self.store
                    .changes_after(owner, LogPosition::START, 0)?
                    .pruned_through
            }
        };
        let mut log = self.store.changes_after(owner, after, limit.get())?;
        if since.is_some() {
            check_position(after, &log)?;
        }
        // A page of large tasks holds fewer changes: the next goes on
        // from the last one it holds.
        let fits = crate::query::fitting(
            &log.changes,
            limit.get(),
            crate::change::Change::json_bytes_at_most,
            crate::change::Change::json_bytes,
        );
        let next = if fits < log.changes.len() {
            log.changes.truncate(fits);
            log.changes.last().map_or(after, |change| change.position)
        } else {
            // (past changes the caller may not see too: a stream read up
            // to the head goes on from there, not from its last change; a
            // pruning between the two reads above is answered as gone next)
            log.changes
                .last()
                .map_or(after, |change| change.position)
                .max(log.scanned_through)
        }
        .max(after);
        Ok(ChangePage {
            items: log.changes,
            next_cursor: ChangeCursor::new(owner, next),
        })
    }

    /// Follows the owner's stream live from `since` (from its head without
    /// one: only what commits from now on). Fails as [`TaskService::changes`]
    /// does for a cursor that is someone else's, ahead of the stream, or
    /// behind the retention.
    pub fn subscribe(
        &self,
        owner: UserId,
        since: Option<&ChangeCursor>,
    ) -> Result<ChangeSubscription> {
        // The stream's bounds only (no change is read).
        let bounds = |owner| self.store.changes_after(owner, LogPosition::START, 0);
        let cursor = match since {
            Some(cursor) => {
                // Weighed now, as a read would: a bad cursor fails here.
                check_position(cursor.position_for(owner)?, &bounds(owner)?)?;
                *cursor
            }
            None => ChangeCursor::new(owner, bounds(owner)?.head),
        };
        Ok(ChangeSubscription::new(self.clone(), owner, cursor))
    }

    /// Wakes this process's subscribers of `owner`'s stream: for changes
    /// committed by another process on the same database (this service
    /// wakes them itself for its own writes). A wake-up with nothing new
    /// costs each subscriber one read.
    pub fn notify_changed(&self, owner: UserId) {
        self.bells.ring(owner);
    }

    /// Wakes this process's subscribers of the streams of the members of
    /// `projects`, for changes of them committed by another process: one
    /// read of their members, and only if someone here is waiting.
    pub fn notify_projects_changed(&self, projects: &[ProjectId]) {
        self.bells
            .ring_members(|| self.store.members_of_projects(projects));
    }

    /// Wakes every subscriber of this process: for when changes of other
    /// processes may have gone unannounced (a listener that reconnected).
    pub fn notify_all_changed(&self) {
        self.bells.ring_all();
    }

    /// Subscriptions open now in this process, across owners.
    #[must_use]
    pub fn live_subscriptions(&self) -> usize {
        self.bells.subscribers()
    }

    pub(crate) fn bells(&self) -> &ChangeBells {
        &self.bells
    }

    pub(crate) fn shared_bells(&self) -> Arc<ChangeBells> {
        Arc::clone(&self.bells)
    }

    /// Fires the reminders due now, at most `limit` (see
    /// [`TaskStore::fire_due_reminders`]), and wakes this process's
    /// subscribers of the streams they went to; returns how many streams.
    /// Any number of instances may call it at once: each reminder fires
    /// once.
    pub fn fire_due_reminders(&self, limit: usize) -> Result<usize> {
        let woken = self.store.fire_due_reminders(self.clock.now(), limit)?;
        for member in &woken {
            self.bells.ring(*member);
        }
        Ok(woken.len())
    }

    /// The time by the service's clock (what an export is stamped with).
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A page of the caller's export: up to `limit` tasks of the projects
    /// they own (their Inbox included, whoever made them), by id (so by
    /// creation), after `after`. An export reads page after page, so that
    /// it never holds more than one in memory.
    pub fn export_page(
        &self,
        caller: UserId,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>> {
        Ok(self.store.owned_tasks(caller, after, limit)?)
    }

    /// Imports `file` as the caller's, all or nothing: its projects become
    /// projects they own (its Inbox's tasks go to theirs), its tasks are
    /// made in them; what an import of the same file made before is left
    /// as it is (see [`crate::import`]). The caller keeps at most their
    /// task quota and `max_projects` projects. A refusal names the file's
    /// line or item ([`Error::BadImport`]); nothing is written then.
    pub fn import(
        &self,
        caller: UserId,
        file: ImportFile,
        max_projects: Option<u64>,
    ) -> Result<ImportCounts> {
        // One write to begin (a refused import costs that, as any refused
        // write does, so a client that waits as told gets in again), and,
        // once it is written, one more a hundred objects, as far as the
        // allowance goes: a large import leaves its writer waiting for it
        // to refill.
        let objects = file.projects.len() + file.tasks.len();
        self.spend_write(caller)?;
        let sha = self
            .sha256
            .as_deref()
            .ok_or_else(|| Error::internal(NoSha256))?;
        let plan = import::plan(caller, file, self.clock.now(), sha)?;
        let outcome =
            self.store
                .import(caller, &plan, self.limits.max_tasks_per_user, max_projects);
        let place = |index: usize| {
            plan.tasks
                .get(index)
                .map_or(Place::File, |(place, _)| *place)
        };
        match outcome {
            Ok(ImportOutcome::Imported(counts)) => {
                for _ in 0..objects / IMPORT_OBJECTS_A_WRITE {
                    if self.spend_write(caller).is_err() {
                        break;
                    }
                }
                let mut rung = std::collections::HashSet::new();
                for project in plan
                    .projects
                    .iter()
                    .map(|p| p.id)
                    .chain(plan.tasks.iter().map(|(_, t)| t.project))
                {
                    if rung.insert(project) {
                        self.ring_project(caller, project);
                    }
                }
                if !plan.projects.is_empty() {
                    self.bells.ring(caller);
                }
                Ok(counts)
            }
            Ok(ImportOutcome::AtQuota { what }) => Err(Error::QuotaExceeded {
                what,
                limit: match what {
                    "projects" => max_projects,
                    _ => self.limits.max_tasks_per_user,
                }
                .unwrap_or_default(),
            }),
            Ok(ImportOutcome::BadParent { index, refusal }) => Err(ImportError::at(
                place(index),
                format!("parent_id: {}", ValidationError::from(refusal)),
            )
            .into()),
            Ok(ImportOutcome::NotOwned { index }) => Err(ImportError::at(
                place(index),
                "project_id: a project the importer does not own",
            )
            .into()),
            Ok(ImportOutcome::Shared { index }) => Err(ImportError::at(
                place(index),
                "project_id: a project shared with others since an import made it \
                 (an import writes only to projects of its importer alone)",
            )
            .into()),
            Err(StoreError::MissingReference(_)) => {
                Err(Error::InvalidToken(TokenRejection::Revoked))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A page of a project's feed: its tasks that are not archived, by
    /// creation, after `after`. For a caller who holds the feed's token
    /// ([`crate::ProjectService::feed_project`]), not a member's call.
    pub fn feed_page(
        &self,
        project: ProjectId,
        after: Option<(Timestamp, TaskId)>,
        limit: usize,
    ) -> Result<Vec<Task>> {
        Ok(self.store.project_tasks(project, after, limit)?)
    }

    /// Retention: forgets the changes older than `keep`; returns how many.
    pub fn prune_changes(&self, keep: std::time::Duration) -> Result<u64> {
        let before = self.clock.now().saturating_sub(keep);
        Ok(self.store.prune_changes(before)?)
    }
}

const BAD_SINCE: ValidationError = ValidationError::Format {
    field: "since",
    what: "change cursor",
};

/// Whether a reader that has seen the stream up to `after` can go on from
/// there: not if retention dropped changes it has not seen
/// ([`Error::Gone`]), nor if it claims more than the stream holds (a
/// cursor this database did not make).
fn check_position(after: LogPosition, log: &ChangeLog) -> Result<()> {
    if after < log.pruned_through {
        return Err(Error::Gone);
    }
    if after > log.head {
        return Err(BAD_SINCE.into());
    }
    Ok(())
}

/// A cursor must come from the same query (both list paths check it first).
fn check_cursor(query: &TaskQuery, cursor: Option<&TaskCursor>) -> Result<()> {
    match cursor {
        Some(cursor) => cursor.check(query).map_err(Error::from),
        None => Ok(()),
    }
}

/// How many tasks a page reads: one more than it holds, which tells
/// whether there is a next page.
fn read_limit(query: &TaskQuery) -> usize {
    query.limit.get().saturating_add(1)
}

/// The project `query` names, if it is not the caller's own Inbox (one
/// shared with them, another user's Inbox, or no project at all).
fn another_project(caller: UserId, query: &TaskQuery) -> Option<ProjectId> {
    query
        .project
        .filter(|project| *project != ProjectId::inbox_of(caller))
}

/// The page of `query` from the tasks read for it ([`read_limit`]): its
/// limit, or fewer when they are large ([`crate::query::PAGE_BYTES`]).
fn page(query: &TaskQuery, mut items: Vec<Task>) -> Page<Task, TaskCursor> {
    let fits = crate::query::fitting(
        &items,
        query.limit.get(),
        Task::json_bytes_at_most,
        Task::json_bytes,
    );
    let next_cursor = if items.len() > fits {
        items.truncate(fits);
        items.last().map(|last| query.cursor_after(last))
    } else {
        None
    };
    Page { items, next_cursor }
}
