//! Simulcast layer switching in virtual time: a receiver whose estimate (REMB) drops below
//! the top encoding moves to a lower one within 2 s and back up when it recovers, always at a
//! keyframe, and sees one continuous stream (one SSRC, consecutive sequence numbers).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh::{Command, RtpView};
use testkit::packet;

const LOW: u32 = 0x7001;
const MID: u32 = 0x7002;
/// The top encoding is the video channel's own SSRC; receivers see it throughout.
fn high() -> u32 {
    video_ssrc(1)
}

fn remb(sim: &mut Sim, from: u32, bps: u64) {
    sim.rtcp_from(from, &packet::remb(0x3000 + from, bps, &[high()]));
}

/// Size of packets as the camera sends them per layer.
const SIZES: [usize; 3] = [300, 700, 1100];

fn layer_of(p: &[u8]) -> usize {
    SIZES
        .iter()
        .position(|&s| s == p.len())
        .expect("a known size")
}

/// First arrival at or after `t` whose layer is `layer`.
fn first_on(media: &[(Instant, Vec<u8>)], t: Instant, layer: usize) -> Option<(Instant, Vec<u8>)> {
    media
        .iter()
        .find(|(at, p)| *at >= t && layer_of(p) == layer)
        .cloned()
}

/// Participant 1 announces the low, middle and top layers as simulcast.
fn announce_layers(sim: &mut Sim) {
    sim.mesh.handle_command(
        sim.now,
        Command::SetSimulcast {
            conf: CONF,
            participant: 1,
            layers: vec![LOW, MID, high()],
        },
    );
}

/// Participant 1's camera sends all three layers (1, 2 and 3 packets a frame, of `SIZES`),
/// a keyframe every `gop` frames.
fn three_layer_camera(sim: &mut Sim, gop: u32) {
    sim.simulcast_camera(
        1,
        gop,
        &[
            (LOW, 1, SIZES[0]),
            (MID, 2, SIZES[1]),
            (high(), 3, SIZES[2]),
        ],
    );
}

#[test]
fn budget_drop_switches_down_within_2_s_and_back_up_seamlessly() {
    let mut sim = Sim::new(&[1, 2, 3]);
    announce_layers(&mut sim);
    sim.run(Duration::from_millis(10));
    three_layer_camera(&mut sim, 300);
    remb(&mut sim, 2, 2_000_000);
    sim.run(Duration::from_secs(2));
    assert!(sim.media(2).iter().all(|(_, p)| layer_of(p) == 2));

    // The downlink shrinks to 150 kbit/s: only the low layer (about 72 kbit/s) fits.
    let dropped = sim.now;
    remb(&mut sim, 2, 150_000);
    sim.run(Duration::from_secs(3));
    let (at, first) = first_on(sim.media(2), dropped, 0).expect("switched down");
    assert!(at.duration_since(dropped) <= Duration::from_secs(2));
    assert!(is_key(&first), "the switch down lands on a keyframe");

    // It recovers.
    let recovered = sim.now;
    remb(&mut sim, 2, 2_000_000);
    sim.run(Duration::from_secs(3));
    let (at, first) = first_on(sim.media(2), recovered, 2).expect("switched back up");
    assert!(at.duration_since(recovered) <= Duration::from_secs(2));
    assert!(is_key(&first), "the switch up lands on a keyframe");

    // One continuous stream: one SSRC, sequence numbers without a gap, timestamps that
    // never go back, and every change of layer at a keyframe.
    let media = sim.media(2);
    let views: Vec<RtpView<'_>> = media
        .iter()
        .map(|(_, p)| RtpView::parse(p).unwrap())
        .collect();
    assert!(views.iter().all(|v| v.ssrc() == high()));
    for w in views.windows(2) {
        assert_eq!(
            w[1].sequence_number(),
            w[0].sequence_number().wrapping_add(1)
        );
        assert!(w[1].timestamp().wrapping_sub(w[0].timestamp()) < 1 << 31);
    }
    let mut switches = 0;
    for w in media.windows(2) {
        if layer_of(&w[0].1) != layer_of(&w[1].1) {
            switches += 1;
            assert!(is_key(&w[1].1));
        }
    }
    assert_eq!(switches, 2);
    // The receiver without an estimate stayed on the top layer all along.
    assert!(sim.media(3).iter().all(|(_, p)| layer_of(p) == 2));
    assert!(!sim.media(3).is_empty());
    // The layers a receiver was not sent are counted under their reason.
    let st = sim.reflector().stats();
    assert!(st.held_other_layer > 0);
    assert_eq!(st.held_unknown_layer, 0);
}

