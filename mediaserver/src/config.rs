//! Media server settings: command-line flags, each of which a TOML file can also set.

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
    /// Media worker threads, each with its own UDP port.
    #[arg(long)]
    pub workers: Option<usize>,
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
            workers: 1,
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
        Ok(s)
    }
}
