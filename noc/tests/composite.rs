//! The video MCU (issue 14): a `mode=composite` conference. Four ffmpeg senders join through
//! `confclient --external-media --video`, each with a 640x360 H.264 picture of its own solid
//! colour and a tone of its own; a fifth member receives through its `receive.sdp` one
//! 1280x720 composite and the mixed audio. ffmpeg records what it gets; the test counts
//! the decoded frames, reads each quadrant's colour from a decoded picture, and looks for
//! every tone in the audio.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::harness::{http_post, Client, Noc, TempDir};

mod support;
use support::media::{
    composite_latency, decoded_frames, ffmpeg, free_port_block, last_picture, log_of, receive,
    send_tone, send_video, wait_child, wait_file,
};

/// Senders' colours (RGB for lavfi) and their BT.601 limited-range YUV, and their tones.
const SENDERS: [(&str, (f64, f64, f64), f64); 4] = [
    ("0xFF0000", (81.0, 90.0, 240.0), 350.0),
    ("0x00FF00", (145.0, 54.0, 34.0), 550.0),
    ("0x0000FF", (41.0, 240.0, 110.0), 750.0),
    ("0xFFFF00", (210.0, 16.0, 146.0), 950.0),
];
/// Seconds the receiver records: it starts first and ends while media still flows (the
/// senders send for 20 s and are stopped after it).
const RECORD: f64 = 5.0;
const WAIT: Duration = Duration::from_secs(15);
const W: usize = 1280;
const H: usize = 720;

fn member(noc: &Noc, dir: &Path, name: &str, extra: &[&str]) -> Client {
    let port = free_port_block().to_string();
    let mut args = vec![
        "--mode",
        "composite",
        "--external-media",
        dir.to_str().expect("utf-8 path"),
        "--recv-port",
        &port,
        "--video",
    ];
    args.extend_from_slice(extra);
    Client::spawn(noc.dispatcher, "grid", "demo", name, &args)
}

/// Mean (Y, U, V) of a rectangle of a raw 4:2:0 picture.
fn mean(yuv: &[u8], x: usize, y: usize, w: usize, h: usize) -> (f64, f64, f64) {
    let (mut sy, mut su, mut sv) = (0u64, 0u64, 0u64);
    let (cw, ch) = (W / 2, H / 2);
    let (u0, v0) = (W * H, W * H + cw * ch);
    for r in y..y + h {
        for c in x..x + w {
            sy += u64::from(yuv[r * W + c]);
            su += u64::from(yuv[u0 + (r / 2) * cw + c / 2]);
            sv += u64::from(yuv[v0 + (r / 2) * cw + c / 2]);
        }
    }
    let n = (w * h) as f64;
    (sy as f64 / n, su as f64 / n, sv as f64 / n)
}

