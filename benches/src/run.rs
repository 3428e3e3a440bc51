//! One loadgen run: join everyone, then run one step (or a sweep of steps with doubling
//! packet rates), measuring each step between a settle and a drain so its counts are
//! exact.

use crate::config::LoadArgs;
use crate::control::{self, ControlPlane, ControlReport, ControlStatus, Participant};
use crate::cpu::{self, CpuSource};
use crate::receiver::{self, RxHandle, RxShared, RxSocket};
use crate::report::{utc_date, Machine, RunResult, ServerLatency, StepResult};
use crate::sender::{self, Phase, TxHandle, TxPart, TxReport};
use crate::stats::{kind_results, pct, stream_results, Latency, Layout, RxStep};
use crate::BenchError;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Above this many cores used by other processes during a step, its figures are suspect.
const OTHER_CPU_WARN: f64 = 0.1;
/// A sweep also stops when loadgen itself could not send this share of the packets asked.
const LOADGEN_SKIP_LIMIT: f64 = 0.05;

/// Runs the load `args` describes and returns its results (nothing written yet).
pub fn run(args: &LoadArgs) -> Result<RunResult, BenchError> {
    let load = Load::start(args)?;
    let rss_before = args.server_pid.and_then(cpu::rss_kib);
    let (steps, stopped_by) = sweep(&load)?;
    let rss_loaded = args.server_pid.and_then(cpu::rss_kib);
    let (layout, target, join_seconds) = (load.layout, load.target.clone(), load.join_seconds);
    let control = load.finish()?;

    let mut result = RunResult {
        label: args.label(),
        target,
        date_utc: utc_date(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
        machine: Machine::probe(),
        config: args.clone(),
        layout,
        join_seconds,
        control,
        headline_step: 0,
        pps_out: 0.0,
        pps_out_per_core: None,
        loss_pct: 0.0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_p999_ms: 0.0,
        server_cpu_cores: None,
        latency_by_server: Vec::new(),
        stopped_by,
        server_rss_before_kib: rss_before,
        server_rss_loaded_kib: rss_loaded,
        server_kib_per_participant: rss_before.zip(rss_loaded).map(|(a, b)| {
            (b as f64 - a as f64) / f64::from(layout.conferences * layout.participants)
        }),
        half_load_step: None,
        half_load_latency_p99_ms: None,
        comparison: None,
        steps,
    };
    let ok = |s: &StepResult| {
        s.loss_pct <= args.headline_loss_pct && s.latency_p50_ms <= args.max_p50_ms
    };
    // The highest offered load that qualifies; steps are in order of offered load.
    let headline = result.steps.iter().rposition(ok).unwrap_or(0);
    result.set_headline(headline);
    if let Some(b) = &args.baseline {
        result.compare_with(b)?;
    }
    Ok(result)
}

/// Everyone joined, sender and receiver threads running: steps run on demand. [`run`]
/// sweeps it; the soak steps it for as long as it lasts.
pub struct Load<'a> {
    args: &'a LoadArgs,
    pub layout: Layout,
    /// The dispatcher or raw forwarder driven.
    pub target: String,
    pub join_seconds: f64,
    /// Conference names are `lg{run_id}-{index}`.
    pub run_id: String,
    cpu: CpuSource,
    plane: Option<ControlPlane>,
    parts: Vec<Participant>,
    txs: Vec<TxHandle>,
    rxs: Vec<RxHandle>,
    live_tx: Arc<AtomicU64>,
    live_rx: Arc<AtomicU64>,
    ports: Ports,
    /// The media servers joined, in the order of the receivers' server indices.
    servers: Vec<ServerGroup>,
}

/// Participants joined at one media server.
struct ServerGroup {
    addr: SocketAddr,
    participants: u32,
    senders: u32,
}

/// The distinct media servers the participants joined (by audio channel), sorted.
fn server_groups(parts: &[Participant], senders: u32) -> Vec<ServerGroup> {
    let mut addrs: Vec<SocketAddr> = parts.iter().map(|p| p.audio.server).collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
        .into_iter()
        .map(|addr| {
            let here = || parts.iter().filter(move |p| p.audio.server == addr);
            ServerGroup {
                addr,
                participants: here().count() as u32,
                senders: here().filter(|p| p.index < senders).count() as u32,
            }
        })
        .collect()
}

