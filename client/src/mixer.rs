//! The receive side: a per-stream jitter buffer and a mixer onto one wall-clock timeline.
//!
//! Sans-IO: time comes in as a sample position (48 kHz samples since the session started),
//! so tests drive it with synthetic packets and exact times. Each SSRC is placed by its RTP
//! timestamp relative to its first packet, anchored at that packet's arrival plus a
//! playout delay: fixed ([`Mixer::new`]), or adaptive per stream ([`Mixer::adaptive`], what
//! confclient uses, as the media server's mixer does): a packet that comes too late grows
//! the delay by its lateness (the gap this opens is concealed, and the packet still plays),
//! and a stream whose packets all came well ahead of time for [`CALM_WINDOW`] drops one
//! frame to shrink it again. Packets wait in a per-stream buffer until their playout time, then are
//! decoded in order by the stream's own Opus decoder, so reordering within the delay is
//! harmless; a packet still missing at its playout time is concealed (Opus PLC, silence
//! after [`MAX_PLC_FRAMES`]) so later audio keeps its place. Streams are summed with
//! saturation; positions nobody covered are silence.

use crate::packet::RtpIn;
use bytes::Bytes;
use codecs::g711::{Law, TelephonyDecoder};
use codecs::opus::{Decoder, FRAME_SAMPLES, SAMPLE_RATE};
use codecs::CodecError;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Default playout delay: 60 ms absorbs loopback and LAN jitter without audible latency.
pub const PLAYOUT_DELAY: u64 = SAMPLE_RATE as u64 * 60 / 1000;
/// Consecutive 20 ms frames concealed with PLC before a gap is left silent (PLC fades out
/// anyway, and a long gap is a pause rather than loss).
pub const MAX_PLC_FRAMES: u32 = 5;
/// A packet further than this behind its playout time, or ahead of it, restarts the
/// stream's timing (the sender restarted or jumped its timestamps).
const RESYNC_BEHIND: i64 = SAMPLE_RATE as i64;
const RESYNC_AHEAD: i64 = 3 * SAMPLE_RATE as i64;
/// A sequence jump beyond this is a sender restart, not loss.
const SEQ_RESTART: i64 = 3_000;
/// How many recent sequence numbers are remembered to spot duplicates.
const SEQ_MEMORY: i64 = 2_048;
/// Bounds on what a misbehaving sender can make us hold.
const MAX_STREAMS: usize = 256;
const MAX_PENDING: usize = 512;
/// Concealment works in 2.5 ms steps.
const PLC_STEP: u64 = 120;
/// Adaptive playout: where a stream starts, and its bounds.
pub const ADAPTIVE_START: u64 = SAMPLE_RATE as u64 * 20 / 1000;
pub const ADAPTIVE_MIN: u64 = SAMPLE_RATE as u64 * 20 / 1000;
pub const ADAPTIVE_MAX: u64 = SAMPLE_RATE as u64 * 400 / 1000;
/// Growing adds this much on top of a late packet's lateness, so the next one like it is
/// in time.
const GROW_MARGIN: u64 = SAMPLE_RATE as u64 * 10 / 1000;
/// A stream shrinks by a frame when, for this long, every packet came at least a frame and
/// [`SHRINK_MARGIN`] ahead of its playout time.
pub const CALM_WINDOW: u64 = 2 * SAMPLE_RATE as u64;
const SHRINK_MARGIN: i64 = SAMPLE_RATE as i64 * 5 / 1000;

/// Receive counters, summed over streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Distinct RTP packets accepted (duplicates excluded, late ones included).
    pub packets: u64,
    /// SSRCs seen.
    pub streams: usize,
    /// Packets never received, from sequence-number gaps (RFC 3550 cumulative loss).
    pub lost: u64,
    /// Packets that arrived after their playout time and were dropped.
    pub late: u64,
    /// Copies of packets already received, dropped.
    pub duplicates: u64,
    /// 20 ms frames (or shorter gaps) filled by PLC.
    pub concealed: u64,
    /// Payloads the Opus decoder refused (concealed instead).
    pub decode_errors: u64,
    /// Packets dropped because too many streams or buffered packets were held.
    pub overflow: u64,
    /// Adaptive playout: times a stream's delay grew for a late packet, and frames dropped
    /// to shrink it when calm.
    pub grown: u64,
    pub shrunk: u64,
}

