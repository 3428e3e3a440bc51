//! The transcoder path (MCU) of a conference, on the mesh.
//!
//! Each participant's Opus audio goes through its own adaptive [`JitterBuffer`] (with Opus
//! PLC and in-band FEC on gaps) and decoder. Every 20 ms the [`Transcoder`] mixes at 48 kHz:
//! - the audio of *talkers* (sources with a current talk run, [`mesh::talk`]) is summed with
//!   saturating, soft-clipped arithmetic, never wrap-around;
//! - each talker gets its own mix-minus: every other talker it may hear under smart duplex
//!   ([`mesh::talk::audible`], applied to receivers talking by push to talk, see
//!   [`mesh::talk::TalkDetector::duplex_run`]), never its own voice, encoded for it alone;
//! - everyone who is not talking shares one mix of all talkers, encoded once. So encoding cost
//!   grows with the number of talkers, not with the size of the room.
//!
//! Each receiver gets one RTP stream (its codec's payload type from `protocol::codec`, its
//! own SSRC and sequence) through [`mesh::PathOut`], which applies the receiver's scheduler and sender. Video is forwarded
//! to every other member, as the reflector would (hybrid mode).
//!
//! A muted member ([`Path::on_mute`]) is left out of every mix: its packets are not even
//! buffered, and its talk run ends. A listener's frames that its RFC 6464 level marks as
//! voiceless (background noise) are not decoded. The indicators come from the same place
//! as the mix: `speaking` edges, each talker's level every [`talk::LEVEL_PERIOD`], and the
//! dominant speaker ([`talk::DominantSpeaker`]).
//!
//! Video compositing (issue 14): [`layout`] gives the tiles of the grid, speaker and
//! presentation layouts and the canvas pictures are scaled onto; [`compositor`] decodes
//! every video sender on a rayon pool, draws the layout at a frame clock (a late sender
//! keeps its last picture) and encodes it once per output. Conferences do not use it yet:
//! the media server's `composite` mode, its RTP packetizing and its receivers are still to
//! be wired.
//!
//! Sans-IO: time comes in as `now`; nothing here reads the clock. Hostile input (empty,
//! truncated or corrupt Opus, absurd timestamps, other payload types) is counted and dropped;
//! it never panics.

mod codec;
pub mod composite;
pub mod compositor;
pub mod jitter;
pub mod layout;
mod mix;
mod record;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use codec::{Dec, Enc};
use codecs::opus::FRAME_SAMPLES;
use mesh::talk::{self, DominantSpeaker, LevelMeter, Levels, Run, TalkDetector, TalkEdge};
use mesh::{Endpoint, FastMap, Hasher, MediaKind, ParticipantId, Path, PathOut, RtpView};
use record::Recorded;

pub use codec::Codec;
pub use jitter::{JitterBuffer, JitterStats, Play};
pub use mix::{soft_clip, MixBus};

/// The mixing period.
pub const MIX_PERIOD: Duration = Duration::from_millis(20);
/// RFC 6464 extension id the transcoder reads (the id confclient and WebRTC use).
pub const AUDIO_LEVEL_EXT_ID: u8 = 1;
/// Energy VAD threshold on a decoded frame (mean square of samples); about -50 dBFS.
const VAD_MEAN_SQUARE: f64 = 32768.0 * 32768.0 * 1e-5;
/// Mix periods between quality reports (1 s).
const QUALITY_EVERY: u64 = 50;
/// Mix periods between level batches ([`talk::LEVEL_PERIOD`]).
const LEVELS_EVERY: u64 = (talk::LEVEL_PERIOD.as_millis() / MIX_PERIOD.as_millis()) as u64;
/// Packets in a row of a new payload type before a participant's codec changes.
const CODEC_SWITCH: u32 = 3;
/// More than this many mix periods behind: restart the cadence instead of catching up.
const MAX_CATCH_UP: u32 = 5;