#[test]
fn four_senders_make_one_grid_with_their_colours_and_all_their_tones() {
    let noc = Noc::start(&[]);
    let tmp = TempDir::new("composite");

    // The receiver first: its ffmpeg listens before media flows.
    let rx_dir = tmp.path().join("rx");
    let rx = member(&noc, &rx_dir, "rx", &[]);
    let sdp_path = rx_dir.join("receive.sdp");
    let sdp = wait_file(&sdp_path, &rx);
    assert!(sdp.contains("m=video"), "{sdp}");
    let (wav, video, rx_log) = (
        tmp.file("mix.wav"),
        tmp.file("composite.mkv"),
        tmp.file("rx-ffmpeg.log"),
    );
    let mut receiver = receive(&sdp_path, Some(&wav), &video, RECORD, &rx_log);

    let mut senders = Vec::new();
    let mut clients = Vec::new();
    for (i, &(colour, _, tone)) in SENDERS.iter().enumerate() {
        let dir = tmp.path().join(format!("tx{i}"));
        let ssrc = (5000 + 10 * i).to_string();
        let c = member(&noc, &dir, &format!("tx{i}"), &["--ssrc", &ssrc]);
        let send_txt = wait_file(&dir.join("send.txt"), &c);
        clients.push(c);
        senders.push(send_video(
            &send_txt,
            colour,
            20,
            &tmp.file(&format!("tx{i}.log")),
        ));
        senders.push(send_tone(
            &send_txt,
            tone,
            20,
            &tmp.file(&format!("a{i}.log")),
        ));
    }
    let finished = wait_child(&mut receiver, Duration::from_secs(20));
    assert!(finished, "the receiver did not finish: {}", log_of(&rx_log));
    for mut s in senders {
        let _ = s.kill();
        let _ = s.wait();
    }

    // The video: decoded without errors, at least 90% of 30 frames a second, 1280x720.
    let decode_log = tmp.file("decode.log");
    let (frames, errors) = decoded_frames(&video);
    std::fs::write(&decode_log, &errors).unwrap();
    assert!(
        errors.trim().is_empty(),
        "decode errors: {errors}\nreceive.sdp:\n{sdp}\nreceiver:\n{}\nsender 0:\n{}",
        log_of(&rx_log),
        log_of(&tmp.file("tx0.log"))
    );
    // The composite starts when the receiver joins; the senders' pictures appear as
    // they come, and the stream runs at the compositor's 30 frames a second.
    let expected = (RECORD * 30.0) as usize;
    eprintln!("composite: {frames} frames decoded of {expected} expected");
    assert!(
        frames * 10 >= expected * 9,
        "{frames} frames decoded of {expected} expected\n{}",
        log_of(&rx_log)
    );

    // Latency from a sender's picture arriving to the composite that shows it being
    // sent: printed for docs/benchmarks.md; counted for every picture shown.
    let (pictures, p50, p99) = composite_latency(&noc);
    eprintln!("composite latency: {pictures} pictures, p50 <= {p50} ms, p99 <= {p99} ms");
    assert!(
        pictures > 0,
        "the latency histogram counts the pictures shown"
    );

    // The last picture: each quadrant's middle has its sender's colour.
    let raw = tmp.file("last.yuv");
    let yuv = last_picture(&video, None, &raw);
    assert_eq!(yuv.len(), W * H * 3 / 2, "a 1280x720 picture");
    for (i, &(x, y)) in [(0, 0), (W / 2, 0), (0, H / 2), (W / 2, H / 2)]
        .iter()
        .enumerate()
    {
        let m = mean(&yuv, x + W / 8, y + H / 8, W / 4, H / 4);
        let want = SENDERS[i].1;
        let off = (m.0 - want.0)
            .abs()
            .max((m.1 - want.1).abs())
            .max((m.2 - want.2).abs());
        assert!(off < 12.0, "quadrant {i}: {m:?}, want {want:?}");
    }

    // The audio: every sender's tone in the mix.
    let (samples, rate) = read_wav(&wav).expect("the mix recorded");
    let window = Window {
        skip: RECORD - 2.0,
        duration: 1.5,
        block: 0.1,
    };
    let tone = ToneAnalysis::new(&samples, rate, window).expect("enough audio");
    for &(_, _, f) in &SENDERS {
        let db = tone.level_db(f);
        assert!(db >= -40.0, "{f} Hz at {db:.1} dB in the mix");
    }
    drop((rx, clients));
}

/// One sender's video alone (its colour, 640x360 H.264), or its audio alone (a tone in
/// Opus): each its own ffmpeg, so a test can start and stop a talker's voice while its
/// picture goes on.
/// The mean (Y, U, V) of the speaker layout's large tile (the top 1280x540) of each frame
/// of `video`, with its receive time (wall clock, seconds since the epoch).
fn large_tile_by_time(video: &str) -> Vec<(f64, (f64, f64, f64))> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-copyts", "-i", video])
        .args(["-vf", "crop=1280:540:0:0,showinfo", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains(" pts:"))
        .filter_map(|l| {
            // pts in the Matroska time base (ms): pts_time is printed too coarsely.
            let pts: f64 = l
                .split(" pts:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let t = pts / 1000.0;
            let m = l.split("mean:[").nth(1)?.split(']').next()?;
            let v: Vec<f64> = m
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3).then(|| (t, (v[0], v[1], v[2])))
        })
        .collect()
}

