//! The OpenAPI 3.1 documents the servers serve at `/openapi.json`. A test
//! walks each router's routes against its document, so they cannot drift.

use serde_json::{Value, json};

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// Error responses every operation can give.
fn common(mut responses: Value, authenticated: bool) -> Value {
    let map = responses
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut all = serde_json::Map::new();
    all.extend(map);
    all.insert(
        "400".into(),
        problem("Invalid input (with `errors` per field), malformed JSON or an unknown field"),
    );
    all.insert("413".into(), problem("Body over the size limit"));
    all.insert("415".into(), problem("Body is not application/json"));
    all.insert("429".into(), problem("Rate limited; see Retry-After"));
    all.insert(
        "500".into(),
        problem("Internal error (details only in the server log)"),
    );
    all.insert(
        "503".into(),
        problem("Overloaded or database unavailable; see Retry-After"),
    );
    if authenticated {
        all.insert(
            "401".into(),
            problem(
                "Missing (WWW-Authenticate: Bearer) or invalid token (error=\"invalid_token\")",
            ),
        );
    }
    Value::Object(all)
}

fn shared_paths() -> Value {
    json!({
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "Serving"}}}},
        "/readyz": {"get": {"summary": "Readiness: the database answers", "security": [], "responses": {"200": {"description": "Ready"}, "503": problem("Not ready")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics: served only on the separate --metrics-listen listener; the public listener answers 404", "security": [], "responses": {"200": {"description": "Text exposition format (on the metrics listener)", "content": {"text/plain": {"schema": {"type": "string"}}}}, "404": problem("On the public listener: metrics are not served here")}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
        }
    })
}

fn document(title: &str, description: &str, mut paths: Value, schemas: Value) -> Value {
    if let (Some(paths), Some(shared)) = (paths.as_object_mut(), shared_paths().as_object()) {
        paths.extend(shared.clone());
    }
    let mut schemas = schemas;
    if let Some(s) = schemas.as_object_mut() {
        s.insert("Problem".into(), problem_schema());
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        },
        "security": [{"bearer": []}]
    })
}

const USERNAME: &str = "^[a-z0-9_.-]{3,32}$";

/// The 403 of the session endpoints.
const CROSS_ORIGIN: &str =
    "Web page sessions only: a browser marked the request as cross-origin (Origin, Sec-Fetch-Site)";

/// auth-server's document.
#[must_use]
pub fn auth() -> Value {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]);
    let paths = json!({
        "/v1/auth/register": {"post": {"summary": "Register a user", "security": [], "requestBody": body("Registration"),
            "responses": common(json!({"201": ok("The new user", "User"), "403": problem("Registration is closed (urn:todo:problem:registration-closed): an administrator creates users"), "409": problem("Username taken")}), false)}},
        "/v1/auth/login": {"post": {"summary": "Log in", "security": [], "requestBody": body("Credentials"),
            "responses": common(json!({"200": ok("Tokens", "TokenPair"), "401": problem("Unknown user, wrong password or disabled account, alike"), "403": problem(CROSS_ORIGIN)}), false)}},
        "/v1/auth/refresh": {"post": {"summary": "Exchange a refresh token (rotates it; reuse revokes its family)", "security": [], "requestBody": body("RefreshRequest"),
            "responses": common(json!({"200": ok("New tokens", "TokenPair"), "401": problem("Invalid, expired, revoked or reused refresh token"), "403": problem(CROSS_ORIGIN)}), false)}},
        "/v1/auth/logout": {"post": {"summary": "Revoke a refresh token's family", "security": [], "requestBody": body("RefreshRequest"),
            "responses": common(json!({"204": {"description": "Logged out (also for unknown tokens)"}, "403": problem(CROSS_ORIGIN)}), false)}},
        "/v1/auth/validate": {"get": {"summary": "Check a token for a gateway (account enabled, not revoked)",
            "responses": common(json!({"200": ok("The token's subject", "Validation")}), true)}},
        "/.well-known/jwks.json": {"get": {"summary": "Public verification keys", "security": [],
            "responses": {"200": {"description": "JWKS", "content": {"application/json": {"schema": {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}}}}}}}},
        "/v1/users/me": {
            "get": {"summary": "My account", "responses": common(json!({"200": ok("Me", "User")}), true)},
            "patch": {"summary": "Change my e-mail address (null removes it)", "requestBody": body("MePatch"), "responses": common(json!({"200": ok("Me", "User")}), true)}
        },
        "/v1/users/me/password": {"post": {"summary": "Change my password (revokes every session)", "requestBody": body("PasswordChange"),
            "responses": common(json!({"204": {"description": "Changed"}, "403": problem("Current password wrong")}), true)}},
        "/v1/users": {"get": {"summary": "List users (admin)",
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
                           {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
            "responses": common(json!({"200": ok("A page of users", "UserPage"), "403": problem("Not an admin")}), true)}},
        "/v1/users/{id}": {
            "get": {"summary": "Get a user (admin)", "parameters": id, "responses": common(json!({"200": ok("The user", "User"), "403": problem("Not an admin"), "404": problem("No such user")}), true)},
            "patch": {"summary": "Disable, enable, change role or e-mail (admin)", "parameters": id, "requestBody": body("UserPatch"),
                "responses": common(json!({"200": ok("The user", "User"), "403": problem("Not an admin"), "404": problem("No such user"), "409": problem("Admins cannot disable or demote themselves")}), true)},
            "delete": {"summary": "Delete a user with their tasks and tokens (admin)", "parameters": id,
                "responses": common(json!({"204": {"description": "Deleted"}, "403": problem("Not an admin"), "404": problem("No such user"), "409": problem("Admins cannot delete themselves")}), true)}
        }
    });
    let user = json!({"type": "object", "required": ["id", "username", "email", "role", "disabled", "created_at", "updated_at"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "username": {"type": "string", "pattern": USERNAME},
        "email": {"type": ["string", "null"], "format": "email"}, "role": {"enum": ["user", "admin"]},
        "disabled": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}}});
    let schemas = json!({
        "User": user,
        "UserPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}, "next_cursor": {"type": ["string", "null"]}}},
        "Registration": {"type": "object", "additionalProperties": false, "required": ["username", "password"], "properties": {
            "username": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,32}$"}, "password": {"type": "string", "minLength": 8, "maxLength": 128}, "email": {"type": ["string", "null"], "format": "email", "maxLength": 254}}},
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
            "current_password": {"type": "string"}, "new_password": {"type": "string", "minLength": 8, "maxLength": 128}}},
        "UserPatch": {"type": "object", "additionalProperties": false, "properties": {
            "disabled": {"type": "boolean"}, "role": {"enum": ["user", "admin"]}, "email": {"type": ["string", "null"], "format": "email"}}}
    });
    document(
        "todo auth-server",
        "Registration, login, tokens, accounts and their administration.",
        paths,
        schemas,
    )
}

