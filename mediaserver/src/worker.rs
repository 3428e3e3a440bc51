//! A media worker: one OS thread that owns a UDP socket, its I/O backend and a mesh, and runs
//! the mesh's clock. The control plane talks to it only through a bounded command channel;
//! nothing on the packet path takes a lock.
//!
//! [`Engine`] is the worker's body without the thread: it waits for datagrams (or the mesh's
//! next tick), feeds them to the mesh a batch at a time, and sends what the mesh queued. The
//! thread adds the command channel, the event channel and core pinning.

use crate::io::{Io, IoKind, IoOptions};
use crate::rtc::{Rtc, RtcCommand, RtcCounters, RtcReport};
use crate::Settings;
use mesh::{Command, DropReason, Event, Mesh, MeshConfig, Path, TxBatch};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// Commands queued per worker before the control plane is told to back off. A join in a
/// room linked with other servers or workers also mirrors the member on each of them, so a
/// burst of 1,000 joins over 4 linked servers queues about 4,000 on each (at 1,024,
/// benches/cascade.sh saw a join refused).
pub const COMMAND_QUEUE: usize = 4096;
/// Mesh events (speaking, quality) queued for the control plane; past it they are dropped
/// and counted, so a stalled control plane never blocks a worker.
pub const EVENT_QUEUE: usize = 4096;

/// What a worker tells the conference service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Mesh(Event),
    /// From the WebRTC port: a stream took a browser's receive slot, a session ended.
    Rtc(RtcReport),
}
/// The mesh's batch is sent early once it holds this many packets, so one receive batch of
/// large fan-outs never fills it (the mesh would drop as `TxFull`).
const FLUSH_AT: usize = 1024;
/// How often the per-stream quality summary is recomputed. It walks every stream (in a
/// linked room, every mirrored member's too), and reports and scrapes read it at most
/// once a second.
const QUALITY_EVERY: Duration = Duration::from_secs(1);

/// Counters a worker publishes for reports and `/metrics`. Updated once per mesh tick
/// (10 ms), never per packet; all monotonic except the gauges noted.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Packets the mesh queued for sending (forwarded); `send_errors` of them failed.
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Sum of `drops`.
    pub dropped: AtomicU64,
    /// Per [`DropReason`], indexed like [`DropReason::ALL`] (see [`WorkerCounters::drops`]).
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Packets the kernel refused.
    pub send_errors: AtomicU64,
    /// Datagrams longer than a receive buffer, dropped.
    pub rx_truncated: AtomicU64,
    /// Send system calls (sendmmsg, or io_uring_enter for sends).
    pub send_calls: AtomicU64,
    /// GSO messages sent, and the packets they carried.
    pub gso_msgs: AtomicU64,
    pub gso_packets: AtomicU64,
    /// Nanoseconds spent working (not blocked waiting for datagrams or the next tick);
    /// its rate against wall time is the worker's load.
    pub busy_ns: AtomicU64,
    /// Ticks run, and nanoseconds spent in them: the mesh's clock work (command
    /// application, periodic work, and the mixer's tick once mixing runs there).
    pub ticks: AtomicU64,
    pub tick_ns: AtomicU64,
    /// Gauge: the longest tick since the worker started, in nanoseconds.
    pub tick_max_ns: AtomicU64,
    /// Gauge: conferences on this worker.
    pub conferences: AtomicU64,
    /// Gauge: participants on this worker.
    pub participants: AtomicU64,
    /// Gauge: declared incoming streams.
    pub streams: AtomicU64,
    /// Gauge: packets lost summed over the current streams (RFC 3550 cumulative loss).
    pub lost: AtomicU64,
    /// Gauge: packets reordered summed over the current streams.
    pub reordered: AtomicU64,
    /// Gauge: the largest interarrival jitter of any stream, in microseconds.
    pub max_jitter_us: AtomicU64,
    /// Mesh events dropped because the control plane's event queue was full.
    pub events_dropped: AtomicU64,
    /// The WebRTC port's sessions and drops.
    pub rtc: RtcCounters,
    /// Gauge: open ICE-TCP connections.
    pub ice_tcp_conns: AtomicU64,
    /// Frames not sent on an ICE-TCP connection (its queue full, or gone).
    pub ice_tcp_dropped: AtomicU64,
}

