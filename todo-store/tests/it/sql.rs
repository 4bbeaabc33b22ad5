//! What only the SQL stores do: migrations, readiness, error classes.

use crate::conformance::OwnTasks as _;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use todo_core::StoreError;
use todo_store::{Backend, DatabaseUrl, SqlStore, StoreConfig};

use crate::backends;

/// Reverts the migrations applied last, down to and including the one
/// whose name holds `name` (a later migration goes first).
fn revert_through<DB: diesel::backend::Backend>(
    c: &mut impl MigrationHarness<DB>,
    dir: &str,
    name: &str,
) {
    let migrations = FileBasedMigrations::from_path(dir).unwrap();
    for _ in 0..20 {
        let reverted = c.revert_last_migration(migrations.clone()).unwrap();
        if reverted.to_string().contains(name) {
            return;
        }
    }
    panic!("{name} is not among the last 20 migrations applied");
}

fn migrations_run_once_even_when_started_together(url: DatabaseUrl) {
    const INSTANCES: usize = 4;
    let barrier = Arc::new(Barrier::new(INSTANCES));
    let runs: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store = SqlStore::open(&StoreConfig::new(url)).unwrap();
                barrier.wait();
                store.migrate()
            })
        })
        .collect();
    let ran: Vec<usize> = runs
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    let dir = match url.backend() {
        Backend::Sqlite => concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"),
        Backend::Postgres => concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"),
    };
    let migrations = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(
        ran.iter().sum::<usize>(),
        migrations,
        "each migration ran once: {ran:?}"
    );
    let store = SqlStore::open(&StoreConfig::new(url)).unwrap();
    assert_eq!(store.migrate().unwrap(), 0, "nothing left to run");
    store.ping().unwrap();
}

#[test]
fn sqlite_migrations_run_once_even_when_started_together() {
    let dir = tempfile::tempdir().unwrap();
    migrations_run_once_even_when_started_together(DatabaseUrl::Sqlite(dir.path().join("t.db")));
}

#[test]
fn postgres_migrations_run_once_even_when_started_together() {
    let Some(admin) = backends::postgres_admin_url() else {
        return;
    };
    let (url, _name) = backends::fresh_postgres_database(&admin);
    migrations_run_once_even_when_started_together(DatabaseUrl::parse(&url).unwrap());
}

#[test]
fn sqlite_store_creates_its_directory_and_reports_its_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/todo.db");
    let store =
        SqlStore::open_and_migrate(&StoreConfig::new(DatabaseUrl::Sqlite(path.clone()))).unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    let state = store.pool_state();
    assert!(state.connections >= 1 && state.max == 8, "{state:?}");
}

