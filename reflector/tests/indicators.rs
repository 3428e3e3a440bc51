//! The indicators of a forwarding conference in virtual time, without last-N: speaking
//! from the senders' RFC 6464 levels, a level batch at most every 200 ms that follows a
//! talker's volume, the dominant speaker with its hysteresis, a muted member never shown
//! as talking, and each receiver's quality light from its receiver reports.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh::{Command, Event};
use testkit::packet::{receiver_report, ReportBlock};

/// Every event so far, stamped with when it was polled.
fn events(sim: &mut Sim, into: &mut Vec<(Instant, Event)>) {
    while let Some(e) = sim.mesh.poll_event() {
        into.push((sim.now, e));
    }
}

fn run(sim: &mut Sim, ms: u64, log: &mut Vec<(Instant, Event)>) {
    for _ in 0..ms / 10 {
        sim.run(Duration::from_millis(10));
        events(sim, log);
    }
}

#[test]
fn levels_follow_the_volume_and_the_dominant_speaker_follows_the_talker() {
    let mut sim = Sim::new(&[1, 2, 3]);
    let t0 = sim.now;
    let mut log = Vec::new();
    // 1 talks at -30, -10, then -30 dBov, a second each; then 2 takes over.
    sim.voices.insert(1, true);
    sim.voices.insert(2, false);
    sim.voices.insert(3, false);
    for level in [30u8, 10, 30] {
        sim.levels.insert(1, level);
        run(&mut sim, 1000, &mut log);
    }
    sim.voices.insert(1, false);
    sim.voices.insert(2, true);
    let two_starts = sim.now;
    run(&mut sim, 2000, &mut log);

    let at = |t: Instant| t.duration_since(t0).as_secs_f64();
    let batches: Vec<(f64, Vec<(u32, i8)>)> = log
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Levels { levels, .. } => Some((at(*t), levels.iter().collect())),
            _ => None,
        })
        .collect();
    for w in batches.windows(2) {
        assert!(w[1].0 - w[0].0 >= 0.199, "more than 5 a second: {w:?}");
    }
    let of_one = |from: f64, to: f64| -> Vec<i8> {
        batches
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .flat_map(|(_, l)| l.iter().filter(|x| x.0 == 1).map(|x| x.1))
            .collect()
    };
    for (from, to, db) in [(0.3, 1.0, -30), (1.3, 2.0, -10), (2.3, 3.0, -30)] {
        let got = of_one(from, to);
        assert!(got.len() >= 3, "{from}..{to}: {batches:?}");
        assert!(got.iter().all(|&x| x == db), "{from}..{to}: {got:?}");
    }
    // Quiet members are not in the batches.
    assert!(batches.iter().all(|(_, l)| l.iter().all(|(p, _)| *p != 3)));
    // Dominant: 1 at once, 2 within a second of starting.
    let dominant: Vec<(Instant, u32)> = log
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Dominant { participant, .. } => Some((*t, *participant)),
            _ => None,
        })
        .collect();
    assert_eq!(dominant.first().map(|d| d.1), Some(1), "{dominant:?}");
    let (when, _) = dominant
        .iter()
        .find(|d| d.1 == 2)
        .expect("2 took the floor");
    let after = when.duration_since(two_starts);
    assert!(
        after >= Duration::from_millis(400) && after < Duration::from_secs(1),
        "{after:?}"
    );
    assert_eq!(dominant.len(), 2, "{dominant:?}");
    assert_eq!(sim.reflector().dominant_speaker(), Some(2));
}

/// (when, on) of every speaking notice about `participant` in `log`.
fn speaking_of(log: &[(Instant, Event)], participant: u32) -> Vec<(Instant, bool)> {
    log.iter()
        .filter_map(|(t, e)| match e {
            Event::Speaking {
                participant: p, on, ..
            } if *p == participant => Some((*t, *on)),
            _ => None,
        })
        .collect()
}

