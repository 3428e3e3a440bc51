//! End-to-end acceptance of the transcoder path (issue 4): real `noc` and `confclient`
//! processes on 127.0.0.1 in `mode=mix`, audio checked by content with the project's tone
//! detector.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::time::Duration;
use testkit::harness::{Client, Noc, TempDir};

const EXIT_WAIT: Duration = Duration::from_secs(40);

fn samples(path: &str) -> Vec<i16> {
    let (samples, rate) = read_wav(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(rate, 48_000);
    samples
}

/// Level of `hz` in dBFS over `from..to` seconds of a recording.
fn level(samples: &[i16], hz: f64, from: f64, to: f64) -> f64 {
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

fn spawn(noc: &Noc, conf: &str, name: &str, extra: &[&str]) -> Client {
    Client::spawn(
        noc.dispatcher,
        conf,
        "demo",
        name,
        &[&["--mode", "mix"], extra].concat(),
    )
}

fn finish(clients: &mut [Client]) {
    for c in clients {
        let status = c.wait(EXIT_WAIT);
        assert!(
            status.success(),
            "{status}: {:?} {:?}",
            c.stdout.all(),
            c.stderr.all()
        );
    }
}

/// A (440 Hz), B (660 Hz) and C (880 Hz) in `mode=mix`: each WAV holds the other two tones
/// and not its own; `speaking` lines reach the clients.
#[test]
fn mix_minus_each_hears_the_other_two_not_itself() {
    let noc = Noc::start(&[]);
    let dir = TempDir::new("mix3");
    let tones = [("ann", 440.0), ("bob", 660.0), ("cat", 880.0)];
    let mut clients: Vec<Client> = tones
        .iter()
        .map(|(name, hz)| {
            let wav = dir.file(&format!("{name}.wav"));
            spawn(
                &noc,
                "mixroom",
                name,
                &[
                    "--tone",
                    &hz.to_string(),
                    "--record",
                    &wav,
                    "--duration",
                    "7",
                ],
            )
        })
        .collect();
    finish(&mut clients);
    for (i, (name, own)) in tones.iter().enumerate() {
        let s = samples(&dir.file(&format!("{name}.wav")));
        for (other, hz) in tones.iter().filter(|(n, _)| n != name) {
            let db = level(&s, *hz, 2.0, 6.0);
            assert!(db >= -35.0, "{name} hears {other} at only {db:.1} dBFS");
        }
        let own_db = level(&s, *own, 2.0, 6.0);
        assert!(own_db <= -50.0, "{name} hears itself at {own_db:.1} dBFS");
        let out = clients[i].stdout.all();
        assert!(
            out.iter().any(|l| l.starts_with("speaking ")),
            "{name} got no speaking line: {out:?}"
        );
    }
}

/// A talks 0-8 s, B 3-6 s, C 4-8 s (push to talk). In B's recording A's 440 Hz is absent
/// during 3.5-6 s, C's 880 Hz is present during 4.5-6 s, and 440 Hz is back after 6.5 s.
#[test]
fn smart_duplex_timeline() {
    let noc = Noc::start(&[]);
    let dir = TempDir::new("duplex");
    let b_wav = dir.file("b.wav");
    let mut clients = vec![
        spawn(
            &noc,
            "duplex",
            "ann",
            &["--tone", "440", "--talk", "0-8", "--duration", "9.5"],
        ),
        spawn(
            &noc,
            "duplex",
            "bob",
            &[
                "--tone",
                "660",
                "--talk",
                "3-6",
                "--record",
                &b_wav,
                "--duration",
                "9.5",
            ],
        ),
        spawn(
            &noc,
            "duplex",
            "cat",
            &["--tone", "880", "--talk", "4-8", "--duration", "9.5"],
        ),
    ];
    finish(&mut clients);
    let s = samples(&b_wav);
    let a_before = level(&s, 440.0, 1.0, 2.8);
    assert!(a_before >= -35.0, "B hears A before talking: {a_before:.1}");
    let a_during = level(&s, 440.0, 3.5, 6.0);
    assert!(a_during <= -50.0, "B hears A while B talks: {a_during:.1}");
    let c_during = level(&s, 880.0, 4.5, 6.0);
    assert!(
        c_during >= -35.0,
        "B hears C, who began during B's run: {c_during:.1}"
    );
    let a_after = level(&s, 440.0, 6.5, 7.8);
    assert!(
        a_after >= -35.0,
        "A is back for B after B stops: {a_after:.1}"
    );
    let own = level(&s, 660.0, 3.5, 6.0);
    assert!(own <= -50.0, "B hears itself: {own:.1}");
    // B saw speaking on and off for itself (participant ids are in the roster lines).
    let out = clients[1].stdout.all();
    assert!(
        out.iter().filter(|l| l.starts_with("speaking ")).count() >= 4,
        "{out:?}"
    );
}

/// A sender with 30 ms jitter and 5% loss still yields continuous audio at the receiver: no
/// silent gap longer than 60 ms while it talks. Its quality light reaches the others.
#[test]
fn impaired_sender_is_continuous_at_the_receiver() {
    let noc = Noc::start(&[]);
    let dir = TempDir::new("impaired");
    let wav = dir.file("b.wav");
    let mut clients = vec![
        spawn(
            &noc,
            "impaired",
            "ann",
            &[
                "--tone",
                "440",
                "--jitter",
                "30",
                "--loss",
                "5",
                "--duration",
                "7",
            ],
        ),
        spawn(
            &noc,
            "impaired",
            "bob",
            &["--record", &wav, "--duration", "7"],
        ),
    ];
    finish(&mut clients);
    let s = samples(&wav);
    // 20 ms frames from 1.5 s to 5.5 s: a frame whose 440 Hz is below -40 dBFS is silent.
    let frame = 960;
    let (from, to) = (48_000 * 3 / 2, 48_000 * 11 / 2);
    assert!(s.len() >= to, "recording too short: {}", s.len());
    let mut gap = 0;
    let mut worst = 0;
    let mut at = 0.0;
    for (k, chunk) in s[from..to].chunks_exact(frame).enumerate() {
        let db = ToneAnalysis::new(
            chunk,
            48_000,
            Window {
                skip: 0.0,
                duration: 0.0,
                block: 0.02,
            },
        )
        .unwrap()
        .level_db(440.0);
        if db < -40.0 {
            gap += 20;
            if gap > worst {
                worst = gap;
                at = 1.5 + k as f64 * 0.02;
            }
        } else {
            gap = 0;
        }
    }
    assert!(
        worst <= 60,
        "silent gap of {worst} ms ending near {at:.2} s"
    );
    let out = clients[1].stdout.all();
    assert!(
        out.iter().any(|l| l.starts_with("quality ")),
        "no quality line: {out:?}"
    );
}

/// Telephony: a PCMU client and two Opus clients in `mode=mix` hear each other; the PCMU
/// client's channel is G.711 (payload type 0) at 8 kHz, resampled to and from the mix.
#[test]
fn pcmu_and_opus_clients_hear_each_other() {
    let noc = Noc::start(&[]);
    let dir = TempDir::new("pcmu");
    let tones = [
        ("ann", 440.0, "pcmu"),
        ("bob", 660.0, "opus"),
        ("cat", 880.0, "opus"),
    ];
    let mut clients: Vec<Client> = tones
        .iter()
        .map(|(name, hz, codec)| {
            let wav = dir.file(&format!("{name}.wav"));
            spawn(
                &noc,
                "phones",
                name,
                &[
                    "--codec",
                    codec,
                    "--tone",
                    &hz.to_string(),
                    "--record",
                    &wav,
                    "--duration",
                    "7",
                ],
            )
        })
        .collect();
    let ann_channel = clients[0]
        .stdout
        .wait_for("channel audio", Duration::from_secs(15))
        .expect("ann's channel line");
    assert!(ann_channel.contains(" 0 pcmu "), "{ann_channel}");
    finish(&mut clients);
    for (name, own, _) in &tones {
        let s = samples(&dir.file(&format!("{name}.wav")));
        for (other, hz, _) in tones.iter().filter(|(n, _, _)| n != name) {
            let db = level(&s, *hz, 2.0, 6.0);
            assert!(db >= -35.0, "{name} hears {other} at only {db:.1} dBFS");
        }
        let own_db = level(&s, *own, 2.0, 6.0);
        assert!(own_db <= -45.0, "{name} hears itself at {own_db:.1} dBFS");
    }
}

/// G.711 without the mixer is refused: a reflector cannot transcode.
#[test]
fn pcmu_needs_mode_mix() {
    let noc = Noc::start(&[]);
    let mut c = Client::spawn(
        noc.dispatcher,
        "reflectphones",
        "demo",
        "ann",
        &["--codec", "pcmu", "--duration", "2"],
    );
    let status = c.wait(EXIT_WAIT);
    assert!(!status.success());
    assert!(
        c.stdout.all().iter().any(|l| l.starts_with("reject 400")),
        "{:?} {:?}",
        c.stdout.all(),
        c.stderr.all()
    );
}

/// The reflector applies the same smart-duplex rule when forwarding: with push to talk in
/// `mode=reflect`, B (talking 3-6 s) does not get A's run that began at 0 s, and gets it
/// again after B stops; everyone is told who speaks.
#[test]
fn reflect_mode_applies_smart_duplex_when_forwarding() {
    let noc = Noc::start(&[]);
    let dir = TempDir::new("reflectduplex");
    let b_wav = dir.file("b.wav");
    let reflect = |name: &str, extra: &[&str]| {
        Client::spawn(
            noc.dispatcher,
            "rduplex",
            "demo",
            name,
            &[&["--mode", "reflect"], extra].concat(),
        )
    };
    let mut clients = vec![
        reflect(
            "ann",
            &["--tone", "440", "--talk", "0-8", "--duration", "9"],
        ),
        reflect(
            "bob",
            &[
                "--tone",
                "660",
                "--talk",
                "3-6",
                "--record",
                &b_wav,
                "--duration",
                "9",
            ],
        ),
    ];
    finish(&mut clients);
    let s = samples(&b_wav);
    let before = level(&s, 440.0, 1.0, 2.8);
    assert!(before >= -35.0, "B hears A before talking: {before:.1}");
    let during = level(&s, 440.0, 3.5, 6.0);
    assert!(during <= -50.0, "B hears A while B talks: {during:.1}");
    let after = level(&s, 440.0, 6.5, 7.8);
    assert!(after >= -35.0, "A is back for B after B stops: {after:.1}");
    let out = clients[0].stdout.all();
    assert!(
        out.iter()
            .any(|l| l.starts_with("speaking ") && l.ends_with(" on")),
        "{out:?}"
    );
}
