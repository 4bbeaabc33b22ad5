//! `POST /v1/import`: a file made the caller's, all or nothing. This
//! product's JSON export (`application/json`, `todo.export/1`: its
//! projects become the caller's, its Inbox's tasks go to theirs) or any
//! iCalendar (`text/calendar`: its VTODOs go to the caller's Inbox).
//! Importing the same file again makes nothing new. A file refused names
//! its fault's line (iCalendar; JSON that does not parse) or item
//! (`tasks[12]`), and nothing of it is written.

use std::sync::Arc;

use axum::extract::{Request, State};
use http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use todo_core::import::{ImportError, ImportFile, ImportedProject, ImportedTask, Place};
use todo_core::{
    Description, Labels, NewTask, Priority, ProjectColor, ProjectId, ProjectName, Recurrence,
    Reminders, TimeZoneName, Timestamp, Title, ValidationError,
};
use utoipa::ToSchema;

use crate::admission::BodyBudget;
use crate::blocking::call;
use crate::export::OneAUser;
use crate::extract::{Caller, LargeBody, read_body};
use crate::front::{ApiResponse, json_value};
use crate::problem::ApiError;
use crate::task_api::{ReminderBody, TaskApi};

/// The largest file an import takes (about 10,000 tasks of an export).
pub(crate) const MAX_IMPORT_BYTES: usize = 8 * 1024 * 1024;
/// Imports an instance parses and writes at once (each holds its file in
/// memory, and a pooled connection for its length; with the write slot
/// its user keeps, a quarter of an 8-connection pool at most).
pub(crate) const MAX_IMPORTS: usize = 2;
/// The bytes of import files an instance holds at once, uploading or
/// imported: a budget of their own, so that files being sent (slowly, it
/// may be) never spend the one every other request's body is paid from
/// (one client address holds a quarter of it at most: one file).
pub(crate) const IMPORT_BUDGET_BYTES: usize = 4 * MAX_IMPORT_BYTES;
/// The format an export names.
const EXPORT_FORMAT: &str = "todo.export/1";
/// The media types taken (`read_body` answers the index of the one sent).
const MEDIA_TYPES: [&str; 2] = ["application/json", "text/calendar"];
const JSON: usize = 0;

/// The imports running now (one a user, [`MAX_IMPORTS`] in all), and the
/// budget their files are held in.
#[derive(Debug)]
pub(crate) struct Imports {
    running: OneAUser,
    body: LargeBody,
}

impl Default for Imports {
    fn default() -> Self {
        Self {
            running: OneAUser::new(MAX_IMPORTS),
            body: LargeBody {
                limit: MAX_IMPORT_BYTES,
                budget: BodyBudget::new(IMPORT_BUDGET_BYTES, MAX_IMPORT_BYTES),
            },
        }
    }
}

/// What an import made.
#[derive(Serialize, ToSchema)]
#[schema(as = ImportResult)]
struct ImportDto {
    /// Projects made.
    projects_created: u64,
    /// Tasks made.
    tasks_created: u64,
    /// Projects and tasks an import of the same file made before, left as
    /// they are.
    unchanged: u64,
}

/// Import a file: an export of this product (JSON) or an iCalendar.
#[utoipa::path(post, path = "/v1/import",
    request_body(description = "`application/json`: an export (`{format: \"todo.export/1\", projects, tasks}`, as `GET /v1/export` writes it); `text/calendar`: VTODOs (UID and SUMMARY each; DUE, STATUS, COMPLETED, PRIORITY, CATEGORIES, RRULE within the supported subset, RELATED-TO, CREATED read). At most 8 MiB, 10,000 tasks, 100 projects.",
        content((String = "application/json"), (String = "text/calendar"))),
    responses(
        (status = 200, description = "Imported, all of it: what was made, and what an import of the same file made before", body = ImportDto),
        (status = 400, description = "Refused, nothing written: `errors[0].message` names the line (`line 12: DUE: …`) or the item (`tasks[3]: title: …`)"),
        (status = 403, description = "The caller's task or project quota would be passed (urn:todo:problem:quota-exceeded); nothing written"),
        (status = 413, description = "Larger than 8 MiB"),
        (status = 415, description = "Neither application/json nor text/calendar"),
        (status = 429, description = "An import of the caller's is running, the instance runs as many as it takes at once, or the caller's write allowance is spent (an import costs one write and one more a hundred objects) (Retry-After)"),
        (status = 503, description = "The instance holds as many import files as it takes at once (Retry-After)"),
    ))]
