//! The soak with faults (issue 16): a split deployment (Redis, two dispatchers behind the
//! switch, two media servers) under `loadgen` at a share of the saturation measured in the
//! same run (of one media server, so the load still fits when one dies), for half an hour, while a media server and the active dispatcher are killed
//! with SIGKILL and Redis is restarted. Every 10 s step records memory and descriptors per
//! process, loss, p99 latency and the participants in conferences; the run is judged
//! against the criteria ([`verdict`]) and plotted ([`chart`]).
//!
//! Not part of `make test`: `benches/soak.sh` builds and runs it (an example so it may use
//! testkit's process harness, a dev-only crate).

mod chart;
mod deploy;
mod verdict;

use benches::config::LoadArgs;
use benches::control::ControlStatus;
use benches::run::{self, Load};
use benches::BenchError;
use clap::Parser;
use deploy::Deployment;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use verdict::{Ending, Fault, FaultKind, IdleFds, Limits, Sample};

/// Runs the soak and writes soak.json, soak.csv and soak.png to `--out`.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "soak", about)]
pub struct SoakArgs {
    /// Minutes of load after the saturation sweep.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Where the record and the plot go.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    #[arg(long, default_value_t = 20)]
    conferences: u32,
    #[arg(long, default_value_t = 5)]
    participants: u32,
    /// Share of the saturating packet rate the soak runs at.
    #[arg(long, default_value_t = 0.8)]
    load_share: f64,
    /// Seconds per load step (one sample each).
    #[arg(long, default_value_t = 10.0)]
    step_seconds: f64,
    /// When the faults strike, as shares of the soak (media server, active dispatcher,
    /// Redis, in that order).
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.4,0.6")]
    faults_at: Vec<f64>,
    /// Memory is measured from this long after the load starts (and from `--settle-s`
    /// after a fault that changes a process's load).
    #[arg(long, default_value_t = 120.0)]
    warmup_s: f64,
    #[arg(long, default_value_t = 60.0)]
    settle_s: f64,
    /// Seconds per step of the saturation sweep.
    #[arg(long, default_value_t = 5.0)]
    sweep_seconds: f64,
    /// TrueType font for the plot.
    #[arg(long)]
    font: Option<PathBuf>,
}

/// Everything the run wrote down, as soak.json.
#[derive(Serialize)]
struct Record<'a> {
    args: &'a SoakArgs,
    limits: Limits,
    saturation_audio_pps: f64,
    saturation_pps_out: f64,
    soak_audio_pps: f64,
    samples: &'a [Sample],
    faults: &'a [Fault],
    idle_fds: &'a IdleFds,
    ending: Ending,
    checks: &'a [verdict::Check],
    passed: bool,
}

