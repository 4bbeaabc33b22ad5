//! The whole router in-process: both APIs and the page on one origin over
//! the in-memory store, fed arbitrary methods, paths, headers and bodies
//! (with or without a valid token). No panic, and never a 5xx.
//!
//! Input: byte 0 picks the method, byte 1 the flags (bit 0: a valid bearer
//! token, bit 1: JSON content type), then `PATH \n HEADER-NAME: VALUE \n BODY`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use todo_auth::{
    Argon2Config, Argon2Hasher, JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, OsRandom,
    SigningKey, SystemClock,
};
use todo_core::memory::MemoryStore;
use todo_core::{Credentials, NewTask, Registration, TaskService, Title, TokenPolicy};
use todo_http::{AuthApi, Frontend, HttpLimits, OneOrigin, TaskApi, TrustedProxies};

struct App {
    runtime: tokio::runtime::Runtime,
    front: Frontend<OneOrigin>,
    token: String,
    task_path: String,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(SystemClock);
        let key = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
        let keys = KeySet::new([key.public_key().clone()]);
        let policy = TokenPolicy::default();
        let verifier = Arc::new(JwtVerifier::new(
            keys.clone(),
            &policy.issuer,
            &policy.audience,
            30,
        ));
        let light = Argon2Config {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        let auth = todo_auth::auth_services()
            .store(store.clone())
            .hasher(Arc::new(Argon2Hasher::new(light).unwrap()))
            .signer(Arc::new(JwtSigner::new(key)))
            .verifier(verifier.clone())
            .policy(policy)
            .limits(todo_core::AuthLimits::unlimited())
            .build()
            .unwrap();
        let registration = Registration::parse("fuzzer", "correct horse", None).unwrap();
        let user = auth
            .admin
            .create_user(registration, todo_core::Role::Admin)
            .unwrap();
        let token = auth
            .sessions
            .login(None, &Credentials::offered("fuzzer", "correct horse"))
            .unwrap()
            .access_token;
        let tasks = TaskService::new(store.clone(), clock.clone(), Arc::new(OsRandom));
        let task = tasks
            .create(user.id, NewTask::titled(Title::parse("seed").unwrap()))
            .unwrap();
        // One gate for both APIs, as in `todo`.
        let gate = Arc::clone(auth.gate());
        let auth_api = AuthApi::new(auth, &keys.to_jwks().unwrap(), vec![])
            .unwrap()
            .with_cookie_sessions();
        let task_api = TaskApi::new(tasks, gate, vec![]).unwrap();
        let one = OneOrigin::new(auth_api, task_api).unwrap();
        App {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            front: Frontend::new(
                Arc::new(one),
                HttpLimits::default(),
                TrustedProxies::default(),
            ),
            token,
            task_path: format!("/v1/tasks/{}", task.id),
        }
    })
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::PUT,
    Method::HEAD,
    Method::OPTIONS,
];

fuzz_target!(|data: &[u8]| {
    let [method, flags, rest @ ..] = data else {
        return;
    };
    let app = app();
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let raw_path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    // `@` stands for the id of a task the token's owner has.
    let path = raw_path.replace('@', &app.task_path);
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let header = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default().to_vec();

    let mut request = Request::builder()
        .method(METHODS[usize::from(*method) % METHODS.len()].clone())
        .uri(path.as_str());
    if flags & 1 == 1 {
        request = request.header("authorization", format!("Bearer {}", app.token));
    }
    if flags & 2 == 2 {
        request = request.header("content-type", "application/json");
    }
    if let Some(colon) = header.iter().position(|b| *b == b':') {
        let (name, value) = header.split_at(colon);
        request = request.header(name, &value[1..]);
    }
    let Ok(request) = request.body(Full::new(Bytes::from(body))) else {
        return;
    };
    let request = request.map(|b| b.map_err(|never| match never {}).boxed_unsync());
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let response = app.runtime.block_on(app.front.handle(request, peer));
    assert!(
        !response.status().is_server_error(),
        "{} {path}: {}",
        response.status(),
        response.status()
    );
});
