//! The served routes and the OpenAPI documents cannot drift apart.

use std::collections::BTreeSet;

use todo_http::{openapi, routes};

fn documented(document: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((path.clone(), method.to_uppercase()));
        }
    }
    operations
}

/// The auth API's routes are its handlers' own descriptions.
fn served_auth() -> BTreeSet<(String, String)> {
    let document = serde_json::to_value(routes::auth()).unwrap();
    with_shared(documented(&document))
}

/// The task API's routes are its handlers' own descriptions.
fn served_tasks() -> BTreeSet<(String, String)> {
    let document = serde_json::to_value(routes::tasks()).unwrap();
    with_shared(documented(&document))
}

fn with_shared(mut operations: BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    for shared in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        operations.insert((shared.to_owned(), "GET".to_owned()));
    }
    operations
}

#[test]
fn every_served_route_is_documented_and_nothing_else() {
    assert_eq!(documented(&openapi::auth()), served_auth());
    assert_eq!(documented(&openapi::tasks()), served_tasks());
}

#[test]
fn every_schema_reference_resolves() {
    for document in [openapi::auth(), openapi::tasks()] {
        let text = document.to_string();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        assert_eq!(document["openapi"], "3.1.0");
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
