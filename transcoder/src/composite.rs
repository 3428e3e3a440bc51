//! The video side of a `composite` conference on the packet path (issue 14), sans-IO:
//! senders' RTP in, whole access units out for the compositor, and the compositor's
//! encoded frames back in as one RTP stream that every member gets.
//!
//! It decodes nothing: the [`crate::compositor::Compositor`] does, off the packet path, on
//! the host's codec pool. The host takes the units ([`CompositeVideo::take_units`]) and
//! hands back frames ([`CompositeVideo::deliver`]); this side keeps the depacketizers, asks
//! senders for keyframes (PLI) when a depacketizer waits for one or the compositor asks, and
//! turns receivers' PLIs and newcomers into a keyframe request for the compositor.

use std::time::{Duration, Instant};

use codecs::payload::h264::{H264Depacketizer, H264Packetizer};
use codecs::payload::keyframe::VideoCodec;
use codecs::payload::vp8::{Vp8Depacketizer, Vp8Packetizer};
use codecs::payload::{Frame, PacketizerConfig};
use mesh::rtcp::Rtcp;
use mesh::{rtcp_write, MediaKind, ParticipantId, PathOut, RtpView};
use rtc_shared::marshal::Marshal;

/// A sender is asked for a keyframe at most this often.
const PLI_EVERY: Duration = Duration::from_millis(500);
/// The largest composite packet (header included), under a typical path MTU.
const MTU: usize = 1200;
/// Units waiting for the host, at most: a host that stops taking them loses the oldest.
const UNITS_MAX: usize = 256;
/// The SSRC this server signs its feedback with.
const FEEDBACK_SSRC: u32 = 1;
/// The composite's bitrate follows the lowest receiver estimate within these bounds,
/// when it moved by more than [`RATE_CHANGE`], at most every [`RATE_EVERY`].
const MIN_BPS: u64 = 300_000;
const MAX_BPS: u64 = 4_000_000;
const RATE_CHANGE: f64 = 0.2;
const RATE_EVERY: Duration = Duration::from_secs(2);
/// After a member joins or its channel opens, keyframes at these delays: a plain-RTP
/// receiver (ffmpeg, a room system) starts listening some time after it joined and never
/// sends a PLI, so one keyframe at the join may come before it listens.
/// Dense at first: ffmpeg listens 100-400 ms after its `receive.sdp` appears.
const KEYFRAMES_AFTER_JOIN: [Duration; 6] = [
    Duration::ZERO,
    Duration::from_millis(150),
    Duration::from_millis(300),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

/// One access unit for the compositor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub sender: ParticipantId,
    pub codec: VideoCodec,
    pub frame: Frame,
    /// When its last packet came in: the start of the latency a composite adds.
    pub arrived: Instant,
}

/// How the output goes out: the composite in H.264, or a transcoded stream in either codec.
enum Packetizer {
    H264(H264Packetizer),
    Vp8(Vp8Packetizer),
}

enum Depacketizer {
    H264(H264Depacketizer),
    Vp8(Vp8Depacketizer),
}

impl Depacketizer {
    fn push(&mut self, pkt: &RtpView<'_>) -> Option<Frame> {
        let (seq, ts, m, p) = (
            pkt.sequence_number(),
            pkt.timestamp(),
            pkt.marker(),
            pkt.payload(),
        );
        match self {
            Depacketizer::H264(d) => d.push(seq, ts, m, p).ok().flatten(),
            Depacketizer::Vp8(d) => d.push(seq, ts, m, p).ok().flatten(),
        }
    }

    fn needs_keyframe(&self) -> bool {
        match self {
            Depacketizer::H264(d) => d.needs_keyframe(),
            Depacketizer::Vp8(d) => d.needs_keyframe(),
        }
    }
}

struct Sender {
    id: ParticipantId,
    codec: VideoCodec,
    ssrc: u32,
    depack: Depacketizer,
    /// A keyframe is wanted from it (its depacketizer waits, or the compositor asked).
    ask: bool,
    last_pli: Option<Instant>,
}

