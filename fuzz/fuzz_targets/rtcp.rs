//! Fuzzes the RTCP compound parser and, through a reflector mesh, the SFU's handling of RTCP
//! from a member: no panic, every view stays in bounds, and parsing agrees with validation.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mesh::rtcp::{self, Rtcp};
use mesh::{Command, MediaKind, Mesh, MeshConfig, Remote, TxBatch};
use reflector::Reflector;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 0, last]), 5000)
}

fn walk(data: &[u8]) {
    let mut ok = true;
    for p in rtcp::packets(data) {
        match p {
            Ok(Rtcp::SenderReport(sr)) => {
                let _ = sr.blocks.iter().count();
            }
            Ok(Rtcp::ReceiverReport { blocks, .. }) => {
                let _ = blocks.iter().count();
            }
            Ok(Rtcp::Bye(s)) => {
                let _ = s.iter().count();
            }
            Ok(Rtcp::Nack(n)) => {
                let _ = n.lost().count();
            }
            Ok(Rtcp::Fir(f)) => {
                let _ = f.entries().count();
            }
            Ok(Rtcp::Remb(r)) => {
                let _ = r.ssrcs.iter().count();
            }
            Ok(_) => {}
            Err(_) => ok = false,
        }
    }
    assert_eq!(ok && !data.is_empty(), rtcp::is_valid(data));
}

fuzz_target!(|data: &[u8]| {
    walk(data);
    let now = Instant::now();
    let mut m: Mesh<Reflector> = Mesh::new(now, MeshConfig::default());
    let mut path = Reflector::new();
    path.set_video_codec(96, reflector::VideoCodec::Vp8);
    path.set_last_n(Some(1), reflector::DEFAULT_AUDIO_LEVEL_ID);
    m.handle_command(now, Command::CreateConference { conf: 1, path: Box::new(path) });
    for id in 1..=2u32 {
        m.handle_command(
            now,
            Command::AddParticipant {
                conf: 1,
                participant: id,
            },
        );
        for (kind, ssrc, clock_rate) in [
            (MediaKind::Audio, 0x1000 + id, 48_000),
            (MediaKind::Video, 0x2000 + id, 90_000),
        ] {
            m.handle_command(
                now,
                Command::SetChannel {
                    conf: 1,
                    participant: id,
                    kind,
                    remote: Remote::Addr(addr(id as u8)),
                    ssrc,
                    clock_rate,
                },
            );
        }
    }
    // 1 sends two simulcast encodings; 2 takes retransmissions as RTX.
    m.handle_command(
        now,
        Command::SetSimulcast {
            conf: 1,
            participant: 1,
            layers: vec![0x3001, 0x2001],
        },
    );
    m.handle_command(
        now,
        Command::ReceiverPrefs {
            conf: 1,
            participant: 2,
            prefs: mesh::ReceiverPrefs {
                max_layer: None,
                rtx_payload_type: Some(97),
            },
        },
    );
    m.handle_tick(now);
    // Some video from 1 so NACKs and PLIs have a stream to refer to.
    // VP8 keyframe start (S bit, partition 0, P = 0).
    let mut pkt = vec![
        0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x01, 0x10, 0x00, 0x00, 0x9d,
    ];
    pkt.resize(100, 0);
    for seq in 0..8u16 {
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        for ssrc in [0x2001u32, 0x3001] {
            pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
            m.handle_datagram(now, addr(1), &pkt);
        }
    }
    // The input as RTCP from a receiver and from the sender.
    m.handle_datagram(now, addr(2), data);
    m.handle_datagram(now, addr(1), data);
    m.handle_tick(now + std::time::Duration::from_millis(20));
    let mut out = TxBatch::default();
    m.poll_transmit(&mut out);
});
