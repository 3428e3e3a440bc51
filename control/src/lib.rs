//! The one control connection layer of the NOC.
//!
//! Every control link of every binary (clients at the dispatcher and at media servers, the
//! registry link between them, confclient, loadgen) carries the protocol's lines through
//! this crate, over TCP or over a WebSocket (one text frame per line). It owns what every
//! such link needs and what used to be written once per link:
//!
//! - [`codec`]: framing a byte stream into lines with the protocol's rules (4096-byte limit,
//!   UTF-8), as a `tokio_util` codec;
//! - [`link`]: a connection as an [`Incoming`] side (lines in, with a handshake timeout and
//!   an idle timeout) and an [`Outbox`] (a bounded queue drained by a writer task with a write
//!   timeout: a peer that does not read is disconnected and nobody else waits for it);
//! - [`gate`]: admission with a connection limit and a per-IP limit, and counters of what
//!   was refused or closed, by reason, for `/metrics` ([`metrics`]);
//! - [`serve`]: the one accept loop for TCP and the WebSocket upgrade for axum, both under a
//!   [`Shutdown`] that stops accepting and ends every session gracefully;
//! - [`client`]: the client side, connecting to a TCP address, a `tls://` address or a
//!   `ws://`/`wss://` URL;
//! - [`tls`]: TLS (rustls) for the control ports, the WebSockets and the HTTP ports, set by
//!   one [`TlsArgs`] per binary.
//!
//! - [`rate`]: sans-IO token buckets by key (join rates);
//! - [`http`]: the body-size and time limits of every HTTP route;
//! - [`whip`]: what the WHIP and WHEP routes of the dispatcher and the media server share
//!   (CORS, status codes, bearer tokens).
//!
//! Message parsing stays in `protocol`; this crate moves lines.

pub mod client;
pub mod codec;
pub mod gate;
pub mod http;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod rate;
pub mod serve;
pub mod tls;
pub mod whip;

pub use client::{connect, connect_tls};
pub use gate::{CloseReason, Gate, RefuseReason};
pub use http::{http_limits, http_limits_with, HttpLimits};
pub use limits::{LimitArgs, Limits, LinkConfig};
pub use link::{Incoming, Link, Outbox, Recv, Transport};
pub use rate::{Buckets, Rate};
pub use serve::{listen, serve_http, serve_tcp, serve_tcp_tls, ws_router, ws_session, Shutdown};
pub use tls::{ClientTls, ServerTls, TlsArgs};

/// Everything this crate reports as an error.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    #[error("websocket {url}: {source}")]
    WebSocket {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("the connection is closed")]
    Closed,
    /// A certificate, key or CA file that cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    #[error("tls to {addr}: {source}")]
    TlsConnect {
        addr: String,
        source: std::io::Error,
    },
}

/// Raises this process's open-file limit to its hard limit: a server holding thousands of
/// control connections needs more descriptors than the usual soft limit of 1024. Returns
/// the limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        r.rlim_cur
    }
}
