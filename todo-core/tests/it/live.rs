//! Following a stream live in process (`TaskService::subscribe`): each
//! change once, in commit order, woken by the writes of any clone of the
//! service; bad cursors refused as `changes` refuses them.

use std::sync::Arc;
use std::time::Duration;

use todo_core::memory::MemoryStore;
use todo_core::testing::{SeededRandom, block_on};
use todo_core::{
    ChangeCursor, ChangeKind, ChangeLimit, Error, LogPosition, NewTask, TaskPatch, TaskService,
    Title,
};

use crate::auth::harness;

fn titled(title: &str) -> NewTask {
    NewTask::titled(Title::parse(title).unwrap())
}

#[test]
fn a_subscriber_without_a_cursor_sees_what_commits_after_it_and_only_its_own() {
    let h = harness();
    let alice = h.register("alice", "correct horse").id;
    let bob = h.register("bob", "battery staple").id;
    let store: Arc<MemoryStore> = h.store.clone();
    let tasks = TaskService::new(store, h.clock.clone(), Arc::new(SeededRandom::new(3)));
    let before = tasks.create(alice, titled("before")).unwrap();

    let mut live = tasks.subscribe(alice, None).unwrap();
    assert_eq!(tasks.live_subscriptions(), 1);
    tasks.create(bob, titled("bob's")).unwrap();
    let milk = tasks.create(alice, titled("milk")).unwrap();
    let patch = TaskPatch {
        done: Some(true),
        ..TaskPatch::default()
    };
    tasks.update(alice, milk.id, patch, None).unwrap();
    tasks.delete(alice, before.id, None).unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.extend(block_on(live.next()).unwrap());
    }
    // (numbers are the whole log's: bob's creation took 2)
    let kinds: Vec<_> = seen
        .iter()
        .map(|c| (c.position.get(), c.kind, c.task_id().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            (3, ChangeKind::TaskCreated, milk.id),
            (4, ChangeKind::TaskUpdated, milk.id),
            (5, ChangeKind::TaskDeleted, before.id),
        ]
    );
    assert!(seen[1].task().is_some_and(|t| t.done));
    assert_eq!(live.cursor(), ChangeCursor::new(alice, LogPosition::new(5)));
    // Caught up: nothing more to read.
    assert!(live.read(ChangeLimit::default()).unwrap().is_empty());

    drop(live);
    assert_eq!(tasks.live_subscriptions(), 0);
}

