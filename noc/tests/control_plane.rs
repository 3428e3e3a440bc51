//! Issue acceptance for the one control plane: idle and slow peers, connection limits, and
//! the control lines over WebSocket, against a real `noc` with real clients.

use client::tone::{read_wav, ToneAnalysis, Window};
use futures_util::{SinkExt, StreamExt};
use prometheus_parse::{Scrape, Value};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::harness::{http_get, Client, Noc, TempDir};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

fn scrape(addr: SocketAddr) -> Scrape {
    let body = http_get(addr, "/metrics");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The value of `name` with every label in `labels`, summed.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn metrics_addr(noc: &Noc, id: &str) -> SocketAddr {
    let url = &noc
        .metrics
        .iter()
        .find(|(i, _)| i == id)
        .expect("ms metrics")
        .1;
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("metrics address")
}

/// The tone levels of a confclient's recording, past its first second.
fn analyse(path: &str, duration: f64) -> ToneAnalysis {
    let (samples, rate) = read_wav(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let window = Window {
        skip: 1.0,
        duration,
        block: 0.1,
    };
    ToneAnalysis::new(&samples, rate, window).unwrap_or_else(|| panic!("{path} too short"))
}

/// Idle peers: thousands of connections that never send `join` are closed after the
/// handshake timeout, counted by reason, while a real client joins and hears audio.
#[test]
fn idle_connections_are_closed_after_the_handshake_timeout() {
    control::raise_fd_limit();
    const IDLE: usize = 2000;
    let noc = Noc::start(&["--handshake-timeout", "10"]);
    let ms = noc.media_servers[0].1;
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = Vec::with_capacity(2 * IDLE);
    for target in [noc.dispatcher, ms] {
        for _ in 0..IDLE {
            idle.push(TcpStream::connect(target).expect("idle connection accepted"));
        }
    }
    // A real client pair joins and talks while they are all open.
    let dir = TempDir::new("idle");
    let wav = dir.file("bob.wav");
    let mut ann = Client::spawn(
        noc.dispatcher,
        "idle",
        "demo",
        "ann",
        &["--tone", "440", "--duration", "4"],
    );
    let mut bob = Client::spawn(
        noc.dispatcher,
        "idle",
        "demo",
        "bob",
        &["--tone", "660", "--record", &wav, "--duration", "4"],
    );
    for c in [&mut ann, &mut bob] {
        assert!(c.wait(Duration::from_secs(20)).success());
    }
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "the join ran while the idle connections were open"
    );
    let a = analyse(&wav, 2.0);
    assert!(a.level_db(440.0) > -35.0, "bob hears ann: {a:?}");
    assert!(
        a.level_db(660.0) < -50.0,
        "bob does not hear himself: {a:?}"
    );
    // Every idle connection gets its greeting, then `error 421`, then the end.
    for s in idle.iter_mut().step_by(97) {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(text.starts_with("connect\t"), "{text:?}");
        assert!(text.contains("\nerror\t421\t"), "{text:?}");
    }
    drop(idle);
    let d = scrape(noc.http);
    let m = scrape(metrics_addr(&noc, "ms-1"));
    let closed = |s: &Scrape| {
        value(
            s,
            "noc_control_closed_total",
            &[("listener", "clients"), ("reason", "handshake-timeout")],
        )
    };
    assert!(closed(&d) >= IDLE as f64, "dispatcher: {}", closed(&d));
    assert!(closed(&m) >= IDLE as f64, "media server: {}", closed(&m));
    assert_eq!(
        value(&d, "noc_control_connections", &[("listener", "clients")]),
        0.0
    );
}

/// One raw line-protocol client: a dispatcher join, then the media server join with the
/// ticket, from `bind` (an address of the loopback range).
async fn raw_join(
    dispatcher: SocketAddr,
    bind: &str,
    conference: &str,
    name: &str,
) -> (BufReader<tokio::net::TcpStream>, Vec<String>) {
    let connect = |to: SocketAddr| {
        let bind: SocketAddr = format!("{bind}:0").parse().unwrap();
        async move {
            let s = TcpSocket::new_v4().unwrap();
            s.bind(bind).unwrap();
            BufReader::new(s.connect(to).await.expect("connect"))
        }
    };
    let mut d = connect(dispatcher).await;
    let mut line = String::new();
    d.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("connect\t"), "{line}");
    d.get_mut()
        .write_all(format!("join\t{conference}\tdemo\t{name}\n").as_bytes())
        .await
        .unwrap();
    line.clear();
    d.read_line(&mut line).await.unwrap();
    let f: Vec<&str> = line.trim_end().split('\t').collect();
    assert_eq!(f[0], "dispatch", "{line}");
    let (addr, ticket) = (f[1].parse().unwrap(), f[2].to_owned());
    d.get_mut().write_all(b"endsession\n").await.unwrap();
    let mut m = connect(addr).await;
    m.get_mut()
        .write_all(format!("join\t{conference}\tdemo\t{name}\tticket={ticket}\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    while !got.iter().any(|l: &String| l.starts_with("channel")) {
        line.clear();
        if m.read_line(&mut line).await.unwrap() == 0 {
            break;
        }
        got.push(line.trim_end().to_owned());
    }
    (m, got)
}

/// Limits: past the per-IP limit a new connection from that IP gets `error 420` and is
/// closed; another IP still joins.
#[tokio::test(flavor = "multi_thread")]
async fn the_per_ip_limit_spares_other_addresses() {
    let noc = Noc::start(&["--max-connections-per-ip", "4"]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(noc.dispatcher)
            .await
            .unwrap();
        let mut b = [0u8; 7];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut b)
            .await
            .unwrap();
        assert_eq!(&b, b"connect");
        held.push(s);
    }
    let mut over = tokio::net::TcpStream::connect(noc.dispatcher)
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_string(&mut over, &mut text),
    )
    .await
    .expect("closed")
    .unwrap();
    assert!(text.starts_with("error\t420\t"), "{text:?}");
    // 127.0.0.2 is another peer: it joins through the dispatcher and the media server.
    let (_m, got) = raw_join(noc.dispatcher, "127.0.0.2", "limits", "ann").await;
    assert!(
        got.iter().any(|l| l.starts_with("accept\tlimits\t")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|l| l.starts_with("channel\taudio\t")),
        "{got:?}"
    );
    let d = scrape(noc.http);
    assert_eq!(
        value(
            &d,
            "noc_control_refused_total",
            &[("listener", "clients"), ("reason", "per-ip")]
        ),
        1.0
    );
}

