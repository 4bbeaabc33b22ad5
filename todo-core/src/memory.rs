//! An in-memory store of users, refresh tokens and tasks: for tests, examples
//! and embedding without a database. It keeps the same rules as the SQL
//! stores (the conformance suite checks them alike), and is the plain model
//! the SQL list queries are compared against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::api_token::{ApiTokenHash, ApiTokenRecord};
use crate::change::{
    Change, ChangeKind, ChangeLog, LogPosition, MAX_CHANGES_PER_OWNER, MAX_CHANGES_PER_PROJECT,
    MIN_CHANGES_KEPT_PER_PROJECT, Subject, trims_at,
};
use crate::email_verification::{EmailTokenHash, EmailVerificationRecord};
use crate::error::StoreError;
use crate::feed::FeedTokenHash;
use crate::import::{ImportCounts, ImportOutcome, ImportPlan};
use crate::passkey::{CeremonyKind, CeremonyRecord, PasskeyId, PasskeyRecord};
use crate::password_reset::{PasswordResetRecord, ResetTokenHash};
use crate::ports::{
    RefreshTokenStore, SecondFactorStore, TaskInsert, TaskStore, TaskWrite, UserStore,
};
use crate::project::{Member, MemberPut, Project, ProjectId, ProjectRole, ProjectStore, Standing};
use crate::query::{TaskCursor, TaskQuery};
use crate::relay::{RelayStore, RelayedStream};
use crate::second_factor::{
    MfaChallengeRecord, MfaTokenHash, RecoveryCodeHash, SecondFactors, TOTP_ENROLMENT_TTL,
    TotpRecord,
};
use crate::session::{EndedSessions, MAX_LIVE_SESSIONS, SessionKind, SessionRecord};
use crate::task::{SeriesId, Task, TaskId, TaskVersion, TreeRefusal};
use crate::time::Timestamp;
use crate::token::{RefreshTokenHash, RefreshTokenRecord, SessionId};
use crate::user::{Email, PasswordHash, User, UserChange, UserId, UserRecord, Username};
use crate::webhook::{DeliveryAttempt, Webhook, WebhookId, WebhookSettlement, WebhookStore};

#[derive(Debug, Default, Clone)]
struct Tables {
    users: BTreeMap<UserId, UserRecord>,
    refresh_tokens: BTreeMap<String, RefreshTokenRecord>,
    sessions: BTreeMap<SessionId, SessionRecord>,
    /// API tokens by their session; the session's part of each is in
    /// `sessions` (read back from there).
    api_tokens: BTreeMap<SessionId, ApiTokenRecord>,
    /// Reset links by digest.
    password_resets: BTreeMap<String, PasswordResetRecord>,
    /// Live verification links by digest (a used one is removed).
    email_verifications: BTreeMap<String, EmailVerificationRecord>,
    /// Authenticators, confirmed or pending, by user.
    totp: BTreeMap<UserId, TotpRecord>,
    /// Recovery codes by user and digest: when each was used.
    recovery_codes: BTreeMap<(UserId, String), Option<Timestamp>>,
    /// Two-step logins by digest.
    mfa_challenges: BTreeMap<String, MfaChallengeRecord>,
    /// Passkeys by id.
    passkeys: BTreeMap<PasskeyId, PasskeyRecord>,
    /// Passkey ceremonies' first steps by key.
    ceremonies: BTreeMap<String, CeremonyRecord>,
    tasks: BTreeMap<TaskId, Task>,
    /// The change log, oldest first, and the last number handed out.
    log: Vec<Entry>,
    last_pos: u64,
    /// Per user: the relay's and webhooks' bookkeeping, and how far their
    /// own changes are pruned.
    streams: BTreeMap<UserId, Stream>,
    /// Where each member's view of a project starts.
    joined: BTreeMap<(ProjectId, UserId), LogPosition>,
    /// How far each project's changes are pruned.
    project_pruned: BTreeMap<ProjectId, LogPosition>,
    /// Webhooks, each with its lease and its delivery log (newest last).
    webhooks: BTreeMap<WebhookId, StoredWebhook>,
    projects: BTreeMap<ProjectId, Project>,
    /// Every project's members, the owner among them.
    members: BTreeMap<(ProjectId, UserId), Member>,
    /// Scheduled reminders: whether each has fired.
    reminders: BTreeMap<(TaskId, Timestamp), bool>,
    /// Projects' feeds: their token's hash and when each was published.
    feeds: BTreeMap<ProjectId, (FeedTokenHash, Timestamp)>,
}

#[derive(Debug, Clone)]
struct StoredWebhook {
    webhook: Webhook,
    leased_until: Option<Timestamp>,
    log: Vec<DeliveryAttempt>,
}

/// Who sees a change: a project's members, or one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Project(ProjectId),
    User(UserId),
}

/// A change of the log, with who sees it.
#[derive(Debug, Clone)]
struct Entry {
    change: Change,
    audience: Audience,
}

/// A user's bookkeeping of their stream.
#[derive(Debug, Default, Clone)]
struct Stream {
    /// How far their own changes (`Audience::User`) are pruned.
    pruned_through: LogPosition,
    /// How far the relay has got, and until when it holds the stream.
    relayed_through: LogPosition,
    relay_leased_until: Option<Timestamp>,
    /// When a relay last leased the stream (`None`: never).
    relay_served_at: Option<Timestamp>,
    /// When one of the owner's webhooks was last leased, or its lease
    /// done (`None`: never).
    webhooks_served_at: Option<Timestamp>,
}

impl Tables {
    /// Inserts a project with its owner as its one member, and records its
    /// making (an Inbox's: nothing).
    fn insert_project(&mut self, project: &Project) {
        self.projects.insert(project.id, project.clone());
        self.members.insert(
            (project.id, project.owner),
            Member {
                user: project.owner,
                role: ProjectRole::Owner,
                added_at: project.created_at,
            },
        );
        // (An Inbox is made with its account, and announced by nothing.)
        if !project.inbox {
            self.record_project(
                ChangeKind::ProjectCreated,
                project.id,
                false,
                project.created_at,
            );
        }
    }

    /// Writes an import's plan (see [`TaskStore::import`]); on a refusal
    /// part of it may be written: the caller puts the tables back.
    fn import(
        &mut self,
        owner: UserId,
        plan: &ImportPlan,
        max_tasks: Option<u64>,
        max_projects: Option<u64>,
    ) -> ImportOutcome {
        let mut counts = ImportCounts::default();
        for project in &plan.projects {
            if self.projects.contains_key(&project.id) {
                counts.unchanged += 1;
                continue;
            }
            let owned = self.projects.values().filter(|p| p.owner == owner).count();
            if max_projects.is_some_and(|max| owned as u64 >= max) {
                return ImportOutcome::AtQuota { what: "projects" };
            }
            self.insert_project(project);
            counts.projects_created += 1;
        }
        for (index, (_, task)) in plan.tasks.iter().enumerate() {
            if self.tasks.contains_key(&task.id) {
                counts.unchanged += 1;
                continue;
            }
            if self.projects.get(&task.project).map(|p| p.owner) != Some(owner) {
                return ImportOutcome::NotOwned { index };
            }
            if self.members_of(task.project).len() > 1 {
                return ImportOutcome::Shared { index };
            }
            if let Some(refusal) = self.tree_refusal(task) {
                return ImportOutcome::BadParent { index, refusal };
            }
            if self.at_quota(task.project, max_tasks) {
                return ImportOutcome::AtQuota { what: "tasks" };
            }
            self.tasks.insert(task.id, task.clone());
            self.schedule_reminders(task);
            self.record_for_members(
                ChangeKind::TaskCreated,
                task.project,
                task.id,
                Some(task),
                task.updated_at,
            );
            counts.tasks_created += 1;
        }
        ImportOutcome::Imported(counts)
    }

    /// Removes a project, its members and its tasks.
    fn remove_project(&mut self, id: ProjectId) {
        self.projects.remove(&id);
        self.log
            .retain(|entry| entry.audience != Audience::Project(id));
        self.joined.retain(|(project, _), _| *project != id);
        self.project_pruned.remove(&id);
        self.feeds.remove(&id);
        self.members.retain(|(project, _), _| *project != id);
        self.tasks.retain(|_, task| task.project != id);
    }

    fn role_in(&self, user: UserId, project: ProjectId) -> Option<ProjectRole> {
        self.members.get(&(project, user)).map(|m| m.role)
    }

    /// The caller's standing in a project.
    fn standing(&self, user: UserId, project: ProjectId) -> Standing {
        self.role_in(user, project)
            .map_or(Standing::Stranger, Standing::Member)
    }

