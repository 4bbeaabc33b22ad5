//! The served routes and the OpenAPI documents cannot drift apart: the
//! served document is the generated one, every documented operation is
//! routed and every routed one documented, every `$ref` resolves, every
//! operation lists the common errors, and the domain's limits land.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Value, json};
use todo_core::{ChangeKind, Description, PageLimit, ProjectName, Title, WebhookUrl};
use todo_http::{openapi, routes};
use todo_store::testing::TestBackend;

use crate::harness::{Options, spawn};

type Operations = BTreeSet<(String, String)>;

fn documented(document: &Value) -> Operations {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((path.clone(), method.to_uppercase()));
        }
    }
    operations
}

/// The auth API's routes are its handlers' own descriptions.
fn served_auth() -> Operations {
    let document = serde_json::to_value(routes::auth()).unwrap();
    with_shared(documented(&document))
}

/// The task API's routes are its handlers' own descriptions.
fn served_tasks() -> Operations {
    let document = serde_json::to_value(routes::tasks()).unwrap();
    with_shared(documented(&document))
}

fn with_shared(mut operations: Operations) -> Operations {
    for shared in openapi::SHARED_PATHS {
        operations.insert((shared.to_owned(), "GET".to_owned()));
    }
    operations
}

fn documents() -> [(&'static str, Value); 3] {
    [
        ("auth", openapi::auth()),
        ("tasks", openapi::tasks()),
        ("one origin", openapi::one_origin()),
    ]
}

/// The v1 routes of the REST contract (shared/API.md), written out here
/// apart from the code: the documents must name exactly these.
const CONTRACT_AUTH: [(&str, &str); 38] = [
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/validate"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/v1/users/me"),
    ("PATCH", "/v1/users/me"),
    ("DELETE", "/v1/users/me"),
    ("POST", "/v1/users/me/password"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{id}"),
    ("PATCH", "/v1/users/{id}"),
    ("DELETE", "/v1/users/{id}"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/revoke-others"),
    ("POST", "/v1/api-tokens"),
    ("GET", "/v1/api-tokens"),
    ("DELETE", "/v1/api-tokens/{id}"),
    // (#17's "Admin: see a user's sessions, end them"; not in API.md yet)
    ("GET", "/v1/users/{id}/sessions"),
    ("DELETE", "/v1/users/{id}/sessions"),
    ("POST", "/v1/users/{id}/password-reset"),
    ("POST", "/v1/auth/password-reset/confirm"),
    ("POST", "/v1/auth/password-reset"),
    ("POST", "/v1/users/me/email/verify"),
    ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/users/me/totp"),
    ("POST", "/v1/users/me/totp/confirm"),
    ("DELETE", "/v1/users/me/totp"),
    ("POST", "/v1/auth/login/mfa"),
    ("POST", "/v1/users/me/passkeys/register/start"),
    ("POST", "/v1/users/me/passkeys/register/finish"),
    ("GET", "/v1/users/me/passkeys"),
    ("DELETE", "/v1/users/me/passkeys/{id}"),
    ("POST", "/v1/auth/passkey/start"),
    ("POST", "/v1/auth/passkey/finish"),
    // (#18's "an administrator can remove a user's second factors"; not in
    // API.md yet)
    ("DELETE", "/v1/users/{id}/second-factors"),
];
const CONTRACT_TASKS: [(&str, &str); 26] = [
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("PATCH", "/v1/tasks/{id}"),
    ("DELETE", "/v1/tasks/{id}"),
    ("GET", "/v1/changes"),
    ("GET", "/v1/events"),
    // (#16's export; not in API.md yet)
    ("GET", "/v1/export"),
    // (API.md's auth table; served beside the tasks it holds)
    ("GET", "/v1/users/me/export"),
    ("POST", "/v1/import"),
    ("POST", "/v1/projects/{id}/feed"),
    ("GET", "/v1/projects/{id}/feed"),
    ("DELETE", "/v1/projects/{id}/feed"),
    ("GET", "/v1/feeds/{token}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("POST", "/v1/projects"),
    ("GET", "/v1/projects"),
    ("GET", "/v1/projects/{id}"),
    ("PATCH", "/v1/projects/{id}"),
    ("DELETE", "/v1/projects/{id}"),
    ("GET", "/v1/projects/{id}/members"),
    ("PUT", "/v1/projects/{id}/members/{username}"),
    ("DELETE", "/v1/projects/{id}/members/{username}"),
];

fn contract(routes: &[(&str, &str)]) -> Operations {
    let operations = routes
        .iter()
        .map(|(method, path)| ((*path).to_owned(), (*method).to_owned()))
        .collect();
    with_shared(operations)
}

#[test]
fn the_documents_name_the_contracts_routes_and_nothing_else() {
    let (auth, tasks) = (contract(&CONTRACT_AUTH), contract(&CONTRACT_TASKS));
    assert_eq!(documented(&openapi::auth()), auth);
    assert_eq!(served_auth(), auth);
    assert_eq!(documented(&openapi::tasks()), tasks);
    assert_eq!(served_tasks(), tasks);
    let both: Operations = auth.union(&tasks).cloned().collect();
    assert_eq!(documented(&openapi::one_origin()), both);
}

/// A route added with `.route(…)` instead of `routes!(…)` would be served
/// and not documented, and no live probe of the documented paths would
/// find it: only the page's files (not part of the API) are added so.
#[test]
fn the_apis_routes_are_all_added_documented() {
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&sources).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // The code only: a module's tests may route what they like.
        let code = text.split("#[cfg(test)]").next().unwrap();
        // (`self.route(…)` is the frontend's own method, not axum's.)
        let routed = code.matches(".route(").count() - code.matches("self.route(").count();
        let services = [
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".fallback_service(",
        ]
        .iter()
        .map(|call| code.matches(call).count())
        .sum::<usize>();
        let undocumented = routed + services;
        // The page's files (web.rs); in front.rs, the HEAD refusals of
        // documented paths (`api_layer`) and the wrapper that gives a
        // mounted Router its problem answers (`with_problem_answers`, a
        // fallback service that is the API's own Router).
        let expected = match name.as_str() {
            "web.rs" => 1,
            "front.rs" => 2,
            _ => 0,
        };
        assert_eq!(
            undocumented, expected,
            "{name} adds routes without routes!()"
        );
    }
}

/// Every `"$ref"` string in `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                match (name.as_str(), member) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => references(member, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    for (name, document) in documents() {
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 10, "{name}: {} references", found.len());
        for target in found {
            let pointer = target.strip_prefix('#').unwrap_or_else(|| {
                panic!("{name}: {target} points outside the document");
            });
            assert!(
                document.pointer(pointer).is_some(),
                "{name}: dangling $ref {target}"
            );
        }
        assert_eq!(document["openapi"], "3.1.0", "{name}");
    }
}

