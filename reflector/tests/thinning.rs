//! Temporal thinning in virtual time: a receiver whose estimate is below the stream's rate
//! gets only the base temporal layer (half the frames); others get everything. The thinned
//! receiver's sequence numbers stay continuous (no gaps for it to NACK), and its NACKs, in
//! its own numbering, are answered with the packets it was given those numbers for.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use mesh::{Command, ReceiverPrefs, RtpView};
use reflector::keyframe::{is_droppable, VideoCodec};
use reflector::nack::rtx_ssrc;
use testkit::net::Impairments;
use testkit::packet;

fn tl1(p: &[u8]) -> bool {
    is_droppable(VideoCodec::Vp8, RtpView::parse(p).unwrap().payload())
}

fn seq(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

fn remb(sim: &mut Sim, from: u32, bps: u64) {
    sim.rtcp_from(from, &packet::remb(0x3000 + from, bps, &[video_ssrc(1)]));
}

fn nack(sim: &mut Sim, from: u32, media: u32, lost: &[u16]) {
    sim.rtcp_from(from, &packet::nack(0x3000 + from, media, lost));
}

/// Every packet's sequence number follows on from the one before.
fn assert_continuous(media: &[(std::time::Instant, Vec<u8>)]) {
    assert!(!media.is_empty());
    for w in media.windows(2) {
        assert_eq!(
            seq(&w[1].1),
            seq(&w[0].1).wrapping_add(1),
            "a gap in the receiver's numbering"
        );
    }
}

/// What identifies a packet of the stream apart from its sequence number.
fn content(p: &[u8]) -> (u32, u32, Vec<u8>) {
    let v = RtpView::parse(p).unwrap();
    (v.ssrc(), v.timestamp(), v.payload().to_vec())
}

/// 1 sends VP8 with two temporal layers to `ids`; 2 (and `thin` others) get a 400 kbit/s
/// REMB after a second, against about 720 kbit/s of video, and are thinned from then on.
fn thinned_sim(ids: &[u32], thin: &[u32]) -> Sim {
    let mut sim = Sim::new(ids);
    sim.camera(1, 300);
    sim.cameras[0].temporal = true;
    sim.run(Duration::from_secs(1));
    assert!(sim.reflector().thinned().is_empty());
    for &id in thin {
        remb(&mut sim, id, 400_000);
    }
    sim.run(Duration::from_millis(20));
    assert_eq!(sim.reflector().thinned(), thin);
    sim
}

#[test]
fn a_short_budget_halves_the_frame_rate_without_sequence_gaps() {
    let mut sim = thinned_sim(&[1, 2, 3], &[2]);
    let (from2, from3) = (sim.media(2).len(), sim.media(3).len());
    let held = sim.reflector().stats().held_thinned;
    sim.run(Duration::from_secs(2));
    let two = &sim.media(2)[from2..];
    let three = &sim.media(3)[from3..];
    // Every packet withheld is counted, under its reason.
    assert_eq!(
        sim.reflector().stats().held_thinned - held,
        (three.len() - two.len()) as u64
    );
    assert!(two.iter().all(|(_, p)| !tl1(p)), "no TL1 frame reached 2");
    assert_eq!(two.len() * 2, three.len(), "half the packets");
    assert!(three.iter().any(|(_, p)| tl1(p)));
    // Exactly the base layer, with the source's SSRC and timestamps...
    let got: Vec<_> = two.iter().map(|(_, p)| content(p)).collect();
    let base: Vec<_> = three
        .iter()
        .filter(|(_, p)| !tl1(p))
        .map(|(_, p)| content(p))
        .collect();
    assert_eq!(got, base);
    // ...numbered without a gap, from before thinning began to now; 3 sees the source's.
    assert_continuous(sim.media(2));
    assert_continuous(sim.media(3));
    // A NACK for a stream nobody sends is counted, not answered.
    nack(&mut sim, 2, 0xdead, &[1]);
    assert_eq!(sim.reflector().stats().nack_unknown_ssrc, 1);
}

#[test]
fn nacks_in_the_thinned_numbering_get_the_right_packet_plain_and_rtx() {
    let mut sim = Sim::new(&[1, 2, 3, 4]);
    // 4 negotiated RTX.
    sim.mesh.handle_command(
        sim.now,
        Command::ReceiverPrefs {
            conf: CONF,
            participant: 4,
            prefs: ReceiverPrefs {
                rtx_payload_type: Some(97),
                max_layer: None,
            },
        },
    );
    sim.camera(1, 300);
    sim.cameras[0].temporal = true;
    sim.run(Duration::from_secs(1));
    remb(&mut sim, 2, 400_000);
    remb(&mut sim, 4, 400_000);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.reflector().thinned(), &[2, 4]);

    for rx in [2, 4] {
        let media = sim.media(rx).to_vec();
        assert_continuous(&media);
        // Packets spread over the cache's window (about 200 source packets for the oldest),
        // so many offset changes lie between them.
        let asked: Vec<&Vec<u8>> = [1, 2, 30, 61, 100]
            .iter()
            .map(|&back| &media[media.len() - back].1)
            .collect();
        let lost: Vec<u16> = asked.iter().map(|p| seq(p)).collect();
        let before = sim.media(rx).len();
        nack(&mut sim, rx, video_ssrc(1), &lost);
        let resent = &sim.media(rx)[before..];
        assert_eq!(resent.len(), asked.len(), "every one answered");
        for ((_, r), orig) in resent.iter().zip(&asked) {
            if rx == 2 {
                // A plain resend: the very packet 2 got under that number.
                assert_eq!(r, *orig);
            } else {
                // RTX: its own stream, the OSN the receiver's number, the original payload.
                let v = RtpView::parse(r).unwrap();
                let o = RtpView::parse(orig).unwrap();
                assert_eq!(v.ssrc(), rtx_ssrc(video_ssrc(1)));
                assert_eq!(v.payload_type(), 97);
                assert_eq!(v.timestamp(), o.timestamp());
                assert_eq!(&v.payload()[..2], &orig[2..4], "OSN");
                assert_eq!(&v.payload()[2..], o.payload());
            }
        }
    }
    // A number past what 2 was sent maps to nothing it could have lost.
    let next = seq(&sim.media(2).last().unwrap().1).wrapping_add(400);
    let before = sim.media(2).len();
    nack(&mut sim, 2, video_ssrc(1), &[next]);
    assert_eq!(sim.media(2).len(), before);
}

