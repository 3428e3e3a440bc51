//! WHIP and WHEP (RFC 9725): a page on another origin publishes Chromium's microphone (a
//! 440 Hz tone) and camera with one `POST` to the dispatcher's `/whip/{conference}`; the
//! dispatcher answers `307` to its media server, which answers the offer. A second page
//! watches through `/whep/{conference}` and hears and sees the publisher; a confclient in
//! the same conference hears it too. The viewer follows the speaker: when the publisher
//! `DELETE`s its resource, the viewer gets the next one who talks. Bad requests get HTTP
//! errors that say why.

mod support;

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::media::wav_tones;
use testkit::harness::{http, raw_session, Client, Noc};

/// Publishes (`whip`) or watches (`whep`) from the page: a PeerConnection, the offer
/// posted with the account as the bearer token, the answer applied. Leaves `window.rtc`
/// with the connection, the resource URL and what the page hears.
const CONNECT: &str = r#"
const [url, publish, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const pc = new RTCPeerConnection();
  const heard = { f440: -200, f660: -200 };
  window.rtc = { pc, heard, location: null };
  if (publish) {
    const s = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    for (const t of s.getTracks()) pc.addTransceiver(t, { direction: 'sendonly', streams: [s] });
  } else {
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => {
      const stream = new MediaStream([e.track]);
      const el = document.createElement(e.track.kind);
      el.autoplay = true; el.muted = true; el.srcObject = stream;
      document.body.appendChild(el);
      el.play().catch(() => {});
      if (e.track.kind !== 'audio') return;
      const ctx = new AudioContext();
      const an = ctx.createAnalyser();
      an.fftSize = 8192; an.smoothingTimeConstant = 0;
      ctx.createMediaStreamSource(stream).connect(an);
      ctx.resume().catch(() => {});
      const buf = new Float32Array(an.frequencyBinCount);
      const hist = { f440: [], f660: [] };
      setInterval(() => {
        an.getFloatFrequencyData(buf);
        for (const hz of [440, 660]) {
          const i = Math.round(hz * an.fftSize / ctx.sampleRate);
          const h = hist['f' + hz];
          h.push(Math.max(buf[i - 1], buf[i], buf[i + 1]));
          if (h.length > 10) h.shift();
          const p = h.reduce((a, d) => a + Math.pow(10, d / 10), 0) / h.length;
          heard['f' + hz] = 10 * Math.log10(p || 1e-20);
        }
      }, 100);
    };
  }
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer demo' },
    body: pc.localDescription.sdp,
  });
  const text = await r.text();
  const out = { status: r.status, redirected: r.redirected, url: r.url, type: r.headers.get('Content-Type') };
  if (r.status !== 201) { out.text = text; done(out); return; }
  window.rtc.location = new URL(r.headers.get('Location'), r.url).href;
  out.location = window.rtc.location;
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  done(out);
})().catch((e) => done({ error: String(e) }));
"#;

/// The page's connection state, what it hears, and its video counts (getStats).
const STATE: &str = r#"
const done = arguments[arguments.length - 1];
if (!window.rtc) { done(null); return; }
rtc.pc.getStats().then((r) => {
  const v = { decoded: 0, sent: 0, audioIn: 0 };
  r.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') v.decoded += s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') v.audioIn += s.packetsReceived || 0;
    if (s.type === 'outbound-rtp' && s.kind === 'video') v.sent += s.framesEncoded || 0;
  });
  done({ state: rtc.pc.connectionState, heard: rtc.heard, video: v });
});
"#;

/// `fetch(method)` on the page's resource URL; its status.
const ON_RESOURCE: &str = r#"
const [method, done] = [arguments[0], arguments[arguments.length - 1]];
fetch(rtc.location, { method }).then((r) => done(r.status)).catch((e) => done(String(e)));
"#;

async fn state(b: &fantoccini::Client) -> Value {
    b.execute_async(STATE, vec![]).await.unwrap_or(Value::Null)
}

