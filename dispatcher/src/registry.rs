//! The registry: media servers `register`, then `report` every second and tell us of
//! joins, leaves and deleted conferences; we send them `reserve`.

use crate::core::{Load, Stamp};
use crate::lines::{LineReader, Read};
use crate::{unix_ms, Link, Service};
use protocol::{DispMsg, ErrorCode, MsMsg, ServerKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A link that says nothing for this long is dead (reports come every second).
const SILENCE: Duration = Duration::from_secs(10);

pub(crate) async fn serve(listener: TcpListener, service: Arc<Service>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(e) = link(stream, &service).await {
                        tracing::info!(%peer, error = %e, "registry link ended");
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

async fn link(stream: TcpStream, service: &Service) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = LineReader::new(r);
    let hello = DispMsg::Connect {
        kind: ServerKind::Dispatcher,
        id: service.settings().id.clone(),
        version: protocol::VERSION,
    };
    w.write_all(hello.encode().as_bytes()).await?;
    let first = match tokio::time::timeout(SILENCE, reader.next()).await {
        Ok(Read::Line(l)) => MsMsg::parse(&l),
        Ok(Read::Bad(e)) => Err(e),
        Ok(Read::Closed) | Err(_) => return Ok(()),
    };
    let (id, generation) = match first {
        Ok(MsMsg::Register {
            id,
            client_addr,
            caps,
            total,
            ..
        }) => {
            let g =
                service
                    .tables()
                    .register(Instant::now(), unix_ms(), &id, client_addr, caps, total);
            (id, g)
        }
        Ok(_) => return refuse(&mut w, ErrorCode::WrongState, "register first".into()).await,
        Err(e) => return refuse(&mut w, e.code(), e.to_string()).await,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    service.links().insert(id.clone(), Link { generation, tx });
    service.cluster.linked(&id);
    let result = async {
        // Only lines from the server push the silence deadline back: lines we send it
        // (a `reserve` per join) must not keep a hung server's link alive.
        let mut deadline = tokio::time::Instant::now() + SILENCE;
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(msg) => w.write_all(msg.encode().as_bytes()).await?,
                    None => return Ok(()),
                },
                read = tokio::time::timeout_at(deadline, reader.next()) => {
                    let line = match read {
                        Ok(Read::Line(l)) => {
                            deadline = tokio::time::Instant::now() + SILENCE;
                            l
                        }
                        Ok(Read::Bad(e)) => return refuse(&mut w, e.code(), e.to_string()).await,
                        Ok(Read::Closed) => return Ok(()),
                        Err(_) => return refuse(&mut w, ErrorCode::WrongState, "no report for 10 s".into()).await,
                    };
                    match MsMsg::parse(&line) {
                        Ok(msg) => {
                            service.cluster.observe(&id, &msg);
                            apply(service, &id, msg)
                        }
                        Err(e) => return refuse(&mut w, e.code(), e.to_string()).await,
                    }
                }
            }
        }
    }
    .await;
    let (lost, stays) = {
        let mut t = service.tables();
        (t.server_lost(unix_ms(), &id, generation), t.take_stays())
    };
    for stay in stays {
        service.record_usage(stay);
    }
    service.metrics.failovers.inc_by(lost as u64);
    let mut links = service.links();
    if links.get(&id).is_some_and(|l| l.generation == generation) {
        links.remove(&id);
        service.cluster.unlinked(&id);
    }
    result
}

async fn refuse(
    w: &mut (impl AsyncWriteExt + Unpin),
    code: ErrorCode,
    text: String,
) -> std::io::Result<()> {
    tracing::warn!(%code, %text, "refusing registry link");
    w.write_all(DispMsg::Error { code, text }.encode().as_bytes())
        .await?;
    w.shutdown().await
}

fn apply(service: &Service, id: &str, msg: MsMsg) {
    // Asked by the server itself (high water, drain); handled outside the table lock
    // because the punt takes it itself.
    if let MsMsg::Punt { conference } = &msg {
        server_punt(service, id, conference);
        return;
    }
    let now = Instant::now();
    let unix = unix_ms();
    let mut t = service.tables();
    match msg {
        MsMsg::Register { .. } => tracing::warn!(server = id, "repeated register ignored"),
        MsMsg::Report {
            unused,
            conferences,
            users,
            cpu_pct,
            pps,
            loss_pct,
        } => t.report(
            Stamp { now, unix_ms: unix },
            id,
            Load {
                unused,
                conferences,
                users,
                cpu_pct,
                pps,
                loss_pct,
            },
        ),
        MsMsg::UserJoined {
            conference,
            participant,
            name,
            account,
        } => t.user_joined(
            Stamp { now, unix_ms: unix },
            id,
            &conference,
            participant,
            &name,
            &account,
        ),
        MsMsg::UserLeft {
            conference,
            participant,
            name,
        } => {
            if let Some(stay) = t.user_left(unix, id, &conference, participant, &name) {
                service.record_usage(stay);
            }
        }
        MsMsg::ConfDeleted { conference } => t.conf_deleted(unix, id, &conference),
        MsMsg::State { draining } => {
            if let Err(e) = t.set_drain(unix, id, draining, id) {
                tracing::warn!(server = id, error = %e, "state change ignored");
            } else {
                tracing::info!(server = id, draining, "server changed its own state");
            }
        }
        MsMsg::Punt { .. } => {}
    }
}

/// A media server's `punt`: only a conference it hosts can be moved, and a refusal
/// (no other server can take it) goes back as `error` so the server can retry later.
fn server_punt(service: &Service, id: &str, conference: &str) {
    let hosted = service
        .tables()
        .conference(conference)
        .is_some_and(|c| c.server == id);
    let refusal = if hosted {
        match crate::admin::punt_conference(service, conference, id) {
            Ok(p) => {
                tracing::info!(server = id, conference, to = %p.to, dispatched = p.dispatched, "server punted a conference");
                return;
            }
            Err(e) => (ErrorCode::NoCapacity, format!("punt {conference}: {e}")),
        }
    } else {
        (
            ErrorCode::NotFound,
            format!("punt {conference}: not hosted by {id}"),
        )
    };
    tracing::warn!(server = id, conference, reason = %refusal.1, "punt refused");
    let generation = service.links().get(id).map(|l| l.generation).unwrap_or(0);
    service.send_to(
        id,
        generation,
        DispMsg::Error {
            code: refusal.0,
            text: refusal.1,
        },
    );
}