/// A writer on another thread, through a clone of the service: the
/// subscriber, parked between reads, is woken each time and ends with
/// every change exactly once, in order.
#[test]
fn a_subscriber_parked_between_writes_gets_each_change_once_in_order() {
    let h = harness();
    let alice = h.register("alice", "correct horse").id;
    let store: Arc<MemoryStore> = h.store.clone();
    let tasks = TaskService::new(store, h.clock.clone(), Arc::new(SeededRandom::new(5)));
    let mut live = tasks.subscribe(alice, None).unwrap();
    const WRITES: u64 = 300;
    let writer = {
        let tasks = tasks.clone();
        std::thread::spawn(move || {
            for n in 0..WRITES {
                tasks.create(alice, titled(&format!("task {n}"))).unwrap();
                if n % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < WRITES {
        seqs.extend(
            block_on(live.next())
                .unwrap()
                .iter()
                .map(|c| c.position.get()),
        );
    }
    writer.join().unwrap();
    assert_eq!(seqs, (1..=WRITES).collect::<Vec<_>>());
}

#[test]
fn a_subscription_from_a_cursor_resumes_there_and_bad_cursors_are_refused() {
    let h = harness();
    let alice = h.register("alice", "correct horse").id;
    let bob = h.register("bob", "battery staple").id;
    let store: Arc<MemoryStore> = h.store.clone();
    let clock = h.clock.clone();
    let tasks = TaskService::new(store, clock.clone(), Arc::new(SeededRandom::new(7)));
    let first = tasks.create(alice, titled("first")).unwrap();
    clock.advance(Duration::from_secs(120));
    let second = tasks.create(alice, titled("second")).unwrap();

    let mut resumed = tasks
        .subscribe(alice, Some(&ChangeCursor::new(alice, LogPosition::new(1))))
        .unwrap();
    let changes = block_on(resumed.next()).unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| c.task_id().unwrap())
            .collect::<Vec<_>>(),
        [second.id]
    );
    let _ = first;

    // Someone else's cursor, or one past the head: invalid input.
    for (owner, cursor) in [
        (bob, ChangeCursor::new(alice, LogPosition::new(1))),
        (alice, ChangeCursor::new(alice, LogPosition::new(3))),
    ] {
        assert!(matches!(
            tasks.subscribe(owner, Some(&cursor)),
            Err(Error::Invalid(_))
        ));
    }
    // Behind the retention: gone.
    assert_eq!(tasks.prune_changes(Duration::from_secs(60)).unwrap(), 1);
    assert!(matches!(
        tasks.subscribe(alice, Some(&ChangeCursor::new(alice, LogPosition::new(0)))),
        Err(Error::Gone)
    ));
    // The live subscriber behind it is told so at its next read.
    let mut behind = tasks
        .subscribe(alice, Some(&ChangeCursor::new(alice, LogPosition::new(1))))
        .unwrap();
    clock.advance(Duration::from_secs(120));
    tasks.create(alice, titled("third")).unwrap();
    assert_eq!(tasks.prune_changes(Duration::from_secs(60)).unwrap(), 1);
    assert!(matches!(
        behind.read(ChangeLimit::default()),
        Err(Error::Gone)
    ));
}

/// A write to a shared project wakes every member who waits, not only the
/// writer: the members are looked up when someone in the process waits
/// (and only then), and a member who starts waiting after the write finds
/// it in the log.
#[test]
fn a_write_to_a_shared_project_wakes_every_member_waiting() {
    use std::future::Future as _;
    use std::task::{Context, Poll, Waker};

    use todo_core::{NewProject, ProjectName, ProjectRole, ProjectService, Username};

    let h = harness();
    let alice = h.register("alice", "correct horse").id;
    let bob = h.register("bob", "battery staple").id;
    let store: Arc<MemoryStore> = h.store.clone();
    let tasks = TaskService::new(
        store.clone(),
        h.clock.clone(),
        Arc::new(SeededRandom::new(3)),
    );
    let projects = ProjectService::new(
        store.clone(),
        store,
        h.clock.clone(),
        Arc::new(SeededRandom::new(4)),
    )
    .waking(&tasks);
    let new = NewProject {
        name: ProjectName::parse("Garden").unwrap(),
        description: todo_core::Description::default(),
        color: None,
    };
    let (garden, _) = projects.create(alice, new).unwrap();
    let bobs_name = Username::parse("bob").unwrap();
    projects
        .set_member(alice, garden.id, &bobs_name, ProjectRole::Editor)
        .unwrap();
    // Nobody waits: the write is made, and read by whoever comes later.
    let early = tasks
        .create(
            alice,
            NewTask {
                project: Some(garden.id),
                ..titled("early")
            },
        )
        .unwrap();

    let mut live = tasks.subscribe(bob, None).unwrap();
    let woken = |live: &todo_core::ChangeSubscription| {
        let mut changed = std::pin::pin!(live.changed());
        let mut context = Context::from_waker(Waker::noop());
        changed.as_mut().poll(&mut context) == Poll::Ready(())
    };
    // (a new subscription reads first: nothing has rung it yet)
    assert!(!woken(&live));
    let late = tasks
        .create(
            alice,
            NewTask {
                project: Some(garden.id),
                ..titled("late")
            },
        )
        .unwrap();
    assert!(woken(&live), "alice's write to the garden rings bob");
    let seen: Vec<_> = live
        .read(ChangeLimit::default())
        .unwrap()
        .iter()
        .filter_map(|c| c.task_id())
        .collect();
    assert_eq!(seen, [late.id]);
    let from_start = tasks.changes(bob, None, ChangeLimit::default()).unwrap();
    assert!(
        from_start
            .items
            .iter()
            .any(|c| c.task_id() == Some(early.id)),
        "the write made while nobody waited is in bob's log"
    );
}
