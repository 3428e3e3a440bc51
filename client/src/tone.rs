//! Test tones: the sine the client sends, and the detector that checks recordings.
//!
//! The detector mirrors `tools/tone_check.py` (in the repository) exactly (100 ms Hann-windowed blocks, Goertzel
//! amplitude per block, power averaged over blocks, dBFS with 0 dB = full-scale sine), so a
//! Rust test and the script agree on what "B hears A's 440 Hz tone" means.

use crate::ClientError;
use std::path::Path;

/// A sine generator with continuous phase across frames.
#[derive(Debug, Clone)]
pub struct Sine {
    freq: f64,
    amplitude: f64,
    sample_rate: f64,
    /// Samples produced so far; the phase is derived from it so it never drifts.
    n: u64,
}

impl Sine {
    /// A sine at `freq` Hz and `level_dbfs` (0 dB = full-scale sine).
    pub fn new(freq: f64, level_dbfs: f64, sample_rate: u32) -> Self {
        Sine {
            freq,
            amplitude: 32767.0 * 10f64.powf(level_dbfs / 20.0),
            sample_rate: f64::from(sample_rate),
            n: 0,
        }
    }

    /// Changes the level to `level_dbfs` from the next sample on, keeping the phase.
    pub fn set_level(&mut self, level_dbfs: f64) {
        self.amplitude = 32767.0 * 10f64.powf(level_dbfs / 20.0);
    }

    /// Skips `samples` (time passed without sending), keeping the phase on the clock.
    pub fn skip(&mut self, samples: u64) {
        self.n += samples;
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            // Fractional cycles only: keeps precision for arbitrarily long sessions.
            let cycles = (self.n as f64 * self.freq / self.sample_rate).fract();
            let v = self.amplitude * (2.0 * std::f64::consts::PI * cycles).sin();
            *s = v.round().clamp(-32768.0, 32767.0) as i16;
            self.n += 1;
        }
    }
}

/// Which part of a recording to analyse, as `tone_check.py`'s `--skip`, `--dur`, `--block`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Seconds skipped at the start (codec warm-up).
    pub skip: f64,
    /// Seconds analysed; 0 = the rest of the file.
    pub duration: f64,
    /// Block length in seconds.
    pub block: f64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            skip: 0.5,
            duration: 0.0,
            block: 0.1,
        }
    }
}

/// A recording cut into Hann-windowed blocks, ready to measure tones in.
#[derive(Debug, Clone)]
pub struct ToneAnalysis {
    sample_rate: f64,
    blocks: Vec<Vec<f64>>,
    window_sum: f64,
    /// RMS of the analysed samples in dBFS.
    pub rms_db: f64,
    /// Blocks whose peak is below 1e-3 of full scale.
    pub silent_blocks: usize,
}