    /// The members of a project, in id order.
    fn members_of(&self, project: ProjectId) -> Vec<UserId> {
        self.members
            .range((project, UserId::from_uuid(uuid::Uuid::nil()))..)
            .take_while(|((p, _), _)| *p == project)
            .map(|((_, user), _)| *user)
            .collect()
    }

    /// Schedules `task`'s reminders anew, as a write of it does, by
    /// difference: a time it still has stays, fired or not; a time it no
    /// longer has goes; a new time is put only after its `updated_at`;
    /// none unfired once it is done or archived.
    fn schedule_reminders(&mut self, task: &Task) {
        let wanted: Vec<Timestamp> = if task.done || task.archived {
            Vec::new()
        } else {
            task.reminders
                .iter()
                .filter_map(|r| r.fires_at(task.due_at))
                .collect()
        };
        self.reminders
            .retain(|(id, at), fired| *id != task.id || *fired || wanted.contains(at));
        for at in wanted {
            if at > task.updated_at {
                self.reminders.entry((task.id, at)).or_insert(false);
            }
        }
    }

    /// Whether the owner of `project` keeps `max` tasks or more (in all
    /// their projects).
    fn at_quota(&self, project: ProjectId, max: Option<u64>) -> bool {
        let (Some(max), Some(owner)) = (max, self.projects.get(&project).map(|p| p.owner)) else {
            return false;
        };
        let kept = self
            .tasks
            .values()
            .filter(|t| {
                self.projects
                    .get(&t.project)
                    .is_some_and(|p| p.owner == owner)
            })
            .count();
        u64::try_from(kept).unwrap_or(u64::MAX) >= max
    }

    /// Why `task` cannot have the parent it names, if it cannot.
    fn tree_refusal(&self, task: &Task) -> Option<TreeRefusal> {
        let parent = task.parent?;
        let Some(first) = self
            .tasks
            .get(&parent)
            .filter(|p| p.project == task.project)
        else {
            return Some(TreeRefusal::NoSuchParent);
        };
        // The parent's depth: it and its ancestors.
        let mut depth = 0;
        let mut at = Some(first);
        while let Some(ancestor) = at {
            if ancestor.id == task.id {
                return Some(TreeRefusal::Cycle);
            }
            depth += 1;
            if depth > Task::MAX_DEPTH {
                return Some(TreeRefusal::TooDeep);
            }
            at = ancestor.parent.and_then(|p| self.tasks.get(&p));
        }
        // The task's own height: it and its deepest subtasks.
        let mut height = 1;
        let mut level = vec![task.id];
        loop {
            let below: Vec<TaskId> = self
                .tasks
                .values()
                .filter(|t| t.parent.is_some_and(|p| level.contains(&p)))
                .map(|t| t.id)
                .collect();
            if below.is_empty() || height > Task::MAX_DEPTH {
                break;
            }
            height += 1;
            level = below;
        }
        (depth + height > Task::MAX_DEPTH).then_some(TreeRefusal::TooDeep)
    }

    /// The task and its subtasks, every level (deepest last).
    fn subtree(&self, id: TaskId) -> Vec<TaskId> {
        let mut all = vec![id];
        let mut level = vec![id];
        while !level.is_empty() {
            level = self
                .tasks
                .values()
                .filter(|t| t.parent.is_some_and(|p| level.contains(&p)))
                .map(|t| t.id)
                .filter(|t| !all.contains(t))
                .collect();
            all.extend(&level);
        }
        all
    }

    /// Records a write to a task, as a change of its project.
    fn record_for_members(
        &mut self,
        kind: ChangeKind,
        project: ProjectId,
        task_id: TaskId,
        task: Option<&Task>,
        at: Timestamp,
    ) {
        let subject = Subject::Task {
            id: task_id,
            task: task.cloned(),
        };
        self.record(kind, Audience::Project(project), subject, at);
    }

    /// Records a change of a project: one of the project, or (`deleted`:
    /// a tombstone) one for each member, whose membership goes with it.
    fn record_project(&mut self, kind: ChangeKind, id: ProjectId, deleted: bool, at: Timestamp) {
        let Some(project) = self.projects.get(&id).cloned() else {
            return;
        };
        if deleted {
            for member in self.members_of(id) {
                let subject = Subject::Project { id, project: None };
                self.record(kind, Audience::User(member), subject, at);
            }
        } else {
            // (the role is each reader's, filled in as they read)
            let subject = Subject::Project {
                id,
                project: Some((project, ProjectRole::Owner)),
            };
            self.record(kind, Audience::Project(id), subject, at);
        }
    }

    /// Records a change of `member` of a project, as a change of the
    /// project; a removed member is told too, as they no longer see the
    /// project's changes. A member added sees the project's changes from
    /// this one on.
    fn record_member(
        &mut self,
        kind: ChangeKind,
        project: ProjectId,
        member: &Member,
        at: Timestamp,
    ) {
        let Some(username) = self
            .users
            .get(&member.user)
            .map(|u| u.user.username.clone())
        else {
            return;
        };
        let subject = Subject::Member {
            project,
            member: member.clone(),
            username,
        };
        let position = self.record(kind, Audience::Project(project), subject.clone(), at);
        match kind {
            ChangeKind::MemberRemoved => {
                self.joined.remove(&(project, member.user));
                self.record(kind, Audience::User(member.user), subject, at);
            }
            _ => {
                self.joined
                    .entry((project, member.user))
                    .or_insert(position);
            }
        }
    }

    /// Records a change (in the same call as the write), and trims its
    /// audience's changes to the cap when its number is one that trims.
    fn record(
        &mut self,
        kind: ChangeKind,
        audience: Audience,
        subject: Subject,
        at: Timestamp,
    ) -> LogPosition {
        self.last_pos += 1;
        let position = LogPosition::new(self.last_pos);
        self.log.push(Entry {
            change: Change {
                position,
                kind,
                subject,
                at,
            },
            audience,
        });
        if trims_at(self.last_pos) {
            self.trim(audience);
        }
        position
    }

    /// Drops the audience's changes older than its newest
    /// [`MAX_CHANGES_PER_PROJECT`], and a project's older than what its
    /// owner's other projects leave of [`MAX_CHANGES_PER_OWNER`] (at least
    /// its newest [`MIN_CHANGES_KEPT_PER_PROJECT`]).
    fn trim(&mut self, audience: Audience) {
        let mut cap = usize::try_from(MAX_CHANGES_PER_PROJECT).unwrap_or(usize::MAX);
        if let Audience::Project(project) = audience
            && let Some(owner) = self.projects.get(&project).map(|p| p.owner)
        {
            let others = self
                .log
                .iter()
                .filter(|entry| match entry.audience {
                    Audience::Project(other) => {
                        other != project
                            && self.projects.get(&other).is_some_and(|p| p.owner == owner)
                    }
                    Audience::User(_) => false,
                })
                .count();
            let budget = usize::try_from(MAX_CHANGES_PER_OWNER).unwrap_or(usize::MAX);
            let floor = usize::try_from(MIN_CHANGES_KEPT_PER_PROJECT).unwrap_or(usize::MAX);
            cap = cap.min(budget.saturating_sub(others)).max(floor);
        }
        let Some(through) = self
            .log
            .iter()
            .rev()
            .filter(|entry| entry.audience == audience)
            .nth(cap)
            .map(|entry| entry.change.position)
        else {
            return;
        };
        self.drop_through(audience, through);
    }

    /// Drops the audience's changes up to `through`, and marks them gone.
    fn drop_through(&mut self, audience: Audience, through: LogPosition) -> usize {
        let before = self.log.len();
        self.log
            .retain(|entry| entry.audience != audience || entry.change.position > through);
        let mark = match audience {
            Audience::Project(project) => self.project_pruned.entry(project).or_default(),
            Audience::User(user) => &mut self.streams.entry(user).or_default().pruned_through,
        };
        *mark = (*mark).max(through);
        before - self.log.len()
    }

    /// `user`'s stream: the changes of each project they are a member of,
    /// from the one that made them one (with their role there now), and
    /// those addressed to them.
    fn feed(&self, user: UserId) -> impl Iterator<Item = Change> + '_ {
        self.log
            .iter()
            .filter_map(move |entry| match entry.audience {
                Audience::User(to) => (to == user).then(|| entry.change.clone()),
                Audience::Project(project) => {
                    let role = self.role_in(user, project)?;
                    // (an owner, and a member from before this log, sees all)
                    let joined = self
                        .joined
                        .get(&(project, user))
                        .copied()
                        .unwrap_or(LogPosition::START);
                    if entry.change.position < joined {
                        return None;
                    }
                    let mut change = entry.change.clone();
                    if let Subject::Project {
                        project: Some((_, reader)),
                        ..
                    } = &mut change.subject
                    {
                        *reader = role;
                    }
                    Some(change)
                }
            })
    }

    /// How far `user`'s stream is pruned.
    fn pruned_for(&self, user: UserId) -> LogPosition {
        let own = self
            .streams
            .get(&user)
            .map_or(LogPosition::START, |stream| stream.pruned_through);
        self.members
            .keys()
            .filter(|(_, member)| *member == user)
            .filter_map(|key| {
                let pruned = self.project_pruned.get(&key.0)?;
                let joined = self.joined.get(key).copied().unwrap_or(LogPosition::START);
                (*pruned >= joined).then_some(*pruned)
            })
            .fold(own, LogPosition::max)
    }

    /// Whether `user`'s stream has a change after `after`.
    fn behind(&self, user: UserId, after: LogPosition) -> bool {
        self.feed(user).any(|change| change.position > after)
    }

    fn head(&self) -> LogPosition {
        LogPosition::new(self.last_pos)
    }
}

