//! Second factors on the real binaries: a TOTP authenticator enrolled on
//! one auth-server instance and confirmed on another; the two-step login
//! begun on one and finished on the other, its tokens taken by
//! task-server; a code accepted once, a recovery code once, an
//! `mfa_token` once, and not after its five minutes; guessing throttled
//! per account; the user's own removal and an administrator's. SQLite and
//! PostgreSQL, two auth-server instances on one database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use diesel::{Connection as _, RunQueryDsl as _};
use http::Method;
use serde_json::{Value, json};
use todo_core::{Clock as _, TotpSecret, step_of};
use todo_store::testing::TestDatabase;
use todo_testkit::{Client, Reply};

use common::{Running, database_url, register, run, token};

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

/// The authenticator app: the code of the step `ahead` steps from now.
fn code(secret: &TotpSecret, ahead: u64) -> String {
    let now = todo_auth::SystemClock.now();
    secret
        .code_at(&todo_auth::AwsHmacSha1, step_of(now) + ahead)
        .digits()
}

/// Runs `sql` on the test's database (to age what waits).
fn execute(url: &str, sql: &str) {
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

/// The sealed secrets as stored.
fn sealed_secrets(url: &str) -> Vec<Vec<u8>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Binary)]
        sealed_secret: Vec<u8>,
    }
    let sql = "SELECT sealed_secret FROM totp_authenticators";
    let rows: Vec<Row> = match url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            diesel::sql_query(sql).load(&mut conn).unwrap()
        }
        None => {
            let mut conn = diesel::PgConnection::establish(url).unwrap();
            diesel::sql_query(sql).load(&mut conn).unwrap()
        }
    };
    rows.into_iter().map(|r| r.sealed_secret).collect()
}

