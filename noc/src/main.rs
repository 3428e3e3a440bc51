//! `noc`: the embedded network operation center. One dispatcher and N media servers run
//! in one process on 127.0.0.1, wired the same way as the split deployment (TCP registry
//! links, will-call tickets), so what works here works split.

use clap::Parser;
use dispatcher::Account;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The flags of `noc`; `--config FILE` reads the same keys from TOML and `NOC_*` variables
/// from the environment (a flag wins over the environment, which wins over the file).
#[derive(Debug, Default, Parser, Serialize, Deserialize)]
#[command(
    name = "noc",
    version,
    about = "Dispatcher and media servers in one process on 127.0.0.1"
)]
#[serde(deny_unknown_fields)]
struct NocArgs {
    /// TOML file with any of these settings, `secret`, and `[[accounts]]` tables.
    #[arg(long)]
    #[serde(skip_deserializing)]
    config: Option<PathBuf>,
    /// Where clients connect to the dispatcher (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Number of media servers.
    #[arg(long)]
    media_servers: Option<usize>,
    /// The dispatcher's JSON API.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Capacity of each media server.
    #[arg(long)]
    capacity: Option<u32>,
    /// Media worker threads of each media server [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Members of one conference on a worker before it spreads over the workers
    /// [default: 256].
    #[arg(long)]
    worker_share: Option<usize>,
    /// Ticket secret; a random one is made per run when unset.
    #[arg(long)]
    secret: Option<String>,
    /// Bearer token of the admin API (operator `admin`); a random one is made and
    /// printed when unset.
    #[arg(long)]
    admin_token: Option<String>,
    /// Where every media server writes its recordings [default: ./recordings].
    #[arg(long)]
    recordings: Option<PathBuf>,
    /// Chat lines a member may send per second at every media server [default: 5].
    #[arg(long)]
    chat_rate: Option<f64>,
    /// Chat lines a member may send at once before the rate applies [default: 10].
    #[arg(long)]
    chat_burst: Option<u32>,
    #[arg(skip)]
    #[serde(default)]
    accounts: Vec<Account>,
    #[arg(skip)]
    #[serde(default)]
    admins: Vec<dispatcher::Admin>,
    /// Limits and timeouts of the client control connections, at the dispatcher and at
    /// every media server.
    #[command(flatten)]
    #[serde(flatten)]
    limits: control::LimitArgs,
    /// The dispatcher's join rate limits.
    #[command(flatten)]
    #[serde(flatten)]
    join_rate: dispatcher::config::JoinRateArgs,
    /// TLS on every port of the dispatcher and the media servers; the media servers'
    /// registry links trust `--tls-ca`, or else the certificate itself (self-signed).
    #[command(flatten)]
    #[serde(flatten)]
    tls: control::TlsArgs,
    /// TURN servers for the web client (`--turn-url`, `--turn-secret`, `--turn-ttl`).
    #[command(flatten)]
    #[serde(flatten)]
    turn: dispatcher::config::TurnArgs,
}

