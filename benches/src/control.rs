//! The control side of loadgen's participants: the real join flow (the client crate's
//! one join flow, dispatcher then media server, with its keepalive), or the raw
//! baseline's UDP registration.
//!
//! Joins run on a small tokio runtime on its own thread. After the joins it keeps every
//! participant's control plane running (a closed connection is a leave) until the run
//! ends, then says `endsession` for everyone.

use crate::config::LoadArgs;
use crate::netio::size_buffers;
use crate::wire::{parse_raw_msg, raw_msg, RAW_JOIN, RAW_OK};
use crate::BenchError;
use client::control::{Control, Event, Step};
use client::flow::FlowConfig;
use protocol::{ChannelAddr, JoinOpts, MediaKind, Mode, ServerMsg};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Longest one participant's join flow may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// After `channel audio`, how long to wait for a `channel video` from the same burst.
const VIDEO_CHANNEL_WAIT: Duration = Duration::from_millis(50);
/// Socket buffers of each participant; a fan-out burst must fit.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Payload type used towards the raw baseline.
const RAW_PT: u8 = protocol::codec::OPUS.payload_type;

/// Where one media kind goes and with which SSRC (from the server's `channel` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub server: SocketAddr,
    pub ssrc: u32,
    pub payload_type: u8,
}

/// A joined participant, ready for media.
#[derive(Debug)]
pub struct Participant {
    /// Conference index, 0-based.
    pub conf: u32,
    /// Index within the conference; the first `--senders` send.
    pub index: u32,
    /// Sends and receives all media kinds (symmetric RTP), as announced in `channel`.
    pub socket: UdpSocket,
    pub audio: Channel,
    /// `None` when the server offered no video channel: video-like packets then go on the
    /// audio channel with the audio SSRC.
    pub video: Option<Channel>,
}

/// How the control connections fared while media ran.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ControlReport {
    /// Media server connections that closed before loadgen left.
    pub closed_early: u64,
    /// `reject`/`error` lines received after joining.
    pub refusals: u64,
}

/// The running control plane; [`ControlPlane::finish`] makes everyone leave.
pub struct ControlPlane {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<ControlReport>>,
}

impl ControlPlane {
    /// Sends `endsession` on every connection and returns what happened meanwhile.
    pub fn finish(mut self) -> ControlReport {
        self.stop_now()
    }

    fn stop_now(&mut self) -> ControlReport {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Joins every participant through the dispatcher at `args.dispatcher`.
pub fn join_all(
    args: &LoadArgs,
    run_id: &str,
) -> Result<(ControlPlane, Vec<Participant>), BenchError> {
    let dispatcher = args
        .dispatcher
        .clone()
        .ok_or_else(|| BenchError::Args("--dispatcher is required".into()))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let plan = Plan {
        dispatcher,
        account: args.account.clone(),
        run_id: run_id.to_owned(),
        conferences: args.conferences,
        participants: args.participants,
        want_video: args.has_video(),
        concurrency: args.join_concurrency,
    };
    let thread = std::thread::Builder::new()
        .name("loadgen-control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(BenchError::io("tokio runtime")(e)));
                    return ControlReport::default();
                }
            };
            rt.block_on(control_main(plan, ready_tx, stop_rx))
        })
        .map_err(BenchError::io("spawn control thread"))?;
    let plane = ControlPlane {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(parts)) => Ok((plane, parts)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BenchError::Thread(
            "control thread died while joining".into(),
        )),
    }
}

struct Plan {
    dispatcher: String,
    account: String,
    run_id: String,
    conferences: u32,
    participants: u32,
    want_video: bool,
    concurrency: usize,
}

type Joined = (Participant, Control);

