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
    Description, Email, Label, Labels, PageLimit, Password, Priority, SearchText, TaskSort,
    TaskVersion, Title, Username,
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
/// token is required.
fn common_responses(authenticated: bool) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![
        (
            "400",
            "Invalid input (with `errors` per field), malformed JSON or an unknown field",
        ),
        ("413", "Body over the size limit"),
        ("415", "Body is not application/json"),
        ("429", "Rate limited; see Retry-After"),
        ("500", "Internal error (details only in the server log)"),
        ("503", "Overloaded or database unavailable; see Retry-After"),
    ];
    if authenticated {
        all.push((
            "401",
            "Missing (WWW-Authenticate: Bearer) or invalid token (error=\"invalid_token\")",
        ));
    }
    all
}

/// The finished document of an API: `base` with `api`'s operations and
/// schemas (as its handlers and wire types describe them) and `legacy`
/// (paths and schemas still written by hand, until their handlers carry
/// their own descriptions), every API operation then completed alike:
///
/// - `security: [{}]` (what `security(())` writes) becomes `security: []`;
/// - every error response without a body gets the `Problem` body;
/// - the common error responses are added where the operation does not
///   give its own, with 401 where a token is required;
/// - the domain's limits are set on the schemas and parameters that carry
///   them ([`limits`]).
#[must_use]
pub fn document(base: OpenApi, api: OpenApi, legacy: Option<Value>) -> Value {
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
    if let Some(legacy) = legacy {
        merge_members(&mut document["paths"], &legacy["paths"]);
        merge_members(
            &mut document["components"]["schemas"],
            &legacy["components"]["schemas"],
        );
    }
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
    for (status, description) in common_responses(!public) {
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
        ("minLength", json!(1)),
        ("maxLength", json!(Title::MAX_CHARS)),
    ];
    let description = [("maxLength", json!(Description::MAX_CHARS))];
    let priority = [("minimum", json!(0)), ("maximum", json!(Priority::MAX))];
    let label_items = [
        ("minLength", json!(1)),
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
        let sorts: Vec<&str> = [
            TaskSort::CreatedAsc,
            TaskSort::CreatedDesc,
            TaskSort::DueAsc,
            TaskSort::DueDesc,
            TaskSort::PriorityAsc,
            TaskSort::PriorityDesc,
        ]
        .into_iter()
        .map(TaskSort::as_str)
        .collect();
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
    missing
}

fn page_limit() -> Vec<(&'static str, Value)> {
    vec![
        ("minimum", json!(1)),
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
        None,
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
        OpenApi::default(),
        Some(auth_legacy()),
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
        crate::task_api::documented(),
        Some(auth_legacy()),
    )
}

/// The 403 of the session endpoints.
const CROSS_ORIGIN: &str =
    "Web page sessions only: a browser marked the request as cross-origin (Origin, Sec-Fetch-Site)";

fn problem(description: &str) -> Value {
    json!({"description": description})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// auth-server's paths and schemas, written by hand until its handlers
/// describe themselves (`#[utoipa::path]`); the limits already come from
/// the domain's constants. Public operations say `security: []`.
fn auth_legacy() -> Value {
    let username = format!(
        "^[a-z0-9_.-]{{{},{}}}$",
        Username::MIN_CHARS,
        Username::MAX_CHARS
    );
    // Registration takes any case (names are folded to lower case).
    let registered = format!(
        "^[A-Za-z0-9_.-]{{{},{}}}$",
        Username::MIN_CHARS,
        Username::MAX_CHARS
    );
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]);
    let limit = Value::Object(
        page_limit()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain([("type".to_owned(), json!("integer"))])
            .collect(),
    );
    let paths = json!({
        "/v1/auth/register": {"post": {"summary": "Register a user", "security": [], "requestBody": body("Registration"),
            "responses": {"201": ok("The new user", "User"), "403": problem("Registration is closed (urn:todo:problem:registration-closed): an administrator creates users"), "409": problem("Username taken")}}},
        "/v1/auth/login": {"post": {"summary": "Log in", "security": [], "requestBody": body("Credentials"),
            "responses": {"200": ok("Tokens", "TokenPair"), "401": problem("Unknown user, wrong password or disabled account, alike"), "403": problem(CROSS_ORIGIN)}}},
        "/v1/auth/refresh": {"post": {"summary": "Exchange a refresh token (rotates it; reuse revokes its family)", "security": [], "requestBody": body("RefreshRequest"),
            "responses": {"200": ok("New tokens", "TokenPair"), "401": problem("Invalid, expired, revoked or reused refresh token"), "403": problem(CROSS_ORIGIN)}}},
        "/v1/auth/logout": {"post": {"summary": "Revoke a refresh token's family", "security": [], "requestBody": body("RefreshRequest"),
            "responses": {"204": {"description": "Logged out (also for unknown tokens)"}, "403": problem(CROSS_ORIGIN)}}},
        "/v1/auth/validate": {"get": {"summary": "Check a token for a gateway (account enabled, not revoked)",
            "responses": {"200": ok("The token's subject", "Validation")}}},
        "/.well-known/jwks.json": {"get": {"summary": "Public verification keys", "security": [],
            "responses": {"200": {"description": "JWKS", "content": {"application/json": {"schema": {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}}}}}}}},
        "/v1/users/me": {
            "get": {"summary": "My account", "responses": {"200": ok("Me", "User")}},
            "patch": {"summary": "Change my e-mail address (null removes it)", "requestBody": body("MePatch"), "responses": {"200": ok("Me", "User")}}
        },
        "/v1/users/me/password": {"post": {"summary": "Change my password (revokes every session)", "requestBody": body("PasswordChange"),
            "responses": {"204": {"description": "Changed"}, "403": problem("Current password wrong")}}},
        "/v1/users": {"get": {"summary": "List users (admin)",
            "parameters": [{"name": "limit", "in": "query", "schema": limit},
                           {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": ok("A page of users", "UserPage"), "403": problem("Not an admin")}}},
        "/v1/users/{id}": {
            "get": {"summary": "Get a user (admin)", "parameters": id, "responses": {"200": ok("The user", "User"), "403": problem("Not an admin"), "404": problem("No such user")}},
            "patch": {"summary": "Disable, enable, change role or e-mail (admin)", "parameters": id, "requestBody": body("UserPatch"),
                "responses": {"200": ok("The user", "User"), "403": problem("Not an admin"), "404": problem("No such user"), "409": problem("Admins cannot disable or demote themselves")}},
            "delete": {"summary": "Delete a user with their tasks and tokens (admin)", "parameters": id,
                "responses": {"204": {"description": "Deleted"}, "403": problem("Not an admin"), "404": problem("No such user"), "409": problem("Admins cannot delete themselves")}}
        }
    });
    let password = json!({"type": "string", "minLength": Password::MIN_CHARS, "maxLength": Password::MAX_CHARS});
    let email =
        json!({"type": ["string", "null"], "format": "email", "maxLength": Email::MAX_CHARS});
    let user = json!({"type": "object", "required": ["id", "username", "email", "role", "disabled", "created_at", "updated_at"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "username": {"type": "string", "pattern": username},
        "email": {"type": ["string", "null"], "format": "email"}, "role": {"enum": ["user", "admin"]},
        "disabled": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}}});
    let schemas = json!({
        "User": user,
        "UserPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}, "next_cursor": {"type": ["string", "null"]}}},
        "Registration": {"type": "object", "additionalProperties": false, "required": ["username", "password"], "properties": {
            "username": {"type": "string", "pattern": registered}, "password": password, "email": email}},
        "Credentials": {"type": "object", "additionalProperties": false, "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string"}, "device_token": {"type": "string", "description": "From an earlier login's answer: this login then counts against the device's failures, not the account's lockout."}}},
        "RefreshRequest": {"type": "object", "additionalProperties": false, "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}},
        "TokenPair": {"type": "object", "required": ["access_token", "token_type", "expires_in"], "properties": {
            "access_token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
            "refresh_token": {"type": "string", "description": "Always present for API clients. Absent with the web page's cookie sessions (`todo`, `auth-server --web-page`) when the request comes from a browser (`Sec-Fetch-Site` or `Todo-Session: cookie`) or the refresh token came from the cookie: it is then in the HttpOnly cookie only."},
            "device_token": {"type": "string", "description": "Login only: present it at the next login from this client (see Credentials). Absent, like `refresh_token`, with cookie sessions: it is then in the HttpOnly `__Host-todo-device` cookie."}}},
        "Validation": {"type": "object", "required": ["sub", "username", "role", "exp"], "properties": {
            "sub": {"type": "string", "format": "uuid"}, "username": {"type": "string"}, "role": {"enum": ["user", "admin"]}, "exp": {"type": "integer"}}},
        "MePatch": {"type": "object", "additionalProperties": false, "properties": {"email": {"type": ["string", "null"], "format": "email"}}},
        "PasswordChange": {"type": "object", "additionalProperties": false, "required": ["current_password", "new_password"], "properties": {
            "current_password": {"type": "string"}, "new_password": password}},
        "UserPatch": {"type": "object", "additionalProperties": false, "properties": {
            "disabled": {"type": "boolean"}, "role": {"enum": ["user", "admin"]}, "email": {"type": ["string", "null"], "format": "email"}}}
    });
    json!({"paths": paths, "components": {"schemas": schemas}})
}
