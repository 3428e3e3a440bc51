use super::*;
use crate::sdp::tests::CHROMIUM_OFFER;
use crate::sdp::{fingerprint_text, ice_token};

fn local() -> Local {
    Local {
        ice_ufrag: "srv1".into(),
        ice_pwd: ice_token(24),
        fingerprint: fingerprint_text(&[0xab; 32]),
        addr: "127.0.0.1:40000".parse().unwrap(),
        tcp: false,
    }
}

#[test]
fn without_slots_the_answer_takes_audio_and_rejects_the_rest() {
    let o = Offer::parse(CHROMIUM_OFFER).unwrap();
    let a = answer(&o, &local(), 1, Some("vp8")).unwrap();
    let sdp = &a.sdp;
    assert!(
        sdp.contains("m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"),
        "{sdp}"
    );
    assert!(sdp.contains("a=group:BUNDLE 0\r\n"));
    assert!(sdp.contains("a=ice-lite\r\na="));
    assert!(sdp.contains("a=setup:passive"));
    assert!(sdp.contains("a=sendrecv"));
    assert!(sdp.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"));
    assert!(sdp.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
    assert!(a.slots.is_empty() && a.slot_mids.is_empty() && a.video_ssrc.is_none());
    assert_eq!(a.roles, vec![Role::Voice, Role::Rejected]);
    // The answer itself parses, and offers nothing the server does not do.
    let back = Offer::parse(sdp).unwrap();
    assert_eq!(back.ice_ufrag, "srv1");
    assert_eq!(back.audio().unwrap().opus_pt, Some(111));
    assert!(!sdp.contains("PCMU"));
}

/// Shaped like the web client's offer: microphone, camera (VP8 with RTX, H.264, VP9), two
/// audio and two video receive slots, as Chromium writes them.
fn slotted_offer() -> String {
    let mut s = CHROMIUM_OFFER
        .split("m=application")
        .next()
        .unwrap()
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2 3 4 5");
    let transport = "c=IN IP4 0.0.0.0\r\na=ice-ufrag:Zk3q\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 4F:2A:7C:61:E4:13:9B:0D:55:AA:10:3E:8F:21:C4:97:06:BD:3A:77:E2:59:1C:48:D0:6F:AB:92:35:E8:7B:C1\r\n\
a=setup:actpass\r\na=rtcp-mux\r\n";
    let video = |mid: u32, dir: &str, ssrcs: &str| {
        format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103\r\n{transport}a=mid:{mid}\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a={dir}\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 VP9/90000\r\n\
a=rtpmap:99 H264/90000\r\na=fmtp:99 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n{ssrcs}"
        )
    };
    let audio = |mid: u32| {
        format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n{transport}a=mid:{mid}\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=recvonly\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    };
    s += &video(
        1,
        "sendrecv",
        "a=ssrc-group:FID 4000 4001\r\na=ssrc:4000 cname:abc\r\na=ssrc:4001 cname:abc\r\n",
    );
    s += &audio(2);
    s += &audio(3);
    s += &video(4, "recvonly", "");
    s += &video(5, "recvonly", "");
    s
}

#[test]
fn receive_only_sections_become_slots_with_declared_ssrcs() {
    let o = Offer::parse(&slotted_offer()).unwrap();
    let cam = &o.media[1];
    assert_eq!(
        (cam.vp8_pt, cam.h264_pt, cam.ssrc),
        (Some(96), Some(102), Some(4000)),
        "VP8, the packetization-mode 1 H.264, and the primary SSRC of the FID group"
    );
    let a = answer(&o, &local(), 77, Some("vp8")).unwrap();
    assert_eq!(
        a.roles,
        vec![
            Role::Voice,
            Role::Camera,
            Role::Slot(0),
            Role::Slot(1),
            Role::Slot(2),
            Role::Slot(3)
        ]
    );
    assert_eq!(a.slot_mids, vec!["2", "3", "4", "5"]);
    assert_eq!(a.video_ssrc, Some(4000));
    let sdp = &a.sdp;
    assert!(sdp.contains("a=group:BUNDLE 0 1 2 3 4 5\r\n"), "{sdp}");
    // The camera: the room's codec alone (VP8 here), no RTX (the server asks no
    // retransmissions of it). The video slots: both codecs and their RTX, each slot with
    // an RTX SSRC of its own.
    assert!(
        sdp.contains("m=video 40000 UDP/TLS/RTP/SAVPF 96\r\n"),
        "{sdp}"
    );
    assert_eq!(
        sdp.matches("m=video 40000 UDP/TLS/RTP/SAVPF 96 102 97 103\r\n")
            .count(),
        2,
        "{sdp}"
    );
    assert!(sdp.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));
    assert!(sdp.contains("a=rtcp-fb:96 nack pli\r\n"));
    // Transport-cc wherever the offer has it (the video sections, id 3): on what the
    // browser sends (the camera) and on what it receives (the video slots, for the
    // downlink estimate); the audio slots here offer no extension.
    assert_eq!(a.twcc_id, Some(3));
    assert_eq!(sdp.matches("transport-wide-cc").count(), 3, "{sdp}");
    assert!(sdp.contains("a=rtcp-fb:96 transport-cc\r\n"));
    assert_eq!(
        sdp.matches("transport-cc\r\n").count(),
        5,
        "the camera's VP8, each video slot's VP8 and H.264"
    );
    assert!(a.rtx());
    for i in 2..4 {
        let (s, r) = (a.slots.ssrc(i).unwrap(), a.slots.rtx_ssrc(i));
        assert!(r != 0 && r != s);
        assert!(
            sdp.contains(&format!("a=ssrc-group:FID {s} {r}\r\n")),
            "{sdp}"
        );
    }
    assert_eq!(a.slots.rtx_ssrc(0), 0, "audio slots have no RTX");
    // Every slot's SSRC is declared, all different and none the browser's own.
    let ssrcs: Vec<u32> = (0..4)
        .map(|i| a.slots.ssrc(i).unwrap())
        .chain((2..4).map(|i| a.slots.rtx_ssrc(i)))
        .collect();
    for (i, s) in ssrcs.iter().enumerate() {
        assert!(sdp.contains(&format!("a=ssrc:{s} cname:noc\r\n")));
        assert!(![0, 4000, 4001, 3735928559].contains(s));
        assert!(!ssrcs[..i].contains(s));
    }
    // Voice and camera only receive; the slots only send.
    let back = Offer::parse(sdp).unwrap();
    let dirs: Vec<&str> = back.media.iter().map(|m| m.direction.as_str()).collect();
    assert_eq!(
        dirs,
        ["recvonly", "recvonly", "sendonly", "sendonly", "sendonly", "sendonly"]
    );
    // The payload types map the browser's numbers to the NOC's.
    let mut slots = a.slots.clone();
    let mut vp8 = vec![0x80, 97, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
    assert_eq!(
        slots.outbound(std::time::Instant::now(), &mut vp8),
        Ok(Some(2))
    );
    assert_eq!(vp8[1], 96, "NOC VP8 (97) goes out as the browser's 96");
    let mut inbound = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0x0f, 0xa0];
    slots.inbound(&mut inbound);
    assert_eq!(inbound[1], protocol::codec::VP8.payload_type);
}