/// Counters of one transcoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranscoderStats {
    pub mix_ticks: u64,
    /// Packets of a payload type other than Opus, or of a non-member: dropped.
    pub foreign: u64,
    /// Opus payloads the decoder refused: counted, and the frame concealed.
    pub decode_errors: u64,
    /// Mixes encoded (one shared plus one per talker per tick).
    pub encodes: u64,
    pub encode_errors: u64,
    pub packets_out: u64,
    /// Silent Opus frames of listeners that were not decoded (see [`SILENT_OPUS_BYTES`]),
    /// and frames their RFC 6464 level marked voiceless.
    pub silence_skipped: u64,
    /// Packets of muted members: dropped before the jitter buffer.
    pub muted: u64,
}

/// Opus frames this small carry no audible signal: libopus codes a 20 ms frame of digital
/// silence in 3 bytes (a TOC-only packet is DTX), while even -60 dBFS noise takes about 70.
/// A listener's such frames are not decoded, so a room of silent senders costs no more
/// than a room of DTX listeners; a talker's are, to keep its decoder state exact.
pub const SILENT_OPUS_BYTES: usize = 3;

/// One source: its buffer, decoder, talk runs and, while it talks, its own mix-minus.
struct Source {
    /// What the participant sends, and so receives (Opus until a packet says otherwise).
    codec: Codec,
    jitter: JitterBuffer,
    decoder: Option<Dec>,
    talk: TalkDetector,
    /// A marker bit or RFC 6464 voice flag seen since the last mix.
    marker: bool,
    level_voice: Option<bool>,
    /// The loudest RFC 6464 level since the last mix, when the sender sends it.
    level: Option<u8>,
    /// Peak level over the current level period.
    meter: LevelMeter,
    /// Muted: left out of every mix, its packets dropped.
    muted: bool,
    /// This tick's decoded frame, when there is one.
    pcm: Vec<i16>,
    has_frame: bool,
    /// A push-to-talk edge not yet reported as `speaking`.
    pending_edges: Vec<TalkEdge>,
    /// Encoder of this participant's own mix-minus while talking.
    encoder: Option<Enc>,
    /// Outgoing stream to this participant.
    ssrc: u32,
    seq: u16,
    sent_any: bool,
    /// Jitter-buffer counters at the last quality report.
    reported: JitterStats,
    /// Packets in a row of another codec than `codec`.
    codec_change: Option<(Codec, u32)>,
}

impl Source {
    fn new(id: ParticipantId) -> Self {
        Self {
            codec: Codec::Opus,
            jitter: JitterBuffer::new(),
            decoder: Dec::new(Codec::Opus),
            talk: TalkDetector::new(),
            marker: false,
            level_voice: None,
            level: None,
            meter: LevelMeter::default(),
            muted: false,
            pcm: vec![0; FRAME_SAMPLES],
            has_frame: false,
            pending_edges: Vec::new(),
            encoder: None,
            ssrc: 0x4d49_5800 ^ id.rotate_left(8),
            seq: (id as u16).wrapping_mul(7919),
            sent_any: false,
            reported: JitterStats::default(),
            codec_change: None,
        }
    }