/// Bounds of an adaptive playout delay, in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Adapt {
    min: u64,
    max: u64,
}

/// Unwraps a wrapping counter (16-bit sequence or 32-bit timestamp) to an i64.
fn unwrap(prev: i64, value: i64, modulus: i64) -> i64 {
    let half = modulus / 2;
    let delta = (value - prev).rem_euclid(modulus);
    let delta = if delta >= half {
        delta - modulus
    } else {
        delta
    };
    prev + delta
}

/// Sequence-number accounting for one stream.
#[derive(Debug)]
struct SeqStats {
    base: i64,
    max: i64,
    received: u64,
    /// Loss counted before a sender restart.
    lost_before: u64,
    recent: BTreeSet<i64>,
}

impl SeqStats {
    fn new(seq: u16) -> Self {
        let s = i64::from(seq);
        SeqStats {
            base: s,
            max: s - 1,
            received: 0,
            lost_before: 0,
            recent: BTreeSet::new(),
        }
    }

    /// Records `seq`; false when it is a duplicate.
    fn record(&mut self, seq: u16) -> bool {
        let mut ext = unwrap(self.max, i64::from(seq), 1 << 16);
        if (ext - self.max).abs() > SEQ_RESTART {
            self.lost_before = self.lost();
            *self = SeqStats {
                lost_before: self.lost_before,
                ..SeqStats::new(seq)
            };
            ext = i64::from(seq);
        }
        if !self.recent.insert(ext) {
            return false;
        }
        self.received += 1;
        if ext > self.max {
            self.max = ext;
            let floor = self.max - SEQ_MEMORY;
            while self.recent.first().is_some_and(|&s| s < floor) {
                self.recent.pop_first();
            }
        }
        true
    }

    fn lost(&self) -> u64 {
        let expected = u64::try_from(self.max - self.base + 1).unwrap_or(0);
        self.lost_before + expected.saturating_sub(self.received)
    }
}

/// A stream's decoder to 48 kHz: Opus, or G.711 for a telephony client.
#[derive(Debug)]
enum StreamDecoder {
    Opus(Decoder),
    G711(Box<TelephonyDecoder>),
}

impl StreamDecoder {
    fn decode(&mut self, payload: &[u8]) -> Result<&[i16], CodecError> {
        match self {
            StreamDecoder::Opus(d) => d.decode(payload),
            StreamDecoder::G711(d) => d.decode(payload),
        }
    }

    fn conceal(&mut self, len: usize) -> Result<&[i16], CodecError> {
        match self {
            StreamDecoder::Opus(d) => d.conceal(len),
            // G.711 has no concealment: silence, at most one frame.
            StreamDecoder::G711(d) => d.conceal().map(|pcm| &pcm[..len.min(pcm.len())]),
        }
    }
}

/// One SSRC's jitter buffer and decoder.
#[derive(Debug)]
struct Stream {
    decoder: Option<StreamDecoder>,
    /// 48 kHz samples per RTP timestamp tick (1 for Opus, 6 for 8 kHz G.711).
    ts_scale: i64,
    /// Timeline position of the timestamp `base_ts`.
    anchor: u64,
    base_ts: i64,
    max_ts: i64,
    /// Where the next decoded sample of this stream goes.
    next_pos: u64,
    /// Packets waiting for their playout time, by timeline position.
    pending: BTreeMap<u64, Bytes>,
    /// Frames concealed since the last real packet.
    concealed_run: u32,
    seq: SeqStats,
    /// Playout delay now, in samples.
    delay: u64,
    /// Smallest slack (playout position minus arrival) of this calm window, and where the
    /// window ends.
    min_slack: i64,
    window_end: u64,
    /// RFC 3550 interarrival jitter, in samples, and the last (arrival, media time).
    jitter: f64,
    last_transit: Option<i64>,
}

impl Stream {
    fn new(pkt: &RtpIn, now: u64, delay: u64, decode: bool, law: Option<Law>) -> Self {
        let decoder = if decode {
            match law {
                None => Decoder::new().map(StreamDecoder::Opus),
                Some(l) => TelephonyDecoder::new(l).map(|d| StreamDecoder::G711(Box::new(d))),
            }
            .map_err(|e| tracing::warn!(ssrc = pkt.ssrc, "no decoder, not mixing: {e}"))
            .ok()
        } else {
            None
        };
        let ts = i64::from(pkt.timestamp);
        Stream {
            decoder,
            ts_scale: if law.is_some() { 6 } else { 1 },
            anchor: now + delay,
            base_ts: ts,
            max_ts: ts,
            next_pos: now + delay,
            pending: BTreeMap::new(),
            concealed_run: 0,
            seq: SeqStats::new(pkt.seq),
            delay,
            min_slack: i64::MAX,
            window_end: now + CALM_WINDOW,
            jitter: 0.0,
            last_transit: None,
        }
    }