#[test]
fn the_auth_schemas_take_their_limits_from_the_domain() {
    use todo_core::{Email, Password, Username};
    let document = serde_json::to_value(routes::auth()).unwrap();
    let schemas = &document["components"]["schemas"];
    let registration = &schemas["Registration"]["properties"];
    assert_eq!(registration["password"]["minLength"], Password::MIN_CHARS);
    assert_eq!(registration["password"]["maxLength"], Password::MAX_CHARS);
    assert_eq!(registration["email"]["maxLength"], Email::MAX_CHARS);
    let (min, max) = (Username::MIN_CHARS, Username::MAX_CHARS);
    assert_eq!(
        registration["username"]["pattern"],
        format!("^[A-Za-z0-9_.-]{{{min},{max}}}$")
    );
    let change = &schemas["PasswordChange"]["properties"]["new_password"];
    assert_eq!(change["maxLength"], Password::MAX_CHARS);
    assert_eq!(
        schemas["User"]["properties"]["username"]["pattern"],
        format!("^[a-z0-9_.-]{{{min},{max}}}$")
    );
}

#[test]
fn every_operation_lists_the_common_errors() {
    for (name, document) in documents() {
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(document["security"][0]["bearer"], serde_json::json!([]));
        for (path, item) in document["paths"].as_object().unwrap() {
            if openapi::SHARED_PATHS.contains(&path.as_str()) {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let public = operation["security"] == serde_json::json!([]);
                let mut wanted = vec!["400", "429", "500", "503"];
                if !public {
                    wanted.push("401");
                }
                // A body's errors where there is a body, and nowhere else.
                let body = operation.get("requestBody").is_some();
                for status in ["413", "415"] {
                    assert_eq!(
                        responses.contains_key(status),
                        body,
                        "{name}: {method} {path} and {status}"
                    );
                }
                // 412 exactly where If-Match is taken (the writes of one task).
                let conditional = operation["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["in"] == "header" && p["name"] == "If-Match")
                });
                assert_eq!(
                    responses.contains_key("412"),
                    conditional,
                    "{name}: {method} {path} and 412"
                );
                if path == "/v1/tasks/{id}" && method != "get" {
                    assert!(conditional, "{name}: {method} {path} takes If-Match");
                }
                for status in wanted {
                    assert!(
                        responses.contains_key(status),
                        "{name}: {method} {path} lacks {status}"
                    );
                }
                for (status, response) in responses {
                    if status.starts_with(['4', '5']) {
                        assert_eq!(
                            response["content"]["application/problem+json"]["schema"]["$ref"],
                            "#/components/schemas/Problem",
                            "{name}: {method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_domain_limits_land_on_the_documents() {
    for (name, mut document) in documents() {
        assert_eq!(
            openapi::limits(&mut document),
            Vec::<String>::new(),
            "{name}"
        );
    }
    let tasks = openapi::tasks();
    let title = &tasks["components"]["schemas"]["TaskCreate"]["properties"]["title"];
    assert_eq!(title["maxLength"], Title::MAX_CHARS);
    let limit = tasks["paths"]["/v1/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], PageLimit::MAX);
    let webhook = &tasks["components"]["schemas"]["WebhookCreate"]["properties"];
    assert_eq!(webhook["url"]["maxLength"], WebhookUrl::MAX_BYTES);
    assert_eq!(
        webhook["events"]["items"]["enum"],
        json!([
            "task.created",
            "task.updated",
            "task.deleted",
            "reminder.due",
            "project.created",
            "project.updated",
            "project.deleted",
            "member.added",
            "member.removed"
        ])
    );
    assert_eq!(webhook["url"]["format"], "uri");
    assert_eq!(webhook["events"]["uniqueItems"], true);
    assert_eq!(webhook["events"]["minItems"], 1);
    assert_eq!(webhook["events"]["maxItems"], ChangeKind::ALL.len());
    let project = &tasks["components"]["schemas"]["ProjectCreate"]["properties"];
    assert_eq!(project["name"]["maxLength"], ProjectName::MAX_CHARS);
    assert_eq!(project["description"]["maxLength"], Description::MAX_CHARS);
    let member = &tasks["components"]["schemas"]["ProjectMemberPut"]["properties"];
    assert_eq!(member["role"]["enum"], json!(["editor", "viewer"]));
    let auth = openapi::auth();
    let users = &auth["paths"]["/v1/users"]["get"]["parameters"][0]["schema"];
    assert_eq!(users["maximum"], PageLimit::MAX);
}

/// What the router answers for an operation nobody may call without a
/// token or a body: anything but its own 404 or 405.
async fn routed(client: &todo_testkit::Client, method: &str, path: &str) -> u16 {
    let path = path.replace("{id}", "0190a5b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b");
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    client
        .send(method, &path, &[], None)
        .await
        .unwrap()
        .status
        .as_u16()
}

async fn check_served(client: &todo_testkit::Client, generated: &Value, name: &str) {
    let reply = client
        .json(Method::GET, "/openapi.json", None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let served: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(&served, generated, "{name}: the served document");
    let operations = documented(generated);
    for (path, method) in &operations {
        // (a feed's URL answers 404 unless it names a published feed: its
        // routing is the feed test's, `projects.rs`)
        if path == "/v1/feeds/{token}" {
            continue;
        }
        let status = routed(client, method, path).await;
        assert!(
            status != 404 && status != 405,
            "{name}: documented {method} {path} answers {status}"
        );
    }
    // Every other method on a documented path is the router's 405 (HEAD
    // goes with GET), so nothing is routed that is not documented there.
    let paths: BTreeSet<&String> = operations.iter().map(|(p, _)| p).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if operations.contains(&(path.clone(), method.to_owned())) {
                continue;
            }
            let status = routed(client, method, path).await;
            assert_eq!(status, 405, "{name}: undocumented {method} {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_documents_are_the_generated_ones_and_routed() {
    let sys = spawn(TestBackend::Sqlite, Options::default())
        .await
        .unwrap();
    check_served(&sys.auth.client, &openapi::auth(), "auth").await;
    check_served(&sys.tasks.client, &openapi::tasks(), "tasks").await;
    let one = spawn(
        TestBackend::Sqlite,
        Options {
            one_origin: true,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    check_served(&one.auth.client, &openapi::one_origin(), "one origin").await;
}