    /// Switches to the codec the participant's packets carry.
    fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
        self.decoder = Dec::new(codec);
        self.jitter = JitterBuffer::with_clock(codec.clock());
        self.reported = JitterStats::default();
        self.encoder = None;
        self.codec_change = None;
    }

    /// Pops and decodes this tick's frame; true when there is audio.
    fn decode(&mut self, now: Instant, stats: &mut TranscoderStats) -> bool {
        let Some(dec) = self.decoder.as_mut() else {
            return false;
        };
        // A listener's voiceless frame (by its sender's level) is not worth decoding.
        let quiet = self.jitter.next_is_quiet();
        let res = match self.jitter.pop(now) {
            Play::Idle => return false,
            Play::Packet(p)
                if self.codec == Codec::Opus
                    && (p.len() <= SILENT_OPUS_BYTES || quiet)
                    && self.talk.run().is_none() =>
            {
                stats.silence_skipped += 1;
                return false;
            }
            Play::Packet(p) => dec.decode(p),
            Play::Fec(p) => dec.fec(p),
            Play::Conceal => dec.conceal(),
        };
        if let Ok(pcm) = res {
            copy_frame(&mut self.pcm, pcm);
            return true;
        }
        stats.decode_errors += 1;
        match dec.conceal() {
            Ok(pcm) => {
                copy_frame(&mut self.pcm, pcm);
                true
            }
            Err(_) => false,
        }
    }

    /// The next RTP header to this participant; `index` counts mix periods.
    fn header(&mut self, index: u32) -> [u8; 12] {
        let ts = index.wrapping_mul(self.codec.frame_ts());
        let mut h = [0u8; 12];
        h[0] = 0x80;
        h[1] = self.codec.payload_type() | if self.sent_any { 0 } else { 0x80 };
        h[2..4].copy_from_slice(&self.seq.to_be_bytes());
        h[4..8].copy_from_slice(&ts.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.sent_any = true;
        h
    }
}

/// The mixing path of one conference. See the crate docs.
pub struct Transcoder {
    sources: FastMap<ParticipantId, Source>,
    /// The membership `sources` was synced to.
    members: Vec<ParticipantId>,
    next_mix: Option<Instant>,
    /// Mix periods so far: every outgoing stream's timestamp is this times its frame length.
    mix_index: u32,
    /// The shared mix of non-talkers, one encoder per codec in use ([`Codec::index`]).
    shared: [Option<Enc>; 3],
    bus: MixBus,
    /// Scratch: this tick's talkers as (id, run, duplex run).
    talkers: Vec<(ParticipantId, Run, Option<Run>)>,
    packet: Vec<u8>,
    /// Scratch for one level period's batch.
    levels: Levels,
    dominant: DominantSpeaker,
    stats: TranscoderStats,
    /// The all-party mix kept for a recording, when one runs.
    recorded: Option<Recorded>,
    /// Mixes for the recorder alone: sends nothing and reports nothing (the reflector of a
    /// reflect room does that).
    silent: bool,
    /// Who gets a mix: every member (`None`), or only these (a reflect room's
    /// single-stream endpoints; nobody for a recording's mixer).
    receivers: Option<Vec<ParticipantId>>,
    /// Cascading: link ends (they get every client's audio as it came, for their server
    /// to mix) and mirrored members (mixed here, never mixed for), by id.
    links: Vec<(ParticipantId, Endpoint)>,
}

impl Default for Transcoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Transcoder {
    pub fn new() -> Self {
        Self::with_hasher(Hasher::default())
    }

    /// A transcoder whose source map is keyed by `hasher` (seeded in a test that must repeat
    /// exactly; `new` keeps random keys).
    pub fn with_hasher(hasher: Hasher) -> Self {
        Self {
            sources: hasher.map(),
            members: Vec::new(),
            next_mix: None,
            mix_index: 0,
            shared: [None, None, None],
            bus: MixBus::new(FRAME_SAMPLES),
            talkers: Vec::new(),
            packet: Vec::with_capacity(1500),
            levels: Levels::new(),
            dominant: DominantSpeaker::new(),
            stats: TranscoderStats::default(),
            recorded: None,
            silent: false,
            receivers: None,
            links: Vec::new(),
        }
    }

    pub fn stats(&self) -> TranscoderStats {
        self.stats
    }

    /// A transcoder that mixes for some members only ([`Transcoder::set_receivers`]), in a
    /// room whose other members get forwarded audio: it reports no indicators (the
    /// reflector does).
    pub fn for_some() -> Self {
        let mut t = Self::new();
        t.silent = true;
        t.receivers = Some(Vec::new());
        t
    }

