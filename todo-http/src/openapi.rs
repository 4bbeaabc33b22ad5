//! The OpenAPI 3.1 documents the servers serve at `/openapi.json`, generated
//! from the types: each handler's `#[utoipa::path]` and its wire types'
//! `ToSchema` give the operations, [`base`] gives what every API shares, and
//! [`document`] completes the operations the same way for every API (the
//! common error responses, problem bodies, the domain's limits). Tests
//! check that the served document is this one, that every documented
//! operation is routed and every routed one documented, and that every
//! `$ref` resolves.

use serde_json::{Map, Value, json};
use todo_core::{
    ChangeKind, Description, Label, Labels, PageLimit, Priority, ProjectName, ProjectRole,
    SearchText, TaskSort, TaskVersion, Title, Username, WebhookUrl,
};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, ResponseBuilder,
};

use crate::problem::{FieldError, Problem};

/// The name of the bearer security scheme every authenticated operation uses.
pub const BEARER: &str = "bearer";

/// The media type of an error answer.
const PROBLEM_JSON: &str = "application/problem+json";

/// The document every API starts from: OpenAPI 3.1, `info`, the bearer
/// scheme (required unless an operation says `security: []`), the
/// `Problem` schema, and the shared paths `/healthz`, `/readyz`, `/metrics`
/// and `/openapi.json`.
#[must_use]
pub fn base(title: &str, description: &str) -> OpenApi {
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build(),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(title)
                .version("1.0.0")
                .description(Some(description)),
        )
        .paths(shared_paths())
        .components(Some(
            ComponentsBuilder::new()
                .schema_from::<Problem<'_>>()
                .schema_from::<FieldError>()
                .security_scheme(BEARER, bearer)
                .build(),
        ))
        .security(Some([SecurityRequirement::new(
            BEARER,
            Vec::<String>::new(),
        )]))
        .build()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new().schema(Some(problem_ref())).build(),
        )
        .build()
}

fn problem_ref() -> Ref {
    Ref::from_schema_name("Problem")
}

/// An operation anyone may call (no bearer token).
fn public(summary: &str) -> OperationBuilder {
    OperationBuilder::new()
        .summary(Some(summary))
        .securities(Some(Vec::<SecurityRequirement>::new()))
}

fn shared_paths() -> utoipa::openapi::Paths {
    let text = ObjectBuilder::new().schema_type(Type::String).build();
    let object = ObjectBuilder::new().schema_type(Type::Object).build();
    let get = |operation: OperationBuilder| PathItem::new(HttpMethod::Get, operation.build());
    PathsBuilder::new()
        .path(
            "/healthz",
            get(public("Liveness").response("200", ResponseBuilder::new().description("Serving"))),
        )
        .path(
            "/readyz",
            get(public("Readiness: the database answers")
                .response("200", ResponseBuilder::new().description("Ready"))
                .response("503", problem_response("Not ready"))),
        )
        .path(
            "/metrics",
            get(public(
                "Prometheus metrics: served only on the separate --metrics-listen listener; the public listener answers 404",
            )
            .response(
                "200",
                ResponseBuilder::new()
                    .description("Text exposition format (on the metrics listener)")
                    .content("text/plain", ContentBuilder::new().schema(Some(text)).build()),
            )
            .response(
                "404",
                problem_response("On the public listener: metrics are not served here"),
            )),
        )
        .path(
            "/openapi.json",
            get(public("This document").response(
                "200",
                ResponseBuilder::new()
                    .description("OpenAPI 3.1")
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(object)).build(),
                    ),
            )),
        )
        .build()
}

