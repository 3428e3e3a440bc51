//! Talk runs and smart duplex (seed 003).
//!
//! A *talk run* is one stretch of speech from one source: it has a start time and lasts until
//! the source stops talking. Runs are detected per source by [`TalkDetector`] from the RTP
//! marker bit, the RFC 6464 audio level header extension, an energy VAD the path supplies, or
//! the control line `talk on|off` (push to talk, which then governs alone).
//!
//! [`audible`] is the one smart-duplex rule, shared by the mixer (and the reflector's filter):
//! while receiver R talks, runs that began before R's run began are left out of what R hears;
//! runs that begin during R's run are heard; when R stops, interrupted runs that are still
//! going are heard again.
//!
//! The indicators every client shows are computed here too, so the reflector and the mixer
//! report them alike: a peak [`LevelMeter`] per source, batched into [`Levels`] once per
//! [`LEVEL_PERIOD`], and the [`DominantSpeaker`] with its hysteresis.

use std::time::{Duration, Instant};

use crate::{ParticipantId, RtpView};

/// One run of speech: when it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Run {
    pub start: Instant,
}

/// Smart duplex: may a receiver whose own current run is `receiver_run` (None when not
/// talking) hear the source run `source_run`?
///
/// - R not talking: everything is heard (interrupted runs resume when R stops).
/// - R talking: a run that began before R's run began is left out; one that began at or
///   after R's start (an interruption of the interrupter) is heard.
pub fn audible(receiver_run: Option<Run>, source_run: Run) -> bool {
    match receiver_run {
        None => true,
        Some(r) => source_run.start >= r.start,
    }
}

/// RFC 6464 levels (-dBov, 0 loudest, 127 silence) at or below this count as voice when the
/// sender does not set the V flag meaningfully.
pub const LEVEL_VOICE_MAX: u8 = 50;
/// A run ends after this long without voice (automatic detection only).
pub const HANGOVER: Duration = Duration::from_millis(400);

/// The RFC 6464 client-to-mixer audio level in a packet's one-byte header extension
/// (RFC 8285, profile 0xBEDE) with local id `ext_id`: (voice flag, level in -dBov).
pub fn audio_level(pkt: &RtpView<'_>, ext_id: u8) -> Option<(bool, u8)> {
    let (profile, body) = pkt.extension()?;
    if profile != 0xBEDE {
        return None;
    }
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == 0 {
            // Padding byte.
            i += 1;
            continue;
        }
        let id = b >> 4;
        let len = usize::from(b & 0x0f) + 1;
        if id == 15 {
            return None;
        }
        let data = body.get(i + 1..i + 1 + len)?;
        if id == ext_id {
            return Some((data[0] & 0x80 != 0, data[0] & 0x7f));
        }
        i += 1 + len;
    }
    None
}

/// How often a path reports its talkers' levels: at most 5 batches a second per conference.
pub const LEVEL_PERIOD: Duration = Duration::from_millis(200);
/// Most talkers in one level batch; the loudest are kept.
pub const MAX_LEVELS: usize = 8;
/// How long the most recent talker must go on talking before it becomes the dominant
/// speaker: a cough or a short "yes" does not take the floor.
pub const DOMINANT_HOLD: Duration = Duration::from_millis(400);
/// The candidate must have had voice this recently when it takes the floor.
const DOMINANT_VOICE_RECENT: Duration = Duration::from_millis(120);
/// Full scale of a 16-bit sample, squared.
const FULL_SCALE_SQUARED: f64 = 32768.0 * 32768.0;

/// The level in dBov (-127 silence to 0 full scale) of a frame whose mean square of 16-bit
/// samples is `mean_square`.
pub fn dbov_of_mean_square(mean_square: f64) -> i8 {
    if mean_square.is_nan() || mean_square <= 0.0 {
        return -127;
    }
    let db = 10.0 * (mean_square / FULL_SCALE_SQUARED).log10();
    db.round().clamp(-127.0, 0.0) as i8
}