async fn wait_for(
    b: &fantoccini::Client,
    within: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = state(b).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn db(v: &Value, k: &str) -> f64 {
    v["heard"][k].as_f64().unwrap_or(-200.0)
}

/// A raw request; (status, head, body).
fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    http(
        to,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// An offer that parses: one Opus section that sends.
const GOOD_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 4F:2A:7C:61:E4:13:9B:0D:55:AA:10:3E:8F:21:C4:97:06:BD:3A:77:E2:59:1C:48:D0:6F:AB:92:35:E8:7B:C1\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
a=ssrc:1234 cname:x\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_reaches_a_whep_viewer_and_a_confclient() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-whip.wav");
    tone_wav(&mic, 440.0, 60);
    let (_driver, port) = chromedriver();
    // The pages live on the media server's origin, not the dispatcher's: the POST crosses
    // origins (a CORS preflight), and the redirect crosses them again.
    let page = noc.metrics[0].1.replace("/metrics", "/healthz");
    let publisher = browser(port, &mic, &scratch("profile-whip-pub")).await;
    publisher.goto(&page).await.unwrap();
    let whip = format!("http://{}/whip/broadcast", noc.http);
    let out = publisher
        .execute_async(CONNECT, vec![json!(whip), json!(true)])
        .await
        .unwrap();
    eprintln!("whip: {out}");
    assert_eq!(
        out["status"],
        201,
        "{out:#}\n{}",
        noc.stderr.all().join("\n")
    );
    assert_eq!(out["redirected"], true, "{out}");
    assert_eq!(out["type"], "application/sdp", "{out}");
    let location = out["location"].as_str().unwrap_or("").to_owned();
    assert!(
        noc.metrics.iter().any(|(_, m)| {
            let base = m.trim_end_matches("/metrics");
            location.starts_with(&format!("{base}/whip/broadcast/"))
        }),
        "{location} is on no media server: {:?}",
        noc.metrics
    );
    wait_for(
        &publisher,
        Duration::from_secs(20),
        "the publisher did not connect",
        |s| s["state"] == "connected" && s["video"]["sent"].as_u64().unwrap_or(0) > 10,
    )
    .await;

    // The viewer: it hears the 440 Hz tone and decodes the publisher's camera.
    let quiet = scratch("silence-whep.wav");
    tone_wav(&quiet, 20.0, 60);
    let viewer = browser(port, &quiet, &scratch("profile-whep")).await;
    viewer.goto(&page).await.unwrap();
    let whep = format!("http://{}/whep/broadcast", noc.http);
    let out = viewer
        .execute_async(CONNECT, vec![json!(whep), json!(false)])
        .await
        .unwrap();
    eprintln!("whep: {out}");
    assert_eq!(
        out["status"],
        201,
        "{out:#}\n{}",
        noc.stderr.all().join("\n")
    );
    let seen = wait_for(
        &viewer,
        Duration::from_secs(20),
        "the viewer never heard 440 Hz and saw video",
        |s| db(s, "f440") > -60.0 && s["video"]["decoded"].as_u64().unwrap_or(0) > 10,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = state(&viewer).await;
    assert!(
        later["video"]["decoded"].as_u64() > seen["video"]["decoded"].as_u64(),
        "the viewer's video stopped: {seen} then {later}"
    );
    eprintln!("viewer: {later}");

    // The roster has both by their generated names; a confclient hears the publisher.
    noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        let p = v[0]["participants"].to_string();
        p.contains("whip-") && p.contains("whep-")
    });
    let wav = scratch("confclient-whip.wav");
    let mut cc = Client::spawn(
        noc.dispatcher,
        "broadcast",
        "demo",
        "listener",
        &["--record", wav.to_str().unwrap(), "--duration", "5"],
    );
    let status = cc.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "{:?} {:?}",
        cc.stdout.all(),
        cc.stderr.all()
    );
    let [l440] = wav_tones(&wav, 3.0, &[440.0])[..] else {
        unreachable!("one tone asked")
    };
    eprintln!("confclient hears the WHIP publisher at {l440:.1} dBFS");
    assert!(
        l440 >= -35.0,
        "confclient hears the publisher at {l440:.1} dBFS"
    );

    // A second speaker (660 Hz); the publisher ends its session: the viewer follows the
    // speaker and hears 660 Hz instead.
    let mut talker = Client::spawn(
        noc.dispatcher,
        "broadcast",
        "demo",
        "talker",
        &["--tone", "660", "--duration", "25"],
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deleted = publisher
        .execute_async(ON_RESOURCE, vec![json!("DELETE")])
        .await
        .unwrap();
    assert_eq!(deleted, 200, "DELETE on the WHIP resource");
    noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        !v[0]["participants"].to_string().contains("whip-")
    });
    let switched = wait_for(
        &viewer,
        Duration::from_secs(15),
        "the viewer did not follow the next speaker",
        |s| db(s, "f660") > -60.0 && db(s, "f440") < db(s, "f660") - 20.0,
    )
    .await;
    eprintln!("after the switch the viewer hears {}", switched["heard"]);
    let again = publisher
        .execute_async(ON_RESOURCE, vec![json!("DELETE")])
        .await
        .unwrap();
    assert_eq!(again, 404, "a second DELETE finds nothing");
    let deleted = viewer
        .execute_async(ON_RESOURCE, vec![json!("DELETE")])
        .await
        .unwrap();
    assert_eq!(deleted, 200, "DELETE on the WHEP resource");
    noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        !v[0]["participants"].to_string().contains("whep-")
    });
    talker.kill();
    publisher.close().await.unwrap();
    viewer.close().await.unwrap();
}

