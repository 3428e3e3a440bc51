//! The web client in Firefox (the issue: "It works in Chromium and in Firefox"). Headless
//! Firefox, driven over WebDriver BiDi, opens the `/join` link of conference `fox` with
//! its fake microphone (a 1 kHz tone) and camera; a confclient sends 660 Hz. Firefox hears
//! 660 Hz and not its own tone, and the confclient hears 1 kHz and not itself. Firefox's
//! payload types (Opus 109, VP8 120) differ from Chromium's, so this also runs the
//! answer's and the slots' payload-type maps for real. The whole test runs in a network
//! namespace of its own (see `support::firefox`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::chrome::scratch;
use support::firefox::Firefox;
use support::media::wav_tones;
use support::netns::{isolate, MEDIA_HOST};
use testkit::harness::{Client, Split};

#[test]
fn firefox_joins_and_hears_a_confclient() {
    // Before any thread or process starts: they all live in the namespace.
    isolate().expect("a network namespace for Firefox");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(firefox_and_confclient());
}

async fn firefox_and_confclient() {
    let mut noc = Split::start();
    noc.add_media("ms-fx", &["--media-host", MEDIA_HOST]);
    let mut ff = Firefox::start(&scratch("firefox-profile")).await;
    ff.goto(&format!(
        "http://{}/join?conference=fox&account=demo&name=firefox",
        noc.http
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ff.page_state().await;
        if s["phase"] == "in-room" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Firefox did not connect: {s:#}\n{:?}",
            noc.media("ms-fx").stderr.all()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let wav = scratch("confclient-fox.wav");
    let mut cc = Client::spawn(
        noc.client,
        "fox",
        "demo",
        "cc",
        &[
            "--tone",
            "660",
            "--record",
            wav.to_str().unwrap(),
            "--duration",
            "8",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let heard = loop {
        let s = ff.page_state().await;
        if s["f660"].as_f64().unwrap_or(-200.0) > -60.0 && s["frames"].as_u64().unwrap_or(0) > 20 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            break ff.page_state().await;
        }
        if Instant::now() >= deadline {
            // What arrived, and whether Web Audio runs at all.
            let stats = ff
                .eval(
                    "noc.pc.getStats().then((r) => { const o = []; r.forEach((x) => { \
                     if (x.type === 'inbound-rtp') o.push([x.kind, x.packetsReceived]); }); \
                     return {audio: audioCtx && audioCtx.state, inbound: o}; })",
                )
                .await;
            panic!("Firefox never heard 660 Hz: {s:#}\n{stats}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let level = |k: &str| heard[k].as_f64().unwrap_or(-200.0);
    eprintln!(
        "Firefox hears 660 at {:.1} dB, its own 1000 at {:.1} dB",
        level("f660"),
        level("f1000")
    );
    assert!(level("f660") > -60.0);
    assert!(
        level("f1000") < level("f660") - 25.0,
        "Firefox hears itself: {heard:#}"
    );
    let shot = ff.screenshot().await;
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("webrtc-room-firefox.png"),
        shot,
    )
    .unwrap();

    let status = cc.wait(Duration::from_secs(30));
    assert!(status.success(), "{:?}", cc.stderr.all());
    let [fox, own] = wav_tones(&wav, 5.0, &[1000.0, 660.0])[..] else {
        unreachable!("two tones asked")
    };
    eprintln!("confclient hears Firefox's 1000 Hz at {fox:.1} dBFS, itself at {own:.1}");
    assert!(fox >= -40.0, "confclient hears Firefox at {fox:.1} dBFS");
    assert!(own <= -50.0, "confclient hears itself at {own:.1} dBFS");
}
