//! Audio codecs for the conferencing NOC, behind small safe types.
//!
//! The client encodes what it sends and decodes what it records; the transcoder (MCU path)
//! will decode, mix and re-encode. Both need the same codec settings (48 kHz mono, 20 ms
//! frames) and the same error type, so the codec wrappers live here rather than in either
//! user. Opus and G.711 (with resampling to and from 48 kHz) exist; video codecs come later.

mod error;
pub mod g711;
pub mod opus;
pub mod resample;

pub use error::CodecError;