#[test]
fn an_unreachable_database_is_unavailable_within_the_acquire_timeout() {
    // Nothing listens on port 1 of loopback.
    let mut config =
        StoreConfig::new(DatabaseUrl::parse("postgres://todo@127.0.0.1:1/todo").unwrap());
    config.acquire_timeout = Duration::from_millis(500);
    let store = SqlStore::open(&config).expect("opening is lazy");
    let started = Instant::now();
    let error = store.ping().unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_store_on_a_fresh_fixture_answers_pings() {
    let fixture = backends::sqlite();
    fixture.sql.as_ref().unwrap().ping().unwrap();
    assert!(fixture.config.is_some());
    if let Some(pg) = backends::postgres() {
        let store = pg.sql.as_ref().unwrap();
        store.ping().unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
    }
}

/// Failed-login counts in the database (issue #11, finding 5): concurrent
/// attempts, on two pools as two instances would have, take slots through
/// one compare-and-set; device tokens and purging.
fn login_failures_are_reserved_atomically_and_shared(database: &todo_store::testing::TestDatabase) {
    use todo_core::{
        BackoffPolicy, LoginBackoff, RefreshTokenHash, ThrottleKey, Timestamp, UserStore as _,
        Username,
    };
    use todo_store::SqlLoginBackoff;

    let policy = BackoffPolicy {
        free_failures: 2,
        base_delay: Duration::from_secs(60),
        ..BackoffPolicy::default()
    };
    let first = SqlLoginBackoff::new(database.store.clone(), policy);
    let second = SqlLoginBackoff::new(SqlStore::open(&database.config).unwrap(), policy);
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap();
    let alice = Username::parse("alice").unwrap();
    let barrier = Barrier::new(12);
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let backoff = if i % 2 == 0 { &first } else { &second };
                let (barrier, alice) = (&barrier, &alice);
                s.spawn(move || {
                    barrier.wait();
                    backoff
                        .reserve(ThrottleKey::Account(alice), now)
                        .unwrap()
                        .is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(
        taken, 3,
        "two free attempts and one more, across both pools"
    );
    let wait = second
        .reserve(ThrottleKey::Account(&alice), now)
        .unwrap()
        .unwrap_err();
    assert_eq!(wait, Duration::from_secs(60));
    // A success clears the count everywhere.
    first.record_success(ThrottleKey::Account(&alice)).unwrap();
    assert!(
        second
            .reserve(ThrottleKey::Account(&alice), now)
            .unwrap()
            .is_ok()
    );

    // Devices: remembered for their account until they expire; a user's
    // devices go with the user.
    let carol = crate::conformance::new_user(&database.store, "carol", 0)
        .user
        .id;
    let device = RefreshTokenHash::new("ab".repeat(32));
    let expires = now.saturating_add(Duration::from_secs(3600));
    first.remember_device(&device, carol, now, expires).unwrap();
    assert_eq!(second.device_owner(&device, now).unwrap(), Some(carol));
    let unknown = RefreshTokenHash::new("cd".repeat(32));
    assert_eq!(second.device_owner(&unknown, now).unwrap(), None);
    assert_eq!(
        second.device_owner(&device, expires).unwrap(),
        None,
        "expired"
    );
    let dave = crate::conformance::new_user(&database.store, "dave", 1)
        .user
        .id;
    let daves = RefreshTokenHash::new("ef".repeat(32));
    first.remember_device(&daves, dave, now, expires).unwrap();
    assert!(database.store.delete_user(dave, now).unwrap());
    assert_eq!(
        first.device_owner(&daves, now).unwrap(),
        None,
        "deleted with dave"
    );

    // A user keeps their newest 16 devices; a password change or disabling
    // forgets them all (on every instance).
    let erin = crate::conformance::new_user(&database.store, "erin", 2)
        .user
        .id;
    let erins: Vec<_> = (0..20u8)
        .map(|i| RefreshTokenHash::new(format!("{i:02x}").repeat(32)))
        .collect();
    for (i, digest) in erins.iter().enumerate() {
        let at = now.saturating_add(Duration::from_millis(u64::try_from(i).unwrap()));
        first.remember_device(digest, erin, at, expires).unwrap();
    }
    for (i, digest) in erins.iter().enumerate() {
        let owner = second.device_owner(digest, now).unwrap();
        assert_eq!(
            owner.is_some(),
            i >= 4,
            "device {i}: only the newest 16 stay"
        );
    }
    assert_eq!(second.forget_devices(erin).unwrap(), 16);
    assert_eq!(first.device_owner(&erins[19], now).unwrap(), None);

    // Stale counts go; a count still delaying stays.
    let later = now.saturating_add(Duration::from_secs(2 * 3600));
    let bob = Username::parse("bob").unwrap();
    second
        .reserve(ThrottleKey::Account(&bob), later)
        .unwrap()
        .unwrap();
    assert_eq!(
        first.purge(later).unwrap(),
        2,
        "alice's hour-old count and carol's expired device"
    );
    assert_eq!(second.purge(later).unwrap(), 0, "bob's count still delays");
}

#[test]
fn sqlite_codes_keep_a_guessers_count_past_a_right_answer_and_purge_apart() {
    codes_keep_a_guessers_count_past_a_right_answer_and_purge_apart(
        &todo_store::testing::TestDatabase::sqlite(),
    );
}

#[test]
fn postgres_codes_keep_a_guessers_count_past_a_right_answer_and_purge_apart() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    codes_keep_a_guessers_count_past_a_right_answer_and_purge_apart(&database);
}

/// Second factors' codes (`f:` keys, `SqlLoginBackoff::for_codes`): a
/// right code clears the owner's typos but not a guesser's count past the
/// free failures (review of session 28, M1 and M2); the codes' purge and
/// the logins' each leave the other's keys alone.
fn codes_keep_a_guessers_count_past_a_right_answer_and_purge_apart(
    database: &todo_store::testing::TestDatabase,
) {
    use todo_core::{BackoffPolicy, LoginBackoff, ThrottleKey, Timestamp, UserId, Username};
    use todo_store::SqlLoginBackoff;

    let codes = SqlLoginBackoff::for_codes(database.store.clone(), BackoffPolicy::CODES);
    let logins = SqlLoginBackoff::new(database.store.clone(), BackoffPolicy::default());
    let start = Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap();
    let owner = UserId::from_uuid(uuid::Uuid::from_u128(1));
    let victim = UserId::from_uuid(uuid::Uuid::from_u128(2));
    // The owner's two typos, then the right code: forgotten.
    for i in 0..3 {
        let at = start.saturating_add(Duration::from_secs(i));
        assert!(
            codes
                .reserve(ThrottleKey::SecondFactor(owner, None), at)
                .unwrap()
                .is_ok()
        );
    }
    codes
        .settle(ThrottleKey::SecondFactor(owner, None))
        .unwrap();
    let next = start.saturating_add(Duration::from_secs(10));
    assert!(
        codes
            .reserve(ThrottleKey::SecondFactor(owner, None), next)
            .unwrap()
            .is_ok()
    );
    codes
        .settle(ThrottleKey::SecondFactor(owner, None))
        .unwrap();
    // A guesser's seven wrong codes (30 s apart, past each delay but the
    // growing ones), then the owner's right code: the guesser's count
    // stays, and so does its delay.
    let mut at = start;
    let mut counted = 0;
    for _ in 0..40 {
        if codes
            .reserve(ThrottleKey::SecondFactor(victim, None), at)
            .unwrap()
            .is_ok()
        {
            counted += 1;
        }
        if counted == 7 {
            break;
        }
        at = at.saturating_add(Duration::from_secs(30 * 60));
    }
    assert_eq!(counted, 7);
    // (the owner's code comes once the delay is over)
    let later = at.saturating_add(Duration::from_secs(5 * 3600));
    assert!(
        codes
            .reserve(ThrottleKey::SecondFactor(victim, None), later)
            .unwrap()
            .is_ok()
    );
    codes
        .settle(ThrottleKey::SecondFactor(victim, None))
        .unwrap();
    let wait = codes
        .reserve(ThrottleKey::SecondFactor(victim, None), later)
        .unwrap()
        .unwrap_err();
    assert_eq!(
        wait,
        Duration::from_secs(60),
        "still delayed as after seven: {wait:?}"
    );
    // A login's purge leaves codes alone, and the codes' purge logins.
    let alice = Username::parse("alice").unwrap();
    assert!(
        logins
            .reserve(ThrottleKey::Account(&alice), start)
            .unwrap()
            .is_ok()
    );
    let much_later = later.saturating_add(Duration::from_secs(30 * 24 * 3600));
    logins.purge(much_later).unwrap();
    let kept = codes
        .reserve(ThrottleKey::SecondFactor(victim, None), later)
        .unwrap();
    assert!(kept.is_err(), "a login purge took a code's count");
    assert_eq!(
        codes.purge(much_later).unwrap(),
        1,
        "the victim's count, the owner's was cleared"
    );
    assert!(
        codes
            .reserve(ThrottleKey::SecondFactor(victim, None), much_later)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn sqlite_login_failures_are_reserved_atomically_and_shared() {
    login_failures_are_reserved_atomically_and_shared(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_login_failures_are_reserved_atomically_and_shared() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    login_failures_are_reserved_atomically_and_shared(&database);
}

/// Writes of one process through the store share syncs on SQLite, each
/// acknowledged (and counted) once; PostgreSQL has group commit of its own.
#[test]
fn sqlite_writes_share_syncs_and_each_is_counted() {
    use todo_core::{NewTask, TaskService, Title};

    let database = todo_store::testing::TestDatabase::sqlite();
    let store = Arc::new(database.store.clone());
    let owner = crate::conformance::new_user(&*store, "writer", 0).user.id;
    let before = store
        .group_commit_stats()
        .expect("SQLite counts its group commits");
    let threads: Vec<_> = (0..8u64)
        .map(|seed| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let tasks = TaskService::new(
                    store,
                    Arc::new(todo_core::testing::ManualClock::new()),
                    Arc::new(todo_core::testing::SeededRandom::new(seed)),
                );
                for n in 0..25 {
                    let title = Title::parse(&format!("task {n}")).unwrap();
                    tasks.create(owner, NewTask::titled(title)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let after = store.group_commit_stats().unwrap();
    assert_eq!(after.writes - before.writes, 200);
    assert!(after.batches - before.batches <= 200);
    if let Some(postgres) = todo_store::testing::TestDatabase::postgres() {
        assert_eq!(postgres.store.group_commit_stats(), None);
    }
}

/// The stream's task count, as the quota reads it: a creation counts in, a
/// deletion out, and a count that drifted (tasks written by an older
/// version in a rolling upgrade, which counted nothing) is repaired where
/// it would refuse a creation.
fn the_stream_counts_its_owners_tasks_and_repairs_a_drift(
    database: &todo_store::testing::TestDatabase,
) {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use todo_store::DatabaseUrl;

    use crate::conformance::{a_project, at, full_task, member, new_user};

    let store = &database.store;
    let owner = new_user(store, "alice", 0).user.id;
    let task = |n: u64| full_task(owner, n, 10);
    let count_sql = format!("SELECT task_count FROM change_streams WHERE owner_id = '{owner}'");
    // Both statements name the count they read or wrote (RETURNING, on both
    // databases): the rows they touched.
    let set_sql = |n: i64| {
        format!(
            "UPDATE change_streams SET task_count = {n} WHERE owner_id = '{owner}' RETURNING task_count"
        )
    };
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        task_count: i64,
    }
    let rows = |query: &str| -> Vec<i64> {
        let counts: Vec<Count> = match &database.config.url {
            DatabaseUrl::Sqlite(path) => diesel::sql_query(query)
                .load(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap()),
            DatabaseUrl::Postgres(url) => {
                diesel::sql_query(query).load(&mut diesel::PgConnection::establish(url).unwrap())
            }
        }
        .unwrap();
        counts.into_iter().map(|c| c.task_count).collect()
    };
    let sql = |query: &str| -> i64 {
        let touched = rows(query);
        if query.starts_with("SELECT") {
            touched[0]
        } else {
            i64::try_from(touched.len()).unwrap()
        }
    };

    for n in 1..=3 {
        assert!(store.insert_within(&task(n), 10).unwrap());
    }
    assert_eq!(sql(&count_sql), 3);
    let first = task(1);
    assert!(
        store
            .delete_task_if(owner, first.id, None, first.created_at)
            .unwrap()
    );
    assert_eq!(sql(&count_sql), 2, "a deletion counts out");
    // Drifted high (deletions an older version did not count): the
    // creation the count would refuse recounts, and is let in.
    assert_eq!(sql(&set_sql(10)), 1);
    assert!(store.insert_within(&task(4), 10).unwrap());
    assert_eq!(sql(&count_sql), 3, "repaired, and the new task counted");
    // At the real quota it is still refused.
    assert!(!store.insert_within(&task(5), 3).unwrap());

    // The same for a task a member creates in her project of three: her
    // stream counts the task, repairs a drift, refuses at the quota, and a
    // refusal records nothing.
    use todo_core::{MemberPut, ProjectRole, ProjectStore as _, Task};
    let bob = new_user(store, "bob", 1).user.id;
    let carol = new_user(store, "carol", 2).user.id;
    let garden = a_project(owner, "Garden", 10);
    assert!(store.insert_project_within(&garden, None).unwrap());
    for (user, role) in [(bob, ProjectRole::Editor), (carol, ProjectRole::Viewer)] {
        let put = store.put_member(garden.id, &member(user, role, 20), 10, 100, at(20));
        assert!(matches!(put.unwrap(), MemberPut::Added(_)));
    }
    let bobs = |n: u64| Task {
        project: garden.id,
        created_by: bob,
        ..full_task(bob, 100 + n, 30)
    };
    use todo_core::TaskStore as _;
    // (how many changes each member's stream holds)
    let seen = |user: todo_core::UserId| {
        store
            .changes_after(user, todo_core::LogPosition::START, 1000)
            .unwrap()
            .changes
            .len()
    };
    let before = [seen(owner), seen(bob), seen(carol)];
    assert!(store.insert_within(&bobs(1), 10).unwrap());
    assert_eq!(sql(&count_sql), 4, "counted in the project owner's stream");
    assert_eq!(
        [seen(owner), seen(bob), seen(carol)],
        before.map(|n| n + 1),
        "the change in each member's stream"
    );
    assert_eq!(sql(&set_sql(10)), 1);
    assert!(store.insert_within(&bobs(2), 10).unwrap());
    assert_eq!(sql(&count_sql), 5, "repaired, and the new task counted");
    let before = [seen(owner), seen(bob), seen(carol)];
    assert!(!store.insert_within(&bobs(3), 5).unwrap(), "at the quota");
    assert_eq!(
        [seen(owner), seen(bob), seen(carol)],
        before,
        "a refusal records nothing"
    );
    assert_eq!(sql(&count_sql), 5);
}

#[test]
fn sqlite_the_stream_counts_its_owners_tasks_and_repairs_a_drift() {
    the_stream_counts_its_owners_tasks_and_repairs_a_drift(
        &todo_store::testing::TestDatabase::sqlite(),
    );
}

#[test]
fn postgres_the_stream_counts_its_owners_tasks_and_repairs_a_drift() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    the_stream_counts_its_owners_tasks_and_repairs_a_drift(&database);
}

/// Another process's store hears of each change that commits (PostgreSQL's
/// LISTEN/NOTIFY, from the log's trigger): a project's change as its
/// project (`p:`), a change addressed to one user as that user (`u:`),
/// and nothing that did not commit. (Review of session 22, m6: an Inbox's
/// id is its owner's, so a test that read either as a user passed
/// whichever path fired.)
#[test]
fn postgres_changes_committed_elsewhere_are_announced_to_listeners() {
    use crate::conformance::{a_project, at, full_task, member, new_user};
    use todo_core::{MemberPut, ProjectId, ProjectRole, ProjectStore as _};
    use todo_store::ChangeNotice;

    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    let writer = &database.store;
    let alice = new_user(writer, "alice", 0).user.id;
    let bob = new_user(writer, "bob", 1).user.id;
    let elsewhere = SqlStore::open(&database.config).unwrap();
    let (heard_tx, heard) = std::sync::mpsc::channel();
    let (reconnected_tx, reconnected) = std::sync::mpsc::channel();
    let listener = elsewhere
        .listen_for_changes(move |notice| match notice {
            ChangeNotice::Anyone => {
                let _ = reconnected_tx.send(());
            }
            notice => {
                let _ = heard_tx.send(notice);
            }
        })
        .unwrap()
        .expect("PostgreSQL announces changes");
    let alices = ChangeNotice::Projects(vec![ProjectId::inbox_of(alice)]);
    // Connected: everyone is rung once, for what went unheard before.
    reconnected.recv_timeout(Duration::from_secs(10)).unwrap();
    // The listener connects in the background: write until it hears one.
    let started = Instant::now();
    let mut n = 0;
    loop {
        writer.insert_task(&full_task(alice, n, 1)).unwrap();
        n += 1;
        if let Ok(notice) = heard.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(notice, alices);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no notification"
        );
    }
    while heard.recv_timeout(Duration::from_millis(300)).is_ok() {}

    writer.insert_task(&full_task(bob, 100, 1)).unwrap();
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(2)),
        Ok(ChangeNotice::Projects(vec![ProjectId::inbox_of(bob)]))
    );
    // A creation refused by the quota records nothing, so announces nothing.
    assert!(!writer.insert_within(&full_task(bob, 101, 1), 1).unwrap());
    assert!(heard.recv_timeout(Duration::from_millis(500)).is_err());

    // A shared project's changes name it; Bob's removal from it is also
    // addressed to him alone.
    let garden = a_project(alice, "Garden", 10);
    assert!(writer.insert_project_within(&garden, None).unwrap());
    let put = writer.put_member(
        garden.id,
        &member(bob, ProjectRole::Editor, 20),
        10,
        100,
        at(20),
    );
    assert!(matches!(put.unwrap(), MemberPut::Added(_)));
    let project = ChangeNotice::Projects(vec![garden.id]);
    // (its creation and Bob's addition: one notice, or two if they fell in
    // two looks of the listener)
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(2)),
        Ok(project.clone())
    );
    while let Ok(more) = heard.recv_timeout(Duration::from_millis(300)) {
        assert_eq!(more, project);
    }
    assert!(writer.remove_member(garden.id, bob, at(30)).unwrap());
    let mut removal = vec![
        heard.recv_timeout(Duration::from_secs(2)).unwrap(),
        heard.recv_timeout(Duration::from_secs(2)).unwrap(),
    ];
    removal.sort_by_key(|n| format!("{n:?}"));
    let mut expected = vec![project, ChangeNotice::Owner(bob)];
    expected.sort_by_key(|n| format!("{n:?}"));
    assert_eq!(removal, expected);

    // The listener's connection killed: it reconnects, rings everyone,
    // and hears again.
    {
        use diesel::Connection as _;
        use diesel::RunQueryDsl as _;
        let DatabaseUrl::Postgres(url) = &database.config.url else {
            unreachable!("a PostgreSQL database")
        };
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .execute(&mut diesel::PgConnection::establish(url).unwrap())
        .unwrap();
    }
    reconnected.recv_timeout(Duration::from_secs(10)).unwrap();
    writer.insert_task(&full_task(alice, 200, 1)).unwrap();
    assert_eq!(heard.recv_timeout(Duration::from_secs(5)), Ok(alices));
    drop(listener);
}

/// Without the head's row nothing can be numbered: a read says so (an
/// error) rather than answering every feed empty, which it did for a
/// deployment whose tables a test harness had emptied.
#[test]
fn postgres_a_log_without_its_head_fails_reads_rather_than_reading_empty() {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use todo_core::{LogPosition, TaskStore as _};

    use crate::conformance::{full_task, new_user};

    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    let DatabaseUrl::Postgres(url) = &database.config.url else {
        unreachable!("a PostgreSQL database")
    };
    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    store.insert_task(&full_task(alice, 1, 10)).unwrap();
    assert_eq!(
        store
            .changes_after(alice, LogPosition::START, 10)
            .unwrap()
            .changes
            .len(),
        1
    );
    diesel::sql_query("DELETE FROM change_log_head")
        .execute(&mut diesel::PgConnection::establish(url).unwrap())
        .unwrap();
    store.insert_task(&full_task(alice, 2, 20)).unwrap();
    assert!(store.changes_after(alice, LogPosition::START, 10).is_err());
}

#[test]
fn sqlite_has_no_change_listener() {
    let database = todo_store::testing::TestDatabase::sqlite();
    assert!(database.store.listen_for_changes(|_| {}).unwrap().is_none());
}

/// The members of several projects in one read, each once (what the
/// listener rings for a look's projects): a stranger's projects and
/// unknown ids add no one.
fn the_members_of_several_projects_are_read_together(database: &todo_store::testing::TestDatabase) {
    use crate::conformance::{a_project, at, member, new_user};
    use todo_core::{MemberPut, ProjectId, ProjectRole, ProjectStore as _, TaskStore as _};

    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let bob = new_user(store, "bob", 1).user.id;
    let carol = new_user(store, "carol", 2).user.id;
    let garden = a_project(alice, "Garden", 10);
    let shed = a_project(alice, "Shed", 11);
    for project in [&garden, &shed] {
        assert!(store.insert_project_within(project, None).unwrap());
        let put = store.put_member(
            project.id,
            &member(bob, ProjectRole::Editor, 20),
            10,
            100,
            at(20),
        );
        assert!(matches!(put.unwrap(), MemberPut::Added(_)));
    }
    let mut expected = vec![alice, bob];
    expected.sort_unstable();
    let unknown = ProjectId::from_uuid(uuid::Uuid::from_u128(42));
    assert_eq!(
        store
            .members_of_projects(&[garden.id, shed.id, unknown])
            .unwrap(),
        expected
    );
    // (Carol's Inbox is hers alone; more projects than one statement binds)
    let mut many = vec![ProjectId::inbox_of(carol)];
    many.extend((0..1200).map(|n| ProjectId::from_uuid(uuid::Uuid::from_u128(1000 + n))));
    many.push(garden.id);
    let mut expected = vec![alice, bob, carol];
    expected.sort_unstable();
    assert_eq!(store.members_of_projects(&many).unwrap(), expected);
    assert!(store.members_of_projects(&[]).unwrap().is_empty());
}

#[test]
fn sqlite_the_members_of_several_projects_are_read_together() {
    the_members_of_several_projects_are_read_together(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_the_members_of_several_projects_are_read_together() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    the_members_of_several_projects_are_read_together(&database);
}

/// During a rolling upgrade, task-servers of the version before projects
/// write tasks without the newer columns: the task lands in its owner's
/// Inbox (a trigger, PostgreSQL). (Their changes cannot be written since
/// the log is recorded once per project: OPERATIONS.md says to stop them
/// before that migration.)
#[test]
fn postgres_rows_of_the_version_before_projects_read_as_inbox_tasks() {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use todo_core::TaskStore as _;

    use crate::conformance::new_user;

    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    let todo_store::DatabaseUrl::Postgres(url) = &database.config.url else {
        unreachable!("a PostgreSQL database");
    };
    let store = &database.store;
    let owner = new_user(store, "alice", 0).user.id;
    let id = "0190a5d1-0000-7000-8000-00000000abcd";
    let mut old = diesel::PgConnection::establish(url).unwrap();
    // As the version before wrote them: no project, creator, zone or reminders.
    diesel::sql_query(format!(
        "INSERT INTO tasks (id, owner_id, title, description, search_text, done, priority, \
         labels, archived, created_at, updated_at, version) \
         VALUES ('{id}', '{owner}', 'Old', '', 'old\u{1f}', 0, 0, '', 0, 1, 1, 1)"
    ))
    .execute(&mut old)
    .unwrap();
    let task_id = todo_core::TaskId::parse(id).unwrap();
    let found = store.find_task(owner, task_id).unwrap().unwrap();
    assert_eq!(found.project, todo_core::ProjectId::inbox_of(owner));
    assert_eq!(found.created_by, owner);
    assert_eq!(found.time_zone.as_str(), "UTC");
    assert!(found.reminders.is_empty());
}

/// Rolling back the migration that brings project and member changes
/// leaves nothing the version before cannot read: those changes go, and
/// so do their kinds in webhooks (a webhook of nothing else goes) and
/// their deliveries (review of session 13: one such webhook failed every
/// lease of webhooks on the version before).
fn the_project_changes_down_migration_forgets_the_new_kinds(
    database: &todo_store::testing::TestDatabase,
) {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use diesel::connection::SimpleConnection as _;
    use diesel_migrations::{FileBasedMigrations, MigrationHarness as _};

    use crate::conformance::new_user;

    let owner = new_user(&database.store, "alice", 0).user.id;
    let rows = format!(
        "INSERT INTO webhooks (id, owner_id, url, events, secret, created_at, delivered_through, \
         next_attempt_at) VALUES \
         ('w1', '{owner}', 'https://example.com/', 'task.created,project.created,member.removed,reminder.due', 's', 1, 0, 1), \
         ('w2', '{owner}', 'https://example.com/', 'project.updated,member.added', 's', 1, 0, 1); \
         INSERT INTO webhook_deliveries (webhook_id, at, seq, kind, status, latency_ms) VALUES \
         ('w1', 1, 1, 'task.created', 200, 1), ('w1', 2, 2, 'member.removed', 200, 1); \
         INSERT INTO changes (owner_id, seq, kind, task_id, recorded_at) VALUES \
         ('{owner}', 900, 'project.deleted', 'p', 1)"
    );
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Events {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        events: String,
    }
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let webhooks = "SELECT id, events FROM webhooks ORDER BY id";
    let left = "SELECT (SELECT COUNT(*) FROM webhook_deliveries) + \
                (SELECT COUNT(*) FROM changes WHERE kind = 'project.deleted') AS n";
    let (events, count) = match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            // (the log recorded once per project first: the rows are
            // written as the version before it wrote them)
            revert_through(&mut c, dir, "000160");
            c.batch_execute(&rows).unwrap();
            // (the due key's migration, the feeds', then the project changes')
            for _ in 0..3 {
                c.revert_last_migration(FileBasedMigrations::from_path(dir).unwrap())
                    .unwrap();
            }
            let events: Vec<Events> = diesel::sql_query(webhooks).load(&mut c).unwrap();
            let count: Vec<Count> = diesel::sql_query(left).load(&mut c).unwrap();
            (events, count)
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            // (the log recorded once per project first: the rows are
            // written as the version before it wrote them)
            revert_through(&mut c, dir, "000160");
            c.batch_execute(&rows).unwrap();
            // (the due key's migration, the feeds', then the project changes')
            for _ in 0..3 {
                c.revert_last_migration(FileBasedMigrations::from_path(dir).unwrap())
                    .unwrap();
            }
            let events: Vec<Events> = diesel::sql_query(webhooks).load(&mut c).unwrap();
            let count: Vec<Count> = diesel::sql_query(left).load(&mut c).unwrap();
            (events, count)
        }
    };
    assert_eq!(
        events,
        [Events {
            id: "w1".into(),
            events: "task.created,reminder.due".into()
        }]
    );
    assert_eq!(
        count,
        [Count { n: 1 }],
        "one delivery of a task change left"
    );
}

