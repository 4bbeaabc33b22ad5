//! Tasks and the values they are made of.

use std::fmt;

use crate::error::ValidationError;
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
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "title";
        match char_count_within(raw, Self::MAX_CHARS) {
            Some(n) if n >= 1 => {}
            _ => {
                return Err(ValidationError::Length {
                    field: FIELD,
                    min: 1,
                    max: Self::MAX_CHARS,
                });
            }
        }
        if raw.trim().is_empty() {
            return Err(ValidationError::Blank { field: FIELD });
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::Charset {
                field: FIELD,
                allowed: "printable characters (no control characters)",
            });
        }
        Ok(Self(raw.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A task description: up to 10,000 characters; line breaks and tabs are the
/// only control characters allowed.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 10_000;

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
    pub const MAX: u8 = 3;

    pub fn new(value: i64) -> Result<Self, ValidationError> {
        u8::try_from(value)
            .ok()
            .filter(|v| *v <= Self::MAX)
            .map(Self)
            .ok_or(ValidationError::Range {
                field: "priority",
                min: 0,
                max: i64::from(Self::MAX),
            })
    }

    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A label: 1 to 32 characters, no control characters, no surrounding spaces.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(String);

impl Label {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "labels";
        match char_count_within(raw, Self::MAX_CHARS) {
            Some(n) if n >= 1 => {}
            _ => {
                return Err(ValidationError::Length {
                    field: FIELD,
                    min: 1,
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

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Up to 20 distinct labels, kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub const MAX_LABELS: usize = 20;

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

    /// Parses each string, then the set.
    pub fn parse<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<Self, ValidationError> {
        let mut labels = Vec::new();
        for item in raw {
            if labels.len() == Self::MAX_LABELS {
                return Err(ValidationError::TooMany {
                    field: "labels",
                    max: Self::MAX_LABELS,
                });
            }
            labels.push(Label::parse(item)?);
        }
        Self::new(labels)
    }

    #[must_use]
    pub fn contains(&self, label: &Label) -> bool {
        self.0.binary_search(label).is_ok()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Label> {
        self.0.iter()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A task's version: 1 when created, one more on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskVersion(i64);

impl TaskVersion {
    pub const FIRST: Self = Self(1);

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

    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

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
    pub id: TaskId,
    pub owner: UserId,
    pub title: Title,
    pub description: Description,
    pub done: bool,
    /// Set by the server when `done` turns true, cleared when it turns false.
    pub completed_at: Option<Timestamp>,
    pub due_at: Option<Timestamp>,
    pub priority: Priority,
    pub labels: Labels,
    pub archived: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: TaskVersion,
}

impl Task {
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
    pub title: Title,
    pub description: Description,
    pub done: bool,
    pub due_at: Option<Timestamp>,
    pub priority: Priority,
    pub labels: Labels,
    pub archived: bool,
}

impl NewTask {
    /// A task with only a title, every other field at its default.
    #[must_use]
    pub fn titled(title: Title) -> Self {
        Self {
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
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub done: Option<bool>,
    /// `Some(None)` clears the due date.
    pub due_at: Option<Option<Timestamp>>,
    pub priority: Option<Priority>,
    pub labels: Option<Labels>,
    pub archived: Option<bool>,
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
        *task != before
    }
}
