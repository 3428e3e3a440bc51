//! The join flow in virtual time against scripted server lines.

use super::*;
use protocol::ServerKind;

const DISP: &str = "127.0.0.1:3450";
const MS1: &str = "127.0.0.1:4001";
const MS2: &str = "127.0.0.1:4002";

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

struct Rig {
    flow: JoinFlow,
    t0: Instant,
    now: Instant,
}

impl Rig {
    fn new() -> Rig {
        let t0 = Instant::now();
        let cfg = FlowConfig::new(DISP, "xyz", "demo", "ann");
        Rig {
            flow: JoinFlow::new(cfg, t0),
            t0,
            now: t0,
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.flow.poll_action()).collect()
    }

    /// The actions, each as a short string, events left out unless `events`.
    fn said(&mut self, events: bool) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Connect { target, .. } => Some(format!("connect {target}")),
                Action::Send(m) => Some(format!("send {}", m.encode().trim_end())),
                Action::Disconnect => Some("disconnect".into()),
                Action::PauseMedia => Some("pause".into()),
                Action::ChannelOffered(o) => Some(format!("offer {} {}", o.kind.as_str(), o.ssrc)),
                Action::Event(e) if events => Some(format!("event {e}")),
                Action::Event(_) => None,
                Action::Finished(r) => Some(format!(
                    "finished {}",
                    r.map_or_else(|e| e.to_string(), |()| "ok".into())
                )),
            })
            .collect()
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.flow.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.flow.handle_timeout(self.now);
        }
        self.now = end;
    }

    fn input(&mut self, i: Input) {
        self.flow.handle(self.now, i);
    }

    fn line(&mut self, l: &str) {
        let m = ServerMsg::parse(l).unwrap();
        self.input(Input::Line(m));
    }

    fn greet(&mut self, kind: ServerKind) {
        self.input(Input::Connected);
        self.input(Input::Line(ServerMsg::Connect {
            kind,
            id: "x".into(),
            version: protocol::VERSION,
        }));
    }

    /// Through the dispatcher to `accept` at MS1.
    fn join(&mut self) {
        assert_eq!(self.said(false), [format!("connect {DISP}")]);
        self.greet(ServerKind::Dispatcher);
        let s = self.said(false);
        assert_eq!(s.len(), 1);
        assert!(s[0].starts_with("send join\txyz\tdemo\tann"), "{s:?}");
        assert!(!s[0].contains("ticket="), "{s:?}");
        self.line(&format!("dispatch\t{MS1}\t100.aa"));
        assert_eq!(
            self.said(false),
            ["send endsession", "disconnect", &format!("connect {MS1}")]
        );
        self.greet(ServerKind::MediaServer);
        let s = self.said(false);
        assert!(s[0].contains("ticket=100.aa"), "{s:?}");
        self.line("accept\txyz\t7");
        self.line("channel\taudio\t127.0.0.1:5000\t111\topus\t42");
        assert_eq!(self.said(false), ["offer audio 42"]);
        assert_eq!(self.flow.phase(), Phase::Joined);
        assert_eq!(self.flow.participant(), Some(7));
    }
}

#[test]
fn joins_declares_its_channel_and_keeps_the_link_alive() {
    let mut r = Rig::new();
    r.join();
    r.flow.declare_channel(
        MediaKind::Audio,
        ChannelAddr::Latch,
        42,
        ChannelOpts::default(),
    );
    assert_eq!(r.said(false), ["send channel\taudio\tlatch\t42"]);
    // One ping a second while the server answers.
    for _ in 0..3 {
        r.advance(ms(1000));
        assert_eq!(r.said(false), ["send ping"]);
        r.line("pong");
    }
    r.flow.leave();
    assert_eq!(
        r.said(false),
        ["send endsession", "disconnect", "finished ok"]
    );
}

#[test]
fn redirects_are_limited() {
    let mut r = Rig::new();
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    r.said(false);
    for i in 0..MAX_REDIRECTS {
        r.line(&format!("dispatch\t{MS1}\t{i}.aa"));
        r.said(false);
        r.greet(ServerKind::MediaServer);
        r.said(false);
    }
    r.line(&format!("dispatch\t{MS2}\t9.aa"));
    let s = r.said(false);
    assert_eq!(
        s.last().unwrap(),
        "finished protocol violation: too many redirects"
    );
}

