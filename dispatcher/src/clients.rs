//! The client host: `connect`, `join`, then `dispatch` with a will-call ticket (seed 003,
//! Fig. 2 messages 202-208), over TCP or WebSocket alike. It parses and calls the
//! service; the decision is [`crate::service::Service::join`].

use crate::service::Service;
use control::{CloseReason, Link, Recv};
use protocol::{ClientMsg, ErrorCode, ServerKind, ServerMsg};
use std::sync::Arc;
use std::time::Duration;

/// How long a dispatched client may keep the connection before `endsession`.
const LINGER: Duration = Duration::from_secs(30);

/// Serves one client connection.
pub(crate) async fn session(link: Link, service: Arc<Service>) {
    let Link {
        mut incoming,
        outbox,
    } = link;
    let hello = ServerMsg::Connect {
        kind: ServerKind::Dispatcher,
        id: service.settings().id.clone(),
        version: protocol::VERSION,
    };
    outbox.send(hello.encode());
    let refuse = |msg: ServerMsg| {
        tracing::info!(line = %msg.encode().trim_end(), "refusing client");
        if let ServerMsg::Reject { code, .. } | ServerMsg::Error { code, .. } = &msg {
            service.count_refusal(*code);
        }
        outbox.finish(Some(msg.encode()), CloseReason::Done);
    };
    loop {
        let line = match incoming.recv().await {
            Recv::Line(l) => l,
            Recv::Bad(e) => {
                service.count_refusal(e.code());
                incoming.refuse(&e);
                return;
            }
            Recv::Closed(_) => return,
        };
        let msg = match ClientMsg::parse(&line) {
            Ok(m) => m,
            Err(e) => {
                service.count_refusal(e.code());
                incoming.refuse(&e);
                return;
            }
        };
        match msg {
            ClientMsg::Ping { token } => {
                outbox.send(ServerMsg::Pong { token }.encode());
            }
            ClientMsg::EndSession => {
                outbox.finish(None, CloseReason::Done);
                return;
            }
            ClientMsg::Join {
                conference,
                account,
                name,
                opts,
            } => {
                incoming.handshake_done();
                if let Some(reject) = service.admit_join(&account, outbox.peer().ip()) {
                    return refuse(reject);
                }
                let reply = service
                    .join(&conference, &account, &name, &opts, outbox.transport())
                    .await;
                if !matches!(reply, ServerMsg::Dispatch { .. }) {
                    return refuse(reply);
                }
                outbox.send(reply.encode());
                // The client now sends `endsession`; wait for it or its close.
                let _ = tokio::time::timeout(LINGER, incoming.recv()).await;
                outbox.finish(None, CloseReason::Done);
                return;
            }
            other => {
                let verb = other.encode();
                let verb = verb.split('\t').next().unwrap_or("").trim_end();
                return refuse(ServerMsg::reject(
                    ErrorCode::WrongState,
                    format!("{verb} is not valid before join"),
                ));
            }
        }
    }
}
