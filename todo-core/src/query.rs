//! Listing: task filters, sort orders, page sizes and keyset cursors.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::ValidationError;
use crate::project::ProjectId;
use crate::task::{Label, Task, TaskId, is_text_char};
use crate::time::Timestamp;
use crate::user::UserId;

/// How many items a page holds: 1 to 100, 50 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageLimit(u8);

impl PageLimit {
    /// The largest page: bounds what one request costs the store.
    pub const MAX: u8 = 100;
    /// The smallest page.
    pub const MIN: u8 = 1;
    /// A page of [`Self::MAX`] items.
    pub const LARGEST: Self = Self(Self::MAX);

    /// A page of `items`, brought within [`Self::MIN`] to [`Self::MAX`].
    #[must_use]
    pub const fn clamped(items: usize) -> Self {
        if items < Self::MIN as usize {
            Self(Self::MIN)
        } else if items > Self::MAX as usize {
            Self(Self::MAX)
        } else {
            #[allow(clippy::cast_possible_truncation)] // at most MAX, a u8
            Self(items as u8)
        }
    }

    /// Parses a `limit` parameter.
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        u8::try_from(value)
            .ok()
            .filter(|v| (Self::MIN..=Self::MAX).contains(v))
            .map(Self)
            .ok_or(ValidationError::Range {
                field: "limit",
                min: i64::from(Self::MIN),
                max: i64::from(Self::MAX),
            })
    }

    /// The page size as a count.
    #[must_use]
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(50)
    }
}

/// The text of a `q` search: 1 to 200 characters, kept folded to lower case.
/// It matches as a literal substring: `%` and `_` mean only themselves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchText(String);

impl SearchText {
    /// The longest search text, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Parses a `q` parameter and folds it to lower case.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "q";
        let n = if raw.len() > Self::MAX_CHARS * 4 {
            usize::MAX
        } else {
            raw.chars().count()
        };
        if !(1..=Self::MAX_CHARS).contains(&n) {
            return Err(ValidationError::Length {
                field: FIELD,
                min: 1,
                max: Self::MAX_CHARS,
            });
        }
        if !raw.chars().all(is_text_char) {
            return Err(ValidationError::Charset {
                field: FIELD,
                allowed: "printable characters, line breaks and tabs",
            });
        }
        Ok(Self(raw.to_lowercase()))
    }

    /// The folded text, to look for in [`Task::search_text`].
    #[must_use]
    pub fn folded(&self) -> &str {
        &self.0
    }
}

/// The order of a task list. Ties break on the id, in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TaskSort {
    /// Oldest first.
    CreatedAsc,
    /// Newest first (the default).
    #[default]
    CreatedDesc,
    /// Tasks without a due date come last.
    DueAsc,
    /// Tasks without a due date come first.
    DueDesc,
    /// Lowest priority first.
    PriorityAsc,
    /// Highest priority first.
    PriorityDesc,
}

impl TaskSort {
    /// Every order, for those who list them (the API's document, tests).
    pub const ALL: [Self; 6] = [
        Self::CreatedAsc,
        Self::CreatedDesc,
        Self::DueAsc,
        Self::DueDesc,
        Self::PriorityAsc,
        Self::PriorityDesc,
    ];

