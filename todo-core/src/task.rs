//! Tasks and the values they are made of.

use std::fmt;

use crate::error::ValidationError;
use crate::project::ProjectId;
use crate::recurrence::{Recurrence, TimeZoneName};
use crate::reminder::Reminders;
use crate::time::Timestamp;
use crate::user::{UserId, uuid_id};

uuid_id!(
    /// A task's id (UUIDv7).
    TaskId,
    "id"
);

fn char_count_within(raw: &str, max: usize) -> Option<usize> {
    // A char is at most four bytes: skip counting input that cannot fit.
    if raw.len() > max * 4 {
        return None;
    }
    let n = raw.chars().count();
    (n <= max).then_some(n)
}

/// A task title: 1 to 200 characters, not blank, no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Title(String);

impl Title {
    /// The longest title, in characters.
    pub const MAX_CHARS: usize = 200;
    /// The shortest title, in characters.
    pub const MIN_CHARS: usize = 1;

    /// Parses a title; refuses a blank one, a longer one, or control characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        check_name("title", raw, Self::MIN_CHARS, Self::MAX_CHARS)?;
        Ok(Self(raw.to_owned()))
    }

    /// The title as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rule of a one-line name (a task's title, a project's name): `min` to
/// `max` characters, not blank (nor only invisible characters), no control
/// characters. `field` is the API's name for it.
pub(crate) fn check_name(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    match char_count_within(raw, max) {
        Some(n) if n >= min => {}
        _ => return Err(ValidationError::Length { field, min, max }),
    }
    if raw.chars().all(|c| c.is_whitespace() || invisible(c)) {
        return Err(ValidationError::Blank { field });
    }
    if raw.chars().any(char::is_control) {
        return Err(ValidationError::Charset {
            field,
            allowed: "printable characters (no control characters)",
        });
    }
    Ok(())
}

/// Characters that show nothing by themselves and are not white space:
/// zero-width spaces and joiners, direction marks, the byte-order mark, the
/// soft hyphen, blank fillers. Allowed within a title (a joiner builds an
/// emoji), never as the whole of one: a title of them looks empty.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// A task description: up to 10,000 characters; line breaks and tabs are the
/// only control characters allowed.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    /// The longest description, in characters.
    pub const MAX_CHARS: usize = 10_000;

    /// Parses a description (may be empty).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "description";
        if char_count_within(raw, Self::MAX_CHARS).is_none() {
            return Err(ValidationError::Length {
                field: FIELD,
                min: 0,
                max: Self::MAX_CHARS,
            });
        }
        if !raw.chars().all(is_text_char) {
            return Err(ValidationError::Charset {
                field: FIELD,
                allowed: "printable characters, line breaks and tabs",
            });
        }
        Ok(Self(raw.to_owned()))
    }

    /// The description as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters allowed in free text: printable ones, line breaks and tabs.
pub(crate) fn is_text_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\n' | '\r' | '\t')
}

macro_rules! debug_as_str {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
debug_as_str!(Title, Description, Label);

/// A priority from 0 (the default) to 3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// The highest priority.
    pub const MAX: u8 = 3;
    /// The lowest priority.
    pub const MIN: u8 = 0;

    /// Parses a priority from [`Priority::MIN`] to [`Priority::MAX`].
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        u8::try_from(value)
            .ok()
            .filter(|v| (Self::MIN..=Self::MAX).contains(v))
            .map(Self)
            .ok_or(ValidationError::Range {
                field: "priority",
                min: i64::from(Self::MIN),
                max: i64::from(Self::MAX),
            })
    }

    /// The priority as a number.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A label: 1 to 32 characters, no control characters, no surrounding
/// spaces; as given, none invisible and no leading combining mark.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(String);

impl Label {
    /// The longest label, in characters.
    pub const MAX_CHARS: usize = 32;
    /// The shortest label, in characters.
    pub const MIN_CHARS: usize = 1;

