//! ICE over TCP (RFC 6544): a browser whose UDP is blocked still joins, over a TCP
//! connection to the worker's passive candidate, and hears a confclient; the confclient
//! hears the page. The test runs in a network namespace of its own with an nftables rule
//! that drops every UDP datagram Chromium sends (it runs as `nobody`; the rule matches its
//! owner), while the confclient's plain RTP flows as usual.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::media::wav_tones;
use support::netns::{isolate, run};
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

/// Drops the UDP that user `nobody` sends, in this namespace (nftables).
fn block_nobodys_udp() {
    let rules: [&[&str]; 3] = [
        &["add", "table", "inet", "noc"],
        &[
            "add",
            "chain",
            "inet",
            "noc",
            "out",
            "{ type filter hook output priority 0; }",
        ],
        &[
            "add", "rule", "inet", "noc", "out", "meta", "skuid", "65534", "meta", "l4proto",
            "udp", "drop",
        ],
    ];
    for r in rules {
        run("nft", r)
            .unwrap_or_else(|e| panic!("{e} (Debian's nftables; `make test` installs it)"));
    }
}

#[test]
fn a_browser_without_udp_joins_over_ice_tcp() {
    // Before any thread or process starts: they all live in the namespace.
    isolate().expect("a network namespace (the test needs root)");
    block_nobodys_udp();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(without_udp());
}

async fn without_udp() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-tcp.wav");
    tone_wav(&mic, 440.0, 30);
    let (_driver, port) = chromedriver_as_nobody(&scratch("home-ice-tcp"));
    let profile = scratch("profile-ice-tcp");
    writable_by_all(&profile);
    let b = browser(port, &mic, &profile).await;
    b.goto(&format!(
        "http://{}/join?conference=tcp&account=demo&name=chrome&camera=off",
        noc.http
    ))
    .await
    .unwrap();
    wait_in_room(&b, Duration::from_secs(30)).await;
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
