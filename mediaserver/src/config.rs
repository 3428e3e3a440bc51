//! Media server settings: command-line flags, each of which a TOML file or a `NOC_*`
//! environment variable can also set (merged by the `settings` crate).

pub use crate::io::IoKind;
use crate::MediaServerError;
use clap::Parser;
use protocol::CostModel;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The flags of `mediaserver`; `--config FILE` reads the same keys from TOML and `NOC_*`
/// variables from the environment (a flag wins over the environment, which wins over the
/// file).
#[derive(Debug, Default, Parser, Serialize, Deserialize)]
#[command(name = "mediaserver", version, about = "A NOC media server")]
#[serde(deny_unknown_fields)]
pub struct MediaServerArgs {
    /// TOML file with any of these settings.
    #[arg(long)]
    #[serde(skip_deserializing)]
    pub config: Option<PathBuf>,
    /// Where clients connect with their tickets.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The dispatchers' registry addresses, `a:1,b:2` (TOML: a string or an array). The
    /// server links to one at a time and moves to the next when its link fails.
    #[arg(long)]
    pub dispatcher: Option<Dispatchers>,
    /// IP that media sockets bind to and that `channel` lines announce.
    #[arg(long)]
    pub media_host: Option<IpAddr>,
    /// This server's id in the capacity table.
    #[arg(long)]
    pub id: Option<String>,
    /// Will-call ticket secret shared with the dispatcher.
    #[arg(long)]
    pub secret: Option<String>,
    /// Total capacity, in forwarded-participant units, reported to the dispatcher
    /// [default: 1000 per core].
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Media worker threads, each with its own UDP port [default: one per core].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Members of one conference a worker takes before the conference spreads to another
    /// worker [default: 256].
    #[arg(long)]
    pub worker_share: Option<usize>,
    /// UDP backend of the media workers; one that cannot start falls back to mmsg
    /// [default: uring].
    #[arg(long, value_enum)]
    pub io: Option<IoKind>,
    /// Send equal-sized packets to one destination as one GSO (UDP_SEGMENT) message
    /// [default: true].
    #[arg(long)]
    pub gso: Option<bool>,
    /// Pin media worker N to core N (modulo the core count) [default: false].
    #[arg(long)]
    pub pin_cores: Option<bool>,
    /// Serve Prometheus `/metrics` on this address.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Percent of capacity past which the server punts a conference elsewhere
    /// [default: 90].
    #[arg(long)]
    pub high_water: Option<u32>,
    /// Seconds a SIGTERM drain may take before the server exits anyway [default: 30].
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Last-N: forward video only from the N most recent speakers of each conference
    /// (RFC 6464 audio levels) [default: 0, everyone's video].
    #[arg(long)]
    pub last_n: Option<usize>,
    /// Carry video (`--video false`: an audio-only server, which the dispatcher prefers
    /// for audio-only conferences) [default: true].
    #[arg(long)]
    pub video: Option<bool>,
    /// ICE over TCP (RFC 6544, passive) at each worker's UDP port number, for browsers
    /// that cannot send UDP (`--ice-tcp false` turns it off) [default: true].
    #[arg(long)]
    pub ice_tcp: Option<bool>,
    /// Where recordings go (`record on`, the admin API's recording route). Without it,
    /// starting a recording is refused [default: none].
    #[arg(long)]
    pub recordings: Option<std::path::PathBuf>,
    /// Commands queued per media worker; what a full queue cannot take is refused (a
    /// join) or kept for later (a leave), and counted [default: 1024].
    #[arg(long)]
    pub worker_queue: Option<usize>,
    /// Chat lines a member may send per second, on average; past it (and the burst) its
    /// lines are refused with `reject 431` and nobody sees them [default: 5].
    #[arg(long)]
    pub chat_rate: Option<f64>,
    /// Chat lines a member may send at once before the rate applies [default: 10].
    #[arg(long)]
    pub chat_burst: Option<u32>,
    /// `[cost]`: capacity units per participant (config file only).
    #[arg(skip)]
    pub cost: Option<CostModel>,
    /// Limits and timeouts of the client control connections (TCP and WebSocket).
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: control::LimitArgs,
    /// TLS on the client port and the HTTP port (`--tls-cert`, `--tls-key`), and the CA
    /// the registry link verifies dispatchers with (`--tls-ca`).
    #[command(flatten)]
    #[serde(flatten)]
    pub tls: control::TlsArgs,
}

/// Registry addresses of the dispatchers a server may link to, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatchers(pub Vec<SocketAddr>);

impl<'de> Deserialize<'de> for Dispatchers {
    /// A string `a:1,b:2` or an array, parsed as the flag is.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        settings::comma_list(d)
    }
}

