//! Fixed-frame resampling of mono 16-bit audio between the 48 kHz mix and other rates.
//!
//! Wraps `rubato`'s FFT resampler (chosen over ffmpeg's swresample through `ffmpeg-next`
//! to keep the build free of bindgen and a system FFmpeg; see the workspace Cargo.toml).
//! One call takes exactly one input frame and returns exactly one output frame, so a 20 ms
//! frame at 8 kHz (160 samples) becomes 20 ms at 48 kHz (960) and back.

use rubato::{FftFixedIn, Resampler};

use crate::CodecError;

/// Resamples frames of a fixed length from one rate to another.
pub struct FrameResampler {
    inner: FftFixedIn<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
    pcm: Vec<i16>,
    frame_out: usize,
}

impl FrameResampler {
    /// `frame_in` samples at `from` Hz per call; `frame_in * to / from` must be whole.
    pub fn new(from: usize, to: usize, frame_in: usize) -> Result<Self, CodecError> {
        if from == 0 || frame_in == 0 || !(frame_in * to).is_multiple_of(from) {
            return Err(CodecError::Resample(format!(
                "{frame_in} samples at {from} Hz is not a whole frame at {to} Hz"
            )));
        }
        let frame_out = frame_in * to / from;
        let inner = FftFixedIn::<f32>::new(from, to, frame_in, 1, 1)
            .map_err(|e| CodecError::Resample(e.to_string()))?;
        let output = inner.output_buffer_allocate(true);
        Ok(Self {
            inner,
            input: vec![vec![0.0; frame_in]],
            output,
            pcm: vec![0; frame_out],
            frame_out,
        })
    }

    /// Resamples one frame of exactly `frame_in` samples.
    pub fn process(&mut self, pcm: &[i16]) -> Result<&[i16], CodecError> {
        if pcm.len() != self.input[0].len() {
            return Err(CodecError::FrameSize {
                expected: self.input[0].len(),
                got: pcm.len(),
            });
        }
        for (o, &s) in self.input[0].iter_mut().zip(pcm) {
            *o = f32::from(s) / 32768.0;
        }
        let (_, n) = self
            .inner
            .process_into_buffer(&self.input, &mut self.output, None)
            .map_err(|e| CodecError::Resample(e.to_string()))?;
        let n = n.min(self.frame_out);
        for (o, &s) in self.pcm.iter_mut().zip(&self.output[0][..n]) {
            *o = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        self.pcm[n..].fill(0);
        Ok(&self.pcm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_duration_both_ways() {
        let mut up = FrameResampler::new(8_000, 48_000, 160).unwrap();
        let mut down = FrameResampler::new(48_000, 8_000, 960).unwrap();
        for _ in 0..5 {
            assert_eq!(up.process(&[100; 160]).unwrap().len(), 960);
            assert_eq!(down.process(&[100; 960]).unwrap().len(), 160);
        }
        assert!(up.process(&[0; 10]).is_err());
        assert!(FrameResampler::new(48_000, 8_000, 100).is_err());
    }
}
