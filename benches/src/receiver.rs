//! Receiver threads: each owns a share of the participants' sockets, waits on them with
//! epoll, drains them with `recvmmsg` and counts every probe into the current step's
//! [`RxStep`].

use crate::netio::{self, Epoll, RecvBatch};
use crate::stats::{Layout, PairState, RxStep};
use crate::wire::{self, MAX_PACKET};
use crate::BenchError;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Datagrams per `recvmmsg`.
const BATCH: usize = 64;
/// Slot size when reading coalesced GSO bursts: the largest UDP payload.
const GRO_SLOT: usize = 65_536;
/// Longest epoll wait, so commands are seen promptly.
const WAIT_MS: i32 = 10;

/// One participant's socket as a receiver sees it.
pub struct RxSocket {
    pub socket: UdpSocket,
    pub conf: u32,
    /// Index within the conference: its own stream must never come back.
    pub index: u32,
    /// The media server it joined, as an index into the run's server list.
    pub server: u16,
    /// With `--webrtc`: what the server sends this participant is SRTP.
    pub srtp: Option<webrtc::srtp::Context>,
}

enum RxCmd {
    /// Hand over the current step's counts and start counting the next step.
    Collect(Sender<RxStep>),
}

/// The main thread's handle on a receiver thread.
pub struct RxHandle {
    cmd: Sender<RxCmd>,
    thread: Option<JoinHandle<Result<(), BenchError>>>,
}

impl RxHandle {
    /// Starts collecting; `wait` for the counts.
    fn collect(&self) -> Option<Receiver<RxStep>> {
        let (tx, rx) = channel();
        self.cmd.send(RxCmd::Collect(tx)).ok()?;
        Some(rx)
    }

