//! The traits at the core's edges. todo-store and todo-auth implement them;
//! [`crate::memory`] and `crate::testing` (the `testing` feature) hold
//! in-process versions.

use std::net::IpAddr;
use std::time::Duration;

use crate::api_token::{ApiTokenHash, ApiTokenRecord};
use crate::change::{ChangeLog, LogPosition};
use crate::email_verification::{EmailTokenHash, EmailVerificationRecord};
use crate::error::{HashError, StoreError, TokenError};
use crate::import::{ImportOutcome, ImportPlan};
use crate::passkey::{CeremonyKind, CeremonyRecord, PasskeyId, PasskeyRecord};
use crate::password_reset::{PasswordResetRecord, ResetTokenHash};
use crate::project::{ProjectId, ProjectRole, Standing};
use crate::query::TaskCursor;
use crate::query::TaskQuery;
use crate::second_factor::{
    MfaChallengeRecord, MfaTokenHash, RecoveryCodeHash, SecondFactors, TotpRecord,
};
use crate::session::{EndedSessions, SessionRecord};
use crate::task::{SeriesId, Task, TaskId, TreeRefusal};
use crate::time::Timestamp;
use crate::token::{AccessClaims, RefreshToken, RefreshTokenHash, RefreshTokenRecord, SessionId};
use crate::user::{Email, Password, PasswordHash, User, UserChange, UserId, UserRecord, Username};

