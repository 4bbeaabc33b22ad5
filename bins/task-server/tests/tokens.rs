//! The page's refresh cookie and the verified-token cache, on the real
//! binaries (issue #11, findings 8 and 9):
//!
//! - with cookie sessions (`todo`, `auth-server --web-page`) a browser's
//!   token pair carries no refresh token, the cookie is
//!   `__Host-…; Path=/; Secure; HttpOnly; SameSite=Strict`, and session
//!   requests a browser marks as cross-origin are refused (403);
//! - a key withdrawn from auth-server's JWKS stops verifying on task-server
//!   within the refresh period, and a key change empties the token cache;
//! - a token with a `crit` header is refused by both servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use todo_testkit::{Client, Reply};

use common::{Running, binary, free_port, run, server_args, token};

const PASSWORD: &str = "correct horse";

fn sqlite(data: &Path) -> String {
    format!("sqlite://{}", data.join("todo.db").display())
}

fn succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn post(client: &Client, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    client
        .send(
            Method::POST,
            path,
            &all,
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
        .unwrap()
}

/// The `name=value` part of the response's `Set-Cookie`.
fn cookie_of(reply: &Reply) -> String {
    let set_cookie = reply.headers["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

fn assert_forbidden(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {:?}", reply.body);
    assert_eq!(
        reply.headers["content-type"], "application/problem+json",
        "{what}"
    );
    assert_eq!(reply.json().unwrap()["status"], 403, "{what}");
}

// The client's Host is `localhost`: the page's own origin is then this.
const SAME_ORIGIN: &[(&str, &str)] = &[
    ("origin", "https://localhost"),
    ("sec-fetch-site", "same-origin"),
];

async fn the_page_never_sees_a_refresh_token(name: &str, extra: &[&str], create: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = sqlite(&data);
    succeeded(&run(name, &data, &url, create, &format!("{PASSWORD}\n")));
    let server = Running::start(name, &data, &url, "127.0.0.1:0", extra);
    let client = server.client(&data);
    let credentials = json!({"username": "alice", "password": PASSWORD});

    // An API client (no browser headers) keeps API.md's token pair.
    let api = post(&client, "/v1/auth/login", &[], &credentials).await;
    assert_eq!(api.status, 200, "{:?}", api.body);
    let api_refresh = api.json().unwrap()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: an API client gets its refresh token"))
        .to_owned();
    let again = post(
        &client,
        "/v1/auth/refresh",
        &[],
        &json!({"refresh_token": api_refresh}),
    )
    .await;
    assert_eq!(again.status, 200);
    assert!(again.json().unwrap()["refresh_token"].is_string());

    // The page: the refresh token in the cookie only.
    for headers in [SAME_ORIGIN, &[("todo-session", "cookie")]] {
        let login = post(&client, "/v1/auth/login", headers, &credentials).await;
        assert_eq!(login.status, 200, "{:?}", login.body);
        let pair = login.json().unwrap();
        assert!(pair["access_token"].is_string(), "{pair}");
        assert!(
            pair.get("refresh_token").is_none(),
            "{name}: the page's login answer has no refresh token: {pair}"
        );
    }
    let login = post(&client, "/v1/auth/login", SAME_ORIGIN, &credentials).await;
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    let (pair, attributes) = set_cookie.split_once("; ").unwrap();
    assert!(pair.starts_with("__Host-todo_refresh="), "{set_cookie}");
    let attributes: Vec<&str> = attributes.split("; ").collect();
    for wanted in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.contains(&wanted), "{wanted}: {set_cookie}");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{set_cookie}"
    );
    let cookie = cookie_of(&login);

    // Cross-origin or cross-site requests with the cookie are refused, and
    // do not consume it.
    for (what, headers) in [
        ("a foreign Origin", vec![("origin", "https://evil.example")]),
        ("another port", vec![("origin", "https://localhost:1")]),
        ("plain http", vec![("origin", "http://localhost")]),
        ("an opaque Origin", vec![("origin", "null")]),
        ("cross-site", vec![("sec-fetch-site", "cross-site")]),
        ("same-site", vec![("sec-fetch-site", "same-site")]),
        (
            "a same Origin but cross-site",
            vec![
                ("origin", "https://localhost"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ] {
        let mut headers = headers;
        headers.push(("cookie", &cookie));
        for path in ["/v1/auth/refresh", "/v1/auth/logout"] {
            let refused = post(&client, path, &headers, &json!({})).await;
            assert_forbidden(&refused, &format!("{name} {path}, {what}"));
        }
    }
    let refused = post(
        &client,
        "/v1/auth/login",
        &[("origin", "https://evil.example")],
        &credentials,
    )
    .await;
    assert_forbidden(&refused, "a cross-origin login");

    // Same origin: the cookie works and rotates; the body has no token.
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", &cookie));
    let refreshed = post(&client, "/v1/auth/refresh", &headers, &json!({})).await;
    assert_eq!(refreshed.status, 200, "{name}: {:?}", refreshed.body);
    let pair = refreshed.json().unwrap();
    assert!(pair["access_token"].is_string() && pair.get("refresh_token").is_none());
    let cookie = cookie_of(&refreshed);
    // Without Origin or Sec-Fetch-Site (not a browser) the cookie works too,
    // and is never traded for a readable token.
    let plain = post(
        &client,
        "/v1/auth/refresh",
        &[("cookie", &cookie)],
        &json!({}),
    )
    .await;
    assert_eq!(plain.status, 200, "{name}: {:?}", plain.body);
    assert!(plain.json().unwrap().get("refresh_token").is_none());
    let cookie = cookie_of(&plain);
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", &cookie));
    let out = post(&client, "/v1/auth/logout", &headers, &json!({})).await;
    assert_eq!(out.status, 204);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_keeps_the_pages_refresh_token_out_of_script_reach() {
    the_page_never_sees_a_refresh_token("todo", &[], &["create-user", "--username", "alice"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_server_web_page_keeps_the_pages_refresh_token_out_of_script_reach() {
    the_page_never_sees_a_refresh_token(
        "auth-server",
        &["--web-page"],
        &["user", "create", "--username", "alice"],
    )
    .await;
}

/// auth-server (on a fixed address, to restart there) and a task-server
/// that fetches its JWKS, with `env` set on task-server.
struct Split {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    url: String,
    auth_listen: String,
    auth: Running,
    tasks: Running,
}

impl Split {
    fn start(task_env: &[(&str, &str)], task_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let url = sqlite(&data);
        succeeded(&run(
            "auth-server",
            &data,
            &url,
            &["user", "create", "--username", "alice"],
            &format!("{PASSWORD}\n"),
        ));
        let auth_listen = free_port();
        let auth = Running::start("auth-server", &data, &url, &auth_listen, &[]);
        let jwks = format!(
            "https://localhost:{}/.well-known/jwks.json",
            auth.addr.port()
        );
        let mut command = Command::new(binary("task-server"));
        command
            .args(server_args(&data, &url, "127.0.0.1:0"))
            .args(["--jwks-url", &jwks, "--jwks-ca-file"])
            .arg(data.join("tls-cert.pem"))
            .args(task_args)
            .envs(task_env.iter().copied());
        let tasks = Running::spawn("task-server", command);
        Self {
            _dir: dir,
            data,
            url,
            auth_listen,
            auth,
            tasks,
        }
    }

    /// A new signing key; the old public key is withdrawn (removed from
    /// verification-keys/), and auth-server restarts on its address.
    fn rotate_and_withdraw(&mut self) {
        succeeded(&run(
            "auth-server",
            &self.data,
            &self.url,
            &["keys", "rotate"],
            "",
        ));
        let dir = self.data.join("verification-keys");
        let mut withdrawn = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
            withdrawn += 1;
        }
        assert_eq!(withdrawn, 1, "the rotated-out key was in {}", dir.display());
        assert!(self.auth.shut_down().success());
        self.auth = Running::start("auth-server", &self.data, &self.url, &self.auth_listen, &[]);
    }

    async fn tasks_status(&self, token: &str) -> u16 {
        self.tasks
            .client(&self.data)
            .json(Method::GET, "/v1/tasks", Some(token), None)
            .await
            .unwrap()
            .status
            .as_u16()
    }

    async fn validate_status(&self, token: &str) -> u16 {
        self.auth
            .client(&self.data)
            .json(Method::GET, "/v1/auth/validate", Some(token), None)
            .await
            .unwrap()
            .status
            .as_u16()
    }

    async fn alice(&self) -> String {
        token(&self.auth.client(&self.data), "alice", PASSWORD).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_key_stops_verifying_within_the_refresh_period() {
    // The period in the environment: the flag's variable.
    let mut split = Split::start(
        &[("TODO_JWKS_REFRESH_SECS", "2")],
        // No unknown-kid refetch can help within the test.
        &["--jwks-min-refresh-secs", "3600"],
    );
    let old = split.alice().await;
    for _ in 0..2 {
        assert_eq!(split.tasks_status(&old).await, 200, "verified, then cached");
    }
    split.rotate_and_withdraw();
    assert_eq!(
        split.validate_status(&old).await,
        401,
        "auth-server no longer trusts the withdrawn key"
    );
    let withdrawn = Instant::now();
    // Two periods plus a generous margin for a loaded machine.
    let deadline = withdrawn + Duration::from_secs(30);
    loop {
        match split.tasks_status(&old).await {
            401 => break,
            200 => assert!(
                Instant::now() < deadline,
                "task-server still trusts a key withdrawn {:?} ago: {}",
                withdrawn.elapsed(),
                split.tasks.log()
            ),
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new key was picked up by the same refetch.
    let fresh = split.alice().await;
    assert_eq!(split.tasks_status(&fresh).await, 200);
    assert_eq!(split.tasks_status(&old).await, 401, "and stays refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_empties_the_token_cache() {
    // No periodic refetch within the test: only the unknown-kid one.
    let mut split = Split::start(&[], &["--jwks-min-refresh-secs", "0"]);
    let old = split.alice().await;
    for _ in 0..2 {
        assert_eq!(split.tasks_status(&old).await, 200, "verified, then cached");
    }
    split.rotate_and_withdraw();
    // A token of the new key: an unknown kid, so task-server refetches the
    // JWKS, which no longer has the old key.
    let fresh = split.alice().await;
    assert_eq!(split.tasks_status(&fresh).await, 200);
    assert_eq!(
        split.tasks_status(&old).await,
        401,
        "a token of the withdrawn key is refused at once, cached or not"
    );
}

/// Review of #14: a token of a key task-server cannot fetch yet (auth-server
/// down just after a key rotation) was a 401, and a client told 401 with a
/// token just issued ends its session. It is a 503 with `Retry-After`, and
/// verifies once the keys can be fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_key_cannot_be_fetched_yet_gets_503_not_401() {
    let mut split = Split::start(&[], &["--jwks-min-refresh-secs", "0"]);
    split.rotate_and_withdraw();
    let fresh = split.alice().await;
    assert!(split.auth.shut_down().success());
    for _ in 0..3 {
        let reply = split
            .tasks
            .client(&split.data)
            .json(Method::GET, "/v1/tasks", Some(&fresh), None)
            .await
            .unwrap();
        assert_eq!(reply.status, 503, "{}", split.tasks.log());
        assert!(reply.headers.contains_key("retry-after"));
    }
    split.auth = Running::start(
        "auth-server",
        &split.data,
        &split.url,
        &split.auth_listen,
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match split.tasks_status(&fresh).await {
            200 => break,
            503 => assert!(Instant::now() < deadline, "{}", split.tasks.log()),
            other => panic!("unexpected {other}: {}", split.tasks.log()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_crit_header_is_refused_by_both_servers() {
    let split = Split::start(&[], &[]);
    let genuine = split.alice().await;
    let data = jsonwebtoken::dangerous::insecure_decode::<Value>(&genuine).unwrap();
    let pem = std::fs::read(split.data.join("signing-key.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap();
    // Re-signed by the real key as it is: accepted (the forging works).
    let resigned = jsonwebtoken::encode(&data.header, &data.claims, &key).unwrap();
    assert_eq!(split.validate_status(&resigned).await, 200);
    assert_eq!(split.tasks_status(&resigned).await, 200);
    // The same with a `crit` header, which we cannot honour: refused.
    let mut header = data.header.clone();
    header.crit = Some(vec!["exp".to_owned()]);
    let crit = jsonwebtoken::encode(&header, &data.claims, &key).unwrap();
    assert_eq!(split.validate_status(&crit).await, 401, "auth-server");
    assert_eq!(split.tasks_status(&crit).await, 401, "task-server");
}
