//! Hostile input on a real media server's WebRTC path (issue 12): a Rust DTLS client plays
//! the browser over real UDP (dispatcher `join`, `dispatch`, media server `join` with the
//! ticket, the SDP offer, ICE, DTLS-SRTP), and strangers on loopback send STUN with a wrong
//! username or password, junk DTLS, RTP carrying the browser's SSRC from an address that
//! never passed ICE, and the browser's own SRTP with a forged authentication tag. None gets
//! a reply, each is counted on `/metrics`, and an offer before a ticketed join is refused.

use bytes::BytesMut;
use dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use dtls::crypto::Certificate;
use dtls::endpoint::{Endpoint, EndpointEvent};
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use prometheus_parse::{Scrape, Value};
use protocol::{Endpoint as ControlEndpoint, ServerMsg};
use rtc_crypto::HashAlgorithm;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use testkit::harness::control::Line;
use testkit::harness::{http_get, Noc};
use webrtc::ice;
use webrtc::srtp::{Context, Profile};

const UFRAG: &str = "Brws";
const PWD: &str = "browserpasswordbrowserpw";
const SSRC: u32 = 0x1357_9bdf;

/// The counter `family{reason}` on the one media server's `/metrics`.
fn drops(noc: &Noc, family: &str, reason: &str) -> f64 {
    let url = &noc.metrics[0].1;
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("metrics address");
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
fn counted(noc: &Noc, family: &str, reason: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = drops(noc, family, reason);
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

fn offer(fingerprint: &[u8]) -> Vec<String> {
    let fp = fingerprint
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        &format!("a=ice-ufrag:{UFRAG}"),
        &format!("a=ice-pwd:{PWD}"),
        &format!("a=fingerprint:sha-256 {fp}"),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        &format!("a=ssrc:{SSRC} cname:hostile"),
    ]
    .iter()
    .map(|l| l.to_string())
    .collect()
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

/// ICE check and DTLS handshake from `sock` to the server; the browser's outbound SRTP.
fn connect(sock: &UdpSocket, a: &Answer) -> Context {
    let provider = rtc_crypto::default_provider().expect("crypto provider");
    let req = ice::request(&a.ufrag, UFRAG, &a.pwd, true, provider.crypto());
    sock.send_to(&req, a.candidate).expect("send check");
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a binding response");
    assert!(n >= 20 && buf[0] == 1 && buf[1] == 1, "binding success");
    let cert = CERT.with(|c| c.clone());
    let cfg = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![cert])
        .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm])
        .with_insecure_skip_verify(true)
        .with_extended_master_secret(ExtendedMasterSecretType::Require)
        .build(true, Some(a.candidate))
        .expect("dtls config");
    let local = sock.local_addr().expect("local");
    let mut dtls = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None);
    let start = Instant::now();
    dtls.connect(start, a.candidate, std::sync::Arc::new(cfg), None)
        .expect("dtls connect");
    let mut done = false;
    while !done {
        assert!(start.elapsed() < Duration::from_secs(5), "DTLS handshake");
        while let Some(m) = dtls.poll_transmit() {
            sock.send_to(&m.message, a.candidate).expect("send dtls");
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if (20..=63).contains(&buf[0]) => {
                let evs = dtls
                    .read(Instant::now(), a.candidate, None, BytesMut::from(&buf[..n]))
                    .expect("dtls read");
                done = evs
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
            }
            Ok(_) => {}
            Err(_) => {
                let _ = dtls.handle_timeout(a.candidate, Instant::now());
            }
        }
    }
    let profile = Profile::AeadAes128Gcm;
    let km = dtls
        .get_connection_state(a.candidate)
        .expect("connection state")
        .export_keying_material("EXTRACTOR-dtls_srtp", &[], profile.keying_len())
        .expect("keying material");
    let km: &[u8] = km.as_ref();
    let (k, s) = (profile.key_len(), profile.salt_len());
    Context::new(profile, &km[..k], &km[2 * k..2 * k + s]).expect("srtp context")
}

thread_local! {
    static CERT: Certificate = {
        let provider = rtc_crypto::default_provider().expect("crypto provider");
        Certificate::generate_self_signed(vec!["hostile".into()], provider.crypto())
            .expect("certificate")
    };
}

#[test]
fn hostile_webrtc_input_gets_no_reply_and_is_counted() {
    let noc = Noc::start(&[]);
    let provider = rtc_crypto::default_provider().expect("crypto provider");
    let fingerprint = CERT.with(|c| {
        provider
            .crypto()
            .hash(HashAlgorithm::Sha256, c.certificate[0].as_ref())
            .expect("sha-256")
    });

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
    for l in offer(&fingerprint) {
        early.send(&format!("sdp\toffer\t{l}"));
    }
    early.send(&format!("sdpend\toffer\t{}", offer(&fingerprint).len()));
    let refused = early.expect("reject");
    assert_eq!(refused[1], "403", "an offer before join: {refused:?}");

    let mut m = Line::connect(addr);
    m.send(&format!(
        "join\tweb\tdemo\tmallory\tmode=reflect\tticket={ticket}"
    ));
    m.expect("accept");
    let lines = offer(&fingerprint);
    for l in &lines {
        m.send(&format!("sdp\toffer\t{l}"));
    }
    m.send(&format!("sdpend\toffer\t{}", lines.len()));
    let answer = read_answer(&mut m);
    let server = answer.candidate;

    // Strangers, before anyone passed ICE: no reply, each counted.
    let s = stranger();
    let crypto = provider.crypto();
    unanswered(
        &s,
        server,
        &ice::request("nobody", UFRAG, &answer.pwd, true, crypto),
        "STUN with a wrong username",
    );
    counted(
        &noc,
        "noc_media_webrtc_drops_total",
        "stun_unknown_user",
        1.0,
    );
    unanswered(
        &s,
        server,
        &ice::request(
            &answer.ufrag,
            UFRAG,
            "wrongpasswordwrongpassw",
            true,
            crypto,
        ),
        "STUN with a wrong password",
    );
    counted(
        &noc,
        "noc_media_webrtc_drops_total",
        "stun_bad_integrity",
        1.0,
    );
    let mut junk = vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    junk.extend_from_slice(b"junk!");
    unanswered(&s, server, &junk, "junk DTLS");
    counted(&noc, "noc_media_webrtc_drops_total", "dtls_no_session", 1.0);

    // The browser passes ICE and DTLS; its SRTP with a forged tag is refused and counted.
    let browser = stranger();
    browser
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut out = connect(&browser, &answer);
    let mut buf = [0u8; 1500];
    let plain = rtp(1);
    buf[..plain.len()].copy_from_slice(&plain);
    let n = out.protect_rtp(&mut buf, plain.len()).expect("protect");
    browser.send_to(&buf[..n], server).expect("send srtp");
    let mut forged = buf[..n].to_vec();
    forged[2..4].copy_from_slice(&2u16.to_be_bytes());
    let last = forged.len() - 1;
    forged[last] ^= 0x5a;
    browser.send_to(&forged, server).expect("send forged");
    counted(&noc, "noc_media_webrtc_drops_total", "srtp_auth", 1.0);

    // RTP with the browser's SSRC from an address that never passed ICE: not taken.
    let before = drops(&noc, "noc_media_drops_total", "unknown_source");
    unanswered(
        &s,
        server,
        &rtp(3),
        "RTP from an address that never passed ICE",
    );
    counted(
        &noc,
        "noc_media_drops_total",
        "unknown_source",
        before + 1.0,
    );
    m.send("endsession");
}