/// One lock over all tables: every call is atomic, as a transaction would be.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a table half-written:
        // each call finishes its checks before it writes.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The project of the feed whose token has this hash, with its owner,
    /// while the owner's account stands by it: not disabled, no revocation
    /// of its tokens since the feed was published.
    fn feed_stands(tables: &Tables, hash: &FeedTokenHash) -> Option<(ProjectId, UserId)> {
        let (project, (_, published)) = tables.feeds.iter().find(|(_, (kept, _))| kept == hash)?;
        let owner = tables.projects.get(project)?.owner;
        let stands = tables.users.get(&owner).is_some_and(|record| {
            !record.user.disabled
                && record
                    .tokens_revoked_before
                    .is_none_or(|cut| cut <= *published)
        });
        stands.then_some((*project, owner))
    }
}

impl UserStore for MemoryStore {
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut tables = self.tables();
        let taken = tables
            .users
            .values()
            .any(|u| u.user.username == user.user.username);
        if taken || tables.users.contains_key(&user.user.id) {
            return Err(StoreError::Conflict("username or id taken"));
        }
        tables.users.insert(user.user.id, user.clone());
        // Every account comes with its Inbox.
        let inbox = Project::inbox(user.user.id, user.user.created_at);
        tables.members.insert(
            (inbox.id, inbox.owner),
            Member {
                user: inbox.owner,
                role: ProjectRole::Owner,
                added_at: inbox.created_at,
            },
        );
        tables.projects.insert(inbox.id, inbox);
        Ok(())
    }

    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.tables().users.get(&id).cloned())
    }

    fn find_user_by_username(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .tables()
            .users
            .values()
            .find(|u| &u.user.username == username)
            .cloned())
    }

    fn update_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&user.user.id) {
            return Ok(false);
        }
        let clash = tables
            .users
            .values()
            .any(|u| u.user.username == user.user.username && u.user.id != user.user.id);
        if clash {
            return Err(StoreError::Conflict("username taken"));
        }
        tables.users.insert(user.user.id, user.clone());
        Ok(true)
    }

    fn change_user(&self, id: UserId, change: &UserChange) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let Some(record) = tables.users.get_mut(&id) else {
            return Ok(false);
        };
        let moved = change.email.is_some();
        if let Some(email) = &change.email {
            record.user.email.clone_from(email);
            record.user.email_verified = false;
        }
        if let Some(role) = change.role {
            record.user.role = role;
        }
        if let Some(disabled) = change.disabled {
            record.user.disabled = disabled;
        }
        if let Some(cut) = change.revoke_before {
            record.tokens_revoked_before = Some(cut);
        }
        record.user.updated_at = change.updated_at;
        if moved {
            tables.password_resets.retain(|_, r| r.user_id != id);
            tables.email_verifications.retain(|_, r| r.user_id != id);
        }
        Ok(true)
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
        updated_at: Timestamp,
        revoke_before: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        match tables.users.get_mut(&id) {
            Some(record) if record.password_hash.as_str() == expected.as_str() => {
                record.password_hash = new.clone();
                record.user.updated_at = updated_at;
                if revoke_before.is_some() {
                    record.tokens_revoked_before = revoke_before;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn delete_user(&self, id: UserId, at: Timestamp) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        // The others told first, while the user and their rows are there.
        let theirs: Vec<(ProjectId, Member)> = tables
            .members
            .iter()
            .filter(|((_, user), _)| *user == id)
            .map(|((project, _), member)| (*project, member.clone()))
            .collect();
        for (project, member) in theirs {
            match tables.projects.get(&project) {
                Some(p) if p.inbox => {}
                Some(p) if p.owner == id => {
                    tables.record_project(ChangeKind::ProjectDeleted, project, true, at);
                }
                Some(_) => {
                    tables.members.remove(&(project, id));
                    tables.record_member(ChangeKind::MemberRemoved, project, &member, at);
                }
                None => {}
            }
        }
        let existed = tables.users.remove(&id).is_some();
        tables.sessions.retain(|_, s| s.user_id != id);
        tables.api_tokens.retain(|_, t| t.session.user_id != id);
        tables.password_resets.retain(|_, r| r.user_id != id);
        tables.email_verifications.retain(|_, r| r.user_id != id);
        tables.forget_second_factors(id);
        tables.refresh_tokens.retain(|_, t| t.user_id != id);
        tables.streams.remove(&id);
        tables
            .log
            .retain(|entry| entry.audience != Audience::User(id));
        tables.joined.retain(|(_, user), _| *user != id);
        tables
            .webhooks
            .retain(|_, stored| stored.webhook.owner != id);
        let owned: Vec<ProjectId> = tables
            .projects
            .values()
            .filter(|p| p.owner == id)
            .map(|p| p.id)
            .collect();
        for project in owned {
            tables.remove_project(project);
        }
        tables.members.retain(|(_, user), _| *user != id);
        tables.refresh_tokens.retain(|_, token| token.user_id != id);
        Ok(existed)
    }

    fn list_users(&self, after: Option<UserId>, limit: usize) -> Result<Vec<User>, StoreError> {
        let tables = self.tables();
        let users = tables.users.values().map(|r| &r.user);
        Ok(users
            .filter(|u| after.is_none_or(|a| u.id > a))
            .take(limit)
            .cloned()
            .collect())
    }

    fn find_standing(
        &self,
        id: UserId,
        ended_since: Timestamp,
    ) -> Result<Option<(UserRecord, EndedSessions)>, StoreError> {
        let tables = self.tables();
        let Some(record) = tables.users.get(&id).cloned() else {
            return Ok(None);
        };
        let mut ended: Vec<(SessionId, Timestamp)> = tables
            .sessions
            .values()
            .filter_map(|s| s.ended_at.map(|at| (s, at)))
            .filter(|(s, at)| s.user_id == id && *at >= ended_since)
            .map(|(s, at)| (s.id, at))
            .collect();
        ended.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        ended.truncate(EndedSessions::MAX + 1);
        Ok(Some((record, EndedSessions::read(ended))))
    }

    fn find_api_token(&self, hash: &ApiTokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .api_tokens
            .values()
            .find(|t| t.hash == *hash)
            .and_then(|t| tables.api_token(t)))
    }

    fn api_token_used(&self, session: SessionId, at: Timestamp) -> Result<(), StoreError> {
        if let Some(s) = self.tables().sessions.get_mut(&session) {
            s.last_used_at = s.last_used_at.max(at);
        }
        Ok(())
    }

    fn create_password_reset(&self, reset: &PasswordResetRecord) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&reset.user_id) {
            return Err(StoreError::MissingReference(
                "reset link of an unknown user",
            ));
        }
        tables
            .password_resets
            .retain(|_, r| r.user_id != reset.user_id);
        tables
            .password_resets
            .insert(reset.hash.as_str().to_owned(), reset.clone());
        Ok(())
    }

    fn find_password_reset(
        &self,
        hash: &ResetTokenHash,
    ) -> Result<Option<PasswordResetRecord>, StoreError> {
        Ok(self.tables().password_resets.get(hash.as_str()).cloned())
    }

    fn delete_password_resets(&self, user: UserId) -> Result<(), StoreError> {
        self.tables()
            .password_resets
            .retain(|_, r| r.user_id != user);
        Ok(())
    }

    fn use_password_reset(
        &self,
        hash: &ResetTokenHash,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let Tables {
            users,
            password_resets,
            ..
        } = &mut *tables;
        let standing = |reset: &PasswordResetRecord| {
            users.get(&reset.user_id).is_some_and(|u| {
                !u.user.disabled
                    && u.tokens_revoked_before
                        .is_none_or(|cut| cut <= reset.created_at)
            })
        };
        match password_resets.get_mut(hash.as_str()) {
            Some(reset) if reset.is_live(now) && standing(reset) => {
                reset.used_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn find_users_by_verified_email(
        &self,
        email: &Email,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let tables = self.tables();
        let mut found: Vec<UserRecord> = tables
            .users
            .values()
            .filter(|r| {
                r.user.email_verified
                    && r.user
                        .email
                        .as_ref()
                        .is_some_and(|e| e.as_str().eq_ignore_ascii_case(email.as_str()))
            })
            .cloned()
            .collect();
        found.sort_by_key(|r| (r.user.created_at, r.user.id));
        found.truncate(limit);
        Ok(found)
    }

    fn create_email_verification(&self, link: &EmailVerificationRecord) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&link.user_id) {
            return Err(StoreError::MissingReference(
                "verification link of an unknown user",
            ));
        }
        tables
            .email_verifications
            .retain(|_, r| r.user_id != link.user_id);
        tables
            .email_verifications
            .insert(link.hash.as_str().to_owned(), link.clone());
        Ok(())
    }

    fn use_email_verification(
        &self,
        hash: &EmailTokenHash,
        now: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tables = self.tables();
        let Some(link) = tables.email_verifications.remove(hash.as_str()) else {
            return Ok(None);
        };
        if now >= link.expires_at {
            return Ok(None);
        }
        match tables.users.get_mut(&link.user_id) {
            Some(record) if record.user.email.as_ref() == Some(&link.email) => {
                record.user.email_verified = true;
                Ok(Some(link.user_id))
            }
            _ => Ok(None),
        }
    }
}

