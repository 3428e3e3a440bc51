//! Cascading in the tables, in virtual time: a full server's conference spreads to the
//! server with the most room, linked with every server it runs on; leaves, deletions and
//! lost servers keep the rest of the conference where it is.
use super::*;

const TTL: Duration = Duration::from_secs(30);

fn caps() -> Capabilities {
    Capabilities {
        audio: true,
        reflect: true,
        ..Default::default()
    }
}

fn at(now: Instant) -> Stamp {
    Stamp { now, unix_ms: 0 }
}

/// Three servers with room for `capacity` forwarded members each (`c` a little roomier, so
/// selection is not a coin toss).
fn three(t0: Instant, capacity: u32) -> Tables {
    let mut t = Tables::new();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let total = capacity + i as u32;
        let addr = SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16));
        t.register(t0, 0, id, addr, caps(), total);
        let load = Load {
            unused: total,
            ..Load::default()
        };
        t.report(at(t0), id, load);
    }
    t
}

/// Places and seats one member: (server, links the placement asks for).
fn join(t: &mut Tables, t0: Instant, id: u32) -> (String, Vec<String>) {
    let p = t.place(t0, 0, "town", "demo", Mode::Reflect, TTL).unwrap();
    t.user_joined(at(t0), &p.server, "town", id, &format!("u{id}"), "demo");
    (p.server, p.links.into_iter().map(|l| l.peer).collect())
}

#[test]
fn a_full_server_spreads_the_conference_and_links_every_server_it_runs_on() {
    let t0 = Instant::now();
    let mut t = three(t0, 2);
    let unused = |t: &Tables, id: &str| t.server(id).map(|s| s.unused);
    let mut seats: Vec<(String, Vec<String>)> = (1..=5).map(|i| join(&mut t, t0, i)).collect();
    // c is the roomiest (4): it hosts first; then b (3 > 2), linked with c.
    assert_eq!(
        seats.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["c", "c", "c", "c", "b"]
    );
    assert_eq!(seats[4].1, vec!["c".to_owned()], "b links with c");
    assert!(seats[..4].iter().all(|(_, l)| l.is_empty()));
    // The link is charged before any report counts it, at each end as one more member:
    // b holds one member and its end of the link, c (full) its end too.
    assert_eq!(unused(&t, "b"), Some(3 - 1 - 1));
    assert_eq!(unused(&t, "c"), Some(0));
    seats.push(join(&mut t, t0, 6));
    assert_eq!(seats[5], ("b".to_owned(), Vec::new()), "b's last unit");
    let c = t.conference("town").unwrap();
    assert_eq!(c.server, "c");
    assert_eq!(c.links.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(c.links["b"].len(), 2);
    // The next one needs a third server, linked with both, which pays for both links.
    let (s, mut links) = join(&mut t, t0, 7);
    links.sort();
    assert_eq!(
        (s.as_str(), links),
        ("a", vec!["b".to_owned(), "c".to_owned()])
    );
    assert_eq!(
        unused(&t, "a"),
        Some(0),
        "two link ends and a member on 2 units"
    );
    assert_eq!(unused(&t, "b"), Some(0));
    // Everyone full: the conference's own server takes the overflow, no new link.
    for i in 8..=10 {
        let (s, links) = join(&mut t, t0, i);
        assert!(links.is_empty());
        assert_eq!(s, "c");
    }
}

#[test]
fn leaves_deletions_and_losses_keep_the_rest_of_a_spread_conference() {
    let t0 = Instant::now();
    // Room for 1, 2 and 3: c hosts three, then b takes the fourth.
    let mut t = three(t0, 1);
    for i in 1..=3 {
        assert_eq!(join(&mut t, t0, i).0, "c");
    }
    assert_eq!(join(&mut t, t0, 1).0, "b");
    // A member of the linked server leaves: billed there, the conference stays.
    let stay = t.user_left(5, "b", "town", 1, "u1").expect("a stay on b");
    assert_eq!(stay.server, "b");
    assert_eq!(t.conference("town").unwrap().links["b"].len(), 0);
    // The linked server deletes its room: the link is gone, the conference is not.
    t.conf_deleted(6, "b", "town");
    let c = t.conference("town").unwrap();
    assert!(c.links.is_empty());
    assert_eq!(c.participants.len(), 3);
    // Spread again, then lose c: the linked server carries on.
    assert_eq!(join(&mut t, t0, 8).0, "b");
    let generation = t.server("c").unwrap().generation;
    assert_eq!(t.server_lost(7, "c", generation), 0, "no conference lost");
    let c = t.conference("town").expect("the conference lives on b");
    assert_eq!(c.server, "b");
    assert_eq!(c.participants.len(), 1);
    assert_eq!(t.take_stays().len(), 3, "c's members' stays end with it");
}

#[test]
fn a_spread_conference_is_not_punted_and_a_big_one_is_spread_rather_than_moved() {
    let t0 = Instant::now();
    let mut t = three(t0, 2);
    for i in 1..=4 {
        join(&mut t, t0, i);
    }
    // Four members on c; b has 3 free, less than twice their size: spread, not moved.
    assert!(matches!(
        t.punt(t0, 0, "town", TTL, "c"),
        Err(PlaceError::Spreads(_))
    ));
    join(&mut t, t0, 5);
    assert!(!t.conference("town").unwrap().links.is_empty());
    assert!(matches!(
        t.punt(t0, 0, "town", TTL, "c"),
        Err(PlaceError::Spreads(_))
    ));
}

/// An account's `spread` (members per server) spreads a conference before any server is
/// full: a webinar's audience is fanned out by several servers. Members on their way count,
/// and a server under the mark takes newcomers again.
#[test]
fn an_accounts_spread_seats_that_many_per_server_before_any_is_full() {
    let t0 = Instant::now();
    let mut t = three(t0, 100);
    let webinar = Join {
        spread: 2,
        ..Join::new("town", "demo", Mode::Reflect)
    };
    let mut seats = Vec::new();
    for id in 1..=6 {
        let p = t.place_join(t0, 0, &webinar, TTL).unwrap();
        t.user_joined(at(t0), &p.server, "town", id, &format!("u{id}"), "demo");
        seats.push((p.server, p.links.len()));
    }
    let servers: Vec<&str> = seats.iter().map(|(s, _)| s.as_str()).collect();
    // c is the roomiest, then b, then a: two each, each new one linked with those before.
    assert_eq!(servers, ["c", "c", "b", "b", "a", "a"]);
    let links: Vec<usize> = seats.iter().map(|(_, l)| *l).collect();
    assert_eq!(links, [0, 0, 1, 0, 2, 0]);
    // Dispatched but not yet joined counts: two placements without userjoined, and the
    // server they went to has no room left for a third.
    let mut t = three(t0, 100);
    let first = t.place_join(t0, 0, &webinar, TTL).unwrap().server;
    let second = t.place_join(t0, 0, &webinar, TTL).unwrap().server;
    let third = t.place_join(t0, 0, &webinar, TTL).unwrap().server;
    assert_eq!((first.as_str(), second.as_str()), ("c", "c"));
    assert_ne!(third, "c");
    // Without the setting the same joins stay together.
    let mut t = three(t0, 100);
    let all: Vec<String> = (1..=6).map(|i| join(&mut t, t0, i).0).collect();
    assert!(all.iter().all(|s| s == "c"), "{all:?}");
}
