//! Browsers in conferences: headless Chromium opens the web client's `/join` link, joins
//! conference `web` over WebRTC (ICE-lite, DTLS-SRTP, on the media worker's own port) and
//! talks with a confclient. Chromium's fake microphone plays 440 Hz and the confclient
//! sends 660 Hz: each must hear the other and never itself, in reflect and in mix mode, and
//! the page fails over when its media server dies.

use client::tone::{read_wav, ToneAnalysis, Window};
use fantoccini::{Client as Browser, ClientBuilder};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::harness::{Client, Noc, Split};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromedriver() -> (Driver, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (Debian package chromium-driver; `make test` installs it)");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, port)
}

/// A 48 kHz mono WAV of a sine at `hz`, -12 dBFS, `secs` long: the fake microphone.
fn tone_wav(path: &Path, hz: f64, secs: u32) {
    let mut sine = client::tone::Sine::new(hz, -12.0, 48_000);
    let mut pcm = vec![0i16; 48_000 * secs as usize];
    sine.fill(&mut pcm);
    let mut w = Vec::with_capacity(44 + pcm.len() * 2);
    let data = (pcm.len() * 2) as u32;
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&48_000u32.to_le_bytes());
    w.extend_from_slice(&96_000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for s in pcm {
        w.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, w).unwrap();
}

async fn browser(port: u16, mic: &Path, profile: &Path) -> Browser {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--window-size=1280,800",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                format!("--use-file-for-fake-audio-capture={}", mic.display()),
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--autoplay-policy=no-user-gesture-required",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

async fn page_state(b: &Browser) -> Value {
    b.execute(
        "return {phase: noc.phase, f440: noc.audio.f440, f660: noc.audio.f660, \
         frames: noc.audio.frames, joins: noc.joins, server: noc.server, \
         log: noc.log.slice(-20)};",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

/// Audio packets and bytes the page's PeerConnection received (getStats `inbound-rtp`).
async fn inbound_audio(b: &Browser) -> (u64, u64) {
    let v = b
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             if (!noc.pc) { done([0, 0]); return; }\
             noc.pc.getStats().then((r) => { let p = 0, n = 0;\
               r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') {\
                 p += s.packetsReceived; n += s.bytesReceived; } });\
               done([p, n]); });",
            vec![],
        )
        .await
        .unwrap();
    (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0))
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("webrtc-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Issue acceptance (reflect): the browser and a confclient hear each other, never
/// themselves, through the media server's WebRTC transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_and_a_confclient_hear_each_other() {
    browser_and_confclient("reflect").await;
}

/// Issue acceptance (mix): the same in a mix room, where each gets the server's one mix
/// without its own voice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_and_a_confclient_hear_each_other_in_mix_mode() {
    browser_and_confclient("mix").await;
}

async fn browser_and_confclient(mode: &str) {
    let noc = Noc::start(&[]);
    let mic = scratch(&format!("tone440-{mode}.wav"));
    tone_wav(&mic, 440.0, 30);
    let (_driver, port) = chromedriver();
    let b = browser(port, &mic, &scratch(&format!("profile-{mode}"))).await;
    let url = format!(
        "http://{}/join?conference=web&account=demo&name=chrome&mode={mode}",
        noc.http
    );
    b.goto(&url).await.unwrap();

    // The page joins on its own and its PeerConnection connects (ICE and DTLS done).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = page_state(&b).await;
        if s["phase"] == "in-room" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not connect: {s:#}\n{}",
            noc.stderr.all().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The room runs in the mode the page asked for.
    noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        v[0]["mode"] == mode
    });

    let wav = scratch(&format!("confclient-{mode}.wav"));
    let wav_s = wav.to_str().unwrap().to_owned();
    let mut cc = Client::spawn(
        noc.dispatcher,
        "web",
        "demo",
        "cc",
        &[
            "--tone",
            "660",
            "--record",
            &wav_s,
            "--duration",
            "8",
            "--mode",
            mode,
        ],
    );

    // The browser hears 660 Hz and not its own 440 Hz.
    let deadline = Instant::now() + Duration::from_secs(15);
    let heard = loop {
        let s = page_state(&b).await;
        let (f440, f660) = (
            s["f440"].as_f64().unwrap_or(-200.0),
            s["f660"].as_f64().unwrap_or(-200.0),
        );
        if f660 > -60.0 && s["frames"].as_u64().unwrap_or(0) > 20 {
            // Let the one-second average settle on the tone.
            tokio::time::sleep(Duration::from_secs(2)).await;
            break page_state(&b).await;
        }
        assert!(
            Instant::now() < deadline,
            "the browser never heard 660 Hz (440: {f440:.1} dB, 660: {f660:.1} dB): {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (f440, f660) = (
        heard["f440"].as_f64().unwrap(),
        heard["f660"].as_f64().unwrap(),
    );
    assert!(f660 > -60.0, "660 Hz at {f660:.1} dB");
    assert!(
        f440 < f660 - 25.0,
        "the browser hears its own 440 Hz: 440 at {f440:.1} dB, 660 at {f660:.1} dB"
    );
    let (packets, bytes) = inbound_audio(&b).await;
    eprintln!("browser hears 440 at {f440:.1} dB, 660 at {f660:.1} dB; {packets} packets in");
    assert!(
        packets > 50 && bytes > 2000,
        "getStats: {packets} packets, {bytes} bytes"
    );

    // The confclient hears the browser's 440 Hz and not its own 660 Hz.
    let status = cc.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "{:?} {:?}",
        cc.stdout.all(),
        cc.stderr.all()
    );
    let (samples, rate) = read_wav(&wav).unwrap();
    let a = ToneAnalysis::new(
        &samples,
        rate,
        Window {
            skip: 1.5,
            duration: 5.0,
            block: 0.1,
        },
    )
    .expect("long enough");
    eprintln!(
        "confclient hears 440 at {:.1} dBFS, 660 at {:.1} dBFS",
        a.level_db(440.0),
        a.level_db(660.0)
    );
    assert!(
        a.level_db(440.0) >= -35.0,
        "confclient hears the browser at {:.1} dBFS",
        a.level_db(440.0)
    );
    assert!(
        a.level_db(660.0) <= -50.0,
        "confclient hears itself at {:.1} dBFS",
        a.level_db(660.0)
    );

    // The media server counted a keyed session and refused nothing from the browser.
    let metrics = &noc.metrics[0].1;
    let text = http_get(metrics);
    assert!(text.contains("noc_media_webrtc_drops"), "{text}");

    let shot = b.screenshot().await.unwrap();
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("webrtc-room-{mode}.png")),
        shot,
    )
    .unwrap();
    b.close().await.unwrap();
}