/// Counters for tests and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompositeStats {
    /// Access units handed to the host.
    pub units: u64,
    /// Units the host did not take in time.
    pub units_lost: u64,
    /// Video packets of a codec the compositor does not decode.
    pub unknown_codec: u64,
    /// Packets of a simulcast layer the composite does not decode.
    pub other_layer: u64,
    /// Composite frames sent, and their packets (once, before the fan-out).
    pub frames_out: u64,
    pub packets_out: u64,
    pub plis_sent: u64,
}

/// The composite's packet side for one conference.
pub struct CompositeVideo {
    /// Payload types of the codecs the compositor decodes.
    h264_pt: u8,
    vp8_pt: u8,
    senders: Vec<Sender>,
    units: Vec<Unit>,
    /// Senders gone since the host last looked.
    gone: Vec<ParticipantId>,
    packetizer: Packetizer,
    /// Packets of delivered frames, sent to every member at the next tick.
    outbox: Vec<Vec<u8>>,
    keyframe_wanted: bool,
    /// When the last member joined (or opened its channel): the keyframes of
    /// [`KEYFRAMES_AFTER_JOIN`] follow it; and how many of them went.
    joined: Option<Instant>,
    join_keyframes: usize,
    members_seen: Vec<ParticipantId>,
    /// Members' estimates (REMB), and the composite's bitrate: the last set and when,
    /// and one waiting for the host.
    estimates: Vec<(ParticipantId, u64)>,
    rate: Option<(u32, Instant)>,
    new_rate: Option<u32>,
    /// Senders' simulcast layers, lowest first.
    simulcast: Vec<(ParticipantId, Vec<u32>)>,
    pub stats: CompositeStats,
}

impl CompositeVideo {
    /// The composite goes out as H.264 with `h264_pt` under `ssrc`; senders may send H.264
    /// (`h264_pt`) or VP8 (`vp8_pt`).
    pub fn new(ssrc: u32, h264_pt: u8, vp8_pt: u8) -> CompositeVideo {
        Self::with_output(ssrc, h264_pt, vp8_pt, VideoCodec::H264)
    }

    /// Like [`CompositeVideo::new`], with the output in `codec` (a transcoded stream).
    pub fn with_output(ssrc: u32, h264_pt: u8, vp8_pt: u8, codec: VideoCodec) -> CompositeVideo {
        let cfg = |payload_type| PacketizerConfig {
            ssrc,
            payload_type,
            first_seq: (ssrc >> 8) as u16,
            mtu: MTU,
        };
        let packetizer = match codec {
            VideoCodec::H264 => Packetizer::H264(
                H264Packetizer::new(cfg(h264_pt)).expect("1200 bytes hold an FU-A"),
            ),
            VideoCodec::Vp8 => Packetizer::Vp8(
                Vp8Packetizer::new(cfg(vp8_pt), (ssrc >> 4) as u16)
                    .expect("1200 bytes hold a VP8 descriptor"),
            ),
        };
        CompositeVideo {
            h264_pt,
            vp8_pt,
            senders: Vec::new(),
            units: Vec::new(),
            gone: Vec::new(),
            packetizer,
            outbox: Vec::new(),
            keyframe_wanted: true,
            joined: None,
            join_keyframes: 0,
            members_seen: Vec::new(),
            estimates: Vec::new(),
            rate: None,
            new_rate: None,
            simulcast: Vec::new(),
            stats: CompositeStats::default(),
        }
    }