impl std::str::FromStr for Dispatchers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.parse().map_err(|e| format!("dispatcher {a:?}: {e}")))
            .collect::<Result<Vec<SocketAddr>, String>>()?;
        if v.is_empty() {
            return Err("at least one dispatcher address is needed".into());
        }
        Ok(Dispatchers(v))
    }
}

/// A dead dispatcher on loopback refuses at once; an unreachable one gets this long.
const DISPATCHER_CONNECT: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolved media server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The first of `dispatchers`.
    pub dispatcher: SocketAddr,
    /// Every dispatcher this server may link to (several share a Redis store).
    pub dispatchers: Vec<SocketAddr>,
    /// Index in `dispatchers` of the last one that took our link.
    current_dispatcher: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub media_host: IpAddr,
    pub id: String,
    pub secret: Vec<u8>,
    pub capacity: u32,
    pub workers: usize,
    /// Members of one conference per worker before it spreads over the workers.
    pub worker_share: usize,
    pub io: IoKind,
    pub gso: bool,
    pub pin_cores: bool,
    /// `/metrics` (Prometheus) on this address.
    pub http: Option<SocketAddr>,
    /// Percent of `capacity` past which a conference is punted.
    pub high_water: u32,
    /// How long a SIGTERM drain may take.
    pub drain_timeout: std::time::Duration,
    /// Last-N per conference; `None`: every sender's video is forwarded.
    pub last_n: Option<usize>,
    /// Registers the `video` capability and takes `media=audio,video` joins.
    pub video: bool,
    /// Workers take ICE over TCP at their port numbers.
    pub ice_tcp: bool,
    /// The recordings directory; `None`: recording is refused.
    pub recordings: Option<std::path::PathBuf>,
    /// Units per participant, as the dispatcher charges them.
    pub cost: CostModel,
    /// Limits and timeouts of the client control connections (TCP and WebSocket).
    pub limits: control::Limits,
    /// TLS on every port, and the registry link's trust (none by default).
    pub tls: control::TlsArgs,
    /// Commands queued per media worker; a full queue refuses (and counts) what cannot wait.
    pub worker_queue: usize,
    /// Chat: lines per second per member, and the burst allowed before that rate applies.
    pub chat_rate: f64,
    pub chat_burst: u32,
}

/// [`protocol::UNITS_PER_CORE`] for each core, as the OS reports them.
pub fn default_capacity() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    protocol::UNITS_PER_CORE.saturating_mul(u32::try_from(cores).unwrap_or(u32::MAX))
}

/// One worker per core, as the OS reports them.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Settings {
    /// Connects the registry link: the dispatcher that took it last first, then the
    /// others in turn, so a server whose dispatcher died moves to the next one.
    pub async fn connect_dispatcher(&self) -> std::io::Result<tokio::net::TcpStream> {
        use std::sync::atomic::Ordering;
        let n = self.dispatchers.len().max(1);
        let start = self.current_dispatcher.load(Ordering::Relaxed);
        let mut last = std::io::Error::other("no dispatcher configured");
        for i in 0..n {
            let k = (start + i) % n;
            let Some(&addr) = self.dispatchers.get(k) else {
                break;
            };
            let tried =
                tokio::time::timeout(DISPATCHER_CONNECT, tokio::net::TcpStream::connect(addr))
                    .await;
            match tried {
                Ok(Ok(stream)) => {
                    if k != start {
                        tracing::info!(dispatcher = %addr, "moved the registry link to another dispatcher");
                    }
                    self.current_dispatcher.store(k, Ordering::Relaxed);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"),
            }
            tracing::debug!(dispatcher = %addr, error = %last, "dispatcher unreachable");
        }
        Err(last)
    }

    /// Defaults on loopback for everything but the identity and the secret.
    pub fn new(id: String, secret: Vec<u8>, dispatcher: SocketAddr) -> Self {
        Settings {
            listen: ([127, 0, 0, 1], 0).into(),
            dispatcher,
            dispatchers: vec![dispatcher],
            current_dispatcher: Default::default(),
            media_host: [127, 0, 0, 1].into(),
            id,
            secret,
            capacity: default_capacity(),
            workers: default_workers(),
            worker_share: 256,
            io: IoKind::DEFAULT,
            gso: true,
            pin_cores: false,
            http: None,
            high_water: 90,
            drain_timeout: std::time::Duration::from_secs(30),
            last_n: None,
            video: true,
            ice_tcp: true,
            recordings: None,
            cost: CostModel::default(),
            limits: control::Limits::default(),
            tls: control::TlsArgs::default(),
            worker_queue: crate::worker::COMMAND_QUEUE,
            chat_rate: 5.0,
            chat_burst: 10,
        }
    }
}