impl Tables {
    /// Deletes the user's authenticator, recovery codes and two-step
    /// logins; returns whether there was an authenticator.
    fn forget_second_factors(&mut self, user: UserId) -> bool {
        self.recovery_codes.retain(|(owner, _), _| *owner != user);
        self.mfa_challenges.retain(|_, c| c.user_id != user);
        self.ceremonies.retain(|_, c| c.user_id != Some(user));
        let passkeys = self.passkeys.len();
        self.passkeys.retain(|_, p| p.user_id != user);
        let had_passkeys = self.passkeys.len() < passkeys;
        self.totp.remove(&user).is_some() || had_passkeys
    }
}

impl SecondFactorStore for MemoryStore {
    fn second_factors(&self, user: UserId) -> Result<SecondFactors, StoreError> {
        let tables = self.tables();
        let left = tables
            .recovery_codes
            .iter()
            .filter(|((owner, _), used)| *owner == user && used.is_none())
            .count();
        let passkeys = tables
            .passkeys
            .values()
            .filter(|p| p.user_id == user)
            .count();
        Ok(SecondFactors {
            totp: tables.totp.get(&user).cloned(),
            recovery_codes_left: u32::try_from(left).unwrap_or(u32::MAX),
            passkeys: u32::try_from(passkeys).unwrap_or(u32::MAX),
        })
    }

    fn begin_totp(&self, enrolment: &TotpRecord) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&enrolment.user_id) {
            return Err(StoreError::MissingReference("enrolment of an unknown user"));
        }
        if tables
            .totp
            .get(&enrolment.user_id)
            .is_some_and(|t| t.confirmed_at.is_some())
        {
            return Ok(false);
        }
        tables.totp.insert(enrolment.user_id, enrolment.clone());
        Ok(true)
    }

    fn confirm_totp(
        &self,
        user: UserId,
        created_at: Timestamp,
        step: u64,
        confirmed_at: Timestamp,
        codes: &[RecoveryCodeHash],
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let Some(totp) = tables.totp.get_mut(&user) else {
            return Ok(false);
        };
        if totp.confirmed_at.is_some() || totp.created_at != created_at {
            return Ok(false);
        }
        totp.confirmed_at = Some(confirmed_at);
        totp.last_step = Some(step);
        tables.recovery_codes.retain(|(owner, _), _| *owner != user);
        for code in codes {
            tables
                .recovery_codes
                .insert((user, code.as_str().to_owned()), None);
        }
        Ok(true)
    }

    fn use_totp_step(&self, user: UserId, step: u64) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        match tables.totp.get_mut(&user) {
            Some(totp)
                if totp.confirmed_at.is_some() && totp.last_step.is_none_or(|last| last < step) =>
            {
                totp.last_step = Some(step);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn use_recovery_code(
        &self,
        user: UserId,
        code: &RecoveryCodeHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        match tables
            .recovery_codes
            .get_mut(&(user, code.as_str().to_owned()))
        {
            Some(used @ None) => {
                *used = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn remove_second_factors(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self.tables().forget_second_factors(user))
    }

    fn remove_totp(&self, user: UserId) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        tables.recovery_codes.retain(|(owner, _), _| *owner != user);
        tables.mfa_challenges.retain(|_, c| c.user_id != user);
        Ok(tables.totp.remove(&user).is_some())
    }

    fn create_mfa_challenge(&self, challenge: &MfaChallengeRecord) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&challenge.user_id) {
            return Err(StoreError::MissingReference(
                "two-step login of an unknown user",
            ));
        }
        tables
            .mfa_challenges
            .insert(challenge.hash.as_str().to_owned(), challenge.clone());
        Ok(())
    }

    fn take_mfa_attempt(
        &self,
        hash: &MfaTokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallengeRecord>, StoreError> {
        let mut tables = self.tables();
        match tables.mfa_challenges.get_mut(hash.as_str()) {
            Some(challenge) if now < challenge.expires_at && challenge.attempts_left > 0 => {
                let before = challenge.clone();
                challenge.attempts_left -= 1;
                Ok(Some(before))
            }
            _ => Ok(None),
        }
    }

    fn finish_mfa_challenge(&self, hash: &MfaTokenHash) -> Result<bool, StoreError> {
        Ok(self.tables().mfa_challenges.remove(hash.as_str()).is_some())
    }

    fn purge_second_factors(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut tables = self.tables();
        let count = |t: &Tables| t.mfa_challenges.len() + t.totp.len() + t.ceremonies.len();
        let before = count(&tables);
        tables.mfa_challenges.retain(|_, c| c.expires_at > cutoff);
        tables.ceremonies.retain(|_, c| c.expires_at > cutoff);
        let stale = cutoff.saturating_sub(TOTP_ENROLMENT_TTL);
        tables
            .totp
            .retain(|_, t| t.confirmed_at.is_some() || t.created_at > stale);
        Ok(u64::try_from(before - count(&tables)).unwrap_or(u64::MAX))
    }

    fn list_passkeys(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let tables = self.tables();
        let mut theirs: Vec<PasskeyRecord> = tables
            .passkeys
            .values()
            .filter(|p| p.user_id == user)
            .cloned()
            .collect();
        theirs.sort_by_key(|p| (p.created_at, p.id));
        Ok(theirs)
    }

    fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        Ok(self
            .tables()
            .passkeys
            .values()
            .find(|p| p.credential_id == credential_id)
            .cloned())
    }

    fn add_passkey(&self, passkey: &PasskeyRecord, max: usize) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&passkey.user_id) {
            return Err(StoreError::MissingReference("passkey of an unknown user"));
        }
        if tables
            .passkeys
            .values()
            .any(|p| p.credential_id == passkey.credential_id || p.id == passkey.id)
        {
            return Err(StoreError::Conflict("passkey registered already"));
        }
        let theirs = tables
            .passkeys
            .values()
            .filter(|p| p.user_id == passkey.user_id)
            .count();
        if theirs >= max {
            return Ok(false);
        }
        tables.passkeys.insert(passkey.id, passkey.clone());
        Ok(true)
    }

    fn passkey_used(
        &self,
        id: PasskeyId,
        read: &[u8],
        credential: Option<&[u8]>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let Some(passkey) = tables
            .passkeys
            .get_mut(&id)
            .filter(|p| p.credential == read)
        else {
            return Ok(false);
        };
        if let Some(credential) = credential {
            passkey.credential = credential.to_vec();
        }
        passkey.last_used_at = Some(at);
        Ok(true)
    }

    fn remove_passkey(&self, user: UserId, id: PasskeyId) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if tables.passkeys.get(&id).is_some_and(|p| p.user_id == user) {
            tables.passkeys.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }

    fn put_ceremony(&self, ceremony: &CeremonyRecord) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if let Some(user) = ceremony.user_id
            && !tables.users.contains_key(&user)
        {
            return Err(StoreError::MissingReference("ceremony of an unknown user"));
        }
        tables
            .ceremonies
            .insert(ceremony.key.clone(), ceremony.clone());
        Ok(())
    }

    fn take_ceremony(
        &self,
        key: &str,
        kind: CeremonyKind,
        now: Timestamp,
    ) -> Result<Option<CeremonyRecord>, StoreError> {
        let taken = self.tables().ceremonies.remove(key);
        Ok(taken.filter(|c| c.kind == kind && now < c.expires_at))
    }
}