    /// Parses a `sort` parameter: `created`, `due` or `priority`, `-` first for descending.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or(ValidationError::Format {
                field: "sort",
                what: "sort order (created, due or priority, with - for descending)",
            })
    }

    /// The `sort` parameter's spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreatedAsc => "created",
            Self::CreatedDesc => "-created",
            Self::DueAsc => "due",
            Self::DueDesc => "-due",
            Self::PriorityAsc => "priority",
            Self::PriorityDesc => "-priority",
        }
    }

    /// Whether the largest key comes first.
    #[must_use]
    pub const fn is_descending(self) -> bool {
        matches!(self, Self::CreatedDesc | Self::DueDesc | Self::PriorityDesc)
    }

    /// The value a task sorts by; a missing due date sorts as the latest time.
    #[must_use]
    pub fn key(self, task: &Task) -> i64 {
        match self {
            Self::CreatedAsc | Self::CreatedDesc => task.created_at.unix_micros(),
            Self::DueAsc | Self::DueDesc => task
                .due_at
                .map_or(Self::NO_DUE_DATE, Timestamp::unix_micros),
            Self::PriorityAsc | Self::PriorityDesc => i64::from(task.priority.get()),
        }
    }

    /// The sort key of a task without a due date.
    pub const NO_DUE_DATE: i64 = i64::MAX;

    fn code(self) -> u8 {
        match self {
            Self::CreatedAsc => 0,
            Self::CreatedDesc => 1,
            Self::DueAsc => 2,
            Self::DueDesc => 3,
            Self::PriorityAsc => 4,
            Self::PriorityDesc => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Which of a user's tasks to list, in what order, how many at a time.
/// Filters combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TaskQuery {
    /// Only the tasks of this project (else of every project the caller
    /// is a member of).
    pub project: Option<ProjectId>,
    /// Only the subtasks of this task (one level down).
    pub parent: Option<TaskId>,
    /// Only done (`true`) or only open (`false`) tasks.
    pub done: Option<bool>,
    /// Archived tasks are listed only when asked for, and then alone.
    pub archived: bool,
    /// Only tasks with this label.
    pub label: Option<Label>,
    /// Only tasks whose title or description contains this text.
    pub text: Option<SearchText>,
    /// Strict; leaves out tasks without a due date.
    pub due_before: Option<Timestamp>,
    /// Strict; leaves out tasks without a due date.
    pub due_after: Option<Timestamp>,
    /// The order of the list.
    pub sort: TaskSort,
    /// At most this many tasks a page.
    pub limit: PageLimit,
}

impl TaskQuery {
    /// Whether it filters on more than the projects and the archived flag
    /// (done, parent, label, text, due dates): filters a store checks row
    /// by row, so that one matching little reads every task of the
    /// caller's projects (of the parent's project, for `parent`).
    #[must_use]
    pub fn scans(&self) -> bool {
        // Every field named: a filter added does not compile until it is
        // weighed here (and in the SQL store's `QueryFilters::of`).
        let Self {
            project: _,
            parent,
            done,
            archived: _,
            label,
            text,
            due_before,
            due_after,
            sort: _,
            limit: _,
        } = self;
        done.is_some()
            || parent.is_some()
            || label.is_some()
            || text.is_some()
            || due_before.is_some()
            || due_after.is_some()
    }

    /// Whether `task` passes every filter (the reference the stores agree with).
    #[must_use]
    pub fn matches(&self, task: &Task) -> bool {
        self.done.is_none_or(|done| task.done == done)
            && task.archived == self.archived
            && self.project.is_none_or(|project| task.project == project)
            && self.parent.is_none_or(|parent| task.parent == Some(parent))
            && self
                .label
                .as_ref()
                .is_none_or(|label| task.labels.contains(label))
            && self
                .text
                .as_ref()
                .is_none_or(|q| task.search_text().contains(q.folded()))
            && self
                .due_before
                .is_none_or(|t| task.due_at.is_some_and(|due| due < t))
            && self
                .due_after
                .is_none_or(|t| task.due_at.is_some_and(|due| due > t))
    }

    /// A short digest of the filters and sort, carried in cursors so that a
    /// cursor is refused under a different query.
    #[must_use]
    pub fn fingerprint(&self) -> u32 {
        // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
        let mut hash: u32 = 0x811c_9dc5;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u32::from(*b);
                hash = hash.wrapping_mul(0x0100_0193);
            }
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0193);
        };
        eat(&[
            self.done.map_or(2, u8::from),
            u8::from(self.archived),
            self.sort.code(),
        ]);
        eat(self
            .label
            .as_ref()
            .map_or(&[][..], |l| l.as_str().as_bytes()));
        eat(self
            .project
            .as_ref()
            .map_or(&[][..], |p| p.as_uuid().as_bytes()));
        eat(self
            .parent
            .as_ref()
            .map_or(&[][..], |p| p.as_uuid().as_bytes()));
        eat(self
            .text
            .as_ref()
            .map_or(&[][..], |q| q.folded().as_bytes()));
        for t in [self.due_before, self.due_after] {
            eat(&t.map_or(i64::MIN, Timestamp::unix_micros).to_be_bytes());
        }
        hash
    }

    /// The cursor that continues this query after `last`.
    #[must_use]
    pub fn cursor_after(&self, last: &Task) -> TaskCursor {
        TaskCursor {
            sort: self.sort,
            key: self.sort.key(last),
            id: last.id,
            fingerprint: self.fingerprint(),
        }
    }

    /// Whether `task` comes after the cursor's position in this query's order.
    #[must_use]
    pub fn is_after(&self, cursor: &TaskCursor, task: &Task) -> bool {
        let here = (self.sort.key(task), task.id);
        let there = (cursor.key, cursor.id);
        if self.sort.is_descending() {
            here < there
        } else {
            here > there
        }
    }
}

/// Where a page of tasks ends: the sort key and id of its last task.
/// Opaque to clients (URL-safe base64); it positions, it grants nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskCursor {
    /// The sort the page was listed in.
    pub sort: TaskSort,
    /// The last task's sort key ([`TaskSort::key`]).
    pub key: i64,
    /// The last task's id, which breaks ties.
    pub id: TaskId,
    /// A digest of the query's filters: a cursor of another query is refused.
    pub fingerprint: u32,
}

impl TaskCursor {
    const VERSION: u8 = 1;
    const LEN: usize = 1 + 1 + 8 + 16 + 4;