#[test]
fn an_audio_only_member_gets_no_video() {
    let o = Offer::parse(&slotted_offer()).unwrap();
    let a = answer(&o, &local(), 5, None).unwrap();
    assert_eq!(
        a.roles,
        vec![
            Role::Voice,
            Role::Rejected,
            Role::Slot(0),
            Role::Slot(1),
            Role::Rejected,
            Role::Rejected
        ]
    );
    assert!(a.sdp.contains("m=video 0 "));
    assert_eq!(a.video_ssrc, None);
}

#[test]
fn slots_past_the_limit_are_rejected() {
    let mut offer = slotted_offer();
    let extra: String = (6..6 + MAX_SLOTS as u32)
        .map(|mid| {
            format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n\
                 a=recvonly\r\na=rtpmap:111 opus/48000/2\r\n"
            )
        })
        .collect();
    offer += &extra;
    let o = Offer::parse(&offer).unwrap();
    let a = answer(&o, &local(), 5, Some("vp8")).unwrap();
    assert_eq!(a.slots.len(), MAX_SLOTS);
    assert_eq!(a.roles.iter().filter(|r| **r == Role::Rejected).count(), 4);
}

#[test]
fn the_camera_sends_the_rooms_codec_or_nothing() {
    let o = Offer::parse(&slotted_offer()).unwrap();
    let a = answer(&o, &local(), 9, Some("h264")).unwrap();
    assert!(
        a.sdp.contains("m=video 40000 UDP/TLS/RTP/SAVPF 102\r\n"),
        "{}",
        a.sdp
    );
    assert_eq!(a.roles[1], Role::Camera);
    // A camera that cannot send the room's codec is refused; its slots still receive.
    let vp8_only = slotted_offer()
        .replace("a=rtpmap:102 H264/90000", "a=rtpmap:102 H265/90000")
        .replace("a=rtpmap:99 H264/90000", "a=rtpmap:99 H265/90000");
    let o = Offer::parse(&vp8_only).unwrap();
    let a = answer(&o, &local(), 9, Some("h264")).unwrap();
    assert_eq!(a.roles[1], Role::Rejected);
    assert_eq!(a.video_ssrc, None);
    assert!(matches!(a.roles[4], Role::Slot(_)));
}