impl RefreshTokenStore for MemoryStore {
    fn start_session(
        &self,
        session: &SessionRecord,
        first: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if first.family != session.id || first.user_id != session.user_id {
            return Err(StoreError::Conflict(
                "a session's first token is of another",
            ));
        }
        if !tables.users.contains_key(&session.user_id) {
            return Err(StoreError::MissingReference("session of an unknown user"));
        }
        if tables.sessions.contains_key(&session.id)
            || tables.refresh_tokens.contains_key(first.hash.as_str())
        {
            return Err(StoreError::Conflict("duplicate session or refresh token"));
        }
        tables.sessions.insert(session.id, session.clone());
        tables
            .refresh_tokens
            .insert(first.hash.as_str().to_owned(), first.clone());
        // The oldest live sessions past the cap end.
        let now = session.created_at;
        let mut live: Vec<SessionId> = tables
            .sessions
            .values()
            .filter(|s| s.user_id == session.user_id && s.is_live(now))
            .map(|s| s.id)
            .collect();
        live.retain(|id| tables.sessions[id].kind == SessionKind::Login);
        live.sort_unstable_by(|a, b| b.cmp(a));
        let past: BTreeSet<SessionId> = live.into_iter().skip(MAX_LIVE_SESSIONS).collect();
        if !past.is_empty() {
            tables.end_sessions(session.user_id, now, |s| past.contains(&s));
        }
        Ok(())
    }

    fn find_refresh_token(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        Ok(self.tables().refresh_tokens.get(hash.as_str()).cloned())
    }

    fn rotate_refresh_token(
        &self,
        old: &RefreshTokenHash,
        replacement: &RefreshTokenRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if family_revoked(&tables.refresh_tokens, replacement.family) {
            return Ok(false);
        }
        match tables.refresh_tokens.get_mut(old.as_str()) {
            Some(token) if token.is_live(now) => token.used_at = Some(now),
            _ => return Ok(false),
        }
        tables.session_used(replacement, now);
        tables
            .refresh_tokens
            .insert(replacement.hash.as_str().to_owned(), replacement.clone());
        Ok(true)
    }

    fn exchange_again_within_grace(
        &self,
        old: &RefreshTokenHash,
        replacement: &RefreshTokenRecord,
        since: Timestamp,
        max: u32,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let exchanged_lately = tables.refresh_tokens.get(old.as_str()).is_some_and(|t| {
            !t.revoked && t.used_at.is_some_and(|used| used >= since) && t.grace_exchanges < max
        });
        if !exchanged_lately || family_revoked(&tables.refresh_tokens, replacement.family) {
            return Ok(false);
        }
        if let Some(token) = tables.refresh_tokens.get_mut(old.as_str()) {
            token.grace_exchanges += 1;
        }
        tables.session_used(replacement, replacement.issued_at);
        tables
            .refresh_tokens
            .insert(replacement.hash.as_str().to_owned(), replacement.clone());
        Ok(true)
    }

    fn list_sessions(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let tables = self.tables();
        // (a login that raced its account's revocation cut started dead)
        let cut = tables
            .users
            .get(&user)
            .and_then(|r| r.tokens_revoked_before);
        let mut live: Vec<SessionRecord> = tables
            .sessions
            .values()
            .filter(|s| s.user_id == user && s.is_live(now))
            .filter(|s| cut.is_none_or(|cut| s.created_at >= cut))
            .cloned()
            .collect();
        live.sort_by_key(|s| std::cmp::Reverse(s.id));
        Ok(live)
    }

    fn end_session(&self, user: UserId, id: SessionId, now: Timestamp) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let live = tables
            .sessions
            .get(&id)
            .is_some_and(|s| s.user_id == user && s.is_live(now));
        let ended = tables.end_sessions(user, now, |s| s == id);
        Ok(live && ended == 1)
    }

    fn end_other_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tables = self.tables();
        Ok(tables.end_sessions(user, now, |s| Some(s) != keep))
    }

    fn end_older_sessions(
        &self,
        user: UserId,
        than: SessionId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tables = self.tables();
        let older: BTreeSet<SessionId> = tables
            .sessions
            .values()
            .filter(|s| s.user_id == user && s.id < than && s.ended_at.is_none())
            .filter(|s| s.kind == SessionKind::Login)
            .map(|s| s.id)
            .collect();
        Ok(tables.end_sessions(user, now, |s| older.contains(&s)))
    }

    fn create_api_token(
        &self,
        token: &ApiTokenRecord,
        max_live: usize,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let session = &token.session;
        let standing = tables.users.get(&session.user_id);
        if !standing.is_some_and(|u| {
            !u.user.disabled
                && u.tokens_revoked_before
                    .is_none_or(|cut| cut < session.created_at)
        }) {
            return Err(StoreError::MissingReference(
                "API token of a user gone, disabled or revoked since",
            ));
        }
        if tables.sessions.contains_key(&session.id)
            || tables.api_tokens.values().any(|t| t.hash == token.hash)
        {
            return Err(StoreError::Conflict("duplicate session or API token"));
        }
        let cut = standing.and_then(|u| u.tokens_revoked_before);
        let live = tables
            .api_tokens
            .keys()
            .filter_map(|id| tables.sessions.get(id))
            .filter(|s| s.user_id == session.user_id && s.is_live(session.created_at))
            .filter(|s| cut.is_none_or(|cut| s.created_at >= cut))
            .count();
        if live >= max_live {
            return Ok(false);
        }
        tables.sessions.insert(session.id, session.clone());
        tables.api_tokens.insert(session.id, token.clone());
        Ok(true)
    }

    fn list_api_tokens(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let tables = self.tables();
        let cut = tables
            .users
            .get(&user)
            .and_then(|r| r.tokens_revoked_before);
        let mut live: Vec<ApiTokenRecord> = tables
            .api_tokens
            .values()
            .filter_map(|t| tables.api_token(t))
            .filter(|t| t.session.user_id == user && t.session.is_live(now))
            .filter(|t| cut.is_none_or(|cut| t.session.created_at >= cut))
            .collect();
        live.sort_by_key(|t| std::cmp::Reverse(t.session.id));
        Ok(live)
    }

    fn purge_expired_refresh_tokens(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut tables = self.tables();
        let before = tables.refresh_tokens.len();
        tables.refresh_tokens.retain(|_, t| t.expires_at > cutoff);
        tables
            .sessions
            .retain(|_, s| s.expires_at > cutoff && s.ended_at.is_none_or(|at| at > cutoff));
        let Tables {
            sessions,
            api_tokens,
            ..
        } = &mut *tables;
        api_tokens.retain(|id, _| sessions.contains_key(id));
        tables.password_resets.retain(|_, r| r.expires_at > cutoff);
        tables
            .email_verifications
            .retain(|_, r| r.expires_at > cutoff);
        Ok(u64::try_from(before - tables.refresh_tokens.len()).unwrap_or(u64::MAX))
    }
}

impl Tables {
    /// `token` with its session as it stands now; `None` once the session
    /// is gone.
    fn api_token(&self, token: &ApiTokenRecord) -> Option<ApiTokenRecord> {
        let session = self.sessions.get(&token.session.id)?;
        Some(ApiTokenRecord {
            session: session.clone(),
            ..token.clone()
        })
    }

    /// The session `token` descends from was used at `at`, and lives until
    /// `token` expires; a family without a session (made before sessions
    /// were recorded) gets one.
    fn session_used(&mut self, token: &RefreshTokenRecord, at: Timestamp) {
        let session = self
            .sessions
            .entry(token.family)
            .or_insert_with(|| SessionRecord {
                id: token.family,
                user_id: token.user_id,
                kind: SessionKind::Login,
                created_at: at,
                last_used_at: at,
                expires_at: token.expires_at,
                user_agent: None,
                address: None,
                ended_at: None,
            });
        session.last_used_at = at;
        session.expires_at = token.expires_at;
    }

    /// Ends the user's live sessions whose id `which` picks, and revokes
    /// their refresh tokens; returns how many sessions it ended.
    fn end_sessions(
        &mut self,
        user: UserId,
        now: Timestamp,
        which: impl Fn(SessionId) -> bool,
    ) -> u64 {
        let mut orphans: BTreeMap<SessionId, (Timestamp, Timestamp)> = BTreeMap::new();
        for token in self
            .refresh_tokens
            .values_mut()
            .filter(|t| t.user_id == user && which(t.family))
        {
            // A family without a session (made by a version before
            // sessions) is recorded as ended, if a token of it could still
            // be exchanged (one whose session was purged is not brought back).
            let usable = !token.revoked && token.expires_at > now;
            token.revoked = true;
            if usable && !self.sessions.contains_key(&token.family) {
                let seen = orphans
                    .entry(token.family)
                    .or_insert((token.issued_at, token.expires_at));
                seen.0 = seen.0.min(token.issued_at);
                seen.1 = seen.1.max(token.expires_at);
            }
        }
        for (id, (created_at, expires_at)) in orphans {
            let ended = SessionRecord {
                id,
                user_id: user,
                kind: SessionKind::Login,
                created_at,
                last_used_at: created_at,
                expires_at,
                user_agent: None,
                address: None,
                ended_at: Some(now),
            };
            self.sessions.insert(id, ended);
        }
        let mut ended = 0;
        for session in self
            .sessions
            .values_mut()
            .filter(|s| s.user_id == user && s.ended_at.is_none() && which(s.id))
        {
            ended += u64::from(session.is_live(now));
            session.ended_at = Some(now);
        }
        ended
    }
}