#[test]
fn thinning_off_and_on_keeps_the_numbering_continuous() {
    let mut sim = thinned_sim(&[1, 2, 3], &[2]);
    sim.run(Duration::from_secs(1));
    // The budget recovers: full frame rate again, numbering carried on.
    remb(&mut sim, 2, 5_000_000);
    sim.run(Duration::from_millis(20));
    assert!(sim.reflector().thinned().is_empty());
    let off = sim.media(2).len();
    sim.run(Duration::from_secs(1));
    let full = sim.media(2)[off..].to_vec();
    assert!(full.iter().any(|(_, p)| tl1(p)), "TL1 frames again");
    remb(&mut sim, 2, 400_000);
    sim.run(Duration::from_millis(20));
    assert_eq!(sim.reflector().thinned(), &[2]);
    let on = sim.media(2).len();
    sim.run(Duration::from_secs(1));
    assert!(sim.media(2)[on..].iter().all(|(_, p)| !tl1(p)));
    assert_continuous(sim.media(2));
    // Numbers from the unthinned second still map back to the packets they named.
    let asked = full[full.len() / 2].1.clone();
    let before = sim.media(2).len();
    nack(&mut sim, 2, video_ssrc(1), &[seq(&asked)]);
    assert_eq!(sim.media(2)[before..], [(sim.now, asked)]);
}

