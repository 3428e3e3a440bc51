//! Conference control end to end (issue 13): real `noc` and `confclient` processes. A
//! moderator (the account's PIN, signed into its ticket) mutes, kicks and locks; an
//! operator does the same through the admin API; a plain participant cannot. Audio is
//! checked by content in the clients' recordings.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::harness::control::Line;
use testkit::harness::{http_post, Client, Noc, TempDir};

const PIN: &str = "4711";
const TOKEN: &str = "moderation-test-token";
const EXIT_WAIT: Duration = Duration::from_secs(40);

/// A noc whose `demo` account has a moderator PIN, with a known admin token.
fn noc(dir: &TempDir) -> Noc {
    let cfg = dir.file("noc.toml");
    std::fs::write(
        &cfg,
        format!("[[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\nmoderator_pin = \"{PIN}\"\n"),
    )
    .unwrap();
    Noc::start(&["--config", &cfg, "--admin-token", TOKEN])
}

fn spawn(noc: &Noc, conf: &str, name: &str, mode: &str, extra: &[&str]) -> Client {
    Client::spawn(
        noc.dispatcher,
        conf,
        "demo",
        name,
        &[&["--mode", mode], extra].concat(),
    )
}

/// When each client was accepted (its recording's time zero), and its participant id.
fn accepted(clients: &[&Client]) -> Vec<(Instant, u32)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got: Vec<Option<(Instant, u32)>> = vec![None; clients.len()];
    while got.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "not all accepted: {got:?}");
        for (i, c) in clients.iter().enumerate() {
            if got[i].is_some() {
                continue;
            }
            if let Some(l) = c.stdout.all().iter().find(|l| l.starts_with("accept ")) {
                let id = l.split_whitespace().nth(2).unwrap().parse().unwrap();
                got[i] = Some((Instant::now(), id));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    got.into_iter().map(Option::unwrap).collect()
}

/// Level of `hz` in dBFS over `from..to` seconds of a recording.
fn level(samples: &[i16], hz: f64, from: f64, to: f64) -> f64 {
    assert!(to > from + 0.3, "window {from}..{to} too short");
    ToneAnalysis::new(
        samples,
        48_000,
        Window {
            skip: from,
            duration: to - from,
            block: 0.1,
        },
    )
    .unwrap_or_else(|| panic!("recording too short: {} samples", samples.len()))
    .level_db(hz)
}

fn wav(path: &str) -> Vec<i16> {
    let (s, rate) = read_wav(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(rate, 48_000);
    s
}

fn finish(c: &mut Client) {
    let status = c.wait(EXIT_WAIT);
    assert!(
        status.success(),
        "{status}: {:?} {:?}",
        c.stdout.all(),
        c.stderr.all()
    );
}

/// Index of the first stdout line starting with `prefix`.
fn line_at(c: &Client, prefix: &str) -> usize {
    let out = c.stdout.all();
    out.iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {out:?}"))
}

/// Seconds from `origin` to `t` (negative when before).
fn secs(origin: Instant, t: Instant) -> f64 {
    if t >= origin {
        t.duration_since(origin).as_secs_f64()
    } else {
        -origin.duration_since(t).as_secs_f64()
    }
}

/// A, B and C send 440, 660 and 880 Hz and record. `mute(b, starts)` mutes B and returns
/// when (wall clock); `unmute` likewise; B tries its own unmute in between (`--command` at
/// `b_unmute_at` s). Within 1 s of the mute A's and C's recordings lose B's tone and keep
/// each other's; B prints the notice and its own unmute is refused; after the moderator's
/// unmute B's tone is back.
fn mute_scenario(
    mode: &str,
    conf: &str,
    moderator: bool,
    b_unmute_at: f64,
    mut act: impl FnMut(&Noc, u32, bool) -> Instant,
) {
    let dir = TempDir::new(conf);
    let noc = noc(&dir);
    let duration = "14";
    let files: Vec<String> = ["ann", "bob", "cat"]
        .iter()
        .map(|n| dir.file(&format!("{n}.wav")))
        .collect();
    let own = format!("{b_unmute_at}:unmute me");
    let mut a = spawn(
        &noc,
        conf,
        "ann",
        mode,
        &[
            "--tone",
            "440",
            "--record",
            &files[0],
            "--duration",
            duration,
        ],
    );
    let mut b = spawn(
        &noc,
        conf,
        "bob",
        mode,
        &[
            "--tone",
            "660",
            "--record",
            &files[1],
            "--duration",
            duration,
            "--command",
            &own,
        ],
    );
    let mut c = spawn(
        &noc,
        conf,
        "cat",
        mode,
        &[
            "--tone",
            "880",
            "--record",
            &files[2],
            "--duration",
            duration,
        ],
    );
    let mut m = moderator.then(|| {
        spawn(
            &noc,
            conf,
            "mod",
            mode,
            &[
                "--moderator-pin",
                PIN,
                "--duration",
                duration,
                "--command",
                "4:mute @bob on,8:mute @bob off",
            ],
        )
    });
    let mut all: Vec<&Client> = vec![&a, &b, &c];
    if let Some(m) = &m {
        all.push(m);
    }
    let starts = accepted(&all);
    let (b_id, m_id) = (starts[1].1, starts.get(3).map(|s| s.1));
    let (muted_at, unmuted_at) = match m_id {
        // The moderator's script runs on its own clock from its accept.
        Some(_) => (
            starts[3].0 + Duration::from_secs(4),
            starts[3].0 + Duration::from_secs(8),
        ),
        None => {
            let on = act(&noc, b_id, true);
            let off = act(&noc, b_id, false);
            (on, off)
        }
    };
    finish(&mut a);
    finish(&mut b);
    finish(&mut c);
    if let Some(m) = m.as_mut() {
        finish(m);
    }
    let by = m_id.map_or("operator".to_owned(), |id| id.to_string());
    // B was told, and its own unmute came back refused, before the moderator lifted it.
    let on = line_at(&b, &format!("muted {b_id} on by={by}"));
    let refused = line_at(&b, "reject 430");
    let off = line_at(&b, &format!("muted {b_id} off by={by}"));
    assert!(on < refused && refused < off, "{:?}", b.stdout.all());
    // Everyone else saw the same notices.
    line_at(&a, &format!("muted {b_id} on by={by}"));
    line_at(&c, &format!("muted {b_id} off by={by}"));
    for (i, other) in [(0usize, 880.0), (2, 440.0)] {
        let s = wav(&files[i]);
        let origin = starts[i].0;
        let (mute, unmute) = (secs(origin, muted_at), secs(origin, unmuted_at));
        let before = level(&s, 660.0, 1.5, mute - 0.3);
        assert!(before >= -35.0, "{i} hears B before the mute: {before:.1}");
        let gone = level(&s, 660.0, mute + 1.0, unmute - 0.2);
        assert!(gone <= -50.0, "{i} hears B while muted: {gone:.1}");
        let kept = level(&s, other, mute + 1.0, unmute - 0.2);
        assert!(
            kept >= -35.0,
            "{i} lost the other talker while B is muted: {kept:.1}"
        );
        let back = level(&s, 660.0, unmute + 1.0, 13.0);
        assert!(back >= -35.0, "{i} hears B after the unmute: {back:.1}");
    }
}

#[test]
fn moderator_mute_in_a_mix_room() {
    mute_scenario("mix", "mutemix", true, 6.0, |_, _, _| unreachable!());
}

#[test]
fn moderator_mute_in_a_reflect_room() {
    mute_scenario(
        "reflect",
        "mutereflect",
        true,
        6.0,
        |_, _, _| unreachable!(),
    );
}

/// The admin API's mute (bearer token) works as a moderator's: B cannot lift it itself.
#[test]
fn operator_mute_through_the_admin_api() {
    mute_scenario("mix", "adminmute", false, 6.0, |noc, b, on| {
        // Mute at about 4 s into the session, unmute at about 8 s.
        std::thread::sleep(Duration::from_secs(4));
        let path = format!("/api/admin/conferences/adminmute/participants/{b}/mute");
        let (status, body) = http_post(noc.http, &path, TOKEN, &format!("{{\"on\": {on}}}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"by\":\"admin\""), "{body}");
        Instant::now()
    });
}

/// A plain participant's mute, kick and lock are refused with 430 and change nothing: B is
/// still heard, nobody is told of anything, and a late joiner gets in.
#[test]
fn a_plain_participant_cannot_moderate() {
    let dir = TempDir::new("plain");
    let noc = noc(&dir);
    let file = dir.file("ann.wav");
    let mut a = spawn(
        &noc,
        "plain",
        "ann",
        "reflect",
        &["--tone", "440", "--record", &file, "--duration", "9"],
    );
    let mut b = spawn(
        &noc,
        "plain",
        "bob",
        "reflect",
        &["--tone", "660", "--duration", "9"],
    );
    let mut n = spawn(
        &noc,
        "plain",
        "nemo",
        "reflect",
        &[
            "--duration",
            "9",
            "--command",
            "2:mute @bob on,3:kick @bob go away,4:lock on,5:mute all on",
        ],
    );
    let starts = accepted(&[&a, &b, &n]);
    std::thread::sleep(Duration::from_secs(6));
    let mut late = spawn(&noc, "plain", "late", "reflect", &["--duration", "1"]);
    finish(&mut late);
    line_at(&late, "accept ");
    finish(&mut a);
    finish(&mut b);
    finish(&mut n);
    let refused = n
        .stdout
        .all()
        .iter()
        .filter(|l| l.starts_with("reject 430"))
        .count();
    assert_eq!(refused, 4, "{:?}", n.stdout.all());
    for c in [&a, &b] {
        let out = c.stdout.all();
        assert!(
            !out.iter().any(|l| l.starts_with("muted")
                || l.starts_with("kicked")
                || l.starts_with("locked")),
            "{out:?}"
        );
    }
    let s = wav(&file);
    let heard = level(&s, 660.0, 1.5, 8.0);
    assert!(heard >= -35.0, "A still hears B: {heard:.1}");
    assert!(starts.iter().all(|s| s.1 > 0));
}

/// Joins `conf` by raw control lines through the dispatcher: the media server's
/// connection (after `accept`), its address and the ticket.
fn raw_join(noc: &Noc, conf: &str, name: &str) -> (Line, SocketAddr, String) {
    let mut d = Line::connect(noc.dispatcher);
    d.expect("connect");
    d.send(&format!("join\t{conf}\tdemo\t{name}\tmode=reflect"));
    let f = d.expect("dispatch");
    let (addr, ticket): (SocketAddr, String) = (f[1].parse().unwrap(), f[2].clone());
    let mut m = Line::connect(addr);
    m.expect("connect");
    m.send(&format!(
        "join\t{conf}\tdemo\t{name}\tmode=reflect\tticket={ticket}"
    ));
    m.expect("accept");
    (m, addr, ticket)
}

/// A kicked confclient exits with the reason (code 3), the others get `deluser`, and a
/// kicked member's ticket cannot bring it back.
#[test]
fn kick_removes_a_member_for_good() {
    let dir = TempDir::new("kick");
    let noc = noc(&dir);
    let mut a = spawn(
        &noc,
        "kickroom",
        "ann",
        "reflect",
        &["--tone", "440", "--duration", "9"],
    );
    let mut b = spawn(
        &noc,
        "kickroom",
        "bob",
        "reflect",
        &["--tone", "660", "--duration", "9"],
    );
    let (mut eve, addr, ticket) = raw_join(&noc, "kickroom", "eve");
    let mut m = spawn(
        &noc,
        "kickroom",
        "mod",
        "reflect",
        &[
            "--moderator-pin",
            PIN,
            "--duration",
            "9",
            "--command",
            "3:kick @bob spamming the room,4:kick @eve bye now",
        ],
    );
    let starts = accepted(&[&a, &b, &m]);
    let (b_id, m_id) = (starts[1].1, starts[2].1);
    let status = b.wait(EXIT_WAIT);
    assert_eq!(
        status.code(),
        Some(3),
        "{:?} {:?}",
        b.stdout.all(),
        b.stderr.all()
    );
    let err = b.stderr.all().join("\n");
    assert!(
        err.contains("kicked by") && err.contains("spamming the room"),
        "{err}"
    );
    // Eve reads her notice, then the server closes.
    let mut kicked = Vec::new();
    while let Some(l) = eve.wait_line("kicked", Duration::from_secs(10)) {
        kicked.push(l);
        if kicked.last().is_some_and(|l| l.ends_with("bye now")) {
            break;
        }
    }
    assert!(
        kicked.len() == 2 && kicked[0].ends_with("spamming the room"),
        "eve is told of both kicks: {kicked:?}"
    );
    assert_eq!(eve.read(), None, "the connection closes");
    // Her ticket is spent.
    let mut again = Line::connect(addr);
    again.expect("connect");
    again.send(&format!(
        "join\tkickroom\tdemo\teve\tmode=reflect\tticket={ticket}"
    ));
    let refused = again.expect("reject");
    assert_eq!(refused[1], "410", "{refused:?}");
    assert!(refused[2].contains("removed"), "{refused:?}");
    finish(&mut a);
    finish(&mut m);
    line_at(&a, &format!("kicked {b_id} by={m_id} spamming the room"));
    line_at(&a, &format!("deluser {b_id} bob"));
    assert!(a
        .stdout
        .all()
        .iter()
        .any(|l| l.ends_with(" eve") && l.starts_with("deluser")));
}

/// A locked room refuses a new join with 423; unlocked, it admits one again. The
/// moderator speaks over a WebSocket.
#[test]
fn a_locked_room_refuses_new_joins_until_unlocked() {
    let dir = TempDir::new("lock");
    let noc = noc(&dir);
    let mut m = Client::spawn_at(
        &noc.websocket("dispatcher"),
        "lockroom",
        "demo",
        "mod",
        &[
            "--mode",
            "reflect",
            "--moderator-pin",
            PIN,
            "--duration",
            "10",
            "--command",
            "2:lock on,6:lock off",
        ],
    );
    let mut a = spawn(&noc, "lockroom", "ann", "reflect", &["--duration", "10"]);
    let starts = accepted(&[&m, &a]);
    let m_start = starts[0].0;
    let wait_until = |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
    wait_until(m_start + Duration::from_millis(3500));
    let mut early = spawn(&noc, "lockroom", "early", "reflect", &["--duration", "3"]);
    let status = early.wait(EXIT_WAIT);
    assert_eq!(status.code(), Some(2), "{:?}", early.stdout.all());
    line_at(&early, "reject 423");
    wait_until(m_start + Duration::from_millis(7500));
    let mut late = spawn(&noc, "lockroom", "late", "reflect", &["--duration", "1"]);
    finish(&mut late);
    line_at(&late, "accept ");
    finish(&mut m);
    finish(&mut a);
    let m_id = starts[0].1;
    let on = line_at(&a, &format!("locked on by={m_id}"));
    let off = line_at(&a, &format!("locked off by={m_id}"));
    assert!(on < off);
}