impl TaskStore for MemoryStore {
    fn find_task(&self, caller: UserId, id: TaskId) -> Result<Option<Task>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .tasks
            .get(&id)
            .filter(|t| tables.role_in(caller, t.project).is_some())
            .cloned())
    }

    fn find_occurrence(
        &self,
        caller: UserId,
        series: SeriesId,
        occurrence: u32,
    ) -> Result<Option<TaskId>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .tasks
            .values()
            .find(|t| {
                t.series
                    .is_some_and(|s| s.id == series && s.occurrence == occurrence)
            })
            .filter(|t| tables.role_in(caller, t.project).is_some())
            .map(|t| t.id))
    }

    fn list_tasks(
        &self,
        caller: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let tables = self.tables();
        let mut found: Vec<&Task> = tables
            .tasks
            .values()
            .filter(|t| tables.role_in(caller, t.project).is_some() && query.matches(t))
            .filter(|t| after.is_none_or(|cursor| query.is_after(cursor, t)))
            .collect();
        let sort = query.sort;
        found.sort_by_key(|t| (sort.key(t), t.id));
        if sort.is_descending() {
            found.reverse();
        }
        Ok(found.into_iter().take(limit).cloned().collect())
    }

    fn list_tasks_within(
        &self,
        caller: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
        max_projects: usize,
    ) -> Result<Option<Vec<Task>>, StoreError> {
        let spans = {
            let tables = self.tables();
            match query.project {
                Some(project) => usize::from(tables.role_in(caller, project).is_some()),
                None => tables.members.keys().filter(|(_, m)| *m == caller).count(),
            }
        };
        if spans > max_projects {
            return Ok(None);
        }
        self.list_tasks(caller, query, after, limit).map(Some)
    }

    fn insert_task_within(
        &self,
        task: &Task,
        max_tasks: Option<u64>,
        may: &mut dyn FnMut(Standing) -> bool,
    ) -> Result<TaskInsert, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&task.created_by) {
            return Err(StoreError::MissingReference("task by an unknown user"));
        }
        let standing = tables.standing(task.created_by, task.project);
        if !may(standing) {
            return Ok(TaskInsert::Refused(standing));
        }
        if !tables.projects.contains_key(&task.project) {
            return Ok(TaskInsert::Refused(Standing::Stranger));
        }
        if task.parent.is_some()
            && let Some(refusal) = tables.tree_refusal(task)
        {
            return Ok(TaskInsert::BadParent(refusal));
        }
        if tables.at_quota(task.project, max_tasks) {
            return Ok(TaskInsert::AtQuota);
        }
        if tables.tasks.contains_key(&task.id) {
            return Err(StoreError::Conflict("duplicate task id"));
        }
        tables.tasks.insert(task.id, task.clone());
        tables.schedule_reminders(task);
        let at = task.updated_at;
        tables.record_for_members(
            ChangeKind::TaskCreated,
            task.project,
            task.id,
            Some(task),
            at,
        );
        Ok(TaskInsert::Inserted)
    }

    fn import(
        &self,
        owner: UserId,
        plan: &ImportPlan,
        max_tasks: Option<u64>,
        max_projects: Option<u64>,
    ) -> Result<ImportOutcome, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&owner) {
            return Err(StoreError::MissingReference("import by an unknown user"));
        }
        // All or nothing: the tables as they were, put back on a refusal.
        let before = tables.clone();
        let outcome = tables.import(owner, plan, max_tasks, max_projects);
        if !matches!(outcome, ImportOutcome::Imported(_)) {
            *tables = before;
        }
        Ok(outcome)
    }

    fn write_task(
        &self,
        caller: UserId,
        id: TaskId,
        change: &mut dyn FnMut(&Task, ProjectRole) -> Option<Task>,
        follow_up: &mut dyn FnMut(&Task, &Task) -> Option<Task>,
        max_tasks: Option<u64>,
    ) -> Result<TaskWrite, StoreError> {
        let mut tables = self.tables();
        let Some(stored) = tables.tasks.get(&id).cloned() else {
            return Ok(TaskWrite::NotFound);
        };
        let Some(role) = tables.role_in(caller, stored.project) else {
            return Ok(TaskWrite::NotFound);
        };
        let Some(changed) = change(&stored, role) else {
            return Ok(TaskWrite::Written {
                task: Box::new(stored),
                follow_up: None,
            });
        };
        if changed.id != id
            || changed.project != stored.project
            || changed.created_by != stored.created_by
        {
            return Err(StoreError::Conflict("a change may not move a task"));
        }
        if changed.parent != stored.parent
            && let Some(refusal) = tables.tree_refusal(&changed)
        {
            return Ok(TaskWrite::BadParent(refusal));
        }
        let mut made = None;
        let mut follow_up_id = None;
        if let Some(next) = follow_up(&stored, &changed) {
            let key = next.series.map(|s| (s.id, s.occurrence));
            let there = tables
                .tasks
                .values()
                .find(|t| key.is_some() && t.series.map(|s| (s.id, s.occurrence)) == key);
            match there {
                Some(there) => follow_up_id = Some(there.id),
                None => {
                    if tables.tasks.contains_key(&next.id) {
                        return Err(StoreError::Conflict("duplicate task id"));
                    }
                    if tables.at_quota(next.project, max_tasks) {
                        return Ok(TaskWrite::AtQuota);
                    }
                    follow_up_id = Some(next.id);
                    made = Some(next);
                }
            }
        }
        tables.tasks.insert(id, changed.clone());
        tables.schedule_reminders(&changed);
        tables.record_for_members(
            ChangeKind::TaskUpdated,
            changed.project,
            id,
            Some(&changed),
            changed.updated_at,
        );
        if let Some(next) = made {
            tables.tasks.insert(next.id, next.clone());
            tables.schedule_reminders(&next);
            let at = next.updated_at;
            tables.record_for_members(
                ChangeKind::TaskCreated,
                next.project,
                next.id,
                Some(&next),
                at,
            );
        }
        Ok(TaskWrite::Written {
            task: Box::new(changed),
            follow_up: follow_up_id,
        })
    }

    fn delete_task(
        &self,
        caller: UserId,
        id: TaskId,
        at: Timestamp,
        may: &mut dyn FnMut(&Task, ProjectRole) -> bool,
    ) -> Result<Option<Task>, StoreError> {
        let mut tables = self.tables();
        let Some(stored) = tables.tasks.get(&id).cloned() else {
            return Ok(None);
        };
        let Some(role) = tables.role_in(caller, stored.project) else {
            return Ok(None);
        };
        if may(&stored, role) {
            for doomed in tables.subtree(id) {
                tables.tasks.remove(&doomed);
                tables.reminders.retain(|(task, _), _| *task != doomed);
                tables.record_for_members(
                    ChangeKind::TaskDeleted,
                    stored.project,
                    doomed,
                    None,
                    at,
                );
            }
        }
        Ok(Some(stored))
    }

    fn project_members(&self, project: ProjectId) -> Result<Vec<UserId>, StoreError> {
        Ok(self.tables().members_of(project))
    }

    fn owned_tasks(
        &self,
        owner: UserId,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let tables = self.tables();
        let mut tasks: Vec<Task> = tables
            .tasks
            .values()
            .filter(|t| after.is_none_or(|after| t.id > after))
            .filter(|t| {
                tables
                    .projects
                    .get(&t.project)
                    .is_some_and(|p| p.owner == owner)
            })
            .cloned()
            .collect();
        tasks.sort_by_key(|t| t.id);
        tasks.truncate(limit);
        Ok(tasks)
    }

    fn project_tasks(
        &self,
        project: ProjectId,
        after: Option<(Timestamp, TaskId)>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let tables = self.tables();
        let mut tasks: Vec<Task> = tables
            .tasks
            .values()
            .filter(|t| t.project == project && !t.archived)
            .filter(|t| after.is_none_or(|after| (t.created_at, t.id) > after))
            .cloned()
            .collect();
        tasks.sort_by_key(|t| (t.created_at, t.id));
        tasks.truncate(limit);
        Ok(tasks)
    }

    fn fire_due_reminders(&self, now: Timestamp, limit: usize) -> Result<Vec<UserId>, StoreError> {
        let mut tables = self.tables();
        let mut due: Vec<(TaskId, Timestamp)> = tables
            .reminders
            .iter()
            .filter(|((_, at), fired)| !**fired && *at <= now)
            .map(|(key, _)| *key)
            .collect();
        due.sort_by_key(|(task, at)| (*at, *task));
        due.truncate(limit);
        let mut woken = Vec::new();
        for key in due {
            tables.reminders.insert(key, true);
            let Some(mut task) = tables.tasks.get(&key.0).cloned() else {
                continue;
            };
            // Without its description, as the SQL stores record it.
            task.description = crate::task::Description::default();
            tables.record_for_members(
                ChangeKind::ReminderDue,
                task.project,
                task.id,
                Some(&task),
                now,
            );
            woken.extend(tables.members_of(task.project));
        }
        woken.sort_unstable();
        woken.dedup();
        Ok(woken)
    }

    fn changes_after(
        &self,
        owner: UserId,
        after: LogPosition,
        limit: usize,
    ) -> Result<ChangeLog, StoreError> {
        let tables = self.tables();
        let changes: Vec<Change> = tables
            .feed(owner)
            .filter(|change| change.position > after)
            .take(limit)
            .collect();
        let scanned_through = match changes.last() {
            Some(last) if changes.len() == limit => last.position,
            _ => tables.head(),
        };
        Ok(ChangeLog {
            changes,
            head: tables.head(),
            pruned_through: tables.pruned_for(owner),
            scanned_through,
        })
    }

    fn prune_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut tables = self.tables();
        // Up to each audience's newest change made before `before`: what
        // each keeps is always a suffix, whatever the clocks of its writers.
        let mut through: Vec<(Audience, LogPosition)> = Vec::new();
        for entry in tables.log.iter().filter(|entry| entry.change.at < before) {
            match through.iter_mut().find(|(a, _)| *a == entry.audience) {
                Some((_, at)) => *at = (*at).max(entry.change.position),
                None => through.push((entry.audience, entry.change.position)),
            }
        }
        let mut pruned = 0;
        for (audience, at) in through {
            pruned += tables.drop_through(audience, at);
        }
        // Then each owner back to their budget, oldest first across the
        // projects they own.
        let budget = usize::try_from(MAX_CHANGES_PER_OWNER).unwrap_or(usize::MAX);
        let owners: BTreeSet<UserId> = tables.projects.values().map(|p| p.owner).collect();
        for owner in owners {
            let owned = |tables: &Tables, audience: Audience| match audience {
                Audience::Project(p) => tables.projects.get(&p).is_some_and(|p| p.owner == owner),
                Audience::User(_) => false,
            };
            let Some(cut) = tables
                .log
                .iter()
                .rev()
                .filter(|entry| owned(&tables, entry.audience))
                .nth(budget)
                .map(|entry| entry.change.position)
            else {
                continue;
            };
            let cut_projects: BTreeSet<ProjectId> = tables
                .log
                .iter()
                .filter(|entry| entry.change.position <= cut && owned(&tables, entry.audience))
                .filter_map(|entry| match entry.audience {
                    Audience::Project(p) => Some(p),
                    Audience::User(_) => None,
                })
                .collect();
            for project in cut_projects {
                pruned += tables.drop_through(Audience::Project(project), cut);
            }
        }
        Ok(u64::try_from(pruned).unwrap_or(u64::MAX))
    }
}

