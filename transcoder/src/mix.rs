//! The mixing bus: 48 kHz frames summed in 32 bits, soft-clipped back to 16.

/// Below this magnitude samples pass unchanged; above it they bend smoothly towards full
/// scale, so loud sums distort gently instead of wrapping around or clipping hard.
const KNEE: f64 = 24_576.0;
const FULL: f64 = 32_767.0;

/// Soft clip of a 32-bit sum to 16 bits: identity up to the knee, then a tanh curve that
/// approaches full scale and never exceeds it.
pub fn soft_clip(x: i32) -> i16 {
    let a = f64::from(x).abs();
    if a <= KNEE {
        return x as i16;
    }
    let y = KNEE + (FULL - KNEE) * ((a - KNEE) / (FULL - KNEE)).tanh();
    let y = y.min(FULL) as i16;
    if x < 0 {
        -y
    } else {
        y
    }
}

/// One frame's sum of sources.
#[derive(Clone, Debug)]
pub struct MixBus {
    acc: Vec<i32>,
    out: Vec<i16>,
}

impl MixBus {
    pub fn new(samples: usize) -> Self {
        Self {
            acc: vec![0; samples],
            out: vec![0; samples],
        }
    }

    pub fn clear(&mut self) {
        self.acc.fill(0);
    }

    /// Adds a source's frame (extra samples are ignored, missing ones count as silence).
    pub fn add(&mut self, pcm: &[i16]) {
        for (a, &s) in self.acc.iter_mut().zip(pcm) {
            *a = a.saturating_add(i32::from(s));
        }
    }

    /// The soft-clipped sum.
    pub fn output(&mut self) -> &[i16] {
        for (o, &a) in self.out.iter_mut().zip(&self.acc) {
            *o = soft_clip(a);
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_clip_is_monotonic_bounded_and_transparent_below_the_knee() {
        assert_eq!(soft_clip(0), 0);
        assert_eq!(soft_clip(1000), 1000);
        assert_eq!(soft_clip(-24_000), -24_000);
        let mut last = i16::MIN;
        for x in (-200_000..200_000).step_by(97) {
            let y = soft_clip(x);
            assert!(y >= last, "not monotonic at {x}");
            last = y;
        }
        assert_eq!(soft_clip(i32::MAX), 32_767);
        assert_eq!(soft_clip(i32::MIN + 1), -32_767);
        assert!(soft_clip(i32::MIN) <= -32_766);
    }

    #[test]
    fn loud_sums_never_wrap() {
        let mut bus = MixBus::new(4);
        for _ in 0..10 {
            bus.add(&[30_000, -30_000, 100, i16::MIN]);
        }
        let out = bus.output().to_vec();
        assert!(out[0] > 32_000 && out[1] < -32_000);
        assert_eq!(out[2], 1000);
        assert!(out[3] < -32_000);
        bus.clear();
        bus.add(&[1]);
        assert_eq!(bus.output(), &[1, 0, 0, 0]);
    }
}
