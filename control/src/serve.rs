//! Accepting connections: the one TCP accept loop and the one WebSocket upgrade, both behind
//! a [`Gate`] and a [`Shutdown`].

use crate::gate::{Gate, RefuseReason};
use crate::link::Link;
use crate::tls::{ServerTls, TlsListener};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::SinkExt;
use protocol::{error_line, ErrorCode};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections the kernel holds for us before `accept` (capped by `net.core.somaxconn`):
/// a burst of clients must not meet the usual 128 and a second of SYN retransmission.
const BACKLOG: u32 = 4096;

/// Binds a control (or HTTP) listener with a backlog for bursts of connects.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// How long a refused peer is given to take its `error` line.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// Largest WebSocket message we read: a line and its LF, with room for a CR.
const WS_MAX_MESSAGE: usize = protocol::MAX_LINE + 2;

/// Graceful shutdown of a server's control plane: accept loops stop, every session's link
/// reports `Closed(Shutdown)` so its handler cleans up, and [`Shutdown::shutdown`] waits for
/// them (up to a grace period).
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when shutdown has begun.
    pub async fn started(&self) {
        self.token.cancelled().await
    }

    /// Runs a task that shutdown waits for.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut);
    }

    /// Starts the shutdown and waits up to `grace` for the tracked tasks; returns whether
    /// all of them finished.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Sends a refused TCP peer its `error` line, then closes.
async fn refuse_tcp(mut stream: TcpStream, reason: RefuseReason) {
    let line = error_line(ErrorCode::TooManyConnections, reason.text());
    let _ = tokio::time::timeout(REFUSE_WRITE, async {
        stream.write_all(line.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// The accept loop of a TCP control listener: admits each connection through `gate`
/// (refused ones get an `error` line and are closed), wraps it in a [`Link`] with the gate's
/// limits and runs `handler` on it as a task of `shutdown`. Returns when shutdown starts.
pub async fn serve_tcp<H, F>(listener: TcpListener, gate: Arc<Gate>, shutdown: Shutdown, handler: H)
where
    H: Fn(Link) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    serve_tcp_tls(listener, None, gate, shutdown, handler).await
}

/// [`serve_tcp`], behind TLS when `tls` is given: each admitted connection does its
/// handshake in its own task (bounded by the handshake timeout), and a plain-text peer is
/// answered `error 426` in plain text and closed (counted as closed for `tls`).
pub async fn serve_tcp_tls<H, F>(
    listener: TcpListener,
    tls: Option<ServerTls>,
    gate: Arc<Gate>,
    shutdown: Shutdown,
    handler: H,
) where
    H: Fn(Link) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let cfg = gate.limits().link();
    let plain = crate::tls::plain_line();
    loop {
        let accepted = tokio::select! {
            () = shutdown.started() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => match gate.admit(peer.ip()) {
                Ok(permit) => match &tls {
                    None => {
                        let link = Link::tcp(stream, cfg, Some(permit), Some(shutdown.token()));
                        shutdown.spawn(handler(link));
                    }
                    Some(tls) => {
                        let (tls, gate, plain) = (tls.clone(), gate.clone(), plain.clone());
                        let (handler, stop) = (handler.clone(), shutdown.clone());
                        let within = cfg.handshake_timeout.unwrap_or(Duration::from_secs(10));
                        tokio::spawn(async move {
                            match tls.accept(stream, within, &plain).await {
                                Ok(s) => {
                                    let link =
                                        Link::tls_server(s, cfg, Some(permit), Some(stop.token()));
                                    stop.spawn(handler(link));
                                }
                                Err(_) => {
                                    gate.stats().count_close(crate::CloseReason::Tls);
                                    drop(permit);
                                }
                            }
                        });
                    }
                },
                Err(reason) => {
                    tokio::spawn(refuse_tcp(stream, reason));
                }
            },
            Err(e) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(listener = gate.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Upgrades an HTTP request to a WebSocket control session at the same gate as the TCP
/// listener's: a refused peer gets the `error` line as its only message.
pub fn ws_session<H, F>(
    upgrade: WebSocketUpgrade,
    peer: SocketAddr,
    gate: &Arc<Gate>,
    shutdown: &Shutdown,
    handler: H,
) -> Response
where
    H: FnOnce(Link) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let upgrade = upgrade
        .max_message_size(WS_MAX_MESSAGE)
        .max_frame_size(WS_MAX_MESSAGE);
    let admitted = if shutdown.is_shutting_down() {
        gate.refuse(RefuseReason::Shutdown);
        Err(RefuseReason::Shutdown)
    } else {
        gate.admit(peer.ip())
    };
    match admitted {
        Ok(permit) => {
            let cfg = gate.limits().link();
            let shutdown = shutdown.clone();
            upgrade.on_upgrade(move |socket| async move {
                let link = Link::ws(socket, peer, cfg, Some(permit), Some(shutdown.token()));
                shutdown.spawn(handler(link));
            })
        }
        Err(reason) => upgrade.on_upgrade(move |mut socket| async move {
            let line = error_line(ErrorCode::TooManyConnections, reason.text());
            let text = line.trim_end().to_owned();
            let _ = tokio::time::timeout(REFUSE_WRITE, async {
                socket.send(Message::Text(text.into())).await?;
                socket.close().await
            })
            .await;
        }),
    }
}

/// The route `GET /ws` of a server's HTTP port: the control lines over a WebSocket, one
/// session per connection run by `handler`, admitted at `gate` (the TCP listener's, so both
/// kinds count against one limit). The server's router needs
/// `into_make_service_with_connect_info::<SocketAddr>()` for the peer's address.
pub fn ws_router<H, F>(gate: Arc<Gate>, shutdown: Shutdown, handler: H) -> Router
where
    H: Fn(Link) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let route = move |State((gate, shutdown)): State<(Arc<Gate>, Shutdown)>,
                      ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      up: WebSocketUpgrade| {
        let handler = handler.clone();
        async move { ws_session(up, peer, &gate, &shutdown, handler) }
    };
    Router::new()
        .route("/ws", get(route))
        .with_state((gate, shutdown))
}

/// Serves a server's HTTP router (with its `/ws` route) on `listener` until `shutdown`
/// starts: plain HTTP, or HTTPS with `tls` (the same certificate as the control port). The
/// peer's address reaches handlers as `ConnectInfo<SocketAddr>`. Every route gets the
/// body-size and time limits of [`crate::http_limits`].
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<ServerTls>,
    app: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = crate::http_limits(app);
    let stop = async move { shutdown.started().await };
    match tls {
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await
        }
        Some(tls) => {
            // `tap_io` makes axum's `ConnectInfo<SocketAddr>` work for a listener of ours.
            let listener = TlsListener::new(listener, tls).tap_io(|_| ());
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await
        }
    }
}