    /// The members that get a mix (each its mix-minus, as in a mixed room).
    pub fn set_receivers(&mut self, receivers: &[ParticipantId]) {
        let r = self.receivers.get_or_insert_with(Vec::new);
        r.clear();
        r.extend_from_slice(receivers);
    }

    /// Whether `id` gets a mix.
    fn gets(&self, id: ParticipantId) -> bool {
        self.receivers.as_ref().is_none_or(|r| r.contains(&id)) && !self.is_link(id)
    }

    /// A link's end or a mirrored member: no mix is made for it.
    fn is_link(&self, id: ParticipantId) -> bool {
        self.links.iter().any(|&(p, _)| p == id)
    }

    /// The jitter-buffer counters of one source.
    pub fn jitter_stats(&self, p: ParticipantId) -> Option<JitterStats> {
        self.sources.get(&p).map(|s| s.jitter.stats())
    }

    /// Current jitter-buffer depth and target of one source, in ms.
    pub fn jitter_depth(&self, p: ParticipantId) -> Option<(u32, u32)> {
        self.sources
            .get(&p)
            .map(|s| (s.jitter.depth_ms(), s.jitter.target_ms()))
    }

    /// Whether a participant is muted (left out of every mix).
    pub fn is_muted(&self, p: ParticipantId) -> bool {
        self.sources.get(&p).is_some_and(|s| s.muted)
    }

    /// The current talk run of a participant.
    pub fn talk_run(&self, p: ParticipantId) -> Option<Run> {
        self.sources.get(&p).and_then(|s| s.talk.run())
    }

    /// Brings the sources in line with the membership. Cheap when nothing changed: one
    /// slice compare, as in the reflector.
    fn sync(&mut self, members: &[ParticipantId]) {
        if self.members == members {
            return;
        }
        self.members.clear();
        self.members.extend_from_slice(members);
        let keep: HashSet<ParticipantId> = members.iter().copied().collect();
        self.sources.retain(|id, _| keep.contains(id));
        self.links.retain(|(id, _)| keep.contains(id));
        if let Some(p) = self.dominant.current().filter(|p| !keep.contains(p)) {
            self.dominant.forget(p);
        }
        for &m in members {
            self.sources.entry(m).or_insert_with(|| Source::new(m));
        }
    }

