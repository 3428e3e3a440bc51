//! The dispatcher's HTTP API against a real dispatcher on loopback, with media servers
//! played by test code speaking the registry protocol over real TCP.

use dispatcher::{Account, Admin, Settings};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

const TOKEN: &str = "s3cret-token";

async fn start() -> dispatcher::Running {
    let mut s = Settings::new(b"secret".to_vec(), vec![Account::new("demo", "Demo")]);
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.registry = "127.0.0.1:0".parse().unwrap();
    s.http = Some("127.0.0.1:0".parse().unwrap());
    s.admins = vec![Admin {
        name: "ops".into(),
        token: TOKEN.into(),
    }];
    dispatcher::start(s).await.unwrap()
}

/// A media server played by the test: what it receives is readable line by line.
struct FakeMs {
    w: OwnedWriteHalf,
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
}

impl FakeMs {
    async fn register(registry: SocketAddr, id: &str, client_port: u16, total: u32) -> FakeMs {
        let (r, w) = TcpStream::connect(registry).await.unwrap().into_split();
        let mut ms = FakeMs {
            w,
            lines: BufReader::new(r).lines(),
        };
        assert!(ms.next().await.starts_with("connect\tdispatcher\t"));
        ms.send(&format!(
            "register\t{id}\t127.0.0.1:{client_port}\taudio,reflect\t{total}\n"
        ))
        .await;
        ms.send(&format!("report\t{total}\t0\t0\t1.5\t0\tloss=0.50\n"))
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

/// One HTTP/1.1 exchange: (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, None, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Polls until the dispatcher has seen `n` servers register.
async fn wait_servers(api: SocketAddr, n: usize) -> Value {
    for _ in 0..100 {
        let v = json(api, "/api/servers").await;
        if v.as_array().unwrap().len() == n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("servers never registered");
}

#[tokio::test]
async fn admin_actions_need_a_good_token_and_are_logged() {
    let d = start().await;
    let api = d.http_addr.unwrap();
    let _ms = FakeMs::register(d.registry_addr, "ms-1", 4000, 100).await;
    wait_servers(api, 1).await;
    let drain = "/api/admin/servers/ms-1/drain";
    let (status, _) = http(api, "POST", drain, None, Some("{}")).await;
    assert_eq!(status, 401);
    let (status, _) = http(api, "POST", drain, Some("wrong"), Some("{}")).await;
    assert_eq!(status, 403);
    let (status, body) = http(api, "POST", drain, Some(TOKEN), Some(r#"{"on":true}"#)).await;
    assert_eq!(status, 200, "{body}");
    let servers = json(api, "/api/servers").await;
    assert_eq!(servers[0]["state"], "draining");
    let (status, _) = http(
        api,
        "POST",
        "/api/admin/servers/nope/drain",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A maintenance window, then clear it.
    let (status, body) = http(
        api,
        "POST",
        "/api/admin/servers/ms-1/maintenance",
        Some(TOKEN),
        Some(r#"{"start_unix":0,"end_unix":99999999999}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(api, "/api/servers").await[0]["state"], "maintenance");
    let (status, _) = http(
        api,
        "DELETE",
        "/api/admin/servers/ms-1/maintenance",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(
        api,
        "DELETE",
        "/api/admin/servers/ms-1/maintenance",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(api, "/api/servers").await[0]["state"], "draining");
    let events = json(api, "/api/events").await;
    let by_ops: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "ops")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(by_ops, ["drain", "maintenance", "maintenance"]);
}

#[tokio::test]
async fn move_and_punt_send_dispatch_orders_down_the_registry_link() {
    let d = start().await;
    let api = d.http_addr.unwrap();
    let mut a = FakeMs::register(d.registry_addr, "ms-a", 4001, 100).await;
    let mut b = FakeMs::register(d.registry_addr, "ms-b", 4002, 50).await;
    wait_servers(api, 2).await;
    a.send("userjoined\txyz\t1\tann\tdemo\nuserjoined\txyz\t2\tbob\tdemo\n")
        .await;
    for _ in 0..100 {
        if json(api, "/api/conferences/xyz/participants")
            .await
            .as_array()
            .map(Vec::len)
            == Some(2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Move bob to the manager's conference: ms-b has less load? Both empty: higher unused wins (ms-a).
    let (status, body) = http(
        api,
        "POST",
        "/api/admin/move",
        Some(TOKEN),
        Some(r#"{"conference":"xyz","participant":2,"to":"manager"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let target = reply["detail"]["server"].as_str().unwrap().to_owned();
    let (on_target, on_source) = if target == "ms-a" {
        (&mut a, None)
    } else {
        (&mut b, Some(&mut a))
    };
    let reserve = on_target.next().await;
    assert!(
        reserve.starts_with("reserve\tmanager\tdemo\tbob\treflect\t"),
        "{reserve}"
    );
    let source = match on_source {
        Some(s) => s,
        None => on_target,
    };
    let order = source.next().await;
    let f: Vec<&str> = order.split('\t').collect();
    assert_eq!(
        (f[0], f[1], f[2], f[5]),
        ("dispatch", "xyz", "2", "manager"),
        "{order}"
    );
    // Punt xyz from ms-a to ms-b: one dispatch per participant.
    let (status, body) = http(
        api,
        "POST",
        "/api/admin/conferences/xyz/punt",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut reserves = 0;
    while reserves < 2 {
        let l = b.next().await;
        if l.starts_with("reserve\txyz\t") {
            reserves += 1;
        }
    }
    let mut orders = Vec::new();
    while orders.len() < 2 {
        let l = a.next().await;
        if l.starts_with("dispatch\txyz\t") {
            let f: Vec<String> = l.split('\t').map(str::to_owned).collect();
            assert_eq!(f[3], "127.0.0.1:4002", "{l}");
            assert_eq!(f[5], "xyz");
            orders.push(f[2].clone());
        }
    }
    orders.sort();
    assert_eq!(orders, ["1", "2"]);
    let confs = json(api, "/api/conferences").await;
    let xyz = confs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "xyz")
        .unwrap();
    assert_eq!(xyz["server"], "ms-b");
    // Bad requests.
    let (status, _) = http(
        api,
        "POST",
        "/api/admin/conferences/none/punt",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(
        api,
        "POST",
        "/api/admin/move",
        Some(TOKEN),
        Some(r#"{"conference":"xyz","participant":99,"to":"m"}"#),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn conference_table_pages_and_live_updates() {
    let d = start().await;
    let api = d.http_addr.unwrap();
    let mut ms = FakeMs::register(d.registry_addr, "ms-1", 4003, 10_000).await;
    wait_servers(api, 1).await;
    let mut lines = String::new();
    for i in 0..120 {
        lines += &format!("userjoined\tconf-{i:03}\t{i}\tu{i}\tdemo\n");
    }
    ms.send(&lines).await;
    let mut page = Value::Null;
    for _ in 0..100 {
        page = json(api, "/api/conferences?page=1&per_page=50").await;
        if page["total"] == 120 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(page["total"], 120);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 50);
    assert_eq!(items[0]["name"], "conf-050");
    let found = json(api, "/api/conferences?q=conf-11&per_page=50").await;
    assert_eq!(found["total"], 10);
    let summary = json(api, "/api/summary").await;
    assert_eq!(summary["conferences"], 120);
    assert_eq!(summary["participants"], 120);

    // One server-sent event carries a snapshot of the tables.
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut r = BufReader::new(s);
    let mut data = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while data.is_none() && tokio::time::Instant::now() < deadline {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        if let Some(d) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
        {
            data = Some(d.trim().to_owned());
        }
    }
    let snap: Value = serde_json::from_str(&data.expect("a snapshot event")).unwrap();
    assert_eq!(snap["summary"]["conferences"], 120);
    assert_eq!(snap["servers"][0]["id"], "ms-1");
    assert!((snap["servers"][0]["loss_pct"].as_f64().unwrap() - 0.5).abs() < 1e-6);

    // The page and its assets are served from the binary.
    let (status, html) = http(api, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(html.contains("Capacity table") && html.contains("/app.js"));
    assert_eq!(http(api, "GET", "/app.js", None, None).await.0, 200);
    assert_eq!(http(api, "GET", "/app.css", None, None).await.0, 200);
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must not load anything from outside"
    );
}

#[tokio::test]
async fn metrics_are_valid_exposition_and_move() {
    let d = start().await;
    let api = d.http_addr.unwrap();
    let _ms = FakeMs::register(d.registry_addr, "ms-1", 4004, 100).await;
    wait_servers(api, 1).await;
    let before = scrape(api).await;
    // A dispatch and a reject.
    let mut c = TcpStream::connect(d.client_addr).await.unwrap();
    c.write_all(b"join\txyz\tdemo\tann\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = String::new();
    while !got.contains("dispatch\t") {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "{got}");
        got += &String::from_utf8_lossy(&buf[..n]);
    }
    let mut bad = TcpStream::connect(d.client_addr).await.unwrap();
    bad.write_all(b"join\txyz\tnope\tann\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = bad.read_to_end(&mut sink).await;
    let after = scrape(api).await;
    let value = |m: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| -> f64 {
        m.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value(&before, "noc_dispatcher_dispatches_total", None), 0.0);
    assert_eq!(
        value(
            &after,
            "noc_dispatcher_dispatches_total",
            Some(("outcome", "created"))
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "noc_dispatcher_rejects_total",
            Some(("code", "401"))
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "noc_dispatcher_servers",
            Some(("state", "in-service"))
        ),
        1.0
    );
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric.starts_with("noc_dispatcher_selection_seconds")));
}

async fn scrape(api: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http(api, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The issue's scale: 100 servers and 10,000 conferences. The page gets totals, one page
/// of conferences and a bounded snapshot, never the whole table.
#[tokio::test]
async fn a_large_farm_stays_paged_and_bounded() {
    let d = start().await;
    let api = d.http_addr.unwrap();
    let mut farm = Vec::new();
    for i in 0..100 {
        farm.push(FakeMs::register(d.registry_addr, &format!("ms-{i:03}"), 5000 + i, 20_000).await);
    }
    wait_servers(api, 100).await;
    let mut lines = String::new();
    for i in 0..10_000 {
        lines += &format!("userjoined\tc{i:05}\t{i}\tu{i}\tdemo\n");
    }
    farm[7].send(&lines).await;
    let mut summary = Value::Null;
    for _ in 0..200 {
        summary = json(api, "/api/summary").await;
        if summary["conferences"] == 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(summary["conferences"], 10_000);
    assert_eq!(summary["servers"], 100);
    let last = json(api, "/api/conferences?page=199&per_page=50").await;
    assert_eq!(last["items"].as_array().unwrap().len(), 50);
    assert_eq!(last["items"][49]["name"], "c09999");
    // One live snapshot: 100 server rows and 30 events, no conferences.
    let (status, body) = http(api, "GET", "/api/summary", None, None).await;
    assert_eq!(status, 200);
    assert!(body.len() < 1024);
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut r = BufReader::new(s);
    let data = loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        if let Some(d) = line.strip_prefix("data:") {
            break d.trim().to_owned();
        }
    };
    let snap: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(snap["servers"].as_array().unwrap().len(), 100);
    assert!(data.len() < 100_000, "snapshot of {} bytes", data.len());
}
