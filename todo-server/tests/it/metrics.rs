//! What the store reports in a scrape.

use todo_core::testing::SeededRandom;
use todo_core::{Role, Timestamp, User, UserId, UserRecord, UserStore, Username};
use todo_http::Metrics;
use todo_server::StoreProbe;
use todo_store::{DatabaseUrl, SqlStore, StoreConfig};

fn scrape(store: &SqlStore) -> String {
    let metrics = Metrics::new(&[StoreProbe::shared(store.clone())]);
    let mut text = String::new();
    metrics.render(&mut text);
    text
}

/// The value of the series `name` (a line `name value`), if present.
fn value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_sqlite_store_reports_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_and_migrate(&StoreConfig::new(DatabaseUrl::Sqlite(
        dir.path().join("todo.db"),
    )))
    .unwrap();
    let before = scrape(&store);
    let batches = value(&before, "todo_db_group_commits_total").expect("batches counted");
    let writes = value(&before, "todo_db_group_commit_writes_total").expect("writes counted");

    let now = Timestamp::from_unix_micros(1_790_000_000_000_000).unwrap();
    let id = UserId::from_uuid(todo_core::new_v7(now, &SeededRandom::new(1)).unwrap());
    store
        .insert_user(&UserRecord {
            user: User {
                id,
                username: Username::parse("counted").unwrap(),
                email: None,
                email_verified: false,
                role: Role::User,
                disabled: false,
                created_at: now,
                updated_at: now,
            },
            password_hash: todo_core::PasswordHash::new("$fake$".into()),
            tokens_revoked_before: None,
        })
        .unwrap();

    let after = scrape(&store);
    assert_eq!(
        value(&after, "todo_db_group_commits_total"),
        Some(batches + 1)
    );
    assert_eq!(
        value(&after, "todo_db_group_commit_writes_total"),
        Some(writes + 1)
    );
    assert!(
        after.contains("# TYPE todo_db_group_commits_total counter"),
        "{after}"
    );
}
