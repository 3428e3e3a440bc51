//! One control connection: an [`Incoming`] side that yields lines under a handshake and an
//! idle timeout, and an [`Outbox`] that queues lines for a writer task. The outbox is
//! bounded and never blocks its caller: a peer that stops reading fills it and is
//! disconnected, while whoever broadcasts to it (a room's roster, chat) carries on.

use crate::codec::{LineCodec, LineError};
use crate::gate::{CloseReason, Permit};
use crate::LinkConfig;
use axum::extract::ws as axws;
use bytes::Bytes;
use futures_util::stream::{BoxStream, SplitSink};
use futures_util::{SinkExt, StreamExt};
use protocol::{error_line, ErrorCode, ProtoError};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite as ts;
use tokio_tungstenite::WebSocketStream;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Lines written before the writer flushes, when more are already queued.
const WRITE_BATCH: usize = 64;

/// What carries a link's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    /// One text frame per line.
    WebSocket,
    /// No connection: a member that joined through an HTTP request (WHIP, WHEP).
    Http,
}

/// A connection: read lines from `incoming`, queue lines on `outbox` (cloneable).
pub struct Link {
    pub incoming: Incoming,
    pub outbox: Outbox,
}

/// What [`Incoming::recv`] gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    Line(String),
    /// A line the framing refused (over-long, not UTF-8, several lines in one message):
    /// the session answers with an `error` line and ends.
    Bad(ProtoError),
    /// The connection is over, and why.
    Closed(CloseReason),
}

/// State shared by the two sides and the writer task. When the last holder lets go, the
/// connection is over: its close reason is counted and its gate permit given back.
struct Shared {
    token: CancellationToken,
    /// Set when the server parent (a shutdown) cancelled us.
    shutdown: Option<CancellationToken>,
    reason: OnceLock<CloseReason>,
    /// `finish` was called: no more lines are taken.
    closing: AtomicBool,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    transport: Transport,
    permit: Option<Permit>,
}

impl Shared {
    fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> CloseReason {
        if let Some(r) = self.reason.get() {
            return *r;
        }
        if self.shutdown.as_ref().is_some_and(|s| s.is_cancelled()) {
            CloseReason::Shutdown
        } else {
            CloseReason::Peer
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(p) = &self.permit {
            let reason = self.reason();
            p.gate().stats().count_close(reason);
            tracing::debug!(listener = p.gate().name(), peer = %self.peer, reason = reason.as_str(), "connection closed");
        }
    }
}

enum Out {
    Line(Bytes),
    /// Write what is queued before this, then close.
    Close,
}

/// The sending side of a link: queues lines without waiting. Cloneable; the link stays
/// open while any clone (or the [`Incoming`]) lives.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Outbox({} {:?})",
            self.shared.peer, self.shared.transport
        )
    }
}

