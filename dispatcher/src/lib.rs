//! The dispatch server of seed 003: clients name a conference, the dispatcher finds the
//! media server that runs it, or creates it on the one with the most unused capacity, and
//! dispatches the client there with a signed will-call ticket.
//!
//! - [`core`]: the capacity and conference tables and selection, sans-IO.
//! - `clients`: the client host on the seed's port 3450.
//! - `registry`: the links media servers register and report on.
//! - `http`: the JSON API over the tables.
//! - [`store`]: several dispatchers on one Redis: atomic placement, shared capacity
//!   rows, the lease and call resolution.
//! - [`switch`]: the dispatcher switch, a TCP front over several dispatchers.
//!
//! The dispatcher never links a media crate: it only sees the control protocol.

mod admin;
mod clients;
pub mod config;
pub mod core;
mod dashboard;
mod http;
mod lines;
pub mod metrics;
mod registry;
pub mod store;
pub mod switch;
pub mod usage;

pub use config::{Account, Admin, DispatcherArgs, Settings};

use protocol::ticket::{self, Claims};
use protocol::{DispMsg, Mode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Everything that can stop the dispatcher from starting.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The shared store (Redis) failed or answered nonsense.
    #[error("store: {0}")]
    Store(String),
}

/// The registry link of one media server, by which reservations are sent.
struct Link {
    generation: u64,
    tx: mpsc::UnboundedSender<DispMsg>,
}

/// State shared by the dispatcher's connections. The lock is held only for table
/// updates, never across an await.
pub struct Service {
    settings: Settings,
    tables: Mutex<core::Tables>,
    links: Mutex<HashMap<String, Link>>,
    pub metrics: metrics::Metrics,
    /// One JSON line per leave, when `--usage-log` is set.
    usage: Option<usage::UsageLog>,
    /// The store shared with other dispatchers, and what we know of them.
    cluster: store::Cluster,
}

impl Service {
    /// The tables, for reading (the API, tests).
    pub fn tables(&self) -> MutexGuard<'_, core::Tables> {
        // A panic while holding the lock would be a bug in a table method; keep serving.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, HashMap<String, Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Queues a leave for the usage log, if there is one.
    fn record_usage(&self, stay: core::Usage) {
        if let Some(log) = &self.usage {
            log.record(stay);
        }
    }

    /// Sends a line down a media server's registry link, if that registration is live.
    fn send_to(&self, server: &str, generation: u64, msg: DispMsg) -> bool {
        self.links()
            .get(server)
            .filter(|l| l.generation == generation)
            .is_some_and(|l| l.tx.send(msg).is_ok())
    }

    /// Reserves a place for `user` at the placed server and signs its will-call ticket.
    /// `None` when the server's link is gone.
    fn hand_out(
        &self,
        to: &core::Placement,
        conference: &str,
        account: &str,
        user: &str,
        mode: Mode,
    ) -> Option<String> {
        let expires = unix_ms() / 1000 + self.settings.ticket_ttl.as_secs();
        let reserve = DispMsg::Reserve {
            conference: conference.to_owned(),
            account: account.to_owned(),
            user: user.to_owned(),
            mode,
            expires,
        };
        // A server linked to another dispatcher gets no `reserve`: it creates the
        // conference on the ticketed join.
        let remote = self.is_remote(&to.server);
        if !remote && !self.send_to(&to.server, to.generation, reserve) {
            return None;
        }
        let claims = Claims {
            conference,
            account,
            user,
            server: &to.server,
        };
        Some(ticket::sign(&self.settings.secret, &claims, expires))
    }
}

/// A started dispatcher: where it listens, and its state.
pub struct Running {
    pub client_addr: SocketAddr,
    pub registry_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub service: Arc<Service>,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DispatcherError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DispatcherError::Bind { addr, source })
}

/// Binds every port and spawns the dispatcher's tasks on the current tokio runtime.
pub async fn start(settings: Settings) -> Result<Running, DispatcherError> {
    let clients = bind(settings.listen).await?;
    let registry = bind(settings.registry).await?;
    let http = match settings.http {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let local = |l: &TcpListener, a: SocketAddr| l.local_addr().unwrap_or(a);
    let client_addr = local(&clients, settings.listen);
    let registry_addr = local(&registry, settings.registry);
    let http_addr = http.as_ref().zip(settings.http).map(|(l, a)| local(l, a));
    let usage = match &settings.usage_log {
        Some(path) => Some(usage::UsageLog::open_configured(path)?),
        None => None,
    };
    let policy = core::Policy {
        cost: settings.cost,
        pools: settings.tenancy.server_pools(),
    };
    let cluster = store::Cluster::new(store::Store::open(&settings.store).await?);
    let service = Arc::new(Service {
        cluster,
        usage,
        tables: Mutex::new(core::Tables::with_policy(policy, rand::random())),
        settings,
        links: Mutex::new(HashMap::new()),
        metrics: metrics::Metrics::default(),
    });
    tokio::spawn(clients::serve(clients, service.clone()));
    let clock = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let now = std::time::Instant::now();
            // Links first, then the tables: never both locks at once.
            let linked: Vec<String> = clock.links().keys().cloned().collect();
            let mut tables = clock.tables();
            tables.tick(now, unix_ms());
            tables.sweep_empty(now, unix_ms(), |server| linked.iter().any(|l| l == server));
        }
    });
    tokio::spawn(registry::serve(registry, service.clone()));
    tokio::spawn(store::run(service.clone()));
    if let Some(l) = http {
        tokio::spawn(http::serve(l, service.clone()));
    }
    tracing::info!(%client_addr, %registry_addr, ?http_addr, "dispatcher started");
    Ok(Running {
        client_addr,
        registry_addr,
        http_addr,
        service,
    })
}
