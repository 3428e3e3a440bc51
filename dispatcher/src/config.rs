//! Dispatcher settings: command-line flags, each of which a TOML file or a `NOC_*`
//! environment variable can also set (merged by the `settings` crate).

use crate::core::{CostModel, DEFAULT_POOL};
use crate::DispatcherError;
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// An account code a client joins with (seed 003: "a list of valid accounts"), with its
/// customer's contract.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub code: String,
    pub customer: String,
    /// The customer's maximum simultaneous users, across all its conferences.
    #[serde(default)]
    pub max_users: Option<u32>,
    /// The tenant pool its conferences run in; wins over the join's `domain`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Users reserved per conference: each conference is charged as if at least this
    /// many were present (seed 003's contract).
    #[serde(default)]
    pub reserved: u32,
    /// Members per media server (0: no limit): a conference of this account holds at most
    /// this many on each server and spreads the rest over linked servers, so a webinar's
    /// audience is fanned out by several servers rather than one.
    #[serde(default)]
    pub spread: u32,
    /// A join carrying this PIN (`pin=`, `confclient --moderator-pin`) moderates its
    /// conference: the dispatcher signs the role into its ticket. Without a PIN the
    /// account's conferences have no moderators (operators still use the admin API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderator_pin: Option<String>,
}

impl Account {
    /// An account without a contract.
    pub fn new(code: &str, customer: &str) -> Account {
        Account {
            code: code.to_owned(),
            customer: customer.to_owned(),
            ..Account::default()
        }
    }
}

/// Tenant pools and the domain map (seed 004): which media servers a tenant's
/// conferences may run on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    /// Pool name -> server ids. Servers named in no pool are in `default`.
    pub pools: BTreeMap<String, Vec<String>>,
    /// Domain (from `join ... domain=`) -> pool name.
    pub tenants: BTreeMap<String, String>,
}

impl Tenancy {
    /// Server id -> pool, for the tables.
    pub fn server_pools(&self) -> HashMap<String, String> {
        self.pools
            .iter()
            .flat_map(|(pool, ids)| ids.iter().map(move |id| (id.clone(), pool.clone())))
            .collect()
    }

    /// The pool of a join: the account's pool if its contract names one (the account
    /// code is checked; the domain is only the client's word), else the domain's pool
    /// from the tenant map, else `default`.
    pub fn pool_for<'a>(&'a self, account: &'a Account, domain: Option<&str>) -> &'a str {
        if let Some(p) = &account.pool {
            return p;
        }
        domain
            .map(|d| d.to_ascii_lowercase())
            .and_then(|d| self.tenants.get(&d))
            .map_or(DEFAULT_POOL, String::as_str)
    }
}

/// An operator allowed to use the admin API with a bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub name: String,
    pub token: String,
}

/// The flags of `dispatcher`; `--config FILE` reads the same keys from TOML and `NOC_*`
/// variables from the environment (a flag wins over the environment, which wins over the
/// file).
#[derive(Debug, Default, Parser, Serialize, Deserialize)]
#[command(name = "dispatcher", version, about = "The NOC dispatch server")]
#[serde(deny_unknown_fields)]
pub struct DispatcherArgs {
    /// TOML file with any of these settings and `[[accounts]]` tables.
    #[arg(long)]
    #[serde(skip_deserializing)]
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
    /// Append one JSON line per leave to this file (the usage log, for billing).
    #[arg(long)]
    pub usage_log: Option<PathBuf>,
    /// `[cost]`: capacity units per participant by mode and media.
    #[arg(skip)]
    pub cost: Option<CostModel>,
    /// `[pools]`: pool name -> media server ids.
    #[arg(skip)]
    #[serde(default)]
    pub pools: BTreeMap<String, Vec<String>>,
    /// `[tenants]`: domain -> pool name.
    #[arg(skip)]
    #[serde(default)]
    pub tenants: BTreeMap<String, String>,
    /// Where several dispatchers meet: `memory` (one dispatcher) or `redis://HOST:PORT`
    /// [default: memory].
    #[arg(long)]
    pub store: Option<crate::store::StoreUrl>,
    /// Run as the dispatcher switch instead: accept clients here and spread them
    /// round-robin over `--backends`.
    #[arg(long)]
    pub switch: Option<SocketAddr>,
    /// The dispatchers' client addresses for `--switch` (`a:1,b:2`; TOML: an array).
    #[arg(long)]
    pub backends: Option<crate::switch::AddrList>,
    /// Limits and timeouts of the client control connections (TCP and WebSocket).
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: control::LimitArgs,
    /// How fast one account or one address may join.
    #[command(flatten)]
    #[serde(flatten)]
    pub join_rate: JoinRateArgs,
    /// TLS on the client port, the registry port and the HTTP port.
    #[command(flatten)]
    #[serde(flatten)]
    pub tls: control::TlsArgs,
    /// The TURN servers the web client is pointed at.
    #[command(flatten)]
    #[serde(flatten)]
    pub turn: TurnArgs,
}

