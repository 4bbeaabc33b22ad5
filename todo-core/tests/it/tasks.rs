//! The task service's rules: ownership, versions, completion, listing.

use std::sync::Arc;
use std::time::Duration;

use todo_core::memory::MemoryStore;
use todo_core::testing::{ManualClock, SeededRandom};
use todo_core::{
    Clock, Error, Label, Labels, LogPosition, NewTask, PageLimit, Precondition, Priority,
    TaskCursor, TaskPatch, TaskQuery, TaskService, TaskSort, Timestamp, Title, UserId,
};

use crate::auth::harness;

struct Fixture {
    clock: Arc<ManualClock>,
    tasks: TaskService,
    alice: UserId,
    bob: UserId,
}

fn fixture() -> Fixture {
    let h = harness();
    let alice = h.register("alice", "correct horse").id;
    let bob = h.register("bob", "battery staple").id;
    let store: Arc<MemoryStore> = h.store.clone();
    let tasks = TaskService::new(store, h.clock.clone(), Arc::new(SeededRandom::new(11)));
    Fixture {
        clock: h.clock,
        tasks,
        alice,
        bob,
    }
}

fn titled(title: &str) -> NewTask {
    NewTask::titled(Title::parse(title).unwrap())
}

#[test]
fn a_new_task_starts_at_version_one_with_defaults() {
    let f = fixture();
    let task = f.tasks.create(f.alice, titled("first")).unwrap();
    assert_eq!(task.version.get(), 1);
    assert_eq!(task.priority, Priority::default());
    assert!(!task.done && !task.archived && task.labels.is_empty());
    assert_eq!((task.completed_at, task.due_at), (None, None));
    assert_eq!(task.created_at, f.clock.now());
    assert_eq!(task.updated_at, task.created_at);
    assert_eq!(f.tasks.get(f.alice, task.id).unwrap(), task);
}

#[test]
fn creating_a_done_task_sets_completed_at() {
    let f = fixture();
    let task = f
        .tasks
        .create(
            f.alice,
            NewTask {
                done: true,
                ..titled("done already")
            },
        )
        .unwrap();
    assert_eq!(task.completed_at, Some(f.clock.now()));
}

#[test]
fn another_users_task_is_not_found_for_every_operation() {
    let f = fixture();
    let task = f.tasks.create(f.alice, titled("private")).unwrap();
    assert!(matches!(f.tasks.get(f.bob, task.id), Err(Error::NotFound)));
    let patch = TaskPatch {
        title: Some(Title::parse("mine now").unwrap()),
        ..TaskPatch::default()
    };
    assert!(matches!(
        f.tasks.update(f.bob, task.id, patch, None),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        f.tasks
            .update(f.bob, task.id, TaskPatch::default(), Some(task.version)),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        f.tasks.delete(f.bob, task.id, None),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        f.tasks.delete(f.bob, task.id, Some(task.version)),
        Err(Error::NotFound)
    ));
    let bobs = f.tasks.list(f.bob, &TaskQuery::default(), None).unwrap();
    assert!(bobs.items.is_empty() && bobs.next_cursor.is_none());
    assert_eq!(f.tasks.get(f.alice, task.id).unwrap(), task, "untouched");
}