#[test]
fn rejects_end_the_session_or_fail_over_by_code() {
    // At the dispatcher a refusal is final.
    for (code, exit) in [(401, 2), (429, 2), (503, 2)] {
        let mut r = Rig::new();
        r.said(false);
        r.greet(ServerKind::Dispatcher);
        r.said(false);
        r.line(&format!("reject\t{code}\tno"));
        let acts = r.actions();
        let Some(Action::Finished(Err(e))) = acts.last() else {
            panic!("{acts:?}")
        };
        assert_eq!(e.exit_code(), exit);
        assert!(matches!(e, ClientError::Rejected { code: c, .. } if c.as_u16() == code));
    }
    // A media server that has no room for us (draining): back to the dispatcher.
    let mut r = Rig::new();
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    r.line(&format!("dispatch\t{MS1}\t1.aa"));
    r.greet(ServerKind::MediaServer);
    r.said(false);
    r.line("reject\t503\tserver is draining");
    assert_eq!(r.said(false), ["disconnect"]);
    assert_eq!(r.flow.phase(), Phase::Waiting);
    r.advance(ms(0));
    assert_eq!(
        r.said(true),
        [
            "event reconnect 1 rejected: 503 server is draining",
            &format!("connect {DISP}")
        ]
    );
    // A bad ticket at the media server is final.
    let mut r = Rig::new();
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    r.line(&format!("dispatch\t{MS1}\t1.aa"));
    r.greet(ServerKind::MediaServer);
    r.said(false);
    r.line("reject\t403\tforged");
    let s = r.said(false);
    assert_eq!(s.last().unwrap(), "finished rejected: 403 forged");
}

/// The last `join` the flow sent.
fn last_join(r: &mut Rig) -> String {
    let s = r.said(false);
    s.iter()
        .rev()
        .find(|l| l.starts_with("send join"))
        .unwrap_or_else(|| panic!("no join in {s:?}"))
        .clone()
}

#[test]
fn a_spent_ticket_is_never_sent_again_and_a_new_one_is_fetched() {
    let mut r = Rig::new();
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    r.line(&format!("dispatch\t{MS1}\t1.n1.aa"));
    r.greet(ServerKind::MediaServer);
    assert!(last_join(&mut r).contains("ticket=1.n1.aa"));
    r.line("reject\t410\tthis ticket was already used; ask the dispatcher for a new one");
    assert_eq!(r.said(false), ["disconnect"]);
    assert_eq!(r.flow.phase(), Phase::Waiting);
    r.advance(ms(0));
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    let s = last_join(&mut r);
    assert!(
        !s.contains("ticket="),
        "the dispatcher is asked without the old ticket: {s:?}"
    );
    r.line(&format!("dispatch\t{MS1}\t2.n2.bb"));
    r.greet(ServerKind::MediaServer);
    let s = last_join(&mut r);
    assert!(
        s.contains("ticket=2.n2.bb") && !s.contains("1.n1.aa"),
        "{s:?}"
    );
    r.line("accept\txyz\t4");
    assert_eq!(r.flow.phase(), Phase::Joined);
    // A failover later fetches another ticket again; the used one is not kept.
    r.input(Input::Lost(ClientError::Closed("media server")));
    r.advance(ms(1));
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    let s = last_join(&mut r);
    assert!(!s.contains("ticket="), "{s:?}");
    // At the dispatcher a 410 means nothing special: final, as other refusals there.
    let mut r = Rig::new();
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    r.said(false);
    r.line("reject\t410\tno");
    assert!(matches!(r.actions().last(), Some(Action::Finished(Err(_)))));
}