/// The sections of [`slotted_offer`] with these mids, in this order, under its session part.
fn sections(mids: &[u32], bundle: &str) -> String {
    let full = slotted_offer();
    let mut parts = full.split("m=");
    let session = parts.next().unwrap().replace(
        "a=group:BUNDLE 0 1 2 3 4 5",
        &format!("a=group:BUNDLE {bundle}"),
    );
    let media: Vec<String> = parts.map(|p| format!("m={p}")).collect();
    let mut s = session;
    for &mid in mids {
        s += &media[mid as usize];
    }
    s
}

#[test]
fn a_whip_publisher_only_sends_and_is_sent_no_media() {
    let offer = sections(&[0, 1], "0 1").replace("a=sendrecv", "a=sendonly");
    let o = Offer::parse(&offer).unwrap();
    let a = answer(&o, &local(), 3, Some("vp8")).unwrap();
    assert_eq!(a.roles, vec![Role::Voice, Role::Camera]);
    assert_eq!(a.video_ssrc, Some(4000));
    let back = Offer::parse(&a.sdp).unwrap();
    let dirs: Vec<&str> = back.media.iter().map(|m| m.direction.as_str()).collect();
    assert_eq!(dirs, ["recvonly", "recvonly"], "{}", a.sdp);
    let mut slots = a.slots.clone();
    let mut opus = vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
    assert_eq!(
        slots.outbound(std::time::Instant::now(), &mut opus),
        Err(crate::SlotDrop::NotWanted)
    );
}

#[test]
fn a_whep_viewer_is_all_slots() {
    let offer = sections(&[2, 4], "2 4");
    let o = Offer::parse(&offer).unwrap();
    assert!(o.voice().is_none());
    let a = answer(&o, &local(), 3, Some("vp8")).unwrap();
    assert_eq!(a.roles, vec![Role::Slot(0), Role::Slot(1)]);
    assert_eq!(a.slot_mids, vec!["2", "4"]);
    assert_eq!(a.video_ssrc, None);
    let back = Offer::parse(&a.sdp).unwrap();
    assert!(
        back.media.iter().all(|m| m.direction == "sendonly"),
        "{}",
        a.sdp
    );
    // Nothing it sends, nothing it takes: refused.
    let idle = offer.replace("a=recvonly", "a=inactive");
    let o = Offer::parse(&idle).unwrap();
    assert!(answer(&o, &local(), 3, Some("vp8")).is_err());
}

#[test]
fn a_simulcast_camera_is_answered_by_rid() {
    let offer = slotted_offer().replacen(
        "a=ssrc-group:FID 4000 4001\r\na=ssrc:4000 cname:abc\r\na=ssrc:4001 cname:abc\r\n",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
         a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;~q\r\n",
        1,
    );
    let o = Offer::parse(&offer).unwrap();
    assert_eq!(o.media[1].rids, vec!["f", "h", "q"]);
    let a = answer(&o, &local(), 5, Some("vp8")).unwrap();
    assert_eq!(a.rids, vec!["q", "h", "f"], "lowest first");
    assert_eq!(a.rid_id, Some(4));
    assert_eq!(a.video_ssrc, None, "the server picks the encodings' SSRCs");
    let sdp = &a.sdp;
    assert!(
        sdp.contains("a=rid:f recv\r\na=rid:h recv\r\na=rid:q recv\r\na=simulcast:recv f;h;q\r\n"),
        "{sdp}"
    );
    assert_eq!(sdp.matches("rtp-stream-id").count(), 1, "{sdp}");
    // One rid is no simulcast.
    let one = offer
        .replace("a=rid:h send\r\na=rid:q send\r\n", "")
        .replace("f;h;~q", "f");
    let a = answer(&Offer::parse(&one).unwrap(), &local(), 5, Some("vp8")).unwrap();
    assert!(a.rids.is_empty() && !a.sdp.contains("a=simulcast"));
}

#[test]
fn a_worker_with_ice_tcp_offers_a_passive_tcp_candidate() {
    let o = Offer::parse(CHROMIUM_OFFER).unwrap();
    let mut l = local();
    l.tcp = true;
    let a = answer(&o, &l, 1, None).unwrap();
    assert!(
        a.sdp.contains(
            "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host generation 0\r\n\
             a=candidate:2 1 tcp 1518280447 127.0.0.1 40000 typ host tcptype passive generation 0\r\n"
        ),
        "{}",
        a.sdp
    );
    assert!(!answer(&o, &local(), 1, None).unwrap().sdp.contains(" tcp "));
}
