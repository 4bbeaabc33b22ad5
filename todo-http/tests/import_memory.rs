//! What one `POST /v1/import` costs in memory, counted by the allocator
//! itself: a file of 8 MiB crafted to grow once read (millions of empty
//! labels, reminders, list items or parameters) must cost about what the
//! file does, not twenty times it. A binary of its own: the allocator that
//! counts is this process's, and its one test runs alone in it.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use serde_json::Value;
use todo_auth::{
    Argon2Config, Argon2Hasher, JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, OsRandom, SigningKey,
    SystemClock,
};
use todo_core::memory::MemoryStore;
use todo_core::{Credentials, ProjectService, Registration, TaskService, TokenPolicy};
use todo_http::{Frontend, HttpLimits, TaskApi, TrustedProxies};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The largest file an import takes.
const FILE_BYTES: usize = 8 * 1024 * 1024;

struct App {
    runtime: tokio::runtime::Runtime,
    front: Frontend<TaskApi>,
    token: String,
}

fn app() -> App {
    let store = Arc::new(MemoryStore::new());
    let key = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    let keys = KeySet::new([key.public_key().clone()]);
    let policy = TokenPolicy::default();
    let verifier = Arc::new(JwtVerifier::new(keys, &policy.issuer, &policy.audience, 30));
    let light = Argon2Config {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    let auth = todo_auth::auth_services()
        .store(store.clone())
        .hasher(Arc::new(Argon2Hasher::new(light).unwrap()))
        .signer(Arc::new(JwtSigner::new(key)))
        .verifier(verifier)
        .policy(policy)
        .limits(todo_core::AuthLimits::unlimited())
        .build()
        .unwrap();
    let registration = Registration::parse("importer", "correct horse", None).unwrap();
    auth.admin
        .create_user(registration, todo_core::Role::User)
        .unwrap();
    let token = auth
        .sessions
        .login(None, &Credentials::offered("importer", "correct horse"))
        .unwrap()
        .access_token;
    let clock = Arc::new(SystemClock);
    // (an import derives its objects' ids with SHA-256)
    let tasks = TaskService::new(store.clone(), clock.clone(), Arc::new(OsRandom))
        .with_sha256(Arc::new(todo_auth::Sha256Digest));
    let projects = ProjectService::new(store.clone(), store, clock, Arc::new(OsRandom))
        .with_sha256(Arc::new(todo_auth::Sha256Digest));
    let api = TaskApi::new(tasks, Arc::clone(auth.gate()), vec![])
        .unwrap()
        .with_projects(projects);
    App {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        front: Frontend::new(
            Arc::new(api),
            HttpLimits::default(),
            TrustedProxies::default(),
        ),
        token,
    }
}

impl App {
    /// Imports `body` as `kind`: the status, the answer, and the most the
    /// request held at once beyond what the process held before it (the
    /// file's own bytes, made here, not counted: they are kept alive until
    /// the request ends, so that their freeing hides nothing of the count,
    /// which starts from zero).
    fn import(&self, kind: &str, body: Vec<u8>) -> (u16, Value, usize) {
        let body = Bytes::from(body);
        let kept = body.clone();
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/import")
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", kind)
            .body(Full::new(body))
            .unwrap()
            .map(|b| b.map_err(|never| match never {}).boxed_unsync());
        ALLOCATOR.reset_peak_memory();
        let response = self.runtime.block_on(
            self.front
                .handle(request, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        );
        let status = response.status().as_u16();
        let bytes = self
            .runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        let peak = ALLOCATOR.get_peak_memory();
        drop(kept);
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            peak,
        )
    }
}

/// A calendar of one VTODO with a line of `start`, `fill` repeated to make
/// a file of [`FILE_BYTES`], then `end`.
fn calendar(start: &str, fill: u8, end: &str) -> Vec<u8> {
    let head = format!("BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:a\r\nSUMMARY:x\r\n{start}");
    let tail = format!("{end}\r\nEND:VTODO\r\nEND:VCALENDAR\r\n");
    let mut file = head.into_bytes();
    file.resize(FILE_BYTES - tail.len(), fill);
    file.extend_from_slice(tail.as_bytes());
    file
}

/// An export of one task whose array `field` holds as many `item`s as fit
/// in [`FILE_BYTES`].
fn export_of_one_task(field: &str, item: &str) -> Vec<u8> {
    let head = format!(r#"{{"format":"todo.export/1","tasks":[{{"id":"a","title":"x","{field}":["#);
    let mut file = head.into_bytes();
    while file.len() + item.len() + 8 < FILE_BYTES {
        file.extend_from_slice(item.as_bytes());
        file.push(b',');
    }
    file.extend_from_slice(item.as_bytes());
    file.extend_from_slice(b"]}]}");
    file
}

/// An export of `n` tasks, each with a long description: an honest file
/// of nearly [`FILE_BYTES`].
fn export_of_many_tasks(n: usize) -> Vec<u8> {
    let description = "d".repeat(FILE_BYTES / n - 200);
    let tasks: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"t{i}","title":"task {i}","description":"{description}","labels":["home","l{}"],"reminders":[{{"before_due":"PT15M"}}],"due_at":"2027-01-04T09:00:00Z"}}"#,
                i % 7
            )
        })
        .collect();
    format!(
        r#"{{"format":"todo.export/1","tasks":[{}]}}"#,
        tasks.join(",")
    )
    .into_bytes()
}

