//! Codecs for the conferencing NOC, behind small safe types.
//!
//! The client encodes what it sends and decodes what it records; the transcoder (MCU path)
//! decodes, mixes or composites, and re-encodes. Both need the same codec settings and the
//! same error type, so the codec wrappers live here rather than in either user.
//!
//! - Audio: Opus, G.711 (with resampling to and from 48 kHz).
//! - Video: H.264 through openh264 ([`h264`]), VP8 through FFmpeg's libvpx and VP8 decoder
//!   ([`vp8`]), scaling and pixel-format conversion through swscale ([`scale`]), all on the
//!   one picture type [`I420Frame`].
//! - RTP video payloads (RFC 6184, RFC 7741): [`payload`], the light `rtpvideo` crate that
//!   the reflector uses too without linking any codec library.

mod error;
mod ffmpeg;
pub mod g711;
pub mod h264;
pub mod mux;
pub mod opus;
pub mod resample;
pub mod scale;
mod video;
pub mod vp8;

pub use error::CodecError;
pub use rtpvideo as payload;
pub use video::{EncodedFrame, EncoderSettings, I420Frame};
