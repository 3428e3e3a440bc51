//! Sender and receiver reports, and the per-receiver estimate, in virtual time.

mod common;

use std::time::Duration;

use common::*;
use mesh::rtcp::{self, Rtcp};
use testkit::packet::{self, ReportBlock};

#[test]
fn srs_are_relayed_and_senders_get_receiver_reports() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.camera(1, 30);
    sim.run(Duration::from_millis(200));
    let ntp = 0x0001_0002_0003_0004u64;
    let sr = packet::sender_report(video_ssrc(1), ntp, 9000, 18, 18_000, &[]);
    // A real sender follows its SR with an SDES; only the SR is relayed.
    let compound = packet::compound(&[sr.clone(), packet::sdes(video_ssrc(1), "camera")]);
    sim.rtcp_from(1, &compound);
    for r in [2, 3] {
        let got = sim.rtcp(r);
        assert_eq!(got.len(), 1, "receiver {r}");
        assert_eq!(got[0].1, sr);
    }
    assert!(sim.rtcp(1).is_empty(), "no echo of the SR");
    assert_eq!(sim.reflector().stats().reports_relayed, 2);

    sim.run(Duration::from_millis(1500));
    let rrs: Vec<_> = sim
        .rtcp(1)
        .iter()
        .flat_map(|(_, b)| rtcp::packets(b).flatten().collect::<Vec<_>>())
        .filter_map(|p| match p {
            Rtcp::ReceiverReport { ssrc, blocks } => Some((ssrc, blocks.iter().next()?)),
            _ => None,
        })
        .collect();
    assert!(!rrs.is_empty(), "the sender got receiver reports");
    let (from, block) = rrs.last().copied().unwrap();
    assert_eq!(from, reflector::SFU_SSRC);
    assert_eq!(block.ssrc, video_ssrc(1));
    assert_eq!(block.fraction_lost, 0);
    assert_eq!(block.last_sr, (ntp >> 16) as u32);
    assert!(block.delay_since_last_sr > 0);
    // Receivers that send nothing get no RR.
    assert!(sim.rtcp(2).len() == 1 && sim.rtcp(3).len() == 1);
}

#[test]
fn remb_and_receiver_reports_feed_the_estimate() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 30);
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.reflector().estimate(2), None);
    sim.rtcp_from(2, &packet::remb(0x2222, 600_000, &[video_ssrc(1)]));
    let est = sim.reflector().estimate(2).unwrap();
    let bps = est.bits_per_sec().unwrap();
    assert!((599_000..=600_000).contains(&bps), "{bps}");
    let block = ReportBlock {
        ssrc: video_ssrc(1),
        fraction_lost: 64,
        total_lost: 10,
        last_sequence_number: 1100,
        jitter: 90,
        ..Default::default()
    };
    sim.rtcp_from(2, &packet::receiver_report(0x2222, &[block]));
    assert_eq!(sim.reflector().estimate(2).unwrap().fraction_lost, 64);
    // Terminated: the sender never sees the receiver's own reports or REMB.
    assert!(sim
        .rtcp(1)
        .iter()
        .all(|(_, b)| !b.windows(4).any(|w| w == b"REMB")));
}

#[test]
fn without_remb_receiver_report_loss_drives_the_estimate() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 30);
    sim.run(Duration::from_secs(1));
    let rr = |sim: &mut Sim, fraction_lost: u8| {
        let block = ReportBlock {
            ssrc: video_ssrc(1),
            fraction_lost,
            ..Default::default()
        };
        sim.rtcp_from(2, &packet::receiver_report(0x2222, &[block]));
        sim.reflector().estimate(2).unwrap().bits_per_sec()
    };
    // Little loss: still no limit.
    assert_eq!(rr(&mut sim, 3), None);
    // 25% loss: back off to what 2 gets (3 x 1000 B x 30/s = 720 kbit/s) times 7/8.
    let backed = rr(&mut sim, 64).unwrap();
    assert!((600_000..=650_000).contains(&backed), "{backed}");
    assert_eq!(
        sim.reflector().thinned(),
        &[] as &[u32],
        "thinning is chosen on ticks"
    );
    sim.run(Duration::from_millis(20));
    assert_eq!(sim.reflector().thinned(), &[2]);
    // Moderate loss holds; no loss grows 8% per report.
    assert_eq!(rr(&mut sim, 10), Some(backed));
    assert_eq!(rr(&mut sim, 0), Some(backed + backed * 8 / 100));
}

