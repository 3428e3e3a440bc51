//! Cascading (issue 17): one conference over several media servers. The dispatcher seats
//! newcomers on another server when the conference's server is full and tells the servers
//! to link; each server sends its own members' media once over each link and fans out
//! what it receives. Real `noc` and `confclient` processes on 127.0.0.1, audio checked by
//! content.

use client::tone::{read_wav, ToneAnalysis, Window};
use serde_json::Value;
use std::time::Duration;
use std::time::Instant;
use testkit::harness::{api, bin, http_post, Client, Noc, Split, TempDir};

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

/// The media server a client joined (last), from its `connect mediaserver ID` lines.
fn server_of(c: &Client) -> String {
    c.stdout
        .all()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("connect mediaserver ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no media server: {:?}", c.stdout.all()))
}

/// Starts a tone client in `conf` and waits until it is accepted, so each is seated knowing
/// where the others are.
fn tone_client(dispatcher: std::net::SocketAddr, conf: &str, name: &str, extra: &[&str]) -> Client {
    let c = Client::spawn(dispatcher, conf, "demo", name, extra);
    c.stdout
        .wait_for("accept", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{name} not accepted: {:?}", c.stdout.all()));
    c
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
        let hz = hz.to_string();
        let args = [
            "--mode",
            mode,
            "--tone",
            &hz,
            "--record",
            &wav,
            "--duration",
            "8",
        ];
        clients.push(tone_client(noc.dispatcher, &conf, name, &args));
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
        // The roster names everyone, wherever they are, and speaking notices follow the
        // talkers across the links.
        let out = clients[i].stdout.all();
        for (other, _) in tones.iter().filter(|(n, _)| n != name) {
            assert!(
                out.iter()
                    .any(|l| l.starts_with("adduser ") && l.ends_with(&format!(" {other}"))),
                "{name} was not told of {other}: {out:?}"
            );
            let id = roster_id(&clients[i], other);
            assert!(
                out.iter().any(|l| *l == format!("speaking {id} on")),
                "{mode}: {name} was not told {other} ({id}) speaks: {out:?}"
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

/// Kill -9 a linked server: its member is back (on another server) within 3 s, and the
/// members elsewhere hear each other all along.
#[test]
fn a_linked_server_killed_fails_its_members_over_and_the_others_keep_talking() {
    let mut split = Split::start();
    for id in ["ms-a", "ms-b", "ms-c"] {
        split.add_media(id, &["--capacity", "1"]);
    }
    let dir = TempDir::new("cascade-failover");
    let tones = [("ann", 440.0), ("bob", 660.0), ("cat", 880.0)];
    let mut clients = Vec::new();
    for (name, hz) in tones {
        let wav = dir.file(&format!("{name}.wav"));
        let hz = hz.to_string();
        let args = ["--tone", &hz, "--record", &wav, "--duration", "10"];
        clients.push(tone_client(split.client, "wide", name, &args));
    }
    let servers: Vec<String> = clients.iter().map(server_of).collect();
    let mut distinct = servers.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one per server: {servers:?}");
    // bob joined second: his server is linked to the conference's first.
    std::thread::sleep(Duration::from_secs(3));
    let killed = servers[1].clone();
    let accepts = |c: &Client| {
        c.stdout
            .all()
            .iter()
            .filter(|l| l.starts_with("accept"))
            .count()
    };
    let t0 = Instant::now();
    split.media(&killed).kill9();
    while accepts(&clients[1]) < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "bob not back within 3 s: {:?}",
            clients[1].stdout.all()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = t0.elapsed();
    assert_ne!(server_of(&clients[1]), killed);
    for c in &mut clients {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stdout.all());
    }
    // ann and cat never lost each other: every half second from 2 s to 9 s of their
    // recordings holds the other's tone.
    for (me, other, hz) in [("ann", "cat", 880.0), ("cat", "ann", 440.0)] {
        let wav = dir.file(&format!("{me}.wav"));
        let mut t = 2.0;
        while t < 9.0 {
            let db = level(&wav, hz, t, t + 0.5);
            assert!(
                db >= -40.0,
                "{me} lost {other} at {t:.1} s ({db:.1} dBFS; bob back after {back:?})"
            );
            t += 0.5;
        }
    }
    // bob hears both again once back.
    let wav = dir.file("bob.wav");
    for (other, hz) in [("ann", 440.0), ("cat", 880.0)] {
        let db = level(&wav, hz, 8.0, 9.5);
        assert!(
            db >= -35.0,
            "bob does not hear {other} after failover: {db:.1} dBFS"
        );
    }
}

/// `loadgen` with one conference of `participants`, one sender, for `secs` s, writing `json`.
fn loadgen(noc: &Noc, participants: u32, secs: u32, json: &str) -> std::process::Child {
    let (n, d) = (participants.to_string(), secs.to_string());
    std::process::Command::new(bin("loadgen"))
        .args(["--dispatcher", &noc.dispatcher.to_string()])
        .args(["--conferences", "1", "--participants", &n, "--senders", "1"])
        .args(["--duration", &d, "--quiet", "--json", json])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("loadgen runs")
}

fn finish_loadgen(child: std::process::Child) {
    let out = child.wait_with_output().expect("loadgen ends");
    assert!(
        out.status.success(),
        "loadgen failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// loadgen's `json`: `expected` packets were due, at most 0.1% lost, none misrouted or
/// echoed.
fn delivered_without_loss(json: &str, expected: u64) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(json).expect("json written"))
        .expect("valid json");
    let step = &v["steps"][0];
    assert_eq!(step["expected"].as_u64(), Some(expected), "{step:#}");
    let loss = v["loss_pct"].as_f64().expect("loss");
    assert!(loss <= 0.1, "loss {loss}%: {step:#}");
    assert_eq!(step["misrouted"].as_u64(), Some(0), "{step:#}");
    assert_eq!(step["echoed"].as_u64(), Some(0), "{step:#}");
}

/// Issue 17's acceptance: `noc --media-servers 3 --capacity 10` takes 25 `loadgen`
/// participants in one conference with one sender; the API shows the conference on all
/// three servers, and every receiver gets the sender's stream with loss <= 0.1%.
#[test]
fn twenty_five_participants_spread_over_three_servers_of_ten() {
    let noc = Noc::start(&["--media-servers", "3", "--capacity", "10"]);
    let dir = TempDir::new("cascade-spread");
    let json = dir.file("spread.json");
    let child = loadgen(&noc, 25, 4, &json);
    // While it runs, the API shows the conference on all three servers.
    let t0 = Instant::now();
    let mut seen = Value::Null;
    while t0.elapsed() < Duration::from_secs(15) {
        let all = api(noc.http, "/api/conferences");
        if let Some(c) = all.as_array().and_then(|a| a.first()) {
            seen = c.clone();
            if c["servers"].as_array().map_or(0, Vec::len) == 3
                && c["participants"].as_array().map_or(0, Vec::len) == 25
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen["servers"].as_array().map(Vec::len), Some(3), "{seen}");
    assert_eq!(
        seen["participants"].as_array().map(Vec::len),
        Some(25),
        "{seen}"
    );
    finish_loadgen(child);
    // One sender, 50 packets a second, to every other participant.
    delivered_without_loss(&json, 24 * 200);
    let log = api(noc.http, "/api/events");
    let spread = log
        .as_array()
        .map_or(0, |a| a.iter().filter(|e| e["kind"] == "spread").count());
    assert_eq!(spread, 2, "two spreads: {log}");
}

/// The value of a per-worker series on a `/metrics` page: worker index -> value.
fn per_worker(page: &str, name: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix("{worker=\""))
        .filter_map(|l| {
            let (w, v) = l.split_once("\"} ")?;
            Some((w.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Issue 17's acceptance across workers: a conference of 600 on a media server with 2
/// workers spreads over both (the per-worker metrics show it), with no loss.
#[test]
fn six_hundred_participants_spread_over_two_workers() {
    let noc = Noc::start(&[
        "--media-servers",
        "1",
        "--workers",
        "2",
        "--capacity",
        "5000",
    ]);
    let dir = TempDir::new("cascade-workers");
    let json = dir.file("workers.json");
    let child = loadgen(&noc, 600, 3, &json);
    // While it runs, both workers carry members of the room.
    let url = &noc.metrics[0].1;
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("a metrics address");
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < Duration::from_secs(60) {
        let page = testkit::harness::http_get(addr, "/metrics");
        seen = per_worker(&page, "noc_media_worker_participants");
        if seen.len() == 2 && seen.iter().all(|(_, n)| *n >= 600.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Each worker's mesh holds its members, everyone else mirrored, and its link's end.
    for (w, n) in &seen {
        assert!(*n >= 600.0, "worker {w} has {n} participants: {seen:?}");
    }
    finish_loadgen(child);
    let page = testkit::harness::http_get(addr, "/metrics");
    let sent = per_worker(&page, "noc_media_worker_packets_out_total");
    assert!(
        sent.len() == 2 && sent.iter().all(|(_, v)| *v > 10_000.0),
        "both workers send: {sent:?}"
    );
    // One sender, 50 packets a second, to every other participant.
    delivered_without_loss(&json, 599 * 150);
}

/// The participant id a client was accepted with.
fn id_of(c: &Client) -> u32 {
    c.stdout
        .all()
        .iter()
        .rev()
        .find_map(|l| {
            l.strip_prefix("accept ")?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("not accepted: {:?}", c.stdout.all()))
}

/// The id `of` has in the roster `c` got (`adduser ID NAME`).
fn roster_id(c: &Client, of: &str) -> u32 {
    c.stdout
        .all()
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix("adduser ")?;
            let (id, name) = rest.split_once(' ')?;
            (name == of).then(|| id.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{of} not in the roster: {:?}", c.stdout.all()))
}

/// Two media servers of room for two, under an account whose moderator PIN is 4711.
fn moderated_pair(dir: &TempDir) -> Noc {
    let cfg = dir.file("noc.toml");
    std::fs::write(
        &cfg,
        "[[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\nmoderator_pin = \"4711\"\n",
    )
    .unwrap();
    Noc::start(&["--config", &cfg, "--media-servers", "2", "--capacity", "2"])
}

/// Mute holds across servers: a moderator on one server mutes a member of the linked
/// server; its own server applies it, everyone on both servers is told, and its tone
/// leaves the other server's recordings until the moderator lifts it.
#[test]
fn a_moderator_mutes_a_member_of_a_linked_server() {
    let dir = TempDir::new("cascade-mute");
    // Room for two per server: ann and the moderator on one, bob spreads to the other.
    let noc = moderated_pair(&dir);
    let wav = dir.file("ann.wav");
    let ann = tone_client(
        noc.dispatcher,
        "hall",
        "ann",
        &["--tone", "440", "--record", &wav, "--duration", "12"],
    );
    let t0 = Instant::now();
    let mut m = tone_client(
        noc.dispatcher,
        "hall",
        "mod",
        &[
            "--moderator-pin",
            "4711",
            "--duration",
            "12",
            "--command",
            "4:mute @bob on,8:mute @bob off",
        ],
    );
    let moderated_from = Instant::now();
    let mut bob = tone_client(
        noc.dispatcher,
        "hall",
        "bob",
        &["--tone", "660", "--duration", "11"],
    );
    let mut ann = ann;
    assert_ne!(
        server_of(&bob),
        server_of(&ann),
        "bob spread to the other server"
    );
    assert_eq!(server_of(&m), server_of(&ann));
    for c in [&mut ann, &mut m, &mut bob] {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stdout.all());
    }
    // bob's own server applied it, by the moderator as bob's server knows it.
    let (bob_id, mod_there) = (id_of(&bob), roster_id(&bob, "mod"));
    let told = |c: &Client, line: &str| {
        assert!(
            c.stdout.all().iter().any(|l| l == line),
            "no {line:?}: {:?}",
            c.stdout.all()
        )
    };
    told(&bob, &format!("muted {bob_id} on by={mod_there}"));
    told(&bob, &format!("muted {bob_id} off by={mod_there}"));
    // ann and the moderator were told in their server's ids.
    let (bob_here, mod_id) = (roster_id(&ann, "bob"), id_of(&m));
    told(&ann, &format!("muted {bob_here} on by={mod_id}"));
    told(&m, &format!("muted {bob_here} off by={mod_id}"));
    // ann's recording (from her accept, t0) loses bob's 660 Hz while muted.
    let base = moderated_from.duration_since(t0).as_secs_f64();
    let before = level(&wav, 660.0, base + 2.5, base + 3.6);
    assert!(
        before >= -35.0,
        "ann hears bob before the mute: {before:.1}"
    );
    let gone = level(&wav, 660.0, base + 5.0, base + 7.8);
    assert!(gone <= -50.0, "ann hears bob while muted: {gone:.1}");
    let back = level(&wav, 660.0, base + 9.0, base + 10.5);
    assert!(back >= -35.0, "ann hears bob after the unmute: {back:.1}");
}

/// A webinar account's `spread = 2` (members per server) spreads a conference over three
/// servers that each have room for all of it, and the audience on the third server hears
/// the speaker on the first.
#[test]
fn an_accounts_spread_fans_a_conference_out_before_any_server_is_full() {
    let dir = TempDir::new("cascade-webinar");
    let cfg = dir.file("noc.toml");
    std::fs::write(
        &cfg,
        "[[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\nspread = 2\n",
    )
    .unwrap();
    let noc = Noc::start(&["--config", &cfg, "--media-servers", "3"]);
    let wav = dir.file("eve.wav");
    let mut clients = Vec::new();
    for (name, extra) in [
        ("ann", vec!["--tone", "440"]),
        ("bob", vec![]),
        ("cat", vec![]),
        ("dan", vec![]),
        ("eve", vec!["--record", &wav]),
    ] {
        let mut args = vec!["--duration", "7"];
        args.extend(extra);
        clients.push(tone_client(noc.dispatcher, "webinar", name, &args));
    }
    let row = conference(&noc, "webinar");
    assert_eq!(
        row["servers"].as_array().map(Vec::len),
        Some(3),
        "two members a server: {row}"
    );
    let on = |c: &Client| server_of(c);
    assert_ne!(
        on(&clients[0]),
        on(&clients[4]),
        "ann and eve share a server"
    );
    for c in &mut clients {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stderr.all());
    }
    let db = level(&wav, 440.0, 3.0, 6.0);
    assert!(db >= -35.0, "eve hears ann at only {db:.1} dBFS");
}

/// An operator spreads a running conference (admin API, `per_server`): the members seated
/// stay, the next ones go to other servers, linked; bad bodies and unknown conferences get
/// clear errors.
#[test]
fn an_operator_spreads_a_running_conference() {
    const TOKEN: &str = "spread-test-token";
    let noc = Noc::start(&["--admin-token", TOKEN, "--media-servers", "2"]);
    let ann = tone_client(noc.dispatcher, "hall", "ann", &["--duration", "6"]);
    let bob = tone_client(noc.dispatcher, "hall", "bob", &["--duration", "6"]);
    assert_eq!(
        server_of(&ann),
        server_of(&bob),
        "together while not spread"
    );
    let path = "/api/admin/conferences/hall/spread";
    let (code, body) = http_post(noc.http, path, TOKEN, "{\"per_server\": 2}");
    assert_eq!(code, 200, "{body}");
    let cat = tone_client(noc.dispatcher, "hall", "cat", &["--duration", "6"]);
    assert_ne!(
        server_of(&cat),
        server_of(&ann),
        "cat goes to the other server"
    );
    let row = conference(&noc, "hall");
    assert_eq!(row["servers"].as_array().map(Vec::len), Some(2), "{row}");
    let events = api(noc.http, "/api/events").to_string();
    assert!(events.contains("spread-set"), "{events}");
    let (code, body) = http_post(noc.http, path, TOKEN, "{\"per\": 2}");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("per_server"), "{body}");
    let (code, body) = http_post(
        noc.http,
        "/api/admin/conferences/nowhere/spread",
        TOKEN,
        "{\"per_server\": 2}",
    );
    assert_eq!(code, 404, "{body}");
    let (code, _) = http_post(noc.http, path, "wrong", "{\"per_server\": 2}");
    assert_eq!(code, 403, "a wrong token is refused");
    for mut c in [ann, bob, cat] {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stderr.all());
    }
}

/// Across workers and servers at once: a room spread over two workers of one server
/// (`--worker-share 2`) is linked with another server when that one is full. The link
/// lives on the room's first part, which passes it on: every member hears every other,
/// whichever worker or server it is on, and nobody hears itself.
#[test]
fn a_room_over_two_workers_links_with_another_server() {
    let noc = Noc::start(&[
        "--media-servers",
        "2",
        "--capacity",
        "3",
        "--workers",
        "2",
        "--worker-share",
        "2",
    ]);
    let dir = TempDir::new("cascade-workers-linked");
    let tones = [
        ("ann", 440.0),
        ("bob", 550.0),
        ("cat", 660.0),
        ("dan", 880.0),
    ];
    let mut clients = Vec::new();
    for (name, hz) in tones {
        let wav = dir.file(&format!("{name}.wav"));
        let hz = hz.to_string();
        let args = ["--tone", &hz, "--record", &wav, "--duration", "8"];
        clients.push(tone_client(noc.dispatcher, "both", name, &args));
    }
    let servers: Vec<String> = clients.iter().map(server_of).collect();
    assert_eq!(
        servers[0], servers[2],
        "ann and cat share a server: {servers:?}"
    );
    assert_ne!(servers[0], servers[3], "dan is on the other: {servers:?}");
    // The first server's room is on both its workers.
    let url = &noc
        .metrics
        .iter()
        .find(|(id, _)| *id == servers[0])
        .expect("the first server's metrics")
        .1;
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("a metrics address");
    let page = testkit::harness::http_get(addr, "/metrics");
    let parts = per_worker(&page, "noc_media_worker_participants");
    assert!(
        parts.len() == 2 && parts.iter().all(|(_, n)| *n > 0.0),
        "both workers hold the room: {parts:?}"
    );
    for c in &mut clients {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stderr.all());
    }
    for (name, own) in tones {
        let wav = dir.file(&format!("{name}.wav"));
        for (other, hz) in tones.iter().filter(|(n, _)| *n != name) {
            let db = level(&wav, *hz, 3.0, 7.0);
            assert!(
                db >= -35.0,
                "{name} hears {other} at only {db:.1} dBFS (servers {servers:?})"
            );
        }
        let own_db = level(&wav, own, 3.0, 7.0);
        assert!(own_db <= -50.0, "{name} hears itself at {own_db:.1} dBFS");
    }
}

/// An operator mutes, through the admin API, a member of a conference spread over two
/// servers: the participant id is the one on its own server (`?server=`), the mute goes to
/// that server, and the tone leaves the other server's recording.
#[test]
fn an_operator_mutes_a_member_on_a_linked_server() {
    const TOKEN: &str = "mute-linked-token";
    let noc = Noc::start(&[
        "--admin-token",
        TOKEN,
        "--media-servers",
        "2",
        "--capacity",
        "1",
    ]);
    let dir = TempDir::new("cascade-opmute");
    let wav = dir.file("ann.wav");
    let mut ann = tone_client(
        noc.dispatcher,
        "opmute",
        "ann",
        &["--record", &wav, "--duration", "10"],
    );
    let t0 = Instant::now();
    let mut bob = tone_client(
        noc.dispatcher,
        "opmute",
        "bob",
        &["--tone", "660", "--duration", "9"],
    );
    let (bob_server, bob_id) = (server_of(&bob), id_of(&bob));
    assert_ne!(
        bob_server,
        server_of(&ann),
        "bob spread to the other server"
    );
    std::thread::sleep(Duration::from_secs(4));
    let muted_at = t0.elapsed().as_secs_f64();
    let path =
        format!("/api/admin/conferences/opmute/participants/{bob_id}/mute?server={bob_server}");
    let (code, body) = http_post(noc.http, &path, TOKEN, "{\"on\": true}");
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(reply["detail"]["server"], bob_server.as_str(), "{reply}");
    assert!(
        bob.stdout
            .wait_for(&format!("muted {bob_id} on"), Duration::from_secs(3))
            .is_some(),
        "bob was not told: {:?}",
        bob.stdout.all()
    );
    // An id no server of the conference has is refused.
    let (code, _) = http_post(
        noc.http,
        &format!("/api/admin/conferences/opmute/participants/{bob_id}/mute?server=ms-9"),
        TOKEN,
        "{\"on\": true}",
    );
    assert_eq!(code, 404);
    for c in [&mut ann, &mut bob] {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stderr.all());
    }
    // ann's recording starts about when she was accepted, just before t0.
    let before = level(&wav, 660.0, 1.5, muted_at - 0.5);
    assert!(
        before >= -35.0,
        "ann hears bob before the mute: {before:.1}"
    );
    let after = level(&wav, 660.0, muted_at + 1.0, muted_at + 3.5);
    assert!(after <= -50.0, "ann hears bob after the mute: {after:.1}");
}

/// A moderator's lock, mute all and kick hold across linked servers: the linked server
/// locks its part too (a join spread there is refused), mutes its own members, and removes
/// the member kicked, telling everyone why.
#[test]
fn a_moderators_lock_mute_all_and_kick_reach_the_linked_server() {
    let dir = TempDir::new("cascade-lock");
    // Room for two a server: the moderator and ann on one, bob on the other.
    let noc = moderated_pair(&dir);
    let wav = dir.file("ann.wav");
    let mut ann = tone_client(
        noc.dispatcher,
        "locked",
        "ann",
        &["--record", &wav, "--duration", "11"],
    );
    let t0 = Instant::now();
    let mut m = tone_client(
        noc.dispatcher,
        "locked",
        "mod",
        &[
            "--moderator-pin",
            "4711",
            "--duration",
            "10",
            "--command",
            "3:lock on,5:mute all on,7:kick @bob heckling",
        ],
    );
    let mut bob = tone_client(
        noc.dispatcher,
        "locked",
        "bob",
        &["--tone", "660", "--duration", "9"],
    );
    assert_ne!(server_of(&bob), server_of(&ann), "bob on the other server");
    let bob_id = id_of(&bob);
    assert!(
        bob.stdout
            .wait_for("locked on", Duration::from_secs(6))
            .is_some(),
        "bob's server did not lock: {:?}",
        bob.stdout.all()
    );
    // A newcomer now goes to bob's server (the first is full), which refuses it.
    let mut cat = Client::spawn(
        noc.dispatcher,
        "locked",
        "demo",
        "cat",
        &["--duration", "2"],
    );
    let refused = cat
        .stdout
        .wait_for_containing("423", Duration::from_secs(10))
        .or_else(|| {
            cat.stderr
                .wait_for_containing("423", Duration::from_secs(1))
        });
    assert!(
        refused.is_some(),
        "cat was not refused: {:?} {:?}",
        cat.stdout.all(),
        cat.stderr.all()
    );
    let _ = cat.wait(EXIT_WAIT);
    assert!(
        bob.stdout
            .wait_for(&format!("muted {bob_id} on"), Duration::from_secs(6))
            .is_some(),
        "bob was not muted: {:?}",
        bob.stdout.all()
    );
    let muted_at = t0.elapsed().as_secs_f64();
    let bob_at_ann = roster_id(&ann, "bob");
    for c in [&mut ann, &mut m] {
        let status = c.wait(EXIT_WAIT);
        assert!(status.success(), "{status}: {:?}", c.stderr.all());
    }
    // bob was removed by his own server and told why; ann saw him kicked and gone.
    let status = bob.wait(EXIT_WAIT);
    assert_eq!(status.code(), Some(3), "bob kicked: {:?}", bob.stdout.all());
    assert!(
        bob.stdout
            .all()
            .iter()
            .any(|l| l.starts_with(&format!("kicked {bob_id}")) && l.contains("heckling")),
        "{:?}",
        bob.stdout.all()
    );
    let ann_saw = ann.stdout.all();
    assert!(
        ann_saw
            .iter()
            .any(|l| l.starts_with(&format!("kicked {bob_at_ann}")) && l.contains("heckling")),
        "{ann_saw:?}"
    );
    assert!(
        ann_saw
            .iter()
            .any(|l| l.starts_with(&format!("deluser {bob_at_ann}"))),
        "{ann_saw:?}"
    );
    let before = level(&wav, 660.0, 2.0, 4.0);
    assert!(
        before >= -35.0,
        "ann hears bob before mute all: {before:.1}"
    );
    let after = level(&wav, 660.0, muted_at + 1.0, muted_at + 3.0);
    assert!(after <= -50.0, "ann hears bob after mute all: {after:.1}");
}