/// TURN for browsers that cannot reach the media servers directly: the web client asks
/// `/api/webrtc/ice-servers` and gets these URLs with time-limited credentials (the TURN
/// REST scheme coturn's `use-auth-secret` checks: user `EXPIRY:ACCOUNT`, password
/// base64(HMAC-SHA1(secret, user))).
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct TurnArgs {
    /// TURN server URLs handed to browsers (`turn:host:3478?transport=udp`, `turns:...`;
    /// comma-separated; TOML: an array).
    #[arg(long = "turn-url", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn `static-auth-secret`).
    #[arg(long)]
    pub turn_secret: Option<String>,
    /// How long handed-out TURN credentials stay valid, seconds [default: 86400].
    #[arg(long)]
    pub turn_ttl: Option<u64>,
}

impl TurnArgs {
    /// Checks the URLs (`turn:` or `turns:`) and that credentials can be made for them.
    pub fn resolve(&self) -> Result<Turn, String> {
        for u in &self.turn_urls {
            if !(u.starts_with("turn:") || u.starts_with("turns:")) {
                return Err(format!("turn url {u:?}: must start with turn: or turns:"));
            }
        }
        if !self.turn_urls.is_empty() && self.turn_secret.as_deref().is_none_or(str::is_empty) {
            return Err("`turn_url` needs `turn_secret` (the TURN server's shared secret)".into());
        }
        let ttl = self.turn_ttl.unwrap_or(86_400);
        if ttl == 0 {
            return Err("`turn_ttl` must be at least 1 second".into());
        }
        Ok(Turn {
            urls: self.turn_urls.clone(),
            secret: self.turn_secret.clone(),
            ttl: Duration::from_secs(ttl),
        })
    }
}

/// The TURN settings, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turn {
    pub urls: Vec<String>,
    pub secret: Option<String>,
    pub ttl: Duration,
}

/// The join rate limits (flags, TOML keys, `NOC_*` variables). Past one, a join gets
/// `reject 430 retry after N ms: ...`. 0 (the default) turns a limit off.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct JoinRateArgs {
    /// Joins a second allowed per account, all addresses together (0: no limit).
    #[arg(long)]
    pub join_rate_account: Option<f64>,
    /// Joins an account may make at once before its rate applies [default: 10 × the rate, at least 1].
    #[arg(long)]
    pub join_burst_account: Option<u32>,
    /// Joins a second allowed per client IP address, all accounts together (0: no limit).
    #[arg(long)]
    pub join_rate_ip: Option<f64>,
    /// Joins an address may make at once before its rate applies [default: 10 × the rate, at least 1].
    #[arg(long)]
    pub join_burst_ip: Option<u32>,
}

/// Resolved join rate limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinRate {
    pub per_account: control::Rate,
    pub per_ip: control::Rate,
}

impl Default for JoinRate {
    fn default() -> Self {
        JoinRate {
            per_account: control::Rate::OFF,
            per_ip: control::Rate::OFF,
        }
    }
}

impl JoinRateArgs {
    pub fn resolve(&self) -> Result<JoinRate, String> {
        let rate = |per_sec: Option<f64>, burst: Option<u32>, name: &str| {
            let per_sec = per_sec.unwrap_or(0.0);
            let burst = burst.unwrap_or_else(|| (per_sec * 10.0).ceil().max(1.0) as u32);
            let r = control::Rate { per_sec, burst };
            r.check(name).map(|()| r)
        };
        Ok(JoinRate {
            per_account: rate(
                self.join_rate_account,
                self.join_burst_account,
                "join_rate_account",
            )?,
            per_ip: rate(self.join_rate_ip, self.join_burst_ip, "join_rate_ip")?,
        })
    }
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
    /// The usage log's file, if any.
    pub usage_log: Option<PathBuf>,
    pub cost: CostModel,
    pub tenancy: Tenancy,
    /// The store shared with other dispatchers.
    pub store: crate::store::StoreUrl,
    /// Limits and timeouts of the client control connections (TCP and WebSocket).
    pub limits: control::Limits,
    /// How fast one account or one address may join.
    pub join_rate: JoinRate,
    /// TLS on every port (none by default).
    pub tls: control::TlsArgs,
    /// TURN servers for the web client (none by default).
    pub turn: Turn,
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
            usage_log: None,
            cost: CostModel::default(),
            tenancy: Tenancy::default(),
            store: crate::store::StoreUrl::Memory,
            limits: control::Limits::default(),
            join_rate: JoinRate::default(),
            tls: control::TlsArgs::default(),
            turn: Turn::default(),
        }
    }
}

impl DispatcherArgs {
    /// `--switch` mode: where to listen and the dispatchers behind it, from the flags
    /// or the config file; `None` for a dispatcher.
    #[allow(clippy::type_complexity)]
    pub fn switch_mode(
        &self,
    ) -> Result<Option<(SocketAddr, Vec<SocketAddr>, control::Limits)>, DispatcherError> {
        let a = settings::load(self).map_err(|e| DispatcherError::Config(e.to_string()))?;
        let Some(listen) = a.switch else {
            return Ok(None);
        };
        let backends = a.backends.ok_or_else(|| {
            DispatcherError::Config(
                "`switch` needs `backends` (the dispatchers' client addresses)".into(),
            )
        })?;
        let limits = a.limits.resolve().map_err(DispatcherError::Config)?;
        Ok(Some((listen, backends.0, limits)))
    }