impl Outbox {
    /// Queues one line (LF included, as the protocol's `encode` writes it). False when the
    /// link is closing or closed. A full queue means the peer is not reading: the link is
    /// closed (`outbox-full`) rather than left to grow.
    pub fn send(&self, line: impl Into<Bytes>) -> bool {
        if self.shared.closing.load(Ordering::Relaxed) || self.shared.token.is_cancelled() {
            return false;
        }
        match self.tx.try_send(Out::Line(line.into())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(peer = %self.shared.peer, "peer does not read its control lines; disconnecting");
                self.shared.close(CloseReason::OutboxFull);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ends the link gracefully: `last` (a `reject`, an `error`) and everything queued
    /// before it are written, then the connection closes. Nothing is taken after this.
    pub fn finish(&self, last: Option<String>, reason: CloseReason) {
        if self.shared.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        let _ = self.shared.reason.set(reason);
        let queued = last.map_or(Ok(()), |l| self.tx.try_send(Out::Line(l.into())));
        if queued.is_err() || self.tx.try_send(Out::Close).is_err() {
            self.shared.token.cancel();
        }
    }

    /// Ends the link at once, dropping what is queued.
    pub fn close(&self, reason: CloseReason) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.close(reason);
    }

    pub fn is_closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Completes when the link is closed.
    pub async fn closed(&self) {
        self.shared.token.cancelled().await
    }

    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Our end of the connection (the client's media socket binds to its IP).
    pub fn local(&self) -> Option<SocketAddr> {
        self.shared.local
    }

    pub fn transport(&self) -> Transport {
        self.shared.transport
    }
}

/// What the reader side turns a transport's input into.
enum Frame {
    Line(String),
    Bad(ProtoError),
    End,
}

/// The receiving side of a link.
pub struct Incoming {
    source: BoxStream<'static, Frame>,
    outbox: Outbox,
    cfg: LinkConfig,
    handshake_done: bool,
    deadline: Option<Instant>,
}

impl Incoming {
    /// The next line. Cancel-safe: a partial line stays buffered. On a handshake or idle
    /// timeout the peer is sent `error 421` and the link closes.
    pub async fn recv(&mut self) -> Recv {
        let shared = &self.outbox.shared;
        if shared.token.is_cancelled() {
            return Recv::Closed(shared.reason());
        }
        let deadline = self.deadline;
        let timer = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shared.token.cancelled() => Recv::Closed(shared.reason()),
            frame = self.source.next() => match frame {
                Some(Frame::Line(l)) => {
                    if self.handshake_done {
                        self.deadline = self.cfg.idle_timeout.map(|t| Instant::now() + t);
                    }
                    Recv::Line(l)
                }
                Some(Frame::Bad(e)) => Recv::Bad(e),
                Some(Frame::End) | None => {
                    shared.close(CloseReason::Peer);
                    Recv::Closed(shared.reason())
                }
            },
            () = timer => {
                let (reason, what, limit) = if self.handshake_done {
                    (CloseReason::IdleTimeout, "nothing", self.cfg.idle_timeout)
                } else {
                    (CloseReason::HandshakeTimeout, "no join or register", self.cfg.handshake_timeout)
                };
                let secs = limit.unwrap_or_default().as_secs_f64();
                self.outbox.finish(
                    Some(error_line(ErrorCode::Timeout, &format!("{what} within {secs} s; closing"))),
                    reason,
                );
                Recv::Closed(reason)
            }
        }
    }

    /// The peer identified itself (`join`, `register`): from now on only the idle timeout
    /// applies.
    pub fn handshake_done(&mut self) {
        if !self.handshake_done {
            self.handshake_done = true;
            self.deadline = self.cfg.idle_timeout.map(|t| Instant::now() + t);
        }
    }

    /// Answers a refused line with `error` and ends the link (`bad-line`).
    pub fn refuse(&self, e: &ProtoError) {
        self.outbox.finish(
            Some(error_line(e.code(), &e.to_string())),
            CloseReason::BadLine,
        );
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// The write half of a byte stream (TCP, TLS over TCP).
type ByteWriter = Box<dyn AsyncWrite + Send + Unpin>;
/// The read half of a byte stream.
type ByteReader = Box<dyn AsyncRead + Send + Unpin>;
/// The sending half of a WebSocket we connected to, over TCP or TLS.
type WsClientSink = Pin<Box<dyn futures_util::Sink<ts::Message, Error = ts::Error> + Send>>;

/// Where the writer task writes.
enum Sink {
    Tcp(BufWriter<ByteWriter>),
    Ws(SplitSink<axws::WebSocket, axws::Message>),
    WsClient(WsClientSink),
    /// A member with no control connection (one that joined over WHIP or WHEP): its
    /// lines go nowhere; closing the link is how it is told to leave.
    Discard,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A WebSocket carries the line without its LF.
fn text_of(line: Bytes) -> Bytes {
    match line.last() {
        Some(b'\n') => line.slice(..line.len() - 1),
        _ => line,
    }
}

impl Sink {
    /// Queues one line (buffered; [`Sink::flush`] sends).
    async fn feed(&mut self, line: Bytes) -> std::io::Result<()> {
        match self {
            Sink::Tcp(w) => w.write_all(&line).await,
            Sink::Ws(s) => {
                let text = axws::Utf8Bytes::try_from(text_of(line)).map_err(io_err)?;
                s.feed(axws::Message::Text(text)).await.map_err(io_err)
            }
            Sink::WsClient(s) => {
                let text = ts::Utf8Bytes::try_from(text_of(line)).map_err(io_err)?;
                s.feed(ts::Message::Text(text)).await.map_err(io_err)
            }
            Sink::Discard => Ok(()),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Tcp(w) => w.flush().await,
            Sink::Ws(s) => s.flush().await.map_err(io_err),
            Sink::WsClient(s) => s.flush().await.map_err(io_err),
            Sink::Discard => Ok(()),
        }
    }

    async fn close(&mut self) {
        let _ = match self {
            Sink::Tcp(w) => w.shutdown().await,
            Sink::Ws(s) => s.close().await.map_err(io_err),
            Sink::WsClient(s) => s.close().await.map_err(io_err),
            Sink::Discard => Ok(()),
        };
    }
}

/// Drains the outbox into the transport, a batch at a time, each batch within the write
/// timeout.
async fn write_loop(
    mut rx: mpsc::Receiver<Out>,
    mut sink: Sink,
    shared: Arc<Shared>,
    write_timeout: Duration,
) {
    let token = shared.token.clone();
    loop {
        let first = tokio::select! {
            biased;
            () = token.cancelled() => break,
            o = rx.recv() => o,
        };
        let mut close = false;
        let mut batch = Vec::with_capacity(4);
        match first {
            Some(Out::Line(b)) => batch.push(b),
            Some(Out::Close) | None => close = true,
        }
        while !close && batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(Out::Line(b)) => batch.push(b),
                Ok(Out::Close) => close = true,
                Err(_) => break,
            }
        }
        let wrote = tokio::time::timeout(write_timeout, async {
            for b in batch {
                sink.feed(b).await?;
            }
            sink.flush().await
        })
        .await;
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                shared.close(CloseReason::Peer);
                break;
            }
            Err(_) => {
                tracing::warn!(peer = %shared.peer, "write to peer timed out; disconnecting");
                shared.close(CloseReason::WriteTimeout);
                break;
            }
        }
        if close {
            let _ = tokio::time::timeout(write_timeout, sink.close()).await;
            shared.close(CloseReason::Done);
            break;
        }
    }
    // Whatever ended the loop ends the link for the reader too.
    token.cancel();
}

