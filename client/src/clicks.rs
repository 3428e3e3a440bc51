//! Mouth-to-ear latency: a click train on the sending side, a click detector on the
//! receiving side, both on the machine's wall clock (`confclient --clicks` and
//! `confclient --detect-clicks`, run on one host).
//!
//! The sender puts a click at every multiple of [`CLICK_PERIOD`] of Unix time, at the
//! sample where that instant falls in the frame it is capturing (a frame sent at `S` holds
//! what a microphone captured during the 20 ms before `S`), over a quiet bed tone that
//! keeps a mixer's talk detection on. The receiver finds each click's onset in the audio it
//! plays out: the recorder hands a chunk to the "speaker" on each 20 ms tick at wall time
//! `T`, so a sample `k` samples into that chunk is heard at `T + k / 48 kHz`. Latency is
//! that moment minus the click's grid time: sender frame, network, the server's path (and
//! jitter buffer when mixing), the client's jitter buffer and the output tick all count.
//!
//! Sans-IO: wall time comes in as nanoseconds since the Unix epoch.

use codecs::opus::SAMPLE_RATE;

/// Clicks come this often, on the wall clock's grid.
pub const CLICK_PERIOD_MS: u64 = 500;
const NS_PER_MS: u64 = 1_000_000;
const NS_PER_SAMPLE: f64 = 1e9 / SAMPLE_RATE as f64;
/// A click: 4 ms of 2 kHz at -3 dBFS.
const CLICK_SAMPLES: usize = SAMPLE_RATE as usize * 4 / 1000;
const CLICK_HZ: f64 = 2_000.0;
const CLICK_AMPLITUDE: f64 = 32767.0 * 0.707;
/// The bed under the clicks: 300 Hz at -40 dBFS, voice to a mixer's detector, far below the
/// detector's threshold.
const BED_HZ: f64 = 300.0;
const BED_AMPLITUDE: f64 = 32767.0 * 0.01;
/// A sample louder than this (about -12 dBFS) starts a click...
const ONSET: i32 = 8_000;
/// ...unless one started less than this long ago (it is the same click).
const HOLDOFF: u64 = SAMPLE_RATE as u64 * 200 / 1000;

/// Writes the sender's audio: the bed tone and a click at each grid instant.
#[derive(Debug, Clone, Default)]
pub struct ClickTrain {
    /// Samples produced, for the bed's phase.
    n: u64,
}

impl ClickTrain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills `pcm` (48 kHz) with the audio captured during the `pcm.len()` samples that
    /// end at `end_unix_ns`.
    pub fn fill(&mut self, pcm: &mut [i16], end_unix_ns: u128) {
        let len = pcm.len();
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (self.n + i as u64) as f64 / f64::from(SAMPLE_RATE);
            *s = (BED_AMPLITUDE * (2.0 * std::f64::consts::PI * BED_HZ * t).sin()) as i16;
        }
        self.n += len as u64;
        let span = (len as f64 * NS_PER_SAMPLE) as u128;
        let start = end_unix_ns.saturating_sub(span);
        let period = u128::from(CLICK_PERIOD_MS * NS_PER_MS);
        // Clicks that began up to a click's length before this frame run on into it.
        let click_ns = (CLICK_SAMPLES as f64 * NS_PER_SAMPLE) as u128;
        let mut grid = start.saturating_sub(click_ns).div_ceil(period) * period;
        while grid < end_unix_ns {
            let offset = (grid as f64 - start as f64) / NS_PER_SAMPLE;
            for k in 0..CLICK_SAMPLES {
                let at = offset.round() as i64 + k as i64;
                if let Some(s) = usize::try_from(at).ok().and_then(|i| pcm.get_mut(i)) {
                    let t = k as f64 / f64::from(SAMPLE_RATE);
                    let v = CLICK_AMPLITUDE * (2.0 * std::f64::consts::PI * CLICK_HZ * t).sin();
                    *s = v.round() as i16;
                }
            }
            grid += period;
        }
    }
}

/// Finds click onsets in what is played out and turns them into latencies.
#[derive(Debug, Clone, Default)]
pub struct ClickDetector {
    /// Samples seen so far.
    n: u64,
    last_onset: Option<u64>,
    latencies_ms: Vec<f64>,
}

impl ClickDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// A chunk handed to the speaker at `played_unix_ns`: its first sample is heard then.
    /// Returns the latencies of the clicks that start in it, in milliseconds.
    pub fn feed(&mut self, chunk: &[i16], played_unix_ns: u128) -> Vec<f64> {
        let mut found = Vec::new();
        for (i, &s) in chunk.iter().enumerate() {
            let pos = self.n + i as u64;
            if i32::from(s).abs() < ONSET {
                continue;
            }
            if self.last_onset.is_some_and(|l| pos - l < HOLDOFF) {
                continue;
            }
            self.last_onset = Some(pos);
            let heard = played_unix_ns + (i as f64 * NS_PER_SAMPLE) as u128;
            let period = u128::from(CLICK_PERIOD_MS * NS_PER_MS);
            // The click this is: the last grid instant before it was heard.
            let mouth = heard / period * period;
            let ms = (heard - mouth) as f64 / NS_PER_MS as f64;
            self.latencies_ms.push(ms);
            found.push(ms);
        }
        self.n += chunk.len() as u64;
        found
    }

    /// Every latency measured so far, in milliseconds.
    pub fn latencies(&self) -> &[f64] {
        &self.latencies_ms
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 960;
    const FRAME_NS: u128 = 20_000_000;

    /// The train through a delay line of `delay_ms`, played out in 20 ms chunks: every click
    /// is found at that latency (within the frame quantisation of where it was captured).
    #[test]
    fn clicks_are_found_at_their_latency() {
        let t0: u128 = 1_700_000_000_000 * 1_000_000 + 7_000_000;
        let mut train = ClickTrain::new();
        let mut det = ClickDetector::new();
        let delay_ms = 87u128;
        let mut frames = Vec::new();
        for k in 0..300u128 {
            let mut pcm = vec![0i16; FRAME];
            train.fill(&mut pcm, t0 + (k + 1) * FRAME_NS);
            frames.push(pcm);
        }
        // Frame k (captured up to t0 + (k+1)*20 ms) starts playing delay_ms after its
        // first sample was captured.
        for (k, f) in frames.iter().enumerate() {
            let played = t0 + k as u128 * FRAME_NS + delay_ms * 1_000_000;
            det.feed(f, played);
        }
        let l = det.latencies();
        assert_eq!(l.len(), 12, "{l:?}");
        for ms in l {
            assert!((ms - delay_ms as f64).abs() < 0.1, "{ms}");
        }
        assert_eq!(quantile(l, 0.5).map(f64::round), Some(87.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.99), Some(4.0));
    }

    #[test]
    fn the_bed_alone_is_no_click() {
        let mut train = ClickTrain::new();
        let mut det = ClickDetector::new();
        // A frame between grid instants.
        let mut pcm = vec![0i16; FRAME];
        train.fill(&mut pcm, 1_700_000_000_300_000_000);
        assert!(pcm.iter().any(|&s| s != 0), "the bed is there");
        assert!(det.feed(&pcm, 0).is_empty());
    }
}
