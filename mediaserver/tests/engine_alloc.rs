//! Proves that a worker's whole forwarding loop (receive batch, mesh, GSO plan, send batch)
//! allocates nothing on the heap once warmed up, over real loopback sockets and each backend.
//!
//! The counting allocator counts only allocations made by this test's thread while the
//! engine turns, so building packets and reading them at the receivers does not count.

mod common;

use common::*;
use mediaserver::io::IoKind;
use std::time::Duration;
use testkit::alloc::{counted, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Sends `rounds` bursts from every participant through the engine and drains the
/// receivers; returns (packets received, allocations made while the engine turned).
fn run(rig: &mut Rig, people: u32, rounds: u16, seq0: u16) -> (usize, u64) {
    let mut received = 0;
    let mut allocs = 0;
    let mut buf = [0u8; 2048];
    for r in 0..rounds {
        // Every participant sends a burst of 4 (equal sizes, so GSO runs form), built first.
        let burst: Vec<Vec<u8>> = (1..=people)
            .flat_map(|id| (0..4u16).map(move |k| (id, seq0 + r * 4 + k)))
            .map(|(id, seq)| rtp(id, seq, if id % 2 == 0 { 160 } else { 1000 }))
            .collect();
        for p in &burst {
            let id = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            rig.send(id, p);
        }
        let want = burst.len() as u64;
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got < want && std::time::Instant::now() < deadline {
            let (n, during) = counted(|| rig.engine.turn(Duration::from_millis(20)));
            allocs += during;
            got += n.unwrap() as u64;
        }
        assert_eq!(got, want, "engine read every datagram");
        for id in 1..=people {
            for _ in 0..4 * (people - 1) {
                rig.peers[id as usize - 1].recv_from(&mut buf).unwrap();
                received += 1;
            }
        }
    }
    (received, allocs)
}

fn no_allocation_after_warm_up(kind: IoKind, gso: bool) {
    let people = 5;
    let mut rig = Rig::new(kind, gso, people);
    assert_eq!(rig.engine.io_kind(), expected_kind(kind));
    // Warm-up: tables, batches and the GSO planner reach their working size.
    run(&mut rig, people, 10, 0);
    let rounds = 50;
    let (received, allocs) = run(&mut rig, people, rounds, 1000);
    let per_round = (people * 4 * (people - 1)) as usize;
    assert_eq!(received, per_round * rounds as usize);
    assert_eq!(
        allocs, 0,
        "{kind} gso={gso}: heap allocations while forwarding"
    );
}

#[test]
fn mmsg_forwarding_does_not_allocate() {
    no_allocation_after_warm_up(IoKind::Mmsg, false);
}

#[test]
fn mmsg_gso_forwarding_does_not_allocate() {
    no_allocation_after_warm_up(IoKind::Mmsg, true);
}

#[test]
fn uring_forwarding_does_not_allocate() {
    no_allocation_after_warm_up(IoKind::Uring, true);
}
