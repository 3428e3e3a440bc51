//! Operator actions (seed 003): drain a server, set or clear a maintenance window, move
//! a user to another conference ("send to the manager"), punt a conference; and conference
//! control: mute or unmute a participant, kick one, lock or unlock a conference. Each needs
//! a bearer token from the config, and each is logged with the operator's name.

use crate::service::ops::{self, Moderation};
use crate::{DispatcherError, Service};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The operator behind a request, from its bearer token.
pub(crate) struct Operator(pub String);

/// An admin request refused, as JSON with a status.
pub(crate) struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<DispatcherError> for Refusal {
    fn from(e: DispatcherError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Refusal(status, e.to_string())
    }
}

/// Compares without an early exit, so response time does not leak a token's prefix.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<Arc<Service>> for Operator {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, Refusal> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "admin actions need a bearer token".into(),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        match service
            .settings()
            .admins
            .iter()
            .find(|a| same(&a.token, token))
        {
            Some(a) => Ok(Operator(a.name.clone())),
            None => {
                tracing::warn!("admin request with a bad token refused");
                Err(Refusal(StatusCode::FORBIDDEN, "bad token".into()))
            }
        }
    }
}

fn done(service: &Service, action: &str, who: &str, detail: Value) -> Json<Value> {
    service.metrics.admin(action);
    tracing::info!(action, who, %detail, "admin action");
    Json(json!({ "ok": true, "action": action, "by": who, "detail": detail }))
}

#[derive(Deserialize)]
pub(crate) struct DrainBody {
    #[serde(default = "yes")]
    on: bool,
}

fn yes() -> bool {
    true
}

