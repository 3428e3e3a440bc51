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

use std::time::{Duration, Instant};

use crate::RtpView;

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