/// A login's first step: the `mfa_token` (and no tokens).
async fn first_step(client: &Client, name: &str) -> String {
    let reply = send(
        client,
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"username": name, "password": "correct horse"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body = reply.json().unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body.get("access_token").is_none(),
        "no token before the code"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "no token before the code"
    );
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn second_step(client: &Client, mfa_token: &str, kind: &str, code: &str) -> Reply {
    send(
        client,
        Method::POST,
        "/v1/auth/login/mfa",
        None,
        Some(json!({"mfa_token": mfa_token, kind: code})),
    )
    .await
}

fn problem(reply: &Reply) -> String {
    reply.json().unwrap()["type"].as_str().unwrap().to_owned()
}

/// Enrols the bearer's user (begun on `one`, confirmed on `two`); the
/// secret, the recovery codes and the code that confirmed it.
async fn enrol(one: &Client, two: &Client, bearer: &str) -> (TotpSecret, Vec<String>, String) {
    let begun = send(
        one,
        Method::POST,
        "/v1/users/me/totp",
        Some(bearer),
        Some(json!({"current_password": "correct horse"})),
    )
    .await;
    assert_eq!(begun.status, 201, "{:?}", begun.body);
    assert_eq!(
        begun.headers.get("cache-control").unwrap(),
        "no-store",
        "a secret is not kept by caches"
    );
    let body = begun.json().unwrap();
    let secret_text = body["secret"].as_str().unwrap();
    assert_eq!(secret_text.len(), 32, "160 bits in base32");
    assert!(
        body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/todo:")
    );
    let svg = body["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
    let secret = TotpSecret::from_base32(secret_text).unwrap();
    let confirming = code(&secret, 0);
    let confirmed = send(
        two,
        Method::POST,
        "/v1/users/me/totp/confirm",
        Some(bearer),
        Some(json!({"code": confirming})),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let codes: Vec<String> = confirmed.json().unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes, confirming)
}

async fn second_factors_on_the_real_binaries(database: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = database_url(database, &data);
    let migrated = run("auth-server", &data, &url, &["migrate"], "");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    // (more logins than an address's and an account's allowance; the
    // throttle of codes is the subject, and keeps its defaults)
    let args = ["--login-burst", "1000", "--account-login-burst", "1000"];
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
    // The key that seals the secrets: made on first start, the owner's only.
    let key = data.join("second-factor.key");
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    register(&one, "alice", "correct horse").await;
    let bearer = token(&one, "alice", "correct horse").await;
    let me = send(&two, Method::GET, "/v1/users/me", Some(&bearer), None).await;
    assert_eq!(me.json().unwrap()["mfa"], json!([]));
    let (secret, recovery, confirming) = enrol(&one, &two, &bearer).await;
    let me = send(&one, Method::GET, "/v1/users/me", Some(&bearer), None).await;
    assert_eq!(me.json().unwrap()["mfa"], json!(["totp", "recovery_code"]));
    // The secret is stored sealed: not its bytes, nor its text.
    let sealed = sealed_secrets(&url);
    assert_eq!(sealed.len(), 1);
    assert!(sealed[0].len() > 20);
    assert!(!sealed[0].windows(20).any(|w| w == secret.expose()));
    assert!(
        !sealed[0]
            .windows(8)
            .any(|w| w == &secret.base32().as_bytes()[..8])
    );

    // The two-step login: begun on one instance, finished on the other.
    let mfa_token = first_step(&one, "alice").await;
    // The code that confirmed the enrolment is spent.
    let replay = second_step(&two, &mfa_token, "totp", &confirming).await;
    assert_eq!(replay.status, 401, "{:?}", replay.body);
    assert_eq!(problem(&replay), "urn:todo:problem:invalid-second-factor");
    let next = code(&secret, 1);
    let signed_in = second_step(&two, &mfa_token, "totp", &next).await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.body);
    let access = signed_in.json().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = send(&task, Method::GET, "/v1/tasks", Some(&access), None).await;
    assert_eq!(listed.status, 200, "task-server takes the tokens");
    // The token is single-use; the code too, on any instance.
    let again = second_step(&one, &mfa_token, "totp", &next).await;
    assert_eq!(again.status, 401);
    assert_eq!(problem(&again), "urn:todo:problem:invalid-mfa-token");
    let fresh = first_step(&two, "alice").await;
    let replay = second_step(&one, &fresh, "totp", &next).await;
    assert_eq!(problem(&replay), "urn:todo:problem:invalid-second-factor");

    // A recovery code signs in once.
    let typed = recovery[2].to_uppercase();
    let used = second_step(&one, &fresh, "recovery_code", &typed).await;
    assert_eq!(used.status, 200, "{:?}", used.body);
    let fresh = first_step(&one, "alice").await;
    let reused = second_step(&two, &fresh, "recovery_code", &recovery[2]).await;
    assert_eq!(problem(&reused), "urn:todo:problem:invalid-second-factor");

    // Malformed second steps are told apart, and cost no attempt.
    for body in [
        json!({"mfa_token": fresh}),
        json!({"mfa_token": fresh, "totp": "12345"}),
        json!({"mfa_token": fresh, "totp": "123456", "recovery_code": recovery[3]}),
    ] {
        let reply = send(&one, Method::POST, "/v1/auth/login/mfa", None, Some(body)).await;
        assert_eq!(reply.status, 400, "{:?}", reply.body);
    }
    let forged = second_step(&one, &"A".repeat(43), "totp", "123456").await;
    assert_eq!(problem(&forged), "urn:todo:problem:invalid-mfa-token");

    // An mfa_token past its five minutes is refused.
    execute(&url, "UPDATE mfa_challenges SET expires_at = 1");
    let expired = second_step(&two, &fresh, "recovery_code", &recovery[4]).await;
    assert_eq!(expired.status, 401, "{:?}", expired.body);
    assert_eq!(problem(&expired), "urn:todo:problem:invalid-mfa-token");

    // Five attempts a token: the sixth is refused even with a right code.
    register(&one, "bob", "correct horse").await;
    let bob = token(&one, "bob", "correct horse").await;
    let (bob_secret, bob_recovery, _) = enrol(&two, &one, &bob).await;
    let wrong = if code(&bob_secret, 1) == "000000" {
        "999999"
    } else {
        "000000"
    };
    let bobs = first_step(&one, "bob").await;
    // (five wrong codes are also the account's free ones)
    for _ in 0..5 {
        let reply = second_step(&two, &bobs, "totp", wrong).await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
        assert_eq!(problem(&reply), "urn:todo:problem:invalid-second-factor");
    }
    let spent = second_step(&one, &bobs, "recovery_code", &bob_recovery[0]).await;
    assert_eq!(spent.status, 401, "{:?}", spent.body);
    assert_eq!(problem(&spent), "urn:todo:problem:invalid-mfa-token");
    // Guessing is throttled per account, whatever the token: past the
    // free failures, even the right code waits.
    let bobs = first_step(&two, "bob").await;
    let mut throttled = false;
    for _ in 0..3 {
        let reply = second_step(&one, &bobs, "totp", wrong).await;
        if reply.status == 429 {
            throttled = true;
            assert!(reply.headers.get("retry-after").is_some());
            break;
        }
    }
    assert!(throttled, "wrong codes past the free ones are throttled");
    let waits = second_step(&two, &bobs, "recovery_code", &bob_recovery[1]).await;
    assert_eq!(waits.status, 429, "{:?}", waits.body);

    // Removal takes the password and a code.
    let removal = json!({"current_password": "correct horse", "code": "000000"});
    let refused = send(
        &two,
        Method::DELETE,
        "/v1/users/me/totp",
        Some(&access),
        Some(removal),
    )
    .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(problem(&refused), "urn:todo:problem:wrong-code");
    let removal = json!({"current_password": "correct horse", "code": recovery[5]});
    let removed = send(
        &two,
        Method::DELETE,
        "/v1/users/me/totp",
        Some(&access),
        Some(removal),
    )
    .await;
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    token(&one, "alice", "correct horse").await;

    // An administrator removes bob's (bob has lost both).
    let created = run(
        "auth-server",
        &data,
        &url,
        &["user", "create", "--admin", "--username", "root"],
        "admin-password\n",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let root = token(&one, "root", "admin-password").await;
    let bob_id = send(&one, Method::GET, "/v1/users/me", Some(&bob), None)
        .await
        .json()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/users/{bob_id}/second-factors");
    let forbidden = send(&one, Method::DELETE, &path, Some(&access), None).await;
    assert_eq!(forbidden.status, 403);
    let removed = send(&two, Method::DELETE, &path, Some(&root), None).await;
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    token(&two, "bob", "correct horse").await;

    // Without --public-url there is no relying party: no passkeys, said so.
    let started = send(&one, Method::POST, "/v1/auth/passkey/start", None, None).await;
    assert_eq!(started.status, 503);
    assert_eq!(problem(&started), "urn:todo:problem:no-passkeys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_second_factors_on_the_real_binaries() {
    second_factors_on_the_real_binaries(&TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_second_factors_on_the_real_binaries() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    second_factors_on_the_real_binaries(&database).await;
}