#[test]
fn sqlite_the_project_changes_down_migration_forgets_the_new_kinds() {
    the_project_changes_down_migration_forgets_the_new_kinds(
        &todo_store::testing::TestDatabase::sqlite(),
    );
}

#[test]
fn postgres_the_project_changes_down_migration_forgets_the_new_kinds() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    the_project_changes_down_migration_forgets_the_new_kinds(&database);
}

/// A write waiting on a row another transaction holds gives up after the
/// store's lock timeout, as unavailable (503, retryable), and gives its
/// connection back: one long transaction cannot take an instance's pool
/// with writes queued behind it (the attack of session 14 did so, with an
/// import's transaction: every request of both instances 503 for minutes).
#[test]
fn postgres_a_write_waits_for_a_held_row_at_most_its_lock_timeout() {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;

    use crate::conformance::{full_task, new_user};

    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    let alice = new_user(&database.store, "alice", 0).user.id;
    let mut config = database.config.clone();
    config.busy_timeout = Duration::from_millis(300);
    let store = SqlStore::open(&config).unwrap();
    let DatabaseUrl::Postgres(url) = &config.url else {
        panic!("a PostgreSQL database");
    };
    let mut holder = diesel::PgConnection::establish(url).unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM users WHERE id = '{alice}' FOR UPDATE;"
        ))
        .unwrap();
    let started = Instant::now();
    let waited = store.insert_task(&full_task(alice, 1, 10));
    let took = started.elapsed();
    assert!(
        matches!(waited, Err(StoreError::Unavailable(_))),
        "{waited:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    holder.batch_execute("ROLLBACK").unwrap();
    // The connection went back to the pool, fit for the next write.
    store.insert_task(&full_task(alice, 2, 11)).unwrap();
}

