//! iCalendar (RFC 5545), both ways: the export writes each task as a
//! VTODO (its rule as an RRULE, its labels as CATEGORIES, its parent as
//! RELATED-TO), and [`read_calendar`] reads the VTODOs of any calendar
//! back for an import.

use std::borrow::Cow;

use crate::import::{ImportError, ImportFile, ImportedTask, MAX_IMPORT_TASKS, Place};
use crate::recurrence::{Recurrence, TimeZoneName};
use crate::task::{Description, Labels, NewTask, Priority, Task, Title};
use crate::time::Timestamp;

/// Text values escape `\`, `;`, `,` and line breaks (RFC 5545 §3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A UTC time as iCalendar writes one (`20270104T090000Z`).
fn utc(at: Timestamp) -> String {
    let text = at.to_string(); // RFC 3339, UTC: 2027-01-04T09:00:00Z or with fraction
    let digits: String = text
        .chars()
        .take_while(|c| *c != '.' && *c != 'Z')
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{digits}Z")
}

/// Appends `name:value` as content lines folded at 75 octets, never inside
/// a character (RFC 5545 §3.1), each ended by CRLF.
fn line(out: &mut String, name: &str, value: &str) {
    let whole = format!("{name}:{value}");
    let mut width = 0;
    for c in whole.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

/// The tasks as one calendar of VTODOs, stamped `now`.
#[must_use]
pub fn write_calendar(tasks: &[Task], now: Timestamp) -> String {
    let mut out = calendar_start();
    for task in tasks {
        write_todo(&mut out, task, now);
    }
    out.push_str(CALENDAR_END);
    out
}

/// What a calendar starts with (a calendar written in parts: this, each
/// task's [`write_todo`], then [`CALENDAR_END`]).
#[must_use]
pub fn calendar_start() -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN", "VCALENDAR");
    line(&mut out, "VERSION", "2.0");
    line(&mut out, "PRODID", "-//todo//todo 1.1//EN");
    out
}

/// What a calendar ends with.
pub const CALENDAR_END: &str = "END:VCALENDAR\r\n";

/// Appends `task` as a VTODO stamped `now`.
pub fn write_todo(out: &mut String, task: &Task, now: Timestamp) {
    line(out, "BEGIN", "VTODO");
    line(out, "UID", &format!("{}@todo", task.id));
    line(out, "DTSTAMP", &utc(now));
    line(out, "CREATED", &utc(task.created_at));
    line(out, "LAST-MODIFIED", &utc(task.updated_at));
    line(out, "SUMMARY", &escape(task.title.as_str()));
    if !task.description.as_str().is_empty() {
        line(out, "DESCRIPTION", &escape(task.description.as_str()));
    }
    if let Some(due) = task.due_at {
        line(out, "DUE", &utc(due));
    }
    line(
        out,
        "STATUS",
        if task.done {
            "COMPLETED"
        } else {
            "NEEDS-ACTION"
        },
    );
    if let Some(completed) = task.completed_at {
        line(out, "COMPLETED", &utc(completed));
    }
    // RFC 5545: 1 is the highest, 9 the lowest, 0 none.
    let priority = match task.priority.get() {
        3 => Some("1"),
        2 => Some("5"),
        1 => Some("9"),
        _ => None,
    };
    if let Some(priority) = priority {
        line(out, "PRIORITY", priority);
    }
    if task.labels.iter().next().is_some() {
        let labels: Vec<String> = task.labels.iter().map(|l| escape(l.as_str())).collect();
        line(out, "CATEGORIES", &labels.join(","));
    }
    if let Some(rule) = &task.recurrence {
        line(out, "RRULE", &rule.to_string());
        line(out, "X-TODO-TIME-ZONE", task.time_zone.as_str());
    }
    if let Some(parent) = task.parent {
        line(out, "RELATED-TO", &format!("{parent}@todo"));
    }
    line(out, "END", "VTODO");
}

/// Components may nest this deep (a VALARM in a VTODO in a VCALENDAR is 3).
const MAX_NESTING: usize = 8;
/// The longest name of a property or a component, in bytes (RFC 5545's
/// longest are some twenty): what is kept, and may be quoted in a fault.
const MAX_NAME_BYTES: usize = 64;

