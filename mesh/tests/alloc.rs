//! Proves that forwarding allocates nothing on the heap once warmed up.
//!
//! testkit's counting global allocator counts allocations made by this test's own thread
//! only, so the test harness's threads cannot disturb the count.

mod common;

use std::time::Duration;

use common::*;
use mesh::{Command, MediaKind, Mesh, MeshConfig, Remote, TxBatch};
use testkit::alloc::{counted, CountingAlloc};
use testkit::conference;
use testkit::packet;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn forwarding_does_not_allocate_after_warm_up() {
    let mut now = std::time::Instant::now();
    let mut mesh: Mesh<Everyone> = Mesh::new(now, MeshConfig::default());
    conference::create(&mut mesh, now, CONF, Everyone);
    const PEOPLE: u32 = 8;
    for id in 1..=PEOPLE {
        // Half the participants latch, to cover that path's warm-up too.
        let remote = if id % 2 == 0 {
            Remote::Latch(ip(id))
        } else {
            Remote::Addr(addr(id))
        };
        conference::join(&mut mesh, now, CONF, id, remote, &channels(id));
    }
    // One participant is on a budget, so the scheduler sheds some video as well.
    mesh.handle_command(
        now,
        Command::SetBudget {
            conf: CONF,
            participant: 3,
            bits_per_sec: Some(300_000),
        },
    );
    mesh.handle_tick(now);

    // Packets prepared up front: building them is the test's allocation, not the mesh's.
    let packets: Vec<(std::net::SocketAddr, Vec<u8>)> = (0..2000u32)
        .map(|n| {
            let id = n % PEOPLE + 1;
            let kind = MediaKind::ALL[(n / PEOPLE) as usize % 2];
            let len = if kind == MediaKind::Audio { 160 } else { 1200 };
            // Every tenth datagram is a compound RTCP (RR + SDES) from a member, which the
            // mesh validates and hands to the path.
            if n % 10 == 9 {
                let rr = packet::receiver_report(ssrc(id, kind), &[]);
                let c = packet::compound(&[rr, packet::sdes(ssrc(id, kind), "cam")]);
                return (addr(id), c);
            }
            (addr(id), rtp(ssrc(id, kind), n as u16, n * 960, len))
        })
        .collect();
    // The caller's batch, sized like the mesh's so swapping keeps capacities equal.
    let cfg = MeshConfig::default();
    let mut out = TxBatch::with_capacity(cfg.tx_packets, cfg.tx_bytes);
    let mut run = |mesh: &mut Mesh<Everyone>,
                   now: &mut std::time::Instant,
                   chunk: &[(std::net::SocketAddr, Vec<u8>)]| {
        let mut sent = 0;
        for (i, (from, pkt)) in chunk.iter().enumerate() {
            mesh.handle_datagram(*now, *from, pkt);
            if i % 16 == 15 {
                mesh.poll_transmit(&mut out);
                sent += out.iter().count();
                out.clear();
                *now += Duration::from_millis(1);
                mesh.handle_tick(*now);
            }
        }
        mesh.poll_transmit(&mut out);
        sent += out.len();
        out.clear();
        sent
    };

    // Warm-up: latches bind, tables and batches reach their working size.
    let warm = run(&mut mesh, &mut now, &packets[..500]);
    assert!(warm > 0);
    while mesh.poll_event().is_some() {}

    let (sent, allocs) = counted(|| run(&mut mesh, &mut now, &packets[500..]));
    assert!(sent > 1500 * 5, "forwarded only {sent}");
    assert_eq!(allocs, 0, "heap allocations while forwarding");
    let st = mesh.stats();
    assert!(st.drops(mesh::DropReason::OverBudget) > 0);
    assert_eq!(st.rtcp_in, 200, "every RTCP compound reached the path");
}

/// The counter itself works: an allocation inside `counted` is seen, so the zero above
/// means something.
#[test]
fn the_counter_sees_an_allocation() {
    let (v, allocs) = counted(|| Vec::<u8>::with_capacity(64));
    assert_eq!(v.capacity(), 64);
    assert!(allocs >= 1);
}
