//! A browser that may only relay (`iceTransportPolicy: "relay"`, the web client's
//! `&relay=1`) joins through a real TURN server: Debian's coturn on loopback, with the
//! shared secret the dispatcher also has (`--turn-url`, `--turn-secret`). The page gets
//! time-limited credentials from `/api/webrtc/ice-servers`, allocates a relay, and ICE,
//! DTLS and SRTP to the media server run through it; the page hears a confclient.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::media::Turn;
use testkit::harness::{Client, Split};

const SECRET: &str = "turn-test-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_may_only_relay_joins_through_coturn() {
    let dir = scratch("turn");
    let turn = Turn::start(SECRET, &dir);
    let url = format!("turn:127.0.0.1:{}?transport=udp", turn.port);
    let mut split = Split::start_with(&["--turn-url", &url, "--turn-secret", SECRET]);
    split.add_media("ms-t", &[]);

    // The credentials the page will get, for a known account only.
    let ice = split.api("/api/webrtc/ice-servers?account=demo");
    let server = &ice["iceServers"][0];
    assert_eq!(server["urls"][0], url.as_str(), "{ice}");
    assert!(
        server["username"].as_str().unwrap_or("").ends_with(":demo"),
        "{ice}"
    );

    let mic = scratch("tone440-turn.wav");
    tone_wav(&mic, 440.0, 30);
    let (_driver, port) = chromedriver();
    let b = browser(port, &mic, &scratch("profile-turn")).await;
    b.goto(&format!(
        "http://{}/join?conference=relay&account=demo&name=far&relay=1",
        split.http
    ))
    .await
    .unwrap();
    let s = wait_in_room(&b, Duration::from_secs(20)).await;
    assert_eq!(s["phase"], "in-room");
    let mut cc = Client::spawn(
        split.client,
        "relay",
        "demo",
        "cc",
        &["--tone", "660", "--duration", "10"],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = page_state(&b).await;
        if s["f660"].as_f64().unwrap_or(-200.0) > -60.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relayed page never heard 660 Hz: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The pair in use is the relay's: a relayed candidate on one of coturn's relay ports.
    let local: Value = b
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             noc.pc.getStats().then((r) => { let pair = null; const c = {};\
               r.forEach((s) => { if (s.type === 'local-candidate') c[s.id] = s;\
                 if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });\
               const l = pair && c[pair.localCandidateId];\
               done(l ? {type: l.candidateType, port: l.port} : null); });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        local["type"], "relay",
        "the page's pair is not relayed: {local}"
    );
    let relayed_from = local["port"].as_u64().unwrap_or(0) as u16;
    assert!(
        turn.relay.contains(&relayed_from),
        "relayed from port {relayed_from}, not one of coturn's {:?}",
        turn.relay
    );
    cc.kill();
    b.close().await.unwrap();
}