pub(crate) async fn import(
    State(api): State<Arc<TaskApi>>,
    Caller(caller): Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let owner = caller.user_id;
    let (bytes, kind, held) = read_body(request, &MEDIA_TYPES, Some(&api.imports().body)).await?;
    // The place is taken once the file is here (a slow upload holds only
    // its bytes), and given back when the work ends, not when the client
    // leaves: the work runs on to its end either way.
    let ticket = api.imports().running.enter(owner)?;
    let slot = api.write_slot(owner).await?;
    let max_projects = api
        .projects()
        .and_then(|projects| projects.limits().max_projects_per_user);
    let projects = api.projects().cloned();
    // Parsing a large file and writing it are both off the async workers.
    let counts = call(api.service(), move |service| {
        let _held = (ticket, slot, held);
        let file = if kind == JSON {
            read_export(&bytes)?
        } else {
            read_calendar_bytes(&bytes)?
        };
        // (an account made before Inboxes gets its Inbox first)
        if let Some(projects) = &projects {
            projects.get(owner, ProjectId::inbox_of(owner))?;
        }
        service.import(owner, file, max_projects)
    })
    .await?;
    json_value(
        StatusCode::OK,
        &ImportDto {
            projects_created: counts.projects_created,
            tasks_created: counts.tasks_created,
            unchanged: counts.unchanged,
        },
    )
}

/// An iCalendar's bytes: UTF-8 (a fault names its line), then its VTODOs.
fn read_calendar_bytes(bytes: &[u8]) -> Result<ImportFile, ImportError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        ImportError::at(Place::Line(line), "not UTF-8")
    })?;
    todo_core::ical::read_calendar(text)
}

/// An export as `GET /v1/export` writes it (a field it does not write is
/// refused, as in every body of the API). Its items are kept as the body's
/// own text, each read when its turn comes: a fault names the item, and a
/// large file is not held twice as a tree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportFile<'a> {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    exported_at: Option<IgnoredAny>,
    #[serde(default, borrow)]
    projects: AtMost<&'a RawValue, ProjectsLimit>,
    #[serde(default, borrow)]
    tasks: AtMost<&'a RawValue, TasksLimit>,
}

/// A JSON array refused at its first item past [`Limit::MAX`] (passed
/// over, not read): no array of a file is held longer than the domain lets
/// it be, however many items the file lists (an 8 MiB file of empty
/// reminders is 2.7 million of them).
struct AtMost<T, L>(Vec<T>, std::marker::PhantomData<L>);

impl<T, L> Default for AtMost<T, L> {
    fn default() -> Self {
        Self(Vec::new(), std::marker::PhantomData)
    }
}

/// How long an array of the file may be, and its name in a fault.
trait Limit {
    /// The field, as the file names it.
    const FIELD: &'static str;
    /// The most items it may hold.
    const MAX: usize;
    /// Of what ("in one import", "a task").
    const PER: &'static str;
}

macro_rules! limit {
    ($name:ident, $field:literal, $max:expr, $per:literal) => {
        struct $name;
        impl Limit for $name {
            const FIELD: &'static str = $field;
            const MAX: usize = $max;
            const PER: &'static str = $per;
        }
    };
}

limit!(
    ProjectsLimit,
    "projects",
    todo_core::import::MAX_IMPORT_PROJECTS,
    "in one import"
);
limit!(
    TasksLimit,
    "tasks",
    todo_core::import::MAX_IMPORT_TASKS,
    "in one import"
);
limit!(LabelsLimit, "labels", Labels::MAX_LABELS, "a task");
limit!(RemindersLimit, "reminders", Reminders::MAX, "a task");

