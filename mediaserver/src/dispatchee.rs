//! The dispatchee (seed 003, module 902): the registry link to the dispatcher. It
//! registers, reports every second, carries the service's joins, leaves and deleted
//! conferences, and hands the dispatcher's `reserve` and `dispatch` to the service. When
//! the link drops (or its queue overflowed) it reconnects and re-announces everyone
//! present, so the dispatcher's tables converge again.

use crate::conference::Conferences;
use crate::http::Health;
use control::{ClientTls, Link, LinkConfig, Recv, Shutdown};
use protocol::{DispMsg, MsMsg};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

const REPORT_EVERY: Duration = Duration::from_secs(1);
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long the TLS handshake with a dispatcher may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Keeps the registry link up; `tls`: the dispatchers' registry ports speak TLS, verified
/// with these roots. `health` says whether the dispatcher has answered our `register`.
pub(crate) async fn run(
    service: Arc<Conferences>,
    mut queue: Receiver<MsMsg>,
    shutdown: Shutdown,
    tls: Option<ClientTls>,
    health: Arc<Health>,
) {
    loop {
        let linked = tokio::select! {
            () = shutdown.started() => return,
            r = link(&service, &mut queue, tls.as_ref(), &health) => r,
        };
        health.set_registered(false);
        match linked {
            Ok(()) => tracing::warn!("dispatcher closed the registry link; reconnecting"),
            Err(e) => {
                tracing::warn!(dispatcher = %service.settings().dispatcher, error = %e, "registry link down; retrying")
            }
        }
        // Lines queued while down describe state we re-announce on reconnect.
        while queue.try_recv().is_ok() {}
        service.take_resync();
        let until = Instant::now() + RETRY_EVERY;
        service.tick(Instant::now());
        tokio::select! {
            () = shutdown.started() => return,
            () = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

async fn link(
    service: &Arc<Conferences>,
    queue: &mut Receiver<MsMsg>,
    tls: Option<&ClientTls>,
    health: &Health,
) -> Result<(), String> {
    let stream = service
        .settings()
        .connect_dispatcher()
        .await
        .map_err(|e| e.to_string())?;
    let cfg = LinkConfig {
        outbox_lines: crate::conference::NOTIFY_QUEUE,
        ..LinkConfig::client()
    };
    let link = match tls {
        None => Link::tcp(stream, cfg, None, None),
        Some(tls) => {
            // The certificate must name the address the media server was given.
            let host = stream
                .peer_addr()
                .map_err(|e| e.to_string())?
                .ip()
                .to_string();
            let stream = tokio::time::timeout(TLS_HANDSHAKE, tls.connect(&host, stream))
                .await
                .map_err(|_| "TLS handshake with the dispatcher timed out".to_owned())?
                .map_err(|e| format!("TLS with the dispatcher: {e}"))?;
            Link::tls_client(stream, cfg)
        }
    };
    let Link {
        mut incoming,
        outbox,
    } = link;
    let hello: String = service.registration().iter().map(MsMsg::encode).collect();
    outbox.send(hello);
    tracing::info!(dispatcher = %service.settings().dispatcher, "registered");
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            got = incoming.recv() => match got {
                Recv::Line(l) => match DispMsg::parse(&l) {
                    Ok(msg) => {
                        if matches!(msg, DispMsg::Connect { .. }) {
                            health.set_registered(true);
                        }
                        on_dispatcher(service, msg)
                    }
                    Err(e) => tracing::warn!(error = %e, "bad line from dispatcher ignored"),
                },
                Recv::Bad(e) => return Err(format!("bad line from dispatcher: {e}")),
                Recv::Closed(_) => return Ok(()),
            },
            Some(msg) = queue.recv() => {
                outbox.send(msg.encode());
            }
            _ = tick.tick() => {
                if service.take_resync() {
                    return Err("queue overflowed; resynchronising".into());
                }
                service.tick(Instant::now());
                outbox.send(service.report().encode());
            }
        }
    }
}

fn on_dispatcher(service: &Arc<Conferences>, msg: DispMsg) {
    match msg {
        DispMsg::Connect { id, .. } => tracing::info!(dispatcher = %id, "dispatcher says hello"),
        DispMsg::Reserve {
            conference,
            user,
            mode,
            expires,
            ..
        } => service.reserve(&conference, user, mode, expires),
        DispMsg::Dispatch {
            conference,
            participant,
            addr,
            ticket,
            to_conference,
            ws,
        } => {
            // A punt keeps the conference and changes the server; a move changes both.
            let to = (to_conference != conference).then_some(to_conference);
            service.dispatch_member(&conference, participant, addr, ws, ticket, to);
        }
        // Operators' moderation through the admin API.
        DispMsg::Mute {
            conference,
            participant,
            on,
            operator,
        } => service.operator_mute(&conference, participant, on, &operator),
        DispMsg::Kick {
            conference,
            participant,
            operator,
            reason,
        } => service.operator_kick(&conference, participant, &operator, reason),
        DispMsg::Lock {
            conference,
            on,
            operator,
        } => service.operator_lock(&conference, on, &operator),
        DispMsg::Layout {
            conference,
            layout,
            operator,
        } => service.operator_layout(&conference, layout, &operator),
        DispMsg::Record {
            conference,
            on,
            operator,
        } => service.operator_record(&conference, on, &operator),
        // Cascading: the conference also runs there; link the two.
        DispMsg::Link {
            conference,
            mode,
            peer,
            addr,
            ticket,
        } => crate::cascade::connect(service, conference, mode, peer, addr, ticket),
        // A refused `punt` (no other server yet) is retried by the next high-water or
        // drain check; anything else the dispatcher refuses closes the link.
        DispMsg::Error { code, text } => tracing::warn!(%code, %text, "dispatcher refused"),
    }
}