/// Whether any token of `family` is revoked: a family once revoked stays
/// dead, whatever joined it since.
fn family_revoked(tokens: &BTreeMap<String, RefreshTokenRecord>, family: SessionId) -> bool {
    tokens.values().any(|t| t.family == family && t.revoked)
}

impl WebhookStore for MemoryStore {
    fn insert_webhook_within(
        &self,
        webhook: &Webhook,
        max: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&webhook.owner) {
            return Err(StoreError::MissingReference("webhook for an unknown user"));
        }
        let owned = tables
            .webhooks
            .values()
            .filter(|stored| stored.webhook.owner == webhook.owner)
            .count() as u64;
        if max.is_some_and(|max| owned >= max) {
            return Ok(false);
        }
        if tables.webhooks.contains_key(&webhook.id) {
            return Err(StoreError::Conflict("duplicate webhook id"));
        }
        tables.webhooks.insert(
            webhook.id,
            StoredWebhook {
                webhook: webhook.clone(),
                leased_until: None,
                log: Vec::new(),
            },
        );
        Ok(true)
    }

    fn webhooks_of(&self, owner: UserId) -> Result<Vec<Webhook>, StoreError> {
        Ok(self
            .tables()
            .webhooks
            .values()
            .filter(|stored| stored.webhook.owner == owner)
            .map(|stored| stored.webhook.clone())
            .collect())
    }

    fn delete_webhook(&self, owner: UserId, id: WebhookId) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let owned = tables
            .webhooks
            .get(&id)
            .is_some_and(|stored| stored.webhook.owner == owner);
        if owned {
            tables.webhooks.remove(&id);
        }
        Ok(owned)
    }

    fn delivery_log(
        &self,
        owner: UserId,
        id: WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .webhooks
            .get(&id)
            .filter(|stored| stored.webhook.owner == owner)
            .map(|stored| stored.log.iter().rev().take(limit).cloned().collect()))
    }

    fn lease_due_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        per_owner: usize,
    ) -> Result<Vec<Webhook>, StoreError> {
        let mut tables = self.tables();
        let behind: Vec<WebhookId> = tables
            .webhooks
            .values()
            .filter(|stored| tables.behind(stored.webhook.owner, stored.webhook.delivered_through))
            .map(|stored| stored.webhook.id)
            .collect();
        let served: BTreeMap<UserId, Option<Timestamp>> = tables
            .streams
            .iter()
            .map(|(owner, stream)| (*owner, stream.webhooks_served_at))
            .collect();
        let mut busy: BTreeMap<UserId, usize> = BTreeMap::new();
        for stored in tables.webhooks.values() {
            if stored.leased_until.is_some_and(|until| until >= now) {
                *busy.entry(stored.webhook.owner).or_default() += 1;
            }
        }
        let mut due: Vec<&mut StoredWebhook> = tables
            .webhooks
            .values_mut()
            .filter(|stored| {
                let webhook = &stored.webhook;
                let behind = behind.contains(&webhook.id);
                let free = stored.leased_until.is_none_or(|until| until < now);
                webhook.disabled_at.is_none() && webhook.next_attempt_at <= now && behind && free
            })
            .collect();
        // Owners served longest ago (never, first), then by when due.
        due.sort_by_key(|stored| {
            let webhook = &stored.webhook;
            let last = served.get(&webhook.owner).copied().flatten();
            (last.is_some(), last, webhook.next_attempt_at, webhook.id)
        });
        let mut leased = Vec::new();
        for stored in due {
            if leased.len() >= limit {
                break;
            }
            let taken = busy.entry(stored.webhook.owner).or_default();
            if *taken >= per_owner {
                continue;
            }
            *taken += 1;
            stored.leased_until = Some(lease_until);
            leased.push(stored.webhook.clone());
        }
        // Their owners' turns begin now.
        for webhook in &leased {
            tables
                .streams
                .entry(webhook.owner)
                .or_default()
                .webhooks_served_at = Some(now);
        }
        Ok(leased)
    }

    fn settle_webhook(&self, settled: &WebhookSettlement) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let Some(stored) = tables.webhooks.get_mut(&settled.id) else {
            return Ok(false);
        };
        if stored.leased_until != Some(settled.lease_until) {
            return Ok(false);
        }
        let webhook = &mut stored.webhook;
        webhook.delivered_through = webhook.delivered_through.max(settled.delivered_through);
        webhook.attempts = settled.attempts;
        webhook.next_attempt_at = settled.next_attempt_at;
        webhook.failing_since = settled.failing_since;
        webhook.disabled_at = settled.disabled_at;
        stored.leased_until = None;
        stored.log.extend(settled.log.iter().cloned());
        let excess = stored.log.len().saturating_sub(settled.log_kept);
        stored.log.drain(..excess);
        // The owner's turn ends now.
        let owner = stored.webhook.owner;
        tables.streams.entry(owner).or_default().webhooks_served_at = Some(settled.settled_at);
        Ok(true)
    }
}

