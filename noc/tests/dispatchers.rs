//! Several dispatchers on one real `redis-server`: concurrent first joins agree on one
//! media server, the standby takes over when the active dispatcher is killed, and call
//! resolution merges a conference that ended up on two servers, a punt moves the
//! store's placement, an operator's punt at one dispatcher moves a conference on a server
//! linked to the other (or says honestly that it could not), and the store's scripts
//! keep placements on live servers.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::harness::control::Line;
use testkit::harness::redis::Redis;
use testkit::harness::{config, http_get, http_post, media_server, Proc};

const ANY: &str = "127.0.0.1:0";
const TOKEN: &str = "dispatchers-test-token";

struct Dispatcher {
    id: &'static str,
    proc: Proc,
    client: SocketAddr,
    registry: SocketAddr,
    http: SocketAddr,
}

impl Dispatcher {
    fn start(id: &'static str, redis: &Redis) -> Dispatcher {
        let proc = Proc::spawn(
            "dispatcher",
            &[
                "--config",
                &config("dispatcher.toml"),
                "--listen",
                ANY,
                "--registry",
                ANY,
                "--http",
                ANY,
                "--id",
                id,
                "--store",
                &redis.url(),
                "--admin-token",
                TOKEN,
            ],
        );
        Dispatcher {
            id,
            client: proc.addr("dispatcher"),
            registry: proc.addr("registry"),
            http: proc.addr("http"),
            proc,
        }
    }

