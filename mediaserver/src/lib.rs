//! A media server of seed 003: it hosts conferences the dispatcher creates on it, admits
//! clients holding will-call tickets, and carries their RTP over UDP through the mesh.
//!
//! - `host`: the client host (TCP control connections).
//! - `dispatchee`: the link to the dispatcher: register, report every second, joins and
//!   leaves, reservations.
//! - `worker`: one thread per worker with its own UDP port and mesh.
//! - `path`: the media paths (reflector now) as one enum for the mesh.
//! - `punt`: moving conferences away, past the high-water mark and while draining.
//!
//! The control plane runs on tokio and talks to the workers over bounded channels; the
//! workers never take a lock on the packet path.

pub mod config;
mod dispatchee;
mod host;
mod http;
pub mod io;
mod path;
mod punt;
mod rooms;
pub mod worker;

pub use config::{MediaServerArgs, Settings};
pub use punt::Drained;

use protocol::MsMsg;
use rooms::Rooms;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Everything that can stop a media server from starting.
#[derive(Debug, thiserror::Error)]
pub enum MediaServerError {
    #[error("config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start media worker: {0}")]
    Worker(std::io::Error),
}

/// State shared by the control plane's tasks.
pub struct Server {
    settings: Settings,
    /// Where clients reach us, as registered with the dispatcher.
    client_addr: SocketAddr,
    workers: Vec<worker::WorkerHandle>,
    rooms: Mutex<Rooms>,
    /// Lines for the dispatcher; dropped while the link is down (re-sent on reconnect).
    to_dispatcher: mpsc::UnboundedSender<MsMsg>,
    /// Set by a drain: no new conferences, and the dispatcher is told on every register.
    draining: AtomicBool,
    /// When each conference's last `punt` request went out, to keep one in flight.
    punts: Mutex<HashMap<String, Instant>>,
}

impl Server {
    fn rooms(&self) -> MutexGuard<'_, Rooms> {
        // A panic under this lock would be a bug in a rooms method; keep serving.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, msg: MsMsg) {
        let _ = self.to_dispatcher.send(msg);
    }
}

/// A started media server.
pub struct Running {
    pub id: String,
    pub client_addr: SocketAddr,
    pub media_addrs: Vec<SocketAddr>,
    /// Where `/metrics` is served, when asked for.
    pub http_addr: Option<SocketAddr>,
    server: Arc<Server>,
}

impl Running {
    /// Drains the server (SIGTERM): refuses new conferences, has the dispatcher move the
    /// ones here, and completes when they are empty, after `drain_timeout`, or when
    /// `interrupt` completes (a second signal). The caller then exits.
    pub async fn drain(&self, interrupt: impl std::future::Future<Output = ()>) -> Drained {
        punt::drain(self.server.clone(), interrupt).await
    }
}

/// Binds the client port, starts the workers and the dispatcher link on the current
/// tokio runtime.
pub async fn start(settings: Settings) -> Result<Running, MediaServerError> {
    let listener =
        TcpListener::bind(settings.listen)
            .await
            .map_err(|source| MediaServerError::Bind {
                addr: settings.listen,
                source,
            })?;
    let http = match settings.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| MediaServerError::Bind { addr, source })?,
        ),
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let mut client_addr = listener.local_addr().unwrap_or(settings.listen);
    if client_addr.ip().is_unspecified() {
        client_addr.set_ip(settings.media_host);
    }
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let workers = (0..settings.workers)
        .map(|i| worker::spawn(i, &settings, ev_tx.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(MediaServerError::Worker)?;
    let media_addrs = workers.iter().map(|w| w.addr).collect();
    let (to_dispatcher, from_server) = mpsc::unbounded_channel();
    let server = Arc::new(Server {
        settings,
        client_addr,
        workers,
        rooms: Mutex::new(Rooms::default()),
        to_dispatcher,
        draining: AtomicBool::new(false),
        punts: Mutex::new(HashMap::new()),
    });
    let events_server = server.clone();
    tokio::spawn(async move {
        while let Some((worker, ev)) = ev_rx.recv().await {
            rooms::on_mesh_event(&events_server, worker, ev);
        }
    });
    tokio::spawn(host::serve(listener, server.clone()));
    tokio::spawn(dispatchee::run(server.clone(), from_server));
    if let Some(l) = http {
        tokio::spawn(http::serve(l, server.clone()));
    }
    tracing::info!(id = %server.settings.id, %client_addr, "media server started");
    Ok(Running {
        id: server.settings.id.clone(),
        client_addr,
        media_addrs,
        http_addr,
        server,
    })
}
