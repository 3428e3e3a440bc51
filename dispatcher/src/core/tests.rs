//! The tables and selection in virtual time.
use super::*;

const TTL: Duration = Duration::from_secs(30);

fn caps(video: bool) -> Capabilities {
    Capabilities {
        audio: true,
        video,
        reflect: true,
        ..Default::default()
    }
}

fn at(now: Instant) -> Stamp {
    Stamp { now, unix_ms: 0 }
}

fn load(unused: u32, conferences: u32, users: u32) -> Load {
    Load {
        unused,
        conferences,
        users,
        ..Load::default()
    }
}

fn two_servers(t0: Instant) -> Tables {
    let mut t = Tables::new();
    t.register(t0, 0, "a", "127.0.0.1:1".parse().unwrap(), caps(false), 100);
    t.register(t0, 0, "b", "127.0.0.1:2".parse().unwrap(), caps(false), 100);
    t
}

#[test]
fn new_conference_goes_to_greatest_unused_capacity() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    t.report(at(t0), "a", load(40, 3, 60));
    t.report(at(t0), "b", load(90, 1, 10));
    let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    assert_eq!(p.server, "b");
    assert!(p.created);
}

#[test]
fn existing_conference_stays_where_it_runs() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    t.report(at(t0), "a", load(10, 1, 90));
    let first = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    assert_eq!(first.server, "b");
    t.report(at(t0), "b", load(5, 1, 95));
    let again = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    assert_eq!(again.server, "b");
    assert!(!again.created);
}

#[test]
fn reservations_count_before_reports_arrive() {
    // Two servers look equal; the first join's reservation must push the next
    // new conference to the other server, not herd both onto one.
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let p1 = t.place(t0, 0, "one", "demo", Mode::Reflect, TTL).unwrap();
    let p2 = t.place(t0, 0, "two", "demo", Mode::Reflect, TTL).unwrap();
    assert_ne!(p1.server, p2.server);
    // The joins land; unused capacity follows userjoined until the next report.
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        &p1.server,
        "one",
        1,
        "ann",
        "demo",
    );
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        &p2.server,
        "two",
        2,
        "bob",
        "demo",
    );
    let s = t.servers().find(|s| s.id == p1.server).unwrap();
    assert_eq!((s.unused, s.score()), (99, 99));
}

#[test]
fn reservations_expire() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    // A tie: either server may take it.
    let p = t.place(t0, 0, "one", "demo", Mode::Reflect, TTL).unwrap();
    let a = t.servers().find(|s| s.id == p.server).unwrap();
    assert_eq!(a.score(), 99);
    let later = t0 + TTL + Duration::from_secs(1);
    t.report(at(later), "a", load(100, 0, 0));
    t.report(at(later), "b", load(100, 0, 0));
    let a = t.servers().find(|s| s.id == p.server).unwrap();
    assert_eq!(a.score(), 100);
}

#[test]
fn stale_and_incapable_servers_are_skipped() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let later = t0 + Duration::from_secs(5);
    t.report(at(later), "a", load(1, 0, 99));
    // b has more unused capacity but its last report is 5 s old.
    let p = t
        .place(later, 0, "xyz", "demo", Mode::Reflect, TTL)
        .unwrap();
    assert_eq!(p.server, "a");
    // Nobody can mix.
    let e = t
        .place(later, 0, "mixed", "demo", Mode::Mix, TTL)
        .unwrap_err();
    assert_eq!(e, PlaceError::NoServer("mix"));
    // Nobody in communication at all.
    let much_later = t0 + Duration::from_secs(60);
    assert!(t
        .place(much_later, 0, "new", "demo", Mode::Reflect, TTL)
        .is_err());
}

#[test]
fn roster_and_deletion_update_the_conference_table() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 1,
        },
        &p.server,
        "xyz",
        1,
        "ann",
        "demo",
    );
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 2,
        },
        &p.server,
        "xyz",
        2,
        "bob",
        "demo",
    );
    assert_eq!(t.conference("xyz").unwrap().participants.len(), 2);
    t.user_left(3, &p.server, "xyz", 1, "ann");
    t.user_left(4, &p.server, "xyz", 2, "bob");
    assert!(t.conference("xyz").unwrap().participants.is_empty());
    t.conf_deleted(5, &p.server, "xyz");
    assert!(t.conference("xyz").is_none());
    let kinds: Vec<_> = t.events().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "registered",
            "registered",
            "created",
            "userjoined",
            "userjoined",
            "userleft",
            "userleft",
            "confdeleted"
        ]
    );
}