    /// Reads `--config` if given, lays the flags over it and checks the result.
    pub fn resolve(self) -> Result<Settings, DispatcherError> {
        let a = settings::load(&self).map_err(|e| DispatcherError::Config(e.to_string()))?;
        let secret = a.secret.ok_or_else(|| {
            DispatcherError::Config(
                "`secret` must be set (flag or config): media servers check tickets with it".into(),
            )
        })?;
        if a.accounts.is_empty() {
            return Err(DispatcherError::Config(
                "no `[[accounts]]` in the config: every join would be rejected".into(),
            ));
        }
        let mut s = Settings::new(secret.into_bytes(), a.accounts);
        if let Some(v) = a.listen {
            s.listen = v;
        }
        if let Some(v) = a.registry {
            s.registry = v;
        }
        s.http = a.http;
        let id_set = a.id.is_some();
        if let Some(v) = a.id {
            s.id = v;
        }
        if let Some(v) = a.ticket_ttl {
            s.ticket_ttl = Duration::from_secs(v);
        }
        s.admins = a.admins;
        s.usage_log = a.usage_log;
        s.store = a.store.unwrap_or_default();
        if matches!(s.store, crate::store::StoreUrl::Redis(_)) && !id_set {
            // Two dispatchers left on the default id would share the lease and each
            // other's merge orders.
            return Err(DispatcherError::Config(format!(
                "`store = {}` needs an explicit `id` (flag `--id` or config), unique per dispatcher",
                s.store
            )));
        }
        s.cost = a.cost.unwrap_or_default();
        s.limits = a.limits.resolve().map_err(DispatcherError::Config)?;
        s.join_rate = a.join_rate.resolve().map_err(DispatcherError::Config)?;
        s.turn = a.turn.resolve().map_err(DispatcherError::Config)?;
        s.tls = a.tls;
        s.tenancy = Tenancy {
            pools: a.pools,
            tenants: a
                .tenants
                .into_iter()
                .map(|(d, p)| (d.to_ascii_lowercase(), p))
                .collect(),
        };
        for pool in s
            .tenancy
            .tenants
            .values()
            .chain(s.accounts.iter().filter_map(|a| a.pool.as_ref()))
        {
            if pool != DEFAULT_POOL && !s.tenancy.pools.contains_key(pool) {
                return Err(DispatcherError::Config(format!(
                    "pool `{pool}` is named by a tenant or an account but not declared in `[pools]`"
                )));
            }
        }
        if let Some(token) = a.admin_token {
            s.admins.push(Admin {
                name: "admin".into(),
                token,
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(store: &str, id: Option<&str>) -> DispatcherArgs {
        DispatcherArgs {
            secret: Some("x".into()),
            accounts: vec![Account::new("demo", "Demo")],
            store: Some(store.parse().unwrap()),
            id: id.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn a_redis_store_needs_an_explicit_id() {
        let e = args("redis://127.0.0.1:6379", None).resolve().unwrap_err();
        assert!(e.to_string().contains("explicit `id`"), "{e}");
        let s = args("redis://127.0.0.1:6379", Some("disp-2"))
            .resolve()
            .unwrap();
        assert_eq!(s.id, "disp-2");
        // Alone on memory the default id is fine.
        assert_eq!(args("memory", None).resolve().unwrap().id, "disp-1");
    }

    #[test]
    fn environment_between_flags_and_file() {
        let path = std::env::temp_dir().join(format!("disp-env-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "secret = \"x\"\nid = \"file\"\nticket_ttl = 5\n\
             [[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\n[cost]\nmix = 7\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let load = |flags: &[&str], env: &[(&str, &str)]| {
            settings::parse_from::<DispatcherArgs, _, _, _, _, _>(
                ["dispatcher", "--config", config].iter().chain(flags),
                env.iter().copied(),
            )
        };
        let env = [("NOC_ID", "env"), ("NOC_STORE", "redis://127.0.0.1:1")];
        let s = load(&[], &env).unwrap().resolve().unwrap();
        assert_eq!(s.id, "env", "env over file");
        assert_eq!(s.store.to_string(), "redis://127.0.0.1:1");
        assert_eq!((s.ticket_ttl.as_secs(), s.cost.mix), (5, 7));
        assert_eq!(s.accounts.len(), 1);
        let s = load(&["--id", "flag"], &env).unwrap().resolve().unwrap();
        assert_eq!(s.id, "flag", "flag over env");
        // The switch's settings come from the environment too.
        let sw = load(
            &[],
            &[
                ("NOC_SWITCH", "127.0.0.1:0"),
                ("NOC_BACKENDS", "127.0.0.1:1,127.0.0.1:2"),
            ],
        )
        .unwrap()
        .switch_mode()
        .unwrap()
        .unwrap();
        assert_eq!(sw.1.len(), 2);
        let e = load(&[], &[("NOC_STORE", "disk")]).unwrap_err();
        assert!(e.to_string().contains("NOC_STORE"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}