#[test]
fn nacks_are_answered_in_the_receivers_numbering() {
    let mut sim = Sim::new(&[1, 2]);
    sim.mesh.handle_command(
        sim.now,
        Command::SetSimulcast {
            conf: CONF,
            participant: 1,
            layers: vec![LOW, high()],
        },
    );
    sim.run(Duration::from_millis(10));
    sim.simulcast_camera(1, 300, &[(LOW, 1, SIZES[0]), (high(), 3, SIZES[2])]);
    sim.run(Duration::from_secs(1));
    remb(&mut sim, 2, 100_000);
    sim.run(Duration::from_secs(2));
    // On the low layer now, after a switch that shifted its numbering.
    let (_, last) = sim.media(2).last().cloned().unwrap();
    assert_eq!(layer_of(&last), 0);
    let want = RtpView::parse(&last).unwrap();
    let seq = want.sequence_number().wrapping_sub(2);
    let before = sim.media(2).len();
    sim.rtcp_from(2, &packet::nack(0x3002, high(), &[seq]));
    let got = &sim.media(2)[before..];
    assert_eq!(got.len(), 1, "one retransmission");
    let v = RtpView::parse(&got[0].1).unwrap();
    assert_eq!((v.ssrc(), v.sequence_number()), (high(), seq));
    // One packet per frame on the low layer: two frames back.
    assert_eq!(v.timestamp(), want.timestamp().wrapping_sub(6000));
}

#[test]
fn a_requested_maximum_caps_the_layer() {
    let mut sim = Sim::new(&[1, 2, 3]);
    announce_layers(&mut sim);
    sim.mesh.handle_command(
        sim.now,
        Command::ReceiverPrefs {
            conf: CONF,
            participant: 2,
            prefs: mesh::ReceiverPrefs {
                max_layer: Some(1),
                ..Default::default()
            },
        },
    );
    sim.run(Duration::from_millis(10));
    three_layer_camera(&mut sim, 300);
    sim.run(Duration::from_secs(2));
    let t = sim.now - Duration::from_secs(1);
    let layers = |r| {
        let mut v: Vec<usize> = sim
            .media(r)
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, p)| layer_of(p))
            .collect();
        v.dedup();
        v
    };
    assert_eq!(layers(2), vec![1], "capped at the middle layer");
    assert_eq!(layers(3), vec![2]);
}

#[test]
fn a_layers_sr_reaches_its_receivers_in_their_numbering() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.mesh.handle_command(
        sim.now,
        Command::SetSimulcast {
            conf: CONF,
            participant: 1,
            layers: vec![LOW, high()],
        },
    );
    sim.run(Duration::from_millis(10));
    sim.simulcast_camera(1, 300, &[(LOW, 1, SIZES[0]), (high(), 3, SIZES[2])]);
    sim.run(Duration::from_secs(1));
    remb(&mut sim, 2, 100_000);
    sim.run(Duration::from_secs(2));
    // 2 is on the low layer with shifted timestamps; 3 on the top layer, unshifted.
    let (t2, last2) = sim.media(2).last().cloned().unwrap();
    assert_eq!(layer_of(&last2), 0);
    let last3 = &sim.media(3).iter().rfind(|(t, _)| *t == t2).unwrap().1;
    let ts = |p: &[u8]| RtpView::parse(p).unwrap().timestamp();
    // The same frame: 3's copy is the top layer's own timestamp (its base 1_000_000 above
    // the low layer's), 2's the low layer's shifted into that timeline.
    let low_ts = ts(last3).wrapping_sub(1_000_000);
    let offset = ts(&last2).wrapping_sub(low_ts);
    assert_eq!(offset, 1_000_000, "the switch shifted 2's timestamps");

    // The low layer's SR, with a report block as senders add: 2 gets the sender info only,
    // under the SSRC it sees, its RTP timestamp shifted like the media; 3 gets nothing.
    let block = packet::ReportBlock {
        ssrc: 0x4242,
        ..Default::default()
    };
    let sr = packet::sender_report(LOW, 0x0102_0304_0506_0708, 90_000, 5, 500, &[block]);
    let (before2, before3) = (sim.rtcp(2).len(), sim.rtcp(3).len());
    sim.rtcp_from(1, &sr);
    assert_eq!(sim.rtcp(3).len(), before3);
    let got = &sim.rtcp(2)[before2..];
    assert_eq!(got.len(), 1);
    match mesh::rtcp::packets(&got[0].1).collect::<Vec<_>>()[..] {
        [Ok(mesh::rtcp::Rtcp::SenderReport(r))] => {
            assert_eq!(r.ssrc, high());
            assert_eq!(r.ntp, 0x0102_0304_0506_0708);
            assert_eq!(r.rtp_timestamp, 90_000u32.wrapping_add(offset));
            assert!(r.blocks.is_empty());
        }
        ref other => panic!("{other:?}"),
    }
}

