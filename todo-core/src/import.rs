//! Import: a file of projects and tasks (this product's JSON export, or an
//! iCalendar of VTODOs from anywhere) made the importer's, all or nothing.
//!
//! Importing the same file twice makes nothing new: each object's id is
//! derived from the importer and the object's identity in the file (its
//! id in an export, its UID in a calendar), so a second import finds what
//! the first made and leaves it as it is. A task's id stays a UUIDv7 of its
//! creation time (its 74 random bits are the derivation's), so ids still
//! sort by creation.

use std::collections::HashMap;
use std::fmt;

use crate::error::ValidationError;
use crate::ports::Sha256;
use crate::project::{Project, ProjectColor, ProjectId, ProjectName};
use crate::task::{Description, NewTask, Series, SeriesId, Task, TaskId, TaskVersion};
use crate::time::Timestamp;
use crate::user::UserId;

/// Tasks one import may hold: it is written in one transaction.
pub const MAX_IMPORT_TASKS: usize = 10_000;
/// Projects one import may hold.
pub const MAX_IMPORT_PROJECTS: usize = 100;
/// The longest identity (UID, id) an item may have, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// Where in the file an item or a fault is: a line (of a calendar, or of
/// JSON that does not parse), or an item of a JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A line, from 1.
    Line(usize),
    /// The `index`th item (from 0) of the array `array`.
    Item {
        /// `projects` or `tasks`.
        array: &'static str,
        /// Its index, from 0.
        index: usize,
    },
    /// The file as a whole.
    File,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, "line {line}"),
            Self::Item { array, index } => write!(f, "{array}[{index}]"),
            Self::File => f.write_str("the file"),
        }
    }
}

/// Why a file was not imported (and nothing of it was): where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {what}")]
pub struct ImportError {
    /// Where the fault is.
    pub place: Place,
    /// What it is, naming the property or field.
    pub what: String,
}

impl ImportError {
    /// The longest description a fault keeps: it may quote the file, and
    /// goes back in the answer.
    pub const MAX_WHAT_CHARS: usize = 300;

    /// A fault at `place`, its description written out up to
    /// [`Self::MAX_WHAT_CHARS`] and no further: a description that quotes
    /// the file (a parser's, escaped) is never held whole.
    pub fn at(place: Place, what: impl fmt::Display) -> Self {
        let mut bounded = Bounded {
            text: String::new(),
            chars: 0,
        };
        // (`Bounded` refuses what is past its end: an error here is the
        // description cut, not a fault)
        let cut = fmt::write(&mut bounded, format_args!("{what}")).is_err();
        let mut what = bounded.text;
        if cut {
            what.push('…');
        }
        Self { place, what }
    }

    /// A value refused by its domain type, at `place`.
    #[must_use]
    pub fn invalid(place: Place, error: &ValidationError) -> Self {
        Self::at(place, format!("{}: {error}", error.field()))
    }
}

/// A string that takes the first [`ImportError::MAX_WHAT_CHARS`] characters
/// written to it, then refuses the rest.
struct Bounded {
    text: String,
    chars: usize,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        for c in piece.chars() {
            if self.chars == ImportError::MAX_WHAT_CHARS {
                return Err(fmt::Error);
            }
            self.text.push(c);
            self.chars += 1;
        }
        Ok(())
    }
}

/// A file read, before it is made anyone's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportFile {
    /// Its projects (an export's; a calendar has none).
    pub projects: Vec<ImportedProject>,
    /// Its tasks.
    pub tasks: Vec<ImportedTask>,
}

/// A project as the file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedProject {
    /// Where it is in the file.
    pub place: Place,
    /// Its identity in the file.
    pub key: String,
    /// The exporter's Inbox: its tasks go to the importer's.
    pub inbox: bool,
    /// Its name.
    pub name: ProjectName,
    /// Its description.
    pub description: Description,
    /// Its colour.
    pub color: Option<ProjectColor>,
    /// Whether it is archived.
    pub archived: bool,
    /// When it was made, if the file says.
    pub created_at: Option<Timestamp>,
}

