//! The adaptive jitter buffer of one source (seed 003).
//!
//! Packets are slotted by RTP timestamp in 20 ms frames ahead of the play position. The mixer
//! pops one frame per 20 ms tick:
//! - the frame is there: play it;
//! - it is missing but a later one is there: it is lost; rebuild it from the next packet's
//!   in-band FEC when that next packet is the very next frame, otherwise conceal (Opus PLC);
//! - nothing is buffered: an underrun. Play concealment *without* advancing, which adds 20 ms
//!   of depth: the buffer grows when packets come late. After [`IDLE_AFTER`] underruns in a
//!   row the source is idle (it stopped sending) and re-primes on its next packet.
//!
//! The target depth follows the measured interarrival jitter (RFC 3550), plus a boost each
//! time a packet comes too late to play (it is discarded and counted), bounded to
//! [`MIN_DEPTH_MS`]..=[`MAX_DEPTH_MS`]. When the buffer holds more than the target for a calm
//! second it drops a frame, so the depth shrinks again when the network calms.

use std::time::{Duration, Instant};

/// RTP timestamp ticks in one 20 ms frame at 48 kHz.
pub const FRAME_TS: u32 = 960;
/// Milliseconds per frame.
pub const FRAME_MS: u32 = 20;
pub const MIN_DEPTH_MS: u32 = 20;
pub const MAX_DEPTH_MS: u32 = 200;
/// Frames the buffer can hold ahead of the play position.
const SLOTS: usize = 16;
/// Underrun frames in a row after which the source counts as idle.
pub const IDLE_AFTER: u32 = 10;
/// A timestamp this many frames away from the play position is absurd, not just early/late.
const ABSURD_FRAMES: i64 = 50;
/// Absurd packets in a row after which the sender is taken to have restarted its clock.
const RESYNC_AFTER: u32 = 5;
/// Frames over target, in a row, before one frame is dropped.
const CALM_FRAMES: u32 = 50;
/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 1_500;

/// Counters of one buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    /// Arrived after their frame was played (or passed over): discarded.
    pub late: u64,
    pub duplicates: u64,
    /// Timestamps far from the play position, or empty/oversized payloads: dropped.
    pub absurd: u64,
    pub malformed: u64,
    /// Frames rebuilt from the next packet's FEC.
    pub fec: u64,
    /// Frames concealed because their packet was lost.
    pub concealed: u64,
    /// Underrun frames (concealed while waiting, which deepens the buffer).
    pub stalls: u64,
    /// Frames dropped to shrink the buffer.
    pub shrinks: u64,
    pub resyncs: u64,
}

