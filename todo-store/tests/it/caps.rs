//! The bounds on what the change log keeps of one account (SQL stores:
//! the log is filled by SQL, past what writes would make in a test).

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, RunQueryDsl as _};
use todo_core::{
    LogPosition, MAX_CHANGES_PER_OWNER, MAX_CHANGES_PER_PROJECT, MIN_CHANGES_KEPT_PER_PROJECT,
    ProjectId, ProjectStore as _, TRIM_EVERY, Task, TaskStore as _, UserId,
};
use todo_store::DatabaseUrl;
use todo_store::testing::TestDatabase;

use crate::conformance::{OwnTasks as _, a_project, at, full_task, new_user};

const COLUMNS: &str = "project_id, recipient_id, kind, subject_id, recorded_at, title, \
    description, done, completed_at, due_at, priority, labels, archived, created_at, \
    updated_at, version, created_by, parent_id, recurrence, time_zone, series_id, \
    series_start, occurrence, reminders, color, inbox, role, member_id, username";

/// Runs `sql` on the database.
fn execute(database: &TestDatabase, sql: &str) {
    match &database.config.url {
        DatabaseUrl::Sqlite(path) => diesel::SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
        DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
    }
}

/// The number `sql` (one row, one column `n`) answers.
fn number(database: &TestDatabase, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let query = diesel::sql_query(sql);
    let n: N = match &database.config.url {
        DatabaseUrl::Sqlite(path) => query
            .get_result(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap())
            .unwrap(),
        DatabaseUrl::Postgres(url) => query
            .get_result(&mut diesel::PgConnection::establish(url).unwrap())
            .unwrap(),
    };
    n.n
}

/// Copies the newest change of `project` `copies` times.
fn fill(database: &TestDatabase, project: ProjectId, copies: u64) {
    execute(
        database,
        &format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {copies}) \
             INSERT INTO change_log ({COLUMNS}) SELECT {COLUMNS} FROM change_log, g \
             WHERE pos = (SELECT max(pos) FROM change_log WHERE project_id = '{project}')"
        ),
    );
}

/// How many changes the log holds of the projects `owner` owns.
fn owned_rows(database: &TestDatabase, owner: UserId) -> i64 {
    number(
        database,
        &format!(
            "SELECT COUNT(*) AS n FROM change_log c JOIN projects p ON p.id = c.project_id \
             WHERE p.owner_id = '{owner}'"
        ),
    )
}

fn project_rows(database: &TestDatabase, project: ProjectId) -> i64 {
    number(
        database,
        &format!("SELECT COUNT(*) AS n FROM change_log WHERE project_id = '{project}'"),
    )
}

fn task_in(project: ProjectId, by: UserId, seed: u64) -> Task {
    Task {
        project,
        created_by: by,
        ..full_task(by, seed, 30)
    }
}

