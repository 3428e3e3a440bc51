//! Recording containers end to end: mux real Opus and H.264, read the file back with
//! ffprobe (Debian's, the tool an operator would use), including a file whose writer never
//! finished it.

use std::path::Path;
use std::process::Command;

use codecs::h264::H264Encoder;
use codecs::mux::{h264_parameter_sets, Container, MuxSettings, Muxer, VideoTrack};
use codecs::opus::Encoder;
use codecs::{EncoderSettings, I420Frame};

/// (codec_type, duration in s) of every stream, as ffprobe reads the file.
fn probe(path: &Path) -> Vec<(String, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .arg("stream=codec_type,codec_name,nb_read_packets:format=duration")
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (make test installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let duration: f64 = lines.last().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    lines
        .iter()
        .filter(|l| l.contains(','))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("{}/{}", f[1], f[0]), duration)
        })
        .collect()
}

/// Decodes the whole file, returning ffmpeg's error output (empty when clean).
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Writes `seconds` of a tone and (when `video`) 30 fps pictures.
fn record(path: &Path, seconds: u32, video: bool) -> Muxer {
    let mut opus = Encoder::new().unwrap();
    let mut h264 = H264Encoder::new(EncoderSettings::new(320, 240)).unwrap();
    let picture = I420Frame::solid(320, 240, (81, 90, 240)).unwrap();
    let first = video.then(|| {
        let f = h264.encode(&picture).unwrap().expect("a first frame");
        assert!(f.keyframe, "an encoder starts on a keyframe");
        f
    });
    let settings = MuxSettings {
        container: if video {
            Container::Matroska
        } else {
            Container::Ogg
        },
        channels: 1,
        pre_skip: 312,
        video: first.as_ref().map(|f| VideoTrack {
            width: 320,
            height: 240,
            parameter_sets: h264_parameter_sets(&f.data),
        }),
    };
    let mut m = Muxer::create(path, &settings).unwrap();
    if let Some(f) = &first {
        m.write_video(0, &f.data, true).unwrap();
    }
    let mut pcm = vec![0i16; 960];
    let mut frame = 1u32;
    for n in 0..seconds * 50 {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (n as usize * 960 + i) as f64 / 48_000.0;
            *s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        }
        let at = i64::from(n) * 20_000;
        m.write_audio(at, opus.encode(&pcm).unwrap()).unwrap();
        // Video at 30 fps, interleaved by time with the audio.
        while video && i64::from(frame) * 33_333 <= at {
            if let Some(f) = h264.encode(&picture).unwrap() {
                m.write_video(i64::from(frame) * 33_333, &f.data, f.keyframe)
                    .unwrap();
            }
            frame += 1;
        }
    }
    m
}

#[test]
fn opus_and_h264_in_matroska_play_for_their_length() {
    let dir = tempdir();
    let path = dir.join("both.mkv");
    let mut m = record(&path, 4, true);
    m.finish().unwrap();
    let streams = probe(&path);
    assert!(
        streams.iter().any(|(s, _)| s == "audio/opus"),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|(s, _)| s == "video/h264"),
        "{streams:?}"
    );
    let d = streams[0].1;
    assert!((3.8..=4.3).contains(&d), "duration {d}");
    let errors = decode_errors(&path);
    assert!(errors.is_empty(), "{errors}");
}

#[test]
fn opus_alone_goes_to_ogg() {
    let dir = tempdir();
    let path = dir.join("audio.ogg");
    let mut m = record(&path, 3, false);
    m.finish().unwrap();
    let streams = probe(&path);
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].0, "audio/opus");
    assert!((2.8..=3.2).contains(&streams[0].1), "{streams:?}");
    assert!(decode_errors(&path).is_empty());
}

/// A writer that never finishes (the process was killed) leaves a file that plays up to
/// its last closed cluster.
#[test]
fn an_unfinished_matroska_file_still_plays() {
    let dir = tempdir();
    let path = dir.join("killed.mkv");
    let m = record(&path, 5, true);
    // No trailer, no close: what a kill -9 leaves (the data already flushed stays).
    std::mem::forget(m);
    let streams = probe(&path);
    assert!(
        streams.iter().any(|(s, _)| s == "video/h264"),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|(s, _)| s == "audio/opus"),
        "{streams:?}"
    );
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(last >= 3.0, "only {last} s readable of 5");
}

#[test]
fn bad_settings_are_refused_not_written() {
    let dir = tempdir();
    let s = MuxSettings {
        container: Container::Ogg,
        channels: 1,
        pre_skip: 312,
        video: Some(VideoTrack {
            width: 320,
            height: 240,
            parameter_sets: vec![0, 0, 0, 1, 0x67],
        }),
    };
    assert!(Muxer::create(&dir.join("x.ogg"), &s).is_err());
    let s = MuxSettings {
        channels: 3,
        video: None,
        ..s
    };
    assert!(Muxer::create(&dir.join("y.ogg"), &s).is_err());
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "codecs-mux-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
