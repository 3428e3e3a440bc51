//! CPU time of the server under test (from `/proc/PID/stat` or a Prometheus `/metrics`),
//! of loadgen itself, and the kernel's UDP receive-buffer drop counter.
//!
//! Packets out per core is packets out divided by the server's CPU seconds over the same
//! window, so it holds however many cores the server happened to use.

use crate::BenchError;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Where the server's CPU seconds come from.
#[derive(Clone, Debug)]
pub enum CpuSource {
    /// utime + stime of a process.
    Pid(u32),
    /// `process_cpu_seconds_total` of a Prometheus text endpoint (`http://host:port/path`).
    Metrics(String),
    /// Not measured.
    None,
}

impl CpuSource {
    /// Total CPU seconds so far, or `None` when not measured.
    pub fn sample(&self) -> Result<Option<f64>, BenchError> {
        match self {
            CpuSource::Pid(pid) => proc_cpu_seconds(&format!("/proc/{pid}/stat")).map(Some),
            CpuSource::Metrics(url) => metrics_cpu_seconds(url).map(Some),
            CpuSource::None => Ok(None),
        }
    }
}

/// CPU seconds of loadgen itself.
pub fn self_cpu_seconds() -> Result<f64, BenchError> {
    proc_cpu_seconds("/proc/self/stat")
}

/// utime + stime from a `/proc/.../stat` file, in seconds.
pub fn proc_cpu_seconds(path: &str) -> Result<f64, BenchError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| BenchError::Cpu(format!("{path}: {e}")))?;
    parse_stat(&text).ok_or_else(|| BenchError::Cpu(format!("{path}: unexpected format")))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Fields after the command name (which may contain spaces and parentheses): state is the
/// first, utime the 12th and stime the 13th.
fn parse_stat(text: &str) -> Option<f64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// GETs `url` (plain HTTP) and sums its `process_cpu_seconds_total` series.
pub fn metrics_cpu_seconds(url: &str) -> Result<f64, BenchError> {
    let body = http_get(url)?;
    parse_metric(&body, "process_cpu_seconds_total")
        .ok_or_else(|| BenchError::Cpu(format!("{url}: no process_cpu_seconds_total")))
}

fn http_get(url: &str) -> Result<String, BenchError> {
    let err = |m: String| BenchError::Cpu(format!("{url}: {m}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err("only http:// URLs".into()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host).map_err(|e| err(e.to_string()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    // HTTP/1.0: the server closes after the body and sends it without chunking.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| err("not an HTTP response".into()))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(err(head.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(body.to_owned())
}

/// Sums every sample of `name` in Prometheus text format (any labels).
pub fn parse_metric(body: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = match rest.chars().next() {
            Some('{') => rest.split_once('}').map(|(_, v)| v),
            Some(' ') | Some('\t') => Some(rest),
            _ => None,
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// CPU seconds the whole machine has been busy (all CPUs: user, nice, system, irq, softirq
/// and steal from the first line of `/proc/stat`). Less the server's and loadgen's own, it
/// shows whether something else ran during a step and spoiled it.
pub fn machine_busy_seconds() -> Option<f64> {
    let t = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat(&t)
}

fn parse_proc_stat(text: &str) -> Option<f64> {
    let f: Vec<u64> = text
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(busy as f64 / clock_ticks())
}

/// Datagrams the kernel dropped because a UDP socket's receive buffer was full (IPv4 and
/// IPv6, machine-wide). Loss that shows up here happened at a socket, not in the server.
pub fn udp_rcvbuf_errors() -> u64 {
    let v4 = std::fs::read_to_string("/proc/net/snmp")
        .ok()
        .and_then(|t| snmp_field(&t, "Udp:", "RcvbufErrors"))
        .unwrap_or(0);
    let v6 = std::fs::read_to_string("/proc/net/snmp6")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == "Udp6RcvbufErrors").then(|| f.next()?.parse().ok())?
            })
        })
        .unwrap_or(0);
    v4 + v6
}

/// Drops counted on the UDP sockets bound to one of `ports` (any local address), from
/// `/proc/net/udp` and `/proc/net/udp6`: tells whether loss happened at loadgen's sockets or
/// at the server's.
pub fn udp_socket_drops(ports: &std::collections::HashSet<u16>) -> u64 {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| socket_drops(&t, ports))
        .sum()
}

fn socket_drops(table: &str, ports: &std::collections::HashSet<u16>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            ports
                .contains(&port)
                .then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// A field of `/proc/net/snmp`: a header line and a value line share a prefix.
fn snmp_field(text: &str, prefix: &str, field: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let head = lines.next()?;
    let vals = lines.next()?;
    let i = head.split_whitespace().position(|h| h == field)?;
    vals.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let t = "1234 (media worker) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 4 0";
        let secs = parse_stat(t).unwrap();
        assert!((secs - 400.0 / clock_ticks()).abs() < 1e-9);
        assert!(parse_stat("garbage").is_none());
        assert!(self_cpu_seconds().unwrap() >= 0.0);
    }

    #[test]
    fn prometheus_text() {
        let body = "# HELP process_cpu_seconds_total CPU\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.5\n\
                    process_cpu_seconds_total_other 99\n\
                    process_cpu_seconds_total{worker=\"1\"} 0.5 1700000000\n";
        assert_eq!(parse_metric(body, "process_cpu_seconds_total"), Some(13.0));
        assert_eq!(parse_metric(body, "absent"), None);
    }

    #[test]
    fn snmp_table() {
        let t = "Ip: Forwarding X\nIp: 1 2\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 0 3 9 7\n";
        assert_eq!(snmp_field(t, "Udp:", "RcvbufErrors"), Some(7));
        assert_eq!(snmp_field(t, "Udp:", "Nope"), None);
        let _ = udp_rcvbuf_errors();
    }

    #[test]
    fn machine_busy() {
        let t = "cpu  100 2 30 1000 7 1 5 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_proc_stat(t), Some(140.0 / clock_ticks()));
        assert!(machine_busy_seconds().is_some());
    }

    #[test]
    fn socket_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 5\n\
   2: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 7\n";
        let ports: std::collections::HashSet<u16> = [0x1f90].into();
        assert_eq!(socket_drops(t, &ports), 5);
        assert!(rss_kib(std::process::id()).unwrap_or(0) > 0);
    }

    #[test]
    fn metrics_over_http() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request first: closing with unread bytes resets the connection.
            let (mut req, mut buf) = (Vec::new(), [0u8; 1024]);
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).unwrap() {
                    0 => break,
                    n => req.extend_from_slice(&buf[..n]),
                }
            }
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nprocess_cpu_seconds_total 3.25\n")
                .unwrap();
        });
        let v = metrics_cpu_seconds(&format!("http://{addr}/metrics")).unwrap();
        assert_eq!(v, 3.25);
        t.join().unwrap();
        assert!(metrics_cpu_seconds("https://x/metrics").is_err());
    }
}
