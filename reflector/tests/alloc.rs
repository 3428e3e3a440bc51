//! Proves that a mesh running the reflector forwards without heap allocation after warm-up.
//!
//! The counting allocator counts only this test thread's allocations.

use mesh::alloc_count::counted;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh::{Command, DropReason, MediaKind, Mesh, MeshConfig, Remote, TxBatch};
use reflector::Reflector;

#[global_allocator]
static GLOBAL: mesh::alloc_count::CountingAlloc = mesh::alloc_count::CountingAlloc;

const CONF: u32 = 3;
const PEOPLE: u32 = 6;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::from(([10, 1, 0, id as u8], 7000))
}

fn rtp(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
    let mut v = vec![0x80, 111];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.resize(len, 0);
    v
}

#[test]
fn reflector_forwarding_does_not_allocate_after_warm_up() {
    let mut now = Instant::now();
    let mut mesh = Mesh::new(now, MeshConfig::default());
    mesh.handle_command(
        now,
        Command::CreateConference {
            conf: CONF,
            path: Reflector::new(),
        },
    );
    for id in 1..=PEOPLE {
        mesh.handle_command(
            now,
            Command::AddParticipant {
                conf: CONF,
                participant: id,
            },
        );
        for (kind, ssrc) in [(MediaKind::Audio, id), (MediaKind::Video, 100 + id)] {
            mesh.handle_command(
                now,
                Command::SetChannel {
                    conf: CONF,
                    participant: id,
                    kind,
                    remote: Remote::Addr(addr(id)),
                    ssrc,
                    clock_rate: 90_000,
                },
            );
        }
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

    let (sent, allocs) = counted(|| run(&mut mesh, &mut now, &packets[200..]));
    assert_eq!(allocs, 0, "heap allocations while forwarding");
    // Everyone but the sender, for every packet; the reflector never offers an echo.
    assert_eq!(sent, 1000 * (PEOPLE as usize - 1));
    assert_eq!(mesh.stats().drops(DropReason::OwnStream), 0);
    assert_eq!(mesh.stats().total_drops(), 0);
}
