//! An import's iCalendar reader and planner on arbitrary text: no panic, no
//! fault without a place, and what is planned keeps every task of the file
//! once, each after its parent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use todo_core::import::{Place, plan};
use todo_core::{Timestamp, UserId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match todo_core::ical::read_calendar(text) {
        Ok(file) => file,
        Err(error) => {
            if let Place::Line(line) = error.place {
                assert!(line >= 1 && line <= text.split('\n').count(), "{error}");
            }
            return;
        }
    };
    let tasks = file.tasks.len();
    let owner = UserId::from_uuid(uuid::Uuid::from_u128(7));
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap();
    if let Ok(planned) = plan(owner, file, now, &todo_auth::Sha256Digest) {
        assert_eq!(planned.tasks.len(), tasks);
        let mut seen = std::collections::HashSet::new();
        for (_, task) in &planned.tasks {
            if let Some(parent) = task.parent {
                assert!(seen.contains(&parent), "a parent after its child");
            }
            assert!(seen.insert(task.id), "an id twice");
        }
    }
});