    /// Parses the opaque form that [`fmt::Display`] writes.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = ValidationError::Format {
            field: "cursor",
            what: "cursor",
        };
        let bytes = decode_exact::<{ Self::LEN }>(raw).ok_or_else(|| bad.clone())?;
        if bytes[0] != Self::VERSION {
            return Err(bad);
        }
        let sort = TaskSort::from_code(bytes[1]).ok_or_else(|| bad.clone())?;
        let key = i64::from_be_bytes(array(&bytes[2..10]));
        let id = TaskId::from_uuid(Uuid::from_bytes(array(&bytes[10..26])));
        let fingerprint = u32::from_be_bytes(array(&bytes[26..30]));
        Ok(Self {
            sort,
            key,
            id,
            fingerprint,
        })
    }

    /// Checks that the cursor belongs to `query`.
    pub fn check(&self, query: &TaskQuery) -> Result<(), ValidationError> {
        if self.sort == query.sort && self.fingerprint == query.fingerprint() {
            Ok(())
        } else {
            Err(ValidationError::Format {
                field: "cursor",
                what: "cursor for this query",
            })
        }
    }
}

impl fmt::Display for TaskCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; Self::LEN];
        bytes[0] = Self::VERSION;
        bytes[1] = self.sort.code();
        bytes[2..10].copy_from_slice(&self.key.to_be_bytes());
        bytes[10..26].copy_from_slice(self.id.as_uuid().as_bytes());
        bytes[26..30].copy_from_slice(&self.fingerprint.to_be_bytes());
        f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// A cursor that is the last item's id, written as its version byte and
/// the id's 16 bytes in URL-safe base64. The version byte differs by list,
/// so one list's cursor is refused by another.
macro_rules! id_cursor {
    ($(#[$doc:meta])* $name:ident($id:ty), $version:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub $id);

        impl $name {
            const VERSION: u8 = $version;

            /// Parses the opaque form that [`fmt::Display`] writes.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                let bad = ValidationError::Format {
                    field: "cursor",
                    what: "cursor",
                };
                let bytes = decode_exact::<17>(raw).ok_or_else(|| bad.clone())?;
                if bytes[0] != Self::VERSION {
                    return Err(bad);
                }
                Ok(Self(<$id>::from_uuid(Uuid::from_bytes(array(&bytes[1..17])))))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut bytes = [0u8; 17];
                bytes[0] = Self::VERSION;
                bytes[1..].copy_from_slice(self.0.as_uuid().as_bytes());
                f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
            }
        }
    };
}

id_cursor!(
    /// Where a page of users ends: the last user's id.
    UserCursor(UserId),
    1
);

id_cursor!(
    /// Where a page of projects ends: the last project's id.
    ProjectCursor(crate::project::ProjectId),
    2
);

/// About the most JSON one page of tasks or changes comes to: a page of
/// large tasks holds fewer than its limit, and its next cursor goes on
/// from the last it holds. (A hundred tasks of 10,000 characters each, the
/// longest description, come to 4 MB of text when the characters take
/// four bytes each; built whole, and a few dozen at once, they took an
/// instance past its container's memory: session 29's attack, F2.)
pub const PAGE_BYTES: usize = 2 * 1024 * 1024;

/// How many of `items` (at most `limit`) a page holds: those whose
/// `weight` (their JSON's length, about) adds up to [`PAGE_BYTES`], and
/// always the first. `at_most` is a bound of the weight that reads no
/// text (its length times an escape's six): a page that fits by it, as a
/// page of ordinary tasks does, is not weighed further.
pub(crate) fn fitting<T>(
    items: &[T],
    limit: usize,
    at_most: impl Fn(&T) -> usize,
    weight: impl Fn(&T) -> usize,
) -> usize {
    let bound = items
        .iter()
        .take(limit)
        .fold(0usize, |sum, item| sum.saturating_add(at_most(item)));
    if bound <= PAGE_BYTES {
        return limit.min(items.len());
    }
    let mut bytes = 0usize;
    items
        .iter()
        .take(limit)
        .position(|item| {
            bytes = bytes.saturating_add(weight(item));
            bytes > PAGE_BYTES
        })
        .map_or(limit.min(items.len()), |over| over.max(1))
}

/// The most `text` can take as a JSON string, by its length alone.
pub(crate) fn json_text_bytes_at_most(text: &str) -> usize {
    6 * text.len() + 2
}

/// About how long `text` is as a JSON string: what is escaped takes more
/// (a control character six bytes, over-counted for `"` and `\`).
pub(crate) fn json_text_bytes(text: &str) -> usize {
    let escaped = text
        .bytes()
        .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
        .count();
    text.len() + 2 + 5 * escaped
}

/// A page of a list, and the cursor of the next one if there is more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    /// The items of this page, in order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<C>,
}

pub(crate) fn decode_exact<const N: usize>(raw: &str) -> Option<[u8; N]> {
    // Base64 of N bytes without padding is exactly this long.
    if raw.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(raw, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

pub(crate) fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}
