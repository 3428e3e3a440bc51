//! Sorter statistics through the public API, over a lossy, reordering, jittery network
//! (testkit's, in virtual time).

mod common;

use std::time::Duration;

use common::*;
use mesh::{MediaKind, MeshConfig, RtpView, StreamStats};
use testkit::net::Impairments;

/// 5% loss, 0..6 ms of jitter, and one packet in 30 held back 26 ms (past the next one, which
/// comes 20 ms later with at most 6 ms of jitter): what the sorter counts must be what the
/// network did.
fn lossy_jittery_reordering() -> Impairments {
    Impairments {
        loss: 5.0,
        jitter: Duration::from_millis(6),
        reorder: 100.0 / 30.0,
        reorder_hold: Duration::from_millis(26),
        ..Impairments::default()
    }
}

#[test]
fn loss_reordering_jitter_and_wraparound() {
    let mut net = Net::new(MeshConfig::default());
    net.conference(Everyone, &[1, 2]);
    net.up.set(addr(1), lossy_jittery_reordering());
    let start = net.now;

    // 1500 audio packets of 20 ms starting near the top of the sequence space.
    const N: u32 = 1500;
    const FIRST_SEQ: u16 = 65_000;
    let mut lost = Vec::new();
    let mut delivered = Vec::new();
    // The estimate swings after each late packet, so judge its average over the run.
    let mut jitter_sum = 0.0;
    let mut deliver = |net: &mut Net<Everyone>, until| {
        while let Some((from, sent)) = net.deliver_next(until) {
            assert_eq!((from, sent), (addr(1), 1));
            let pkt = &net.inbox[&addr(2)].last().expect("forwarded").clone();
            delivered.push(RtpView::parse(pkt).unwrap().sequence_number());
            if delivered.len() > 100 {
                let st = net.mesh.stream_stats(CONF, 1, MediaKind::Audio).unwrap();
                jitter_sum += st.jitter_ms;
            }
        }
    };
    for n in 0..N {
        let at = start + Duration::from_millis(20 * u64::from(n));
        deliver(&mut net, at);
        net.now = at;
        let seq = FIRST_SEQ.wrapping_add(n as u16);
        let pkt = rtp(
            ssrc(1, MediaKind::Audio),
            seq,
            3_000_000_000u32.wrapping_add(n * 960),
            100,
        );
        if net.transmit(addr(1), pkt).dropped() {
            lost.push(n);
        }
    }
    deliver(&mut net, start + Duration::from_secs(60));
    let mean_jitter = jitter_sum / (delivered.len() - 100) as f64;

    let st = net
        .mesh
        .stream_stats(CONF, 1, MediaKind::Audio)
        .expect("channel exists");
    let link = net.up.stats(&addr(1));
    assert!(
        lost.len() > 40 && link.reordered > 20,
        "lost {} reordered {}",
        lost.len(),
        link.reordered
    );
    // Packet numbers from 0 at FIRST_SEQ, across the wrap.
    let index = |seq: u16| u32::from(seq.wrapping_sub(FIRST_SEQ));
    let first = index(delivered[0]);
    let last = delivered.iter().map(|&s| index(s)).max().unwrap();
    assert_eq!(st.packets, delivered.len() as u64);
    // What the network lost between the first and the highest packet that arrived.
    let missing = lost.iter().filter(|&&n| first < n && n < last).count();
    assert_eq!(st.lost, missing as u64);
    assert_eq!(st.reordered, link.reordered);
    assert_eq!(st.highest_seq_ext, u64::from(FIRST_SEQ) + u64::from(last));
    // Uniform 0..6 ms delay alone gives 2 ms. A held packet comes about 26 ms late, two |D|
    // of 26 ms, which adds about 2 * 26 / 30 = 1.7 ms at one in 30.
    assert!(
        (2.5..4.5).contains(&mean_jitter),
        "mean jitter {mean_jitter} ms"
    );
    assert!(st.jitter_ms > 0.0);
    // Forwarding is unaffected by what the sorter measures.
    assert_eq!(
        net.count_from(addr(2), ssrc(1, MediaKind::Audio)),
        delivered.len()
    );
}

#[test]
fn stats_exist_only_for_declared_channels() {
    let mut net = Net::new(MeshConfig::default());
    net.conference(Everyone, &[1, 2]);
    assert_eq!(
        net.mesh.stream_stats(CONF, 1, MediaKind::Video),
        Some(StreamStats::default())
    );
    assert_eq!(net.mesh.stream_stats(CONF, 9, MediaKind::Audio), None);
    assert_eq!(net.mesh.stream_stats(99, 1, MediaKind::Audio), None);
    for _ in 0..5 {
        net.send(1, MediaKind::Video);
        net.now += Duration::from_millis(33);
    }
    let st = net.mesh.stream_stats(CONF, 1, MediaKind::Video).unwrap();
    assert_eq!((st.packets, st.lost, st.highest_seq_ext), (5, 0, 4));
}
