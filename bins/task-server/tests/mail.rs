//! Mail on the real binaries, through a real SMTP server (aiosmtpd, with
//! STARTTLS): an address verified by its link; a reset asked for by login,
//! answered alike and as fast for an unknown account, its link working
//! once, only the newest working, an aged one refused; the reset ending
//! every session on every instance. Two auth-server instances and a
//! task-server on one database, SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use diesel::{Connection as _, RunQueryDsl as _};
use http::Method;
use serde_json::{Value, json};
use todo_store::testing::TestDatabase;
use todo_testkit::{Client, Reply};

use common::{Running, Smtp, database_url, link_tokens, run, token};

/// API.md: refused within 1 s on every instance; a margin for a loaded machine.
const WINDOW: Duration = Duration::from_millis(1500);

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    client
        .json(method, path, token, body.as_ref())
        .await
        .unwrap()
}

/// Ages every reset link in the database past its 30 minutes.
fn age_reset_links(url: &str) {
    let sql = "UPDATE password_resets SET expires_at = 1";
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
        None => {
            let mut conn = diesel::PgConnection::establish(url).unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
    }
}

async fn register_with_address(client: &Client, name: &str, email: &str) {
    let reply = send(
        client,
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({"username": name, "password": "correct horse", "email": email})),
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.json().unwrap()["email_verified"], false);
}

