//! TLS on the control port, the WebSocket and the HTTP port, with a certificate made here
//! (rcgen): links over TLS work, a plain-text client is refused with a line it can read,
//! a client that does not trust the certificate fails cleanly, and the HTTP limits of
//! every route hold.

use axum::routing::{get, post};
use axum::Router;
use control::{
    ClientTls, CloseReason, ControlError, Gate, HttpLimits, Limits, Link, Recv, ServerTls, Shutdown,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM).
fn make_cert() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

async fn echo(link: Link) {
    let Link {
        mut incoming,
        outbox,
    } = link;
    outbox.send("connect\tdispatcher\ttest\t1\n");
    while let Recv::Line(l) = incoming.recv().await {
        incoming.handshake_done();
        outbox.send(format!("{l}\n"));
    }
}

async fn tls_server(tls: ServerTls) -> (SocketAddr, Arc<Gate>, Shutdown) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let gate = Gate::new("tls", Limits::default());
    let sd = Shutdown::new();
    tokio::spawn(control::serve_tcp_tls(
        l,
        Some(tls),
        gate.clone(),
        sd.clone(),
        echo,
    ));
    (addr, gate, sd)
}

async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn lines_over_tls_and_plain_text_refused() {
    let (cert, key) = make_cert();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let (addr, gate, _sd) = tls_server(tls).await;
    let trust = ClientTls::from_ca_pem(cert.as_bytes()).unwrap();

    let Link {
        mut incoming,
        outbox,
    } = control::connect_tls(&format!("tls://{addr}"), Some(&trust))
        .await
        .unwrap();
    assert_eq!(
        incoming.recv().await,
        Recv::Line("connect\tdispatcher\ttest\t1".into())
    );
    outbox.send("join\tsecure\n");
    assert_eq!(incoming.recv().await, Recv::Line("join\tsecure".into()));

    // A plain-text client that speaks first is answered in plain text and closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"join\txyz\tdemo\talice\n").await.unwrap();
    let text = read_all(&mut s).await;
    assert!(text.starts_with("error\t426\t"), "{text:?}");
    assert!(text.contains("TLS"), "{text:?}");
    // One that waits for the greeting gets the same answer after a short wait.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let text = read_all(&mut s).await;
    assert!(text.starts_with("error\t426\t"), "{text:?}");
    wait_for(|| gate.stats().closed(CloseReason::Tls) == 2).await;
    // The refused ones hold no slot.
    wait_for(|| gate.stats().open.load(std::sync::atomic::Ordering::Relaxed) == 1).await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_cleanly() {
    let (cert, key) = make_cert();
    let (other, _) = make_cert();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let (addr, gate, _sd) = tls_server(tls).await;
    let wrong = ClientTls::from_ca_pem(other.as_bytes()).unwrap();
    let e = control::connect_tls(&format!("tls://{addr}"), Some(&wrong))
        .await
        .err()
        .expect("an untrusted certificate must fail");
    assert!(matches!(e, ControlError::TlsConnect { .. }), "{e}");
    wait_for(|| gate.stats().closed(CloseReason::Tls) == 1).await;
    // A plain connect to a TLS server hears the refusal instead of hanging.
    let Link { mut incoming, .. } = control::connect(&addr.to_string()).await.unwrap();
    match incoming.recv().await {
        Recv::Line(l) => assert!(l.starts_with("error\t426"), "{l}"),
        other => panic!("expected the 426 line, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_and_http_over_tls() {
    let (cert, key) = make_cert();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let gate = Gate::new("ws", Limits::default());
    let sd = Shutdown::new();
    let app = control::ws_router(gate.clone(), sd.clone(), echo)
        .route("/healthz", get(|| async { "ok" }));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(control::serve_http(l, Some(tls), app, sd.clone()));
    let trust = ClientTls::from_ca_pem(cert.as_bytes()).unwrap();
    let Link {
        mut incoming,
        outbox,
    } = control::connect_tls(&format!("wss://{addr}/ws"), Some(&trust))
        .await
        .unwrap();
    assert_eq!(
        incoming.recv().await,
        Recv::Line("connect\tdispatcher\ttest\t1".into())
    );
    outbox.send("join\tweb\n");
    assert_eq!(incoming.recv().await, Recv::Line("join\tweb".into()));
    // Plain HTTP to the HTTPS port: a 400 that says why.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("speaks TLS"), "{text}");
    // Plain ws:// is refused the same way.
    assert!(control::connect(&format!("ws://{addr}/ws")).await.is_err());
}

/// Sends a raw HTTP/1.1 request and returns the status line.
async fn status_of(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let text = read_all(&mut s).await;
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn every_route_has_a_body_limit_and_a_time_limit() {
    let app = Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        );
    let app = control::http_limits_with(
        app,
        HttpLimits {
            max_body: 1024,
            max_time: Duration::from_millis(300),
        },
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let small =
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello";
    assert_eq!(status_of(addr, small).await, "HTTP/1.1 200 OK");
    let mut big = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        4096
    )
    .into_bytes();
    big.extend(vec![b'a'; 4096]);
    assert!(status_of(addr, &big).await.starts_with("HTTP/1.1 413"));
    let started = std::time::Instant::now();
    let slow = b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    assert!(status_of(addr, slow).await.starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The defaults are what the binaries get through serve_http.
    assert_eq!(HttpLimits::default().max_body, control::http::MAX_BODY);
}