/// Relayed SRs carry the sender info only, at most one per stream per 250 ms.
#[test]
fn relayed_srs_are_cut_to_the_sender_info_and_throttled() {
    let mut sim = Sim::new(&[1, 2]);
    sim.camera(1, 30);
    sim.run(Duration::from_millis(200));
    let info = packet::sender_report(video_ssrc(1), 7, 9000, 18, 18_000, &[]);
    // The same SR with one report block.
    let block = ReportBlock {
        ssrc: 0x5a5a_5a5a,
        fraction_lost: 0x5a,
        total_lost: 0x5a_5a5a,
        last_sequence_number: 0x5a5a_5a5a,
        jitter: 0x5a5a_5a5a,
        last_sender_report: 0x5a5a_5a5a,
        delay: 0x5a5a_5a5a,
    };
    let with_block = packet::sender_report(video_ssrc(1), 7, 9000, 18, 18_000, &[block]);
    sim.rtcp_from(1, &with_block);
    assert_eq!(sim.rtcp(2).len(), 1);
    assert_eq!(sim.rtcp(2)[0].1, info, "cut to the 28-byte sender info");
    // A flood of SRs: one per 250 ms goes on.
    for _ in 0..20 {
        sim.rtcp_from(1, &with_block);
        sim.run(Duration::from_millis(20));
    }
    let srs = sim.rtcp(2).len();
    assert!((2..=3).contains(&srs), "{srs} SRs relayed");
    assert_eq!(sim.reflector().stats().reports_throttled, 21 - srs as u64);
}

/// The SFU's REMBs of a video sender's packets: with its receiver reports, the sender hears
/// the lowest rate among its receivers, never below the floor.
fn rembs_to(sim: &mut Sim, to: u32) -> Vec<(u32, u64, Vec<u32>)> {
    sim.rtcp(to)
        .iter()
        .flat_map(|(_, b)| rtcp::packets(b).flatten().collect::<Vec<_>>())
        .filter_map(|p| match p {
            Rtcp::Remb(r) => Some((r.sender, r.bits_per_sec, r.ssrcs.iter().collect())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_video_sender_hears_its_slowest_receiver_in_a_remb() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.camera(1, 30);
    sim.run(Duration::from_millis(100));
    sim.rtcp_from(2, &packet::remb(0x2222, 600_000, &[video_ssrc(1)]));
    sim.rtcp_from(3, &packet::remb(0x3333, 2_000_000, &[video_ssrc(1)]));
    sim.run(Duration::from_millis(1500));
    let got = rembs_to(&mut sim, 1);
    let (from, bps, ssrcs) = got.last().cloned().expect("the sender got a REMB");
    assert_eq!(from, reflector::SFU_SSRC);
    assert!((590_000..=600_000).contains(&bps), "{bps}");
    assert_eq!(ssrcs, vec![video_ssrc(1)]);
    assert!(sim.reflector().stats().rembs_sent >= 1);
    // Receivers that send no video get none.
    assert!(rembs_to(&mut sim, 2).is_empty() && rembs_to(&mut sim, 3).is_empty());

    // A receiver claiming almost nothing does not starve the rest.
    sim.rtcp_from(2, &packet::remb(0x2222, 5_000, &[video_ssrc(1)]));
    sim.run(Duration::from_millis(1100));
    let (_, bps, _) = rembs_to(&mut sim, 1).last().cloned().unwrap();
    assert!(
        (reflector::REMB_FLOOR - 1000..=reflector::REMB_FLOOR).contains(&bps),
        "{bps}"
    );
}
