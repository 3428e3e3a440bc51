//! `dispatchgen`: load for the dispatcher's decision path. It registers N simulated
//! media servers over the registry protocol (they report every second, and answer each
//! `reserve` with the `userjoined` of the arriving client unless `--settle false`), then
//! C concurrent clients do `join` -> `dispatch` -> `endsession` over many conferences for
//! D seconds, each on a fresh connection as real clients do.
//! Prints decisions per second and join->dispatch latency p50/p99/p99.9 per store.
//!
//! With `--spawn BIN` it starts the dispatcher itself for each `--store` in turn (pinned
//! with `taskset -c CORE` when `--pin` is given), so one run compares the stores:
//!
//! ```text
//! dispatchgen --spawn target/release/dispatcher --pin 0 \
//!     --store memory --store redis://127.0.0.1:6390 --json out.json
//! ```

use benches::stats::Latency;
use clap::Parser;
use control::{Link, Recv};
use hdrhistogram::Histogram;
use protocol::{Capabilities, DispMsg, MsMsg};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser, Serialize, Deserialize)]
#[command(
    name = "dispatchgen",
    version,
    about = "Dispatch decisions/s and join->dispatch latency"
)]
#[serde(deny_unknown_fields)]
struct Args {
    /// TOML file with any of these settings; flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_deserializing)]
    config: Option<std::path::PathBuf>,
    /// A running dispatcher's client address (without `--spawn`).
    #[arg(long)]
    dispatcher: Option<SocketAddr>,
    /// Its registry address (without `--spawn`).
    #[arg(long)]
    registry: Option<SocketAddr>,
    /// Start this dispatcher binary for each `--store` and measure it.
    #[arg(long)]
    spawn: Option<String>,
    /// Stores to measure with `--spawn` (`memory`, `redis://HOST:PORT`), in order.
    #[arg(long, default_value = "memory")]
    store: Vec<String>,
    /// Pin the spawned dispatcher to this core (`taskset -c`).
    #[arg(long)]
    pin: Option<u32>,
    /// Simulated media servers.
    #[arg(long, default_value_t = 10)]
    servers: u32,
    /// Capacity units of each simulated server.
    #[arg(long, default_value_t = 1_000_000)]
    capacity: u32,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 64)]
    clients: u32,
    /// Conferences the joins are spread over.
    #[arg(long, default_value_t = 5000)]
    conferences: u32,
    /// Seconds of load (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The external dispatcher's pid, to measure its CPU (with `--dispatcher`).
    #[arg(long)]
    pid: Option<u32>,
    /// Simulated servers answer `reserve` with `userjoined`, as when the client arrives
    /// (`--settle false`: they answer nothing, and reservations pile up until their
    /// tickets expire).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    settle: bool,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<String>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    store: String,
    settle: bool,
    servers: u32,
    clients: u32,
    conferences: u32,
    seconds: f64,
    decisions: u64,
    decisions_per_s: f64,
    rejects: u64,
    errors: u64,
    latency: Latency,
    /// The dispatcher's CPU over the measured window (cores), when its pid is known.
    dispatcher_cores: Option<f64>,
    /// Decisions per second of dispatcher CPU: what one core would sustain.
    decisions_per_core_s: Option<f64>,
}

/// A simulated media server: registers and reports every second. With `settle` it
/// answers each `reserve` with the `userjoined` a real server sends when the client
/// arrives, so the dispatcher's reservations settle as in service; without, it ignores
/// everything and reservations only expire with their tickets.
async fn media_server(
    registry: SocketAddr,
    i: u32,
    capacity: u32,
    settle: bool,
) -> Result<(), control::ControlError> {
    let Link {
        mut incoming,
        outbox,
    } = control::connect(&registry.to_string()).await?;
    let register = MsMsg::Register {
        id: format!("sim-{i}"),
        client_addr: SocketAddr::from(([127, 0, 0, 1], 20000 + i as u16)),
        caps: Capabilities {
            audio: true,
            reflect: true,
            mix: true,
            ..Default::default()
        },
        total: capacity,
        ws: None,
    };
    outbox.send(register.encode());
    let mut participant = 0u32;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {
                let report = MsMsg::Report {
                    unused: capacity,
                    conferences: 0,
                    users: 0,
                    cpu_pct: 1.0,
                    pps: 0,
                    loss_pct: 0.0,
                };
                outbox.send(report.encode());
            }
            got = incoming.recv() => match got {
                Recv::Line(l) => {
                    if let (Ok(DispMsg::Reserve { conference, account, user, .. }), true) =
                        (DispMsg::parse(&l), settle)
                    {
                        participant += 1;
                        let joined = MsMsg::UserJoined {
                            conference,
                            participant,
                            name: user,
                            account,
                        };
                        outbox.send(joined.encode());
                    }
                }
                Recv::Bad(_) | Recv::Closed(_) => return Err(control::ControlError::Closed),
            },
        }
    }
}

/// What one join gave.
enum Join {
    Dispatched(Duration),
    Rejected,
}

async fn one_join(at: &str, conference: u32, user: u64) -> Result<Join, control::ControlError> {
    let Link {
        mut incoming,
        outbox,
    } = control::connect(at).await?;
    let Recv::Line(_connect) = incoming.recv().await else {
        return Err(control::ControlError::Closed);
    };
    let join = format!("join\tconf-{conference}\tdemo\tu{user}\tmode=reflect\n");
    let sent = Instant::now();
    outbox.send(join);
    let reply = incoming.recv().await;
    let took = sent.elapsed();
    outbox.finish(Some("endsession\n".into()), control::CloseReason::Done);
    Ok(match reply {
        Recv::Line(l) if l.starts_with("dispatch\t") => Join::Dispatched(took),
        _ => Join::Rejected,
    })
}

