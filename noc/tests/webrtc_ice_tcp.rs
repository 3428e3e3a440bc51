//! ICE over TCP (RFC 6544): a page that cannot reach the media server over UDP still
//! joins, over a TCP connection to the worker's passive candidate, and hears a confclient;
//! the confclient hears the page. "Cannot reach over UDP" is made in the page: the answer
//! it applies has its UDP candidate taken out, so Chromium's ICE has only the TCP one (a
//! firewall rule would also stop the confclient's plain RTP on this one machine).

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::media::wav_tones;
use testkit::harness::{Client, Noc};

/// A GET over a plain TCP socket.
fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    testkit::harness::http_get(host.parse().expect("host:port"), &format!("/{path}"))
}

/// The protocol of the page's selected candidate pair (getStats).
async fn transport(b: &fantoccini::Client) -> Value {
    b.execute_async(
        "const done = arguments[arguments.length - 1];\
         noc.pc.getStats().then((r) => { let pair = null; const c = {};\
           r.forEach((s) => { if (s.type === 'local-candidate') c[s.id] = s;\
             if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId; });\
           let p = null; r.forEach((s) => { if (s.id === pair) p = s; });\
           done(p ? { state: p.state, local: c[p.localCandidateId] || null } : null); });",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_udp_joins_over_ice_tcp() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-tcp.wav");
    tone_wav(&mic, 440.0, 30);
    let (_driver, port) = chromedriver();
    let b = browser(port, &mic, &scratch("profile-ice-tcp")).await;
    b.goto(&format!("http://{}/join", noc.http)).await.unwrap();
    b.execute(
        "const apply = RTCPeerConnection.prototype.setRemoteDescription;\
         RTCPeerConnection.prototype.setRemoteDescription = function (d) {\
           const sdp = d.sdp.split('\\r\\n').filter((l) => !/^a=candidate:\\S+ \\d+ udp /i.test(l)).join('\\r\\n');\
           window.remoteSdp = sdp;\
           return apply.call(this, { type: d.type, sdp });\
         };\
         start({ conference: 'tcp', account: 'demo', name: 'chrome', mode: 'reflect', mic: '', cam: '' });",
        vec![],
    )
    .await
    .unwrap();
    wait_in_room(&b, Duration::from_secs(30)).await;
    let remote = b.execute("return window.remoteSdp;", vec![]).await.unwrap();
    let remote = remote.as_str().unwrap_or("");
    assert!(
        remote.contains(" tcp ") && remote.contains("tcptype passive") && !remote.contains(" udp "),
        "{remote}"
    );
    let t = transport(&b).await;
    eprintln!("selected pair: {t}");
    assert_eq!(t["local"]["protocol"], "tcp", "{t}");

    let wav = scratch("confclient-tcp.wav");
    let mut cc = Client::spawn(
        noc.dispatcher,
        "tcp",
        "demo",
        "cc",
        &[
            "--tone",
            "660",
            "--record",
            wav.to_str().unwrap(),
            "--duration",
            "6",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = page_state(&b).await;
        if s["f660"].as_f64().unwrap_or(-200.0) > -60.0 && s["frames"].as_u64().unwrap_or(0) > 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never heard 660 Hz: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = cc.wait(Duration::from_secs(30));
    assert!(status.success(), "{:?}", cc.stderr.all());
    let [l440] = wav_tones(&wav, 3.0, &[440.0])[..] else {
        unreachable!("one tone asked")
    };
    eprintln!("confclient hears the page over TCP at {l440:.1} dBFS");
    assert!(l440 >= -35.0, "confclient hears the page at {l440:.1} dBFS");
    // The media server shows the connection (Chromium may hold a spare one).
    let open: u64 = noc
        .metrics
        .iter()
        .filter_map(|(_, url)| {
            http_get(url)
                .lines()
                .find_map(|l| l.strip_prefix("noc_media_ice_tcp_connections "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum();
    assert!(open >= 1, "no media server counts an ICE-TCP connection");
    b.close().await.unwrap();
}