impl<'de, T: Deserialize<'de>, L: Limit> Deserialize<'de> for AtMost<T, L> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T, L>(std::marker::PhantomData<(T, L)>);
        impl<'de, T: Deserialize<'de>, L: Limit> serde::de::Visitor<'de> for Visit<T, L> {
            type Value = AtMost<T, L>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an array of at most {} {}", L::MAX, L::FIELD)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                loop {
                    // (one past the limit is passed over, not read: its
                    // being there is the fault)
                    if items.len() >= L::MAX {
                        if seq.next_element::<IgnoredAny>()?.is_some() {
                            return Err(serde::de::Error::custom(format_args!(
                                "{field}: at most {max} {field} {per}",
                                field = L::FIELD,
                                max = L::MAX,
                                per = L::PER
                            )));
                        }
                        break;
                    }
                    match seq.next_element::<T>()? {
                        Some(item) => items.push(item),
                        None => break,
                    }
                }
                Ok(AtMost(items, std::marker::PhantomData))
            }
        }
        deserializer.deserialize_seq(Visit::<T, L>(std::marker::PhantomData))
    }
}

/// A project of an export.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedProject {
    id: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    inbox: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    created_at: Option<String>,
    // (written by the export, not read: the importer owns what it makes,
    // and it is made anew)
    #[serde(default)]
    #[allow(dead_code)]
    role: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<IgnoredAny>,
}

/// A task of an export.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedTask {
    id: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    parent_id: Option<String>,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    completed_at: Option<String>,
    #[serde(default)]
    due_at: Option<String>,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    labels: AtMost<String, LabelsLimit>,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    recurrence: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    reminders: AtMost<ReminderBody, RemindersLimit>,
    #[serde(default)]
    created_at: Option<String>,
    // (written by the export, not read: the task is made anew, by the
    // importer)
    #[serde(default)]
    #[allow(dead_code)]
    created_by: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    next_occurrence_id: Option<IgnoredAny>,
}

/// The longest string an export may hold, in bytes as written between its
/// quotes: the longest value, a description of 10,000 characters, is
/// 120,000 bytes at most even with every character escaped (a character
/// past the basic plane as a surrogate pair, `\ud834\udd1e`, as Python's
/// `json.dump` writes it).
const MAX_STRING_BYTES: usize = 128 * 1024;

/// Refuses a file with a string longer than [`MAX_STRING_BYTES`] before it
/// is parsed: a parser's fault quotes the string it refuses, escaped (a
/// DEL six bytes for one), and one string of a whole file made a fault
/// of 48 MiB (session 30's review, M1). No allocation: one pass over the
/// bytes.
fn check_string_lengths(bytes: &[u8]) -> Result<(), ImportError> {
    let mut line = 1;
    let mut string_start = None;
    let mut escaped = false;
    for (i, byte) in bytes.iter().enumerate() {
        match (string_start, byte) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), b'\\') => escaped = true,
            // (`start` is the opening quote: the string is what follows)
            (Some(start), b'"') => {
                if i - start - 1 > MAX_STRING_BYTES {
                    break;
                }
                string_start = None;
            }
            (Some(start), _) if i - start > MAX_STRING_BYTES => break,
            (Some(_), _) => {}
            (None, b'"') => string_start = Some(i),
            (None, b'\n') => line += 1,
            (None, _) => {}
        }
    }
    match string_start {
        Some(start) if bytes.len() - start - 1 > MAX_STRING_BYTES => Err(ImportError::at(
            Place::Line(line),
            format_args!("a string longer than {} KiB", MAX_STRING_BYTES / 1024),
        )),
        _ => Ok(()),
    }
}

/// An export's JSON: a fault that keeps it from parsing names its line; one
/// of an item names the item.
fn read_export(bytes: &[u8]) -> Result<ImportFile, ImportError> {
    check_string_lengths(bytes)?;
    let file: ExportFile<'_> = serde_json::from_slice(bytes).map_err(|e| {
        ImportError::at(
            Place::Line(e.line().max(1)),
            format_args!("not an export (column {}): {e}", e.column()),
        )
    })?;
    if file.format != EXPORT_FORMAT {
        return Err(ImportError::at(
            Place::File,
            format!("format: {EXPORT_FORMAT} is the format this reads"),
        ));
    }
    let mut out = ImportFile::default();
    // Each project's key is its id in the file; a task names its project
    // by that id.
    for (index, value) in file.projects.0.into_iter().enumerate() {
        let place = Place::Item {
            array: "projects",
            index,
        };
        out.projects.push(project(place, value)?);
    }
    let inboxes: Vec<String> = out
        .projects
        .iter()
        .filter(|p| p.inbox)
        .map(|p| p.key.clone())
        .collect();
    for (index, value) in file.tasks.0.into_iter().enumerate() {
        let place = Place::Item {
            array: "tasks",
            index,
        };
        let mut task = task(place, value)?;
        // The exporter's Inbox is the importer's: no key, no project.
        if task
            .project_key
            .as_ref()
            .is_some_and(|key| inboxes.contains(key))
        {
            task.project_key = None;
        }
        out.tasks.push(task);
    }
    Ok(out)
}