/// A viewer of a mix conference hears the mix, and sees the speaker's video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_of_a_mix_conference_hears_the_mix() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-whip-mix.wav");
    tone_wav(&mic, 440.0, 40);
    let (_driver, port) = chromedriver();
    let page = format!("http://{}/healthz", noc.http);
    let publisher = browser(port, &mic, &scratch("profile-whip-mix-pub")).await;
    publisher.goto(&page).await.unwrap();
    let whip = format!("http://{}/whip/mixed?mode=mix", noc.http);
    let out = publisher
        .execute_async(CONNECT, vec![json!(whip), json!(true)])
        .await
        .unwrap();
    assert_eq!(out["status"], 201, "{out:#}");
    noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        v[0]["mode"] == "mix"
    });
    let viewer = browser(port, &mic, &scratch("profile-whep-mix")).await;
    viewer.goto(&page).await.unwrap();
    // No mode asked: the running conference's.
    let whep = format!("http://{}/whep/mixed", noc.http);
    let out = viewer
        .execute_async(CONNECT, vec![json!(whep), json!(false)])
        .await
        .unwrap();
    assert_eq!(
        out["status"],
        201,
        "{out:#}\n{}",
        noc.stderr.all().join("\n")
    );
    let s = wait_for(
        &viewer,
        Duration::from_secs(20),
        "the mix viewer never heard 440 Hz and saw video",
        |s| db(s, "f440") > -60.0 && s["video"]["decoded"].as_u64().unwrap_or(0) > 10,
    )
    .await;
    eprintln!("mix viewer: {s}");
    publisher.close().await.unwrap();
    viewer.close().await.unwrap();
}

#[test]
fn bad_whip_requests_get_http_errors_that_say_why() {
    let noc = Noc::start(&[]);
    let d = noc.http;
    let sdp = "Content-Type: application/sdp\r\n";
    let demo = "Authorization: Bearer demo\r\n";
    // Not an SDP body: 415, and what to send instead.
    let (code, head, _) = request(
        d,
        "POST",
        "/whip/c",
        &format!("{demo}Content-Type: text/plain\r\n"),
        "x",
    );
    assert_eq!(code, 415, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("accept-post: application/sdp"),
        "{head}"
    );
    // No account, or an unknown one: 401.
    let (code, _, body) = request(d, "POST", "/whip/c", sdp, OFFER);
    assert_eq!(code, 401, "{body}");
    let (code, _, body) = request(
        d,
        "POST",
        "/whep/c",
        &format!("{sdp}Authorization: Bearer nobody\r\n"),
        OFFER,
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unknown account"), "{body}");
    // A preflight from a page elsewhere is allowed, with the headers WHIP needs.
    let (code, head, _) = request(
        d,
        "OPTIONS",
        "/whip/c",
        "Origin: http://studio.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n",
        "",
    );
    let lower = head.to_ascii_lowercase();
    assert!(code == 200 || code == 204, "{head}");
    assert!(
        lower.contains("access-control-allow-origin: http://studio.example"),
        "{head}"
    );
    assert!(lower.contains("authorization"), "{head}");

    // The dispatcher's redirect names the media server and carries the ticket.
    let (code, head, _) = request(d, "POST", "/whip/c", &format!("{sdp}{demo}"), OFFER);
    assert_eq!(code, 307, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("a Location")
        .trim()
        .to_owned();
    assert!(location.contains("/whip/c?ticket="), "{location}");
    let rest = location.strip_prefix("http://").expect("http");
    let (host, path) = rest.split_once('/').unwrap();
    let media: SocketAddr = host.parse().unwrap();
    let path = format!("/{path}");
    // The offer itself is bad: 400, and why.
    let (code, _, body) = request(media, "POST", &path, sdp, OFFER);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("sdp"), "{body}");
    // Without the ticket, or with a forged one: 401.
    let (code, _, body) = request(media, "POST", "/whip/c?account=demo&user=x", sdp, OFFER);
    assert_eq!(code, 401, "{body}");
    let forged = path.replace("ticket=", "ticket=0");
    let (code, _, body) = request(media, "POST", &forged, sdp, GOOD_OFFER);
    assert_eq!(code, 401, "{body}");
    // A client holding a will-call ticket (from a `dispatch` line) may give it as the
    // bearer token, with the names it was issued for: sent on with that same ticket.
    let text = raw_session(noc.dispatcher, b"join\tc\tdemo\ttess\n");
    let ticket = text
        .lines()
        .find_map(|l| l.strip_prefix("dispatch\t"))
        .and_then(|l| l.split('\t').nth(1))
        .unwrap_or_else(|| panic!("no dispatch: {text}"))
        .to_owned();
    let bearer = format!("{sdp}Authorization: Bearer {ticket}\r\n");
    let (code, head, _) = request(d, "POST", "/whep/c?account=demo&user=tess", &bearer, OFFER);
    assert_eq!(code, 307, "{head}");
    assert!(
        head.contains(&format!("ticket={}", ticket.replace(':', "%3A"))),
        "{head}"
    );
    let (code, _, body) = request(d, "POST", "/whep/c?account=demo&user=eve", &bearer, OFFER);
    assert_eq!(code, 401, "a ticket issued to someone else: {body}");
    // No such resource: 404 for DELETE and PATCH.
    let (code, _, _) = request(media, "DELETE", "/whip/c/nothing", "", "");
    assert_eq!(code, 404);
    let (code, _, _) = request(
        media,
        "PATCH",
        "/whip/c/nothing",
        "Content-Type: application/trickle-ice-sdpfrag\r\n",
        "a=end-of-candidates\r\n",
    );
    assert_eq!(code, 404);
}