/// One content line, unfolded: where it began, its name (upper case), its
/// parameters (as the file has them, read when asked for: a line of a
/// million semicolons costs no list) and its value.
struct ContentLine<'a> {
    line: usize,
    name: String,
    params: &'a str,
    value: &'a str,
}

impl ContentLine<'_> {
    /// The value of the parameter `name` (upper case; the file's may be
    /// any case), unquoted.
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .split(';')
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_matches('"'))
    }

    fn fault(&self, what: impl std::fmt::Display) -> ImportError {
        ImportError::at(
            Place::Line(self.line),
            format_args!("{}: {what}", self.name),
        )
    }
}

/// The logical lines of `text`, one at a time: folded lines (a line break
/// then a space or a tab) joined, each with the number of the physical
/// line it began on. A line not folded is the text's own (no copy): the
/// file is not held twice.
fn unfold(text: &str) -> impl Iterator<Item = (usize, Cow<'_, str>)> {
    let mut physical = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .peekable();
    std::iter::from_fn(move || {
        loop {
            let (n, line) = physical.next()?;
            if line.is_empty() {
                continue;
            }
            let mut logical = Cow::Borrowed(line);
            while let Some((_, next)) =
                physical.next_if(|(_, next)| matches!(next.as_bytes().first(), Some(b' ' | b'\t')))
            {
                logical.to_mut().push_str(&next[1..]);
            }
            return Some((n + 1, logical));
        }
    })
}

/// Splits `name;param=value;…:value` at the first colon outside quotes.
fn content_line(line: usize, text: &str) -> Result<ContentLine<'_>, ImportError> {
    let mut quoted = false;
    let mut colon = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ':' if !quoted => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon =
        colon.ok_or_else(|| ImportError::at(Place::Line(line), "not a content line (no colon)"))?;
    let (head, value) = (&text[..colon], &text[colon + 1..]);
    let (name, params) = head.split_once(';').unwrap_or((head, ""));
    if name.len() > MAX_NAME_BYTES {
        return Err(ImportError::at(
            Place::Line(line),
            format_args!("a property name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ImportError::at(
            Place::Line(line),
            "not a content line (no property name)",
        ));
    }
    let name = name.to_ascii_uppercase();
    Ok(ContentLine {
        line,
        name,
        params,
        value,
    })
}

/// A text value with its escapes undone (RFC 5545 §3.3.11).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The items of a list value (`a,b\,c`), each as the file has it (escaped),
/// one at a time: a list of millions of empty items is never held.
fn list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                ',' => {
                    rest = Some(&text[i + 1..]);
                    return Some(&text[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(text)
    })
}

/// A DATE-TIME (`20270104T090000Z`, or local with `TZID`, or floating:
/// read as UTC) or a DATE (midnight, in `TZID` or UTC).
fn date_time(line: &ContentLine<'_>) -> Result<Timestamp, ImportError> {
    let bad = || line.fault("not an iCalendar DATE or DATE-TIME");
    let value = line.value.trim();
    // (digits, `T` and `Z` only: every slice below is then on a character)
    if !value.is_ascii() {
        return Err(bad());
    }
    let (date, time, utc) = match value.split_once('T') {
        Some((date, time)) => match time.strip_suffix('Z') {
            Some(time) => (date, time, true),
            None => (date, time, false),
        },
        None => (value, "000000", false),
    };
    let number = |s: &str| -> Result<i32, ImportError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    if date.len() != 8 || time.len() != 6 {
        return Err(bad());
    }
    let year = i16::try_from(number(&date[..4])?).map_err(|_| bad())?;
    let [month, day, hour, minute, second] = [
        &date[4..6],
        &date[6..8],
        &time[..2],
        &time[2..4],
        &time[4..6],
    ]
    .map(|part| number(part).ok().and_then(|n| i8::try_from(n).ok()));
    let (Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (month, day, hour, minute, second)
    else {
        return Err(bad());
    };
    let civil = jiff::civil::DateTime::new(year, month, day, hour, minute, second.min(59), 0)
        .map_err(|_| bad())?;
    let zone = match (utc, line.param("TZID")) {
        // (no zone's name is this long: not looked up, nor copied)
        (false, Some(name)) if name.len() > MAX_NAME_BYTES => {
            return Err(line.fault(format_args!("unknown time zone {:?}", quoted(name))));
        }
        (false, Some(name)) => jiff::tz::TimeZone::get(name)
            .map_err(|_| line.fault(format_args!("unknown time zone {:?}", quoted(name))))?,
        _ => jiff::tz::TimeZone::UTC,
    };
    let at = zone
        .to_ambiguous_timestamp(civil)
        .compatible()
        .map_err(|_| bad())?;
    Timestamp::from_unix_micros(at.as_microsecond()).map_err(|_| bad())
}

/// At most the first 64 characters of `text`: what a fault quotes of the
/// file.
fn quoted(text: &str) -> &str {
    text.char_indices()
        .nth(64)
        .map_or(text, |(cut, _)| &text[..cut])
}

/// The component a `BEGIN` or `END` names, upper case.
fn component_name(line: &ContentLine<'_>) -> Result<String, ImportError> {
    let name = line.value.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(line.fault("not a component's name"));
    }
    Ok(name.to_ascii_uppercase())
}