/// Users, as the auth service keeps them, with their second factors (a
/// store of users without them would let a login skip its second step).
pub trait UserStore: SecondFactorStore + Send + Sync {
    /// Fails with [`StoreError::Conflict`] when the username or id is taken.
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// The user with this id, if any.
    fn find_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// The user with this username, if any (usernames compare as parsed).
    fn find_user_by_username(&self, username: &Username) -> Result<Option<UserRecord>, StoreError>;
    /// Writes every field but the id; returns whether the user existed.
    /// Read-modify-write callers lose concurrent changes: prefer
    /// [`UserStore::change_user`] and [`UserStore::replace_password_hash`].
    fn update_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    /// Writes only the fields `change` names (and `updated_at`), leaving
    /// what others changed meanwhile; returns whether the user existed.
    /// Writing `email` (any address, or none) unverifies the address and
    /// deletes the user's pending reset and verification links, in the
    /// same transaction: a link mailed to the old address must not
    /// outlive the move.
    fn change_user(&self, id: UserId, change: &UserChange) -> Result<bool, StoreError>;
    /// Replaces the password hash only if it is still `expected` (nobody
    /// changed the password meanwhile), setting `updated_at` and, if given,
    /// the revocation cut. Returns whether it did.
    fn replace_password_hash(
        &self,
        id: UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
        updated_at: Timestamp,
        revoke_before: Option<Timestamp>,
    ) -> Result<bool, StoreError>;
    /// Deletes the user with their tasks, projects, memberships and
    /// refresh tokens, and tells the others, in the same transaction, at
    /// `at`: each project they owned is recorded as `project.deleted` in
    /// its other members' streams, each membership of theirs in someone
    /// else's project as `member.removed` in that project's. Returns whether
    /// they existed.
    fn delete_user(&self, id: UserId, at: Timestamp) -> Result<bool, StoreError>;
    /// Up to `limit` users in id (creation) order, after `after` if given.
    fn list_users(&self, after: Option<UserId>, limit: usize) -> Result<Vec<User>, StoreError>;
    /// The user with this id, if any, and their standing's other half: the
    /// sessions they ended at or after `ended_since`, at most
    /// [`EndedSessions::MAX`] + 1 of them read.
    /// What the access gate reads, in one go.
    fn find_standing(
        &self,
        id: UserId,
        ended_since: Timestamp,
    ) -> Result<Option<(UserRecord, EndedSessions)>, StoreError>;
    /// The API token with this digest, live or not (ended, expired): the
    /// access gate's lookup.
    fn find_api_token(&self, hash: &ApiTokenHash) -> Result<Option<ApiTokenRecord>, StoreError>;
    /// Records that the API token (its session) was used at `at`.
    fn api_token_used(&self, session: SessionId, at: Timestamp) -> Result<(), StoreError>;
    /// Stores a reset link, deleting the user's other links (one works at
    /// a time), in one step; [`StoreError::MissingReference`] when the
    /// user is gone.
    fn create_password_reset(&self, reset: &PasswordResetRecord) -> Result<(), StoreError>;
    /// The reset link with this digest, used or not.
    fn find_password_reset(
        &self,
        hash: &ResetTokenHash,
    ) -> Result<Option<PasswordResetRecord>, StoreError>;
    /// Deletes the user's reset links (their password changed another way,
    /// or their account was disabled: a link made before must not undo it).
    fn delete_password_resets(&self, user: UserId) -> Result<(), StoreError>;
    /// Marks the link used at `now` if it is live then, its user enabled
    /// and not cut since the link was made (a password change or disabling
    /// first), in one step; returns whether it did: of any number of
    /// concurrent calls, at most one gets `true`.
    fn use_password_reset(&self, hash: &ResetTokenHash, now: Timestamp)
    -> Result<bool, StoreError>;
    /// Up to `limit` users whose address is `email` and verified
    /// (addresses compare without regard to ASCII case, and only ASCII
    /// case, on every store), oldest first: where a reset asked for by
    /// address is mailed.
    fn find_users_by_verified_email(
        &self,
        email: &Email,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError>;
    /// Stores a verification link, deleting the user's other links (one
    /// works at a time), in one step; [`StoreError::MissingReference`]
    /// when the user is gone.
    fn create_email_verification(&self, link: &EmailVerificationRecord) -> Result<(), StoreError>;
    /// Spends the link at `now` if it is live, and marks its user's
    /// address verified if it is still the one the link was sent to, in
    /// one step; returns whose address it verified (`None` for a dead link
    /// and for one sent to an address the user no longer has, spent all
    /// the same). Of any number of concurrent calls, at most one gets
    /// `Some`.
    fn use_email_verification(
        &self,
        hash: &EmailTokenHash,
        now: Timestamp,
    ) -> Result<Option<UserId>, StoreError>;
}

/// Users' second factors and the two-step logins waiting for one. Every
/// row belongs to a user and goes with them.
pub trait SecondFactorStore: Send + Sync {
    /// The user's authenticator (confirmed or pending) and how many
    /// recovery codes they have left.
    fn second_factors(&self, user: UserId) -> Result<SecondFactors, StoreError>;
    /// Stores a pending enrolment in place of any pending one, unless the
    /// user has a confirmed authenticator (then `false`, nothing stored);
    /// [`StoreError::MissingReference`] when the user is gone.
    fn begin_totp(&self, enrolment: &TotpRecord) -> Result<bool, StoreError>;
    /// Confirms the pending enrolment made at `created_at` (none other),
    /// with `step` as its last step used, and puts `codes` in place of the
    /// user's recovery codes, in one step; returns whether it did.
    fn confirm_totp(
        &self,
        user: UserId,
        created_at: Timestamp,
        step: u64,
        confirmed_at: Timestamp,
        codes: &[RecoveryCodeHash],
    ) -> Result<bool, StoreError>;
    /// Takes `step` as the confirmed authenticator's last step used if it
    /// is later than the last one, in one step; returns whether it did: of
    /// any number of calls with one step, at most one gets `true`.
    fn use_totp_step(&self, user: UserId, step: u64) -> Result<bool, StoreError>;
    /// Marks the user's unused recovery code `code` used at `at`; returns
    /// whether it did: at most once per code.
    fn use_recovery_code(
        &self,
        user: UserId,
        code: &RecoveryCodeHash,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes the user's authenticator, recovery codes, passkeys, pending
    /// two-step logins and passkey registration; returns whether there was
    /// an authenticator or a passkey.
    fn remove_second_factors(&self, user: UserId) -> Result<bool, StoreError>;
    /// Deletes the user's authenticator, its recovery codes and pending
    /// two-step logins, and nothing else (their passkeys stay); returns
    /// whether there was an authenticator.
    fn remove_totp(&self, user: UserId) -> Result<bool, StoreError>;
    /// Stores a two-step login waiting for its second factor;
    /// [`StoreError::MissingReference`] when the user is gone.
    fn create_mfa_challenge(&self, challenge: &MfaChallengeRecord) -> Result<(), StoreError>;
    /// Takes one attempt from the two-step login `hash` if it is live at
    /// `now` and has attempts left, in one step; returns it as it was
    /// before the attempt, or `None`.
    fn take_mfa_attempt(
        &self,
        hash: &MfaTokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallengeRecord>, StoreError>;
    /// Deletes the two-step login `hash`; returns whether it was there: of
    /// any number of calls, at most one gets `true` (the one that may
    /// finish the login).
    fn finish_mfa_challenge(&self, hash: &MfaTokenHash) -> Result<bool, StoreError>;
    /// Deletes two-step logins and passkey ceremonies that expired at or
    /// before `cutoff`, and enrolments never confirmed that began at or
    /// before `cutoff - TOTP_ENROLMENT_TTL`; returns how many rows.
    fn purge_second_factors(&self, cutoff: Timestamp) -> Result<u64, StoreError>;
    /// The user's passkeys, oldest first.
    fn list_passkeys(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError>;
    /// The passkey with this credential id, whoever's it is.
    fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError>;
    /// Stores a passkey unless its user has `max` of them already (then
    /// `false`, nothing stored), counted and stored in one step;
    /// [`StoreError::Conflict`] when its credential id is stored already,
    /// [`StoreError::MissingReference`] when the user is gone.
    fn add_passkey(&self, passkey: &PasskeyRecord, max: usize) -> Result<bool, StoreError>;
    /// Records a sign-in with the passkey at `at`, and its credential as it
    /// now is when it changed, if its credential is still `read` (the one
    /// the sign-in was weighed against), in one step; returns whether it
    /// did: of concurrent sign-ins with one passkey, one whose credential
    /// another changed meanwhile (a higher counter) gets `false`.
    fn passkey_used(
        &self,
        id: PasskeyId,
        read: &[u8],
        credential: Option<&[u8]>,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes the user's passkey `id`; returns whether it was theirs.
    fn remove_passkey(&self, user: UserId, id: PasskeyId) -> Result<bool, StoreError>;
    /// Keeps a ceremony's first step in place of any under its key;
    /// [`StoreError::MissingReference`] when its user is gone.
    fn put_ceremony(&self, ceremony: &CeremonyRecord) -> Result<(), StoreError>;
    /// Deletes the ceremony under `key` and answers it, if it is of `kind`
    /// and live at `now` (a dead one is deleted all the same): of any
    /// number of calls, at most one gets it.
    fn take_ceremony(
        &self,
        key: &str,
        kind: CeremonyKind,
        now: Timestamp,
    ) -> Result<Option<CeremonyRecord>, StoreError>;
}

/// Sessions (logins) and the refresh tokens that descend from each, by
/// their hash.
pub trait RefreshTokenStore: Send + Sync {
    /// Starts a session with its first refresh token (whose `family` is the
    /// session's id), in one step, ending the user's oldest live sessions
    /// past [`crate::MAX_LIVE_SESSIONS`] (their tokens revoked); fails with
    /// [`StoreError::MissingReference`] when the user is gone, and
    /// [`StoreError::Conflict`] on an id or hash already stored.
    fn start_session(
        &self,
        session: &SessionRecord,
        first: &RefreshTokenRecord,
    ) -> Result<(), StoreError>;
    /// The token with this digest, live or not: the caller tells reuse from an unknown token.
    fn find_refresh_token(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// In one atomic step: if `old` is live at `now` and no token of its
    /// family is revoked, mark it used and store `replacement`. Returns
    /// whether it did; of many concurrent calls for one token, exactly one
    /// gets `true`. The session is used at `now` and lives until the
    /// replacement expires; a family without a session row (made by a
    /// version before sessions) gets one.
    fn rotate_refresh_token(
        &self,
        old: &RefreshTokenHash,
        replacement: &RefreshTokenRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// In one atomic step: if `old` was exchanged at or after `since`, was
    /// exchanged again fewer than `max` times since, and neither it nor any
    /// token of its family is revoked, count this exchange on `old` and
    /// store `replacement` (a sibling in the same family). Returns whether
    /// it did; of any number of calls for one token, concurrent or not, at
    /// most `max` get `true`.
    /// The reuse grace: an exchange that lost a race, or a retry, gets a
    /// pair of its own instead of ending the session.
    fn exchange_again_within_grace(
        &self,
        old: &RefreshTokenHash,
        replacement: &RefreshTokenRecord,
        since: Timestamp,
        max: u32,
    ) -> Result<bool, StoreError>;
    /// The user's sessions live at `now`, newest first.
    fn list_sessions(&self, user: UserId, now: Timestamp)
    -> Result<Vec<SessionRecord>, StoreError>;
    /// Ends the user's session `id` at `now` and revokes its refresh
    /// tokens, in one step; returns whether it was theirs, live and not
    /// ended before. Another user's session is left alone and answers
    /// `false`. A family of theirs without a session row (made by a version
    /// before sessions) is recorded as ended.
    fn end_session(&self, user: UserId, id: SessionId, now: Timestamp) -> Result<bool, StoreError>;
    /// Ends every session of the user but `keep` at `now` and revokes
    /// their refresh tokens, in one step; returns how many live sessions it
    /// ended. Families without a session row are recorded as ended.
    fn end_other_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Ends every live login of the user older than `than` (by id: ids
    /// are UUIDv7, made at sign-in) at `now` and revokes their refresh
    /// tokens, in one step; a session started meanwhile is newer and
    /// untouched, and API tokens are left alone. Returns how many it
    /// ended.
    fn end_older_sessions(
        &self,
        user: UserId,
        than: SessionId,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Stores a new API token with its session, in one step, unless the
    /// user already has `max_live` live ones (then `false`, nothing
    /// stored); fails with [`StoreError::MissingReference`] when the user
    /// is gone, disabled, or cut their tokens at or after the token's
    /// making (a password change that committed meanwhile).
    fn create_api_token(&self, token: &ApiTokenRecord, max_live: usize)
    -> Result<bool, StoreError>;
    /// The user's API tokens live at `now`, newest first.
    fn list_api_tokens(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<ApiTokenRecord>, StoreError>;
    /// Deletes tokens that expired at or before `cutoff`, and sessions that
    /// ended or expired at or before it; returns how many tokens.
    fn purge_expired_refresh_tokens(&self, cutoff: Timestamp) -> Result<u64, StoreError>;
}

/// Tasks, each in a project. Every read is scoped inside the query itself
/// to the projects the caller is a member of: a task of any other project
/// is `None`, like a missing one. Every write takes the caller's role in
/// the task's project in the same transaction as itself and lets the core
/// decide with it (`may`, `change`), so that a member removed a moment ago
/// writes nothing; the store holds no rule of its own.
///
/// A write records its change in the stream of every member of the
/// project at the time it commits (an Inbox's only member is its owner).
pub trait TaskStore: Send + Sync {
    /// Inserts the task in its project, created by `task.created_by`, if
    /// `may` allows that user's standing there, its parent (if any) is a
    /// task of the same project less than [`Task::MAX_DEPTH`] deep, and the
    /// project's owner keeps fewer than `max_tasks` tasks (`None`: no
    /// limit). Counting,
    /// checking and inserting are one atomic step: of concurrent calls at
    /// `max_tasks - 1` tasks, exactly one inserts. Fails with
    /// [`StoreError::Conflict`] on a duplicate id.
    fn insert_task_within(
        &self,
        task: &Task,
        max_tasks: Option<u64>,
        may: &mut dyn FnMut(Standing) -> bool,
    ) -> Result<TaskInsert, StoreError>;
    /// Writes `plan` as `owner`'s, all of it or (on any refusal or error)
    /// nothing, in one transaction: each of its projects that is not there
    /// is made (`project.created`), each task that is not there is
    /// inserted (`task.created` in the owner's stream) if its project is
    /// `owner`'s own, with no other member, and its parent a task of that
    /// project less than [`Task::MAX_DEPTH`] deep; objects there (by id) are left
    /// as they are and counted unchanged. The owner keeps at most
    /// `max_tasks` tasks and `max_projects` projects, as for
    /// [`TaskStore::insert_task_within`].
    fn import(
        &self,
        owner: UserId,
        plan: &ImportPlan,
        max_tasks: Option<u64>,
        max_projects: Option<u64>,
    ) -> Result<ImportOutcome, StoreError>;
    /// The task with this id, if it is in a project `caller` is a member of.
    fn find_task(&self, caller: UserId, id: TaskId) -> Result<Option<Task>, StoreError>;
    /// The id of the task that is occurrence `occurrence` of `series`, if
    /// there is one `caller` may see: what a repeated completion answers.
    fn find_occurrence(
        &self,
        caller: UserId,
        series: SeriesId,
        occurrence: u32,
    ) -> Result<Option<TaskId>, StoreError>;
    /// Up to `limit` tasks of the projects `caller` is a member of (of
    /// `query.project` only, if it names one) that match `query`, in its
    /// order, after `after` if given.
    fn list_tasks(
        &self,
        caller: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// [`TaskStore::list_tasks`], unless the list would span more than
    /// `max_projects` projects (`query.project` is one; with none, each
    /// project `caller` is a member of): then `None`, with no task read.
    /// A list reads a range of a sort index for each project it spans, so
    /// its cost grows with the caller's projects; the caller makes room for
    /// a wide one (a slot) and then calls `list_tasks`. The default is
    /// `None`, every list wide: a store that wraps another must pass this
    /// on, or every list it serves waits for that room.
    fn list_tasks_within(
        &self,
        _caller: UserId,
        _query: &TaskQuery,
        _after: Option<&TaskCursor>,
        _limit: usize,
        _max_projects: usize,
    ) -> Result<Option<Vec<Task>>, StoreError> {
        Ok(None)
    }
    /// [`TaskStore::find_task`], answered now and in place if the store can
    /// do so in microseconds without waiting for a lock, a connection or
    /// the network (an embedded database with an idle connection; a page
    /// in neither its cache nor the operating system's is still read from
    /// the disk), so that an async worker may call it with no hop to a
    /// blocking thread. `None`: not now; call `find_task` on a blocking
    /// thread, which is the authority. A store answers an error in place
    /// only for what the blocking call would answer alike (a corrupt row).
    /// The default is `None`.
    fn find_task_in_place(
        &self,
        _caller: UserId,
        _id: TaskId,
    ) -> Option<Result<Option<Task>, StoreError>> {
        None
    }
    /// [`TaskStore::list_tasks`] in place, as [`TaskStore::find_task_in_place`];
    /// also `None` for a query an index does not answer from its first
    /// entry on (a filter checked row by row, such as a text search, may
    /// read every task of the caller's projects).
    fn list_tasks_in_place(
        &self,
        _caller: UserId,
        _query: &TaskQuery,
        _after: Option<&TaskCursor>,
        _limit: usize,
    ) -> Option<Result<Vec<Task>, StoreError>> {
        None
    }
    /// Read-modify-write in one atomic step: reads the task if it is in a
    /// project `caller` is a member of, asks `change` for its new state
    /// given the caller's role there (`None`: leave it as it is) and stores
    /// that, while no other writer can change the task, nor the caller's
    /// membership, in between; then asks `follow_up`, given the task before
    /// and after, for a task to create with it (a recurring task's next
    /// occurrence), which is inserted in the same transaction unless a task
    /// of the same series and occurrence is there already (then that one is
    /// named). Of concurrent calls for one task, each sees the result of
    /// the previous. The new state keeps the task's id, project and
    /// creator; a new parent must be a task of the same project that keeps
    /// the tree at most [`Task::MAX_DEPTH`] deep and without a cycle, as
    /// the store weighs it inside the same transaction.
    fn write_task(
        &self,
        caller: UserId,
        id: TaskId,
        change: &mut dyn FnMut(&Task, ProjectRole) -> Option<Task>,
        follow_up: &mut dyn FnMut(&Task, &Task) -> Option<Task>,
        max_tasks: Option<u64>,
    ) -> Result<TaskWrite, StoreError>;
    /// [`TaskStore::write_task`] with no follow-up: the task as stored
    /// afterwards, or `None` if the caller sees no such task. A refused
    /// parent is a [`StoreError::Conflict`] here.
    fn modify_task(
        &self,
        caller: UserId,
        id: TaskId,
        change: &mut dyn FnMut(&Task, ProjectRole) -> Option<Task>,
    ) -> Result<Option<Task>, StoreError> {
        match self.write_task(caller, id, change, &mut |_, _| None, None)? {
            TaskWrite::NotFound => Ok(None),
            TaskWrite::Written { task, .. } => Ok(Some(*task)),
            TaskWrite::BadParent(_) | TaskWrite::AtQuota => {
                Err(StoreError::Conflict("the change was refused"))
            }
        }
    }
    /// Deletes the task, with its subtasks, if `caller` sees it and `may`
    /// allows it, given the task as stored and the caller's role; in one
    /// atomic step as [`TaskStore::write_task`]. Each task deleted is
    /// recorded as a deletion. Returns the task as it was, deleted or
    /// not (`None`: the caller sees no such task). `at` is the time its
    /// tombstone records.
    fn delete_task(
        &self,
        caller: UserId,
        id: TaskId,
        at: Timestamp,
        may: &mut dyn FnMut(&Task, ProjectRole) -> bool,
    ) -> Result<Option<Task>, StoreError>;
    /// The members of `project`, whose streams a write to its tasks goes to.
    fn project_members(&self, project: ProjectId) -> Result<Vec<UserId>, StoreError>;
    /// The members of any of `projects` (each once, in no order): whom to
    /// wake for changes other processes made to them. A store should read
    /// them at once; this default reads them a project at a time.
    fn members_of_projects(&self, projects: &[ProjectId]) -> Result<Vec<UserId>, StoreError> {
        let mut members = Vec::new();
        for &project in projects {
            members.extend(self.project_members(project)?);
        }
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    /// Up to `limit` tasks of the projects `owner` owns (their Inbox
    /// included), by id (so by creation), after `after` if given: a page
    /// of what their export holds.
    fn owned_tasks(
        &self,
        owner: UserId,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;

    /// Up to `limit` of the project's tasks that are not archived, by
    /// creation (`created_at`, then id), after `after` if given: a feed's
    /// pages.
    fn project_tasks(
        &self,
        project: ProjectId,
        after: Option<(Timestamp, TaskId)>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;

    /// Fires the reminders due at `now`, the earliest first, at most
    /// `limit`: each is marked fired and recorded as a
    /// [`ChangeKind::ReminderDue`](crate::ChangeKind::ReminderDue) change
    /// (the task as it is then, without its description: a reminder is
    /// copied to every member) in the stream of every member of its
    /// task's project, in one transaction, so that each fires once however
    /// many instances ask, and none is lost to a crash. Returns the
    /// members whose streams got one, for waking.
    ///
    /// Every write above schedules the task's reminders anew in its own
    /// transaction: those that fall after the write's time, none for a
    /// task done or archived; one that fired stays fired.
    fn fire_due_reminders(&self, now: Timestamp, limit: usize) -> Result<Vec<UserId>, StoreError>;

    /// The changes of `owner`'s stream after `after`, oldest first, at
    /// most `limit`, with how far the log can be read and how far
    /// retention has pruned the stream.
    ///
    /// Every write above records its change ([`ChangeKind`](crate::ChangeKind))
    /// once, in the same transaction as itself, as a change of the task's
    /// project: `owner`'s stream holds the changes of every project they
    /// are a member of, from the change that made them one, and those
    /// addressed to them alone, in [`LogPosition`] order, which no change
    /// committed later sorts before (see [`LogPosition`]).
    fn changes_after(
        &self,
        owner: UserId,
        after: LogPosition,
        limit: usize,
    ) -> Result<ChangeLog, StoreError>;

    /// Retention: forgets, of every project and every user's own changes,
    /// those up to the newest one made before `before`; returns how many
    /// went.
    fn prune_changes(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// What [`TaskStore::insert_task_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskInsert {
    /// The task is stored.
    Inserted,
    /// The project's owner keeps as many tasks as allowed.
    AtQuota,
    /// `may` refused the creator's standing in the project.
    Refused(Standing),
    /// The parent it names cannot be its parent.
    BadParent(TreeRefusal),
}

/// What [`TaskStore::write_task`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskWrite {
    /// The caller sees no such task.
    NotFound,
    /// The task as it now is (changed, or as it was when `change` left it
    /// alone), and the follow-up task made with it or found there already.
    Written {
        /// The task (boxed: the other answers are small).
        task: Box<Task>,
        /// The follow-up's id, if one was asked for.
        follow_up: Option<TaskId>,
    },
    /// The new parent cannot be the task's parent; nothing was written.
    BadParent(TreeRefusal),
    /// The follow-up would take the project's owner past `max_tasks`;
    /// nothing was written.
    AtQuota,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// The password is the one the hash was made from.
    pub matches: bool,
    /// The hash was made with weaker parameters than configured now.
    pub needs_rehash: bool,
}

/// Password hashing (argon2id in todo-auth).
pub trait PasswordHasher: Send + Sync {
    /// A new hash of `password`, with a fresh salt and today's parameters.
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;
    /// Checks `password` against a stored hash, costing what today's parameters cost.
    fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<Verification, HashError>;
    /// A hash of no one's password, made with the current parameters: unknown
    /// users are checked against it so that they cost what known users cost.
    fn dummy_hash(&self) -> &PasswordHash;
    /// When a hash asked for now would be refused at once
    /// ([`HashError::Busy`]): what to tell the caller to wait. A login then
    /// refuses before it spends any allowance. `None` (the default) for a
    /// hasher that never sheds.
    fn shedding(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Signs access tokens (auth service only: it holds the private key).
pub trait AccessTokenSigner: Send + Sync {
    /// The compact JWS of `claims`, signed with the current key.
    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError>;
}

/// Verifies access tokens: signature with an accepted algorithm and a known
/// key, issuer, audience, and `exp`/`nbf` against `now` (with a small leeway).
pub trait AccessTokenVerifier: Send + Sync {
    /// The claims of `token` if it is valid at `now`; the reason otherwise.
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError>;
}

impl<T: AccessTokenVerifier + ?Sized> AccessTokenVerifier for std::sync::Arc<T> {
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        (**self).verify(token, now)
    }
}

/// Digests refresh tokens for storage.
pub trait RefreshTokenHasher: Send + Sync {
    /// The digest under which `token` is stored and looked up.
    fn digest(&self, token: &RefreshToken) -> RefreshTokenHash;
}

/// SHA-256, for what the core derives from or keeps of something in digest
/// form (an import's ids, a feed token's stored form): the crypto stays
/// outside the core (`todo_auth::Sha256Digest`).
pub trait Sha256: Send + Sync {
    /// The digest of `parts`, one after the other.
    fn digest(&self, parts: &[&[u8]]) -> [u8; 32];
}

/// The address a client is counted under by per-client limits: IPv4 as is
/// (also when mapped into IPv6), IPv6 by its /64, the block one subscriber
/// gets (counted one by one, a /64 would be 2^64 clients).
#[must_use]
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// A limiter keyed by `K` (a client address, an account).
pub trait RateLimiter<K: ?Sized>: Send + Sync {
    /// Takes one unit of `key`'s allowance; `Err(wait)` when it is spent.
    fn check(&self, key: &K) -> Result<(), Duration>;
}

/// What a login attempt is counted against: the account offered (whether it
/// exists or not), or a device that signed in to it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleKey<'a> {
    /// The username offered at login, whether it exists or not.
    Account(&'a Username),
    /// The digest of a device token.
    Device(&'a RefreshTokenHash),
    /// A signed-in user confirming their password (a password change, the
    /// account's deletion, ending other sessions), in the session their
    /// token names: counted apart from the account's logins, so that
    /// strangers guessing at the login form cannot stop the owner from
    /// changing it, and apart from other sessions, so that a thief guessing
    /// in a stolen session cannot either.
    SignedIn(UserId, Option<SessionId>),
    /// Codes offered for a user's second factor (a login's second step,
    /// confirming an enrolment or a removal): counted apart from the
    /// password's, per account, whatever the token or session; at a
    /// login's second step from a device that signed in to the account
    /// before, per that device (as passwords are), so that a password
    /// thief's wrong codes do not shut the owner's devices out.
    SecondFactor(UserId, Option<&'a RefreshTokenHash>),
}

impl ThrottleKey<'_> {
    /// The key as one string: `a:`, `d:`, `u:` or `f:` then the username,
    /// digest or user id (and `:` and the session's id, when the token
    /// names one).
    #[must_use]
    pub fn to_key(&self) -> String {
        match self {
            Self::Account(username) => format!("a:{}", username.as_str()),
            Self::Device(digest) => format!("d:{}", digest.as_str()),
            Self::SignedIn(user, None) => format!("u:{user}"),
            Self::SignedIn(user, Some(session)) => format!("u:{user}:{session}"),
            Self::SecondFactor(user, None) => format!("f:{user}"),
            Self::SecondFactor(user, Some(device)) => format!("f:{user}:{}", device.as_str()),
        }
    }
}

/// The growing delay after failed logins on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The delay never exceeds this.
    pub max_delay: Duration,
    /// A failure this old no longer counts.
    pub forget_after: Duration,
    /// Keys tracked at most by an in-memory backoff; the stalest is dropped
    /// first. (A database-backed one is bounded by purging instead.)
    pub max_accounts: usize,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5 * 60),
            forget_after: Duration::from_secs(3600),
            max_accounts: 100_000,
        }
    }
}

impl BackoffPolicy {
    /// Second factors' codes: five free, then 30 s doubling to 4 hours,
    /// remembered a week after the last. A password thief who keeps
    /// guessing gets some six codes a day after the first hour: about 2,200
    /// a year, against a million codes (three good at a time), about 0.7%;
    /// the owner who mistypes five times waits 30 s.
    pub const CODES: Self = Self {
        free_failures: 5,
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(4 * 3600),
        forget_after: Duration::from_secs(7 * 24 * 3600),
        max_accounts: 100_000,
    };

    /// The delay after `failures` failures in a row: none for the free
    /// ones, then `base_delay` doubling, never more than `max_delay`.
    #[must_use]
    pub fn delay_after(&self, failures: u32) -> Duration {
        let over = failures.saturating_sub(self.free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The failure count once one more attempt is taken, given the count
    /// and time of the last one.
    #[must_use]
    pub fn next_count(&self, failures: u32, last: Timestamp, now: Timestamp) -> u32 {
        if now.duration_since(last) >= self.forget_after {
            1
        } else {
            failures.saturating_add(1)
        }
    }
}

/// Failed-login bookkeeping per key, reserved before the password is
/// weighed: [`LoginBackoff::reserve`] takes the attempt's slot atomically and
/// counts it as a failure up front; a success clears the count. So
/// concurrent guesses beyond the allowance are refused without an argon2
/// run, whatever instance they reach (when the count is shared).
pub trait LoginBackoff: Send + Sync {
    /// Takes one attempt on `key`: `Ok(Ok(()))` and the attempt is counted
    /// (its delay starts now), or `Ok(Err(wait))` while `key` is in its delay.
    fn reserve(
        &self,
        key: ThrottleKey<'_>,
        now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError>;
    /// The attempt succeeded: `key`'s count is cleared.
    fn record_success(&self, key: ThrottleKey<'_>) -> Result<(), StoreError>;
    /// The attempt was never weighed (hashing was saturated: 503): its
    /// reservation is given back, so that overload does not lock an
    /// account. Best effort: a concurrent attempt on `key` wins.
    fn release(&self, _key: ThrottleKey<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    /// The attempt succeeded, where a success must not wipe a guesser's
    /// record: `key`'s count is cleared if the failures before it were
    /// within the policy's free ones (its owner's typos), else only this
    /// attempt's slot is given back ([`Self::release`]), so a guesser past
    /// the free failures keeps their delay however often the owner gets
    /// in. By default, [`Self::record_success`].
    fn settle(&self, key: ThrottleKey<'_>) -> Result<(), StoreError> {
        self.record_success(key)
    }
    /// Forgets keys whose last failure is older than the policy remembers
    /// and whose delay is over, and expired devices; returns how many.
    fn purge(&self, now: Timestamp) -> Result<u64, StoreError>;
    /// Remembers a device token's digest as signed in to `user` until
    /// `expires_at`. By default no device is remembered: every login then
    /// counts against its account.
    fn remember_device(
        &self,
        _device: &RefreshTokenHash,
        _user: UserId,
        _now: Timestamp,
        _expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Forgets every device of `user` (their password changed, or the
    /// account was disabled): no device keeps its own allowance against a
    /// new password. Returns how many were forgotten.
    fn forget_devices(&self, _user: UserId) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// The account a device token signed in to, if it is known and not expired.
    fn device_owner(
        &self,
        _device: &RefreshTokenHash,
        _now: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(None)
    }
}

/// Security events, for the audit log.
pub trait AuditSink: Send + Sync {
    /// Writes one event; must not fail the call that caused it.
    fn record(&self, event: &AuditEvent<'_>);
}

/// A security event and who caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEvent<'a> {
    /// A user registered or was created.
    Registered {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A login passed the password check.
    LoginSucceeded {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// `username` is what was offered, when it was a valid username.
    LoginFailed {
        /// The username offered, when it was a valid username.
        username: Option<&'a Username>,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A rate limit or the failed-login delay refused a call.
    Throttled {
        /// What was refused (`"login"`, `"register"`, …).
        action: &'static str,
        /// The username offered, when there was one.
        username: Option<&'a Username>,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A dead refresh token was presented: its family is revoked.
    RefreshTokenReused {
        /// The family's user.
        user: UserId,
        /// The family now revoked.
        family: SessionId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A refresh token's family was ended by its holder.
    LoggedOut {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user ended sessions of theirs (the sessions screen): one, or
    /// every other.
    SessionsEnded {
        /// The user concerned.
        user: UserId,
        /// The one ended; `None`: every other.
        session: Option<SessionId>,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user's password was set with a reset link.
    PasswordReset {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user made an API token.
    ApiTokenCreated {
        /// The user concerned.
        user: UserId,
        /// The token's session.
        token: SessionId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user deleted their own account.
    AccountDeleted {
        /// The user concerned (gone now).
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A link was mailed to a user (`"password_reset"`,
    /// `"verify_email"`).
    Mailed {
        /// The user concerned.
        user: UserId,
        /// What the link is for.
        purpose: &'static str,
        /// The address of the client who asked for it, when known.
        client: Option<IpAddr>,
    },
    /// Mail to a user could not be sent.
    MailFailed {
        /// The user concerned.
        user: UserId,
        /// What the link was for.
        purpose: &'static str,
        /// The address of the client who asked for it, when known.
        client: Option<IpAddr>,
        /// Why, as the mail server or the connection said it.
        reason: &'a str,
    },
    /// A user changed their address (with their password).
    EmailChanged {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user's address was verified by its link.
    EmailVerified {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user changed their password (their older tokens are revoked).
    PasswordChanged {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A password matched for an account with a second factor: its login
    /// waits for a code (a stolen password shows here first).
    SecondFactorAsked {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A second factor was enrolled (`"totp"`, `"passkey"`).
    SecondFactorAdded {
        /// The user concerned.
        user: UserId,
        /// Which method.
        method: &'static str,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A user removed their own second factors (with their password and
    /// a code).
    SecondFactorRemoved {
        /// The user concerned.
        user: UserId,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A code (`"totp"`, `"recovery_code"`) was refused: at a login's
    /// second step or confirming an action.
    SecondFactorFailed {
        /// The user concerned.
        user: UserId,
        /// Which method was tried.
        method: &'static str,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// A recovery code was used (fewer are left).
    RecoveryCodeUsed {
        /// The user concerned.
        user: UserId,
        /// How many are left.
        left: u32,
        /// The client's address, when known.
        client: Option<IpAddr>,
    },
    /// An administrator changed, disabled or deleted a user.
    AdminAction {
        /// The administrator.
        actor: UserId,
        /// What they did (`"disable"`, `"delete"`, …).
        action: &'static str,
        /// The user it was done to.
        target: UserId,
    },
}

/// An audit sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _event: &AuditEvent<'_>) {}
}

/// A limiter that never limits (for embedding and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl<K: ?Sized> RateLimiter<K> for Unlimited {
    fn check(&self, _key: &K) -> Result<(), Duration> {
        Ok(())
    }
}

impl LoginBackoff for Unlimited {
    fn reserve(
        &self,
        _key: ThrottleKey<'_>,
        _now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        Ok(Ok(()))
    }
    fn record_success(&self, _key: ThrottleKey<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    fn purge(&self, _now: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }
}
