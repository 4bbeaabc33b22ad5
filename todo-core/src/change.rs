//! The change log: every write to a task, a project or a project's members
//! is recorded once, as a change of the project, in the same transaction
//! as the write (the store does it, so no write path can forget). A user's
//! stream is what of the log they may see: the changes of each project
//! they are a member of, from the change that made them one, and the few
//! addressed to them alone (their removal from a project, a project's
//! deletion). A client that was offline asks for what came after the last
//! change it saw ([`ChangeCursor`]); the live channels (events, webhooks,
//! the relay) read the same log.
//!
//! The log is numbered ([`LogPosition`]) with no gap a reader could skip:
//! a change is numbered only once it has committed, in the order the store
//! finds them, so a change a reader has not seen never turns up behind one
//! it has.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ValidationError;
use crate::project::{Member, Project, ProjectId, ProjectRole};
use crate::query::{PageLimit, array, decode_exact};
use crate::task::{Task, TaskId};
use crate::time::Timestamp;
use crate::user::{UserId, Username};

/// What a change did to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A task was created.
    TaskCreated,
    /// A task was changed (edited, completed, archived…).
    TaskUpdated,
    /// A task was deleted: the change is a tombstone.
    TaskDeleted,
    /// One of a task's reminders is due (the task as it is then).
    ReminderDue,
    /// A project was made (in its owner's stream).
    ProjectCreated,
    /// A project's name, description, colour or archived flag changed.
    ProjectUpdated,
    /// A project was deleted, and its tasks with it: a tombstone.
    ProjectDeleted,
    /// A user became a member of a project, or their role changed: the
    /// member as the write left them.
    MemberAdded,
    /// A member left or was removed: the member as they were. Their own
    /// stream gets it too, and nothing of the project after it.
    MemberRemoved,
}

impl ChangeKind {
    /// Every kind.
    pub const ALL: [Self; 9] = [
        Self::TaskCreated,
        Self::TaskUpdated,
        Self::TaskDeleted,
        Self::ReminderDue,
        Self::ProjectCreated,
        Self::ProjectUpdated,
        Self::ProjectDeleted,
        Self::MemberAdded,
        Self::MemberRemoved,
    ];

    /// The kind as the API and the store name it (`task.created`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TaskCreated => "task.created",
            Self::TaskUpdated => "task.updated",
            Self::TaskDeleted => "task.deleted",
            Self::ReminderDue => "reminder.due",
            Self::ProjectCreated => "project.created",
            Self::ProjectUpdated => "project.updated",
            Self::ProjectDeleted => "project.deleted",
            Self::MemberAdded => "member.added",
            Self::MemberRemoved => "member.removed",
        }
    }

    /// The kind named `name` ([`ChangeKind::as_str`]).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most changes the log keeps of one project (and of one user's own
/// changes), whatever the retention: about the task quota's worth, so that
/// the log cannot hold much more of a project than its tasks can (at the
/// write limit, ten a second, a user would otherwise keep some 36,000
/// copies of a 40 KB task an hour). One write in [`TRIM_EVERY`] drops its
/// project's changes older than the latest `MAX_CHANGES_PER_PROJECT`, as
/// retention does (a reader behind them is told they are gone); a
/// deletion of several tasks draws once a task.
pub const MAX_CHANGES_PER_PROJECT: u64 = 10_000;

/// The most changes the log keeps of all the projects one user owns
/// together (their Inbox among them), whatever the retention: five
/// projects' caps. The per-project cap alone let one account keep
/// `MAX_CHANGES_PER_PROJECT` in each of its up to 1,000 projects (attack
/// of session 22, F2: ten million changes). A project's trim keeps at
/// most what its owner's other projects leave of this budget (a count of
/// their rows, on the one write in [`TRIM_EVERY`] that trims: nothing
/// more on any other write), and retention's prune cuts each owner back
/// to it, oldest first, across their projects. Between two prunes an
/// owner holds at most this plus, in each project, the larger of
/// [`MIN_CHANGES_KEPT_PER_PROJECT`] and the writes since its last trim,
/// and never more than this plus the writes since the prune.
pub const MAX_CHANGES_PER_OWNER: u64 = 5 * MAX_CHANGES_PER_PROJECT;

/// The changes a project's trim keeps however many its owner's other
/// projects hold (retention's prune cuts the owner's oldest across their
/// projects to [`MAX_CHANGES_PER_OWNER`]): kept to one, every member
/// behind was sent back to the start at every trim of an owner over
/// budget (review of session 23, minor 6).
pub const MIN_CHANGES_KEPT_PER_PROJECT: u64 = 1_000;

/// How often, on average, a write trims its project
/// ([`MAX_CHANGES_PER_PROJECT`]): the SQL store draws one write in
/// `TRIM_EVERY` at random (so that no pattern of writes avoids it), the
/// in-memory model trims at every `TRIM_EVERY`-th change of its log.
pub const TRIM_EVERY: u64 = 256;