    /// One 20 ms mix: decode, detect talk, mix, encode, send.
    fn mix(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        self.stats.mix_ticks += 1;
        self.talkers.clear();
        for &id in members {
            let Some(s) = self.sources.get_mut(&id) else {
                continue;
            };
            // Push-to-talk edges since the last mix, in order (a mute's end of run too).
            for e in s.pending_edges.drain(..) {
                if !self.silent {
                    out.speaking(id, matches!(e, TalkEdge::Started(_)));
                }
            }
            if s.muted {
                s.has_frame = false;
                continue;
            }
            s.has_frame = s.decode(now, &mut self.stats);
            let level = s.level.take();
            let voice = match s.level_voice.take() {
                Some(v) => v,
                None => {
                    let ms = if s.has_frame {
                        mean_square(&s.pcm)
                    } else {
                        0.0
                    };
                    if s.has_frame && s.talk.run().is_some() {
                        s.meter.add_dbov(talk::dbov_of_mean_square(ms));
                    }
                    ms > VAD_MEAN_SQUARE
                }
            };
            if let Some(l) = level {
                s.meter.add_rfc6464(l);
            }
            let marker = std::mem::take(&mut s.marker);
            let edge = if s.has_frame || marker {
                s.talk.observe(now, marker, voice)
            } else {
                s.talk.expire(now)
            };
            match edge {
                _ if self.silent => {}
                Some(TalkEdge::Started(_)) => out.speaking(id, true),
                Some(TalkEdge::Stopped) => out.speaking(id, false),
                None => {}
            }
            if let Some(run) = s.talk.run() {
                self.talkers.push((id, run, s.talk.duplex_run()));
            }
        }
        if !self.silent && self.stats.mix_ticks % QUALITY_EVERY == 0 {
            self.report_quality(members, out);
        }
        if !self.silent && self.stats.mix_ticks % LEVELS_EVERY == 0 {
            self.report_levels(now, members, out);
        }
        let ts = self.mix_index;
        self.mix_index = self.mix_index.wrapping_add(1);

        // The shared mix: every talker's audio, for everyone not talking, encoded once per
        // codec that a listener uses.
        self.bus.clear();
        for &(id, _, _) in &self.talkers {
            if let Some(s) = self.sources.get(&id).filter(|s| s.has_frame) {
                self.bus.add(&s.pcm);
            }
        }
        if self.recorded.is_some() {
            self.record_mix(now);
        }
        if self.receivers.as_ref().is_some_and(Vec::is_empty) {
            return;
        }
        if members.len() > self.talkers.len() {
            let pcm = self.bus.output();
            for codec in Codec::ALL {
                let listens = |s: &Source| s.codec == codec && s.talk.run().is_none();
                let (receivers, links) = (&self.receivers, &self.links);
                let gets = |id: &ParticipantId| {
                    receivers.as_ref().is_none_or(|r| r.contains(id))
                        && !links.iter().any(|(p, _)| p == id)
                };
                if !members
                    .iter()
                    .any(|id| gets(id) && self.sources.get(id).is_some_and(listens))
                {
                    continue;
                }
                let slot = &mut self.shared[codec.index()];
                if slot.is_none() {
                    *slot = Enc::new(codec);
                }
                let Some(enc) = slot.as_mut() else {
                    self.stats.encode_errors += 1;
                    continue;
                };
                self.stats.encodes += 1;
                let Ok(payload) = enc.encode(pcm) else {
                    self.stats.encode_errors += 1;
                    continue;
                };
                for &id in members {
                    if !gets(&id) {
                        continue;
                    }
                    let Some(s) = self.sources.get_mut(&id).filter(|s| listens(s)) else {
                        continue;
                    };
                    self.packet.clear();
                    self.packet.extend_from_slice(&s.header(ts));
                    self.packet.extend_from_slice(payload);
                    if out.send(id, &self.packet) {
                        self.stats.packets_out += 1;
                    }
                }
            }
        }

        // One mix-minus per talker, with smart duplex.
        for i in 0..self.talkers.len() {
            let (rid, _, rduplex) = self.talkers[i];
            if !self.gets(rid) {
                continue;
            }
            self.bus.clear();
            for &(sid, srun, _) in &self.talkers {
                if sid == rid || !talk::audible(rduplex, srun) {
                    continue;
                }
                if let Some(s) = self.sources.get(&sid).filter(|s| s.has_frame) {
                    self.bus.add(&s.pcm);
                }
            }
            let Some(r) = self.sources.get_mut(&rid) else {
                continue;
            };
            if r.encoder.is_none() {
                r.encoder = Enc::new(r.codec);
            }
            let head = r.header(ts);
            let Some(enc) = r.encoder.as_mut() else {
                self.stats.encode_errors += 1;
                continue;
            };
            self.stats.encodes += 1;
            let payload = match enc.encode(self.bus.output()) {
                Ok(p) => p,
                Err(_) => {
                    self.stats.encode_errors += 1;
                    continue;
                }
            };
            self.packet.clear();
            self.packet.extend_from_slice(&head);
            self.packet.extend_from_slice(payload);
            if out.send(rid, &self.packet) {
                self.stats.packets_out += 1;
            }
        }
    }
}

