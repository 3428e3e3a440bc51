//! The JSON API over the dispatcher's tables: what operators and tests read.

use crate::Service;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

pub(crate) async fn serve(listener: TcpListener, service: Arc<Service>) {
    let app = Router::new()
        .route("/api/servers", get(servers))
        .route("/api/conferences", get(conferences))
        .route("/api/events", get(events))
        .with_state(service);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

async fn servers(State(s): State<Arc<Service>>) -> Json<Value> {
    let now = Instant::now();
    let t = s.tables();
    let rows: Vec<Value> = t
        .servers()
        .map(|s| {
            let age = now.saturating_duration_since(s.last_report);
            json!({
                "id": s.id,
                "client_addr": s.client_addr.to_string(),
                "state": "in-service",
                "capabilities": s.caps.to_string(),
                "in_communication": age < crate::core::REPORT_FRESH,
                "report_age_ms": age.as_millis() as u64,
                "total": s.total,
                "unused": s.unused,
                "score": s.score(),
                "conferences": s.conferences,
                "users": s.users,
                "cpu_pct": s.cpu_pct,
                "pps": s.pps,
            })
        })
        .collect();
    Json(Value::Array(rows))
}

async fn conferences(State(s): State<Arc<Service>>) -> Json<Value> {
    let now = Instant::now();
    let t = s.tables();
    let mut rows: Vec<Value> = t
        .conferences()
        .map(|c| {
            let participants: Vec<Value> = c
                .participants
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect();
            json!({
                "name": c.name,
                "server": c.server,
                "mode": c.mode,
                "account": c.account,
                "created_unix": c.created_unix,
                "age_s": now.saturating_duration_since(c.created).as_secs(),
                "participants": participants,
            })
        })
        .collect();
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(Value::Array(rows))
}

async fn events(State(s): State<Arc<Service>>) -> Json<Value> {
    let t = s.tables();
    Json(json!(t.events().collect::<Vec<_>>()))
}
