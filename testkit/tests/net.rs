//! The virtual-time network: each impairment does what it says, counted as it happens, and
//! one seed repeats a run exactly.

use std::time::{Duration, Instant};
use testkit::net::{Delivery, Fate, Impairments, Net, RateLimit};

const MS: Duration = Duration::from_millis(1);

/// Sends `n` packets of `size` bytes every `gap` on link 0 and collects every delivery.
fn run(net: &mut Net<u8>, t0: Instant, n: u16, gap: Duration, size: usize) -> Vec<Delivery<u8>> {
    let mut got = Vec::new();
    for i in 0..n {
        let at = t0 + gap * u32::from(i);
        got.extend(net.drain(at));
        let mut p = vec![0u8; size.max(2)];
        p[..2].copy_from_slice(&i.to_be_bytes());
        net.send(at, 0, p);
    }
    got.extend(net.drain(t0 + Duration::from_secs(3600)));
    got
}

fn index(d: &Delivery<u8>) -> u16 {
    u16::from_be_bytes([d.packet[0], d.packet[1]])
}

fn all_on() -> Impairments {
    Impairments {
        delay: 5 * MS,
        jitter: 15 * MS,
        loss: 10.0,
        duplicate: 5.0,
        reorder: 5.0,
        reorder_hold: 30 * MS,
        rate: Some(RateLimit {
            bytes_per_sec: 100_000,
            queue_bytes: 3000,
        }),
    }
}

#[test]
fn an_ideal_link_delivers_at_once_in_order() {
    let t0 = Instant::now();
    let mut net = Net::new(1);
    assert_eq!(net.send(t0, 7u8, vec![1]), Fate::Arrives(t0));
    assert_eq!(net.send(t0, 7u8, vec![2]), Fate::Arrives(t0));
    let got: Vec<Vec<u8>> = net.drain(t0).map(|d| d.packet).collect();
    assert_eq!(got, vec![vec![1], vec![2]]);
    assert_eq!(net.in_flight(), 0);
    assert_eq!(net.stats(&7).delivered, 2);
}

#[test]
fn the_same_seed_repeats_a_run_and_another_does_not() {
    let t0 = Instant::now();
    let go = |seed| {
        let mut net = Net::new(seed);
        net.set(0, all_on());
        let got: Vec<(Duration, u16)> = run(&mut net, t0, 500, 10 * MS, 100)
            .iter()
            .map(|d| (d.at - t0, index(d)))
            .collect();
        (got, net.stats(&0))
    };
    assert_eq!(go(5), go(5));
    assert_ne!(go(5).0, go(6).0);
}

#[test]
fn loss_takes_its_share_and_says_which() {
    let t0 = Instant::now();
    let mut net = Net::new(2);
    net.set(0u8, Impairments::loss(10.0));
    let mut lost = 0;
    for i in 0..10_000u32 {
        match net.send(t0 + MS * i, 0, vec![0]) {
            Fate::Lost => lost += 1,
            Fate::Arrives(at) => assert_eq!(at, t0 + MS * i),
            f => panic!("{f:?}"),
        }
    }
    assert!((900..1100).contains(&lost), "{lost}");
    let st = net.stats(&0);
    assert_eq!((st.sent, st.lost), (10_000, lost));
    assert_eq!(net.drain(t0 + MS * 10_000).count() as u64, 10_000 - lost);
}

#[test]
fn delay_and_jitter_stay_in_their_bounds_and_jitter_reorders() {
    let t0 = Instant::now();
    let mut net = Net::new(3);
    net.set(
        0u8,
        Impairments {
            delay: 40 * MS,
            jitter: 30 * MS,
            ..Impairments::default()
        },
    );
    let got = run(&mut net, t0, 2000, 10 * MS, 50);
    assert_eq!(got.len(), 2000);
    let mut extra = Vec::new();
    for d in &got {
        let sent = 10 * MS * u32::from(index(d));
        let transit = d.at - t0 - sent;
        assert!((40 * MS..=70 * MS).contains(&transit), "{transit:?}");
        extra.push((transit - 40 * MS).as_secs_f64() * 1000.0);
    }
    let mean = extra.iter().sum::<f64>() / extra.len() as f64;
    assert!(
        (13.0..17.0).contains(&mean),
        "uniform 0..30 ms: mean {mean}"
    );
    // 30 ms of jitter on 10 ms spacing: late packets, counted as the receiver would.
    let mut newest = None;
    let mut late = 0;
    for d in &got {
        match newest {
            Some(n) if index(d) < n => late += 1,
            _ => newest = Some(index(d)),
        }
    }
    assert!(late > 100, "{late}");
    assert_eq!(net.stats(&0).reordered, late);
    // Deliveries come out in time order.
    assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
}