    /// A sender's video packet: into its depacketizer; a whole unit waits for the host.
    pub fn on_video(&mut self, now: Instant, src: ParticipantId, pkt: &RtpView<'_>) {
        if self.wanted_layer(src).is_some_and(|l| l != pkt.ssrc()) {
            self.stats.other_layer += 1;
            return;
        }
        let codec = match pkt.payload_type() {
            pt if pt == self.h264_pt => VideoCodec::H264,
            pt if pt == self.vp8_pt => VideoCodec::Vp8,
            _ => {
                self.stats.unknown_codec += 1;
                return;
            }
        };
        let i = match self
            .senders
            .iter()
            .position(|s| s.id == src && s.codec == codec)
        {
            Some(i) => i,
            None => {
                self.senders.retain(|s| s.id != src);
                self.senders.push(Sender {
                    id: src,
                    codec,
                    ssrc: pkt.ssrc(),
                    depack: match codec {
                        VideoCodec::H264 => Depacketizer::H264(H264Depacketizer::new()),
                        VideoCodec::Vp8 => Depacketizer::Vp8(Vp8Depacketizer::new()),
                    },
                    ask: true,
                    last_pli: None,
                });
                self.senders.len() - 1
            }
        };
        let s = &mut self.senders[i];
        s.ssrc = pkt.ssrc();
        if let Some(frame) = s.depack.push(pkt) {
            if self.units.len() >= UNITS_MAX {
                self.units.remove(0);
                self.stats.units_lost += 1;
            }
            self.units.push(Unit {
                sender: src,
                codec,
                frame,
                arrived: now,
            });
            self.stats.units += 1;
        }
        if s.depack.needs_keyframe() {
            s.ask = true;
        }
    }

    /// Feedback from member `src` about the composite: a PLI or FIR asks for a keyframe,
    /// a REMB is its estimate (the composite's bitrate follows the lowest).
    pub fn on_rtcp(&mut self, now: Instant, src: ParticipantId, data: &[u8]) {
        for p in mesh::rtcp::packets(data).map_while(Result::ok) {
            match p {
                Rtcp::Pli { .. } | Rtcp::Fir(_) => self.keyframe_wanted = true,
                Rtcp::Remb(r) => {
                    match self.estimates.iter_mut().find(|e| e.0 == src) {
                        Some(e) => e.1 = r.bits_per_sec,
                        None => self.estimates.push((src, r.bits_per_sec)),
                    }
                    self.rate_due(now);
                }
                _ => {}
            }
        }
    }

    /// Whether the composite's bitrate should move: the lowest estimate moved by more than
    /// [`RATE_CHANGE`], and the last move is [`RATE_EVERY`] old (each move costs the
    /// encoder a keyframe).
    fn rate_due(&mut self, now: Instant) {
        let Some(low) = self.estimates.iter().map(|e| e.1).min() else {
            return;
        };
        let bps = low.clamp(MIN_BPS, MAX_BPS) as u32;
        let moved = self
            .rate
            .is_none_or(|(r, _)| f64::from(bps.abs_diff(r)) > RATE_CHANGE * f64::from(r));
        let quiet = self
            .rate
            .is_none_or(|(_, at)| now.saturating_duration_since(at) >= RATE_EVERY);
        if moved && quiet {
            self.rate = Some((bps, now));
            self.new_rate = Some(bps);
        }
    }

    /// The composite's new bitrate, when it should change (bits/s).
    pub fn take_bitrate(&mut self) -> Option<u32> {
        self.new_rate.take()
    }

    /// Sender `src` sends simulcast on `layers` (lowest first): the composite decodes one,
    /// the one its tile needs.
    pub fn on_simulcast(&mut self, src: ParticipantId, layers: &[u32]) {
        self.simulcast.retain(|s| s.0 != src);
        if !layers.is_empty() {
            self.simulcast.push((src, layers.to_vec()));
        }
    }

    /// The SSRC of `src`'s layer the composite decodes, if it sends simulcast: a tile of a
    /// 2x2 grid or larger is at most 640x360, the middle of three encodings; alone, the
    /// top.
    fn wanted_layer(&self, src: ParticipantId) -> Option<u32> {
        let (_, layers) = self.simulcast.iter().find(|s| s.0 == src)?;
        let alone = self.members_seen.len() <= 2;
        let i = if alone {
            layers.len() - 1
        } else {
            (layers.len() - 1).min(1)
        };
        layers.get(i).copied()
    }

