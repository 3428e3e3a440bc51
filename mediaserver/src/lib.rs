//! A media server of seed 003: it hosts conferences the dispatcher creates on it, admits
//! clients holding will-call tickets, and carries their RTP over UDP through the mesh.
//!
//! - [`conference`](crate::conference): the conference service, the one owner of the room
//!   lifecycle and the only sender of commands to the workers.
//! - Adapters that only parse and call the service: `host` (client sessions over TCP and
//!   WebSocket), `whip` (WHIP publishers and WHEP viewers over HTTP), `dispatchee` (the
//!   registry link), `http` (`/metrics`).
//! - `worker`: one thread per worker with its own UDP port and mesh.
//! - `path`: the media paths (reflector, transcoder) as one enum for the mesh.
//!
//! The control plane runs on tokio, over the `control` crate's connection layer, and talks
//! to the workers over bounded channels; the workers never take a lock on the packet path.

mod cascade;
pub mod composite;
mod conference;
pub mod config;
mod dispatchee;
mod host;
mod http;
pub mod ice_tcp;
pub mod io;
mod path;
pub mod recording;
pub mod rtc;
pub mod single;
pub mod transcode;
mod whip;
pub mod worker;

pub use conference::Drained;
pub use config::{MediaServerArgs, Settings};

use conference::Conferences;
use control::{Gate, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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

/// A started media server.
pub struct Running {
    pub id: String,
    pub client_addr: SocketAddr,
    pub media_addrs: Vec<SocketAddr>,
    /// Where `/metrics` and the WebSocket control route `/ws` are served.
    pub http_addr: SocketAddr,
    /// `ws://HTTP/ws`: where browsers reach the control lines.
    pub ws_url: String,
    service: Arc<Conferences>,
    shutdown: Shutdown,
}

impl Running {
    /// Drains the server (SIGTERM): refuses new conferences, has the dispatcher move the
    /// ones here, and completes when they are empty, after `drain_timeout`, or when
    /// `interrupt` completes (a second signal). The caller then exits.
    pub async fn drain(&self, interrupt: impl std::future::Future<Output = ()>) -> Drained {
        conference::drain(self.service.clone(), interrupt).await
    }

    /// Stops accepting, ends every control session (their members leave), and waits up to
    /// `grace` for them.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.shutdown(grace).await
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, MediaServerError> {
    control::listen(addr).map_err(|source| MediaServerError::Bind { addr, source })
}

/// Binds the client port and the HTTP port (a free one when none is configured, so
/// browsers can always reach `/ws`), starts the workers and the dispatcher link on the
/// current tokio runtime.
pub async fn start(settings: Settings) -> Result<Running, MediaServerError> {
    settings.limits.check().map_err(MediaServerError::Config)?;
    let tls = settings
        .tls
        .server()
        .map_err(|e| MediaServerError::Config(e.to_string()))?;
    let client_tls = settings
        .tls
        .client()
        .map_err(|e| MediaServerError::Config(e.to_string()))?;
    let listener = bind(settings.listen).await?;
    let http_bind = settings
        .http
        .unwrap_or_else(|| SocketAddr::new(settings.listen.ip(), 0));
    let http = bind(http_bind).await?;
    let mut http_addr = http.local_addr().unwrap_or(http_bind);
    if http_addr.ip().is_unspecified() {
        http_addr.set_ip(settings.media_host);
    }
    // One setting puts every port behind TLS; the `wss://` URL tells the dispatcher so.
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let ws_url = format!("{scheme}://{http_addr}/ws");
    let mut client_addr = listener.local_addr().unwrap_or(settings.listen);
    if client_addr.ip().is_unspecified() {
        client_addr.set_ip(settings.media_host);
    }
    let (ev_tx, mut ev_rx) = mpsc::channel(worker::EVENT_QUEUE);
    // One DTLS certificate for the process: its fingerprint goes in every answer.
    let identity = webrtc::Identity::generate()
        .map_err(|e| MediaServerError::Config(format!("webrtc certificate: {e}")))?;
    let workers = (0..settings.workers)
        .map(|i| worker::spawn(i, &settings, identity.clone(), ev_tx.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(MediaServerError::Worker)?;
    let media_addrs = workers.iter().map(|w| w.addr).collect();
    let gate = Gate::new("clients", settings.limits);
    let (service, queue) = Conferences::new(settings, client_addr, Some(ws_url.clone()), workers);
    let service = Arc::new(service);
    let shutdown = Shutdown::new();
    let events = service.clone();
    tokio::spawn(async move {
        while let Some((worker, ev)) = ev_rx.recv().await {
            match ev {
                worker::Report::Mesh(ev) => events.on_mesh_event(worker, ev),
                worker::Report::Rtc(rtc::RtcReport::Slot(s)) => events.on_slot(worker, s),
                worker::Report::Rtc(rtc::RtcReport::Closed { conf, participant }) => {
                    events.on_rtc_closed(worker, conf, participant)
                }
            }
        }
    });
    let host_service = service.clone();
    tokio::spawn(control::serve_tcp_tls(
        listener,
        tls.clone(),
        gate.clone(),
        shutdown.clone(),
        move |link| host::session(link, host_service.clone()),
    ));
    let health = Arc::new(http::Health::default());
    tokio::spawn(dispatchee::run(
        service.clone(),
        queue,
        shutdown.clone(),
        client_tls,
        health.clone(),
    ));
    let ws_service = service.clone();
    let app = http::router(service.clone(), vec![gate.clone()], health).merge(control::ws_router(
        gate,
        shutdown.clone(),
        move |link| host::session(link, ws_service.clone()),
    ));
    let app = app.merge(whip::router(service.clone(), shutdown.clone()));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = control::serve_http(http, tls, app, stop).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    let id = service.settings().id.clone();
    tracing::info!(%id, %client_addr, %http_addr, "media server started");
    Ok(Running {
        id,
        client_addr,
        media_addrs,
        http_addr,
        ws_url,
        service,
        shutdown,
    })
}
