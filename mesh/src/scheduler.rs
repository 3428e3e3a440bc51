//! The scheduler, one per receiver: decides *when* a packet may go to that receiver.
//!
//! For now it releases at once or sheds: a token bucket holds the receiver's budget, audio
//! always passes (and spends tokens), video passes only while tokens last. Pacing queues
//! come later.

use std::time::{Duration, Instant};

use crate::{DropReason, MediaKind};

/// How much unused budget may be saved up for a burst (a keyframe, say).
const BURST: Duration = Duration::from_millis(100);
/// The bucket always holds at least two full-size packets, so tiny budgets still pass video.
const MIN_BURST_BITS: f64 = 2.0 * 1500.0 * 8.0;

#[derive(Clone, Debug)]
struct Bucket {
    rate_bps: f64,
    burst_bits: f64,
    /// Negative when audio has overspent; video waits until the debt is repaid.
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(bits_per_sec: u64) -> Self {
        let rate_bps = bits_per_sec as f64;
        let burst_bits = (rate_bps * BURST.as_secs_f64()).max(MIN_BURST_BITS);
        Self {
            rate_bps,
            burst_bits,
            tokens: burst_bits,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate_bps).min(self.burst_bits);
        }
        // Never move backwards, so an out-of-order `now` cannot mint tokens twice.
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Scheduler {
    /// `None`: unlimited.
    bucket: Option<Bucket>,
}

impl Scheduler {
    pub(crate) fn set_budget(&mut self, bits_per_sec: Option<u64>) {
        self.bucket = bits_per_sec.map(Bucket::new);
    }

    /// Admits a packet of `len` bytes of `kind` at `now`, or sheds it.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        kind: MediaKind,
        len: usize,
    ) -> Result<(), DropReason> {
        let Some(b) = &mut self.bucket else {
            return Ok(());
        };
        b.refill(now);
        let bits = (len * 8) as f64;
        match kind {
            MediaKind::Audio => {
                // Audio is never shed, but its debt is bounded so video can recover.
                b.tokens = (b.tokens - bits).max(-b.burst_bits);
                Ok(())
            }
            MediaKind::Video if b.tokens >= bits => {
                b.tokens -= bits;
                Ok(())
            }
            MediaKind::Video => Err(DropReason::OverBudget),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `per_tick` packets of each kind every 10 ms for one second; returns how many
    /// (audio, video) passed.
    fn run(s: &mut Scheduler, audio_len: usize, video_len: usize, per_tick: usize) -> (u64, u64) {
        let t0 = Instant::now();
        let (mut a, mut v) = (0, 0);
        for tick in 0..100u64 {
            let now = t0 + Duration::from_millis(10 * tick);
            for _ in 0..per_tick {
                a += u64::from(s.admit(now, MediaKind::Audio, audio_len).is_ok());
                v += u64::from(s.admit(now, MediaKind::Video, video_len).is_ok());
            }
        }
        (a, v)
    }

    #[test]
    fn unlimited_by_default() {
        let mut s = Scheduler::default();
        assert_eq!(run(&mut s, 200, 1200, 5), (500, 500));
    }

    #[test]
    fn sheds_video_keeps_audio() {
        let mut s = Scheduler::default();
        // 200 kbit/s against 500 audio x 200 B (0.8 Mbit) + 500 video x 1200 B (4.8 Mbit).
        s.set_budget(Some(200_000));
        let (a, v) = run(&mut s, 200, 1200, 5);
        assert_eq!(a, 500);
        assert!(v < 10, "video passed {v}");
    }

    #[test]
    fn video_fits_within_budget() {
        let mut s = Scheduler::default();
        // 1 Mbit/s: 32 kbit/s audio leaves ~968 kbit/s, ~100 video packets of 1200 B.
        s.set_budget(Some(1_000_000));
        let (a, v) = run(&mut s, 40, 1200, 1);
        assert_eq!(a, 100);
        assert!((95..=100).contains(&v), "video passed {v}");
        // Twice the offered load: about half the video passes.
        let mut s = Scheduler::default();
        s.set_budget(Some(1_000_000));
        let (_, v) = run(&mut s, 40, 1200, 2);
        assert!((95..=115).contains(&v), "video passed {v}");
    }

    #[test]
    fn lifting_budget_restores_video() {
        let mut s = Scheduler::default();
        s.set_budget(Some(0));
        let now = Instant::now();
        assert!(
            s.admit(now, MediaKind::Video, 1200).is_ok(),
            "burst allowance"
        );
        assert!(s.admit(now, MediaKind::Video, 1200).is_ok());
        assert_eq!(
            s.admit(now, MediaKind::Video, 1200),
            Err(DropReason::OverBudget)
        );
        assert_eq!(s.admit(now, MediaKind::Audio, 1200), Ok(()));
        s.set_budget(None);
        assert_eq!(s.admit(now, MediaKind::Video, 1200), Ok(()));
    }
}
