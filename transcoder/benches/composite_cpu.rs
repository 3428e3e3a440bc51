//! What a composite costs against ffmpeg's command line doing the same job, in one run:
//!
//!     cargo bench -p transcoder --bench composite_cpu [-- SECONDS]
//!
//! The same senders (640x360 H.264 at 600 kbit/s, moving and textured pictures, a keyframe
//! every 2 s, `SECONDS` of each, 10 by default) go through
//!
//! - `transcoder::compositor` on a one-thread rayon pool, frame by frame on its 30 fps
//!   clock: decode (FFmpeg's H.264 decoder), tiles (swscale), one encode of the
//!   1280x720 canvas (openh264 at low complexity, 1.5 Mbit/s), as the media server runs it;
//! - ffmpeg's CLI: decode each input, `xstack` (scaled tiles where the layout needs
//!   them), libx264 `veryfast`/`zerolatency` at 1.5 Mbit/s with the compositor's keyframe
//!   every 2 s, 1280x720 out.
//!
//! For the 2x2 grid, the 3x3 grid and the speaker layout with four thumbnails it prints
//! the CPU per second of output of both (process CPU time, user + system, from
//! `getrusage`), the frames each encoded (ffmpeg loops its inputs, as the compositor's
//! side loops each sender's pictures, so both work through the same frames), the compositor's CPU time per frame (decode + compose + encode, on a
//! pool of one thread while the caller waits), median and p99, and the same for compose
//! and encode alone (the decodes run in parallel on the pool). Last, where a frame's time
//! goes, stage by stage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codecs::h264::{FfmpegH264Decoder, H264Decoder, H264Encoder};
use codecs::payload::keyframe::VideoCodec;
use codecs::{EncodedFrame, EncoderSettings, I420Frame};

use transcoder::compositor::{output_settings, Compositor, FRAME_RATE};
use transcoder::layout::{tiles, Canvas, Layout};

mod senders;

/// CPU time of this process so far (`CLOCK_PROCESS_CPUTIME_ID`, every thread): a frame's
/// or a stage's cost, which another program on the machine does not inflate as it does
/// wall time.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed one we pass.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(who, &mut r) };
    assert_eq!(rc, 0, "getrusage");
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

struct Case {
    name: &'static str,
    layout: Layout,
    senders: usize,
    /// ffmpeg's filter graph over inputs `[0:v]`..., ending in `[out]`.
    filter: String,
}

fn cases() -> Vec<Case> {
    let grid3 = (0..9)
        .map(|i| format!("[{i}:v]scale=426:240[s{i}];"))
        .collect::<String>();
    let grid3_in: String = (0..9).map(|i| format!("[s{i}]")).collect();
    let thumbs = (1..5)
        .map(|i| format!("[{i}:v]scale=320:180[s{i}];"))
        .collect::<String>();
    vec![
        Case {
            name: "2x2 grid, 4 senders",
            layout: Layout::Grid,
            senders: 4,
            filter: "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0[out]".into(),
        },
        Case {
            name: "3x3 grid, 9 senders",
            layout: Layout::Grid,
            senders: 9,
            filter: format!(
                "{grid3}{grid3_in}xstack=inputs=9:layout=0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0|\
                 0_h0+h1|w0_h0+h1|w0+w1_h0+h1,pad=1280:720[out]"
            ),
        },
        Case {
            name: "speaker + 4 thumbnails",
            layout: Layout::Speaker,
            senders: 5,
            filter: format!(
                "[0:v]scale=1280:540[s0];{thumbs}[s0][s1][s2][s3][s4]xstack=inputs=5:\
                 layout=0_0|0_540|320_540|640_540|960_540[out]"
            ),
        },
    ]
}

