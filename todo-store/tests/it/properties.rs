//! Property tests of listing: for random task sets and random queries,
//! filtering, sorting and keyset pagination give the same pages on SQLite,
//! PostgreSQL and a plain in-memory model, and a walk through the pages
//! never repeats or skips a task, also while tasks are added.
//!
//! Each case gets a new owner in one shared database: owner scoping keeps
//! the cases apart, and no database is created per case.

use crate::conformance::OwnTasks as _;
use std::collections::HashSet;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use todo_core::testing::SeededRandom;
use todo_core::{
    Description, Label, Labels, PasswordHash, Priority, Role, SearchText, Task, TaskId, TaskQuery,
    TaskSort, TaskStore, TaskVersion, Timestamp, Title, User, UserId, UserRecord, UserStore,
    Username, new_v7,
};
use todo_store::testing::TestDatabase;

static SQLITE: LazyLock<TestDatabase> = LazyLock::new(TestDatabase::sqlite);
static POSTGRES: LazyLock<Option<TestDatabase>> = LazyLock::new(TestDatabase::postgres);
static NEXT: AtomicU64 = AtomicU64::new(1);

const T0: i64 = 1_767_225_600_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + seconds * 1_000_000).unwrap()
}

/// One task as generated: small alphabets, so that filters hit and ties happen.
#[derive(Debug, Clone)]
struct Spec {
    title: usize,
    described: bool,
    done: bool,
    due: Option<i64>,
    priority: i64,
    labels: Vec<usize>,
    archived: bool,
    created: i64,
}

const TITLES: [&str; 6] = [
    "Buy milk",
    "50% off",
    "snake_case",
    "Ünïcode STRASSE",
    "report",
    "MILK run",
];
const LABELS: [&str; 4] = ["a", "b", "Work", "work"];
const NEEDLES: [&str; 7] = ["%", "_", "milk", "ü", "strasse", "e", "notes"];

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..TITLES.len(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0i64..30),
        0i64..4,
        prop::collection::btree_set(0..LABELS.len(), 0..3),
        prop::bool::weighted(0.2),
        0i64..12,
    )
        .prop_map(
            |(title, described, done, due, priority, labels, archived, created)| Spec {
                title,
                described,
                done,
                due,
                priority,
                labels: labels.into_iter().collect(),
                archived,
                created,
            },
        )
}

fn query() -> impl Strategy<Value = TaskQuery> {
    let sorts = [
        TaskSort::CreatedAsc,
        TaskSort::CreatedDesc,
        TaskSort::DueAsc,
        TaskSort::DueDesc,
        TaskSort::PriorityAsc,
        TaskSort::PriorityDesc,
    ];
    (
        any::<Option<bool>>(),
        prop::bool::weighted(0.2),
        prop::option::of(0..LABELS.len()),
        prop::option::of(0..NEEDLES.len()),
        prop::option::of(0i64..30),
        prop::option::of(0i64..30),
        0..sorts.len(),
    )
        .prop_map(
            move |(done, archived, label, needle, before, after, sort)| TaskQuery {
                done,
                archived,
                label: label.map(|l| Label::parse(LABELS[l]).unwrap()),
                text: needle.map(|n| SearchText::parse(NEEDLES[n]).unwrap()),
                due_before: before.map(|s| at(1000 + s)),
                due_after: after.map(|s| at(1000 + s)),
                sort: sorts[sort],
                ..TaskQuery::default()
            },
        )
}