impl WorkerCounters {
    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Ordering::Relaxed)
    }

    /// The largest stream jitter in milliseconds.
    pub fn max_jitter_ms(&self) -> f64 {
        self.max_jitter_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// Counts the worker keeps locally between publishes.
#[derive(Debug, Default)]
struct Local {
    send_errors: u64,
    rx_truncated: u64,
    send_calls: u64,
    gso_msgs: u64,
    gso_packets: u64,
    busy_ns: u64,
    ticks: u64,
    tick_ns: u64,
    tick_max_ns: u64,
    /// Blocked time since the last publish.
    idle_ns: u64,
}

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub io: IoOptions,
    pub mesh: MeshConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let mesh = MeshConfig::default();
        Self {
            io: IoOptions {
                tx_packets: mesh.tx_packets,
                ..IoOptions::default()
            },
            mesh,
        }
    }
}

/// The worker's body: socket, backend, mesh and transmit batch, driven by [`Engine::turn`].
pub struct Engine<P: Path> {
    mesh: Mesh<P>,
    io: Io,
    batch: TxBatch,
    /// The batch's packets and bytes, for the WebRTC batch to match.
    batch_capacity: (usize, usize),
    counters: Arc<WorkerCounters>,
    local: Local,
    last_publish: Instant,
    next_quality: Instant,
    /// Browsers' ICE, DTLS and SRTP on this port, when enabled.
    rtc: Option<Rtc>,
    /// ICE over TCP at this port's number, when enabled (with WebRTC).
    tcp: Option<crate::ice_tcp::IceTcp>,
}

impl<P: Path> Engine<P> {
    /// Starts the I/O backend on `socket` (falling back to mmsg if needed) and an empty mesh.
    pub fn new(socket: UdpSocket, cfg: EngineConfig, counters: Arc<WorkerCounters>) -> Self {
        let now = Instant::now();
        let io = Io::open(socket, cfg.io);
        Self {
            batch: TxBatch::with_capacity(cfg.mesh.tx_packets, cfg.mesh.tx_bytes),
            batch_capacity: (cfg.mesh.tx_packets, cfg.mesh.tx_bytes),
            mesh: Mesh::new(now, cfg.mesh),
            io,
            counters,
            local: Local::default(),
            last_publish: now,
            next_quality: now,
            rtc: None,
            tcp: None,
        }
    }

    /// Terminates WebRTC on this worker's port, with the server's DTLS certificate.
    pub fn enable_webrtc(&mut self, identity: Arc<webrtc::Identity>) {
        let local = self
            .io
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (packets, bytes) = (self.batch_capacity.0, self.batch_capacity.1);
        self.rtc = Some(Rtc::new(identity, local, packets, bytes));
    }

    /// Listens for ICE over TCP on this port's address (after [`Engine::enable_webrtc`]);
    /// returns whether it could.
    pub fn enable_ice_tcp(&mut self) -> bool {
        let Ok(local) = self.io.local_addr() else {
            return false;
        };
        match crate::ice_tcp::IceTcp::bind(local) {
            Ok(t) => {
                self.tcp = Some(t);
                true
            }
            Err(e) => {
                tracing::warn!(%local, error = %e, "no ICE over TCP on this worker");
                false
            }
        }
    }

    /// A WebRTC command from the conference service (ignored without WebRTC).
    pub fn rtc_command(&mut self, cmd: RtcCommand) {
        if let Some(rtc) = &mut self.rtc {
            rtc.command(Instant::now(), cmd);
        }
    }

    pub fn mesh(&self) -> &Mesh<P> {
        &self.mesh
    }

    /// The backend in use, after any fallback.
    pub fn io_kind(&self) -> IoKind {
        self.io.kind()
    }