impl MediaServerArgs {
    /// Reads `--config` if given, lays the flags over it and checks the result.
    pub fn resolve(self) -> Result<Settings, MediaServerError> {
        let a = settings::load(&self).map_err(|e| MediaServerError::Config(e.to_string()))?;
        let secret = a.secret.ok_or_else(|| {
            MediaServerError::Config(
                "`secret` must be set (flag or config): it checks the dispatcher's tickets".into(),
            )
        })?;
        let dispatcher = a.dispatcher.ok_or_else(|| {
            MediaServerError::Config("`dispatcher` (the registry address) must be set".into())
        })?;
        let id = a.id.unwrap_or_else(|| format!("ms-{}", std::process::id()));
        // `Dispatchers` never parses empty.
        let mut s = Settings::new(id, secret.into_bytes(), dispatcher.0[0]);
        s.dispatchers = dispatcher.0;
        if let Some(v) = a.listen {
            s.listen = v;
        }
        s.media_host = match a.media_host {
            Some(ip) => ip,
            None if !s.listen.ip().is_unspecified() => s.listen.ip(),
            None => s.media_host,
        };
        if let Some(v) = a.capacity {
            s.capacity = v;
        }
        if let Some(v) = a.workers {
            if v == 0 {
                return Err(MediaServerError::Config(
                    "`workers` must be at least 1".into(),
                ));
            }
            s.workers = v;
        }
        if let Some(v) = a.worker_share {
            if v == 0 {
                return Err(MediaServerError::Config(
                    "`worker_share` must be at least 1".into(),
                ));
            }
            s.worker_share = v;
        }
        if let Some(v) = a.io {
            s.io = v;
        }
        if let Some(v) = a.gso {
            s.gso = v;
        }
        if let Some(v) = a.pin_cores {
            s.pin_cores = v;
        }
        s.http = a.http;
        if let Some(v) = a.high_water {
            if !(1..=100).contains(&v) {
                return Err(MediaServerError::Config(
                    "`high_water` is a percent of capacity, 1 to 100".into(),
                ));
            }
            s.high_water = v;
        }
        if let Some(v) = a.drain_timeout {
            s.drain_timeout = std::time::Duration::try_from_secs_f64(v).map_err(|_| {
                MediaServerError::Config("`drain_timeout` must be seconds >= 0".into())
            })?;
        }
        s.last_n = a.last_n.filter(|&n| n > 0);
        s.video = a.video.unwrap_or(true);
        s.ice_tcp = a.ice_tcp.unwrap_or(true);
        s.recordings = a.recordings.filter(|p| !p.as_os_str().is_empty());
        s.cost = a.cost.unwrap_or_default();
        s.limits = a.limits.resolve().map_err(MediaServerError::Config)?;
        if let Some(r) = a.chat_rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(MediaServerError::Config(
                    "`chat_rate` must be a number of lines per second > 0".into(),
                ));
            }
            s.chat_rate = r;
        }
        if let Some(b) = a.chat_burst {
            if b == 0 {
                return Err(MediaServerError::Config(
                    "`chat_burst` must be at least 1".into(),
                ));
            }
            s.chat_burst = b;
        }
        s.tls = a.tls;
        if let Some(q) = a.worker_queue {
            if q == 0 {
                return Err(MediaServerError::Config(
                    "`worker_queue` must be at least 1".into(),
                ));
            }
            s.worker_queue = q;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> MediaServerArgs {
        let mut v = vec![
            "mediaserver",
            "--secret",
            "s",
            "--dispatcher",
            "127.0.0.1:9",
        ];
        v.extend_from_slice(flags);
        MediaServerArgs::parse_from(v)
    }

    #[test]
    fn dispatcher_is_one_address_or_a_list() {
        let one = args(&[]).resolve().unwrap();
        assert_eq!(one.dispatchers, vec![one.dispatcher]);
        let s = MediaServerArgs::parse_from([
            "mediaserver",
            "--secret",
            "s",
            "--dispatcher",
            "127.0.0.1:9,127.0.0.1:10",
        ])
        .resolve()
        .unwrap();
        assert_eq!(s.dispatchers.len(), 2);
        assert_eq!(s.dispatcher, s.dispatchers[0]);
        let toml: MediaServerArgs =
            toml::from_str(r#"dispatcher = ["127.0.0.1:9", "127.0.0.1:10"]"#).unwrap();
        assert_eq!(toml.dispatcher.unwrap().0, s.dispatchers);
        assert!("".parse::<Dispatchers>().is_err());
    }

    #[tokio::test]
    async fn the_link_goes_to_the_next_dispatcher_when_one_is_down() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut s = args(&[]).resolve().unwrap();
        s.dispatchers = vec![dead, live.local_addr().unwrap()];
        let stream = s.connect_dispatcher().await.expect("the live one answers");
        assert_eq!(stream.peer_addr().unwrap(), live.local_addr().unwrap());
        drop(live);
        assert!(s.connect_dispatcher().await.is_err());
    }

    #[test]
    fn engine_defaults() {
        let s = args(&[]).resolve().unwrap();
        assert_eq!(s.workers, default_workers());
        assert_eq!(s.io, IoKind::DEFAULT);
        assert!(s.gso);
        assert!(!s.pin_cores);
    }

    #[test]
    fn engine_flags_and_file() {
        let s = args(&["--workers", "3", "--io", "uring", "--gso", "false"])
            .resolve()
            .unwrap();
        assert_eq!((s.workers, s.io, s.gso), (3, IoKind::Uring, false));
        assert!(MediaServerArgs::try_parse_from(["mediaserver", "--io", "epoll"]).is_err());

        let dir = std::env::temp_dir().join(format!("ms-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ms.toml");
        std::fs::write(
            &file,
            "io = \"uring\"\ngso = false\npin_cores = true\nworkers = 2\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = args(&["--config", path]).resolve().unwrap();
        assert_eq!(
            (s.workers, s.io, s.gso, s.pin_cores),
            (2, IoKind::Uring, false, true)
        );
        // A flag wins over the file.
        let s = args(&["--config", path, "--io", "mmsg"]).resolve().unwrap();
        assert_eq!(s.io, IoKind::Mmsg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_limits_from_flags_and_file() {
        let s = args(&["--max-connections-per-ip", "3", "--worker-queue", "8"])
            .resolve()
            .unwrap();
        assert_eq!(s.limits.max_connections_per_ip, 3);
        assert_eq!(s.worker_queue, 8);
        assert_eq!(s.limits.handshake_timeout, 10.0);
        let dir = std::env::temp_dir().join(format!("ms-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ms.toml");
        std::fs::write(&file, "handshake_timeout = 2.5\nidle_timeout = 7\n").unwrap();
        let path = file.to_str().unwrap();
        let s = args(&["--config", path]).resolve().unwrap();
        assert_eq!(
            (s.limits.handshake_timeout, s.limits.idle_timeout),
            (2.5, 7.0)
        );
        std::fs::write(&file, "handshake_timeout = 0\n").unwrap();
        let e = args(&["--config", path]).resolve().unwrap_err();
        assert!(e.to_string().contains("handshake_timeout"), "{e}");
        std::fs::write(&file, "handshake_timeout = 1\nbogus = 1\n").unwrap();
        assert!(args(&["--config", path]).resolve().is_err());
        assert!(args(&["--worker-queue", "0"]).resolve().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn environment_between_flags_and_file() {
        let dir = std::env::temp_dir().join(format!("ms-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ms.toml");
        std::fs::write(
            &file,
            "secret = \"s\"\ndispatcher = \"127.0.0.1:9\"\nworkers = 2\nhigh_water = 50\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let load = |flags: &[&str], env: &[(&str, &str)]| {
            settings::parse_from::<MediaServerArgs, _, _, _, _, _>(
                ["mediaserver", "--config", path].iter().chain(flags),
                env.iter().copied(),
            )
            .unwrap()
            .resolve()
        };
        let env = [
            ("NOC_WORKERS", "3"),
            ("NOC_MEDIA_HOST", "127.0.0.5"),
            ("NOC_DISPATCHER", "127.0.0.1:9,127.0.0.1:10"),
        ];
        let s = load(&[], &env).unwrap();
        assert_eq!((s.workers, s.high_water), (3, 50), "env over file");
        assert_eq!(s.media_host, IpAddr::from([127, 0, 0, 5]));
        assert_eq!(s.dispatchers.len(), 2);
        let s = load(&["--workers", "4"], &env).unwrap();
        assert_eq!(s.workers, 4, "flag over env");
        // The binary's own checks still apply to a value from the environment.
        let e = load(&[], &[("NOC_HIGH_WATER", "0")]).unwrap_err();
        assert!(e.to_string().contains("1 to 100"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn high_water_and_drain_timeout() {
        let s = args(&[]).resolve().unwrap();
        assert_eq!(s.high_water, 90);
        assert_eq!(s.drain_timeout, std::time::Duration::from_secs(30));
        let s = args(&["--high-water", "50", "--drain-timeout", "2.5"])
            .resolve()
            .unwrap();
        assert_eq!(s.high_water, 50);
        assert_eq!(s.drain_timeout, std::time::Duration::from_millis(2500));
        assert!(args(&["--high-water", "0"]).resolve().is_err());
        assert!(args(&["--high-water", "101"]).resolve().is_err());
        assert!(args(&["--drain-timeout=-1"]).resolve().is_err());
    }
}
