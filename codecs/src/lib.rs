//! Audio codecs for the conferencing NOC, behind small safe types.
//!
//! The client encodes what it sends and decodes what it records; the transcoder (MCU path)
//! will decode, mix and re-encode. Both need the same codec settings (48 kHz mono, 20 ms
//! frames) and the same error type, so the codec wrappers live here rather than in either
//! user. Only Opus exists so far; G.711 and the ffmpeg-based video codecs come later.

mod error;
pub mod opus;

pub use error::CodecError;
