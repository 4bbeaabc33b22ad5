//! The plans PostgreSQL makes for the relay's and the webhooks' look at
//! every stream's lag (review of session 22, B2): written against the
//! view, the correlated look could not be narrowed to one user, and read
//! the whole log for every stream (231 s for an idle relay at 12,000
//! users). Written against the tables ([`crate::changes::stream_past`]),
//! each stream's look is an index lookup. Checked on a log large enough
//! that a scan of it shows: the view's form, asked the same, scans.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::AnyConnection;
use crate::testing::TestDatabase;

/// Users, each owning a project and an editor in the next two; the log's
/// rows spread over the projects, and a few addressed to users; every
/// stream relayed and delivered to the head (the idle case, where no
/// stream stops the look early); a webhook for every fifth user.
const FILL: &str = "
    INSERT INTO users (id, username, role, disabled, password_hash, created_at, updated_at)
        SELECT 'u' || g, 'user' || g, 'user', 0, 'x', 0, 0 FROM generate_series(1, 3000) g;
    INSERT INTO change_streams (owner_id) SELECT 'u' || g FROM generate_series(1, 3000) g;
    INSERT INTO projects (id, owner_id, name, description, inbox, archived, created_at,
                          updated_at, version)
        SELECT 'p' || g, 'u' || g, 'P', '', 0, 0, 0, 0, 1 FROM generate_series(1, 3000) g;
    INSERT INTO project_members (project_id, user_id, role, added_at, joined_pos, joined_seq)
        SELECT 'p' || (((g - 1 + k) % 3000) + 1), 'u' || g,
               CASE WHEN k = 0 THEN 'owner' ELSE 'editor' END, 0, NULL, 0
        FROM generate_series(1, 3000) g CROSS JOIN generate_series(0, 2) k;
    INSERT INTO change_log (seq, project_id, kind, subject_id, recorded_at)
        SELECT g, 'p' || ((g % 3000) + 1), 'task.updated', 't' || g, 0
        FROM generate_series(1, 300000) g;
    INSERT INTO change_log (seq, recipient_id, kind, subject_id, recorded_at)
        SELECT 300000 + g, 'u' || ((g % 3000) + 1), 'project.deleted', 'p', 0
        FROM generate_series(1, 3000) g;
    UPDATE change_log_head SET last_seq = 303000 WHERE id = 1;
    UPDATE change_streams SET relayed_through = 303000;
    INSERT INTO webhooks (id, owner_id, url, events, secret, created_at, delivered_through,
                          attempts, next_attempt_at)
        SELECT 'w' || g, 'u' || g, 'https://example.com/', '*', 's', 0, 303000, 0, 0
        FROM generate_series(1, 3000, 5) g;
    ANALYZE;
";

/// `EXPLAIN` of `sql` with its parameters bound: every one a number
/// (`$1`… in the order given).
fn explain(conn: &mut PgConnection, sql: &str, numbers: &[i64]) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let mut query = diesel::sql_query(format!("EXPLAIN {sql}")).into_boxed::<diesel::pg::Pg>();
    for n in numbers {
        query = query.bind::<BigInt, _>(*n);
    }
    query
        .load::<Line>(conn)
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect()
}

/// The lines of `plan` that read a whole table of the log's.
fn scans(plan: &[String]) -> Vec<&String> {
    plan.iter()
        .filter(|l| {
            l.contains("Seq Scan on change_log") || l.contains("Seq Scan on project_members")
        })
        .collect()
}

#[test]
fn postgres_the_lags_are_looked_up_by_index() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let mut pooled = database.store.pool.get().unwrap();
    let conn: &mut AnyConnection = &mut pooled;
    let AnyConnection::Postgresql(pg) = &mut *conn else {
        panic!("a PostgreSQL database")
    };
    pg.batch_execute(FILL).unwrap();
    let conn: &AnyConnection = conn;
    let (now, until) = (1_000, 2_000);
    let looks = [
        ("relay's idle look", crate::relay::due_sql(conn), vec![now]),
        (
            "relay's lease",
            crate::relay::lease_sql(conn),
            vec![until, now, 32],
        ),
        (
            "webhooks' lease",
            crate::webhooks::lease_sql(conn),
            vec![until, now, 2, 32],
        ),
    ];
    let AnyConnection::Postgresql(pg) = &mut *pooled else {
        unreachable!()
    };
    for (name, sql, numbers) in looks {
        let plan = explain(pg, &sql, &numbers);
        assert!(
            plan.iter().any(|l| l.contains("change_log_by_project")),
            "{name}: the projects' changes by index\n{}",
            plan.join("\n")
        );
        assert!(scans(&plan).is_empty(), "{name} scans\n{}", plan.join("\n"));
        // (each stream's look bounded by its own point, in the index)
        assert!(
            plan.iter()
                .any(|l| l.contains("Index Cond") && l.contains("_through)")),
            "{name}: no lookup past the stream's point\n{}",
            plan.join("\n")
        );
    }
    // The same look through the view (as the branch first had it) reads
    // the whole log: every membership scanned, every change of theirs
    // hashed, then joined to the streams. The data is enough to show it.
    let through_view = explain(
        pg,
        "SELECT s.owner_id FROM change_streams s WHERE EXISTS (SELECT 1 FROM change_feed f \
         WHERE f.reader = s.owner_id AND f.seq > s.relayed_through) \
         AND (s.relay_leased_until IS NULL OR s.relay_leased_until < $1) LIMIT 1",
        &[now],
    );
    assert!(
        !scans(&through_view).is_empty(),
        "the view's form should scan\n{}",
        through_view.join("\n")
    );
}
