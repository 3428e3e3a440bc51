//! WHIP and WHEP (RFC 9725) on the media server's HTTP port: a publisher or a viewer joins
//! with one `POST` of its SDP offer and leaves with a `DELETE` on the resource the `201`
//! names. The dispatcher sends clients here with a `307` whose query carries the will-call
//! ticket and the names it was issued for, so the join is the one a `join` line takes
//! (ticket, room, roster), and the offer is answered as a browser's is. This adapter only
//! parses HTTP and calls the conference service.

use crate::conference::{Conferences, JoinRequest};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use control::whip::{self as http, refuse, refuse_msg, Kind};
use control::{CloseReason, Link, Shutdown};
use protocol::{ErrorCode, JoinOpts, MediaKind};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the dispatcher's redirect puts in the query.
#[derive(Debug, Default, Deserialize)]
struct Ask {
    ticket: Option<String>,
    account: Option<String>,
    user: Option<String>,
    mode: Option<String>,
}

#[derive(Clone)]
struct Ctx {
    service: Arc<Conferences>,
    shutdown: Shutdown,
}

/// The WHIP and WHEP routes, with the CORS policy that lets pages elsewhere use them.
pub(crate) fn router(service: Arc<Conferences>, shutdown: Shutdown) -> Router {
    let ctx = Ctx { service, shutdown };
    let mut r = Router::new();
    for kind in [Kind::Whip, Kind::Whep] {
        let p = kind.path();
        r = r
            .route(
                &format!("/{p}/{{conference}}"),
                post(move |c, i, p, q, h, b| create(kind, c, i, p, q, h, b)).options(options),
            )
            .route(
                &format!("/{p}/{{conference}}/{{id}}"),
                patch(trickle).delete(end).options(options),
            );
    }
    r.with_state(ctx).layer(http::cors())
}

/// `OPTIONS` without CORS: what may be posted.
async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [("accept-post", http::SDP), ("accept-patch", http::TRICKLE)],
    )
        .into_response()
}

/// `POST`: join with the ticket, answer the offer, keep the resource.
async fn create(
    kind: Kind,
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(conference): Path<String>,
    Query(ask): Query<Ask>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !http::is(&headers, http::SDP) {
        return http::wrong_type(http::SDP);
    }
    let Some(ticket) = ask
        .ticket
        .clone()
        .or_else(|| http::bearer(&headers).map(str::to_owned))
    else {
        return refuse(
            ErrorCode::BadTicket,
            "a ticket from the dispatcher is needed: POST to the dispatcher's /whip or /whep",
        );
    };
    let (Some(account), Some(user)) = (ask.account.as_deref(), ask.user.as_deref()) else {
        return refuse(
            ErrorCode::BadRequest,
            "account= and user= must name who the ticket was issued to",
        );
    };
    // A bad offer is refused before the join spends the ticket.
    if let Err(e) = webrtc::sdp::Offer::parse(&body) {
        return refuse(ErrorCode::BadRequest, &e.to_string());
    }
    let service = &ctx.service;
    // No mode given: the room's, so a viewer can join whatever runs.
    let mode = match http::mode(ask.mode.as_deref()) {
        Ok(m) => m.unwrap_or_else(|| service.room_mode(&conference).unwrap_or_default()),
        Err(msg) => return refuse_msg(&msg),
    };
    let seen = protocol::sdp::http_media(&body, kind.publishes());
    let mut media = vec![MediaKind::Audio];
    let mut extra = Vec::new();
    if seen.video {
        media.push(MediaKind::Video);
        extra.push(("vcodec".to_owned(), seen.vcodecs.join(",")));
    }
    let opts = JoinOpts {
        ticket: Some(ticket),
        mode,
        media,
        app: Some(kind.path().to_owned()),
        extra,
        ..JoinOpts::default()
    };
    let req = JoinRequest {
        conference: &conference,
        account,
        name: user,
        opts: &opts,
    };
    let link = Link::headless(peer, Some(ctx.shutdown.token()));
    let outbox = link.outbox;
    let mut member = match service.join(&req, &outbox) {
        Ok(m) => m,
        Err(msg) => {
            outbox.close(CloseReason::Done);
            return refuse_msg(&msg);
        }
    };
    let answer = match service.offer(&mut member, &body) {
        Ok(a) => a,
        Err(r) => {
            service.leave(&member);
            outbox.close(CloseReason::Done);
            return refuse_msg(r.line());
        }
    };
    if kind == Kind::Whep {
        service.follow_speaker(&member);
    }
    let participant = member.participant;
    let id = service.add_resource(&conference, participant, outbox.clone());
    tracing::info!(%conference, participant, %peer, kind = kind.path(), "http member joined");
    let svc = service.clone();
    let rid = id.clone();
    ctx.shutdown.spawn(async move {
        outbox.closed().await;
        svc.leave(&member);
        svc.forget_resource(&rid);
    });
    let location = format!("/{}/{}/{id}", kind.path(), http::segment(&conference));
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(http::SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        header::HeaderName::from_static("accept-patch"),
        HeaderValue::from_static(http::TRICKLE),
    );
    r
}

/// `PATCH`: our candidates are all in the answer (ICE-lite, host candidates), and the
/// client's are learnt from its checks, so trickled candidates need nothing done.
async fn trickle(
    State(ctx): State<Ctx>,
    Path((conference, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !ctx.service.has_resource(&conference, &id) {
        return refuse(ErrorCode::NotFound, "no such session");
    }
    if !http::is(&headers, http::TRICKLE) {
        return http::wrong_type(http::TRICKLE);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE`: the member leaves.
async fn end(State(ctx): State<Ctx>, Path((conference, id)): Path<(String, String)>) -> Response {
    if ctx.service.end_resource(&conference, &id) {
        StatusCode::OK.into_response()
    } else {
        refuse(ErrorCode::NotFound, "no such session")
    }
}