/// Whether a draw of `n` (a change's number, or a random draw) trims: one
/// in [`TRIM_EVERY`].
#[must_use]
pub const fn trims_at(n: u64) -> bool {
    n.is_multiple_of(TRIM_EVERY)
}

/// Where a change is in the log: its number, in the order in which
/// readers see changes.
///
/// Numbers are handed out so that a reader never sees one before a
/// smaller one: on SQLite, whose writers take turns, in commit order as
/// each change is written; on PostgreSQL, whose writers commit in any
/// order, once the change has committed, by whoever reads the log next
/// (the store's sequencer), in the order it finds them. A reader that
/// asks for what comes after the last number it saw therefore never
/// skips a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPosition(u64);

impl LogPosition {
    /// Before every change.
    pub const START: Self = Self(0);

    /// The position of the change numbered `seq`.
    #[must_use]
    pub const fn new(seq: u64) -> Self {
        Self(seq)
    }

    /// The change's number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where it is in the log.
    pub position: LogPosition,
    /// What it did.
    pub kind: ChangeKind,
    /// What it did it to, as the change left it.
    pub subject: Subject,
    /// When it was made.
    pub at: Timestamp,
}

impl Change {
    /// A bound of [`Change::json_bytes`] that reads no text.
    #[must_use]
    pub fn json_bytes_at_most(&self) -> usize {
        self.json_weight(Task::json_bytes_at_most, Project::json_bytes_at_most)
    }

    /// About how long this change is as JSON on the wire: what a page of
    /// changes is weighed by.
    #[must_use]
    pub fn json_bytes(&self) -> usize {
        self.json_weight(Task::json_bytes, Project::json_bytes)
    }

    /// The change's weight, its task or project weighed by `task` or
    /// `project`.
    fn json_weight(&self, task: fn(&Task) -> usize, project: fn(&Project) -> usize) -> usize {
        match &self.subject {
            // (the cursor, type and id besides)
            Subject::Task { task: Some(t), .. } => 128 + task(t),
            Subject::Project {
                project: Some((p, _)),
                ..
            } => project(p),
            // (a tombstone, a member and their name)
            Subject::Task { task: None, .. }
            | Subject::Project { project: None, .. }
            | Subject::Member { .. } => 512,
        }
    }

    /// The task it concerns, if it concerns one.
    #[must_use]
    pub fn task_id(&self) -> Option<TaskId> {
        match &self.subject {
            Subject::Task { id, .. } => Some(*id),
            Subject::Project { .. } | Subject::Member { .. } => None,
        }
    }

    /// The task as the change left it: `None` for a deletion, and for a
    /// change to something else.
    #[must_use]
    pub fn task(&self) -> Option<&Task> {
        match &self.subject {
            Subject::Task { task, .. } => task.as_ref(),
            Subject::Project { .. } | Subject::Member { .. } => None,
        }
    }
}

/// What a change concerns, as the change left it.
#[derive(Debug, Clone, PartialEq, Eq)]
// (Nearly every change is a task's: boxing it would cost each an allocation
// to save the few project and member changes some bytes.)
#[expect(clippy::large_enum_variant)]
pub enum Subject {
    /// A task; `None` when it was deleted.
    Task {
        /// The task's id.
        id: TaskId,
        /// The task.
        task: Option<Task>,
    },
    /// A project, with the role in it of the stream's owner; `None` when
    /// it was deleted.
    Project {
        /// The project's id.
        id: ProjectId,
        /// The project and the stream owner's role.
        project: Option<(Project, ProjectRole)>,
    },
    /// A member of a project.
    Member {
        /// The project.
        project: ProjectId,
        /// The member (for a removal: as they were).
        member: Member,
        /// The member's username.
        username: Username,
    },
}

/// A part of a user's stream, as the store gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeLog {
    /// The changes asked for, oldest first.
    pub changes: Vec<Change>,
    /// How far the log can be read now: no change readable later sorts
    /// at or before it, so a reader that has seen the stream up to here
    /// is up to date.
    pub head: LogPosition,
    /// The user's changes up to here are gone (retention, or a project's
    /// cap): a reader that has seen less than this has missed some.
    pub pruned_through: LogPosition,
    /// How far the read looked: every change of the stream up to here,
    /// after where it started, is in `changes` (at least the last of
    /// them; up to `head` when it found fewer than asked and looked all
    /// the way). A reader goes on from here.
    pub scanned_through: LogPosition,
}

/// A page of an owner's changes, and where the next read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    /// The changes after the cursor, oldest first.
    pub items: Vec<Change>,
    /// After the last change of this page; when the page is not full, the
    /// caller has caught up, and this is where to ask again later.
    pub next_cursor: ChangeCursor,
}