#[test]
fn completion_time_follows_done() {
    let f = fixture();
    let task = f.tasks.create(f.alice, titled("to do")).unwrap();
    f.clock.advance(Duration::from_secs(60));
    let done = TaskPatch {
        done: Some(true),
        ..TaskPatch::default()
    };
    let completed = f
        .tasks
        .update(f.alice, task.id, done.clone(), None)
        .unwrap();
    assert_eq!(completed.completed_at, Some(f.clock.now()));
    assert_eq!(completed.version.get(), 2);
    assert_eq!(completed.updated_at, f.clock.now());
    // Marking done again changes nothing: not the time, not the version.
    f.clock.advance(Duration::from_secs(60));
    let again = f.tasks.update(f.alice, task.id, done, None).unwrap();
    assert_eq!(again, completed);
    let undone = f
        .tasks
        .update(
            f.alice,
            task.id,
            TaskPatch {
                done: Some(false),
                ..TaskPatch::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(undone.completed_at, None);
    assert_eq!(undone.version.get(), 3);
}

#[test]
fn a_patch_changes_only_what_it_names_and_clears_a_due_date_with_null() {
    let f = fixture();
    let due = Timestamp::parse_rfc3339("2026-12-24T18:00:00Z", "due_at").unwrap();
    let new = NewTask {
        due_at: Some(due),
        priority: Priority::new(2).unwrap(),
        labels: Labels::parse(["a", "b"]).unwrap(),
        ..titled("original")
    };
    let task = f.tasks.create(f.alice, new).unwrap();
    let patch = TaskPatch {
        title: Some(Title::parse("renamed").unwrap()),
        ..TaskPatch::default()
    };
    let renamed = f.tasks.update(f.alice, task.id, patch, None).unwrap();
    assert_eq!(renamed.title.as_str(), "renamed");
    assert_eq!(
        (renamed.due_at, renamed.priority, &renamed.labels),
        (task.due_at, task.priority, &task.labels)
    );
    let cleared = f
        .tasks
        .update(
            f.alice,
            task.id,
            TaskPatch {
                due_at: Some(None),
                archived: Some(true),
                ..TaskPatch::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(cleared.due_at, None);
    assert!(cleared.archived);
    assert_eq!(cleared.version.get(), 3);
}

#[test]
fn a_stale_version_is_a_mismatch_and_changes_nothing() {
    let f = fixture();
    let task = f.tasks.create(f.alice, titled("v1")).unwrap();
    let patch = |t: &str| TaskPatch {
        title: Some(Title::parse(t).unwrap()),
        ..TaskPatch::default()
    };
    let v2 = f
        .tasks
        .update(f.alice, task.id, patch("v2"), Some(task.version))
        .unwrap();
    assert_eq!(v2.version.get(), 2);
    match f
        .tasks
        .update(f.alice, task.id, patch("lost"), Some(task.version))
    {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, v2.version),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(matches!(
        f.tasks.delete(f.alice, task.id, Some(task.version)),
        Err(Error::VersionMismatch { .. })
    ));
    assert_eq!(f.tasks.get(f.alice, task.id).unwrap(), v2);
    f.tasks.delete(f.alice, task.id, Some(v2.version)).unwrap();
    assert!(matches!(
        f.tasks.get(f.alice, task.id),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        f.tasks.delete(f.alice, task.id, None),
        Err(Error::NotFound)
    ));
}

#[test]
fn lists_default_to_unarchived_newest_first_in_pages_of_the_limit() {
    let f = fixture();
    let mut ids = Vec::new();
    for i in 0..5 {
        f.clock.advance(Duration::from_secs(1));
        let archived = i == 2;
        ids.push(
            f.tasks
                .create(
                    f.alice,
                    NewTask {
                        archived,
                        ..titled(&format!("t{i}"))
                    },
                )
                .unwrap()
                .id,
        );
    }
    let page = f.tasks.list(f.alice, &TaskQuery::default(), None).unwrap();
    let expected: Vec<_> = [4, 3, 1, 0].iter().map(|i| ids[*i]).collect();
    assert_eq!(
        page.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        expected
    );
    assert!(page.next_cursor.is_none(), "no cursor when everything fit");

    let two = TaskQuery {
        limit: PageLimit::new(2).unwrap(),
        ..TaskQuery::default()
    };
    let first = f.tasks.list(f.alice, &two, None).unwrap();
    assert_eq!(first.items.len(), 2);
    let cursor = first.next_cursor.unwrap();
    let second = f.tasks.list(f.alice, &two, Some(&cursor)).unwrap();
    assert_eq!(
        second.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [ids[1], ids[0]]
    );
    assert!(
        second.next_cursor.is_none(),
        "an exactly full last page has no next cursor"
    );

    // A cursor is for the query it came from.
    let other = TaskQuery {
        sort: TaskSort::CreatedAsc,
        ..two.clone()
    };
    assert!(
        matches!(f.tasks.list(f.alice, &other, Some(&cursor)), Err(Error::Invalid(ref e)) if e[0].field() == "cursor")
    );
    let labelled = TaskQuery {
        label: Some(Label::parse("x").unwrap()),
        ..two
    };
    assert!(matches!(
        f.tasks.list(f.alice, &labelled, Some(&cursor)),
        Err(Error::Invalid(_))
    ));
    let forged = TaskCursor::parse(&cursor.to_string()).unwrap();
    assert_eq!(forged, cursor);
}

#[test]
fn due_filters_are_strict_and_leave_out_tasks_without_a_due_date() {
    let f = fixture();
    let t = |s: &str| Timestamp::parse_rfc3339(s, "due_at").unwrap();
    for (title, due) in [
        ("early", Some("2026-01-01T00:00:00Z")),
        ("edge", Some("2026-06-01T00:00:00Z")),
        ("late", Some("2026-12-01T00:00:00Z")),
        ("never", None),
    ] {
        f.tasks
            .create(
                f.alice,
                NewTask {
                    due_at: due.map(t),
                    ..titled(title)
                },
            )
            .unwrap();
    }
    let titles = |q: TaskQuery| -> Vec<String> {
        let mut v: Vec<String> = f
            .tasks
            .list(f.alice, &q, None)
            .unwrap()
            .items
            .iter()
            .map(|x| x.title.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        titles(TaskQuery {
            due_before: Some(t("2026-06-01T00:00:00Z")),
            ..TaskQuery::default()
        }),
        ["early"]
    );
    assert_eq!(
        titles(TaskQuery {
            due_after: Some(t("2026-06-01T00:00:00Z")),
            ..TaskQuery::default()
        }),
        ["late"]
    );
    let due_first = TaskQuery {
        sort: TaskSort::DueAsc,
        ..TaskQuery::default()
    };
    let order: Vec<String> = f
        .tasks
        .list(f.alice, &due_first, None)
        .unwrap()
        .items
        .iter()
        .map(|x| x.title.to_string())
        .collect();
    assert_eq!(
        order,
        ["early", "edge", "late", "never"],
        "no due date sorts last"
    );
}

/// Allows `allowance` checks per user, then refuses with a 7 s wait.
struct Allowance {
    allowance: u32,
    spent: std::sync::Mutex<std::collections::HashMap<UserId, u32>>,
}

impl todo_core::RateLimiter<UserId> for Allowance {
    fn check(&self, key: &UserId) -> Result<(), Duration> {
        let mut spent = self.spent.lock().unwrap();
        let n = spent.entry(*key).or_default();
        if *n >= self.allowance {
            return Err(Duration::from_secs(7));
        }
        *n += 1;
        Ok(())
    }
}

fn limited(max_tasks: Option<u64>, writes: u32) -> Fixture {
    let mut f = fixture();
    f.tasks = f.tasks.clone().with_limits(todo_core::TaskLimits {
        max_tasks_per_user: max_tasks,
        writes_per_user: Arc::new(Allowance {
            allowance: writes,
            spent: std::sync::Mutex::default(),
        }),
    });
    f
}

#[test]
fn a_user_at_the_task_quota_creates_nothing_more() {
    let f = limited(Some(2), 100);
    f.tasks.create(f.alice, titled("one")).unwrap();
    f.tasks.create(f.alice, titled("two")).unwrap();
    assert!(matches!(
        f.tasks.create(f.alice, titled("three")),
        Err(Error::QuotaExceeded {
            what: "tasks",
            limit: 2
        })
    ));
    let page = f.tasks.list(f.alice, &TaskQuery::default(), None).unwrap();
    assert_eq!(page.items.len(), 2);
    f.tasks.create(f.bob, titled("bob's own quota")).unwrap();
    f.tasks.delete(f.alice, page.items[0].id, None).unwrap();
    f.tasks.create(f.alice, titled("room again")).unwrap();
}

#[test]
fn every_write_spends_the_users_write_allowance_and_reads_do_not() {
    let f = limited(None, 3);
    let task = f.tasks.create(f.alice, titled("one")).unwrap();
    let patch = TaskPatch {
        done: Some(true),
        ..TaskPatch::default()
    };
    f.tasks
        .update(f.alice, task.id, patch.clone(), None)
        .unwrap();
    f.tasks.delete(f.alice, task.id, None).unwrap();
    for refused in [
        f.tasks.create(f.alice, titled("four")).map(|_| ()),
        f.tasks.update(f.alice, task.id, patch, None).map(|_| ()),
        f.tasks.delete(f.alice, task.id, None),
    ] {
        match refused {
            Err(Error::RateLimited { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(7));
            }
            other => panic!("expected 429, got {other:?}"),
        }
    }
    f.tasks.list(f.alice, &TaskQuery::default(), None).unwrap();
    f.tasks.create(f.bob, titled("bob writes")).unwrap();
}

#[test]
fn an_unmatchable_condition_is_not_found_for_others_and_a_mismatch_for_the_owner() {
    let f = fixture();
    let task = f.tasks.create(f.alice, titled("conditional")).unwrap();
    // Another user's task: not found, whatever the condition.
    assert!(matches!(
        f.tasks.update_if(
            f.bob,
            task.id,
            TaskPatch::default(),
            Precondition::Unmatchable
        ),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        f.tasks.delete_if(f.bob, task.id, Precondition::Unmatchable),
        Err(Error::NotFound)
    ));
    // The owner's: unmatchable, naming the current version.
    assert!(matches!(
        f.tasks.delete_if(f.alice, task.id, Precondition::Unmatchable),
        Err(Error::Unmatchable { current }) if current == task.version
    ));
    let patch = TaskPatch {
        done: Some(true),
        ..TaskPatch::default()
    };
    let done = f
        .tasks
        .update_if(f.alice, task.id, patch, Precondition::Version(task.version))
        .unwrap();
    assert!(done.done);
    assert!(matches!(
        f.tasks.delete_if(f.alice, task.id, Precondition::Version(task.version)),
        Err(Error::VersionMismatch { current }) if current == done.version
    ));
    f.tasks
        .delete_if(f.alice, task.id, Precondition::Any)
        .unwrap();
    assert!(matches!(
        f.tasks.get(f.alice, task.id),
        Err(Error::NotFound)
    ));
}

/// A client catching up follows its cursor page by page; a cursor of
/// someone else's stream, or ahead of the stream, is refused; once
/// retention has dropped changes the cursor had not seen, it is told so.
#[test]
fn changes_are_followed_by_cursor_until_retention_drops_them() {
    use todo_core::{ChangeCursor, ChangeKind, ChangeLimit};
    let f = fixture();
    let first = f.tasks.create(f.alice, titled("first")).unwrap();
    f.clock.advance(Duration::from_secs(60));
    let second = f.tasks.create(f.alice, titled("second")).unwrap();
    f.tasks.delete(f.alice, first.id, None).unwrap();
    let two = ChangeLimit::new(2).unwrap();

    let page = f.tasks.changes(f.alice, None, two).unwrap();
    let kinds: Vec<_> = page
        .items
        .iter()
        .map(|c| (c.position.get(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        [(1, ChangeKind::TaskCreated), (2, ChangeKind::TaskCreated)]
    );
    assert_eq!(page.items[1].task(), Some(&second));
    let page = f
        .tasks
        .changes(f.alice, Some(&page.next_cursor), two)
        .unwrap();
    let kinds: Vec<_> = page
        .items
        .iter()
        .map(|c| (c.position.get(), c.kind, c.task().is_some()))
        .collect();
    assert_eq!(kinds, [(3, ChangeKind::TaskDeleted, false)]);
    assert_eq!(page.items[0].at, f.clock.now());
    // Caught up: no items, and the same place to ask from.
    let caught_up = f
        .tasks
        .changes(f.alice, Some(&page.next_cursor), two)
        .unwrap();
    assert!(caught_up.items.is_empty());
    assert_eq!(caught_up.next_cursor, page.next_cursor);

    // Alice's cursor with Bob's identity, or one past the stream: refused.
    for cursor in [
        page.next_cursor,
        ChangeCursor::new(f.alice, LogPosition::new(4)),
    ] {
        let owner = if cursor == page.next_cursor {
            f.bob
        } else {
            f.alice
        };
        assert!(
            matches!(
                f.tasks.changes(owner, Some(&cursor), two),
                Err(Error::Invalid(_))
            ),
            "{cursor}"
        );
    }

    // Retention drops the first change (made a minute before the others).
    f.clock.advance(Duration::from_secs(30));
    assert_eq!(f.tasks.prune_changes(Duration::from_secs(60)).unwrap(), 1);
    let start = ChangeCursor::new(f.alice, LogPosition::new(0));
    assert!(matches!(
        f.tasks.changes(f.alice, Some(&start), two),
        Err(Error::Gone)
    ));
    let after_first = ChangeCursor::new(f.alice, LogPosition::new(1));
    assert_eq!(
        f.tasks
            .changes(f.alice, Some(&after_first), two)
            .unwrap()
            .items
            .len(),
        2
    );
    // Without a cursor: from the oldest kept.
    let oldest = f.tasks.changes(f.alice, None, two).unwrap();
    assert_eq!(oldest.items[0].position.get(), 2);
}

/// A client without a cursor, on a stream whose changes were all pruned,
/// is handed a cursor the next call accepts (review of #15, part 1).
#[test]
fn a_fresh_client_on_a_fully_pruned_stream_gets_a_usable_cursor() {
    use todo_core::ChangeLimit;
    let f = fixture();
    f.tasks.create(f.alice, titled("old")).unwrap();
    f.clock.advance(Duration::from_secs(120));
    assert_eq!(f.tasks.prune_changes(Duration::from_secs(60)).unwrap(), 1);
    let page = f
        .tasks
        .changes(f.alice, None, ChangeLimit::default())
        .unwrap();
    assert!(page.items.is_empty());
    let again = f
        .tasks
        .changes(f.alice, Some(&page.next_cursor), ChangeLimit::default());
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn a_page_of_large_tasks_holds_fewer_and_its_cursor_goes_on_from_there() {
    use todo_core::{ChangeLimit, Description, PAGE_BYTES};
    let f = fixture();
    // The longest description, in characters of four bytes: 40 KB each.
    let large = Description::parse(&"\u{1D11E}".repeat(Description::MAX_CHARS)).unwrap();
    let mut made = Vec::new();
    for i in 0..100 {
        f.clock.advance(Duration::from_secs(1));
        let new = NewTask {
            description: large.clone(),
            ..titled(&format!("t{i}"))
        };
        made.push(f.tasks.create(f.alice, new).unwrap().id);
    }
    made.reverse(); // newest first, as the list sorts
    let query = TaskQuery {
        limit: PageLimit::new(100).unwrap(),
        ..TaskQuery::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = f.tasks.list(f.alice, &query, cursor.as_ref()).unwrap();
        pages += 1;
        let bytes: usize = page.items.iter().map(|t| t.json_bytes()).sum();
        assert!(
            bytes <= PAGE_BYTES,
            "a page of {} tasks weighs {bytes} bytes",
            page.items.len()
        );
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, made, "every task once, in order");
    assert!(pages >= 2, "{pages} pages: the first held them all");

    // The change log's pages too.
    let mut changes = Vec::new();
    let mut since = None;
    loop {
        let page = f
            .tasks
            .changes(f.alice, since.as_ref(), ChangeLimit::new(100).unwrap())
            .unwrap();
        let bytes: usize = page.items.iter().map(|c| c.json_bytes()).sum();
        assert!(
            bytes <= PAGE_BYTES,
            "a page of changes weighs {bytes} bytes"
        );
        if page.items.is_empty() {
            break;
        }
        assert!(
            page.items.len() < 100,
            "{} changes in a page",
            page.items.len()
        );
        changes.extend(page.items.iter().map(|c| c.position.get()));
        since = Some(page.next_cursor);
    }
    assert_eq!(changes, (1..=100).collect::<Vec<_>>(), "every change once");

    // Small tasks still come a hundred to a page.
    for i in 0..100 {
        f.tasks.create(f.bob, titled(&format!("s{i}"))).unwrap();
    }
    let page = f.tasks.list(f.bob, &query, None).unwrap();
    assert_eq!(page.items.len(), 100);
}
