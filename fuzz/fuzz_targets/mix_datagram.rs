//! Fuzzes the transcoder path: arbitrary RTP (bogus Opus and G.711 payloads, absurd
//! timestamps and sequence jumps, reordering) from the members of a `mix` conference,
//! interleaved with 20 ms ticks so the jitter buffers, decoders and mixer all run.
//! Hostile packets must be counted and dropped, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh::{Command, MediaKind, Mesh, MeshConfig, Remote, TxBatch};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use transcoder::Transcoder;

const CONF: u32 = 1;
/// Ticks per input at most: each one decodes, mixes and encodes Opus for every member
/// (tens of microseconds), so an input of hundreds of ticks held the target near a
/// thousand executions a second, too slow for 10 million. Packets after the last tick
/// still reach the sorter and the jitter buffers.
const MAX_TICKS: u32 = 4;

fn addr(p: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 0, p as u8]), 5000)
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut mesh: Mesh<Transcoder> = Mesh::new(t0, MeshConfig::default());
    mesh.handle_command(
        t0,
        Command::CreateConference {
            conf: CONF,
            path: Box::new(Transcoder::new()),
        },
    );
    for p in 1..=3u32 {
        mesh.handle_command(
            t0,
            Command::AddParticipant {
                conf: CONF,
                participant: p,
            },
        );
        mesh.handle_command(
            t0,
            Command::SetChannel {
                conf: CONF,
                participant: p,
                kind: MediaKind::Audio,
                remote: Remote::Addr(addr(p)),
                ssrc: 100 + p,
                clock_rate: 48_000,
            },
        );
    }
    mesh.handle_tick(t0);
    let mut out = TxBatch::with_capacity(256, 256 * 1500);
    let mut now = t0;
    let mut ticks = 0;
    // Each record: [member selector, tick?, length, header fields..., payload...].
    let mut rest = data;
    while rest.len() >= 3 {
        let (sel, advance, len) = (rest[0], rest[1], rest[2] as usize);
        rest = &rest[3..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        let p = u32::from(sel % 3) + 1;
        // A valid RTP header carrying the member's SSRC, so the bytes reach the decoder.
        // Sequence number and timestamp come from the input; PCMU (0) or Opus (111).
        let mut seq_ts = [0u8; 6];
        let head = body.get(..6).unwrap_or(body);
        seq_ts[..head.len()].copy_from_slice(head);
        let mut pkt = vec![0x80, if sel & 0x40 != 0 { 0 } else { 111 }];
        pkt.extend_from_slice(&seq_ts);
        pkt.extend_from_slice(&(100 + p).to_be_bytes());
        pkt.extend_from_slice(body.get(6..).unwrap_or(&[]));
        mesh.handle_datagram(now, addr(p), &pkt);
        if advance & 1 == 1 && ticks < MAX_TICKS {
            ticks += 1;
            now += Duration::from_millis(u64::from(advance >> 1) % 80);
            mesh.handle_tick(now);
        }
        mesh.poll_transmit(&mut out);
        out.clear();
        while mesh.poll_event().is_some() {}
    }
});