pub(crate) async fn drain(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    // No body means drain; `{"on": false}` undrains.
    let on = if body.iter().all(u8::is_ascii_whitespace) {
        true
    } else {
        serde_json::from_slice::<DrainBody>(&body)
            .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("bad body: {e}")))?
            .on
    };
    ops::set_drain(&s, &id, on, &who)?;
    Ok(done(
        &s,
        if on { "drain" } else { "undrain" },
        &who,
        json!({ "server": id }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct WindowBody {
    start_unix: u64,
    end_unix: u64,
}

pub(crate) async fn set_maintenance(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(id): Path<String>,
    Json(w): Json<WindowBody>,
) -> Result<Json<Value>, Refusal> {
    ops::set_maintenance(&s, &id, Some((w.start_unix, w.end_unix)), &who)?;
    Ok(done(
        &s,
        "maintenance",
        &who,
        json!({ "server": id, "start_unix": w.start_unix, "end_unix": w.end_unix }),
    ))
}

pub(crate) async fn clear_maintenance(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refusal> {
    ops::set_maintenance(&s, &id, None, &who)?;
    Ok(done(
        &s,
        "maintenance-cleared",
        &who,
        json!({ "server": id }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct MoveBody {
    conference: String,
    participant: u32,
    to: String,
}

/// Seed 003's "send to the manager": the user's media server dispatches it to the
/// conference `to`, created where the dispatcher would create any conference.
pub(crate) async fn move_user(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Json(m): Json<MoveBody>,
) -> Result<Json<Value>, Refusal> {
    let moved = ops::move_user(&s, &m.conference, m.participant, &m.to, &who)?;
    Ok(done(
        &s,
        "move",
        &who,
        json!({ "conference": m.conference, "participant": m.participant, "user": moved.user, "to": m.to, "server": moved.server }),
    ))
}

/// Moves a whole conference to another server: its server dispatches every participant.
/// A server linked to another dispatcher is reached through the store; an error status
/// says when that could not be done.
pub(crate) async fn punt(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let p = ops::punt(&s, &conference, &who).await?;
    Ok(done(
        &s,
        "punt",
        &who,
        json!({ "conference": conference, "from": p.from, "to": p.to, "dispatched": p.dispatched }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct SpreadBody {
    per_server: u32,
}

/// Spreads a conference over linked servers from now on: at most `per_server` of its
/// members on each (0: only when a server is full), as an account's `spread` does.
pub(crate) async fn spread(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let n = serde_json::from_slice::<SpreadBody>(&body)
        .map_err(|e| {
            Refusal(
                StatusCode::BAD_REQUEST,
                format!("bad body, want {{\"per_server\": N}}: {e}"),
            )
        })?
        .per_server;
    s.tables()
        .set_spread(crate::unix_ms(), &conference, n, &who)
        .map_err(crate::DispatcherError::from)?;
    Ok(done(
        &s,
        "spread",
        &who,
        json!({ "conference": conference, "per_server": n }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct OnBody {
    on: bool,
}

/// A JSON body `{"on": true|false}`, required.
fn on_of(body: &axum::body::Bytes) -> Result<bool, Refusal> {
    serde_json::from_slice::<OnBody>(body)
        .map(|b| b.on)
        .map_err(|e| {
            Refusal(
                StatusCode::BAD_REQUEST,
                format!("bad body, want {{\"on\": true|false}}: {e}"),
            )
        })
}

/// Mutes (`{"on": true}`) or unmutes a participant as a moderator would: it cannot unmute
/// itself until an operator or a moderator lifts it.
pub(crate) async fn mute(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path((conference, participant)): Path<(String, u32)>,
    Query(at): Query<AtServer>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let on = on_of(&body)?;
    let server = ops::moderate(
        &s,
        &conference,
        Moderation::Mute { participant, on },
        at.server.as_deref(),
        &who,
    )?;
    Ok(done(
        &s,
        if on { "mute" } else { "unmute" },
        &who,
        json!({ "conference": conference, "participant": participant, "server": server }),
    ))
}

/// `?server=ID`: which media server's participant id a mute or kick names, for a
/// conference spread over linked servers (ids are per server; the API's participant rows
/// carry their `server`). Without it: the conference's first server, else the first linked
/// one that has the id.
#[derive(Deserialize, Default)]
pub(crate) struct AtServer {
    #[serde(default)]
    server: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct KickBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Removes a participant (optional body `{"reason": "..."}`, shown to everyone); its
/// ticket cannot be used to come back.
pub(crate) async fn kick(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path((conference, participant)): Path<(String, u32)>,
    Query(at): Query<AtServer>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let k = if body.iter().all(u8::is_ascii_whitespace) {
        KickBody::default()
    } else {
        serde_json::from_slice::<KickBody>(&body)
            .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("bad body: {e}")))?
    };
    let reason = k
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "removed by an operator".to_owned());
    if reason.len() > 256 {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "reason: at most 256 bytes".into(),
        ));
    }
    let action = Moderation::Kick {
        participant,
        reason: reason.clone(),
    };
    let server = ops::moderate(&s, &conference, action, at.server.as_deref(), &who)?;
    Ok(done(
        &s,
        "kick",
        &who,
        json!({ "conference": conference, "participant": participant, "reason": reason, "server": server }),
    ))
}

#[derive(serde::Deserialize)]
struct LayoutBody {
    layout: String,
}

/// Lays a composite conference out anew: `{"layout": "grid"|"speaker"|"presentation"}`.
pub(crate) async fn layout(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let want = "bad body, want {\"layout\": \"grid\"|\"speaker\"|\"presentation\"}";
    let layout = serde_json::from_slice::<LayoutBody>(&body)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("{want}: {e}")))?
        .layout;
    let layout: protocol::Layout = layout.parse().map_err(|()| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("{want}: unknown layout {layout:?}"),
        )
    })?;
    let server = ops::moderate(&s, &conference, Moderation::Layout { layout }, None, &who)?;
    Ok(done(
        &s,
        "layout",
        &who,
        json!({ "conference": conference, "server": server, "layout": layout.as_str() }),
    ))
}

/// Starts recording a conference on its media server (`--recordings DIR` there). Starting
/// a recording that runs already changes nothing.
pub(crate) async fn record_start(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
) -> Result<Json<Value>, Refusal> {
    record(&s, &who, conference, true)
}

/// Stops a conference's recording (none running: nothing happens).
pub(crate) async fn record_stop(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
) -> Result<Json<Value>, Refusal> {
    record(&s, &who, conference, false)
}

fn record(s: &Service, who: &str, conference: String, on: bool) -> Result<Json<Value>, Refusal> {
    let server = ops::moderate(s, &conference, Moderation::Record { on }, None, who)?;
    Ok(done(
        s,
        if on { "record" } else { "record-stop" },
        who,
        json!({ "conference": conference, "server": server, "recording": on }),
    ))
}

/// Locks (`{"on": true}`) or unlocks a conference: while locked, new joins are refused
/// with `reject 423` (moderators still get in).
pub(crate) async fn lock(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let on = on_of(&body)?;
    let server = ops::moderate(&s, &conference, Moderation::Lock { on }, None, &who)?;
    Ok(done(
        &s,
        if on { "lock" } else { "unlock" },
        &who,
        json!({ "conference": conference, "server": server }),
    ))
}
