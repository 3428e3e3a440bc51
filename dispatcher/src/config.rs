//! Dispatcher settings: command-line flags, each of which a TOML file can also set.

use crate::DispatcherError;
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// An account code a client joins with (seed 003: "a list of valid accounts").
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub code: String,
    pub customer: String,
}

/// An operator allowed to use the admin API with a bearer token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub name: String,
    pub token: String,
}

/// The flags of `dispatcher`; `--config FILE` reads the same keys from TOML, and a flag
/// given on the command line wins over the file.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "dispatcher", version, about = "The NOC dispatch server")]
#[serde(deny_unknown_fields)]
pub struct DispatcherArgs {
    /// TOML file with any of these settings and `[[accounts]]` tables.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where clients connect (the seed's port 3450).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where media servers register.
    #[arg(long)]
    pub registry: Option<SocketAddr>,
    /// JSON API (`/api/servers`, `/api/conferences`, `/api/events`).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// This dispatcher's id, sent in `connect`.
    #[arg(long)]
    pub id: Option<String>,
    /// Will-call ticket secret shared with the media servers.
    #[arg(long)]
    pub secret: Option<String>,
    /// Seconds a will-call ticket and its reservation stay valid.
    #[arg(long)]
    pub ticket_ttl: Option<u64>,
    /// Bearer token for the admin API, for an operator called `admin`; more operators
    /// come from `[[admins]]` tables (`name`, `token`).
    #[arg(long)]
    pub admin_token: Option<String>,
    #[arg(skip)]
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[arg(skip)]
    #[serde(default)]
    pub admins: Vec<Admin>,
}

/// Resolved dispatcher settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub registry: SocketAddr,
    pub http: Option<SocketAddr>,
    pub id: String,
    pub secret: Vec<u8>,
    pub ticket_ttl: Duration,
    pub accounts: Vec<Account>,
    /// Who may use the admin API; empty: admin actions are refused (403).
    pub admins: Vec<Admin>,
}

impl Settings {
    /// Defaults for everything but the secret and the accounts.
    pub fn new(secret: Vec<u8>, accounts: Vec<Account>) -> Self {
        Settings {
            listen: ([127, 0, 0, 1], protocol::DEFAULT_PORT).into(),
            registry: ([127, 0, 0, 1], protocol::DEFAULT_PORT + 10).into(),
            http: None,
            id: "disp-1".to_owned(),
            secret,
            ticket_ttl: Duration::from_secs(30),
            accounts,
            admins: Vec::new(),
        }
    }
}

impl DispatcherArgs {
    /// Reads `--config` if given and lays the command-line flags over it.
    pub fn resolve(self) -> Result<Settings, DispatcherError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| DispatcherError::Config(format!("{}: {e}", path.display())))?;
                toml::from_str::<DispatcherArgs>(&text)
                    .map_err(|e| DispatcherError::Config(format!("{}: {e}", path.display())))?
            }
            None => DispatcherArgs::default(),
        };
        let secret = self.secret.or(file.secret).ok_or_else(|| {
            DispatcherError::Config(
                "`secret` must be set (flag or config): media servers check tickets with it".into(),
            )
        })?;
        let accounts = if self.accounts.is_empty() {
            file.accounts
        } else {
            self.accounts
        };
        if accounts.is_empty() {
            return Err(DispatcherError::Config(
                "no `[[accounts]]` in the config: every join would be rejected".into(),
            ));
        }
        let mut s = Settings::new(secret.into_bytes(), accounts);
        if let Some(v) = self.listen.or(file.listen) {
            s.listen = v;
        }
        if let Some(v) = self.registry.or(file.registry) {
            s.registry = v;
        }
        s.http = self.http.or(file.http);
        if let Some(v) = self.id.or(file.id) {
            s.id = v;
        }
        if let Some(v) = self.ticket_ttl.or(file.ticket_ttl) {
            s.ticket_ttl = Duration::from_secs(v);
        }
        s.admins = file.admins;
        if let Some(token) = self.admin_token.or(file.admin_token) {
            s.admins.push(Admin {
                name: "admin".into(),
                token,
            });
        }
        Ok(s)
    }
}
