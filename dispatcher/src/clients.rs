//! The client host: `connect`, `join`, then `dispatch` with a will-call ticket (seed 003,
//! Fig. 2 messages 202-208).

use crate::lines::{LineReader, Read};
use crate::{unix_ms, Service};
use protocol::ticket::{self, Claims};
use protocol::{ClientMsg, DispMsg, ErrorCode, ServerKind, ServerMsg};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How long a dispatched client may keep the connection before `endsession`.
const LINGER: Duration = Duration::from_secs(30);

pub(crate) async fn serve(listener: TcpListener, service: Arc<Service>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, &service).await {
                        tracing::debug!(%peer, error = %e, "client connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn send(w: &mut (impl AsyncWriteExt + Unpin), msg: &ServerMsg) -> std::io::Result<()> {
    w.write_all(msg.encode().as_bytes()).await
}

/// Sends a final `reject` or `error` and closes.
async fn refuse(w: &mut (impl AsyncWriteExt + Unpin), msg: ServerMsg) -> std::io::Result<()> {
    tracing::info!(line = %msg.encode().trim_end(), "refusing client");
    send(w, &msg).await?;
    w.shutdown().await
}

async fn session(stream: TcpStream, service: &Service) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = LineReader::new(r);
    let settings = service.settings();
    send(
        &mut w,
        &ServerMsg::Connect {
            kind: ServerKind::Dispatcher,
            id: settings.id.clone(),
            version: protocol::VERSION,
        },
    )
    .await?;
    loop {
        let line = match reader.next().await {
            Read::Line(l) => l,
            Read::Bad(e) => return refuse(&mut w, ServerMsg::error(&e)).await,
            Read::Closed => return Ok(()),
        };
        let msg = match ClientMsg::parse(&line) {
            Ok(m) => m,
            Err(e) => return refuse(&mut w, ServerMsg::error(&e)).await,
        };
        match msg {
            ClientMsg::Ping { token } => send(&mut w, &ServerMsg::Pong { token }).await?,
            ClientMsg::EndSession => return w.shutdown().await,
            ClientMsg::Join {
                conference,
                account,
                name,
                opts,
            } => {
                let reply = dispatch(service, &conference, &account, &name, opts.mode);
                let dispatched = matches!(reply, ServerMsg::Dispatch { .. });
                if !dispatched {
                    return refuse(&mut w, reply).await;
                }
                send(&mut w, &reply).await?;
                // The client now sends `endsession`; wait for it or its close.
                let _ = tokio::time::timeout(LINGER, reader.next()).await;
                return w.shutdown().await;
            }
            other => {
                let text = format!(
                    "{} is not valid before join",
                    other.encode().split('\t').next().unwrap_or("").trim_end()
                );
                return refuse(&mut w, ServerMsg::reject(ErrorCode::WrongState, text)).await;
            }
        }
    }
}

/// Checks the account, places the conference, reserves at the media server and signs
/// the ticket. Returns the `dispatch` line, or the `reject` to send instead.
fn dispatch(
    service: &Service,
    conference: &str,
    account: &str,
    user: &str,
    mode: protocol::Mode,
) -> ServerMsg {
    let settings = service.settings();
    if !settings.accounts.iter().any(|a| a.code == account) {
        return ServerMsg::reject(
            ErrorCode::UnknownAccount,
            format!("unknown account {account}"),
        );
    }
    let now = Instant::now();
    let unix = unix_ms();
    let placement =
        match service
            .tables()
            .place(now, unix, conference, account, mode, settings.ticket_ttl)
        {
            Ok(p) => p,
            Err(e) => return ServerMsg::reject(ErrorCode::NoCapacity, e.to_string()),
        };
    let expires = unix / 1000 + settings.ticket_ttl.as_secs();
    let reserve = DispMsg::Reserve {
        conference: conference.to_owned(),
        account: account.to_owned(),
        user: user.to_owned(),
        mode,
        expires,
    };
    let sent = service
        .links()
        .get(&placement.server)
        .filter(|l| l.generation == placement.generation)
        .is_some_and(|l| l.tx.send(reserve).is_ok());
    if !sent {
        return ServerMsg::reject(
            ErrorCode::NoCapacity,
            format!("media server {} is unreachable", placement.server),
        );
    }
    let claims = Claims {
        conference,
        account,
        user,
        server: &placement.server,
    };
    tracing::info!(conference, user, server = %placement.server, created = placement.created, "dispatch");
    ServerMsg::Dispatch {
        addr: placement.client_addr,
        ticket: ticket::sign(&settings.secret, &claims, expires),
    }
}
