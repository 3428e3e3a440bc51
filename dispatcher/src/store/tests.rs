//! The store's placement rules on the memory store, in virtual time: two dispatchers'
//! tables disagree on the best server, and the store still puts everyone on one.

use super::memory::MemoryStore;
use super::*;
use crate::core::{Join, Load, RemoteRow, Stamp, Tables};
use protocol::Mode;

const T: Duration = Duration::from_secs(30);

fn caps() -> Capabilities {
    Capabilities {
        audio: true,
        reflect: true,
        mix: true,
        ..Default::default()
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Tables with ms-1 and ms-2, where `favourite` has more unused capacity (and the other
/// room enough for the joins of these tests, which would otherwise spread).
fn tables(now: Instant, favourite: &str) -> Tables {
    let mut t = Tables::new();
    for (i, id) in ["ms-1", "ms-2"].into_iter().enumerate() {
        t.register(now, 0, id, addr(4000 + i as u16), caps(), 100);
        let unused = if id == favourite { 90 } else { 50 };
        let load = Load {
            unused,
            ..Default::default()
        };
        t.report(Stamp { now, unix_ms: 0 }, id, load);
    }
    t
}

/// The dispatcher's join path with the store: choose, claim, commit the winner.
fn join(t: &mut Tables, store: &MemoryStore, now: Instant, conf: &str) -> String {
    let j = Join::new(conf, "demo", Mode::Reflect);
    let proposal = t.choose(now, 0, &j).expect("a server can host it");
    let winner = store.claim(now, conf, &proposal, CONF_TTL);
    t.place_claimed(now, 0, &j, &winner, T)
        .expect("winner is in the table")
        .server
}

#[test]
fn two_dispatchers_disagreeing_on_the_best_server_place_on_one() {
    let now = Instant::now();
    let store = MemoryStore::default();
    let mut a = tables(now, "ms-1");
    let mut b = tables(now, "ms-2");
    // Each would pick its own favourite on its own.
    let j = Join::new("c", "demo", Mode::Reflect);
    assert_eq!(a.choose(now, 0, &j).unwrap(), "ms-1");
    assert_eq!(b.choose(now, 0, &j).unwrap(), "ms-2");
    // Interleaved first joins: whoever claims first wins, for everyone.
    let first = join(&mut b, &store, now, "c");
    for i in 0..25 {
        assert_eq!(join(&mut a, &store, now, "c"), first, "join {i} at a");
        assert_eq!(join(&mut b, &store, now, "c"), first, "join {i} at b");
    }
    assert_eq!(first, "ms-2");
    assert_eq!(a.conference("c").unwrap().server, "ms-2");
}

#[test]
fn a_placement_expires_unless_kept_and_release_only_frees_its_own() {
    let t0 = Instant::now();
    let store = MemoryStore::default();
    assert_eq!(store.claim(t0, "c", "ms-1", CONF_TTL), "ms-1");
    assert_eq!(store.claim(t0, "c", "ms-2", CONF_TTL), "ms-1");
    // Kept alive by the holder's refresh...
    let t1 = t0 + CONF_TTL - Duration::from_secs(1);
    assert_eq!(store.claim(t1, "c", "ms-1", CONF_TTL), "ms-1");
    assert_eq!(store.placed(t0 + CONF_TTL, "c").as_deref(), Some("ms-1"));
    // ...and gone once nobody refreshes it.
    assert_eq!(store.placed(t1 + CONF_TTL, "c"), None);
    assert_eq!(store.claim(t1 + CONF_TTL, "c", "ms-2", CONF_TTL), "ms-2");
    // Release by a server that does not hold it does nothing.
    let t2 = t1 + CONF_TTL;
    store.release(t2, "c", "ms-1");
    assert_eq!(store.placed(t2, "c").as_deref(), Some("ms-2"));
    store.release(t2, "c", "ms-2");
    assert_eq!(store.placed(t2, "c"), None);
}

#[test]
fn replace_takes_over_a_dead_servers_placement_once() {
    let now = Instant::now();
    let store = MemoryStore::default();
    store.claim(now, "c", "dead", CONF_TTL);
    // Two dispatchers find `dead` gone and propose different servers: one wins.
    assert_eq!(store.replace(now, "c", "dead", "ms-1", CONF_TTL), "ms-1");
    assert_eq!(store.replace(now, "c", "dead", "ms-2", CONF_TTL), "ms-1");
    // Replacing an absent placement claims it.
    assert_eq!(store.replace(now, "d", "dead", "ms-2", CONF_TTL), "ms-2");
}

#[test]
fn a_placement_on_a_server_that_left_the_table_is_refused() {
    let now = Instant::now();
    let store = MemoryStore::default();
    let mut t = tables(now, "ms-1");
    let j = Join::new("c", "demo", Mode::Reflect);
    let winner = store.claim(now, "c", "ms-9", CONF_TTL);
    assert!(t.place_claimed(now, 0, &j, &winner, T).is_err());
}

#[test]
fn rows_expire_and_housekeeping_drops_their_index_entries() {
    let t0 = Instant::now();
    let store = MemoryStore::default();
    let row = Row {
        id: "ms-1".into(),
        client_addr: addr(4000),
        ws_url: None,
        caps: caps().to_string(),
        total: 100,
        unused: 80,
        conferences: 1,
        users: 20,
        cpu_pct: 0.0,
        pps: 0,
        loss_pct: 0.0,
        reported_unix_ms: 0,
        draining: false,
        maintenance: None,
        dispatcher: "d1".into(),
        roster: [("c".to_string(), 20)].into(),
    };
    let cap = RowKind::Capacity;
    store.put_rows(t0, cap, std::slice::from_ref(&row), &[], ROW_TTL);
    assert_eq!(store.rows(t0, cap), vec![row.clone()]);
    assert!(store.rows(t0, RowKind::Roster).is_empty());
    assert_eq!(store.housekeep(t0), 0);
    assert!(store.rows(t0 + ROW_TTL, cap).is_empty());
    assert_eq!(store.housekeep(t0 + ROW_TTL), 1);
    // A lost link removes both its rows at once.
    store.put_rows(t0, cap, std::slice::from_ref(&row), &[], ROW_TTL);
    store.put_rows(
        t0,
        RowKind::Roster,
        std::slice::from_ref(&row),
        &[],
        ROW_TTL,
    );
    store.put_rows(t0, cap, &[], &["ms-1".into()], ROW_TTL);
    assert!(store.rows(t0, cap).is_empty());
    assert!(store.rows(t0, RowKind::Roster).is_empty());
}

#[test]
fn merge_orders_reach_only_their_dispatcher() {
    let store = MemoryStore::default();
    let o = MergeOrder {
        conference: "c".into(),
        from: "ms-1".into(),
        to: "ms-2".into(),
        dispatcher: "d1".into(),
    };
    store.push_order(&o);
    assert!(store.take_orders("d2").is_empty());
    assert_eq!(store.take_orders("d1"), vec![o]);
    assert!(store.take_orders("d1").is_empty());
}

fn remote(id: &str, unused: u32, age: Duration) -> RemoteRow {
    RemoteRow {
        id: id.into(),
        client_addr: addr(5000),
        ws_url: None,
        caps: caps(),
        total: 100,
        load: Load {
            unused,
            ..Default::default()
        },
        age,
        draining: false,
        maintenance: None,
    }
}

#[test]
fn remote_rows_join_selection_with_their_age() {
    let now = Instant::now();
    let at = Stamp { now, unix_ms: 0 };
    let mut t = tables(now, "ms-1");
    let j = Join::new("c", "demo", Mode::Reflect);
    // A fresher, emptier remote server wins selection...
    assert!(t.merge_remote(at, &remote("ms-9", 100, Duration::from_millis(500))));
    assert!(!t.merge_remote(at, &remote("ms-9", 100, Duration::from_millis(500))));
    assert_eq!(t.choose(now, 0, &j).unwrap(), "ms-9");
    // ...but once its report is older than 3 s (the row keeps coming, unchanged), it
    // does not, while the local servers keep reporting.
    let later = now + Duration::from_secs(4);
    for id in ["ms-1", "ms-2"] {
        let load = Load {
            unused: 10,
            ..Default::default()
        };
        t.report(
            Stamp {
                now: later,
                unix_ms: 0,
            },
            id,
            load,
        );
    }
    let at = Stamp {
        now: later,
        unix_ms: 0,
    };
    t.merge_remote(at, &remote("ms-9", 100, Duration::from_millis(4500)));
    assert_ne!(t.choose(later, 0, &j).unwrap(), "ms-9");
    t.drop_remote(0, "ms-9");
    assert!(t.server("ms-9").is_none());
}

#[test]
fn store_urls_parse() {
    assert_eq!("memory".parse::<StoreUrl>(), Ok(StoreUrl::Memory));
    assert_eq!(
        "redis://127.0.0.1:6379".parse::<StoreUrl>(),
        Ok(StoreUrl::Redis("redis://127.0.0.1:6379".into()))
    );
    assert!("postgres://x".parse::<StoreUrl>().is_err());
}

fn live_row(id: &str, dispatcher: &str) -> Row {
    Row {
        id: id.into(),
        client_addr: addr(4009),
        ws_url: None,
        caps: caps().to_string(),
        total: 100,
        unused: 100,
        conferences: 0,
        users: 0,
        cpu_pct: 0.0,
        pps: 0,
        loss_pct: 0.0,
        reported_unix_ms: 0,
        draining: false,
        maintenance: None,
        dispatcher: dispatcher.into(),
        roster: Default::default(),
    }
}

/// A server that registered at another dispatcher a moment ago is unknown here, but
/// alive: its placements are not taken over until its row is gone.
#[test]
fn replace_is_refused_while_the_old_servers_row_lives() {
    let now = Instant::now();
    let store = MemoryStore::default();
    store.put_rows(
        now,
        RowKind::Capacity,
        &[live_row("ms-3", "d2")],
        &[],
        ROW_TTL,
    );
    assert_eq!(store.claim(now, "c", "ms-3", CONF_TTL), "ms-3");
    assert_eq!(store.replace(now, "c", "ms-3", "ms-1", CONF_TTL), "ms-3");
    assert_eq!(store.placed(now, "c").as_deref(), Some("ms-3"));
    // Its row expired: the server is gone, take over.
    let later = now + ROW_TTL;
    assert_eq!(store.replace(later, "c", "ms-3", "ms-1", CONF_TTL), "ms-1");
    // Or its dispatcher removed it when the link closed.
    store.claim(later, "d", "ms-4", CONF_TTL);
    store.put_rows(
        later,
        RowKind::Capacity,
        &[live_row("ms-4", "d2")],
        &[],
        ROW_TTL,
    );
    assert_eq!(store.replace(later, "d", "ms-4", "ms-1", CONF_TTL), "ms-4");
    store.put_rows(later, RowKind::Capacity, &[], &["ms-4".into()], ROW_TTL);
    assert_eq!(store.replace(later, "d", "ms-4", "ms-1", CONF_TTL), "ms-1");
}
