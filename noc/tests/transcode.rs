//! Video transcoding in reflect rooms (issue 14): a receiver that can only decode H.264
//! gets a VP8 sender's video transcoded, and the other way round. ffmpeg sends through
//! `confclient --external-media --video --vcodec ...`; the receiver's ffmpeg records what
//! its `receive.sdp` describes, and the test decodes it: no errors, a steady frame rate,
//! the sender's colour.

use std::path::Path;
use std::time::Duration;

use testkit::harness::{Client, Noc, TempDir};

mod support;
use support::media::{
    decoded_frames, free_port_block, last_picture, log_of, receive, send_picture, send_tone,
    wait_child, wait_file, Reaper,
};

/// Seconds the receiver records.
const RECORD: f64 = 5.0;

fn member(noc: &Noc, conf: &str, dir: &Path, name: &str, vcodec: &str, ssrc: u32) -> Client {
    let port = free_port_block().to_string();
    let ssrc = ssrc.to_string();
    let args = [
        "--mode",
        "reflect",
        "--external-media",
        dir.to_str().expect("utf-8 path"),
        "--recv-port",
        &port,
        "--video",
        "--vcodec",
        vcodec,
        "--ssrc",
        &ssrc,
    ];
    Client::spawn(noc.dispatcher, conf, "demo", name, &args)
}

/// A `from` sender and a `to`-only receiver in conference `conf`: the receiver decodes
/// the sender's video with no errors, at a steady rate, in the sender's colour.
fn transcoded(noc: &Noc, tmp: &TempDir, conf: &str, from: &str, to: &str) {
    // BT.601 limited-range YUV of 0xFF0000.
    let (colour, want) = ("0xFF0000", (81.0, 90.0, 240.0));
    let tx_dir = tmp.path().join(format!("{conf}-tx"));
    let tx = member(noc, conf, &tx_dir, "tx", from, 8100);
    let tx_txt = wait_file(&tx_dir.join("send.txt"), &tx);
    let senders = Reaper(vec![
        send_picture(
            &tx_txt,
            from,
            colour,
            30,
            &tmp.file(&format!("{conf}-tx.log")),
        ),
        send_tone(&tx_txt, 500.0, 30, &tmp.file(&format!("{conf}-a.log"))),
    ]);

    let rx_dir = tmp.path().join(format!("{conf}-rx"));
    let rx = member(noc, conf, &rx_dir, "rx", to, 8200);
    let sdp_path = rx_dir.join("receive.sdp");
    let sdp = wait_file(&sdp_path, &rx);
    assert!(
        sdp.to_ascii_lowercase().contains(&format!("{to}/90000")),
        "the receiver takes {to}: {sdp}"
    );
    let (video, rx_log) = (
        tmp.file(&format!("{conf}.mkv")),
        tmp.file(&format!("{conf}-rx.log")),
    );
    let mut receiver = receive(&sdp_path, None, &video, RECORD, &rx_log);
    let finished = wait_child(&mut receiver, Duration::from_secs(25));
    drop(senders);
    assert!(finished, "the receiver did not finish: {}", log_of(&rx_log));
    drop((tx, rx));

    let (frames, errors) = decoded_frames(&video);
    assert!(
        errors.trim().is_empty(),
        "{from} -> {to}: decode errors: {errors}\n{}",
        log_of(&rx_log)
    );
    let expected = (RECORD * 30.0) as usize;
    eprintln!("{from} -> {to}: {frames} frames decoded of {expected}");
    assert!(
        frames * 10 >= expected * 8,
        "{from} -> {to}: {frames} of {expected} frames\n{}",
        log_of(&rx_log)
    );
    // The sender's colour, in the middle of the last picture.
    let raw = tmp.file(&format!("{conf}.yuv"));
    let yuv = last_picture(&video, Some("640x360"), &raw);
    let (w, h) = (640, 360);
    assert_eq!(yuv.len(), w * h * 3 / 2);
    let at = (h / 2) * w + w / 2;
    let c = (h / 4) * (w / 2) + w / 4;
    let got = (
        f64::from(yuv[at]),
        f64::from(yuv[w * h + c]),
        f64::from(yuv[w * h * 5 / 4 + c]),
    );
    let off = (got.0 - want.0)
        .abs()
        .max((got.1 - want.1).abs())
        .max((got.2 - want.2).abs());
    assert!(off < 14.0, "{from} -> {to}: colour {got:?}, want {want:?}");
}

#[test]
fn an_h264_only_receiver_decodes_a_vp8_sender() {
    let noc = Noc::start(&[]);
    let tmp = TempDir::new("transcode-vp8");
    transcoded(&noc, &tmp, "tovp", "vp8", "h264");
}

#[test]
fn a_vp8_only_receiver_decodes_an_h264_sender() {
    let noc = Noc::start(&[]);
    let tmp = TempDir::new("transcode-h264");
    transcoded(&noc, &tmp, "toh", "h264", "vp8");
}
