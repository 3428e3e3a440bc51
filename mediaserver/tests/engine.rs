//! The worker engine forwards real datagrams on loopback through each backend, with and
//! without GSO, and the packets arrive intact at every receiver.

mod common;

use common::*;
use mediaserver::io::IoKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Participant 1 sends a burst of equal-sized packets and one shorter one, participant 2 a
/// few; everyone else gets all of them intact and in order per sender.
fn forwards_intact(kind: IoKind, gso: bool) {
    let people = 3;
    let mut rig = Rig::new(kind, gso, people);
    assert_eq!(
        rig.engine.io_kind(),
        expected_kind(kind),
        "backend after fallback"
    );
    if !gso {
        assert!(!rig.engine.gso());
    }
    let burst: Vec<Vec<u8>> = (0..12u16)
        .map(|seq| rtp(1, seq, if seq == 11 { 90 } else { 300 }))
        .collect();
    let few: Vec<Vec<u8>> = (0..3u16).map(|seq| rtp(2, seq, 160)).collect();
    // Queued before the engine reads, so one receive batch holds them all.
    for p in &burst {
        rig.send(1, p);
    }
    for p in &few {
        rig.send(2, p);
    }
    let n = (burst.len() + few.len()) as u64;
    assert_eq!(rig.pump(n, Duration::from_secs(5)), n);

    let got2 = rig.receive(2, burst.len());
    assert_eq!(got2, burst, "participant 2 gets 1's burst");
    let got1 = rig.receive(1, few.len());
    assert_eq!(got1, few, "participant 1 gets 2's packets");
    let mut got3 = rig.receive(3, burst.len() + few.len());
    // Per sender order is kept; the two senders may interleave.
    let from1: Vec<_> = got3.iter().filter(|p| p[11] == 1).cloned().collect();
    got3.retain(|p| p[11] == 2);
    assert_eq!(from1, burst);
    assert_eq!(got3, few);

    rig.engine.publish(Instant::now());
    let c = &rig.counters;
    assert_eq!(c.datagrams_in.load(Ordering::Relaxed), n);
    assert_eq!(c.packets_out.load(Ordering::Relaxed), 2 * n);
    assert_eq!(c.send_errors.load(Ordering::Relaxed), 0);
    assert_eq!(c.participants.load(Ordering::Relaxed), u64::from(people));
    assert_eq!(c.conferences.load(Ordering::Relaxed), 1);
    let gso_used = c.gso_packets.load(Ordering::Relaxed) > 0;
    assert_eq!(gso_used, rig.engine.gso(), "GSO runs exactly when enabled");
    if rig.engine.gso() {
        // 12 packets to each of 2 and 3 in one batch: far fewer messages than packets.
        assert!(c.gso_packets.load(Ordering::Relaxed) >= 20);
    }
}

#[test]
fn mmsg_forwards_intact() {
    forwards_intact(IoKind::Mmsg, false);
}

#[test]
fn mmsg_with_gso_forwards_intact() {
    forwards_intact(IoKind::Mmsg, true);
}

#[test]
fn uring_forwards_intact_or_falls_back() {
    forwards_intact(IoKind::Uring, false);
}

#[test]
fn uring_with_gso_forwards_intact_or_falls_back() {
    forwards_intact(IoKind::Uring, true);
}

/// Strangers are dropped, and the idle engine blocks instead of spinning.
#[test]
fn idle_engine_waits_and_strangers_are_dropped() {
    for kind in [IoKind::Mmsg, IoKind::Uring] {
        let mut rig = Rig::new(kind, true, 2);
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger.send_to(&rtp(99, 0, 100), rig.addr).unwrap();
        assert_eq!(rig.pump(1, Duration::from_secs(5)), 1);
        let t0 = Instant::now();
        let mut turns = 0;
        while t0.elapsed() < Duration::from_millis(100) {
            rig.engine.turn(Duration::from_millis(50)).unwrap();
            turns += 1;
        }
        // Ticks are 10 ms apart: about ten turns, certainly not thousands.
        assert!(turns < 50, "{kind}: {turns} turns in 100 ms");
        rig.engine.publish(Instant::now());
        assert_eq!(rig.counters.drops(mesh::DropReason::UnknownSource), 1);
        assert_eq!(rig.counters.packets_out.load(Ordering::Relaxed), 0);
    }
}

/// A fan-out bigger than one flush: every receiver still gets every packet.
#[test]
fn large_fan_out_is_flushed_in_pieces() {
    for kind in [IoKind::Mmsg, IoKind::Uring] {
        let people = 40u32;
        let mut rig = Rig::new(kind, true, people);
        let pkts: Vec<Vec<u8>> = (0..40u16).map(|s| rtp(1, s, 200)).collect();
        for p in &pkts {
            rig.send(1, p);
        }
        assert_eq!(rig.pump(40, Duration::from_secs(5)), 40);
        for id in 2..=people {
            assert_eq!(
                rig.receive(id, pkts.len()),
                pkts,
                "{kind}: participant {id}"
            );
        }
        rig.engine.publish(Instant::now());
        assert_eq!(rig.counters.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(
            rig.counters.packets_out.load(Ordering::Relaxed),
            40 * u64::from(people - 1)
        );
    }
}