    /// Whether sends use GSO.
    pub fn gso(&self) -> bool {
        self.io.gso()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Queues a control command; the mesh applies it at its next tick.
    pub fn command(&mut self, cmd: Command<P>) {
        self.mesh.handle_command(Instant::now(), cmd);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.mesh.poll_event()
    }

    /// The WebRTC port's reports since the last call.
    pub fn drain_rtc(&mut self, mut f: impl FnMut(RtcReport)) {
        if let Some(rtc) = &mut self.rtc {
            rtc.drain_reports().for_each(&mut f);
        }
    }

    /// One turn: ticks the mesh if due, waits for datagrams until the next tick is due (at
    /// most `max_wait`), feeds them to the mesh and sends what it queued. Returns how many
    /// datagrams were read.
    pub fn turn(&mut self, max_wait: Duration) -> std::io::Result<usize> {
        let now = Instant::now();
        if now >= self.mesh.poll_timeout() {
            self.mesh.handle_tick(now);
            if let Some(rtc) = &mut self.rtc {
                rtc.tick(now, &mut self.mesh);
            }
            // One clock read per tick (100 per second), never per packet.
            let spent = now.elapsed().as_nanos() as u64;
            self.local.ticks += 1;
            self.local.tick_ns += spent;
            self.local.tick_max_ns = self.local.tick_max_ns.max(spent);
            self.publish(now);
        }
        // With ICE over TCP, UDP waits no longer than a TCP poll.
        let max_wait = match self.tcp {
            Some(_) => max_wait.min(crate::ice_tcp::POLL),
            None => max_wait,
        };
        let wait = self
            .mesh
            .poll_timeout()
            .saturating_duration_since(now)
            .min(max_wait);
        let (n, idle) = self.io.recv(wait)?;
        self.local.idle_ns += idle;
        // One clock read per batch: the datagrams of one batch arrived together.
        let now = Instant::now();
        for i in 0..n {
            match self.io.datagram(i) {
                Some((from, data)) => match &mut self.rtc {
                    Some(rtc) => rtc.ingress(now, from, data, &mut self.mesh),
                    None => self.mesh.handle_datagram(now, from, data),
                },
                None => self.local.rx_truncated += 1,
            }
            if self.mesh.pending_transmit() >= FLUSH_AT {
                self.flush();
            }
        }
        if let (Some(tcp), Some(rtc)) = (&mut self.tcp, &mut self.rtc) {
            let mesh = &mut self.mesh;
            tcp.poll(now, |from, data| rtc.ingress(now, from, data, mesh), |_| {});
        }
        if let Some(rtc) = &mut self.rtc {
            // A check or handshake that just verified a browser opens its channel now.
            rtc.events(now, &mut self.mesh);
        }
        self.flush();
        Ok(n)
    }

    /// Sends everything the mesh has queued.
    fn flush(&mut self) {
        self.mesh.poll_transmit(&mut self.batch);
        if let Some(rtc) = &mut self.rtc {
            rtc.egress(&mut self.batch);
            let secure = rtc.secure();
            // What goes to an ICE-TCP connection leaves on it, framed.
            if let Some(tcp) = self.tcp.as_mut().filter(|t| !t.is_empty()) {
                let mut frame = [0u8; 2048];
                let mut any = false;
                for (dest, pkt) in secure.iter() {
                    if tcp.is_peer(&dest) {
                        any = true;
                        if pkt.len() <= frame.len() {
                            let n = pkt.copy_to(&mut frame);
                            tcp.send(dest, &frame[..n]);
                        } else {
                            tcp.counters.dropped += 1;
                        }
                    }
                }
                if any {
                    secure.retain_dest(|d| !tcp.is_peer(d));
                    tcp.flush();
                }
            }
            if !secure.is_empty() {
                let rep = self.io.send(secure);
                secure.clear();
                Self::count(&mut self.local, &rep);
            }
        }
        if self.batch.is_empty() {
            self.batch.clear();
            return;
        }
        let rep = self.io.send(&self.batch);
        self.batch.clear();
        Self::count(&mut self.local, &rep);
    }

    fn count(l: &mut Local, rep: &crate::io::SendReport) {
        l.send_errors += rep.errors;
        l.send_calls += rep.calls;
        l.gso_msgs += rep.gso_msgs;
        l.gso_packets += rep.gso_packets;
    }

    /// Copies the counters out to the shared atomics.
    pub fn publish(&mut self, now: Instant) {
        let l = &mut self.local;
        let wall = now.saturating_duration_since(self.last_publish).as_nanos() as u64;
        l.busy_ns += wall.saturating_sub(l.idle_ns);
        l.idle_ns = 0;
        self.last_publish = now;

        let c = &*self.counters;
        let s = self.mesh.stats();
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&c.datagrams_in, s.datagrams_in);
        set(&c.bytes_in, s.bytes_in);
        set(&c.packets_out, s.packets_out);
        set(&c.bytes_out, s.bytes_out);
        set(&c.dropped, s.total_drops());
        for (r, n) in s.drop_counts() {
            set(&c.drops[r.index()], n);
        }
        set(&c.send_errors, l.send_errors);
        set(&c.rx_truncated, l.rx_truncated);
        set(&c.send_calls, l.send_calls);
        set(&c.gso_msgs, l.gso_msgs);
        set(&c.gso_packets, l.gso_packets);
        set(&c.busy_ns, l.busy_ns);
        set(&c.ticks, l.ticks);
        set(&c.tick_ns, l.tick_ns);
        set(&c.tick_max_ns, l.tick_max_ns);
        set(&c.conferences, self.mesh.conference_count() as u64);
        set(&c.participants, self.mesh.participant_count() as u64);
        if let Some(rtc) = &self.rtc {
            rtc.publish(&c.rtc);
        }
        if let Some(tcp) = &self.tcp {
            set(&c.ice_tcp_conns, tcp.len() as u64);
            set(&c.ice_tcp_dropped, tcp.counters.dropped);
        }
        if now >= self.next_quality {
            self.next_quality = now + QUALITY_EVERY;
            let q = self.mesh.quality();
            set(&c.streams, q.streams);
            set(&c.lost, q.lost);
            set(&c.reordered, q.reordered);
            set(&c.max_jitter_us, (q.max_jitter_ms * 1000.0) as u64);
        }
    }
}

