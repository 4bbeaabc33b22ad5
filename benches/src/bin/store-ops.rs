//! Store operations, run `N` times on a fresh SQLite store, for counting
//! their instructions under callgrind (`scripts/instructions`): a count
//! that the machine's noise does not move, where a timed run on this
//! kind of shared machine varies by a fifth from one run to the next.
//! The script runs each operation at `N = 0` and at `N > 0` and divides
//! the difference: the set-up (the migrations, the seed) cancels out.
//!
//! ```text
//! cargo build --release -p todo-benches --bin store-ops
//! ./target/release/store-ops OPERATION N
//! ```
//! Operations (the load harness's users, at the store):
//! - `create-inbox`: creations in the caller's Inbox;
//! - `create-shared`: creations in a project of three members (each
//!   creation recorded once, as an Inbox's);
//! - `list-inbox`: a page of 20 of an Inbox of 100 tasks;
//! - `list-four`: a page of 20 of 100 tasks spread over the caller's
//!   Inbox and three shared projects (one merged statement).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use todo_core::{
    Description, Labels, Member, PageLimit, PasswordHash, Priority, Project, ProjectId,
    ProjectName, ProjectRole, ProjectStore, Reminders, Role, Task, TaskId, TaskInsert, TaskQuery,
    TaskStore, TaskVersion, TimeZoneName, Timestamp, Title, User, UserId, UserRecord, UserStore,
    Username,
};
use todo_store::SqlStore;
use todo_store::testing::TestDatabase;

/// The seeded lists' tasks.
const SEEDED: u64 = 100;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(operation), Some(n)) = (args.next(), args.next()) else {
        panic!("usage: store-ops create-inbox|create-shared|list-inbox|list-four N");
    };
    let n: u64 = n.parse().expect("N, a count");
    let database = TestDatabase::sqlite();
    let store = &database.store;
    let (alice, bob, carol) = (
        user(store, 1, "alice"),
        user(store, 2, "bob"),
        user(store, 3, "carol"),
    );
    let shed = project(store, alice, 1, &[bob, carol]);
    match operation.as_str() {
        "create-inbox" => create(store, bob, &[ProjectId::inbox_of(bob)], 0..n),
        "create-shared" => create(store, bob, &[shed], 0..n),
        "list-inbox" | "list-four" => {
            let mut projects = vec![ProjectId::inbox_of(bob)];
            if operation == "list-four" {
                projects.push(shed);
                projects.push(project(store, carol, 2, &[bob]));
                projects.push(project(store, alice, 3, &[bob]));
            }
            create(store, bob, &projects, 0..SEEDED);
            let query = TaskQuery {
                limit: PageLimit::new(20).unwrap(),
                ..TaskQuery::default()
            };
            for _ in 0..n {
                // (a page and one more, as the service asks: whether
                // there is a next page)
                let page = store.list_tasks(bob, &query, None, 21).unwrap();
                assert_eq!(page.len(), 21);
            }
        }
        other => panic!("no operation {other}"),
    }
}

fn at(seconds: u64) -> Timestamp {
    let seconds = i64::try_from(seconds).unwrap();
    Timestamp::from_unix_micros(1_767_225_600_000_000 + seconds * 1_000_000).unwrap()
}

/// An id of `kind` (a per-kind prefix, so that kinds never collide).
fn id(kind: u128, n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128((kind << 64) | u128::from(n))
}

fn user(store: &SqlStore, n: u64, name: &str) -> UserId {
    let id = UserId::from_uuid(id(1, n));
    store
        .insert_user(&UserRecord {
            user: User {
                id,
                username: Username::parse(name).unwrap(),
                email: None,
                email_verified: false,
                role: Role::User,
                disabled: false,
                created_at: at(0),
                updated_at: at(0),
            },
            password_hash: PasswordHash::new(format!("$fake${name}")),
            tokens_revoked_before: None,
        })
        .unwrap();
    id
}

/// A project of `owner`'s, shared with `editors`.
fn project(store: &SqlStore, owner: UserId, n: u64, editors: &[UserId]) -> ProjectId {
    let project = Project {
        id: ProjectId::from_uuid(id(2, n)),
        owner,
        name: ProjectName::parse("Shed").unwrap(),
        description: Description::parse("").unwrap(),
        color: None,
        inbox: false,
        archived: false,
        created_at: at(1),
        updated_at: at(1),
        version: TaskVersion::FIRST,
    };
    assert!(store.insert_project_within(&project, None).unwrap());
    for editor in editors {
        let member = Member {
            user: *editor,
            role: ProjectRole::Editor,
            added_at: at(2),
        };
        store
            .put_member(project.id, &member, 10, 100, at(2))
            .unwrap();
    }
    project.id
}

/// Tasks `numbers` created by `by`, taking turns among `projects`, as the
/// load harness's are: a title, a word of description, one label.
fn create(store: &SqlStore, by: UserId, projects: &[ProjectId], numbers: std::ops::Range<u64>) {
    for n in numbers {
        let project = projects[usize::try_from(n).unwrap() % projects.len()];
        let task = Task {
            id: TaskId::from_uuid(id(3, n)),
            project,
            created_by: by,
            parent: None,
            recurrence: None,
            time_zone: TimeZoneName::utc(),
            series: None,
            reminders: Reminders::default(),
            title: Title::parse(&format!("Seed task {n}")).unwrap(),
            description: Description::parse("words").unwrap(),
            done: false,
            completed_at: None,
            due_at: None,
            priority: Priority::new(1).unwrap(),
            labels: Labels::parse(["home"]).unwrap(),
            archived: false,
            created_at: at(10 + n),
            updated_at: at(10 + n),
            version: TaskVersion::FIRST,
        };
        let inserted = store.insert_task_within(&task, Some(1_000_000), &mut |_| true);
        assert_eq!(inserted.unwrap(), TaskInsert::Inserted);
    }
}
