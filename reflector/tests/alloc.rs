//! Proves that a mesh running the reflector forwards without heap allocation after warm-up.
//!
//! The counting allocator counts only this test thread's allocations.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh::{DropReason, Mesh, MeshConfig, Remote, TxBatch};
use reflector::Reflector;
use testkit::alloc::{counted, CountingAlloc};
use testkit::conference::{self, Channel};
use testkit::packet::{self, vp8, Rtp};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CONF: u32 = 3;
const PEOPLE: u32 = 6;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::from(([10, 1, 0, id as u8], 7000))
}

fn rtp(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
    let ts = u32::from(seq) * 960;
    Rtp::new(ssrc).pt(111).seq(seq).ts(ts).size(len).build()
}

#[test]
fn reflector_forwarding_does_not_allocate_after_warm_up() {
    let mut now = Instant::now();
    let mut mesh = Mesh::new(now, MeshConfig::default());
    conference::create(&mut mesh, now, CONF, Reflector::new());
    for id in 1..=PEOPLE {
        let channels = [Channel::audio(id).at(90_000), Channel::video(100 + id)];
        conference::join(&mut mesh, now, CONF, id, Remote::Addr(addr(id)), &channels);
    }
    mesh.handle_tick(now);

    let packets: Vec<(SocketAddr, Vec<u8>)> = (0..1200u32)
        .map(|n| {
            let id = n % PEOPLE + 1;
            let ssrc = if n % 3 == 0 { 100 + id } else { id };
            (addr(id), rtp(ssrc, (n / PEOPLE) as u16, 300))
        })
        .collect();
    let mut out = TxBatch::with_capacity(4096, 4096 * 1500);
    let mut run =
        |mesh: &mut Mesh<Reflector>, now: &mut Instant, chunk: &[(SocketAddr, Vec<u8>)]| {
            let mut sent = 0;
            for (from, pkt) in chunk {
                mesh.handle_datagram(*now, *from, pkt);
                mesh.poll_transmit(&mut out);
                sent += out.len();
                out.clear();
                *now += Duration::from_millis(1);
                mesh.handle_tick(*now);
            }
            sent
        };
    run(&mut mesh, &mut now, &packets[..200]);

    let reports = mesh.stats().rtcp_out;
    let (sent, allocs) = counted(|| run(&mut mesh, &mut now, &packets[200..]));
    assert_eq!(allocs, 0, "heap allocations while forwarding");
    // Everyone but the sender, for every packet; the reflector never offers an echo. Besides,
    // each stream that carried packets (one per person here) got one receiver report.
    let reports = (mesh.stats().rtcp_out - reports) as usize;
    assert_eq!(reports, PEOPLE as usize);
    assert_eq!(sent, 1000 * (PEOPLE as usize - 1) + reports);
    assert_eq!(mesh.stats().drops(DropReason::OwnStream), 0);
    assert_eq!(mesh.stats().total_drops(), 0);
}

/// A VP8 packet on payload type 96, three a frame: a keyframe start every 30th sequence
/// number.
fn video(ssrc: u32, seq: u16) -> Vec<u8> {
    Rtp::new(ssrc)
        .seq(seq)
        .ts(u32::from(seq / 3) * 3000)
        .payload(&vp8(seq % 3 == 0, seq % 30 == 0, None))
        .size(1100)
        .build()
}

#[test]
fn video_nack_and_rtcp_do_not_allocate_after_warm_up() {
    let mut now = Instant::now();
    let mut mesh = Mesh::new(now, MeshConfig::default());
    let mut path = Reflector::new();
    path.set_video_codec(96, reflector::VideoCodec::Vp8);
    conference::create(&mut mesh, now, CONF, path);
    for id in 1..=PEOPLE {
        let video = [Channel::video(100 + id)];
        conference::join(&mut mesh, now, CONF, id, Remote::Addr(addr(id)), &video);
    }
    mesh.handle_tick(now);

    let mut out = TxBatch::with_capacity(4096, 4096 * 1500);
    // Per step: one video packet from every sender, then from receiver 2 a NACK for recent
    // packets of 1, a PLI, a REMB and an RR; the mesh ticks every 5 ms. All built up front:
    // building them is the test's allocation, not the mesh's.
    let packets: Vec<Vec<Vec<u8>>> = (0..1100u16)
        .map(|n| (1..=PEOPLE).map(|id| video(100 + id, n)).collect())
        .collect();
    let nacks: Vec<Vec<u8>> = (0..1100u16)
        .map(|n| {
            packet::nack(
                102,
                101,
                &[n.wrapping_sub(5), n.wrapping_sub(3), n.wrapping_sub(1)],
            )
        })
        .collect();
    let feedback = [
        packet::pli(102, 103),
        packet::remb(102, 800_000, &[101, 103]),
        packet::receiver_report(102, &[]),
    ];
    let mut step = |mesh: &mut Mesh<Reflector>, now: &mut Instant, n: u16| {
        let mut sent = 0;
        for (id, pkt) in (1..=PEOPLE).zip(&packets[usize::from(n)]) {
            mesh.handle_datagram(*now, addr(id), pkt);
        }
        mesh.handle_datagram(*now, addr(2), &nacks[usize::from(n)]);
        for f in &feedback {
            mesh.handle_datagram(*now, addr(2), f);
        }
        mesh.poll_transmit(&mut out);
        sent += out.len();
        out.clear();
        *now += Duration::from_millis(5);
        mesh.handle_tick(*now);
        mesh.poll_transmit(&mut out);
        sent += out.len();
        out.clear();
        sent
    };
    for n in 0..100 {
        step(&mut mesh, &mut now, n);
    }
    let (sent, allocs) = counted(|| {
        (100..1100)
            .map(|n| step(&mut mesh, &mut now, n))
            .sum::<usize>()
    });
    assert_eq!(allocs, 0, "heap allocations with video, NACK and RTCP");
    // Video fan-out plus one retransmission per step, plus throttled PLIs to 3.
    assert!(sent >= 1000 * (PEOPLE as usize - 1 + 1), "sent {sent}");
    let st = mesh.path(CONF).expect("conference").stats();
    // Each number is asked for three times within 10 ms: only the first ask is answered.
    // Numbers -5..=1098 are asked for; all but the five before 0 hit the cache.
    assert_eq!(st.nacked, 3 * 1100);
    assert_eq!(st.nack_repeats, 3 * 1100 - 1104);
    assert_eq!(st.retransmitted, 1099);
    assert!(st.keyframe_requests > 0);
    assert_eq!(mesh.stats().total_drops(), 0);
}
