//! Keyframes for new receivers, in virtual time: a late joiner's first video is a keyframe
//! and arrives within 500 ms, and keyframe requests are aggregated and throttled per sender.

mod common;

use std::time::Duration;

use common::*;
use mesh::rtcp::{self, Rtcp};
use testkit::packet;

/// PLIs and FIRs that reached participant `id`.
fn keyframe_requests(sim: &Sim, id: u32) -> usize {
    sim.rtcp(id)
        .iter()
        .flat_map(|(_, b)| rtcp::packets(b).flatten().collect::<Vec<_>>())
        .filter(|p| matches!(p, Rtcp::Pli { .. } | Rtcp::Fir(_)))
        .count()
}

#[test]
fn late_joiner_starts_at_a_keyframe_within_500_ms() {
    // Natural keyframes only every 10 s: the join must cause one.
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 300);
    sim.run(Duration::from_secs(2));
    assert!(
        is_key(&sim.media(2)[0].1),
        "the first receiver starts at a keyframe too"
    );
    assert_eq!(sim.cameras[0].keyframes_sent, 1);

    let joined = sim.now;
    sim.join(3);
    sim.run(Duration::from_secs(1));
    let media = sim.media(3);
    assert!(!media.is_empty(), "the joiner gets video");
    let (at, first) = &media[0];
    assert!(
        is_key(first),
        "the joiner's first video packet starts a keyframe"
    );
    let waited = at.duration_since(joined);
    assert!(waited <= Duration::from_millis(500), "waited {waited:?}");
    // One request, one keyframe; the receiver already there was not disturbed.
    assert_eq!(keyframe_requests(&sim, 1), 1);
    assert_eq!(sim.cameras[0].keyframes_sent, 2);
    assert_eq!(sim.reflector().stats().keyframe_requests, 1);
    // Every packet from the keyframe on reached 3, in order.
    let seqs: Vec<u16> = media
        .iter()
        .map(|(_, p)| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
}

#[test]
fn requests_are_aggregated_and_throttled_per_sender() {
    let mut sim = Sim::new(&[1, 2, 3, 4]);
    sim.camera(1, 300);
    sim.run(Duration::from_millis(500));
    sim.cameras[0].deaf = true;
    let base = keyframe_requests(&sim, 1);
    // Three receivers ask for a keyframe every 20 ms for one second, and the camera ignores
    // the requests (so nothing satisfies them).
    let pli = packet::pli(0x99, video_ssrc(1));
    for _ in 0..50 {
        for r in 2..=4 {
            sim.rtcp_from(r, &pli);
        }
        sim.run(Duration::from_millis(20));
    }
    let sent = keyframe_requests(&sim, 1) - base;
    // 150 asks over 1 s at most once per 300 ms: 4 requests (at 0, 300, 600, 900 ms).
    assert_eq!(sim.reflector().stats().keyframe_asks, 150);
    assert!((3..=4).contains(&sent), "{sent} requests sent");
}

#[test]
fn packets_held_until_a_keyframe_are_counted() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 300);
    sim.run(Duration::from_millis(500));
    // The camera ignores requests: the joiner waits for the next natural keyframe.
    sim.cameras[0].deaf = true;
    sim.join(3);
    sim.run(Duration::from_millis(20));
    let (from2, held) = (
        sim.media(2).len(),
        sim.reflector().stats().held_for_keyframe,
    );
    sim.run(Duration::from_millis(500));
    assert!(sim.media(3).is_empty());
    let missed = (sim.media(2).len() - from2) as u64;
    assert!(missed > 0);
    assert_eq!(sim.reflector().stats().held_for_keyframe - held, missed);
}

#[test]
fn fir_only_senders_are_asked_with_fir() {
    let mut sim = Sim::with(&[1, 2], |r| {
        r.set_keyframe_method(1, reflector::KeyframeMethod::Fir)
    });
    sim.camera(1, 300);
    sim.run(Duration::from_millis(500));
    let joined = sim.now;
    sim.join(3);
    sim.run(Duration::from_millis(500));
    let kinds: Vec<bool> = sim
        .rtcp(1)
        .iter()
        .flat_map(|(_, b)| rtcp::packets(b).flatten().collect::<Vec<_>>())
        .filter_map(|p| match p {
            Rtcp::Fir(f) => Some(f.entries().any(|(m, _)| m == video_ssrc(1))),
            Rtcp::Pli { .. } => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec![true], "one FIR for the camera's stream, no PLI");
    let (at, first) = &sim.media(3)[0];
    assert!(is_key(first));
    assert!(at.duration_since(joined) <= Duration::from_millis(500));
}