    /// Parses a label as a client gives it: [`Label::parse_stored`]'s
    /// rules, and none of the characters that show nothing or reorder the
    /// text around them (zero-width spaces, bidirectional controls, the
    /// byte-order mark, fillers, noncharacters), nor a combining mark first, so
    /// that a label cannot look empty or like another (an editor of a
    /// shared project adding "work" with a zero-width space in it).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let label = Self::parse_stored(raw)?;
        // (nothing that joins to or modifies a character before it first;
        // a tag character only in a flag's tag sequence)
        let leading_mark = raw.chars().next().is_some_and(|c| {
            unicode_normalization::char::is_combining_mark(c)
                || matches!(c, '\u{200c}' | '\u{200d}' | '\u{fe00}'..='\u{fe0f}')
        });
        let stray_tag = raw.chars().any(|c| matches!(c, '\u{e0000}'..='\u{e007f}'))
            && !raw.contains('\u{1f3f4}');
        if leading_mark || stray_tag || raw.chars().any(is_invisible) {
            return Err(ValidationError::Charset {
                field: "labels",
                allowed: "visible characters, not starting with a combining mark",
            });
        }
        Ok(label)
    }

    /// Parses a label as stored: the rules labels were first written
    /// under (length, not blank, no control characters, no surrounding
    /// spaces), so that one written before [`Label::parse`] refused
    /// invisible characters still reads (and its task with it).
    pub fn parse_stored(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "labels";
        match char_count_within(raw, Self::MAX_CHARS) {
            Some(n) if n >= Self::MIN_CHARS => {}
            _ => {
                return Err(ValidationError::Length {
                    field: FIELD,
                    min: Self::MIN_CHARS,
                    max: Self::MAX_CHARS,
                });
            }
        }
        if raw.trim().is_empty() {
            return Err(ValidationError::Blank { field: FIELD });
        }
        if raw.trim() != raw || raw.chars().any(char::is_control) {
            return Err(ValidationError::Charset {
                field: FIELD,
                allowed: "printable characters without leading or trailing spaces",
            });
        }
        Ok(Self(raw.to_owned()))
    }

    /// The label as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` shows nothing, or changes the order or joining of what is
/// around it without showing: spaces other than the plain one, line and
/// paragraph separators, soft hyphen, zero-width space, word joiner and
/// invisible operators, the byte-order mark, bidirectional marks,
/// embeddings, overrides and isolates, other format characters (Arabic
/// and Syriac number signs, musical formatting), fillers and the braille
/// blank, interlinear annotation marks, and noncharacters. The zero-width
/// (non-)joiners stay inside a label: scripts and emoji sequences need
/// them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{a0}'
            | '\u{ad}'
            | '\u{34f}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{8e2}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{2800}'
            | '\u{3000}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fdd0}'..='\u{fdef}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
    ) || (u32::from(c) & 0xfffe) == 0xfffe
}

/// Up to 20 distinct labels, kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The most labels a task may have.
    pub const MAX_LABELS: usize = 20;

    /// Sorts the labels; refuses more than [`Labels::MAX_LABELS`] or a repeated one.
    pub fn new(mut labels: Vec<Label>) -> Result<Self, ValidationError> {
        if labels.len() > Self::MAX_LABELS {
            return Err(ValidationError::TooMany {
                field: "labels",
                max: Self::MAX_LABELS,
            });
        }
        labels.sort();
        if labels.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ValidationError::Duplicate { field: "labels" });
        }
        Ok(Self(labels))
    }

    /// Parses each string ([`Label::parse`]), then the set.
    pub fn parse<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<Self, ValidationError> {
        Self::parse_with(raw, Label::parse)
    }

    /// Parses each stored string ([`Label::parse_stored`]), then the set.
    pub fn parse_stored<'a>(
        raw: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ValidationError> {
        Self::parse_with(raw, Label::parse_stored)
    }

    fn parse_with<'a>(
        raw: impl IntoIterator<Item = &'a str>,
        parse: fn(&str) -> Result<Label, ValidationError>,
    ) -> Result<Self, ValidationError> {
        let mut labels = Vec::new();
        for item in raw {
            if labels.len() == Self::MAX_LABELS {
                return Err(ValidationError::TooMany {
                    field: "labels",
                    max: Self::MAX_LABELS,
                });
            }
            labels.push(parse(item)?);
        }
        Self::new(labels)
    }

    /// Whether `label` is one of them.
    #[must_use]
    pub fn contains(&self, label: &Label) -> bool {
        self.0.binary_search(label).is_ok()
    }

    /// The labels in sorted order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Label> {
        self.0.iter()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A task's version: 1 when created, one more on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskVersion(i64);