/// The compositor on `case`: (CPU seconds per second of output, per-frame times, frames
/// encoded).
fn ours(case: &Case, streams: &[Vec<EncodedFrame>], frames: usize) -> (f64, Vec<Duration>, u64) {
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool"),
    );
    let settings = output_settings(1280, 720, 1_500_000);
    let mut comp =
        Compositor::new(VideoCodec::H264, settings, case.layout, pool).expect("a compositor");
    for s in 0..case.senders {
        comp.add_sender(s as u32, VideoCodec::H264)
            .expect("room for it");
    }
    comp.set_speaker(Some(0));
    let interval = Duration::from_secs(1) / FRAME_RATE;
    let mut now = Instant::now();
    let mut times = Vec::with_capacity(frames);
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    for i in 0..frames {
        for (s, stream) in streams.iter().take(case.senders).enumerate() {
            let f = &stream[i % stream.len()];
            comp.push(s as u32, f.data.clone(), f.keyframe, now)
                .expect("a sender");
        }
        let t = process_cpu();
        comp.poll(now).expect("a frame");
        times.push(process_cpu() - t);
        now += interval;
    }
    let cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu0;
    assert_eq!(comp.stats.decode_errors, 0, "{:?}", comp.stats);
    (
        cpu / (frames as f64 / f64::from(FRAME_RATE)),
        times,
        comp.stats.frames,
    )
}

/// Compose and encode alone, per frame: each sender's access unit decoded off the clock,
/// then its latest picture drawn into its tile and the canvas encoded (openh264 at low
/// complexity, as the media server runs it) on the clock. The decodes run in parallel on
/// the pool in the media server; this is the part of a frame that does not.
fn compose_encode(case: &Case, streams: &[Vec<EncodedFrame>], frames: usize) -> Vec<Duration> {
    let mut decoders: Vec<FfmpegH264Decoder> = (0..case.senders)
        .map(|_| FfmpegH264Decoder::new().expect("a decoder"))
        .collect();
    let mut latest: Vec<Option<I420Frame>> = (0..case.senders).map(|_| None).collect();
    let mut canvas = Canvas::new(1280, 720).expect("a canvas");
    let mut enc = H264Encoder::new(output_settings(1280, 720, 1_500_000)).expect("an encoder");
    let tiles = tiles(case.layout, case.senders, 1280, 720);
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        for (s, d) in decoders.iter_mut().enumerate() {
            let f = &streams[s][i % streams[s].len()];
            if let Some(p) = d.decode(&f.data).expect("decodes") {
                latest[s] = Some(p);
            }
        }
        let t = process_cpu();
        for (&tile, p) in tiles.iter().zip(&latest) {
            if let Some(p) = p {
                canvas.put(tile, p).expect("draws");
            }
        }
        enc.encode(canvas.frame()).expect("encodes");
        times.push(process_cpu() - t);
    }
    times
}

