//! What a video RTP payload is, without decoding it: keyframe starts and droppable frames.
//!
//! A receiver that joins (or switches stream) can only start decoding at a keyframe, so the
//! reflector holds a new receiver's video until a packet that starts one, and must know
//! which frames it may drop for temporal thinning. Both are visible in the first bytes of the
//! payload: the H.264 NAL header (RFC 6184, packetization-mode 1) and the VP8 payload
//! descriptor plus payload header (RFC 7741).

/// The video codecs the reflector understands, by payload type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Vp8,
}

use crate::h264::{NAL_FU_A, NAL_IDR, NAL_SPS, NAL_STAP_A};
use crate::vp8::Descriptor;

/// True when `payload` starts a keyframe: the first packet a fresh decoder can use.
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::H264 => h264_keyframe_start(payload),
        VideoCodec::Vp8 => vp8_keyframe_start(payload),
    }
}

/// True when the packet belongs to a frame no other frame references (H.264
/// `nal_ref_idc == 0`, VP8 temporal layer above 0): dropping it halves the frame rate
/// without breaking decoding.
pub fn is_droppable(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::H264 => payload.first().is_some_and(|&b| {
            // STAP-A carries parameter sets; its own NRI is the max of its units'.
            b & 0x60 == 0 && b & 0x1f != NAL_STAP_A
        }),
        VideoCodec::Vp8 => vp8_temporal_id(payload).is_some_and(|t| t > 0),
    }
}

/// A parameter set or the start of an IDR slice: decoding can begin here. Encoders send SPS
/// and PPS just before the IDR (separately or in one STAP-A), so starting at the SPS keeps
/// them.
fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_IDR | NAL_SPS => true,
        NAL_STAP_A => {
            // [header] then (16-bit size, NAL unit)*.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let nal = p[i + 2] & 0x1f;
                if size > 0 && (nal == NAL_IDR || nal == NAL_SPS) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        NAL_FU_A => {
            // FU header: S E R Type.
            p.get(1)
                .is_some_and(|&fu| fu & 0x80 != 0 && matches!(fu & 0x1f, NAL_IDR | NAL_SPS))
        }
        _ => false,
    }
}

fn vp8_keyframe_start(p: &[u8]) -> bool {
    match Descriptor::parse(p) {
        // The P bit of the first payload header byte: 0 for a key frame.
        Some(d) if d.start && d.partition == 0 => p.get(d.len).is_some_and(|&h| h & 0x01 == 0),
        _ => false,
    }
}

