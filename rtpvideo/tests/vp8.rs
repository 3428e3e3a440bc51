//! VP8 packetizer and depacketizer: descriptor, partitions, picture IDs, loss, keyframes.

use rtp::packet::Packet;
use rtpvideo::keyframe::is_keyframe_start;
use rtpvideo::vp8::{first_partition_end, Descriptor, Vp8Depacketizer, Vp8Packetizer};
use rtpvideo::{PacketizerConfig, PayloadError, VideoCodec};

const MTU: usize = 1000;

fn cfg() -> PacketizerConfig {
    PacketizerConfig {
        ssrc: 42,
        payload_type: 96,
        first_seq: 65000,
        mtu: MTU,
    }
}

/// A VP8 frame with a valid frame tag: first partition of `first` bytes, `len` in all.
fn frame(key: bool, first: usize, len: usize, seed: u8) -> Vec<u8> {
    let tag = u32::from(!key) | 1 << 4 | (first as u32) << 5;
    let mut v = tag.to_le_bytes()[..3].to_vec();
    if key {
        v.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
    }
    let header = v.len();
    v.extend((header..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)));
    v
}

fn packets(p: &mut Vp8Packetizer, f: &[u8], ts: u32) -> Vec<Packet> {
    let mut out = Vec::new();
    p.packetize(f, ts, &mut out).unwrap();
    out
}

#[test]
fn keyframe_round_trip_with_partitions_and_picture_ids() {
    let mut p = Vp8Packetizer::new(cfg(), 0x7ffe).unwrap();
    let key = frame(true, 1500, 4000, 1);
    assert_eq!(first_partition_end(&key), Some(1510));
    let pkts = packets(&mut p, &key, 90_000);
    let mut partition_starts = Vec::new();
    let mut at = 0;
    for (i, pkt) in pkts.iter().enumerate() {
        assert!(pkt.payload.len() + 12 <= MTU);
        assert_eq!(pkt.header.marker, i == pkts.len() - 1);
        assert_eq!(pkt.header.sequence_number, 65000 + i as u16);
        let d = Descriptor::parse(&pkt.payload).unwrap();
        assert_eq!(d.picture_id, Some(0x7ffe));
        if d.start {
            partition_starts.push((at, d.partition));
        }
        // No packet straddles the partition boundary.
        let n = pkt.payload.len() - d.len;
        assert!(at >= 1510 || at + n <= 1510, "packet {i} at {at} +{n}");
        assert_eq!(d.partition, u8::from(at >= 1510));
        at += n;
    }
    assert_eq!(at, key.len());
    assert_eq!(partition_starts, vec![(0, 0), (1510, 1)]);
    assert!(is_keyframe_start(VideoCodec::Vp8, &pkts[0].payload));
    assert!(pkts[1..]
        .iter()
        .all(|p| !is_keyframe_start(VideoCodec::Vp8, &p.payload)));

    let mut d = Vp8Depacketizer::new();
    let mut out = None;
    for pkt in &pkts {
        if let Some(f) = d.push_packet(pkt).unwrap() {
            assert!(out.is_none());
            out = Some(f);
        }
    }
    let f = out.unwrap();
    assert_eq!(f.data, key);
    assert!(f.keyframe);
    assert_eq!(f.timestamp, 90_000);

    // The picture ID wraps at 15 bits; an interframe is not a keyframe.
    let inter = frame(false, 200, 900, 2);
    let pkts2 = packets(&mut p, &inter, 93_000);
    assert_eq!(
        Descriptor::parse(&pkts2[0].payload).unwrap().picture_id,
        Some(0x7fff)
    );
    let pkts3 = packets(&mut p, &inter, 96_000);
    assert_eq!(
        Descriptor::parse(&pkts3[0].payload).unwrap().picture_id,
        Some(0)
    );
    assert!(!is_keyframe_start(VideoCodec::Vp8, &pkts2[0].payload));
    let mut last = None;
    for pkt in &pkts2 {
        last = d.push_packet(pkt).unwrap();
    }
    let f = last.unwrap();
    assert_eq!(f.data, inter);
    assert!(!f.keyframe);
}

#[test]
fn the_rtp_crate_reads_our_descriptor() {
    use rtp::packetizer::Depacketizer;
    let mut p = Vp8Packetizer::new(cfg(), 300).unwrap();
    let key = frame(true, 100, 2500, 3);
    let mut got = Vec::new();
    for pkt in packets(&mut p, &key, 0) {
        let mut theirs = rtp::codec::vp8::Vp8Packet::default();
        got.extend_from_slice(&theirs.depacketize(&pkt.payload).unwrap());
        assert_eq!(theirs.picture_id, 300);
    }
    assert_eq!(got, key);
}

