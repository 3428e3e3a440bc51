//! Fuzzes a browser session's per-packet work besides SRTP: its receive slots
//! (`webrtc::slots`: what the browser sends, RTP whose payload type is mapped and compound
//! RTCP whose report blocks, NACK, PLI, FIR and REMB entries are rewritten in place; what
//! the mesh sends it, RTP taking and keeping slots, sender reports renamed) and its
//! transport-cc recorder (`webrtc::twcc`: the header extension parser, arrivals, feedback),
//! and a simulcast camera's rid map (`webrtc::rids`: rids read from the extension, SSRCs
//! rewritten both ways).
//!
//! Properties: no panic and no write outside the packet; a packet keeps its length; an
//! outgoing RTP packet that is sent carries a declared slot SSRC and the browser's payload
//! type for its codec.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use webrtc::{SlotKind, Slots};

const SLOT_SSRCS: [u32; 3] = [1000, 1001, 2000];

fuzz_target!(|data: &[u8]| {
    let mut slots = Slots::default();
    slots.add_slot(SlotKind::Audio, SLOT_SSRCS[0]);
    slots.add_slot(SlotKind::Audio, SLOT_SSRCS[1]);
    slots.add_slot(SlotKind::Video, SLOT_SSRCS[2]);
    slots.map_pt(SlotKind::Audio, 111, 109);
    slots.map_pt(SlotKind::Video, 97, 120);
    let rids = webrtc::rids::Rids::new(4, &[("q", 3000), ("h", 3001), ("f", 3002)])
        .expect("three distinct rids");
    slots.set_simulcast(rids);
    let mut twcc = webrtc::twcc::Recorder::default();
    let t0 = Instant::now();
    // Packets: a length byte, a direction-and-clock byte, then the packet.
    let mut rest = data;
    while rest.len() >= 2 {
        let (len, ctl) = (usize::from(rest[0]), rest[1]);
        let body = &rest[2..];
        let n = len.min(body.len());
        let mut pkt = body[..n].to_vec();
        rest = &body[n..];
        let now = t0 + Duration::from_millis(u64::from(ctl & 0x7f) * 100);
        if ctl & 0x80 == 0 {
            if let Some(seq) = webrtc::twcc::sequence(&pkt, 3) {
                twcc.on_packet(now, seq, 7);
            }
            slots.inbound(&mut pkt);
            assert_eq!(pkt.len(), n);
            if twcc.due(now) {
                let mut fb = [0u8; 2 * webrtc::twcc::WINDOW + 200];
                if let Some(m) = twcc.write(now, 1, &mut fb) {
                    assert!(m % 4 == 0 && m >= 20 && m <= fb.len());
                }
            }
            continue;
        }
        let is_rtcp = n >= 2 && (192..=223).contains(&pkt[1]);
        if slots.outbound(now, &mut pkt).is_ok() {
            assert_eq!(pkt.len(), n);
            if !is_rtcp && n >= 12 {
                let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
                assert!(SLOT_SSRCS.contains(&ssrc), "sent outside a slot: {ssrc}");
                assert!(matches!(pkt[1] & 0x7f, 109 | 120));
            }
        }
    }
});
