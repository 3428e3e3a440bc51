//! The store loop's pieces on the memory store: rosters, queued placement changes,
//! the active dispatcher's duties under its lease, merges and claims.

use super::super::ops;
use super::*;
use crate::core::Join;
use crate::store::memory::MemoryStore;
use crate::store::{Cluster, MergeOrder};
use control::{Link, LinkConfig};
use protocol::MsMsg;

#[tokio::test]
async fn a_punt_moves_the_stores_placement_on_the_next_turn() {
    let m = MemoryStore::default();
    let c = Cluster::new(Store::Memory(m.clone()));
    let now = Instant::now();
    m.claim(now, "x", "ms-1", crate::store::CONF_TTL);
    c.punted("x", "ms-2");
    c.flush_placements().await.unwrap();
    assert_eq!(m.placed(Instant::now(), "x").as_deref(), Some("ms-2"));
    // The old server's renewal no longer holds it.
    m.claim(Instant::now(), "x", "ms-1", crate::store::CONF_TTL);
    assert_eq!(m.placed(Instant::now(), "x").as_deref(), Some("ms-2"));
}

#[tokio::test]
async fn releases_go_out_together_and_only_free_their_own() {
    let m = MemoryStore::default();
    let c = Cluster::new(Store::Memory(m.clone()));
    let now = Instant::now();
    m.claim(now, "a", "ms-1", crate::store::CONF_TTL);
    m.claim(now, "b", "ms-2", crate::store::CONF_TTL);
    c.observe(
        "ms-1",
        &MsMsg::ConfDeleted {
            conference: "a".into(),
        },
    );
    c.observe(
        "ms-1",
        &MsMsg::ConfDeleted {
            conference: "b".into(),
        },
    );
    c.flush_placements().await.unwrap();
    assert_eq!(m.placed(Instant::now(), "a"), None);
    assert_eq!(m.placed(Instant::now(), "b").as_deref(), Some("ms-2"));
}

fn roster(id: &str, dispatcher: &str, confs: &[(&str, u32)]) -> Row {
    Row {
        id: id.into(),
        client_addr: "127.0.0.1:1".parse().unwrap(),
        ws_url: None,
        caps: "audio,reflect".into(),
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
        roster: confs.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
    }
}

/// A lease granted `ago` ago: active while `ago` is under its TTL.
fn lease_granted(ago: Duration) -> Lease {
    let now = Instant::now();
    let sent = now
        .checked_sub(ago)
        .expect("the clock is past boot by seconds");
    let mut l = Lease::new(sent, LEASE_TTL);
    l.answered(sent, now, Some(true));
    l
}

#[tokio::test]
async fn a_term_that_ended_pushes_no_merge_order() {
    let rows = [
        roster("ms-1", "d1", &[("c", 1)]),
        roster("ms-2", "d2", &[("c", 3)]),
    ];
    for (ago, pushed) in [(Duration::ZERO, 1), (LEASE_TTL * 2, 0)] {
        let m = MemoryStore::default();
        let store = Store::Memory(m.clone());
        let mut r = Resolver::default();
        // The resolver saw the duplicate while the term ran...
        let running = lease_granted(Duration::ZERO);
        singleton_duties(&store, &running, &mut r, &rows)
            .await
            .unwrap();
        // ...and sweeps again with the lease `ago` old.
        let lease = lease_granted(ago);
        singleton_duties(&store, &lease, &mut r, &rows)
            .await
            .unwrap();
        assert_eq!(m.take_orders("d1").len(), pushed, "lease {ago:?} old");
    }
}

#[tokio::test]
async fn the_sweep_follows_the_stores_placement() {
    // A punt moved `c` to ms-2 (the placement says so) while most clients are
    // still on ms-1: they are sent on to ms-2, not back.
    let rows = [
        roster("ms-1", "d1", &[("c", 5)]),
        roster("ms-2", "d2", &[("c", 1)]),
    ];
    let m = MemoryStore::default();
    m.force(Instant::now(), "c", "ms-2", crate::store::CONF_TTL);
    let store = Store::Memory(m.clone());
    let lease = lease_granted(Duration::ZERO);
    let mut r = Resolver::default();
    for _ in 0..2 {
        singleton_duties(&store, &lease, &mut r, &rows)
            .await
            .unwrap();
    }
    let orders = m.take_orders("d1");
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (orders[0].from.as_str(), orders[0].to.as_str()),
        ("ms-1", "ms-2")
    );
    assert!(m.take_orders("d2").is_empty());
}