#[test]
fn held_packets_are_overtaken() {
    let t0 = Instant::now();
    let mut net = Net::new(4);
    net.set(
        0u8,
        Impairments {
            reorder: 10.0,
            reorder_hold: 15 * MS,
            ..Impairments::default()
        },
    );
    let got = run(&mut net, t0, 1000, 10 * MS, 50);
    assert_eq!(got.len(), 1000);
    let held: Vec<u16> = got
        .iter()
        .filter(|d| d.at > t0 + 10 * MS * u32::from(index(d)))
        .map(index)
        .collect();
    assert!((60..140).contains(&held.len()), "{}", held.len());
    // A held packet arrives after the next one (unless that one was held too).
    for &h in &held {
        let pos = |i: u16| got.iter().position(|d| index(d) == i);
        if let (Some(a), Some(b)) = (pos(h), pos(h + 1)) {
            assert!(a > b || held.contains(&(h + 1)), "{h}");
        }
    }
    let st = net.stats(&0);
    assert!(st.reordered > 0 && st.reordered <= held.len() as u64);
}

#[test]
fn duplicates_arrive_twice() {
    let t0 = Instant::now();
    let mut net = Net::new(5);
    net.set(
        0u8,
        Impairments {
            duplicate: 20.0,
            ..Impairments::default()
        },
    );
    let mut twice = 0;
    for i in 0..1000u32 {
        if let Fate::Twice(a, b) = net.send(t0 + MS * i, 0, vec![i as u8]) {
            assert_eq!((a, b), (t0 + MS * i, t0 + MS * i));
            twice += 1;
        }
    }
    assert!((150..250).contains(&twice), "{twice}");
    assert_eq!(net.stats(&0).duplicated, twice);
    assert_eq!(net.drain(t0 + MS * 1000).count() as u64, 1000 + twice);
    assert_eq!(net.stats(&0).reordered, 0, "a copy is not a reordering");
}

#[test]
fn a_rate_limit_paces_and_its_queue_drops_the_excess() {
    let t0 = Instant::now();
    let mut net = Net::new(6);
    net.set(
        0u8,
        Impairments {
            rate: Some(RateLimit {
                bytes_per_sec: 100_000,
                queue_bytes: 5000,
            }),
            ..Impairments::default()
        },
    );
    // 1000-byte packets every 5 ms: 200 kB/s into a 100 kB/s bottleneck.
    let got = run(&mut net, t0, 400, 5 * MS, 1000);
    let st = net.stats(&0);
    assert_eq!(st.queue_drops + got.len() as u64, 400);
    assert!(st.queue_drops > 150, "{st:?}");
    // What got through left 10 ms apart, and never waited longer than the queue holds.
    for w in got.windows(2) {
        assert!(w[1].at - w[0].at >= 10 * MS);
    }
    for d in &got {
        let sent = t0 + 5 * MS * u32::from(index(d));
        assert!(d.at - sent <= 50 * MS, "{:?}", d.at - sent);
    }
    // Under the rate, nothing is dropped.
    let mut calm = Net::new(6);
    calm.set(0u8, net.impairments(&0));
    assert_eq!(run(&mut calm, t0, 200, 20 * MS, 1000).len(), 200);
}

#[test]
fn links_draw_their_own_luck() {
    let t0 = Instant::now();
    let fates = |extra_traffic: bool| {
        let mut net = Net::new(9);
        net.set(0u8, Impairments::loss(30.0));
        net.set(1u8, Impairments::loss(30.0));
        (0..200u32)
            .map(|i| {
                if extra_traffic {
                    net.send(t0, 1, vec![0]);
                }
                net.send(t0 + MS * i, 0, vec![0])
            })
            .collect::<Vec<Fate>>()
    };
    assert_eq!(fates(false), fates(true));
}
