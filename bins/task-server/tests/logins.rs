//! Login throttling on the real binaries (issue #11, findings 4 to 6): the
//! per-account limit is enforced; a guess takes its slot before any argon2
//! runs, so concurrent guesses past the allowance are refused unweighed;
//! failure counts live in the database, so instances share them; the delay
//! is capped.
//!
//! auth-server is found beside task-server in the target directory: build
//! it first (`cargo build -p auth-server -p task-server -p todo`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use http::Method;
use serde_json::json;
use todo_store::testing::TestDatabase;
use todo_testkit::{Client, Reply};

use common::{Running, register, run};

/// The database URL the binaries get for `database` (SQLite: a file in `data`).
fn url_for(database: &TestDatabase, data: &Path) -> String {
    match &database.config.url {
        todo_store::DatabaseUrl::Sqlite(_) => {
            format!("sqlite://{}", data.join("todo.db").display())
        }
        todo_store::DatabaseUrl::Postgres(url) => url.clone(),
    }
}

/// Migrates, then starts one auth-server with generous per-client limits
/// (every request here comes from 127.0.0.1) and `extra`.
fn auth_server(data: &Path, url: &str, extra: &[&str]) -> Running {
    let migrated = run("auth-server", data, url, &["migrate"], "");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut args = vec![
        "--login-burst",
        "10000",
        "--login-period-ms",
        "1",
        "--register-burst",
        "10000",
        "--register-period-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    Running::start("auth-server", data, url, "127.0.0.1:0", &args)
}

async fn login(client: &Client, username: &str, password: &str) -> Reply {
    client
        .json(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"username": username, "password": password})),
        )
        .await
        .unwrap()
}

/// The `Retry-After` of a 429, in seconds.
fn retry_after(reply: &Reply) -> u64 {
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    reply
        .headers
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

// Finding 4: `--account-login-burst` was parsed and documented, never checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_account_login_limit_refuses_attempts_past_its_burst() {
    let database = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = url_for(&database, &data);
    let server = auth_server(
        &data,
        &url,
        &[
            "--account-login-burst",
            "3",
            "--account-login-period-ms",
            "600000",
        ],
    );
    let client = server.client(&data);
    register(&client, "alice", "correct horse").await;
    register(&client, "bob", "battery staple").await;

    for attempt in 1..=3 {
        let reply = login(&client, "alice", "correct horse").await;
        assert_eq!(reply.status, 200, "attempt {attempt}: {:?}", reply.body);
    }
    let refused = login(&client, "alice", "correct horse").await;
    let wait = retry_after(&refused);
    assert!(
        (1..=600).contains(&wait),
        "the account's next attempt is one period away: {wait} s"
    );
    // Another account is untouched.
    assert_eq!(login(&client, "bob", "battery staple").await.status, 200);
}