/// The VTODOs of an iCalendar, as tasks to import; anything else in it
/// (events, time zones, alarms, properties of no task field) is passed
/// over. A fault names the line it is on.
pub fn read_calendar(text: &str) -> Result<ImportFile, ImportError> {
    // (a byte-order mark, as some programs write, is not content)
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut file = ImportFile::default();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut todo: Option<TodoFields> = None;
    let mut ended = false;
    for (n, text) in unfold(text) {
        if ended {
            return Err(ImportError::at(
                Place::Line(n),
                "content after END:VCALENDAR",
            ));
        }
        let line = content_line(n, &text)?;
        match line.name.as_str() {
            "BEGIN" => {
                let component = component_name(&line)?;
                if open.is_empty() && component != "VCALENDAR" {
                    return Err(line.fault("a calendar begins with BEGIN:VCALENDAR"));
                }
                if open.len() >= MAX_NESTING {
                    return Err(line.fault("components nested too deep"));
                }
                if component == "VTODO" && open.len() == 1 {
                    if file.tasks.len() >= MAX_IMPORT_TASKS {
                        return Err(
                            line.fault(format!("at most {MAX_IMPORT_TASKS} tasks in one import"))
                        );
                    }
                    todo = Some(TodoFields::new(n));
                }
                open.push((component, n));
            }
            "END" => {
                let component = component_name(&line)?;
                match open.pop() {
                    Some((begun, _)) if begun == component => {}
                    Some((begun, at)) => {
                        return Err(
                            line.fault(format!("ends {component}, but {begun} began at line {at}"))
                        );
                    }
                    None => return Err(line.fault("nothing begun to end")),
                }
                if component == "VTODO"
                    && open.len() == 1
                    && let Some(fields) = todo.take()
                {
                    file.tasks.push(fields.finish()?);
                }
                ended = open.is_empty();
            }
            _ if open.is_empty() => {
                return Err(line.fault("a calendar begins with BEGIN:VCALENDAR"));
            }
            // A property of the VTODO itself (not of an alarm inside it).
            _ => {
                if let (Some(fields), 2) = (todo.as_mut(), open.len()) {
                    fields.take(&line)?;
                }
            }
        }
    }
    match open.last() {
        Some((component, at)) => Err(ImportError::at(
            Place::Line(*at),
            format!("BEGIN:{component} is never ended"),
        )),
        None if !ended => Err(ImportError::at(
            Place::File,
            "no calendar (BEGIN:VCALENDAR)",
        )),
        None => Ok(file),
    }
}

/// A VTODO's properties as they are read.
struct TodoFields {
    begin: usize,
    uid: Option<String>,
    title: Option<Title>,
    description: Description,
    done: bool,
    cancelled: bool,
    completed_at: Option<Timestamp>,
    due_at: Option<Timestamp>,
    due_zone: Option<String>,
    priority: Priority,
    labels: Vec<String>,
    labels_line: usize,
    recurrence: Option<Recurrence>,
    time_zone: Option<TimeZoneName>,
    parent: Option<String>,
    created_at: Option<Timestamp>,
    stamped_at: Option<Timestamp>,
}

impl TodoFields {
    fn new(begin: usize) -> Self {
        Self {
            begin,
            uid: None,
            title: None,
            description: Description::default(),
            done: false,
            cancelled: false,
            completed_at: None,
            due_at: None,
            due_zone: None,
            priority: Priority::default(),
            labels: Vec::new(),
            labels_line: begin,
            recurrence: None,
            time_zone: None,
            parent: None,
            created_at: None,
            stamped_at: None,
        }
    }

