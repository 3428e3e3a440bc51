//! The join-time figure of the browser issue, run by `benches/webrtc_join.sh` (ignored in
//! `make test`: performance lives in benches). A confclient sends a tone into conference
//! `jt`; headless Chromium opens the `/join` link 20 times, each a fresh page load (page,
//! microphone, dispatcher, media server, offer, ICE, DTLS), and the page measures from its
//! first WebSocket to the first remote audio frame it played out
//! (`RTCRtpReceiver.getSynchronizationSources`, polled every 5 ms). Prints the joins and
//! p50/p99, and writes them to `target/webrtc-join-time.json`.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::chrome::*;
use testkit::harness::{Client, Noc};

const JOINS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: benches/webrtc_join.sh runs it"]
async fn join_time_to_first_remote_audio() {
    let noc = Noc::start(&[]);
    let mut cc = Client::spawn(
        noc.dispatcher,
        "jt",
        "demo",
        "cc",
        &["--tone", "660", "--duration", "600"],
    );
    cc.stdout
        .wait_for("accept", Duration::from_secs(10))
        .expect("the confclient joined");
    let mic = scratch("tone440-join.wav");
    tone_wav(&mic, 440.0, 30);
    let (_driver, port) = chromedriver();
    let b = browser(port, &mic, &scratch("profile-join")).await;
    let mut times = Vec::with_capacity(JOINS);
    for i in 0..JOINS {
        // A blank page between joins: the previous one leaves (its WebSocket closes).
        b.goto("about:blank").await.unwrap();
        b.goto(&format!(
            "http://{}/join?conference=jt&account=demo&name=page{i}",
            noc.http
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let ms = loop {
            let t = b
                .execute("return noc.timing;", vec![])
                .await
                .unwrap_or_default();
            if let (Some(a), Some(z)) = (t["wsOpen"].as_f64(), t["firstAudio"].as_f64()) {
                break z - a;
            }
            assert!(Instant::now() < deadline, "join {i} heard nothing: {t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("join {i}: {ms:.1} ms");
        times.push(ms);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((p * (JOINS - 1) as f64).round() as usize).min(JOINS - 1)];
    let (p50, p99) = (pct(0.5), pct(0.99));
    println!("webrtc join: p50 {p50:.1} ms, p99 {p99:.1} ms over {JOINS} joins");
    let out = json!({"joins": times, "p50_ms": p50, "p99_ms": p99});
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/")
        .join("webrtc-join-time.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    cc.kill();
    b.close().await.unwrap();
}
