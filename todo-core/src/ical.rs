//! iCalendar (RFC 5545) for the export: each task as a VTODO, its rule as
//! an RRULE, its labels as CATEGORIES, its parent as RELATED-TO.

use crate::task::Task;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
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
}
