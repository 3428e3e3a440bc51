//! dispatchgen end to end: it starts a real `dispatcher`, registers simulated media
//! servers and drives joins for a second. Checks that decisions were made and measured,
//! never how fast (figures live in docs/benchmarks.md).

use std::process::Command;
use testkit::harness::{bin, TempDir};

#[test]
fn dispatchgen_measures_decisions_against_a_spawned_dispatcher() {
    let dispatcher = bin("dispatcher");
    let dir = TempDir::new("dispatchgen");
    let json = dir.path().join("run.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dispatchgen"))
        .arg("--spawn")
        .arg(&dispatcher)
        .args(["--store", "memory", "--duration", "1", "--servers", "2"])
        .args(["--clients", "2", "--conferences", "10", "--json"])
        .arg(&json)
        .output()
        .expect("dispatchgen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("JSON written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let run = &v[0];
    assert_eq!(run["store"], "memory");
    assert!(run["decisions"].as_u64().unwrap() > 0, "{run:#}");
    assert_eq!(run["rejects"], 0, "{run:#}");
    assert_eq!(run["errors"], 0, "{run:#}");
    assert!(run["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{run:#}");
    assert!(run["dispatcher_cores"].as_f64().is_some(), "{run:#}");
}