/// What to play for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Play<'a> {
    /// Nothing: the source is idle or priming.
    Idle,
    /// Decode this packet.
    Packet(&'a [u8]),
    /// The frame was lost; decode FEC from this next packet.
    Fec(&'a [u8]),
    /// The frame is missing; conceal it.
    Conceal,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    data: Vec<u8>,
    full: bool,
    /// The sender's RFC 6464 level said this frame holds no voice.
    quiet: bool,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct JitterBuffer {
    /// RTP timestamp ticks per frame and per millisecond (48 kHz Opus, 8 kHz G.711).
    frame_ts: u32,
    ts_per_ms: u32,
    slots: Vec<Slot>,
    /// Slot of the play position.
    head: usize,
    /// RTP timestamp of the frame at `head`; None when idle.
    play_ts: Option<u32>,
    /// Playing starts at this time (priming); None once playing.
    prime_until: Option<Instant>,
    origin: Option<Instant>,
    /// Last packet's (arrival in ts units, timestamp), for the jitter estimate.
    last: Option<(i64, u32)>,
    /// RFC 3550 interarrival jitter in timestamp units.
    jitter: f64,
    late_boost_ms: f64,
    pending_stalls: u32,
    underruns: u32,
    absurd_run: u32,
    calm: u32,
    /// The packet handed out by the last [`JitterBuffer::pop`].
    out: Vec<u8>,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    /// A buffer for Opus's 48 kHz RTP clock.
    pub fn new() -> Self {
        Self::with_clock(protocol::codec::OPUS.clock_rate)
    }

    /// A buffer for an RTP clock of `rate` Hz (20 ms frames).
    pub fn with_clock(rate: u32) -> Self {
        let ts_per_ms = (rate / 1000).max(1);
        Self {
            frame_ts: ts_per_ms * FRAME_MS,
            ts_per_ms,
            slots: vec![Slot::default(); SLOTS],
            head: 0,
            play_ts: None,
            prime_until: None,
            origin: None,
            last: None,
            jitter: 0.0,
            late_boost_ms: 0.0,
            pending_stalls: 0,
            underruns: 0,
            absurd_run: 0,
            calm: 0,
            out: Vec::with_capacity(MAX_PAYLOAD),
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Measured interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter / f64::from(self.ts_per_ms)
    }

    /// The depth the buffer aims for, in milliseconds.
    pub fn target_ms(&self) -> u32 {
        let t = f64::from(MIN_DEPTH_MS) + 3.0 * self.jitter_ms() + self.late_boost_ms;
        (t.round() as u32).clamp(MIN_DEPTH_MS, MAX_DEPTH_MS)
    }

    /// What is buffered now, in milliseconds (frames from the play position to the newest).
    pub fn depth_ms(&self) -> u32 {
        self.ahead() as u32 * FRAME_MS
    }

    pub fn is_idle(&self) -> bool {
        self.play_ts.is_none()
    }

    /// Frames from the play position up to and including the newest buffered one.
    fn ahead(&self) -> usize {
        (0..SLOTS)
            .rev()
            .find(|&i| self.slot(i).full)
            .map_or(0, |i| i + 1)
    }

    fn slot(&self, i: usize) -> &Slot {
        &self.slots[(self.head + i) % SLOTS]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[(self.head + i) % SLOTS]
    }

    fn reset(&mut self) {
        for s in &mut self.slots {
            s.full = false;
        }
        self.head = 0;
        self.play_ts = None;
        self.prime_until = None;
        self.underruns = 0;
        self.pending_stalls = 0;
        self.calm = 0;
    }

    /// Takes one packet's payload with its RTP timestamp.
    pub fn push(&mut self, now: Instant, ts: u32, payload: &[u8]) {
        self.push_marked(now, ts, payload, false);
    }

    /// Whether the frame the next [`JitterBuffer::pop`] plays was marked quiet (the
    /// sender's RFC 6464 level said it holds no voice), so a listener's frame need not be
    /// decoded.
    pub fn next_is_quiet(&self) -> bool {
        let head = &self.slots[self.head];
        head.full && head.quiet
    }

    /// Takes one packet's payload with its RTP timestamp; `quiet` marks a frame without
    /// voice (see [`JitterBuffer::next_is_quiet`]).
    pub fn push_marked(&mut self, now: Instant, ts: u32, payload: &[u8], quiet: bool) {
        self.stats.received += 1;
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            self.stats.malformed += 1;
            return;
        }
        self.measure(now, ts);
        let Some(play) = self.play_ts else {
            self.start(now, ts, payload, quiet);
            return;
        };
        let delta = i64::from(ts.wrapping_sub(play) as i32);
        let idx = (delta + i64::from(self.frame_ts / 2)).div_euclid(i64::from(self.frame_ts));
        if !(-ABSURD_FRAMES..ABSURD_FRAMES).contains(&idx) || idx >= SLOTS as i64 {
            self.stats.absurd += 1;
            self.absurd_run += 1;
            if self.absurd_run >= RESYNC_AFTER {
                self.stats.resyncs += 1;
                self.reset();
                self.start(now, ts, payload, quiet);
            }
            return;
        }
        self.absurd_run = 0;
        if idx < 0 {
            // Too late to play: discard, and deepen the buffer by one frame.
            self.stats.late += 1;
            self.late_boost_ms = (self.late_boost_ms + f64::from(FRAME_MS)).min(200.0);
            self.pending_stalls += 1;
            return;
        }
        let slot = self.slot_mut(idx as usize);
        if slot.full {
            self.stats.duplicates += 1;
            return;
        }
        slot.data.clear();
        slot.data.extend_from_slice(payload);
        slot.full = true;
        slot.quiet = quiet;
    }

    fn start(&mut self, now: Instant, ts: u32, payload: &[u8], quiet: bool) {
        self.absurd_run = 0;
        self.play_ts = Some(ts);
        self.head = 0;
        let wait = self.target_ms().saturating_sub(FRAME_MS);
        self.prime_until = Some(now + Duration::from_millis(u64::from(wait)));
        let slot = &mut self.slots[0];
        slot.data.clear();
        slot.data.extend_from_slice(payload);
        slot.full = true;
        slot.quiet = quiet;
    }

    /// RFC 3550 interarrival jitter, with absurd jumps ignored.
    fn measure(&mut self, now: Instant, ts: u32) {
        let origin = *self.origin.get_or_insert(now);
        let arrival = (now.saturating_duration_since(origin).as_micros() as i64)
            * i64::from(self.ts_per_ms)
            / 1000;
        if let Some((last_arrival, last_ts)) = self.last {
            let d = (arrival - last_arrival) - i64::from(ts.wrapping_sub(last_ts) as i32);
            if d.abs() < i64::from(self.ts_per_ms) * 1000 {
                self.jitter += (d.abs() as f64 - self.jitter) / 16.0;
            }
        }
        self.last = Some((arrival, ts));
    }

    /// The frame to play at this 20 ms tick.
    pub fn pop(&mut self, now: Instant) -> Play<'_> {
        let Some(play) = self.play_ts else {
            return Play::Idle;
        };
        self.late_boost_ms *= 0.995;
        if let Some(t) = self.prime_until {
            if now < t && self.depth_ms() < self.target_ms() {
                return Play::Idle;
            }
            self.prime_until = None;
        }
        if self.pending_stalls > 0 {
            self.pending_stalls -= 1;
            self.stats.stalls += 1;
            return Play::Conceal;
        }
        let ahead = self.ahead();
        if ahead == 0 {
            self.underruns += 1;
            if self.underruns > IDLE_AFTER {
                self.reset();
                return Play::Idle;
            }
            self.stats.stalls += 1;
            return Play::Conceal;
        }
        self.underruns = 0;
        // Too deep: over the bound at once, or over the target for a calm while.
        let target = (self.target_ms() / FRAME_MS) as usize + 1;
        if ahead > target {
            self.calm += 1;
        } else {
            self.calm = 0;
        }
        if (ahead > (MAX_DEPTH_MS / FRAME_MS) as usize || self.calm >= CALM_FRAMES) && ahead > 1 {
            self.calm = 0;
            self.stats.shrinks += 1;
            self.advance(play);
            return self.pop_at_head();
        }
        self.pop_at_head()
    }

    fn pop_at_head(&mut self) -> Play<'_> {
        let Some(play) = self.play_ts else {
            return Play::Idle;
        };
        let head_full = self.slots[self.head].full;
        if head_full {
            std::mem::swap(&mut self.out, &mut self.slots[self.head].data);
            self.advance(play);
            self.stats.played += 1;
            return Play::Packet(&self.out);
        }
        // Lost: a later frame is here (the caller checked `ahead`).
        self.advance(play);
        if self.slots[self.head].full {
            self.stats.fec += 1;
            self.out.clear();
            let next = &self.slots[self.head].data;
            self.out.extend_from_slice(next);
            return Play::Fec(&self.out);
        }
        self.stats.concealed += 1;
        Play::Conceal
    }

    fn advance(&mut self, play: u32) {
        self.slots[self.head].full = false;
        self.head = (self.head + 1) % SLOTS;
        self.play_ts = Some(play.wrapping_add(self.frame_ts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, m: u64) -> Instant {
        t0 + Duration::from_millis(m)
    }

    fn kind(p: Play<'_>) -> (char, Option<u8>) {
        match p {
            Play::Idle => ('i', None),
            Play::Packet(d) => ('p', Some(d[0])),
            Play::Fec(d) => ('f', Some(d[0])),
            Play::Conceal => ('c', None),
        }
    }

    #[test]
    fn plays_in_order_after_priming() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let mut got = Vec::new();
        for n in 0..10u32 {
            jb.push(ms(t0, u64::from(n) * 20), 1000 + n * FRAME_TS, &[n as u8]);
            got.push(kind(jb.pop(ms(t0, u64::from(n) * 20 + 1))));
        }
        let played: Vec<u8> = got.iter().filter_map(|k| k.1).collect();
        assert_eq!(played, (0..played.len() as u8).collect::<Vec<_>>());
        assert!(played.len() >= 8, "{got:?}");
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn loss_uses_fec_of_the_next_packet_then_conceals() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 0, &[0]);
        assert_eq!(kind(jb.pop(t0)), ('p', Some(0)));
        // Frame 1 lost, 2 here: FEC from 2, then 2 itself.
        jb.push(ms(t0, 40), 2 * FRAME_TS, &[2]);
        assert_eq!(kind(jb.pop(ms(t0, 40))), ('f', Some(2)));
        assert_eq!(kind(jb.pop(ms(t0, 60))), ('p', Some(2)));
        // Frames 3 and 4 lost, 5 here: 3 concealed, 4 from FEC, then 5.
        jb.push(ms(t0, 100), 5 * FRAME_TS, &[5]);
        assert_eq!(kind(jb.pop(ms(t0, 100))), ('c', None));
        assert_eq!(kind(jb.pop(ms(t0, 120))), ('f', Some(5)));
        assert_eq!(kind(jb.pop(ms(t0, 140))), ('p', Some(5)));
        let s = jb.stats();
        assert_eq!((s.fec, s.concealed, s.played), (2, 1, 3));
    }

    #[test]
    fn too_late_packets_are_discarded_and_deepen_the_buffer() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 0, &[0]);
        jb.push(t0, 2 * FRAME_TS, &[2]);
        assert_eq!(kind(jb.pop(t0)), ('p', Some(0)));
        assert_eq!(kind(jb.pop(ms(t0, 20))), ('f', Some(2)));
        let before = jb.target_ms();
        jb.push(ms(t0, 30), FRAME_TS, &[1]);
        assert_eq!(jb.stats().late, 1);
        assert!(jb.target_ms() > before);
        // One stall frame adds depth before play goes on.
        assert_eq!(kind(jb.pop(ms(t0, 40))), ('c', None));
        assert_eq!(kind(jb.pop(ms(t0, 60))), ('p', Some(2)));
    }

    /// Packets sent every 20 ms arrive with 0-30 ms of jitter: after warm-up nothing is
    /// concealed for lack of data; the depth follows the jitter within bounds, then shrinks
    /// when the network calms.
    #[test]
    fn depth_follows_jitter_and_shrinks_when_calm() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        // Deterministic pseudo-random delays.
        let mut x = 12345u32;
        let mut rnd = move || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) % 31
        };
        let n = 500u64;
        let mut arrivals: Vec<(u64, u32)> = (0..n)
            .map(|i| (i * 20 + u64::from(rnd()), i as u32))
            .collect();
        arrivals.sort();
        let mut a = 0;
        let mut late_half = JitterStats::default();
        for tick in 0..n + 20 {
            let now = tick * 20;
            while a < arrivals.len() && arrivals[a].0 <= now {
                let (_, seq) = arrivals[a];
                jb.push(ms(t0, arrivals[a].0), seq * FRAME_TS, &[seq as u8]);
                a += 1;
            }
            let _ = jb.pop(ms(t0, now));
            if tick == n / 2 {
                late_half = jb.stats();
            }
        }
        let s = jb.stats();
        assert!(jb.jitter_ms() > 3.0, "jitter {}", jb.jitter_ms());
        let t = jb.target_ms();
        assert!(
            (MIN_DEPTH_MS..=MAX_DEPTH_MS).contains(&t) && t > 30,
            "target {t}"
        );
        // Second half: steady state, no losses concealed.
        assert_eq!(s.concealed, late_half.concealed, "{s:?}");
        assert!(s.played > 450, "{s:?}");

        // Calm network: depth comes down to the target.
        let start = n * 20 + 400;
        let mut jb2 = jb.clone();
        for k in 0..400u64 {
            let now = start + k * 20;
            jb2.push(ms(t0, now), (n as u32 + 20 + k as u32) * FRAME_TS, &[0]);
            let _ = jb2.pop(ms(t0, now));
        }
        assert!(
            jb2.depth_ms() <= jb2.target_ms() + 2 * FRAME_MS,
            "depth {} target {}",
            jb2.depth_ms(),
            jb2.target_ms()
        );
        assert!(jb2.target_ms() < t || t <= 40);
    }

    #[test]
    fn quiet_marks_travel_with_their_frames() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push_marked(t0, 0, &[0], true);
        jb.push_marked(t0, FRAME_TS, &[1], false);
        jb.push_marked(t0, 2 * FRAME_TS, &[2], true);
        assert!(jb.next_is_quiet());
        assert_eq!(kind(jb.pop(t0)), ('p', Some(0)));
        assert!(!jb.next_is_quiet());
        assert_eq!(kind(jb.pop(ms(t0, 20))), ('p', Some(1)));
        assert!(jb.next_is_quiet());
        assert_eq!(kind(jb.pop(ms(t0, 40))), ('p', Some(2)));
        assert!(!jb.next_is_quiet(), "an empty slot is not quiet");
    }

    #[test]
    fn absurd_timestamps_are_dropped_then_resynced() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 0, &[0]);
        jb.push(t0, 0x8000_0000, &[9]);
        jb.push(t0, 100 * FRAME_TS, &[9]);
        jb.push(t0, FRAME_TS, &[]);
        let s = jb.stats();
        assert_eq!((s.absurd, s.malformed), (2, 1));
        assert_eq!(kind(jb.pop(t0)), ('p', Some(0)));
        // A sender that really jumped: after a few absurd packets in a row (two above and
        // three here), follow it; the packets after the jump are buffered normally.
        for k in 0..RESYNC_AFTER {
            jb.push(ms(t0, 20), 7_000_000 + k * FRAME_TS, &[k as u8]);
        }
        assert_eq!(jb.stats().resyncs, 1);
        assert_eq!(kind(jb.pop(ms(t0, 200))), ('p', Some(2)));
        assert_eq!(kind(jb.pop(ms(t0, 220))), ('p', Some(3)));
        assert_eq!(kind(jb.pop(ms(t0, 240))), ('p', Some(4)));
    }

    #[test]
    fn an_8khz_clock_slots_160_ticks_per_frame() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::with_clock(8_000);
        jb.push(t0, 0, &[0]);
        jb.push(ms(t0, 20), 160, &[1]);
        jb.push(ms(t0, 40), 480, &[3]);
        assert_eq!(kind(jb.pop(ms(t0, 40))), ('p', Some(0)));
        assert_eq!(kind(jb.pop(ms(t0, 60))), ('p', Some(1)));
        assert_eq!(kind(jb.pop(ms(t0, 80))), ('f', Some(3)));
        assert_eq!(jb.stats().absurd, 0);
    }

    #[test]
    fn goes_idle_when_the_source_stops() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 0, &[0]);
        assert_eq!(kind(jb.pop(t0)), ('p', Some(0)));
        for k in 1..=IDLE_AFTER {
            assert_eq!(kind(jb.pop(ms(t0, u64::from(k) * 20))), ('c', None));
        }
        assert_eq!(kind(jb.pop(ms(t0, 400))), ('i', None));
        assert!(jb.is_idle());
        jb.push(ms(t0, 3000), 500 * FRAME_TS, &[5]);
        assert_eq!(kind(jb.pop(ms(t0, 3000))), ('p', Some(5)));
    }
}