/// A leased webhook whose row does not parse (a kind of a later version,
/// say) is passed over: the owners' other webhooks are leased all the same
/// (one such row used to fail every lease batch it was in).
fn a_webhook_row_that_does_not_parse_is_passed_over(database: &todo_store::testing::TestDatabase) {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use todo_core::{Clock as _, EventFilter};

    use crate::conformance::{full_task, new_user};

    let store: Arc<dyn crate::backends::Stores> = Arc::new(database.store.clone());
    let alice = new_user(&*store, "alice", 0).user.id;
    let bob = new_user(&*store, "bob", 1).user.id;
    let clock = Arc::new(todo_core::testing::ManualClock::at(
        todo_core::Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap(),
    ));
    let hooks = crate::conformance::webhooks(store.clone(), clock.clone(), None);
    let url = |n: u32| {
        todo_core::WebhookUrl::parse(&format!("https://hooks{n}.example.com/in"), false).unwrap()
    };
    let broken = hooks.create(alice, url(1), EventFilter::all()).unwrap();
    let fine = hooks.create(bob, url(2), EventFilter::all()).unwrap();
    for (owner, seed) in [(alice, 1), (bob, 2)] {
        store.insert_task(&full_task(owner, seed, 10)).unwrap();
    }
    let spoil = format!(
        "UPDATE webhooks SET events = 'task.created,no.such.kind' WHERE id = '{}'",
        broken.id
    );
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => diesel::SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute(&spoil)
            .unwrap(),
        DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(&spoil)
            .unwrap(),
    }
    let now = clock.now();
    let leased = store
        .lease_due_webhooks(now, now.saturating_add(Duration::from_secs(60)), 10, 1)
        .unwrap();
    let ids: Vec<_> = leased.iter().map(|w| w.id).collect();
    assert_eq!(ids, [fine.id]);
}