impl Tables {
    /// Users whose stream is behind the relay and not leased (or whose
    /// lease ran out by `now`), with when a relay last served them.
    fn unrelayed(&self, now: Timestamp) -> Vec<(Option<Timestamp>, UserId)> {
        self.users
            .keys()
            .filter_map(|user| {
                let stream = self.streams.get(user).cloned().unwrap_or_default();
                let free = stream.relay_leased_until.is_none_or(|until| until < now);
                (free && self.behind(*user, stream.relayed_through))
                    .then_some((stream.relay_served_at, *user))
            })
            .collect()
    }
}

impl RelayStore for MemoryStore {
    fn lease_unrelayed_streams(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<RelayedStream>, StoreError> {
        let mut tables = self.tables();
        let mut due = tables.unrelayed(now);
        // The least recently served first.
        due.sort();
        let mut leased = Vec::new();
        for (_, owner) in due.into_iter().take(limit) {
            let stream = tables.streams.entry(owner).or_default();
            stream.relay_leased_until = Some(lease_until);
            stream.relay_served_at = Some(now);
            leased.push(RelayedStream {
                owner,
                relayed_through: stream.relayed_through,
            });
        }
        Ok(leased)
    }

    fn any_unrelayed_stream(&self, now: Timestamp) -> Result<bool, StoreError> {
        Ok(!self.tables().unrelayed(now).is_empty())
    }

    fn settle_relayed_stream(
        &self,
        owner: UserId,
        lease_until: Timestamp,
        relayed_through: LogPosition,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let Some(stream) = tables
            .streams
            .get_mut(&owner)
            .filter(|stream| stream.relay_leased_until == Some(lease_until))
        else {
            return Ok(false);
        };
        stream.relayed_through = stream.relayed_through.max(relayed_through);
        stream.relay_leased_until = None;
        Ok(true)
    }
}

impl ProjectStore for MemoryStore {
    fn insert_project_within(
        &self,
        project: &Project,
        max: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        if !tables.users.contains_key(&project.owner) {
            return Err(StoreError::MissingReference("project for an unknown user"));
        }
        let owned = tables
            .projects
            .values()
            .filter(|p| p.owner == project.owner)
            .count();
        if max.is_some_and(|max| owned as u64 >= max) {
            return Ok(false);
        }
        if tables.projects.contains_key(&project.id) {
            return Err(StoreError::Conflict("duplicate project id"));
        }
        tables.insert_project(project);
        Ok(true)
    }

    fn ensure_inbox(&self, inbox: &Project) -> Result<bool, StoreError> {
        if self.tables().projects.contains_key(&inbox.id) {
            return Ok(false);
        }
        match self.insert_project_within(inbox, None) {
            Ok(made) => Ok(made),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    fn put_feed(
        &self,
        project: ProjectId,
        hash: &FeedTokenHash,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if !tables.projects.contains_key(&project) {
            return Err(StoreError::MissingReference("feed of a missing project"));
        }
        if tables
            .feeds
            .iter()
            .any(|(other, (kept, _))| *other != project && kept == hash)
        {
            return Err(StoreError::Conflict("duplicate feed token"));
        }
        tables.feeds.insert(project, (hash.clone(), at));
        Ok(())
    }

    fn delete_feed(&self, project: ProjectId) -> Result<bool, StoreError> {
        Ok(self.tables().feeds.remove(&project).is_some())
    }

    fn find_feed(&self, project: ProjectId) -> Result<Option<Timestamp>, StoreError> {
        let tables = self.tables();
        let Some((hash, published)) = tables.feeds.get(&project) else {
            return Ok(None);
        };
        // A feed its owner's account no longer stands by is no feed.
        let stands = Self::feed_stands(&tables, hash).is_some();
        Ok(stands.then_some(*published))
    }

    fn feed_project(
        &self,
        hash: &FeedTokenHash,
    ) -> Result<Option<(ProjectId, UserId)>, StoreError> {
        Ok(Self::feed_stands(&self.tables(), hash))
    }

    fn find_project(
        &self,
        caller: UserId,
        id: ProjectId,
    ) -> Result<Option<(Project, ProjectRole)>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .role_in(caller, id)
            .and_then(|role| Some((tables.projects.get(&id)?.clone(), role))))
    }

    fn list_projects(
        &self,
        caller: UserId,
        after: Option<ProjectId>,
        limit: usize,
    ) -> Result<Vec<(Project, ProjectRole)>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .projects
            .values()
            .filter(|p| after.is_none_or(|a| p.id > a))
            .filter_map(|p| Some((p.clone(), tables.role_in(caller, p.id)?)))
            .take(limit)
            .collect())
    }

    fn modify_project(
        &self,
        editor: UserId,
        id: ProjectId,
        change: &mut dyn FnMut(&Project, ProjectRole) -> Option<Project>,
    ) -> Result<Option<(Project, ProjectRole)>, StoreError> {
        let mut tables = self.tables();
        let Some(role) = tables.role_in(editor, id) else {
            return Ok(None);
        };
        let Some(current) = tables.projects.get(&id).cloned() else {
            return Ok(None);
        };
        let Some(project) = change(&current, role) else {
            return Ok(None);
        };
        let mut stored = current;
        stored.name = project.name;
        stored.description = project.description;
        stored.color = project.color;
        stored.archived = project.archived;
        stored.updated_at = project.updated_at;
        stored.version = project.version;
        tables.projects.insert(id, stored.clone());
        tables.record_project(ChangeKind::ProjectUpdated, id, false, stored.updated_at);
        Ok(Some((stored, role)))
    }

    fn delete_project(
        &self,
        owner: UserId,
        id: ProjectId,
        expected: Option<TaskVersion>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        match tables.projects.get(&id) {
            Some(project)
                if !project.inbox
                    && project.owner == owner
                    && expected.is_none_or(|v| v == project.version) =>
            {
                // Its tasks go with it, told by the project's deletion only.
                let doomed: Vec<TaskId> = tables
                    .tasks
                    .values()
                    .filter(|t| t.project == id)
                    .map(|t| t.id)
                    .collect();
                for task in doomed {
                    tables.tasks.remove(&task);
                    tables.reminders.retain(|(t, _), _| *t != task);
                }
                tables.record_project(ChangeKind::ProjectDeleted, id, true, at);
                tables.remove_project(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn members(&self, id: ProjectId) -> Result<Vec<(Member, Username)>, StoreError> {
        let tables = self.tables();
        let mut members: Vec<(Member, Username)> = tables
            .members
            .range((id, UserId::from_uuid(uuid::Uuid::nil()))..)
            .take_while(|((project, _), _)| *project == id)
            .filter_map(|(_, member)| {
                let user = tables.users.get(&member.user)?;
                Some((member.clone(), user.user.username.clone()))
            })
            .collect();
        members.sort_by_key(|(m, _)| m.listing_key());
        Ok(members)
    }

    fn standing(&self, user: UserId, id: ProjectId) -> Result<Standing, StoreError> {
        Ok(self
            .tables()
            .role_in(user, id)
            .map_or(Standing::Stranger, Standing::Member))
    }

    fn put_member(
        &self,
        id: ProjectId,
        member: &Member,
        max: usize,
        max_memberships: usize,
        at: Timestamp,
    ) -> Result<MemberPut, StoreError> {
        let mut tables = self.tables();
        if member.role == ProjectRole::Owner {
            return Ok(MemberPut::Owner);
        }
        if tables.projects.get(&id).is_none_or(|p| p.inbox) {
            return Ok(MemberPut::NoProject);
        }
        if !tables.users.contains_key(&member.user) {
            return Err(StoreError::MissingReference("member is an unknown user"));
        }
        let count = tables
            .members
            .keys()
            .filter(|(project, _)| *project == id)
            .count();
        let memberships = tables
            .members
            .keys()
            .filter(|(_, user)| *user == member.user)
            .count();
        let put = match tables.members.get_mut(&(id, member.user)) {
            Some(stored) if stored.role == ProjectRole::Owner => return Ok(MemberPut::Owner),
            // Nothing changes, and nobody is told of nothing.
            Some(stored) if stored.role == member.role => {
                return Ok(MemberPut::Changed(stored.clone()));
            }
            Some(stored) => {
                stored.role = member.role;
                MemberPut::Changed(stored.clone())
            }
            None if count >= max => return Ok(MemberPut::Full),
            None if memberships >= max_memberships => return Ok(MemberPut::UserFull),
            None => {
                tables.members.insert((id, member.user), member.clone());
                MemberPut::Added(member.clone())
            }
        };
        if let MemberPut::Added(put) | MemberPut::Changed(put) = &put {
            tables.record_member(ChangeKind::MemberAdded, id, put, at);
        }
        Ok(put)
    }

    fn remove_member(
        &self,
        id: ProjectId,
        user: UserId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        match tables.members.get(&(id, user)).cloned() {
            Some(member) if member.role != ProjectRole::Owner => {
                tables.members.remove(&(id, user));
                tables.record_member(ChangeKind::MemberRemoved, id, &member, at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
