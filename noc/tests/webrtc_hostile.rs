//! Hostile input on a real media server's WebRTC path (issue 12): a Rust DTLS client plays
//! the browser over real UDP (dispatcher `join`, `dispatch`, media server `join` with the
//! ticket, the SDP offer, ICE, DTLS-SRTP), and strangers on loopback send STUN with a wrong
//! username or password, junk DTLS, RTP carrying the browser's SSRC from an address that
//! never passed ICE, and the browser's own SRTP with a forged authentication tag. None gets
//! a reply, each is counted on `/metrics`, and an offer before a ticketed join is refused.

use prometheus_parse::{Scrape, Value};
use protocol::{Endpoint as ControlEndpoint, ServerMsg};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use testkit::browser::Browser;
use testkit::harness::control::Line;
use testkit::harness::{http_get, Noc};
use webrtc::ice;

const SSRC: u32 = 0x1357_9bdf;

/// The `/metrics` address of the media server whose control address is `client`.
fn metrics_of(noc: &Noc, client: SocketAddr) -> SocketAddr {
    let (id, _) = noc
        .media_servers
        .iter()
        .find(|(_, a)| *a == client)
        .expect("the dispatch names one of noc's media servers");
    let (_, url) = noc
        .metrics
        .iter()
        .find(|(i, _)| i == id)
        .expect("its metrics line");
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("metrics address")
}

/// The counter `family{reason}` at `/metrics` on `addr`.
fn drops(addr: SocketAddr, family: &str, reason: &str) -> f64 {
    let body = http_get(addr, "/metrics");
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("metrics parse");
    s.samples
        .iter()
        .filter(|x| x.metric == family && x.labels.get("reason") == Some(reason))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Waits up to 5 s for the counter to reach `at_least`.
fn counted(addr: SocketAddr, family: &str, reason: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = drops(addr, family, reason);
        if v >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{family}{{reason={reason}}} stayed at {v}, expected {at_least}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stranger() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    s
}

/// Sends `datagram` from `s` and asserts that nothing comes back.
fn unanswered(s: &UdpSocket, to: SocketAddr, datagram: &[u8], what: &str) {
    s.send_to(datagram, to).expect("send");
    let mut buf = [0u8; 2048];
    if let Ok((n, from)) = s.recv_from(&mut buf) {
        panic!("{what}: {n} bytes came back from {from}");
    }
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&[0xf8, 0xff, 0xfe]);
    p
}

/// The answer's ICE credentials and host candidate.
struct Answer {
    ufrag: String,
    pwd: String,
    candidate: SocketAddr,
}

fn read_answer(line: &mut Line) -> Answer {
    let (mut ufrag, mut pwd, mut candidate) = (None, None, None);
    loop {
        let l = line.read().expect("the answer before the connection ends");
        let f: Vec<&str> = l.split('\t').collect();
        match f.as_slice() {
            ["sdp", "answer", sdp] => {
                if let Some(u) = sdp.strip_prefix("a=ice-ufrag:") {
                    ufrag = Some(u.to_owned());
                } else if let Some(p) = sdp.strip_prefix("a=ice-pwd:") {
                    pwd = Some(p.to_owned());
                } else if sdp.starts_with("a=candidate:") {
                    let c: Vec<&str> = sdp.split(' ').collect();
                    candidate = format!("{}:{}", c[4], c[5]).parse().ok();
                }
            }
            ["sdpend", "answer", _] => break,
            ["error", ..] | ["reject", ..] => panic!("offer refused: {l}"),
            _ => {}
        }
    }
    Answer {
        ufrag: ufrag.expect("a=ice-ufrag in the answer"),
        pwd: pwd.expect("a=ice-pwd in the answer"),
        candidate: candidate.expect("a host candidate in the answer"),
    }
}

