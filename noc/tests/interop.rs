//! Plain-RTP interop (issue 5): Debian's ffmpeg joins a conference through
//! `confclient --external-media`, sending a 440 Hz Opus tone and an H.264 test pattern; a
//! second ffmpeg receives the conference through the other member's `receive.sdp`. The
//! audio is checked with the project's tone detector (`tools/tone_check.py`), the video by
//! counting decoded frames against the frames sent. The same door into a `mode=mix`
//! conference, and the media server's checks of `channel` lines for video and `latch:PORT`.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::harness::control::Line;
use testkit::harness::{Client, Noc, TempDir};

mod support;
use support::media::{ffmpeg, field, free_port_block, log_of, wait_child, wait_file};

const WAIT: Duration = Duration::from_secs(15);
/// What the sender sends: seconds of media, video frame rate.
const SECONDS: u32 = 4;
const FPS: u32 = 25;
/// What the receiver records, in sender time, then it exits by itself (`-t`). Shorter than
/// the sending, so it ends while media still flows: a SIGINT'd ffmpeg blocked on a silent
/// socket leaves its files unfinished.
const RECORD: &str = "3.5";
/// Frames the sender sends within the recorded window.
const WINDOW_FRAMES: usize = 87;

/// The last `frame=N` of an ffmpeg `-progress` file.
fn progress_frames(path: &str) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame=")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Frames in a `framecrc` file: one line per decoded frame, comments start with `#`.
fn framecrc_frames(path: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count()
}