    /// Moves this stream's playout later by `by` samples: what is buffered keeps its place
    /// relative to the others, and the gap that opens before it is concealed.
    fn grow(&mut self, by: u64) {
        self.delay += by;
        self.anchor += by;
        self.pending = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(k, v)| (k + by, v))
            .collect();
        self.min_slack = i64::MAX;
    }

    /// Moves this stream's playout one frame earlier; the frame that now overlaps what was
    /// played is dropped. Returns whether it shrank.
    fn shrink(&mut self, a: Adapt, floor: u64) -> bool {
        let by = FRAME_SAMPLES as u64;
        if self.delay < a.min + by {
            return false;
        }
        self.delay -= by;
        self.anchor -= by;
        self.pending = std::mem::take(&mut self.pending)
            .into_iter()
            .filter_map(|(k, v)| (k >= by && k - by >= floor).then(|| (k - by, v)))
            .collect();
        true
    }

    /// Records a packet's slack (how far ahead of what this stream plays next it came)
    /// and, at the end of a calm window, shrinks the delay.
    fn observe(&mut self, slack: i64, now: u64, a: Adapt, floor: u64, stats: &mut MixStats) {
        self.min_slack = self.min_slack.min(slack);
        if now < self.window_end {
            return;
        }
        let calm =
            self.min_slack != i64::MAX && self.min_slack > FRAME_SAMPLES as i64 + SHRINK_MARGIN;
        if calm && self.shrink(a, floor) {
            stats.shrunk += 1;
        }
        self.min_slack = i64::MAX;
        self.window_end = now + CALM_WINDOW;
    }

    /// RFC 3550 interarrival jitter from a packet's arrival and media time.
    fn measure(&mut self, now: u64, media: i64) {
        let transit = now as i64 - media;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            if d < SAMPLE_RATE as f64 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Restarts timing so that `ts` plays at `now + delay`.
    fn resync(&mut self, ts: i64, now: u64, delay: u64) {
        self.last_transit = None;
        self.anchor = now + delay;
        self.base_ts = ts;
        self.max_ts = ts;
        self.next_pos = self.next_pos.max(now);
        self.pending.clear();
    }

    /// Timeline position of a timestamp, after unwrapping.
    fn position(&mut self, timestamp: u32) -> (i64, i64) {
        let ext = unwrap(self.max_ts, i64::from(timestamp), 1 << 32);
        self.max_ts = self.max_ts.max(ext);
        (
            ext,
            self.anchor as i64 + (ext - self.base_ts) * self.ts_scale,
        )
    }

    /// Decodes and mixes this stream up to timeline position `now`.
    fn play_until(&mut self, now: u64, mix: &mut Timeline, stats: &mut MixStats) {
        // An idle stream may have fallen behind what was already written (as silence).
        self.next_pos = self.next_pos.max(mix.written);
        while self.next_pos < now {
            while let Some(entry) = self.pending.first_entry() {
                if *entry.key() >= self.next_pos {
                    break;
                }
                // Overlaps audio already played (timestamps closer than the frame length).
                entry.remove();
                stats.late += 1;
            }
            match self.pending.first_entry() {
                Some(entry) if *entry.key() == self.next_pos => {
                    let payload = entry.remove();
                    self.play_packet(&payload, mix, stats);
                }
                Some(entry) => {
                    let pos = *entry.key();
                    self.conceal(pos - self.next_pos, Some(pos), mix, stats);
                }
                None if self.concealed_run < MAX_PLC_FRAMES => {
                    self.conceal(FRAME_SAMPLES as u64, None, mix, stats)
                }
                None => break,
            }
        }
    }

    fn play_packet(&mut self, payload: &[u8], mix: &mut Timeline, stats: &mut MixStats) {
        let Some(decoder) = self.decoder.as_mut() else {
            // Stats only: assume one 20 ms frame so timing still advances.
            self.next_pos += FRAME_SAMPLES as u64;
            self.concealed_run = 0;
            return;
        };
        match decoder.decode(payload) {
            Ok(pcm) if !pcm.is_empty() => {
                mix.add(self.next_pos, pcm);
                self.next_pos += pcm.len() as u64;
                self.concealed_run = 0;
            }
            Ok(_) | Err(_) => {
                stats.decode_errors += 1;
                self.conceal(FRAME_SAMPLES as u64, None, mix, stats);
            }
        }
    }

    /// Fills up to `gap` samples (at most one frame) at `next_pos`; `known_next` is the
    /// position of the next buffered packet, if any.
    fn conceal(
        &mut self,
        gap: u64,
        known_next: Option<u64>,
        mix: &mut Timeline,
        stats: &mut MixStats,
    ) {
        let len = gap.min(FRAME_SAMPLES as u64) / PLC_STEP * PLC_STEP;
        let plc = match self.decoder.as_mut() {
            Some(d) if len > 0 && self.concealed_run < MAX_PLC_FRAMES => {
                d.conceal(len as usize).ok()
            }
            _ => None,
        };
        match plc {
            Some(pcm) if !pcm.is_empty() => {
                mix.add(self.next_pos, pcm);
                self.next_pos += pcm.len() as u64;
                self.concealed_run += 1;
                stats.concealed += 1;
            }
            _ => {
                // Silence: jump to the next packet, or one frame ahead when none is known.
                self.concealed_run = self.concealed_run.saturating_add(1);
                self.next_pos = known_next.unwrap_or(self.next_pos + gap.max(1));
            }
        }
    }
}

