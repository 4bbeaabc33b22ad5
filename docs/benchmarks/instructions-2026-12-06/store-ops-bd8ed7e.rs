//! The store operations of `benches/src/bin/store-ops.rs` (create-inbox as
//! `create1`, list-inbox as `list1`), written against bd8ed7e's API (before
//! projects: a task has an owner, no project), to count that version's
//! instructions the same way (BENCHMARKS.md, session 21). Built as an
//! example of that checkout's todo-store (`icount N MODE`); not compiled here.
#![allow(clippy::unwrap_used, missing_docs)]
use todo_core::*;
use todo_store::testing::TestDatabase;

const T0: i64 = 1_767_225_600_000_000;
fn at(s: i64) -> Timestamp { Timestamp::from_unix_micros(T0 + s * 1_000_000).unwrap() }
fn user(store: &todo_store::SqlStore, name: &str, seed: u64) -> UserId {
    let id = UserId::from_uuid(uuid::Uuid::from_u128((1u128 << 64) | u128::from(seed)));
    store.insert_user(&UserRecord { user: User { id, username: Username::parse(name).unwrap(), email: None, role: Role::User, disabled: false, created_at: at(1), updated_at: at(1) }, password_hash: PasswordHash::new(format!("$fake${name}")), tokens_revoked_before: None }).unwrap();
    id
}
fn task(owner: UserId, i: u64) -> Task {
    Task { id: TaskId::from_uuid(uuid::Uuid::from_u128((3u128 << 64) | u128::from(i))), owner, title: Title::parse(&format!("Seed task {i}")).unwrap(), description: Description::parse("words").unwrap(), done: false, completed_at: None, due_at: None, priority: Priority::new(1).unwrap(), labels: Labels::parse(["home"]).unwrap(), archived: false, created_at: at(10 + i as i64), updated_at: at(10 + i as i64), version: TaskVersion::FIRST }
}
fn main() {
    let n: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let mode = std::env::args().nth(2).unwrap_or_else(|| "create1".into());
    let db = TestDatabase::sqlite();
    let store = &db.store;
    let _alice = user(store, "alice", 1);
    let bob = user(store, "bob", 2);
    let _carol = user(store, "carol", 3);
    match mode.as_str() {
        "create1" => for i in 0..n { assert!(store.insert_task_within(&task(bob, i), 100_000).unwrap()); },
        "list1" => {
            for i in 0..100 { assert!(store.insert_task_within(&task(bob, i), 100_000).unwrap()); }
            let q = TaskQuery { limit: PageLimit::new(20).unwrap(), ..TaskQuery::default() };
            for _ in 0..n { let page = store.list_tasks(bob, &q, None, 21).unwrap(); assert_eq!(page.len(), 21); }
        }
        _ => panic!("mode"),
    }
}
