//! The auth API's route table, bridged onto axum while its handlers are
//! converted to typed ones (the task API's already are).

use std::sync::Arc;

use axum::extract::Request;
use axum::routing::{MethodFilter, MethodRouter};
use http::Method;
use http_body_util::BodyExt;
use utoipa_axum::router::OpenApiRouter;

use crate::extract::RequestContext;
use crate::front::ApiResponse;
use crate::problem::ApiError;
use crate::request::ApiRequest;

/// One path of an API and the methods it allows.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The path template, `{id}` marking the one parameter, e.g. `/v1/users/{id}`.
    pub template: &'static str,
    /// The methods it allows.
    pub methods: &'static [Method],
}

/// An API whose handlers still take an [`ApiRequest`] and its route.
pub(crate) trait LegacyApi: Send + Sync + 'static {
    /// Serves one routed request.
    fn handle(
        &self,
        route: &'static RouteSpec,
        param: Option<String>,
        request: ApiRequest,
    ) -> impl std::future::Future<Output = Result<ApiResponse, ApiError>> + Send;
}

/// Each route of `routes` served by `api`'s `handle`, on the methods it allows.
pub(crate) fn bridge<A: LegacyApi>(api: &Arc<A>, routes: &'static [RouteSpec]) -> OpenApiRouter {
    let mut router = OpenApiRouter::new();
    for route in routes {
        let mut methods = MethodRouter::new();
        for method in route.methods {
            let Ok(filter) = MethodFilter::try_from(method.clone()) else {
                continue;
            };
            let api = Arc::clone(api);
            methods = methods.on(filter, move |request: Request| async move {
                let param = matches(route.template, request.uri().path()).flatten();
                let param = param.map(str::to_owned);
                let (parts, body) = request.into_parts();
                let context = parts.extensions.get::<RequestContext>().cloned();
                let Some(context) = context else {
                    return Err(ApiError::internal("no request context"));
                };
                let request = ApiRequest {
                    method: parts.method,
                    headers: parts.headers,
                    query: parts.uri.query().map(str::to_owned),
                    body: body.map_err(Into::into).boxed_unsync(),
                    client: context.client,
                    limits: context.limits,
                    budget: context.budget,
                    reserved: None,
                };
                api.handle(route, param, request).await
            });
        }
        router = router.route(route.template, methods);
    }
    router
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

    #[test]
    fn paths_match_templates_exactly() {
        assert_eq!(
            matches("/v1/users/{id}", "/v1/users/abc"),
            Some(Some("abc"))
        );
        assert_eq!(matches("/v1/users", "/v1/users"), Some(None));
        for path in ["/v1/users/", "/v1/users/a/b", "/v1/user", ""] {
            assert_eq!(matches("/v1/users/{id}", path), None, "{path}");
        }
    }
}
