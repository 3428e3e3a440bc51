//! Proves that a mesh running the reflector forwards without heap allocation after warm-up.
//!
//! The counting allocator counts only this test thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh::{Command, DropReason, MediaKind, Mesh, MeshConfig, Remote, TxBatch};
use reflector::Reflector;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-locals may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let sent = run(&mut mesh, &mut now, &packets[200..]);
    COUNTING.with(|c| c.set(false));

    assert_eq!(
        ALLOCS.with(|a| a.get()),
        0,
        "heap allocations while forwarding"
    );
    // Everyone but the sender, for every packet; the reflector never offers an echo.
    assert_eq!(sent, 1000 * (PEOPLE as usize - 1));
    assert_eq!(mesh.stats().drops(DropReason::OwnStream), 0);
    assert_eq!(mesh.stats().total_drops(), 0);
}