/// A dispatcher on `store` whose tables hold `servers`; linked ones get a registry link
/// (a real loopback connection, kept open with the returned links).
async fn service(store: &MemoryStore, servers: &[(&str, bool)]) -> (Service, Vec<Link>) {
    let settings = crate::Settings::new(b"s".to_vec(), vec![crate::Account::new("demo", "D")]);
    let s = Service::new(
        settings,
        None,
        Store::Memory(store.clone()),
        crate::metrics::Metrics::default(),
    );
    let caps = protocol::Capabilities::parse_list("t", "audio,reflect").unwrap();
    let mut links = Vec::new();
    for (i, (id, linked)) in servers.iter().enumerate() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16));
        if *linked {
            let (link, client) = Link::loopback(LinkConfig::client()).await.unwrap();
            // The peer never reads; its socket buffer takes the few lines sent.
            std::mem::forget(client);
            s.register(id, addr, caps, 100, None, link.outbox.clone());
            links.push(link);
        } else {
            s.tables().register(Instant::now(), 0, id, addr, caps, 100);
        }
    }
    (s, links)
}

fn order(from: &str, to: &str) -> MergeOrder {
    MergeOrder {
        conference: "c".into(),
        from: from.into(),
        to: to.into(),
        dispatcher: "disp-1".into(),
    }
}

#[tokio::test]
async fn a_merge_that_sends_nobody_leaves_the_placement_alone() {
    let m = MemoryStore::default();
    m.claim(Instant::now(), "c", "ms-1", crate::store::CONF_TTL);
    // ms-1 is not linked here (the order was meant for another dispatcher)...
    let (s, _links) = service(&m, &[("ms-1", false), ("ms-2", true)]).await;
    ops::merge(&s, &order("ms-1", "ms-2")).await;
    assert_eq!(m.placed(Instant::now(), "c").as_deref(), Some("ms-1"));
    // ...or linked with nobody of the conference on it.
    let (s, _links) = service(&m, &[("ms-1", true), ("ms-2", true)]).await;
    s.cluster.linked("ms-1");
    ops::merge(&s, &order("ms-1", "ms-2")).await;
    assert_eq!(m.placed(Instant::now(), "c").as_deref(), Some("ms-1"));
    // With a participant to move, the placement follows.
    s.cluster.observe(
        "ms-1",
        &MsMsg::UserJoined {
            conference: "c".into(),
            participant: 1,
            name: "ann".into(),
            account: "demo".into(),
        },
    );
    ops::merge(&s, &order("ms-1", "ms-2")).await;
    assert_eq!(m.placed(Instant::now(), "c").as_deref(), Some("ms-2"));
}

/// The placement names ms-3, alive (its row is in the store) but not yet in this
/// dispatcher's tables: the join is not placed here.
#[tokio::test]
async fn a_claim_does_not_take_over_a_live_servers_placement() {
    let m = MemoryStore::default();
    let now = Instant::now();
    let mut row = roster("ms-3", "d2", &[]);
    row.roster.clear();
    m.put_rows(now, RowKind::Capacity, &[row], &[], crate::store::ROW_TTL);
    m.claim(now, "c", "ms-3", crate::store::CONF_TTL);
    let (s, _links) = service(&m, &[("ms-1", true)]).await;
    let j = Join::new("c", "demo", protocol::Mode::Reflect);
    // Still unknown after one row refresh: the server is named, committing fails.
    assert_eq!(s.claim(&j).await.as_deref(), Some("ms-3"));
    assert_eq!(m.placed(Instant::now(), "c").as_deref(), Some("ms-3"));
    assert!(s
        .tables()
        .place_claimed(Instant::now(), 0, &j, "ms-3", Duration::from_secs(30))
        .is_err());
    // Its row merged during the wait: the join goes there.
    let s = Arc::new(s);
    let late = s.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let caps = protocol::Capabilities::parse_list("t", "audio,reflect").unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 4009));
        late.tables()
            .register(Instant::now(), 0, "ms-3", addr, caps, 100);
    });
    assert_eq!(s.claim(&j).await.as_deref(), Some("ms-3"));
    assert!(s.tables().server("ms-3").is_some());
}
