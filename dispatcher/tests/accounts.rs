//! Accounts, tenants and the usage log against a real dispatcher on loopback: clients
//! join over real TCP, and media servers are played by test code speaking the registry
//! protocol.

use dispatcher::config::Tenancy;
use dispatcher::{Account, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

const ACME_PORT: u16 = 4101;
const BIG_PORT: u16 = 4102;

fn usage_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dispatcher-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{test}.jsonl"));
    let _ = std::fs::remove_file(&path);
    path
}

/// A dispatcher with a capped account, a contracted account in the `acme` pool, and a
/// tenant map sending `acme.com` to that pool.
async fn start(usage: PathBuf) -> dispatcher::Running {
    let mut s = Settings::new(
        b"secret".to_vec(),
        vec![
            Account::new("demo", "Demo"),
            Account {
                max_users: Some(2),
                ..Account::new("small", "Small Co")
            },
            Account {
                pool: Some("acme".into()),
                reserved: 10,
                ..Account::new("acme-contract", "Acme")
            },
        ],
    );
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.registry = "127.0.0.1:0".parse().unwrap();
    s.usage_log = Some(usage);
    s.tenancy = Tenancy {
        pools: [("acme".to_owned(), vec!["ms-acme".to_owned()])].into(),
        tenants: [("acme.com".to_owned(), "acme".to_owned())].into(),
    };
    dispatcher::start(s).await.unwrap()
}

/// A media server played by the test.
struct FakeMs {
    w: OwnedWriteHalf,
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
}

impl FakeMs {
    async fn register(registry: SocketAddr, id: &str, port: u16, total: u32) -> FakeMs {
        let (r, w) = TcpStream::connect(registry).await.unwrap().into_split();
        let mut ms = FakeMs {
            w,
            lines: BufReader::new(r).lines(),
        };
        assert!(ms.next().await.starts_with("connect\tdispatcher\t"));
        ms.send(&format!(
            "register\t{id}\t127.0.0.1:{port}\taudio,reflect,mix\t{total}\nreport\t{total}\t0\t0\t1.0\t0\n"
        ))
        .await;
        ms
    }

    async fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .expect("a line from the dispatcher in time")
            .unwrap()
            .expect("link open")
    }
}

/// Joins through the dispatcher; returns its reply line (`dispatch ...` or `reject ...`).
async fn join(d: &dispatcher::Running, conference: &str, account: &str, opts: &str) -> String {
    let (r, mut w) = TcpStream::connect(d.client_addr)
        .await
        .unwrap()
        .into_split();
    let mut lines = BufReader::new(r).lines();
    assert!(next(&mut lines).await.starts_with("connect\tdispatcher"));
    w.write_all(format!("join\t{conference}\t{account}\tu\tmode=reflect{opts}\n").as_bytes())
        .await
        .unwrap();
    let reply: String = next(&mut lines).await;
    let _ = w.write_all(b"endsession\n").await;
    reply
}

async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>) -> String {
    tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("a reply in time")
        .unwrap()
        .expect("a line")
}

/// The port a `dispatch` line sends the client to.
fn port(reply: &str) -> u16 {
    assert!(reply.starts_with("dispatch\t"), "{reply}");
    let addr: SocketAddr = reply.split('\t').nth(1).unwrap().parse().unwrap();
    addr.port()
}

