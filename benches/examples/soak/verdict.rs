//! What the soak records and how it is judged. The checks are pure functions of the
//! record, so the pass criteria are unit-tested without a deployment.

use serde::Serialize;

/// One process of the deployment at one sample.
#[derive(Debug, Clone, Serialize)]
pub struct ProcSample {
    pub name: String,
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
}

/// One 10 s load step and the state of the deployment at its end.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub step: u16,
    /// The step's sending window, seconds since the soak's load started.
    pub start_s: f64,
    pub end_s: f64,
    pub sent: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub latency_p99_ms: f64,
    /// Packets not sent because their participant was between servers.
    pub paused: u64,
    /// Participants holding an audio channel when the step ended.
    pub in_conference: u32,
    pub procs: Vec<ProcSample>,
}

/// The faults the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    KillMediaServer,
    KillActiveDispatcher,
    RestartRedis,
}

impl FaultKind {
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::KillMediaServer => "kill -9 media server",
            FaultKind::KillActiveDispatcher => "kill -9 active dispatcher",
            FaultKind::RestartRedis => "restart Redis",
        }
    }
}

/// One injected fault and how the deployment came back from it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// The process hit (`ms-1`, `disp-2`, `redis`).
    pub target: String,
    pub at_s: f64,
    /// Most participants out of a conference at once after the fault.
    pub most_out: u32,
    /// Seconds from the fault until every participant was in a conference again (0 when
    /// none left); `None` when they were not all back within the watch.
    pub all_back_s: Option<f64>,
    /// When the process hit was running again.
    pub restarted_s: Option<f64>,
    /// The failovers that landed after it: ms from each participant's loss to its rejoin.
    pub rejoin_ms: Vec<u64>,
    /// Processes whose memory the fault changes: the one restarted and any that take
    /// over its load or duties. Their growth is measured from after it settled.
    pub affects: Vec<String>,
}

impl Fault {
    /// The span whose loss is the fault's: from the fault until everyone is back and the
    /// process is running again, plus `after_s`.
    pub fn window(&self, watch_s: f64, after_s: f64) -> (f64, f64) {
        let back = self.at_s + self.all_back_s.unwrap_or(watch_s);
        let up = self.restarted_s.unwrap_or(self.at_s);
        (self.at_s, back.max(up) + after_s)
    }
}

/// The pass criteria (issue 16).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Memory may grow less than this after warm-up, per process.
    pub rss_growth_pct: f64,
    /// Loss per step outside the fault windows.
    pub loss_pct: f64,
    /// Every participant back in a conference within this after each fault.
    pub back_s: f64,
    /// How long the fault monitor waits for everyone to be back.
    pub watch_s: f64,
    /// Loss this long after everyone is back still counts as the fault's.
    pub window_after_s: f64,
    /// Memory is measured from this long after the load started...
    pub warmup_s: f64,
    /// ...or this long after the last fault that changed the process's memory.
    pub settle_s: f64,
    /// Descriptors idle after the soak may exceed idle before it by this many in total.
    pub fd_slack: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rss_growth_pct: 5.0,
            loss_pct: 0.1,
            back_s: 3.0,
            watch_s: 30.0,
            window_after_s: 10.0,
            warmup_s: 120.0,
            settle_s: 60.0,
            fd_slack: 2,
        }
    }
}

/// One criterion's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

/// Descriptors of every process of the idle deployment, before and after the load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleFds {
    pub before: Vec<ProcSample>,
    pub after: Vec<ProcSample>,
}

/// The conferences at the end of the load.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ending {
    pub conferences: u32,
    pub participants: u32,
    /// Conferences in the dispatcher's table with every participant.
    pub complete: u32,
    /// Participants in a conference at the end (loadgen's view).
    pub in_conference: u32,
    /// Control connections that ended without loadgen leaving (a participant lost).
    pub closed_early: u64,
}

/// Judges the record against `limits`.
pub fn judge(
    samples: &[Sample],
    faults: &[Fault],
    fds: &IdleFds,
    ending: &Ending,
    limits: &Limits,
) -> Vec<Check> {
    vec![
        memory(samples, faults, limits),
        descriptors(fds, limits),
        loss(samples, faults, limits),
        back(faults, limits),
        conferences(ending),
    ]
}

