//! The client host: one session per control connection, over TCP or WebSocket alike. It
//! parses each line and calls the conference service (seed 003, Fig. 2 messages 210-222);
//! the room lifecycle itself lives in [`crate::conference`].

use crate::conference::{Conferences, JoinRequest, Membership, Refusal};
use control::{CloseReason, Link, Recv};
use protocol::{ClientMsg, ErrorCode, SdpAssembler, SdpKind, ServerKind, ServerMsg};
use std::net::IpAddr;
use std::sync::Arc;

/// What a line asks of the session.
enum Step {
    Continue,
    /// Joined: the handshake is over.
    Joined,
    Reply(ServerMsg),
    /// Answer, then end the session.
    Refuse(ServerMsg),
    End,
}

/// Serves one client connection until it ends, then leaves the conference for it.
pub(crate) async fn session(link: Link, service: Arc<Conferences>) {
    let Link {
        mut incoming,
        outbox,
    } = link;
    let peer_ip = outbox.peer().ip();
    let hello = ServerMsg::Connect {
        kind: ServerKind::MediaServer,
        id: service.settings().id.clone(),
        version: protocol::VERSION,
    };
    outbox.send(hello.encode());
    let mut member: Option<Membership> = None;
    let mut sdp = SdpAssembler::default();
    loop {
        let line = match incoming.recv().await {
            Recv::Line(l) => l,
            Recv::Bad(e) => {
                incoming.refuse(&e);
                break;
            }
            Recv::Closed(_) => break,
        };
        // Cascading: a linked server opens with `link`; the session becomes the link's.
        if member.is_none() && line.starts_with("link\t") {
            match protocol::LinkMsg::parse(&line) {
                Ok(protocol::LinkMsg::Hello {
                    conference,
                    server,
                    ticket,
                }) => {
                    crate::cascade::accepted(incoming, outbox, service, conference, server, ticket)
                        .await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    incoming.refuse(&e);
                    break;
                }
            }
        }
        let msg = match ClientMsg::parse(&line) {
            Ok(m) => m,
            Err(e) => {
                incoming.refuse(&e);
                break;
            }
        };
        match handle(&service, peer_ip, &mut member, &mut sdp, &outbox, msg) {
            Step::Continue => {}
            Step::Joined => incoming.handshake_done(),
            Step::Reply(m) => {
                outbox.send(m.encode());
            }
            Step::Refuse(m) => {
                tracing::info!(line = %m.encode().trim_end(), "refusing client");
                outbox.finish(Some(m.encode()), CloseReason::Done);
                break;
            }
            Step::End => {
                outbox.finish(None, CloseReason::Done);
                break;
            }
        }
    }
    if let Some(m) = member {
        service.leave(&m);
    }
}

fn refused(r: Refusal) -> Step {
    match r {
        Refusal::Fatal(m) => Step::Refuse(m),
        Refusal::Reply(m) => Step::Reply(m),
    }
}

fn handle(
    service: &Conferences,
    peer_ip: IpAddr,
    member: &mut Option<Membership>,
    sdp: &mut SdpAssembler,
    outbox: &control::Outbox,
    msg: ClientMsg,
) -> Step {
    match (msg, member.as_mut()) {
        (ClientMsg::Ping { token }, _) => Step::Reply(ServerMsg::Pong { token }),
        (ClientMsg::EndSession, _) => Step::End,
        (
            ClientMsg::Join {
                conference,
                account,
                name,
                opts,
            },
            None,
        ) => {
            let req = JoinRequest {
                conference: &conference,
                account: &account,
                name: &name,
                opts: &opts,
            };
            match service.join(&req, outbox) {
                Ok(m) => {
                    *member = Some(m);
                    Step::Joined
                }
                Err(reject) => Step::Refuse(reject),
            }
        }
        (ClientMsg::Join { .. }, Some(_)) => {
            Step::Refuse(ServerMsg::reject(ErrorCode::WrongState, "already joined"))
        }
        (ClientMsg::Sdp { .. } | ClientMsg::SdpEnd { .. }, None) => {
            Step::Refuse(ServerMsg::reject(
                ErrorCode::BadTicket,
                "an offer needs a join with a ticket first",
            ))
        }
        (_, None) => Step::Refuse(ServerMsg::reject(ErrorCode::WrongState, "join first")),
        (ClientMsg::Sdp { kind, line }, Some(_)) => match sdp.push(kind, &line) {
            Ok(()) => Step::Continue,
            Err(e) => Step::Reply(ServerMsg::Error {
                code: ErrorCode::BadRequest,
                text: e.to_string(),
            }),
        },
        (ClientMsg::SdpEnd { kind, lines }, Some(m)) => {
            let text = match sdp.end(kind, lines) {
                Ok(t) if kind == SdpKind::Offer => t,
                Ok(_) => {
                    return Step::Reply(ServerMsg::Error {
                        code: ErrorCode::BadRequest,
                        text: "the media server takes offers, not answers".into(),
                    })
                }
                Err(e) => {
                    return Step::Reply(ServerMsg::Error {
                        code: ErrorCode::BadRequest,
                        text: e.to_string(),
                    })
                }
            };
            match service.offer(m, &text) {
                Ok(answer) => {
                    let (lines, n) = protocol::sdp::frame(&answer);
                    for line in lines {
                        let kind = SdpKind::Answer;
                        outbox.send(ServerMsg::Sdp { kind, line }.encode());
                    }
                    Step::Reply(ServerMsg::SdpEnd {
                        kind: SdpKind::Answer,
                        lines: n,
                    })
                }
                Err(r) => refused(r),
            }
        }
        (
            ClientMsg::Channel {
                kind,
                addr,
                ssrc,
                opts,
            },
            Some(m),
        ) => match service.channel(peer_ip, m, kind, addr, ssrc, &opts) {
            Ok(()) => Step::Continue,
            Err(r) => refused(r),
        },
        (ClientMsg::Layer { max }, Some(m)) => service
            .layer(m, max)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Mute { participant, muted }, Some(m)) => service
            .mute(m, participant, muted)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::MuteAll { muted }, Some(m)) => service
            .mute_all(m, muted)
            .map_or_else(refused, |()| Step::Continue),
        (
            ClientMsg::Kick {
                participant,
                reason,
            },
            Some(m),
        ) => service
            .kick(m, participant, reason)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Lock { on }, Some(m)) => service
            .lock(m, on)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Layout { layout }, Some(m)) => service
            .layout(m, layout)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Record { on }, Some(m)) => service
            .record(m, on)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::EndConference, Some(m)) => service
            .end_conference(m)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Raise { on }, Some(m)) => service
            .raise(m, on)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Text { text, to }, Some(m)) => service
            .text(m, text, to)
            .map_or_else(refused, |()| Step::Continue),
        (ClientMsg::Talk { on }, Some(m)) => service
            .talk(m, on)
            .map_or_else(refused, |()| Step::Continue),
    }
}
