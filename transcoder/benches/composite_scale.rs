//! Composites per machine against rayon threads (issue 14's curve):
//!
//!     cargo bench -p transcoder --bench composite_scale [-- THREADS...]
//!
//! For each pool size (by default 1 up to the cores this machine has), as many 2x2
//! composites as twice the pool's threads run on one shared pool, as the media server runs
//! them: each frame of each composite decodes its four senders (640x360 H.264, in parallel
//! on the pool), draws the grid and encodes the 1280x720 canvas once (openh264, low
//! complexity, 1.5 Mbit/s). Frames are made as fast as the pool allows, and the wall time
//! gives the composites the pool sustains at 30 frames a second, against a straight line
//! from one thread. The same senders as the other compositing benches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codecs::payload::keyframe::VideoCodec;
use codecs::EncodedFrame;
use rayon::prelude::*;

use transcoder::compositor::{output_settings, Compositor, FRAME_RATE};
use transcoder::layout::Layout;

mod senders;

/// Frames each composite makes per measurement (3 s of output).
const FRAMES: usize = 90;

/// One 2x2 composite on `pool`, its four senders added.
fn composite(pool: &Arc<rayon::ThreadPool>) -> Compositor {
    let settings = output_settings(1280, 720, 1_500_000);
    let mut c = Compositor::new(VideoCodec::H264, settings, Layout::Grid, Arc::clone(pool))
        .expect("a compositor");
    for s in 0..4 {
        c.add_sender(s, VideoCodec::H264).expect("room for it");
    }
    c
}

/// Composites sustained at 30 fps by a pool of `threads`.
fn sustained(threads: usize, streams: &[Vec<EncodedFrame>]) -> f64 {
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool"),
    );
    let mut comps: Vec<Compositor> = (0..2 * threads).map(|_| composite(&pool)).collect();
    let interval = Duration::from_secs(1) / FRAME_RATE;
    let wall = Instant::now();
    let mut now = wall;
    for i in 0..FRAMES {
        pool.install(|| {
            comps.par_iter_mut().for_each(|c| {
                for (s, stream) in streams.iter().enumerate() {
                    let f = &stream[i % stream.len()];
                    c.push(s as u32, f.data.clone(), f.keyframe, now)
                        .expect("a sender");
                }
                c.poll(now).expect("a frame");
            });
        });
        now += interval;
    }
    let secs = wall.elapsed().as_secs_f64();
    for c in &comps {
        assert_eq!(c.stats.decode_errors, 0, "{:?}", c.stats);
    }
    let frames = (comps.len() * FRAMES) as f64;
    frames / secs / f64::from(FRAME_RATE)
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `cargo bench` passes `--bench`; numbers are pool sizes.
    let mut threads: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|&t| t > 0)
        .collect();
    if threads.is_empty() {
        threads = (1..=cores).collect();
    }
    eprintln!("encoding 4 senders x {FRAMES} frames of 640x360 ...");
    let streams: Vec<Vec<EncodedFrame>> = (0..4)
        .map(|s| senders::stream(VideoCodec::H264, s, FRAMES as u32, 2 * FRAME_RATE))
        .collect();
    println!("2x2 composites (4 x 640x360 H.264 in, 1280x720 H.264 out) sustained at 30 fps;");
    println!("{cores} cores here, twice as many composites as threads on one shared pool");
    println!();
    println!("| rayon threads | composites at 30 fps | of linear from the first row |");
    println!("| --- | --- | --- |");
    let mut one = None;
    for t in threads {
        let n = sustained(t, &streams);
        let base = *one.get_or_insert(n / t as f64);
        println!("| {t} | {n:.2} | {:.2} |", n / (base * t as f64));
    }
}
