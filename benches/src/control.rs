//! The control side of loadgen's participants: the real join flow over TCP (dispatcher,
//! then media server), or the raw baseline's UDP registration.
//!
//! Joins run on a small tokio runtime on its own thread. After the joins it keeps every
//! media server connection open and drained (a closed connection is a leave) until the run
//! ends, then says `endsession` for everyone.

use crate::config::LoadArgs;
use crate::netio::size_buffers;
use crate::wire::{parse_raw_msg, raw_msg, RAW_JOIN, RAW_OK};
use crate::BenchError;
use protocol::{ChannelAddr, ClientMsg, JoinOpts, LineBuffer, MediaKind, Mode, ServerMsg};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

type Joined = (Participant, Conn);

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
                for (_, mut conn) in joined {
                    conn.leave().await;
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
            for (_, mut conn) in out {
                conn.leave().await;
            }
            Err(e)
        }
    }
}

/// One participant's join flow (docs/protocol.md, "The join flow").
async fn join_one(plan: &Plan, conf: u32, index: u32, user: &str) -> Result<Joined, String> {
    let conference = format!("lg{}-{conf}", plan.run_id);
    let media = if plan.want_video {
        vec![MediaKind::Audio, MediaKind::Video]
    } else {
        vec![MediaKind::Audio]
    };
    let join = |ticket: Option<String>| ClientMsg::Join {
        conference: conference.clone(),
        account: plan.account.clone(),
        name: user.to_owned(),
        opts: JoinOpts {
            ticket,
            mode: Mode::Reflect,
            media: media.clone(),
            codec: Some(protocol::codec::OPUS.name.into()),
            app: Some("loadgen".into()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            ..JoinOpts::default()
        },
    };
    let mut d = Conn::connect(&plan.dispatcher).await?;
    d.expect_connect().await?;
    d.send(&join(None)).await?;
    let (addr, ticket) = loop {
        match d.recv().await? {
            ServerMsg::Dispatch { addr, ticket, .. } => break (addr, ticket),
            m @ (ServerMsg::Reject { .. } | ServerMsg::Error { .. }) => {
                return Err(format!("dispatcher: {}", m.encode().trim_end()))
            }
            _ => {}
        }
    };
    d.leave().await;
    let mut m = Conn::connect(&addr.to_string()).await?;
    m.expect_connect().await?;
    m.send(&join(Some(ticket))).await?;
    let mut socket: Option<UdpSocket> = None;
    let mut audio = None;
    let mut video = None;
    loop {
        let msg = if audio.is_some() {
            match tokio::time::timeout(VIDEO_CHANNEL_WAIT, m.recv()).await {
                Ok(msg) => msg?,
                Err(_) => break,
            }
        } else {
            m.recv().await?
        };
        match msg {
            ServerMsg::Channel {
                kind,
                addr: server,
                payload_type,
                ssrc,
                ..
            } => {
                if socket.is_none() {
                    socket = Some(open_socket(m.local_ip()?, server)?);
                }
                let local = socket
                    .as_ref()
                    .map(UdpSocket::local_addr)
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .ok_or("no socket")?;
                m.send(&ClientMsg::Channel {
                    kind,
                    addr: ChannelAddr::Addr(local),
                    ssrc,
                    opts: Default::default(),
                })
                .await?;
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
            m @ (ServerMsg::Reject { .. } | ServerMsg::Error { .. }) => {
                return Err(format!("media server: {}", m.encode().trim_end()))
            }
            _ => {}
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
    Ok((p, m))
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

/// Keeps the connections open and read until `stop`, then leaves.
async fn hold(conns: Vec<Conn>, stop: oneshot::Receiver<()>) -> ControlReport {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut leave = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in conns {
        let (ltx, lrx) = oneshot::channel::<()>();
        leave.push(ltx);
        let tx = tx.clone();
        tasks.spawn(async move {
            tokio::pin!(lrx);
            loop {
                tokio::select! {
                    _ = &mut lrx => {
                        c.leave().await;
                        return;
                    }
                    msg = c.recv() => match msg {
                        Ok(ServerMsg::Reject { .. } | ServerMsg::Error { .. }) => {
                            let _ = tx.send(false);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            let _ = tx.send(true);
                            return;
                        }
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

/// One TCP control connection.
struct Conn {
    stream: TcpStream,
    lines: LineBuffer,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        Ok(Conn {
            stream,
            lines: LineBuffer::new(),
            buf: vec![0; 4096],
        })
    }

    fn local_ip(&self) -> Result<IpAddr, String> {
        self.stream
            .local_addr()
            .map(|a| a.ip())
            .map_err(|e| e.to_string())
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), String> {
        self.stream
            .write_all(msg.encode().as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The next message; lines that do not parse are skipped. Cancel-safe.
    async fn recv(&mut self) -> Result<ServerMsg, String> {
        loop {
            while let Some(line) = self.lines.next_line() {
                let line = line.map_err(|e| e.to_string())?;
                if let Ok(msg) = ServerMsg::parse(&line) {
                    return Ok(msg);
                }
                tracing::debug!(line, "ignoring line");
            }
            let n = self
                .stream
                .read(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.lines.extend(&self.buf[..n]);
        }
    }

    async fn expect_connect(&mut self) -> Result<(), String> {
        match self.recv().await? {
            ServerMsg::Connect { .. } => Ok(()),
            other => Err(format!(
                "expected connect, got {}",
                other.encode().trim_end()
            )),
        }
    }

    async fn leave(&mut self) {
        let _ = self.send(&ClientMsg::EndSession).await;
        let _ = self.stream.shutdown().await;
    }
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