#[test]
fn sqlite_a_webhook_row_that_does_not_parse_is_passed_over() {
    a_webhook_row_that_does_not_parse_is_passed_over(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_a_webhook_row_that_does_not_parse_is_passed_over() {
    if let Some(database) = todo_store::testing::TestDatabase::postgres() {
        a_webhook_row_that_does_not_parse_is_passed_over(&database);
    }
}

/// The due key's migration (`000150`) goes down and up again over stored
/// tasks, dated and undated: down, every row is there, in the order the
/// version before read them (by its expression); up again, the store
/// lists them in due order, undated last.
fn the_due_key_migration_goes_down_and_up_over_stored_tasks(
    database: &todo_store::testing::TestDatabase,
) {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use diesel_migrations::{FileBasedMigrations, MigrationHarness as _};
    use todo_core::{TaskQuery, TaskSort, TaskStore as _, Timestamp};

    use crate::conformance::{full_task, new_user};

    let store = &database.store;
    let owner = new_user(store, "alice", 0).user.id;
    let due = |seconds: i64| Some(Timestamp::from_unix_micros(seconds * 1_000_000).unwrap());
    let tasks = [due(300), None, due(100), None, due(200)].map({
        let mut n = 0;
        move |due_at| {
            n += 1;
            todo_core::Task {
                due_at,
                ..full_task(owner, n, 10 + i64::try_from(n).unwrap())
            }
        }
    });
    for task in &tasks {
        store.insert_task(task).unwrap();
    }
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    // In the old index's order, as the version before read it.
    let old_order = "SELECT id FROM tasks ORDER BY project_id, archived, \
                     COALESCE(due_at, 9223372036854775807), id";
    let ids: Vec<Id> = match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            // (the later ones first)
            revert_through(&mut c, dir, "000150");
            let ids = diesel::sql_query(old_order).load(&mut c).unwrap();
            c.run_pending_migrations(migrations).unwrap();
            ids
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            // (the later ones first)
            revert_through(&mut c, dir, "000150");
            let ids = diesel::sql_query(old_order).load(&mut c).unwrap();
            c.run_pending_migrations(migrations).unwrap();
            ids
        }
    };
    let by_due: Vec<String> = [2, 4, 0, 1, 3]
        .map(|i: usize| tasks[i].id.to_string())
        .to_vec();
    let mut undated_last = by_due.clone();
    undated_last[3..].sort();
    assert_eq!(
        ids,
        undated_last
            .iter()
            .map(|id| Id { id: id.clone() })
            .collect::<Vec<_>>()
    );
    let query = TaskQuery {
        sort: TaskSort::DueAsc,
        ..TaskQuery::default()
    };
    let listed: Vec<String> = store
        .list_tasks(owner, &query, None, 10)
        .unwrap()
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(
        listed, undated_last,
        "up again, the store reads the new key"
    );
}

