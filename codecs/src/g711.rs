//! G.711 (ITU-T G.711) for telephony endpoints: mu-law (PCMU, RTP payload type 0) and
//! A-law (PCMA, payload type 8), 8 kHz, 20 ms = 160 samples per packet.
//!
//! The companding is the standard segment algorithm (as in the reference `g711.c`);
//! decoding goes through 256-entry tables built at compile time. [`TelephonyEncoder`] and
//! [`TelephonyDecoder`] add the conversion to and from the NOC's 48 kHz frames through
//! [`crate::resample::FrameResampler`] (rubato), so a G.711 endpoint can join an Opus mix.

use crate::opus::FRAME_SAMPLES;
use crate::resample::FrameResampler;
use crate::CodecError;

/// G.711 sample rate (also its RTP clock rate).
pub const G711_RATE: u32 = 8_000;
/// Samples (and bytes) in one 20 ms G.711 packet.
pub const G711_FRAME: usize = 160;

/// The two G.711 laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// mu-law, PCMU, RTP payload type 0.
    Mu,
    /// A-law, PCMA, RTP payload type 8.
    A,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// The law of a static payload type.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    /// The SDP/`channel` codec name.
    pub const fn name(self) -> &'static str {
        match self {
            Law::Mu => "pcmu",
            Law::A => "pcma",
        }
    }

    pub fn encode(self, pcm: i16) -> u8 {
        match self {
            Law::Mu => linear_to_ulaw(pcm),
            Law::A => linear_to_alaw(pcm),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Mu => ULAW_TABLE[code as usize],
            Law::A => ALAW_TABLE[code as usize],
        }
    }
}

const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

/// 16-bit linear to mu-law.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let mut x = i32::from(pcm);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && x & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mant = (x >> (exp + 3)) & 0x0f;
    !((sign | (exp << 4) | mant) as u8)
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exp = ((u >> 4) & 7) as i32;
    let mant = (u & 0x0f) as i32;
    let x = (((mant << 3) + BIAS) << exp) - BIAS;
    if u & 0x80 != 0 {
        -x as i16
    } else {
        x as i16
    }
}

/// Upper ends of the A-law segments, in 13-bit magnitude.
const SEG_AEND: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];

/// 16-bit linear to A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut x = i32::from(pcm) >> 3;
    let mask = if x >= 0 {
        0xd5
    } else {
        x = -x - 1;
        0x55
    };
    let Some(seg) = SEG_AEND.iter().position(|&e| x <= e) else {
        return (0x7f ^ mask) as u8;
    };
    let mant = if seg < 2 {
        (x >> 1) & 0x0f
    } else {
        (x >> seg) & 0x0f
    };
    ((((seg as i32) << 4) | mant) ^ mask) as u8
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn table(mu: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if mu {
            ulaw_to_linear(i as u8)
        } else {
            alaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = table(true);
static ALAW_TABLE: [i16; 256] = table(false);

/// Encodes 48 kHz 20 ms frames into G.711 packets (downsampled to 8 kHz).
pub struct TelephonyEncoder {
    law: Law,
    down: FrameResampler,
    out: Vec<u8>,
}

impl std::fmt::Debug for TelephonyEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelephonyEncoder")
            .field("law", &self.law)
            .finish_non_exhaustive()
    }
}

impl TelephonyEncoder {
    pub fn new(law: Law) -> Result<Self, CodecError> {
        Ok(Self {
            law,
            down: FrameResampler::new(48_000, G711_RATE as usize, FRAME_SAMPLES)?,
            out: Vec::with_capacity(G711_FRAME),
        })
    }

    pub fn law(&self) -> Law {
        self.law
    }

    /// One 960-sample frame at 48 kHz to one 160-byte packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], CodecError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameSize {
                expected: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        let low = self.down.process(pcm)?;
        self.out.clear();
        let law = self.law;
        self.out.extend(low.iter().map(|&s| law.encode(s)));
        Ok(&self.out)
    }
}

/// Decodes G.711 packets into 48 kHz frames (upsampled from 8 kHz).
pub struct TelephonyDecoder {
    law: Law,
    up: FrameResampler,
    low: Vec<i16>,
}

impl std::fmt::Debug for TelephonyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelephonyDecoder")
            .field("law", &self.law)
            .finish_non_exhaustive()
    }
}

impl TelephonyDecoder {
    pub fn new(law: Law) -> Result<Self, CodecError> {
        Ok(Self {
            law,
            up: FrameResampler::new(G711_RATE as usize, 48_000, G711_FRAME)?,
            low: vec![0; G711_FRAME],
        })
    }

    pub fn law(&self) -> Law {
        self.law
    }

    /// One 160-byte packet to 960 samples at 48 kHz. Other lengths are an error.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], CodecError> {
        if packet.len() != G711_FRAME {
            return Err(CodecError::FrameSize {
                expected: G711_FRAME,
                got: packet.len(),
            });
        }
        let law = self.law;
        for (o, &c) in self.low.iter_mut().zip(packet) {
            *o = law.decode(c);
        }
        self.up.process(&self.low)
    }

    /// A lost packet: 20 ms of silence (G.711 has no concealment of its own), keeping the
    /// resampler's history continuous.
    pub fn conceal(&mut self) -> Result<&[i16], CodecError> {
        self.low.fill(0);
        self.up.process(&self.low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(Law::Mu.decode(0xff), 0);
        assert_eq!(Law::A.decode(0xd5), 8);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(Law::Mu.decode(0x80), 32_124);
        assert_eq!(Law::A.decode(0xaa), 32_256);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            // mu-law has two zeros; 0x7f (negative zero) encodes back as 0xff.
            if c != 0x7f {
                assert_eq!(linear_to_ulaw(Law::Mu.decode(c)), c, "mu {c:#x}");
            }
            assert_eq!(linear_to_alaw(Law::A.decode(c)), c, "A {c:#x}");
        }
    }

    #[test]
    fn companding_error_is_small_relative_to_the_sample() {
        for law in [Law::Mu, Law::A] {
            for x in (-32_000..32_000).step_by(37) {
                let y = i32::from(law.decode(law.encode(x as i16)));
                let err = (y - x).abs();
                assert!(err <= 16 + x.abs() / 16, "{law:?} {x} -> {y}");
            }
        }
    }

    #[test]
    fn telephony_round_trip_keeps_a_tone() {
        for law in [Law::Mu, Law::A] {
            let mut enc = TelephonyEncoder::new(law).unwrap();
            let mut dec = TelephonyDecoder::new(law).unwrap();
            let mut out = Vec::new();
            for f in 0..25 {
                let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                    .map(|n| {
                        let t = (f * FRAME_SAMPLES + n) as f64 / 48_000.0;
                        (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect();
                let pkt = enc.encode(&pcm).unwrap().to_vec();
                assert_eq!(pkt.len(), G711_FRAME);
                out.extend_from_slice(dec.decode(&pkt).unwrap());
            }
            assert_eq!(out.len(), 25 * FRAME_SAMPLES);
            // Skip the resamplers' delay; the tone keeps its amplitude within ~2 dB.
            let tail = &out[10 * FRAME_SAMPLES..];
            let rms = (tail.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / tail.len() as f64)
                .sqrt();
            let want = 8000.0 / 2f64.sqrt();
            assert!((rms / want - 1.0).abs() < 0.25, "{law:?} rms {rms}");
            assert_eq!(dec.conceal().unwrap().len(), FRAME_SAMPLES);
            assert!(dec.decode(&[0; 10]).is_err());
            assert!(enc.encode(&[0; 10]).is_err());
        }
    }
}
