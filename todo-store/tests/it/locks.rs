//! PostgreSQL's lock order around the change log: writers of one task,
//! the readers that number the log (`changes::number_committed`, under
//! `change_log_head`'s row), the trims and prunes that drop its rows, and
//! the deletions of projects and users that cascade into it. Each test
//! races them and asserts that none fails: a deadlock is a 503 to
//! someone (PostgreSQL's 40P01, `StoreError::Unavailable`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection};
use todo_core::{
    LogPosition, MAX_CHANGES_PER_PROJECT, MemberPut, ProjectId, ProjectRole, ProjectStore as _,
    Task, TaskId, TaskStore as _, TaskVersion, Title, UserId,
};
use todo_store::testing::TestDatabase;
use todo_store::{DatabaseUrl, SqlStore};

use crate::conformance::{OwnTasks as _, a_project, at, full_task, member, new_user};

fn url(database: &TestDatabase) -> String {
    let DatabaseUrl::Postgres(url) = &database.config.url else {
        panic!("a PostgreSQL database")
    };
    url.clone()
}

/// Copies the newest change of `project` `copies` times (committed, not
/// numbered yet): a project past its cap without writing it that often.
fn fill(url: &str, project: ProjectId, copies: u64) {
    const COLUMNS: &str = "project_id, recipient_id, kind, subject_id, recorded_at, title, \
        description, done, completed_at, due_at, priority, labels, archived, created_at, \
        updated_at, version, created_by, parent_id, recurrence, time_zone, series_id, \
        series_start, occurrence, reminders, color, inbox, role, member_id, username";
    let mut conn = PgConnection::establish(url).unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO change_log ({COLUMNS}) SELECT {COLUMNS} FROM change_log, \
         generate_series(1, {copies}) WHERE pos = \
         (SELECT max(pos) FROM change_log WHERE project_id = '{project}')"
    ))
    .unwrap();
}

/// A task of `project`, written by `by`.
fn task_in(project: ProjectId, by: UserId, seed: u64) -> Task {
    Task {
        project,
        created_by: by,
        ..full_task(by, seed, 30)
    }
}

fn touch(store: &SqlStore, user: UserId, id: TaskId, n: u64) -> Result<(), todo_core::StoreError> {
    let written = store.modify_task(user, id, &mut |current, _| {
        let mut next = current.clone();
        next.title = Title::parse(&format!("edit {n}")).unwrap();
        next.version = current.version.next();
        Some(next)
    })?;
    assert!(written.is_some(), "the task is there");
    Ok(())
}

/// Reads `user`'s stream from where it last looked until `done`, every
/// read numbering what committed; returns the reads' failures.
fn reader(
    store: SqlStore,
    user: UserId,
    barrier: Arc<Barrier>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        barrier.wait();
        let (mut reads, mut failures) = (0, Vec::new());
        let mut after = LogPosition::START;
        while !done.load(Ordering::SeqCst) {
            match store.changes_after(user, after, 200) {
                Ok(log) => after = log.scanned_through,
                Err(error) => failures.push(format!("read: {error}")),
            }
            reads += 1;
        }
        (reads, failures)
    })
}

/// Attack of session 22, F4: clients of one shared project editing the
/// same task on PostgreSQL got a 503 now and then (28 in 12,000): a
/// write that trimmed its project wrote the project's row (its prune
/// mark), which every other writer of the project holds shared while it
/// waits for the task's row, held by the trimming writer: a cycle. The
/// writers here are past the project's cap, so their trims cut, while
/// readers number the log under its head's row.
#[test]
fn postgres_writers_of_one_task_and_the_readers_numbering_never_deadlock() {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 250;
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let bob = new_user(store, "bob", 1).user.id;
    let garden = a_project(alice, "Garden", 10);
    assert!(store.insert_project_within(&garden, None).unwrap());
    let put = store.put_member(
        garden.id,
        &member(bob, ProjectRole::Editor, 20),
        10,
        100,
        at(20),
    );
    assert!(matches!(put.unwrap(), MemberPut::Added(_)));
    let task = task_in(garden.id, alice, 1);
    store.insert_task(&task).unwrap();
    fill(&url(&database), garden.id, MAX_CHANGES_PER_PROJECT);
    let before = store.changes_after(alice, LogPosition::START, 1).unwrap();
    assert_eq!(before.pruned_through, LogPosition::START, "nothing cut yet");

    let other = SqlStore::open(&database.config).unwrap();
    let stores = [store.clone(), other];
    let barrier = Arc::new(Barrier::new(WRITERS as usize + 2));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [alice, bob]
        .into_iter()
        .enumerate()
        .map(|(i, user)| reader(stores[i].clone(), user, barrier.clone(), done.clone()))
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = stores[(w % 2) as usize].clone();
            let barrier = barrier.clone();
            let user = if w % 2 == 0 { alice } else { bob };
            std::thread::spawn(move || {
                barrier.wait();
                (0..WRITES)
                    .filter_map(|n| touch(&store, user, task.id, n).err())
                    .map(|error| format!("write: {error}"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut failures: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    done.store(true, Ordering::SeqCst);
    for r in readers {
        let (reads, failed) = r.join().unwrap();
        assert!(reads > 0);
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let stored = store.find_task(alice, task.id).unwrap().unwrap();
    assert_eq!(
        stored.version,
        TaskVersion::new(task.version.get() + i64::try_from(WRITERS * WRITES).unwrap()).unwrap(),
        "every write went through"
    );
    // The writes trimmed (one in TRIM_EVERY, at random: none in 2,000 has
    // a chance of e^-7.8).
    let after = store.changes_after(alice, LogPosition::START, 1).unwrap();
    assert!(
        after.pruned_through > LogPosition::START,
        "the project was trimmed"
    );
}
