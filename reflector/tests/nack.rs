//! NACK recovery in virtual time: 10% loss on one receiver's downlink; the receiver NACKs
//! what it misses and the reflector resends from its cache.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use testkit::net::Impairments;
use testkit::packet;

fn seq_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

#[test]
fn nacks_recover_at_least_90_percent_of_10_percent_loss() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.camera(1, 300);
    sim.net.set(2, Impairments::loss(10.0));
    let mut asked: HashMap<u16, u32> = HashMap::new();
    // 5 s of video; the receiver NACKs every 20 ms, each packet up to 4 times.
    for _ in 0..250 {
        sim.run(Duration::from_millis(20));
        let got: BTreeSet<u16> = sim.media(2).iter().map(|(_, p)| seq_of(p)).collect();
        let (Some(&lo), Some(&hi)) = (got.first(), got.last()) else {
            continue;
        };
        let missing: Vec<u16> = (lo..hi)
            .filter(|s| !got.contains(s))
            .filter(|s| asked.get(s).is_none_or(|&n| n < 4))
            .collect();
        for s in &missing {
            *asked.entry(*s).or_default() += 1;
        }
        for chunk in missing.chunks(16) {
            sim.rtcp_from(2, &packet::nack(0x2222, video_ssrc(1), chunk));
        }
    }
    let got: BTreeSet<u16> = sim.media(2).iter().map(|(_, p)| seq_of(p)).collect();
    let hi = *got.last().unwrap();
    // Losses near the end have had no time to be asked for.
    let lost: BTreeSet<u16> = sim.lost[&2]
        .iter()
        .copied()
        .filter(|&s| s < hi.wrapping_sub(30))
        .collect();
    let recovered = lost.iter().filter(|s| got.contains(s)).count();
    eprintln!("recovered {recovered} of {} lost packets", lost.len());
    assert!(lost.len() > 30, "the loss took {} packets", lost.len());
    assert!(
        recovered * 10 >= lost.len() * 9,
        "recovered {recovered} of {}",
        lost.len()
    );
    let st = sim.reflector().stats().clone();
    assert!(st.retransmitted > 0 && st.retransmitted <= st.nacked);
    // The lossless receiver got everything once, and no retransmission.
    let three: Vec<u16> = sim.media(3).iter().map(|(_, p)| seq_of(p)).collect();
    assert!(three.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
}

#[test]
fn nack_for_an_unknown_stream_or_old_packet_sends_nothing() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 300);
    sim.run(Duration::from_secs(12));
    let before = sim.media(2).len();
    // A stream nobody sends, and the camera's very first packet, long out of the cache.
    sim.rtcp_from(2, &packet::nack(0x2222, 0xdead, &[1000]));
    sim.rtcp_from(2, &packet::nack(0x2222, video_ssrc(1), &[1000]));
    assert_eq!(sim.media(2).len(), before);
    let st = sim.reflector().stats();
    assert_eq!((st.nacked, st.retransmitted), (1, 0));
}

#[test]
fn one_nack_cannot_ask_for_more_than_the_cap() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 300);
    sim.run(Duration::from_secs(5));
    let before = sim.media(2).len();
    // 200 cached packets in one NACK (16 entries of PID + 16 in the bitmask each).
    let hi = seq_of(&sim.media(2)[before - 1].1);
    let seqs: Vec<u16> = (0..200).rev().map(|i| hi.wrapping_sub(i)).collect();
    sim.rtcp_from(2, &packet::nack(0x2222, video_ssrc(1), &seqs));
    assert_eq!(
        sim.media(2).len() - before,
        reflector::MAX_NACKED_PER_COMPOUND
    );
}

#[test]
fn receivers_that_negotiated_rtx_get_rfc_4588_packets() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.mesh.handle_command(
        sim.now,
        mesh::Command::ReceiverPrefs {
            conf: CONF,
            participant: 2,
            prefs: mesh::ReceiverPrefs {
                rtx_payload_type: Some(97),
                ..Default::default()
            },
        },
    );
    sim.camera(1, 300);
    sim.run(Duration::from_secs(1));
    let asked: Vec<u16> = sim.media(2)[10..13]
        .iter()
        .map(|(_, p)| seq_of(p))
        .collect();
    let originals: Vec<Vec<u8>> = sim.media(2)[10..13]
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    for r in [2, 3] {
        let before = sim.media(r).len();
        sim.rtcp_from(r, &packet::nack(0x2222, video_ssrc(1), &asked));
        let got: Vec<Vec<u8>> = sim.media(r)[before..]
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        assert_eq!(got.len(), 3, "receiver {r}");
        if r == 3 {
            // Plain retransmission: the packets as they were.
            assert_eq!(got, originals);
            continue;
        }
        for (i, (rtx, orig)) in got.iter().zip(&originals).enumerate() {
            let v = mesh::RtpView::parse(rtx).unwrap();
            let o = mesh::RtpView::parse(orig).unwrap();
            assert_eq!(v.payload_type(), 97);
            assert_eq!(v.ssrc(), reflector::nack::rtx_ssrc(video_ssrc(1)));
            assert_eq!(
                v.sequence_number(),
                i as u16 + 1,
                "the RTX stream's own numbering"
            );
            assert_eq!(v.timestamp(), o.timestamp());
            assert_eq!(
                v.payload()[..2],
                asked[i].to_be_bytes(),
                "original sequence number"
            );
            assert_eq!(&v.payload()[2..], o.payload());
        }
    }
}

fn nack(sim: &mut Sim, from: u32, lost: &[u16]) {
    sim.rtcp_from(from, &packet::nack(0x3000 + from, video_ssrc(1), lost));
}

/// NACKs are answered only for receivers being sent the stream, and a quick repeat of the
/// same ask gets no second copy.
#[test]
fn nacks_are_answered_once_and_only_for_receivers_of_the_stream() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 300);
    sim.run(Duration::from_millis(500));
    let s = seq_of(&sim.media(2).last().unwrap().1);
    let resent = |sim: &Sim| sim.reflector().stats().retransmitted;
    nack(&mut sim, 2, &[s]);
    assert_eq!(resent(&sim), 1);
    // Again within 100 ms: a repeat, not answered; after that, answered again.
    sim.run(Duration::from_millis(50));
    nack(&mut sim, 2, &[s]);
    assert_eq!((resent(&sim), sim.reflector().stats().nack_repeats), (1, 1));
    sim.run(Duration::from_millis(60));
    nack(&mut sim, 2, &[s]);
    assert_eq!(resent(&sim), 2);
    // The source asking for its own stream is refused.
    nack(&mut sim, 1, &[s.wrapping_sub(1)]);
    assert_eq!(resent(&sim), 2);
    assert_eq!(sim.reflector().stats().nack_refused, 1);
    // So is a joiner still waiting for a keyframe (the camera ignores requests).
    sim.cameras[0].deaf = true;
    sim.join(3);
    sim.run(Duration::from_millis(20));
    assert!(sim.media(3).is_empty());
    nack(&mut sim, 3, &[s.wrapping_sub(2)]);
    assert_eq!(resent(&sim), 2);
    assert_eq!(sim.reflector().stats().nack_refused, 2);
}