#[test]
fn fails_over_when_the_media_link_drops_and_says_how_long_it_took() {
    let mut r = Rig::new();
    r.join();
    r.advance(ms(500));
    r.input(Input::Lost(ClientError::Closed("media server")));
    assert_eq!(r.said(false), ["disconnect", "pause"]);
    r.advance(ms(1));
    assert_eq!(
        r.said(true),
        [
            "event reconnect 1 media server closed the connection",
            &format!("connect {DISP}")
        ]
    );
    // The dispatcher is not up yet: retried with a growing backoff.
    r.input(Input::ConnectFailed(ClientError::Connect {
        what: "dispatcher",
        addr: DISP.into(),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    }));
    r.advance(ms(99));
    assert!(r.said(false).is_empty(), "waits at least 100 ms");
    r.advance(ms(30));
    assert_eq!(r.said(false), [format!("connect {DISP}")]);
    r.greet(ServerKind::Dispatcher);
    let s = r.said(false);
    assert!(!s[0].contains("ticket="), "a fresh join: {s:?}");
    r.line(&format!("dispatch\t{MS2}\t2.bb"));
    r.said(false);
    r.greet(ServerKind::MediaServer);
    r.said(false);
    r.line("accept\txyz\t9");
    let s = r.said(true);
    let took = r.now.duration_since(r.t0) - ms(500);
    assert_eq!(
        s,
        [
            "event accept xyz 9",
            &format!("event rejoined xyz after_ms={}", took.as_millis())
        ]
    );
}

#[test]
fn a_silent_media_server_is_taken_for_dead() {
    let mut r = Rig::new();
    r.join();
    // Pings go out, nothing comes back.
    r.advance(ms(3999));
    let s = r.said(false);
    assert_eq!(s, ["send ping", "send ping", "send ping"]);
    r.advance(ms(1));
    let s = r.said(false);
    assert_eq!(s, ["disconnect", "pause", &format!("connect {DISP}")]);
}

#[test]
fn failover_gives_up_after_its_time() {
    let mut r = Rig::new();
    r.join();
    r.input(Input::Lost(ClientError::Closed("media server")));
    for _ in 0..100 {
        r.advance(ms(1000));
        let acts = r.actions();
        if let Some(Action::Finished(Err(_))) = acts.last() {
            assert!(r.now.duration_since(r.t0) > FAILOVER_FOR);
            return;
        }
        r.input(Input::ConnectFailed(ClientError::Connect {
            what: "dispatcher",
            addr: DISP.into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        }));
    }
    panic!("failover never gave up");
}

#[test]
fn a_dispatch_mid_session_moves_to_the_new_server_and_conference() {
    let mut r = Rig::new();
    r.join();
    r.line(&format!("dispatch\t{MS2}\t5.cc\tconference=manager"));
    assert_eq!(
        r.said(false),
        [
            "send endsession",
            "disconnect",
            "pause",
            &format!("connect {MS2}")
        ]
    );
    r.greet(ServerKind::MediaServer);
    let s = r.said(false);
    assert!(
        s[0].starts_with("send join\tmanager\tdemo\tann") && s[0].contains("ticket=5.cc"),
        "{s:?}"
    );
    r.line("accept\tmanager\t3");
    assert_eq!(r.flow.conference(), "manager");
    // A WebSocket dispatch names the server's URL.
    r.line("dispatch\tws://127.0.0.1:8081/ws\t6.dd");
    let s = r.said(false);
    assert_eq!(s.last().unwrap(), "connect ws://127.0.0.1:8081/ws");
}

#[test]
fn without_failover_a_lost_link_ends_the_session() {
    let t0 = Instant::now();
    let mut cfg = FlowConfig::new(DISP, "xyz", "demo", "ann");
    cfg.failover = false;
    let mut f = JoinFlow::new(cfg, t0);
    f.handle(t0, Input::Connected);
    f.handle(t0, Input::Lost(ClientError::Closed("dispatcher")));
    let acts: Vec<Action> = std::iter::from_fn(|| f.poll_action()).collect();
    assert!(matches!(
        acts.last(),
        Some(Action::Finished(Err(ClientError::Closed(_))))
    ));
}

#[test]
fn backoff_doubles_to_a_second() {
    let ms: Vec<u128> = (0..8).map(|a| backoff(a).as_millis()).collect();
    assert_eq!(ms, [0, 100, 200, 400, 800, 1000, 1000, 1000]);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}

#[test]
fn a_refusal_while_joined_answers_one_request_and_the_session_goes_on() {
    let mut r = Rig::new();
    r.join();
    r.flow.send(ClientMsg::Mute {
        participant: 3,
        muted: true,
    });
    assert_eq!(r.said(false), ["send mute\t3\ton"]);
    r.line("reject\t430\tmuting someone else needs a moderator");
    r.line("reject\t431\tchat is limited");
    assert_eq!(
        r.said(true),
        [
            "event reject 430 muting someone else needs a moderator",
            "event reject 431 chat is limited"
        ]
    );
    assert_eq!(r.flow.phase(), Phase::Joined);
    // Keepalive goes on.
    r.advance(ms(1000));
    assert_eq!(r.said(false), ["send ping"]);
    r.line("pong");
    // A refusal the server closes the connection after is the end, not a failover.
    r.line("reject\t409\talready joined");
    r.said(false);
    r.input(Input::Lost(ClientError::Closed("media server")));
    let s = r.said(false);
    assert_eq!(
        s,
        ["disconnect", "finished rejected: 409 already joined"],
        "{s:?}"
    );
}