/// A browser pauses its upper encodings when its own uplink cannot carry them: receivers
/// get the one that flows instead of waiting for a keyframe that never comes.
#[test]
fn receivers_get_the_highest_encoding_that_flows() {
    let mut sim = Sim::new(&[1, 2, 3]);
    announce_layers(&mut sim);
    sim.run(Duration::from_millis(10));
    // Only the low encoding is sent.
    sim.simulcast_camera(1, 30, &[(LOW, 1, SIZES[0])]);
    remb(&mut sim, 2, 5_000_000);
    sim.run(Duration::from_secs(3));
    for rx in [2, 3] {
        let media = sim.media(rx);
        assert!(
            media.len() > 30 && media.iter().all(|(_, p)| layer_of(p) == 0),
            "receiver {rx} got {} packets",
            media.len()
        );
    }
}

/// A receiver's estimate carries its audio too: the layer is chosen in what the audio
/// leaves. Three voices of about 61 kbit/s each on the wire take 182 kbit/s of a 500 kbit/s
/// estimate, so the 336 kbit/s middle layer (which the whole estimate would take) does not
/// fit; at 600 kbit/s it does.
#[test]
fn the_layer_is_chosen_in_what_the_receivers_audio_leaves() {
    let mut sim = Sim::new(&[1, 2, 3, 4]);
    announce_layers(&mut sim);
    for v in [1, 3, 4] {
        sim.voices.insert(v, true);
    }
    sim.run(Duration::from_millis(10));
    three_layer_camera(&mut sim, 30);
    remb(&mut sim, 2, 500_000);
    sim.run(Duration::from_secs(4));
    let layers_since = |sim: &Sim, t: Instant| -> Vec<usize> {
        sim.media(2)
            .iter()
            .filter(|(at, p)| *at >= t && p.len() >= SIZES[0])
            .map(|(_, p)| layer_of(p))
            .collect()
    };
    let late = sim.now - Duration::from_secs(2);
    let got = layers_since(&sim, late);
    assert!(
        !got.is_empty() && got.iter().all(|&l| l == 0),
        "500 kbit/s less three voices fits only the low layer: {got:?}"
    );
    remb(&mut sim, 2, 600_000);
    sim.run(Duration::from_secs(4));
    let late = sim.now - Duration::from_secs(1);
    let got = layers_since(&sim, late);
    assert!(
        !got.is_empty() && got.iter().all(|&l| l == 1),
        "600 kbit/s less three voices fits the middle layer: {got:?}"
    );
}

/// The one layer receiver `rx` got in the last 300 ms.
fn layer_at_end(sim: &Sim, rx: u32) -> usize {
    let t = sim.now - Duration::from_millis(300);
    let got: Vec<usize> = sim
        .media(rx)
        .iter()
        .filter(|(at, _)| *at >= t)
        .map(|(_, p)| layer_of(p))
        .collect();
    assert!(
        !got.is_empty() && got.iter().all(|&l| l == got[0]),
        "{got:?}"
    );
    got[0]
}

/// Receiver 2 of a three-layer camera at 300 kbit/s, then 400 (the middle layer, 336
/// kbit/s, is tried), then 300 again (it did not fit: back down, a mark at 520 kbit/s).
fn a_failed_move_up() -> Sim {
    let mut sim = Sim::new(&[1, 2]);
    announce_layers(&mut sim);
    sim.run(Duration::from_millis(10));
    three_layer_camera(&mut sim, 30);
    remb(&mut sim, 2, 300_000);
    sim.run(Duration::from_secs(3));
    assert_eq!(layer_at_end(&sim, 2), 0, "300 kbit/s: the low layer");
    remb(&mut sim, 2, 400_000);
    sim.run(Duration::from_secs(1));
    assert_eq!(layer_at_end(&sim, 2), 1, "400 kbit/s: the middle layer");
    remb(&mut sim, 2, 300_000);
    sim.run(Duration::from_secs(2));
    assert_eq!(layer_at_end(&sim, 2), 0, "back down");
    sim
}