/// A tick looks only at members that sent audio lately (a room of thousands, most of them
/// silent or a linked server's, costs its talkers): a talker that stops sending still has
/// its run ended, and one that comes back after a long silence is seen again.
#[test]
fn a_talker_that_goes_silent_and_comes_back_is_followed() {
    let ids: Vec<u32> = (1..=200).collect();
    let mut sim = Sim::new(&ids);
    let mut log = Vec::new();
    sim.voices.insert(1, true);
    run(&mut sim, 1000, &mut log);
    // No packets at all from 1 (not silence packets) for three seconds.
    sim.voices.remove(&1);
    let gone = sim.now;
    run(&mut sim, 3000, &mut log);
    sim.voices.insert(1, true);
    let back = sim.now;
    run(&mut sim, 1000, &mut log);
    let speaking = speaking_of(&log, 1);
    assert_eq!(speaking.len(), 3, "{speaking:?}");
    assert!(
        speaking[0].1 && !speaking[1].1 && speaking[2].1,
        "{speaking:?}"
    );
    let ended = speaking[1].0.duration_since(gone);
    assert!(ended <= Duration::from_millis(600), "ended {ended:?} after");
    assert!(speaking[2].0.duration_since(back) <= Duration::from_millis(300));
    // Its levels come back with it.
    let levels_after = log.iter().any(|(t, e)| {
        *t > back && matches!(e, Event::Levels { levels, .. } if levels.iter().any(|(p, _)| p == 1))
    });
    assert!(levels_after, "no level for 1 after it came back");
}

#[test]
fn a_muted_member_is_not_shown_talking() {
    let mut sim = Sim::new(&[1, 2]);
    let mut log = Vec::new();
    sim.voices.insert(1, true);
    run(&mut sim, 1000, &mut log);
    let now = sim.now;
    sim.mesh.handle_command(
        now,
        Command::Mute {
            conf: CONF,
            participant: 1,
            muted: true,
        },
    );
    let muted_at = sim.now;
    run(&mut sim, 2000, &mut log);
    let speaking = speaking_of(&log, 1);
    assert_eq!(speaking.len(), 2, "{speaking:?}");
    assert!(speaking[0].1 && !speaking[1].1);
    assert!(speaking[1].0.duration_since(muted_at) < Duration::from_millis(50));
    let late_levels = log.iter().any(|(t, e)| {
        *t > muted_at + Duration::from_millis(50) && matches!(e, Event::Levels { .. })
    });
    assert!(!late_levels, "a muted member has no level");
    // Nothing of its audio reached 2 while muted.
    let audio_at_2 = sim
        .media(2)
        .iter()
        .filter(|(t, p)| *t > muted_at + Duration::from_millis(20) && p[1] & 0x7f == 111)
        .count();
    assert_eq!(audio_at_2, 0);
}

#[test]
fn each_receiver_gets_a_light_from_its_receiver_reports() {
    let mut sim = Sim::with(&[1, 2, 3], |r| r.set_quality_reports(true));
    let mut log = Vec::new();
    sim.voices.insert(1, true);
    for _ in 0..4 {
        run(&mut sim, 1000, &mut log);
        // 2 reports a quarter of 1's audio lost, 3 none, with 5 ms of jitter.
        for (who, fraction) in [(2u32, 64u8), (3, 0)] {
            let rr = receiver_report(
                audio_ssrc(who),
                &[ReportBlock {
                    ssrc: audio_ssrc(1),
                    fraction_lost: fraction,
                    total_lost: 0,
                    last_sequence_number: 100,
                    jitter: 240,
                    last_sender_report: 0,
                    delay: 0,
                }],
            );
            sim.rtcp_from(who, &rr);
        }
    }
    let lights = |who: u32| -> Vec<(u32, u32)> {
        log.iter()
            .filter_map(|(_, e)| match e {
                Event::Quality {
                    participant,
                    loss_permille,
                    jitter_ms,
                    ..
                } if *participant == who => Some((*loss_permille, *jitter_ms)),
                _ => None,
            })
            .collect()
    };
    let two = lights(2);
    assert!(two.len() >= 2, "{two:?}");
    assert!(two.last().unwrap().0 >= 240, "{two:?}");
    assert_eq!(two.last().unwrap().1, 5);
    let three = lights(3);
    assert!(!three.is_empty());
    assert!(three.iter().skip(1).all(|&(l, _)| l == 0), "{three:?}");
    // Without the setting (a mixer's reflector) nothing is reported.
    let mut quiet = Sim::new(&[1, 2]);
    quiet.voices.insert(1, true);
    quiet.run(Duration::from_secs(3));
    let mut any = Vec::new();
    events(&mut quiet, &mut any);
    assert!(!any.iter().any(|(_, e)| matches!(e, Event::Quality { .. })));
}
