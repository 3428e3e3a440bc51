//! Compositing cost: one frame of a `composite` conference, as the compositor makes it at
//! 30 frames per second: every sender's access unit decoded, the layout drawn and the
//! 1280x720 canvas encoded once (H.264, openh264), all on a one-thread rayon pool, so the
//! time per frame is the CPU one composite costs per frame.
//!
//! - `frame/4x360p`: four 640x360 H.264 senders in a 2x2 grid;
//! - `frame/9x360p`: nine in a 3x3 grid;
//! - `frame/4x360p_vp8`: four VP8 senders (decoded by FFmpeg's libvpx) into H.264.
//!
//! Senders show moving, textured pictures (a drifting gradient with noise), so neither the
//! decoders nor the encoder see the trivial content of a solid colour. A core's share of one
//! composite at 30 fps is 30 x the time per frame.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codecs::payload::keyframe::VideoCodec;
use codecs::{EncodedFrame, EncoderSettings};

use criterion::{criterion_group, criterion_main, Criterion};
use transcoder::compositor::Compositor;
use transcoder::layout::Layout;

mod senders;

fn bench_frame(c: &mut Criterion, name: &str, codec: VideoCodec, senders: u32) {
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool"),
    );
    let mut settings = EncoderSettings::new(1280, 720);
    settings.bitrate_bps = 1_500_000;
    let mut comp =
        Compositor::new(VideoCodec::H264, settings, Layout::Grid, pool).expect("a compositor");
    let gops: Vec<Vec<EncodedFrame>> = (0..senders)
        .map(|s| senders::stream(codec, s, 60, 300))
        .collect();
    for s in 0..senders {
        comp.add_sender(s, codec).expect("room for it");
    }
    let mut now = Instant::now();
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            for (s, g) in gops.iter().enumerate() {
                let f = &g[i % g.len()];
                comp.push(s as u32, f.data.clone(), f.keyframe, now)
                    .expect("a sender");
            }
            i += 1;
            now += Duration::from_millis(34);
            comp.poll(now).expect("a frame")
        })
    });
    assert_eq!(comp.stats.decode_errors, 0, "{:?}", comp.stats);
}

fn frames(c: &mut Criterion) {
    bench_frame(c, "frame/4x360p", VideoCodec::H264, 4);
    bench_frame(c, "frame/9x360p", VideoCodec::H264, 9);
    bench_frame(c, "frame/4x360p_vp8", VideoCodec::Vp8, 4);
}

criterion_group!(benches, frames);
criterion_main!(benches);
