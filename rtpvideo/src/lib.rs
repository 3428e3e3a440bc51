//! H.264 and VP8 RTP payload formats, without decoding: keyframe detection, packetizers and
//! depacketizers.
//!
//! Both media paths read video payloads: the reflector to gate receivers on keyframes and thin
//! frames, the transcoder to rebuild whole frames for its decoders and to split what its
//! encoders make. One implementation serves both, and it lives in this crate rather than in
//! `codecs` so that the reflector (which never decodes) does not link openh264 or FFmpeg:
//! everything here is pure Rust over the `rtp` crate's packet types. `codecs` re-exports it.
//!
//! Nothing here panics on network input: a malformed packet, a gap or a reordered packet is an
//! [`PayloadError`], and a frame that lost a packet is dropped, never handed on corrupted.
//! Counting the errors is the caller's business.

mod assemble;
mod error;
pub mod h264;
pub mod keyframe;
mod out;
pub mod vp8;

pub use error::PayloadError;
pub use keyframe::VideoCodec;
pub use out::{PacketizerConfig, RTP_HEADER_LEN};

/// A whole encoded frame rebuilt by a depacketizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// H.264: the access unit as Annex-B (start code before each NAL unit); VP8: the frame.
    pub data: Vec<u8>,
    /// The RTP timestamp shared by the frame's packets (90 kHz).
    pub timestamp: u32,
    /// A fresh decoder can start here (H.264 IDR, VP8 key frame).
    pub keyframe: bool,
}
