//! The `confclient` binary against scripted stand-ins for the dispatcher and media server.
//!
//! The real servers are tested end to end in the `noc` crate; these fakes pin down the
//! client's side of the flow: lines sent, stdout lines, exit codes, and the WAV.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_confclient");

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confclient-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// One accepted control connection of a fake server.
struct Peer {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Peer {
    fn accept(l: &TcpListener) -> Peer {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Peer {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send(&mut self, fields: &[&str]) {
        self.writer
            .write_all(format!("{}\n", fields.join("\t")).as_bytes())
            .unwrap();
    }

    /// The next line, split at TABs; empty at EOF. Keepalive `ping`s are answered with
    /// `pong`, as a real server does, and not returned.
    fn recv(&mut self) -> Vec<String> {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let fields: Vec<String> = line
                .trim_end()
                .split('\t')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
            if fields.first().map(String::as_str) == Some("ping") {
                // The client may be gone by the time we read its ping.
                let _ = self.writer.write_all(b"pong\n");
                continue;
            }
            return fields;
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_lists_every_flag() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--dispatcher",
        "--conference",
        "--account",
        "--name",
        "--tone",
        "--record",
        "--duration",
        "--config",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[test]
fn refused_connection_exits_1_with_the_reason() {
    // Bind then drop to get a port that nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let o = run(&[
        "--dispatcher",
        &addr,
        "--conference",
        "xyz",
        "--account",
        "demo",
        "--name",
        "ann",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot connect to dispatcher {addr}")) && err.contains("refused"),
        "stderr: {err}"
    );
}

#[test]
fn unknown_flag_exits_1() {
    let o = run(&["--colour", "blue"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn missing_flag_exits_1() {
    let o = run(&["--conference", "xyz"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dispatcher is required"));
}

#[test]
fn reject_exits_2_and_prints_it() {
    let disp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = disp.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let mut p = Peer::accept(&disp);
        p.send(&["connect", "dispatcher", "disp-1", "1"]);
        let join = p.recv();
        assert_eq!(join[..4], ["join", "xyz", "nobody", "ann"]);
        p.send(&["reject", "401", "unknown account"]);
    });
    let o = run(&[
        "--dispatcher",
        &addr,
        "--conference",
        "xyz",
        "--account",
        "nobody",
        "--name",
        "ann",
    ]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        lines(&o),
        ["connect dispatcher disp-1", "reject 401 unknown account"]
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown account"));
}

/// Plays dispatcher and media server for one client. The media server loops the client's
/// RTP back under another SSRC, so the client records its own tone.
fn fake_noc(
    hold: Duration,
    drop_after_accept: bool,
) -> (String, String, thread::JoinHandle<Vec<String>>) {
    let disp = TcpListener::bind("127.0.0.1:0").unwrap();
    let ms = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = disp.local_addr().unwrap().to_string();
    let ms_addr = ms.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut d = Peer::accept(&disp);
        d.send(&["connect", "dispatcher", "disp-1", "1"]);
        let join = d.recv();
        seen.push(join.join(" "));
        let ms_addr = ms.local_addr().unwrap().to_string();
        d.send(&["dispatch", &ms_addr, "TICKET"]);
        seen.push(d.recv().join(" "));

        let mut m = Peer::accept(&ms);
        m.send(&["connect", "mediaserver", "ms-1", "1"]);
        seen.push(m.recv().join(" "));
        m.send(&["accept", "xyz", "3"]);
        if drop_after_accept {
            return seen;
        }
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap().to_string();
        m.send(&["channel", "audio", &udp_addr, "111", "opus", "4242"]);
        let chan = m.recv();
        seen.push(chan.join(" "));
        m.send(&["adduser", "2", "bob"]);
        m.send(&["text", "bob", "hello there"]);
        // Garbage and RTCP must be ignored and counted, never fatal.
        let client: std::net::SocketAddr = chan[2].parse().unwrap();
        udp.send_to(&[1, 2, 3], client).unwrap();
        udp.send_to(&[0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0], client)
            .unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let start = std::time::Instant::now();
        let mut first = None;
        while start.elapsed() < hold {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                first.get_or_insert((buf[..n].to_vec(), from));
                // Reflect under SSRC 7 so it counts as another participant.
                buf[8..12].copy_from_slice(&7u32.to_be_bytes());
                udp.send_to(&buf[..n], from).ok();
            }
        }
        let (pkt, from) = first.expect("client sent RTP");
        seen.push(format!(
            "rtp from {from} pt={} marker={} ssrc={}",
            pkt[1] & 0x7f,
            pkt[1] >> 7,
            u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]])
        ));
        m.send(&["deluser", "2", "bob"]);
        seen.push(m.recv().join(" "));
        seen
    });
    (addr, ms_addr, handle)
}

#[test]
fn joins_sends_records_and_leaves() {
    let (addr, ms_addr, server) = fake_noc(Duration::from_secs(3), false);
    let wav = tmp("joined.wav");
    let o = run(&[
        "--dispatcher",
        &addr,
        "--conference",
        "xyz",
        "--account",
        "demo",
        "--name",
        "ann",
        "--tone",
        "440",
        "--record",
        wav.to_str().unwrap(),
        "--duration",
        "2.5",
    ]);
    let seen = server.join().unwrap();
    let out = lines(&o);
    println!("server saw {seen:#?}\nclient printed {out:#?}");
    assert!(
        o.status.success(),
        "stdout {out:?} stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let version = env!("CARGO_PKG_VERSION");
    let os = std::env::consts::OS;
    let join = format!(
        "join xyz demo ann mode=reflect media=audio codec=opus app=confclient version={version} os={os}"
    );
    assert_eq!(seen[0], join);
    assert_eq!(seen[1], "endsession");
    assert_eq!(
        seen[2],
        format!("join xyz demo ann mode=reflect ticket=TICKET media=audio codec=opus app=confclient version={version} os={os}")
    );
    let chan: Vec<&str> = seen[3].split(' ').collect();
    assert_eq!((chan[0], chan[1], chan[3]), ("channel", "audio", "4242"));
    assert!(chan[2].starts_with("127.0.0.1:"));
    assert!(
        seen[4].ends_with("pt=111 marker=1 ssrc=4242"),
        "{}",
        seen[4]
    );
    assert!(
        seen[4].starts_with(&format!("rtp from {}", chan[2])),
        "symmetric RTP"
    );
    assert_eq!(seen[5], "endsession");

    assert_eq!(out[0], "connect dispatcher disp-1");
    assert_eq!(out[1], format!("dispatch {ms_addr}"));
    assert_eq!(out[2], "connect mediaserver ms-1");
    assert_eq!(out[3], "accept xyz 3");
    assert!(out[4].starts_with("channel audio 127.0.0.1:") && out[4].ends_with(" 111 opus 4242"));
    assert_eq!(out[5..7], ["adduser 2 bob", "text bob hello there"]);
    let left = out.last().unwrap();
    let fields: Vec<&str> = left.split(' ').collect();
    assert_eq!(fields[..2], ["left", "xyz"], "{left}");
    let get = |k: &str| -> u64 {
        fields
            .iter()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    // 2.5 s at 50 packets/s, less the join; loose bounds for a loaded machine.
    assert!((80..=127).contains(&get("sent")), "{left}");
    assert!(get("received") >= get("sent") - 10, "{left}");
    assert_eq!(
        (get("streams"), get("lost"), get("malformed")),
        (1, 0, 1),
        "{left}"
    );

    let (x, sr) = read_wav(&wav).unwrap();
    let secs = x.len() as f64 / f64::from(sr);
    assert!(
        (1.8..2.8).contains(&secs),
        "wav covers the session: {secs} s"
    );
    let a = ToneAnalysis::new(
        &x,
        sr,
        Window {
            skip: 0.5,
            duration: 1.2,
            block: 0.1,
        },
    )
    .unwrap();
    assert!(
        (a.level_db(440.0) + 12.0).abs() < 1.5,
        "440 Hz at {}",
        a.level_db(440.0)
    );
    assert!(a.level_db(660.0) < -50.0);
    std::fs::remove_file(&wav).ok();
}

#[test]
fn sigterm_leaves_cleanly_and_finalizes_the_wav() {
    let (addr, _, server) = fake_noc(Duration::from_secs(3), false);
    let wav = tmp("sigterm.wav");
    let mut child = Command::new(BIN)
        .args([
            "--dispatcher",
            &addr,
            "--conference",
            "xyz",
            "--account",
            "demo",
            "--name",
            "ann",
            "--record",
            wav.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if !killed.is_ok_and(|s| s.success()) {
        println!("note: no kill(1); skipped the SIGTERM check");
        child.kill().ok();
        child.wait().ok();
        return;
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(lines(&o).last().unwrap().starts_with("left xyz sent="));
    let (x, _) = read_wav(&wav).unwrap();
    assert!(x.len() > 48_000, "WAV holds {} samples", x.len());
    std::fs::remove_file(&wav).ok();
    drop(server);
}

/// A media server that drops the connection sends the client back to the dispatcher
/// (failover); with the dispatcher gone too, it keeps trying with a backoff until its
/// time is up, then leaves normally.
#[test]
fn dropped_connection_goes_back_to_the_dispatcher() {
    let (addr, _, server) = fake_noc(Duration::ZERO, true);
    let o = run(&[
        "--dispatcher",
        &addr,
        "--conference",
        "xyz",
        "--account",
        "demo",
        "--name",
        "ann",
        "--duration",
        "2",
    ]);
    server.join().unwrap();
    let out = lines(&o);
    assert_eq!(o.status.code(), Some(0), "{out:?}");
    let at = out
        .iter()
        .position(|l| l == "accept xyz 3")
        .expect("accepted");
    assert_eq!(
        out[at + 1],
        "reconnect 1 media server closed the connection",
        "{out:?}"
    );
    // The fake dispatcher is gone: later attempts say why, 0.1, 0.2, 0.4, 0.8 s apart.
    let retries = out.iter().filter(|l| l.starts_with("reconnect ")).count();
    assert!((2..=6).contains(&retries), "{out:?}");
    assert!(
        out.iter()
            .any(|l| l.starts_with("reconnect 2 cannot connect to dispatcher")),
        "{out:?}"
    );
    assert!(out.last().unwrap().starts_with("left xyz "), "{out:?}");
}

/// Issue 18: a retryable reject (480) from the dispatcher is not the end: the client
/// waits what it says, asks again, gets in, and exits 0 without printing a reject.
#[test]
fn a_retryable_reject_is_retried_and_the_client_gets_in() {
    let disp = TcpListener::bind("127.0.0.1:0").unwrap();
    let ms = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = disp.local_addr().unwrap().to_string();
    let ms_addr = ms.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let mut d = Peer::accept(&disp);
        d.send(&["connect", "dispatcher", "disp-1", "1"]);
        assert_eq!(d.recv()[..2], ["join", "xyz"]);
        let refused = std::time::Instant::now();
        d.send(&[
            "reject",
            "480",
            "retry after 300 ms: media server ms-1 was lost 100 ms ago and may be restarting",
        ]);
        drop(d);
        // The same join again, no sooner than the wait it was given.
        let mut d = Peer::accept(&disp);
        let waited = refused.elapsed();
        d.send(&["connect", "dispatcher", "disp-1", "1"]);
        let again = d.recv();
        assert_eq!(again[..4], ["join", "xyz", "demo", "ann"]);
        d.send(&["dispatch", &ms_addr, "TICKET"]);
        let mut m = Peer::accept(&ms);
        m.send(&["connect", "mediaserver", "ms-1", "1"]);
        assert!(m.recv().iter().any(|f| f == "ticket=TICKET"));
        m.send(&["accept", "xyz", "3"]);
        let end = m.recv();
        (waited, end)
    });
    let o = run(&[
        "--dispatcher",
        &addr,
        "--conference",
        "xyz",
        "--account",
        "demo",
        "--name",
        "ann",
        "--duration",
        "2",
    ]);
    let (waited, end) = server.join().unwrap();
    let out = lines(&o);
    assert!(
        o.status.success(),
        "stdout {out:?} stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        out.iter().any(|l| l.starts_with("retry 1 after_ms=")
            && l.contains("480 retry after 300 ms: media server ms-1")),
        "{out:?}"
    );
    assert!(!out.iter().any(|l| l.starts_with("reject")), "{out:?}");
    assert!(out.iter().any(|l| l == "accept xyz 3"), "{out:?}");
    assert_eq!(end, ["endsession"]);
}