/// A task as the file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTask {
    /// Where it is in the file.
    pub place: Place,
    /// Its identity in the file (an export's id, a calendar's UID).
    pub key: String,
    /// The identity of its project in the file; `None`: the Inbox.
    pub project_key: Option<String>,
    /// The identity of its parent in the file.
    pub parent_key: Option<String>,
    /// Its fields (`project` and `parent` unused: the keys say).
    pub fields: NewTask,
    /// When it was done, if it is and the file says.
    pub completed_at: Option<Timestamp>,
    /// When it was made, if the file says.
    pub created_at: Option<Timestamp>,
}

/// What an import made, and what it found made before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Projects made.
    pub projects_created: u64,
    /// Tasks made.
    pub tasks_created: u64,
    /// Projects and tasks already there (from an import before).
    pub unchanged: u64,
}

/// What a store's import came to (all of it written, or nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Written: what was made, what was found made before.
    Imported(ImportCounts),
    /// The owner would keep more than they may: `what` names which.
    AtQuota {
        /// "tasks" or "projects".
        what: &'static str,
    },
    /// The plan's `index`th task cannot have its parent (one made by an
    /// import before, since moved or deleted, or deleted and not made
    /// again): nothing was written.
    BadParent {
        /// Its index in [`ImportPlan::tasks`].
        index: usize,
        /// Why.
        refusal: crate::task::TreeRefusal,
    },
    /// The plan's `index`th task is in a project that is there but is not
    /// the importer's own: nothing was written.
    NotOwned {
        /// Its index in [`ImportPlan::tasks`].
        index: usize,
    },
    /// The plan's `index`th task is in a project of the importer's that
    /// others are members of (one an import made before, shared since):
    /// nothing was written. An import writes only where its importer is
    /// alone, so that its thousands of tasks are copied to no one else's
    /// change stream.
    Shared {
        /// Its index in [`ImportPlan::tasks`].
        index: usize,
    },
}

/// The objects an import would make, in an order that can be written:
/// projects first, and each task after its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    /// The projects to make (not the Inbox).
    pub projects: Vec<Project>,
    /// The tasks to make, each with its place in the file.
    pub tasks: Vec<(Place, Task)>,
}

