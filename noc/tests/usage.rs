//! The usage log with real processes: after `kill -9` of the active dispatcher on Redis,
//! the one that takes over bills the stays that end on it exactly as the old one would
//! have (account, customer, tenant, mode, media, join time); and a log rotated during a
//! stream of joins and leaves (rename, then SIGHUP, as logrotate does) loses no line and
//! writes none twice.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::harness::control::Line;
use testkit::harness::redis::Redis;
use testkit::harness::{api, media_server, Proc, TempDir};

const ANY: &str = "127.0.0.1:0";

/// A dispatcher config with a contracted account in its own pool, as billing sees it.
const CONFIG: &str = r#"
secret = "change-me"
ticket_ttl = 30

[[accounts]]
code = "demo"
customer = "Demo customer"

[[accounts]]
code = "acme-1"
customer = "Acme Corp"
pool = "acme"

[pools]
acme = ["ms-1"]
"#;

struct Dispatcher {
    proc: Proc,
    client: SocketAddr,
    registry: SocketAddr,
    http: SocketAddr,
}

fn dispatcher(config: &str, usage: &str, extra: &[&str]) -> Dispatcher {
    let mut args = vec![
        "--config",
        config,
        "--listen",
        ANY,
        "--registry",
        ANY,
        "--http",
        ANY,
        "--usage-log",
        usage,
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn("dispatcher", &args);
    Dispatcher {
        client: proc.addr("dispatcher"),
        registry: proc.addr("registry"),
        http: proc.addr("http"),
        proc,
    }
}

/// Joins through the dispatcher, then at the media server; returns the member's control
/// connection, open until `endsession`.
fn join(at: SocketAddr, conference: &str, account: &str, user: &str, opts: &str) -> Line {
    let head = format!("join\t{conference}\t{account}\t{user}");
    let head = if opts.is_empty() {
        head
    } else {
        format!("{head}\t{opts}")
    };
    let mut d = Line::connect(at);
    d.expect("connect\t");
    d.send(&head);
    let line = d.read().unwrap_or_default();
    d.send("endsession");
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!(f[0], "dispatch", "{user}: {line}");
    let mut m = Line::connect(f[1].parse().unwrap());
    m.send(&format!("{head}\tticket={}", f[2]));
    m.wait_line("accept\t", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{user} not accepted"));
    m
}

/// The usage lines in `path`, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `path` holds `n` usage lines.
fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = lines(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {} lines, not {n}: {got:?}",
            path.display(),
            got.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the dispatcher's conference table has `n` participants in `conference`.
fn wait_participants(http: SocketAddr, conference: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = api(http, "/api/conferences");
        let have = v.as_array().and_then(|a| {
            a.iter()
                .find(|c| c["name"] == conference)
                .map(|c| c["participants"].as_array().map_or(0, Vec::len))
        });
        if have == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{conference} never had {n}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn usage_after_killing_the_active_dispatcher_is_billed_as_before() {
    let Some(redis) = Redis::start() else { return };
    let dir = TempDir::new("usage-failover");
    let config = dir.file("dispatcher.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (u1, u2) = (dir.file("usage-1.jsonl"), dir.file("usage-2.jsonl"));
    let store = ["--store", &redis.url()];
    let mut d1 = dispatcher(&config, &u1, &[&store[..], &["--id", "d1"]].concat());
    // d1 is the active one: it holds the lease before d2 starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cmd(&["GET", "noc:lease"]) != "d1" {
        assert!(Instant::now() < deadline, "d1 never took the lease");
        std::thread::sleep(Duration::from_millis(50));
    }
    let d2 = dispatcher(&config, &u2, &[&store[..], &["--id", "d2"]].concat());
    let _ms = media_server("ms-1", &[d1.registry, d2.registry], &[]);
    wait_servers(d1.http, "ms-1");
    // A mixed video conference of Acme's through d1, whose server is d1's.
    let opts = "mode=mix\tmedia=audio,video\tdomain=acme.com";
    let joined_before = unix_s();
    let mut ann = join(d1.client, "bill", "acme-1", "ann", opts);
    let mut members: Vec<(&str, Line)> = ["bob", "cat"]
        .into_iter()
        .map(|u| (u, join(d1.client, "bill", "acme-1", u, opts)))
        .collect();
    wait_participants(d1.http, "bill", 3);
    // Ann leaves while d1 lives: the line d1 writes is the reference.
    ann.send("endsession");
    let reference = wait_lines(Path::new(&u1), 1).remove(0);
    assert_eq!(reference["user"], "ann");

    d1.proc.kill9();
    let killed = unix_s();
    // ms-1 moves to d2 and replays its roster there.
    wait_servers(d2.http, "ms-1");
    wait_participants(d2.http, "bill", 2);
    for (_, m) in &mut members {
        m.send("endsession");
    }
    let after = wait_lines(Path::new(&u2), 2);
    let mut users: Vec<&str> = after.iter().map(|l| l["user"].as_str().unwrap()).collect();
    users.sort_unstable();
    assert_eq!(users, ["bob", "cat"]);
    for l in &after {
        for key in [
            "account",
            "customer",
            "tenant",
            "conference",
            "server",
            "media",
            "mode",
        ] {
            assert_eq!(l[key], reference[key], "{key}: {l} vs {reference}");
        }
        // Billed from the join, not from the failover.
        let joined = l["joined_at"].as_f64().unwrap();
        let left = l["left_at"].as_f64().unwrap();
        assert!(joined >= joined_before - 1.0 && joined < killed, "{l}");
        assert!(left > killed, "{l}");
        assert!(
            (l["seconds"].as_f64().unwrap() - (left - joined)).abs() < 0.01,
            "{l}"
        );
    }
    assert_eq!(
        (
            &reference["account"],
            &reference["customer"],
            &reference["tenant"],
            &reference["mode"],
            &reference["media"],
        ),
        (
            &Value::from("acme-1"),
            &Value::from("Acme Corp"),
            &Value::from("acme"),
            &Value::from("mix"),
            &Value::from("audio,video"),
        )
    );
    // d1 wrote nothing after its death, d2 nothing twice.
    assert_eq!(lines(Path::new(&u1)).len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(Path::new(&u2)).len(), 2);
}

/// Waits until the capacity table has `id` in communication.
fn wait_servers(http: SocketAddr, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = api(http, "/api/servers");
        if v.as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["id"] == id && s["in_communication"] == true)
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never seen: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_log_rotated_during_joins_and_leaves_loses_and_repeats_no_line() {
    let dir = TempDir::new("usage-rotate");
    let config = testkit::harness::config("dispatcher.toml");
    let usage = dir.file("usage.jsonl");
    let d = dispatcher(&config, &usage, &[]);
    let _ms = media_server("ms-1", &[d.registry], &[]);
    wait_servers(d.http, "ms-1");
    // Two streams of joins and leaves, 40 stays each.
    const EACH: usize = 40;
    let streams: Vec<_> = (0..2)
        .map(|s| {
            let at = d.client;
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let mut m = join(at, &format!("rot-{s}"), "demo", &format!("u{s}-{i}"), "");
                    std::thread::sleep(Duration::from_millis(20));
                    m.send("endsession");
                }
            })
        })
        .collect();
    // logrotate's way: rename, then SIGHUP; once the rename alone (the log is reopened
    // when the writer sees its file gone).
    let rotated: Vec<String> = (1..=4).map(|k| format!("{usage}.{k}")).collect();
    for (k, to) in rotated.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(400));
        if Path::new(&usage).exists() {
            std::fs::rename(&usage, to).unwrap();
        }
        if k != 2 {
            d.proc.signal("HUP");
        }
    }
    for s in streams {
        s.join().expect("a stream of joins and leaves");
    }
    // The dispatcher is alive and serving after four rotations.
    assert!(d
        .proc
        .stdout
        .all()
        .iter()
        .any(|l| l.starts_with("dispatcher ")));
    let mut files = rotated.clone();
    files.push(usage.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all: Vec<Value> = files.iter().flat_map(|f| lines(Path::new(f))).collect();
        if all.len() >= 2 * EACH || Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut users: Vec<String> = all
        .iter()
        .map(|l| l["user"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    let before = users.len();
    users.dedup();
    assert_eq!(before, users.len(), "a line was written twice");
    assert_eq!(users.len(), 2 * EACH, "lines lost: {users:?}");
    // Lines landed on both sides of the rotations, and the live file is being written.
    let per_file: Vec<usize> = files.iter().map(|f| lines(Path::new(f)).len()).collect();
    assert!(
        per_file.iter().filter(|n| **n > 0).count() >= 3,
        "{per_file:?}"
    );
    let mut m = join(d.client, "after", "demo", "last", "");
    m.send("endsession");
    let last = wait_lines(Path::new(&usage), per_file[4] + 1);
    assert_eq!(last.last().unwrap()["user"], "last");
}