/// Attack of session 22, F2: the cap on the log was per project, so one
/// account kept `MAX_CHANGES_PER_PROJECT` in each of its projects (three
/// projects: 30,183 changes; a thousand: ten million). Alice's seven
/// projects hold 8,000 changes each, each under its own cap: 56,000, past
/// her budget of `MAX_CHANGES_PER_OWNER`. A trim of one of them keeps only
/// what the others leave of the budget; retention's prune, with nothing
/// old enough to go, cuts her back to the budget, oldest first, and leaves
/// Bob (one project near its cap) alone.
fn an_owner_keeps_at_most_their_budget_across_projects(database: &TestDatabase) {
    const PROJECTS: i64 = 7;
    const COPIES: u64 = 8_000;
    let budget = i64::try_from(MAX_CHANGES_PER_OWNER).unwrap();
    const {
        assert!(
            COPIES < MAX_CHANGES_PER_PROJECT,
            "each project under its own cap"
        )
    };
    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let bob = new_user(store, "bob", 1).user.id;
    let mut hers = Vec::new();
    for k in 0..PROJECTS {
        let project = a_project(alice, &format!("Project {k}"), 10 + k);
        assert!(store.insert_project_within(&project, None).unwrap());
        let task = task_in(project.id, alice, 100 + k as u64);
        store.insert_task(&task).unwrap();
        fill(database, project.id, COPIES);
        hers.push((project.id, task.id));
    }
    let his = a_project(bob, "His", 50);
    assert!(store.insert_project_within(&his, None).unwrap());
    store.insert_task(&task_in(his.id, bob, 200)).unwrap();
    fill(database, his.id, 9_000);
    // (numbered: PostgreSQL numbers at a read)
    store.changes_after(alice, LogPosition::START, 1).unwrap();
    let bobs = owned_rows(database, bob);
    assert!(owned_rows(database, alice) > budget, "past the budget");

    // A trim of her first project keeps what the others leave.
    let (first, task) = hers[0];
    let pruned_mark = format!(
        "SELECT COALESCE(MAX(pruned_through), 0) AS n FROM change_pruned \
         WHERE project_id = '{first}'"
    );
    // Writes her first project's task until a trim moves its mark.
    let write_until_trimmed = || {
        let mark = number(database, &pruned_mark);
        let mut writes = 0;
        while number(database, &pruned_mark) == mark {
            store
                .modify_task(alice, task, &mut |current, _| {
                    let mut next = current.clone();
                    next.version = current.version.next();
                    Some(next)
                })
                .unwrap()
                .unwrap();
            writes += 1;
            assert!(writes <= 16 * TRIM_EVERY, "no trim after {writes} writes");
            // (a follower reads, and so numbers, each change: PostgreSQL
            // trims numbered changes only)
            store.changes_after(bob, LogPosition::START, 1).unwrap();
        }
    };
    write_until_trimmed();
    let others = owned_rows(database, alice) - project_rows(database, first);
    let kept = project_rows(database, first);
    // (PostgreSQL also keeps the trimming write's own, not numbered yet)
    assert!(kept <= budget - others + 1, "kept {kept}, others {others}");
    assert!(
        kept < i64::try_from(COPIES).unwrap(),
        "cut below its own cap"
    );

    // More of her changes elsewhere (written by a version with no bound,
    // or between two trims): the prune cuts her back to the budget.
    fill(database, hers[1].0, 6_000);
    store.changes_after(alice, LogPosition::START, 1).unwrap();
    assert!(owned_rows(database, alice) > budget);
    let newest = number(
        database,
        &format!(
            "SELECT MAX(c.pos) AS n FROM change_log c JOIN projects p ON p.id = c.project_id \
             WHERE p.owner_id = '{alice}'"
        ),
    );
    let dropped = store.prune_changes(at(-1_000_000)).unwrap();
    assert!(dropped > 0);
    assert_eq!(
        owned_rows(database, alice),
        budget,
        "her newest, to the budget"
    );
    let newest_kept = number(
        database,
        &format!("SELECT COUNT(*) AS n FROM change_log WHERE pos = {newest}"),
    );
    assert_eq!(newest_kept, 1, "the newest kept");
    assert_eq!(owned_rows(database, bob), bobs, "Bob's untouched");
    // Her feed says what went, and reads on.
    let log = store.changes_after(alice, LogPosition::START, 10).unwrap();
    assert!(log.pruned_through > LogPosition::START);
    assert_eq!(log.changes.len(), 10);
    assert!(log.changes[0].position > log.pruned_through);

    // Her other projects alone now hold her whole budget: a trim of the
    // first still keeps its newest `MIN_CHANGES_KEPT_PER_PROJECT` (review
    // of session 23, minor 6: it kept one, and every member behind was
    // sent back to the start at each trim).
    fill(database, first, 3_000);
    fill(database, hers[2].0, MAX_CHANGES_PER_OWNER);
    store.changes_after(alice, LogPosition::START, 1).unwrap();
    write_until_trimmed();
    let floor = i64::try_from(MIN_CHANGES_KEPT_PER_PROJECT).unwrap();
    let kept = project_rows(database, first);
    // (PostgreSQL also keeps the trimming write's own, not numbered yet)
    assert!(
        (floor..=floor + 1).contains(&kept),
        "kept {kept} of the first project"
    );
}

#[test]
fn sqlite_an_owner_keeps_at_most_their_budget_across_projects() {
    an_owner_keeps_at_most_their_budget_across_projects(&TestDatabase::sqlite());
}

#[test]
fn postgres_an_owner_keeps_at_most_their_budget_across_projects() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    an_owner_keeps_at_most_their_budget_across_projects(&database);
}

/// Review of session 22, M5: a project trimmed only when one of its own
/// changes took a number that trims (every 256th of the whole log), so a
/// user writing a project and their Inbox in turn put every change of the
/// project on odd numbers, and it never trimmed. The draw is at random
/// now: a project past its cap, written in turn with the Inbox, trims.
fn a_project_written_in_turn_with_the_inbox_still_trims(database: &TestDatabase) {
    let store = &database.store;
    let alice = new_user(store, "alice", 0).user.id;
    let project = a_project(alice, "Busy", 10);
    assert!(store.insert_project_within(&project, None).unwrap());
    let task = task_in(project.id, alice, 1);
    store.insert_task(&task).unwrap();
    let inbox = full_task(alice, 2, 20);
    store.insert_task(&inbox).unwrap();
    fill(database, project.id, MAX_CHANGES_PER_PROJECT);
    store.changes_after(alice, LogPosition::START, 1).unwrap();
    let touch = |id| {
        store
            .modify_task(alice, id, &mut |current, _| {
                let mut next = current.clone();
                next.version = current.version.next();
                Some(next)
            })
            .unwrap()
            .unwrap();
    };
    // The project's changes on odd numbers, the Inbox's on even ones:
    // where the old rule never trimmed the project.
    if number(database, "SELECT MAX(pos) AS n FROM change_log") % 2 == 1 {
        touch(inbox.id);
    }
    let mut writes = 0;
    while number(
        database,
        &format!(
            "SELECT COUNT(*) AS n FROM change_pruned WHERE project_id = '{}'",
            project.id
        ),
    ) == 0
    {
        touch(task.id);
        touch(inbox.id);
        // (numbered, as a follower's reads do)
        store.changes_after(alice, LogPosition::START, 1).unwrap();
        writes += 1;
        assert!(writes <= 16 * TRIM_EVERY, "no trim after {writes} turns");
    }
    let kept = project_rows(database, project.id);
    assert!(
        kept <= i64::try_from(MAX_CHANGES_PER_PROJECT).unwrap() + 1,
        "{kept} kept"
    );
}

#[test]
fn sqlite_a_project_written_in_turn_with_the_inbox_still_trims() {
    a_project_written_in_turn_with_the_inbox_still_trims(&TestDatabase::sqlite());
}

#[test]
fn postgres_a_project_written_in_turn_with_the_inbox_still_trims() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    a_project_written_in_turn_with_the_inbox_still_trims(&database);
}