fn project(place: Place, value: &RawValue) -> Result<ImportedProject, ImportError> {
    let p: ExportedProject =
        serde_json::from_str(value.get()).map_err(|e| ImportError::at(place, e))?;
    let invalid = |e: ValidationError| ImportError::invalid(place, &e);
    Ok(ImportedProject {
        place,
        key: p.id,
        inbox: p.inbox,
        name: if p.inbox {
            ProjectName::parse(ProjectName::INBOX).map_err(invalid)?
        } else {
            ProjectName::parse(&p.name).map_err(invalid)?
        },
        description: Description::parse(&p.description).map_err(invalid)?,
        color: p
            .color
            .as_deref()
            .map(ProjectColor::parse)
            .transpose()
            .map_err(invalid)?,
        archived: p.archived,
        created_at: timestamp(place, p.created_at.as_deref(), "created_at")?,
    })
}

fn task(place: Place, value: &RawValue) -> Result<ImportedTask, ImportError> {
    let t: ExportedTask =
        serde_json::from_str(value.get()).map_err(|e| ImportError::at(place, e))?;
    let invalid = |e: ValidationError| ImportError::invalid(place, &e);
    let fields = NewTask {
        project: None,
        parent: None,
        recurrence: t
            .recurrence
            .as_deref()
            .map(Recurrence::parse)
            .transpose()
            .map_err(invalid)?,
        time_zone: t
            .time_zone
            .as_deref()
            .map(TimeZoneName::parse)
            .transpose()
            .map_err(invalid)?,
        reminders: crate::task_api::reminders(t.reminders.0).map_err(invalid)?,
        title: Title::parse(&t.title).map_err(invalid)?,
        description: Description::parse(&t.description).map_err(invalid)?,
        done: t.done,
        due_at: timestamp(place, t.due_at.as_deref(), "due_at")?,
        priority: Priority::new(t.priority).map_err(invalid)?,
        labels: Labels::parse(t.labels.0.iter().map(String::as_str)).map_err(invalid)?,
        archived: t.archived,
    };
    Ok(ImportedTask {
        place,
        key: t.id,
        project_key: t.project_id,
        parent_key: t.parent_id,
        fields,
        completed_at: timestamp(place, t.completed_at.as_deref(), "completed_at")?,
        created_at: timestamp(place, t.created_at.as_deref(), "created_at")?,
    })
}