impl Link {
    fn build(
        source: BoxStream<'static, Frame>,
        sink: Sink,
        meta: Meta,
        cfg: LinkConfig,
        permit: Option<Permit>,
        shutdown: Option<&CancellationToken>,
    ) -> Link {
        let token = match shutdown {
            Some(s) => s.child_token(),
            None => CancellationToken::new(),
        };
        let shared = Arc::new(Shared {
            token,
            shutdown: shutdown.cloned(),
            reason: OnceLock::new(),
            closing: AtomicBool::new(false),
            peer: meta.peer,
            local: meta.local,
            transport: meta.transport,
            permit,
        });
        let (tx, rx) = mpsc::channel(cfg.outbox_lines.max(1));
        tokio::spawn(write_loop(rx, sink, shared.clone(), cfg.write_timeout));
        let outbox = Outbox { tx, shared };
        Link {
            incoming: Incoming {
                source,
                outbox: outbox.clone(),
                cfg,
                handshake_done: false,
                deadline: cfg.handshake_timeout.map(|t| Instant::now() + t),
            },
            outbox,
        }
    }

    /// A TCP connection. Must be called on a tokio runtime (it spawns the writer).
    pub fn tcp(
        stream: TcpStream,
        cfg: LinkConfig,
        permit: Option<Permit>,
        shutdown: Option<&CancellationToken>,
    ) -> Link {
        let meta = Meta::of(&stream);
        let (r, w) = stream.into_split();
        Link::bytes(Box::new(r), Box::new(w), meta, cfg, permit, shutdown)
    }

    /// A TLS connection over TCP, server side (accepted on a TLS port).
    pub fn tls_server(
        stream: tokio_rustls::server::TlsStream<TcpStream>,
        cfg: LinkConfig,
        permit: Option<Permit>,
        shutdown: Option<&CancellationToken>,
    ) -> Link {
        let meta = Meta::of(stream.get_ref().0);
        let (r, w) = tokio::io::split(stream);
        Link::bytes(Box::new(r), Box::new(w), meta, cfg, permit, shutdown)
    }

    /// A TLS connection over TCP, client side.
    pub fn tls_client(stream: tokio_rustls::client::TlsStream<TcpStream>, cfg: LinkConfig) -> Link {
        let meta = Meta::of(stream.get_ref().0);
        let (r, w) = tokio::io::split(stream);
        Link::bytes(Box::new(r), Box::new(w), meta, cfg, None, None)
    }

