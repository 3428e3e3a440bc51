use super::*;

use codecs::h264::{H264Decoder, H264Encoder};
use codecs::{EncoderSettings, I420Frame};

/// `frames` H.264 frames of one colour from a 320x180 camera, as RTP (PT 96, SSRC 0x55).
fn camera_packets(frames: usize) -> Vec<Vec<u8>> {
    let mut enc = H264Encoder::new(EncoderSettings::new(320, 180)).unwrap();
    let pic = I420Frame::solid(320, 180, (81, 90, 240)).unwrap();
    let mut pk = H264Packetizer::new(PacketizerConfig {
        ssrc: 0x55,
        payload_type: 96,
        first_seq: 10,
        mtu: 1200,
    })
    .unwrap();
    let mut out = Vec::new();
    for i in 0..frames {
        let f = enc.encode(&pic).unwrap().expect("a frame");
        let mut packets = Vec::new();
        pk.packetize(&f.data, i as u32 * 3000, &mut packets)
            .unwrap();
        out.extend(packets.iter().map(|p| p.marshal().unwrap().to_vec()));
    }
    out
}

#[test]
fn senders_packets_become_whole_units_and_other_codecs_are_counted() {
    let mut v = CompositeVideo::new(0x77, 96, 97);
    for p in camera_packets(5) {
        v.on_video(Instant::now(), 3, &RtpView::parse(&p).unwrap());
    }
    let units = v.take_units();
    assert_eq!(units.len(), 5);
    assert!(units[0].frame.keyframe && units.iter().all(|u| u.sender == 3));
    assert_eq!(units[0].codec, VideoCodec::H264);
    // The units decode: what the compositor will get.
    let mut d = H264Decoder::new().unwrap();
    let pic = units
        .iter()
        .filter_map(|u| d.decode(&u.frame.data).unwrap())
        .last()
        .unwrap();
    assert_eq!((pic.width(), pic.height()), (320, 180));
    assert!(v.take_units().is_empty());
    // A payload type no compositor decoder takes.
    let mut other = camera_packets(1).remove(0);
    other[1] = 100;
    v.on_video(Instant::now(), 3, &RtpView::parse(&other).unwrap());
    assert_eq!(v.stats.unknown_codec, 1);
}

#[test]
fn a_receivers_pli_or_fir_asks_the_compositor_for_a_keyframe() {
    let now = Instant::now();
    let mut v = CompositeVideo::new(0x77, 96, 97);
    assert!(v.take_keyframe_wanted(), "the first frame is a keyframe");
    assert!(!v.take_keyframe_wanted());
    // A receiver report, then a PLI in one compound packet.
    let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
    let mut pli = [0u8; 12];
    let n = rtcp_write::pli(&mut pli, 9, 0x77).unwrap();
    compound.extend_from_slice(&pli[..n]);
    v.on_rtcp(now, 2, &compound);
    assert!(v.take_keyframe_wanted());
    // Garbage is no request, and no panic.
    v.on_rtcp(now, 2, &[0x81, 206, 0xff, 0xff]);
    v.on_rtcp(now, 2, &[1, 2]);
    v.on_rtcp(now, 2, &[0x80, 200, 0, 0]);
    assert!(!v.take_keyframe_wanted());
}

#[test]
fn the_bitrate_follows_the_lowest_estimate_in_steps() {
    let t0 = Instant::now();
    let mut v = CompositeVideo::new(0x77, 96, 97);
    let remb = |bps: u64| {
        let mut b = [0u8; 24];
        let n = rtcp_write::remb(&mut b, 9, bps, &[0x77]).unwrap();
        b[..n].to_vec()
    };
    v.on_rtcp(t0, 2, &remb(2_000_000));
    assert_eq!(v.take_bitrate(), Some(2_000_000));
    // Another receiver with less: but not within 2 s of the last move.
    v.on_rtcp(t0 + Duration::from_secs(1), 3, &remb(800_000));
    assert_eq!(v.take_bitrate(), None);
    v.on_rtcp(t0 + Duration::from_secs(3), 3, &remb(800_000));
    assert_eq!(v.take_bitrate(), Some(800_000));
    // A small wobble moves nothing; a tiny estimate is held at the floor.
    v.on_rtcp(t0 + Duration::from_secs(6), 3, &remb(850_000));
    assert_eq!(v.take_bitrate(), None);
    v.on_rtcp(t0 + Duration::from_secs(9), 3, &remb(10_000));
    assert_eq!(v.take_bitrate(), Some(300_000));
}

#[test]
fn a_simulcast_sender_is_decoded_from_one_layer() {
    let mut v = CompositeVideo::new(0x77, 96, 97);
    // Layers 0x54 (low), 0x55 (middle), 0x56 (top); members: the sender and three more.
    v.on_simulcast(3, &[0x54, 0x55, 0x56]);
    v.members_seen = vec![1, 2, 3, 4];
    let mid = camera_packets(3);
    let mut top = camera_packets(3);
    for p in &mut top {
        p[8..12].copy_from_slice(&0x56u32.to_be_bytes());
    }
    for (a, b) in mid.iter().zip(&top) {
        v.on_video(Instant::now(), 3, &RtpView::parse(a).unwrap());
        v.on_video(Instant::now(), 3, &RtpView::parse(b).unwrap());
    }
    assert_eq!(
        v.take_units().len(),
        3,
        "the middle layer's frames, once each"
    );
    assert_eq!(v.stats.other_layer, top.len() as u64);
}

#[test]
fn a_delivered_frame_is_packetized_once() {
    let mut v = CompositeVideo::new(0x77, 96, 97);
    let mut enc = H264Encoder::new(EncoderSettings::new(640, 360)).unwrap();
    let f = enc
        .encode(&I420Frame::solid(640, 360, (41, 240, 110)).unwrap())
        .unwrap()
        .unwrap();
    v.deliver(&f.data, 9000);
    assert_eq!(v.stats.frames_out, 1);
    assert!(v.stats.packets_out >= 1);
    let first = &v.outbox[0];
    let view = RtpView::parse(first).unwrap();
    assert_eq!(
        (view.ssrc(), view.payload_type(), view.timestamp()),
        (0x77, 96, 9000)
    );
    assert!(RtpView::parse(v.outbox.last().unwrap()).unwrap().marker());
}
