//! Per-frame cost of H.264 at 360p (640x360), the size of a compositor input and of a 2x2
//! tile's source: one encode and one decode of a moving picture, as the transcoder does
//! them per sender and per output.

use codecs::h264::{H264Decoder, H264Encoder};
use codecs::{EncoderSettings, I420Frame};
use criterion::{criterion_group, criterion_main, Criterion};

const W: usize = 640;
const H: usize = 360;

/// A moving picture: a luma ramp that shifts each frame, with a bright square travelling.
fn picture(t: usize) -> I420Frame {
    let mut f = I420Frame::solid(W, H, (0, 128, 128)).unwrap();
    let (y, u, _) = f.planes_mut();
    for r in 0..H {
        for c in 0..W {
            y[r * W + c] = (16 + (r + c + 4 * t) % 220) as u8;
        }
    }
    let (x0, y0) = ((t * 8) % (W - 64), (t * 4) % (H - 64));
    for r in y0..y0 + 64 {
        y[r * W + x0..r * W + x0 + 64].fill(235);
    }
    for r in y0 / 2..y0 / 2 + 32 {
        u[r * W / 2 + x0 / 2..r * W / 2 + x0 / 2 + 32].fill(200);
    }
    f
}

fn settings() -> EncoderSettings {
    EncoderSettings {
        bitrate_bps: 600_000,
        ..EncoderSettings::new(W, H)
    }
}

fn h264_360p(c: &mut Criterion) {
    let pictures: Vec<_> = (0..60).map(picture).collect();
    let mut g = c.benchmark_group("h264_360p");

    let mut enc = H264Encoder::new(settings()).unwrap();
    let mut i = 0;
    g.bench_function("encode_frame", |b| {
        b.iter(|| {
            i += 1;
            enc.encode(&pictures[i % pictures.len()]).unwrap()
        })
    });

    // A 300-frame stream with one keyframe, decoded round and round from a fresh decoder
    // at each keyframe so every frame decodes as in a live stream.
    let mut enc = H264Encoder::new(settings()).unwrap();
    let stream: Vec<_> = (0..300)
        .map(|t| {
            enc.encode(&pictures[t % pictures.len()])
                .unwrap()
                .unwrap()
                .data
        })
        .collect();
    let mut dec = H264Decoder::new().unwrap();
    let mut j = 0;
    g.bench_function("decode_frame", |b| {
        b.iter(|| {
            if j % stream.len() == 0 {
                dec = H264Decoder::new().unwrap();
            }
            let out = dec.decode(&stream[j % stream.len()]).unwrap();
            j += 1;
            out
        })
    });
    g.finish();
}

criterion_group!(benches, h264_360p);
criterion_main!(benches);