/// task-server's document.
#[must_use]
pub fn tasks() -> Value {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}});
    let if_match = json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"}, "description": "An ETag (\"v<version>\"); a stale one gets 412"});
    let query = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description});
    let etag = json!({"ETag": {"schema": {"type": "string"}, "description": "\"v<version>\""}});
    let paths = json!({
        "/v1/tasks": {
            "post": {"summary": "Create a task", "requestBody": body("TaskCreate"),
                "responses": common(json!({"201": {"description": "The task", "headers": {"Location": {"schema": {"type": "string"}}, "ETag": etag["ETag"]},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                    "403": problem("The user's task quota is used up (urn:todo:problem:quota-exceeded)")}), true)},
            "get": {"summary": "List my tasks (keyset pages)", "parameters": [
                query("done", json!({"type": "boolean"}), "only done or not done"),
                query("archived", json!({"type": "boolean", "default": false}), "archived tasks instead of the others"),
                query("label", json!({"type": "string", "maxLength": 32}), "tasks with this label"),
                query("q", json!({"type": "string", "maxLength": 200}), "case-insensitive literal substring of title or description"),
                query("due_before", json!({"type": "string", "format": "date-time"}), "strictly before; tasks without a due date are left out"),
                query("due_after", json!({"type": "string", "format": "date-time"}), "strictly after; tasks without a due date are left out"),
                query("sort", json!({"enum": ["created", "-created", "due", "-due", "priority", "-priority"], "default": "-created"}), "order; ties break on id"),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 50}), "page size"),
                query("cursor", json!({"type": "string"}), "next_cursor of the previous page, same query")],
                "responses": common(json!({"200": ok("A page of tasks", "TaskPage")}), true)}
        },
        "/v1/tasks/{id}": {
            "get": {"summary": "Get a task", "parameters": [id],
                "responses": common(json!({"200": {"description": "The task", "headers": etag, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}}, "404": problem("No such task of yours")}), true)},
            "patch": {"summary": "Change a task (JSON merge patch)", "parameters": [id, if_match],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskPatch"}}, "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/TaskPatch"}}}},
                "responses": common(json!({"200": {"description": "The task", "headers": etag, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}}, "404": problem("No such task of yours, whatever If-Match says"), "412": problem("Stale or unmatchable If-Match")}), true)},
            "delete": {"summary": "Delete a task", "parameters": [id, if_match],
                "responses": common(json!({"204": {"description": "Deleted"}, "404": problem("No such task of yours, whatever If-Match says"), "412": problem("Stale or unmatchable If-Match")}), true)}
        }
    });
    let fields = json!({
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 10000},
        "done": {"type": "boolean"},
        "due_at": {"type": ["string", "null"], "format": "date-time"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 3},
        "labels": {"type": "array", "maxItems": 20, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": 32}},
        "archived": {"type": "boolean"}
    });
    let mut task_props = fields.clone();
    if let Some(p) = task_props.as_object_mut() {
        p.insert("id".into(), json!({"type": "string", "format": "uuid"}));
        p.insert(
            "completed_at".into(),
            json!({"type": ["string", "null"], "format": "date-time"}),
        );
        p.insert(
            "created_at".into(),
            json!({"type": "string", "format": "date-time"}),
        );
        p.insert(
            "updated_at".into(),
            json!({"type": "string", "format": "date-time"}),
        );
        p.insert("version".into(), json!({"type": "integer", "minimum": 1}));
    }
    let schemas = json!({
        "Task": {"type": "object", "required": ["id", "title", "description", "done", "completed_at", "due_at", "priority", "labels", "archived", "created_at", "updated_at", "version"], "properties": task_props},
        "TaskPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}, "next_cursor": {"type": ["string", "null"]}}},
        "TaskCreate": {"type": "object", "additionalProperties": false, "required": ["title"], "properties": fields},
        "TaskPatch": {"type": "object", "additionalProperties": false, "properties": fields, "description": "null resets description, due_at, priority and labels; title, done and archived cannot be null"}
    });
    document("todo task-server", "Each user's own tasks.", paths, schemas)
}