    /// The units that came since the last call, for the compositor.
    pub fn take_units(&mut self) -> Vec<Unit> {
        std::mem::take(&mut self.units)
    }

    /// Senders that left since the last call: their tiles go.
    pub fn take_gone(&mut self) -> Vec<ParticipantId> {
        std::mem::take(&mut self.gone)
    }

    /// A receiver's channel just opened: keyframes now and for the next two seconds.
    pub fn receiver_joined(&mut self, now: Instant) {
        self.joined = Some(now);
        self.join_keyframes = 0;
    }

    /// Whether a receiver asked for a keyframe (or joined) since the last call.
    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    /// The compositor wants a keyframe from `sender` (it just joined, fell behind or broke).
    pub fn ask_keyframe(&mut self, sender: ParticipantId) {
        if let Some(s) = self.senders.iter_mut().find(|s| s.id == sender) {
            s.ask = true;
        }
    }

    /// A composite frame from the compositor (H.264 Annex-B, or a VP8 frame), at RTP time
    /// `timestamp` (90 kHz): packetized once, sent to every member at the next tick.
    pub fn deliver(&mut self, access_unit: &[u8], timestamp: u32) {
        let mut packets = Vec::new();
        let done = match &mut self.packetizer {
            Packetizer::H264(p) => p.packetize(access_unit, timestamp, &mut packets),
            Packetizer::Vp8(p) => p.packetize(access_unit, timestamp, &mut packets),
        };
        if done.is_err() {
            return;
        }
        self.stats.frames_out += 1;
        for p in packets {
            // A packet the packetizer made always marshals.
            if let Ok(b) = p.marshal() {
                self.outbox.push(b.to_vec());
                self.stats.packets_out += 1;
            }
        }
    }

    /// Sends what was delivered to every member, asks senders for keyframes, and notes
    /// newcomers (they need a keyframe) and senders who left.
    pub fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        self.on_tick_to(now, members, members, out);
    }

    /// [`CompositeVideo::on_tick`] where only `receivers` get the output (a transcoded
    /// stream's); senders are kept while they are `members`.
    pub fn on_tick_to(
        &mut self,
        now: Instant,
        members: &[ParticipantId],
        receivers: &[ParticipantId],
        out: &mut PathOut<'_>,
    ) {
        if receivers.iter().any(|m| !self.members_seen.contains(m)) {
            self.receiver_joined(now);
        }
        if let Some(at) = self.joined {
            match KEYFRAMES_AFTER_JOIN.get(self.join_keyframes) {
                Some(&d) if now >= at + d => {
                    self.keyframe_wanted = true;
                    self.join_keyframes += 1;
                }
                Some(_) => {}
                None => self.joined = None,
            }
        }
        for s in self.senders.iter().filter(|s| !members.contains(&s.id)) {
            self.gone.push(s.id);
        }
        self.senders.retain(|s| members.contains(&s.id));
        self.estimates.retain(|e| members.contains(&e.0));
        self.simulcast.retain(|s| members.contains(&s.0));
        self.members_seen.clear();
        self.members_seen.extend_from_slice(receivers);
        let mut buf = [0u8; 12];
        for s in &mut self.senders {
            let due = s
                .last_pli
                .is_none_or(|t| now.saturating_duration_since(t) >= PLI_EVERY);
            if s.ask && due {
                if let Some(n) = rtcp_write::pli(&mut buf, FEEDBACK_SSRC, s.ssrc) {
                    out.send_rtcp(s.id, MediaKind::Video, &buf[..n]);
                    self.stats.plis_sent += 1;
                }
                s.ask = false;
                s.last_pli = Some(now);
            }
        }
        for p in self.outbox.drain(..) {
            for &m in receivers {
                out.send_media(m, MediaKind::Video, &p);
            }
        }
    }
}

#[cfg(test)]
#[path = "composite_tests.rs"]
mod tests;
