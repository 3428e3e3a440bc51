//! The control side of loadgen's participants: the real join flow (the client crate's
//! one join flow, dispatcher then media server, with its keepalive), or the raw
//! baseline's UDP registration.
//!
//! Joins run on a small tokio runtime on its own thread. After the joins it keeps every
//! participant's control plane running until the run ends, then says `endsession` for
//! everyone. Without `--failover` a closed connection is a leave; with it (the soak) a
//! participant whose media server dies goes back to the dispatcher as confclient does, and
//! its [`Route`] follows it to the new server.

use crate::config::LoadArgs;
use crate::netio::size_buffers;
use crate::wire::{parse_raw_msg, raw_msg, RAW_JOIN, RAW_OK};
use crate::BenchError;
use client::control::{Control, Event, Step};
use client::flow::FlowConfig;
use protocol::{ChannelAddr, ClientMsg, JoinOpts, MediaKind, Mode, SdpKind, ServerMsg};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// Longest one participant's join flow may take.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
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

/// Where a participant's media goes now. Failover replaces its channels with the new
/// server's and empties them while the participant is between servers. Senders keep a
/// copy and take the lock only when `gen` moves, so a packet costs one atomic load.
#[derive(Debug, Default)]
pub struct Route {
    gen: AtomicU64,
    chans: Mutex<(Option<Channel>, Option<Channel>)>,
}

impl Route {
    pub(crate) fn new(audio: Channel, video: Option<Channel>) -> Route {
        Route {
            gen: AtomicU64::new(0),
            chans: Mutex::new((Some(audio), video)),
        }
    }

    /// Moves on every change of the channels.
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// The audio and video channels now; `None` audio: between servers, send nothing.
    pub fn channels(&self) -> (Option<Channel>, Option<Channel>) {
        *self.chans.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut (Option<Channel>, Option<Channel>))) {
        let mut c = self.chans.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c);
        self.gen.fetch_add(1, Ordering::Release);
    }
}

/// The participants' control state while media runs, for the soak's checks.
#[derive(Debug, Default)]
pub struct ControlStatus {
    /// Participants that hold an audio channel now.
    pub in_conference: AtomicU32,
    /// Failover attempts started (`reconnect`).
    pub reconnects: AtomicU64,
    /// Each failover that landed: when, and how long after the loss (ms).
    pub rejoins: Mutex<Vec<(Instant, u64)>>,
}

impl ControlStatus {
    /// The failovers that landed at or after `since`: (when, ms after the loss).
    pub fn rejoins_since(&self, since: Instant) -> Vec<(Instant, u64)> {
        let r = self.rejoins.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().filter(|(t, _)| *t >= since).copied().collect()
    }
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
    /// The channels as failover moves them (the same as `audio`/`video` without it).
    pub route: Arc<Route>,
    /// With `--webrtc`: the session's SRTP keys.
    pub srtp: Option<webrtc::client::Keying>,
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
    /// Live control state (participants in a conference, failovers).
    pub status: Arc<ControlStatus>,
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
    let plan = Plan {
        dispatcher,
        account: args.account.clone(),
        run_id: run_id.to_owned(),
        conferences: args.conferences,
        participants: args.participants,
        want_video: args.has_video() && !args.webrtc,
        concurrency: args.join_concurrency,
        failover: args.failover,
        webrtc: args.webrtc,
    };
    spawn_plane(move |ready, stop, status| control_main(plan, ready, stop, status))
}

/// Where a control plane reports its joined participants (or why it could not join).
pub(crate) type Ready = std::sync::mpsc::Sender<Result<Vec<Participant>, BenchError>>;

