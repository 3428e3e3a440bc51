//! The senders both compositing benches feed: 640x360 pictures with texture everywhere
//! that moves as a camera pan does (so neither decoders nor the encoder see the trivial
//! content of a solid colour), encoded once at 600 kbit/s.
//!
//! Until 2026-12-07 the texture was fresh white noise in every picture. No encoder can
//! predict that from the picture before, so openh264's rate control skipped four pictures
//! in five to hold 600 kbit/s: ten seconds of a sender were 65 pictures. The compositor
//! bench looped them, but ffmpeg's CLI read each file once and stopped after 65 output
//! frames, so its CPU per second of output was understated about 4.6 times.

use codecs::h264::H264Encoder;
use codecs::payload::keyframe::VideoCodec;
use codecs::vp8::Vp8Encoder;
use codecs::{EncodedFrame, EncoderSettings, I420Frame};

pub const WIDTH: usize = 640;
pub const HEIGHT: usize = 360;

/// A value from 0 to 255 for (`a`, `b`, `c`), the same every time (a texture's grain).
fn hash(a: u32, b: u32, c: u32) -> u32 {
    let mut v =
        a.wrapping_mul(0x9e37_79b1) ^ b.wrapping_mul(0x85eb_ca77) ^ c.wrapping_mul(0xc2b2_ae3d);
    v ^= v >> 15;
    v = v.wrapping_mul(0x2c1b_3c6d);
    v ^= v >> 12;
    v >> 24
}

/// Sender `sender`'s picture at frame `t`: its own texture (a gradient, 16x16 patches of
/// light and shade, a fine grain), panned 3 pixels right and 1 down per frame.
pub fn picture(sender: u32, t: u32) -> I420Frame {
    let (w, h) = (WIDTH, HEIGHT);
    let mut data = vec![128u8; w * h * 3 / 2];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as u32 + 3 * t, y as u32 + t);
            let patches = hash(u / 16, v / 16, sender) / 8;
            let grain = hash(u, v, sender) / 64;
            data[y * w + x] = (((u + v) / 2 + sender * 40 + patches + grain) % 220 + 16) as u8;
        }
    }
    I420Frame::from_vec(w, h, data).expect("a 640x360 picture")
}

/// `frames` frames of sender `sender` in `codec`, a keyframe every `keyframe_interval`.
pub fn stream(
    codec: VideoCodec,
    sender: u32,
    frames: u32,
    keyframe_interval: u32,
) -> Vec<EncodedFrame> {
    let mut s = EncoderSettings::new(WIDTH, HEIGHT);
    s.bitrate_bps = 600_000;
    s.keyframe_interval = keyframe_interval;
    let pictures = (0..frames).map(|t| picture(sender, t));
    let out: Vec<EncodedFrame> = match codec {
        VideoCodec::H264 => {
            let mut e = H264Encoder::new(s).expect("an encoder");
            pictures
                .filter_map(|p| e.encode(&p).expect("encodes"))
                .collect()
        }
        VideoCodec::Vp8 => {
            let mut e = Vp8Encoder::new(s).expect("an encoder");
            pictures
                .filter_map(|p| e.encode(&p).expect("encodes"))
                .collect()
        }
    };
    assert!(out[0].keyframe, "the stream starts on a keyframe");
    // openh264's rate control may skip a picture after a keyframe; more than that and the
    // content is too hard for the bitrate, which real senders' is not.
    assert!(
        out.len() * 100 >= frames as usize * 95,
        "sender {sender}: {} of {frames} pictures, the rest skipped by rate control",
        out.len()
    );
    out
}