fn vp8_temporal_id(p: &[u8]) -> Option<u8> {
    Descriptor::parse(p)?.temporal_id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads captured from Debian's ffmpeg (`-c:v libx264 -profile:v baseline -f rtp`,
    /// packetization-mode 1; the first 16 bytes of long ones): the STAP-A with SPS and PPS
    /// that starts each GOP (ffmpeg gives it NRI 0), the IDR as FU-A start and continuation,
    /// a P slice; and a made-up non-reference slice (x264 baseline sends none).
    const STAP_A: &[u8] = &[
        0x18, 0x00, 0x18, 0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00,
        0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x01, 0x40, 0xf1, 0x42, 0xa4, 0x80, 0x00, 0x05, 0x68,
        0xcb, 0x83, 0xcb, 0x20,
    ];
    const IDR_FU_START: &[u8] = &[
        0x7c, 0x85, 0x88, 0x84, 0x0f, 0xf2, 0x62, 0x80, 0x00, 0xc3, 0xec, 0x9f, 0xf8, 0x7f, 0xe0,
        0x8c,
    ];
    const IDR_FU_MIDDLE: &[u8] = &[
        0x7c, 0x05, 0xf3, 0x05, 0xf1, 0x75, 0x97, 0x81, 0x30, 0xce, 0x12, 0x37, 0xd1, 0x44, 0x8e,
        0x89,
    ];
    const P_SINGLE: &[u8] = &[
        0x41, 0x9a, 0x38, 0x1f, 0xe1, 0x9e, 0xc3, 0x40, 0x07, 0x7b, 0xa7, 0x77, 0xff, 0xc7, 0xfc,
        0x67,
    ];
    /// The SPS and PPS inside it, as single NAL unit packets.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x01, 0x40, 0xf1, 0x42, 0xa4, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
    const P_FU_START: &[u8] = &[0x5c, 0x81, 0x9a, 0x02, 0x0c];
    const P_SINGLE_NONREF: &[u8] = &[0x01, 0x9e, 0x04, 0x0c];

    /// Captured from ffmpeg (`-c:v libvpx -f rtp`): a keyframe's first packet (X, S, 15-bit
    /// picture id, payload header P = 0), its continuation, and an interframe's first packet.
    /// The temporal-layer ones (T bit, TID) are made up: ffmpeg sends no temporal layers.
    const VP8_KEY: &[u8] = &[
        0x90, 0x80, 0x80, 0x00, 0xb0, 0x5f, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0x00,
        0x47,
    ];
    const VP8_KEY_CONT: &[u8] = &[
        0x80, 0x80, 0x80, 0x00, 0x1c, 0x2d, 0x7d, 0x18, 0x5e, 0xca, 0x35, 0x1a, 0xa7, 0xcb, 0x15,
        0x9a,
    ];
    const VP8_INTER: &[u8] = &[
        0x90, 0x80, 0x80, 0x01, 0x31, 0x0e, 0x00, 0x07, 0x10, 0xf0, 0x00, 0x18, 0x89, 0x2c, 0x2d,
        0xd6,
    ];
    const VP8_TL1: &[u8] = &[0x90, 0xe0, 0x80, 0x03, 0x07, 0x40, 0x31, 0x05, 0x00];
    const VP8_TL0: &[u8] = &[0x90, 0xe0, 0x80, 0x04, 0x08, 0x00, 0x31, 0x05, 0x00];

    #[test]
    fn h264_keyframes() {
        let h = VideoCodec::H264;
        assert!(is_keyframe_start(h, SPS));
        assert!(is_keyframe_start(h, STAP_A));
        assert!(is_keyframe_start(h, IDR_FU_START));
        assert!(!is_keyframe_start(h, PPS));
        assert!(!is_keyframe_start(h, IDR_FU_MIDDLE));
        assert!(!is_keyframe_start(h, P_FU_START));
        assert!(!is_keyframe_start(h, P_SINGLE));
        assert!(!is_keyframe_start(h, P_SINGLE_NONREF));
        assert!(!is_keyframe_start(h, &[]));
        assert!(!is_keyframe_start(h, &[0x7c]));
        // A STAP-A whose sizes run off the end finds nothing.
        assert!(!is_keyframe_start(h, &[0x78, 0xff, 0xff, 0x01]));
    }

    #[test]
    fn h264_droppable_is_nal_ref_idc_zero() {
        let h = VideoCodec::H264;
        assert!(is_droppable(h, P_SINGLE_NONREF));
        assert!(!is_droppable(h, P_FU_START));
        assert!(!is_droppable(h, P_SINGLE));
        assert!(!is_droppable(h, IDR_FU_START));
        assert!(!is_droppable(h, SPS));
        assert!(!is_droppable(h, STAP_A));
        assert!(!is_droppable(h, &[]));
    }

    #[test]
    fn vp8_keyframes_and_layers() {
        let v = VideoCodec::Vp8;
        assert!(is_keyframe_start(v, VP8_KEY));
        assert!(!is_keyframe_start(v, VP8_KEY_CONT));
        assert!(!is_keyframe_start(v, VP8_INTER));
        assert!(!is_keyframe_start(v, VP8_TL1));
        // Minimal descriptor without X: S=1, PID 0, keyframe.
        assert!(is_keyframe_start(v, &[0x10, 0x50]));
        assert!(!is_keyframe_start(v, &[0x10]));
        assert!(!is_keyframe_start(v, &[0x90, 0x80]));
        assert!(is_droppable(v, VP8_TL1));
        assert!(!is_droppable(v, VP8_TL0));
        assert!(!is_droppable(v, VP8_KEY));
    }

    #[test]
    fn no_prefix_panics() {
        for p in [SPS, PPS, IDR_FU_START, STAP_A, VP8_KEY, VP8_TL1] {
            for len in 0..=p.len() {
                for c in [VideoCodec::H264, VideoCodec::Vp8] {
                    let _ = (is_keyframe_start(c, &p[..len]), is_droppable(c, &p[..len]));
                }
            }
        }
    }
}
