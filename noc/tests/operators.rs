//! Operator actions with real media servers and real clients: a punted conference moves
//! to the other server with its audio, and a moved user lands in the manager's conference.

use client::tone::{read_wav, ToneAnalysis, Window};
use std::time::Duration;
use testkit::harness::{http_post, Client, Noc, TempDir};

const TOKEN: &str = "operators-test-token";

#[test]
fn punt_and_move_carry_clients_without_errors() {
    let noc = Noc::start(&["--admin-token", TOKEN]);
    let dir = TempDir::new("operators");
    let tones = [("ann", "440"), ("bob", "660"), ("cat", "880")];
    let mut clients: Vec<Client> = tones
        .iter()
        .map(|(n, hz)| {
            let wav = dir.file(&format!("{n}.wav"));
            Client::spawn(
                noc.dispatcher,
                "xyz",
                "demo",
                n,
                &["--tone", hz, "--record", &wav, "--duration", "12"],
            )
        })
        .collect();
    let three = |v: &serde_json::Value| {
        v.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "xyz"))
            .and_then(|c| c["participants"].as_array())
            .is_some_and(|p| p.len() == 3)
    };
    noc.wait_api("/api/conferences", Duration::from_secs(15), three);
    let first = noc.server_of("xyz").unwrap();

    // Punt: the conference moves with everyone in it.
    let (status, body) = http_post(noc.http, "/api/admin/conferences/xyz/punt", TOKEN, "");
    assert_eq!(status, 200, "{body}");
    let moved = noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        three(v)
            && v.as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "xyz" && c["server"] != first.as_str())
    });
    let second = moved
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "xyz")
        .unwrap()["server"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, first);

    // Move bob to the manager's conference.
    let people = noc.api("/api/conferences/xyz/participants");
    let bob = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bob")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let (status, body) = http_post(
        noc.http,
        "/api/admin/move",
        TOKEN,
        &format!(r#"{{"conference":"xyz","participant":{bob},"to":"manager"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    noc.wait_api("/api/conferences", Duration::from_secs(10), |v| {
        let a = v.as_array().unwrap();
        let names = |c: &str| -> Vec<String> {
            a.iter()
                .find(|x| x["name"] == c)
                .map(|x| {
                    x["participants"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        names("manager") == ["bob"] && names("xyz").len() == 2
    });

    for c in &mut clients {
        let status = c.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "{status}: {:?} {:?}",
            c.stdout.all(),
            c.stderr.all()
        );
    }
    let out = clients[1].stdout.all();
    assert!(
        out.iter()
            .any(|l| l.starts_with("dispatch ") && l.ends_with("conference=manager")),
        "{out:?}"
    );
    // Late in the call, ann hears cat on the new server, and no longer bob.
    let (samples, rate) = read_wav(dir.file("ann.wav")).unwrap();
    let late = ToneAnalysis::new(
        &samples,
        rate,
        Window {
            skip: 8.5,
            duration: 2.5,
            block: 0.1,
        },
    )
    .expect("long enough");
    assert!(
        late.level_db(880.0) >= -35.0,
        "ann lost cat after the punt: {:.1}",
        late.level_db(880.0)
    );
    assert!(
        late.level_db(660.0) <= -50.0,
        "ann still hears bob after his move: {:.1}",
        late.level_db(660.0)
    );
    assert!(late.level_db(440.0) <= -50.0);
    let (samples, rate) = read_wav(dir.file("bob.wav")).unwrap();
    let late = ToneAnalysis::new(
        &samples,
        rate,
        Window {
            skip: 8.5,
            duration: 2.5,
            block: 0.1,
        },
    )
    .expect("long enough");
    assert!(
        late.level_db(880.0) <= -50.0,
        "bob alone in the manager's room hears cat"
    );
}
