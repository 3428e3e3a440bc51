//! Proves that the mixing path allocates nothing on the heap once warmed up: receiving,
//! jitter buffering, decoding, talk detection, mixing, encoding and sending, for Opus and
//! G.711 participants alike.
//!
//! A counting global allocator counts allocations made by this test's own thread only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codecs::g711::{Law, TelephonyEncoder};
use codecs::opus::{Encoder, FRAME_SAMPLES};
use mesh::{Mesh, MeshConfig, Remote, TxBatch};
use testkit::alloc::{counted, CountingAlloc};
use testkit::conference::{self, Channel};
use testkit::packet::Rtp;
use transcoder::Transcoder;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CONF: u32 = 1;

fn addr(p: u32) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, p as u8], 5000))
}

#[test]
fn mixing_does_not_allocate_after_warm_up() {
    let t0 = Instant::now();
    let mut mesh: Mesh<Transcoder> = Mesh::new(t0, MeshConfig::default());
    conference::create(&mut mesh, t0, CONF, Transcoder::new());
    // 1-3 talk in Opus, 4 talks in PCMU, 5-8 listen (send nothing).
    for p in 1..=8u32 {
        let audio = Channel::audio(100 + p).at(if p == 4 { 8_000 } else { 48_000 });
        conference::join(&mut mesh, t0, CONF, p, Remote::Addr(addr(p)), &[audio]);
    }
    mesh.handle_tick(t0);
    // Pre-built packets, 50 per talker, so the test itself allocates nothing per frame.
    let mut packets: Vec<Vec<Vec<u8>>> = Vec::new();
    for p in 1..=4u32 {
        let mut opus = Encoder::new().unwrap();
        let mut pcmu = TelephonyEncoder::new(Law::Mu).unwrap();
        let list = (0..50u32)
            .map(|k| {
                let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                    .map(|n| {
                        let x = (k as usize * FRAME_SAMPLES + n) as f64 / 48_000.0;
                        let f = 300.0 + 200.0 * f64::from(p);
                        (6000.0 * (2.0 * std::f64::consts::PI * f * x).sin()) as i16
                    })
                    .collect();
                let (pt, payload) = if p == 4 {
                    (0u8, pcmu.encode(&pcm).unwrap().to_vec())
                } else {
                    (111u8, opus.encode(&pcm).unwrap().to_vec())
                };
                let ts = if p == 4 { k * 160 } else { k * 960 };
                Rtp::new(100 + p)
                    .pt(pt)
                    .seq(k as u16)
                    .ts(ts)
                    .payload(&payload)
                    .build()
            })
            .collect();
        packets.push(list);
    }
    let mut tx = TxBatch::with_capacity(4096, 4096 * 1500);
    let mut now = t0;
    let mut sent = 0;
    let mut run = |frames: std::ops::Range<usize>, mesh: &mut Mesh<Transcoder>| {
        for k in frames {
            for p in 1..=4u32 {
                // Replay the 50 packets with their headers' timestamps moving on: rewrite
                // the sequence and timestamp in place.
                let pkt = &mut packets[(p - 1) as usize][k % 50];
                let step = if p == 4 { 160 } else { 960 };
                pkt[2..4].copy_from_slice(&(k as u16).to_be_bytes());
                pkt[4..8].copy_from_slice(&((k as u32) * step).to_be_bytes());
                mesh.handle_datagram(now, addr(p), pkt);
            }
            mesh.handle_tick(now);
            now += Duration::from_millis(10);
            mesh.handle_tick(now);
            now += Duration::from_millis(10);
            mesh.poll_transmit(&mut tx);
            sent += tx.len();
            tx.clear();
            while mesh.poll_event().is_some() {}
        }
    };
    // Warm up: jitter buffers primed, talk runs started, encoders and tables grown, one
    // quality report done.
    run(0..200, &mut mesh);
    let ((), allocs) = counted(|| run(200..400, &mut mesh));
    assert_eq!(allocs, 0, "the mixing path allocated {allocs} times");
    // Everyone got one packet per 20 ms.
    assert!(sent >= 8 * 390, "sent {sent}");
    let tc = mesh.path(CONF).unwrap();
    for p in 1..=4 {
        assert!(tc.talk_run(p).is_some(), "{p} should be talking");
    }
}