fn main() -> std::process::ExitCode {
    let args = match settings::startup::<SoakArgs>("soak", "warn,client::flow=error", 2) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match soak(&args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn load_args(a: &SoakArgs, dispatcher: &str, extra: &[&str]) -> Result<LoadArgs, BenchError> {
    let n = |v: u32| v.to_string();
    let mut argv: Vec<String> = [
        "loadgen",
        "--dispatcher",
        dispatcher,
        "--conferences",
        &n(a.conferences),
        "--participants",
        &n(a.participants),
        "--senders",
        &n(a.participants),
        "--quiet",
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(extra.iter().map(|s| s.to_string()));
    LoadArgs::try_parse_from(argv).map_err(|e| BenchError::Args(e.to_string()))
}

fn soak(a: &SoakArgs) -> Result<bool, BenchError> {
    std::fs::create_dir_all(&a.out).map_err(BenchError::io("create --out"))?;
    let limits = Limits {
        warmup_s: a.warmup_s,
        settle_s: a.settle_s,
        ..Limits::default()
    };
    println!("starting Redis, two dispatchers, the switch and media server ms-1");
    // Either media server carries everyone alone at half its capacity, as the load is
    // sized to one server: with less, the survivor of the media server fault passes its
    // high-water mark and punts conferences onto the restarted server (by design), which
    // moves participants again after the fault.
    let mut dep = Deployment::start(a.conferences * a.participants * 2);
    let switch = dep.switch_addr.to_string();
    println!("switch {switch}");

    // Saturation of one media server, measured now: the capacity the deployment keeps
    // when the other dies, so the soak's load still fits after the media server fault.
    let sweep = load_args(
        a,
        &switch,
        &[
            "--sweep",
            "--refine",
            "1",
            "--duration",
            &a.sweep_seconds.to_string(),
        ],
    )?;
    let sat = run::run(&sweep)?;
    print!("{}", sat.table());
    let head = sat
        .steps
        .iter()
        .find(|s| s.step == sat.headline_step)
        .ok_or_else(|| BenchError::Thread("the sweep has no headline step".into()))?;
    let rate = head.audio_pps * a.load_share;
    println!(
        "saturation: {:.0} packets/s per sender ({:.0} out/s, loss {:.3}%); soak at {:.0}% = {rate:.0}/s per sender",
        head.audio_pps,
        head.pps_out,
        head.loss_pct,
        a.load_share * 100.0
    );
    let (sat_pps, sat_out) = (head.audio_pps, head.pps_out);
    println!("starting media server ms-2");
    dep.start_media("ms-2");
    std::thread::sleep(Duration::from_secs(5));
    let mut fds = IdleFds {
        before: dep.sample(),
        after: Vec::new(),
    };

    let soak_args = load_args(
        a,
        &switch,
        &[
            "--failover",
            "--duration",
            &a.step_seconds.to_string(),
            "--audio-pps",
            &rate.to_string(),
            "--drain-ms",
            "150",
        ],
    )?;
    let load = Load::start(&soak_args)?;
    let status = load
        .status()
        .ok_or_else(|| BenchError::Thread("no control plane".into()))?;
    let total = load.participants() as u32;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(a.minutes * 60.0);
    let dep = Mutex::new(dep);
    let kinds = [
        FaultKind::KillMediaServer,
        FaultKind::KillActiveDispatcher,
        FaultKind::RestartRedis,
    ];
    let plan: Vec<(FaultKind, Instant)> = kinds
        .into_iter()
        .zip(&a.faults_at)
        .map(|(k, &share)| (k, t0 + Duration::from_secs_f64(a.minutes * 60.0 * share)))
        .collect();
    let csv = a.out.join("soak.csv");
    let mut samples: Vec<Sample> = Vec::new();
    let faults = std::thread::scope(|s| -> Result<Vec<Fault>, BenchError> {
        let injector = s.spawn(|| {
            plan.iter()
                .map(|&(kind, when)| {
                    sleep_until(when);
                    let f = inject(kind, &dep, status, total, t0, &limits);
                    println!(
                        "fault at {:.0} s: {} ({}): {} out at most, all back after {}, rejoins {:?} ms",
                        f.at_s,
                        kind.label(),
                        f.target,
                        f.most_out,
                        f.all_back_s.map_or("never".into(), |t| format!("{t:.2} s")),
                        f.rejoin_ms
                    );
                    f
                })
                .collect::<Vec<Fault>>()
        });
        let mut step = 0u16;
        while Instant::now() + Duration::from_secs_f64(a.step_seconds) <= end {
            let started = Instant::now();
            let r = load.step(step, 1.0)?;
            let sample = Sample {
                step,
                start_s: started.duration_since(t0).as_secs_f64(),
                end_s: started.duration_since(t0).as_secs_f64() + r.duration_s,
                sent: r.sent,
                expected: r.expected,
                lost: r.lost,
                loss_pct: r.loss_pct,
                latency_p99_ms: r.latency_p99_ms,
                paused: r.paused,
                in_conference: status.in_conference.load(Ordering::Relaxed),
                procs: dep.lock().unwrap_or_else(|p| p.into_inner()).sample(),
            };
            print_sample(&sample);
            samples.push(sample);
            write_csv(&csv, &samples)?;
            step += 1;
        }
        injector
            .join()
            .map_err(|_| BenchError::Thread("the fault injector panicked".into()))
    })?;

    let dep = dep.into_inner().unwrap_or_else(|p| p.into_inner());
    let in_conference = status.in_conference.load(Ordering::Relaxed);
    let complete = complete_conferences(&dep.conferences(), &load.run_id, a.participants);
    let control = load.finish()?;
    let ending = Ending {
        conferences: a.conferences,
        participants: a.participants,
        complete,
        in_conference,
        closed_early: control.closed_early,
    };
    std::thread::sleep(Duration::from_secs(5));
    fds.after = dep.sample();
    let logs = a.out.join("logs");
    dep.write_logs(&logs)
        .map_err(|e| BenchError::output(&logs, e))?;

    let checks = verdict::judge(&samples, &faults, &fds, &ending, &limits);
    let passed = checks.iter().all(|c| c.pass);
    println!();
    for c in &checks {
        println!(
            "{} {}: {}",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let record = Record {
        args: a,
        limits,
        saturation_audio_pps: sat_pps,
        saturation_pps_out: sat_out,
        soak_audio_pps: rate,
        samples: &samples,
        faults: &faults,
        idle_fds: &fds,
        ending,
        checks: &checks,
        passed,
    };
    let json = a.out.join("soak.json");
    let text = serde_json::to_string_pretty(&record).map_err(|e| BenchError::output(&json, e))?;
    std::fs::write(&json, text).map_err(|e| BenchError::output(&json, e))?;
    let title = format!(
        "soak: {} conf x {} part at {:.0}% of saturation ({rate:.0} pkt/s per sender), {:.0} min",
        a.conferences,
        a.participants,
        a.load_share * 100.0,
        a.minutes
    );
    chart::draw(
        &samples,
        &faults,
        &title,
        &a.out.join("soak.png"),
        a.font.as_deref(),
    )?;
    println!(
        "\n{} -> {}",
        if passed { "PASSED" } else { "FAILED" },
        a.out.display()
    );
    Ok(passed)
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Strikes `kind`, watches the participants come back and restarts what was killed.
fn inject(
    kind: FaultKind,
    dep: &Mutex<Deployment>,
    status: &ControlStatus,
    total: u32,
    t0: Instant,
    limits: &Limits,
) -> Fault {
    let lock = || dep.lock().unwrap_or_else(|p| p.into_inner());
    let at = Instant::now();
    let (target, affects, victim) = {
        let mut d = lock();
        match kind {
            FaultKind::KillMediaServer => {
                d.media[0].kill9();
                ("ms-1".to_owned(), vec!["ms-1", "ms-2"], None)
            }
            FaultKind::KillActiveDispatcher => {
                let i = d.active_dispatcher().unwrap_or(0);
                d.dispatchers[i].0.kill9();
                (
                    d.dispatchers[i].0.name.clone(),
                    vec!["disp-1", "disp-2"],
                    Some(i),
                )
            }
            FaultKind::RestartRedis => {
                d.redis.restart();
                ("redis".to_owned(), vec!["redis"], None)
            }
        }
    };
    let mut restarted: Option<Instant> = (kind == FaultKind::RestartRedis).then(Instant::now);
    let (mut most_out, mut back_at, mut out_now) = (0u32, None::<Instant>, false);
    let watch = Duration::from_secs_f64(limits.watch_s);
    loop {
        let now = Instant::now();
        let inside = status.in_conference.load(Ordering::Relaxed);
        let out = total.saturating_sub(inside);
        most_out = most_out.max(out);
        if out > 0 {
            out_now = true;
        } else if out_now {
            out_now = false;
            back_at = Some(now);
        }
        // What was killed comes back once the participants are settled (a media server)
        // or after a few seconds (a dispatcher).
        if restarted.is_none() {
            let due = match kind {
                FaultKind::KillMediaServer => {
                    out == 0 && now.duration_since(back_at.unwrap_or(at)) > Duration::from_secs(2)
                        || now.duration_since(at) > watch
                }
                _ => now.duration_since(at) > Duration::from_secs(5),
            };
            if due {
                let mut d = lock();
                match victim {
                    Some(i) => d.dispatchers[i].0.restart(),
                    None => d.media[0].restart(),
                }
                restarted = Some(Instant::now());
            }
        }
        let settled = restarted.is_some_and(|r| now.duration_since(r) > Duration::from_secs(5));
        if (settled && out == 0) || now.duration_since(at) > watch * 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = |t: Instant| t.duration_since(t0).as_secs_f64();
    Fault {
        kind,
        target,
        at_s: secs(at),
        most_out,
        all_back_s: match (most_out, out_now, back_at) {
            (0, _, _) => Some(0.0),
            (_, false, Some(b)) => Some(b.duration_since(at).as_secs_f64()),
            _ => None,
        },
        restarted_s: restarted.map(secs),
        rejoin_ms: status
            .rejoins_since(at)
            .into_iter()
            .map(|(_, ms)| ms)
            .collect(),
        affects: affects.into_iter().map(str::to_owned).collect(),
    }
}

/// Conferences of this run with every participant in some dispatcher's table.
fn complete_conferences(rows: &[serde_json::Value], run_id: &str, participants: u32) -> u32 {
    let prefix = format!("lg{run_id}-");
    let complete: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|c| {
            c["participants"]
                .as_array()
                .is_some_and(|p| p.len() == participants as usize)
        })
        .filter_map(|c| c["name"].as_str())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    complete.len() as u32
}

fn print_sample(s: &Sample) {
    let rss: Vec<String> = s
        .procs
        .iter()
        .map(|p| {
            format!(
                "{} {}M/{}fd",
                p.name,
                p.rss_kib.map_or("?".into(), |k| (k / 1024).to_string()),
                p.fds.map_or("?".into(), |f| f.to_string())
            )
        })
        .collect();
    println!(
        "{:>6.0} s step {:>3}: loss {:.4}% p99 {:.2} ms in conference {} | {}",
        s.end_s,
        s.step,
        s.loss_pct,
        s.latency_p99_ms,
        s.in_conference,
        rss.join(" ")
    );
}

/// The samples so far as CSV (rewritten each step, so a run cut short keeps its record).
fn write_csv(path: &Path, samples: &[Sample]) -> Result<(), BenchError> {
    let mut out = String::from(
        "step,start_s,end_s,sent,expected,lost,loss_pct,latency_p99_ms,paused,in_conference",
    );
    if let Some(s) = samples.first() {
        for p in &s.procs {
            out += &format!(",{0}_rss_kib,{0}_fds", p.name);
        }
    }
    out.push('\n');
    for s in samples {
        out += &format!(
            "{},{:.3},{:.3},{},{},{},{:.5},{:.3},{},{}",
            s.step,
            s.start_s,
            s.end_s,
            s.sent,
            s.expected,
            s.lost,
            s.loss_pct,
            s.latency_p99_ms,
            s.paused,
            s.in_conference
        );
        for p in &s.procs {
            let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
            out += &format!(",{},{}", o(p.rss_kib), o(p.fds));
        }
        out.push('\n');
    }
    let mut f = std::fs::File::create(path).map_err(|e| BenchError::output(path, e))?;
    f.write_all(out.as_bytes())
        .map_err(|e| BenchError::output(path, e))
}
