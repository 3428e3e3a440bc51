//! The transcoder's share of a recording: the all-party mix as listeners hear it, timed
//! when it was heard, for the media server's recorder.

use std::time::{Duration, Instant};

use codecs::opus::FRAME_SAMPLES;

use crate::{Transcoder, MIX_PERIOD};

/// A recording's share of the mixer: the all-party mix since the last take, and its clock.
#[derive(Default)]
pub(crate) struct Recorded {
    /// When the first sample of `pcm` was heard.
    first: Option<Instant>,
    pcm: Vec<i16>,
    /// The last mix time and when the next sample was heard: contiguous while the mix
    /// keeps its cadence.
    clock: Option<(Instant, Instant)>,
    /// Samples still to leave out: the jitter buffers' target grew (after a stall), so
    /// the mix now lags its senders by that much more, filled with concealment.
    skip: usize,
}

impl Transcoder {
    /// A transcoder that only mixes for a recording ([`Transcoder::set_recording`]): it
    /// sends no packets and reports no indicators.
    pub fn recorder_only() -> Self {
        let mut t = Self::new();
        t.silent = true;
        t.receivers = Some(Vec::new());
        t.recorded = Some(Recorded::default());
        t
    }

    /// Keeps the all-party mix (every talker, as a listener hears it) for a recording.
    pub fn set_recording(&mut self, on: bool) {
        if on != self.recorded.is_some() {
            self.recorded = on.then(Recorded::default);
        }
    }

    /// The all-party mix since the last call (48 kHz mono) and the mix time of its first
    /// sample; `None` when nothing was mixed or no recording runs.
    pub fn take_recorded(&mut self) -> Option<(Instant, Vec<i16>)> {
        let r = self.recorded.as_mut()?;
        let at = r.first.take()?;
        Some((
            at,
            std::mem::replace(&mut r.pcm, Vec::with_capacity(4 * FRAME_SAMPLES)),
        ))
    }

    /// Keeps this mix for the recording. It is timed when it was heard, not when it was
    /// mixed: back by the talkers' mean jitter-buffer target, as a picture is timed when it
    /// came; then sample by sample, until the mix loses its cadence.
    pub(crate) fn record_mix(&mut self, now: Instant) {
        let cadence = self
            .recorded
            .as_ref()
            .and_then(|r| r.clock)
            .filter(|&(last, _)| now == last + MIX_PERIOD);
        // Never back in time: after a stall, with a deeper jitter target, the recording's
        // audio resumes where it left off rather than overlapping what it has.
        let floor = self
            .recorded
            .as_ref()
            .and_then(|r| r.clock)
            .map(|(_, next)| next);
        let mut behind = Duration::ZERO;
        let heard = match cadence {
            Some((_, next)) => next,
            None => {
                let (sum, n) = self
                    .talkers
                    .iter()
                    .filter_map(|(id, _, _)| self.sources.get(id))
                    .filter(|s| s.has_frame)
                    .fold((0u32, 0u32), |(sum, n), s| {
                        (sum + s.jitter.target_ms(), n + 1)
                    });
                let h = now
                    .checked_sub(Duration::from_millis(u64::from(sum / n.max(1))))
                    .unwrap_or(now);
                match floor {
                    // Not back over what is written: the lag is cut from the mix to come
                    // instead, so pictures and sound stay together.
                    Some(f) if h < f => {
                        behind = f - h;
                        f
                    }
                    _ => h,
                }
            }
        };
        let pcm = self.bus.output();
        if let Some(r) = self.recorded.as_mut() {
            let per_sample = MIX_PERIOD / FRAME_SAMPLES as u32;
            r.skip += (behind.as_nanos() / per_sample.as_nanos()) as usize;
            let cut = r.skip.min(pcm.len());
            r.skip -= cut;
            let kept = &pcm[cut..];
            r.clock = Some((now, heard + per_sample * kept.len() as u32));
            if !kept.is_empty() {
                r.first.get_or_insert(heard);
                r.pcm.extend_from_slice(kept);
            }
        }
    }
}