#[test]
fn sqlite_the_due_key_migration_goes_down_and_up_over_stored_tasks() {
    the_due_key_migration_goes_down_and_up_over_stored_tasks(
        &todo_store::testing::TestDatabase::sqlite(),
    );
}

#[test]
fn postgres_the_due_key_migration_goes_down_and_up_over_stored_tasks() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    the_due_key_migration_goes_down_and_up_over_stored_tasks(&database);
}

/// The project log's numbers start past every number of the per-user log
/// it replaces: webhook deliveries and relayed messages are named by
/// number, and a receiver that drops names it has seen must not drop a new
/// change (review of session 22, M6). Past the numbers of the changes
/// left and past every stream's last number: a user idle past retention
/// has no change left, and their stream's number can be the largest
/// (review of session 23, major 2: the log started past the changes
/// left only).
fn the_project_logs_numbers_start_past_the_old_logs(database: &todo_store::testing::TestDatabase) {
    use diesel::connection::SimpleConnection as _;
    use diesel::{Connection as _, RunQueryDsl as _};
    use diesel_migrations::{FileBasedMigrations, MigrationHarness as _};
    use todo_core::{LogPosition, TaskStore as _};

    use crate::conformance::{full_task, new_user};

    let store = &database.store;
    let owner = new_user(store, "alice", 0).user.id;
    let idle = new_user(store, "ida", 1).user.id;
    // Alice's change is left; Ida's were all pruned, her stream's number
    // stays (and is the largest).
    let old = format!(
        "INSERT INTO changes (owner_id, seq, kind, task_id, recorded_at) \
         VALUES ('{owner}', 4321, 'task.deleted', 'gone', 1); \
         UPDATE change_streams SET last_seq = 4400 WHERE owner_id = '{owner}'; \
         UPDATE change_streams SET last_seq = 98765 WHERE owner_id = '{idle}'"
    );
    let streams =
        format!("SELECT count(*) AS n FROM change_streams WHERE owner_id IN ('{owner}', '{idle}')");
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            revert_through(&mut c, dir, "000160");
            c.batch_execute(&old).unwrap();
            let n: N = diesel::sql_query(&streams).get_result(&mut c).unwrap();
            assert_eq!(n.n, 2, "both users have a stream");
            c.run_pending_migrations(migrations).unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            revert_through(&mut c, dir, "000160");
            c.batch_execute(&old).unwrap();
            let n: N = diesel::sql_query(&streams).get_result(&mut c).unwrap();
            assert_eq!(n.n, 2, "both users have a stream");
            c.run_pending_migrations(migrations).unwrap();
        }
    }
    store.insert_task(&full_task(owner, 1, 10)).unwrap();
    let log = store.changes_after(owner, LogPosition::START, 10).unwrap();
    assert_eq!(log.changes.len(), 1);
    let newest = log.changes[0].position;
    assert!(newest > LogPosition::new(98765), "{newest:?}");

    // And down again: every stream's number, mark and relay place, and
    // every webhook's, lie past the log's head, so the old version names
    // nothing again and sends old cursors back to the start (review of
    // session 23, minor 4: they went back to 0).
    let lowest = "SELECT MIN(v) AS n FROM (\
                  SELECT MIN(last_seq) AS v FROM change_streams UNION ALL \
                  SELECT MIN(pruned_through) FROM change_streams UNION ALL \
                  SELECT MIN(relayed_through) FROM change_streams UNION ALL \
                  SELECT MIN(delivered_through) FROM webhooks) AS marks";
    let stores: Arc<dyn crate::backends::Stores> = Arc::new(store.clone());
    let clock = Arc::new(todo_core::testing::ManualClock::at(crate::conformance::at(
        10,
    )));
    crate::conformance::webhooks(stores, clock, None)
        .create(
            owner,
            crate::conformance::hook_url(1),
            todo_core::EventFilter::all(),
        )
        .unwrap();
    let hooks: N = match &database.config.url {
        DatabaseUrl::Sqlite(path) => diesel::sql_query("SELECT count(*) AS n FROM webhooks")
            .get_result(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap()),
        DatabaseUrl::Postgres(url) => diesel::sql_query("SELECT count(*) AS n FROM webhooks")
            .get_result(&mut diesel::PgConnection::establish(url).unwrap()),
    }
    .unwrap();
    assert_eq!(hooks.n, 1, "a webhook whose mark the way down sets");
    let lowest_after_down = match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            revert_through(&mut c, dir, "000160");
            let n: N = diesel::sql_query(lowest).get_result(&mut c).unwrap();
            c.run_pending_migrations(migrations).unwrap();
            n.n
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            revert_through(&mut c, dir, "000160");
            let n: N = diesel::sql_query(lowest).get_result(&mut c).unwrap();
            c.run_pending_migrations(migrations).unwrap();
            n.n
        }
    };
    assert!(
        LogPosition::new(lowest_after_down as u64) > newest,
        "{lowest_after_down} after {newest:?}"
    );
}

#[test]
fn sqlite_the_project_logs_numbers_start_past_the_old_logs() {
    the_project_logs_numbers_start_past_the_old_logs(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_the_project_logs_numbers_start_past_the_old_logs() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    the_project_logs_numbers_start_past_the_old_logs(&database);
}

/// A label stored before labels with invisible characters were refused
/// (`work` with a zero-width space) still reads, and its task with it: a
/// stored label is read by the rules it was written under.
fn labels_stored_under_older_rules_still_read(database: &todo_store::testing::TestDatabase) {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use todo_core::{Label, TaskStore as _};
    use todo_store::DatabaseUrl;

    use crate::conformance::{full_task, new_user};

    let store = &database.store;
    let owner = new_user(store, "alice", 0).user.id;
    let task = full_task(owner, 1, 10);
    store.insert_task(&task).unwrap();
    let hidden = "work\u{200b}";
    assert!(Label::parse(hidden).is_err(), "refused as given now");
    let sql = format!(
        "UPDATE tasks SET labels = 'work\n{hidden}' WHERE id = '{}'",
        task.id
    );
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => diesel::sql_query(sql)
            .execute(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap()),
        DatabaseUrl::Postgres(url) => {
            diesel::sql_query(sql).execute(&mut diesel::PgConnection::establish(url).unwrap())
        }
    }
    .unwrap();
    let found = store.find_task(owner, task.id).unwrap().unwrap();
    let labels: Vec<&str> = found.labels.iter().map(Label::as_str).collect();
    assert_eq!(labels, ["work", hidden]);
}

