//! Cascading (issue 17): one conference over several media servers. The dispatcher seats
//! newcomers on another server when the conference's server is full and tells the servers
//! to link; each server sends its own members' media once over each link and fans out
//! what it receives. Real `noc` and `confclient` processes on 127.0.0.1, audio checked by
//! content.

use client::tone::{read_wav, ToneAnalysis, Window};
use serde_json::Value;
use std::time::Duration;
use testkit::harness::{api, Client, Noc, TempDir};

const EXIT_WAIT: Duration = Duration::from_secs(40);

/// Level of `hz` in dBFS over `from..to` seconds of a WAV.
fn level(path: &str, hz: f64, from: f64, to: f64) -> f64 {
    let (samples, rate) = read_wav(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    ToneAnalysis::new(
        &samples,
        rate,
        Window {
            skip: from,
            duration: to - from,
            block: 0.1,
        },
    )
    .unwrap_or_else(|| panic!("{path}: recording too short"))
    .level_db(hz)
}

/// The media server a client joined, from its `connect mediaserver ID` line.
fn server_of(c: &Client) -> String {
    c.stdout
        .all()
        .iter()
        .find_map(|l| l.strip_prefix("connect mediaserver ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no media server: {:?}", c.stdout.all()))
}

/// The conference's row in the dispatcher's API.
fn conference(noc: &Noc, name: &str) -> Value {
    let all = api(noc.http, "/api/conferences");
    all.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no conference {name}: {all}"))
}

/// Three servers with room for one audio member each: three clients in one conference
/// land on three servers, linked pairwise; each hears the other two tones and not its own.
fn tones_across_servers(mode: &str) {
    // A member costs 1 unit forwarded and 2 mixed (the default cost model).
    let capacity = if mode == "mix" { "2" } else { "1" };
    let noc = Noc::start(&["--media-servers", "3", "--capacity", capacity]);
    let dir = TempDir::new(&format!("cascade-{mode}"));
    let conf = format!("spread-{mode}");
    let tones = [("ann", 440.0), ("bob", 660.0), ("cat", 880.0)];
    let mut clients = Vec::new();
    for (name, hz) in tones {
        let wav = dir.file(&format!("{name}.wav"));
        let c = Client::spawn(
            noc.dispatcher,
            &conf,
            "demo",
            name,
            &[
                "--mode",
                mode,
                "--tone",
                &hz.to_string(),
                "--record",
                &wav,
                "--duration",
                "8",
            ],
        );
        // One at a time, so each is seated knowing where the others are.
        c.stdout
            .wait_for("accept", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{name} not accepted: {:?}", c.stdout.all()));
        clients.push(c);
    }
    let row = conference(&noc, &conf);
    let mut servers: Vec<String> = clients.iter().map(server_of).collect();
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 3, "one client per server: {row}");
    let mut listed: Vec<String> = row["servers"]
        .as_array()
        .expect("servers in the API")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    listed.sort();
    assert_eq!(listed, servers, "the API shows it on all three: {row}");
    assert_eq!(
        row["participants"].as_array().map(Vec::len),
        Some(3),
        "{row}"
    );
    for c in &mut clients {
        let status = c.wait(EXIT_WAIT);
        assert!(
            status.success(),
            "{status}: {:?} {:?}",
            c.stdout.all(),
            c.stderr.all()
        );
    }
    for (i, (name, own)) in tones.iter().enumerate() {
        let wav = dir.file(&format!("{name}.wav"));
        for (other, hz) in tones.iter().filter(|(n, _)| n != name) {
            let db = level(&wav, *hz, 3.0, 7.0);
            assert!(
                db >= -35.0,
                "{mode}: {name} hears {other} at only {db:.1} dBFS (servers {servers:?})"
            );
        }
        let own_db = level(&wav, *own, 3.0, 7.0);
        assert!(
            own_db <= -50.0,
            "{mode}: {name} hears itself at {own_db:.1} dBFS"
        );
        // The roster names everyone, wherever they are.
        let out = clients[i].stdout.all();
        for (other, _) in tones.iter().filter(|(n, _)| n != name) {
            assert!(
                out.iter()
                    .any(|l| l.starts_with("adduser ") && l.ends_with(&format!(" {other}"))),
                "{name} was not told of {other}: {out:?}"
            );
        }
    }
}

#[test]
fn tones_cross_three_linked_servers_in_reflect_mode() {
    tones_across_servers("reflect");
}

#[test]
fn tones_cross_three_linked_servers_in_mix_mode() {
    tones_across_servers("mix");
}
