//! The web page: plain HTML, CSS and JavaScript modules compiled into the
//! binary (no build step, nothing fetched at run time), served with a strict
//! Content-Security-Policy: no inline script or style, nothing from
//! elsewhere.

use axum::routing::get;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use utoipa_axum::router::OpenApiRouter;

use crate::front::ApiResponse;

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    /// Where it is served.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its text, compiled in.
    pub body: &'static str,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static str) -> Self {
        Self {
            path,
            content_type,
            body,
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file of the page.
pub static ASSETS: &[Asset] = &[
    Asset::new("/", HTML, include_str!("../../web/index.html")),
    Asset::new("/app.js", JS, include_str!("../../web/app.js")),
    Asset::new("/api.js", JS, include_str!("../../web/api.js")),
    Asset::new("/dates.js", JS, include_str!("../../web/dates.js")),
    Asset::new("/app.css", CSS, include_str!("../../web/app.css")),
    Asset::new("/favicon.svg", SVG, include_str!("../../web/favicon.svg")),
];

/// The policy for the page: its own files only; no inline script or style,
/// no frames, no plugins, forms and fetches to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's files, each at its path (GET and HEAD); not part of the
/// API's document.
pub fn router() -> OpenApiRouter {
    let mut router = OpenApiRouter::new();
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    router
}

/// What every file of the page is sent with: the policy, isolation from
/// other origins, no powerful features, HTTPS only.
const PAGE_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
    ("strict-transport-security", "max-age=31536000"),
];

/// Serves one of the page's files.
fn serve(asset: &'static Asset) -> ApiResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