#[test]
fn a_stale_link_cannot_remove_its_successor() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let old = t.servers().find(|s| s.id == "a").unwrap().generation;
    let new = t.register(t0, 0, "a", "127.0.0.1:9".parse().unwrap(), caps(true), 50);
    t.server_lost(0, "a", old);
    assert!(t.servers().any(|s| s.id == "a" && s.generation == new));
    t.server_lost(0, "a", new);
    assert!(!t.servers().any(|s| s.id == "a"));
}

#[test]
fn losing_a_server_forgets_its_conferences() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    let g = t.servers().find(|s| s.id == p.server).unwrap().generation;
    t.server_lost(0, &p.server, g);
    let again = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    assert_ne!(again.server, p.server);
    assert!(again.created);
}

#[test]
fn drained_and_maintained_servers_get_no_new_conferences() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    t.set_drain(0, "a", true, "ops").unwrap();
    for i in 0..3 {
        let p = t
            .place(t0, 0, &format!("c{i}"), "demo", Mode::Reflect, TTL)
            .unwrap();
        assert_eq!(p.server, "b");
    }
    let a = t.server("a").unwrap();
    assert_eq!(a.state(t0, 0), ServerState::Draining);
    // A maintenance window in the future does not count yet; inside it, it does.
    t.set_drain(0, "a", false, "ops").unwrap();
    t.set_maintenance(0, "b", Some((100, 200)), "ops").unwrap();
    assert_eq!(t.server("b").unwrap().state(t0, 99), ServerState::InService);
    assert_eq!(
        t.server("b").unwrap().state(t0, 150),
        ServerState::Maintenance
    );
    let p = t
        .place(t0, 150_000, "during", "demo", Mode::Reflect, TTL)
        .unwrap();
    assert_eq!(p.server, "a");
    t.set_maintenance(0, "b", None, "ops").unwrap();
    assert_eq!(
        t.server("b").unwrap().state(t0, 150),
        ServerState::InService
    );
    assert!(t.set_drain(0, "zz", true, "ops").is_err());
    let who: Vec<_> = t
        .events()
        .filter(|e| !e.who.is_empty())
        .map(|e| (e.kind, e.who.as_str()))
        .collect();
    assert_eq!(
        who,
        [
            ("drain", "ops"),
            ("undrain", "ops"),
            ("maintenance", "ops"),
            ("maintenance", "ops")
        ]
    );
}

#[test]
fn silent_servers_are_out() {
    let t0 = Instant::now();
    let t = two_servers(t0);
    let a = t.server("a").unwrap();
    assert!(a.in_communication(t0));
    assert!(!a.in_communication(t0 + REPORT_FRESH));
    assert_eq!(a.state(t0 + OUT_AFTER, 0), ServerState::Out);
}

#[test]
fn punt_moves_the_conference_and_reserves_for_everyone() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        &p.server,
        "xyz",
        1,
        "ann",
        "demo",
    );
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        &p.server,
        "xyz",
        2,
        "bob",
        "demo",
    );
    let punt = t.punt(t0, 0, "xyz", TTL, "ops").unwrap();
    assert_eq!(punt.from, p.server);
    assert_ne!(punt.to.server, p.server);
    assert_eq!(
        punt.participants,
        [(1, "ann".to_owned()), (2, "bob".to_owned())]
    );
    // New joins follow the conference; the old server's leaves do not touch it.
    assert_eq!(
        t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL)
            .unwrap()
            .server,
        punt.to.server
    );
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        &punt.to.server,
        "xyz",
        1,
        "ann",
        "demo",
    );
    t.user_left(0, &p.server, "xyz", 1, "ann");
    t.conf_deleted(0, &p.server, "xyz");
    let c = t.conference("xyz").unwrap();
    assert_eq!(c.server, punt.to.server);
    assert_eq!(c.participants.len(), 1);
    // Nowhere to go: refused.
    t.set_drain(0, &p.server, true, "ops").unwrap();
    assert_eq!(
        t.punt(t0, 0, "xyz", TTL, "ops").unwrap_err(),
        PlaceError::NoServer("reflect")
    );
    assert!(t.punt(t0, 0, "nope", TTL, "ops").is_err());
}

