//! Both APIs and the web page on one origin, in one process: what `todo`
//! (the one-command system) serves, and the example of mounting the routers
//! inside another program.

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

use crate::front::Api;
use crate::probe::Operations;
use crate::{AuthApi, TaskApi, web};

/// auth-server's and task-server's APIs and the web page behind one [`crate::Frontend`].
#[derive(Debug)]
pub struct OneOrigin {
    auth: Arc<AuthApi>,
    tasks: Arc<TaskApi>,
    ops: Operations,
}

impl OneOrigin {
    /// Both APIs and the page; the document merges both APIs' documents.
    pub fn new(auth: AuthApi, tasks: TaskApi) -> Result<Self, serde_json::Error> {
        let document = crate::openapi::one_origin();
        Ok(Self {
            ops: Operations::joined(auth.operations(), tasks.operations(), &document)?,
            auth: Arc::new(auth),
            tasks: Arc::new(tasks),
        })
    }
}

impl Api for OneOrigin {
    fn routes(self: Arc<Self>) -> OpenApiRouter {
        Arc::clone(&self.auth)
            .routes()
            .merge(Arc::clone(&self.tasks).routes())
            .merge(web::router())
    }

    fn operations(&self) -> &Operations {
        &self.ops
    }
}

/// auth-server's API and the web page (`auth-server --web-page`): the same
/// origin as [`OneOrigin`], spread over two services by a gateway that
/// routes the page's files and `/v1/auth`, `/v1/users`, `/v1/sessions`,
/// `/v1/api-tokens` here
/// and `/v1/tasks` to task-server. Cookie sessions are on.
#[derive(Debug)]
pub struct AuthWithPage {
    auth: Arc<AuthApi>,
}

impl AuthWithPage {
    /// The auth API, with cookie sessions, and the page.
    #[must_use]
    pub fn new(auth: AuthApi) -> Self {
        Self {
            auth: Arc::new(auth.with_cookie_sessions()),
        }
    }
}

impl Api for AuthWithPage {
    fn routes(self: Arc<Self>) -> OpenApiRouter {
        Arc::clone(&self.auth).routes().merge(web::router())
    }

    fn operations(&self) -> &Operations {
        self.auth.operations()
    }
}