/// The process's CPU seconds so far.
fn cpu(pid: Option<u32>) -> Option<f64> {
    benches::cpu::proc_cpu_seconds(&format!("/proc/{}/stat", pid?)).ok()
}

async fn measure(
    args: &Args,
    store: &str,
    client: SocketAddr,
    registry: SocketAddr,
    pid: Option<u32>,
) -> Outcome {
    for i in 0..args.servers {
        let (capacity, settle) = (args.capacity, args.settle);
        tokio::spawn(async move {
            // Ends with an error when the dispatcher is stopped after its run.
            let _ = media_server(registry, i, capacity, settle).await;
        });
    }
    // Registration and the first report, then warm-up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let users = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + Duration::from_secs(1);
    let until = warm_until + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    let client = client.to_string();
    for c in 0..args.clients {
        let users = users.clone();
        let client = client.clone();
        let conferences = args.conferences;
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut ok, mut rejected, mut errors) = (0u64, 0u64, 0u64);
            let mut rng_state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(c);
            loop {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                // xorshift: a cheap spread over the conferences.
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let conf = (rng_state % u64::from(conferences)) as u32;
                let user = users.fetch_add(1, Ordering::Relaxed);
                let counted = now >= warm_until;
                match one_join(&client, conf, user).await {
                    Ok(Join::Dispatched(t)) if counted => {
                        ok += 1;
                        let _ = h.record(t.as_micros().max(1) as u64);
                    }
                    Ok(Join::Rejected) if counted => rejected += 1,
                    Err(_) if counted => errors += 1,
                    _ => {}
                }
            }
            (h, ok, rejected, errors)
        }));
    }
    tokio::time::sleep_until(warm_until.into()).await;
    let cpu_from = cpu(pid);
    tokio::time::sleep_until(until.into()).await;
    let cpu_to = cpu(pid);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut ok, mut rejected, mut errors) = (0, 0, 0);
    for t in tasks {
        if let Ok((th, o, r, e)) = t.await {
            let _ = h.add(th);
            ok += o;
            rejected += r;
            errors += e;
        }
    }
    let seconds = args.duration as f64;
    let cores = cpu_from.zip(cpu_to).map(|(a, b)| (b - a) / seconds);
    Outcome {
        store: store.to_owned(),
        settle: args.settle,
        servers: args.servers,
        clients: args.clients,
        conferences: args.conferences,
        seconds,
        decisions: ok,
        decisions_per_s: ok as f64 / seconds,
        rejects: rejected,
        errors,
        latency: Latency::of(&h),
        dispatcher_cores: cores,
        decisions_per_core_s: cores.filter(|c| *c > 0.0).map(|c| ok as f64 / seconds / c),
    }
}

/// A dispatcher started by `--spawn`, killed on drop.
struct Spawned {
    child: Child,
    client: SocketAddr,
    registry: SocketAddr,
    _config: tempfile_path::Path,
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct Path(pub std::path::PathBuf);

    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &str, store: &str, pin: Option<u32>) -> std::io::Result<Spawned> {
    let config = std::env::temp_dir().join(format!("dispatchgen-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "secret = \"dispatchgen\"\n[[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\n",
    )?;
    let mut cmd = match pin {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &core.to_string(), bin]);
            // One core, one runtime thread: two workers time-sliced on one core add a
            // scheduler quantum (milliseconds) to whatever waits behind the other.
            c.env("TOKIO_WORKER_THREADS", "1");
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--registry", "127.0.0.1:0"])
        .args(["--store", store, "--id", "bench"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    let mut lines = std::io::BufReader::new(out).lines();
    let mut addr = |key: &str| -> std::io::Result<SocketAddr> {
        let l = lines
            .next()
            .ok_or_else(|| std::io::Error::other(format!("dispatcher exited before `{key}`")))??;
        l.strip_prefix(key)
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("unexpected line {l:?}")))
    };
    let client = addr("dispatcher")?;
    let registry = addr("registry")?;
    Ok(Spawned {
        child,
        client,
        registry,
        _config: tempfile_path::Path(config),
    })
}

fn print(o: &Outcome) {
    let per_core = match (o.dispatcher_cores, o.decisions_per_core_s) {
        (Some(c), Some(d)) => {
            format!("  dispatcher {c:.2} cores, {d:.0} decisions per core-second")
        }
        _ => String::new(),
    };
    println!(
        "{:<28} {:>9.0} decisions/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  ({} rejects, {} errors){per_core}",
        o.store,
        o.decisions_per_s,
        o.latency.p50_ms,
        o.latency.p99_ms,
        o.latency.p999_ms,
        o.latency.max_ms,
        o.rejects,
        o.errors
    );
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match settings::parse::<Args>() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dispatchgen: {}", e.exit_on_usage());
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut results = Vec::new();
    match (&args.spawn, args.dispatcher, args.registry) {
        (Some(bin), _, _) => {
            for store in &args.store {
                let d = match spawn(bin, store, args.pin) {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("dispatchgen: cannot start {bin} with store {store}: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                };
                let o = measure(&args, store, d.client, d.registry, Some(d.child.id())).await;
                print(&o);
                results.push(o);
                drop(d);
            }
        }
        (None, Some(client), Some(registry)) => {
            let o = measure(&args, "external", client, registry, args.pid).await;
            print(&o);
            results.push(o);
        }
        _ => {
            eprintln!("dispatchgen: give --spawn BIN, or --dispatcher and --registry");
            return std::process::ExitCode::from(2);
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&results).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("dispatchgen: {path}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
