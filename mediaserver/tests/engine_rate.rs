//! A rough forwarding-rate probe of one worker engine per backend, for development only; the
//! real figures come from `benches/` (loadgen against the real binaries). Ignored by default:
//!
//! ```text
//! cargo test --release -p mediaserver --test engine_rate -- --ignored --nocapture
//! ```

mod common;

use common::*;
use mediaserver::io::IoKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the calling thread's CPU clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One sender blasting `burst`-packet bursts of 1000-byte packets into a conference of
/// `people`; prints packets out per engine CPU-second.
fn rate(kind: IoKind, gso: bool, people: u32, burst: u16) {
    let mut rig = Rig::new(kind, gso, people);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = rig.peers[0].try_clone().unwrap();
    let to = rig.addr;
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let pkts: Vec<Vec<u8>> = (0..burst).map(|q| rtp(1, q, 1000)).collect();
        while !s.load(Ordering::Relaxed) {
            for p in &pkts {
                let _ = sender.send_to(p, to);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        rig.engine.turn(Duration::from_millis(10)).unwrap();
    }
    let cpu = thread_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    rig.engine.publish(Instant::now());
    let c = &rig.counters;
    let out = c.packets_out.load(Ordering::Relaxed);
    let calls = c.send_calls.load(Ordering::Relaxed);
    let kind = rig.engine.io_kind();
    let gso = rig.engine.gso();
    eprintln!(
        "{kind:5} gso={gso:5} fan-out 1->{:3} burst {burst:3}: {:>9.0} pkts out/s, {:>9.0} per engine CPU-s, {:.1} pkts/send call, errors {}",
        people - 1,
        out as f64 / t0.elapsed().as_secs_f64(),
        out as f64 / cpu.as_secs_f64(),
        out as f64 / calls.max(1) as f64,
        c.send_errors.load(Ordering::Relaxed),
    );
}

#[test]
#[ignore = "development probe; run with --release --ignored --nocapture"]
fn engine_rates() {
    for (people, burst) in [(2, 1), (10, 1), (10, 8), (50, 4)] {
        for (kind, gso) in [
            (IoKind::Mmsg, false),
            (IoKind::Mmsg, true),
            (IoKind::Uring, false),
            (IoKind::Uring, true),
        ] {
            rate(kind, gso, people, burst);
        }
    }
}
