//! Cascading, the sessions: the control connection between two media servers that share a
//! conference. The server the dispatcher tells to link (`link` on the registry link)
//! connects to the other's client port and opens with `link CONFERENCE SERVER TICKET`; the
//! other answers through the same client host (`crate::host` hands such a session here).
//! Both then run one loop: lines in go to the conference service
//! (`conference::Conferences::link_line`), a keepalive goes out every few seconds, and
//! when the connection ends the service drops the link (the linked members leave the
//! roster; everyone else keeps talking).

use crate::conference::Conferences;
use control::{CloseReason, Incoming, Link, Outbox, Recv};
use protocol::{LinkMsg, Mode, ServerMsg};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Keepalive on a link; the connection layer's idle timeout (30 s) is far above it.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Tries to connect to the linked server before giving up (the dispatcher links again on
/// the next join that spreads).
const CONNECT_TRIES: u32 = 3;

/// The accepting side: `hello` was the session's first line.
pub(crate) async fn accepted(
    mut incoming: Incoming,
    outbox: Outbox,
    service: Arc<Conferences>,
    conference: String,
    peer: String,
    ticket: String,
) {
    let opened = service
        .check_link_ticket(&conference, &peer, &ticket)
        .and_then(|()| service.link_open(&conference, None, &peer, &outbox));
    if let Err(e) = opened {
        tracing::warn!(conference, peer, error = %e, "link refused");
        let line = ServerMsg::reject(protocol::ErrorCode::BadTicket, e.to_string()).encode();
        outbox.finish(Some(line), CloseReason::Done);
        return;
    }
    incoming.handshake_done();
    serve(&mut incoming, &outbox, &service, &conference, &peer).await;
}

/// The connecting side, told by the dispatcher to link `conference` with `peer` at `addr`.
pub(crate) fn connect(
    service: &Arc<Conferences>,
    conference: String,
    mode: Mode,
    peer: String,
    addr: SocketAddr,
    ticket: String,
) {
    let service = Arc::clone(service);
    tokio::spawn(async move {
        for attempt in 1..=CONNECT_TRIES {
            match control::connect(&addr.to_string()).await {
                Ok(link) => {
                    let Link {
                        mut incoming,
                        outbox,
                    } = link;
                    let me = service.settings().id.clone();
                    outbox.send(
                        LinkMsg::Hello {
                            conference: conference.clone(),
                            server: me,
                            ticket: ticket.clone(),
                        }
                        .encode(),
                    );
                    if let Err(e) = service.link_open(&conference, Some(mode), &peer, &outbox) {
                        tracing::warn!(conference, peer, error = %e, "link not opened");
                        outbox.finish(None, CloseReason::Done);
                        return;
                    }
                    serve(&mut incoming, &outbox, &service, &conference, &peer).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(conference, peer, %addr, attempt, error = %e, "link connect failed");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
    });
}

/// Lines in, keepalives out, until the connection ends; then the link is dropped.
async fn serve(
    incoming: &mut Incoming,
    outbox: &Outbox,
    service: &Conferences,
    conference: &str,
    peer: &str,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            got = incoming.recv() => match got {
                Recv::Line(line) => {
                    let msg = match LinkMsg::parse(&line) {
                        Ok(m) => m,
                        // The accepting side greets with `connect`; a refusal is `reject`.
                        Err(e) => match ServerMsg::parse(&line) {
                            Ok(ServerMsg::Connect { .. }) => continue,
                            Ok(other) => {
                                tracing::warn!(conference, peer, line = %other.encode().trim_end(), "linked server refused");
                                break;
                            }
                            Err(_) => {
                                incoming.refuse(&e);
                                break;
                            }
                        },
                    };
                    if let Err(e) = service.link_line(conference, peer, msg) {
                        tracing::warn!(conference, peer, error = %e, "link line refused");
                        outbox.finish(None, CloseReason::Done);
                        break;
                    }
                }
                Recv::Bad(e) => {
                    incoming.refuse(&e);
                    break;
                }
                Recv::Closed(_) => break,
            },
            _ = ping.tick() => {
                outbox.send(LinkMsg::Ping.encode());
            }
        }
    }
    service.link_closed(conference, peer);
}