/// The level a voice detector compares with [`LEVEL_VOICE_MAX`]: an RFC 6464 level
/// (-dBov, 0 loudest, 127 silence) from a dBov.
pub fn rfc6464_of_dbov(dbov: i8) -> u8 {
    dbov.unsigned_abs().min(127)
}

/// The loudest level of one source over a period (a peak meter: one compare per packet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelMeter {
    /// Loudest RFC 6464 level seen (-dBov; lower is louder).
    peak: Option<u8>,
}

impl LevelMeter {
    /// An RFC 6464 level (-dBov, 0..=127) of one packet.
    pub fn add_rfc6464(&mut self, level: u8) {
        let level = level.min(127);
        self.peak = Some(self.peak.map_or(level, |p| p.min(level)));
    }

    /// A level in dBov of one frame.
    pub fn add_dbov(&mut self, dbov: i8) {
        self.add_rfc6464(rfc6464_of_dbov(dbov));
    }

    /// The period's peak in dBov, and a fresh period.
    pub fn take(&mut self) -> Option<i8> {
        self.peak.take().map(|l| -(l as i8))
    }

    pub fn clear(&mut self) {
        self.peak = None;
    }
}

/// One period's levels of the active talkers: (participant, dBov), at most [`MAX_LEVELS`]
/// (the loudest). Fixed size, so reporting it allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    len: u8,
    entries: [(ParticipantId, i8); MAX_LEVELS],
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            len: 0,
            entries: [(0, -127); MAX_LEVELS],
        }
    }
}

impl Levels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a talker's level; when full, it replaces the quietest if it is louder.
    pub fn push(&mut self, participant: ParticipantId, dbov: i8) {
        let n = usize::from(self.len);
        if n < MAX_LEVELS {
            self.entries[n] = (participant, dbov);
            self.len += 1;
            return;
        }
        if let Some(q) = (0..MAX_LEVELS).min_by_key(|&i| self.entries[i].1) {
            if self.entries[q].1 < dbov {
                self.entries[q] = (participant, dbov);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// (participant, dBov) in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (ParticipantId, i8)> + '_ {
        self.entries[..usize::from(self.len)].iter().copied()
    }
}

/// The dominant speaker, with hysteresis: the member who most recently started talking
/// takes the floor once it has gone on for [`DOMINANT_HOLD`] and still has voice; silence
/// leaves the floor with the last dominant speaker.
#[derive(Clone, Copy, Debug, Default)]
pub struct DominantSpeaker {
    current: Option<ParticipantId>,
    /// The challenger and since when it has been the most recent talker.
    candidate: Option<(ParticipantId, Instant)>,
}

impl DominantSpeaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The dominant speaker now.
    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    /// Feeds the most recent talker at `now` (None: nobody talks) and when it last had
    /// voice; returns the new dominant speaker when the floor changes.
    pub fn update(
        &mut self,
        now: Instant,
        latest: Option<(ParticipantId, Option<Instant>)>,
    ) -> Option<ParticipantId> {
        let Some((p, last_voice)) = latest else {
            self.candidate = None;
            return None;
        };
        if self.current == Some(p) {
            self.candidate = None;
            return None;
        }
        let since = match self.candidate {
            Some((c, t)) if c == p => t,
            _ => {
                self.candidate = Some((p, now));
                now
            }
        };
        let voicing =
            last_voice.is_some_and(|t| now.saturating_duration_since(t) <= DOMINANT_VOICE_RECENT);
        let held = now.saturating_duration_since(since) >= DOMINANT_HOLD;
        if voicing && (held || self.current.is_none()) {
            self.current = Some(p);
            self.candidate = None;
            return Some(p);
        }
        None
    }

    /// A member left: it no longer holds the floor (nobody does until someone talks).
    pub fn forget(&mut self, p: ParticipantId) {
        if self.current == Some(p) {
            self.current = None;
        }
        if self.candidate.is_some_and(|(c, _)| c == p) {
            self.candidate = None;
        }
    }
}