impl Transcoder {
    /// The talkers' peak levels over the last period, and a change of dominant speaker:
    /// the talker whose run began last, once it has held on (hysteresis).
    fn report_levels(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        self.levels.clear();
        let mut latest: Option<(ParticipantId, Run, Option<Instant>)> = None;
        for &id in members {
            let Some(s) = self.sources.get_mut(&id) else {
                continue;
            };
            let peak = s.meter.take();
            let Some(run) = s.talk.run() else {
                continue;
            };
            if let Some(db) = peak {
                self.levels.push(id, db);
            }
            if latest.is_none_or(|(_, r, _)| run.start > r.start) {
                latest = Some((id, run, s.talk.last_voice(now)));
            }
        }
        out.levels(&self.levels);
        if let Some(p) = self.dominant.update(now, latest.map(|(p, _, v)| (p, v))) {
            out.dominant(p);
        }
    }

    /// The dominant speaker now, as last reported.
    pub fn dominant_speaker(&self) -> Option<ParticipantId> {
        self.dominant.current()
    }

    /// Loss and jitter of every source that sent during the last interval.
    fn report_quality(&mut self, members: &[ParticipantId], out: &mut PathOut<'_>) {
        for &id in members {
            let Some(s) = self.sources.get_mut(&id) else {
                continue;
            };
            let now = s.jitter.stats();
            let was = std::mem::replace(&mut s.reported, now);
            if now.received == was.received {
                continue;
            }
            let bad = (now.concealed - was.concealed) + (now.fec - was.fec) + (now.late - was.late);
            let frames =
                (now.played - was.played) + (now.concealed - was.concealed) + (now.fec - was.fec);
            let loss = (bad * 1000).checked_div(frames).unwrap_or(0).min(1000) as u32;
            out.quality(id, loss, s.jitter.jitter_ms().round() as u32);
        }
    }
}

/// Copies a decoded frame into a 20 ms mix frame, cutting or padding other durations.
fn copy_frame(dst: &mut [i16], src: &[i16]) {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(0);
}

fn mean_square(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    pcm.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / pcm.len() as f64
}

