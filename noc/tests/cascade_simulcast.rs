//! Plain-RTP simulcast across a link opened after the sender declared its encodings
//! (issue 17). The sender's server then tells the new peer of the member and, right after,
//! of its encodings (the link's `simulcast` line); the peer's receiver can then be given
//! any encoding. Without that line the peer knows only the top SSRC and its receiver is
//! stuck on it. Real `noc` on 127.0.0.1, members speaking the control lines themselves
//! (through the dispatcher), media on real UDP sockets.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};
use testkit::harness::control::Member;
use testkit::harness::{stop_flag, udp, Noc, Stop, TempDir};
use testkit::packet::h264;

/// H.264 as the media server offers it in `channel video` lines.
const H264_PT: u8 = 96;

/// Sends three encodings (`ssrcs`, lowest first) of 50 frames a second from `sock` to
/// `to`, each frame one packet whose payload carries its encoding's index; a keyframe on
/// every encoding every 10 frames, so a switch never waits long.
fn send_simulcast(sock: UdpSocket, to: std::net::SocketAddr, ssrcs: [u32; 3]) -> Stop {
    let (stop, flag) = stop_flag();
    thread::spawn(move || {
        let mut i = 0u32;
        while !flag.load(Ordering::Relaxed) {
            for (l, &ssrc) in ssrcs.iter().enumerate() {
                let seq = (l as u16 * 10_000).wrapping_add(i as u16);
                let p = h264::marked(
                    H264_PT,
                    ssrc,
                    seq,
                    i * 1800,
                    i.is_multiple_of(10),
                    l as u8,
                    200 + 300 * l,
                );
                let _ = sock.send_to(&p, to);
            }
            i += 1;
            thread::sleep(Duration::from_millis(20));
        }
    });
    stop
}

/// The encoding marks of the video packets `sock` gets over `span`, in order (RTCP and
/// packets of other SSRCs left out).
fn marks(sock: &UdpSocket, ssrc: u32, span: Duration) -> Vec<u8> {
    let t0 = Instant::now();
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    while t0.elapsed() < span {
        let Ok(n) = sock.recv(&mut buf) else {
            continue;
        };
        let Ok(v) = mesh::RtpView::parse(&buf[..n]) else {
            continue;
        };
        if mesh::rtp::is_rtcp(&buf[..n]) || v.ssrc() != ssrc {
            continue;
        }
        if let Some(&mark) = v.payload().get(1) {
            seen.push(mark);
        }
    }
    seen
}

/// Over 1.5 s, `sock` gets `ssrc`'s video steadily and ends on encoding `layer` (its last
/// 20 packets).
fn ends_on(sock: &UdpSocket, ssrc: u32, layer: u8, what: &str) {
    let seen = marks(sock, ssrc, Duration::from_millis(1500));
    assert!(
        seen.len() > 40 && seen.iter().rev().take(20).all(|&m| m == layer),
        "{what}: {seen:?}"
    );
}

/// How many media servers the conference's row lists, once it lists two.
fn servers(noc: &Noc, conference: &str) -> usize {
    let row = |v: &serde_json::Value| {
        v.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == conference))
            .and_then(|c| c["servers"].as_array().map(Vec::len))
    };
    let all = noc.wait_api("/api/conferences", Duration::from_secs(5), |v| {
        row(v) == Some(2)
    });
    row(&all).unwrap_or(0)
}

/// One member a server (the account's `spread`): the sender declares three encodings on
/// its server; a receiver seated later on the other server, over a link opened by its
/// join, gets the lowest encoding when it asks for `layer 0` and the top one again on
/// `layer auto`, on the top encoding's SSRC throughout.
#[test]
fn a_simulcast_sender_seated_before_the_link_reaches_the_linked_receiver_in_each_layer() {
    let dir = TempDir::new("cascade-simulcast");
    let cfg = dir.file("noc.toml");
    std::fs::write(
        &cfg,
        "[[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\nspread = 1\n",
    )
    .unwrap();
    let noc = Noc::start(&["--config", &cfg, "--media-servers", "2"]);

    let mut s = Member::dispatched(noc.dispatcher, "simlate", "demo", "sender");
    let s_sock = udp();
    let top = s.video.ssrc;
    // SSRCs the server did not hand out (it picks random nonzero ones; a clash is refused).
    let (low, mid) = (top ^ 0x0101_0101, top ^ 0x0202_0202);
    s.video_channel(
        s_sock.local_addr().unwrap(),
        &format!("\tsimulcast={low},{mid}"),
    );
    s.sync();
    let _sending = send_simulcast(s_sock, s.video.addr, [low, mid, top]);
    thread::sleep(Duration::from_millis(300));

    let mut r = Member::dispatched(noc.dispatcher, "simlate", "demo", "receiver");
    assert_eq!(
        servers(&noc, "simlate"),
        2,
        "the receiver is on the other server"
    );
    let r_sock = udp();
    r.video_channel(r_sock.local_addr().unwrap(), "");
    r.sync();

    ends_on(&r_sock, top, 2, "the top encoding first");
    r.send("layer\t0");
    r.sync();
    ends_on(
        &r_sock,
        top,
        0,
        "the lowest encoding on `layer 0`, across the link",
    );
    r.send("layer\tauto");
    r.sync();
    ends_on(&r_sock, top, 2, "the top encoding again on `layer auto`");
}