/// A talk-run edge, for `speaking` notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TalkEdge {
    Started(Run),
    Stopped,
}

/// Detects the talk runs of one source. Time comes in as `now`.
#[derive(Clone, Debug, Default)]
pub struct TalkDetector {
    run: Option<Run>,
    /// Set once the source has used `talk on|off`: push to talk then decides alone.
    push_to_talk: bool,
    last_voice: Option<Instant>,
}

impl TalkDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current run, if the source is talking.
    pub fn run(&self) -> Option<Run> {
        self.run
    }

    /// When the source last had voice (automatic detection; a push-to-talk run counts as
    /// voice while it lasts).
    pub fn last_voice(&self, now: Instant) -> Option<Instant> {
        match (self.push_to_talk, self.run) {
            (true, Some(_)) => Some(now),
            _ => self.last_voice,
        }
    }

    /// Ends the current run at once (the source was muted or left); the edge, if any.
    pub fn stop(&mut self, now: Instant) -> Option<TalkEdge> {
        self.last_voice = None;
        self.set(now, false)
    }

    /// Whether the source uses push to talk (`talk on|off`). Smart duplex is keyed on the
    /// *receiver's* push-to-talk run: seed 003 describes it for a user who interrupts "by
    /// pressing his control key to talk". A receiver whose speech is only detected (marker,
    /// level, VAD) still never hears itself, but hears every other talker.
    pub fn is_push_to_talk(&self) -> bool {
        self.push_to_talk
    }

    /// The run that smart duplex applies to this source as a *receiver*: its current run
    /// under push to talk, else None.
    pub fn duplex_run(&self) -> Option<Run> {
        if self.push_to_talk {
            self.run
        } else {
            None
        }
    }

    /// `talk on|off` from the control line.
    pub fn control(&mut self, now: Instant, on: bool) -> Option<TalkEdge> {
        self.push_to_talk = true;
        self.set(now, on)
    }

    /// Evidence from one packet (or decoded frame): `marker` starts a run, `voice` says the
    /// frame holds speech (RFC 6464 level, or the caller's energy VAD). Ignored under push to
    /// talk.
    pub fn observe(&mut self, now: Instant, marker: bool, voice: bool) -> Option<TalkEdge> {
        if self.push_to_talk {
            return None;
        }
        if voice || marker {
            self.last_voice = Some(now);
            return self.set(now, true);
        }
        self.expire(now)
    }

    /// Ends an automatically detected run after [`HANGOVER`] without voice; call on ticks.
    pub fn expire(&mut self, now: Instant) -> Option<TalkEdge> {
        if self.push_to_talk || self.run.is_none() {
            return None;
        }
        match self.last_voice {
            Some(t) if now.saturating_duration_since(t) < HANGOVER => None,
            _ => self.set(now, false),
        }
    }

    fn set(&mut self, now: Instant, on: bool) -> Option<TalkEdge> {
        match (self.run, on) {
            (None, true) => {
                let run = Run { start: now };
                self.run = Some(run);
                Some(TalkEdge::Started(run))
            }
            (Some(_), false) => {
                self.run = None;
                Some(TalkEdge::Stopped)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timeline helper: seconds from a common origin.
    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    /// A talk run over [start, end) in seconds.
    struct Talk(f64, f64);

    /// Does receiver `r` hear source `s` at time `t`, both given as run schedules?
    fn hears(t0: Instant, r: &[Talk], s: &[Talk], t: f64) -> bool {
        let run_at = |sched: &[Talk]| {
            sched
                .iter()
                .find(|x| x.0 <= t && t < x.1)
                .map(|x| Run { start: at(t0, x.0) })
        };
        match run_at(s) {
            None => false,
            Some(src) => audible(run_at(r), src),
        }
    }

    #[test]
    fn not_talking_hears_everyone() {
        let t0 = Instant::now();
        assert!(audible(None, Run { start: t0 }));
        assert!(audible(None, Run { start: at(t0, 5.0) }));
    }

    #[test]
    fn earlier_runs_are_left_out_later_ones_mixed_in() {
        let t0 = Instant::now();
        let r = Some(Run { start: at(t0, 3.0) });
        assert!(!audible(r, Run { start: at(t0, 0.0) }));
        assert!(!audible(
            r,
            Run {
                start: at(t0, 2.999)
            }
        ));
        assert!(audible(r, Run { start: at(t0, 3.0) }));
        assert!(audible(r, Run { start: at(t0, 4.0) }));
    }

    /// The acceptance timeline: A 0-8 s, B 3-6 s, C 4-8 s, from B's seat.
    #[test]
    fn acceptance_timeline_from_b() {
        let t0 = Instant::now();
        let a = [Talk(0.0, 8.0)];
        let b = [Talk(3.0, 6.0)];
        let c = [Talk(4.0, 8.0)];
        // Before B talks, B hears A.
        assert!(hears(t0, &b, &a, 1.0));
        assert!(hears(t0, &b, &a, 2.9));
        // B interrupts: A is left out, for the whole of B's run.
        for t in [3.0, 3.5, 4.5, 5.9] {
            assert!(!hears(t0, &b, &a, t), "A at {t}");
        }
        // C begins during B's run: mixed in.
        for t in [4.0, 4.5, 5.9] {
            assert!(hears(t0, &b, &c, t), "C at {t}");
        }
        // B stops: A (still going) resumes; C goes on.
        for t in [6.0, 6.5, 7.9] {
            assert!(hears(t0, &b, &a, t), "A at {t}");
            assert!(hears(t0, &b, &c, t), "C at {t}");
        }
        // Nobody hears a run that is over.
        assert!(!hears(t0, &b, &a, 8.5));
    }

    #[test]
    fn interrupter_can_be_interrupted_and_others_keep_hearing() {
        let t0 = Instant::now();
        let a = [Talk(0.0, 8.0)];
        let b = [Talk(3.0, 6.0)];
        let c = [Talk(4.0, 8.0)];
        // A hears B's interruption (B began during A's run) and C's.
        assert!(hears(t0, &a, &b, 3.5));
        assert!(hears(t0, &a, &c, 4.5));
        // C talks since 4 s: A and B began before, so C hears neither while talking.
        assert!(!hears(t0, &c, &a, 5.0));
        assert!(!hears(t0, &c, &b, 5.0));
        // A later second run of B (after C began) would be heard by C.
        let b2 = [Talk(3.0, 4.5), Talk(5.0, 6.0)];
        assert!(hears(t0, &c, &b2, 5.5));
    }

    #[test]
    fn push_to_talk_governs_alone() {
        let t0 = Instant::now();
        let mut d = TalkDetector::new();
        assert_eq!(
            d.control(at(t0, 1.0), true),
            Some(TalkEdge::Started(Run { start: at(t0, 1.0) }))
        );
        assert_eq!(d.control(at(t0, 1.5), true), None);
        // Markers and voice do not start or restart runs under push to talk.
        assert_eq!(d.observe(at(t0, 2.0), true, true), None);
        assert_eq!(d.expire(at(t0, 9.0)), None);
        assert_eq!(d.run(), Some(Run { start: at(t0, 1.0) }));
        assert_eq!(d.control(at(t0, 9.0), false), Some(TalkEdge::Stopped));
        assert_eq!(d.observe(at(t0, 9.1), true, true), None);
        assert_eq!(d.run(), None);
    }

    #[test]
    fn automatic_runs_start_on_marker_or_voice_and_end_after_hangover() {
        let t0 = Instant::now();
        let mut d = TalkDetector::new();
        assert_eq!(d.observe(at(t0, 0.0), false, false), None);
        assert_eq!(
            d.observe(at(t0, 0.02), true, false),
            Some(TalkEdge::Started(Run {
                start: at(t0, 0.02)
            }))
        );
        assert_eq!(d.observe(at(t0, 0.04), false, true), None);
        assert_eq!(d.observe(at(t0, 0.3), false, false), None);
        assert_eq!(d.expire(at(t0, 0.43)), None);
        assert_eq!(d.expire(at(t0, 0.45)), Some(TalkEdge::Stopped));
        // Voice alone starts a new run, with a new start.
        assert_eq!(
            d.observe(at(t0, 1.0), false, true),
            Some(TalkEdge::Started(Run { start: at(t0, 1.0) }))
        );
    }

    #[test]
    fn level_meter_keeps_the_period_peak() {
        let mut m = LevelMeter::default();
        assert_eq!(m.take(), None);
        m.add_rfc6464(40);
        m.add_rfc6464(20);
        m.add_dbov(-30);
        m.add_rfc6464(200);
        assert_eq!(m.take(), Some(-20));
        assert_eq!(m.take(), None, "a new period starts empty");
        m.add_rfc6464(127);
        assert_eq!(m.take(), Some(-127));
        assert_eq!(dbov_of_mean_square(0.0), -127);
        assert_eq!(dbov_of_mean_square(FULL_SCALE_SQUARED), 0);
        // A -12 dBFS sine has a mean square 15 dB under full scale.
        let sine = FULL_SCALE_SQUARED * 10f64.powf(-1.2) / 2.0;
        assert_eq!(dbov_of_mean_square(sine), -15);
        assert_eq!(rfc6464_of_dbov(-15), 15);
        assert_eq!(rfc6464_of_dbov(-128), 127);
    }

    #[test]
    fn levels_keep_the_loudest_when_full() {
        let mut l = Levels::new();
        assert!(l.is_empty());
        for p in 0..MAX_LEVELS as u32 {
            l.push(p, -60 + p as i8);
        }
        l.push(100, -10);
        l.push(101, -90);
        assert_eq!(l.len(), MAX_LEVELS);
        let got: Vec<_> = l.iter().collect();
        assert!(got.contains(&(100, -10)));
        assert!(!got.iter().any(|&(p, _)| p == 0 || p == 101), "{got:?}");
        l.clear();
        assert!(l.is_empty());
    }

    #[test]
    fn dominant_speaker_has_hysteresis() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut d = DominantSpeaker::new();
        // The first talker takes the empty floor at once.
        assert_eq!(d.update(ms(0), Some((1, Some(ms(0))))), Some(1));
        assert_eq!(d.update(ms(100), Some((1, Some(ms(100))))), None);
        // A cough: 2 starts talking but has no voice by the time it would take over.
        assert_eq!(d.update(ms(200), Some((2, Some(ms(200))))), None);
        assert_eq!(d.update(ms(400), Some((2, Some(ms(250))))), None);
        assert_eq!(d.update(ms(700), Some((2, Some(ms(250))))), None);
        assert_eq!(d.current(), Some(1));
        // Silence leaves the floor where it is.
        assert_eq!(d.update(ms(800), None), None);
        assert_eq!(d.current(), Some(1));
        // 3 talks on: after the hold it takes the floor.
        assert_eq!(d.update(ms(1000), Some((3, Some(ms(1000))))), None);
        assert_eq!(d.update(ms(1200), Some((3, Some(ms(1200))))), None);
        assert_eq!(d.update(ms(1400), Some((3, Some(ms(1390))))), Some(3));
        d.forget(3);
        assert_eq!(d.current(), None);
    }

    #[test]
    fn reads_rfc6464_level() {
        // Fixed header with X set, then a one-byte extension: id 1, len 0 (1 byte), V|level 30.
        let mut d = vec![0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x80 | 30, 0, 0]);
        d.extend_from_slice(&[1, 2, 3]);
        let p = RtpView::parse(&d).unwrap();
        assert_eq!(audio_level(&p, 1), Some((true, 30)));
        assert_eq!(audio_level(&p, 2), None);
        // Truncated element length: none, no panic.
        let mut bad = vec![0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        bad.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x0f, 0, 0, 0]);
        let p = RtpView::parse(&bad).unwrap();
        assert_eq!(audio_level(&p, 0), None);
    }
}
