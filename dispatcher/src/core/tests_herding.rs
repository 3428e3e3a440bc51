//! Herding in virtual time: a burst of joins between reports must not pile onto the
//! server whose last report looked emptiest (the failure Jitsi users report: 58 of 92
//! joins on one bridge). Media servers are simulated: a dispatched client reaches its
//! server some time later, the server says `userjoined` then, and every server reports
//! its true load once a second.
use super::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const SERVERS: usize = 10;
const CONFERENCES: usize = 200;
const PER_CONFERENCE: usize = 5;
const TOTAL: u32 = 1000;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// The i-th join of the burst reaches the dispatcher.
    Join(usize),
    /// A dispatched client reaches its server (server index, conference, participant).
    Arrive(usize, usize, u32),
    /// A server's once-a-second report.
    Report(usize),
}

/// Runs the burst and returns each server's true load at the end.
fn burst(seed: u64) -> Vec<u32> {
    let t0 = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = Tables::with_policy(Policy::default(), seed);
    let ids: Vec<String> = (0..SERVERS).map(|i| format!("ms-{i}")).collect();
    let caps = Capabilities {
        audio: true,
        reflect: true,
        mix: true,
        ..Default::default()
    };
    for (i, id) in ids.iter().enumerate() {
        t.register(
            t0,
            0,
            id,
            SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16)),
            caps,
            TOTAL,
        );
    }
    // Every conference's joins, shuffled: the burst interleaves first joins and rejoins.
    let mut joins: Vec<usize> = (0..CONFERENCES)
        .flat_map(|c| std::iter::repeat_n(c, PER_CONFERENCE))
        .collect();
    joins.shuffle(&mut rng);
    let mut queue = BinaryHeap::new();
    // A join every millisecond: all 1,000 in one second, a handful of reports.
    for i in 0..joins.len() {
        queue.push(Reverse((i as u64, Ev::Join(i))));
    }
    // Reports every second, each server at its own phase, until well after the burst.
    for s in 0..SERVERS {
        let phase = rng.gen_range(0..1000);
        for k in 0..4 {
            queue.push(Reverse((phase + k * 1000, Ev::Report(s))));
        }
    }
    let mut load = vec![0u32; SERVERS];
    let mut next_participant = 0;
    let names: Vec<String> = (0..CONFERENCES).map(|c| format!("conf-{c}")).collect();
    while let Some(Reverse((ms, ev))) = queue.pop() {
        let now = t0 + Duration::from_millis(ms);
        let stamp = Stamp { now, unix_ms: ms };
        match ev {
            Ev::Join(i) => {
                let c = joins[i];
                let p = t
                    .place(
                        now,
                        ms,
                        &names[c],
                        "demo",
                        Mode::Reflect,
                        Duration::from_secs(30),
                    )
                    .expect("ten servers with room");
                let s = ids
                    .iter()
                    .position(|id| *id == p.server)
                    .expect("a known id");
                next_participant += 1;
                // The client reaches the media server 50 to 400 ms later.
                let at = ms + rng.gen_range(50..400);
                queue.push(Reverse((at, Ev::Arrive(s, c, next_participant))));
            }
            Ev::Arrive(s, c, participant) => {
                load[s] += 1;
                t.user_joined(stamp, &ids[s], &names[c], participant, "u", "demo");
            }
            Ev::Report(s) => t.report(
                stamp,
                &ids[s],
                Load {
                    unused: TOTAL - load[s],
                    conferences: 0,
                    users: load[s],
                    ..Load::default()
                },
            ),
        }
    }
    load
}

#[test]
fn a_burst_between_reports_does_not_herd() {
    for seed in [1, 2, 3] {
        let load = burst(seed);
        let sum: u32 = load.iter().sum();
        assert_eq!(sum as usize, CONFERENCES * PER_CONFERENCE);
        let mean = f64::from(sum) / SERVERS as f64;
        let max = f64::from(*load.iter().max().expect("ten servers"));
        assert!(
            max <= 1.15 * mean,
            "seed {seed}: most loaded {max} > 1.15 x mean {mean}: {load:?}"
        );
    }
}
