//! The dispatcher's HTTP face: the dashboard, the JSON API, live updates (SSE), the
//! admin actions, `/metrics`, the health checks `/healthz` and `/readyz`, and the WHIP and
//! WHEP endpoints that send tools to their media server. (The WebSocket control route `/ws`
//! is the client host's, merged in by `lib.rs`.)

mod admin;
mod dashboard;
mod health;
mod ice;
mod whip;

use crate::core::{Server, ServerState};
use crate::{unix_ms, Service};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::wrappers::IntervalStream;
use tokio_stream::StreamExt;

/// Events sent in each live snapshot.
const SNAPSHOT_EVENTS: usize = 30;

pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/app.css", get(dashboard::style))
        .route("/join", get(dashboard::join_page))
        .route("/join.js", get(dashboard::join_script))
        .route("/join.css", get(dashboard::join_style))
        .route("/api/summary", get(summary))
        .route("/api/servers", get(servers))
        .route("/api/history", get(history))
        .route("/api/conferences", get(conferences))
        .route("/api/conferences/{name}/participants", get(participants))
        .route("/api/events", get(events))
        .route("/api/webrtc/ice-servers", get(ice::ice_servers))
        .route("/api/stream", get(stream))
        .route("/api/admin/servers/{id}/drain", post(admin::drain))
        .route(
            "/api/admin/servers/{id}/maintenance",
            post(admin::set_maintenance).delete(admin::clear_maintenance),
        )
        .route("/api/admin/move", post(admin::move_user))
        .route("/api/admin/conferences/{name}/punt", post(admin::punt))
        .route("/api/admin/conferences/{name}/spread", post(admin::spread))
        .route(
            "/api/admin/conferences/{name}/participants/{id}/mute",
            post(admin::mute),
        )
        .route(
            "/api/admin/conferences/{name}/participants/{id}/kick",
            post(admin::kick),
        )
        .route("/api/admin/conferences/{name}/lock", post(admin::lock))
        .route("/api/admin/conferences/{name}/layout", post(admin::layout))
        .route(
            "/api/admin/conferences/{name}/recording",
            post(admin::record_start).delete(admin::record_stop),
        )
        .route("/api/recordings", get(recordings))
        .route("/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(service.clone())
        .merge(whip::router(service))
}

fn server_json(s: &Server, now: Instant, unix_s: u64) -> Value {
    let age = now.saturating_duration_since(s.last_report);
    json!({
        "id": s.id,
        "client_addr": s.client_addr.to_string(),
        "state": s.state(now, unix_s).as_str(),
        "capabilities": s.caps.to_string(),
        "in_communication": s.in_communication(now),
        "report_age_ms": age.as_millis() as u64,
        "total": s.total,
        "unused": s.unused,
        "used": s.total.saturating_sub(s.unused),
        "score": s.score(),
        "conferences": s.conferences,
        "users": s.users,
        "cpu_pct": s.cpu_pct,
        "pps": s.pps,
        "loss_pct": s.loss_pct,
        "draining": s.draining,
        "maintenance": s.maintenance.map(|(a, b)| json!({ "start_unix": a, "end_unix": b })),
    })
}

fn servers_json(service: &Service) -> Vec<Value> {
    let now = Instant::now();
    let unix_s = unix_ms() / 1000;
    let mut rows: Vec<Value> = service
        .tables()
        .servers()
        .map(|s| server_json(s, now, unix_s))
        .collect();
    // After the tables' lock is released: `is_remote` takes the links' lock.
    for row in &mut rows {
        let remote = row["id"].as_str().is_some_and(|id| service.is_remote(id));
        row["remote"] = Value::Bool(remote);
    }
    rows
}

async fn servers(State(s): State<Arc<Service>>) -> Json<Value> {
    Json(Value::Array(servers_json(&s)))
}

