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
mod tests {
    use super::*;
    use crate::tone::{Sine, ToneAnalysis, Window};
    use codecs::opus::Encoder;

    const F: u64 = FRAME_SAMPLES as u64;

    /// Opus payloads of `frames` 20 ms frames of a tone.
    fn payloads(freq: f64, db: f64, frames: usize) -> Vec<Bytes> {
        let mut enc = Encoder::new().unwrap();
        let mut sine = Sine::new(freq, db, SAMPLE_RATE);
        let mut pcm = vec![0; FRAME_SAMPLES];
        (0..frames)
            .map(|_| {
                sine.fill(&mut pcm);
                Bytes::copy_from_slice(enc.encode(&pcm).unwrap())
            })
            .collect()
    }

    fn pkt(ssrc: u32, seq: u16, timestamp: u32, payload: &Bytes) -> RtpIn {
        RtpIn {
            payload_type: 111,
            marker: false,
            seq,
            timestamp,
            ssrc,
            payload: payload.clone(),
        }
    }

    /// Packets of one stream, packet k arriving at `start + k * 20 ms`.
    fn stream(ssrc: u32, start: u64, seq0: u16, ts0: u32, p: &[Bytes]) -> Vec<(u64, RtpIn)> {
        p.iter()
            .enumerate()
            .map(|(k, b)| {
                let seq = seq0.wrapping_add(k as u16);
                let ts = ts0.wrapping_add(k as u32 * FRAME_SAMPLES as u32);
                (start + k as u64 * F, pkt(ssrc, seq, ts, b))
            })
            .collect()
    }

    /// Feeds arrivals in time order, advancing the clock as it goes, up to `end`.
    fn play(mut arrivals: Vec<(u64, RtpIn)>, end: u64) -> (Vec<i16>, MixStats) {
        arrivals.sort_by_key(|(t, _)| *t);
        let mut m = Mixer::new(PLAYOUT_DELAY, true);
        let mut out = Vec::new();
        for (t, p) in arrivals {
            m.advance(t, &mut out);
            m.push(t, &p);
        }
        m.advance(end, &mut out);
        assert_eq!(
            out.len() as u64,
            end,
            "the timeline covers the whole session"
        );
        (out, m.stats())
    }

