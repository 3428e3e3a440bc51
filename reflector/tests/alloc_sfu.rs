//! Proves that the SFU features together (simulcast with rewriting, last-N from audio levels,
//! thinning with per-receiver renumbering, REMB, NACKs in the receiver's numbering answered
//! as RTX or translated back through a thinned receiver's renumbering, keyframe requests)
//! allocate nothing per packet after warm-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh::{Command, Mesh, MeshConfig, Remote, TxBatch};
use reflector::{Reflector, VideoCodec};
use testkit::alloc::{counted, CountingAlloc};
use testkit::conference::{self, Channel};
use testkit::packet::{self, vp8, Rtp};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CONF: u32 = 4;
const PEOPLE: u32 = 4;
/// Participant 1's low encoding; its top one is its video channel's SSRC (101).
const LOW: u32 = 201;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::from(([10, 2, 0, id as u8], 7000))
}

/// Audio with an RFC 6464 level under extension id 1.
fn audio(ssrc: u32, seq: u16, level: u8) -> Vec<u8> {
    let ts = u32::from(seq) * 960;
    Rtp::new(ssrc)
        .pt(111)
        .seq(seq)
        .ts(ts)
        .audio_level(1, level)
        .size(120)
        .build()
}

/// VP8 with a temporal layer id: 3 packets a frame, odd frames TL1, a keyframe every 30th
/// packet.
fn video(ssrc: u32, seq: u16) -> Vec<u8> {
    let key = seq % 30 == 0;
    let tid = if key { 0 } else { (seq / 3 % 2) as u8 };
    Rtp::new(ssrc)
        .seq(seq)
        .ts(u32::from(seq / 3) * 3000)
        .payload(&vp8(seq % 3 == 0, key, Some(tid)))
        .size(1000)
        .build()
}

#[test]
fn sfu_features_do_not_allocate_after_warm_up() {
    let mut now = Instant::now();
    let mut mesh = Mesh::new(now, MeshConfig::default());
    let mut path = Reflector::new();
    path.set_video_codec(96, VideoCodec::Vp8);
    path.set_last_n(Some(2), reflector::DEFAULT_AUDIO_LEVEL_ID);
    conference::create(&mut mesh, now, CONF, path);
    for id in 1..=PEOPLE {
        let channels = [Channel::audio(id), Channel::video(100 + id)];
        conference::join(&mut mesh, now, CONF, id, Remote::Addr(addr(id)), &channels);
    }
    mesh.handle_command(
        now,
        Command::SetSimulcast {
            conf: CONF,
            participant: 1,
            layers: vec![LOW, 101],
        },
    );
    // 3 negotiated RTX, so its NACKs are answered with RFC 4588 packets.
    mesh.handle_command(
        now,
        Command::ReceiverPrefs {
            conf: CONF,
            participant: 3,
            prefs: mesh::ReceiverPrefs {
                rtx_payload_type: Some(97),
                max_layer: None,
            },
        },
    );
    mesh.handle_tick(now);

    const STEPS: u16 = 2000;
    // Per step: each member's audio (one of them talking, in turn every 200 steps) and
    // video (both encodings for 1), then feedback: 2's downlink is short (low layer and
    // thinning); 3 NACKs 1's stream as it sees it; 2, thinned, NACKs the plain streams of 3
    // and 4 in its own (renumbered) numbering. Built up front, outside the count.
    let lost = |n: u16| [n.wrapping_sub(4), n.wrapping_sub(2)];
    let packets: Vec<Vec<(SocketAddr, Vec<u8>)>> = (0..STEPS)
        .map(|n| {
            let talker = u32::from(n / 200) % PEOPLE + 1;
            let mut v = Vec::new();
            for id in 1..=PEOPLE {
                let level = if id == talker { 10 } else { 127 };
                v.push((addr(id), audio(id, n, level)));
                v.push((addr(id), video(100 + id, n)));
            }
            v.push((addr(1), video(LOW, n)));
            v.push((addr(2), packet::remb(102, 60_000, &[101])));
            v.push((addr(3), packet::nack(103, 101, &lost(n))));
            for media in [103, 104] {
                v.push((addr(2), packet::nack(102, media, &lost(n))));
            }
            v
        })
        .collect();
    let mut out = TxBatch::with_capacity(4096, 4096 * 1500);
    let mut step = |mesh: &mut Mesh<Reflector>, now: &mut Instant, n: u16| {
        for (from, pkt) in &packets[usize::from(n)] {
            mesh.handle_datagram(*now, *from, pkt);
        }
        let lost = lost(n);
        *now += Duration::from_millis(5);
        mesh.handle_tick(*now);
        mesh.poll_transmit(&mut out);
        // 2's copies of 3's and 4's video this step (source number `n`), not resends, that
        // went out renumbered.
        let renumbered = out
            .iter()
            .filter(|(dest, p)| {
                let [head, body] = p.parts();
                let mut h = [0u8; 12];
                for (d, s) in h.iter_mut().zip(head.iter().chain(body)) {
                    *d = *s;
                }
                let (ssrc, seq) = (
                    u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                    u16::from_be_bytes([h[2], h[3]]),
                );
                *dest == addr(2) && [103, 104].contains(&ssrc) && seq != n && !lost.contains(&seq)
            })
            .count();
        let sent = out.len();
        out.clear();
        while mesh.poll_event().is_some() {}
        (sent, renumbered)
    };
    for n in 0..1000 {
        step(&mut mesh, &mut now, n);
    }
    let ((sent, renumbered), allocs) = counted(|| {
        (1000..STEPS)
            .map(|n| step(&mut mesh, &mut now, n))
            .fold((0, 0), |(s, r), (s1, r1)| (s + s1, r + r1))
    });
    assert_eq!(allocs, 0, "heap allocations with the SFU features on");
    assert!(sent > 1000 * 3, "sent {sent}");
    assert!(
        renumbered > 100,
        "thinning renumbered only {renumbered} packets"
    );
    let r = mesh.path(CONF).expect("conference");
    assert!(r.stats().retransmitted > 0);
    assert!(r.stats().keyframe_requests > 0);
    assert_eq!(r.thinned(), &[2]);
}
