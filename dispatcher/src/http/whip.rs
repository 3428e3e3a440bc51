//! WHIP and WHEP (RFC 9725) endpoints for the ecosystem's tools (OBS, GStreamer's
//! `whipclientsink`, ffmpeg, browsers' players): a client posts its SDP offer to
//! `/whip/{conference}` (publish) or `/whep/{conference}` (watch) with its account code as
//! the bearer token, or a will-call ticket it already holds (with `account=` and `user=`). The dispatcher places the conference as it does any `join`, signs a
//! will-call ticket, and answers `307` to the chosen media server's own WHIP route, with
//! the ticket in the query, so the offer is answered where the media flows. RFC 9725 §4.5
//! allows the redirect; a `307` keeps the method and the body.

use crate::Service;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use control::whip::{self as http, refuse, refuse_msg, Kind};
use control::Transport;
use protocol::{Endpoint, ErrorCode, JoinOpts, MediaKind, ServerMsg};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// What a client may put in the query (a tool that cannot set a bearer token names its
/// account here).
#[derive(Debug, Default, Deserialize)]
struct Ask {
    account: Option<String>,
    user: Option<String>,
    mode: Option<String>,
    pin: Option<String>,
}

/// The media server's query: the ticket and whom it was issued to.
#[derive(Serialize)]
struct Handoff<'a> {
    ticket: &'a str,
    account: &'a str,
    user: &'a str,
    mode: &'a str,
}

/// `/whip/{conference}` and `/whep/{conference}`, open to pages on any origin.
pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route(
            "/whip/{conference}",
            post(|s, i, p, q, h, b| dispatch(Kind::Whip, s, i, p, q, h, b)).options(options),
        )
        .route(
            "/whep/{conference}",
            post(|s, i, p, q, h, b| dispatch(Kind::Whep, s, i, p, q, h, b)).options(options),
        )
        .with_state(service)
        .layer(http::cors())
}

async fn options() -> Response {
    (StatusCode::NO_CONTENT, [("accept-post", http::SDP)]).into_response()
}

/// The media server's HTTP base for its control WebSocket URL `ws://host:port/ws`.
fn http_base(ws_url: &str) -> Option<String> {
    let (scheme, rest) = if let Some(r) = ws_url.strip_prefix("wss://") {
        ("https", r)
    } else {
        ("http", ws_url.strip_prefix("ws://")?)
    };
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}"))
}

async fn dispatch(
    kind: Kind,
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(conference): Path<String>,
    Query(ask): Query<Ask>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let refused = |msg: ServerMsg| {
        if let ServerMsg::Reject { code, .. } | ServerMsg::Error { code, .. } = &msg {
            service.count_refusal(*code);
        }
        refuse_msg(&msg)
    };
    if !http::is(&headers, http::SDP) {
        return http::wrong_type(http::SDP);
    }
    let token = http::bearer(&headers).map(str::to_owned);
    if let Some(t) = token.as_deref().filter(|t| is_ticket(&service, t)) {
        return match with_ticket(&service, kind, &conference, &ask, t) {
            Ok(r) => r,
            Err(msg) => refused(msg),
        };
    }
    let Some(account) = token.or(ask.account.clone()) else {
        return refused(ServerMsg::reject(
            ErrorCode::UnknownAccount,
            "an account code is needed: Authorization: Bearer ACCOUNT",
        ));
    };
    let user = ask.user.clone().unwrap_or_else(|| {
        let tag: u32 = rand::random();
        format!("{}-{:06x}", kind.path(), tag & 0xff_ffff)
    });
    let mode = match http::mode(ask.mode.as_deref()) {
        Ok(Some(m)) => m,
        // A viewer joins whatever runs.
        Ok(None) => service
            .tables()
            .conference(&conference)
            .map(|c| c.parsed_mode())
            .unwrap_or_default(),
        Err(msg) => return refused(msg),
    };
    if let Some(reject) = service.admit_join(&account, peer.ip()) {
        return refused(reject);
    }
    let mut media = vec![MediaKind::Audio];
    if protocol::sdp::http_media(&body, kind.publishes()).video {
        media.push(MediaKind::Video);
    }
    let mut extra = Vec::new();
    if let Some(pin) = ask.pin.clone() {
        extra.push(("pin".to_owned(), pin));
    }
    let opts = JoinOpts {
        mode,
        media,
        app: Some(kind.path().to_owned()),
        extra,
        ..JoinOpts::default()
    };
    let reply = service
        .join(&conference, &account, &user, &opts, Transport::WebSocket)
        .await;
    let ServerMsg::Dispatch { addr, ticket, .. } = reply else {
        return refused(reply);
    };
    let base = match &addr {
        Endpoint::Ws(url) => http_base(url),
        _ => None,
    };
    let Some(base) = base else {
        return refused(ServerMsg::reject(
            ErrorCode::NoCapacity,
            "the chosen media server serves no HTTP; it cannot take WHIP or WHEP",
        ));
    };
    let handoff = Handoff {
        ticket: &ticket,
        account: &account,
        user: &user,
        mode: mode.as_str(),
    };
    tracing::info!(%conference, %user, %peer, kind = kind.path(), "http client redirected to its media server");
    redirect(&base, kind, &conference, &handoff)
}

