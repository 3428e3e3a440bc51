//! The packet builders write what the RFCs say, checked by parsing with the webrtc-rs crates
//! and against the byte layouts the tests used to write by hand.

use bytes::Bytes;
use rtc_shared::marshal::Unmarshal;
use rtp::codec::h264::H264Packet;
use rtp::packetizer::Depacketizer;
use testkit::packet::{self, h264, vp8, ReportBlock, Rtp};

#[test]
fn rtp_header_fields_and_size() {
    let p = Rtp::new(0x1234_5678)
        .pt(111)
        .seq(0xbeef)
        .ts(0xdead_0001)
        .marker(true)
        .payload(&[1, 2, 3])
        .size(40)
        .fill(0x55)
        .build();
    assert_eq!(p.len(), 40);
    let parsed = rtp::packet::Packet::unmarshal(&mut &p[..]).unwrap();
    let h = &parsed.header;
    assert_eq!(
        (h.version, h.marker, h.payload_type, h.sequence_number),
        (2, true, 111, 0xbeef)
    );
    assert_eq!((h.timestamp, h.ssrc), (0xdead_0001, 0x1234_5678));
    assert_eq!(&parsed.payload[..3], &[1, 2, 3]);
    assert!(parsed.payload[3..].iter().all(|&b| b == 0x55));
    // Never cut below the header.
    assert_eq!(packet::rtp(1, 0, 0, 0).len(), 12);
    assert_eq!(packet::rtp(1, 2, 3, 200).len(), 200);
}

#[test]
fn audio_level_is_a_one_byte_extension() {
    let p = Rtp::new(9)
        .pt(111)
        .seq(1)
        .audio_level(1, 10)
        .size(100)
        .build();
    // V=2 with X, then after the fixed header: 0xBEDE, one word, ID 1 / length 0, level,
    // two bytes of padding (RFC 8285, RFC 6464).
    assert_eq!(p[0], 0x90);
    assert_eq!(&p[12..20], &[0xbe, 0xde, 0, 1, 0x10, 10, 0, 0]);
    let parsed = rtp::packet::Packet::unmarshal(&mut &p[..]).unwrap();
    assert_eq!(
        parsed.header.get_extension(1),
        Some(Bytes::from_static(&[10]))
    );
    assert_eq!(p.len(), 100);
}

#[test]
fn tagged_fill_differs_by_stream_and_number() {
    let a = Rtp::new(1).seq(1).size(64).tagged().build();
    let b = Rtp::new(1).seq(2).size(64).tagged().build();
    let c = Rtp::new(2).seq(1).size(64).tagged().build();
    assert_ne!(a[12..], b[12..]);
    assert_ne!(a[12..], c[12..]);
    assert_eq!(a, Rtp::new(1).seq(1).size(64).tagged().build());
}

#[test]
fn vp8_descriptors() {
    let d = |start, key, tid| {
        // The descriptor and the payload header's first byte, then some frame data.
        let mut payload = vp8(start, key, tid);
        payload.extend_from_slice(&[0x9d, 0x01, 0x2a, 0, 0, 0]);
        let mut pkt = rtp::codec::vp8::Vp8Packet::default();
        let data = pkt.depacketize(&Bytes::from(payload)).unwrap();
        (pkt.s, pkt.tid, data[0] & 1)
    };
    assert_eq!(d(true, true, None), (1, 0, 0));
    assert_eq!(d(false, false, None), (0, 0, 1));
    assert_eq!(d(true, false, Some(1)), (1, 1, 1));
    assert_eq!(vp8(true, true, Some(0)), vec![0x90, 0x20, 0x00, 0x50]);
}

