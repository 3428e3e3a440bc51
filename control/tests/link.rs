//! The connection layer against real sockets on loopback: timeouts, limits, slow readers,
//! WebSocket framing and shutdown.

use control::{CloseReason, Gate, Limits, Link, Recv, RefuseReason, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn limits() -> Limits {
    Limits {
        handshake_timeout: 0.3,
        idle_timeout: 0.6,
        max_connections_per_ip: 3,
        outbox_lines: 16,
        write_timeout: 1.0,
        ..Limits::default()
    }
}

/// An echo server: greets, takes `join` as the handshake, echoes lines, answers `flood N`
/// with N long lines, and ends on `bye` with a last line.
async fn echo(link: Link) {
    let Link {
        mut incoming,
        outbox,
    } = link;
    outbox.send("connect\tdispatcher\ttest\t1\n");
    loop {
        match incoming.recv().await {
            Recv::Line(l) if l.starts_with("join") => {
                incoming.handshake_done();
                outbox.send(format!("accept\t{}\t1\n", &l[5..]));
            }
            Recv::Line(l) if l.starts_with("flood") => {
                let n: usize = l[6..].parse().unwrap();
                let text = "x".repeat(4000);
                for _ in 0..n {
                    if !outbox.send(format!("text\tbot\t{text}\n")) {
                        break;
                    }
                }
            }
            Recv::Line(l) if l == "bye" => {
                outbox.finish(Some("error\t400\tbye\n".into()), CloseReason::Done);
                return;
            }
            Recv::Line(l) => {
                outbox.send(format!("{l}\n"));
            }
            Recv::Bad(e) => {
                incoming.refuse(&e);
                return;
            }
            Recv::Closed(_) => return,
        }
    }
}

async fn server(limits: Limits) -> (SocketAddr, Arc<Gate>, Shutdown) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let gate = Gate::new("test", limits);
    let shutdown = Shutdown::new();
    tokio::spawn(control::serve_tcp(l, gate.clone(), shutdown.clone(), echo));
    (addr, gate, shutdown)
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
async fn handshake_and_idle_timeouts_close_with_an_error_line() {
    let (addr, gate, _sd) = server(limits()).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let text = read_all(&mut silent).await;
    assert!(text.starts_with("connect\t"), "{text}");
    assert!(text.contains("error\t421\t"), "{text}");
    let mut joined = TcpStream::connect(addr).await.unwrap();
    joined.write_all(b"join\txyz\n").await.unwrap();
    let text = read_all(&mut joined).await;
    assert!(text.contains("accept\txyz\t1"), "{text}");
    assert!(text.contains("error\t421\tnothing within"), "{text}");
    let s = gate.stats();
    wait_for(|| s.closed(CloseReason::IdleTimeout) == 1).await;
    assert_eq!(s.closed(CloseReason::HandshakeTimeout), 1);
    wait_for(|| s.open.load(std::sync::atomic::Ordering::Relaxed) == 0).await;
}

#[tokio::test]
async fn per_ip_limit_spares_other_addresses() {
    let mut l = limits();
    l.handshake_timeout = 30.0;
    let (addr, gate, _sd) = server(l).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 8];
        let _ = s.read(&mut b).await.unwrap();
        held.push(s);
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    let text = read_all(&mut over).await;
    assert!(text.starts_with("error\t420\t"), "{text}");
    // Another loopback address is another peer.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = sock.connect(addr).await.unwrap();
    let mut b = [0u8; 7];
    other.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"connect");
    assert_eq!(gate.stats().refused(RefuseReason::PerIp), 1);
}

#[tokio::test]
async fn a_peer_that_does_not_read_is_cut_off_and_others_carry_on() {
    let (addr, gate, _sd) = server(Limits {
        handshake_timeout: 30.0,
        ..limits()
    })
    .await;
    let mut lazy = TcpStream::connect(addr).await.unwrap();
    lazy.write_all(b"join\tlazy\nflood 20000\n").await.unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"join\tbusy\nping\n").await.unwrap();
    let s = gate.stats();
    wait_for(|| s.closed(CloseReason::OutboxFull) + s.closed(CloseReason::WriteTimeout) == 1).await;
    busy.write_all(b"bye\n").await.unwrap();
    let got = read_all(&mut busy).await;
    assert!(got.contains("accept\tbusy\t1\nping\n"), "{got}");
    assert!(got.ends_with("error\t400\tbye\n"), "{got}");
    wait_for(|| s.closed(CloseReason::Done) == 1).await;
}

#[tokio::test]
async fn bad_lines_get_their_code() {
    let (addr, gate, _sd) = server(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&vec![b'a'; 5000]).await.unwrap();
    let text = read_all(&mut s).await;
    assert!(text.contains("error\t413\t"), "{text}");
    wait_for(|| gate.stats().closed(CloseReason::BadLine) == 1).await;
}

#[tokio::test]
async fn websocket_lines_and_shutdown() {
    let gate = Gate::new("ws", limits());
    let sd = Shutdown::new();
    let app = control::ws_router(gate.clone(), sd.clone(), echo);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap()
    });
    let url = format!("ws://{addr}/ws");
    let Link {
        mut incoming,
        outbox,
    } = control::connect(&url).await.unwrap();
    assert_eq!(
        incoming.recv().await,
        Recv::Line("connect\tdispatcher\ttest\t1".into())
    );
    outbox.send("join\tweb\n");
    assert_eq!(incoming.recv().await, Recv::Line("accept\tweb\t1".into()));
    outbox.send("ping\tx\n");
    assert_eq!(incoming.recv().await, Recv::Line("ping\tx".into()));
    // Shutdown ends the session; the peer sees the link close.
    assert!(sd.shutdown(Duration::from_secs(2)).await);
    assert!(matches!(incoming.recv().await, Recv::Closed(_)));
    wait_for(|| gate.stats().closed(CloseReason::Shutdown) == 1).await;
}