/// A token that is no account code but has a ticket's form.
fn is_ticket(service: &Service, token: &str) -> bool {
    !service.settings().accounts.iter().any(|a| a.code == token)
        && protocol::ticket::expiry(token).is_some()
}

/// A client that already holds a will-call ticket (from a `dispatch` line) goes to the
/// server the ticket was signed for, which must be the conference's. The ticket is
/// checked here, so a bad one is refused before the client is sent anywhere.
fn with_ticket(
    service: &Service,
    kind: Kind,
    conference: &str,
    ask: &Ask,
    ticket: &str,
) -> Result<Response, ServerMsg> {
    let (Some(account), Some(user)) = (ask.account.as_deref(), ask.user.as_deref()) else {
        return Err(ServerMsg::reject(
            ErrorCode::BadTicket,
            "a ticket as the bearer token needs account= and user=, as it was issued",
        ));
    };
    let (server, ws_url, mode) = {
        let t = service.tables();
        let Some(c) = t.conference(conference) else {
            return Err(ServerMsg::reject(
                ErrorCode::NotFound,
                format!("no conference {}", protocol::clip(conference)),
            ));
        };
        let ws = t
            .servers()
            .find(|s| s.id == c.server)
            .and_then(|s| s.ws_url.clone());
        (c.server.clone(), ws, c.parsed_mode())
    };
    let claims = protocol::ticket::Claims {
        conference,
        account,
        user,
        server: &server,
    };
    let now = crate::unix_ms() / 1000;
    protocol::ticket::verify_role(&service.settings().secret, ticket, &claims, now)
        .map_err(|e| ServerMsg::reject(e.code(), e.to_string()))?;
    let base = ws_url.as_deref().and_then(http_base).ok_or_else(|| {
        ServerMsg::reject(
            ErrorCode::NoCapacity,
            "the conference's media server serves no HTTP; it cannot take WHIP or WHEP",
        )
    })?;
    let handoff = Handoff {
        ticket,
        account,
        user,
        mode: ask.mode.as_deref().unwrap_or(mode.as_str()),
    };
    Ok(redirect(&base, kind, conference, &handoff))
}

/// `307` to the media server's own route.
fn redirect(base: &str, kind: Kind, conference: &str, handoff: &Handoff<'_>) -> Response {
    let query = match serde_urlencoded::to_string(handoff) {
        Ok(q) => q,
        Err(e) => return refuse(ErrorCode::Internal, &e.to_string()),
    };
    let location = format!(
        "{base}/{}/{}?{query}",
        kind.path(),
        http::segment(conference)
    );
    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(e) => refuse(ErrorCode::Internal, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::http_base;

    #[test]
    fn the_media_servers_http_base_comes_from_its_websocket_url() {
        assert_eq!(
            http_base("ws://127.0.0.1:9000/ws").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            http_base("wss://media.example:443/ws").as_deref(),
            Some("https://media.example:443")
        );
        assert_eq!(http_base("tcp://x"), None);
        assert_eq!(http_base("ws:///ws"), None);
    }
}