#[test]
fn a_thinned_receiver_recovers_its_losses_by_nack() {
    let mut sim = thinned_sim(&[1, 2, 3], &[2]);
    sim.net.set(2, Impairments::loss(10.0));
    let from = sim.media(2).len();
    // 6 s (some 270 packets for 2, so 10% loss takes enough to count); every 20 ms 2 NACKs
    // the holes it sees in its numbering.
    for _ in 0..300 {
        sim.run(Duration::from_millis(20));
        let got: BTreeSet<u16> = sim.media(2).iter().map(|(_, p)| seq(p)).collect();
        let (Some(&lo), Some(&hi)) = (got.first(), got.last()) else {
            continue;
        };
        let missing: Vec<u16> = (hi.saturating_sub(200).max(lo)..hi)
            .filter(|s| !got.contains(s))
            .take(32)
            .collect();
        if !missing.is_empty() {
            nack(&mut sim, 2, video_ssrc(1), &missing);
        }
    }
    assert!(
        sim.media(2)[from..].iter().all(|(_, p)| !tl1(p)),
        "nothing thinned resent"
    );
    let got: BTreeSet<u16> = sim.media(2).iter().map(|(_, p)| seq(p)).collect();
    let (lo, hi) = (*got.first().unwrap(), *got.last().unwrap());
    // Every hole was a loss, and every loss but the last few got filled.
    let holes: Vec<u16> = (lo..hi - 20).filter(|s| !got.contains(s)).collect();
    let lost = sim.lost[&2].len();
    assert!(lost > 20, "the loss took {lost} packets");
    assert!(holes.is_empty(), "unrecovered: {holes:?}");
}

#[test]
fn thinning_a_simulcast_source_keeps_the_numbering_continuous() {
    const LOW: u32 = 0x7001;
    let high = video_ssrc(1);
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.mesh.handle_command(
        sim.now,
        Command::SetSimulcast {
            conf: CONF,
            participant: 1,
            layers: vec![LOW, high],
        },
    );
    sim.run(Duration::from_millis(10));
    sim.simulcast_camera(1, 300, &[(LOW, 3, 300), (high, 3, 1100)]);
    sim.cameras[0].temporal = true;
    sim.run(Duration::from_secs(1));
    // 100 kbit/s: below even the low layer (about 216 kbit/s), so 2 gets it thinned.
    remb(&mut sim, 2, 100_000);
    sim.run(Duration::from_secs(3));
    assert_eq!(sim.reflector().thinned(), &[2]);
    let media = sim.media(2);
    let tail = &media[media.len() - 60..];
    assert!(tail.iter().all(|(_, p)| p.len() == 300 && !tl1(p)));
    assert!(media.iter().all(|(_, p)| content(p).0 == high), "one SSRC");
    assert_continuous(media);
    // A NACK in 2's numbering gets the packet it names.
    let asked: Vec<Vec<u8>> = [1, 20, 45]
        .iter()
        .map(|&b| media[media.len() - b].1.clone())
        .collect();
    let lost: Vec<u16> = asked.iter().map(|p| seq(p)).collect();
    let before = sim.media(2).len();
    nack(&mut sim, 2, high, &lost);
    let resent: Vec<Vec<u8>> = sim.media(2)[before..]
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(resent, asked);
}

/// A browser's VP8 carries picture IDs: the frames withheld from a thinned receiver leave
/// no gap in them either (libwebrtc waits for the pictures in a gap before it decodes on),
/// and a resend carries the picture ID its first copy had.
#[test]
fn a_thinned_receiver_sees_picture_ids_without_gaps_and_resends_keep_theirs() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.camera(1, 300);
    sim.cameras[0].temporal = true;
    sim.cameras[0].picture_ids = true;
    sim.run(Duration::from_secs(1));
    remb(&mut sim, 2, 400_000);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.reflector().thinned(), &[2]);
    let picture = |p: &[u8]| {
        let d = rtpvideo::vp8::Descriptor::parse(RtpView::parse(p).unwrap().payload()).unwrap();
        (d.picture_id.unwrap(), d.start && d.partition == 0)
    };
    let starts: Vec<u16> = sim
        .media(2)
        .iter()
        .map(|(_, p)| picture(p))
        .filter(|p| p.1)
        .map(|p| p.0)
        .collect();
    assert!(starts.len() > 60);
    for w in starts.windows(2) {
        assert_eq!(w[1], (w[0] + 1) & 0x7fff, "no gap: {w:?}");
    }
    // A NACK for a recent packet: the resend has the picture ID 2 first got it with.
    let (_, last) = sim.media(2).last().cloned().unwrap();
    let n = sim.media(2).len();
    nack(&mut sim, 2, video_ssrc(1), &[seq(&last)]);
    sim.run(Duration::from_millis(5));
    let resent = &sim.media(2)[n..];
    assert_eq!(resent.len(), 1, "one resend");
    assert_eq!(picture(&resent[0].1).0, picture(&last).0);
}
