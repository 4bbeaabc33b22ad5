//! A route table's row: a path template and the methods it allows.

use http::Method;

/// One path of an API and the methods it allows.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The path template, `{id}` marking the one parameter, e.g. `/v1/users/{id}`.
    pub template: &'static str,
    /// The methods it allows.
    pub methods: &'static [Method],
}