/// The paths every API serves besides its own.
pub const SHARED_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// Error responses every operation of an API can give; 401 only where a
/// token is required, 413 and 415 only where a body is taken, 412 only
/// where `If-Match` is ([`crate::extract::Conditional`]).
fn common_responses(
    authenticated: bool,
    body: bool,
    conditional: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![
        (
            "400",
            "Invalid input (with `errors` per field), malformed JSON or an unknown field",
        ),
        ("429", "Rate limited; see Retry-After"),
        ("500", "Internal error (details only in the server log)"),
        ("503", "Overloaded or database unavailable; see Retry-After"),
    ];
    if body {
        all.push(("413", "Body over the size limit"));
        all.push(("415", "Body is not application/json"));
    }
    if conditional {
        all.push(("412", "Stale or unmatchable If-Match"));
    }
    if authenticated {
        all.push((
            "401",
            "Missing (WWW-Authenticate: Bearer) or invalid token (error=\"invalid_token\")",
        ));
    }
    all
}

/// The finished document of an API: `base` with `api`'s operations and
/// schemas (as its handlers and wire types describe them), every operation
/// then completed alike:
///
/// - `security: [{}]` (what `security(())` writes) becomes `security: []`;
/// - every error response without a body gets the `Problem` body;
/// - the common error responses are added where the operation does not
///   give its own, with 401 where a token is required, 413 and 415
///   where a body is taken and 412 where `If-Match` is;
/// - the domain's limits are set on the schemas and parameters that carry
///   them ([`limits`]).
#[must_use]
pub fn document(base: OpenApi, api: OpenApi) -> Value {
    let mut own = api;
    // `OpenApi::merge` keeps the first of two schemas of one name: the API's
    // own come first, the base adds what they lack.
    let mut shared = base.clone();
    shared.paths = utoipa::openapi::Paths::new();
    own.merge(shared);
    let mut document = match serde_json::to_value(&own) {
        Ok(document) => document,
        Err(error) => {
            tracing::error!(target: "todo::http", %error, "serialising the OpenAPI document failed");
            Value::Null
        }
    };
    if let Some(paths) = document["paths"].as_object_mut() {
        for item in paths.values_mut() {
            if let Some(item) = item.as_object_mut() {
                for operation in item.values_mut() {
                    complete(operation);
                }
            }
        }
    }
    limits(&mut document);
    // The shared paths last: they take no common responses.
    if let Ok(shared_paths) = serde_json::to_value(&base.paths) {
        merge_members(&mut document["paths"], &shared_paths);
    }
    document["info"] = serde_json::to_value(&base.info).unwrap_or(Value::Null);
    document["openapi"] = json!("3.1.0");
    document
}

/// Adds the members of `from` that `into` lacks (both JSON objects).
fn merge_members(into: &mut Value, from: &Value) {
    if into.is_null() {
        *into = json!({});
    }
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (name, value) in from {
            into.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
}

fn problem_body() -> Value {
    json!({PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}})
}

/// Completes one operation (see [`document`]).
fn complete(operation: &mut Value) {
    let Some(operation) = operation.as_object_mut() else {
        return;
    };
    let public = match operation.get_mut("security") {
        Some(Value::Array(requirements)) => {
            let public = requirements
                .iter()
                .all(|r| r.as_object().is_some_and(Map::is_empty));
            if public {
                requirements.clear();
            }
            public
        }
        _ => false,
    };
    let body = operation.contains_key("requestBody");
    let conditional = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|parameters| {
            parameters
                .iter()
                .any(|p| p["in"] == "header" && p["name"] == "If-Match")
        });
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if status.starts_with(['4', '5'])
            && let Some(response) = response.as_object_mut()
            && !response.contains_key("content")
            && !response.contains_key("$ref")
        {
            response.insert("content".into(), problem_body());
        }
    }
    for (status, description) in common_responses(!public, body, conditional) {
        responses
            .entry(status)
            .or_insert_with(|| json!({"description": description, "content": problem_body()}));
    }
}

/// Sets `keyword` on `document[pointer]` when the target exists; returns
/// whether it did (the tests check that every limit lands).
fn set(document: &mut Value, pointer: &str, keyword: &str, value: Value) -> bool {
    match document.pointer_mut(pointer).and_then(Value::as_object_mut) {
        Some(target) => {
            target.insert(keyword.to_owned(), value);
            true
        }
        None => false,
    }
}