impl TaskVersion {
    /// The version of a task just created.
    pub const FIRST: Self = Self(1);

    /// Parses a version (an `If-Match` value): 1 or more.
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if value >= 1 {
            Ok(Self(value))
        } else {
            Err(ValidationError::Range {
                field: "version",
                min: 1,
                max: i64::MAX,
            })
        }
    }

    /// The version as a number.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The version after one more change.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for TaskVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A task as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task's id (a UUIDv7: ids sort by creation).
    pub id: TaskId,
    /// The project it is in (the creator's Inbox unless another was
    /// named): its members see it, its editors and owner change it.
    pub project: ProjectId,
    /// The user who created it.
    pub created_by: UserId,
    /// Its title.
    pub title: Title,
    /// Its description; may be empty.
    pub description: Description,
    /// Whether it is done.
    pub done: bool,
    /// Set by the server when `done` turns true, cleared when it turns false.
    pub completed_at: Option<Timestamp>,
    /// When it is due, if ever.
    pub due_at: Option<Timestamp>,
    /// Its priority, 0 to 3.
    pub priority: Priority,
    /// Its labels, sorted.
    pub labels: Labels,
    /// Archived tasks are left out of lists unless asked for.
    pub archived: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Its version, for `ETag` and `If-Match`.
    pub version: TaskVersion,
    /// The task it is a subtask of: one of the same project, at most
    /// [`Task::MAX_DEPTH`] levels from the top.
    pub parent: Option<TaskId>,
    /// How it repeats, if it does (it then has a due time).
    pub recurrence: Option<Recurrence>,
    /// The zone its recurrence is read in.
    pub time_zone: TimeZoneName,
    /// Its place in its series, while it repeats.
    pub series: Option<Series>,
    /// When to remind its project's members of it.
    pub reminders: Reminders,
}

/// A recurring task's place in its series: the series is its first
/// occurrence's due time and rule; the next occurrence of occurrence `n`
/// is the rule's `n + 1`st, and the pair (`id`, `occurrence`) names one
/// task, so that it is made once however often or wherever the `n`th is
/// completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    /// The series' id (a fresh one whenever the rule, the zone or the
    /// due time is changed by hand: a new series).
    pub id: SeriesId,
    /// Its first occurrence's due time.
    pub start: Timestamp,
    /// Which occurrence this task is (1: the first).
    pub occurrence: u32,
}

uuid_id!(
    /// A series of recurring tasks.
    SeriesId,
    "series_id"
);

/// Why a task cannot have the parent it names (400, naming `parent_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeRefusal {
    /// No such task in the same project.
    NoSuchParent,
    /// The parent is the task itself or one of its subtasks.
    Cycle,
    /// The task, or its deepest subtask, would be more than
    /// [`Task::MAX_DEPTH`] levels from the top.
    TooDeep,
}

impl From<TreeRefusal> for ValidationError {
    fn from(refusal: TreeRefusal) -> Self {
        Self::Format {
            field: "parent_id",
            what: match refusal {
                TreeRefusal::NoSuchParent => "task of the same project",
                TreeRefusal::Cycle => "task that is not this one nor one of its subtasks",
                TreeRefusal::TooDeep => "parent at most 3 levels deep with the task's subtasks",
            },
        }
    }
}

impl Task {
    /// What a task's JSON holds besides its text, at the longest: ids,
    /// times, flags, a rule and ten reminders.
    const JSON_REST: usize = 1536;

    /// About how long this task is as JSON on the wire (its text, escaped,
    /// and room for the rest): what a page of tasks is weighed by.
    #[must_use]
    pub fn json_bytes(&self) -> usize {
        self.json_weight(crate::query::json_text_bytes)
    }

    /// A bound of [`Task::json_bytes`] that reads no text (lengths only).
    #[must_use]
    pub fn json_bytes_at_most(&self) -> usize {
        self.json_weight(crate::query::json_text_bytes_at_most)
    }

    /// The task's weight, its text measured by `text`.
    fn json_weight(&self, text: fn(&str) -> usize) -> usize {
        let labels: usize = self.labels.iter().map(|l| text(l.as_str()) + 1).sum();
        Self::JSON_REST + text(self.title.as_str()) + text(self.description.as_str()) + labels
    }

    /// How many levels deep subtasks go: a task, its subtask, and theirs.
    pub const MAX_DEPTH: usize = 3;