/// Runs `main` on a small tokio runtime on its own thread and waits until it has joined
/// everyone: `main` sends the participants on `ready`, holds them until `stop`, then
/// leaves and returns its report.
pub(crate) fn spawn_plane<F, Fut>(main: F) -> Result<(ControlPlane, Vec<Participant>), BenchError>
where
    F: FnOnce(Ready, oneshot::Receiver<()>, Arc<ControlStatus>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ControlReport>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let status = Arc::new(ControlStatus::default());
    let st = status.clone();
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
            rt.block_on(main(ready_tx, stop_rx, st))
        })
        .map_err(BenchError::io("spawn control thread"))?;
    let plane = ControlPlane {
        status,
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
    failover: bool,
    webrtc: bool,
}

/// A WebRTC participant's consent check (RFC 7675), sent every [`CONSENT_EVERY`].
pub(crate) struct Consent {
    pub(crate) socket: UdpSocket,
    pub(crate) server: SocketAddr,
    pub(crate) request: Vec<u8>,
}

/// How often a WebRTC participant refreshes consent (browsers: about every 5 s; the server
/// stops sending after 30 s without).
pub(crate) const CONSENT_EVERY: Duration = Duration::from_secs(5);

type Joined = (Participant, Control, Option<Consent>);

async fn control_main(
    plan: Plan,
    ready: Ready,
    stop: oneshot::Receiver<()>,
    status: Arc<ControlStatus>,
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
                for (_, mut ctrl, _) in joined {
                    ctrl.finish().await;
                }
                return ControlReport::default();
            }
        }
    }
    joined.sort_by_key(|(p, _, _)| (p.conf, p.index));
    let mut held = Vec::with_capacity(joined.len());
    let mut parts = Vec::with_capacity(joined.len());
    for (p, ctrl, consent) in joined {
        let local = match p.socket.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(BenchError::io("media socket address")(e)));
                return ControlReport::default();
            }
        };
        held.push(Held {
            ctrl,
            route: p.route.clone(),
            local,
            consent,
        });
        parts.push(p);
    }
    status
        .in_conference
        .store(parts.len() as u32, Ordering::Relaxed);
    if ready.send(Ok(parts)).is_err() {
        return ControlReport::default();
    }
    hold(held, stop, status).await
}

async fn join_wave(plan: &Arc<Plan>, who: Vec<(u32, u32)>) -> Result<Vec<Joined>, BenchError> {
    let (joined, err) = join_each(plan.concurrency, who, |conf, index| {
        let plan = plan.clone();
        async move { join_one(&plan, conf, index, &format!("c{conf}p{index}")).await }
    })
    .await;
    match err {
        None => Ok(joined),
        Some(e) => {
            for (_, mut ctrl, _) in joined {
                ctrl.finish().await;
            }
            Err(e)
        }
    }
}

