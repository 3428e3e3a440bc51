//! Browsers in conferences: headless Chromium opens the web client's `/join` link, joins
//! conference `web` over WebRTC (ICE-lite, DTLS-SRTP, on the media worker's own port) and
//! talks with a confclient. Chromium's fake microphone plays 440 Hz and the confclient
//! sends 660 Hz: each must hear the other and never itself, in reflect and in mix mode, and
//! the page fails over when its media server dies.

mod support;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::media::wav_tones;
use testkit::harness::{Client, Noc, Split};

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
    let [l440, l660] = wav_tones(&wav, 5.0, &[440.0, 660.0])[..] else {
        unreachable!("two tones asked")
    };
    eprintln!("confclient hears 440 at {l440:.1} dBFS, 660 at {l660:.1} dBFS");
    assert!(
        l440 >= -35.0,
        "confclient hears the browser at {l440:.1} dBFS"
    );
    assert!(l660 <= -50.0, "confclient hears itself at {l660:.1} dBFS");

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

/// Levels the page measures at each test tone, in dB.
fn tones(s: &Value) -> [(u32, f64); 4] {
    [440, 550, 660, 770].map(|hz| (hz, s[format!("f{hz}")].as_f64().unwrap_or(-200.0)))
}

fn level(s: &Value, hz: u32) -> f64 {
    s[format!("f{hz}")].as_f64().unwrap_or(-200.0)
}

/// Issue acceptance (three parties): two Chromium pages (440 Hz and 550 Hz) and a
/// confclient (660 Hz) in one reflect room. Each hears the other two and never itself:
/// the pages through their receive slots, one track per member. Both pages send their
/// cameras (a link joins with the camera on), so the screenshot of page B shows a room
/// with video tiles and speakers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_each_hear_the_other_two() {
    let noc = Noc::start(&[]);
    let (mic_a, mic_b) = (scratch("tone440-three.wav"), scratch("tone550-three.wav"));
    tone_wav(&mic_a, 440.0, 40);
    tone_wav(&mic_b, 550.0, 40);
    let (_driver, port) = chromedriver();
    let a = browser(port, &mic_a, &scratch("profile-three-a")).await;
    let b = browser(port, &mic_b, &scratch("profile-three-b")).await;
    let url = |name: &str, extra: &str| {
        format!(
            "http://{}/join?conference=three&account=demo&name={name}{extra}",
            noc.http
        )
    };
    a.goto(&url("ann", "")).await.unwrap();
    let sa = wait_in_room(&a, Duration::from_secs(20)).await;
    // The join page itself, as a person opening a room's link without a name sees it: the
    // conference filled in, name and account, microphone and camera pickers.
    b.goto(&format!("http://{}/join?conference=three", noc.http))
        .await
        .unwrap();
    // It previews the camera and lists the devices once it may use them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lobby = loop {
        let lobby = b
            .execute(
                "return {lobby: !document.getElementById('lobby').hidden, \
                 conference: document.getElementById('conference').value, \
                 mics: document.getElementById('mic').options.length, \
                 cams: document.getElementById('cam').options.length, \
                 camera: document.getElementById('cam').value, \
                 preview: (document.querySelector('.preview-tile video') || {}).videoWidth || 0};",
                vec![],
            )
            .await
            .unwrap();
        if lobby["preview"].as_u64().unwrap_or(0) > 0 {
            break lobby;
        }
        assert!(Instant::now() < deadline, "no camera preview: {lobby}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lobby["lobby"], true, "{lobby}");
    assert_eq!(lobby["conference"], "three", "{lobby}");
    assert!(lobby["mics"].as_u64().unwrap_or(0) >= 2, "{lobby}");
    assert!(lobby["cams"].as_u64().unwrap_or(0) >= 2, "{lobby}");
    assert_ne!(lobby["camera"], "", "the camera is picked: {lobby}");
    let shot = b.screenshot().await.unwrap();
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("webrtc-join-page.png"),
        shot,
    )
    .unwrap();
    b.goto(&url("bob", "")).await.unwrap();
    let sb = wait_in_room(&b, Duration::from_secs(20)).await;
    let (pa, pb) = (sa["participant"].clone(), sb["participant"].clone());

    let wav = scratch("confclient-three.wav");
    let mut cc = Client::spawn(
        noc.dispatcher,
        "three",
        "demo",
        "cc",
        &[
            "--tone",
            "660",
            "--record",
            wav.to_str().unwrap(),
            "--duration",
            "9",
        ],
    );

    // Each page hears the other two tones, each at a useful level, and not its own.
    for (page, own, others) in [(&a, 440, [550, 660]), (&b, 550, [440, 660])] {
        let deadline = Instant::now() + Duration::from_secs(15);
        let heard = loop {
            let s = page_state(page).await;
            if others.iter().all(|&hz| level(&s, hz) > -60.0) {
                // Let the one-second averages settle.
                tokio::time::sleep(Duration::from_secs(2)).await;
                break page_state(page).await;
            }
            assert!(
                Instant::now() < deadline,
                "page {own} Hz never heard {others:?}: {:?}\n{s:#}",
                tones(&s)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!("page {own} Hz hears {:?}", tones(&heard));
        let quietest = others
            .iter()
            .map(|&hz| level(&heard, hz))
            .fold(f64::INFINITY, f64::min);
        assert!(quietest > -60.0, "page {own} Hz: {:?}", tones(&heard));
        assert!(
            level(&heard, own) < quietest - 25.0,
            "page {own} Hz hears itself: {:?}",
            tones(&heard)
        );
        // Two members, two slots, each named for its member.
        let slots = heard["slots"].as_object().cloned().unwrap_or_default();
        let named: Vec<&Value> = slots.values().collect();
        let me = if own == 440 { &pa } else { &pb };
        assert!(
            !named.contains(&me),
            "a slot plays the page's own stream: {slots:?}"
        );
        assert!(
            named.len() >= 2,
            "page {own} Hz got slot lines for {named:?}"
        );
    }

    // Page B shows page A's camera on A's tile.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = b
            .execute("return noc.tileVideo(arguments[0]);", vec![pa.clone()])
            .await
            .unwrap_or(Value::Null);
        if v["w"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no video on ann's tile: {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everyone sends a steady tone, so every tile shows a speaker, ann's too: ann was
    // talking before page B joined, and a newcomer is told who talks now.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let speaking = b
            .execute(
                "return [...document.querySelectorAll('.tile.speaking')] \
                 .map((t) => Number(t.dataset.participant));",
                vec![],
            )
            .await
            .unwrap();
        if speaking.as_array().is_some_and(|a| a.contains(&pa)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "page B never shows ann ({pa}) speaking: {speaking}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shot = b.screenshot().await.unwrap();
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("webrtc-room-three.png"),
        shot,
    )
    .unwrap();

    // The confclient hears both pages and not itself.
    let status = cc.wait(Duration::from_secs(30));
    assert!(status.success(), "{:?}", cc.stderr.all());
    let [l440, l550, l660] = wav_tones(&wav, 6.0, &[440.0, 550.0, 660.0])[..] else {
        unreachable!("three tones asked")
    };
    eprintln!("confclient hears 440 at {l440:.1}, 550 at {l550:.1}, 660 at {l660:.1} dBFS");
    assert!(l440 >= -35.0 && l550 >= -35.0, "{l440:.1} {l550:.1}");
    assert!(l660 <= -50.0, "confclient hears itself at {l660:.1} dBFS");
    a.close().await.unwrap();
    b.close().await.unwrap();
}