    fn take(&mut self, line: &ContentLine<'_>) -> Result<(), ImportError> {
        let invalid = |e: crate::ValidationError| line.fault(e.to_string());
        match line.name.as_str() {
            "UID" => self.uid = Some(line.value.trim().to_owned()),
            "SUMMARY" => self.title = Some(Title::parse(&unescape(line.value)).map_err(invalid)?),
            "DESCRIPTION" => {
                self.description = Description::parse(&unescape(line.value)).map_err(invalid)?;
            }
            "STATUS" => match line.value.trim().to_ascii_uppercase().as_str() {
                "COMPLETED" => self.done = true,
                "CANCELLED" => self.cancelled = true,
                "NEEDS-ACTION" | "IN-PROCESS" => {}
                _ => return Err(line.fault("not a VTODO status")),
            },
            // (a completion time says it is done, whatever STATUS says)
            "COMPLETED" => {
                self.completed_at = Some(date_time(line)?);
                self.done = true;
            }
            "DUE" => {
                self.due_at = Some(date_time(line)?);
                self.due_zone = line.param("TZID").map(str::to_owned);
            }
            "CREATED" => self.created_at = Some(date_time(line)?),
            // (what stands for its making when CREATED is missing: required
            // of every VTODO, and the same in every export of it)
            "DTSTAMP" => self.stamped_at = Some(date_time(line)?),
            // RFC 5545: 1 to 4 high, 5 medium, 6 to 9 low, 0 none.
            "PRIORITY" => {
                self.priority = match line.value.trim().parse::<u8>() {
                    Ok(0) => Priority::default(),
                    Ok(1..=4) => Priority::new(3).map_err(invalid)?,
                    Ok(5) => Priority::new(2).map_err(invalid)?,
                    Ok(6..=9) => Priority::new(1).map_err(invalid)?,
                    _ => return Err(line.fault("a priority is 0 to 9")),
                };
            }
            "CATEGORIES" => {
                self.labels_line = line.line;
                for item in list(line.value) {
                    let label = unescape(item);
                    let label = label.trim();
                    if !label.is_empty() && !self.labels.iter().any(|l| l == label) {
                        // (refused at the first past the limit: the list
                        // checked for repeats stays that short)
                        if self.labels.len() >= Labels::MAX_LABELS {
                            return Err(
                                line.fault(format!("at most {} labels a task", Labels::MAX_LABELS))
                            );
                        }
                        self.labels.push(label.to_owned());
                    }
                }
            }
            "RRULE" => {
                if self.recurrence.is_some() {
                    return Err(line.fault("one rule a task"));
                }
                self.recurrence = Some(Recurrence::parse(line.value.trim()).map_err(invalid)?);
            }
            "X-TODO-TIME-ZONE" => {
                self.time_zone = Some(TimeZoneName::parse(line.value.trim()).map_err(invalid)?);
            }
            "RELATED-TO" => {
                let parent = line
                    .param("RELTYPE")
                    .is_none_or(|t| t.eq_ignore_ascii_case("PARENT"));
                if parent {
                    self.parent = Some(line.value.trim().to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<ImportedTask, ImportError> {
        let place = Place::Line(self.begin);
        let key = self
            .uid
            .ok_or_else(|| ImportError::at(place, "UID: a VTODO needs one"))?;
        let title = self
            .title
            .ok_or_else(|| ImportError::at(place, "SUMMARY: a VTODO needs one"))?;
        let labels = Labels::parse(self.labels.iter().map(String::as_str)).map_err(|e| {
            ImportError::at(Place::Line(self.labels_line), format!("CATEGORIES: {e}"))
        })?;
        // The rule's zone: ours if we wrote it, else the due time's.
        let time_zone = match (self.time_zone, self.due_zone) {
            (Some(zone), _) => Some(zone),
            (None, Some(name)) => TimeZoneName::parse(&name).ok(),
            (None, None) => None,
        };
        let mut fields = NewTask::titled(title);
        fields.description = self.description;
        fields.done = self.done;
        fields.archived = self.cancelled;
        fields.due_at = self.due_at;
        fields.priority = self.priority;
        fields.labels = labels;
        fields.recurrence = self.recurrence;
        fields.time_zone = time_zone;
        Ok(ImportedTask {
            place,
            key,
            project_key: None,
            parent_key: self.parent,
            fields,
            completed_at: self.completed_at,
            created_at: self.created_at.or(self.stamped_at),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::import::Place;
    use crate::project::ProjectId;
    use crate::recurrence::{Recurrence, TimeZoneName};
    use crate::reminder::Reminders;
    use crate::task::{Description, Labels, Priority, TaskId, TaskVersion, Title};
    use crate::user::UserId;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339(rfc3339, "at").unwrap()
    }

    fn a_task() -> Task {
        let owner = UserId::from_uuid(uuid::Uuid::from_u128(7));
        Task {
            id: TaskId::from_uuid(uuid::Uuid::from_u128(1)),
            project: ProjectId::inbox_of(owner),
            created_by: owner,
            title: Title::parse("Pay rent; then, call \\ mom").unwrap(),
            description: Description::parse(&format!("line one\nline two {}", "é".repeat(60)))
                .unwrap(),
            done: true,
            completed_at: Some(at("2027-01-03T10:00:00Z")),
            due_at: Some(at("2027-01-04T09:00:00.5Z")),
            priority: Priority::new(3).unwrap(),
            labels: Labels::parse(["home", "a,b"]).unwrap(),
            archived: false,
            created_at: at("2027-01-01T08:00:00Z"),
            updated_at: at("2027-01-03T10:00:00Z"),
            version: TaskVersion::FIRST,
            parent: Some(TaskId::from_uuid(uuid::Uuid::from_u128(2))),
            recurrence: Some(Recurrence::parse("FREQ=WEEKLY;BYDAY=MO").unwrap()),
            time_zone: TimeZoneName::parse("Europe/Berlin").unwrap(),
            series: None,
            reminders: Reminders::default(),
        }
    }

    #[test]
    fn a_task_is_a_vtodo_with_escaped_folded_lines() {
        let text = write_calendar(&[a_task()], at("2027-01-05T00:00:00Z"));
        assert!(
            text.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"),
            "{text}"
        );
        assert!(text.ends_with("END:VTODO\r\nEND:VCALENDAR\r\n"), "{text}");
        for expected in [
            "UID:00000000-0000-0000-0000-000000000001@todo\r\n",
            "SUMMARY:Pay rent\\; then\\, call \\\\ mom\r\n",
            "DUE:20270104T090000Z\r\n",
            "STATUS:COMPLETED\r\n",
            "COMPLETED:20270103T100000Z\r\n",
            "PRIORITY:1\r\n",
            "CATEGORIES:a\\,b,home\r\n",
            "RRULE:FREQ=WEEKLY;BYDAY=MO\r\n",
            "RELATED-TO:00000000-0000-0000-0000-000000000002@todo\r\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        // Every line at most 75 octets; a folded line goes on after a space.
        for physical in text.split("\r\n") {
            assert!(physical.len() <= 75, "{physical:?}");
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains(&format!(
            "DESCRIPTION:line one\\nline two {}\r\n",
            "é".repeat(60)
        )));
    }
    #[test]
    fn what_the_export_writes_the_import_reads_back() {
        let task = a_task();
        let text = write_calendar(std::slice::from_ref(&task), at("2027-01-05T00:00:00Z"));
        let file = read_calendar(&text).unwrap();
        assert_eq!(file.tasks.len(), 1);
        let read = &file.tasks[0];
        assert_eq!(read.key, format!("{}@todo", task.id));
        assert_eq!(
            read.parent_key,
            Some(format!("{}@todo", task.parent.unwrap()))
        );
        assert_eq!(read.fields.title, task.title);
        assert_eq!(read.fields.description, task.description);
        assert!(read.fields.done);
        assert_eq!(read.completed_at, task.completed_at);
        // (iCalendar keeps whole seconds)
        assert_eq!(read.fields.due_at, Some(at("2027-01-04T09:00:00Z")));
        assert_eq!(read.fields.priority, task.priority);
        assert_eq!(read.fields.labels, task.labels);
        assert_eq!(read.fields.recurrence, task.recurrence);
        assert_eq!(read.fields.time_zone.as_ref(), Some(&task.time_zone));
        assert_eq!(read.created_at, Some(task.created_at));
    }

    #[test]
    fn another_programs_calendar_is_read_with_its_zones_and_escapes() {
        let text = "BEGIN:VCALENDAR\r\nPRODID:-//x//y//EN\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nEND:VTIMEZONE\r\n\
            BEGIN:VEVENT\r\nUID:e1\r\nSUMMARY:not a task\r\nEND:VEVENT\r\n\
            BEGIN:VTODO\r\nUID:t1\r\nSUMMARY:Call\\, then wri\r\n te\r\nDUE;TZID=Europe/Berlin:20270704T090000\r\n\
            CATEGORIES:work,a\\,b\r\nCATEGORIES:work\r\nPRIORITY:5\r\nSTATUS:CANCELLED\r\n\
            BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nSUMMARY:alarm\r\nEND:VALARM\r\nEND:VTODO\r\n\
            BEGIN:VTODO\r\nUID:t2\r\nSUMMARY:On a day\r\nDUE;VALUE=DATE:20270105\r\nRELATED-TO:t1\r\nEND:VTODO\r\nEND:VCALENDAR\r\n";
        let file = read_calendar(&format!("\u{feff}{text}")).unwrap();
        assert_eq!(file.tasks.len(), 2);
        let (first, second) = (&file.tasks[0], &file.tasks[1]);
        assert_eq!(first.fields.title.as_str(), "Call, then write");
        assert_eq!(first.place, Place::Line(10));
        // 09:00 in Berlin's summer time is 07:00 UTC.
        assert_eq!(first.fields.due_at, Some(at("2027-07-04T07:00:00Z")));
        assert_eq!(
            first.fields.time_zone.as_ref().map(TimeZoneName::as_str),
            Some("Europe/Berlin")
        );
        assert_eq!(first.fields.labels, Labels::parse(["a,b", "work"]).unwrap());
        assert_eq!(first.fields.priority.get(), 2);
        assert!(first.fields.archived && !first.fields.done);
        assert_eq!(second.fields.due_at, Some(at("2027-01-05T00:00:00Z")));
        assert_eq!(second.parent_key.as_deref(), Some("t1"));
    }

    #[test]
    fn a_flood_of_categories_is_refused_at_the_first_past_the_limit() {
        let many: Vec<String> = (0..100_000).map(|n| n.to_string()).collect();
        let text = format!(
            "BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:a\nSUMMARY:x\nCATEGORIES:{}\nEND:VTODO\nEND:VCALENDAR\n",
            many.join(",")
        );
        let started = std::time::Instant::now();
        let error = read_calendar(&text).unwrap_err().to_string();
        assert!(
            error.starts_with("line 5: CATEGORIES: at most 20 labels"),
            "{error}"
        );
        // (quadratic, this took minutes; linear, milliseconds)
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_fault_names_its_line() {
        let cases = [
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:a\r\nSUMMARY:x\r\nDUE:2027-01-01\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
                "line 5: DUE: not an iCalendar DATE or DATE-TIME",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VTODO\nSUMMARY:x\nEND:VTODO\nEND:VCALENDAR\n",
                "line 2: UID: a VTODO needs one",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:a\nSUMMARY:x\nRRULE:FREQ=SECONDLY\nEND:VTODO\nEND:VCALENDAR\n",
                "line 5: RRULE: ",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:a\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n",
                "line 5: END: ends VEVENT, but VTODO began at line 2",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:a\n",
                "line 2: BEGIN:VTODO is never ended",
            ),
            ("hello\n", "line 1: not a content line (no colon)"),
            (
                "BEGIN:VCALENDAR\nEND:VCALENDAR\nBEGIN:VTODO\n",
                "line 3: content after END:VCALENDAR",
            ),
            ("", "the file: no calendar (BEGIN:VCALENDAR)"),
            // (a byte count of 8 that is not 8 characters: no slicing inside one)
            (
                "BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:a\nSUMMARY:x\nDUE:202\u{e9}010T090000Z\nEND:VTODO\nEND:VCALENDAR\n",
                "line 5: DUE: not an iCalendar",
            ),
        ];
        for (text, expected) in cases {
            let error = read_calendar(text).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error:?}, not {expected:?}");
        }
    }
}