    /// Lines over a byte stream's two halves.
    fn bytes(
        r: ByteReader,
        w: ByteWriter,
        meta: Meta,
        cfg: LinkConfig,
        permit: Option<Permit>,
        shutdown: Option<&CancellationToken>,
    ) -> Link {
        let source = FramedRead::new(r, LineCodec::default())
            .map(|item| match item {
                Ok(l) => Frame::Line(l),
                Err(LineError::Proto(e)) => Frame::Bad(e),
                Err(LineError::Io(_)) => Frame::End,
            })
            .boxed();
        Link::build(
            source,
            Sink::Tcp(BufWriter::new(w)),
            meta,
            cfg,
            permit,
            shutdown,
        )
    }

    /// The server side of a fresh loopback TCP connection, and its client socket: a real
    /// link for tests of code that holds outboxes (sessions, services).
    pub async fn loopback(cfg: LinkConfig) -> std::io::Result<(Link, TcpStream)> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let client = TcpStream::connect(l.local_addr()?).await?;
        let (server, _) = l.accept().await?;
        Ok((Link::tcp(server, cfg, None, None), client))
    }

    /// A link with no connection under it, for a member that joined by HTTP (WHIP, WHEP):
    /// what is sent on it is dropped, nothing arrives, and closing it (a kick, `DELETE`)
    /// completes [`Outbox::closed`]. Must be called on a tokio runtime.
    pub fn headless(peer: SocketAddr, shutdown: Option<&CancellationToken>) -> Link {
        let meta = Meta {
            peer,
            local: None,
            transport: Transport::Http,
        };
        let cfg = LinkConfig {
            handshake_timeout: None,
            ..LinkConfig::default()
        };
        let source = futures_util::stream::pending().boxed();
        Link::build(source, Sink::Discard, meta, cfg, None, shutdown)
    }

    /// A WebSocket accepted by axum.
    pub fn ws(
        socket: axws::WebSocket,
        peer: SocketAddr,
        cfg: LinkConfig,
        permit: Option<Permit>,
        shutdown: Option<&CancellationToken>,
    ) -> Link {
        let (sink, stream) = socket.split();
        let source = stream
            .filter_map(|m| async move {
                match m {
                    Ok(axws::Message::Text(t)) => Some(message_frame(t.as_str())),
                    Ok(axws::Message::Binary(_)) => Some(Frame::Bad(ProtoError::NotUtf8)),
                    Ok(axws::Message::Ping(_) | axws::Message::Pong(_)) => None,
                    Ok(axws::Message::Close(_)) | Err(_) => Some(Frame::End),
                }
            })
            .boxed();
        let meta = Meta {
            peer,
            local: None,
            transport: Transport::WebSocket,
        };
        Link::build(source, Sink::Ws(sink), meta, cfg, permit, shutdown)
    }

    /// A WebSocket we connected to (the client side), over TCP or TLS; `peer` and `local`
    /// are the ends of the connection under it.
    pub fn ws_client<S>(
        socket: WebSocketStream<S>,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        cfg: LinkConfig,
    ) -> Link
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (sink, stream) = socket.split();
        let sink: WsClientSink = Box::pin(sink);
        let source = stream
            .filter_map(|m| async move {
                match m {
                    Ok(ts::Message::Text(t)) => Some(message_frame(t.as_str())),
                    Ok(ts::Message::Binary(_)) => Some(Frame::Bad(ProtoError::NotUtf8)),
                    Ok(ts::Message::Ping(_) | ts::Message::Pong(_) | ts::Message::Frame(_)) => None,
                    Ok(ts::Message::Close(_)) | Err(_) => Some(Frame::End),
                }
            })
            .boxed();
        let meta = Meta {
            peer: peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            local,
            transport: Transport::WebSocket,
        };
        Link::build(source, Sink::WsClient(sink), meta, cfg, None, None)
    }
}

struct Meta {
    peer: SocketAddr,
    local: Option<SocketAddr>,
    transport: Transport,
}

impl Meta {
    fn of(stream: &TcpStream) -> Meta {
        // Lines are small and latency matters more than packing.
        let _ = stream.set_nodelay(true);
        Meta {
            peer: stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            local: stream.local_addr().ok(),
            transport: Transport::Tcp,
        }
    }
}

fn message_frame(text: &str) -> Frame {
    match protocol::message_line(text) {
        Ok(l) => Frame::Line(l.to_owned()),
        Err(e) => Frame::Bad(e),
    }
}