/// The control plane's handle on a worker.
pub struct WorkerHandle {
    pub index: usize,
    pub addr: SocketAddr,
    pub counters: Arc<WorkerCounters>,
    /// The backend running (after any fallback) and whether it sends with GSO.
    pub io: IoKind,
    pub gso: bool,
    /// Whether it takes ICE over TCP at its port's number.
    pub ice_tcp: bool,
    commands: SyncSender<Command<crate::path::MediaPath>>,
    /// WebRTC sessions live on the worker thread; these commands reach them.
    rtc: SyncSender<RtcCommand>,
    /// The server's DTLS certificate (one for all workers).
    pub identity: Arc<webrtc::Identity>,
}

impl WorkerHandle {
    /// Queues a command for the mesh; a full queue (or a worker that is gone) hands the
    /// command back for the caller to refuse or keep.
    pub fn send(
        &self,
        cmd: Command<crate::path::MediaPath>,
    ) -> Result<(), Command<crate::path::MediaPath>> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c)) => {
                tracing::warn!(worker = self.index, "worker command queue full");
                Err(c)
            }
            Err(TrySendError::Disconnected(c)) => Err(c),
        }
    }

    /// Queues a WebRTC command; a full queue hands it back.
    pub fn send_rtc(&self, cmd: RtcCommand) -> Result<(), RtcCommand> {
        self.rtc.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }

    /// A handle whose commands nobody takes (tests of a full queue): the receiver is
    /// returned for the test to hold or drain.
    #[cfg(test)]
    pub(crate) fn detached(
        index: usize,
        queue: usize,
    ) -> (Self, Receiver<Command<crate::path::MediaPath>>) {
        let (tx, rx) = sync_channel(queue);
        let (rtc, _) = sync_channel(1);
        let h = WorkerHandle {
            rtc,
            identity: webrtc::Identity::generate().expect("a test certificate"),
            index,
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            counters: Arc::new(WorkerCounters::default()),
            io: IoKind::Mmsg,
            gso: false,
            ice_tcp: false,
            commands: tx,
        };
        (h, rx)
    }
}