    /// Stops the thread and reports how it ended.
    pub fn stop(mut self) -> Result<(), BenchError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), BenchError> {
        // Dropping the command sender ends the loop.
        let (tx, _) = channel();
        self.cmd = tx;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(BenchError::Thread("receiver panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RxHandle {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Collects the current step from every receiver and merges it; each then counts the next.
pub fn collect_all(handles: &[RxHandle], layout: &Layout) -> Result<RxStep, BenchError> {
    let pending: Vec<_> = handles.iter().map(RxHandle::collect).collect();
    let mut total = RxStep::new(layout);
    for p in pending {
        let step = p
            .and_then(|rx| rx.recv().ok())
            .ok_or_else(|| BenchError::Thread("receiver thread gone".into()))?;
        total.merge(&step);
    }
    Ok(total)
}

/// Settings shared by all receiver threads.
#[derive(Clone)]
pub struct RxShared {
    pub layout: Layout,
    /// Zero of the probes' send clock.
    pub epoch: Instant,
    pub late_ns: u64,
    /// Datagrams received, for the progress bar.
    pub live: Arc<AtomicU64>,
    /// Largest datagram expected.
    pub max_size: usize,
    /// Read GSO bursts coalesced (`UDP_GRO`) instead of making the kernel split them.
    pub gro: bool,
    /// Poll without sleeping (`--busy-poll`).
    pub busy_poll: bool,
}

/// Starts a receiver thread over `sockets`.
pub fn spawn(
    index: usize,
    sockets: Vec<RxSocket>,
    shared: RxShared,
) -> Result<RxHandle, BenchError> {
    let (cmd, cmds) = channel();
    let thread = std::thread::Builder::new()
        .name(format!("loadgen-rx-{index}"))
        .spawn(move || run(sockets, shared, cmds))
        .map_err(BenchError::io("spawn receiver"))?;
    Ok(RxHandle {
        cmd,
        thread: Some(thread),
    })
}

fn run(mut sockets: Vec<RxSocket>, sh: RxShared, cmds: Receiver<RxCmd>) -> Result<(), BenchError> {
    let mut ep = Epoll::new(sockets.len().max(1)).map_err(BenchError::io("epoll"))?;
    let mut gro = sh.gro;
    for (i, s) in sockets.iter().enumerate() {
        ep.add(s.socket.as_raw_fd(), i as u64)
            .map_err(BenchError::io("epoll add"))?;
        if gro && netio::enable_gro(&s.socket).is_err() {
            tracing::warn!("UDP_GRO unavailable; the kernel splits GSO bursts for us");
            gro = false;
        }
    }
    let per_conf = sh.layout.streams_per_conf();
    let n_sockets = sockets.len();
    let fresh_pairs = || -> Vec<Vec<PairState>> {
        (0..n_sockets)
            .map(|_| vec![PairState::default(); per_conf as usize])
            .collect()
    };
    let mut pairs = fresh_pairs();
    let mut step: u16 = 0;
    let mut counts = RxStep::new(&sh.layout);
    let slot = if gro {
        GRO_SLOT
    } else {
        sh.max_size.clamp(wire::MIN_PACKET, MAX_PACKET) + 64
    };
    let mut batch = RecvBatch::new(BATCH, slot);
    let mut ready = Vec::new();
    // Where an SRTP packet is decrypted.
    let mut open = vec![0u8; GRO_SLOT];
    loop {
        match cmds.try_recv() {
            Ok(RxCmd::Collect(reply)) => {
                let done = std::mem::replace(&mut counts, RxStep::new(&sh.layout));
                let _ = reply.send(done);
                pairs = fresh_pairs();
                step = step.wrapping_add(1);
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(()),
        }
        let wait = if sh.busy_poll { 0 } else { WAIT_MS };
        ep.wait(wait, &mut ready)
            .map_err(BenchError::io("epoll wait"))?;
        for &tok in &ready {
            let i = tok as usize;
            let sock = &mut sockets[i];
            loop {
                let n = match batch.recv(sock.socket.as_raw_fd(), libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // ICMP errors surface here; they do not stop the socket.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(BenchError::io("recvmmsg")(e)),
                };
                let now_ns = sh.epoch.elapsed().as_nanos() as u64;
                let mut datagrams = 0;
                for j in 0..n {
                    let data = batch.data(j);
                    let seg = batch.segment_size(j).unwrap_or(data.len()).max(1);
                    for d in data.chunks(seg) {
                        datagrams += 1;
                        let d = match &mut sock.srtp {
                            // SRTP only: the server's SRTCP, ICE and DTLS count as foreign.
                            Some(ctx) if !webrtc::session::is_rtcp(d) => {
                                let o = &mut open[..d.len()];
                                o.copy_from_slice(d);
                                match ctx.unprotect_rtp(o) {
                                    Ok(m) => &o[..m],
                                    Err(_) => {
                                        counts.foreign += 1;
                                        continue;
                                    }
                                }
                            }
                            Some(_) => {
                                counts.foreign += 1;
                                continue;
                            }
                            None => d,
                        };
                        let Some(p) = wire::read(d) else {
                            counts.foreign += 1;
                            continue;
                        };
                        if p.step != step {
                            counts.stray += 1;
                            continue;
                        }
                        let (conf, sender, _) = sh.layout.decode(p.stream);
                        if p.stream as usize >= counts.streams.len() {
                            counts.foreign += 1;
                        } else if conf != sock.conf {
                            counts.misrouted += 1;
                        } else if sender == sock.index {
                            counts.echoed += 1;
                        } else {
                            let local = (p.stream - conf * per_conf) as usize;
                            let arrival = pairs[i][local].record(p.seq);
                            counts.record(
                                p.stream,
                                sock.server,
                                arrival,
                                now_ns.saturating_sub(p.send_ns),
                                sh.late_ns,
                            );
                        }
                    }
                }
                sh.live.fetch_add(datagrams, Ordering::Relaxed);
                if n < batch.capacity() {
                    break;
                }
            }
        }
    }
}