/// How long a stop waits for the control sessions to end.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn demo_account() -> Account {
    Account {
        code: "demo".into(),
        customer: "Demo customer".into(),
        ..Account::default()
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match settings::startup::<NocArgs>("noc", "info", 2) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let limits = match args.limits.resolve() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("noc: config: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let join_rate = match args.join_rate.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("noc: config: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let turn = match args.turn.resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("noc: config: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(e) = args.tls.server() {
        eprintln!("noc: config: {e}");
        return std::process::ExitCode::from(2);
    }
    control::raise_fd_limit();
    let secret = args
        .secret
        .map(String::into_bytes)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()).into_bytes());
    let mut accounts = args.accounts;
    if !accounts.iter().any(|a| a.code == "demo") {
        accounts.push(demo_account());
    }
    let mut ds = dispatcher::Settings::new(secret.clone(), accounts);
    ds.listen = args.listen.unwrap_or(ds.listen);
    ds.registry = ([127, 0, 0, 1], 0).into();
    ds.http = args.http;
    ds.admins = args.admins;
    ds.limits = limits;
    ds.join_rate = join_rate;
    ds.turn = turn;
    ds.tls = args.tls.clone();
    let ms_tls = control::TlsArgs {
        tls_ca: args.tls.tls_ca.clone().or(args.tls.tls_cert.clone()),
        ..args.tls
    };
    // A token given by the operator is never printed; a made one is, once, on stdout.
    let (token, made) = match args.admin_token {
        Some(t) => (t, false),
        None => (hex::encode(rand::random::<[u8; 16]>()), true),
    };
    ds.admins.push(dispatcher::Admin {
        name: "admin".into(),
        token: token.clone(),
    });
    if args.chat_rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) || args.chat_burst == Some(0) {
        eprintln!("noc: config: `chat_rate` must be > 0 lines a second and `chat_burst` >= 1");
        return std::process::ExitCode::from(2);
    }
    let n = args.media_servers.unwrap_or(2);
    let (capacity, chat_rate, chat_burst) = (args.capacity, args.chat_rate, args.chat_burst);
    if args.workers == Some(0) || args.worker_share == Some(0) {
        eprintln!("noc: config: `workers` and `worker_share` must be at least 1");
        return std::process::ExitCode::from(2);
    }
    let (workers, worker_share) = (args.workers, args.worker_share);
    let recordings = args
        .recordings
        .clone()
        .unwrap_or_else(|| PathBuf::from("recordings"));
    println!("recordings {}", recordings.display());
    let adjust = move |ms: &mut mediaserver::Settings| {
        ms.recordings = Some(recordings.clone());
        if let Some(c) = capacity {
            ms.capacity = c;
        }
        if let Some(w) = workers {
            ms.workers = w;
        }
        if let Some(n) = worker_share {
            ms.worker_share = n;
        }
        if let Some(r) = chat_rate {
            ms.chat_rate = r;
        }
        if let Some(b) = chat_burst {
            ms.chat_burst = b;
        }
    };
    let token = made.then_some(token);
    match run(ds, n, adjust, secret, token, ms_tls).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noc: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(
    ds: dispatcher::Settings,
    media_servers: usize,
    adjust: impl Fn(&mut mediaserver::Settings),
    secret: Vec<u8>,
    admin_token: Option<String>,
    ms_tls: control::TlsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let tls = ds.tls.tls_cert.is_some();
    let d = dispatcher::start(ds).await?;
    println!("dispatcher {}", d.client_addr);
    if tls {
        println!("tls on: join with confclient --tls --ca CERT");
    }
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    if let Some(h) = d.http_addr {
        println!("http {h}");
        println!("websocket dispatcher {ws}://{h}/ws");
        println!("dashboard {http}://{h}/");
        if let Some(t) = &admin_token {
            println!("admin-token {t}");
        }
    }
    let mut servers = Vec::new();
    for i in 1..=media_servers {
        let mut ms = mediaserver::Settings::new(format!("ms-{i}"), secret.clone(), d.registry_addr);
        adjust(&mut ms);
        ms.http = Some(([127, 0, 0, 1], 0).into());
        ms.limits = d.service.settings().limits;
        ms.tls = ms_tls.clone();
        let r = mediaserver::start(ms).await?;
        println!("mediaserver {} {}", r.id, r.client_addr);
        println!("metrics {} http://{}/metrics", r.id, r.http_addr);
        println!("websocket {} {}", r.id, r.ws_url);
        servers.push(r);
    }
    // Joins before every server has registered would all land on the first.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.service.tables().servers().count() < media_servers {
        if tokio::time::Instant::now() > deadline {
            return Err("media servers did not register within 10 s".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let confclient = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("confclient")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "confclient".into());
    println!(
        "join with: {confclient} --dispatcher {} --conference xyz --account demo --name alice --tone 440 --record alice.wav --duration 20",
        d.client_addr
    );
    println!("ready");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    // Control sessions end (members leave cleanly), then the process goes.
    for r in &servers {
        r.shutdown(SHUTDOWN_GRACE).await;
    }
    d.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}