fn owner(store: &dyn UserStore) -> UserId {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = UserId::from_uuid(new_v7(at(0), &SeededRandom::new(n * 7919)).unwrap());
    let user = User {
        id,
        username: Username::parse(&format!("prop{n}_{}", std::process::id())).unwrap(),
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
    id
}

fn task(owner: UserId, spec: &Spec, seed: u64) -> Task {
    Task {
        id: TaskId::from_uuid(new_v7(at(100 + spec.created), &SeededRandom::new(seed)).unwrap()),
        project: todo_core::ProjectId::inbox_of(owner),
        created_by: owner,
        parent: None,
        recurrence: None,
        time_zone: todo_core::TimeZoneName::utc(),
        series: None,
        reminders: todo_core::Reminders::default(),
        title: Title::parse(TITLES[spec.title]).unwrap(),
        description: Description::parse(if spec.described {
            "notes: 100% done_ish"
        } else {
            ""
        })
        .unwrap(),
        done: spec.done,
        completed_at: spec.done.then(|| at(500)),
        due_at: spec.due.map(|s| at(1000 + s)),
        priority: Priority::new(spec.priority).unwrap(),
        labels: Labels::parse(spec.labels.iter().map(|l| LABELS[*l])).unwrap(),
        archived: spec.archived,
        created_at: at(100 + spec.created),
        updated_at: at(100 + spec.created),
        version: TaskVersion::FIRST,
    }
}

/// The model: every filter, then the sort by (key, id), in plain Rust.
fn model(tasks: &[Task], query: &TaskQuery) -> Vec<TaskId> {
    let mut found: Vec<&Task> = tasks.iter().filter(|t| query.matches(t)).collect();
    found.sort_by_key(|t| (query.sort.key(t), t.id));
    if query.sort.is_descending() {
        found.reverse();
    }
    found.iter().map(|t| t.id).collect()
}

fn check<S: UserStore + TaskStore>(
    store: &S,
    specs: &[Spec],
    queries: &[TaskQuery],
    page: usize,
) -> Result<(), TestCaseError> {
    for query in queries {
        // A fresh owner per query: the tasks added while walking stay apart.
        let owner = owner(store);
        let base = NEXT.fetch_add(1, Ordering::Relaxed) * 1_000_000;
        let tasks: Vec<Task> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| task(owner, s, base + i as u64))
            .collect();
        for t in &tasks {
            store.insert_task(t).unwrap();
        }
        let expected = model(&tasks, query);
        let got: Vec<TaskId> = store
            .list_tasks(owner, query, None, 1000)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        prop_assert_eq!(&got, &expected, "query {:?}", query);
        if let Some(in_place) = store.list_tasks_in_place(owner, query, None, 1000) {
            let in_place: Vec<TaskId> = in_place.unwrap().iter().map(|t| t.id).collect();
            prop_assert_eq!(&in_place, &expected, "in place: query {:?}", query);
        }

        // Walk in pages, adding a task after every page.
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut added = 0u64;
        let mut pages = 0u32;
        loop {
            // In place where the store can (every other page), else blocking.
            pages += 1;
            let items = match store.list_tasks_in_place(owner, query, cursor.as_ref(), page) {
                Some(items) if pages.is_multiple_of(2) => items.unwrap(),
                _ => store
                    .list_tasks(owner, query, cursor.as_ref(), page)
                    .unwrap(),
            };
            seen.extend(items.iter().map(|t| t.id));
            let extra = Spec {
                created: 50 + added as i64,
                ..specs.first().cloned().unwrap_or_else(|| Spec {
                    title: 0,
                    described: false,
                    done: false,
                    due: None,
                    priority: 0,
                    labels: vec![],
                    archived: false,
                    created: 0,
                })
            };
            // A few additions: tasks added after the end of an ascending
            // order are (rightly) listed, so endless additions never end.
            if added < 5 {
                store
                    .insert_task(&task(owner, &extra, base + 500_000 + added))
                    .unwrap();
                added += 1;
            }
            match items.last() {
                Some(last) if items.len() == page => cursor = Some(query.cursor_after(last)),
                _ => break,
            }
            prop_assert!(seen.len() < 10_000, "the walk does not end");
        }
        let unique: HashSet<TaskId> = seen.iter().copied().collect();
        prop_assert_eq!(
            unique.len(),
            seen.len(),
            "a task was listed twice: {:?}",
            query
        );
        prop_assert!(
            expected.iter().all(|id| unique.contains(id)),
            "a task was skipped: {:?}",
            query
        );
        prop_assert!(
            seen.iter()
                .filter(|id| expected.contains(id))
                .copied()
                .collect::<Vec<_>>()
                == expected,
            "the original tasks came out of order: {:?}",
            query
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn memory_lists_like_the_model(specs in prop::collection::vec(spec(), 0..30), queries in prop::collection::vec(query(), 1..4), page in 1usize..7) {
        check(&todo_core::memory::MemoryStore::new(), &specs, &queries, page)?;
    }

    #[test]
    fn sqlite_lists_like_the_model(specs in prop::collection::vec(spec(), 0..30), queries in prop::collection::vec(query(), 1..4), page in 1usize..7) {
        check(&SQLITE.store, &specs, &queries, page)?;
    }

    #[test]
    fn postgres_lists_like_the_model(specs in prop::collection::vec(spec(), 0..30), queries in prop::collection::vec(query(), 1..4), page in 1usize..7) {
        if let Some(database) = POSTGRES.as_ref() {
            check(&database.store, &specs, &queries, page)?;
        }
    }
}
