//! Sorter statistics through the public API, over a lossy, reordering, jittery network.

mod common;

use std::time::Duration;

use common::*;
use mesh::{MediaKind, MeshConfig, StreamStats};

/// One packet as the simulated network delivers it.
struct Delivery {
    seq: u16,
    ts: u32,
    at: Duration,
}

#[test]
fn loss_reordering_jitter_and_wraparound() {
    let mut net = Net::new(MeshConfig::default());
    net.conference(Everyone, &[1, 2]);
    let start = net.now;
    let mut rng = XorShift(0x5eed_1234_abcd_0001);

    // 1500 audio packets of 20 ms starting near the top of the sequence space.
    const N: u32 = 1500;
    const FIRST_SEQ: u16 = 65_000;
    let mut lost = 0u64;
    let mut plan: Vec<Delivery> = Vec::new();
    for n in 0..N {
        // Keep the first and last so the expected count spans the whole run.
        if n != 0 && n != N - 1 && rng.next() % 20 == 0 {
            lost += 1;
            continue;
        }
        plan.push(Delivery {
            seq: FIRST_SEQ.wrapping_add(n as u16),
            ts: 3_000_000_000u32.wrapping_add(n * 960),
            at: Duration::from_millis(20 * u64::from(n)) + Duration::from_micros(rng.next() % 6000),
        });
    }
    // Swap some non-overlapping neighbours: the second of each pair arrives late.
    let mut swaps = 0u64;
    let mut i = 1;
    while i + 1 < plan.len() {
        if rng.next() % 30 == 0 {
            plan.swap(i, i + 1);
            swaps += 1;
            i += 2;
        } else {
            i += 1;
        }
    }

    let mut last = Duration::ZERO;
    // The estimate swings after each swap, so judge its average over the run.
    let mut jitter_sum = 0.0;
    for (i, d) in plan.iter().enumerate() {
        last = last.max(d.at);
        net.now = start + last;
        let pkt = rtp(ssrc(1, MediaKind::Audio), d.seq, d.ts, 100);
        assert_eq!(net.send_raw(addr(1), &pkt), 1);
        if i >= 100 {
            let st = net.mesh.stream_stats(CONF, 1, MediaKind::Audio).unwrap();
            jitter_sum += st.jitter_ms;
        }
    }
    let mean_jitter = jitter_sum / (plan.len() - 100) as f64;

    let st = net
        .mesh
        .stream_stats(CONF, 1, MediaKind::Audio)
        .expect("channel exists");
    assert!(lost > 40 && swaps > 20, "lost {lost} swaps {swaps}");
    assert_eq!(st.packets, plan.len() as u64);
    assert_eq!(st.lost, lost);
    assert_eq!(st.reordered, swaps);
    assert_eq!(st.highest_seq_ext, u64::from(FIRST_SEQ) + u64::from(N) - 1);
    // Uniform 0..6 ms delay alone gives 2 ms. A swap holds one packet back by a 20 ms frame,
    // two |D| of 20 ms, which adds about 2 * 20 / 30 = 1.3 ms at one swap in 30.
    assert!(
        (2.5..4.5).contains(&mean_jitter),
        "mean jitter {mean_jitter} ms"
    );
    assert!(st.jitter_ms > 0.0);
    // Forwarding is unaffected by what the sorter measures.
    assert_eq!(
        net.count_from(addr(2), ssrc(1, MediaKind::Audio)),
        plan.len()
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
