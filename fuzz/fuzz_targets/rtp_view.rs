//! Fuzzes the zero-copy RTP view and the mesh's whole datagram path.
//!
//! The input is read as a sequence of datagrams, each `[source selector, length, bytes...]`,
//! fed to a mesh with one reflector conference. Besides "no panic", it checks the security
//! promise: a datagram from an address no channel set up never makes the mesh send anything.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mesh::{rtp, Command, MediaKind, Mesh, MeshConfig, Remote, RtpView, TxBatch};
use reflector::Reflector;

const CONF: u32 = 1;

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 0, last]), port)
}

/// Sources the selector byte picks from: three members (the third latches from 10.0.0.3),
/// a second port on the latch IP, and a stranger.
fn source(sel: u8) -> (SocketAddr, bool) {
    match sel % 5 {
        0 => (addr(1, 5000), false),
        1 => (addr(2, 5000), false),
        2 => (addr(3, 6000), false),
        3 => (addr(3, 6001), false),
        _ => (addr(9, 5000), true),
    }
}

fn check_view(data: &[u8]) {
    let _ = rtp::is_rtcp(data);
    if let Ok(p) = RtpView::parse(data) {
        let _ = (
            p.version(),
            p.marker(),
            p.payload_type(),
            p.sequence_number(),
            p.timestamp(),
            p.ssrc(),
            p.csrcs().count(),
            p.extension(),
        );
        assert_eq!(
            p.header_len() + p.payload().len() + p.padding_len(),
            data.len()
        );
    }
}

fn mesh(now: Instant) -> Mesh<Reflector> {
    let cfg = MeshConfig {
        max_conferences: 1,
        max_participants: 4,
        tx_packets: 64,
        tx_bytes: 64 * 1500,
        ..MeshConfig::default()
    };
    let mut m = Mesh::new(now, cfg);
    m.handle_command(
        now,
        Command::CreateConference {
            conf: CONF,
            path: Box::new(Reflector::new()),
        },
    );
    for id in 1..=3u32 {
        m.handle_command(
            now,
            Command::AddParticipant {
                conf: CONF,
                participant: id,
            },
        );
        let remote = if id == 3 {
            Remote::Latch(addr(3, 0).ip())
        } else {
            Remote::Addr(addr(id as u8, 5000))
        };
        for (kind, ssrc, clock_rate) in [
            (MediaKind::Audio, 0x1000 + id, 48_000),
            (MediaKind::Video, 0x2000 + id, 90_000),
        ] {
            m.handle_command(
                now,
                Command::SetChannel {
                    conf: CONF,
                    participant: id,
                    kind,
                    remote,
                    ssrc,
                    clock_rate,
                },
            );
        }
    }
    m.handle_command(
        now,
        Command::SetBudget {
            conf: CONF,
            participant: 2,
            bits_per_sec: Some(64_000),
        },
    );
    m.handle_tick(now);
    m
}

fuzz_target!(|data: &[u8]| {
    check_view(data);

    let start = Instant::now();
    let mut now = start;
    let mut m = mesh(now);
    let mut out = TxBatch::with_capacity(64, 64 * 1500);
    let mut rest = data;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        check_view(datagram);
        let (from, stranger) = source(*sel);
        m.handle_datagram(now, from, datagram);
        loop {
            m.poll_transmit(&mut out);
            if out.is_empty() {
                break;
            }
            assert!(!stranger, "a stranger made the mesh send");
            out.clear();
        }
        while m.poll_event().is_some() {}
        now += Duration::from_millis(u64::from(*sel >> 3));
        m.handle_tick(now);
        // What the tick sends (RTCP, keyframe requests) is the tick's, not the next
        // datagram's: drain it before the next input is judged.
        loop {
            m.poll_transmit(&mut out);
            if out.is_empty() {
                break;
            }
            out.clear();
        }
        while m.poll_event().is_some() {}
    }
    assert!(m.stats().datagrams_in <= data.len() as u64);
});
