//! The registry: media servers `register`, then `report` every second and tell us of
//! joins, leaves and deleted conferences; we send them `reserve` and `dispatch`. It parses
//! and calls the service.

use crate::service::Service;
use control::{CloseReason, Link, Recv};
use protocol::{DispMsg, ErrorCode, MsMsg, ServerKind};
use std::sync::Arc;

/// Serves one media server's registry link until it ends (a link silent for the
/// listener's idle timeout, 10 s, is dead: reports come every second).
pub(crate) async fn link(link: Link, service: Arc<Service>) {
    let Link {
        mut incoming,
        outbox,
    } = link;
    let hello = DispMsg::Connect {
        kind: ServerKind::Dispatcher,
        id: service.settings().id.clone(),
        version: protocol::VERSION,
    };
    outbox.send(hello.encode());
    let registering = service.registering();
    let first = match incoming.recv().await {
        Recv::Line(l) => MsMsg::parse(&l),
        Recv::Bad(e) => Err(e),
        Recv::Closed(_) => return,
    };
    let (id, generation) = match first {
        Ok(MsMsg::Register {
            id,
            client_addr,
            caps,
            total,
            ws,
        }) => {
            incoming.handshake_done();
            let g = service.register(&id, client_addr, caps, total, ws, outbox.clone());
            drop(registering);
            (id, g)
        }
        Ok(_) => {
            let line = DispMsg::Error {
                code: ErrorCode::WrongState,
                text: "register first".into(),
            };
            tracing::warn!("refusing registry link: register first");
            outbox.finish(Some(line.encode()), CloseReason::Done);
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "refusing registry link");
            incoming.refuse(&e);
            return;
        }
    };
    loop {
        match incoming.recv().await {
            Recv::Line(l) => match MsMsg::parse(&l) {
                Ok(msg) => service.server_line(&id, msg),
                Err(e) => {
                    tracing::warn!(server = %id, error = %e, "refusing registry link");
                    incoming.refuse(&e);
                    break;
                }
            },
            Recv::Bad(e) => {
                incoming.refuse(&e);
                break;
            }
            Recv::Closed(reason) => {
                tracing::info!(server = %id, reason = reason.as_str(), "registry link ended");
                break;
            }
        }
    }
    service.server_gone(&id, generation);
}
