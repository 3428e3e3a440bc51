//! Opus at the NOC's one audio format: 48 kHz, mono, 20 ms frames.
//!
//! Thin wrappers over the `opus` crate (libopus) that fix the format, check frame lengths
//! and map errors to [`CodecError`], so callers cannot configure a mismatched encoder and
//! decoder. The decoder also conceals lost packets (libopus PLC).

use crate::CodecError;
use ::opus::{Application, Bitrate, Channels};

/// Samples per second of every Opus stream in the NOC (also the RTP clock rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame, the packet size the NOC sends.
pub const FRAME_SAMPLES: usize = 960;
/// The longest frame an Opus packet can carry (120 ms), so decode buffers never truncate.
pub const MAX_FRAME_SAMPLES: usize = 5_760;
/// Largest encoded packet we produce; far above what 20 ms at our bitrates needs.
pub const MAX_PACKET_BYTES: usize = 1_500;
/// Default encoder bitrate: plenty for speech and clean test tones in mono.
pub const DEFAULT_BITRATE: i32 = 32_000;

/// Concealment works in steps of 2.5 ms (120 samples at 48 kHz).
const PLC_STEP: usize = 120;

/// Encodes 20 ms mono frames at 48 kHz into Opus packets.
pub struct Encoder {
    inner: ::opus::Encoder,
    out: Vec<u8>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("opus::Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder tuned for general audio (speech and tones) at [`DEFAULT_BITRATE`].
    pub fn new() -> Result<Self, CodecError> {
        Self::with_bitrate(DEFAULT_BITRATE)
    }

    /// An encoder with an explicit bitrate in bits per second.
    pub fn with_bitrate(bitrate: i32) -> Result<Self, CodecError> {
        let mut inner = ::opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Audio)
            .map_err(CodecError::opus("encoder_create"))?;
        inner
            .set_bitrate(Bitrate::Bits(bitrate))
            .map_err(CodecError::opus("set_bitrate"))?;
        Ok(Encoder {
            inner,
            out: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Turns on in-band FEC (LBRR) for an expected packet loss in percent, so a receiver can
    /// rebuild a lost frame from the next packet ([`Decoder::decode_fec`]).
    pub fn set_fec(&mut self, loss_pct: i32) -> Result<(), CodecError> {
        self.inner
            .set_inband_fec(true)
            .map_err(CodecError::opus("set_inband_fec"))?;
        self.inner
            .set_packet_loss_perc(loss_pct.clamp(0, 100))
            .map_err(CodecError::opus("set_packet_loss_perc"))
    }

    /// Encodes one frame of exactly [`FRAME_SAMPLES`] samples; the packet borrows `self`.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], CodecError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameSize {
                expected: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        let n = self
            .inner
            .encode(pcm, &mut self.out)
            .map_err(CodecError::opus("encode"))?;
        Ok(&self.out[..n])
    }
}

/// Decodes mono 48 kHz Opus packets of any legal duration, and conceals missing ones.
pub struct Decoder {
    inner: ::opus::Decoder,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("opus::Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    pub fn new() -> Result<Self, CodecError> {
        let inner = ::opus::Decoder::new(SAMPLE_RATE, Channels::Mono)
            .map_err(CodecError::opus("decoder_create"))?;
        Ok(Decoder {
            inner,
            pcm: vec![0; MAX_FRAME_SAMPLES],
        })
    }

    /// Decodes one packet; the samples (20 ms for our own senders) borrow `self`.
    /// A corrupt packet is an error and leaves the decoder usable.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], CodecError> {
        if packet.is_empty() {
            // libopus treats an empty packet as loss; callers must say so explicitly.
            return Err(CodecError::EmptyPacket);
        }
        let n = self
            .inner
            .decode(packet, &mut self.pcm, false)
            .map_err(CodecError::opus("decode"))?;
        Ok(&self.pcm[..n])
    }

    /// Rebuilds the 20 ms frame *before* `next` from the in-band FEC data `next` carries (or
    /// conceals it when `next` has none), for a lost packet whose successor has arrived.
    pub fn decode_fec(&mut self, next: &[u8]) -> Result<&[i16], CodecError> {
        if next.is_empty() {
            return Err(CodecError::EmptyPacket);
        }
        let n = self
            .inner
            .decode(next, &mut self.pcm[..FRAME_SAMPLES], true)
            .map_err(CodecError::opus("decode_fec"))?;
        Ok(&self.pcm[..n])
    }

    /// Synthesises `samples` of packet-loss concealment continuing the last decoded audio
    /// (it fades out over long gaps). `samples` must be a multiple of 120 (2.5 ms), at most
    /// [`MAX_FRAME_SAMPLES`]; [`FRAME_SAMPLES`] covers one lost 20 ms packet.
    pub fn conceal(&mut self, samples: usize) -> Result<&[i16], CodecError> {
        if samples == 0 || !samples.is_multiple_of(PLC_STEP) || samples > MAX_FRAME_SAMPLES {
            return Err(CodecError::ConcealLength(samples));
        }
        let n = self
            .inner
            .decode(&[], &mut self.pcm[..samples], false)
            .map_err(CodecError::opus("conceal"))?;
        Ok(&self.pcm[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amp: f64, start: usize, len: usize) -> Vec<i16> {
        (start..start + len)
            .map(|n| {
                let t = n as f64 / f64::from(SAMPLE_RATE);
                (amp * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64
    }

    #[test]
    fn sine_survives_encode_and_decode() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new().unwrap();
        let frames = 50;
        let input = sine(440.0, 0.25, 0, FRAME_SAMPLES * frames);
        let mut output = Vec::new();
        for frame in input.chunks(FRAME_SAMPLES) {
            let packet = enc.encode(frame).unwrap().to_vec();
            assert!(!packet.is_empty() && packet.len() < 400);
            let pcm = dec.decode(&packet).unwrap();
            assert_eq!(pcm.len(), FRAME_SAMPLES);
            output.extend_from_slice(pcm);
        }
        // Skip the codec's warm-up; the rest keeps its energy within about 1 dB.
        let skip = FRAME_SAMPLES * 10;
        let ratio = energy(&output[skip..]) / energy(&input[skip..]);
        assert!((0.8..1.25).contains(&ratio), "energy ratio {ratio}");
    }

    #[test]
    fn silence_stays_silent() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new().unwrap();
        let zeros = vec![0i16; FRAME_SAMPLES];
        for _ in 0..10 {
            let packet = enc.encode(&zeros).unwrap().to_vec();
            let pcm = dec.decode(&packet).unwrap();
            assert!(pcm.iter().all(|&s| s.abs() < 16));
        }
    }

    #[test]
    fn conceal_continues_the_signal() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new().unwrap();
        let input = sine(440.0, 0.25, 0, FRAME_SAMPLES * 20);
        for frame in input.chunks(FRAME_SAMPLES) {
            let packet = enc.encode(frame).unwrap().to_vec();
            dec.decode(&packet).unwrap();
        }
        let plc = dec.conceal(FRAME_SAMPLES).unwrap();
        assert_eq!(plc.len(), FRAME_SAMPLES);
        assert!(
            energy(plc) > 0.1 * energy(&input),
            "PLC should not be silence"
        );
    }

    #[test]
    fn fec_rebuilds_a_lost_frame() {
        let mut enc = Encoder::new().unwrap();
        enc.set_fec(20).unwrap();
        let mut dec = Decoder::new().unwrap();
        let input = sine(440.0, 0.25, 0, FRAME_SAMPLES * 30);
        let packets: Vec<Vec<u8>> = input
            .chunks(FRAME_SAMPLES)
            .map(|f| enc.encode(f).unwrap().to_vec())
            .collect();
        for p in &packets[..20] {
            dec.decode(p).unwrap();
        }
        // Packet 20 is lost; 21 carries its FEC.
        let rebuilt = dec.decode_fec(&packets[21]).unwrap();
        assert_eq!(rebuilt.len(), FRAME_SAMPLES);
        assert!(energy(rebuilt) > 0.1 * energy(&input));
        assert!(dec.decode_fec(&[]).is_err());
    }

    #[test]
    fn bad_lengths_and_packets_are_errors() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new().unwrap();
        assert!(matches!(
            enc.encode(&[0; 100]),
            Err(CodecError::FrameSize { got: 100, .. })
        ));
        assert!(matches!(
            dec.conceal(100),
            Err(CodecError::ConcealLength(100))
        ));
        assert!(matches!(dec.conceal(0), Err(CodecError::ConcealLength(0))));
        assert!(dec.decode(&[]).is_err());
        // A TOC byte announcing a code-3 packet with no frame count is invalid.
        assert!(dec.decode(&[0x03]).is_err());
        // The decoder still works afterwards.
        let packet = enc.encode(&[0; FRAME_SAMPLES]).unwrap().to_vec();
        assert_eq!(dec.decode(&packet).unwrap().len(), FRAME_SAMPLES);
    }
}
