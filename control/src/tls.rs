//! TLS for the control plane, with rustls. One setting, `--tls-cert FILE --tls-key FILE`,
//! puts a server's control port, its WebSocket and its HTTP port behind TLS; the client side
//! reaches `tls://host:port` and `wss://` URLs, trusting `--ca`/`--tls-ca` or the system's
//! roots. It lives in the one connection layer so that every listener and every link of
//! every binary gets it the same way, and a TLS port answers a plain-text peer with a plain
//! refusal it can read instead of a failed handshake.

use crate::ControlError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a TLS port waits for a peer's first byte before taking it for a plain-text
/// client waiting for our greeting. A TLS client sends its hello right after connecting.
const PLAIN_WAIT: Duration = Duration::from_secs(2);
/// How long a refused plain-text peer is given to take its answer.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// Handshakes of the HTTP port waiting for axum to take them.
const HTTP_QUEUE: usize = 256;
/// How long an HTTP client has for its TLS handshake.
const HTTP_HANDSHAKE: Duration = Duration::from_secs(10);

/// The flags (and TOML keys, and `NOC_*` variables) of TLS; every server binary flattens
/// this into its settings, as it does [`crate::LimitArgs`].
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct TlsArgs {
    /// PEM certificate chain. With `--tls-key`, the control port, the WebSocket and the
    /// HTTP port speak TLS only (`tls://`, `wss://`, `https://`).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted by the links this process opens (a media server's
    /// registry link to dispatchers with TLS) [default: the system's roots].
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The server side, when a certificate and its key are configured.
    pub fn server(&self) -> Result<Option<ServerTls>, ControlError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ServerTls::from_pem_files(cert, key).map(Some),
            _ => Err(ControlError::Tls(
                "`tls_cert` and `tls_key` must be set together".into(),
            )),
        }
    }

    /// The client side of the links this process opens: with `tls_ca`, or when the process
    /// serves TLS itself (a TLS deployment links over TLS; the system's roots then).
    pub fn client(&self) -> Result<Option<ClientTls>, ControlError> {
        match &self.tls_ca {
            Some(ca) => ClientTls::from_ca_file(ca).map(Some),
            None if self.tls_cert.is_some() => ClientTls::system().map(Some),
            None => Ok(None),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: impl std::fmt::Display) -> ControlError {
    ControlError::Tls(what.to_string())
}

/// A server's TLS: its certificate and key, ready to accept.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("ServerTls")
    }
}

/// What a TLS port did with a connection it could not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRefusal {
    /// The peer spoke plain text (or stayed silent): it was answered in plain text.
    Plain,
    /// The handshake failed or timed out.
    Handshake,
}

impl ServerTls {
    /// Reads a PEM certificate chain and its key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ControlError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| tls_err(format!("cannot read {}: {e}", p.display())))
        };
        Self::from_pem(&read(cert)?, &read(key)?)
            .map_err(|e| tls_err(format!("{} / {}: {e}", cert.display(), key.display())))
    }

    /// A PEM certificate chain and its PEM key.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, ControlError> {
        let certs = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(format!("certificate: {e}")))?;
        if certs.is_empty() {
            return Err(tls_err("no certificate in the PEM file"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_err(format!("private key: {e}")))?;
        Self::new(certs, key)
    }

    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, ControlError> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(tls_err)?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The TLS side of an accepted connection. A peer whose first byte is not a TLS
    /// handshake, or that sends nothing for a while (a plain-text client waiting for the
    /// greeting), is sent `plain` in plain text and closed.
    pub async fn accept(
        &self,
        stream: TcpStream,
        within: Duration,
        plain: &[u8],
    ) -> Result<server::TlsStream<TcpStream>, TlsRefusal> {
        let peer = stream.peer_addr().ok();
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(within.min(PLAIN_WAIT), stream.peek(&mut first)).await;
        match peeked {
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
            Ok(Ok(0) | Err(_)) => return Err(TlsRefusal::Handshake),
            _ => {
                tracing::debug!(?peer, "plain text on a TLS port; refused");
                refuse_plain(stream, plain).await;
                return Err(TlsRefusal::Plain);
            }
        }
        match tokio::time::timeout(within, self.acceptor.accept(stream)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "TLS handshake failed");
                Err(TlsRefusal::Handshake)
            }
            Err(_) => {
                tracing::debug!(?peer, "TLS handshake timed out");
                Err(TlsRefusal::Handshake)
            }
        }
    }
}