fn is(c: (f64, f64, f64), want: (f64, f64, f64)) -> bool {
    (c.0 - want.0).abs() < 14.0 && (c.1 - want.1).abs() < 14.0 && (c.2 - want.2).abs() < 14.0
}

/// The speaker layout, set through the admin API: the talker's picture is the large
/// tile, and when another member starts talking (and the first stops), its picture is the
/// large one within 1 s.
#[test]
fn the_talker_takes_the_large_tile_within_a_second() {
    const TOKEN: &str = "composite-test-token";
    let noc = Noc::start(&["--admin-token", TOKEN]);
    let tmp = TempDir::new("composite-speaker");
    let rx_dir = tmp.path().join("rx");
    let rx = member(&noc, &rx_dir, "rx", &[]);
    let sdp_path = rx_dir.join("receive.sdp");
    wait_file(&sdp_path, &rx);
    let (video, rx_log) = (tmp.file("speaker.mkv"), tmp.file("rx-ffmpeg.log"));
    let mut receiver = ffmpeg(
        &[
            "-protocol_whitelist",
            "file,udp,rtp",
            "-use_wallclock_as_timestamps",
            "1",
            "-t",
            "11",
            "-i",
            sdp_path.to_str().expect("utf-8 path"),
            "-map",
            "0:v",
            "-c:v",
            "copy",
            "-copyts",
            "-y",
            &video,
        ],
        &rx_log,
    );
    let mut procs = Vec::new();
    let mut txts = Vec::new();
    let mut clients = Vec::new();
    for (i, &(colour, _, _)) in SENDERS[..3].iter().enumerate() {
        let dir = tmp.path().join(format!("tx{i}"));
        let ssrc = (6000 + 10 * i).to_string();
        let c = member(&noc, &dir, &format!("tx{i}"), &["--ssrc", &ssrc]);
        let txt = wait_file(&dir.join("send.txt"), &c);
        procs.push(send_video(
            &txt,
            colour,
            20,
            &tmp.file(&format!("v{i}.log")),
        ));
        txts.push(txt);
        clients.push(c);
    }
    let (status, body) = http_post(
        noc.http,
        "/api/admin/conferences/grid/layout",
        TOKEN,
        "{\"layout\": \"speaker\"}",
    );
    assert_eq!(status, 200, "{body}");
    assert!(rx.stdout.wait_for("layout speaker", WAIT).is_some());
    // Sender 0 talks; then it stops and sender 1 starts.
    let mut first = send_tone(&txts[0], SENDERS[0].2, 20, &tmp.file("a0.log"));
    std::thread::sleep(Duration::from_secs(4));
    let _ = first.kill();
    let _ = first.wait();
    let switched_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    procs.push(send_tone(&txts[1], SENDERS[1].2, 20, &tmp.file("a1.log")));
    assert!(
        wait_child(&mut receiver, Duration::from_secs(20)),
        "{}",
        log_of(&rx_log)
    );
    for mut p in procs {
        let _ = p.kill();
        let _ = p.wait();
    }
    let frames = large_tile_by_time(&video);
    assert!(
        frames.len() > 100,
        "{} frames\n{}",
        frames.len(),
        log_of(&rx_log)
    );
    let before: Vec<_> = frames
        .iter()
        .filter(|f| (switched_at - 1.5..switched_at - 0.2).contains(&f.0))
        .collect();
    assert!(
        !before.is_empty() && before.iter().all(|f| is(f.1, SENDERS[0].1)),
        "the first talker's picture is not the large tile: {before:?} (switched at {switched_at}, frames {:?} .. {:?})",
        frames.first(),
        frames.last()
    );
    let green = frames
        .iter()
        .find(|f| f.0 >= switched_at && is(f.1, SENDERS[1].1))
        .unwrap_or_else(|| panic!("the second talker never took the large tile: {frames:?}"));
    let took = green.0 - switched_at;
    eprintln!("the second talker's picture was the large tile {took:.2} s after it started");
    assert!(took <= 1.0, "{took:.2} s");
    drop((rx, clients));
}
