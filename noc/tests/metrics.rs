//! Issue acceptance: `/metrics` on the dispatcher and on every media server parses as
//! Prometheus exposition, and the counters move after traffic.

use prometheus_parse::{Scrape, Value};
use std::net::SocketAddr;
use std::time::Duration;
use testkit::harness::{http_get, Client, Noc};
use testkit::packet::Rtp;

fn scrape(addr: SocketAddr) -> Scrape {
    let body = http_get(addr, "/metrics");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("metrics address")
}

fn total(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let noc = Noc::start(&[]);
    assert_eq!(noc.metrics.len(), 2, "every media server serves /metrics");
    let ms: Vec<SocketAddr> = noc.metrics.iter().map(|(_, u)| addr_of(u)).collect();
    let before_d = scrape(noc.http);
    let before: Vec<Scrape> = ms.iter().map(|a| scrape(*a)).collect();
    for s in &before {
        assert_eq!(total(s, "noc_media_packets_out_total", None), 0.0);
        assert!(s
            .samples
            .iter()
            .any(|x| x.metric == "noc_media_drops_total"));
        assert!(s
            .samples
            .iter()
            .any(|x| x.metric == "process_cpu_seconds_total"));
    }
    let mut a = Client::spawn(
        noc.dispatcher,
        "m",
        "demo",
        "ann",
        &["--tone", "440", "--duration", "3"],
    );
    let mut b = Client::spawn(
        noc.dispatcher,
        "m",
        "demo",
        "bob",
        &["--tone", "660", "--duration", "3"],
    );
    // A stranger's packet to a media port is dropped and counted by reason.
    let (media, _) = a.channel();
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(
            &Rtp::new(9).pt(111).seq(1).ts(1).payload(&[1, 2]).build(),
            media,
        )
        .unwrap();
    for c in [&mut a, &mut b] {
        assert!(c.wait(Duration::from_secs(20)).success());
    }
    std::thread::sleep(Duration::from_millis(300));
    let after_d = scrape(noc.http);
    assert_eq!(
        total(&before_d, "noc_dispatcher_dispatches_total", None),
        0.0
    );
    assert_eq!(
        total(&after_d, "noc_dispatcher_dispatches_total", None),
        2.0
    );
    assert_eq!(
        total(
            &after_d,
            "noc_dispatcher_servers",
            Some(("state", "in-service"))
        ),
        2.0
    );
    let after: Vec<Scrape> = ms.iter().map(|a| scrape(*a)).collect();
    let out: f64 = after
        .iter()
        .map(|s| total(s, "noc_media_packets_out_total", None))
        .sum();
    let inn: f64 = after
        .iter()
        .map(|s| total(s, "noc_media_packets_in_total", None))
        .sum();
    let bytes: f64 = after
        .iter()
        .map(|s| total(s, "noc_media_bytes_out_total", None))
        .sum();
    // Two clients for about 3 s at 50 packets/s each way.
    assert!(
        out > 150.0 && inn > 150.0 && bytes > 150.0 * 12.0,
        "out {out} in {inn} bytes {bytes}"
    );
    let unknown: f64 = after
        .iter()
        .map(|s| {
            total(
                s,
                "noc_media_drops_total",
                Some(("reason", "unknown_source")),
            )
        })
        .sum();
    assert!(unknown >= 1.0, "the stranger's packet was not counted");
    let busy: f64 = after
        .iter()
        .map(|s| total(s, "noc_media_worker_busy_seconds_total", None))
        .sum();
    assert!(busy > 0.0);
    let ticks: f64 = after
        .iter()
        .map(|s| total(s, "noc_media_ticks_total", None))
        .sum();
    assert!(ticks > 100.0, "the mesh clock runs every 10 ms: {ticks}");
}