// Finding 5: after the free failures, 12 simultaneous guesses were all
// weighed (check-then-act). One takes the slot; the rest are refused at once.
async fn concurrent_guesses_past_the_allowance_are_refused_unweighed(database: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = url_for(database, &data);
    let server = auth_server(
        &data,
        &url,
        &[
            "--free-login-failures",
            "2",
            "--login-delay-base-ms",
            "120000",
            "--max-login-delay-secs",
            "600",
        ],
    );
    let client = server.client(&data);
    register(&client, "alice", "correct horse").await;
    for _ in 0..2 {
        assert_eq!(login(&client, "alice", "wrong guess").await.status, 401);
    }
    let guesses: Vec<_> = (0..12)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { login(&client, "alice", &format!("guess {i}")).await })
        })
        .collect();
    let mut weighed = 0;
    let mut refused = 0;
    for guess in guesses {
        let reply = guess.await.unwrap();
        match reply.status.as_u16() {
            401 => weighed += 1,
            429 => {
                // 120 s from the slot-taker's clock reading; a guess that
                // read the clock a moment earlier rounds up to 121.
                let wait = retry_after(&reply);
                assert!((1..=121).contains(&wait), "Retry-After {wait}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(
        (weighed, refused),
        (1, 11),
        "one guess past the allowance is weighed, the others refused unweighed"
    );
    // The owner's right password now waits too (no device token here).
    assert_eq!(login(&client, "alice", "correct horse").await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_guesses_past_the_allowance_are_refused_unweighed() {
    concurrent_guesses_past_the_allowance_are_refused_unweighed(&TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_guesses_past_the_allowance_are_refused_unweighed() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    concurrent_guesses_past_the_allowance_are_refused_unweighed(&database).await;
}

// Finding 5: each instance counted failures in its own memory, so two
// instances behind a proxy gave an attacker twice the guesses.
async fn two_instances_share_the_failure_count(database: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = url_for(database, &data);
    let flags = [
        "--free-login-failures",
        "3",
        "--login-delay-base-ms",
        "120000",
    ];
    let first = auth_server(&data, &url, &flags);
    let second = auth_server(&data, &url, &flags);
    let (a, b) = (first.client(&data), second.client(&data));
    register(&a, "alice", "correct horse").await;
    // Three free failures in all, spread over both instances.
    assert_eq!(login(&a, "alice", "wrong 1").await.status, 401);
    assert_eq!(login(&b, "alice", "wrong 2").await.status, 401);
    assert_eq!(login(&a, "alice", "wrong 3").await.status, 401);
    // The fourth is weighed (on B) and starts the delay for both.
    assert_eq!(login(&b, "alice", "wrong 4").await.status, 401);
    let wait_a = retry_after(&login(&a, "alice", "wrong 5").await);
    let wait_b = retry_after(&login(&b, "alice", "wrong 6").await);
    assert!(wait_a > 60 && wait_b > 60, "{wait_a} s, {wait_b} s");
    // A stranger's account is untouched on either.
    register(&b, "bob", "battery staple").await;
    assert_eq!(login(&a, "bob", "battery staple").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_instances_share_the_failure_count() {
    two_instances_share_the_failure_count(&TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_share_the_failure_count() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    two_instances_share_the_failure_count(&database).await;
}

// Finding 5: the delay doubled up to 15 minutes, whatever the operator wanted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_delay_never_exceeds_its_cap() {
    let database = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = url_for(&database, &data);
    let server = auth_server(
        &data,
        &url,
        &[
            "--free-login-failures",
            "0",
            "--login-delay-base-ms",
            "3600000",
            "--max-login-delay-secs",
            "7",
        ],
    );
    let client = server.client(&data);
    register(&client, "alice", "correct horse").await;
    assert_eq!(login(&client, "alice", "wrong").await.status, 401);
    let wait = retry_after(&login(&client, "alice", "wrong again").await);
    assert!(
        (1..=7).contains(&wait),
        "an hour's base delay is capped at 7 s: Retry-After {wait}"
    );
}

async fn login_with_device(client: &Client, username: &str, password: &str, device: &str) -> Reply {
    client
        .json(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"username": username, "password": password, "device_token": device})),
        )
        .await
        .unwrap()
}

// Finding 5: after an attack, the owner's right password got 429 with
// Retry-After: 899. A client that signed in before keeps signing in.
async fn the_owner_with_a_device_token_signs_in_during_an_attack(database: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = url_for(database, &data);
    let flags = [
        "--free-login-failures",
        "2",
        "--login-delay-base-ms",
        "120000",
    ];
    let first = auth_server(&data, &url, &flags);
    let second = auth_server(&data, &url, &flags);
    let (a, b) = (first.client(&data), second.client(&data));
    register(&a, "alice", "correct horse").await;
    let signed_in = login(&a, "alice", "correct horse").await;
    assert_eq!(signed_in.status, 200);
    let device = signed_in.json().unwrap()["device_token"]
        .as_str()
        .expect("a login answers a device token")
        .to_owned();

    // The attack: past the free failures, the account is locked.
    for guess in 0..3 {
        let _ = login(&a, "alice", &format!("guess {guess}")).await;
    }
    let stranger = login(&b, "alice", "correct horse").await;
    assert!(retry_after(&stranger) > 60, "a stranger waits");
    // A stolen-looking token of another account does not help either.
    register(&a, "mallory", "mallory's password").await;
    let mallory = login(&a, "mallory", "mallory's password").await;
    let mallory_device = mallory.json().unwrap()["device_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let borrowed = login_with_device(&b, "alice", "correct horse", &mallory_device).await;
    assert_eq!(
        borrowed.status, 429,
        "a device counts only for its own account"
    );

    // The owner's device signs in, on either instance, and keeps its token.
    for client in [&b, &a] {
        let owner = login_with_device(client, "alice", "correct horse", &device).await;
        assert_eq!(owner.status, 200, "{:?}", owner.body);
        assert_eq!(owner.json().unwrap()["device_token"], device.as_str());
    }
    // ...while the account stays locked for everyone else.
    assert_eq!(login(&b, "alice", "correct horse").await.status, 429);

    // The device has its own failure limit: wrong guesses with it are
    // throttled too (two free, one more, then 429), and only it is.
    let mut statuses = Vec::new();
    for guess in 0..4 {
        let reply = login_with_device(&a, "alice", &format!("device guess {guess}"), &device).await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);

    // The signed-in owner changes the password while the account is under
    // attack (v1.1's attack session found it refused with 429)...
    let owner = login_with_device(&b, "alice", "correct horse", &mallory_device).await;
    assert_eq!(
        owner.status, 429,
        "still locked for a login without her device"
    );
    let session = signed_in.json().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let changed = a
        .json(
            Method::POST,
            "/v1/users/me/password",
            Some(&session),
            Some(&json!({"current_password": "correct horse", "new_password": "battery staple"})),
        )
        .await
        .unwrap();
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    // ...and the devices that signed in with the old password keep no
    // allowance of their own against the new one.
    let stale = login_with_device(&b, "alice", "battery staple", &device).await;
    assert_eq!(
        stale.status, 429,
        "the device was forgotten with the password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_owner_with_a_device_token_signs_in_during_an_attack() {
    the_owner_with_a_device_token_signs_in_during_an_attack(&TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_owner_with_a_device_token_signs_in_during_an_attack() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    the_owner_with_a_device_token_signs_in_during_an_attack(&database).await;
}

/// The stored hash of `username`, read from the database.
fn stored_hash(url: &str, username: &str) -> String {
    use todo_core::UserStore as _;
    let config = todo_store::StoreConfig::new(todo_store::DatabaseUrl::parse(url).unwrap());
    let store = todo_store::SqlStore::open(&config).unwrap();
    let user = todo_core::Username::parse(username).unwrap();
    store
        .find_user_by_username(&user)
        .unwrap()
        .expect("the user exists")
        .password_hash
        .as_str()
        .to_owned()
}

// Finding 6: with the argon2 cost raised, users hashed at the old cost
// answered a wrong password four times faster than an unknown user, which
// told an attacker which usernames exist. And a successful login upgrades
// the stored hash.
async fn unknown_and_known_users_take_the_same_time_after_argon2_costs_rise(
    database: &TestDatabase,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = url_for(database, &data);
    let unthrottled = [
        "--free-login-failures",
        "1000000",
        "--account-login-burst",
        "1000000",
        "--account-login-period-ms",
        "1",
        "--hash-workers",
        "1",
    ];
    let cheap = auth_server(
        &data,
        &url,
        &[&unthrottled[..], &["--argon2-memory-kib", "8192"]].concat(),
    );
    let client = cheap.client(&data);
    register(&client, "alice", "correct horse").await;
    register(&client, "carol", "carol's password").await;
    assert!(cheap.stop().success());
    assert!(stored_hash(&url, "alice").contains("m=8192,"));

    let costly = auth_server(
        &data,
        &url,
        &[&unthrottled[..], &["--argon2-memory-kib", "65536"]].concat(),
    );
    let client = costly.client(&data);
    let timed = |username: &'static str| {
        let client = client.clone();
        async move {
            let started = std::time::Instant::now();
            let reply = login(&client, username, "wrong password").await;
            assert_eq!(
                reply.status, 401,
                "measuring the failure path, not throttling"
            );
            started.elapsed()
        }
    };
    // Warm up connections and the hasher's memory.
    let _ = timed("alice").await;
    let _ = timed("nobody").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..31 {
        known.push(timed("alice").await);
        unknown.push(timed("nobody").await);
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    let ratio = k.as_secs_f64() / u.as_secs_f64();
    assert!(
        (0.75..=1.25).contains(&ratio),
        "medians {k:?} (known user, old cost, wrong password) vs {u:?} (unknown user)"
    );

    // A successful login upgrades the stored hash to today's cost; a
    // failed one leaves it alone.
    assert_eq!(login(&client, "alice", "correct horse").await.status, 200);
    let upgraded = stored_hash(&url, "alice");
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=65536,t=2,p=1$"),
        "{upgraded}"
    );
    assert!(stored_hash(&url, "carol").contains("m=8192,"));
    // The upgraded hash still verifies.
    assert_eq!(login(&client, "alice", "correct horse").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unknown_and_known_users_take_the_same_time_after_argon2_costs_rise() {
    unknown_and_known_users_take_the_same_time_after_argon2_costs_rise(&TestDatabase::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unknown_and_known_users_take_the_same_time_after_argon2_costs_rise() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    unknown_and_known_users_take_the_same_time_after_argon2_costs_rise(&database).await;
}

// Finding 5, for the page: on `todo` (cookie sessions) the device token is
// an HttpOnly `__Host-` cookie, and presenting it lets the owner in while
// the account is locked for everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_its_device_cookie_and_signs_in_during_an_attack() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("todo.db").display());
    let server = Running::start(
        "todo",
        &data,
        &url,
        "127.0.0.1:0",
        &[
            "--login-burst",
            "10000",
            "--login-period-ms",
            "1",
            "--free-login-failures",
            "1",
            "--login-delay-base-ms",
            "120000",
        ],
    );
    let client = server.client(&data);
    register(&client, "alice", "correct horse").await;
    let signed_in = login(&client, "alice", "correct horse").await;
    assert_eq!(signed_in.status, 200);
    let device_cookie = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-todo-device="))
        .expect("a device cookie");
    for attribute in ["Path=/", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(device_cookie.contains(attribute), "{device_cookie}");
    }
    let cookie = device_cookie.split(';').next().unwrap().to_owned();

    for guess in 0..2 {
        let _ = login(&client, "alice", &format!("guess {guess}")).await;
    }
    assert_eq!(login(&client, "alice", "correct horse").await.status, 429);
    let body = serde_json::to_vec(&json!({"username": "alice", "password": "correct horse"}));
    let owner = client
        .send(
            Method::POST,
            "/v1/auth/login",
            &[("content-type", "application/json"), ("cookie", &cookie)],
            Some(body.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(owner.status, 200, "{:?}", owner.body);
}