impl ToneAnalysis {
    /// Cuts `samples` (channel 0) into blocks; `None` when there is less than one block.
    pub fn new(samples: &[i16], sample_rate: u32, window: Window) -> Option<Self> {
        let sr = f64::from(sample_rate);
        let start = ((window.skip * sr) as usize).min(samples.len());
        let end = if window.duration == 0.0 {
            samples.len()
        } else {
            samples.len().min(start + (window.duration * sr) as usize)
        };
        let x: Vec<f64> = samples[start..end]
            .iter()
            .map(|&v| f64::from(v) / 32768.0)
            .collect();
        let b = (window.block * sr) as usize;
        if b < 2 || x.len() < b {
            return None;
        }
        let win: Vec<f64> = (0..b)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (b - 1) as f64).cos())
            .collect();
        let window_sum = win.iter().sum();
        let blocks: Vec<Vec<f64>> = x
            .chunks_exact(b)
            .map(|c| c.iter().zip(&win).map(|(v, w)| v * w).collect())
            .collect();
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
        let silent_blocks = x
            .chunks_exact(b)
            .filter(|c| c.iter().all(|v| v.abs() < 1e-3))
            .count();
        Some(ToneAnalysis {
            sample_rate: sr,
            blocks,
            window_sum,
            rms_db: 20.0 * (rms + 1e-12).log10(),
            silent_blocks,
        })
    }

    /// Number of blocks analysed.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Level of a sinusoid at `freq` Hz in dBFS, power-averaged over blocks.
    pub fn level_db(&self, freq: f64) -> f64 {
        let p: f64 = self
            .blocks
            .iter()
            .map(|b| self.amplitude(b, freq).powi(2))
            .sum::<f64>()
            / self.blocks.len() as f64;
        10.0 * (p + 1e-20).log10()
    }

    /// Goertzel amplitude of one windowed block, scaled so a full-scale sine reads 1.0.
    fn amplitude(&self, block: &[f64], freq: f64) -> f64 {
        let k = 2.0 * (2.0 * std::f64::consts::PI * freq / self.sample_rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in block {
            let s0 = v + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        2.0 * (s1 * s1 + s2 * s2 - k * s1 * s2).max(0.0).sqrt() / self.window_sum
    }
}

/// Level of `freq` in `samples` in dBFS over `window`; `None` when too short to measure.
pub fn level_db(samples: &[i16], sample_rate: u32, freq: f64, window: Window) -> Option<f64> {
    ToneAnalysis::new(samples, sample_rate, window).map(|a| a.level_db(freq))
}

/// Reads a 16-bit integer WAV: channel 0's samples and the sample rate.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(Vec<i16>, u32), ClientError> {
    let path = path.as_ref();
    let wav_err = |source| ClientError::Wav {
        path: path.to_owned(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(wav_err(hound::Error::Unsupported));
    }
    let channels = usize::from(spec.channels.max(1));
    let samples = reader
        .samples::<i16>()
        .step_by(channels)
        .collect::<Result<Vec<_>, _>>()
        .map_err(wav_err)?;
    Ok((samples, spec.sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 48_000;

    fn tone(freq: f64, db: f64, secs: f64) -> Vec<i16> {
        let mut s = Sine::new(freq, db, SR);
        let mut out = vec![0; (secs * f64::from(SR)) as usize];
        s.fill(&mut out);
        out
    }

    #[test]
    fn measures_a_sine_at_its_level() {
        let x = tone(440.0, -12.0, 2.0);
        let a = ToneAnalysis::new(&x, SR, Window::default()).unwrap();
        assert_eq!(a.blocks(), 15);
        let at = a.level_db(440.0);
        assert!((at + 12.0).abs() < 0.2, "440 Hz measured {at}");
        let off = a.level_db(660.0);
        assert!(off < -60.0, "660 Hz measured {off}");
        assert!((a.rms_db - (-12.0 - 3.01)).abs() < 0.2);
        assert_eq!(a.silent_blocks, 0);
    }

    #[test]
    fn silence_is_very_low() {
        let x = vec![0i16; 48_000];
        let a = ToneAnalysis::new(&x, SR, Window::default()).unwrap();
        assert!(a.level_db(440.0) < -150.0);
        assert_eq!(a.silent_blocks, a.blocks());
    }

    #[test]
    fn too_short_is_none() {
        let x = tone(440.0, -12.0, 0.55);
        assert!(level_db(&x, SR, 440.0, Window::default()).is_none());
    }

    #[test]
    fn sine_phase_is_continuous_across_frames() {
        let whole = tone(1000.0, -6.0, 0.1);
        let mut s = Sine::new(1000.0, -6.0, SR);
        let mut parts = vec![0; whole.len()];
        for chunk in parts.chunks_mut(960) {
            s.fill(chunk);
        }
        assert_eq!(whole, parts);
    }

    #[test]
    fn window_selects_skip_and_duration() {
        // 1 s of 440 Hz then 1 s of 880 Hz.
        let mut x = tone(440.0, -12.0, 1.0);
        x.extend(tone(880.0, -12.0, 1.0));
        let w = Window {
            skip: 1.0,
            duration: 0.5,
            block: 0.1,
        };
        let a = ToneAnalysis::new(&x, SR, w).unwrap();
        assert_eq!(a.blocks(), 5);
        assert!(a.level_db(880.0) > -12.5);
        assert!(a.level_db(440.0) < -60.0);
    }

    #[test]
    fn agrees_with_tone_check_py() {
        let dir = std::env::temp_dir().join(format!("client-tone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("two-tones.wav");
        let a = tone(440.0, -12.0, 1.5);
        let b = tone(660.0, -30.0, 1.5);
        let mix: Vec<i16> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x.saturating_add(*y))
            .collect();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SR,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for s in &mix {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();

        let (read, sr) = read_wav(&path).unwrap();
        assert_eq!((read.len(), sr), (mix.len(), SR));
        let ours = ToneAnalysis::new(&read, sr, Window::default()).unwrap();

        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/tone_check.py").to_owned();
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&path)
            .args([
                "--expect", "440", "660", "--absent", "1000", "--min-db", "-40",
            ])
            .output();
        let out = match out {
            Ok(o) if Path::new(&script).exists() => o,
            _ => {
                println!("note: python3 or {script} missing; skipped the tone_check.py comparison");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "tone_check.py failed:\n{text}");
        let mut compared = 0;
        for line in text.lines() {
            // "  expect   440.0 Hz:  -12.0 dB  OK"
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["expect" | "absent", f, "Hz:", db, ..] = words[..] {
                let f: f64 = f.parse().unwrap();
                let db: f64 = db.parse().unwrap();
                let mine = ours.level_db(f);
                assert!(
                    (mine - db).abs() <= 0.06,
                    "{f} Hz: ours {mine}, script {db}"
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 3, "unexpected tone_check.py output:\n{text}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