#[test]
fn sqlite_labels_stored_under_older_rules_still_read() {
    labels_stored_under_older_rules_still_read(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_labels_stored_under_older_rules_still_read() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    labels_stored_under_older_rules_still_read(&database);
}

/// Review of session 22, B3: a read looks at most `MOST_WINDOWS` windows of
/// the log's numbers (about 1.04 million); a webhook or relay stream whose
/// next change lies further ahead got an empty read and stayed where it
/// was, read again from there for ever. Here the log's numbering jumps two
/// million ahead (as other users' changes since pruned would leave it):
/// within a few rounds each reaches Alice's change and delivers it.
fn a_webhook_and_the_relay_reach_a_change_past_one_reads_windows(
    database: &todo_store::testing::TestDatabase,
) {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use todo_core::testing::ManualClock;
    use todo_core::{EventFilter, LogPosition};

    use crate::conformance::{at, full_task, hook_url, new_user, relay, webhooks};

    let store: Arc<dyn crate::backends::Stores> = Arc::new(database.store.clone());
    let alice = new_user(&*store, "alice", 0).user.id;
    let clock = Arc::new(ManualClock::at(at(10)));
    let hooks = webhooks(store.clone(), clock.clone(), None);
    let hook = hooks
        .create(alice, hook_url(1), EventFilter::all())
        .unwrap();
    let relayer = relay(store.clone(), clock.clone());
    // The relay's stream caught up to the head as well.
    for leased in relayer.lease(10, Duration::from_secs(60)).unwrap() {
        let head = store
            .changes_after(leased.stream.owner, LogPosition::START, 1)
            .unwrap()
            .head;
        assert!(relayer.settle(&leased, head).unwrap());
    }
    assert!(!store.any_unrelayed_stream(at(10)).unwrap());
    let jump = match &database.config.url {
        DatabaseUrl::Sqlite(_) => {
            "UPDATE sqlite_sequence SET seq = seq + 2000000 WHERE name = 'change_log'"
        }
        DatabaseUrl::Postgres(_) => "UPDATE change_log_head SET last_seq = last_seq + 2000000",
    };
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => diesel::SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute(jump)
            .unwrap(),
        DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(jump)
            .unwrap(),
    }
    let task = full_task(alice, 1, 20);
    store.insert_task(&task).unwrap();
    // (one read from where the webhook is finds nothing: the bug's start)
    let near = store
        .changes_after(alice, hook.delivered_through, 10)
        .unwrap();
    assert!(near.changes.is_empty());
    assert!(near.scanned_through < near.head);
    let beyond = LogPosition::new(hook.delivered_through.get() + 2_000_000);
    let position = store.changes_after(alice, beyond, 10).unwrap().changes[0].position;

    let mut sent = None;
    for round in 0..6 {
        clock.advance(Duration::from_secs(120));
        let leased = hooks.lease_due(10, Duration::from_secs(60)).unwrap();
        assert_eq!(leased.len(), 1, "round {round}: the webhook is behind");
        let pending = hooks.pending(&leased[0].webhook, 10).unwrap();
        if let Some(delivery) = pending.deliveries.first() {
            sent = Some(delivery.change.position);
            break;
        }
        assert!(hooks.settle(&leased[0], &pending, Vec::new()).unwrap());
    }
    assert_eq!(sent, Some(position), "the webhook reached it");

    let mut published = None;
    for round in 0..6 {
        clock.advance(Duration::from_secs(120));
        let leased = relayer.lease(10, Duration::from_secs(60)).unwrap();
        let Some(hers) = leased.iter().find(|l| l.stream.owner == alice) else {
            panic!("round {round}: her stream is behind");
        };
        let batch = relayer.pending(hers, 10).unwrap();
        if let Some(change) = batch.changes.first() {
            published = Some(change.position);
            break;
        }
        for leased in &leased {
            assert!(relayer.settle(leased, batch.skipped_through).unwrap());
        }
    }
    assert_eq!(published, Some(position), "the relay reached it");
}

#[test]
fn sqlite_a_webhook_and_the_relay_reach_a_change_past_one_reads_windows() {
    a_webhook_and_the_relay_reach_a_change_past_one_reads_windows(
        &todo_store::testing::TestDatabase::sqlite(),
    );
}

#[test]
fn postgres_a_webhook_and_the_relay_reach_a_change_past_one_reads_windows() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    a_webhook_and_the_relay_reach_a_change_past_one_reads_windows(&database);
}

/// Review of session 22, m1: `project_members.joined_seq` had a default of
/// 0, "sees the whole project": a membership inserted by any path that
/// forgot to set where it starts would show its member everything before
/// they joined. No default now: such a member sees nothing; members there
/// when the log is made, and owners, start at 0.
fn a_membership_without_a_start_sees_nothing(database: &todo_store::testing::TestDatabase) {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use diesel_migrations::{FileBasedMigrations, MigrationHarness as _};
    use todo_core::{LogPosition, MemberPut, ProjectRole, ProjectStore as _, Task, TaskStore as _};

    use crate::conformance::{a_project, at, full_task, member, new_user};

    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let bob = new_user(store, "bob", 1).user.id;
    let carol = new_user(store, "carol", 2).user.id;
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
    let in_garden = |seed| Task {
        project: garden.id,
        created_by: alice,
        ..full_task(alice, seed, 30)
    };
    store.insert_task(&in_garden(1)).unwrap();
    // The log made again over Bob's membership (the migration down and
    // up), then Carol's put in by a path that sets no start.
    let carols = format!(
        "INSERT INTO project_members (project_id, user_id, role, added_at) \
         VALUES ('{}', '{carol}', 'viewer', 0)",
        garden.id
    );
    let name = "000160";
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            revert_through(&mut c, dir, name);
            c.run_pending_migrations(migrations).unwrap();
            c.batch_execute(&carols).unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            let migrations = FileBasedMigrations::from_path(dir).unwrap();
            revert_through(&mut c, dir, name);
            c.run_pending_migrations(migrations).unwrap();
            c.batch_execute(&carols).unwrap();
        }
    }
    let task = in_garden(2);
    store.insert_task(&task).unwrap();
    let seen = |user| -> Vec<todo_core::TaskId> {
        store
            .changes_after(user, LogPosition::START, 100)
            .unwrap()
            .changes
            .iter()
            .filter_map(|c| c.task_id())
            .collect()
    };
    assert_eq!(seen(alice), [task.id], "the owner sees the new log");
    assert_eq!(seen(bob), [task.id], "a member from before sees it too");
    assert!(seen(carol).is_empty(), "one with no start sees nothing");
}