#[test]
fn h264_single_fu_a_and_stap_a() {
    assert_eq!(h264::slice(true) & 0x1f, h264::IDR);
    assert_eq!(h264::slice(false) & 0x1f, h264::NON_IDR);
    let [ind, head] = h264::fu_a(true, true, false);
    assert_eq!((ind & 0x1f, ind & 0x60), (h264::FU_A, 0x60));
    assert_eq!(
        (head & 0x80, head & 0x40, head & 0x1f),
        (0x80, 0, h264::IDR)
    );
    let stap = h264::stap_a(&[&[0x67, 1, 2], &[0x68, 3]]);
    assert_eq!(
        stap,
        vec![0x60 | h264::STAP_A, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 3]
    );

    // A keyframe through an encoder's packetizer: STAP-A (SPS, PPS), then FU-A fragments
    // of the IDR that reassemble to one NAL unit of the asked size.
    let key = h264::frame(true, 3000, 1200);
    assert_eq!(key[0][0] & 0x1f, h264::STAP_A);
    assert!(key[1..]
        .iter()
        .all(|p| p[0] & 0x1f == h264::FU_A && p.len() <= 1200));
    assert_eq!(
        key[1][1] & 0xdf,
        0x80 | h264::IDR,
        "first fragment starts the IDR"
    );
    let mut depack = H264Packet::default();
    let mut nal = Vec::new();
    for p in &key[1..] {
        nal.extend_from_slice(&depack.depacketize(&Bytes::from(p.clone())).unwrap());
    }
    assert_eq!(nal.len(), 4 + 3000, "start code and the slice");
    assert_eq!(nal[4], h264::slice(true));
    // A small delta frame is one single NAL unit packet.
    assert_eq!(
        h264::frame(false, 500, 1200),
        vec![{
            let mut v = vec![h264::slice(false)];
            v.resize(500, 0x5a);
            v
        }]
    );
}

fn rtcp(bytes: &[u8]) -> Vec<Box<dyn rtcp::packet::Packet>> {
    rtcp::packet::unmarshal(&mut &bytes[..]).expect("valid RTCP")
}

#[test]
fn rtcp_packets_parse_back() {
    use rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
    use rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtcp::receiver_report::ReceiverReport;
    use rtcp::sender_report::SenderReport;
    use rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

    let block = ReportBlock {
        ssrc: 5,
        fraction_lost: 64,
        total_lost: 10,
        last_sequence_number: 1100,
        jitter: 90,
        last_sender_report: 7,
        delay: 8,
    };
    let sr = packet::sender_report(
        1,
        0x0102_0304_0506_0708,
        9000,
        18,
        18_000,
        std::slice::from_ref(&block),
    );
    let p = rtcp(&sr);
    let sr = p[0].as_any().downcast_ref::<SenderReport>().unwrap();
    assert_eq!(
        (sr.ssrc, sr.ntp_time, sr.rtp_time),
        (1, 0x0102_0304_0506_0708, 9000)
    );
    assert_eq!(sr.reports, vec![block.clone()]);

    let rr = packet::compound(&[packet::receiver_report(2, &[block]), packet::sdes(2, "me")]);
    let p = rtcp(&rr);
    assert_eq!(p.len(), 2);
    let r = p[0].as_any().downcast_ref::<ReceiverReport>().unwrap();
    assert_eq!((r.ssrc, r.reports.len()), (2, 1));

    let lost: Vec<u16> = (0..40).map(|i| 65_530u16.wrapping_add(i * 2)).collect();
    let n = packet::nack(3, 4, &lost);
    let p = rtcp(&n);
    let nack = p[0].as_any().downcast_ref::<TransportLayerNack>().unwrap();
    assert_eq!((nack.sender_ssrc, nack.media_ssrc), (3, 4));
    let back: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
    assert_eq!(back, lost);

    let p = rtcp(&packet::pli(5, 6));
    let pli = p[0]
        .as_any()
        .downcast_ref::<PictureLossIndication>()
        .unwrap();
    assert_eq!((pli.sender_ssrc, pli.media_ssrc), (5, 6));

    let p = rtcp(&packet::fir(7, 8, 3));
    let fir = p[0].as_any().downcast_ref::<FullIntraRequest>().unwrap();
    assert_eq!((fir.fir[0].ssrc, fir.fir[0].sequence_number), (8, 3));

    let p = rtcp(&packet::remb(9, 600_000, &[10, 11]));
    let remb = p[0]
        .as_any()
        .downcast_ref::<ReceiverEstimatedMaximumBitrate>()
        .unwrap();
    assert_eq!(
        (remb.bitrate, remb.ssrcs.clone()),
        (600_000.0, vec![10, 11])
    );
}
