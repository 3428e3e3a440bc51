//! The recording: the [`Mixer`] driven by the wall clock, written to a WAV file.
//!
//! Time zero is when the recorder starts (the client joined); [`Recorder::finish`] writes
//! up to the leave and finalizes the header, so the file covers the whole session with
//! silence where nobody spoke. Each [`Recorder::tick`] hands the mixed audio up to now to
//! the "speaker" (the WAV, and the click detector of the latency bench). The playout
//! delay adapts per stream ([`Mixer::adaptive`]).

use crate::clicks::ClickDetector;
use crate::mixer::{MixStats, Mixer};
use crate::packet::RtpIn;
use crate::ClientError;
use codecs::opus::SAMPLE_RATE;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Receives RTP streams, mixes them on a wall-clock timeline, and optionally records them.
pub struct Recorder {
    mixer: Mixer,
    start: Instant,
    wav: Option<(PathBuf, hound::WavWriter<BufWriter<File>>)>,
    scratch: Vec<i16>,
    /// `--detect-clicks`: click onsets in what is played out, and the latencies found.
    clicks: Option<ClickDetector>,
    found: Vec<f64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("mixer", &self.mixer)
            .field("start", &self.start)
            .field("wav", &self.wav.as_ref().map(|(p, _)| p))
            .finish()
    }
}

impl Recorder {
    /// Starts the timeline at `start`; with `path`, creates the WAV (48 kHz, 16-bit, mono)
    /// now so a bad path fails before joining. Without it, streams are only counted.
    pub fn new(path: Option<&Path>, start: Instant) -> Result<Self, ClientError> {
        Self::with_clicks(path, start, false)
    }

    /// [`Recorder::new`], also detecting the latency bench's clicks in what is played out
    /// when `clicks` (which decodes the streams even without a WAV).
    pub fn with_clicks(
        path: Option<&Path>,
        start: Instant,
        clicks: bool,
    ) -> Result<Self, ClientError> {
        let wav = match path {
            Some(p) => {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: SAMPLE_RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let w = hound::WavWriter::create(p, spec).map_err(|source| ClientError::Wav {
                    path: p.to_owned(),
                    source,
                })?;
                Some((p.to_owned(), w))
            }
            None => None,
        };
        Ok(Recorder {
            mixer: Mixer::adaptive(wav.is_some() || clicks),
            start,
            wav,
            scratch: Vec::new(),
            clicks: clicks.then(ClickDetector::new),
            found: Vec::new(),
        })
    }

    /// Decode G.711 of `law` instead of Opus (a telephony client).
    pub fn set_telephony(&mut self, law: Option<codecs::g711::Law>) {
        self.mixer.set_telephony(law);
    }

    /// Restarts the timeline (the session really began at `start`); only before any audio.
    pub fn restart(&mut self, start: Instant) {
        if self.mixer.written() == 0 && self.mixer.stats().packets == 0 {
            self.start = start;
        }
    }

    fn position(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.start);
        (d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000) as u64
    }

    /// Takes in a packet that arrived at `at`.
    pub fn push(&mut self, at: Instant, pkt: &RtpIn) {
        let now = self.position(at);
        self.mixer.push(now, pkt);
    }

    /// Mixes and writes everything up to `at`.
    pub fn tick(&mut self, at: Instant) -> Result<(), ClientError> {
        let now = self.position(at);
        self.scratch.clear();
        self.mixer.advance(now, &mut self.scratch);
        if let Some(d) = self.clicks.as_mut() {
            // This chunk starts playing now.
            let played = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            self.found.extend(d.feed(&self.scratch, played));
        }
        if let Some((path, w)) = self.wav.as_mut() {
            for &s in &self.scratch {
                w.write_sample(s).map_err(|source| ClientError::Wav {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Counters so far.
    pub fn stats(&self) -> MixStats {
        self.mixer.stats()
    }

    /// Click latencies found since the last call, in milliseconds.
    pub fn take_clicks(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.found)
    }

    /// Every click latency found in the session, in milliseconds.
    pub fn click_latencies(&self) -> &[f64] {
        self.clicks.as_ref().map_or(&[], |d| d.latencies())
    }

    /// The largest playout delay of any stream now, in milliseconds.
    pub fn delay_ms(&self) -> f64 {
        self.mixer.delay() as f64 * 1000.0 / f64::from(SAMPLE_RATE)
    }

    /// Per received stream, for receiver reports: (SSRC, expected, received, highest
    /// extended sequence number, jitter in 48 kHz samples).
    pub fn reception(&self) -> Vec<(u32, u64, u64, u64, u32)> {
        self.mixer.reception().collect()
    }

    /// Writes up to `at`, finalizes the WAV header, and returns the counters.
    pub fn finish(mut self, at: Instant) -> Result<MixStats, ClientError> {
        let written = self.tick(at);
        if let Some((path, w)) = self.wav.take() {
            w.finalize()
                .map_err(|source| ClientError::Wav { path, source })?;
        }
        written.map(|()| self.mixer.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{classify, Datagram, RtpSender};
    use crate::tone::{read_wav, Sine, ToneAnalysis, Window};
    use codecs::opus::{Encoder, FRAME_SAMPLES};
    use std::time::Duration;

    #[test]
    fn records_a_stream_on_the_wall_clock() {
        let dir = std::env::temp_dir().join(format!("client-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::new(Some(&path), t0).unwrap();
        let mut enc = Encoder::new().unwrap();
        let mut tone = Sine::new(440.0, -12.0, SAMPLE_RATE);
        let mut tx = RtpSender::new(111, 42);
        let mut pcm = vec![0; FRAME_SAMPLES];
        // Nothing for 0.5 s, then 1.5 s of tone, then 0.5 s of nothing.
        for k in 0..75u64 {
            tone.fill(&mut pcm);
            let bytes = tx.packet(enc.encode(&pcm).unwrap(), FRAME_SAMPLES as u32);
            let Datagram::Rtp(p) = classify(&bytes) else {
                panic!("not RTP")
            };
            let at = t0 + Duration::from_millis(500 + 20 * k);
            rec.push(at, &p);
            rec.tick(at).unwrap();
        }
        let stats = rec.finish(t0 + Duration::from_millis(2500)).unwrap();
        assert_eq!((stats.packets, stats.streams, stats.lost), (75, 1, 0));

        let (x, sr) = read_wav(&path).unwrap();
        assert_eq!((x.len(), sr), (120_000, SAMPLE_RATE));
        let at = |skip, duration| {
            let w = Window {
                skip,
                duration,
                block: 0.1,
            };
            ToneAnalysis::new(&x, sr, w).unwrap().level_db(440.0)
        };
        assert!(at(0.0, 0.5) < -100.0, "silence before the stream");
        // 0.5 s arrival + the playout delay; skip the codec's warm-up.
        assert!(
            (at(0.8, 1.2) + 12.0).abs() < 1.0,
            "tone level {}",
            at(0.8, 1.2)
        );
        assert!(at(2.2, 0.3) < -60.0, "silence after the stream");
        std::fs::remove_dir_all(&dir).ok();
    }
}
