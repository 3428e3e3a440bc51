//! The senders both compositing benches feed: 640x360 pictures that move and have texture
//! everywhere (so neither decoders nor the encoder see the trivial content of a solid
//! colour), encoded once at 600 kbit/s.

use codecs::h264::H264Encoder;
use codecs::payload::keyframe::VideoCodec;
use codecs::vp8::Vp8Encoder;
use codecs::{EncodedFrame, EncoderSettings, I420Frame};

pub const WIDTH: usize = 640;
pub const HEIGHT: usize = 360;

/// Sender `sender`'s picture at frame `t`.
pub fn picture(sender: u32, t: u32) -> I420Frame {
    let (w, h) = (WIDTH, HEIGHT);
    let mut data = vec![128u8; w * h * 3 / 2];
    let mut seed = sender.wrapping_mul(2_654_435_761) ^ t;
    for y in 0..h {
        for x in 0..w {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = (seed >> 27) as usize;
            data[y * w + x] =
                ((x + y + t as usize * 4 + sender as usize * 40 + noise) % 220 + 16) as u8;
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
    out
}