/// ffmpeg's CLI on `case`: (CPU seconds per second of output, frames encoded).
fn theirs(case: &Case, files: &[PathBuf], frames: usize) -> (f64, u64) {
    let mut cmd = Command::new("ffmpeg");
    // `-progress` prints `frame=N` as it goes: the last is what it encoded.
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-progress",
        "pipe:1",
    ]);
    for f in files.iter().take(case.senders) {
        // Looped, as the compositor's bench loops each sender's pictures.
        cmd.args(["-stream_loop", "-1", "-f", "h264", "-framerate", "30", "-i"])
            .arg(f);
    }
    cmd.args(["-filter_complex", &case.filter, "-map", "[out]"])
        .args(["-frames:v", &frames.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        // The compositor's keyframe every 2 s (for plain-RTP receivers that send no PLI).
        .args(["-g", "60"])
        .args(["-b:v", "1500k", "-pix_fmt", "yuv420p", "-f", "null", "-"]);
    let cpu0 = cpu_seconds(libc::RUSAGE_CHILDREN);
    let out = cmd.output().expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - cpu0;
    let made = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame=")?.trim().parse().ok())
        .unwrap_or(0);
    (cpu / (frames as f64 / f64::from(FRAME_RATE)), made)
}

fn quantile(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
    times[i].as_secs_f64() * 1000.0
}

/// Where a frame's time goes: one 640x360 unit decoded by each H.264 decoder, and one
/// 1280x720 canvas (a 2x2 grid's) encoded by openh264, in ms (mean over the stream).
fn stages(stream: &[EncodedFrame]) {
    let mean_ms = |t: Duration, n: usize| t.as_secs_f64() * 1000.0 / n as f64;
    let mut oh = H264Decoder::new().expect("a decoder");
    let t = process_cpu();
    let pictures: Vec<I420Frame> = stream
        .iter()
        .filter_map(|f| oh.decode(&f.data).expect("decodes"))
        .collect();
    let openh264 = mean_ms(process_cpu() - t, stream.len());
    let mut ff = FfmpegH264Decoder::new().expect("a decoder");
    let t = process_cpu();
    for f in stream {
        ff.decode(&f.data).expect("decodes");
    }
    let ffmpeg = mean_ms(process_cpu() - t, stream.len());
    let mut canvas = Canvas::new(1280, 720).expect("a canvas");
    let mut settings = EncoderSettings::new(1280, 720);
    settings.bitrate_bps = 1_500_000;
    let mut enc = H264Encoder::new(settings).expect("an encoder");
    settings.fast = true;
    let mut fast = H264Encoder::new(settings).expect("an encoder");
    let tiles = tiles(Layout::Grid, 4, 1280, 720);
    let (mut draw, mut encode, mut encode_fast) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for p in &pictures {
        let t = process_cpu();
        for &tile in &tiles {
            canvas.put(tile, p).expect("draws");
        }
        draw += process_cpu() - t;
        let t = process_cpu();
        enc.encode(canvas.frame()).expect("encodes");
        encode += process_cpu() - t;
        let t = process_cpu();
        fast.encode(canvas.frame()).expect("encodes");
        encode_fast += process_cpu() - t;
    }
    let n = pictures.len();
    println!(
        "Per frame: decode 640x360 {openh264:.2} ms (openh264), {ffmpeg:.2} ms (FFmpeg); \
         draw a 2x2 grid {:.2} ms; encode 1280x720 (openh264) {:.2} ms at medium \
         complexity, {:.2} ms at low (`fast`)",
        mean_ms(draw, n),
        mean_ms(encode, n),
        mean_ms(encode_fast, n)
    );
}

fn write_annex_b(dir: &Path, id: usize, stream: &[EncodedFrame]) -> PathBuf {
    let path = dir.join(format!("sender{id}.h264"));
    let bytes: Vec<u8> = stream.iter().flat_map(|f| f.data.iter().copied()).collect();
    std::fs::write(&path, bytes).expect("the sender's file");
    path
}

fn main() {
    // `cargo bench` passes `--bench`; a number is the seconds of output.
    let seconds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let frames = (seconds * FRAME_RATE) as usize;
    let dir = std::env::temp_dir().join(format!("composite-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    eprintln!("encoding 9 senders x {frames} frames of 640x360 ...");
    let streams: Vec<Vec<EncodedFrame>> = (0..9)
        .map(|s| senders::stream(VideoCodec::H264, s, frames as u32, 2 * FRAME_RATE))
        .collect();
    let files: Vec<PathBuf> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| write_annex_b(&dir, i, s))
        .collect();
    println!("{seconds} s of 1280x720 output at 30 fps, 1.5 Mbit/s; CPU per second of output");
    println!();
    println!(
        "| layout | compositor | ffmpeg CLI (x264 veryfast) | ratio | frames out (ours, \
         ffmpeg's) | frame time p50 | p99 | compose + encode p50 | p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for case in cases() {
        let (cpu, mut times, made) = ours(&case, &streams, frames);
        let (ffmpeg, theirs_made) = theirs(&case, &files, frames);
        let mut ce = compose_encode(&case, &streams, frames);
        println!(
            "| {} | {:.3} core | {:.3} core | {:.2}x | {made}, {theirs_made} of {frames} \
             | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            case.name,
            cpu,
            ffmpeg,
            cpu / ffmpeg,
            quantile(&mut times, 0.5),
            quantile(&mut times, 0.99),
            quantile(&mut ce, 0.5),
            quantile(&mut ce, 0.99),
        );
    }
    println!();
    stages(&streams[0]);
    let _ = std::fs::remove_dir_all(&dir);
}
