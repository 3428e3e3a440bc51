use super::*;
use rtc_shared::marshal::Unmarshal;
use rtcp::transport_feedbacks::transport_layer_cc::{SymbolTypeTcc, TransportLayerCc};

fn parse(b: &[u8]) -> TransportLayerCc {
    // webrtc-rs's parser, an independent reading of the draft.
    let mut raw = b;
    TransportLayerCc::unmarshal(&mut raw).expect("webrtc-rs reads our feedback")
}

/// An RTP packet with a one-byte-header extension block: audio level (id 1), then the
/// transport-wide sequence number (id 3).
fn with_twcc(seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 0xbe, 0xde, 0, 2];
    p.extend_from_slice(&[0x10, 0x8a, 0x31]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&[0xfc, 0xff]);
    p
}

#[test]
fn the_sequence_number_is_found_in_either_header_form() {
    assert_eq!(sequence(&with_twcc(513), 3), Some(513));
    assert_eq!(sequence(&with_twcc(513), 1), None, "id 1 holds one byte");
    assert_eq!(sequence(&with_twcc(513), 5), None);
    // Two-byte form (0x1000): id 3, length 2.
    let mut p = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 0x10, 0x00, 0, 1];
    p.extend_from_slice(&[3, 2, 0x12, 0x34]);
    assert_eq!(sequence(&p, 3), Some(0x1234));
    // No extension, truncated blocks, junk: nothing, and no panic.
    assert_eq!(
        sequence(&[0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7], 3),
        None
    );
    let full = with_twcc(9);
    for n in 0..full.len() {
        let _ = sequence(&full[..n], 3);
    }
}

#[test]
fn feedback_reports_arrivals_and_losses_as_webrtc_rs_reads_them() {
    let t0 = Instant::now();
    let mut r = Recorder::default();
    assert!(!r.due(t0));
    // 100..=109 arrive every 5 ms, but 103 is lost and 106 comes 100 ms late (a large
    // delta, then a negative one).
    for (i, seq) in (100u16..110).enumerate() {
        if seq == 103 || seq == 106 {
            continue;
        }
        r.on_packet(t0 + Duration::from_millis(5 * i as u64), seq, 0xabc);
    }
    r.on_packet(t0 + Duration::from_millis(130), 106, 0xabc);
    assert!(r.due(t0 + Duration::from_millis(130)));
    let mut buf = [0u8; 2 * WINDOW + 200];
    let n = r
        .write(t0 + Duration::from_millis(130), 1, &mut buf)
        .unwrap();
    assert_eq!(n % 4, 0);
    let fb = parse(&buf[..n]);
    assert_eq!((fb.sender_ssrc, fb.media_ssrc), (1, 0xabc));
    assert_eq!((fb.base_sequence_number, fb.packet_status_count), (100, 10));
    assert_eq!(fb.fb_pkt_count, 0);
    assert_eq!(fb.recv_deltas.len(), 9, "nine received, one lost");
    let deltas: Vec<i64> = fb.recv_deltas.iter().map(|d| d.delta).collect();
    // From the reference time (a multiple of 64 ms), then packet to packet, in µs.
    assert_eq!(
        &deltas[1..],
        &[5_000, 5_000, 10_000, 5_000, 105_000, -95_000, 5_000, 5_000][..]
    );
    assert_eq!(
        fb.recv_deltas[5].type_tcc_packet,
        SymbolTypeTcc::PacketReceivedLargeDelta
    );
    // Nothing new: not due; the next one continues the numbering and the count.
    assert!(!r.due(t0 + Duration::from_secs(1)));
    r.on_packet(t0 + Duration::from_millis(200), 110, 0xabc);
    let n = r
        .write(t0 + Duration::from_millis(200), 1, &mut buf)
        .unwrap();
    let fb = parse(&buf[..n]);
    assert_eq!(
        (
            fb.base_sequence_number,
            fb.packet_status_count,
            fb.fb_pkt_count
        ),
        (110, 1, 1)
    );
}

#[test]
fn a_late_or_far_packet_is_handled_without_panic() {
    let t0 = Instant::now();
    let mut r = Recorder::default();
    r.on_packet(t0, 65_530, 1);
    // Wraps around 0.
    r.on_packet(t0 + Duration::from_millis(1), 3, 1);
    let mut buf = [0u8; 2 * WINDOW + 200];
    let n = r.write(t0, 1, &mut buf).unwrap();
    let fb = parse(&buf[..n]);
    assert_eq!(
        (fb.base_sequence_number, fb.packet_status_count),
        (65_530, 10)
    );
    // Already reported: ignored. Far ahead: a fresh window.
    r.on_packet(t0, 65_531, 1);
    assert!(!r.due(t0 + Duration::from_secs(1)));
    r.on_packet(t0 + Duration::from_secs(2), 20_000, 1);
    let n = r.write(t0 + Duration::from_secs(2), 1, &mut buf).unwrap();
    assert_eq!(parse(&buf[..n]).base_sequence_number, 20_000);
    // Too small a buffer: no feedback, no panic.
    r.on_packet(t0 + Duration::from_secs(3), 20_001, 1);
    assert_eq!(
        r.write(t0 + Duration::from_secs(3), 1, &mut buf[..10]),
        None
    );
}