/// How many changes a page holds: as a task page ([`PageLimit`]).
pub type ChangeLimit = PageLimit;

/// The last change of a user's stream that a client has seen. Opaque to
/// clients (URL-safe base64); it carries a tag of its owner, so that one
/// user's cursor given with another's token is refused rather than read
/// as a position in a stream it was not made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeCursor {
    position: LogPosition,
    owner_tag: u32,
}

/// Why a cursor cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorError {
    /// Not a cursor this service makes.
    Malformed,
    /// A cursor of the log before it was recorded once per project
    /// (version 1, numbered per user): its numbers mean nothing now, so its
    /// reader must start over, as after retention.
    Outdated,
}

impl ChangeCursor {
    const VERSION: u8 = 2;
    const OUTDATED_VERSION: u8 = 1;
    const LEN: usize = 1 + 8 + 4;

    /// The position after the change at `position` of `owner`'s stream
    /// ([`LogPosition::START`]: before the first).
    #[must_use]
    pub fn new(owner: UserId, position: LogPosition) -> Self {
        Self {
            position,
            owner_tag: owner_tag(owner),
        }
    }

    /// Parses the opaque form that [`fmt::Display`] writes.
    pub fn parse(raw: &str) -> Result<Self, CursorError> {
        let bytes = decode_exact::<{ Self::LEN }>(raw).ok_or(CursorError::Malformed)?;
        match bytes[0] {
            Self::VERSION => Ok(Self {
                position: LogPosition::new(u64::from_be_bytes(array(&bytes[1..9]))),
                owner_tag: u32::from_be_bytes(array(&bytes[9..13])),
            }),
            Self::OUTDATED_VERSION => Err(CursorError::Outdated),
            _ => Err(CursorError::Malformed),
        }
    }

    /// The position, if the cursor was made for `owner`'s stream.
    pub fn position_for(&self, owner: UserId) -> Result<LogPosition, ValidationError> {
        if self.owner_tag == owner_tag(owner) {
            Ok(self.position)
        } else {
            Err(BAD_CURSOR)
        }
    }
}

impl fmt::Display for ChangeCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; Self::LEN];
        bytes[0] = Self::VERSION;
        bytes[1..9].copy_from_slice(&self.position.get().to_be_bytes());
        bytes[9..13].copy_from_slice(&self.owner_tag.to_be_bytes());
        f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// How a malformed cursor is refused.
pub const BAD_CURSOR: ValidationError = ValidationError::Format {
    field: "since",
    what: "change cursor",
};

/// A 32-bit FNV-1a of the owner's id: tells streams apart, grants nothing
/// (a cursor positions within the caller's own stream only).
fn owner_tag(owner: UserId) -> u32 {
    owner
        .as_uuid()
        .as_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |hash, byte| {
            (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use uuid::Uuid;

    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    #[test]
    fn a_cursor_reads_back_for_its_owner_only() {
        let (alice, bob) = (user(1), user(2));
        let at = LogPosition::new(42);
        let cursor = ChangeCursor::new(alice, at);
        let parsed = ChangeCursor::parse(&cursor.to_string()).unwrap();
        assert_eq!(parsed, cursor);
        assert_eq!(parsed.position_for(alice), Ok(at));
        assert_eq!(parsed.position_for(bob), Err(BAD_CURSOR));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let good = ChangeCursor::new(user(1), LogPosition::new(7)).to_string();
        let mut other_version = URL_SAFE_NO_PAD.decode(&good).unwrap();
        other_version[0] = 3;
        for raw in [
            String::new(),
            "x".repeat(good.len()),
            format!("{good}A"),
            good[1..].to_owned(),
            URL_SAFE_NO_PAD.encode(other_version),
        ] {
            assert_eq!(
                ChangeCursor::parse(&raw),
                Err(CursorError::Malformed),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn a_cursor_of_the_per_user_log_is_outdated_not_malformed() {
        // Version 1: a version byte, a stream number, an owner tag.
        let mut old = vec![1_u8];
        old.extend_from_slice(&42_u64.to_be_bytes());
        old.extend_from_slice(&owner_tag(user(1)).to_be_bytes());
        let raw = URL_SAFE_NO_PAD.encode(&old);
        assert_eq!(ChangeCursor::parse(&raw), Err(CursorError::Outdated));
        // The same length with another version byte is simply malformed.
        old[0] = 9;
        let raw = URL_SAFE_NO_PAD.encode(&old);
        assert_eq!(ChangeCursor::parse(&raw), Err(CursorError::Malformed));
    }

    #[test]
    fn kinds_read_back_by_name() {
        for kind in ChangeKind::ALL {
            assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ChangeKind::parse("task.exploded"), None);
    }
}