    fn servers(&self) -> Vec<Value> {
        let body = http_get(self.http, "/api/servers");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the capacity table has every one of `ids` in communication.
    fn wait_servers(&self, ids: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.servers();
            let ready = ids.iter().all(|id| {
                s.iter()
                    .any(|r| r["id"] == *id && r["in_communication"] == true)
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw {ids:?}: {s:#?}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client address -> server id, from the capacity table.
    fn server_at(&self, addr: SocketAddr) -> String {
        self.servers()
            .iter()
            .find(|r| r["client_addr"] == addr.to_string())
            .and_then(|r| r["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }
}

/// A join at a dispatcher (or the switch): the `dispatch` line's address and ticket, or
/// the line that came instead.
fn join(at: SocketAddr, conference: &str, user: &str) -> Result<(SocketAddr, String), String> {
    let mut c = Line::try_connect(at, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let greeting = c.read().unwrap_or_default();
    if !greeting.starts_with("connect\t") {
        return Err(format!("greeting {greeting:?}"));
    }
    c.try_send(&format!("join\t{conference}\tdemo\t{user}\tmode=reflect"))
        .map_err(|e| e.to_string())?;
    let line = c.read().unwrap_or_default();
    c.send("endsession");
    match line.split('\t').collect::<Vec<_>>().as_slice() {
        ["dispatch", addr, ticket, ..] => Ok((addr.parse().unwrap(), ticket.to_string())),
        _ => Err(line),
    }
}

/// A member at a media server holding its control connection open.
fn member(addr: SocketAddr, conference: &str, user: &str, ticket: &str) -> Line {
    let mut m =
        Line::try_connect(addr, Duration::from_millis(200)).expect("media server reachable");
    m.send(&format!(
        "join\t{conference}\tdemo\t{user}\tmode=reflect\tticket={ticket}"
    ));
    m.wait_line("accept\t", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{user} not accepted at {addr}"));
    m
}

/// Two dispatchers, each with one media server linked, both seeing both servers.
fn cluster(redis: &Redis) -> (Dispatcher, Dispatcher, Proc, Proc) {
    let d1 = Dispatcher::start("d1", redis);
    let d2 = Dispatcher::start("d2", redis);
    let m1 = media_server("ms-1", &[d1.registry, d2.registry], &[]);
    let m2 = media_server("ms-2", &[d2.registry, d1.registry], &[]);
    d1.wait_servers(&["ms-1", "ms-2"]);
    d2.wait_servers(&["ms-1", "ms-2"]);
    // Each sees its own server as linked and the other's as a row from Redis.
    for (d, own, other) in [(&d1, "ms-1", "ms-2"), (&d2, "ms-2", "ms-1")] {
        let rows = d.servers();
        let remote = |id: &str| {
            rows.iter()
                .find(|r| r["id"] == id)
                .map(|r| r["remote"].clone())
        };
        assert_eq!(remote(own), Some(Value::Bool(false)), "{}: {rows:#?}", d.id);
        assert_eq!(
            remote(other),
            Some(Value::Bool(true)),
            "{}: {rows:#?}",
            d.id
        );
    }
    (d1, d2, m1, m2)
}

#[test]
fn concurrent_first_joins_at_two_dispatchers_land_on_one_server() {
    let Some(redis) = Redis::start() else { return };
    let (d1, d2, _m1, _m2) = cluster(&redis);
    // Each dispatcher breaks the tie between two empty servers at random, so over
    // eight conferences their proposals differ (all but surely) and the store decides.
    for k in 0..8 {
        let conf = format!("race-{k}");
        let conf = conf.as_str();
        let joins: Vec<_> = (0..50)
            .map(|i| {
                let at = if i % 2 == 0 { d1.client } else { d2.client };
                let conf = conf.to_owned();
                std::thread::spawn(move || join(at, &conf, &format!("u{i}")))
            })
            .collect();
        let landed: Vec<SocketAddr> = joins
            .into_iter()
            .map(|j| j.join().unwrap().expect("dispatched").0)
            .collect();
        assert_eq!(landed.len(), 50);
        assert!(
            landed.iter().all(|a| *a == landed[0]),
            "{conf} split across servers: {landed:?}"
        );
        let server = d1.server_at(landed[0]);
        assert_eq!(redis.cmd(&["GET", &format!("noc:conf:{conf}")]), server);
    }
}

#[test]
fn killing_the_active_dispatcher_lets_the_standby_serve_within_3_s() {
    let Some(redis) = Redis::start() else { return };
    let (d1, d2, _m1, _m2) = cluster(&redis);
    let deadline = Instant::now() + Duration::from_secs(10);
    let active = loop {
        match redis.cmd(&["GET", "noc:lease"]).as_str() {
            "d1" => break "d1",
            "d2" => break "d2",
            _ => assert!(Instant::now() < deadline, "nobody took the lease"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (dead, standby) = if active == "d1" { (d1, d2) } else { (d2, d1) };
    let switch = Proc::spawn(
        "dispatcher",
        &[
            "--switch",
            ANY,
            "--backends",
            &format!("{},{}", dead.client, standby.client),
        ],
    );
    let switch_addr = switch.addr("switch");
    let (before, _) = join(switch_addr, "steady", "ann").expect("served before the kill");

    drop(dead.proc); // SIGKILL
    let killed = Instant::now();
    let mut served = None;
    let mut leased = None;
    let mut n = 0;
    while (served.is_none() || leased.is_none()) && killed.elapsed() < Duration::from_secs(5) {
        n += 1;
        if served.is_none() && join(switch_addr, &format!("new-{n}"), "bob").is_ok() {
            served = Some(killed.elapsed());
        }
        if leased.is_none() && redis.cmd(&["GET", "noc:lease"]) == standby.id {
            leased = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("after the kill: new join served in {served:?}, lease taken in {leased:?}");
    let limit = Duration::from_secs(3);
    assert!(
        served.is_some_and(|t| t < limit),
        "new joins served after {served:?}"
    );
    assert!(
        leased.is_some_and(|t| t < limit),
        "standby took the lease after {leased:?}"
    );
    // The running conference keeps its server: the placement lives in the store.
    let (after, _) = join(switch_addr, "steady", "cat").expect("served after the kill");
    assert_eq!(after, before);
}

#[test]
fn call_resolution_merges_a_conference_running_on_two_servers() {
    let Some(redis) = Redis::start() else { return };
    let (d1, d2, _m1, _m2) = cluster(&redis);
    // ann is placed through d1 on ms-1, the server linked to d1, so d2 never hears of
    // the conference (the placement is pinned in the store first).
    redis.cmd(&["SET", "noc:conf:dup", "ms-1", "PX", "10000"]);
    let (x_addr, ticket) = join(d1.client, "dup", "ann").expect("dispatched");
    let mut ann = member(x_addr, "dup", "ann", &ticket);
    assert_eq!(d1.server_at(x_addr), "ms-1");
    let y = "ms-2";
    // The store loses the placement (as on a Redis failover) and the conference is
    // placed again elsewhere: d2 has never seen it, so it asks the store.
    redis.cmd(&["SET", "noc:conf:dup", y]);
    let (y_addr, t1) = join(d2.client, "dup", "bob").expect("dispatched");
    let (y_addr2, t2) = join(d2.client, "dup", "cat").expect("dispatched");
    assert_ne!(y_addr, x_addr, "the duplicate must be on the other server");
    assert_eq!(y_addr2, y_addr);
    let _bob = member(y_addr, "dup", "bob", &t1);
    let _cat = member(y_addr, "dup", "cat", &t2);
    // The active dispatcher finds dup on both and moves the smaller side (ann) over.
    let moved = ann
        .wait_line("dispatch\t", Duration::from_secs(6))
        .expect("ann was dispatched to the larger side");
    let to: SocketAddr = moved.split('\t').nth(1).unwrap().parse().unwrap();
    assert_eq!(to, y_addr, "{moved}");
    assert_eq!(redis.cmd(&["GET", "noc:conf:dup"]), y);
}

#[test]
fn joins_are_still_placed_while_redis_is_down() {
    let Some(redis) = Redis::start() else { return };
    let (d1, d2, _m1, _m2) = cluster(&redis);
    drop(redis);
    // Each claim fails fast (the store's calls have a timeout, and `join` gives up after
    // 5 s), and the join is placed from the dispatcher's own tables instead.
    for (i, d) in [&d1, &d2].into_iter().enumerate() {
        let placed = join(d.client, &format!("offline-{i}"), "ann");
        assert!(placed.is_ok(), "{}: {placed:?}", d.id);
    }
}

#[test]
fn a_punt_moves_the_stores_placement_to_its_target() {
    let Some(redis) = Redis::start() else { return };
    let (d1, _d2, _m1, _m2) = cluster(&redis);
    redis.cmd(&["SET", "noc:conf:pun", "ms-1", "PX", "10000"]);
    let (x_addr, ticket) = join(d1.client, "pun", "ann").expect("dispatched");
    let mut ann = member(x_addr, "pun", "ann", &ticket);
    assert_eq!(d1.server_at(x_addr), "ms-1");
    let (code, body) = http_post(d1.http, "/api/admin/conferences/pun/punt", TOKEN, "");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["detail"]["to"], "ms-2", "{body}");
    ann.wait_line("dispatch\t", Duration::from_secs(5))
        .expect("ann was dispatched to the punt's target");
    // The placement follows on the store loop's next turn (every 250 ms).
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis.cmd(&["GET", "noc:conf:pun"]) != "ms-2" {
        assert!(
            Instant::now() < deadline,
            "placement still {}",
            redis.cmd(&["GET", "noc:conf:pun"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A member's `dispatch` line: where to go, with which ticket.
fn dispatched(m: &mut Line, who: &str) -> (SocketAddr, String) {
    let line = m
        .wait_line("dispatch\t", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{who} was not dispatched"));
    let f: Vec<&str> = line.split('\t').collect();
    (f[1].parse().unwrap(), f[2].to_owned())
}

/// Waits until `key` in Redis holds a value containing `text`.
fn wait_redis(redis: &Redis, key: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !redis.cmd(&["GET", key]).contains(text) {
        assert!(
            Instant::now() < deadline,
            "{key} never held {text}: {}",
            redis.cmd(&["GET", key])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_operators_punt_at_one_dispatcher_moves_a_conference_linked_to_the_other() {
    let Some(redis) = Redis::start() else { return };
    let (d1, d2, _m1, _m2) = cluster(&redis);
    let ms1 = d1.servers().iter().find(|r| r["id"] == "ms-1").unwrap()["client_addr"]
        .as_str()
        .unwrap()
        .parse::<SocketAddr>()
        .unwrap();
    // `far` runs on ms-2, linked to d2; ann came through d1 (which placed her there from
    // the store) and bob through d2.
    redis.cmd(&["SET", "noc:conf:far", "ms-2", "PX", "10000"]);
    let (at, t1) = join(d1.client, "far", "ann").expect("dispatched");
    let (at2, t2) = join(d2.client, "far", "bob").expect("dispatched");
    assert_eq!((d1.server_at(at), at2), ("ms-2".into(), at));
    let mut ann = member(at, "far", "ann", &t1);
    let mut bob = member(at, "far", "bob", &t2);
    let (code, body) = http_post(d1.http, "/api/admin/conferences/far/punt", TOKEN, "");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            &v["detail"]["from"],
            &v["detail"]["to"],
            &v["detail"]["dispatched"]
        ),
        (&Value::from("ms-2"), &Value::from("ms-1"), &Value::from(2)),
        "{body}"
    );
    // Both members are sent to ms-1, and get in there.
    let mut moved = Vec::new();
    for (m, who) in [(&mut ann, "ann"), (&mut bob, "bob")] {
        let (to, ticket) = dispatched(m, who);
        assert_eq!(to, ms1, "{who}");
        moved.push(member(to, "far", who, &ticket));
    }
    // ms-1 is d1's: its table has them there; the store's placement follows.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = http_get(d1.http, "/api/conferences");
        let v: Value = serde_json::from_str(&body).unwrap();
        let there = v.as_array().is_some_and(|a| {
            a.iter().any(|c| {
                c["name"] == "far"
                    && c["server"] == "ms-1"
                    && c["participants"].as_array().is_some_and(|p| p.len() == 2)
            })
        });
        if there {
            break;
        }
        assert!(Instant::now() < deadline, "not on ms-1 at d1: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(redis.cmd(&["GET", "noc:conf:far"]), "ms-1");

    // `near` started through d2 only: d1 has never heard of it and finds it in the
    // servers' rosters in the store.
    redis.cmd(&["SET", "noc:conf:near", "ms-2", "PX", "10000"]);
    let (at, t) = join(d2.client, "near", "cat").expect("dispatched");
    assert_eq!(d2.server_at(at), "ms-2");
    let mut cat = member(at, "near", "cat", &t);
    wait_redis(&redis, "noc:roster:ms-2", "\"near\"");
    let (code, body) = http_post(d1.http, "/api/admin/conferences/near/punt", TOKEN, "");
    assert_eq!(code, 200, "{body}");
    let (to, _) = dispatched(&mut cat, "cat");
    assert_eq!(to, ms1);
}

#[test]
fn a_punt_that_cannot_be_carried_out_is_an_error_not_a_200() {
    let Some(redis) = Redis::start() else { return };
    let (d1, d2, _m1, _m2) = cluster(&redis);
    // No such conference anywhere.
    let (code, body) = http_post(d1.http, "/api/admin/conferences/nowhere/punt", TOKEN, "");
    assert_eq!(code, 404, "{body}");
    // `far` on ms-2 (d2's), known at d1.
    redis.cmd(&["SET", "noc:conf:far", "ms-2", "PX", "10000"]);
    let (at, t) = join(d1.client, "far", "ann").expect("dispatched");
    let mut ann = member(at, "far", "ann", &t);
    // d2 stops answering (SIGSTOP): d1 hands the punt over, waits, and says so.
    d2.proc.signal("STOP");
    let asked = Instant::now();
    let (code, body) = http_post(d1.http, "/api/admin/conferences/far/punt", TOKEN, "");
    let took = asked.elapsed();
    d2.proc.signal("CONT");
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("d2") && body.contains("withdrawn"), "{body}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The withdrawn order is not carried out late, when d2 wakes up.
    assert!(
        ann.wait_line("dispatch\t", Duration::from_secs(2))
            .is_none(),
        "a punt the operator was told failed happened anyway"
    );
    // Redis down: nothing can reach d2.
    drop(redis);
    let (code, body) = http_post(d1.http, "/api/admin/conferences/far/punt", TOKEN, "");
    assert_eq!(code, 503, "{body}");
}

/// The Lua scripts on a real Redis: a placement on a server whose capacity row lives is
/// not taken over, releases go in one call and only free their own.
#[test]
fn the_redis_scripts_keep_placements_on_live_servers() {
    use dispatcher::store::{Store, StoreUrl};
    let Some(redis) = Redis::start() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&StoreUrl::Redis(redis.url())).await.unwrap();
        redis.cmd(&["SET", "noc:server:ms-3", "{}", "PX", "3000"]);
        redis.cmd(&["SET", "noc:conf:c", "ms-3"]);
        assert_eq!(store.replace("c", "ms-3", "ms-1").await.unwrap(), "ms-3");
        redis.cmd(&["DEL", "noc:server:ms-3"]);
        assert_eq!(store.replace("c", "ms-3", "ms-1").await.unwrap(), "ms-1");
        assert_eq!(redis.cmd(&["GET", "noc:conf:c"]), "ms-1");
        redis.cmd(&["SET", "noc:conf:d", "ms-2"]);
        let placed = store
            .placements(&["c".into(), "d".into(), "e".into()])
            .await
            .unwrap();
        assert_eq!(placed, [Some("ms-1".into()), Some("ms-2".into()), None]);
        let released = [
            ("c".to_string(), "ms-1".to_string()),
            ("d".into(), "ms-9".into()),
        ];
        store.release(&released).await.unwrap();
        assert_eq!(redis.cmd(&["GET", "noc:conf:c"]), "nil");
        assert_eq!(redis.cmd(&["GET", "noc:conf:d"]), "ms-2");
    });
}
