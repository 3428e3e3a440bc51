//! The client side: a [`Link`] to a server by TCP address (`host:port`), by TCP address
//! over TLS (`tls://host:port`), or by WebSocket URL (`ws://`, `wss://`).

use crate::{ClientTls, ControlError, Link, LinkConfig};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a connect may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `target`: `host:port` (TCP), `tls://host:port` (TLS over TCP) or
/// `ws://host:port/path` / `wss://...` (WebSocket). TLS trusts the system's roots.
pub async fn connect(target: &str) -> Result<Link, ControlError> {
    connect_with(target, CONNECT_TIMEOUT, LinkConfig::client(), None).await
}

/// [`connect`], verifying TLS servers against `tls` (a CA file) when given.
pub async fn connect_tls(target: &str, tls: Option<&ClientTls>) -> Result<Link, ControlError> {
    connect_with(target, CONNECT_TIMEOUT, LinkConfig::client(), tls).await
}

/// Splits `host:port` (a name, an IP or `[v6]`).
fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// [`connect`] with an explicit connect timeout, link behaviour and TLS trust.
pub async fn connect_with(
    target: &str,
    timeout: Duration,
    cfg: LinkConfig,
    tls: Option<&ClientTls>,
) -> Result<Link, ControlError> {
    let bad = |what: &str| ControlError::Connect {
        addr: target.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned()),
    };
    let ws = target.starts_with("ws://") || target.starts_with("wss://");
    let secure = target.starts_with("wss://") || target.starts_with("tls://");
    let system;
    let tls = match (secure, tls) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => {
            system = ClientTls::system()?;
            Some(&system)
        }
    };
    let (host, port, request) = if ws {
        let request = target
            .into_client_request()
            .map_err(|_| bad("not a WebSocket URL"))?;
        let uri = request.uri();
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        (host, port, Some(request))
    } else {
        let addr = target.strip_prefix("tls://").unwrap_or(target);
        let (host, port) = host_port(addr).ok_or_else(|| bad("not host:port"))?;
        (host.to_owned(), port, None)
    };
    let dial = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let done = tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect((dial.as_str(), port))
            .await
            .map_err(|source| ControlError::Connect {
                addr: target.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
        let ws_err = |e| ControlError::WebSocket {
            url: target.to_owned(),
            source: Box::new(e),
        };
        let tls_err = |source| ControlError::TlsConnect {
            addr: target.to_owned(),
            source,
        };
        match (request, tls) {
            (None, None) => Ok(Link::tcp(stream, cfg, None, None)),
            (None, Some(t)) => {
                let s = t.connect(&host, stream).await.map_err(tls_err)?;
                Ok(Link::tls_client(s, cfg))
            }
            (Some(req), None) => {
                let (socket, _) = tokio_tungstenite::client_async(req, stream)
                    .await
                    .map_err(ws_err)?;
                Ok(Link::ws_client(socket, peer, local, cfg))
            }
            (Some(req), Some(t)) => {
                let s = t.connect(&host, stream).await.map_err(tls_err)?;
                let (socket, _) = tokio_tungstenite::client_async(req, s)
                    .await
                    .map_err(ws_err)?;
                Ok(Link::ws_client(socket, peer, local, cfg))
            }
        }
    })
    .await;
    done.map_err(|_| ControlError::ConnectTimeout(target.to_owned()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(host_port("127.0.0.1:3450"), Some(("127.0.0.1", 3450)));
        assert_eq!(host_port("[::1]:3450"), Some(("[::1]", 3450)));
        assert_eq!(host_port("example.org:1"), Some(("example.org", 1)));
        assert_eq!(host_port("127.0.0.1"), None);
        assert_eq!(host_port("x:y"), None);
    }
}