/// Mixed samples not yet handed out; index 0 is timeline position `written`.
#[derive(Debug, Default)]
struct Timeline {
    acc: VecDeque<i32>,
    written: u64,
}

impl Timeline {
    fn add(&mut self, pos: u64, pcm: &[i16]) {
        let Some(start) = pos.checked_sub(self.written) else {
            return;
        };
        let start = start as usize;
        let end = start + pcm.len();
        if self.acc.len() < end {
            self.acc.resize(end, 0);
        }
        for (slot, &s) in self.acc.range_mut(start..end).zip(pcm) {
            *slot += i32::from(s);
        }
    }

    /// Hands out everything before `until`, saturated to 16 bits.
    fn drain_to(&mut self, until: u64, out: &mut Vec<i16>) {
        let n = until.saturating_sub(self.written) as usize;
        if self.acc.len() < n {
            self.acc.resize(n, 0);
        }
        out.extend(self.acc.drain(..n).map(saturate));
        self.written += n as u64;
    }
}

/// Saturating conversion of a summed sample.
pub fn saturate(sum: i32) -> i16 {
    sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Mixes any number of received Opus streams onto one timeline.
#[derive(Debug)]
pub struct Mixer {
    streams: HashMap<u32, Stream>,
    timeline: Timeline,
    delay: u64,
    /// Adaptive playout bounds; `None`: every stream keeps `delay`.
    adapt: Option<Adapt>,
    decode: bool,
    /// Streams are G.711 of this law (a telephony client) rather than Opus.
    telephony: Option<Law>,
    stats: MixStats,
}

impl Mixer {
    /// A mixer with playout delay `delay` samples. Without `decode` it only keeps the
    /// counters (a load generator does not need the audio).
    pub fn new(delay: u64, decode: bool) -> Self {
        Mixer {
            streams: HashMap::new(),
            timeline: Timeline::default(),
            delay,
            adapt: None,
            decode,
            telephony: None,
            stats: MixStats::default(),
        }
    }

    /// A mixer whose streams each start at [`ADAPTIVE_START`] of playout delay and adapt
    /// it within [`ADAPTIVE_MIN`]..=[`ADAPTIVE_MAX`] (see the module docs).
    pub fn adaptive(decode: bool) -> Self {
        let mut m = Mixer::new(ADAPTIVE_START, decode);
        m.adapt = Some(Adapt {
            min: ADAPTIVE_MIN,
            max: ADAPTIVE_MAX,
        });
        m
    }

    /// The largest playout delay of any stream now, in samples.
    pub fn delay(&self) -> u64 {
        self.streams
            .values()
            .map(|s| s.delay)
            .max()
            .unwrap_or(self.delay)
    }

    /// Per stream: (SSRC, packets expected, packets received, highest extended sequence
    /// number, interarrival jitter in samples), for receiver reports.
    pub fn reception(&self) -> impl Iterator<Item = (u32, u64, u64, u64, u32)> + '_ {
        self.streams.iter().map(|(&ssrc, s)| {
            let expected = u64::try_from(s.seq.max - s.seq.base + 1).unwrap_or(0);
            let highest = u64::try_from(s.seq.max).unwrap_or(0);
            (
                ssrc,
                expected + s.seq.lost_before,
                s.seq.received,
                highest,
                s.jitter.round() as u32,
            )
        })
    }

    /// Receive G.711 of `law` (8 kHz, upsampled to the 48 kHz timeline) instead of Opus;
    /// applies to streams first heard after the call.
    pub fn set_telephony(&mut self, law: Option<Law>) {
        self.telephony = law;
    }

    /// Timeline position up to which samples have been handed out.
    pub fn written(&self) -> u64 {
        self.timeline.written
    }

    /// Counters so far.
    pub fn stats(&self) -> MixStats {
        let mut s = self.stats;
        s.streams = self.streams.len();
        s.lost = self.streams.values().map(|st| st.seq.lost()).sum();
        s
    }

    /// Takes in one RTP packet that arrived at timeline position `now`.
    pub fn push(&mut self, now: u64, pkt: &RtpIn) {
        let delay = self.delay;
        let decode = self.decode;
        let law = self.telephony;
        if !self.streams.contains_key(&pkt.ssrc) && self.streams.len() >= MAX_STREAMS {
            self.stats.overflow += 1;
            return;
        }
        let stream = self
            .streams
            .entry(pkt.ssrc)
            .or_insert_with(|| Stream::new(pkt, now, delay, decode, law));
        if !stream.seq.record(pkt.seq) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.packets += 1;
        let (ext, mut pos) = stream.position(pkt.timestamp);
        stream.measure(now, (ext - stream.base_ts) * stream.ts_scale);
        let delay = stream.delay;
        let due = (now + delay) as i64;
        let floor = stream.next_pos.max(self.timeline.written) as i64;
        // A late packet on an idle stream means the sender resumed without advancing its
        // timestamps over the pause; dropping would lose all it sends from now on.
        let idle = stream.pending.is_empty() && stream.concealed_run >= MAX_PLC_FRAMES;
        if pos < now as i64 - RESYNC_BEHIND || pos > due + RESYNC_AHEAD || (pos < floor && idle) {
            tracing::debug!(ssrc = pkt.ssrc, "timestamp jump, resyncing stream timing");
            stream.resync(ext, now, delay);
            pos = due;
        }
        let floor = stream.next_pos.max(self.timeline.written);
        if let Some(a) = self.adapt {
            if pos >= floor as i64 {
                // In time, by this much: a calm stream shrinks (this packet moves too).
                stream.observe(pos - floor as i64, now, a, floor, &mut self.stats);
                pos = stream.anchor as i64 + (ext - stream.base_ts) * stream.ts_scale;
            }
            if pos < floor as i64 {
                // Late: play later from now on, this packet included.
                let by = (floor as i64 - pos) as u64 + GROW_MARGIN;
                let by = by.div_ceil(PLC_STEP) * PLC_STEP;
                let by = by.min(a.max.saturating_sub(stream.delay));
                if by > 0 && pos + by as i64 >= floor as i64 {
                    stream.grow(by);
                    pos += by as i64;
                    self.stats.grown += 1;
                }
            }
        }
        if pos < floor as i64 {
            self.stats.late += 1;
            return;
        }
        if stream.pending.len() >= MAX_PENDING {
            self.stats.overflow += 1;
            return;
        }
        match stream.pending.entry(pos as u64) {
            Entry::Vacant(slot) => {
                slot.insert(pkt.payload.clone());
            }
            // Same timestamp under a new sequence number: keep the first copy.
            Entry::Occupied(_) => self.stats.duplicates += 1,
        }
    }

    /// Plays every stream up to timeline position `now` and appends the finished mix
    /// (positions `written()..now`) to `out`.
    pub fn advance(&mut self, now: u64, out: &mut Vec<i16>) {
        if now <= self.timeline.written {
            return;
        }
        for stream in self.streams.values_mut() {
            stream.play_until(now, &mut self.timeline, &mut self.stats);
        }
        self.timeline.drain_to(now, out);
    }
}

#[cfg(test)]
#[path = "mixer_tests.rs"]
mod tests;
