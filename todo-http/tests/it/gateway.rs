//! What only the gateway does: answers of its own that keep the contract,
//! the client address it vouches for, and spreading requests over every
//! instance. (The API rows themselves run behind nginx in `api_auth` and
//! `api_tasks`, module `gateway`.)

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Deployment, Options, System, spawn, tls};

fn assert_problem(reply: &todo_testkit::Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(
        reply.headers["content-type"], "application/problem+json",
        "{:?}",
        reply.body
    );
    assert!(reply.headers.contains_key("x-request-id"));
    let body = reply.json().unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:todo:problem:")
    );
    body
}

/// Sends `request` as raw bytes and reads the answer until the gateway
/// closes the connection (at most 5 s).
async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    mut stream: S,
    request: &[u8],
) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// `None` only when PostgreSQL is skipped on purpose (`TODO_SKIP_POSTGRES`).
async fn gateway(options: Options) -> Option<System> {
    spawn(Deployment::Gateway, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_answers_keep_the_contract() {
    let Some(sys) = gateway(Options::default()).await else {
        return;
    };
    let client = &sys.tasks.client;
    let (_, alice, _) = sys.user("alice").await;

    // Paths the gateway does not route, and the servers' inside endpoints.
    for path in ["/no/such/path", "/metrics", "/readyz", "/healthz"] {
        let reply = client.json(Method::GET, path, None, None).await.unwrap();
        assert_problem(&reply, 404);
    }
    // A refused token gets auth-server's own 401, not nginx's page.
    let missing = client
        .json(Method::GET, "/v1/tasks", None, None)
        .await
        .unwrap();
    assert_problem(&missing, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let forged = client
        .json(Method::GET, "/v1/tasks", Some("e30.e30.c2ln"), None)
        .await
        .unwrap();
    let body = assert_problem(&forged, 401);
    assert_eq!(body["type"], "urn:todo:problem:invalid-token");
    assert_eq!(
        forged.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    // Request ids: a sane one is kept end to end, an insane one replaced.
    let echoed = client
        .send(
            Method::GET,
            "/v1/tasks",
            &[
                ("x-request-id", "abc-123"),
                ("authorization", &format!("Bearer {alice}")),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.headers["x-request-id"], "abc-123");
    let replaced = client
        .send(
            Method::GET,
            "/v1/tasks",
            &[("x-request-id", "<script>")],
            None,
        )
        .await
        .unwrap();
    assert_ne!(replaced.headers["x-request-id"], "<script>");
    // What the servers refuse passes through unchanged.
    let text = client
        .send(
            Method::POST,
            "/v1/tasks",
            &[
                ("authorization", &format!("Bearer {alice}")),
                ("content-type", "text/plain"),
            ],
            Some(b"{\"title\":\"x\"}".to_vec()),
        )
        .await
        .unwrap();
    assert_problem(&text, 415);
    let put = client
        .json(Method::PUT, "/v1/tasks", Some(&alice), None)
        .await
        .unwrap();
    assert_problem(&put, 405);
    assert_eq!(put.headers["allow"], "GET, POST");

    // A head over 16 KiB: 431, as from the servers.
    let big = "b".repeat(20 * 1024);
    let reply = client
        .send(Method::GET, "/v1/tasks", &[("x-big", &big)], None)
        .await
        .unwrap();
    assert_problem(&reply, 431);

    // What nginx itself refuses while reading the head (a request line over
    // 16 KiB, a malformed Host): its own 414 and 400, as problem details.
    let long = format!(
        "GET /v1/tasks?q={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "q".repeat(20 * 1024)
    );
    let bad_host = "GET /v1/tasks HTTP/1.1\r\nHost: bad host\r\n\r\n".to_owned();
    for (request, status) in [(long, "414"), (bad_host, "400")] {
        let answer = exchange(tls(&sys, sys.tasks.addr).await, request.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("urn:todo:problem:bad-request"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("x-request-id:"),
            "{answer}"
        );
    }
    // Plain HTTP to the TLS port, and a transfer coding nginx does not take.
    let plain = tokio::net::TcpStream::connect(sys.tasks.addr)
        .await
        .unwrap();
    let answer = exchange(plain, b"GET /v1/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("urn:todo:problem:bad-request"), "{answer}");
    let gzip = b"POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n";
    let answer = exchange(tls(&sys, sys.tasks.addr).await, gzip).await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // The gateway's internal location is nobody's to call.
    let internal = client
        .json(Method::GET, "/_validate", None, None)
        .await
        .unwrap();
    assert_problem(&internal, 404);

    // Over HTTP/2, nginx ends the connection for a :path past its field
    // limit (a protocol error), or answers: never with an HTML page.
    let long = format!("/v1/tasks?q={}", "q".repeat(20 * 1024));
    if let Ok(reply) = client.send(Method::GET, &long, &[], None).await {
        assert_problem(&reply, reply.status.as_u16());
    }

    // An announced body over 64 KiB is refused before it is sent.
    let mut stream = tls(&sys, sys.tasks.addr).await;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:todo:problem:payload-too-large"),
        "{answer}"
    );
}

/// An import larger than every other body (64 KiB), sent with its
/// Content-Length, passes the gateway: its token check, a subrequest,
/// once weighed the length against the 64 KiB and answered 503 (attack of
/// session 23, A3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_larger_than_other_bodies_passes_the_gateway() {
    let Some(sys) = gateway(Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let mut calendar =
        String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//todo tests//EN\r\n");
    for i in 0..400 {
        calendar.push_str(&format!(
            "BEGIN:VTODO\r\nUID:big-{i}@test\r\nSUMMARY:{i:03} {}\r\nEND:VTODO\r\n",
            "x".repeat(150)
        ));
    }
    calendar.push_str("END:VCALENDAR\r\n");
    assert!(calendar.len() > 64 * 1024, "{} bytes", calendar.len());
    let (status, counts) =
        crate::projects::import(&sys, &alice, "text/calendar", calendar.into_bytes()).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts["tasks_created"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_choose_their_address_through_the_gateway() {
    // One registration per address per instance: two instances, so the
    // third registration from one client is refused, whatever address it
    // claims. Were the claimed address believed, each would be a new client.
    let Some(sys) = gateway(Options {
        register_burst: 1,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..4 {
        let spoofed = format!("203.0.113.{i}");
        let body = serde_json::to_vec(
            &json!({"username": format!("spoof{i}"), "password": "correct horse"}),
        )
        .unwrap();
        let reply = sys
            .auth
            .client
            .send(
                Method::POST,
                "/v1/auth/register",
                &[
                    ("content-type", "application/json"),
                    ("x-forwarded-for", &spoofed),
                    ("x-real-ip", &spoofed),
                ],
                Some(body),
            )
            .await
            .unwrap();
        statuses.push(reply.status.as_u16());
        if reply.status == 429 {
            assert_problem(&reply, 429);
            assert!(reply.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [201, 201, 429, 429], "{statuses:?}");
}

/// What `instance` has served of `route` (a metrics label set) so far.
async fn served(instance: &crate::harness::Server, route: &str) -> u64 {
    let metrics = instance
        .client
        .json(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    text.lines()
        .filter(|line| line.contains(route))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_every_instance() {
    let Some(sys) = gateway(Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    assert_eq!(sys.instances.len(), 4);
    // auth instances validate tokens for auth_request; task instances
    // create tasks. (Counted before and after: a deployment running
    // elsewhere has served earlier tests.)
    let route = |i: usize| {
        if i.is_multiple_of(2) {
            "route=\"/v1/auth/validate\",method=\"GET\",status=\"200\""
        } else {
            "route=\"/v1/tasks\",method=\"POST\",status=\"201\""
        }
    };
    let mut before = Vec::new();
    for (i, instance) in sys.instances.iter().enumerate() {
        before.push(served(instance, route(i)).await);
    }
    for i in 0..10 {
        let reply = sys
            .post(
                &sys.tasks.client,
                "/v1/tasks",
                Some(&alice),
                json!({"title": format!("task {i}")}),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
    for (i, instance) in sys.instances.iter().enumerate() {
        let after = served(instance, route(i)).await;
        assert!(
            after > before[i],
            "instance {i} served none of {}: {after}",
            route(i)
        );
    }
    // Every task is visible whichever task instance answers the list.
    for _ in 0..2 {
        let list = sys
            .tasks
            .client
            .json(Method::GET, "/v1/tasks?limit=100", Some(&alice), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_and_its_cookie_sessions_work_through_the_gateway() {
    let Some(sys) = gateway(Options::default()).await else {
        return;
    };
    let client = &sys.auth.client;
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/api.js", "text/javascript; charset=utf-8"),
        ("/dates.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let reply = client.send(Method::GET, path, &[], None).await.unwrap();
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.headers["content-type"], kind, "{path}");
        assert!(
            reply.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{path}"
        );
    }
    assert_problem(
        &client
            .send(Method::GET, "/index.html", &[], None)
            .await
            .unwrap(),
        404,
    );

    // The page's session: the refresh token as an HttpOnly cookie, which
    // any auth-server instance honours.
    sys.register("alice", "correct horse").await;
    let login = sys
        .post(
            client,
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, 200);
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Host-todo_refresh=")
            && set_cookie.contains("; Path=/; Secure; HttpOnly; SameSite=Strict"),
        "{set_cookie}"
    );
    let mut cookie = set_cookie.split(';').next().unwrap().to_owned();
    for _ in 0..4 {
        let refreshed = client
            .send(
                Method::POST,
                "/v1/auth/refresh",
                &[
                    ("content-type", "application/json"),
                    ("cookie", &cookie),
                    // The browser's Origin for the Host it used (the client's).
                    ("origin", "https://localhost"),
                    ("sec-fetch-site", "same-origin"),
                ],
                Some(b"{}".to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
        assert!(refreshed.json().unwrap().get("refresh_token").is_none());
        let access = refreshed.json().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let tasks = sys
            .tasks
            .client
            .json(Method::GET, "/v1/tasks", Some(&access), None)
            .await
            .unwrap();
        assert_eq!(tasks.status, 200);
        cookie = refreshed.headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
    }
    // Through nginx auth-server still tells a foreign Origin from its own.
    let foreign = client
        .send(
            Method::POST,
            "/v1/auth/refresh",
            &[
                ("content-type", "application/json"),
                ("cookie", &cookie),
                ("origin", "https://localhost:1"),
            ],
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_problem(&foreign, 403);
}

/// One request over HTTP/2 (TLS, ALPN h2) to the gateway; the status and
/// whether `Retry-After` came with it.
async fn over_http2(
    sys: &System,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let mut roots = rustls::RootCertStore::empty();
    roots.add(sys.cert.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(sys.tasks.addr)
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::get(format!("https://localhost{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

/// A head the gateway takes but the servers refuse (over 16 KiB in all,
/// each field under nginx's 16 KiB): over HTTP/2 and over HTTP/1.1 alike,
/// 431 and no `Retry-After`, on the routes behind `auth_request` too —
/// never the 503 nginx made of auth-server's 431 to `/_validate` (attack
/// s22, F7: over HTTP/2 nginx does not hold a field to its HTTP/1.1 line
/// buffer, and two HTTP/1.1 lines of 10 KiB each fit it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_too_large_for_the_servers_get_431_through_the_gateway_over_either_protocol() {
    let Some(sys) = gateway(Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let bearer = format!("Bearer {alice}");
    let big = "a".repeat(17 * 1024);
    let half = "a".repeat(10 * 1024);
    let long_token = format!("Bearer {}", "a".repeat(17 * 1024));
    // Behind auth_request (tasks, the import): the gateway's own 431, a
    // problem. Straight to auth-server: its 431 passes through (hyper's,
    // with no body, when the head overflows its read buffer).
    for (path, problem) in [
        ("/v1/tasks", true),
        ("/v1/import", true),
        ("/v1/auth/validate", false),
    ] {
        let cases: [&[(&str, &str)]; 3] = [
            &[("authorization", &bearer), ("x-big", &big)],
            &[
                ("authorization", &bearer),
                ("x-half", &half),
                ("x-other-half", &half),
            ],
            &[("authorization", &long_token)],
        ];
        for headers in cases {
            let sizes: Vec<_> = headers.iter().map(|(n, v)| (n, v.len())).collect();
            let (status, retry, body) = over_http2(&sys, path, headers).await;
            assert_eq!(status, 431, "HTTP/2 {path} {sizes:?}: {body}");
            assert_eq!(retry, None, "HTTP/2 {path} {sizes:?}");
            if problem {
                assert!(
                    body.contains("urn:todo:problem:bad-request"),
                    "HTTP/2 {path} {sizes:?}: {body}"
                );
            }
        }
        // HTTP/1.1: two lines, each within nginx's line buffer.
        let reply = sys
            .tasks
            .client
            .send(Method::GET, path, cases[1], None)
            .await
            .unwrap();
        if problem {
            assert_problem(&reply, 431);
        }
        assert_eq!(reply.status, 431, "HTTP/1.1 {path}");
        assert!(!reply.headers.contains_key("retry-after"), "{path}");
    }
    // The same request within the limit is served over HTTP/2.
    let (status, _, body) = over_http2(&sys, "/v1/tasks", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
}
