//! Store operations with 100,000 tasks over 1,000 users already stored:
//! create, get, list a page of 50 with filters, patch, delete — on SQLite
//! and, when `TODO_TEST_POSTGRES_URL` names a server, on PostgreSQL
//! (`scripts/bench` starts a throwaway one).
//!
//! `cargo bench -p todo-benches --bench store`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use todo_core::testing::SeededRandom;
use todo_core::{
    Description, Label, Labels, PasswordHash, Priority, Role, Task, TaskId, TaskQuery, TaskStore,
    TaskVersion, Timestamp, Title, User, UserId, UserRecord, UserStore, Username, new_v7,
};
use todo_store::SqlStore;
use todo_store::testing::TestDatabase;

const USERS: u64 = 1_000;
const TASKS_PER_USER: u64 = 100;
const T0: i64 = 1_767_225_600_000_000;

fn at(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + micros).unwrap()
}

fn task(owner: UserId, n: u64) -> Task {
    let created = at(n as i64 * 1_000);
    let labels = ["home", "work", "errands", "later"];
    Task {
        id: TaskId::from_uuid(new_v7(created, &SeededRandom::new(n)).unwrap()),
        project: todo_core::ProjectId::inbox_of(owner),
        created_by: owner,
        parent: None,
        recurrence: None,
        time_zone: todo_core::TimeZoneName::utc(),
        series: None,
        reminders: todo_core::Reminders::default(),
        title: Title::parse(&format!("Task number {n}")).unwrap(),
        description: Description::parse("Some words about the task, as people write them.")
            .unwrap(),
        done: n.is_multiple_of(3),
        completed_at: (n.is_multiple_of(3)).then_some(created),
        due_at: n.is_multiple_of(2).then(|| at(n as i64 * 7_000)),
        priority: Priority::new((n % 4) as i64).unwrap(),
        labels: Labels::parse(
            [labels[(n % 4) as usize], labels[((n / 4) % 4) as usize]]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>(),
        )
        .unwrap(),
        archived: n.is_multiple_of(10),
        created_at: created,
        updated_at: created,
        version: TaskVersion::FIRST,
    }
}

/// 1,000 users with 100 tasks each.
fn seed(store: &SqlStore) -> Vec<(UserId, Vec<Task>)> {
    let mut owners = Vec::new();
    for u in 0..USERS {
        let id = UserId::from_uuid(new_v7(at(0), &SeededRandom::new(1_000_000 + u)).unwrap());
        let user = User {
            id,
            username: Username::parse(&format!("user{u}")).unwrap(),
            email: None,
            email_verified: false,
            role: Role::User,
            disabled: false,
            created_at: at(0),
            updated_at: at(0),
        };
        store
            .insert_user(&UserRecord {
                user,
                password_hash: PasswordHash::new("x".into()),
                tokens_revoked_before: None,
            })
            .unwrap();
        let tasks: Vec<Task> = (0..TASKS_PER_USER)
            .map(|t| task(id, u * TASKS_PER_USER + t))
            .collect();
        for t in &tasks {
            insert(store, t);
        }
        owners.push((id, tasks));
    }
    owners
}

/// Inserts a task in its creator's Inbox, without a quota.
fn insert(store: &SqlStore, task: &Task) {
    let inserted = store.insert_task_within(task, None, &mut |_| true).unwrap();
    assert_eq!(inserted, todo_core::TaskInsert::Inserted);
}

fn bench_backend(c: &mut Criterion, name: &str, database: &TestDatabase) {
    let store = &database.store;
    let started = std::time::Instant::now();
    let owners = seed(store);
    eprintln!(
        "{name}: seeded {} tasks in {:.1?}",
        USERS * TASKS_PER_USER,
        started.elapsed()
    );
    let next = AtomicU64::new(10_000_000);
    let pick = AtomicU64::new(0);
    let mut group = c.benchmark_group(format!("store {name} (100k tasks, 1k users)"));

    group.bench_function("create", |b| {
        b.iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let owner = owners[(n % USERS) as usize].0;
            insert(store, black_box(&task(owner, n)));
        })
    });
    group.bench_function("get", |b| {
        b.iter(|| {
            let n = pick.fetch_add(7919, Ordering::Relaxed);
            let (owner, tasks) = &owners[(n % USERS) as usize];
            let t = &tasks[(n % TASKS_PER_USER) as usize];
            black_box(store.find_task(*owner, t.id).unwrap().unwrap());
        })
    });
    let filtered = TaskQuery {
        label: Some(Label::parse("home").unwrap()),
        done: Some(false),
        ..TaskQuery::default()
    };
    group.bench_function("list 50, label and done filters", |b| {
        b.iter(|| {
            let n = pick.fetch_add(1, Ordering::Relaxed);
            let owner = owners[(n % USERS) as usize].0;
            black_box(store.list_tasks(owner, &filtered, None, 51).unwrap());
        })
    });
    let plain = TaskQuery::default();
    group.bench_function("list 50", |b| {
        b.iter(|| {
            let n = pick.fetch_add(1, Ordering::Relaxed);
            let owner = owners[(n % USERS) as usize].0;
            black_box(store.list_tasks(owner, &plain, None, 51).unwrap());
        })
    });
    group.bench_function("patch", |b| {
        b.iter_batched(
            || {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = task(owners[(n % USERS) as usize].0, n);
                insert(store, &t);
                t
            },
            |t| {
                let renamed = store
                    .modify_task(t.created_by, black_box(t.id), &mut |current, _| {
                        let mut changed = current.clone();
                        changed.title = Title::parse("Renamed").unwrap();
                        changed.version = current.version.next();
                        Some(changed)
                    })
                    .unwrap();
                assert_eq!(renamed.unwrap().version, t.version.next());
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("delete", |b| {
        b.iter_batched(
            || {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = task(owners[(n % USERS) as usize].0, n);
                insert(store, &t);
                t
            },
            |t| {
                assert!(
                    store
                        .delete_task(t.created_by, black_box(t.id), t.updated_at, &mut |_, _| {
                            true
                        })
                        .unwrap()
                        .is_some()
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn store(c: &mut Criterion) {
    bench_backend(c, "SQLite", &TestDatabase::sqlite());
    if std::env::var("TODO_TEST_POSTGRES_URL").is_ok() {
        bench_backend(c, "PostgreSQL", &TestDatabase::postgres().unwrap());
    } else {
        eprintln!("PostgreSQL skipped: set TODO_TEST_POSTGRES_URL (scripts/bench does)");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = store
}
criterion_main!(benches);