/// A move up that the next estimate takes back marks a ceiling: the layer is tried again
/// only with 30% more budget than that try had, or after 10 s; each failure again while
/// a mark stands asks for 30 points more and holds twice as long. Without it an estimate
/// that grows back after each cut tried the layer every second or two.
#[test]
fn a_move_up_that_did_not_fit_is_not_retried_on_the_same_budget() {
    let mut sim = a_failed_move_up();
    // The same budget again is no reason to try again; 30% more is.
    remb(&mut sim, 2, 450_000);
    sim.run(Duration::from_secs(2));
    assert_eq!(
        layer_at_end(&sim, 2),
        0,
        "450 kbit/s is under the 520 kbit/s mark"
    );
    remb(&mut sim, 2, 530_000);
    sim.run(Duration::from_secs(2));
    assert_eq!(layer_at_end(&sim, 2), 1, "530 kbit/s is over the mark");
    // Failing again while the mark stands is a second strike: 60% more than this try's
    // 530 kbit/s (848 kbit/s), for 20 s.
    remb(&mut sim, 2, 300_000);
    sim.run(Duration::from_secs(2));
    assert_eq!(layer_at_end(&sim, 2), 0);
    remb(&mut sim, 2, 800_000);
    sim.run(Duration::from_secs(3));
    assert_eq!(
        layer_at_end(&sim, 2),
        0,
        "800 kbit/s is under a second strike's mark"
    );
    remb(&mut sim, 2, 450_000);
    sim.run(Duration::from_secs(12));
    assert_eq!(layer_at_end(&sim, 2), 0, "17 s on, the second mark stands");
    sim.run(Duration::from_secs(5));
    assert_eq!(layer_at_end(&sim, 2), 1, "20 s later the mark is gone");
}

/// A first mark lapses after 10 s.
#[test]
fn a_single_failed_move_up_is_retried_after_10_s() {
    let mut sim = a_failed_move_up();
    remb(&mut sim, 2, 450_000);
    sim.run(Duration::from_secs(3));
    assert_eq!(layer_at_end(&sim, 2), 0, "450 kbit/s is under the mark");
    sim.run(Duration::from_secs(6));
    assert_eq!(layer_at_end(&sim, 2), 1, "10 s later the mark is gone");
}

/// (picture ID, TL0PICIDX, TID) of a VP8 packet that starts a picture.
fn picture(p: &[u8]) -> Option<(u16, u8, u8)> {
    let v = RtpView::parse(p).unwrap();
    let d = rtpvideo::vp8::Descriptor::parse(v.payload())?;
    (d.start && d.partition == 0).then(|| {
        (
            d.picture_id.expect("a picture ID"),
            d.tl0_pic_idx.expect("a TL0PICIDX"),
            d.temporal_id.expect("a TID"),
        )
    })
}

/// Browsers number each encoding's VP8 pictures from a random start, and libwebrtc's
/// reference finder waits for the pictures a jump or a gap leaves out before it decodes on
/// (a freeze until its 3 s keyframe timeout). A receiver switched down, thinned, and
/// switched back up sees one run of picture IDs and TL0PICIDX, with no jump and no gap.
#[test]
fn a_switched_and_thinned_receiver_sees_picture_ids_without_a_jump() {
    let mut sim = Sim::new(&[1, 2, 3]);
    announce_layers(&mut sim);
    sim.run(Duration::from_millis(10));
    three_layer_camera(&mut sim, 300);
    sim.cameras[0].temporal = true;
    sim.cameras[0].picture_ids = true;
    remb(&mut sim, 2, 2_000_000);
    sim.run(Duration::from_secs(2));
    remb(&mut sim, 2, 150_000);
    sim.run(Duration::from_secs(3));
    // Under the low layer's rate: thinned to its base temporal layer.
    remb(&mut sim, 2, 40_000);
    sim.run(Duration::from_secs(3));
    assert_eq!(sim.reflector().thinned(), &[2]);
    remb(&mut sim, 2, 2_000_000);
    sim.run(Duration::from_secs(3));

    let media = sim.media(2);
    let layers: Vec<usize> = media.iter().map(|(_, p)| layer_of(p)).collect();
    assert!(
        layers.contains(&0) && layers.ends_with(&[2]),
        "down and back up"
    );
    let pictures: Vec<(u16, u8, u8)> = media.iter().filter_map(|(_, p)| picture(p)).collect();
    assert!(
        pictures.iter().any(|p| p.2 == 1),
        "some TL1 pictures before thinning"
    );
    for w in pictures.windows(2) {
        let ((p0, t0, _), (p1, t1, tid1)) = (w[0], w[1]);
        assert_eq!(p1, (p0 + 1) & 0x7fff, "picture IDs run on: {w:?}");
        let step = if tid1 == 0 { 1 } else { 0 };
        assert_eq!(t1, t0.wrapping_add(step), "TL0PICIDX runs on: {w:?}");
    }
    // The other receiver keeps the top layer's own numbering.
    let theirs: Vec<u16> = sim
        .media(3)
        .iter()
        .filter_map(|(_, p)| picture(p))
        .map(|p| p.0)
        .collect();
    assert_eq!(theirs[0], 21_000);
}