    /// The text that `q` searches, folded to lower case: title and description
    /// apart, so that a match cannot span the two. Stores keep it beside the
    /// task so that every backend folds case alike (Unicode, not just ASCII).
    #[must_use]
    pub fn search_text(&self) -> String {
        search_text(&self.title, &self.description)
    }
}

/// The separator between title and description in [`Task::search_text`]: a
/// control character, which neither may contain.
pub const SEARCH_SEPARATOR: char = '\u{1f}';

/// The folded search text of a title and description ([`Task::search_text`]).
#[must_use]
pub fn search_text(title: &Title, description: &Description) -> String {
    let mut text = title.as_str().to_lowercase();
    text.push(SEARCH_SEPARATOR);
    text.push_str(&description.as_str().to_lowercase());
    text
}

/// The writable fields of a new task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The project to put it in; `None`: the creator's Inbox (or the
    /// parent's project, when a parent is named).
    pub project: Option<ProjectId>,
    /// The task it is a subtask of.
    pub parent: Option<TaskId>,
    /// How it repeats (it then needs a due time).
    pub recurrence: Option<Recurrence>,
    /// The zone its recurrence is read in (UTC if none).
    pub time_zone: Option<TimeZoneName>,
    /// Its reminders.
    pub reminders: Reminders,
    /// Its title.
    pub title: Title,
    /// Its description; may be empty.
    pub description: Description,
    /// Whether it starts done.
    pub done: bool,
    /// When it is due, if ever.
    pub due_at: Option<Timestamp>,
    /// Its priority.
    pub priority: Priority,
    /// Its labels.
    pub labels: Labels,
    /// Whether it starts archived.
    pub archived: bool,
}

impl NewTask {
    /// A task with only a title, every other field at its default.
    #[must_use]
    pub fn titled(title: Title) -> Self {
        Self {
            project: None,
            parent: None,
            recurrence: None,
            time_zone: None,
            reminders: Reminders::default(),
            title,
            description: Description::default(),
            done: false,
            due_at: None,
            priority: Priority::default(),
            labels: Labels::default(),
            archived: false,
        }
    }
}

/// A merge patch of a task's writable fields; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// A new title.
    pub title: Option<Title>,
    /// A new description.
    pub description: Option<Description>,
    /// Done or not; sets or clears `completed_at`.
    pub done: Option<bool>,
    /// `Some(None)` clears the due date.
    pub due_at: Option<Option<Timestamp>>,
    /// A new priority.
    pub priority: Option<Priority>,
    /// The new labels, replacing all of them.
    pub labels: Option<Labels>,
    /// Archive or restore.
    pub archived: Option<bool>,
    /// `Some(None)` makes it a top-level task.
    pub parent: Option<Option<TaskId>>,
    /// `Some(None)` stops it repeating.
    pub recurrence: Option<Option<Recurrence>>,
    /// A new zone.
    pub time_zone: Option<TimeZoneName>,
    /// The new reminders, replacing all of them.
    pub reminders: Option<Reminders>,
}

impl TaskPatch {
    /// Applies the patch at `now`; returns whether anything changed. Keeps
    /// `completed_at` in step with `done`; leaves `version` and `updated_at`
    /// to the caller.
    pub fn apply(self, task: &mut Task, now: Timestamp) -> bool {
        let before = task.clone();
        if let Some(title) = self.title {
            task.title = title;
        }
        if let Some(description) = self.description {
            task.description = description;
        }
        if let Some(done) = self.done {
            if done && !task.done {
                task.completed_at = Some(now);
            } else if !done {
                task.completed_at = None;
            }
            task.done = done;
        }
        if let Some(due_at) = self.due_at {
            task.due_at = due_at;
        }
        if let Some(priority) = self.priority {
            task.priority = priority;
        }
        if let Some(labels) = self.labels {
            task.labels = labels;
        }
        if let Some(archived) = self.archived {
            task.archived = archived;
        }
        if let Some(parent) = self.parent {
            task.parent = parent;
        }
        if let Some(recurrence) = self.recurrence {
            task.recurrence = recurrence;
        }
        if let Some(time_zone) = self.time_zone {
            task.time_zone = time_zone;
        }
        if let Some(reminders) = self.reminders {
            task.reminders = reminders;
        }
        *task != before
    }
}
