//! Fuzzes the VP8 depacketizer (RFC 7741): whatever the packets, no panic, and every frame
//! it hands out survives our packetizer and depacketizer unchanged.
//!
//! The input is a sequence of packets, each `[flags, length, payload...]`: flags bit 0 is
//! the marker, bits 1-2 step the timestamp, bits 3-7 step the sequence number (16 = in
//! order; others make gaps and reordering).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpvideo::vp8::{is_key_frame, Vp8Depacketizer, Vp8Packetizer};
use rtpvideo::{Frame, PacketizerConfig};

fn check(f: &Frame) {
    assert!(!f.data.is_empty());
    assert_eq!(f.keyframe, is_key_frame(&f.data));
    if !f.keyframe {
        return;
    }
    let cfg = PacketizerConfig {
        ssrc: 1,
        payload_type: 96,
        first_seq: 0,
        mtu: 100,
    };
    let mut pkts = Vec::new();
    Vp8Packetizer::new(cfg, 1)
        .unwrap()
        .packetize(&f.data, f.timestamp, &mut pkts)
        .unwrap();
    let mut d = Vp8Depacketizer::new();
    let mut got = None;
    for p in &pkts {
        if let Some(g) = d.push_packet(p).unwrap() {
            got = Some(g);
        }
    }
    assert_eq!(got.as_ref().map(|g| &g.data), Some(&f.data));
}

fuzz_target!(|data: &[u8]| {
    let mut d = Vp8Depacketizer::new();
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