/// A GET over a plain TCP socket (the test has no HTTP client of its own).
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Issue acceptance (failover): kill -9 the media server that hosts the page's conference.
/// The page goes back to the dispatcher, rejoins on the other server and hears the
/// confclient (which fails over too) again within 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_fails_over_when_its_media_server_dies() {
    const BACK_WITHIN: Duration = Duration::from_secs(3);
    let mut split = Split::start();
    split.add_media("ms-a", &[]);
    split.add_media("ms-b", &[]);
    let mic = scratch("tone440-failover.wav");
    tone_wav(&mic, 440.0, 60);
    let (_driver, port) = chromedriver();
    let b = browser(port, &mic, &scratch("profile-failover")).await;
    let url = format!(
        "http://{}/join?conference=fo&account=demo&name=chrome",
        split.http
    );
    b.goto(&url).await.unwrap();
    let mut cc = Client::spawn(
        split.client,
        "fo",
        "demo",
        "cc",
        &["--tone", "660", "--duration", "30"],
    );

    // Both in, and the page hears the confclient.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let s = page_state(&b).await;
        if s["phase"] == "in-room" && s["f660"].as_f64().unwrap_or(-200.0) > -60.0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the page never heard 660 Hz: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (host, _) = split.conference("fo").expect("conference placed");
    let other = if host == "ms-a" { "ms-b" } else { "ms-a" };
    let joins = before["joins"].as_u64().unwrap_or(0);

    split.media(&host).kill9();
    let killed = Instant::now();
    // Back: a new join accepted, its PeerConnection connected, audio packets arriving on it
    // and the confclient's tone heard again (the page's one-second average of the tone).
    let deadline = killed + Duration::from_secs(15);
    let back = loop {
        let s = page_state(&b).await;
        let rejoined = s["joins"].as_u64().unwrap_or(0) > joins && s["phase"] == "in-room";
        if rejoined {
            let (packets, _) = inbound_audio(&b).await;
            if packets >= 10 && s["f660"].as_f64().unwrap_or(-200.0) > -60.0 {
                break killed.elapsed();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the page did not come back: {s:#}\nconfclient: {:?}",
            cc.stdout.all()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("the page heard the conference again {back:?} after the kill");
    assert!(
        back <= BACK_WITHIN,
        "the page was back and hearing audio only {back:?} after the kill (the issue asks \
         for {BACK_WITHIN:?})"
    );
    // The same conference, now on the other server, with both members.
    split.wait_api("/api/conferences", Duration::from_secs(5), |v| {
        v.as_array().is_some_and(|a| {
            a.iter().any(|c| {
                c["name"] == "fo"
                    && c["server"] == other
                    && c["participants"].as_array().is_some_and(|p| p.len() == 2)
            })
        })
    });
    // Still hearing the tone, and never its own voice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = page_state(&b).await;
    let (f440, f660) = (
        s["f440"].as_f64().unwrap_or(0.0),
        s["f660"].as_f64().unwrap_or(-200.0),
    );
    assert!(
        f660 > -60.0 && f440 < f660 - 25.0,
        "after the failover the page hears 440 at {f440:.1} dB, 660 at {f660:.1} dB"
    );
    cc.kill();
    b.close().await.unwrap();
}
