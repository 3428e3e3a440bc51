//! In-conference features end to end (issue 13) with real `noc` and `confclient`s: chat,
//! public and private, and its rate limit against a flood; the level meter and the
//! dominant speaker in both modes.

use std::time::{Duration, Instant};
use testkit::harness::control::Line;
use testkit::harness::{Client, Noc};

const EXIT_WAIT: Duration = Duration::from_secs(40);

fn spawn(noc: &Noc, conf: &str, name: &str, mode: &str, extra: &[&str]) -> Client {
    Client::spawn(
        noc.dispatcher,
        conf,
        "demo",
        name,
        &[&["--mode", mode], extra].concat(),
    )
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

fn has(c: &Client, line: &str) -> bool {
    c.stdout.all().iter().any(|l| l == line)
}

/// Private text reaches only its target; public text everyone but its sender.
#[test]
fn private_text_reaches_only_its_target() {
    let noc = Noc::start(&[]);
    let say = "2:hello everyone,3:@cat just for cat,3.5:@bob and one for bob";
    let mut a = spawn(
        &noc,
        "chat",
        "ann",
        "reflect",
        &["--duration", "6", "--say", say],
    );
    let mut b = spawn(&noc, "chat", "bob", "reflect", &["--duration", "6"]);
    let mut c = spawn(&noc, "chat", "cat", "reflect", &["--duration", "6"]);
    for x in [&mut a, &mut b, &mut c] {
        finish(x);
    }
    assert!(has(&b, "text ann hello everyone"), "{:?}", b.stdout.all());
    assert!(has(&c, "text ann hello everyone"), "{:?}", c.stdout.all());
    assert!(has(&c, "private ann just for cat"), "{:?}", c.stdout.all());
    assert!(
        has(&b, "private ann and one for bob"),
        "{:?}",
        b.stdout.all()
    );
    for (who, x) in [("bob", &b), ("ann", &a)] {
        let out = x.stdout.all();
        assert!(
            !out.iter().any(|l| l.contains("just for cat")),
            "{who}: {out:?}"
        );
    }
    assert!(!a.stdout.all().iter().any(|l| l.contains("hello everyone")));
    assert!(!c.stdout.all().iter().any(|l| l.contains("one for bob")));
}

/// Joins by raw control lines through the dispatcher; returns the media server connection.
fn raw_join(noc: &Noc, conf: &str, name: &str) -> Line {
    let mut d = Line::connect(noc.dispatcher);
    d.expect("connect");
    d.send(&format!("join\t{conf}\tdemo\t{name}\tmode=reflect"));
    let f = d.expect("dispatch");
    let mut m = Line::connect(f[1].parse().unwrap());
    m.expect("connect");
    m.send(&format!(
        "join\t{conf}\tdemo\t{name}\tmode=reflect\tticket={}",
        f[2]
    ));
    m.expect("accept");
    m
}

/// A 1,000-line flood is cut at the rate limit: the flooder is told (once for the flood),
/// stays in, and the others see the same few lines that passed, and later lines again.
#[test]
fn a_chat_flood_is_cut_at_the_rate_limit() {
    let noc = Noc::start(&[]);
    let mut b = spawn(&noc, "flood", "bob", "reflect", &["--duration", "8"]);
    let mut c = spawn(&noc, "flood", "cat", "reflect", &["--duration", "8"]);
    for x in [&b, &c] {
        x.stdout
            .wait_for("accept ", Duration::from_secs(15))
            .expect("joined");
    }
    let mut f = raw_join(&noc, "flood", "flo");
    let started = Instant::now();
    let flood: String = (0..1000).map(|i| format!("text\tflood {i}\n")).collect();
    f.send(&flood);
    let took = started.elapsed();
    // One refusal for the flood, and the connection is still there.
    let refused = f
        .wait_line("reject\t431", Duration::from_secs(5))
        .expect("the flooder is told");
    assert!(refused.contains("431"));
    f.send("ping\tstill-here");
    assert!(f
        .wait_line("pong\tstill-here", Duration::from_secs(5))
        .is_some());
    std::thread::sleep(Duration::from_secs(3));
    f.send("text\tafter the flood");
    for x in [&mut b, &mut c] {
        finish(x);
    }
    let passed = |x: &Client| -> Vec<String> {
        x.stdout
            .all()
            .into_iter()
            .filter(|l| l.starts_with("text flo flood "))
            .collect()
    };
    let (pb, pc) = (passed(&b), passed(&c));
    assert_eq!(pb, pc, "both saw the same lines");
    // The burst (10) plus 5 a second while the flood was being read.
    let most = 10 + (5.0 * (took.as_secs_f64() + 1.0)).ceil() as usize;
    assert!(
        pb.len() >= 10 && pb.len() <= most,
        "{} lines passed (at most {most})",
        pb.len()
    );
    assert!(has(&b, "text flo after the flood"), "{:?}", b.stdout.all());
    assert!(has(&c, "text flo after the flood"));
}

/// Lines of a client as they arrived, timestamped by polling.
fn watch(c: &Client, until: Instant) -> Vec<(Instant, String)> {
    let mut seen = 0;
    let mut out = Vec::new();
    while Instant::now() < until {
        let all = c.stdout.all();
        for l in &all[seen..] {
            out.push((Instant::now(), l.clone()));
        }
        seen = all.len();
        std::thread::sleep(Duration::from_millis(10));
    }
    out
}

fn median(mut v: Vec<i32>) -> i32 {
    assert!(!v.is_empty());
    v.sort_unstable();
    v[v.len() / 2]
}

/// A talks with its volume stepping -30, -10, -30 dBFS; C talks (push to talk) from 6 s. An
/// observer's `level` lines follow A's steps, come at most 5 a second per talker, and its
/// `dominant` line names C within a second of C starting.
fn levels_and_dominant(mode: &str) {
    let noc = Noc::start(&[]);
    let conf = format!("meter-{mode}");
    let mut o = spawn(&noc, &conf, "obs", mode, &["--duration", "13"]);
    o.stdout
        .wait_for("accept ", Duration::from_secs(15))
        .expect("observer joined");
    let mut a = spawn(
        &noc,
        &conf,
        "ann",
        mode,
        &[
            "--tone",
            "440",
            "--volume",
            "0:-30,4:-10,8:-30",
            "--duration",
            "11",
        ],
    );
    let mut c = spawn(
        &noc,
        &conf,
        "cat",
        mode,
        &["--tone", "880", "--talk", "6-11", "--duration", "11"],
    );
    let a_line = a
        .stdout
        .wait_for("accept ", Duration::from_secs(15))
        .expect("A joined");
    let a_start = Instant::now();
    let c_line = c
        .stdout
        .wait_for("accept ", Duration::from_secs(15))
        .expect("C joined");
    let c_start = Instant::now();
    let id = |l: &str| l.split_whitespace().nth(2).unwrap().to_owned();
    let (a_id, c_id) = (id(&a_line), id(&c_line));
    let lines = watch(&o, a_start + Duration::from_secs(12));
    finish(&mut a);
    finish(&mut c);
    finish(&mut o);
    let at = |t: Instant| t.saturating_duration_since(a_start).as_secs_f64();
    let levels_of = |who: &str, from: f64, to: f64| -> Vec<i32> {
        lines
            .iter()
            .filter(|(t, _)| (from..to).contains(&at(*t)))
            .filter_map(|(_, l)| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[0] == "level" && f[1] == who).then(|| f[2].parse().unwrap())
            })
            .collect()
    };
    // A -30 dBFS sine is about -33 dBov, -10 dBFS about -13.
    let low = median(levels_of(&a_id, 1.0, 3.5));
    let high = median(levels_of(&a_id, 5.0, 7.5));
    let low_again = median(levels_of(&a_id, 9.0, 10.5));
    assert!((-38..=-28).contains(&low), "{mode}: {low}");
    assert!((-18..=-8).contains(&high), "{mode}: {high}");
    assert!((-38..=-28).contains(&low_again), "{mode}: {low_again}");
    // At most 5 level lines a second for one talker (a second of slack for batching).
    let per_second = levels_of(&a_id, 1.0, 5.0).len();
    assert!(per_second <= 4 * 5 + 1, "{mode}: {per_second} lines in 4 s");
    assert!(
        per_second >= 4 * 3,
        "{mode}: only {per_second} lines in 4 s"
    );
    // The dominant speaker: A, then C within a second of C's first word.
    let dominant: Vec<(Instant, String)> = lines
        .iter()
        .filter_map(|(t, l)| l.strip_prefix("dominant ").map(|p| (*t, p.to_owned())))
        .collect();
    assert_eq!(
        dominant.first().map(|d| &d.1),
        Some(&a_id),
        "{mode}: {dominant:?}"
    );
    let (when, _) = dominant
        .iter()
        .find(|d| d.1 == c_id)
        .unwrap_or_else(|| panic!("{mode}: C never dominant: {dominant:?}"));
    let c_talks = c_start + Duration::from_secs(6);
    let after = when.saturating_duration_since(c_talks);
    assert!(
        *when > c_talks && after < Duration::from_millis(1100),
        "{mode}: C dominant {after:?} after starting"
    );
    // `speaking` came for both.
    for who in [&a_id, &c_id] {
        assert!(
            lines
                .iter()
                .any(|(_, l)| l == &format!("speaking {who} on")),
            "{mode}: {lines:?}"
        );
    }
}

#[test]
fn levels_and_dominant_speaker_in_a_reflect_room() {
    levels_and_dominant("reflect");
}

#[test]
fn levels_and_dominant_speaker_in_a_mix_room() {
    levels_and_dominant("mix");
}