async fn control_main(
    plan: Plan,
    ready: std::sync::mpsc::Sender<Result<Vec<Participant>, BenchError>>,
    stop: oneshot::Receiver<()>,
) -> ControlReport {
    let plan = Arc::new(plan);
    // The first member of each conference places it; the rest follow, so no two joins race
    // to create the same conference.
    let mut joined = Vec::new();
    let firsts: Vec<(u32, u32)> = (0..plan.conferences).map(|c| (c, 0)).collect();
    let rest: Vec<(u32, u32)> = (0..plan.conferences)
        .flat_map(|c| (1..plan.participants).map(move |i| (c, i)))
        .collect();
    for wave in [firsts, rest] {
        match join_wave(&plan, wave).await {
            Ok(mut j) => joined.append(&mut j),
            Err(e) => {
                let _ = ready.send(Err(e));
                for (_, mut ctrl) in joined {
                    ctrl.finish().await;
                }
                return ControlReport::default();
            }
        }
    }
    joined.sort_by_key(|(p, _)| (p.conf, p.index));
    let (parts, conns): (Vec<_>, Vec<_>) = joined.into_iter().unzip();
    if ready.send(Ok(parts)).is_err() {
        return ControlReport::default();
    }
    hold(conns, stop).await
}

async fn join_wave(plan: &Arc<Plan>, who: Vec<(u32, u32)>) -> Result<Vec<Joined>, BenchError> {
    let sem = Arc::new(Semaphore::new(plan.concurrency));
    let mut set = tokio::task::JoinSet::new();
    for (conf, index) in who {
        let plan = plan.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let user = format!("c{conf}p{index}");
            match tokio::time::timeout(JOIN_TIMEOUT, join_one(&plan, conf, index, &user)).await {
                Ok(r) => r.map_err(|reason| BenchError::Join { user, reason }),
                Err(_) => Err(BenchError::Join {
                    user,
                    reason: format!("no channel within {JOIN_TIMEOUT:?}"),
                }),
            }
        });
    }
    let mut out = Vec::new();
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(j)) => out.push(j),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(BenchError::Thread(e.to_string()));
            }
        }
    }
    match first_err {
        None => Ok(out),
        Some(e) => {
            for (_, mut ctrl) in out {
                ctrl.finish().await;
            }
            Err(e)
        }
    }
}

