//! The dispatch server of seed 003: clients name a conference, the dispatcher finds the
//! media server that runs it, or creates it on the one with the most unused capacity, and
//! dispatches the client there with a signed will-call ticket.
//!
//! - [`core`]: the capacity and conference tables and selection, sans-IO.
//! - [`service`]: the dispatch service over the tables and the store, with the operations
//!   that move people (punt, move, drain, merge) in `service::ops`.
//! - Adapters that only parse and call the service: `clients` (the client host on the
//!   seed's port 3450 and at `/ws`), `registry` (the links media servers register and
//!   report on), `http` (the dashboard, the JSON API, the admin actions, `/metrics`).
//! - [`store`]: several dispatchers on one Redis: atomic placement, shared capacity rows,
//!   the lease and call resolution.
//! - [`switch`]: the dispatcher switch, a TCP front over several dispatchers.
//!
//! Connections go through the `control` crate (limits, timeouts, bounded outboxes). The
//! dispatcher never links a media crate: it only sees the control protocol.

mod clients;
pub mod config;
pub mod core;
mod http;
pub mod metrics;
mod registry;
pub mod service;
pub mod store;
pub mod switch;
pub mod usage;

pub use config::{Account, Admin, DispatcherArgs, Settings};
pub use service::Service;

use control::{Gate, Limits, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// Everything that can go wrong in the dispatcher, from starting it to an operator's action.
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
    /// The tables refused a placement, punt or move.
    #[error(transparent)]
    Place(core::PlaceError),
    /// An operation's input makes no sense.
    #[error("{0}")]
    BadRequest(String),
    /// An operation that cannot be carried out now (unreachable server, mode mismatch).
    #[error("{0}")]
    Conflict(String),
    /// Another dispatcher refused an operation handed to it, with the admin API's status.
    #[error("{text}")]
    Remote { status: u16, text: String },
    /// Another dispatcher did not carry out an operation handed to it in time.
    #[error("{0}")]
    NoAnswer(String),
}

impl DispatcherError {
    /// The admin API's HTTP status for this error: 400 bad input, 404 nothing of that
    /// name, 409 cannot be done now, 503 the store is unreachable, 504 another dispatcher
    /// did not answer, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        use crate::core::PlaceError as P;
        match self {
            DispatcherError::Place(P::NoServer(_) | P::OverLimit { .. } | P::Spreads(_)) => 409,
            DispatcherError::Place(
                P::UnknownServer(_) | P::UnknownConference(_) | P::UnknownParticipant(..),
            ) => 404,
            DispatcherError::BadRequest(_) => 400,
            DispatcherError::Conflict(_) => 409,
            DispatcherError::Remote { status, .. } => *status,
            DispatcherError::NoAnswer(_) => 504,
            DispatcherError::Store(_) => 503,
            DispatcherError::Config(_) | DispatcherError::Bind { .. } => 500,
        }
    }
}

/// How long a registry link may stay silent: reports come every second.
const REGISTRY_SILENCE: f64 = 10.0;
/// Lines queued for one media server (a burst of first joins sends a `reserve` each).
const REGISTRY_OUTBOX: usize = 8192;

/// A started dispatcher: where it listens, and its state.
pub struct Running {
    pub client_addr: SocketAddr,
    pub registry_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub service: Arc<Service>,
    shutdown: Shutdown,
}

impl Running {
    /// Stops accepting and ends every control session, waiting up to `grace` for them.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.shutdown(grace).await
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DispatcherError> {
    control::listen(addr).map_err(|source| DispatcherError::Bind { addr, source })
}

/// Binds every port and spawns the dispatcher's tasks on the current tokio runtime.
pub async fn start(settings: Settings) -> Result<Running, DispatcherError> {
    settings.limits.check().map_err(DispatcherError::Config)?;
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
    let client_gate = Gate::new("clients", settings.limits);
    let registry_gate = Gate::new(
        "registry",
        Limits {
            idle_timeout: REGISTRY_SILENCE,
            outbox_lines: REGISTRY_OUTBOX,
            ..settings.limits
        },
    );
    let metrics = metrics::Metrics::new(vec![client_gate.clone(), registry_gate.clone()]);
    let store = store::Store::open(&settings.store).await?;
    let tls = settings
        .tls
        .server()
        .map_err(|e| DispatcherError::Config(e.to_string()))?;
    let service = Arc::new(Service::new(settings, usage, store, metrics));
    let shutdown = Shutdown::new();
    let s = service.clone();
    tokio::spawn(control::serve_tcp_tls(
        clients,
        tls.clone(),
        client_gate.clone(),
        shutdown.clone(),
        move |link| clients::session(link, s.clone()),
    ));
    let s = service.clone();
    tokio::spawn(control::serve_tcp_tls(
        registry,
        tls.clone(),
        registry_gate,
        shutdown.clone(),
        move |link| registry::link(link, s.clone()),
    ));
    let clock = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            clock.tick();
        }
    });
    tokio::spawn(service::store_loop(service.clone()));
    if let Some(l) = http {
        let ws_service = service.clone();
        let app = http::router(service.clone()).merge(control::ws_router(
            client_gate,
            shutdown.clone(),
            move |link| clients::session(link, ws_service.clone()),
        ));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = control::serve_http(l, tls, app, stop).await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
    }
    tracing::info!(%client_addr, %registry_addr, ?http_addr, "dispatcher started");
    Ok(Running {
        client_addr,
        registry_addr,
        http_addr,
        service,
        shutdown,
    })
}