#[test]
fn being_kicked_ends_the_session_without_failover() {
    let mut r = Rig::new();
    r.join();
    // Someone else's kick is news only.
    r.line("kicked\t8\t2\tspam");
    assert_eq!(r.said(true), ["event kicked 8 by=2 spam"]);
    r.line("kicked\t7\t2\toff topic");
    let acts = r.actions();
    let Some(Action::Finished(Err(e))) = acts.last() else {
        panic!("{acts:?}")
    };
    assert_eq!(e.to_string(), "kicked by 2: off topic");
    assert_eq!(e.exit_code(), 3);
    assert_eq!(r.flow.phase(), Phase::Done);
    // The connection drop that follows changes nothing.
    r.input(Input::Lost(ClientError::Closed("media server")));
    assert!(r.actions().is_empty());
}

#[test]
fn an_ended_conference_ends_the_session_cleanly() {
    let mut r = Rig::new();
    r.join();
    r.line("ended\toperator");
    assert_eq!(
        r.said(true),
        ["event ended by=operator", "disconnect", "finished ok"]
    );
}

#[test]
fn the_moderator_pin_goes_to_the_dispatcher_only() {
    let t0 = Instant::now();
    let mut cfg = FlowConfig::new(DISP, "xyz", "demo", "ann");
    cfg.opts.extra.push(("pin".into(), "4711".into()));
    let mut r = Rig {
        flow: JoinFlow::new(cfg, t0),
        t0,
        now: t0,
    };
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    let s = r.said(false);
    assert!(s[0].contains("\tpin=4711"), "{s:?}");
    r.line(&format!("dispatch\t{MS1}\t100.moderator.aa"));
    r.said(false);
    r.greet(ServerKind::MediaServer);
    let s = r.said(false);
    assert!(s[0].contains("ticket=100.moderator.aa"), "{s:?}");
    assert!(!s[0].contains("pin="), "{s:?}");
}

/// Up to the dispatcher's `join` line of a fresh flow.
fn to_dispatcher_join(r: &mut Rig) {
    r.said(false);
    r.greet(ServerKind::Dispatcher);
    let s = r.said(false);
    assert!(s[0].starts_with("send join\txyz"), "{s:?}");
}

#[test]
fn a_retryable_reject_is_asked_again_after_its_wait_with_jitter() {
    let mut r = Rig::new();
    to_dispatcher_join(&mut r);
    r.line("reject\t480\tretry after 500 ms: media server ms-1 was lost 200 ms ago");
    // Reported as a retry, not as a refusal; the connection is closed.
    let s = r.said(true);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0], "disconnect");
    assert!(
        s[1].starts_with("event retry 1 after_ms=")
            && s[1].ends_with(
                "rejected: 480 retry after 500 ms: media server ms-1 was lost 200 ms ago"
            ),
        "{s:?}"
    );
    let after: u64 = s[1]["event retry 1 after_ms=".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (500..=625).contains(&after),
        "500 ms and up to a quarter of jitter: {after}"
    );
    assert_eq!(r.flow.phase(), Phase::Waiting);
    r.advance(ms(499));
    assert!(r.said(false).is_empty(), "never before the server's wait");
    // (`after_ms` is the wait in whole milliseconds.)
    r.advance(ms(after - 499 + 1));
    // No `reconnect` line: this is no failover.
    assert_eq!(r.said(true), [format!("connect {DISP}")]);
    r.greet(ServerKind::Dispatcher);
    let s = r.said(false);
    assert!(
        s[0].starts_with("send join\txyz") && !s[0].contains("ticket="),
        "{s:?}"
    );
    r.line(&format!("dispatch\t{MS1}\t1.aa"));
    r.said(false);
    r.greet(ServerKind::MediaServer);
    r.said(false);
    r.line("accept\txyz\t4");
    // Accepted: a first join, not a rejoin.
    assert_eq!(r.said(true), ["event accept xyz 4"]);
    assert_eq!(r.flow.phase(), Phase::Joined);
}