/// One participant's join flow (docs/protocol.md, "The join flow"), up to its channels.
async fn join_one(plan: &Plan, conf: u32, index: u32, user: &str) -> Result<Joined, String> {
    let conference = format!("lg{}-{conf}", plan.run_id);
    let media = if plan.want_video {
        vec![MediaKind::Audio, MediaKind::Video]
    } else {
        vec![MediaKind::Audio]
    };
    let mut flow = FlowConfig::new(&plan.dispatcher, &conference, &plan.account, user);
    flow.opts = JoinOpts {
        mode: Mode::Reflect,
        media,
        codec: Some(protocol::codec::OPUS.name.into()),
        app: Some("loadgen".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        ..JoinOpts::default()
    };
    // A participant whose server goes away is counted as closed early, not moved.
    flow.failover = false;
    flow.seed = u64::from(conf) << 32 | u64::from(index);
    let mut ctrl = Control::new(flow);
    let mut socket: Option<UdpSocket> = None;
    let mut audio = None;
    let mut video = None;
    loop {
        let step = if audio.is_some() {
            match tokio::time::timeout(VIDEO_CHANNEL_WAIT, ctrl.next()).await {
                Ok(step) => step,
                Err(_) => break,
            }
        } else {
            ctrl.next().await
        };
        match step {
            Step::ChannelOffered(client::flow::ChannelOffer {
                kind,
                addr: server,
                payload_type,
                ssrc,
                ..
            }) => {
                if socket.is_none() {
                    let ip = ctrl.local_ip().ok_or("no control connection")?;
                    socket = Some(open_socket(ip, server)?);
                }
                let local = socket
                    .as_ref()
                    .map(UdpSocket::local_addr)
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .ok_or("no socket")?;
                ctrl.declare_channel(kind, ChannelAddr::Addr(local), ssrc, Default::default());
                let ch = Channel {
                    server,
                    ssrc,
                    payload_type,
                };
                match kind {
                    MediaKind::Audio => audio = Some(ch),
                    MediaKind::Video => video = Some(ch),
                }
                if audio.is_some() && (video.is_some() || !plan.want_video) {
                    break;
                }
            }
            Step::Finished(r) => {
                return Err(match r {
                    Err(e) => e.to_string(),
                    Ok(()) => "left before joining".into(),
                })
            }
            Step::Event(_) | Step::PauseMedia => {}
        }
    }
    let (Some(socket), Some(audio)) = (socket, audio) else {
        return Err("no audio channel offered".into());
    };
    let p = Participant {
        conf,
        index,
        socket,
        audio,
        video,
    };
    Ok((p, ctrl))
}

/// Binds a participant's media socket on the control connection's IP (same family as the
/// server), so the server sees RTP from the host it admitted.
fn open_socket(local: IpAddr, server: SocketAddr) -> Result<UdpSocket, String> {
    let ip = match (local, server) {
        (IpAddr::V4(_), SocketAddr::V4(_)) | (IpAddr::V6(_), SocketAddr::V6(_)) => local,
        (_, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (_, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("bind media socket: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    size_buffers(&s, SOCKET_BUFFER);
    Ok(s)
}

/// Keeps every participant's control plane running until `stop`, then leaves.
async fn hold(ctrls: Vec<Control>, stop: oneshot::Receiver<()>) -> ControlReport {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut leave = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in ctrls {
        let (ltx, lrx) = oneshot::channel::<()>();
        leave.push(ltx);
        let tx = tx.clone();
        tasks.spawn(async move {
            tokio::pin!(lrx);
            loop {
                tokio::select! {
                    _ = &mut lrx => {
                        c.finish().await;
                        return;
                    }
                    step = c.next() => match step {
                        Step::Event(Event::Server(
                            ServerMsg::Reject { .. } | ServerMsg::Error { .. },
                        )) => {
                            let _ = tx.send(false);
                        }
                        Step::Finished(_) => {
                            let _ = tx.send(true);
                            return;
                        }
                        _ => {}
                    }
                }
            }
        });
    }
    drop(tx);
    let _ = stop.await;
    for l in leave {
        let _ = l.send(());
    }
    while tasks.join_next().await.is_some() {}
    let mut report = ControlReport::default();
    while let Ok(closed) = rx.try_recv() {
        if closed {
            report.closed_early += 1;
        } else {
            report.refusals += 1;
        }
    }
    report
}

/// Registers every participant with the raw baseline forwarder at `fwd` (UDP, retried).
pub fn raw_register(args: &LoadArgs, fwd: SocketAddr) -> Result<Vec<Participant>, BenchError> {
    let local: IpAddr = match fwd {
        SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
    };
    let mut parts = Vec::new();
    let mut ssrc = 0x1000_0000u32;
    for conf in 0..args.conferences {
        for index in 0..args.participants {
            let socket = open_socket(local, fwd).map_err(|reason| BenchError::Join {
                user: format!("c{conf}p{index}"),
                reason,
            })?;
            register_one(&socket, fwd, conf, index)?;
            ssrc += 1;
            let audio = Channel {
                server: fwd,
                ssrc,
                payload_type: RAW_PT,
            };
            parts.push(Participant {
                conf,
                index,
                socket,
                audio,
                video: None,
            });
        }
    }
    Ok(parts)
}

fn register_one(s: &UdpSocket, fwd: SocketAddr, conf: u32, index: u32) -> Result<(), BenchError> {
    let msg = raw_msg(RAW_JOIN, conf, index);
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        s.send_to(&msg, fwd)
            .map_err(BenchError::io("send RAWJOIN"))?;
        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        while std::time::Instant::now() < deadline {
            match s.recv_from(&mut buf) {
                Ok((n, from)) if from == fwd => {
                    if parse_raw_msg(RAW_OK, &buf[..n]) == Some((conf, index)) {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    Err(BenchError::Join {
        user: format!("c{conf}p{index}"),
        reason: format!("rawfwd at {fwd} did not answer"),
    })
}
