//! The traffic light in a forwarding (reflect) conference, through a real media server: a
//! receiver behind a lossy relay (20% of the datagrams each way, seeded) gets `quality red`,
//! a receiver on a clean path stays green. Each receiver sends RTP (silence) and, once a
//! second, a receiver report about the talker's stream, as confclient does.

mod common;

use common::control::*;
use mesh::RtpView;
use protocol::{Quality, ServerMsg};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use testkit::packet::{receiver_report, ReportBlock, Rtp};
use testkit::rng::Rng;

/// A relay that drops `loss` of what crosses it, both ways, from a seeded generator.
fn lossy_relay(
    receiver: SocketAddr,
    server: SocketAddr,
    loss: f64,
    stop: Arc<AtomicBool>,
) -> SocketAddr {
    let sock = udp();
    let addr = sock.local_addr().unwrap();
    thread::spawn(move || {
        let mut rng = Rng::new(0x1055_2020);
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if rng.percent(loss) {
                continue;
            }
            let to = if from == receiver { server } else { receiver };
            let _ = sock.send_to(&buf[..n], to);
        }
    });
    addr
}

/// A member's media: sends 20 ms RTP packets to `to` from `sock` and, each second, a
/// receiver report about `talker`'s stream from what arrived.
fn member_media(sock: UdpSocket, to: SocketAddr, ssrc: u32, talker: u32, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut seq = 0u16;
        let mut next = Instant::now();
        let mut report = Instant::now() + Duration::from_secs(1);
        let (mut base, mut max, mut got) = (None::<u16>, 0u16, 0u64);
        let (mut last_expected, mut last_got) = (0u64, 0u64);
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                let p = Rtp::new(ssrc)
                    .pt(111)
                    .seq(seq)
                    .ts(u32::from(seq) * 960)
                    .size(40)
                    .build();
                let _ = sock.send_to(&p, to);
                seq = seq.wrapping_add(1);
                next += Duration::from_millis(20);
            }
            if let Ok(n) = sock.recv(&mut buf) {
                if let Ok(v) = RtpView::parse(&buf[..n]) {
                    if v.ssrc() == talker && !mesh::rtp::is_rtcp(&buf[..n]) {
                        let s = v.sequence_number();
                        let b = *base.get_or_insert(s);
                        max = max.max(s.wrapping_sub(b));
                        got += 1;
                    }
                }
            }
            if Instant::now() >= report && base.is_some() {
                report += Duration::from_secs(1);
                let expected = u64::from(max) + 1;
                let (de, dg) = (expected - last_expected, got - last_got);
                let fraction = match de {
                    0 => 0,
                    e => (e.saturating_sub(dg) * 256 / e).min(255) as u8,
                };
                (last_expected, last_got) = (expected, got);
                let rr = receiver_report(
                    ssrc,
                    &[ReportBlock {
                        ssrc: talker,
                        fraction_lost: fraction,
                        total_lost: expected.saturating_sub(got) as u32,
                        last_sequence_number: u32::from(max),
                        jitter: 0,
                        last_sender_report: 0,
                        delay: 0,
                    }],
                );
                let _ = sock.send_to(&rr, to);
            }
        }
    });
}

/// The `quality` lines a member received within `for_`: (about whom, light).
fn lights(m: &mut Member, for_: Duration) -> Vec<(u32, Quality)> {
    let deadline = Instant::now() + for_;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let Some(l) = m.line.read() else { continue };
        if let Ok(ServerMsg::Quality {
            participant,
            quality,
        }) = ServerMsg::parse(&l)
        {
            out.push((participant, quality));
        }
    }
    out
}

#[test]
fn a_receiver_behind_a_lossy_relay_gets_red_a_clean_one_green() {
    let server = Server::start(None);
    let (_stop, flag) = stop_flag();
    let mut talker = server.join("lights", "talker");
    let mut lossy = server.join("lights", "lossy");
    let mut clean = server.join("lights", "clean");
    let (t_sock, l_sock, c_sock) = (udp(), udp(), udp());
    let audio = talker.audio.addr;
    let relay = lossy_relay(l_sock.local_addr().unwrap(), audio, 20.0, flag.clone());
    talker.audio_channel(t_sock.local_addr().unwrap());
    lossy.audio_channel(relay);
    clean.audio_channel(c_sock.local_addr().unwrap());
    talker.sync();
    lossy.sync();
    clean.sync();
    let t_ssrc = talker.audio.ssrc;
    member_media(t_sock, audio, t_ssrc, 0, flag.clone());
    member_media(l_sock, relay, lossy.audio.ssrc, t_ssrc, flag.clone());
    member_media(c_sock, audio, clean.audio.ssrc, t_ssrc, flag.clone());
    let (lossy_id, clean_id) = (lossy.participant, clean.participant);
    // Every member gets every light; the clean one reads them for a few report periods.
    let all = lights(&mut clean, Duration::from_secs(5));
    let of = |who: u32| -> Vec<Quality> {
        all.iter()
            .filter(|(p, _)| *p == who)
            .map(|(_, q)| *q)
            .collect()
    };
    let (bad, good) = (of(lossy_id), of(clean_id));
    assert!(
        bad.contains(&Quality::Red),
        "the lossy receiver's light: {all:?}"
    );
    assert_eq!(good.first(), Some(&Quality::Green), "{all:?}");
    assert!(
        good.iter().all(|q| *q == Quality::Green),
        "the clean receiver's light: {all:?}"
    );
}
