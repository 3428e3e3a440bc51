//! Will-call tickets with real processes (issue 16, "a ticket is single-use, within its
//! expiry, for one user"): a ticket the dispatcher handed out is good for one accepted
//! join, only in the join of the user it names; a copy is refused with `reject 410`, the
//! member already in stays, and the user's next ticket works.

use std::net::SocketAddr;
use std::time::Duration;
use testkit::harness::control::Line;
use testkit::harness::{http_get, Noc};

/// Asks the dispatcher for `name` in `conf`: the media server's address and the ticket.
fn dispatch(noc: &Noc, conf: &str, name: &str) -> (SocketAddr, String) {
    let mut d = Line::connect(noc.dispatcher);
    d.expect("connect");
    d.send(&format!("join\t{conf}\tdemo\t{name}\tmode=reflect"));
    let f = d.expect("dispatch");
    (f[1].parse().unwrap(), f[2].clone())
}

/// Joins `conf` at a media server as `name` with `ticket`: the connection and the answer
/// (`accept` or `reject` fields).
fn join_at(addr: SocketAddr, conf: &str, name: &str, ticket: &str) -> (Line, Vec<String>) {
    let mut m = Line::connect(addr);
    m.expect("connect");
    m.send(&format!(
        "join\t{conf}\tdemo\t{name}\tmode=reflect\tticket={ticket}"
    ));
    loop {
        let l = m.read().expect("an answer to the join");
        if l.starts_with("accept\t") || l.starts_with("reject\t") {
            let f = l.split('\t').map(str::to_owned).collect();
            return (m, f);
        }
    }
}

fn refused_ticket_used(noc: &Noc, addr: SocketAddr) -> u64 {
    let id = &noc
        .media_servers
        .iter()
        .find(|(_, a)| *a == addr)
        .expect("a media server of this noc")
        .0;
    let url = &noc.metrics.iter().find(|(i, _)| i == id).unwrap().1;
    let http: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let body = http_get(http, "/metrics");
    body.lines()
        .find(|l| l.starts_with("noc_media_joins_refused_ticket_used"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ticket-used counter in {body}"))
}

#[test]
fn a_ticket_is_single_use_and_for_its_user_only() {
    let noc = Noc::start(&[]);
    let (addr, ann_ticket) = dispatch(&noc, "once", "ann");

    // Ann's ticket presented as Bob: refused, and not used up by the attempt.
    let (_, r) = join_at(addr, "once", "bob", &ann_ticket);
    assert_eq!(r[..2], ["reject", "403"], "{r:?}");
    let (mut ann, r) = join_at(addr, "once", "ann", &ann_ticket);
    assert_eq!(r[0], "accept", "{r:?}");

    // The same ticket again, on another connection: refused with its own code.
    let (mut copy, r) = join_at(addr, "once", "ann", &ann_ticket);
    assert_eq!(r[..2], ["reject", "410"], "{r:?}");
    assert!(r[2].contains("already used"), "{r:?}");
    assert_eq!(copy.read(), None, "the refused connection is closed");
    // ... and as Bob it is still Ann's.
    let (_, r) = join_at(addr, "once", "bob", &ann_ticket);
    assert_eq!(r[..2], ["reject", "403"], "{r:?}");

    // Ann, already in, is untouched: she still talks to the server and sees newcomers.
    ann.send("ping");
    ann.expect("pong");
    let (baddr, bob_ticket) = dispatch(&noc, "once", "bob");
    assert_eq!(baddr, addr, "one conference, one server");
    assert_ne!(bob_ticket, ann_ticket);
    let (_bob, r) = join_at(addr, "once", "bob", &bob_ticket);
    assert_eq!(r[0], "accept", "{r:?}");
    assert!(ann
        .wait_line("adduser\t", Duration::from_secs(5))
        .is_some_and(|l| l.ends_with("\tbob")));

    // Ann leaves; her old ticket still cannot bring her back, a new one can (also in the
    // same second: no two tickets are alike).
    ann.send("endsession");
    drop(ann);
    let (_, r) = join_at(addr, "once", "ann", &ann_ticket);
    assert_eq!(r[..2], ["reject", "410"], "{r:?}");
    let (again_addr, fresh) = dispatch(&noc, "once", "ann");
    assert_ne!(fresh, ann_ticket);
    assert_eq!(again_addr, addr);
    let (_ann2, r) = join_at(addr, "once", "ann", &fresh);
    assert_eq!(r[0], "accept", "{r:?}");

    assert!(
        refused_ticket_used(&noc, addr) >= 2,
        "the refusals are counted"
    );
}
