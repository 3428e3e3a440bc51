//! Limits on every HTTP route of every binary: the largest request body and the longest a
//! request may take to answer. They live here, next to the control connection limits, so
//! that the dispatcher's, the media server's and `noc`'s routers get them from one place
//! ([`crate::serve_http`] applies them): a client sending a huge body or holding a handler
//! forever costs a bounded amount.

use axum::http::StatusCode;
use axum::Router;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The largest request body any route takes (the admin API's JSON bodies are tiny):
/// larger ones are answered `413 Payload Too Large` unread.
pub const MAX_BODY: usize = 64 * 1024;
/// The longest a route may take to produce its response: then `408 Request Timeout`.
/// (Streams that have started, SSE and WebSockets, are not cut: only the wait for the
/// response head counts.)
pub const MAX_TIME: Duration = Duration::from_secs(30);

/// The HTTP limits of one router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body: usize,
    pub max_time: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: MAX_BODY,
            max_time: MAX_TIME,
        }
    }
}

/// `app` with the default [`HttpLimits`] on every route.
pub fn http_limits(app: Router) -> Router {
    http_limits_with(app, HttpLimits::default())
}

/// `app` with `limits` on every route.
pub fn http_limits_with(app: Router, limits: HttpLimits) -> Router {
    app.layer(RequestBodyLimitLayer::new(limits.max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.max_time,
        ))
}