fn timestamp(
    place: Place,
    raw: Option<&str>,
    field: &'static str,
) -> Result<Option<Timestamp>, ImportError> {
    raw.map(|raw| Timestamp::parse_rfc3339(raw, field))
        .transpose()
        .map_err(|e| ImportError::invalid(place, &e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_exports_inbox_is_the_importers_and_a_bad_item_is_named() {
        let file = read_export(
            br##"{"format":"todo.export/1","projects":[
                {"id":"inbox-1","name":"Inbox","inbox":true,"role":"owner"},
                {"id":"p2","name":"Garden","color":"#00aa00"}],
              "tasks":[
                {"id":"t1","project_id":"inbox-1","title":"a","version":3},
                {"id":"t2","project_id":"p2","parent_id":"t1","title":"b","labels":["x"]}]}"##,
        )
        .unwrap();
        assert_eq!(file.projects.len(), 2);
        assert_eq!(file.tasks[0].project_key, None, "the Inbox's task");
        assert_eq!(file.tasks[1].project_key.as_deref(), Some("p2"));
        let bad = read_export(
            br#"{"format":"todo.export/1","tasks":[{"id":"a","title":"ok"},{"id":"b","title":"ok","priority":9}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            bad.place,
            Place::Item {
                array: "tasks",
                index: 1
            }
        );
        assert!(bad.to_string().starts_with("tasks[1]: priority: "), "{bad}");
        let broken = read_export(b"{\n\"format\": \"todo.export/1\",\n\"tasks\": [\n{\"id\": }]}")
            .unwrap_err();
        assert_eq!(broken.place, Place::Line(4), "{broken}");
        let other = read_export(br#"{"format":"something else","tasks":[]}"#).unwrap_err();
        assert_eq!(other.place, Place::File);
    }

    #[test]
    fn a_string_longer_than_any_value_is_refused_before_parsing_by_its_line() {
        // The longest description, every character escaped, passes.
        let longest = "\\ud834\\udd1e".repeat(10_000);
        let file = format!(
            "{{\"format\":\"todo.export/1\",\n\"tasks\":[{{\"id\":\"a\",\"title\":\"x\",\"description\":\"{longest}\"}}]}}"
        );
        assert!(check_string_lengths(file.as_bytes()).is_ok());
        assert_eq!(read_export(file.as_bytes()).unwrap().tasks.len(), 1);
        // A string of the bound passes the scan; one byte more, on line 3,
        // escapes and all, is refused.
        let at_bound = format!("{{\"x\": \"{}\"}}", "x".repeat(MAX_STRING_BYTES));
        assert!(check_string_lengths(at_bound.as_bytes()).is_ok());
        let long = format!("\\\"{}", "x".repeat(MAX_STRING_BYTES - 1));
        let file = format!("{{\n\"format\": \"todo.export/1\",\n\"x\": \"{long}\"}}");
        let error = read_export(file.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "line 3: a string longer than 128 KiB");
        // Unterminated, too.
        let file = format!("{{\"format\": \"{long}");
        assert_eq!(
            check_string_lengths(file.as_bytes()).unwrap_err().place,
            Place::Line(1)
        );
        // A fault quoting a long string keeps 300 characters of it.
        let bad = format!(
            r#"{{"format":"todo.export/1","tasks":[{{"id":"a","title":"x","done":"{}"}}]}}"#,
            "\u{7f}".repeat(60_000)
        );
        let error = read_export(bad.as_bytes()).unwrap_err();
        assert_eq!(error.what.chars().count(), ImportError::MAX_WHAT_CHARS + 1);
        assert!(error.what.ends_with('…'), "{error}");
    }

    #[test]
    fn deep_nesting_where_a_value_is_passed_over_does_not_overflow_the_stack() {
        // (serde_json passes over a value without recursing: 100,000 deep
        // in a field read as `IgnoredAny` is read through; the test keeps
        // it so. Session 30's attack, F3.)
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let file = format!(
            r#"{{"format":"todo.export/1","tasks":[{{"id":"a","title":"x","version":{deep}}}]}}"#
        );
        let read = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || read_export(file.as_bytes()).map(|file| file.tasks.len()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(read.unwrap(), 1);
        let file = format!(r#"{{"format":"todo.export/1","exported_at":{{"a":{deep}}}}}"#);
        let passed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || read_export(file.as_bytes()).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        assert!(passed.is_ok(), "passed over, as `version` is: {passed:?}");
        // Where a value is read, its first item of the wrong kind ends it.
        let file = format!(
            r#"{{"format":"todo.export/1","tasks":[{{"id":"a","title":"x","labels":{deep}}}]}}"#
        );
        let refused = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || read_export(file.as_bytes()).map(|_| ()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        // (refused at its first item, which is not a label: never deeper)
        assert_eq!(
            refused.place,
            Place::Item {
                array: "tasks",
                index: 0
            },
            "{refused}"
        );
    }

    #[test]
    fn a_calendar_that_is_not_utf8_is_named_by_its_line() {
        let error =
            read_calendar_bytes(b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nSUMMARY:\xff\r\n").unwrap_err();
        assert_eq!(error.to_string(), "line 3: not UTF-8");
    }

    #[test]
    fn one_import_a_user_and_a_few_an_instance() {
        let user = |n: u128| todo_core::UserId::from_uuid(uuid::Uuid::from_u128(n));
        let imports = Imports::default();
        let first = imports.running.enter(user(1)).unwrap();
        assert!(imports.running.enter(user(1)).is_err());
        let others: Vec<_> = (2..=MAX_IMPORTS as u128)
            .map(|n| imports.running.enter(user(n)).unwrap())
            .collect();
        assert!(imports.running.enter(user(99)).is_err());
        drop(first);
        assert!(imports.running.enter(user(1)).is_ok());
        drop(others);
    }
}
