//! Fuzzes the H.264 depacketizer (RFC 6184): whatever the packets, no panic, and every frame
//! it hands out is whole: Annex-B NAL units that packetize and depacketize to themselves.
//!
//! The input is a sequence of packets, each `[flags, length, payload...]`: flags bit 0 is
//! the marker, bits 1-2 step the timestamp, bits 3-7 step the sequence number (16 = in
//! order; others make gaps and reordering).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpvideo::h264::{H264Depacketizer, H264Packetizer};
use rtpvideo::{Frame, PacketizerConfig};

fn check(f: &Frame) {
    assert!(f.data.starts_with(&[0, 0, 0, 1]));
    // A keyframe holds an IDR slice.
    if f.keyframe {
        assert!(f
            .data
            .windows(5)
            .any(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == 5));
    }
    // What came out goes back through a packetizer and depacketizer unchanged, as long as
    // no unit holds a start code of its own (the Annex-B split would see two units).
    let body_has_start_code = f.data[4..].windows(3).any(|w| w == [0, 0, 1]);
    if f.keyframe && !body_has_start_code {
        let cfg = PacketizerConfig {
            ssrc: 1,
            payload_type: 96,
            first_seq: 0,
            mtu: 200,
        };
        let mut pkts = Vec::new();
        if H264Packetizer::new(cfg)
            .unwrap()
            .packetize(&f.data, f.timestamp, &mut pkts)
            .is_ok()
        {
            let mut d = H264Depacketizer::new();
            let mut got = None;
            for p in &pkts {
                if let Ok(Some(g)) = d.push_packet(p) {
                    got = Some(g);
                }
            }
            if let Some(g) = got {
                assert!(g.keyframe);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = H264Depacketizer::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        seq = seq.wrapping_add(u16::from(flags >> 3)).wrapping_sub(15);
        ts = ts.wrapping_add(u32::from((flags >> 1) & 3) * 3000);
        if let Ok(Some(f)) = d.push(seq, ts, flags & 1 != 0, payload) {
            check(&f);
        }
    }
});
