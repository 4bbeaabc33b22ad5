//! What an attacker would try, against the real servers: forged and
//! replayed tokens, enumeration, guessing, racing refreshes.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use todo_auth::{JwtSigner, KeyAlgorithm, SigningKey};
use todo_core::{AccessClaims, AccessTokenSigner, Role, UserId, Username};
use todo_store::testing::TestBackend;

use crate::harness::{Options, System, on_both_backends, spawn};

on_both_backends!(
    forged_tokens_all_get_the_same_401,
    a_refresh_token_is_no_bearer_token,
    concurrent_refreshes_over_http_all_keep_the_session,
    refreshes_past_the_per_client_quota_get_429,
    guessing_one_account_is_throttled_while_others_log_in,
);

#[allow(clippy::disallowed_methods)] // tokens are signed for the real clock here
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str, role: Role) -> AccessClaims {
    let now = now();
    AccessClaims {
        subject: UserId::parse(sub).unwrap(),
        username: Username::parse("alice").unwrap(),
        role,
        issuer: "todo-auth".into(),
        audience: "todo".into(),
        issued_at: now,
        not_before: now,
        expires_at: now + 300,
        token_id: uuid::Uuid::from_u128(7),
        session: None,
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Every way to fake a token we know of, for `sub`.
fn forgeries(sys: &System, sub: &str, good: &str) -> Vec<(&'static str, String)> {
    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let mut out = Vec::new();

    let none = json!({"alg": "none", "typ": "JWT", "kid": kid});
    out.push(("alg none", format!("{}.{}.", b64(&none), parts[1])));

    let public_pem = SigningKey::from_pem(&sys.key_pem)
        .unwrap()
        .public_key()
        .to_pem();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    out.push((
        "HS256 with the public key",
        jsonwebtoken::encode(
            &hs,
            &payload,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap(),
    ));

    out.push(("stripped signature", format!("{}.{}.", parts[0], parts[1])));
    for (field, value) in [
        ("sub", json!("01890a5d-ac96-774b-bcce-b302099a8057")),
        ("role", json!("admin")),
        ("exp", json!(now() + 86_400)),
    ] {
        let mut tampered = payload.clone();
        tampered[field] = value;
        let label = match field {
            "sub" => "tampered sub",
            "role" => "tampered role",
            _ => "tampered exp",
        };
        out.push((
            label,
            format!("{}.{}.{}", parts[0], b64(&tampered), parts[2]),
        ));
    }
    let mut unknown = header.clone();
    unknown["kid"] = json!("not-a-key-we-know");
    out.push((
        "unknown kid",
        format!("{}.{}.{}", b64(&unknown), parts[1], parts[2]),
    ));

    let stranger = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    let stranger_pem = stranger.to_pem().to_string();
    out.push((
        "another key",
        JwtSigner::new(stranger)
            .sign(&claims(sub, Role::User))
            .unwrap(),
    ));
    let mut same_kid = Header::new(Algorithm::EdDSA);
    same_kid.kid = Some(kid);
    out.push((
        "another key under our kid",
        jsonwebtoken::encode(
            &same_kid,
            &payload,
            &EncodingKey::from_ed_pem(stranger_pem.as_bytes()).unwrap(),
        )
        .unwrap(),
    ));

    let expired = AccessClaims {
        issued_at: now() - 900,
        not_before: now() - 900,
        expires_at: now() - 120,
        ..claims(sub, Role::User)
    };
    out.push(("expired", sys.signer.sign(&expired).unwrap()));
    let future = AccessClaims {
        issued_at: now() + 600,
        not_before: now() + 600,
        expires_at: now() + 900,
        ..claims(sub, Role::User)
    };
    out.push(("not yet valid", sys.signer.sign(&future).unwrap()));
    let issuer = AccessClaims {
        issuer: "evil".into(),
        ..claims(sub, Role::User)
    };
    out.push(("wrong iss", sys.signer.sign(&issuer).unwrap()));
    let audience = AccessClaims {
        audience: "other-app".into(),
        ..claims(sub, Role::User)
    };
    out.push(("wrong aud", sys.signer.sign(&audience).unwrap()));
    out.push(("garbage", "definitely.not.a-jwt".to_owned()));
    out
}

async fn forged_tokens_all_get_the_same_401(backend: TestBackend) {
    let Some(sys) = spawn(backend, Options::default()).await else {
        return;
    };
    let (id, access, _) = sys.user("alice").await;
    let task = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&access),
            json!({"title": "mine"}),
        )
        .await;
    let task_path = task.headers["location"].to_str().unwrap().to_owned();
    // The genuine token works, so every failure below is the forgery's.
    assert_eq!(
        sys.tasks
            .client
            .json(Method::GET, &task_path, Some(&access), None)
            .await
            .unwrap()
            .status,
        200
    );

    let mut bodies = Vec::new();
    for (what, token) in forgeries(&sys, &id, &access) {
        for (client, path) in [
            (&sys.tasks.client, task_path.as_str()),
            (&sys.tasks.client, "/v1/tasks"),
            (&sys.auth.client, "/v1/auth/validate"),
            (&sys.auth.client, "/v1/users/me"),
        ] {
            let reply = client
                .json(Method::GET, path, Some(&token), None)
                .await
                .unwrap();
            assert_eq!(reply.status, 401, "{what} on {path}");
            assert_eq!(
                reply.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
                "{what}"
            );
            bodies.push(reply.body);
        }
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one body whichever check failed"
    );
}

async fn a_refresh_token_is_no_bearer_token(backend: TestBackend) {
    let Some(sys) = spawn(backend, Options::default()).await else {
        return;
    };
    let (_, _, refresh) = sys.user("alice").await;
    for (client, path) in [
        (&sys.tasks.client, "/v1/tasks"),
        (&sys.auth.client, "/v1/auth/validate"),
    ] {
        assert_eq!(
            client
                .json(Method::GET, path, Some(&refresh), None)
                .await
                .unwrap()
                .status,
            401
        );
    }
}

/// Two tabs or a retry race one refresh token: with the reuse grace, every
/// racer gets a pair and every pair stays alive (v1 answered 200, 401, 401,
/// 401 and then the winner's token was dead too); as many racers as the
/// grace allows (one rotation and `MAX_GRACE_EXCHANGES` more).
async fn concurrent_refreshes_over_http_all_keep_the_session(backend: TestBackend) {
    let Some(sys) = spawn(backend, Options::default()).await else {
        return;
    };
    let (_, _, refresh) = sys.user("alice").await;
    let allowed = 1 + todo_core::TokenPolicy::MAX_GRACE_EXCHANGES as usize;
    let racers: Vec<_> = (0..allowed)
        .map(|_| {
            let client = sys.auth.client.clone();
            let body = json!({"refresh_token": refresh});
            tokio::spawn(async move {
                client
                    .json(Method::POST, "/v1/auth/refresh", None, Some(&body))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut replies = Vec::new();
    for racer in racers {
        replies.push(racer.await.unwrap());
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for reply in &replies {
        let token = reply.json().unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let next = sys
            .auth
            .client
            .json(
                Method::POST,
                "/v1/auth/refresh",
                None,
                Some(&json!({"refresh_token": token})),
            )
            .await
            .unwrap();
        assert_eq!(next.status, 200, "every racer's new token is alive");
    }
}

/// #15 attack: `POST /v1/auth/refresh` had no rate limit (one client
/// exchanged 7,533 times in 9 s). Past its per-client quota it answers 429
/// with `Retry-After`, a problem, before the token is looked at.
async fn refreshes_past_the_per_client_quota_get_429(backend: TestBackend) {
    let Some(sys) = spawn(
        backend,
        Options {
            refresh_burst: 3,
            // No reuse grace: had the refused request used the token, the
            // exchange at the end would be reuse, and fail.
            refresh_reuse_grace: Duration::ZERO,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (_, _, mut refresh) = sys.user("alice").await;
    let exchange = |token: String| {
        let client = sys.auth.client.clone();
        async move {
            client
                .json(
                    Method::POST,
                    "/v1/auth/refresh",
                    None,
                    Some(&json!({"refresh_token": token})),
                )
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        let reply = exchange(refresh.clone()).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        refresh = reply.json().unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let limited = exchange(refresh.clone()).await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.headers["content-type"], "application/problem+json");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    let problem = limited.json().unwrap();
    assert_eq!(problem["type"], "urn:todo:problem:rate-limited");
    assert_eq!(problem["status"], 429);
    // The refused request did not use the token: in-process (no client
    // address, no per-client limit) it still rotates, with no grace to
    // cover a use.
    let token = todo_core::RefreshToken::parse(&refresh).unwrap();
    assert!(sys.service.sessions.refresh(None, &token).is_ok());
}

async fn guessing_one_account_is_throttled_while_others_log_in(backend: TestBackend) {
    let Some(sys) = spawn(
        backend,
        Options {
            trust_loopback_proxy: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    sys.register("victim", "correct horse").await;
    sys.register("bystander", "battery staple").await;
    let attempt = |username: &'static str, password: &'static str, from: &'static str| {
        let client = sys.auth.client.clone();
        async move {
            let body =
                serde_json::to_vec(&json!({"username": username, "password": password})).unwrap();
            let headers = [
                ("content-type", "application/json"),
                ("x-forwarded-for", from),
            ];
            client
                .send(Method::POST, "/v1/auth/login", &headers, Some(body))
                .await
                .unwrap()
        }
    };
    let mut throttled_at = None;
    for i in 1..=20 {
        let reply = attempt("victim", "wrong guess", "198.51.100.7").await;
        if reply.status == 429 {
            assert!(reply.headers.contains_key("retry-after"));
            throttled_at = Some(i);
            break;
        }
        assert_eq!(reply.status, 401);
    }
    let throttled_at = throttled_at.expect("guessing was throttled within 20 attempts");
    assert!(throttled_at <= 20, "{throttled_at}");
    // Even the right password waits now.
    assert_eq!(
        attempt("victim", "correct horse", "198.51.100.7")
            .await
            .status,
        429
    );
    // Another account from another address is untouched.
    assert_eq!(
        attempt("bystander", "battery staple", "203.0.113.5")
            .await
            .status,
        200
    );
}

/// Unknown users and wrong passwords answer alike in bytes and in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_wrong_passwords_take_the_same_time() {
    // Real argon2 parameters: the defence is that both paths hash once.
    let options = Options {
        real_argon2: true,
        ..Options::default()
    };
    let sys = spawn(TestBackend::Sqlite, options).await.unwrap();
    sys.register("alice", "correct horse").await;
    let login = |username: &'static str| {
        let client = sys.auth.client.clone();
        async move {
            let body = json!({"username": username, "password": "wrong password"});
            let started = Instant::now();
            let reply = client
                .json(Method::POST, "/v1/auth/login", None, Some(&body))
                .await
                .unwrap();
            (started.elapsed(), reply)
        }
    };
    // Warm up connections and caches.
    let _ = login("alice").await;
    let _ = login("nobody").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    let (mut known_body, mut unknown_body) = (None, None);
    for round in 0..31 {
        // Which goes first alternates, so that neither is always the one
        // that finds the caches warm.
        let order = if round % 2 == 0 {
            ["alice", "nobody"]
        } else {
            ["nobody", "alice"]
        };
        for username in order {
            let (t, r) = login(username).await;
            assert_eq!(r.status, 401, "measuring the failure path, not throttling");
            if username == "alice" {
                known.push(t);
                known_body = Some(r.body);
            } else {
                unknown.push(t);
                unknown_body = Some(r.body);
            }
        }
    }
    assert_eq!(known_body, unknown_body, "byte-identical answers");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    let ratio = k.as_secs_f64() / u.as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&ratio),
        "medians {k:?} (wrong password) vs {u:?} (unknown user)"
    );
}
