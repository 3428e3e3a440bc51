//! H.264 packetizer and depacketizer: round trips, MTU splitting, loss, reordering, keyframes.

use rtp::packet::Packet;
use rtpvideo::h264::{H264Depacketizer, H264Packetizer, NAL_FU_A, NAL_STAP_A};
use rtpvideo::keyframe::is_keyframe_start;
use rtpvideo::{PacketizerConfig, PayloadError, VideoCodec};

const MTU: usize = 1200;

fn cfg(first_seq: u16) -> PacketizerConfig {
    PacketizerConfig {
        ssrc: 0x1234_5678,
        payload_type: 102,
        first_seq,
        mtu: MTU,
    }
}

/// A NAL unit of `len` bytes with header `head` and a pattern that has no start code in it.
fn nal(head: u8, len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![head];
    v.extend((1..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed) | 0x10));
    v
}

fn annex_b(units: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for u in units {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(u);
    }
    v
}

/// SPS, PPS and a 5000-byte IDR slice.
fn keyframe_units(seed: u8) -> Vec<Vec<u8>> {
    vec![
        nal(0x67, 20, seed),
        nal(0x68, 5, seed),
        nal(0x65, 5000, seed),
    ]
}

fn delta_units(seed: u8) -> Vec<Vec<u8>> {
    vec![nal(0x41, 700, seed)]
}

fn packets(p: &mut H264Packetizer, units: &[Vec<u8>], ts: u32) -> Vec<Packet> {
    let mut out = Vec::new();
    p.packetize(&annex_b(units), ts, &mut out).unwrap();
    out
}

fn push_all(
    d: &mut H264Depacketizer,
    pkts: &[Packet],
) -> Vec<Result<Option<rtpvideo::Frame>, PayloadError>> {
    pkts.iter().map(|p| d.push_packet(p)).collect()
}

#[test]
fn keyframe_round_trip_splits_at_the_mtu() {
    let mut p = H264Packetizer::new(cfg(65530)).unwrap();
    let units = keyframe_units(1);
    let pkts = packets(&mut p, &units, 9000);
    // STAP-A with SPS and PPS, then the IDR as FU-A fragments.
    assert_eq!(pkts[0].payload[0] & 0x1f, NAL_STAP_A);
    assert!(pkts.len() >= 6, "{} packets", pkts.len());
    for (i, pkt) in pkts.iter().enumerate() {
        assert!(pkt.payload.len() + 12 <= MTU);
        assert_eq!(pkt.header.marker, i == pkts.len() - 1);
        assert_eq!(pkt.header.timestamp, 9000);
        assert_eq!(pkt.header.ssrc, 0x1234_5678);
        assert_eq!(pkt.header.payload_type, 102);
        // Sequence numbers run on across the wrap.
        assert_eq!(pkt.header.sequence_number, 65530u16.wrapping_add(i as u16));
        if i > 0 {
            assert_eq!(pkt.payload[0] & 0x1f, NAL_FU_A);
        }
    }
    assert!(is_keyframe_start(VideoCodec::H264, &pkts[0].payload));
    assert!(is_keyframe_start(VideoCodec::H264, &pkts[1].payload));
    assert!(!is_keyframe_start(VideoCodec::H264, &pkts[2].payload));

    let mut d = H264Depacketizer::new();
    let results = push_all(&mut d, &pkts);
    let (last, rest) = results.split_last().unwrap();
    assert!(rest.iter().all(|r| matches!(r, Ok(None))), "{rest:?}");
    let frame = last.clone().unwrap().expect("a frame at the marker");
    assert_eq!(frame.data, annex_b(&units));
    assert_eq!(frame.timestamp, 9000);
    assert!(frame.keyframe);
    assert!(!d.needs_keyframe());

    // A delta frame fits one packet (single NAL unit mode) and comes out whole.
    let pkts = packets(&mut p, &delta_units(2), 12000);
    assert_eq!(pkts.len(), 1);
    assert_eq!(
        pkts[0].header.sequence_number,
        65530u16.wrapping_add(results.len() as u16)
    );
    let f = d.push_packet(&pkts[0]).unwrap().unwrap();
    assert_eq!(f.data, annex_b(&delta_units(2)));
    assert!(!f.keyframe);
}

