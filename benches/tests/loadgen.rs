//! loadgen end to end: a real `noc` and a real `rawfwd`, driven briefly by the real
//! `loadgen` binary. Checks that the JSON carries the figures and that packets flowed; it
//! asserts no timing (figures belong in docs/benchmarks.md).

use serde_json::Value;
use std::process::Command;
use testkit::harness::{Noc, Proc, TempDir};

fn loadgen(target: &[&str], media: &[&str], pid: u32, json: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(target)
        .args(media)
        .args([
            "--conferences",
            "2",
            "--participants",
            "3",
            "--senders",
            "3",
        ])
        .args(["--duration", "2", "--settle-ms", "300", "--drain-ms", "200"])
        .args(["--server-pid", &pid.to_string(), "--quiet", "--json"])
        .arg(json)
        .output()
        .expect("loadgen runs");
    assert!(
        out.status.success(),
        "loadgen failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("headline"), "{table}");
}

fn check(json: &std::path::Path) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(json).expect("json written"))
        .expect("valid json");
    for key in [
        "pps_out",
        "pps_out_per_core",
        "loss_pct",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_p999_ms",
        "server_cpu_cores",
        "config",
        "steps",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v:#}");
    }
    let step = &v["steps"][0];
    let received = step["received"].as_u64().expect("received");
    // 2 conferences x 3 senders x 50 pps x 2 s, each to 2 others: 1200 expected.
    assert_eq!(step["expected"].as_u64(), Some(1200), "{step:#}");
    assert!(received > 0, "{step:#}");
    assert!(v["loss_pct"].as_f64().expect("loss") < 5.0, "{step:#}");
    assert_eq!(step["misrouted"].as_u64(), Some(0));
    assert_eq!(step["echoed"].as_u64(), Some(0));
    assert_eq!(step["streams"].as_array().map(Vec::len), Some(6));
    v
}

/// A video-only run: the video stream's delivery is counted apart, and no audio was sent.
fn check_video(json: &std::path::Path) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(json).expect("json written"))
        .expect("valid json");
    let step = &v["steps"][0];
    let kinds = step["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 1, "only video was sent: {step:#}");
    let video = &kinds[0];
    assert_eq!(video["kind"], "video", "{step:#}");
    // 2 conferences x 3 senders x 50 pps x 2 s, each to 2 others.
    assert_eq!(video["expected"].as_u64(), Some(1200), "{step:#}");
    assert!(video["loss_pct"].as_f64().expect("loss") < 5.0, "{step:#}");
    assert_eq!(step["misrouted"].as_u64(), Some(0));
    assert_eq!(step["echoed"].as_u64(), Some(0));
}

#[test]
fn loadgen_against_noc_and_rawfwd() {
    let dir = TempDir::new("lg");

    let noc = Noc::start(&[]);
    let dispatcher = noc.dispatcher.to_string();
    let json = dir.path().join("noc.json");
    loadgen(&["--dispatcher", &dispatcher], &[], noc.pid(), &json);
    let v = check(&json);
    assert!(v["server_cpu_cores"].as_f64().is_some());
    assert_eq!(v["control"]["closed_early"].as_u64(), Some(0));

    // Video only, on `channel video` (PT 96, H.264): the reflector holds each receiver's
    // video until an IDR slice, so this passes only if loadgen's packets start keyframes.
    let json = dir.path().join("noc-video.json");
    let video = [
        "--audio-pps",
        "0",
        "--video-pps",
        "50",
        "--video-size",
        "1200",
    ];
    loadgen(&["--dispatcher", &dispatcher], &video, noc.pid(), &json);
    check_video(&json);

    // WebRTC peers (`--webrtc`): offer, ICE and DTLS-SRTP, then SRTP both ways. Delivery
    // proves both: the server refuses plain RTP from an ICE-verified peer (it fails SRTP
    // authentication), and loadgen reads only what it decrypts.
    let json = dir.path().join("noc-webrtc.json");
    loadgen(
        &["--dispatcher", &dispatcher, "--webrtc"],
        &[],
        noc.pid(),
        &json,
    );
    let v = check(&json);
    assert_eq!(v["config"]["webrtc"], true, "{v:#}");
    drop(noc);

    let raw = Proc::spawn("rawfwd", &[]);
    let addr = raw.addr("rawfwd").to_string();
    let json = dir.path().join("raw.json");
    loadgen(&["--raw", &addr], &[], raw.id(), &json);
    check(&json);
}
