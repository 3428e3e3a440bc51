//! Sender threads: each owns a share of the sending participants and paces their streams
//! on a timer heap. Every packet is stamped with the send time just before `sendto`.
//!
//! A stream that falls more than [`MAX_LAG`] behind its schedule skips ahead instead of
//! bursting, so an overloaded loadgen shows up as a lower achieved send rate (reported),
//! not as a burst that the server is blamed for.
//!
//! Video-like streams look like H.264 to a server that inspects payloads (the reflector
//! holds a new receiver's video until a keyframe): each packet is one frame in one NAL
//! unit, an IDR slice on a stream's first packet and every [`KEYFRAME_INTERVAL`] after,
//! a non-IDR slice otherwise.

use crate::control::{Channel, Participant, Route};
use crate::stats::Layout;
use crate::wire::{self, Kind, Probe, RtpHead, H264_IDR, H264_NON_IDR, OPUS_TOC};
use crate::BenchError;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How far a stream may fall behind before it skips packets.
pub const MAX_LAG: Duration = Duration::from_millis(100);
/// Sleeps shorter than this are spun with `yield_now` instead.
const MIN_SLEEP: Duration = Duration::from_micros(50);
/// A video-like stream sends an IDR slice this often (and on its first packet).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);

/// One sending participant.
pub struct TxPart {
    pub socket: UdpSocket,
    pub conf: u32,
    pub index: u32,
    pub audio: Channel,
    pub video: Option<Channel>,
    /// Where failover has moved the channels (read when its generation moves).
    pub route: Arc<Route>,
    /// With `--webrtc`: the session's keys (the thread makes its SRTP context from them).
    pub srtp: Option<webrtc::client::Keying>,
}

impl TxPart {
    pub fn from_participant(p: &Participant) -> Result<TxPart, BenchError> {
        Ok(TxPart {
            socket: p
                .socket
                .try_clone()
                .map_err(BenchError::io("clone socket"))?,
            conf: p.conf,
            index: p.index,
            audio: p.audio,
            video: p.video,
            route: p.route.clone(),
            srtp: p.srtp.clone(),
        })
    }
}

/// One step's schedule.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub step: u16,
    pub audio_pps: f64,
    pub audio_size: usize,
    pub video_pps: f64,
    pub video_size: usize,
    pub start: Instant,
    pub end: Instant,
}

/// Per-stream counts of one phase.
#[derive(Clone, Debug, Default)]
pub struct TxReport {
    /// (global stream, packets sent).
    pub sent: Vec<(u32, u64)>,
    /// Packets not sent because the stream fell behind.
    pub skipped: u64,
    /// `sendto` failures.
    pub send_errors: u64,
    /// Packets not sent because their participant was between servers (failover).
    pub paused: u64,
}

enum TxCmd {
    Run(Phase, Sender<TxReport>),
}

pub struct TxHandle {
    cmd: Option<Sender<TxCmd>>,
    thread: Option<JoinHandle<()>>,
}

impl TxHandle {
    /// Starts a phase; the report comes when it ends.
    pub fn run(&self, phase: Phase) -> Option<Receiver<TxReport>> {
        let (tx, rx) = channel();
        self.cmd.as_ref()?.send(TxCmd::Run(phase, tx)).ok()?;
        Some(rx)
    }
}

