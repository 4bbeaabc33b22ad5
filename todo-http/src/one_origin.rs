//! Both APIs and the web page on one origin, in one process: what `todo`
//! (the one-command system) serves, and the example of mounting the routers
//! inside another program.

use std::sync::Arc;

use bytes::Bytes;
use utoipa_axum::router::OpenApiRouter;

use crate::front::Api;
use crate::metrics::Metrics;
use crate::{AuthApi, TaskApi, web};

/// auth-server's and task-server's APIs and the web page behind one [`crate::Frontend`].
pub struct OneOrigin {
    auth: Arc<AuthApi>,
    tasks: Arc<TaskApi>,
    openapi: Bytes,
}

impl std::fmt::Debug for OneOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneOrigin").finish_non_exhaustive()
    }
}

impl OneOrigin {
    /// Both APIs and the page; the document merges both APIs' documents.
    pub fn new(auth: AuthApi, tasks: TaskApi) -> Result<Self, serde_json::Error> {
        let document = crate::openapi::one_origin();
        Ok(Self {
            auth: Arc::new(auth),
            tasks: Arc::new(tasks),
            openapi: Bytes::from(serde_json::to_vec(&document)?),
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

    fn openapi(&self) -> Bytes {
        self.openapi.clone()
    }

    async fn ready(&self) -> Result<(), crate::probe::NotReady> {
        self.auth.ready().await?;
        self.tasks.ready().await
    }

    fn metrics(&self) -> &Metrics {
        self.auth.metrics()
    }
}

/// auth-server's API and the web page (`auth-server --web-page`): the same
/// origin as [`OneOrigin`], spread over two services by a gateway that
/// routes the page's files and `/v1/auth`, `/v1/users` here and `/v1/tasks`
/// to task-server. Cookie sessions are on.
pub struct AuthWithPage {
    auth: Arc<AuthApi>,
}

impl std::fmt::Debug for AuthWithPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthWithPage").finish_non_exhaustive()
    }
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

    fn openapi(&self) -> Bytes {
        self.auth.openapi()
    }

    async fn ready(&self) -> Result<(), crate::probe::NotReady> {
        self.auth.ready().await
    }

    fn metrics(&self) -> &Metrics {
        self.auth.metrics()
    }
}
