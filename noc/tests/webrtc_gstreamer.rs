//! WHIP and WHEP with a WebRTC stack that is not a browser's: GStreamer's `webrtcbin`
//! (libnice, its own DTLS and SRTP), driven by `support/whip_gst.py`. It publishes a
//! 440 Hz tone over WHIP at the dispatcher (following the 307) and a confclient hears it;
//! then it plays the conference over WHEP and its decoded audio holds the confclient's
//! 660 Hz. libnice leaves the loopback interface out of ICE, so the test runs in a network
//! namespace of its own with the media server on a veth address (`support::netns`).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::chrome::scratch;
use support::media::wav_tones;
use support::netns::{isolate, MEDIA_HOST};
use testkit::harness::{Client, Split};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/whip_gst.py");

/// Runs the script with Debian's python3 (the one `python3-gst-1.0` is for).
fn whip_gst(args: &[&str]) -> Output {
    Command::new("/usr/bin/python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("/usr/bin/python3 runs (Debian's python3 with python3-gst-1.0)")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn gstreamer_publishes_over_whip_and_plays_over_whep() {
    // Before any thread or process starts: they all live in the namespace.
    isolate().expect("a network namespace for libnice");
    let mut noc = Split::start();
    noc.add_media("ms-gst", &["--media-host", MEDIA_HOST]);
    let whip = format!("http://{}/whip/gst", noc.http);
    let whep = format!("http://{}/whep/gst", noc.http);

    // A silent confclient records while webrtcbin publishes 440 Hz for 6 s.
    let heard = scratch("confclient-gst.wav");
    let mut listener = Client::spawn(
        noc.client,
        "gst",
        "demo",
        "listener",
        &["--record", heard.to_str().unwrap(), "--duration", "7"],
    );
    let out = whip_gst(&["publish", &whip, "demo", "--freq", "440", "--seconds", "6"]);
    let log = text(&out);
    assert!(out.status.success(), "the WHIP publisher failed:\n{log}");
    assert!(
        log.contains("redirected http://"),
        "no 307 followed:\n{log}"
    );
    assert!(log.contains("deleted 200"), "{log}");
    let status = listener.wait(Duration::from_secs(20));
    assert!(status.success(), "{:?}", listener.stderr.all());
    let [l440] = wav_tones(&heard, 4.0, &[440.0])[..] else {
        unreachable!("one tone asked")
    };
    eprintln!("confclient hears webrtcbin's WHIP tone at {l440:.1} dBFS");
    assert!(
        l440 >= -35.0,
        "confclient hears webrtcbin at {l440:.1} dBFS\n{log}"
    );

    // A confclient talks at 660 Hz; webrtcbin watches over WHEP and decodes it.
    let mut talker = Client::spawn(
        noc.client,
        "gst",
        "demo",
        "talker",
        &["--tone", "660", "--duration", "15"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let wav = scratch("whep-gst.wav");
    let out = whip_gst(&[
        "play",
        &whep,
        "demo",
        "--wav",
        wav.to_str().unwrap(),
        "--seconds",
        "6",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "the WHEP player failed:\n{log}");
    assert!(log.contains("receiving"), "webrtcbin got no track:\n{log}");
    let [l660, l440] = wav_tones(Path::new(&wav), 3.0, &[660.0, 440.0])[..] else {
        unreachable!("two tones asked")
    };
    eprintln!("webrtcbin hears the confclient at {l660:.1} dBFS (440 Hz: {l440:.1})");
    assert!(
        l660 >= -35.0,
        "webrtcbin's WHEP audio: 660 Hz at {l660:.1} dBFS\n{log}"
    );
    talker.kill();
}
