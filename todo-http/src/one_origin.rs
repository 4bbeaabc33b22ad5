//! Both APIs and the web page on one origin, in one process: what `todo`
//! (the one-command system) serves, and the example of mounting the routers
//! inside another program.

use std::sync::LazyLock;

use bytes::Bytes;
use http::Method;

use crate::front::{Api, ApiResponse};
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::request::ApiRequest;
use crate::router::RouteSpec;
use crate::{AuthApi, TaskApi, web};

/// `api`'s routes and the page's files.
fn with_page(api: &[&'static [RouteSpec]]) -> Vec<RouteSpec> {
    let mut routes: Vec<RouteSpec> = api.concat();
    routes.extend(web::ASSETS.iter().map(|asset| RouteSpec {
        template: asset.path,
        methods: &[Method::GET, Method::HEAD],
    }));
    routes
}

/// The routes of both APIs and of the page.
static ROUTES: LazyLock<Vec<RouteSpec>> =
    LazyLock::new(|| with_page(&[crate::routes::AUTH, crate::routes::TASKS]));

/// auth-server's and task-server's APIs and the web page behind one [`crate::Frontend`].
pub struct OneOrigin {
    auth: AuthApi,
    tasks: TaskApi,
    openapi: Bytes,
}

impl std::fmt::Debug for OneOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneOrigin").finish_non_exhaustive()
    }
}

impl OneOrigin {
    pub fn new(auth: AuthApi, tasks: TaskApi) -> Result<Self, serde_json::Error> {
        let mut document = crate::openapi::auth();
        let tasks_document = crate::openapi::tasks();
        merge(&mut document["paths"], &tasks_document["paths"]);
        merge(
            &mut document["components"]["schemas"],
            &tasks_document["components"]["schemas"],
        );
        document["info"]["title"] = serde_json::json!("todo (one origin)");
        Ok(Self {
            auth,
            tasks,
            openapi: Bytes::from(serde_json::to_vec(&document)?),
        })
    }
}

/// Adds the members of `from` that `into` lacks (both are JSON objects).
fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (name, value) in from {
            into.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
}

impl Api for OneOrigin {
    fn routes(&self) -> &'static [RouteSpec] {
        ROUTES.as_slice()
    }

    async fn handle(
        &self,
        route: &'static RouteSpec,
        param: Option<String>,
        request: ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let template = route.template;
        if let Some(route) = crate::routes::AUTH.iter().find(|r| r.template == template) {
            self.auth.handle(route, param, request).await
        } else if let Some(route) = crate::routes::TASKS.iter().find(|r| r.template == template) {
            self.tasks.handle(route, param, request).await
        } else {
            web::serve(template)
        }
    }

    fn openapi(&self) -> Bytes {
        self.openapi.clone()
    }

    async fn ready(&self) -> Result<(), String> {
        self.auth.ready().await?;
        self.tasks.ready().await
    }

    fn metrics(&self) -> &Metrics {
        self.auth.metrics()
    }
}

/// The routes of auth-server's API and of the page.
static AUTH_AND_PAGE_ROUTES: LazyLock<Vec<RouteSpec>> =
    LazyLock::new(|| with_page(&[crate::routes::AUTH]));

/// auth-server's API and the web page (`auth-server --web-page`): the same
/// origin as [`OneOrigin`], spread over two services by a gateway that
/// routes the page's files and `/v1/auth`, `/v1/users` here and `/v1/tasks`
/// to task-server. Cookie sessions are on.
pub struct AuthWithPage {
    auth: AuthApi,
}

impl std::fmt::Debug for AuthWithPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthWithPage").finish_non_exhaustive()
    }
}

impl AuthWithPage {
    #[must_use]
    pub fn new(auth: AuthApi) -> Self {
        Self {
            auth: auth.with_cookie_sessions(),
        }
    }
}

impl Api for AuthWithPage {
    fn routes(&self) -> &'static [RouteSpec] {
        AUTH_AND_PAGE_ROUTES.as_slice()
    }

    async fn handle(
        &self,
        route: &'static RouteSpec,
        param: Option<String>,
        request: ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let template = route.template;
        match crate::routes::AUTH.iter().find(|r| r.template == template) {
            Some(route) => self.auth.handle(route, param, request).await,
            None => web::serve(template),
        }
    }

    fn openapi(&self) -> Bytes {
        self.auth.openapi()
    }

    async fn ready(&self) -> Result<(), String> {
        self.auth.ready().await
    }

    fn metrics(&self) -> &Metrics {
        self.auth.metrics()
    }
}