/// Slow peers: a member that never reads is disconnected once its bounded outbox is full,
/// the server's memory stays flat, and the other members carry on.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_never_reads_is_cut_off_and_nobody_else_notices() {
    // The flood is chat: lifted over the chat rate limit, so it reaches the lazy member.
    let noc = Noc::start(&[
        "--outbox-lines",
        "64",
        "--chat-rate",
        "1000000",
        "--chat-burst",
        "1000000",
    ]);
    let dir = TempDir::new("slow");
    let wav = dir.file("cat.wav");
    let mut cat = Client::spawn(
        noc.dispatcher,
        "slow",
        "demo",
        "cat",
        &["--tone", "440", "--record", &wav, "--duration", "8"],
    );
    cat.channel();
    let mut dog = Client::spawn(
        noc.dispatcher,
        "slow",
        "demo",
        "dog",
        &["--tone", "660", "--duration", "8"],
    );
    dog.channel();
    // The lazy member joins and never reads again.
    let (_lazy, got) = raw_join(noc.dispatcher, "127.0.0.1", "slow", "lazy").await;
    assert!(got.iter().any(|l| l.starts_with("accept\t")), "{got:?}");
    let (mut talker, _) = raw_join(noc.dispatcher, "127.0.0.1", "slow", "talker").await;
    let rss_before = noc.rss_kib();
    // 8,000 lines of 3,000 bytes: 24 MB that the lazy member never takes.
    let text = format!("text\t{}\n", "x".repeat(3000));
    let flood = tokio::spawn(async move {
        for _ in 0..8000 {
            if talker.get_mut().write_all(text.as_bytes()).await.is_err() {
                break;
            }
        }
        talker
    });
    let m = metrics_addr(&noc, "ms-1");
    let ms_id = noc.server_of("slow").expect("slow is placed");
    let m = if ms_id == "ms-1" {
        m
    } else {
        metrics_addr(&noc, &ms_id)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(m);
        let cut = value(
            &s,
            "noc_control_closed_total",
            &[("listener", "clients"), ("reason", "outbox-full")],
        ) + value(
            &s,
            "noc_control_closed_total",
            &[("listener", "clients"), ("reason", "write-timeout")],
        );
        if cut >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lazy member was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _talker = flood.await.unwrap();
    let rss_after = noc.rss_kib();
    assert!(
        rss_after < rss_before + 40 * 1024,
        "server memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    for c in [&mut cat, &mut dog] {
        assert!(c.wait(Duration::from_secs(30)).success());
    }
    // The others saw the lazy member leave and kept their audio.
    assert!(cat
        .stdout
        .all()
        .iter()
        .any(|l| l.starts_with("deluser ") && l.ends_with(" lazy")));
    let a = analyse(&wav, 5.0);
    assert!(a.level_db(660.0) > -35.0, "cat hears dog all along: {a:?}");
}

