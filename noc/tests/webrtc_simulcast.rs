//! Browser simulcast: page A sends its camera as three encodings named by rid (`q`, `h`,
//! `f`: quarter, half and full size; the web client's `&simulcast=1`). The server maps
//! them onto the reflector's layers. Page B, unconstrained, gets the full size. Page C is
//! limited, once by asking for the lowest layer (`layer 0`), once behind a 300 kbit/s link
//! (its downlink estimate decides), and gets the quarter size; its limit lifted, it goes
//! up within 5 s. Behind a link halved from 1000 to 500 kbit/s it leaves the full size;
//! its layer changes and longest freeze are printed for docs/benchmarks.md. All keep
//! decoding across the switches.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::netns::{isolate, run, Peer, MEDIA_HOST};
use testkit::harness::{config, Noc, Proc, Split};

/// Two seconds of a 960x540 test picture at 15 frames a second (Chromium sends three
/// simulcast encodings from 960x540 up).
fn camera_y4m(path: &std::path::Path) {
    let ok = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=960x540:rate=15")
        .args(["-t", "2", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .expect("ffmpeg runs")
        .success();
    assert!(ok, "ffmpeg made no Y4M");
}

/// The rids page A sends, with their frame widths (getStats `outbound-rtp`).
async fn sent_encodings(b: &fantoccini::Client) -> Value {
    b.execute_async(
        "const done = arguments[arguments.length - 1];\
         noc.pc.getStats().then((r) => { const out = {};\
           r.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid)\
             out[s.rid] = { w: s.frameWidth || 0, frames: s.framesEncoded || 0 }; });\
           done(out); });",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

/// Waits until `page` decodes video `ok` says is right.
async fn wait_width(
    page: &fantoccini::Client,
    within: Duration,
    what: &str,
    ok: impl Fn(u64) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = video_stats(page).await;
        if v["decoded"].as_u64().unwrap_or(0) > 10 && ok(v["w"].as_u64().unwrap_or(0)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {v}\n{:#}",
            page_state(page).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// B decodes the full size and C the quarter size (within `c_within`).
async fn b_full_and_c_low(
    b: &fantoccini::Client,
    c: &fantoccini::Client,
    c_within: Duration,
) -> (Value, Value) {
    let vb = wait_width(
        b,
        Duration::from_secs(20),
        "page B never got the full size",
        |w| w == 960,
    )
    .await;
    let vc = wait_width(c, c_within, "page C never got the lowest layer", |w| {
        w == 240
    })
    .await;
    (vb, vc)
}

/// C's limit is gone: it goes up within 5 s, and keeps decoding.
async fn c_climbs(c: &fantoccini::Client) -> Value {
    let up = wait_width(c, Duration::from_secs(5), "page C did not go up", |w| {
        w > 240
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = video_stats(c).await;
    assert!(
        later["decoded"].as_u64() > up["decoded"].as_u64(),
        "page C stopped decoding after going up: {up} then {later}"
    );
    later
}

/// What a page's video did while a script in it looked every 50 ms: (ms since the start,
/// frames decoded, frame width), for `window`.
async fn watch(page: &fantoccini::Client, window: Duration) -> Vec<(u64, u64, u64)> {
    page.execute(
        "window.nocWatch = []; const t0 = performance.now();\
         window.nocWatchTimer = setInterval(() => noc.pc.getStats().then((r) => {\
           let d = 0, w = 0, best = -1;\
           r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') {\
             d += s.framesDecoded || 0;\
             if ((s.framesDecoded || 0) > best) { best = s.framesDecoded || 0; w = s.frameWidth || 0; } } });\
           window.nocWatch.push([Math.round(performance.now() - t0), d, w]); }), 50);",
        vec![],
    )
    .await
    .expect("the watch starts");
    tokio::time::sleep(window).await;
    let v = page
        .execute(
            "clearInterval(window.nocWatchTimer); return window.nocWatch;",
            vec![],
        )
        .await
        .expect("the watch ends");
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let s = s.as_array()?;
            Some((s[0].as_u64()?, s.get(1)?.as_u64()?, s.get(2)?.as_u64()?))
        })
        .collect()
}

/// From a watch: when the width changed, as (ms, new width) after the first sample's,
/// and the longest time without a new decoded frame (ms).
fn switches_and_freeze(samples: &[(u64, u64, u64)]) -> (Vec<(u64, u64)>, u64) {
    let Some(&(t0, d0, w0)) = samples.first() else {
        return (Vec::new(), 0);
    };
    let mut changes = vec![(t0, w0)];
    let (mut freeze, mut since, mut frames) = (0, t0, d0);
    for &(t, d, w) in samples {
        if w != changes[changes.len() - 1].1 {
            changes.push((t, w));
        }
        if d > frames {
            (since, frames) = (t, d);
        }
        freeze = freeze.max(t - since);
    }
    (changes, freeze)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browsers_simulcast_reaches_each_receiver_in_the_layer_it_takes() {
    let noc = Noc::start(&[]);
    simulcast_to_b_and_c(&noc, "sim", None).await;
}

/// The same across linked media servers: three servers with room for one browser each, so
/// A's encodings reach B and C over links, and the servers B and C are on pick their layers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browsers_simulcast_reaches_receivers_on_linked_servers_in_their_layers() {
    let noc = Noc::start(&["--media-servers", "3", "--capacity", "3"]);
    simulcast_to_b_and_c(&noc, "simlinked", Some(3)).await;
}

/// `page` joins at `url` sending simulcast, and the server's answer takes the three rids.
async fn join_simulcast(page: &fantoccini::Client, url: &str) {
    page.goto(url).await.unwrap();
    wait_in_room(page, Duration::from_secs(20)).await;
    let remote = page
        .execute("return noc.pc.remoteDescription.sdp;", vec![])
        .await
        .unwrap();
    let remote = remote.as_str().unwrap_or("");
    assert!(remote.contains("a=simulcast:recv q;h;f"), "{remote}");
}

/// Each member's media server in the dispatcher's API: (name, server).
fn servers_of(noc: &Noc, conf: &str) -> Vec<(String, String)> {
    let all = testkit::harness::api(noc.http, "/api/conferences");
    let row = all
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == conf).cloned())
        .unwrap_or_else(|| panic!("no conference {conf}: {all}"));
    row["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                    (s("name"), s("server"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A publishes three encodings; B (unconstrained) gets the full size and C (asking for
/// layer 0) the quarter size, then C climbs when it lifts its limit. `servers`: how many
/// media servers the three must be spread over.
async fn simulcast_to_b_and_c(noc: &Noc, conf: &str, servers: Option<usize>) {
    let mic = scratch(&format!("tone440-{conf}.wav"));
    tone_wav(&mic, 440.0, 60);
    let cam = scratch(&format!("camera-{conf}.y4m"));
    camera_y4m(&cam);
    let (_driver, port) = chromedriver();
    let url = |name: &str, extra: &str| {
        format!(
            "http://{}/join?conference={conf}&account=demo&name={name}{extra}",
            noc.http
        )
    };
    let a = browser_with(
        port,
        &mic,
        Some(&cam),
        &scratch(&format!("profile-{conf}-a")),
    )
    .await;
    let b = browser(port, &mic, &scratch(&format!("profile-{conf}-b"))).await;
    let c = browser(port, &mic, &scratch(&format!("profile-{conf}-c"))).await;
    // Spread over servers, A comes last: its encodings are declared to servers already
    // linked (the other way, they go with the link's first lines).
    let a_first = servers.is_none();
    if a_first {
        join_simulcast(&a, &url("ann", "&simulcast=1")).await;
    }
    b.goto(&url("bob", "&camera=off")).await.unwrap();
    wait_in_room(&b, Duration::from_secs(20)).await;
    c.goto(&url("cat", "&camera=off")).await.unwrap();
    wait_in_room(&c, Duration::from_secs(20)).await;
    if !a_first {
        join_simulcast(&a, &url("ann", "&simulcast=1")).await;
    }
    c.execute("noc.layer(0);", vec![]).await.unwrap();
    if let Some(n) = servers {
        let placed = servers_of(noc, conf);
        let mut distinct: Vec<&String> = placed.iter().map(|(_, s)| s).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), n, "spread over {n} servers: {placed:?}");
    }

    // A sends three encodings.
    let deadline = Instant::now() + Duration::from_secs(15);
    let sent = loop {
        let s = sent_encodings(&a).await;
        let widths: Vec<u64> = ["q", "h", "f"]
            .iter()
            .map(|r| s[r]["w"].as_u64().unwrap_or(0))
            .collect();
        if widths == [240, 480, 960] {
            break s;
        }
        assert!(Instant::now() < deadline, "page A's encodings: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("page A sends {sent}");

    // B gets the full size, C the quarter size.
    let (vb, vc) = b_full_and_c_low(&b, &c, Duration::from_secs(20)).await;
    eprintln!("B decodes {vb}, C decodes {vc}");
    // The receivers' transport-cc feedback about what the server sends them drives the
    // downlink estimate (the layers the reflector picks).
    let feedback: u64 = noc
        .metrics
        .iter()
        .filter_map(|(_, url)| {
            let rest = url.strip_prefix("http://")?;
            let (host, path) = rest.split_once('/')?;
            testkit::harness::http_get(host.parse().ok()?, &format!("/{path}"))
                .lines()
                .find_map(|l| l.strip_prefix("noc_media_webrtc_downlink_feedback_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum();
    assert!(feedback > 0, "no downlink feedback read");

    // C's limit lifted: it goes up within 5 s, and keeps decoding.
    c.execute("noc.layer(null);", vec![]).await.unwrap();
    let later = c_climbs(&c).await;
    eprintln!("C after its limit is lifted: {later}");

    for p in [a, b, c] {
        p.close().await.unwrap();
    }
}

/// Runs `cmd args`, which must succeed.
fn sh(cmd: &str, args: &[&str]) {
    run(cmd, args).unwrap_or_else(|e| panic!("{e}"));
}

/// Page C sits in a second network namespace behind a veth whose server side sends at most
/// 300 kbit/s (`tc` token bucket, a short queue): its transport-cc feedback drives the
/// server's downlink estimate for it, and that estimate picks its layer. Pages A and B
/// reach the servers over loopback, unshaped.
#[test]
fn a_receiver_behind_a_300_kbps_link_gets_the_low_layer_and_climbs_when_it_is_lifted() {
    // Before any thread or process starts: they all live in the namespace.
    isolate().expect("a network namespace (the test needs root)");
    let peer = Peer::add(&format!("noc-rx-{}", std::process::id())).expect("a second namespace");
    sh(
        "tc",
        &[
            "qdisc", "add", "dev", "nocv0", "root", "tbf", "rate", "300kbit", "burst", "6kb",
            "limit", "36kb",
        ],
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(behind_a_slow_link(&peer));
}

async fn behind_a_slow_link(peer: &Peer) {
    // The servers on every address, so the second namespace reaches them (over the veth)
    // and the first over loopback.
    let on_link = "0.0.0.0:0";
    let cfg = config("dispatcher.toml");
    let any = "127.0.0.1:0";
    let dispatcher = Proc::spawn(
        "dispatcher",
        &[
            "--config",
            &cfg,
            "--listen",
            any,
            "--registry",
            any,
            "--http",
            on_link,
        ],
    );
    let mut noc = Split {
        client: dispatcher.addr("dispatcher"),
        registry: dispatcher.addr("registry"),
        http: dispatcher.addr("http"),
        dispatcher,
        media: Vec::new(),
    };
    noc.add_media("ms-slow", &["--media-host", MEDIA_HOST, "--http", on_link]);
    let mic = scratch("tone440-shaped.wav");
    tone_wav(&mic, 440.0, 90);
    let cam = scratch("camera-960x540-shaped.y4m");
    camera_y4m(&cam);
    let http_port = noc.http.port();
    let url = |host: &str, name: &str, extra: &str| {
        format!("http://{host}:{http_port}/join?conference=slow&account=demo&name={name}{extra}")
    };
    let (_driver, port) = chromedriver();
    let a = browser_with(port, &mic, Some(&cam), &scratch("profile-shaped-a")).await;
    a.goto(&url("127.0.0.1", "ann", "&simulcast=1"))
        .await
        .unwrap();
    wait_in_room(&a, Duration::from_secs(20)).await;
    let b = browser(port, &mic, &scratch("profile-shaped-b")).await;
    b.goto(&url("127.0.0.1", "bob", "&camera=off"))
        .await
        .unwrap();
    wait_in_room(&b, Duration::from_secs(20)).await;
    // C loads the page from the link's address: a secure context only by this switch.
    let (_slow_driver, slow_port) = chromedriver_in(peer);
    let origin =
        format!("--unsafely-treat-insecure-origin-as-secure=http://{MEDIA_HOST}:{http_port}");
    let c = browser_args(
        slow_port,
        &mic,
        None,
        &scratch("profile-shaped-c"),
        &[&origin],
    )
    .await;
    c.goto(&url(MEDIA_HOST, "cat", "&camera=off"))
        .await
        .unwrap();
    wait_in_room(&c, Duration::from_secs(30)).await;

    let (vb, vc) = b_full_and_c_low(&b, &c, Duration::from_secs(30)).await;
    eprintln!("behind 300 kbit/s: B decodes {vb}, C decodes {vc}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = video_stats(&c).await;
    assert!(
        still["decoded"].as_u64() > vc["decoded"].as_u64() && still["w"] == 240,
        "page C behind the slow link: {vc} then {still}"
    );

    // The link is lifted: C climbs within 5 s and keeps decoding.
    sh("tc", &["qdisc", "del", "dev", "nocv0", "root"]);
    let later = c_climbs(&c).await;
    eprintln!("lifted: C decodes {later}");

    // The downlink halves, from 1000 to 500 kbit/s: C leaves the full size (about
    // 0.8 Mbit/s with its audio) and keeps decoding. When it goes down, its layer changes
    // and its longest freeze are printed for docs/benchmarks.md (figures, not asserts).
    let shape = |rate: &str, limit: &str| {
        let args = [
            "qdisc", "replace", "dev", "nocv0", "root", "tbf", "rate", rate, "burst", "6kb",
            "limit", limit,
        ];
        sh("tc", &args);
    };
    shape("1000kbit", "60kb");
    let (changes, freeze) = switches_and_freeze(&watch(&c, Duration::from_secs(12)).await);
    eprintln!("at 1000 kbit/s: C's width (ms, w): {changes:?}; longest freeze {freeze} ms");
    shape("500kbit", "30kb");
    let halved = watch(&c, Duration::from_secs(10)).await;
    let (changes, freeze) = switches_and_freeze(&halved);
    eprintln!("halved to 500 kbit/s: C's width (ms, w): {changes:?}; longest freeze {freeze} ms");
    let late: Vec<_> = halved.iter().filter(|s| s.0 >= 3000).collect();
    assert!(
        !late.is_empty() && late.iter().all(|s| s.2 > 0 && s.2 < 960),
        "page C kept the full size behind 500 kbit/s: {changes:?}"
    );
    assert!(
        late.last().map(|s| s.1) > late.first().map(|s| s.1),
        "page C stopped decoding behind 500 kbit/s: {halved:?}"
    );
    for p in [a, b, c] {
        p.close().await.unwrap();
    }
}