impl Path for Transcoder {
    fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        if kind == MediaKind::Video {
            // Hybrid mode: video is forwarded as the reflector would.
            out.extend(members.iter().copied().filter(|&m| m != src));
            return;
        }
        self.sync(members);
        let Some(s) = self.sources.get_mut(&src) else {
            self.stats.foreign += 1;
            return;
        };
        if s.muted {
            self.stats.muted += 1;
            return;
        }
        let Some(codec) = Codec::from_payload_type(pkt.payload_type()) else {
            self.stats.foreign += 1;
            return;
        };
        if codec != s.codec {
            // The first packet sets the codec; later, a change must persist for a few
            // packets, so a stray payload type cannot flip a participant's codec.
            let (c, n) = s.codec_change.unwrap_or((codec, 0));
            let n = if c == codec { n + 1 } else { 1 };
            if s.jitter.stats().received == 0 || n >= CODEC_SWITCH {
                s.set_codec(codec);
            } else {
                s.codec_change = Some((codec, n));
                self.stats.foreign += 1;
                return;
            }
        }
        s.codec_change = None;
        s.marker |= pkt.marker();
        let mut quiet = false;
        if let Some((v, level)) = talk::audio_level(pkt, AUDIO_LEVEL_EXT_ID) {
            let voice = v || level <= talk::LEVEL_VOICE_MAX;
            s.level_voice = Some(s.level_voice.unwrap_or(false) | voice);
            s.level = Some(s.level.map_or(level, |l| l.min(level)));
            quiet = !voice;
        }
        s.jitter
            .push_marked(now, pkt.timestamp(), pkt.payload(), quiet);
        // Cascading: audio goes as it came, once, to each end that takes it (a linked
        // server or another worker's part of the room, by `Endpoint::receives`), which
        // mixes it for its own members.
        if !self.links.is_empty() {
            let from = self
                .links
                .iter()
                .find(|&&(p, _)| p == src)
                .map_or(Endpoint::Client, |&(_, e)| e);
            out.extend(
                self.links
                    .iter()
                    .filter(|(_, e)| e.is_end() && e.receives(from))
                    .map(|&(p, _)| p),
            );
        }
    }

    fn on_endpoint(&mut self, _now: Instant, participant: ParticipantId, endpoint: Endpoint) {
        self.links.retain(|&(p, _)| p != participant);
        if endpoint.is_link() {
            self.links.push((participant, endpoint));
        }
    }

    fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        self.sync(members);
        let next = *self.next_mix.get_or_insert(now);
        if now < next {
            return;
        }
        let behind = now.saturating_duration_since(next).as_millis() / MIX_PERIOD.as_millis();
        if behind > u128::from(MAX_CATCH_UP) {
            // A stall: restart the cadence rather than mixing a burst.
            self.next_mix = Some(now + MIX_PERIOD);
            self.mix(now, members, out);
            return;
        }
        let mut t = next;
        while t <= now {
            self.mix(t, members, out);
            t += MIX_PERIOD;
        }
        self.next_mix = Some(t);
    }

    fn on_mute(&mut self, now: Instant, participant: ParticipantId, muted: bool) {
        let s = self
            .sources
            .entry(participant)
            .or_insert_with(|| Source::new(participant));
        if s.muted == muted {
            return;
        }
        s.muted = muted;
        // What was buffered before (or while) muted must not play afterwards.
        s.jitter = JitterBuffer::with_clock(s.codec.clock());
        s.reported = JitterStats::default();
        s.level_voice = None;
        s.level = None;
        s.marker = false;
        s.meter.clear();
        if muted {
            if let Some(edge) = s.talk.stop(now) {
                s.pending_edges.push(edge);
            }
        }
    }

    fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        let s = self
            .sources
            .entry(participant)
            .or_insert_with(|| Source::new(participant));
        // The edge is reported as `speaking` at the next mix, from the run's state change;
        // a muted member's push to talk starts nothing.
        if let Some(edge) = s.talk.control(now, on && !s.muted) {
            // Bounded: a client flooding talk lines keeps only the latest edges.
            if s.pending_edges.len() >= 8 {
                s.pending_edges.remove(0);
            }
            s.pending_edges.push(edge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_is_forwarded_audio_is_mixed() {
        let mut t = Transcoder::new();
        let data = [0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9];
        let pkt = RtpView::parse(&data).unwrap();
        let mut out = Vec::new();
        let now = Instant::now();
        t.route(now, 2, MediaKind::Video, &pkt, &[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 3]);
        out.clear();
        // Audio of an unknown payload type: counted, not routed.
        t.route(now, 2, MediaKind::Audio, &pkt, &[1, 2, 3], &mut out);
        assert!(out.is_empty());
        assert_eq!(t.stats().foreign, 1);
        assert!(t.talk_run(2).is_none());
        t.on_talk(now, 2, true);
        assert_eq!(t.talk_run(2), Some(Run { start: now }));
    }

    #[test]
    fn codecs_map_payload_types_and_clocks() {
        assert_eq!(Codec::from_payload_type(111), Some(Codec::Opus));
        assert_eq!(
            Codec::from_payload_type(0),
            Some(Codec::G711(codecs::g711::Law::Mu))
        );
        assert_eq!(Codec::from_payload_type(96), None);
        for c in Codec::ALL {
            assert_eq!(Codec::ALL[c.index()], c);
            assert_eq!(Codec::from_payload_type(c.payload_type()), Some(c));
            assert_eq!(c.frame_ts() * 50, c.clock());
        }
        // The G.711 library's own view of its static payload types agrees with the table.
        for law in [codecs::g711::Law::Mu, codecs::g711::Law::A] {
            assert_eq!(Codec::G711(law).payload_type(), law.payload_type());
            assert_eq!(
                codecs::g711::Law::from_payload_type(law.payload_type()),
                Some(law)
            );
            assert_eq!(Codec::G711(law).rtp().name, law.name());
        }
    }
}