async fn refuse_plain(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(REFUSE_WRITE, async {
        stream.write_all(answer).await?;
        stream.shutdown().await
    })
    .await;
}

/// The plain-text answer of a TLS control port: an `error 426` line.
pub(crate) fn plain_line() -> Vec<u8> {
    protocol::error_line(
        protocol::ErrorCode::TlsRequired,
        "this port speaks TLS: connect with tls:// (confclient --tls)",
    )
    .into_bytes()
}

/// The plain-text answer of a TLS HTTP port: a 400 that says why.
const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
content-length: 44\r\nconnection: close\r\n\r\nthis port speaks TLS: use https:// or wss://";

/// The client side of TLS: the trust anchors a link verifies servers against.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the CA certificates of a PEM file (a self-signed server certificate works
    /// too).
    pub fn from_ca_file(path: &Path) -> Result<Self, ControlError> {
        let pem = std::fs::read(path)
            .map_err(|e| tls_err(format!("cannot read {}: {e}", path.display())))?;
        Self::from_ca_pem(&pem).map_err(|e| tls_err(format!("{}: {e}", path.display())))
    }

    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, ControlError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| tls_err(format!("CA certificate: {e}")))?;
            roots.add(cert).map_err(tls_err)?;
        }
        if roots.is_empty() {
            return Err(tls_err("no CA certificate in the PEM file"));
        }
        Self::with_roots(roots)
    }

    /// Trusts the system's roots (read once per process).
    pub fn system() -> Result<Self, ControlError> {
        static SYSTEM: OnceLock<Result<ClientTls, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no trusted CA certificates on this system; give a CA file".into());
                }
                ClientTls::with_roots(roots).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(ControlError::Tls)
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<Self, ControlError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS side of a connection to `host` (a name or an IP address, which the server's
    /// certificate must carry).
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> std::io::Result<client::TlsStream<TcpStream>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a server name"),
            )
        })?;
        self.connector.connect(name, stream).await
    }
}

/// An HTTP listener behind TLS for `axum::serve`: handshakes run in their own tasks (a
/// slow client holds up nobody), and finished ones are handed to axum. Serve it with
/// `.tap_io(|_| ())` so that `ConnectInfo<SocketAddr>` works.
pub struct TlsListener {
    rx: mpsc::Receiver<(server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Must be called on a tokio runtime. The accept task ends with the listener.
    pub fn new(listener: TcpListener, tls: ServerTls) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = mpsc::channel(HTTP_QUEUE);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "https accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(s) = tls.accept(stream, HTTP_HANDSHAKE, PLAIN_HTTP).await {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        TlsListener { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(got) => got,
            // The accept task is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_has_the_right_length() {
        let text = std::str::from_utf8(PLAIN_HTTP).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn cert_and_key_go_together_and_bad_files_are_named() {
        let args = TlsArgs {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            ..TlsArgs::default()
        };
        assert!(args.server().unwrap_err().to_string().contains("together"));
        let args = TlsArgs {
            tls_key: Some("/nonexistent/key.pem".into()),
            ..args
        };
        let e = args.server().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
        assert!(TlsArgs::default().server().unwrap().is_none());
        assert!(TlsArgs::default().client().unwrap().is_none());
        assert!(ServerTls::from_pem(b"not pem", b"not pem").is_err());
        assert!(ClientTls::from_ca_pem(b"").is_err());
    }
}