/// The id an import derives for the object `key` of `kind` in `owner`'s
/// import: 74 bits of SHA-256 over all three, after the time `at`.
fn derived_id(
    sha: &dyn Sha256,
    kind: &str,
    owner: UserId,
    key: &str,
    at: Option<Timestamp>,
) -> uuid::Uuid {
    let digest = sha.digest(&[
        b"todo import\0",
        kind.as_bytes(),
        &[0],
        owner.as_uuid().as_bytes(),
        key.as_bytes(),
    ]);
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = at.map_or(0, |at| u64::try_from(at.unix_micros() / 1_000).unwrap_or(0));
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// Checks `file` and makes it `owner`'s, as of `now`: the projects and
/// tasks to write, with their derived ids. Every key once; every task's
/// project in the file (or the Inbox) and its parent a task of the file
/// in the same project, at most [`Task::MAX_DEPTH`] deep; a recurring
/// task due; a reminder before the due time only on a task with one.
pub fn plan(
    owner: UserId,
    file: ImportFile,
    now: Timestamp,
    sha: &dyn Sha256,
) -> Result<ImportPlan, ImportError> {
    if file.projects.len() > MAX_IMPORT_PROJECTS {
        return Err(ImportError::at(
            Place::File,
            format!("projects: at most {MAX_IMPORT_PROJECTS} in one import"),
        ));
    }
    if file.tasks.len() > MAX_IMPORT_TASKS {
        return Err(ImportError::at(
            Place::File,
            format!("tasks: at most {MAX_IMPORT_TASKS} in one import"),
        ));
    }
    let inbox = ProjectId::inbox_of(owner);
    let mut project_ids: HashMap<&str, ProjectId> = HashMap::new();
    let mut projects = Vec::new();
    for p in &file.projects {
        check_key(p.place, "id", &p.key)?;
        let id = if p.inbox {
            inbox
        } else {
            ProjectId::from_uuid(derived_id(sha, "project", owner, &p.key, p.created_at))
        };
        if project_ids.insert(&p.key, id).is_some() {
            return Err(ImportError::at(
                p.place,
                "id: a second project with this id",
            ));
        }
        if p.inbox {
            continue;
        }
        projects.push(Project {
            id,
            owner,
            name: p.name.clone(),
            description: p.description.clone(),
            color: p.color,
            inbox: false,
            archived: p.archived,
            // (made now: its making is recorded now, in the change log,
            // where an old time would put it behind retention's cut)
            created_at: now,
            updated_at: now,
            version: TaskVersion::FIRST,
        });
    }
    // Every task's id and project first: a parent may come after its child.
    let mut by_key: HashMap<&str, usize> = HashMap::with_capacity(file.tasks.len());
    let mut ids = Vec::with_capacity(file.tasks.len());
    for (n, t) in file.tasks.iter().enumerate() {
        check_key(t.place, "id", &t.key)?;
        if by_key.insert(&t.key, n).is_some() {
            return Err(ImportError::at(t.place, "id: a second task with this id"));
        }
        let project = match &t.project_key {
            None => inbox,
            Some(key) => *project_ids.get(key.as_str()).ok_or_else(|| {
                ImportError::at(t.place, "project_id: not a project of this file")
            })?,
        };
        let id = TaskId::from_uuid(derived_id(sha, "task", owner, &t.key, t.created_at));
        ids.push((id, project));
    }
    // Each task's parent and depth (the parent's chain walked, at most
    // MAX_DEPTH steps: a longer one is too deep or a cycle).
    let mut parents: Vec<Option<usize>> = Vec::with_capacity(file.tasks.len());
    for t in &file.tasks {
        let parent = match &t.parent_key {
            None => None,
            Some(key) => {
                let &n = by_key.get(key.as_str()).ok_or_else(|| {
                    ImportError::at(t.place, "parent_id: not a task of this file")
                })?;
                Some(n)
            }
        };
        parents.push(parent);
    }
    let mut depths = Vec::with_capacity(file.tasks.len());
    for (n, t) in file.tasks.iter().enumerate() {
        let mut depth = 0;
        let mut at = n;
        while let Some(parent) = parents[at] {
            if ids[parent].1 != ids[at].1 {
                return Err(ImportError::at(
                    file.tasks[at].place,
                    "parent_id: a task of another project",
                ));
            }
            depth += 1;
            if depth >= Task::MAX_DEPTH {
                return Err(ImportError::at(
                    t.place,
                    format!(
                        "parent_id: more than {} levels deep, or a cycle",
                        Task::MAX_DEPTH
                    ),
                ));
            }
            at = parent;
        }
        depths.push(depth);
    }
    let mut tasks = Vec::with_capacity(file.tasks.len());
    for (n, t) in file.tasks.into_iter().enumerate() {
        let (id, project) = ids[n];
        let parent = parents[n].map(|p| ids[p].0);
        tasks.push((
            depths[n],
            (t.place, make_task(sha, owner, id, project, parent, t, now)?),
        ));
    }
    // Parents before children (stable: the file's order otherwise).
    tasks.sort_by_key(|(depth, _)| *depth);
    Ok(ImportPlan {
        projects,
        tasks: tasks.into_iter().map(|(_, task)| task).collect(),
    })
}

fn check_key(place: Place, field: &str, key: &str) -> Result<(), ImportError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ImportError::at(
            place,
            format!("{field}: 1 to {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn make_task(
    sha: &dyn Sha256,
    owner: UserId,
    id: TaskId,
    project: ProjectId,
    parent: Option<TaskId>,
    t: ImportedTask,
    now: Timestamp,
) -> Result<Task, ImportError> {
    let fields = t.fields;
    let created_at = t.created_at.unwrap_or(now);
    if fields
        .reminders
        .iter()
        .any(|r| matches!(r, crate::reminder::Reminder::BeforeDue(_)))
        && fields.due_at.is_none()
    {
        return Err(ImportError::at(
            t.place,
            "reminders: a reminder before the due time of a task with none",
        ));
    }
    let series = match (&fields.recurrence, fields.due_at) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ImportError::at(
                t.place,
                "recurrence: a rule on a task with no due time",
            ));
        }
        (Some(_), Some(due)) => Some(Series {
            id: SeriesId::from_uuid(derived_id(sha, "series", owner, &t.key, t.created_at)),
            start: due,
            occurrence: 1,
        }),
    };
    Ok(Task {
        id,
        project,
        created_by: owner,
        title: fields.title,
        description: fields.description,
        done: fields.done,
        completed_at: fields.done.then(|| t.completed_at.unwrap_or(now).min(now)),
        due_at: fields.due_at,
        priority: fields.priority,
        labels: fields.labels,
        archived: fields.archived,
        created_at: created_at.min(now),
        updated_at: now,
        version: TaskVersion::FIRST,
        parent,
        recurrence: fields.recurrence,
        time_zone: fields
            .time_zone
            .unwrap_or_else(crate::recurrence::TimeZoneName::utc),
        series,
        reminders: fields.reminders,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::task::Title;
    use crate::testing::FakeSha256;

    fn owner(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2027-03-01T12:00:00Z", "now").unwrap()
    }

    fn task(line: usize, key: &str, parent: Option<&str>) -> ImportedTask {
        ImportedTask {
            place: Place::Line(line),
            key: key.to_owned(),
            project_key: None,
            parent_key: parent.map(str::to_owned),
            fields: NewTask::titled(Title::parse(key).unwrap()),
            completed_at: None,
            created_at: None,
        }
    }

    fn file(tasks: Vec<ImportedTask>) -> ImportFile {
        ImportFile {
            projects: Vec::new(),
            tasks,
        }
    }

    #[test]
    fn the_same_file_gives_the_same_ids_and_another_owner_others() {
        let make = |o| plan(owner(o), file(vec![task(1, "a", None)]), now(), &FakeSha256).unwrap();
        assert_eq!(make(1).tasks[0].1.id, make(1).tasks[0].1.id);
        assert_ne!(make(1).tasks[0].1.id, make(2).tasks[0].1.id);
        assert_eq!(make(1).tasks[0].1.id.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn parents_come_first_and_their_ids_are_the_childrens_parents() {
        let planned = plan(
            owner(1),
            file(vec![
                task(1, "grandchild", Some("child")),
                task(2, "child", Some("top")),
                task(3, "top", None),
            ]),
            now(),
            &FakeSha256,
        )
        .unwrap();
        let titles: Vec<&str> = planned
            .tasks
            .iter()
            .map(|(_, t)| t.title.as_str())
            .collect();
        assert_eq!(titles, ["top", "child", "grandchild"]);
        assert_eq!(planned.tasks[1].1.parent, Some(planned.tasks[0].1.id));
        assert_eq!(planned.tasks[2].1.parent, Some(planned.tasks[1].1.id));
    }

    #[test]
    fn a_cycle_a_fourth_level_an_unknown_parent_or_a_repeated_key_is_named() {
        let cases = [
            (
                vec![task(1, "a", Some("b")), task(2, "b", Some("a"))],
                1,
                "cycle",
            ),
            (
                vec![
                    task(1, "a", None),
                    task(2, "b", Some("a")),
                    task(3, "c", Some("b")),
                    task(4, "d", Some("c")),
                ],
                4,
                "levels deep",
            ),
            (vec![task(7, "a", Some("zz"))], 7, "not a task of this file"),
            (
                vec![task(1, "a", None), task(9, "a", None)],
                9,
                "a second task",
            ),
        ];
        for (tasks, line, words) in cases {
            let error = plan(owner(1), file(tasks), now(), &FakeSha256).unwrap_err();
            assert_eq!(error.place, Place::Line(line), "{error}");
            assert!(error.what.contains(words), "{error}");
        }
    }

    #[test]
    fn a_rule_without_a_due_time_is_refused_at_its_line() {
        let mut repeating = task(5, "a", None);
        repeating.fields.recurrence = Some(crate::Recurrence::parse("FREQ=DAILY").unwrap());
        let error = plan(owner(1), file(vec![repeating]), now(), &FakeSha256).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 5: recurrence: a rule on a task with no due time"
        );
    }
}