#[test]
fn retries_back_off_and_give_up_with_the_reject_after_their_time() {
    let mut r = Rig::new();
    to_dispatcher_join(&mut r);
    let mut waits = Vec::new();
    let mut last = r.now;
    loop {
        r.line(
            "reject\t480\tretry after 300 ms: media server ms-1 is briefly out of communication",
        );
        let acts = r.actions();
        if let Some(Action::Finished(Err(e))) = acts.last() {
            // The reject is final now, and shown as one.
            assert!(matches!(
                e,
                ClientError::Rejected {
                    code: ErrorCode::Retry,
                    ..
                }
            ));
            assert_eq!(e.exit_code(), 2);
            assert!(acts
                .iter()
                .any(|a| matches!(a, Action::Event(Event::Server(ServerMsg::Reject { .. })))));
            assert!(r.now.duration_since(r.t0) > FAILOVER_FOR);
            break;
        }
        assert!(r.now.duration_since(r.t0) <= FAILOVER_FOR + RETRY_BACKOFF_MAX * 2);
        // Wait for the next connect, then answer with the same reject.
        let t = r.flow.poll_timeout().expect("a retry is due");
        waits.push(t.duration_since(last));
        r.advance(t.duration_since(r.now));
        last = r.now;
        r.said(false);
        r.greet(ServerKind::Dispatcher);
        r.said(false);
    }
    // 300 ms, then half as long again each time (with up to a quarter of jitter), at most
    // 5 s.
    assert!(waits.len() >= 6, "{waits:?}");
    for (i, w) in waits.iter().enumerate() {
        let base = retry_backoff(ms(300), i as u32);
        assert!(
            *w >= base && *w <= base + base / 4,
            "wait {i}: {w:?} vs {base:?}"
        );
    }
    assert_eq!(retry_backoff(ms(300), 0), ms(300));
    assert_eq!(retry_backoff(ms(300), 1), ms(450));
    assert_eq!(retry_backoff(ms(300), 2), ms(675));
    assert_eq!(retry_backoff(ms(300), 20), RETRY_BACKOFF_MAX);
    assert_eq!(
        retry_backoff(ms(8000), 3),
        ms(8000),
        "never less than asked"
    );
}

#[test]
fn retries_happen_without_failover_and_spread_by_seed() {
    // loadgen runs without failover; a retryable reject is still retried, and two clients
    // refused together come back at different times.
    let at = |seed: u64| {
        let t0 = Instant::now();
        let mut cfg = FlowConfig::new(DISP, "xyz", "demo", "ann");
        cfg.failover = false;
        cfg.seed = seed;
        let mut f = JoinFlow::new(cfg, t0);
        f.handle(t0, Input::Connected);
        f.handle(
            t0,
            Input::Line(ServerMsg::Connect {
                kind: ServerKind::Dispatcher,
                id: "d".into(),
                version: protocol::VERSION,
            }),
        );
        f.handle(
            t0,
            Input::Line(ServerMsg::retry(ms(1000), "a media server is registering")),
        );
        assert_eq!(f.phase(), Phase::Waiting);
        f.poll_timeout().unwrap().duration_since(t0)
    };
    let times: Vec<Duration> = (1..=8).map(at).collect();
    assert!(
        times.iter().all(|t| *t >= ms(1000) && *t <= ms(1250)),
        "{times:?}"
    );
    let distinct: std::collections::HashSet<_> = times.iter().collect();
    assert!(distinct.len() > 4, "jitter spreads them: {times:?}");
}

#[test]
fn a_retryable_reject_at_the_media_server_goes_back_to_the_dispatcher() {
    let mut r = Rig::new();
    to_dispatcher_join(&mut r);
    r.line(&format!("dispatch\t{MS1}\t1.aa"));
    r.greet(ServerKind::MediaServer);
    r.said(false);
    r.line("reject\t480\tretry after 200 ms: restarting");
    r.advance(ms(300));
    let s = r.said(true);
    assert_eq!(s.first().map(String::as_str), Some("disconnect"), "{s:?}");
    assert!(s[1].starts_with("event retry 1 after_ms="), "{s:?}");
    assert_eq!(s.last().unwrap(), &format!("connect {DISP}"));
}