#[test]
fn sqlite_a_membership_without_a_start_sees_nothing() {
    a_membership_without_a_start_sees_nothing(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_a_membership_without_a_start_sees_nothing() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    a_membership_without_a_start_sees_nothing(&database);
}

/// The sessions migration makes one session of each refresh family the
/// version before it stored (a revoked one ended); and a family stored
/// without a session since (a login through an instance of that version,
/// during a roll) gets one at its next exchange, or is recorded as ended
/// when it is ended, so that the gate refuses its tokens.
fn refresh_families_without_sessions_become_sessions(database: &todo_store::testing::TestDatabase) {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use todo_core::{RefreshTokenHash, RefreshTokenRecord, RefreshTokenStore as _, SessionId};
    use todo_core::{Timestamp, UserStore as _};

    use crate::conformance::{at, new_user};

    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let family = |n: u128| SessionId::from_uuid(uuid::Uuid::from_u128(n));
    let token = |name: &str,
                 fam: SessionId,
                 issued: i64,
                 expires: i64,
                 used: Option<i64>,
                 revoked: u8| {
        let used = used.map_or("NULL".to_owned(), |t| at(t).unix_micros().to_string());
        format!(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at, \
             used_at, revoked, grace_exchanges) VALUES ('{name:0>64}', '{fam}', '{alice}', {}, {}, \
             {used}, {revoked}, 0);",
            at(issued).unix_micros(),
            at(expires).unix_micros()
        )
    };
    let old = [
        token("a1", family(1), 10, 100, Some(20), 0),
        token("a2", family(1), 20, 200, None, 0),
        token("b1", family(2), 30, 300, None, 1),
    ]
    .concat();
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            revert_through(&mut c, dir, "000170");
            c.batch_execute(&old).unwrap();
            c.run_pending_migrations(FileBasedMigrations::from_path(dir).unwrap())
                .unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            revert_through(&mut c, dir, "000170");
            c.batch_execute(&old).unwrap();
            c.run_pending_migrations(FileBasedMigrations::from_path(dir).unwrap())
                .unwrap();
        }
    }
    let listed = store.list_sessions(alice, at(50)).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let live = &listed[0];
    assert_eq!(live.id, family(1));
    assert_eq!(
        (live.created_at, live.last_used_at, live.expires_at),
        (at(10), at(20), at(200))
    );
    assert_eq!((live.user_agent.clone(), live.address), (None, None));
    let ended = |since| store.find_standing(alice, since).unwrap().unwrap().1;
    assert_eq!(ended(Timestamp::MIN).ids(), [family(2)]);

    // Families stored since without a session, by an older instance.
    let later = [
        token("c1", family(3), 40, 400, None, 0),
        token("d1", family(4), 41, 400, None, 0),
    ]
    .concat();
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => diesel::SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute(&later)
            .unwrap(),
        DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(&later)
            .unwrap(),
    }
    let next = RefreshTokenRecord {
        hash: RefreshTokenHash::new(format!("{:0>64}", "c2")),
        family: family(3),
        user_id: alice,
        issued_at: at(50),
        expires_at: at(500),
        used_at: None,
        grace_exchanges: 0,
        revoked: false,
    };
    let c1 = RefreshTokenHash::new(format!("{:0>64}", "c1"));
    assert!(store.rotate_refresh_token(&c1, &next, at(50)).unwrap());
    let listed: Vec<SessionId> = store
        .list_sessions(alice, at(60))
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        listed,
        [family(3), family(1)],
        "an exchange makes its session"
    );
    store.end_session(alice, family(4), at(60)).unwrap();
    let d1 = RefreshTokenHash::new(format!("{:0>64}", "d1"));
    assert!(store.find_refresh_token(&d1).unwrap().unwrap().revoked);
    let mut gone = ended(Timestamp::MIN).ids().to_vec();
    gone.sort();
    assert_eq!(
        gone,
        [family(2), family(4)],
        "an ending records it as ended"
    );
}

#[test]
fn sqlite_refresh_families_without_sessions_become_sessions() {
    refresh_families_without_sessions_become_sessions(&todo_store::testing::TestDatabase::sqlite());
}

#[test]
fn postgres_refresh_families_without_sessions_become_sessions() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    refresh_families_without_sessions_become_sessions(&database);
}

/// The API tokens' migration goes down leaving nothing the version before
/// would read as corrupt (no session of kind `api_token`), its logins
/// kept; and up again over them.
fn the_api_tokens_migration_goes_down_and_up_over_stored_tokens(
    database: &todo_store::testing::TestDatabase,
) {
    use diesel::Connection as _;
    use diesel::RunQueryDsl as _;
    use todo_core::UserStore as _;
    use todo_core::{
        ApiTokenGrant, ApiTokenHash, ApiTokenName, ApiTokenRecord, RefreshTokenHash,
        RefreshTokenRecord, RefreshTokenStore as _, Scopes, SessionId, SessionKind, SessionRecord,
    };

    use crate::conformance::{at, new_user};

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Kind {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
    }
    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let session = |n: u128, kind| SessionRecord {
        id: SessionId::from_uuid(uuid::Uuid::from_u128(n)),
        user_id: alice,
        kind,
        created_at: at(1),
        last_used_at: at(1),
        expires_at: at(100),
        user_agent: None,
        address: None,
        ended_at: None,
    };
    let login = session(1, SessionKind::Login);
    let first = RefreshTokenRecord {
        hash: RefreshTokenHash::new(format!("{:0>64}", "r1")),
        family: login.id,
        user_id: alice,
        issued_at: at(1),
        expires_at: at(100),
        used_at: None,
        grace_exchanges: 0,
        revoked: false,
    };
    store.start_session(&login, &first).unwrap();
    let token = ApiTokenRecord {
        session: session(2, SessionKind::ApiToken),
        hash: ApiTokenHash::new("a".repeat(64)),
        name: ApiTokenName::parse("script").unwrap(),
        grant: ApiTokenGrant {
            scopes: Scopes::parse(["tasks:read"]).unwrap(),
            project: None,
        },
    };
    assert!(store.create_api_token(&token, 5).unwrap());
    let kinds = "SELECT kind FROM sessions ORDER BY id";
    let (down, up): (Vec<Kind>, Vec<Kind>) = match &database.config.url {
        DatabaseUrl::Sqlite(path) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
            let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            revert_through(&mut c, dir, "000180");
            let down = diesel::sql_query(kinds).load(&mut c).unwrap();
            c.run_pending_migrations(FileBasedMigrations::from_path(dir).unwrap())
                .unwrap();
            (down, diesel::sql_query(kinds).load(&mut c).unwrap())
        }
        DatabaseUrl::Postgres(url) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
            let mut c = diesel::PgConnection::establish(url).unwrap();
            revert_through(&mut c, dir, "000180");
            let down = diesel::sql_query(kinds).load(&mut c).unwrap();
            c.run_pending_migrations(FileBasedMigrations::from_path(dir).unwrap())
                .unwrap();
            (down, diesel::sql_query(kinds).load(&mut c).unwrap())
        }
    };
    let login_only = [Kind {
        kind: "login".into(),
    }];
    assert_eq!(down, login_only, "the tokens' sessions went down with them");
    assert_eq!(up, login_only);
    // Up again, tokens are made and found as before.
    assert!(store.create_api_token(&token, 5).unwrap());
    assert_eq!(store.find_api_token(&token.hash).unwrap(), Some(token));
    assert_eq!(store.list_sessions(alice, at(2)).unwrap().len(), 2);
}

#[test]
fn sqlite_the_api_tokens_migration_goes_down_and_up_over_stored_tokens() {
    the_api_tokens_migration_goes_down_and_up_over_stored_tokens(
        &todo_store::testing::TestDatabase::sqlite(),
    );
}

#[test]
fn postgres_the_api_tokens_migration_goes_down_and_up_over_stored_tokens() {
    let Some(database) = todo_store::testing::TestDatabase::postgres() else {
        return;
    };
    the_api_tokens_migration_goes_down_and_up_over_stored_tokens(&database);
}
