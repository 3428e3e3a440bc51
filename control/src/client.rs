//! The client side: a [`Link`] to a server by TCP address or WebSocket URL.

use crate::{ControlError, Link, LinkConfig};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a connect may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `target`: `host:port` (TCP) or `ws://host:port/path` (WebSocket).
pub async fn connect(target: &str) -> Result<Link, ControlError> {
    connect_with(target, CONNECT_TIMEOUT, LinkConfig::client()).await
}

/// [`connect`] with an explicit connect timeout and link behaviour.
pub async fn connect_with(
    target: &str,
    timeout: Duration,
    cfg: LinkConfig,
) -> Result<Link, ControlError> {
    if target.starts_with("ws://") || target.starts_with("wss://") {
        let connected = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(target))
            .await
            .map_err(|_| ControlError::ConnectTimeout(target.to_owned()))?;
        let (socket, _response) = connected.map_err(|e| ControlError::WebSocket {
            url: target.to_owned(),
            source: Box::new(e),
        })?;
        return Ok(Link::ws_client(socket, cfg));
    }
    let stream = tokio::time::timeout(timeout, TcpStream::connect(target))
        .await
        .map_err(|_| ControlError::ConnectTimeout(target.to_owned()))?
        .map_err(|source| ControlError::Connect {
            addr: target.to_owned(),
            source,
        })?;
    Ok(Link::tcp(stream, cfg, None, None))
}