    fn level(x: &[i16], freq: f64, skip: f64, duration: f64) -> f64 {
        let w = Window {
            skip,
            duration,
            block: 0.1,
        };
        ToneAnalysis::new(x, SAMPLE_RATE, w).unwrap().level_db(freq)
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&v| f64::from(v).powi(2)).sum()
    }

    #[test]
    fn two_streams_are_summed_on_the_wall_clock() {
        let mut arrivals = stream(1, 0, 100, 5_000, &payloads(440.0, -12.0, 100));
        // B joins 1 s later, with unrelated sequence numbers and timestamps.
        arrivals.extend(stream(
            2,
            48_000,
            60_000,
            4_000_000_000,
            &payloads(660.0, -12.0, 50),
        ));
        let (out, stats) = play(arrivals, 2 * 48_000 + 6_000);
        assert_eq!((stats.streams, stats.packets, stats.lost), (2, 150, 0));
        assert!((level(&out, 440.0, 0.2, 0.7) + 12.0).abs() < 1.0);
        assert!(
            level(&out, 660.0, 0.2, 0.7) < -50.0,
            "B is silent before it starts"
        );
        assert!((level(&out, 440.0, 1.2, 0.8) + 12.0).abs() < 1.0);
        assert!((level(&out, 660.0, 1.2, 0.8) + 12.0).abs() < 1.0);
        // Nothing before the first packet's arrival plus the playout delay.
        assert!(out[..PLAYOUT_DELAY as usize].iter().all(|&s| s == 0));
        assert!(out[PLAYOUT_DELAY as usize..][..FRAME_SAMPLES]
            .iter()
            .any(|&s| s != 0));
    }

    #[test]
    fn reordered_packets_land_in_place() {
        let p = payloads(440.0, -12.0, 50);
        let reference = play(stream(7, 0, 0, 0, &p), 50 * F + PLAYOUT_DELAY).0;
        let mut arrivals = stream(7, 0, 0, 0, &p);
        for k in [10, 20, 30] {
            // Packet k comes 30 ms late, after k + 1.
            arrivals[k].0 += 30 * 48;
        }
        let (out, stats) = play(arrivals, 50 * F + PLAYOUT_DELAY);
        assert_eq!((stats.late, stats.lost, stats.concealed), (0, 0, 0));
        assert_eq!(out, reference);
    }

    #[test]
    fn loss_is_concealed_without_shifting_time() {
        let p = payloads(440.0, -12.0, 50);
        let end = 50 * F + PLAYOUT_DELAY;
        let reference = play(stream(7, 0, 0, 0, &p), end).0;
        let mut arrivals = stream(7, 0, 0, 0, &p);
        arrivals.remove(20);
        let (out, stats) = play(arrivals, end);
        assert_eq!((stats.lost, stats.concealed, stats.packets), (1, 1, 49));
        // The concealed frame is not silence.
        let gap = (PLAYOUT_DELAY + 20 * F) as usize;
        assert!(
            energy(&out[gap..gap + FRAME_SAMPLES])
                > 0.1 * energy(&reference[gap..gap + FRAME_SAMPLES])
        );
        // Later frames sit where they belong: close to the reference, far from it shifted.
        let later = gap + 5 * FRAME_SAMPLES..gap + 25 * FRAME_SAMPLES;
        let diff: Vec<i16> = out[later.clone()]
            .iter()
            .zip(&reference[later.clone()])
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let shifted: Vec<i16> = out[later.clone()]
            .iter()
            .zip(&reference[later.start - FRAME_SAMPLES / 4..])
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let signal = energy(&reference[later]);
        assert!(energy(&diff) < 0.01 * signal, "aligned after the gap");
        assert!(
            energy(&shifted) > 0.5 * signal,
            "a shifted copy would differ"
        );
    }

    #[test]
    fn duplicates_are_ignored() {
        let p = payloads(440.0, -12.0, 30);
        let end = 30 * F + PLAYOUT_DELAY;
        let reference = play(stream(3, 0, 65_530, 0, &p), end).0;
        let mut arrivals = stream(3, 0, 65_530, 0, &p);
        let copies: Vec<_> = arrivals
            .iter()
            .map(|(t, pk)| (t + 5 * 48, pk.clone()))
            .collect();
        arrivals.extend(copies);
        let (out, stats) = play(arrivals, end);
        assert_eq!((stats.duplicates, stats.packets, stats.lost), (30, 30, 0));
        assert_eq!(out, reference);
    }

    #[test]
    fn late_packet_is_dropped_and_concealed() {
        let p = payloads(440.0, -12.0, 30);
        let mut arrivals = stream(3, 0, 0, u32::MAX - 5 * 960, &p);
        // 100 ms late: past the 60 ms playout delay.
        arrivals[12].0 += 100 * 48;
        let (out, stats) = play(arrivals, 30 * F + PLAYOUT_DELAY);
        assert_eq!((stats.late, stats.lost, stats.concealed), (1, 0, 1));
        assert!((level(&out, 440.0, 0.2, 0.3) + 12.0).abs() < 1.5);
    }

    #[test]
    fn sum_saturates_instead_of_wrapping() {
        assert_eq!(saturate(40_000), i16::MAX);
        assert_eq!(saturate(-40_000), i16::MIN);
        assert_eq!(saturate(-123), -123);
        let p = payloads(440.0, -1.0, 30);
        let end = 30 * F + PLAYOUT_DELAY;
        let single = play(stream(1, 0, 0, 0, &p), end).0;
        let mut arrivals = stream(1, 0, 0, 0, &p);
        arrivals.extend(stream(2, 0, 0, 0, &p));
        let (out, _) = play(arrivals, end);
        assert_eq!(out.iter().max(), Some(&i16::MAX));
        assert_eq!(out.iter().min(), Some(&i16::MIN));
        for (s, o) in single.iter().zip(&out) {
            assert_eq!(*o, saturate(2 * i32::from(*s)));
        }
    }

    #[test]
    fn a_long_pause_is_silence_and_the_stream_resumes_in_place() {
        let p = payloads(440.0, -12.0, 100);
        let mut arrivals = stream(5, 0, 0, 0, &p);
        // Frames 30..80 never sent (sender paused, sequence numbers continue).
        arrivals.retain(|(t, pk)| !(30 * F..80 * F).contains(t) || pk.seq >= 80);
        let mut arrivals: Vec<_> = arrivals
            .into_iter()
            .map(|(t, mut pk)| {
                if pk.seq >= 80 {
                    pk.seq -= 50;
                }
                (t, pk)
            })
            .collect();
        arrivals.sort_by_key(|(t, _)| *t);
        let (out, stats) = play(arrivals, 100 * F + PLAYOUT_DELAY);
        assert_eq!(
            (stats.lost, stats.concealed),
            (0, u64::from(MAX_PLC_FRAMES))
        );
        let pause = (PLAYOUT_DELAY + 40 * F) as usize..(PLAYOUT_DELAY + 79 * F) as usize;
        assert!(out[pause].iter().all(|&s| s == 0));
        assert!((level(&out, 440.0, 1.7, 0.3) + 12.0).abs() < 1.0);
    }

    #[test]
    fn a_pause_without_timestamp_advance_resyncs() {
        let p = payloads(440.0, -12.0, 60);
        // 30 frames, then 0.5 s of nothing, then 30 more with timestamps that ignore the pause.
        let arrivals: Vec<_> = stream(5, 0, 0, 0, &p)
            .into_iter()
            .map(|(t, pk)| {
                if pk.seq >= 30 {
                    (t + 24_000, pk)
                } else {
                    (t, pk)
                }
            })
            .collect();
        let (out, stats) = play(arrivals, 60 * F + 24_000 + PLAYOUT_DELAY);
        assert_eq!((stats.late, stats.lost, stats.packets), (0, 0, 60));
        // The second half plays in full after the pause.
        assert!((level(&out, 440.0, 1.2, 0.5) + 12.0).abs() < 1.0);
    }

    #[test]
    fn counting_only_keeps_stats_without_audio() {
        let p = payloads(440.0, -12.0, 20);
        let mut m = Mixer::new(PLAYOUT_DELAY, false);
        let mut out = Vec::new();
        for (t, pk) in stream(9, 0, 0, 0, &p)
            .into_iter()
            .filter(|(_, pk)| pk.seq != 4)
        {
            m.advance(t, &mut out);
            m.push(t, &pk);
        }
        m.advance(25 * F, &mut out);
        assert!(out.iter().all(|&s| s == 0));
        assert_eq!(out.len() as u64, 25 * F);
        let s = m.stats();
        assert_eq!((s.packets, s.lost, s.streams), (19, 1, 1));
    }

    /// The adaptive buffer in virtual time, ticked every 20 ms as the recorder does: 10 s
    /// of a tone with 0-60 ms of jitter, then 10 s of a calm network (one packet lost).
    #[test]
    fn adaptive_playout_grows_with_jitter_plays_without_gaps_and_shrinks_when_calm() {
        let frames = 1000usize;
        let p = payloads(440.0, -12.0, frames);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut jitter = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % (60 * 48 + 1)
        };
        let calm_from = 500;
        let mut arrivals: Vec<(u64, RtpIn)> = stream(3, 0, 0, 0, &p)
            .into_iter()
            .enumerate()
            .filter(|(k, _)| *k != 800)
            // The first packet is on time, so the delay must grow to cover the jitter.
            .map(|(k, (t, pk))| (t + if k > 0 && k < calm_from { jitter() } else { 0 }, pk))
            .collect();
        arrivals.sort_by_key(|(t, _)| *t);
        let mut m = Mixer::adaptive(true);
        let mut out = Vec::new();
        let mut tick = 0u64;
        let mut marks = Vec::new();
        let end = frames as u64 * F + 10 * F;
        for (t, pk) in arrivals {
            while tick + F <= t {
                tick += F;
                m.advance(tick, &mut out);
                if tick % (48_000 * 5) == 0 {
                    marks.push((tick, m.stats(), m.delay()));
                }
            }
            m.push(t, &pk);
        }
        while tick + F <= end {
            tick += F;
            m.advance(tick, &mut out);
        }
        let (at5, s5, d5) = marks[0];
        let (at10, s10, d10) = marks[1];
        let (_, s15, _) = marks[2];
        assert_eq!((at5, at10), (5 * 48_000, 10 * 48_000));
        // It grew for the jitter: the delay now covers 60 ms.
        assert!(s5.grown > 0, "{s5:?}");
        assert!(d5 >= 50 * 48 && d5 <= ADAPTIVE_MAX, "delay {} ms", d5 / 48);
        // Then it played without a gap: nothing late, concealed or grown in 5..10 s...
        assert_eq!(
            (s10.late, s10.concealed, s10.grown),
            (s5.late, s5.concealed, s5.grown),
            "{s5:?} -> {s10:?}"
        );
        // ...and every 20 ms frame of 5..10 s holds the tone.
        for (k, frame) in out[5 * 48_000..10 * 48_000].chunks_exact(960).enumerate() {
            assert!(energy(frame) > 1e9, "frame {k} after 5 s is silent");
        }
        // Calm again: it shrank, well below where the jitter had taken it.
        let fin = m.stats();
        assert!(fin.shrunk >= 1, "{fin:?}");
        assert!(
            m.delay() + F <= d10,
            "{} ms then {} ms: {fin:?}",
            d10 / 48,
            m.delay() / 48
        );
        assert!(m.delay() >= ADAPTIVE_MIN);
        // The lost packet was concealed, nothing came late.
        assert_eq!(fin.late, s5.late);
        assert!(fin.concealed > s15.concealed, "{s15:?} -> {fin:?}");
        assert_eq!(fin.lost, 1);
    }

    #[test]
    fn garbage_payloads_and_timestamps_do_not_break_the_timeline() {
        let mut m = Mixer::new(PLAYOUT_DELAY, true);
        let mut out = Vec::new();
        let junk = Bytes::from_static(&[0xff, 0x00, 0x13]);
        for k in 0..200u32 {
            let now = u64::from(k) * 480;
            m.advance(now, &mut out);
            let ts = k.wrapping_mul(2_654_435_761);
            m.push(now, &pkt(k % 7, (k * 31) as u16, ts, &junk));
        }
        m.advance(200 * 480 + 10_000, &mut out);
        assert_eq!(out.len(), 200 * 480 + 10_000);
        crate::fuzz_datagram(&[0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xfc, 0xff, 0xfe]);
    }
}
