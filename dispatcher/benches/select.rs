//! Dispatch decisions per second: the selection pipeline over 10 and 100 servers
//! (`choose`, no commit), a whole placement of a new conference (`place_join`), and, as
//! the same-run baseline, the single-pass fold that selection was before the pipeline.
//!
//! `cargo bench -p dispatcher --bench select`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dispatcher::core::{Join, Load, Policy, Server, ServerState, Stamp, Tables};
use protocol::{Capabilities, Mode};
use std::time::{Duration, Instant};

fn table(n: usize, t0: Instant) -> Tables {
    let mut t = Tables::with_policy(Policy::default(), 1);
    for i in 0..n {
        let caps = Capabilities {
            audio: true,
            video: i % 3 == 0,
            reflect: true,
            mix: true,
            composite: false,
        };
        let id = format!("ms-{i}");
        t.register(
            t0,
            0,
            &id,
            ([127, 0, 0, 1], 4000 + i as u16).into(),
            caps,
            1000,
        );
        // Distinct loads, with a few ties.
        let load = Load {
            unused: 500 + (i as u32 * 7) % 300,
            ..Load::default()
        };
        t.report(
            Stamp {
                now: t0,
                unix_ms: 0,
            },
            &id,
            load,
        );
    }
    t
}

/// The selection before the pipeline: filter, then keep the greatest score.
fn old_select<'a>(
    servers: impl Iterator<Item = &'a Server>,
    need: &Capabilities,
    now: Instant,
) -> Option<&'a Server> {
    servers
        .filter(|s| s.state(now, 0) == ServerState::InService)
        .filter(|s| s.caps.covers(need))
        .filter(|s| s.in_communication(now))
        .fold(None, |best: Option<&Server>, s| match best {
            Some(b) if b.score() >= s.score() => Some(b),
            _ => Some(s),
        })
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    for n in [10, 100] {
        let mut t = table(n, t0);
        let join = Join {
            pool: Some("default"),
            ..Join::new("new", "demo", Mode::Reflect)
        };
        g.bench_with_input(BenchmarkId::new("choose", n), &n, |b, _| {
            b.iter(|| black_box(t.choose(t0, 0, black_box(&join)).is_ok()))
        });
        let need = dispatcher::core::needs(Mode::Reflect, dispatcher::core::Media::Audio);
        g.bench_with_input(BenchmarkId::new("old_select", n), &n, |b, _| {
            b.iter(|| black_box(old_select(t.servers(), black_box(&need), t0).is_some()))
        });
        let names: Vec<String> = (0..100_000).map(|i| format!("conf-{i}")).collect();
        let mut i = 0;
        let mut t = table(n, t0);
        g.bench_with_input(BenchmarkId::new("place_join", n), &n, |b, _| {
            b.iter(|| {
                // A fresh table every 100k conferences keeps the conference table bounded.
                if i == names.len() {
                    t = table(n, t0);
                    i = 0;
                }
                let j = Join {
                    conference: &names[i],
                    ..join
                };
                i += 1;
                black_box(t.place_join(t0, 0, &j, Duration::from_secs(30)).is_ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
