//! Second factors through the adapter, on SQLite, PostgreSQL and behind
//! nginx with two instances of each server: an enrolment begun on one
//! auth-server instance is confirmed on the other, and a two-step login
//! begun on one is finished on the other; a code is taken once whichever
//! instance is asked; the answers and their problems are API.md's.

use http::Method;
use serde_json::{Value, json};
use todo_core::{Clock as _, TotpSecret, step_of};
use todo_testkit::{Client, Reply};

use crate::harness::{Deployment, Options, System, on_every_deployment, spawn};

on_every_deployment!(
    a_two_step_login_begun_on_one_instance_finishes_on_another,
    passkey_ceremonies_begun_on_one_instance_are_taken_once_on_another
);

/// The two auth-server instances behind the gateway (each asked
/// directly), or else the one address the system has, twice.
fn two_instances(sys: &System) -> (&Client, &Client) {
    sys.auth_instances()
        .unwrap_or((&sys.auth.client, &sys.auth.client))
}

fn code(secret: &TotpSecret, ahead: u64) -> String {
    let now = todo_auth::SystemClock.now();
    secret
        .code_at(&todo_auth::AwsHmacSha1, step_of(now) + ahead)
        .digits()
}

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Reply {
    client.json(method, path, token, Some(&body)).await.unwrap()
}

async fn a_two_step_login_begun_on_one_instance_finishes_on_another(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (one, two) = two_instances(&sys);
    let (_, access, _) = sys.user("alice").await;
    let begun = send(
        one,
        Method::POST,
        "/v1/users/me/totp",
        Some(&access),
        json!({"current_password": "correct horse"}),
    )
    .await;
    assert_eq!(begun.status, 201, "{:?}", begun.body);
    let secret =
        TotpSecret::from_base32(begun.json().unwrap()["secret"].as_str().unwrap()).unwrap();
    // A code that is not six digits is named; a wrong one is 403.
    let malformed = send(
        two,
        Method::POST,
        "/v1/users/me/totp/confirm",
        Some(&access),
        json!({"code": "12a456"}),
    )
    .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json().unwrap()["errors"][0]["field"], "code");
    let confirming = code(&secret, 0);
    let confirmed = send(
        two,
        Method::POST,
        "/v1/users/me/totp/confirm",
        Some(&access),
        json!({"code": confirming}),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let recovery = confirmed.json().unwrap()["recovery_codes"].clone();
    assert_eq!(recovery.as_array().unwrap().len(), 10);
    // Confirmed once: a second enrolment is refused until this one goes.
    let again = send(
        one,
        Method::POST,
        "/v1/users/me/totp",
        Some(&access),
        json!({"current_password": "correct horse"}),
    )
    .await;
    assert_eq!(again.status, 409);

    let login = send(
        &sys.auth.client,
        Method::POST,
        "/v1/auth/login",
        None,
        json!({"username": "alice", "password": "correct horse"}),
    )
    .await;
    assert_eq!(login.status, 200);
    let first = login.json().unwrap();
    assert_eq!(first["mfa_required"], true);
    assert!(first.get("access_token").is_none() && first.get("refresh_token").is_none());
    assert_eq!(first["expires_in"], 300);
    let mfa_token = first["mfa_token"].as_str().unwrap().to_owned();
    let second = |client: &'static str, body: Value| {
        let client = if client == "one" { one } else { two };
        async move { send(client, Method::POST, "/v1/auth/login/mfa", None, body).await }
    };
    // The confirming code was taken, on the other instance.
    let replay = second("one", json!({"mfa_token": mfa_token, "totp": confirming})).await;
    assert_eq!(replay.status, 401, "{:?}", replay.body);
    assert_eq!(
        replay.json().unwrap()["type"],
        "urn:todo:problem:invalid-second-factor"
    );
    let next = code(&secret, 1);
    let pair = second("two", json!({"mfa_token": mfa_token, "totp": next})).await;
    assert_eq!(pair.status, 200, "{:?}", pair.body);
    let tokens = pair.json().unwrap();
    let signed_in = tokens["access_token"].as_str().unwrap();
    assert!(tokens["refresh_token"].is_string());
    let listed = sys
        .tasks
        .client
        .json(Method::GET, "/v1/tasks", Some(signed_in), None)
        .await
        .unwrap();
    assert_eq!(listed.status, 200);
    let used = second("one", json!({"mfa_token": mfa_token, "totp": next})).await;
    assert_eq!(used.status, 401);
    assert_eq!(
        used.json().unwrap()["type"],
        "urn:todo:problem:invalid-mfa-token"
    );
    let me = one
        .json(Method::GET, "/v1/users/me", Some(signed_in), None)
        .await
        .unwrap();
    assert_eq!(me.json().unwrap()["mfa"], json!(["totp", "recovery_code"]));

    // The account's deletion takes a code too; a recovery code does.
    let refused = send(
        two,
        Method::DELETE,
        "/v1/users/me",
        Some(signed_in),
        json!({"current_password": "correct horse"}),
    )
    .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.json().unwrap()["errors"][0]["field"], "code");
    let deleted = send(
        one,
        Method::DELETE,
        "/v1/users/me",
        Some(signed_in),
        json!({"current_password": "correct horse", "code": recovery[0]}),
    )
    .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
}