/// Verifies `name`'s address by the link mailed to it (the `n`th mail to
/// it); checks the link works once.
async fn verify(smtp: &Smtp, one: &Client, two: &Client, name: &str, email: &str, n: usize) {
    let bearer = token(one, name, "correct horse").await;
    let asked = send(
        one,
        Method::POST,
        "/v1/users/me/email/verify",
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    let mails = smtp.wait_for(email, n);
    let tokens: Vec<String> = mails
        .iter()
        .flat_map(|m| link_tokens(m, "verify-email"))
        .collect();
    // (each link twice: in the text and in the HTML)
    let newest = tokens
        .iter()
        .find(|t| tokens.iter().filter(|u| u == t).count() == 2)
        .unwrap()
        .clone();
    let mail = mails.iter().find(|m| m.contains(&newest)).unwrap();
    assert!(
        mail.contains("Subject: Confirm your e-mail address"),
        "{mail}"
    );
    assert!(
        mail.contains("text/html"),
        "a plain-text and an HTML part: {mail}"
    );
    let body = json!({"token": newest});
    let used = send(
        two,
        Method::POST,
        "/v1/auth/verify-email",
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(used.status, 204, "{:?}", used.body);
    let again = send(one, Method::POST, "/v1/auth/verify-email", None, Some(body)).await;
    assert_eq!(again.status, 400, "a verification link works once");
    let me = send(one, Method::GET, "/v1/users/me", Some(&bearer), None).await;
    assert_eq!(me.json().unwrap()["email_verified"], true);
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn mail_reaches_users_and_its_links_work_once(database: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = database_url(database, &data);
    let migrated = run("auth-server", &data, &url, &["migrate"], "");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    // A mail server that takes a second to take each message: an answer
    // that waited for it could not come sooner.
    let smtp = Smtp::with_delay(dir.path(), Duration::from_secs(1));
    let mut args = smtp.server_args();
    // (the timing below asks more than a login's allowance per address,
    // and more mail than an account's; the allowances are the core's
    // tests' and the flags')
    args.extend(["--login-burst", "1000", "--mail-burst", "100"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let auth = Running::start("auth-server", &data, &url, "127.0.0.1:0", &args);
    let other = Running::start("auth-server", &data, &url, "127.0.0.1:0", &args);
    let jwks = format!(
        "https://localhost:{}/.well-known/jwks.json",
        auth.addr.port()
    );
    let ca = data.join("tls-cert.pem");
    let tasks = Running::start(
        "task-server",
        &data,
        &url,
        "127.0.0.1:0",
        &["--jwks-url", &jwks, "--jwks-ca-file", ca.to_str().unwrap()],
    );
    let (one, two, task) = (auth.client(&data), other.client(&data), tasks.client(&data));

    register_with_address(&one, "alice", "alice@example.com").await;
    register_with_address(&one, "bob", "bob@example.com").await;
    // A change of address takes the password: a stolen session cannot
    // move the account's mail (and with it, its resets) elsewhere.
    register_with_address(&one, "carol", "carol@example.com").await;
    let carol = token(&one, "carol", "correct horse").await;
    let moved = json!({"email": "mallory@example.net"});
    let refused = send(
        &two,
        Method::PATCH,
        "/v1/users/me",
        Some(&carol),
        Some(moved.clone()),
    )
    .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let mut wrong = moved.clone();
    wrong["current_password"] = json!("wrong horse");
    let refused = send(
        &two,
        Method::PATCH,
        "/v1/users/me",
        Some(&carol),
        Some(wrong),
    )
    .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let mut right = moved;
    right["current_password"] = json!("correct horse");
    let changed = send(
        &two,
        Method::PATCH,
        "/v1/users/me",
        Some(&carol),
        Some(right),
    )
    .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.json().unwrap()["email"], "mallory@example.net");
    assert_eq!(changed.json().unwrap()["email_verified"], false);
    // Before its address is verified, a reset by login mails nothing.
    let asked = send(
        &one,
        Method::POST,
        "/v1/auth/password-reset",
        None,
        Some(json!({"login": "alice"})),
    )
    .await;
    assert_eq!(asked.status, 202);
    verify(&smtp, &one, &two, "alice", "alice@example.com", 1).await;
    verify(&smtp, &two, &one, "bob", "bob@example.com", 1).await;
    assert_eq!(
        smtp.messages().len(),
        2,
        "no reset mail before the address was verified"
    );

    // Signed in on both instances, and a task on task-server.
    let on_one = token(&one, "alice", "correct horse").await;
    let on_two = token(&two, "alice", "correct horse").await;
    let created = send(
        &task,
        Method::POST,
        "/v1/tasks",
        Some(&on_two),
        Some(json!({"title": "a"})),
    )
    .await;
    assert_eq!(created.status, 201);

    // The same answer, as soon, for an account that gets mail and for
    // one that does not exist (by name and by address).
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..8 {
        for (login, times) in [
            (
                if i % 2 == 0 {
                    "alice"
                } else {
                    "ALICE@example.com"
                },
                &mut known,
            ),
            (
                if i % 2 == 0 {
                    "nobody"
                } else {
                    "nobody@example.com"
                },
                &mut unknown,
            ),
        ] {
            let started = Instant::now();
            let reply = send(
                &one,
                Method::POST,
                "/v1/auth/password-reset",
                None,
                Some(json!({"login": login})),
            )
            .await;
            times.push(started.elapsed());
            assert_eq!(reply.status, 202, "{login}");
            assert!(reply.body.is_empty(), "{login}: {:?}", reply.body);
        }
    }
    let (known, unknown) = (median(known), median(unknown));
    assert!(
        known < Duration::from_millis(500) && known.abs_diff(unknown) < Duration::from_millis(50),
        "median answers: {known:?} for an account with mail (each taking the mail server 1 s), \
         {unknown:?} for none"
    );
    // Eight reset mails arrive, after the verification.
    let mails = smtp.wait_for("alice@example.com", 9);
    let resets: Vec<String> = mails
        .iter()
        .filter(|m| m.contains("Subject: Reset your todo password"))
        .flat_map(|m| link_tokens(m, "reset"))
        .collect();
    assert_eq!(
        resets.len(),
        16,
        "eight reset mails, each link in both parts"
    );
    assert!(
        smtp.messages().iter().all(|m| !m.contains("nobody")),
        "no mail for unknown accounts"
    );

    // Only the newest link works, once; the reset ends every session on
    // every instance.
    let mut worked = Vec::new();
    for t in resets.iter().step_by(2) {
        let reply = send(
            &two,
            Method::POST,
            "/v1/auth/password-reset/confirm",
            None,
            Some(json!({"token": t, "new_password": "a brand new horse"})),
        )
        .await;
        assert!(
            reply.status == 204 || reply.status == 400,
            "{:?}",
            reply.body
        );
        if reply.status == 204 {
            worked.push(t.clone());
        }
    }
    assert_eq!(worked.len(), 1, "exactly the newest link works");
    let again = send(
        &one,
        Method::POST,
        "/v1/auth/password-reset/confirm",
        None,
        Some(json!({"token": worked[0], "new_password": "yet another horse"})),
    )
    .await;
    assert_eq!(again.status, 400, "a link works once");
    for (client, path, bearer) in [
        (&one, "/v1/users/me", &on_one),
        (&two, "/v1/users/me", &on_one),
        (&one, "/v1/users/me", &on_two),
        (&task, "/v1/tasks", &on_one),
        (&task, "/v1/tasks", &on_two),
    ] {
        let started = Instant::now();
        loop {
            let reply = send(client, Method::GET, path, Some(bearer), None).await;
            if reply.status == 401 {
                break;
            }
            assert!(
                started.elapsed() < WINDOW,
                "{path} still answers {}",
                reply.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    token(&two, "alice", "a brand new horse").await;

    // A link past its 30 minutes is refused, and the password stays.
    let asked = send(
        &two,
        Method::POST,
        "/v1/auth/password-reset",
        None,
        Some(json!({"login": "bob"})),
    )
    .await;
    assert_eq!(asked.status, 202);
    let mails = smtp.wait_for("bob@example.com", 2);
    let link = mails
        .iter()
        .flat_map(|m| link_tokens(m, "reset"))
        .next()
        .unwrap();
    age_reset_links(&url);
    let late = send(
        &one,
        Method::POST,
        "/v1/auth/password-reset/confirm",
        None,
        Some(json!({"token": link, "new_password": "a brand new horse"})),
    )
    .await;
    assert_eq!(late.status, 400, "{:?}", late.body);
    token(&one, "bob", "correct horse").await;

    // Carol leaves: her account and everything it held are gone from the
    // database, every text column of every table read.
    let me = send(&one, Method::GET, "/v1/users/me", Some(&carol), None).await;
    let carol_id = me.json().unwrap()["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("/v1/tasks", json!({"title": "Carol's"})),
        ("/v1/projects", json!({"name": "Carol's project"})),
    ] {
        let made = send(&task, Method::POST, path, Some(&carol), Some(body)).await;
        assert_eq!(made.status, 201, "{:?}", made.body);
    }
    let verify_asked = send(
        &one,
        Method::POST,
        "/v1/users/me/email/verify",
        Some(&carol),
        None,
    )
    .await;
    assert_eq!(verify_asked.status, 202, "a pending link, to go too");
    let held = |rows: Vec<(String, String, i64)>| -> Vec<String> {
        rows.into_iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(t, c, n)| format!("{t}.{c}: {n}"))
            .collect()
    };
    let db = match &database.config.url {
        todo_store::DatabaseUrl::Sqlite(_) => todo_store::DatabaseUrl::Sqlite(data.join("todo.db")),
        other => other.clone(),
    };
    assert!(!held(todo_store::testing::rows_holding(&db, &carol_id)).is_empty());
    let gone = send(
        &two,
        Method::DELETE,
        "/v1/users/me",
        Some(&carol),
        Some(json!({"current_password": "correct horse"})),
    )
    .await;
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    let left = held(todo_store::testing::rows_holding(&db, &carol_id));
    assert!(
        left.is_empty(),
        "a deleted account leaves nothing: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mail_reaches_users_and_its_links_work_once() {
    mail_reaches_users_and_its_links_work_once(&TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mail_reaches_users_and_its_links_work_once() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    mail_reaches_users_and_its_links_work_once(&database).await;
}

/// Without `--smtp-url`, both mail endpoints say so (503), the same for
/// any login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mail_the_endpoints_answer_503() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("todo.db").display());
    let migrated = run("auth-server", &data, &url, &["migrate"], "");
    assert!(migrated.status.success());
    let auth = Running::start("auth-server", &data, &url, "127.0.0.1:0", &[]);
    let client = auth.client(&data);
    register_with_address(&client, "alice", "alice@example.com").await;
    let bearer = token(&client, "alice", "correct horse").await;
    for login in ["alice", "nobody"] {
        let reply = send(
            &client,
            Method::POST,
            "/v1/auth/password-reset",
            None,
            Some(json!({"login": login})),
        )
        .await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json().unwrap()["type"], "urn:todo:problem:no-mail");
    }
    let reply = send(
        &client,
        Method::POST,
        "/v1/users/me/email/verify",
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(reply.status, 503);
}
