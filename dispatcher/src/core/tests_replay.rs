//! A dispatcher that learns a conference from a roster replay (after a failover) bills it
//! as the one that placed it; a join that finds no server while one may come back is
//! told to retry, and only one that finds none at all that no server exists.
use super::*;

const TTL: Duration = Duration::from_secs(30);

fn caps(video: bool, mix: bool) -> Capabilities {
    Capabilities {
        audio: true,
        video,
        reflect: true,
        mix,
        composite: false,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn acme_policy() -> Policy {
    Policy {
        pools: [("ms-a".to_owned(), "acme".to_owned())].into(),
        ..Policy::default()
    }
}

fn at(now: Instant, unix_ms: u64) -> Stamp {
    Stamp { now, unix_ms }
}

/// A mixed video conference of Acme's, contracted for 3 users, in the `acme` pool.
fn acme_join(conference: &str) -> Join<'_> {
    Join {
        customer: "Acme Corp",
        media: Media::AudioVideo,
        pool: Some("acme"),
        reserved: 3,
        ..Join::new(conference, "acme-1", Mode::Mix)
    }
}

#[test]
fn a_conference_rebuilt_from_a_replay_is_billed_as_the_placing_dispatcher_would() {
    let t0 = Instant::now();
    // The dispatcher that placed it.
    let mut old = Tables::with_policy(acme_policy(), 1);
    old.register(t0, 0, "ms-a", addr(1), caps(true, true), 100);
    old.place_join(t0, 1_000, &acme_join("c"), TTL).unwrap();
    old.user_joined(at(t0, 5_000), "ms-a", "c", 1, "ann", "acme-1");
    old.user_joined(at(t0, 6_000), "ms-a", "c", 2, "bob", "acme-1");
    let unused_old = old.server("ms-a").unwrap().score();
    // The one that took over: it only hears the roster replay, 20 s later.
    let mut new = Tables::with_policy(acme_policy(), 2);
    new.register(t0, 0, "ms-a", addr(1), caps(true, true), 100);
    for (p, name, joined) in [(1, "ann", 5_000), (2, "bob", 6_000)] {
        let seated = Seated {
            customer: "Acme Corp",
            tenant: "acme",
            mode: Mode::Mix,
            media: Media::AudioVideo,
            reserved: 3,
            spread: 2,
            joined_unix_ms: joined,
        };
        new.user_joined_as(
            at(t0, 26_000),
            "ms-a",
            "c",
            p,
            name,
            "acme-1",
            Some(&seated),
        );
    }
    let c = new.conference("c").unwrap();
    assert_eq!(
        (c.mode, c.media, c.tenant.as_str()),
        ("mix", "audio,video", "acme")
    );
    assert_eq!(c.customer, "Acme Corp");
    assert_eq!(c.spread, 2, "the account's spread survives the replay");
    // The server is charged the same: composite units and the contracted reserve.
    assert_eq!(new.server("ms-a").unwrap().score(), unused_old);
    let mut lines = Vec::new();
    for (p, name) in [(1, "ann"), (2, "bob")] {
        let was = old.user_left(65_000, "ms-a", "c", p, name).unwrap();
        let is = new.user_left(65_000, "ms-a", "c", p, name).unwrap();
        assert_eq!(is, was);
        lines.push(crate::usage::line(&is));
    }
    assert_eq!(
        lines[0],
        "{\"account\":\"acme-1\",\"customer\":\"Acme Corp\",\"tenant\":\"acme\",\"conference\":\"c\",\"user\":\"ann\",\"server\":\"ms-a\",\"joined_at\":5.0,\"left_at\":65.0,\"seconds\":60.0,\"media\":\"audio,video\",\"mode\":\"mix\"}\n"
    );
}

#[test]
fn a_replayed_bare_userjoined_keeps_the_first_join_time() {
    let t0 = Instant::now();
    let mut t = Tables::new();
    t.register(t0, 0, "a", addr(1), caps(false, false), 100);
    t.user_joined(at(t0, 5_000), "a", "c", 1, "ann", "demo");
    // The link flapped and the server re-announced ann without options.
    t.user_joined(at(t0, 9_000), "a", "c", 1, "ann", "demo");
    let u = t.user_left(10_000, "a", "c", 1, "ann").unwrap();
    assert_eq!(u.joined_unix_ms, 5_000);
    // A join time from the server's future is clamped to ours.
    let seated = Seated {
        customer: "demo",
        tenant: "",
        mode: Mode::Reflect,
        media: Media::Audio,
        reserved: 0,
        spread: 0,
        joined_unix_ms: 99_000,
    };
    t.user_joined_as(at(t0, 20_000), "a", "d", 1, "bob", "demo", Some(&seated));
    let u = t.user_left(21_000, "a", "d", 1, "bob").unwrap();
    assert_eq!(u.joined_unix_ms, 20_000);
}

#[test]
fn no_server_means_retry_only_while_one_may_come_back() {
    let t0 = Instant::now();
    let mut t = Tables::with_policy(acme_policy(), 3);
    let join = Join::new("c", "demo", Mode::Reflect);
    // Nothing ever registered: no server exists.
    assert_eq!(t.retry_hint(t0, 0, &join), None);
    // One registered, then silent past the 3 s rule but not out: briefly out of
    // communication.
    let g = t.register(t0, 0, "ms-b", addr(2), caps(false, false), 100);
    let later = t0 + Duration::from_secs(4);
    assert_eq!(
        t.place_join(later, 4_000, &join, TTL),
        Err(PlaceError::NoServer("reflect"))
    );
    let hint = t.retry_hint(later, 4_000, &join).unwrap();
    assert!(
        hint.contains("ms-b") && hint.contains("out of communication"),
        "{hint}"
    );
    // It is lost (link closed): it may be restarting, for a while.
    t.server_lost(5_000, "ms-b", g);
    let hint = t.retry_hint(later, 5_000, &join).unwrap();
    assert!(
        hint.contains("ms-b") && hint.contains("restarting"),
        "{hint}"
    );
    let window = COMEBACK.as_millis() as u64;
    assert!(t.retry_hint(later, 5_000 + window - 1, &join).is_some());
    assert_eq!(t.retry_hint(later, 5_000 + window, &join), None);
    // Back: placed again.
    t.register(later, 6_000, "ms-b", addr(2), caps(false, false), 100);
    assert!(t.place_join(later, 6_000, &join, TTL).is_ok());
    // A server lost while draining left on purpose; one of another pool or without the
    // capabilities could not host the join anyway.
    let mut t = Tables::with_policy(acme_policy(), 4);
    let g = t.register(t0, 0, "ms-b", addr(2), caps(false, false), 100);
    t.set_drain(0, "ms-b", true, "ops").unwrap();
    t.server_lost(1_000, "ms-b", g);
    assert_eq!(t.retry_hint(t0, 1_000, &join), None);
    let g = t.register(t0, 0, "ms-a", addr(1), caps(false, true), 100);
    t.server_lost(1_000, "ms-a", g);
    let default_pool = Join {
        pool: Some(DEFAULT_POOL),
        ..join
    };
    assert_eq!(t.retry_hint(t0, 1_000, &default_pool), None);
    let video = Join {
        media: Media::AudioVideo,
        pool: Some("acme"),
        ..join
    };
    assert_eq!(t.retry_hint(t0, 1_000, &video), None);
    assert!(t
        .retry_hint(
            t0,
            1_000,
            &Join {
                pool: Some("acme"),
                ..join
            }
        )
        .is_some());
}
