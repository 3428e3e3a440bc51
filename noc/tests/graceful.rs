//! Issue 6 acceptance, punt and drain with real processes: SIGTERM on a media server
//! moves its conference to the other server without any client seeing an error, and the
//! server exits 0; a server past its high-water mark punts a conference, whose clients
//! move.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::time::{Duration, Instant};
use testkit::harness::{Client, Split, TempDir};

/// Lines a client must never print while being moved.
fn no_errors(name: &str, c: &Client) {
    let out = c.stdout.all();
    assert!(
        !out.iter()
            .any(|l| l.starts_with("reject") || l.starts_with("error")),
        "{name} saw an error: {out:?}"
    );
    // Moved by `dispatch`, not by losing its server.
    assert!(
        !out.iter().any(|l| l.starts_with("reconnect")),
        "{name} had to fail over: {out:?}"
    );
}

/// How loud `hz` is in `wav` from `skip` seconds on, for `duration` seconds.
fn level(wav: &str, skip: f64, duration: f64, hz: f64) -> f64 {
    let (samples, rate) = read_wav(wav).unwrap_or_else(|e| panic!("{wav}: {e}"));
    let window = Window {
        skip,
        duration,
        block: 0.1,
    };
    ToneAnalysis::new(&samples, rate, window)
        .unwrap_or_else(|| panic!("{wav} is too short: {} samples", samples.len()))
        .level_db(hz)
}

#[test]
fn sigterm_drains_the_conference_to_the_other_server_without_errors() {
    let mut split = Split::start();
    split.add_media("ms-a", &["--drain-timeout", "10"]);
    split.add_media("ms-b", &["--drain-timeout", "10"]);
    let dir = TempDir::new("graceful");
    let people = [("ann", 440.0), ("bob", 660.0)];
    let clients: Vec<(Instant, Client)> = people
        .iter()
        .map(|(name, hz)| {
            let at = Instant::now();
            let wav = dir.file(&format!("{name}.wav"));
            let c = Client::spawn(
                split.client,
                "gr",
                "demo",
                name,
                &[
                    "--tone",
                    &hz.to_string(),
                    "--record",
                    &wav,
                    "--duration",
                    "6",
                ],
            );
            (at, c)
        })
        .collect();
    split.wait_api("/api/conferences", Duration::from_secs(15), |v| {
        v[0]["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    });
    let (host, _) = split.conference("gr").expect("conference placed");
    let other = if host == "ms-a" { "ms-b" } else { "ms-a" };
    std::thread::sleep(Duration::from_millis(800));
    let termed = Instant::now();
    split.media(&host).signal("TERM");

    // The server drains and exits 0 once its conference has moved.
    let ms = split.media(&host);
    let status = ms
        .wait(Duration::from_secs(8))
        .unwrap_or_else(|| panic!("{host} did not exit: {:?}", ms.stderr.all()));
    let log = ms.stderr.all();
    assert!(status.success(), "{host} exited with {status}: {log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("draining: 1 conferences, 2 users left")),
        "{log:?}"
    );
    split.wait_api("/api/conferences", Duration::from_secs(5), |v| {
        v.as_array().is_some_and(|a| {
            a.len() == 1
                && a[0]["name"] == "gr"
                && a[0]["server"] == other
                && a[0]["participants"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2)
        })
    });

    for (i, (spawned, mut c)) in clients.into_iter().enumerate() {
        let (name, _) = people[i];
        let status = c.wait(Duration::from_secs(20));
        assert!(
            status.success(),
            "{name}: {status}: {:?} {:?}",
            c.stdout.all(),
            c.stderr.all()
        );
        no_errors(name, &c);
        let out = c.stdout.all();
        assert!(
            out.iter()
                .any(|l| l.starts_with(&format!("connect mediaserver {other}"))),
            "{name} never reached {other}: {out:?}"
        );
        // Audio flows after the move: from 1.5 s after the signal, each hears the other.
        let (_, hz) = people[1 - i];
        let skip = (termed - spawned).as_secs_f64() + 1.5;
        let db = level(&dir.file(&format!("{name}.wav")), skip, 1.5, hz);
        assert!(
            db >= -35.0,
            "after the drain {name} hears {hz} Hz at only {db:.1} dBFS"
        );
    }
}

#[test]
fn a_server_past_its_high_water_mark_punts_a_conference() {
    let mut split = Split::start();
    // Two users in one conference cross 50 % of 2.
    split.add_media("ms-full", &["--capacity", "2", "--high-water", "50"]);
    let mut ann = Client::spawn(
        split.client,
        "hw",
        "demo",
        "ann",
        &["--tone", "440", "--duration", "5"],
    );
    split.wait_api("/api/conferences", Duration::from_secs(15), |v| {
        v[0]["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    });
    // A roomy server arrives; the conference stays where it runs until bob tips it over.
    split.add_media("ms-roomy", &[]);
    let mut bob = Client::spawn(
        split.client,
        "hw",
        "demo",
        "bob",
        &["--tone", "660", "--duration", "4"],
    );
    split.wait_api("/api/conferences", Duration::from_secs(8), |v| {
        v.as_array().is_some_and(|a| {
            a.iter().any(|c| {
                c["name"] == "hw"
                    && c["server"] == "ms-roomy"
                    && c["participants"].as_array().is_some_and(|p| p.len() == 2)
            })
        })
    });
    for (name, c) in [("ann", &mut ann), ("bob", &mut bob)] {
        let status = c.wait(Duration::from_secs(20));
        assert!(
            status.success(),
            "{name}: {status}: {:?} {:?}",
            c.stdout.all(),
            c.stderr.all()
        );
        no_errors(name, c);
        let out = c.stdout.all();
        let servers: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("connect mediaserver"))
            .collect();
        assert_eq!(
            servers,
            [
                "connect mediaserver ms-full",
                "connect mediaserver ms-roomy"
            ],
            "{name}: {out:?}"
        );
    }
    let log = split.media("ms-full").stderr.all();
    assert!(
        log.iter().any(|l| l.contains("past the high-water mark")),
        "{log:?}"
    );
}

/// With nowhere to punt to, a drain waits (the dispatcher shows the server `draining`)
/// until a second SIGTERM stops it at once.
#[test]
fn a_second_sigterm_stops_a_stuck_drain_at_once() {
    let mut split = Split::start();
    split.add_media("ms-only", &["--drain-timeout", "30"]);
    let _ann = Client::spawn(split.client, "st", "demo", "ann", &["--duration", "10"]);
    split.wait_api("/api/conferences", Duration::from_secs(15), |v| {
        v[0]["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    });
    split.media("ms-only").signal("TERM");
    split.wait_api("/api/servers", Duration::from_secs(5), |v| {
        v[0]["id"] == "ms-only" && v[0]["state"] == "draining"
    });
    let ms = split.media("ms-only");
    ms.stderr
        .wait_for_containing(
            "draining: 1 conferences, 1 users left",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no progress line: {:?}", ms.stderr.all()));
    assert!(
        ms.wait(Duration::from_millis(500)).is_none(),
        "the drain ended with a user still here: {:?}",
        ms.stderr.all()
    );
    let again = Instant::now();
    ms.signal("TERM");
    let status = ms
        .wait(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("a second SIGTERM did not stop it: {:?}", ms.stderr.all()));
    assert!(status.success(), "{status}");
    // Far sooner than the 30 s drain timeout.
    assert!(again.elapsed() < Duration::from_secs(5));
}
