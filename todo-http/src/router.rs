//! Routes: path templates and the methods each allows.

use http::Method;

/// One path of an API and the methods it allows.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The path template, `{id}` marking the one parameter, e.g. `/v1/tasks/{id}`.
    pub template: &'static str,
    pub methods: &'static [Method],
}

/// What a path and method come to.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found {
        route: &'static RouteSpec,
        param: Option<&'a str>,
    },
    /// The path exists; the method does not. Carries the `Allow` value.
    MethodNotAllowed(String),
    NotFound,
}

/// Finds the route for `path` in `routes`.
pub fn find<'a>(routes: &'static [RouteSpec], method: &Method, path: &'a str) -> RouteMatch<'a> {
    for route in routes {
        if let Some(param) = matches(route.template, path) {
            if route.methods.contains(method) {
                return RouteMatch::Found { route, param };
            }
            let allow: Vec<&str> = route.methods.iter().map(Method::as_str).collect();
            return RouteMatch::MethodNotAllowed(allow.join(", "));
        }
    }
    RouteMatch::NotFound
}

/// `Some(param)` when `path` fits `template` (`param` is the `{…}` segment, if any).
fn matches<'a>(template: &str, path: &'a str) -> Option<Option<&'a str>> {
    let mut param = None;
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(param),
            (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => param = Some(g),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ROUTES: &[RouteSpec] = &[
        RouteSpec {
            template: "/v1/tasks",
            methods: &[Method::GET, Method::POST],
        },
        RouteSpec {
            template: "/v1/tasks/{id}",
            methods: &[Method::GET, Method::PATCH, Method::DELETE],
        },
    ];

    #[test]
    fn paths_match_templates_exactly() {
        assert!(matches!(
            find(ROUTES, &Method::GET, "/v1/tasks"),
            RouteMatch::Found { param: None, .. }
        ));
        match find(ROUTES, &Method::DELETE, "/v1/tasks/abc") {
            RouteMatch::Found { route, param } => {
                assert_eq!((route.template, param), ("/v1/tasks/{id}", Some("abc")));
            }
            other => panic!("{other:?}"),
        }
        for path in [
            "/v1/tasks/",
            "/v1/tasks/a/b",
            "/v1/task",
            "/v1/tasks//",
            "",
            "/",
        ] {
            assert!(
                matches!(find(ROUTES, &Method::GET, path), RouteMatch::NotFound),
                "{path}"
            );
        }
        match find(ROUTES, &Method::PUT, "/v1/tasks") {
            RouteMatch::MethodNotAllowed(allow) => assert_eq!(allow, "GET, POST"),
            other => panic!("{other:?}"),
        }
    }
}
