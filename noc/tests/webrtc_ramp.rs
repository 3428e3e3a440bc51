//! A browser's uplink ramps (issue 15): the session answers the browser's transport-wide
//! sequence numbers with transport-cc feedback, so Chromium's send-side estimator probes
//! and raises its send rate as it does with other SFUs. Page A sends a camera of noise
//! (an encoder spends all it is allowed on it); its outbound video must pass 1.5 Mbit/s
//! within 10 s of joining.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::chrome::*;
use testkit::harness::Noc;

const TARGET_BPS: f64 = 1_500_000.0;

async fn outbound(b: &fantoccini::Client) -> Value {
    b.execute_async(
        "const done = arguments[arguments.length - 1];\
         noc.pc.getStats().then((r) => { const o = {bytes: 0, avail: 0};\
           r.forEach((s) => {\
             if (s.type === 'outbound-rtp' && s.kind === 'video') { o.bytes += s.bytesSent; o.w = s.frameWidth; }\
             if (s.type === 'candidate-pair' && s.nominated) o.avail = s.availableOutgoingBitrate || 0; });\
           done(o); });",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browsers_uplink_passes_one_and_a_half_megabits_within_ten_seconds() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-ramp.wav");
    tone_wav(&mic, 440.0, 30);
    let cam = scratch("noise.y4m");
    noise_y4m(&cam);
    let (_driver, port) = chromedriver();
    let a = browser_with(port, &mic, Some(&cam), &scratch("profile-ramp-a")).await;
    let b = browser(port, &mic, &scratch("profile-ramp-b")).await;
    let url = |name: &str, extra: &str| {
        format!(
            "http://{}/join?conference=ramp&account=demo&name={name}{extra}",
            noc.http
        )
    };
    b.goto(&url("viewer", "&camera=off")).await.unwrap();
    wait_in_room(&b, Duration::from_secs(20)).await;
    a.goto(&url("sender", "")).await.unwrap();
    wait_in_room(&a, Duration::from_secs(20)).await;
    let joined = Instant::now();
    let (mut last, mut at) = (0u64, Instant::now());
    let mut seen = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let o = outbound(&a).await;
        let bytes = o["bytes"].as_u64().unwrap_or(0);
        let now = Instant::now();
        let bps = (bytes.saturating_sub(last)) as f64 * 8.0 / now.duration_since(at).as_secs_f64();
        (last, at) = (bytes, now);
        seen.push((
            joined.elapsed().as_secs_f64(),
            bps as u64,
            o["avail"].as_f64().unwrap_or(0.0) as u64,
        ));
        if bps >= TARGET_BPS {
            eprintln!(
                "outbound {bps:.0} bit/s {:.1} s after joining: {seen:?}",
                joined.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            joined.elapsed() < Duration::from_secs(10),
            "the uplink stayed under {TARGET_BPS} bit/s for 10 s (s, bit/s, estimate): {seen:?}"
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}
