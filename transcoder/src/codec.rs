//! The codecs a mix participant may speak: Opus (48 kHz) and G.711 (8 kHz, resampled to and
//! from the 48 kHz mix). A source's codec is read from its RTP payload type; a receiver gets
//! the mix in the codec it sends with.

use codecs::g711::{Law, TelephonyDecoder, TelephonyEncoder};
use codecs::opus::{Decoder, Encoder, FRAME_SAMPLES};
use codecs::CodecError;

use protocol::codec::{RtpCodec, OPUS, PCMA, PCMU};

/// A participant's audio codec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Codec {
    #[default]
    Opus,
    G711(Law),
}

impl Codec {
    /// Every codec, in [`Codec::index`] order.
    pub const ALL: [Codec; 3] = [Codec::Opus, Codec::G711(Law::Mu), Codec::G711(Law::A)];

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.payload_type() == pt)
    }

    /// Its row of the NOC's codec table (payload type, clock, names).
    pub fn rtp(self) -> &'static RtpCodec {
        match self {
            Codec::Opus => &OPUS,
            Codec::G711(Law::Mu) => &PCMU,
            Codec::G711(Law::A) => &PCMA,
        }
    }

    pub fn payload_type(self) -> u8 {
        self.rtp().payload_type
    }

    /// RTP clock rate.
    pub fn clock(self) -> u32 {
        self.rtp().clock_rate
    }

    /// RTP timestamp ticks per 20 ms frame.
    pub fn frame_ts(self) -> u32 {
        self.clock() / 50
    }

    pub fn index(self) -> usize {
        match self {
            Codec::Opus => 0,
            Codec::G711(Law::Mu) => 1,
            Codec::G711(Law::A) => 2,
        }
    }
}

/// A decoder to 48 kHz frames.
pub(crate) enum Dec {
    Opus(Decoder),
    G711(Box<TelephonyDecoder>),
}

impl Dec {
    pub(crate) fn new(c: Codec) -> Option<Dec> {
        match c {
            Codec::Opus => Decoder::new().ok().map(Dec::Opus),
            Codec::G711(l) => TelephonyDecoder::new(l)
                .ok()
                .map(|d| Dec::G711(Box::new(d))),
        }
    }

    pub(crate) fn decode(&mut self, p: &[u8]) -> Result<&[i16], CodecError> {
        match self {
            Dec::Opus(d) => d.decode(p),
            Dec::G711(d) => d.decode(p),
        }
    }

    /// The lost frame before `next`: Opus in-band FEC, G.711 silence.
    pub(crate) fn fec(&mut self, next: &[u8]) -> Result<&[i16], CodecError> {
        match self {
            Dec::Opus(d) => d.decode_fec(next),
            Dec::G711(d) => d.conceal(),
        }
    }

    pub(crate) fn conceal(&mut self) -> Result<&[i16], CodecError> {
        match self {
            Dec::Opus(d) => d.conceal(FRAME_SAMPLES),
            Dec::G711(d) => d.conceal(),
        }
    }
}

/// An encoder of 48 kHz frames.
pub(crate) enum Enc {
    Opus(Encoder),
    G711(Box<TelephonyEncoder>),
}

impl Enc {
    pub(crate) fn new(c: Codec) -> Option<Enc> {
        match c {
            Codec::Opus => {
                let mut e = Encoder::new().ok()?;
                // Receivers on lossy paths can rebuild a lost mix packet from the next one.
                let _ = e.set_fec(5);
                Some(Enc::Opus(e))
            }
            Codec::G711(l) => TelephonyEncoder::new(l)
                .ok()
                .map(|e| Enc::G711(Box::new(e))),
        }
    }

    pub(crate) fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], CodecError> {
        match self {
            Enc::Opus(e) => e.encode(pcm),
            Enc::G711(e) => e.encode(pcm),
        }
    }
}
