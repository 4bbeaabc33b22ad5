//! The general rules: shared endpoints, request ids, limits on heads, bodies
//! and time, graceful shutdown, and load shedding when hashing is saturated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use todo_auth::{Argon2Hasher, BoundedHasher, PoolLimits};
use todo_core::{HashError, Password, PasswordHash, PasswordHasher, Verification};
use todo_http::HttpLimits;
use todo_store::testing::TestBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{LIGHT, Options, on_both_backends, spawn, tls, tls_connector};

on_both_backends!(
    shared_endpoints_answer_on_both_servers,
    malformed_requests_get_their_statuses_and_the_server_stays_healthy,
    in_flight_requests_finish_during_graceful_shutdown,
    task_reads_keep_answering_while_the_hashing_queue_is_full,
);

async fn shared_endpoints_answer_on_both_servers(backend: TestBackend) {
    let Some(sys) = spawn(backend, Options::default()).await else {
        return;
    };
    for client in [&sys.auth.client, &sys.tasks.client] {
        let health = client
            .json(Method::GET, "/healthz", None, None)
            .await
            .unwrap();
        assert_eq!(health.status, 200);
        assert!(health.headers.contains_key("x-request-id"));
        assert_eq!(
            client
                .json(Method::GET, "/readyz", None, None)
                .await
                .unwrap()
                .status,
            200
        );
        let metrics = client
            .json(Method::GET, "/metrics", None, None)
            .await
            .unwrap();
        assert_eq!(metrics.status, 200);
        let text = String::from_utf8(metrics.body.to_vec()).unwrap();
        assert!(
            text.contains(
                "todo_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("todo_db_pool_connections"), "{text}");
        let openapi = client
            .json(Method::GET, "/openapi.json", None, None)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(openapi["openapi"], "3.1.0");
        assert_eq!(
            client
                .json(Method::POST, "/healthz", None, Some(&json!({})))
                .await
                .unwrap()
                .status,
            405
        );
        let missing = client
            .json(Method::GET, "/no/such/path", None, None)
            .await
            .unwrap();
        assert_eq!(missing.status, 404);
        assert_eq!(missing.headers["content-type"], "application/problem+json");
        // A sane request id is echoed; an insane one is replaced.
        let echoed = client
            .send(
                Method::GET,
                "/healthz",
                &[("x-request-id", "abc-123")],
                None,
            )
            .await
            .unwrap();
        assert_eq!(echoed.headers["x-request-id"], "abc-123");
        let replaced = client
            .send(
                Method::GET,
                "/healthz",
                &[("x-request-id", "<script>")],
                None,
            )
            .await
            .unwrap();
        assert_ne!(replaced.headers["x-request-id"], "<script>");
        assert_eq!(echoed.headers["x-content-type-options"], "nosniff");
    }
    let text = sys
        .auth
        .client
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    let text = String::from_utf8(text.body.to_vec()).unwrap();
    for name in [
        "todo_hashing_queue_depth",
        "todo_logins_succeeded_total",
        "todo_rate_limited_total",
        "todo_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    let put = sys
        .tasks
        .client
        .json(Method::PUT, "/v1/tasks", None, None)
        .await
        .unwrap();
    assert_eq!(put.status, 405);
    assert_eq!(put.headers["allow"], "GET, POST");
}

async fn malformed_requests_get_their_statuses_and_the_server_stays_healthy(backend: TestBackend) {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let Some(sys) = spawn(
        backend,
        Options {
            register_burst: 3,
            limits,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let auth = format!("Bearer {alice}");
    let post = |body: Vec<u8>, content_type: &'static str| {
        let auth = auth.clone();
        async move {
            client
                .send(
                    Method::POST,
                    "/v1/tasks",
                    &[("authorization", &auth), ("content-type", content_type)],
                    Some(body),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(
        post(b"{\"title\": ".to_vec(), "application/json")
            .await
            .status,
        400,
        "truncated JSON"
    );
    assert_eq!(
        post(b"{\"title\": \"\xff\xfe\"}".to_vec(), "application/json")
            .await
            .status,
        400,
        "invalid UTF-8"
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        post(deep.into_bytes(), "application/json").await.status,
        400,
        "10,000-deep JSON"
    );
    assert_eq!(
        post(b"{\"title\":\"x\"}".to_vec(), "text/plain")
            .await
            .status,
        415
    );
    // An oversized body is refused, sent or not: announce 70 KB and send
    // none of it (the 413 comes when the server stops waiting for it, 1 s
    // at most)...
    let mut big_body = tls(&sys, sys.tasks.addr).await;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n"
    );
    big_body.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), big_body.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // ... or send it all first: the client reads the 413, not a reset (the
    // server reads what was sent, within 1 MiB, before it answers and
    // closes; schemathesis met the reset on `POST /v1/projects`).
    for length in [70_000, 120_000, 900_000] {
        let mut sent = tls(&sys, sys.tasks.addr).await;
        let head = format!(
            "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        sent.write_all(head.as_bytes()).await.unwrap();
        sent.write_all(&vec![b' '; length]).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), sent.read_to_end(&mut answer));
        let _ = read.await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{length}: {answer}");
    }

    // A head over 16 KiB.
    let big = "b".repeat(20 * 1024);
    let reply = client
        .send(Method::GET, "/healthz", &[("x-big", &big)], None)
        .await;
    assert!(matches!(&reply, Ok(r) if r.status == 431), "{reply:?}");
    // ...on a connection kept alive too, whose read buffer has grown (hyper
    // alone let a 30 KiB head through there: attack s22, F7).
    let mut kept = tls(&sys, sys.tasks.addr).await;
    for (size, status) in [(0, "200"), (0, "200"), (30 * 1024, "431")] {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(size)
        );
        kept.write_all(head.as_bytes()).await.unwrap();
        let answer = next_answer(&mut kept).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{size}: {answer}"
        );
    }

    // Absurd query values.
    let absurd = format!("/v1/tasks?q={}&limit=1", "q".repeat(5000));
    assert_eq!(
        client
            .json(Method::GET, &absurd, Some(&alice), None)
            .await
            .unwrap()
            .status,
        400
    );

    // Slowloris: a head that never ends is cut off.
    let mut slow = tls(&sys, sys.tasks.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await;
    assert!(closed.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // An idle keep-alive connection is closed too.
    let mut idle = tls(&sys, sys.tasks.addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = vec![0u8; 4096];
    let n = idle.read(&mut response).await.unwrap();
    assert!(String::from_utf8_lossy(&response[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut response)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Registration floods from one address are limited.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let reply = sys
            .post(
                &sys.auth.client,
                "/v1/auth/register",
                None,
                json!({"username": format!("flood{i}"), "password": "correct horse"}),
            )
            .await;
        if reply.status == 429 {
            assert!(reply.headers.contains_key("retry-after"));
        }
        statuses.push(reply.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    assert_eq!(
        client
            .json(Method::GET, "/healthz", None, None)
            .await
            .unwrap()
            .status,
        200,
        "still healthy"
    );
    assert_eq!(
        client
            .json(Method::GET, "/v1/tasks", Some(&alice), None)
            .await
            .unwrap()
            .status,
        200
    );
}

async fn in_flight_requests_finish_during_graceful_shutdown(backend: TestBackend) {
    let Some(mut sys) = spawn(backend, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let body = br#"{"title": "written while the server stops"}"#;
    let (first, rest) = body.split_at(10);
    let mut stream = tls(&sys, sys.tasks.addr).await;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = sys.tasks.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(sys.tasks.addr)
            .await
            .is_err(),
        "no new connections once stopping"
    );
    stream.write_all(rest).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped")
        .unwrap();
    sys.auth.shutdown().await;
}

/// argon2 made slow, to fill the queue in a test.
struct Slow(Argon2Hasher);

impl PasswordHasher for Slow {
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        std::thread::sleep(Duration::from_millis(400));
        self.0.hash(password)
    }
    fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<Verification, HashError> {
        std::thread::sleep(Duration::from_millis(400));
        self.0.verify(password, hash)
    }
    fn dummy_hash(&self) -> &PasswordHash {
        self.0.dummy_hash()
    }
}

async fn task_reads_keep_answering_while_the_hashing_queue_is_full(backend: TestBackend) {
    let limits = PoolLimits {
        running: 1,
        waiting: 1,
        retry_after: Duration::from_secs(2),
    };
    let hasher = Arc::new(BoundedHasher::new(
        Slow(Argon2Hasher::new(LIGHT).unwrap()),
        limits,
    ));
    let options = Options {
        hasher: Some(hasher),
        probe_hasher: false,
        ..Options::default()
    };
    let Some(sys) = spawn(backend, options).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let task = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&alice),
            json!({"title": "read me"}),
        )
        .await;
    let path = task.headers["location"].to_str().unwrap().to_owned();

    let logins: Vec<_> = (0..6)
        .map(|_| {
            let client = sys.auth.client.clone();
            tokio::spawn(async move {
                client
                    .json(
                        Method::POST,
                        "/v1/auth/login",
                        None,
                        Some(&json!({"username": "alice", "password": "correct horse"})),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let read = sys
            .tasks
            .client
            .json(Method::GET, &path, Some(&alice), None)
            .await
            .unwrap();
        assert_eq!(read.status, 200);
        slowest = slowest.max(started.elapsed());
    }
    let mut shed = 0;
    for login in logins {
        let reply = login.await.unwrap();
        match reply.status.as_u16() {
            200 => {}
            503 => {
                assert_eq!(reply.headers["retry-after"], "2");
                shed += 1;
            }
            // Six attempts on one account at once: each counts as a
            // failure until it succeeds, so the sixth may find the free
            // allowance taken (shed ones give theirs back).
            429 => assert!(reply.headers.contains_key("retry-after")),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        shed >= 1,
        "with one worker and one queue slot, some of six logins are shed"
    );
    assert!(
        slowest < Duration::from_millis(400),
        "a read took {slowest:?} while hashing was saturated"
    );
}

/// An answer given before its request's body was read (here a 401 for a
/// create without a token, its 60 KB body still coming) ends the
/// connection, and says so (`Connection: close`): a client that sent its
/// next request on it got a broken pipe (attack of session 24, F3). A
/// request whose body was read keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_says_the_connection_closes() {
    let sys = spawn(TestBackend::Sqlite, Options::default())
        .await
        .unwrap();
    let body = format!("{{\"title\": \"{}\"}}", "t".repeat(60_000));
    let mut early = tls(&sys, sys.tasks.addr).await;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    early.write_all(head.as_bytes()).await.unwrap();
    early.write_all(&body.as_bytes()[..1000]).await.unwrap();
    early.flush().await.unwrap();
    let answer = next_answer(&mut early).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );

    // A create that reads its body keeps the connection, and says nothing.
    let (_, token, _) = sys.user("alice").await;
    let mut kept = tls(&sys, sys.tasks.addr).await;
    let small = r#"{"title": "kept"}"#;
    let request = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{small}",
        small.len()
    );
    kept.write_all(request.as_bytes()).await.unwrap();
    let first = next_answer(&mut kept).await;
    assert!(first.starts_with("HTTP/1.1 201"), "{first}");
    assert!(
        !first
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{first}"
    );
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let second = next_answer(&mut kept).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed() {
    let limits = HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    };
    let sys = spawn(
        TestBackend::Sqlite,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let _first = tls(&sys, sys.tasks.addr).await;
    let _second = tls(&sys, sys.tasks.addr).await;
    let third = tokio::time::timeout(Duration::from_secs(5), async {
        let tcp = tokio::net::TcpStream::connect(sys.tasks.addr)
            .await
            .unwrap();
        tls_connector(&sys)
            .connect("localhost".try_into().unwrap(), tcp)
            .await
    })
    .await
    .expect("answered at once");
    assert!(third.is_err(), "the third connection was closed");
    drop(_first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sys.tasks
            .client
            .json(Method::GET, "/healthz", None, None)
            .await
            .unwrap()
            .status,
        200,
        "a freed slot serves again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_gives_503_and_readyz_says_so() {
    use todo_auth::{
        JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, OsRandom, SigningKey, SystemClock,
    };
    use todo_core::{AccessClaims, AccessTokenSigner, Role, TaskService, UserId, Username};
    use todo_http::{Frontend, TaskApi, TrustedProxies, serve};
    use todo_store::{DatabaseUrl, SqlStore, StoreConfig};

    // Nothing listens on port 1.
    let mut config =
        StoreConfig::new(DatabaseUrl::parse("postgres://todo@127.0.0.1:1/todo").unwrap());
    config.acquire_timeout = Duration::from_millis(300);
    let store = Arc::new(SqlStore::open(&config).unwrap());
    let key = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    let verifier = Arc::new(JwtVerifier::new(
        KeySet::new([key.public_key().clone()]),
        "todo-auth",
        "todo",
        5,
    ));
    let clock = Arc::new(SystemClock);
    let service = TaskService::new(store.clone(), clock.clone(), Arc::new(OsRandom));
    let gate = Arc::new(todo_core::AccessGate::new(verifier, store.clone(), clock));
    let probe = todo_server::StoreProbe::shared((*store).clone());
    let api = TaskApi::new(service, gate, vec![probe]).unwrap();
    let front = Arc::new(Frontend::new(
        Arc::new(api),
        HttpLimits::default(),
        TrustedProxies::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(front, listener, None, std::future::pending()));
    let client = todo_testkit::Client::plain(addr);

    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = JwtSigner::new(key)
        .sign(&AccessClaims {
            subject: UserId::parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap(),
            username: Username::parse("alice").unwrap(),
            role: Role::User,
            issuer: "todo-auth".into(),
            audience: "todo".into(),
            issued_at: now,
            not_before: now,
            expires_at: now + 300,
            token_id: uuid::Uuid::from_u128(1),
            session: None,
        })
        .unwrap();
    assert_eq!(
        client
            .json(Method::GET, "/healthz", None, None)
            .await
            .unwrap()
            .status,
        200,
        "alive"
    );
    let ready = client
        .json(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    let started = Instant::now();
    let list = client
        .json(Method::GET, "/v1/tasks", Some(&token), None)
        .await
        .unwrap();
    assert_eq!(list.status, 503);
    assert!(list.headers.contains_key("retry-after"));
    let body = String::from_utf8_lossy(&list.body);
    assert!(
        !body.contains("127.0.0.1") && !body.contains("connect"),
        "no internals in a 5xx body: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the pool wait"
    );
}

/// The next answer on a kept-alive HTTP/1.1 connection: its head, and its
/// body as far as `Content-Length` says (at most 5 s).
async fn next_answer<S: AsyncReadExt + Unpin>(stream: &mut S) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                return String::from_utf8_lossy(&answer).into_owned();
            }
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap()
}