#[test]
fn hostile_webrtc_input_gets_no_reply_and_is_counted() {
    let noc = Noc::start(&[]);
    let browser = Browser::new("mallory");
    let lines = browser.offer(SSRC);

    // Through the dispatcher, like every client.
    let mut d = Line::connect(noc.dispatcher);
    d.send("join\tweb\tdemo\tmallory\tmode=reflect");
    let (addr, ticket) = loop {
        match d.next_msg() {
            ServerMsg::Dispatch {
                addr: ControlEndpoint::Tcp(addr),
                ticket,
                ..
            } => break (addr, ticket),
            ServerMsg::Reject { code, text } | ServerMsg::Error { code, text } => {
                panic!("dispatcher refused: {code:?} {text}")
            }
            _ => {}
        }
    };

    // An offer without a ticketed join is refused, and its connection gets no answer.
    let mut early = Line::connect(addr);
    for l in &lines {
        early.send(&format!("sdp\toffer\t{l}"));
    }
    early.send(&format!("sdpend\toffer\t{}", lines.len()));
    let refused = early.expect("reject");
    assert_eq!(refused[1], "403", "an offer before join: {refused:?}");

    let mut m = Line::connect(addr);
    m.send(&format!(
        "join\tweb\tdemo\tmallory\tmode=reflect\tticket={ticket}"
    ));
    m.expect("accept");
    for l in &lines {
        m.send(&format!("sdp\toffer\t{l}"));
    }
    m.send(&format!("sdpend\toffer\t{}", lines.len()));
    let answer = read_answer(&mut m);
    let metrics = metrics_of(&noc, addr);
    let server = answer.candidate;

    // Strangers, before anyone passed ICE: no reply, each counted.
    let s = stranger();
    let provider = rtc_crypto::default_provider().expect("crypto provider");
    let crypto = provider.crypto();
    unanswered(
        &s,
        server,
        &ice::request("nobody", &browser.ufrag, &answer.pwd, true, crypto),
        "STUN with a wrong username",
    );
    counted(
        metrics,
        "noc_media_webrtc_drops_total",
        "stun_unknown_user",
        1.0,
    );
    unanswered(
        &s,
        server,
        &ice::request(
            &answer.ufrag,
            &browser.ufrag,
            "wrongpasswordwrongpassw",
            true,
            crypto,
        ),
        "STUN with a wrong password",
    );
    counted(
        metrics,
        "noc_media_webrtc_drops_total",
        "stun_bad_integrity",
        1.0,
    );
    let mut junk = vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    junk.extend_from_slice(b"junk!");
    unanswered(&s, server, &junk, "junk DTLS");
    counted(
        metrics,
        "noc_media_webrtc_drops_total",
        "dtls_no_session",
        1.0,
    );

    // The browser passes ICE and DTLS; its SRTP with a forged tag is refused and counted.
    let mut out = browser
        .connect(server, &answer.ufrag, &answer.pwd, || {})
        .outbound;
    let mut buf = [0u8; 1500];
    let plain = rtp(1);
    buf[..plain.len()].copy_from_slice(&plain);
    let n = out.protect_rtp(&mut buf, plain.len()).expect("protect");
    browser
        .socket
        .send_to(&buf[..n], server)
        .expect("send srtp");
    let mut forged = buf[..n].to_vec();
    forged[2..4].copy_from_slice(&2u16.to_be_bytes());
    let last = forged.len() - 1;
    forged[last] ^= 0x5a;
    browser
        .socket
        .send_to(&forged, server)
        .expect("send forged");
    counted(metrics, "noc_media_webrtc_drops_total", "srtp_auth", 1.0);
    assert_eq!(
        drops(metrics, "noc_media_webrtc_drops_total", "srtp_auth"),
        1.0,
        "the browser's own packet passed, only the forged one was refused"
    );

    // RTP with the browser's SSRC from an address that never passed ICE: not taken.
    let before = drops(metrics, "noc_media_drops_total", "unknown_source");
    unanswered(
        &s,
        server,
        &rtp(3),
        "RTP from an address that never passed ICE",
    );
    counted(
        metrics,
        "noc_media_drops_total",
        "unknown_source",
        before + 1.0,
    );
    m.send("endsession");
}
