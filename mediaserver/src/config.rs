//! Media server settings: command-line flags, each of which a TOML file can also set.

pub use crate::io::IoKind;
use crate::MediaServerError;
use clap::Parser;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The flags of `mediaserver`; `--config FILE` reads the same keys from TOML, and a flag
/// given on the command line wins over the file.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "mediaserver", version, about = "A NOC media server")]
#[serde(deny_unknown_fields)]
pub struct MediaServerArgs {
    /// TOML file with any of these settings.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where clients connect with their tickets.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The dispatcher's registry address.
    #[arg(long)]
    pub dispatcher: Option<SocketAddr>,
    /// IP that media sockets bind to and that `channel` lines announce.
    #[arg(long)]
    pub media_host: Option<IpAddr>,
    /// This server's id in the capacity table.
    #[arg(long)]
    pub id: Option<String>,
    /// Will-call ticket secret shared with the dispatcher.
    #[arg(long)]
    pub secret: Option<String>,
    /// Total capacity, in forwarded-participant units, reported to the dispatcher.
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Media worker threads, each with its own UDP port [default: one per core].
    #[arg(long)]
    pub workers: Option<usize>,
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
}

/// Resolved media server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub dispatcher: SocketAddr,
    pub media_host: IpAddr,
    pub id: String,
    pub secret: Vec<u8>,
    pub capacity: u32,
    pub workers: usize,
    pub io: IoKind,
    pub gso: bool,
    pub pin_cores: bool,
    /// `/metrics` (Prometheus) on this address.
    pub http: Option<SocketAddr>,
}

/// One worker per core, as the OS reports them.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Settings {
    /// Defaults on loopback for everything but the identity and the secret.
    pub fn new(id: String, secret: Vec<u8>, dispatcher: SocketAddr) -> Self {
        Settings {
            listen: ([127, 0, 0, 1], 0).into(),
            dispatcher,
            media_host: [127, 0, 0, 1].into(),
            id,
            secret,
            capacity: 100,
            workers: default_workers(),
            io: IoKind::DEFAULT,
            gso: true,
            pin_cores: false,
            http: None,
        }
    }
}

impl MediaServerArgs {
    /// Reads `--config` if given and lays the command-line flags over it.
    pub fn resolve(self) -> Result<Settings, MediaServerError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| MediaServerError::Config(format!("{}: {e}", path.display())))?;
                toml::from_str::<MediaServerArgs>(&text)
                    .map_err(|e| MediaServerError::Config(format!("{}: {e}", path.display())))?
            }
            None => MediaServerArgs::default(),
        };
        let secret = self.secret.or(file.secret).ok_or_else(|| {
            MediaServerError::Config(
                "`secret` must be set (flag or config): it checks the dispatcher's tickets".into(),
            )
        })?;
        let dispatcher = self.dispatcher.or(file.dispatcher).ok_or_else(|| {
            MediaServerError::Config("`dispatcher` (the registry address) must be set".into())
        })?;
        let id = self
            .id
            .or(file.id)
            .unwrap_or_else(|| format!("ms-{}", std::process::id()));
        let mut s = Settings::new(id, secret.into_bytes(), dispatcher);
        if let Some(v) = self.listen.or(file.listen) {
            s.listen = v;
        }
        s.media_host = match self.media_host.or(file.media_host) {
            Some(ip) => ip,
            None if !s.listen.ip().is_unspecified() => s.listen.ip(),
            None => s.media_host,
        };
        if let Some(v) = self.capacity.or(file.capacity) {
            s.capacity = v;
        }
        if let Some(v) = self.workers.or(file.workers) {
            if v == 0 {
                return Err(MediaServerError::Config(
                    "`workers` must be at least 1".into(),
                ));
            }
            s.workers = v;
        }
        if let Some(v) = self.io.or(file.io) {
            s.io = v;
        }
        if let Some(v) = self.gso.or(file.gso) {
            s.gso = v;
        }
        if let Some(v) = self.pin_cores.or(file.pin_cores) {
            s.pin_cores = v;
        }
        s.http = self.http.or(file.http);
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
}