impl Drop for TxHandle {
    fn drop(&mut self) {
        self.cmd = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a sender thread for `parts`.
pub fn spawn(
    index: usize,
    parts: Vec<TxPart>,
    layout: Layout,
    epoch: Instant,
    live: Arc<AtomicU64>,
) -> Result<TxHandle, BenchError> {
    let (cmd, cmds) = channel();
    let thread = std::thread::Builder::new()
        .name(format!("loadgen-tx-{index}"))
        .spawn(move || {
            let mut rng = rand::thread_rng();
            let mut state = TxState {
                // RTP sequence per (participant, channel): kinds sharing a channel share a
                // sequence, and it runs on across steps (SRTP's rollover estimate needs that).
                rtp_seq: parts.iter().map(|_| [rng.gen(), rng.gen()]).collect(),
                srtp: parts
                    .iter()
                    .map(|p| p.srtp.as_ref().map(|k| k.outbound()))
                    .collect(),
                sealed: vec![0; wire::MAX_PACKET + webrtc::srtp::MAX_TRAILER],
            };
            while let Ok(TxCmd::Run(phase, reply)) = cmds.recv() {
                let r = run_phase(&parts, &mut state, &layout, epoch, &live, &phase);
                let _ = reply.send(r);
            }
        })
        .map_err(BenchError::io("spawn sender"))?;
    Ok(TxHandle {
        cmd: Some(cmd),
        thread: Some(thread),
    })
}

/// What a sender thread keeps from one step to the next.
struct TxState {
    rtp_seq: Vec<[u16; 2]>,
    /// Each participant's outbound SRTP context (`--webrtc`).
    srtp: Vec<Option<webrtc::srtp::Context>>,
    /// Where a packet is encrypted: its body and the SRTP trailer.
    sealed: Vec<u8>,
}

/// One stream's pacing state.
struct Stream {
    part: usize,
    kind: Kind,
    id: u32,
    period_ns: u64,
    seq: u64,
    buf: Vec<u8>,
    /// Which channel (and so which SSRC and RTP sequence) it goes on.
    on_video_channel: bool,
    /// Send time (ns since the epoch) from which the next video packet is an IDR slice.
    next_key_ns: u64,
}

impl Stream {
    /// The payload's codec byte for a packet sent at `send_ns`; schedules the next keyframe.
    fn codec_byte(&mut self, send_ns: u64, key_interval_ns: u64) -> u8 {
        match self.kind {
            Kind::Audio => OPUS_TOC,
            Kind::Video if send_ns >= self.next_key_ns => {
                self.next_key_ns = send_ns + key_interval_ns;
                H264_IDR
            }
            Kind::Video => H264_NON_IDR,
        }
    }
}

fn run_phase(
    parts: &[TxPart],
    state: &mut TxState,
    layout: &Layout,
    epoch: Instant,
    live: &AtomicU64,
    ph: &Phase,
) -> TxReport {
    let ns = |t: Instant| t.saturating_duration_since(epoch).as_nanos() as u64;
    let (start, end) = (ns(ph.start), ns(ph.end));
    let mut rng = rand::thread_rng();
    let mut streams = Vec::new();
    let mut heap = BinaryHeap::new();
    for (pi, p) in parts.iter().enumerate() {
        let mut add = |kind: Kind, pps: f64, size: usize| {
            if pps <= 0.0 {
                return;
            }
            let period_ns = (1e9 / pps).max(1.0) as u64;
            let mut buf = vec![0u8; size];
            rng.fill(&mut buf[wire::MIN_PACKET..]);
            let on_video_channel = kind == Kind::Video && p.video.is_some();
            streams.push(Stream {
                part: pi,
                kind,
                id: layout.stream(p.conf, p.index, kind),
                period_ns,
                seq: 0,
                buf,
                on_video_channel,
                // The first packet starts a keyframe.
                next_key_ns: 0,
            });
            // A random phase, so streams do not all fire at once.
            let first = start + rng.gen_range(0..period_ns);
            heap.push(Reverse((first, streams.len() - 1)));
        };
        add(Kind::Audio, ph.audio_pps, ph.audio_size);
        if layout.kinds == 2 {
            add(Kind::Video, ph.video_pps, ph.video_size);
        }
    }
    // Each participant's channels as last read from its route, with the route's generation.
    let mut routes: Vec<(u64, Option<Channel>, Option<Channel>)> = parts
        .iter()
        .map(|p| (u64::MAX, Some(p.audio), p.video))
        .collect();
    let mut report = TxReport::default();
    let lag = MAX_LAG.as_nanos() as u64;
    let key_interval = KEYFRAME_INTERVAL.as_nanos() as u64;
    while let Some(&Reverse((due, si))) = heap.peek() {
        if due >= end {
            break;
        }
        let now = ns(Instant::now());
        if due > now {
            let wait = Duration::from_nanos(due - now);
            if wait >= MIN_SLEEP {
                std::thread::sleep(wait);
            } else {
                std::thread::yield_now();
            }
            continue;
        }
        heap.pop();
        let s = &mut streams[si];
        let mut next = due + s.period_ns;
        if now - due > lag {
            let behind = (now - due) / s.period_ns;
            report.skipped += behind;
            next = due + (behind + 1) * s.period_ns;
        } else {
            let p = &parts[s.part];
            let route = &mut routes[s.part];
            let gen = p.route.generation();
            if gen != route.0 {
                let (a, v) = p.route.channels();
                *route = (gen, a, v);
            }
            let (ch, slot): (Channel, usize) = match (s.on_video_channel, route.2, route.1) {
                (true, Some(v), _) => (v, 1),
                (_, _, Some(a)) => (a, 0),
                (_, _, None) => {
                    report.paused += 1;
                    heap.push(Reverse((next, si)));
                    continue;
                }
            };
            let seq = &mut state.rtp_seq[s.part][slot];
            let send_ns = ns(Instant::now());
            let head = RtpHead {
                marker: s.kind == Kind::Video,
                payload_type: ch.payload_type,
                seq: *seq,
                timestamp: (send_ns as u128 * u128::from(s.kind.clock_rate()) / 1_000_000_000)
                    as u32,
                ssrc: ch.ssrc,
            };
            let probe = Probe {
                step: ph.step,
                kind: s.kind,
                stream: s.id,
                seq: s.seq,
                send_ns,
            };
            // A failed send keeps its keyframe due: the next packet is the IDR then.
            let key_due = s.next_key_ns;
            let codec_byte = s.codec_byte(send_ns, key_interval);
            wire::write(&mut s.buf, &head, codec_byte, &probe);
            let out: &[u8] = match &mut state.srtp[s.part] {
                // A browser's packet: encrypted in a copy, as it leaves.
                Some(ctx) => {
                    let n = s.buf.len();
                    state.sealed[..n].copy_from_slice(&s.buf);
                    match ctx.protect_rtp(&mut state.sealed, n) {
                        Ok(m) => &state.sealed[..m],
                        Err(_) => {
                            report.send_errors += 1;
                            heap.push(Reverse((next, si)));
                            continue;
                        }
                    }
                }
                None => &s.buf,
            };
            match p.socket.send_to(out, ch.server) {
                Ok(_) => {
                    *seq = seq.wrapping_add(1);
                    s.seq += 1;
                    live.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    s.next_key_ns = key_due;
                    report.send_errors += 1;
                }
            }
        }
        heap.push(Reverse((next, si)));
    }
    report.sent = streams.iter().map(|s| (s.id, s.seq)).collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(kind: Kind) -> Stream {
        Stream {
            part: 0,
            kind,
            id: 0,
            period_ns: 10_000_000,
            seq: 0,
            buf: Vec::new(),
            on_video_channel: true,
            next_key_ns: 0,
        }
    }

    #[test]
    fn video_sends_an_idr_first_and_then_once_per_interval() {
        let sec = 1_000_000_000;
        let mut v = stream(Kind::Video);
        let bytes: Vec<u8> = [
            5,
            10_000_000,
            600_000_000,
            sec,
            sec + 5,
            2 * sec + 4,
            2 * sec + 5,
        ]
        .iter()
        .map(|&t| v.codec_byte(t, sec))
        .collect();
        assert_eq!(
            bytes,
            [
                H264_IDR,
                H264_NON_IDR,
                H264_NON_IDR,
                H264_NON_IDR,
                H264_IDR,
                H264_NON_IDR,
                H264_IDR
            ]
        );
        let mut a = stream(Kind::Audio);
        assert_eq!(a.codec_byte(0, sec), OPUS_TOC);
    }
}