/// Issue 5 acceptance: ffmpeg in, ffmpeg out, through `--external-media` on both sides.
#[test]
fn ffmpeg_sends_and_receives_through_external_media() {
    let noc = Noc::start(&[]);
    let tmp = TempDir::new("interop");
    let (rx_dir, tx_dir) = (tmp.path().join("rx"), tmp.path().join("tx"));

    // The receiving member first: its ffmpeg must listen before media flows.
    let rx_port = free_port_block();
    let rx = Client::spawn(
        noc.dispatcher,
        "interop",
        "demo",
        "rx",
        &[
            "--external-media",
            rx_dir.to_str().expect("utf-8 path"),
            "--recv-port",
            &rx_port.to_string(),
            "--video",
        ],
    );
    let sdp = wait_file(&rx_dir.join("receive.sdp"), &rx);
    assert!(
        sdp.contains(&format!("m=video {} RTP/AVP 96", rx_port + 2)),
        "{sdp}"
    );
    let video_line = rx
        .stdout
        .wait_for("channel video", WAIT)
        .expect("video offered");
    let f: Vec<&str> = video_line.split_whitespace().collect();
    assert_eq!(&f[3..5], ["96", "h264"], "{video_line}");

    let (wav, frames) = (tmp.file("out.wav"), tmp.file("frames.txt"));
    let rx_log = tmp.file("rx-ffmpeg.log");
    let sdp_path = rx_dir.join("receive.sdp");
    let mut receiver = ffmpeg(
        &[
            "-protocol_whitelist",
            "file,udp,rtp",
            "-reorder_queue_size",
            "50",
            "-i",
            sdp_path.to_str().expect("utf-8 path"),
            "-map",
            "0:a",
            "-t",
            RECORD,
            "-af",
            "aresample=async=1:first_pts=0",
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            "-y",
            &wav,
            "-map",
            "0:v",
            "-t",
            RECORD,
            "-fps_mode",
            "passthrough",
            "-f",
            "framecrc",
            "-y",
            &frames,
        ],
        &rx_log,
    );

    let tx_port = free_port_block();
    let tx = Client::spawn(
        noc.dispatcher,
        "interop",
        "demo",
        "tx",
        &[
            "--external-media",
            tx_dir.to_str().expect("utf-8 path"),
            "--recv-port",
            &tx_port.to_string(),
            "--ssrc",
            "1111",
            "--video",
        ],
    );
    let send = wait_file(&tx_dir.join("send.txt"), &tx);
    assert_eq!(field(&send, "audio_ssrc"), "1111");
    assert_eq!(field(&send, "video_ssrc"), "1112");
    // Let the receiving ffmpeg finish opening its sockets.
    std::thread::sleep(Duration::from_millis(300));

    let t = SECONDS.to_string();
    let progress = tmp.file("tx-progress.txt");
    let tx_log = tmp.file("tx-ffmpeg.log");
    let mut sender = ffmpeg(
        &[
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-re",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size=320x240:rate={FPS}"),
            "-progress",
            &progress,
            "-map",
            "0:a",
            "-t",
            &t,
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-frame_duration",
            "20",
            "-application",
            "audio",
            "-payload_type",
            field(&send, "audio_payload_type"),
            "-ssrc",
            field(&send, "audio_ssrc"),
            "-f",
            "rtp",
            field(&send, "audio_target"),
            "-map",
            "1:v",
            "-t",
            &t,
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            // A short GOP: a receiver that misses the start decodes from the next keyframe
            // without waiting for the reflector's PLI.
            "-g",
            "10",
            "-bf",
            "0",
            "-b:v",
            "300k",
            "-flags",
            "+global_header",
            "-bsf:v",
            "dump_extra=freq=keyframe",
            "-payload_type",
            field(&send, "video_payload_type"),
            "-ssrc",
            field(&send, "video_ssrc"),
            "-f",
            "rtp",
            field(&send, "video_target"),
        ],
        &tx_log,
    );
    assert!(
        wait_child(&mut sender, Duration::from_secs(u64::from(SECONDS) + 8)),
        "sending ffmpeg hung:\n{}",
        log_of(&tx_log)
    );
    // It has recorded its window by now unless media stopped flowing.
    let receiver_exited = wait_child(&mut receiver, Duration::from_secs(3));

    let sent = progress_frames(&progress);
    assert!(
        sent >= SECONDS * FPS * 9 / 10,
        "the sender sent only {sent} frames:\n{}",
        log_of(&tx_log)
    );
    let decoded = framecrc_frames(&frames);
    let context = || {
        format!(
            "receiver exited={receiver_exited}\n--- receiving ffmpeg:\n{}\n--- sending ffmpeg:\n{}\n--- noc:\n{}",
            log_of(&rx_log),
            log_of(&tx_log),
            noc.stderr.all().join("\n")
        )
    };
    // Every frame lost or undecodable in the window is missing from the count.
    assert!(
        receiver_exited && decoded * 10 >= WINDOW_FRAMES * 8,
        "decoded {decoded} of the {WINDOW_FRAMES} video frames sent in the window\n{}",
        context()
    );

    // The project's detector (client::tone mirrors tools/tone_check.py), then the script
    // itself (tools/tone_check.py).
    let (samples, rate) = read_wav(&wav).unwrap_or_else(|e| panic!("{e}\n{}", context()));
    let window = Window {
        skip: 0.5,
        duration: 2.5,
        block: 0.1,
    };
    let tone = ToneAnalysis::new(&samples, rate, window)
        .unwrap_or_else(|| panic!("{} samples received\n{}", samples.len(), context()));
    let (at440, at880) = (tone.level_db(440.0), tone.level_db(880.0));
    assert!(
        at440 >= -35.0 && at880 <= -50.0,
        "440 Hz at {at440:.1} dB, 880 Hz at {at880:.1} dB\n{}",
        context()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/tone_check.py");
    if Path::new(script).exists() {
        let out = Command::new("python3")
            .arg(script)
            .arg(&wav)
            .args([
                "--skip", "0.5", "--dur", "2.5", "--expect", "440", "--absent", "880",
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "tone_check.py: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        eprintln!("note: {script} not found; cross-check skipped");
    }
    drop((rx, tx));
}

/// Joins `conf` as `user` through the dispatcher, with join options `opts`; returns the
/// control connection at the media server.
fn join(noc: &Noc, conf: &str, user: &str, opts: &str) -> Line {
    let mut d = Line::connect(noc.dispatcher);
    d.send(&format!("join\t{conf}\tdemo\t{user}\t{opts}"));
    let dispatch = d.expect("dispatch\t");
    let mut ms = Line::connect(dispatch[1].parse().expect("dispatch address"));
    ms.send(&format!(
        "join\t{conf}\tdemo\t{user}\t{opts}\tticket={}",
        dispatch[2]
    ));
    ms.expect("accept\t");
    ms
}

/// The media server's side of `--external-media` and video: video is offered only to
/// members that asked for it, with the codec they asked for; `latch:PORT` brings its own
/// SSRC, which must be free; other channel forms keep the server's SSRC.
#[test]
fn video_and_external_channel_lines_are_checked() {
    let noc = Noc::start(&[]);
    let av = "mode=reflect\tmedia=audio,video";
    let mut ann = join(&noc, "vid", "ann", av);
    ann.expect("channel\taudio\t");
    let video = ann.expect("channel\tvideo\t");
    assert_eq!(&video[3..5], ["96", "h264"], "{video:?}");
    ann.send("channel\tvideo\tlatch:5006\t777");
    ann.send("ping\tstill-here");
    ann.expect("pong\tstill-here");

    let cases = [
        // Someone else's SSRC.
        (av, "channel\taudio\tlatch:5004\t777", "reject\t400"),
        (
            "media=audio",
            "channel\taudio\tlatch:5004\t0",
            "reject\t400",
        ),
        // No video without media=video.
        (
            "media=audio",
            "channel\tvideo\tlatch:5006\t1234",
            "reject\t409",
        ),
        // Only `latch:PORT` may pick its SSRC.
        (
            "media=audio",
            "channel\taudio\t127.0.0.1:5000\t1234",
            "reject\t400",
        ),
    ];
    for (i, (opts, line, expect)) in cases.into_iter().enumerate() {
        let mut c = join(&noc, "vid", &format!("user{i}"), opts);
        c.expect("channel\taudio\t");
        c.send(line);
        c.expect(expect);
    }
    let mut vp8 = join(&noc, "vp", "eve", &format!("{av}\tvcodec=vp8"));
    let video = vp8.expect("channel\tvideo\t");
    assert_eq!(&video[3..5], ["97", "vp8"], "{video:?}");
}

/// The same door into a `mode=mix` conference: the mixer hears the external sender by its
/// latched SSRC and sends the receiving tool one mixed stream at its declared port.
#[test]
fn ffmpeg_joins_a_mixed_conference_through_external_media() {
    let noc = Noc::start(&[]);
    let tmp = TempDir::new("interop-mix");
    let (rx_dir, tx_dir) = (tmp.path().join("rx"), tmp.path().join("tx"));
    let external = |dir: &Path, port: u16, extra: &[&str]| {
        let mut v = vec![
            "--mode".to_owned(),
            "mix".to_owned(),
            "--external-media".to_owned(),
            dir.to_str().expect("utf-8 path").to_owned(),
            "--recv-port".to_owned(),
            port.to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let rx_args = external(&rx_dir, free_port_block(), &[]);
    let rx_args: Vec<&str> = rx_args.iter().map(String::as_str).collect();
    let rx = Client::spawn(noc.dispatcher, "mixed", "demo", "rx", &rx_args);
    let sdp_path = rx_dir.join("receive.sdp");
    wait_file(&sdp_path, &rx);
    let (wav, rx_log) = (tmp.file("out.wav"), tmp.file("rx-ffmpeg.log"));
    let mut receiver = ffmpeg(
        &[
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
            sdp_path.to_str().expect("utf-8 path"),
            "-t",
            "2.5",
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            "-y",
            &wav,
        ],
        &rx_log,
    );
    let tx_args = external(&tx_dir, free_port_block(), &["--ssrc", "4444"]);
    let tx_args: Vec<&str> = tx_args.iter().map(String::as_str).collect();
    let tx = Client::spawn(noc.dispatcher, "mixed", "demo", "tx", &tx_args);
    let send = wait_file(&tx_dir.join("send.txt"), &tx);
    std::thread::sleep(Duration::from_millis(300));
    let tx_log = tmp.file("tx-ffmpeg.log");
    let mut sender = ffmpeg(
        &[
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3.5",
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-frame_duration",
            "20",
            "-application",
            "audio",
            "-payload_type",
            field(&send, "audio_payload_type"),
            "-ssrc",
            field(&send, "audio_ssrc"),
            "-f",
            "rtp",
            field(&send, "audio_target"),
        ],
        &tx_log,
    );
    assert!(
        wait_child(&mut sender, Duration::from_secs(10)),
        "{}",
        log_of(&tx_log)
    );
    let exited = wait_child(&mut receiver, Duration::from_secs(3));
    let (samples, rate) = read_wav(&wav).unwrap_or_else(|e| {
        panic!(
            "{e} (receiver exited={exited})\n{}\n{}",
            log_of(&rx_log),
            noc.stderr.all().join("\n")
        )
    });
    let window = Window {
        skip: 0.5,
        duration: 1.5,
        block: 0.1,
    };
    let tone = ToneAnalysis::new(&samples, rate, window).expect("enough audio");
    let at440 = tone.level_db(440.0);
    assert!(at440 >= -35.0, "440 Hz at {at440:.1} dB");
    // The mixer saw the external sender talk.
    assert!(
        rx.stdout.wait_for("speaking", WAIT).is_some(),
        "{:?}",
        rx.stdout.all()
    );
    drop((rx, tx));
}
