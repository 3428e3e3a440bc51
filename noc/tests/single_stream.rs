//! Single-stream endpoints (seed 001's legacy endpoints, issue 14): a plain-RTP member that
//! asks for one stream (`confclient --external-media ... --video --single-stream`) gets one
//! 1280x720 composite of every sender and the mixed audio, in a reflect room and in a mix
//! room, while the others keep their forwarded streams. ffmpeg receives through the
//! member's `receive.sdp`; the test decodes the picture and looks for every tone.

use std::path::Path;
use std::time::Duration;

use testkit::harness::{Client, Noc, TempDir};

mod support;
use support::media::{
    decoded_frames, free_port_block, last_picture, log_of, receive, send_tone, send_video,
    wait_child, wait_file, wav_tones, Reaper,
};

const RECORD: f64 = 6.0;
/// Senders' colours and their BT.601 limited-range YUV, and their tones.
const SENDERS: [(&str, (f64, f64, f64), f64); 2] = [
    ("0xFF0000", (81.0, 90.0, 240.0), 450.0),
    ("0x0000FF", (41.0, 240.0, 110.0), 850.0),
];

fn member(noc: &Noc, conf: &str, mode: &str, dir: &Path, n: u32, single: bool) -> Client {
    let port = free_port_block().to_string();
    let ssrc = (9000 + 10 * n).to_string();
    let name = format!("m{n}");
    let mut args = vec![
        "--mode",
        mode,
        "--external-media",
        dir.to_str().expect("utf-8 path"),
        "--recv-port",
        &port,
        "--video",
        "--ssrc",
        &ssrc,
    ];
    if single {
        args.push("--single-stream");
    }
    Client::spawn(noc.dispatcher, conf, "demo", &name, &args)
}

fn one_stream(mode: &str) {
    let noc = Noc::start(&[]);
    let tmp = TempDir::new(&format!("single-{mode}"));
    let conf = format!("legacy{mode}");
    let mut media = Reaper::default();
    let mut clients = Vec::new();
    for (i, &(colour, _, tone)) in SENDERS.iter().enumerate() {
        let d = tmp.path().join(format!("tx{i}"));
        let c = member(&noc, &conf, mode, &d, i as u32, false);
        let txt = wait_file(&d.join("send.txt"), &c);
        media.push(send_video(
            &txt,
            colour,
            30,
            &tmp.file(&format!("v{i}.log")),
        ));
        media.push(send_tone(&txt, tone, 30, &tmp.file(&format!("a{i}.log"))));
        clients.push(c);
    }
    let rx_dir = tmp.path().join("rx");
    let rx = member(&noc, &conf, mode, &rx_dir, 7, true);
    let sdp_path = rx_dir.join("receive.sdp");
    let sdp = wait_file(&sdp_path, &rx);
    let (wav, video, log) = (tmp.file("rx.wav"), tmp.file("rx.mkv"), tmp.file("rx.log"));
    let mut receiver = receive(&sdp_path, Some(&wav), &video, RECORD, &log);
    let finished = wait_child(&mut receiver, Duration::from_secs(25));
    drop(media);
    assert!(
        finished,
        "the receiver did not finish: {}\n{sdp}",
        log_of(&log)
    );

    // One picture stream, decoded clean: only the composite came (the senders' own
    // streams, under other SSRCs, would break it).
    let (frames, errors) = decoded_frames(&video);
    assert!(
        errors.trim().is_empty(),
        "{mode}: decode errors: {errors}\n{}",
        log_of(&log)
    );
    let expected = (RECORD * 30.0) as usize;
    eprintln!("{mode}: {frames} composite frames of {expected}");
    assert!(
        frames * 10 >= expected * 8,
        "{mode}: {frames} of {expected}"
    );

    let raw = tmp.file("last.yuv");
    let yuv = last_picture(&video, None, &raw);
    let (w, h) = (1280, 720);
    assert_eq!(yuv.len(), w * h * 3 / 2, "a 1280x720 composite");
    // Two senders: the top quadrants of a 2x2 grid, in join order.
    for (i, x) in [0, w / 2].into_iter().enumerate() {
        let (cx, cy) = (x + w / 4, h / 4);
        let c = (cy / 2) * (w / 2) + cx / 2;
        let got = (
            f64::from(yuv[cy * w + cx]),
            f64::from(yuv[w * h + c]),
            f64::from(yuv[w * h * 5 / 4 + c]),
        );
        let want = SENDERS[i].1;
        let off = (got.0 - want.0)
            .abs()
            .max((got.1 - want.1).abs())
            .max((got.2 - want.2).abs());
        assert!(off < 14.0, "{mode}: tile {i} {got:?}, want {want:?}");
    }

    let levels = wav_tones(Path::new(&wav), 4.0, &[SENDERS[0].2, SENDERS[1].2]);
    eprintln!("{mode}: tone levels (dBFS) {levels:?}");
    assert!(levels.iter().all(|&db| db > -40.0), "{mode}: {levels:?}");
    drop((rx, clients));
}

#[test]
fn a_single_stream_endpoint_gets_one_composite_and_the_mix_in_a_reflect_room() {
    one_stream("reflect");
}

#[test]
fn a_single_stream_endpoint_gets_one_composite_and_the_mix_in_a_mix_room() {
    one_stream("mix");
}
