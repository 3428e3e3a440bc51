//! The client host: `connect`, `join`, then `dispatch` with a will-call ticket (seed 003,
//! Fig. 2 messages 202-208).

use crate::core::{Join, Media, PlaceError};
use crate::lines::{LineReader, Read};
use crate::metrics::OutcomeLabel;
use crate::{unix_ms, Service};
use protocol::{ClientMsg, ErrorCode, ServerKind, ServerMsg};
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
async fn refuse(
    service: &Service,
    w: &mut (impl AsyncWriteExt + Unpin),
    msg: ServerMsg,
) -> std::io::Result<()> {
    tracing::info!(line = %msg.encode().trim_end(), "refusing client");
    if let ServerMsg::Reject { code, .. } | ServerMsg::Error { code, .. } = &msg {
        service.metrics.reject(*code);
    }
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
            Read::Bad(e) => return refuse(service, &mut w, ServerMsg::error(&e)).await,
            Read::Closed => return Ok(()),
        };
        let msg = match ClientMsg::parse(&line) {
            Ok(m) => m,
            Err(e) => return refuse(service, &mut w, ServerMsg::error(&e)).await,
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
                let reply = dispatch(service, &conference, &account, &name, &opts).await;
                let dispatched = matches!(reply, ServerMsg::Dispatch { .. });
                if !dispatched {
                    return refuse(service, &mut w, reply).await;
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
                return refuse(
                    service,
                    &mut w,
                    ServerMsg::reject(ErrorCode::WrongState, text),
                )
                .await;
            }
        }
    }
}

/// Checks the account, places the conference, reserves at the media server and signs
/// the ticket. Returns the `dispatch` line, or the `reject` to send instead.
async fn dispatch(
    service: &Service,
    conference: &str,
    account: &str,
    user: &str,
    opts: &protocol::JoinOpts,
) -> ServerMsg {
    let settings = service.settings();
    let mode = opts.mode;
    let Some(acct) = settings.accounts.iter().find(|a| a.code == account) else {
        return ServerMsg::reject(
            ErrorCode::UnknownAccount,
            format!("unknown account {account}"),
        );
    };
    let join = Join {
        conference,
        account,
        customer: &acct.customer,
        mode,
        media: Media::from_kinds(&opts.media),
        pool: Some(settings.tenancy.pool_for(acct, opts.domain.as_deref())),
        reserved: acct.reserved,
        max_users: acct.max_users,
    };
    let now = Instant::now();
    // With several dispatchers the store settles where a new conference runs.
    let placed = match service.claim(&join).await {
        Some(server) => service.tables().place_claimed(
            Instant::now(),
            unix_ms(),
            &join,
            &server,
            settings.ticket_ttl,
        ),
        None => service
            .tables()
            .place_join(now, unix_ms(), &join, settings.ticket_ttl),
    };
    service
        .metrics
        .selection_seconds
        .observe(now.elapsed().as_secs_f64());
    let placement = match placed {
        Ok(p) => p,
        Err(e @ PlaceError::OverLimit { .. }) => {
            return ServerMsg::reject(ErrorCode::AccountFull, e.to_string())
        }
        Err(e) => return ServerMsg::reject(ErrorCode::NoCapacity, e.to_string()),
    };
    let Some(ticket) = service.hand_out(&placement, conference, account, user, mode) else {
        return ServerMsg::reject(
            ErrorCode::NoCapacity,
            format!("media server {} is unreachable", placement.server),
        );
    };
    let outcome = if placement.created {
        "created"
    } else {
        "found"
    };
    service
        .metrics
        .dispatches
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
    tracing::info!(conference, user, server = %placement.server, created = placement.created, "dispatch");
    ServerMsg::Dispatch {
        addr: placement.client_addr.into(),
        ticket,
        conference: None,
    }
}
