//! The dispatcher switch of seed 003: one address for clients in front of several
//! dispatchers. Each client connection goes to the next dispatcher round-robin; one
//! whose connect fails is skipped, so clients keep being served while any is alive.
//! Bytes are copied both ways untouched: the switch knows nothing of the protocol beyond
//! the `error` line a refused connection gets. Its listener is admitted by a
//! `control::Gate` (connection and per-IP limits, counted) like every control listener;
//! the dispatchers behind it apply the handshake and idle timeouts.

use crate::DispatcherError;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A dead dispatcher on loopback refuses at once; one that is unreachable is given this.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A list of addresses, `a:1,b:2` on the command line or an array in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddrList(pub Vec<SocketAddr>);

impl<'de> Deserialize<'de> for AddrList {
    /// A string `a:1,b:2` or an array, parsed as the flag is.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        settings::comma_list(d)
    }
}

impl std::str::FromStr for AddrList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addrs = s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.parse().map_err(|e| format!("address {a:?}: {e}")))
            .collect::<Result<Vec<SocketAddr>, String>>()?;
        if addrs.is_empty() {
            return Err("at least one address is needed".into());
        }
        Ok(AddrList(addrs))
    }
}

/// Round-robin over the backends, skipping those that refuse.
pub struct Switch {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Switch {
    pub fn new(backends: Vec<SocketAddr>) -> Switch {
        Switch {
            backends,
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the next live backend: each is tried once, starting at the turn.
    pub async fn connect(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = std::io::Error::other("no backends");
        for i in 0..n {
            let addr = self.backends[(start + i) % n];
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => return Ok((s, addr)),
                Ok(Err(e)) => last = e,
                Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"),
            }
            tracing::debug!(%addr, error = %last, "dispatcher skipped");
        }
        Err(last)
    }
}

/// Binds `listen` with `limits` on its connections; returns the bound address and the
/// task that serves it, which ends when `shutdown` starts.
pub async fn start(
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
    limits: control::Limits,
    shutdown: control::Shutdown,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DispatcherError> {
    let listener = control::listen(listen).map_err(|source| DispatcherError::Bind {
        addr: listen,
        source,
    })?;
    let local = listener.local_addr().unwrap_or(listen);
    let switch = Arc::new(Switch::new(backends));
    let gate = control::Gate::new("switch", limits);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.started() => return,
                a = listener.accept() => a,
            };
            let (mut client, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match gate.admit(peer.ip()) {
                Ok(p) => p,
                Err(reason) => {
                    let line = protocol::error_line(
                        protocol::ErrorCode::TooManyConnections,
                        reason.text(),
                    );
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            client.write_all(line.as_bytes()).await?;
                            client.shutdown().await
                        })
                        .await;
                    });
                    continue;
                }
            };
            let switch = switch.clone();
            let stop = shutdown.clone();
            shutdown.spawn(async move {
                let _permit = permit;
                let (mut upstream, addr) = match switch.connect().await {
                    Ok(u) => u,
                    Err(e) => {
                        // Closing tells the client to retry, as a dead dispatcher would.
                        tracing::warn!(%peer, error = %e, "no dispatcher reachable");
                        return;
                    }
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                        if let Err(e) = copied {
                            tracing::debug!(%peer, dispatcher = %addr, error = %e, "switched connection ended");
                        }
                    }
                    () = stop.started() => {}
                }
            });
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn addr_lists_parse_from_flags_and_toml() {
        let a: AddrList = "127.0.0.1:1, 127.0.0.1:2".parse().unwrap();
        assert_eq!(a.0.len(), 2);
        assert!("".parse::<AddrList>().is_err());
        assert!("nonsense".parse::<AddrList>().is_err());
        #[derive(Deserialize)]
        struct T {
            b: AddrList,
        }
        let t: T = toml::from_str(r#"b = ["127.0.0.1:1", "127.0.0.1:2"]"#).unwrap();
        assert_eq!(t.b, a);
        let t: T = toml::from_str(r#"b = "127.0.0.1:1""#).unwrap();
        assert_eq!(t.b.0, vec!["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
    }

    /// A backend that greets each connection with its name and echoes one line.
    async fn backend(name: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    s.write_all(name.as_bytes()).await.unwrap();
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let _ = s.write_all(&buf[..n]).await;
                });
            }
        });
        a
    }

    async fn hello(switch: SocketAddr) -> String {
        let mut s = TcpStream::connect(switch).await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn spreads_round_robin_and_skips_a_dead_backend() {
        let a = backend("d1").await;
        let b = backend("d2").await;
        // A port nobody listens on: bind, note, drop.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (at, _task) = start(
            "127.0.0.1:0".parse().unwrap(),
            vec![a, dead, b],
            control::Limits::default(),
            control::Shutdown::new(),
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(hello(at).await);
        }
        let d1 = seen.iter().filter(|s| *s == "d1").count();
        let d2 = seen.iter().filter(|s| *s == "d2").count();
        assert_eq!(
            d1 + d2,
            6,
            "every connection reached a live backend: {seen:?}"
        );
        assert!(d1 >= 2 && d2 >= 2, "both live backends used: {seen:?}");
    }
}
