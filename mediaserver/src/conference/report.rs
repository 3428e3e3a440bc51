//! The load report sent to the dispatcher every second, and the process CPU it includes.

use super::{lock, Conferences};
use crate::worker::WorkerCounters;
use protocol::MsMsg;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

impl Conferences {
    /// The `report` line: unused capacity in the dispatcher's units, conferences, users,
    /// CPU, packets out per second and the loss of what we received.
    pub(crate) fn report(&self) -> MsMsg {
        // Used capacity in the dispatcher's units: each member costs what its conference's
        // mode costs in the shared `[cost]` model.
        let (conferences, users, used) = {
            let rooms = self.rooms();
            let used = rooms.units(&self.settings.cost);
            (
                rooms.len() as u32,
                rooms.users() as u32,
                u32::try_from(used).unwrap_or(u32::MAX),
            )
        };
        let sum = |f: fn(&WorkerCounters) -> &AtomicU64| -> u64 {
            self.workers
                .iter()
                .map(|w| f(&w.counters).load(Ordering::Relaxed))
                .sum()
        };
        let (cpu_pct, pps, loss_pct) = lock(&self.meter).sample(
            sum(|c| &c.packets_out),
            sum(|c| &c.datagrams_in),
            sum(|c| &c.lost),
        );
        MsMsg::Report {
            unused: self.settings.capacity.saturating_sub(used),
            conferences,
            users,
            cpu_pct,
            pps,
            loss_pct,
        }
    }
}

/// CPU use and packet rate between two reports.
pub(super) struct Meter {
    at: Instant,
    cpu_ticks: u64,
    packets: u64,
    received: u64,
    lost: u64,
}

impl Meter {
    pub(super) fn new() -> Self {
        Meter {
            at: Instant::now(),
            cpu_ticks: cpu_ticks().unwrap_or(0),
            packets: 0,
            received: 0,
            lost: 0,
        }
    }

    /// CPU %, packets out per second, and the loss % of what we received, since the
    /// last sample.
    fn sample(&mut self, packets: u64, received: u64, lost: u64) -> (f32, u64, f32) {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let ticks = cpu_ticks().unwrap_or(self.cpu_ticks);
        // Linux reports process times in USER_HZ, which is 100 on every supported platform.
        let cpu = (ticks.saturating_sub(self.cpu_ticks)) as f64 / 100.0 / secs * 100.0;
        let pps = (packets.saturating_sub(self.packets)) as f64 / secs;
        self.at = now;
        self.cpu_ticks = ticks;
        self.packets = packets;
        let (got, missed) = (
            received.saturating_sub(self.received),
            lost.saturating_sub(self.lost),
        );
        self.received = received;
        self.lost = lost;
        let loss = if got + missed > 0 {
            100.0 * missed as f64 / (got + missed) as f64
        } else {
            0.0
        };
        (cpu as f32, pps as u64, loss as f32)
    }
}

/// CPU seconds (user + system) of this process.
pub(crate) fn cpu_seconds() -> Option<f64> {
    // Linux reports process times in USER_HZ, which is 100 on every supported platform.
    cpu_ticks().map(|t| t as f64 / 100.0)
}

/// utime + stime of this process from /proc, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