/// Totals for the page's header, cheap at any table size.
fn summary_json(service: &Service) -> Value {
    let now = Instant::now();
    let unix_s = unix_ms() / 1000;
    let t = service.tables();
    let mut states = [0u64; 4];
    let (mut total, mut used, mut pps, mut loss_weighted) = (0u64, 0u64, 0u64, 0f64);
    for s in t.servers() {
        let i = ServerState::ALL
            .iter()
            .position(|x| *x == s.state(now, unix_s))
            .unwrap_or(3);
        states[i] += 1;
        total += u64::from(s.total);
        used += u64::from(s.total.saturating_sub(s.unused));
        pps += s.pps;
        loss_weighted += f64::from(s.loss_pct) * s.pps as f64;
    }
    let (mut conferences, mut participants) = (0u64, 0u64);
    for c in t.conferences() {
        conferences += 1;
        participants += c.everyone().count() as u64;
    }
    json!({
        "unix_ms": unix_ms(),
        "servers": t.servers().count(),
        "servers_by_state": ServerState::ALL.iter().zip(states).map(|(s, n)| (s.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "capacity_total": total,
        "capacity_used": used,
        "conferences": conferences,
        "participants": participants,
        "pps": pps,
        "loss_pct": if pps > 0 { loss_weighted / pps as f64 } else { 0.0 },
    })
}

async fn summary(State(s): State<Arc<Service>>) -> Json<Value> {
    Json(summary_json(&s))
}

/// Each server's load samples over the last 15 minutes, for the charts' backfill.
async fn history(State(s): State<Arc<Service>>) -> Json<Value> {
    let t = s.tables();
    let rows: serde_json::Map<String, Value> = t
        .servers()
        .map(|srv| (srv.id.clone(), json!(srv.history)))
        .collect();
    Json(Value::Object(rows))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    page: usize,
    #[serde(default = "per_page")]
    per_page: usize,
    /// Case-insensitive substring of the conference name or its server.
    #[serde(default)]
    q: String,
}

fn per_page() -> usize {
    50
}

fn conferences_json(service: &Service, page: &Page) -> Value {
    let now = Instant::now();
    let t = service.tables();
    let q = page.q.to_lowercase();
    let mut rows: Vec<_> = t
        .conferences()
        .filter(|c| {
            q.is_empty()
                || c.name.to_lowercase().contains(&q)
                || c.server.to_lowercase().contains(&q)
                || c.links.keys().any(|s| s.to_lowercase().contains(&q))
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let per = page.per_page.clamp(1, 500);
    let total = rows.len();
    let items: Vec<Value> = rows
        .into_iter()
        .skip(page.page * per)
        .take(per)
        .map(|c| {
            // Everyone, wherever they are (participant ids are per server).
            let participants: Vec<Value> = c
                .everyone()
                .map(|(server, id, name)| json!({"id": id, "name": name, "server": server}))
                .collect();
            let servers: Vec<&str> = c.servers().collect();
            json!({
                "name": c.name,
                "server": c.server,
                "servers": servers,
                "mode": c.mode,
                "account": c.account,
                "created_unix": c.created_unix,
                "age_s": now.saturating_duration_since(c.created).as_secs(),
                "participants": participants,
            })
        })
        .collect();
    json!({ "total": total, "page": page.page, "per_page": per, "items": items })
}

/// The conference table. Without `page` or `per_page` a bare array of every conference
/// (the foundation's form); with either, one page and the total.
async fn conferences(
    State(s): State<Arc<Service>>,
    Query(raw): Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let paged = raw.contains_key("page") || raw.contains_key("per_page");
    let page = Page {
        page: raw.get("page").and_then(|v| v.parse().ok()).unwrap_or(0),
        per_page: raw
            .get("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if paged { per_page() } else { usize::MAX }),
        q: raw.get("q").cloned().unwrap_or_default(),
    };
    let mut v = conferences_json(&s, &page);
    if paged {
        Json(v)
    } else {
        Json(v["items"].take())
    }
}

async fn participants(
    State(s): State<Arc<Service>>,
    Path(name): Path<String>,
) -> impl IntoResponse {
    let t = s.tables();
    match t.conference(&name) {
        Some(c) => {
            let rows: Vec<Value> = c
                .everyone()
                .map(|(server, id, n)| json!({"id": id, "name": n, "server": server}))
                .collect();
            (StatusCode::OK, Json(Value::Array(rows)))
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no conference {name}") })),
        ),
    }
}

/// Every recording media servers reported (oldest first): conference, server, the file
/// and its sidecar on that server, start, stop and length.
async fn recordings(State(s): State<Arc<Service>>) -> Json<Value> {
    let t = s.tables();
    Json(json!(t.recordings().collect::<Vec<_>>()))
}

async fn events(State(s): State<Arc<Service>>) -> Json<Value> {
    let t = s.tables();
    Json(json!(t.events().collect::<Vec<_>>()))
}

/// One live update: totals, the capacity table and the latest events. The page fetches
/// the conference page it shows on each update, so 10,000 conferences never travel.
fn snapshot(service: &Service) -> Value {
    let events: Vec<Value> = {
        let t = service.tables();
        let all: Vec<_> = t.events().collect();
        all.iter()
            .rev()
            .take(SNAPSHOT_EVENTS)
            .map(|e| json!(e))
            .collect()
    };
    json!({ "summary": summary_json(service), "servers": servers_json(service), "events": events })
}

async fn stream(
    State(s): State<Arc<Service>>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
    let updates = ticks.map(move |_| {
        Ok(SseEvent::default()
            .event("snapshot")
            .data(snapshot(&s).to_string()))
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

async fn metrics(State(s): State<Arc<Service>>) -> impl IntoResponse {
    let now = Instant::now();
    let unix_s = unix_ms() / 1000;
    {
        let t = s.tables();
        let counts: Vec<(ServerState, i64)> = ServerState::ALL
            .iter()
            .map(|st| {
                (
                    *st,
                    t.servers().filter(|x| x.state(now, unix_s) == *st).count() as i64,
                )
            })
            .collect();
        s.metrics.set_server_counts(&counts);
        s.metrics.conferences.set(t.conferences().count() as i64);
        s.metrics
            .participants
            .set(t.conferences().map(|c| c.participants.len() as i64).sum());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}
