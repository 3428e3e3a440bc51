//! `/healthz` and `/readyz`, for load balancers and orchestrators. `/healthz`: the process
//! answers. `/readyz`: it can place a join, i.e. at least one media server is in service
//! (and it is not shutting down); otherwise `503` with the reason.

use crate::core::ServerState;
use crate::{unix_ms, Service};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(s): State<Arc<Service>>) -> impl IntoResponse {
    let now = Instant::now();
    let unix_s = unix_ms() / 1000;
    let in_service = s
        .tables()
        .servers()
        .filter(|srv| srv.state(now, unix_s) == ServerState::InService && srv.in_communication(now))
        .count();
    let (code, status) = if in_service > 0 {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no media server in service",
        )
    };
    (
        code,
        Json(json!({ "status": status, "media_servers_in_service": in_service })),
    )
}