#[test]
fn the_rtp_crate_reads_what_we_write() {
    use rtp::packetizer::Depacketizer;
    let mut p = H264Packetizer::new(cfg(1)).unwrap();
    let units = keyframe_units(3);
    let mut theirs = rtp::codec::h264::H264Packet::default();
    let mut got = Vec::new();
    for pkt in packets(&mut p, &units, 1) {
        got.extend_from_slice(&theirs.depacketize(&pkt.payload).unwrap());
    }
    assert_eq!(got, annex_b(&units));
}

#[test]
fn a_lost_fragment_drops_the_frame_and_waits_for_a_keyframe() {
    let mut p = H264Packetizer::new(cfg(100)).unwrap();
    let mut d = H264Depacketizer::new();
    let mut key = packets(&mut p, &keyframe_units(1), 0);
    key.remove(3);
    let results = push_all(&mut d, &key);
    assert!(
        results.iter().all(|r| !matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
    assert!(results
        .iter()
        .any(|r| matches!(r, Err(PayloadError::Gap { missing: 1, .. }))));
    assert!(d.needs_keyframe());

    // Delta frames are refused until the next keyframe.
    let delta = packets(&mut p, &delta_units(2), 3000);
    assert!(matches!(
        d.push_packet(&delta[0]),
        Err(PayloadError::NeedKeyframe { timestamp: 3000 })
    ));
    let key = packets(&mut p, &keyframe_units(4), 6000);
    let frame = push_all(&mut d, &key).pop().unwrap().unwrap().unwrap();
    assert!(frame.keyframe);
    assert_eq!(frame.data, annex_b(&keyframe_units(4)));
    let delta = packets(&mut p, &delta_units(5), 9000);
    assert!(d.push_packet(&delta[0]).unwrap().is_some());
}

#[test]
fn a_keyframe_right_after_a_loss_is_kept() {
    let mut p = H264Packetizer::new(cfg(7)).unwrap();
    let mut d = H264Depacketizer::new();
    let key = packets(&mut p, &keyframe_units(1), 0);
    push_all(&mut d, &key);
    let lost = packets(&mut p, &delta_units(2), 3000);
    drop(lost);
    // The packet after the gap starts a keyframe: the frame is whole.
    let key = packets(&mut p, &keyframe_units(3), 6000);
    let results = push_all(&mut d, &key);
    assert!(matches!(results[0], Err(PayloadError::Gap { .. })));
    let f = results.last().unwrap().clone().unwrap().unwrap();
    assert!(f.keyframe);
}

#[test]
fn reordering_gives_errors_not_a_corrupted_frame() {
    let mut p = H264Packetizer::new(cfg(500)).unwrap();
    let mut d = H264Depacketizer::new();
    let mut key = packets(&mut p, &keyframe_units(1), 0);
    key.swap(2, 3);
    let results = push_all(&mut d, &key);
    assert!(matches!(results[2], Err(PayloadError::Gap { .. })));
    assert!(matches!(results[3], Err(PayloadError::Late { .. })));
    assert!(results.iter().all(|r| !matches!(r, Ok(Some(_)))));
    // A duplicate is late too.
    let key = packets(&mut p, &keyframe_units(2), 3000);
    let mut frames = 0;
    for pkt in &key {
        if d.push_packet(pkt).unwrap().is_some() {
            frames += 1;
        }
        if !pkt.header.marker {
            assert!(matches!(d.push_packet(pkt), Err(PayloadError::Late { .. })));
        }
    }
    assert_eq!(frames, 1);
}

#[test]
fn malformed_payloads_are_errors_and_drop_the_frame() {
    let mut d = H264Depacketizer::new();
    let cases: &[&[u8]] = &[
        &[],
        &[0x80, 1, 2],             // forbidden bit
        &[0x1f, 1],                // reserved type
        &[0x18],                   // empty STAP-A
        &[0x18, 0x00, 0x09, 0x67], // STAP-A size past the end
        &[0x18, 0x00],             // STAP-A size cut short
        &[0x18, 0x00, 0x00],       // zero-size unit
        &[0x1c],                   // FU-A without FU header
        &[0x1c, 0xc5, 1],          // start and end together
        &[0x1c, 0x98, 1],          // FU-A of a STAP-A
    ];
    for (i, c) in cases.iter().enumerate() {
        let r = d.push(i as u16, i as u32, true, c);
        assert!(
            matches!(r, Err(PayloadError::Malformed { .. })),
            "{c:?}: {r:?}"
        );
    }
    assert_eq!(cases.len(), 10);
    // A continuation whose start never came.
    assert_eq!(
        d.push(10, 500, true, &[0x1c, 0x45, 1]),
        Err(PayloadError::Incomplete { timestamp: 500 })
    );
    for (i, t) in [25u8, 26, 27, 29].into_iter().enumerate() {
        let r = d.push(11 + i as u16, 1000 + u32::from(t), true, &[t, 1, 2, 3]);
        assert_eq!(r, Err(PayloadError::Unsupported(t)));
    }
    // A frame with one bad packet in the middle does not come out.
    let mut p = H264Packetizer::new(cfg(30)).unwrap();
    let mut key = packets(&mut p, &keyframe_units(1), 5000);
    let mut bad = key[2].payload.to_vec();
    bad[1] = 0xc5; // start and end bits together
    key[2].payload = bad.into();
    let results = push_all(&mut d, &key);
    assert!(
        results.iter().all(|r| !matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
}

#[test]
fn markerless_frames_end_at_the_next_timestamp() {
    let mut d = H264Depacketizer::new();
    let idr = nal(0x65, 50, 1);
    let p_slice = nal(0x41, 50, 2);
    assert_eq!(d.push(1, 0, false, &idr), Ok(None));
    let f = d.push(2, 3000, false, &p_slice).unwrap().unwrap();
    assert_eq!((f.timestamp, f.keyframe), (0, true));
    let f = d.push(3, 6000, false, &idr).unwrap().unwrap();
    assert_eq!((f.timestamp, f.keyframe), (3000, false));
}

#[test]
fn no_prefix_of_any_packet_panics() {
    let mut p = H264Packetizer::new(cfg(0)).unwrap();
    let mut pkts = packets(&mut p, &keyframe_units(9), 0);
    pkts.extend(packets(&mut p, &delta_units(9), 1));
    let mut d = H264Depacketizer::new();
    let mut seq = 0u16;
    for pkt in &pkts {
        for len in 0..=pkt.payload.len().min(64) {
            for marker in [false, true] {
                let _ = d.push(seq, u32::from(seq / 3), marker, &pkt.payload[..len]);
                seq = seq.wrapping_add(1);
            }
        }
    }
}

#[test]
fn a_tiny_mtu_is_refused_and_empty_input_is_an_error() {
    let mut c = cfg(0);
    c.mtu = 13;
    assert!(matches!(H264Packetizer::new(c), Err(PayloadError::Mtu(13))));
    let mut p = H264Packetizer::new(cfg(0)).unwrap();
    assert_eq!(
        p.packetize(&[], 0, &mut Vec::new()),
        Err(PayloadError::EmptyFrame)
    );
}

#[test]
fn a_restarted_sequence_is_followed_after_a_keyframe() {
    let mut d = H264Depacketizer::new();
    let idr = nal(0x65, 50, 1);
    let p_slice = nal(0x41, 50, 2);
    assert!(d.push(30_000, 0, true, &idr).unwrap().is_some());
    assert!(d.push(30_001, 3000, true, &p_slice).unwrap().is_some());
    // Close behind: a late packet. Far behind: the sender started again.
    assert_eq!(
        d.push(29_990, 3000, true, &p_slice),
        Err(PayloadError::Late { seq: 29_990 })
    );
    assert_eq!(
        d.push(100, 6000, true, &p_slice),
        Err(PayloadError::Gap {
            seq: 100,
            missing: 0
        })
    );
    assert!(matches!(
        d.push(101, 7000, true, &p_slice),
        Err(PayloadError::NeedKeyframe { .. })
    ));
    let f = d.push(102, 9000, true, &idr).unwrap().unwrap();
    assert!(f.keyframe);
    assert!(d.push(103, 12000, true, &p_slice).unwrap().is_some());
}