#[test]
fn an_import_costs_about_its_file_whatever_the_file_holds() {
    let app = app();
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    // The request holds the file once as it reads it (its body gathered);
    // what is read from a crafted file, or said of it, may add half a file
    // more at most.
    let crafted_bound = FILE_BYTES + FILE_BYTES / 2;
    let del = |n: usize| "\u{7f}".repeat(n);
    let crafted = [
        (
            "CATEGORIES of 8 million empty items",
            "text/calendar",
            calendar("CATEGORIES:a", b',', "b"),
            200,
        ),
        (
            "a property of 8 million empty parameters",
            "text/calendar",
            calendar("X-PADDING", b';', ":v"),
            200,
        ),
        (
            "a string of DEL the whole file long, where an export should be",
            "application/json",
            format!("\"{}\"", del(FILE_BYTES - 2)).into_bytes(),
            400,
        ),
        (
            "a string of DEL where a task's flag should be",
            "application/json",
            format!(
                r#"{{"format":"todo.export/1","tasks":[{{"id":"a","title":"x","done":"{}"}}]}}"#,
                del(FILE_BYTES - 100)
            )
            .into_bytes(),
            400,
        ),
        (
            "a time zone named by 8 million DEL",
            "text/calendar",
            calendar("DUE;TZID=", 0x7f, ":20270104T090000"),
            400,
        ),
        (
            "a component named by 8 million letters",
            "text/calendar",
            calendar("BEGIN:", b'x', ""),
            400,
        ),
        (
            "a property named by 8 million letters",
            "text/calendar",
            calendar("X", b'x', ":v"),
            400,
        ),
        (
            "2.7 million empty reminders",
            "application/json",
            export_of_one_task("reminders", "{}"),
            400,
        ),
        (
            "2.7 million empty labels",
            "application/json",
            export_of_one_task("labels", r#""""#),
            400,
        ),
    ];
    for (what, kind, file, expected) in crafted {
        let (status, answer, peak) = app.import(kind, file);
        eprintln!("{what}: {status}, peak {:.1} MiB", mib(peak));
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(
            peak <= crafted_bound,
            "{what}: the import held {:.1} MiB at its peak, more than {:.1} MiB",
            mib(peak),
            mib(crafted_bound)
        );
    }
    // The faults name what was refused, and where.
    let (_, answer, _) = app.import("application/json", export_of_one_task("reminders", "{}"));
    let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("tasks[0]: reminders: at most 10 reminders a task"),
        "{answer}"
    );

    // The most tasks a file may hold, each as small as can be: what each
    // costs beyond its text counts here.
    let tiny: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"id":"{i}","title":"t"}}"#))
        .collect();
    let file = format!(
        r#"{{"format":"todo.export/1","tasks":[{}]}}"#,
        tiny.join(",")
    );
    let file_bytes = file.len();
    let (status, answer, peak) = app.import("application/json", file.into_bytes());
    eprintln!(
        "10,000 tiny tasks ({:.2} MiB): {status}, peak {:.1} MiB",
        mib(file_bytes),
        mib(peak)
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tasks_created"], 10_000);
    // (1.6 KiB a task measured, the in-memory store's copies included)
    assert!(
        peak <= 20 * 1024 * 1024,
        "10,000 tiny tasks held {:.1} MiB at their peak",
        mib(peak)
    );

    // An honest file of the largest size: its 2,000 tasks are written into
    // the in-memory store, which keeps each twice (the task, and its copy
    // in the change log): the body, the file's values, the tasks planned
    // and the two kept come to about five files (42.5 MiB measured).
    let (status, answer, peak) = app.import("application/json", export_of_many_tasks(2_000));
    eprintln!("2,000 tasks of 4 KiB: {status}, peak {:.1} MiB", mib(peak));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tasks_created"], 2_000);
    assert!(
        peak <= 6 * FILE_BYTES,
        "an honest import held {:.1} MiB at its peak",
        mib(peak)
    );
}
