//! Operator actions (seed 003): drain a server, set or clear a maintenance window, move
//! a user to another conference ("send to the manager"), punt a conference. Each needs a
//! bearer token from the config, and each is logged with the operator's name.

use crate::{unix_ms, Service};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::DispMsg;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

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

impl From<crate::core::PlaceError> for Refusal {
    fn from(e: crate::core::PlaceError) -> Self {
        use crate::core::PlaceError as P;
        let status = match e {
            P::NoServer(_) | P::OverLimit { .. } => StatusCode::CONFLICT,
            P::UnknownServer(_) | P::UnknownConference(_) | P::UnknownParticipant(..) => {
                StatusCode::NOT_FOUND
            }
        };
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
    s.tables().set_drain(unix_ms(), &id, on, &who)?;
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
    if w.end_unix <= w.start_unix {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "end_unix must be after start_unix".into(),
        ));
    }
    s.tables()
        .set_maintenance(unix_ms(), &id, Some((w.start_unix, w.end_unix)), &who)?;
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
    s.tables().set_maintenance(unix_ms(), &id, None, &who)?;
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
    if m.to.is_empty() || m.to.len() > 128 || m.to.chars().any(char::is_control) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "bad target conference name".into(),
        ));
    }
    let now = Instant::now();
    let unix = unix_ms();
    // The client rejoins with the mode it joined with, so the target is placed (or must
    // already run) in the source conference's mode.
    let (seat, generation, placement) = {
        let mut t = s.tables();
        let seat = t.participant(&m.conference, m.participant)?;
        let generation = t
            .server(&seat.server)
            .map(|srv| srv.generation)
            .unwrap_or(0);
        if let Some(target) = t.conference(&m.to).filter(|c| c.parsed_mode() != seat.mode) {
            return Err(Refusal(
                StatusCode::CONFLICT,
                format!(
                    "{} runs in {} mode, {} in {}",
                    m.to, target.mode, m.conference, seat.mode
                ),
            ));
        }
        let placement = t.place(
            now,
            unix,
            &m.to,
            &seat.account,
            seat.mode,
            s.settings().ticket_ttl,
        )?;
        (seat, generation, placement)
    };
    let (name, from, account) = (seat.name, seat.server, seat.account);
    let ticket = s
        .hand_out(&placement, &m.to, &account, &name, seat.mode)
        .ok_or_else(|| {
            Refusal(
                StatusCode::CONFLICT,
                format!("media server {} is unreachable", placement.server),
            )
        })?;
    let order = DispMsg::Dispatch {
        conference: m.conference.clone(),
        participant: m.participant,
        addr: placement.client_addr,
        ticket,
        to_conference: m.to.clone(),
        ws: None,
    };
    if !s.send_to(&from, generation, order) {
        return Err(Refusal(
            StatusCode::CONFLICT,
            format!("media server {from} is unreachable"),
        ));
    }
    let detail = format!(
        "{} {name} to {} on {}",
        m.participant, m.to, placement.server
    );
    s.tables()
        .log_by(unix, "move", &from, &m.conference, detail, &who);
    Ok(done(
        &s,
        "move",
        &who,
        json!({ "conference": m.conference, "participant": m.participant, "user": name, "to": m.to, "server": placement.server }),
    ))
}

/// What a punt did: the servers it moved between and how many participants were sent.
pub(crate) struct Punted {
    pub from: String,
    pub to: String,
    pub dispatched: usize,
}

/// Punts `conference` (seed 003): the tables pick the target and reserve its seats, and
/// the conference's current server is told to `dispatch` each participant there. Used by
/// the operator's punt and by a media server's own `punt` (high water, drain).
pub(crate) fn punt_conference(
    s: &Service,
    conference: &str,
    who: &str,
) -> Result<Punted, crate::core::PlaceError> {
    let (punt, generation) = {
        let mut t = s.tables();
        let p = t.punt(
            Instant::now(),
            unix_ms(),
            conference,
            s.settings().ticket_ttl,
            who,
        )?;
        let g = t.server(&p.from).map(|srv| srv.generation).unwrap_or(0);
        (p, g)
    };
    let mut dispatched = 0;
    for (participant, name) in &punt.participants {
        let Some(ticket) = s.hand_out(&punt.to, conference, &punt.account, name, punt.mode) else {
            break;
        };
        let order = DispMsg::Dispatch {
            conference: conference.to_owned(),
            participant: *participant,
            addr: punt.to.client_addr,
            ticket,
            to_conference: conference.to_owned(),
            ws: None,
        };
        if s.send_to(&punt.from, generation, order) {
            dispatched += 1;
        }
    }
    if dispatched > 0 {
        // The store's placement follows the clients, or other dispatchers would keep
        // sending joins to the old server and call resolution would send them back.
        s.cluster.punted(conference, &punt.to.server);
    }
    Ok(Punted {
        from: punt.from,
        to: punt.to.server,
        dispatched,
    })
}

/// Moves a whole conference to another server: its server dispatches every participant.
pub(crate) async fn punt(
    State(s): State<Arc<Service>>,
    Operator(who): Operator,
    Path(conference): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let p = punt_conference(&s, &conference, &who)?;
    Ok(done(
        &s,
        "punt",
        &who,
        json!({ "conference": conference, "from": p.from, "to": p.to, "dispatched": p.dispatched }),
    ))
}
