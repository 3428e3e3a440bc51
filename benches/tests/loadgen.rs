//! loadgen end to end: a real `noc` and a real `rawfwd`, driven briefly by the real
//! `loadgen` binary. Checks that the JSON carries the figures and that packets flowed; it
//! asserts no timing (figures belong in docs/benchmarks.md).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A binary of another workspace crate, built on demand (like noc/tests/harness does).
fn workspace_bin(name: &str) -> PathBuf {
    // target/debug/deps/loadgen-HASH -> target/debug/NAME
    let exe = std::env::current_exe().expect("test binary has a path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/PROFILE/deps");
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--bin", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(ok.success(), "building {name} failed");
    }
    path
}

/// A child killed on drop, with the first stdout line starting with `prefix`.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `bin` and waits for its `prefix` line, then, with `ready`, for that line too
    /// (noc prints its address before its media servers have registered).
    fn start(
        bin: PathBuf,
        args: &[&str],
        prefix: &'static str,
        ready: Option<&'static str>,
    ) -> Server {
        let mut child = Command::new(&bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", bin.display()));
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut addr = None;
        let found = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                break None;
            };
            if let Some(a) = line.strip_prefix(prefix) {
                addr = Some(a.trim().to_owned());
            }
            if addr.is_some() && ready.is_none_or(|r| line == r) {
                break addr.clone();
            }
        };
        let addr = match found {
            Some(a) => a,
            None => {
                let _ = child.kill();
                panic!(
                    "{} printed no {prefix:?} line (or no {ready:?})",
                    bin.display()
                );
            }
        };
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadgen(target: &[&str], media: &[&str], pid: u32, json: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(target)
        .args(media)
        .args([
            "--conferences",
            "2",
            "--participants",
            "3",
            "--senders",
            "3",
        ])
        .args(["--duration", "2", "--settle-ms", "300", "--drain-ms", "200"])
        .args(["--server-pid", &pid.to_string(), "--quiet", "--json"])
        .arg(json)
        .output()
        .expect("loadgen runs");
    assert!(
        out.status.success(),
        "loadgen failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("headline"), "{table}");
}

fn check(json: &std::path::Path) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(json).expect("json written"))
        .expect("valid json");
    for key in [
        "pps_out",
        "pps_out_per_core",
        "loss_pct",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_p999_ms",
        "server_cpu_cores",
        "config",
        "steps",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v:#}");
    }
    let step = &v["steps"][0];
    let received = step["received"].as_u64().expect("received");
    // 2 conferences x 3 senders x 50 pps x 2 s, each to 2 others: 1200 expected.
    assert_eq!(step["expected"].as_u64(), Some(1200), "{step:#}");
    assert!(received > 0, "{step:#}");
    assert!(v["loss_pct"].as_f64().expect("loss") < 5.0, "{step:#}");
    assert_eq!(step["misrouted"].as_u64(), Some(0));
    assert_eq!(step["echoed"].as_u64(), Some(0));
    assert_eq!(step["streams"].as_array().map(Vec::len), Some(6));
    v
}

/// A video-only run: the video stream's delivery is counted apart, and no audio was sent.
fn check_video(json: &std::path::Path) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(json).expect("json written"))
        .expect("valid json");
    let step = &v["steps"][0];
    let kinds = step["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 1, "only video was sent: {step:#}");
    let video = &kinds[0];
    assert_eq!(video["kind"], "video", "{step:#}");
    // 2 conferences x 3 senders x 50 pps x 2 s, each to 2 others.
    assert_eq!(video["expected"].as_u64(), Some(1200), "{step:#}");
    assert!(video["loss_pct"].as_f64().expect("loss") < 5.0, "{step:#}");
    assert_eq!(step["misrouted"].as_u64(), Some(0));
    assert_eq!(step["echoed"].as_u64(), Some(0));
}

#[test]
fn loadgen_against_noc_and_rawfwd() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let noc = Server::start(
        workspace_bin("noc"),
        &["--listen", "127.0.0.1:0"],
        "dispatcher ",
        Some("ready"),
    );
    let json = dir.join("noc.json");
    loadgen(&["--dispatcher", &noc.addr], &[], noc.child.id(), &json);
    let v = check(&json);
    assert!(v["server_cpu_cores"].as_f64().is_some());
    assert_eq!(v["control"]["closed_early"].as_u64(), Some(0));

    // Video only, on `channel video` (PT 96, H.264): the reflector holds each receiver's
    // video until an IDR slice, so this passes only if loadgen's packets start keyframes.
    let json = dir.join("noc-video.json");
    let video = [
        "--audio-pps",
        "0",
        "--video-pps",
        "50",
        "--video-size",
        "1200",
    ];
    loadgen(&["--dispatcher", &noc.addr], &video, noc.child.id(), &json);
    check_video(&json);
    drop(noc);

    let raw = Server::start(
        PathBuf::from(env!("CARGO_BIN_EXE_rawfwd")),
        &[],
        "rawfwd ",
        None,
    );
    let json = dir.join("raw.json");
    loadgen(&["--raw", &raw.addr], &[], raw.child.id(), &json);
    check(&json);
    let _ = std::fs::remove_dir_all(&dir);
}