#[test]
fn history_keeps_fifteen_minutes() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    for i in 0..1000u64 {
        t.report(
            Stamp {
                now: t0,
                unix_ms: i * 1000,
            },
            "a",
            load(90, 1, 10),
        );
    }
    let h = &t.server("a").unwrap().history;
    assert_eq!(h.len(), HISTORY);
    assert_eq!(h.back().unwrap().unix_s, 999);
    assert_eq!(h.back().unwrap().used, 10);
}

#[test]
fn contact_changes_are_logged_once() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    t.tick(t0, 0);
    t.tick(t0 + REPORT_FRESH, 0);
    t.tick(t0 + REPORT_FRESH + Duration::from_millis(500), 0);
    t.report(at(t0 + Duration::from_secs(4)), "a", load(100, 0, 0));
    t.tick(t0 + Duration::from_secs(4), 0);
    t.tick(t0 + OUT_AFTER, 0);
    let log: Vec<(&str, &str)> = t
        .events()
        .filter(|e| e.kind != "registered")
        .map(|e| (e.kind, e.server.as_str()))
        .collect();
    // a's report at 4 s is stale again at 10 s; b, silent since 3 s, is out at 10 s.
    let expected = [
        ("silent", "a"),
        ("silent", "b"),
        ("contact", "a"),
        ("silent", "a"),
        ("state", "b"),
    ];
    assert_eq!(log, expected);
}

#[test]
fn punts_and_moves_keep_the_conference_mode() {
    let t0 = Instant::now();
    let mut t = Tables::new();
    let mix = Capabilities {
        audio: true,
        reflect: true,
        mix: true,
        ..Default::default()
    };
    t.register(t0, 0, "a", "127.0.0.1:1".parse().unwrap(), mix, 100);
    t.register(t0, 0, "b", "127.0.0.1:2".parse().unwrap(), mix, 100);
    let p = t.place(t0, 0, "room", "demo", Mode::Mix, TTL).unwrap();
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        &p.server,
        "room",
        1,
        "ann",
        "demo",
    );
    let seat = t.participant("room", 1).unwrap();
    assert_eq!((seat.name.as_str(), seat.mode), ("ann", Mode::Mix));
    let punt = t.punt(t0, 0, "room", TTL, "ops").unwrap();
    assert_eq!(punt.mode, Mode::Mix);
    assert_eq!(t.conference("room").unwrap().parsed_mode(), Mode::Mix);
}

#[test]
fn empty_conferences_are_forgotten_once_nobody_is_on_the_way() {
    let t0 = Instant::now();
    let mut t = two_servers(t0);
    let p = t.place(t0, 0, "lost", "demo", Mode::Reflect, TTL).unwrap();
    let later = |s: u64| t0 + Duration::from_secs(s);
    let linked = |_: &str| true;
    // The reservation is still on its way: the conference stays.
    t.sweep_empty(later(10), 0, linked);
    assert!(t.conference("lost").is_some());
    // Someone joined and left, and the server's `confdeleted` never came.
    t.user_joined(at(later(11)), &p.server, "lost", 1, "ann", "demo");
    t.sweep_empty(later(40), 0, linked);
    assert!(t.conference("lost").is_some(), "a member is present");
    t.user_left(0, &p.server, "lost", 1, "ann");
    // A server linked to another dispatcher: not ours to forget.
    t.sweep_empty(later(42), 0, |_| false);
    assert!(t.conference("lost").is_some());
    t.sweep_empty(later(42), 0, linked);
    assert!(
        t.conference("lost").is_none(),
        "empty and nobody on the way"
    );
    assert!(t
        .events()
        .any(|e| e.kind == "expired" && e.conference == "lost"));
    // The next join creates it afresh.
    t.report(at(later(43)), "a", load(100, 0, 0));
    t.report(at(later(43)), "b", load(100, 0, 0));
    assert!(
        t.place(later(43), 0, "lost", "demo", Mode::Reflect, TTL)
            .unwrap()
            .created
    );
}