fn memory(samples: &[Sample], faults: &[Fault], limits: &Limits) -> Check {
    let Some(last) = samples.last() else {
        return fail("memory", "no samples".into());
    };
    let mut worst: Option<(String, f64)> = None;
    let mut parts = Vec::new();
    for p in &last.procs {
        let settled = faults
            .iter()
            .filter(|f| f.affects.contains(&p.name))
            .map(|f| f.restarted_s.unwrap_or(f.at_s).max(f.at_s) + limits.settle_s)
            .fold(limits.warmup_s, f64::max);
        let base = samples
            .iter()
            .find(|s| s.end_s >= settled)
            .and_then(|s| s.procs.iter().find(|q| q.name == p.name))
            .and_then(|q| q.rss_kib);
        let (Some(base), Some(end)) = (base, p.rss_kib) else {
            return fail(
                "memory",
                format!(
                    "{}: no sample {settled:.0} s after the start to measure from",
                    p.name
                ),
            );
        };
        let growth = (end as f64 - base as f64) / base.max(1) as f64 * 100.0;
        parts.push(format!("{} {:+.1}% ({base}->{end} KiB)", p.name, growth));
        if worst.as_ref().is_none_or(|(_, g)| growth > *g) {
            worst = Some((p.name.clone(), growth));
        }
    }
    let pass = worst
        .as_ref()
        .is_none_or(|(_, g)| *g < limits.rss_growth_pct);
    check("memory", pass, parts.join(", "))
}

fn total(procs: &[ProcSample]) -> u64 {
    procs.iter().filter_map(|p| p.fds).sum()
}