/// Rows of the passkey ceremonies' table whose key holds `needle` (a
/// user's id for a registration, a challenge's digest for a sign-in).
fn ceremonies_holding(sys: &System, needle: &str) -> i64 {
    sys.rows_holding(needle)
        .into_iter()
        .filter(|(table, column, _)| table == "passkey_ceremonies" && column == "key")
        .map(|(_, _, n)| n)
        .sum()
}

/// A passkey's ceremonies cannot be finished here without an
/// authenticator (the browser test does it with Chromium's), but what
/// they keep can be seen: a first step made on one instance is taken, once,
/// by the other; whatever the answer, refused alike.
async fn passkey_ceremonies_begun_on_one_instance_are_taken_once_on_another(
    deployment: Deployment,
) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (one, two) = two_instances(&sys);
    let (alice, access, _) = sys.user("alice").await;
    let bare = one
        .json(
            Method::POST,
            "/v1/users/me/passkeys/register/start",
            Some(&access),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        bare.status, 415,
        "a session alone adds no passkey: {:?}",
        bare.body
    );
    let wrong = send(
        one,
        Method::POST,
        "/v1/users/me/passkeys/register/start",
        Some(&access),
        json!({"current_password": "wrong horse"}),
    )
    .await;
    assert_eq!(wrong.status, 403, "{:?}", wrong.body);
    let started = send(
        one,
        Method::POST,
        "/v1/users/me/passkeys/register/start",
        Some(&access),
        json!({"current_password": "correct horse"}),
    )
    .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(started.headers.get("cache-control").unwrap(), "no-store");
    let options = started.json().unwrap();
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(ceremonies_holding(&sys, &alice), 1, "kept in the database");
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"clientDataJSON": "e30", "attestationObject": "oA"}, "extensions": {}});
    let finish = json!({"name": "Laptop", "credential": forged});
    let refused = send(
        two,
        Method::POST,
        "/v1/users/me/passkeys/register/finish",
        Some(&access),
        finish.clone(),
    )
    .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(
        refused.json().unwrap()["type"],
        "urn:todo:problem:passkey-refused"
    );
    assert_eq!(
        ceremonies_holding(&sys, &alice),
        0,
        "taken by the other instance"
    );
    let again = send(
        one,
        Method::POST,
        "/v1/users/me/passkeys/register/finish",
        Some(&access),
        finish,
    )
    .await;
    assert_eq!(again.status, 400);
    let bad_name = send(
        one,
        Method::POST,
        "/v1/users/me/passkeys/register/finish",
        Some(&access),
        json!({"name": " ", "credential": {}}),
    )
    .await;
    assert_eq!(bad_name.status, 400);
    assert_eq!(bad_name.json().unwrap()["errors"][0]["field"], "name");
    let listed = two
        .json(Method::GET, "/v1/users/me/passkeys", Some(&access), None)
        .await
        .unwrap();
    assert_eq!(listed.json().unwrap()["items"], json!([]));
    let none = send(
        two,
        Method::DELETE,
        "/v1/users/me/passkeys/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        Some(&access),
        json!({"current_password": "correct horse"}),
    )
    .await;
    assert_eq!(none.status, 404);

    // A sign-in: no token, no username; its challenge taken once, anywhere.
    let begun = one
        .json(Method::POST, "/v1/auth/passkey/start", None, None)
        .await
        .unwrap();
    assert_eq!(begun.status, 200, "{:?}", begun.body);
    let begun = begun.json().unwrap();
    let challenge_id = begun["challenge_id"].as_str().unwrap().to_owned();
    assert_eq!(begun["publicKey"]["userVerification"], "required");
    assert!(
        begun["publicKey"]
            .get("allowCredentials")
            .is_none_or(|a| a == &json!([]))
    );
    let digest = todo_core::ChallengeId::parse(&challenge_id)
        .unwrap()
        .digest(&todo_auth::Sha256Digest);
    assert_eq!(ceremonies_holding(&sys, digest.as_str()), 1);
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA", "userHandle": "AA"},
        "extensions": {}});
    let body = json!({"challenge_id": challenge_id, "credential": forged});
    let refused = send(
        two,
        Method::POST,
        "/v1/auth/passkey/finish",
        None,
        body.clone(),
    )
    .await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(
        refused.json().unwrap()["type"],
        "urn:todo:problem:invalid-passkey"
    );
    assert_eq!(
        ceremonies_holding(&sys, digest.as_str()),
        0,
        "taken by the other instance"
    );
    let unknown = send(
        one,
        Method::POST,
        "/v1/auth/passkey/finish",
        None,
        json!({"challenge_id": "x", "credential": {}}),
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.body, refused.body,
        "refused alike whatever the reason"
    );
}
