//! What one second of a recording costs its recorder thread: 50 Opus encodes of the
//! 20 ms mix and 50 audio packets plus 30 composite frames (pre-encoded, 1.5 Mbit/s, as
//! the compositor hands them over) written to Matroska, or the audio alone to Ogg. The
//! composite itself is the compositor's cost (`transcoder`'s composite bench).

use codecs::mux::{h264_parameter_sets, Container, MuxSettings, Muxer, VideoTrack};
use codecs::opus::Encoder;
use codecs::{EncoderSettings, I420Frame};
use criterion::{criterion_group, criterion_main, Criterion};

fn tone() -> Vec<Vec<i16>> {
    (0..50)
        .map(|f| {
            (0..960)
                .map(|i| {
                    let t = (f * 960 + i) as f64 / 48_000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect()
        })
        .collect()
}

/// A second of 1280x720 composite frames at 1.5 Mbit/s, keyframe first.
fn frames() -> Vec<(Vec<u8>, bool)> {
    let mut s = EncoderSettings::new(1280, 720);
    s.bitrate_bps = 1_500_000;
    let mut enc = codecs::h264::H264Encoder::new(s).unwrap();
    (0..30)
        .filter_map(|t| {
            let mut p = I420Frame::solid(1280, 720, (0, 128, 128)).unwrap();
            let (y, _, _) = p.planes_mut();
            for (i, v) in y.iter_mut().enumerate() {
                *v = (16 + (i / 7 + 9 * t) % 220) as u8;
            }
            enc.encode(&p).unwrap().map(|f| (f.data, f.keyframe))
        })
        .collect()
}

fn record_one_second(c: &mut Criterion) {
    let pcm = tone();
    let video = frames();
    let dir = std::env::temp_dir().join(format!("record-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = c.benchmark_group("record_1s");
    g.bench_function("mix_and_composite_to_matroska", |b| {
        let settings = MuxSettings {
            container: Container::Matroska,
            channels: 1,
            pre_skip: 312,
            video: Some(VideoTrack {
                width: 1280,
                height: 720,
                parameter_sets: h264_parameter_sets(&video[0].0),
            }),
        };
        let mut opus = Encoder::new().unwrap();
        let mut mux = Muxer::create(&dir.join("bench.mkv"), &settings).unwrap();
        let mut second = 0i64;
        b.iter(|| {
            let base = second * 1_000_000;
            let mut v = video.iter().enumerate().peekable();
            for (i, frame) in pcm.iter().enumerate() {
                let at = base + i as i64 * 20_000;
                mux.write_audio(at, opus.encode(frame).unwrap()).unwrap();
                while let Some((j, (data, key))) =
                    v.next_if(|(j, _)| *j as i64 * 33_333 <= at - base)
                {
                    // The first frame of each second is a keyframe only in the first.
                    mux.write_video(base + j as i64 * 33_333, data, *key && second == 0)
                        .unwrap();
                }
            }
            second += 1;
        });
    });
    g.bench_function("mix_to_ogg", |b| {
        let settings = MuxSettings {
            container: Container::Ogg,
            channels: 1,
            pre_skip: 312,
            video: None,
        };
        let mut opus = Encoder::new().unwrap();
        let mut mux = Muxer::create(&dir.join("bench.ogg"), &settings).unwrap();
        let mut second = 0i64;
        b.iter(|| {
            for (i, frame) in pcm.iter().enumerate() {
                let at = second * 1_000_000 + i as i64 * 20_000;
                mux.write_audio(at, opus.encode(frame).unwrap()).unwrap();
            }
            second += 1;
        });
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, record_one_second);
criterion_main!(benches);