/// Runs `join(conference, index)` for each of `who`, at most `concurrency` at once, each
/// within [`JOIN_TIMEOUT`]. Returns what joined and the first failure; the caller undoes
/// the joins when there is one.
pub(crate) async fn join_each<T, F, Fut>(
    concurrency: usize,
    who: impl IntoIterator<Item = (u32, u32)>,
    join: F,
) -> (Vec<T>, Option<BenchError>)
where
    F: Fn(u32, u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut set = tokio::task::JoinSet::new();
    for (conf, index) in who {
        let (sem, join) = (sem.clone(), join(conf, index));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let user = format!("c{conf}p{index}");
            match tokio::time::timeout(JOIN_TIMEOUT, join).await {
                Ok(r) => r.map_err(|reason| BenchError::Join { user, reason }),
                Err(_) => Err(BenchError::Join {
                    user,
                    reason: format!("not joined within {JOIN_TIMEOUT:?}"),
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
    (out, first_err)
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
    // Without --failover a participant whose server goes away is counted as closed early,
    // not moved.
    flow.failover = plan.failover;
    flow.seed = u64::from(conf) << 32 | u64::from(index);
    let mut ctrl = Control::new(flow);
    let mut socket: Option<UdpSocket> = None;
    let mut audio = None;
    let mut video = None;
    let mut srtp = None;
    let mut consent = None;
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
                if plan.webrtc {
                    // A browser declares no channel: its offer, ICE and DTLS make it.
                    if kind != MediaKind::Audio {
                        continue;
                    }
                    let s = socket.as_ref().ok_or("no socket")?;
                    let (keys, check) = webrtc_connect(&mut ctrl, s, server, ssrc, user).await?;
                    srtp = Some(keys);
                    consent = Some(Consent {
                        socket: s.try_clone().map_err(|e| e.to_string())?,
                        server,
                        request: check,
                    });
                    audio = Some(Channel {
                        server,
                        ssrc,
                        payload_type,
                    });
                    break;
                }
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
        route: Arc::new(Route::new(audio, video)),
        srtp,
    };
    Ok((p, ctrl, consent))
}

/// A WebRTC participant's setup after `accept` (docs/protocol.md, "Browsers: SDP framing"):
/// the offer as `sdp` lines, the answer, then [`ice_and_dtls`] with the worker's port.
async fn webrtc_connect(
    ctrl: &mut Control,
    socket: &UdpSocket,
    server: SocketAddr,
    ssrc: u32,
    user: &str,
) -> Result<(webrtc::client::Keying, Vec<u8>), String> {
    let ufrag: String = user.chars().filter(char::is_ascii_alphanumeric).collect();
    let peer = webrtc::client::Peer::new(&ufrag).map_err(|e| e.to_string())?;
    let lines = peer.offer(ssrc);
    for line in &lines {
        ctrl.send(ClientMsg::Sdp {
            kind: SdpKind::Offer,
            line: line.clone(),
        });
    }
    ctrl.send(ClientMsg::SdpEnd {
        kind: SdpKind::Offer,
        lines: lines.len() as u32,
    });
    let mut answer = String::new();
    loop {
        match ctrl.next().await {
            Step::Event(Event::Server(ServerMsg::Sdp { line, .. })) => {
                answer.push_str(&line);
                answer.push_str("\r\n");
            }
            Step::Event(Event::Server(ServerMsg::SdpEnd { .. })) => break,
            Step::Event(Event::Server(ServerMsg::Error { code, text })) => {
                return Err(format!("offer refused: {code} {text}"))
            }
            Step::Finished(_) => return Err("left before the answer".into()),
            _ => {}
        }
    }
    let ans = webrtc::sdp::Offer::parse(&answer).map_err(|e| e.to_string())?;
    ice_and_dtls(&peer, socket, server, &ans).await
}

/// The nominating ICE check to `server` (again every 100 ms until it succeeds), then the
/// DTLS handshake as client. Returns the SRTP keys and the consent check to repeat.
pub(crate) async fn ice_and_dtls(
    peer: &webrtc::client::Peer,
    socket: &UdpSocket,
    server: SocketAddr,
    ans: &webrtc::sdp::Offer,
) -> Result<(webrtc::client::Keying, Vec<u8>), String> {
    let check = peer
        .check_request(&ans.ice_ufrag, &ans.ice_pwd)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last_check = None::<Instant>;
    loop {
        if last_check.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) {
            let _ = socket.send_to(&check, server);
            last_check = Some(Instant::now());
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            if webrtc::ice::is_success(&buf[..n]) {
                break;
            }
            answer_check(peer, socket, &buf[..n], from);
        }
        if Instant::now() > deadline {
            return Err("no ICE binding success".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut hs = peer
        .handshake(Instant::now(), local, server)
        .map_err(|e| e.to_string())?;
    let mut quiet = Instant::now();
    while !hs.is_done() {
        while let Some(m) = hs.poll_transmit() {
            let _ = socket.send_to(&m, server);
        }
        match socket.recv_from(&mut buf) {
            // RFC 7983: DTLS records start with 20-63.
            Ok((n, _)) if (20..=63).contains(&buf[0]) => {
                hs.handle(Instant::now(), &buf[..n])
                    .map_err(|e| e.to_string())?;
                quiet = Instant::now();
            }
            Ok((n, from)) => answer_check(peer, socket, &buf[..n], from),
            Err(_) => {
                if quiet.elapsed() >= Duration::from_millis(200) {
                    hs.handle_timeout(Instant::now());
                    quiet = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if Instant::now() > deadline {
            return Err("DTLS handshake did not finish".into());
        }
    }
    Ok((hs.keying().map_err(|e| e.to_string())?, check))
}

/// Answers a server's own ICE check (Janus checks the pair; the media server does not).
fn answer_check(peer: &webrtc::client::Peer, socket: &UdpSocket, data: &[u8], from: SocketAddr) {
    if let Some(resp) = peer.answer_check(data, from) {
        let _ = socket.send_to(&resp, from);
    }
}

/// Binds a participant's media socket on the control connection's IP (same family as the
/// server), so the server sees RTP from the host it admitted.
pub(crate) fn open_socket(local: IpAddr, server: SocketAddr) -> Result<UdpSocket, String> {
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

/// One participant's control connection while media runs.
struct Held {
    ctrl: Control,
    route: Arc<Route>,
    /// The media socket's address, declared again to a server that failover lands on.
    local: std::net::SocketAddr,
    /// A WebRTC participant's consent check.
    consent: Option<Consent>,
}

/// Keeps every participant's control plane running until `stop`, then leaves. With
/// failover, a participant's route is emptied when it loses its server and refilled from
/// the new server's `channel` lines.
async fn hold(
    held: Vec<Held>,
    stop: oneshot::Receiver<()>,
    status: Arc<ControlStatus>,
) -> ControlReport {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut leave = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut h in held {
        let (ltx, lrx) = oneshot::channel::<()>();
        leave.push(ltx);
        let tx = tx.clone();
        let status = status.clone();
        tasks.spawn(async move {
            tokio::pin!(lrx);
            let mut consent = tokio::time::interval(CONSENT_EVERY);
            // Whether this participant counts in `status.in_conference` now.
            let mut counted = true;
            let out = |counted: &mut bool, route: &Route| {
                route.update(|c| *c = (None, None));
                if std::mem::take(counted) {
                    status.in_conference.fetch_sub(1, Ordering::Relaxed);
                }
            };
            loop {
                tokio::select! {
                    _ = &mut lrx => {
                        h.ctrl.finish().await;
                        return;
                    }
                    _ = consent.tick(), if h.consent.is_some() => {
                        if let Some(c) = &h.consent {
                            let _ = c.socket.send_to(&c.request, c.server);
                        }
                    }
                    step = h.ctrl.next() => match step {
                        Step::Event(Event::Server(
                            ServerMsg::Reject { .. } | ServerMsg::Error { .. },
                        )) => {
                            let _ = tx.send(false);
                        }
                        Step::PauseMedia => out(&mut counted, &h.route),
                        Step::Event(Event::Reconnect { .. }) => {
                            status.reconnects.fetch_add(1, Ordering::Relaxed);
                            out(&mut counted, &h.route);
                        }
                        Step::Event(Event::Rejoined { after_ms, .. }) => {
                            let mut r = status.rejoins.lock().unwrap_or_else(|p| p.into_inner());
                            r.push((Instant::now(), after_ms));
                        }
                        Step::ChannelOffered(client::flow::ChannelOffer {
                            kind, addr: server, payload_type, ssrc, ..
                        }) => {
                            h.ctrl.declare_channel(
                                kind,
                                ChannelAddr::Addr(h.local),
                                ssrc,
                                Default::default(),
                            );
                            let ch = Channel { server, ssrc, payload_type };
                            h.route.update(|c| match kind {
                                MediaKind::Audio => c.0 = Some(ch),
                                MediaKind::Video => c.1 = Some(ch),
                            });
                            if kind == MediaKind::Audio && !std::mem::replace(&mut counted, true) {
                                status.in_conference.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Step::Finished(_) => {
                            out(&mut counted, &h.route);
                            let _ = tx.send(true);
                            return;
                        }
                        Step::Event(_) => {}
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
                route: Arc::new(Route::new(audio, None)),
                srtp: None,
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