/// WebSocket join: a Rust WebSocket client joins through the dispatcher's and the media
/// server's `/ws`, with the same lines as a TCP client; a confclient in the conference sees
/// it come and go.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_client_joins_like_a_tcp_client() {
    let noc = Noc::start(&[]);
    let mut ann = Client::spawn(
        noc.dispatcher,
        "web",
        "demo",
        "ann",
        &["--tone", "440", "--duration", "10"],
    );
    ann.channel();
    async fn next(
        ws: &mut (impl StreamExt<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin),
    ) -> String {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    assert!(!t.contains('\n'), "one line per frame: {t:?}");
                    return t.to_string();
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("websocket ended: {other:?}"),
            }
        }
    }
    let (mut d, _) = tokio_tungstenite::connect_async(noc.websocket("dispatcher"))
        .await
        .expect("dispatcher /ws");
    assert!(next(&mut d).await.starts_with("connect\tdispatcher\t"));
    d.send(Message::text("join\tweb\tdemo\twebby"))
        .await
        .unwrap();
    let dispatch = next(&mut d).await;
    let f: Vec<&str> = dispatch.split('\t').collect();
    assert_eq!(f[0], "dispatch", "{dispatch}");
    assert!(
        f[1].starts_with("ws://") && f[1].ends_with("/ws"),
        "{dispatch}"
    );
    let (url, ticket) = (f[1].to_owned(), f[2].to_owned());
    d.send(Message::text("endsession")).await.unwrap();
    let (mut m, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("media server /ws");
    assert!(next(&mut m).await.starts_with("connect\tmediaserver\t"));
    m.send(Message::text(format!(
        "join\tweb\tdemo\twebby\tticket={ticket}"
    )))
    .await
    .unwrap();
    let mut got = Vec::new();
    while !got.iter().any(|l: &String| l.starts_with("channel\taudio")) {
        got.push(next(&mut m).await);
    }
    assert!(got[0].starts_with("accept\tweb\t"), "{got:?}");
    assert!(
        got.iter()
            .any(|l| l.ends_with("\tann") && l.starts_with("adduser\t")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|l| l.ends_with("\twebby") && l.starts_with("adduser\t")),
        "{got:?}"
    );
    // The same verbs and codes: a ping is answered, a bad line gets its code.
    // (Indicator lines for ann's tone may come in between: `speaking`, `level`...)
    m.send(Message::text("ping\tt1")).await.unwrap();
    let mut reply = next(&mut m).await;
    while ["speaking\t", "level\t", "dominant\t", "quality\t"]
        .iter()
        .any(|p| reply.starts_with(p))
    {
        reply = next(&mut m).await;
    }
    assert_eq!(reply, "pong\tt1");
    let seen = ann
        .stdout
        .wait_for_containing("adduser", Duration::from_secs(5))
        .and_then(|_| {
            ann.stdout
                .wait_for_containing(" webby", Duration::from_secs(5))
        });
    assert!(seen.is_some(), "{:?}", ann.stdout.all());
    m.close(None).await.unwrap();
    let left = ann
        .stdout
        .wait_for_containing("deluser", Duration::from_secs(5));
    assert!(
        left.is_some_and(|l| l.ends_with(" webby")),
        "{:?}",
        ann.stdout.all()
    );
    assert!(ann.wait(Duration::from_secs(20)).success());
    // Bad input over a WebSocket: the error code of a TCP client, then the end.
    let (mut bad, _) = tokio_tungstenite::connect_async(noc.websocket("dispatcher"))
        .await
        .unwrap();
    next(&mut bad).await;
    bad.send(Message::text("frobnicate")).await.unwrap();
    assert!(next(&mut bad).await.starts_with("error\t405\t"));
}