/// Binds worker `index`'s socket on `settings.media_host` and starts its thread, with the
/// backend, GSO and core pinning from `settings`. Mesh events go to `events`.
pub fn spawn(
    index: usize,
    settings: &Settings,
    identity: Arc<webrtc::Identity>,
    events: Sender<(usize, Report)>,
) -> std::io::Result<WorkerHandle> {
    let ip: IpAddr = settings.media_host;
    let socket = crate::io::bind((ip, 0).into())?;
    let addr = socket.local_addr()?;
    let mut cfg = EngineConfig::default();
    cfg.io.kind = settings.io;
    cfg.io.gso = settings.gso;
    let pin = settings.pin_cores.then_some(index);
    let ice_tcp = settings.ice_tcp;
    let (tx, rx) = sync_channel(settings.worker_queue.max(1));
    let (rtc_tx, rtc_rx) = sync_channel(settings.worker_queue.max(1));
    let id = identity.clone();
    let (ready_tx, ready_rx) = sync_channel(1);
    let counters = Arc::new(WorkerCounters::default());
    let c = counters.clone();
    std::thread::Builder::new()
        .name(format!("media-worker-{index}"))
        .spawn(move || {
            if let Some(i) = pin {
                pin_to_core(index, i);
            }
            // Built on its own thread: the backend's buffers and ring belong to it.
            let mut engine = Engine::new(socket, cfg, c);
            engine.enable_webrtc(id);
            let tcp = ice_tcp && engine.enable_ice_tcp();
            let _ = ready_tx.send((engine.io_kind(), engine.gso(), tcp));
            run(index, engine, rx, rtc_rx, events);
        })?;
    let (io, gso, tcp) = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("media worker died while starting"))?;
    tracing::info!(worker = index, %addr, %io, gso, ice_tcp = tcp, "media worker started");
    Ok(WorkerHandle {
        index,
        addr,
        counters,
        io,
        gso,
        ice_tcp: tcp,
        commands: tx,
        rtc: rtc_tx,
        identity,
    })
}

fn run<P: Path>(
    index: usize,
    mut engine: Engine<P>,
    commands: Receiver<Command<P>>,
    rtc: Receiver<RtcCommand>,
    events: Sender<(usize, Report)>,
) {
    let mut last_error: Option<Instant> = None;
    loop {
        while let Ok(cmd) = rtc.try_recv() {
            engine.rtc_command(cmd);
        }
        loop {
            match commands.try_recv() {
                Ok(cmd) => engine.command(cmd),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    tracing::info!(worker = index, "control plane gone; worker stops");
                    return;
                }
            }
        }
        // Commands wait for the next tick anyway, so the turn may block until then.
        if let Err(e) = engine.turn(Duration::from_secs(1)) {
            if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(worker = index, error = %e, "receive failed");
                last_error = Some(Instant::now());
            }
            // Never spin on a persistent error.
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut lost = 0;
        while let Some(ev) = engine.poll_event() {
            lost += u64::from(events.try_send((index, Report::Mesh(ev))).is_err());
        }
        engine.drain_rtc(|r| lost += u64::from(events.try_send((index, Report::Rtc(r))).is_err()));
        if lost > 0 {
            engine
                .counters
                .events_dropped
                .fetch_add(lost, Ordering::Relaxed);
        }
    }
}

/// Pins the calling thread to core `worker % cores`; failure only logs.
fn pin_to_core(worker: usize, i: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let core = i % cores;
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within it for core < 1024,
    // and sched_setaffinity(0, ..) applies to the calling thread.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r == 0 {
        tracing::info!(worker, core, "media worker pinned");
    } else {
        tracing::warn!(worker, core, error = %std::io::Error::last_os_error(), "cannot pin media worker");
    }
}