/// The domain's limits, where the documents name them: each from its
/// constant in todo-core, never a literal. Returns the targets it found
/// no place for (a renamed schema or parameter), which the tests require
/// to be none.
pub fn limits(document: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    let put = |document: &mut Value, pointer: &str, pairs: &[(&str, Value)]| {
        for (keyword, value) in pairs {
            if !set(document, pointer, keyword, value.clone()) {
                return Err(format!("{pointer} {keyword}"));
            }
        }
        Ok(())
    };
    let title = [
        ("minLength", json!(Title::MIN_CHARS)),
        ("maxLength", json!(Title::MAX_CHARS)),
    ];
    let description = [("maxLength", json!(Description::MAX_CHARS))];
    let priority = [
        ("minimum", json!(Priority::MIN)),
        ("maximum", json!(Priority::MAX)),
    ];
    let label_items = [
        ("minLength", json!(Label::MIN_CHARS)),
        ("maxLength", json!(Label::MAX_CHARS)),
    ];
    let labels = [
        ("maxItems", json!(Labels::MAX_LABELS)),
        ("uniqueItems", json!(true)),
    ];
    if document.pointer("/components/schemas/Task").is_some() {
        for schema in ["TaskCreate", "TaskPatch", "Task"] {
            let properties = format!("/components/schemas/{schema}/properties");
            missing.extend(
                [
                    put(document, &format!("{properties}/title"), &title),
                    put(document, &format!("{properties}/description"), &description),
                    put(document, &format!("{properties}/priority"), &priority),
                    put(document, &format!("{properties}/labels"), &labels),
                    put(
                        document,
                        &format!("{properties}/labels/items"),
                        &label_items,
                    ),
                ]
                .into_iter()
                .filter_map(Result::err),
            );
        }
        missing.extend(
            put(
                document,
                "/components/schemas/Task/properties/version",
                &[("minimum", json!(TaskVersion::FIRST.get()))],
            )
            .err(),
        );
        let list = "/paths/~1v1~1tasks/get/parameters";
        let sorts: Vec<&str> = TaskSort::ALL.into_iter().map(TaskSort::as_str).collect();
        let parameters: &[(&str, Vec<(&str, Value)>)] = &[
            ("label", vec![("maxLength", json!(Label::MAX_CHARS))]),
            ("q", vec![("maxLength", json!(SearchText::MAX_CHARS))]),
            (
                "sort",
                vec![
                    ("enum", json!(sorts)),
                    ("default", json!(TaskSort::default().as_str())),
                ],
            ),
            ("archived", vec![("default", json!(false))]),
            ("limit", page_limit()),
        ];
        for (name, pairs) in parameters {
            let index = document
                .pointer(list)
                .and_then(Value::as_array)
                .and_then(|all| all.iter().position(|p| p["name"] == *name));
            let done = match index {
                Some(i) => put(document, &format!("{list}/{i}/schema"), pairs),
                None => Err(format!("{list} {name}")),
            };
            missing.extend(done.err());
        }
    }
    if document.pointer("/components/schemas/Project").is_some() {
        let name = [
            ("minLength", json!(ProjectName::MIN_CHARS)),
            ("maxLength", json!(ProjectName::MAX_CHARS)),
        ];
        let color = [("pattern", json!("^#[0-9A-Fa-f]{6}$"))];
        for schema in ["ProjectCreate", "ProjectPatch", "Project"] {
            let properties = format!("/components/schemas/{schema}/properties");
            missing.extend(
                [
                    put(document, &format!("{properties}/name"), &name),
                    put(document, &format!("{properties}/description"), &description),
                    put(document, &format!("{properties}/color"), &color),
                ]
                .into_iter()
                .filter_map(Result::err),
            );
        }
        let roles: Vec<&str> = [ProjectRole::Editor, ProjectRole::Viewer]
            .into_iter()
            .map(ProjectRole::as_str)
            .collect();
        let all_roles: Vec<&str> = [ProjectRole::Owner, ProjectRole::Editor, ProjectRole::Viewer]
            .into_iter()
            .map(ProjectRole::as_str)
            .collect();
        let (limit, username) = (
            "/paths/~1v1~1projects/get/parameters/0/schema",
            "/paths/~1v1~1projects~1{id}~1members~1{username}/put/parameters/1/schema",
        );
        missing.extend(
            [
                put(
                    document,
                    "/components/schemas/ProjectMemberPut/properties/role",
                    &[("enum", json!(roles))],
                ),
                put(
                    document,
                    "/components/schemas/Project/properties/role",
                    &[("enum", json!(all_roles))],
                ),
                put(
                    document,
                    "/components/schemas/ProjectMember/properties/role",
                    &[("enum", json!(all_roles))],
                ),
                put(document, limit, &page_limit()),
                put(
                    document,
                    username,
                    &[
                        ("minLength", json!(Username::MIN_CHARS)),
                        ("maxLength", json!(Username::MAX_CHARS)),
                    ],
                ),
            ]
            .into_iter()
            .filter_map(Result::err),
        );
    }
    if document
        .pointer("/components/schemas/WebhookCreate")
        .is_some()
    {
        let kinds: Vec<&str> = ChangeKind::ALL
            .into_iter()
            .map(ChangeKind::as_str)
            .collect();
        let properties = "/components/schemas/WebhookCreate/properties";
        missing.extend(
            [
                put(
                    document,
                    &format!("{properties}/url"),
                    // ASCII only (no IDN), so bytes and characters agree.
                    &[
                        ("maxLength", json!(WebhookUrl::MAX_BYTES)),
                        ("format", json!("uri")),
                    ],
                ),
                put(
                    document,
                    &format!("{properties}/events"),
                    &[
                        ("minItems", json!(1)),
                        ("maxItems", json!(kinds.len())),
                        ("uniqueItems", json!(true)),
                    ],
                ),
                put(
                    document,
                    &format!("{properties}/events/items"),
                    &[("enum", json!(kinds))],
                ),
            ]
            .into_iter()
            .filter_map(Result::err),
        );
    }
    if document.pointer("/paths/~1v1~1users/get").is_some() {
        let list = "/paths/~1v1~1users/get/parameters";
        let index = document
            .pointer(list)
            .and_then(Value::as_array)
            .and_then(|all| all.iter().position(|p| p["name"] == "limit"));
        let done = match index {
            Some(i) => put(document, &format!("{list}/{i}/schema"), &page_limit()),
            None => Err(format!("{list} limit")),
        };
        missing.extend(done.err());
    }
    missing
}

fn page_limit() -> Vec<(&'static str, Value)> {
    vec![
        ("minimum", json!(PageLimit::MIN)),
        ("maximum", json!(PageLimit::MAX)),
        ("default", json!(PageLimit::default().get())),
    ]
}

/// task-server's document.
#[must_use]
pub fn tasks() -> Value {
    document(
        base("todo task-server", "Each user's own tasks."),
        crate::task_api::documented(),
    )
}

/// auth-server's document.
#[must_use]
pub fn auth() -> Value {
    document(
        base(
            "todo auth-server",
            "Registration, login, tokens, accounts and their administration.",
        ),
        crate::auth_api::documented(),
    )
}

/// The one-origin server's document (`todo`): both APIs and the shared paths.
#[must_use]
pub fn one_origin() -> Value {
    document(
        base(
            "todo (one origin)",
            "Registration, login, tokens, accounts and their administration.",
        ),
        {
            let mut both = crate::auth_api::documented();
            both.merge(crate::task_api::documented());
            both
        },
    )
}