#[test]
fn loss_drops_the_frame_and_waits_for_a_key_frame() {
    let mut p = Vp8Packetizer::new(cfg(), 1).unwrap();
    let mut d = Vp8Depacketizer::new();
    // Before any key frame, an interframe is refused.
    let inter = frame(false, 100, 500, 1);
    let pkts = packets(&mut p, &inter, 0);
    assert_eq!(pkts.len(), 2, "partition 0, then the token partition");
    assert_eq!(d.push_packet(&pkts[0]), Ok(None));
    assert!(matches!(
        d.push_packet(&pkts[1]),
        Err(PayloadError::NeedKeyframe { timestamp: 0 })
    ));
    let mut key = packets(&mut p, &frame(true, 800, 3000, 2), 3000);
    key.remove(1);
    let mut gap = false;
    for pkt in &key {
        match d.push_packet(pkt) {
            Ok(None) => {}
            Err(PayloadError::Gap { .. }) => gap = true,
            other => panic!("{other:?}"),
        }
    }
    assert!(gap && d.needs_keyframe());
    let pkts = packets(&mut p, &inter, 6000);
    assert_eq!(d.push_packet(&pkts[0]), Ok(None));
    assert!(matches!(
        d.push_packet(&pkts[1]),
        Err(PayloadError::NeedKeyframe { .. })
    ));
    let key2 = frame(true, 800, 3000, 3);
    let mut out = None;
    for pkt in packets(&mut p, &key2, 9000) {
        out = d.push_packet(&pkt).unwrap();
    }
    assert_eq!(out.unwrap().data, key2);
}

#[test]
fn a_frame_that_lost_its_start_is_dropped() {
    let mut p = Vp8Packetizer::new(cfg(), 1).unwrap();
    let mut d = Vp8Depacketizer::new();
    let key = frame(true, 800, 3000, 2);
    for pkt in packets(&mut p, &key, 0) {
        d.push_packet(&pkt).unwrap();
    }
    // The next frame's first packet never comes; the rest must not make a frame.
    let pkts = packets(&mut p, &frame(false, 900, 2000, 4), 3000);
    let results: Vec<_> = pkts[1..].iter().map(|p| d.push_packet(p)).collect();
    assert!(matches!(results[0], Err(PayloadError::Gap { .. })));
    assert!(
        results.iter().all(|r| !matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
}

#[test]
fn reordered_packets_never_make_a_corrupted_frame() {
    let mut p = Vp8Packetizer::new(cfg(), 1).unwrap();
    let mut d = Vp8Depacketizer::new();
    let key = frame(true, 800, 3000, 2);
    let mut pkts = packets(&mut p, &key, 0);
    pkts.swap(1, 2);
    let results: Vec<_> = pkts.iter().map(|p| d.push_packet(p)).collect();
    assert!(matches!(results[2], Err(PayloadError::Late { .. })));
    assert!(
        results.iter().all(|r| !matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
}

#[test]
fn malformed_descriptors_are_errors() {
    let mut d = Vp8Depacketizer::new();
    let cases: &[&[u8]] = &[
        &[],
        &[0x90],                   // no data
        &[0x90, 0x80],             // I set, picture ID missing
        &[0x90, 0x80, 0x80],       // 15-bit picture ID cut short
        &[0x90, 0x80, 0x80, 0x01], // nothing after it
    ];
    for (i, c) in cases.iter().enumerate() {
        let r = d.push(i as u16, i as u32, true, c);
        assert!(
            matches!(r, Err(PayloadError::Malformed { .. })),
            "{c:?}: {r:?}"
        );
    }
    // A frame whose first packet is not the start of partition 0 lost its start.
    for (seq, p) in [(5, &[0x00, 0x50]), (6, &[0x13, 0x50])] {
        assert_eq!(
            d.push(seq, 66, true, p),
            Err(PayloadError::Incomplete { timestamp: 66 })
        );
    }
    // Picture ID changing within a frame.
    assert_eq!(d.push(7, 77, false, &[0x90, 0x80, 0x05, 0x50]), Ok(None));
    assert!(matches!(
        d.push(8, 77, true, &[0x80, 0x80, 0x06, 0x50]),
        Err(PayloadError::Malformed { .. })
    ));
    assert!(Descriptor::parse(&[0x90, 0xe0, 0x80]).is_none());
}

#[test]
fn no_prefix_of_any_packet_panics() {
    let mut p = Vp8Packetizer::new(cfg(), 5).unwrap();
    let mut pkts = packets(&mut p, &frame(true, 300, 2500, 1), 0);
    pkts.extend(packets(&mut p, &frame(false, 300, 400, 1), 1));
    let mut d = Vp8Depacketizer::new();
    let mut seq = 0u16;
    for pkt in &pkts {
        for len in 0..=pkt.payload.len().min(32) {
            for marker in [false, true] {
                let _ = d.push(seq, u32::from(seq / 3), marker, &pkt.payload[..len]);
                seq = seq.wrapping_add(1);
            }
        }
    }
    // Frames too short for a frame tag, and tags that claim more than there is.
    assert_eq!(first_partition_end(&[0x10]), None);
    assert_eq!(first_partition_end(&[0xff, 0xff, 0xff, 0]), None);
    let mut out = Vec::new();
    p.packetize(&[0xff, 0xff, 0xff, 1, 2], 5, &mut out).unwrap();
    assert_eq!(out.len(), 1);
}