/// Waits until both fake servers are in the capacity table.
async fn servers_ready(d: &dispatcher::Running, n: usize) {
    for _ in 0..250 {
        if d.service.tables().servers().count() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("servers never registered");
}

#[tokio::test]
async fn a_customer_over_its_maximum_is_rejected_with_account_full() {
    let d = start(usage_path("max")).await;
    let _big = FakeMs::register(d.registry_addr, "ms-big", BIG_PORT, 1000).await;
    servers_ready(&d, 1).await;
    assert_eq!(port(&join(&d, "one", "small", "").await), BIG_PORT);
    assert_eq!(port(&join(&d, "two", "small", "").await), BIG_PORT);
    let reply = join(&d, "three", "small", "").await;
    assert!(reply.starts_with("reject\t429\t"), "{reply}");
    assert!(reply.contains("Small Co"), "{reply}");
    // Other customers are not affected.
    assert_eq!(port(&join(&d, "three", "demo", "").await), BIG_PORT);
}

#[tokio::test]
async fn domains_and_accounts_pick_the_tenant_pool() {
    let d = start(usage_path("pool")).await;
    let _acme = FakeMs::register(d.registry_addr, "ms-acme", ACME_PORT, 50).await;
    let _big = FakeMs::register(d.registry_addr, "ms-big", BIG_PORT, 1000).await;
    servers_ready(&d, 2).await;
    // The default pool holds ms-big only, however empty ms-acme is.
    assert_eq!(port(&join(&d, "public", "demo", "").await), BIG_PORT);
    assert_eq!(
        port(&join(&d, "other", "demo", "\tdomain=example.org").await),
        BIG_PORT
    );
    // acme.com maps to the acme pool, though ms-big has far more unused capacity.
    assert_eq!(
        port(&join(&d, "acme-standup", "demo", "\tdomain=ACME.com").await),
        ACME_PORT
    );
    // An account whose contract names a pool goes there whatever the domain says.
    assert_eq!(
        port(&join(&d, "board", "acme-contract", "\tdomain=example.org").await),
        ACME_PORT
    );
    let t = d.service.tables();
    assert_eq!(t.conference("acme-standup").unwrap().tenant, "acme");
    assert_eq!(t.conference("public").unwrap().tenant, "default");
    // The contract holds ten users' units on ms-acme before anyone arrives.
    assert_eq!(t.server("ms-acme").unwrap().reserve_units, 10);
}

#[tokio::test]
async fn a_leave_is_written_to_the_usage_log() {
    let path = usage_path("usage");
    let d = start(path.clone()).await;
    let mut big = FakeMs::register(d.registry_addr, "ms-big", BIG_PORT, 1000).await;
    servers_ready(&d, 1).await;
    assert_eq!(
        port(&join(&d, "weekly", "demo", "\tmedia=audio").await),
        BIG_PORT
    );
    assert!(big.next().await.starts_with("reserve\tweekly\tdemo\tu\t"));
    big.send("userjoined\tweekly\t1\tu\tdemo\n").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    big.send("userleft\tweekly\t1\tu\n").await;
    let mut text = String::new();
    for _ in 0..250 {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["account"], "demo");
    assert_eq!(v["tenant"], "default");
    assert_eq!(v["conference"], "weekly");
    assert_eq!(v["user"], "u");
    assert_eq!(v["server"], "ms-big");
    assert_eq!(v["media"], "audio");
    let seconds = v["seconds"].as_f64().unwrap();
    assert!((1.0..10.0).contains(&seconds), "{seconds}");
    let (joined, left) = (
        v["joined_at"].as_f64().unwrap(),
        v["left_at"].as_f64().unwrap(),
    );
    assert!((left - joined - seconds).abs() < 0.01, "{text}");
}

/// config/dispatcher.toml's commented examples, uncommented, are a valid config.
#[test]
fn the_example_config_parses_with_every_example_enabled() {
    let text = include_str!("../../config/dispatcher.toml");
    let is_toml = |l: &str| {
        l.starts_with('[')
            || l.split_once(" = ")
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ') && !k.contains('`'))
    };
    let enabled: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_toml(rest) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let path = usage_path("config").with_extension("toml");
    std::fs::write(&path, enabled).unwrap();
    let s = dispatcher::DispatcherArgs {
        config: Some(path),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let acme = s.accounts.iter().find(|a| a.code == "acme-1").unwrap();
    assert_eq!(acme.max_users, Some(500));
    assert_eq!(acme.pool.as_deref(), Some("acme"));
    assert_eq!(acme.reserved, 10);
    assert_eq!(s.cost, dispatcher::core::CostModel::default());
    assert_eq!(s.tenancy.pools["acme"].len(), 2);
    assert_eq!(s.tenancy.tenants["acme.com"], "acme");
    let pool_of = s.tenancy.server_pools();
    assert_eq!(pool_of["ms-acme-2"], "acme");
    assert!(s.usage_log.is_some());
}

#[test]
fn a_pool_named_but_not_declared_is_a_config_error() {
    let path = usage_path("bad-pool").with_extension("toml");
    std::fs::write(
        &path,
        "secret = \"x\"\n[[accounts]]\ncode = \"a\"\ncustomer = \"A\"\npool = \"nope\"\n",
    )
    .unwrap();
    let e = dispatcher::DispatcherArgs {
        config: Some(path),
        ..Default::default()
    }
    .resolve()
    .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}