impl<'a> Load<'a> {
    /// Joins everyone, starts the threads and lets the server settle.
    pub fn start(args: &'a LoadArgs) -> Result<Load<'a>, BenchError> {
        args.validate()?;
        let epoch = Instant::now();
        let layout = Layout {
            conferences: args.conferences,
            participants: args.participants,
            senders: args.senders,
            kinds: if args.has_video() { 2 } else { 1 },
        };
        let cpu = match (args.server_pid, &args.metrics) {
            (Some(pid), _) => CpuSource::Pid(pid),
            (None, Some(url)) => CpuSource::Metrics(url.clone()),
            (None, None) => CpuSource::None,
        };
        // Fail before joining if the CPU source is wrong.
        cpu.sample()?;
        let run_id = format!("{:08x}", rand::random::<u32>());
        let (plane, parts, target) = join(args, &run_id)?;
        let join_seconds = epoch.elapsed().as_secs_f64();
        tracing::info!(participants = parts.len(), join_seconds, "joined");
        if args.has_video() && parts.iter().all(|p| p.video.is_none()) {
            tracing::info!("no video channel offered: video-like packets go on the audio channel");
        }
        let live_tx = Arc::new(AtomicU64::new(0));
        let live_rx = Arc::new(AtomicU64::new(0));
        let servers = server_groups(&parts, args.senders);
        let (txs, rxs) = start_threads(args, &layout, epoch, &parts, &servers, &live_tx, &live_rx)?;
        std::thread::sleep(Duration::from_millis(args.settle_ms));
        let ports = Ports::of(&parts);
        Ok(Load {
            args,
            layout,
            target,
            join_seconds,
            run_id,
            cpu,
            plane,
            parts,
            txs,
            rxs,
            live_tx,
            live_rx,
            ports,
            servers,
        })
    }

    /// The participants' live control state (`None` against rawfwd).
    pub fn status(&self) -> Option<&ControlStatus> {
        self.plane.as_ref().map(|p| &*p.status)
    }

    /// How many participants joined.
    pub fn participants(&self) -> usize {
        self.parts.len()
    }

    /// Everyone leaves; the threads stop. Returns how the control connections fared.
    pub fn finish(self) -> Result<ControlReport, BenchError> {
        let Load {
            txs,
            rxs,
            plane,
            parts,
            ..
        } = self;
        drop(txs);
        let control = plane.map(ControlPlane::finish).unwrap_or_default();
        for h in rxs {
            h.stop()?;
        }
        drop(parts);
        Ok(control)
    }
}

/// Local UDP ports of loadgen's sockets and of the server's media sockets.
struct Ports {
    loadgen: HashSet<u16>,
    server: HashSet<u16>,
}

impl Ports {
    fn of(parts: &[Participant]) -> Ports {
        Ports {
            loadgen: parts
                .iter()
                .filter_map(|p| p.socket.local_addr().ok())
                .map(|a| a.port())
                .collect(),
            server: parts
                .iter()
                .flat_map(|p| std::iter::once(p.audio).chain(p.video))
                .map(|c| c.server.port())
                .collect(),
        }
    }
}

/// Runs one step, one per `--scales` multiplier, or with `--sweep` doubles the rates until
/// a step fails, then bisects `--refine` times between the last good and the first bad
/// rate. Returns the steps in order of offered load and why the sweep stopped.
fn sweep(ctx: &Load<'_>) -> Result<(Vec<StepResult>, Option<String>), BenchError> {
    let args = ctx.args;
    let mut steps: Vec<StepResult> = Vec::new();
    let mut stopped_by = None;
    let run =
        |scale: f64, steps: &mut Vec<StepResult>| -> Result<Option<&'static str>, BenchError> {
            let r = ctx.step(steps.len() as u16, scale)?;
            let why = if r.loss_pct > args.max_loss_pct {
                Some("loss")
            } else if r.latency_p50_ms > args.max_p50_ms {
                Some("latency")
            } else if r.skipped as f64 > LOADGEN_SKIP_LIMIT * (r.sent + r.skipped) as f64 {
                Some("loadgen")
            } else {
                None
            };
            steps.push(r);
            Ok(why)
        };
    if !args.scales.is_empty() {
        for &scale in &args.scales {
            run(scale, &mut steps)?;
        }
        steps.sort_by(|a, b| a.scale.total_cmp(&b.scale));
        return Ok((steps, None));
    }
    if !args.sweep {
        run(1.0, &mut steps)?;
        return Ok((steps, None));
    }
    let (mut good, mut bad) = (None, None);
    for k in 0..args.max_steps.max(1) {
        let scale = f64::from(1u32 << k.min(30));
        match run(scale, &mut steps)? {
            None => good = Some(scale),
            Some(why) => {
                stopped_by = Some(why.to_owned());
                bad = Some((scale, why));
                break;
            }
        }
    }
    if stopped_by.is_none() {
        stopped_by = Some("max_steps".to_owned());
    }
    if let (Some(mut g), Some((mut b, why))) = (good, bad) {
        // More offered load cannot help when loadgen itself is the limit.
        if why != "loadgen" {
            for _ in 0..args.refine {
                let mid = (g + b) / 2.0;
                match run(mid, &mut steps)? {
                    None => g = mid,
                    Some(_) => b = mid,
                }
            }
        }
    }
    steps.sort_by(|a, b| a.scale.total_cmp(&b.scale));
    Ok((steps, stopped_by))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Joins through the dispatcher or registers with rawfwd.
fn join(
    args: &LoadArgs,
    run_id: &str,
) -> Result<(Option<ControlPlane>, Vec<Participant>, String), BenchError> {
    if let Some(j) = &args.janus {
        let (plane, parts) = crate::janus::join_all(args, run_id)?;
        return Ok((Some(plane), parts, format!("janus {j}")));
    }
    match (args.raw, &args.dispatcher) {
        (Some(fwd), _) => Ok((
            None,
            control::raw_register(args, fwd)?,
            format!("rawfwd {fwd}"),
        )),
        (None, Some(d)) => {
            let (plane, parts) = control::join_all(args, run_id)?;
            Ok((Some(plane), parts, format!("dispatcher {d}")))
        }
        (None, None) => Err(BenchError::Args(
            "--dispatcher, --raw or --janus is required".into(),
        )),
    }
}

fn start_threads(
    args: &LoadArgs,
    layout: &Layout,
    epoch: Instant,
    parts: &[Participant],
    servers: &[ServerGroup],
    live_tx: &Arc<AtomicU64>,
    live_rx: &Arc<AtomicU64>,
) -> Result<(Vec<TxHandle>, Vec<RxHandle>), BenchError> {
    let mut rx_sets: Vec<Vec<RxSocket>> = (0..args.recv_threads).map(|_| Vec::new()).collect();
    let mut tx_sets: Vec<Vec<TxPart>> = (0..args.send_threads).map(|_| Vec::new()).collect();
    for (i, p) in parts.iter().enumerate() {
        rx_sets[i % args.recv_threads].push(RxSocket {
            socket: p
                .socket
                .try_clone()
                .map_err(BenchError::io("clone socket"))?,
            conf: p.conf,
            index: p.index,
            server: servers
                .iter()
                .position(|g| g.addr == p.audio.server)
                .unwrap_or(0) as u16,
            srtp: p.srtp.as_ref().map(|k| k.inbound()),
        });
    }
    for (i, p) in parts.iter().filter(|p| p.index < args.senders).enumerate() {
        tx_sets[i % args.send_threads].push(TxPart::from_participant(p)?);
    }
    let shared = RxShared {
        layout: *layout,
        epoch,
        late_ns: (args.late_ms * 1e6) as u64,
        live: live_rx.clone(),
        max_size: args.audio_size.max(args.video_size),
        gro: !args.no_gro,
        busy_poll: args.busy_poll,
    };
    let rxs = rx_sets
        .into_iter()
        .enumerate()
        .map(|(i, s)| receiver::spawn(i, s, shared.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let txs = tx_sets
        .into_iter()
        .enumerate()
        .map(|(i, s)| sender::spawn(i, s, *layout, epoch, live_tx.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((txs, rxs))
}

impl Load<'_> {
    /// Runs one phase at `scale` times the configured rates and turns its counts into a
    /// [`StepResult`]. Steps are numbered from 0 in the order they run (the probes carry it).
    pub fn step(&self, step: u16, scale: f64) -> Result<StepResult, BenchError> {
        let ctx = self;
        let args = ctx.args;
        let start = Instant::now() + Duration::from_millis(10);
        let phase = Phase {
            step,
            audio_pps: args.audio_pps * scale,
            audio_size: args.audio_size,
            video_pps: args.video_pps * scale,
            video_size: args.video_size,
            start,
            end: start + secs(args.duration),
        };
        let server0 = ctx.cpu.sample()?;
        let self0 = cpu::self_cpu_seconds()?;
        let busy0 = cpu::machine_busy_seconds();
        let rcvbuf0 = cpu::udp_rcvbuf_errors();
        let lg_drops0 = cpu::udp_socket_drops(&ctx.ports.loadgen);
        let srv_drops0 = cpu::udp_socket_drops(&ctx.ports.server);
        let pending: Vec<_> = ctx.txs.iter().map(|t| t.run(phase)).collect();
        progress(args, &phase, &ctx.live_tx, &ctx.live_rx);
        let mut tx = TxReport::default();
        let mut sent = vec![0u64; ctx.layout.total_streams()];
        for p in pending {
            let r = p
                .and_then(|r| r.recv().ok())
                .ok_or_else(|| BenchError::Thread("sender thread gone".into()))?;
            for (s, n) in r.sent {
                sent[s as usize] += n;
            }
            tx.skipped += r.skipped;
            tx.send_errors += r.send_errors;
            tx.paused += r.paused;
        }
        std::thread::sleep(Duration::from_millis(args.drain_ms));
        let server1 = ctx.cpu.sample()?;
        let self1 = cpu::self_cpu_seconds()?;
        let busy1 = cpu::machine_busy_seconds();
        let drops = Drops {
            rcvbuf: cpu::udp_rcvbuf_errors().saturating_sub(rcvbuf0),
            loadgen: cpu::udp_socket_drops(&ctx.ports.loadgen).saturating_sub(lg_drops0),
            server: cpu::udp_socket_drops(&ctx.ports.server).saturating_sub(srv_drops0),
        };
        let rx = receiver::collect_all(&ctx.rxs, &ctx.layout)?;
        let duration = phase.end.duration_since(phase.start).as_secs_f64();
        let mut r = step_result(
            args,
            &ctx.layout,
            &phase,
            duration,
            &sent,
            &tx,
            &rx,
            server0.zip(server1).map(|(a, b)| b - a),
            self1 - self0,
            drops,
        );
        r.scale = scale;
        if ctx.servers.len() > 1 {
            r.latency_by_server = ctx
                .servers
                .iter()
                .zip(&rx.by_server)
                .map(|(g, h)| {
                    let l = Latency::of(h);
                    ServerLatency {
                        server: g.addr.to_string(),
                        participants: g.participants,
                        senders: g.senders,
                        latency_p50_ms: l.p50_ms,
                        latency_p99_ms: l.p99_ms,
                        latency_p999_ms: l.p999_ms,
                    }
                })
                .collect();
        }
        // Everything else that ran over the step's whole window (load and drain); unknown
        // without the server's CPU time, which it would include.
        let window = duration + args.drain_ms as f64 / 1000.0;
        r.other_cpu_cores = busy0
            .zip(busy1)
            .zip(r.server_cpu_seconds)
            .map(|((a, b), server)| {
                let theirs = (b - a) - server - (self1 - self0);
                (theirs / window).max(0.0)
            });
        if r.other_cpu_cores.is_some_and(|c| c > OTHER_CPU_WARN) {
            tracing::warn!(
                step,
                other_cores = r.other_cpu_cores,
                "other processes used CPU during this step; its figures are suspect"
            );
        }
        tracing::info!(
            step,
            scale,
            pps_out = r.pps_out as u64,
            loss_pct = r.loss_pct,
            "step done"
        );
        Ok(r)
    }
}

/// Kernel drop counters over one step.
struct Drops {
    rcvbuf: u64,
    loadgen: u64,
    server: u64,
}

#[allow(clippy::too_many_arguments)]
fn step_result(
    args: &LoadArgs,
    layout: &Layout,
    phase: &Phase,
    duration: f64,
    sent: &[u64],
    tx: &TxReport,
    rx: &RxStep,
    server_cpu: Option<f64>,
    loadgen_cpu: f64,
    drops: Drops,
) -> StepResult {
    let streams = stream_results(layout, sent, rx);
    let total_sent: u64 = sent.iter().sum();
    let expected = total_sent * layout.receivers_per_stream();
    let received: u64 = streams.iter().map(|s| s.received).sum();
    let lost: u64 = streams.iter().map(|s| s.lost).sum();
    let lat = Latency::of(&rx.latency_us);
    let per_sec = |n: u64| n as f64 / duration;
    StepResult {
        step: phase.step,
        scale: 1.0,
        audio_pps: phase.audio_pps,
        video_pps: if args.has_video() {
            phase.video_pps
        } else {
            0.0
        },
        duration_s: duration,
        offered_pps_in: per_sec(total_sent),
        offered_pps_out: per_sec(expected),
        sent: total_sent,
        expected,
        received,
        lost,
        duplicated: streams.iter().map(|s| s.duplicated).sum(),
        reordered: streams.iter().map(|s| s.reordered).sum(),
        late: streams.iter().map(|s| s.late).sum(),
        misrouted: rx.misrouted,
        echoed: rx.echoed,
        skipped: tx.skipped,
        send_errors: tx.send_errors,
        paused: tx.paused,
        pps_out: per_sec(received),
        loss_pct: pct(lost, expected),
        latency_p50_ms: lat.p50_ms,
        latency_p99_ms: lat.p99_ms,
        latency_p999_ms: lat.p999_ms,
        latency_max_ms: lat.max_ms,
        server_cpu_seconds: server_cpu,
        server_cpu_cores: server_cpu.map(|c| c / duration),
        pps_out_per_core: server_cpu.filter(|&c| c > 0.0).map(|c| received as f64 / c),
        loadgen_cpu_cores: loadgen_cpu / duration,
        other_cpu_cores: None,
        udp_rcvbuf_errors: drops.rcvbuf,
        loadgen_socket_drops: drops.loadgen,
        server_socket_drops: drops.server,
        kinds: kind_results(layout, &streams, rx),
        latency_by_server: Vec::new(),
        streams,
    }
}

/// Shows the step's progress until its last send is due.
fn progress(args: &LoadArgs, phase: &Phase, live_tx: &AtomicU64, live_rx: &AtomicU64) {
    let total = phase.end.saturating_duration_since(Instant::now());
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total.as_millis() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("step {}", phase.step));
    let started = Instant::now();
    let (mut t0, mut tx0, mut rx0) = (
        started,
        live_tx.load(Ordering::Relaxed),
        live_rx.load(Ordering::Relaxed),
    );
    while Instant::now() < phase.end {
        std::thread::sleep(Duration::from_millis(200).min(phase.end - Instant::now()));
        let (now, tx, rx) = (
            Instant::now(),
            live_tx.load(Ordering::Relaxed),
            live_rx.load(Ordering::Relaxed),
        );
        let dt = now.duration_since(t0).as_secs_f64().max(1e-3);
        bar.set_position(now.duration_since(started).as_millis() as u64);
        bar.set_message(format!(
            "tx {:.0} pps, rx {:.0} pps",
            (tx - tx0) as f64 / dt,
            (rx - rx0) as f64 / dt
        ));
        (t0, tx0, rx0) = (now, tx, rx);
    }
    bar.finish_and_clear();
}