fn descriptors(fds: &IdleFds, limits: &Limits) -> Check {
    let (before, after) = (total(&fds.before), total(&fds.after));
    let per: Vec<String> = fds
        .after
        .iter()
        .map(|p| {
            let b = fds
                .before
                .iter()
                .find(|q| q.name == p.name)
                .and_then(|q| q.fds);
            format!("{} {}->{}", p.name, fmt_opt(b), fmt_opt(p.fds))
        })
        .collect();
    check(
        "descriptors",
        !fds.after.is_empty() && after <= before + limits.fd_slack,
        format!(
            "idle total {before} before, {after} after ({})",
            per.join(", ")
        ),
    )
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn loss(samples: &[Sample], faults: &[Fault], limits: &Limits) -> Check {
    let windows: Vec<(f64, f64)> = faults
        .iter()
        .map(|f| f.window(limits.watch_s, limits.window_after_s))
        .collect();
    let outside: Vec<&Sample> = samples
        .iter()
        .filter(|s| !windows.iter().any(|&(a, b)| s.start_s < b && s.end_s > a))
        .collect();
    if outside.is_empty() {
        return fail("loss", "no step outside the fault windows".into());
    }
    let worst = outside
        .iter()
        .max_by(|a, b| a.loss_pct.total_cmp(&b.loss_pct))
        .expect("outside is not empty");
    let (lost, expected) = outside
        .iter()
        .fold((0, 0), |(l, e), s| (l + s.lost, e + s.expected));
    check(
        "loss",
        worst.loss_pct <= limits.loss_pct,
        format!(
            "{} steps outside the fault windows: {lost} of {expected} lost ({:.4}%), worst step {} {:.4}%; {} steps in fault windows",
            outside.len(),
            pct(lost, expected),
            worst.step,
            worst.loss_pct,
            samples.len() - outside.len()
        ),
    )
}

fn back(faults: &[Fault], limits: &Limits) -> Check {
    let parts: Vec<String> = faults
        .iter()
        .map(|f| {
            let t = f.all_back_s.map_or("never".into(), |t| format!("{t:.2} s"));
            format!(
                "{} ({}): {} out, back in {t}",
                f.kind.label(),
                f.target,
                f.most_out
            )
        })
        .collect();
    let pass = !faults.is_empty()
        && faults
            .iter()
            .all(|f| f.all_back_s.is_some_and(|t| t <= limits.back_s));
    check("back in a conference", pass, parts.join("; "))
}

fn conferences(e: &Ending) -> Check {
    let all = e.conferences * e.participants;
    check(
        "no conference lost",
        e.complete == e.conferences && e.in_conference == all && e.closed_early == 0,
        format!(
            "{} of {} conferences complete in the dispatcher's table, {} of {all} participants in a conference, {} connections lost",
            e.complete, e.conferences, e.in_conference, e.closed_early
        ),
    )
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn check(name: &'static str, pass: bool, detail: String) -> Check {
    Check { name, pass, detail }
}

fn fail(name: &'static str, detail: String) -> Check {
    check(name, false, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(name: &str, rss: u64, fds: u64) -> ProcSample {
        ProcSample {
            name: name.into(),
            rss_kib: Some(rss),
            fds: Some(fds),
        }
    }

    fn sample(step: u16, loss_pct: f64, rss: [u64; 2]) -> Sample {
        let start = f64::from(step) * 10.0;
        Sample {
            step,
            start_s: start,
            end_s: start + 10.0,
            sent: 1000,
            expected: 4000,
            lost: (loss_pct * 40.0) as u64,
            loss_pct,
            latency_p99_ms: 1.0,
            paused: 0,
            in_conference: 100,
            procs: vec![proc("ms-1", rss[0], 10), proc("ms-2", rss[1], 10)],
        }
    }

    fn fault(at_s: f64, back: Option<f64>, affects: &[&str]) -> Fault {
        Fault {
            kind: FaultKind::KillMediaServer,
            target: "ms-1".into(),
            at_s,
            most_out: 50,
            all_back_s: back,
            restarted_s: Some(at_s + 3.0),
            rejoin_ms: vec![],
            affects: affects.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn limits() -> Limits {
        Limits {
            warmup_s: 20.0,
            settle_s: 20.0,
            ..Limits::default()
        }
    }

    fn named<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).expect("a check")
    }

    fn run(samples: &[Sample], faults: &[Fault]) -> Vec<Check> {
        let fds = IdleFds {
            before: vec![proc("ms-1", 0, 10)],
            after: vec![proc("ms-1", 0, 11)],
        };
        let ending = Ending {
            conferences: 20,
            participants: 5,
            complete: 20,
            in_conference: 100,
            closed_early: 0,
        };
        judge(samples, faults, &fds, &ending, &limits())
    }

    #[test]
    fn loss_inside_a_fault_window_is_excused_and_outside_it_is_not() {
        let mut s: Vec<Sample> = (0..10).map(|i| sample(i, 0.0, [100, 100])).collect();
        s[4].loss_pct = 30.0; // the step of the fault at 45 s
        let faults = [fault(45.0, Some(1.0), &["ms-1"])];
        assert!(named(&run(&s, &faults), "loss").pass);
        s[8].loss_pct = 0.2; // 80..90 s: after the window (45 .. 48 + 10)
        let c = run(&s, &faults);
        assert!(!named(&c, "loss").pass, "{:?}", named(&c, "loss"));
    }

    #[test]
    fn memory_is_measured_from_warm_up_or_after_the_fault_that_changed_it() {
        // ms-2 doubles when ms-1's participants move to it at 45 s, then stays flat.
        let s: Vec<Sample> = (0..12)
            .map(|i| sample(i, 0.0, [100, if i < 5 { 100 } else { 200 }]))
            .collect();
        let faults = [fault(45.0, Some(1.0), &["ms-1", "ms-2"])];
        assert!(named(&run(&s, &faults), "memory").pass);
        // Without the fault marking ms-2, the doubling is growth.
        let c = run(&s, &[fault(45.0, Some(1.0), &["ms-1"])]);
        assert!(!named(&c, "memory").pass);
        // Growth after the settle is growth.
        let mut s = s;
        s[11].procs[1].rss_kib = Some(215);
        assert!(!named(&run(&s, &faults), "memory").pass);
    }

    #[test]
    fn a_slow_or_missing_recovery_fails() {
        let s: Vec<Sample> = (0..10).map(|i| sample(i, 0.0, [100, 100])).collect();
        assert!(
            named(
                &run(&s, &[fault(45.0, Some(2.9), &[])]),
                "back in a conference"
            )
            .pass
        );
        assert!(
            !named(
                &run(&s, &[fault(45.0, Some(3.5), &[])]),
                "back in a conference"
            )
            .pass
        );
        assert!(!named(&run(&s, &[fault(45.0, None, &[])]), "back in a conference").pass);
        assert!(!named(&run(&s, &[]), "back in a conference").pass);
    }

    #[test]
    fn descriptors_and_conferences() {
        let s: Vec<Sample> = (0..10).map(|i| sample(i, 0.0, [100, 100])).collect();
        let f = [fault(45.0, Some(1.0), &[])];
        let fds = |after| IdleFds {
            before: vec![proc("ms-1", 0, 10), proc("disp-1", 0, 20)],
            after: vec![proc("ms-1", 0, after), proc("disp-1", 0, 20)],
        };
        let mut ending = Ending {
            conferences: 20,
            participants: 5,
            complete: 20,
            in_conference: 100,
            closed_early: 0,
        };
        let l = limits();
        assert!(named(&judge(&s, &f, &fds(12), &ending, &l), "descriptors").pass);
        assert!(!named(&judge(&s, &f, &fds(13), &ending, &l), "descriptors").pass);
        assert!(named(&judge(&s, &f, &fds(10), &ending, &l), "no conference lost").pass);
        ending.complete = 19;
        assert!(!named(&judge(&s, &f, &fds(10), &ending, &l), "no conference lost").pass);
    }
}
