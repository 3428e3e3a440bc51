//! Selection table tests: one per rule of the pipeline (filter, score with the ramp-up
//! charge, video rationing, pick with two random choices) and per contract term, in
//! virtual time.
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

/// Tables with `servers` as (id, capabilities, total), each reported with `unused`.
fn tables(t0: Instant, policy: Policy, servers: &[(&str, Capabilities, u32)]) -> Tables {
    let mut t = Tables::with_policy(policy, 7);
    for (i, (id, c, total)) in servers.iter().enumerate() {
        t.register(t0, 0, id, addr(4000 + i as u16), *c, *total);
    }
    t
}

fn report(t: &mut Tables, now: Instant, id: &str, unused: u32) {
    t.report(
        Stamp { now, unix_ms: 0 },
        id,
        Load {
            unused,
            ..Load::default()
        },
    );
}

fn audio<'a>(conference: &'a str) -> Join<'a> {
    Join {
        pool: Some(DEFAULT_POOL),
        ..Join::new(conference, "demo", Mode::Reflect)
    }
}

fn video<'a>(conference: &'a str) -> Join<'a> {
    Join {
        media: Media::AudioVideo,
        ..audio(conference)
    }
}

fn place(t: &mut Tables, now: Instant, join: &Join) -> Result<String, PlaceError> {
    t.place_join(now, 0, join, TTL).map(|p| p.server)
}

#[test]
fn filter_skips_draining_stale_incapable_and_other_pools() {
    let t0 = Instant::now();
    let pools = HashMap::from([("c".to_owned(), "acme".to_owned())]);
    let mut t = tables(
        t0,
        Policy {
            pools,
            ..Policy::default()
        },
        &[
            ("a", caps(false, false), 100),
            ("b", caps(false, true), 100),
            ("c", caps(false, true), 100),
        ],
    );
    let req = |need, pool| Request {
        need,
        pool,
        units: 1,
        exclude: None,
    };
    let srv = |t: &Tables, id: &str| t.server(id).unwrap().clone();
    let mix = needs(Mode::Mix, Media::Audio);
    let plain = needs(Mode::Reflect, Media::Audio);
    let default = Some(DEFAULT_POOL);
    assert_eq!(
        select::filter(&srv(&t, "a"), &req(mix, None), t0, 0),
        Err(Skip::Incapable)
    );
    assert_eq!(
        select::filter(&srv(&t, "b"), &req(mix, default), t0, 0),
        Ok(())
    );
    assert_eq!(
        select::filter(&srv(&t, "c"), &req(mix, default), t0, 0),
        Err(Skip::OtherPool)
    );
    assert_eq!(
        select::filter(&srv(&t, "c"), &req(mix, Some("acme")), t0, 0),
        Ok(())
    );
    t.set_drain(0, "b", true, "ops").unwrap();
    assert_eq!(
        select::filter(&srv(&t, "b"), &req(plain, None), t0, 0),
        Err(Skip::NotInService(ServerState::Draining))
    );
    // A report just under 3 s old still counts; at 3 s the server is not in communication.
    let almost = t0 + REPORT_FRESH - Duration::from_millis(1);
    assert_eq!(
        select::filter(&srv(&t, "a"), &req(plain, None), almost, 0),
        Ok(())
    );
    assert_eq!(
        select::filter(&srv(&t, "a"), &req(plain, None), t0 + REPORT_FRESH, 0),
        Err(Skip::Stale)
    );
    // And the tables place accordingly: a mix conference can only go to b, which drains.
    assert_eq!(
        place(
            &mut t,
            t0,
            &Join {
                mode: Mode::Mix,
                ..audio("m")
            }
        ),
        Err(PlaceError::NoServer("mix"))
    );
    t.set_drain(0, "b", false, "ops").unwrap();
    assert_eq!(
        place(
            &mut t,
            t0,
            &Join {
                mode: Mode::Mix,
                ..audio("m")
            }
        )
        .as_deref(),
        Ok("b")
    );
}

#[test]
fn a_video_join_needs_a_video_server() {
    let t0 = Instant::now();
    let mut t = tables(t0, Policy::default(), &[("a", caps(false, true), 500)]);
    assert_eq!(
        place(&mut t, t0, &video("v")),
        Err(PlaceError::NoServer("reflect"))
    );
    assert!(needs(Mode::Reflect, Media::AudioVideo).video);
    assert!(!needs(Mode::Reflect, Media::Audio).video);
}

#[test]
fn maintenance_window_keeps_new_conferences_away_while_open() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("b", caps(false, true), 50)],
    );
    t.set_maintenance(0, "a", Some((1_000, 2_000)), "ops")
        .unwrap();
    let at = |unix_s: u64| unix_s * 1000;
    // Before the window a (more unused) wins; inside it b; after it a again.
    let go = |t: &mut Tables, conf: &str, unix_s: u64| {
        t.place_join(t0, at(unix_s), &audio(conf), TTL)
            .unwrap()
            .server
    };
    assert_eq!(go(&mut t, "before", 999), "a");
    assert_eq!(go(&mut t, "during", 1_000), "b");
    assert_eq!(go(&mut t, "late", 1_999), "b");
    assert_eq!(go(&mut t, "after", 2_000), "a");
}

#[test]
fn ramp_up_charge_is_in_capacity_units() {
    // b looks 2 units emptier than a. A video conference's first join costs 3 units, so
    // its reservation must put b behind a for the next conference: a charge of one per
    // reservation would leave b ahead and herd both onto it.
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(true, true), 100), ("b", caps(true, true), 102)],
    );
    assert_eq!(place(&mut t, t0, &video("v1")).as_deref(), Ok("b"));
    assert_eq!(t.server("b").unwrap().score(), 99);
    assert_eq!(place(&mut t, t0, &video("v2")).as_deref(), Ok("a"));
    // The join lands and the charge becomes the server's own bookkeeping; a report
    // stating the true load keeps the same score.
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        "b",
        "v1",
        1,
        "ann",
        "demo",
    );
    assert_eq!(t.server("b").unwrap().score(), 99);
    report(&mut t, t0, "b", 99);
    assert_eq!(t.server("b").unwrap().score(), 99);
    // Later joins of the conference are charged too, until they are reported.
    assert_eq!(place(&mut t, t0, &video("v1")).as_deref(), Ok("b"));
    assert_eq!(t.server("b").unwrap().score(), 96);
}

#[test]
fn reservations_not_reported_expire() {
    let t0 = Instant::now();
    let mut t = tables(t0, Policy::default(), &[("a", caps(true, true), 100)]);
    place(&mut t, t0, &video("v")).unwrap();
    assert_eq!(t.server("a").unwrap().score(), 97);
    report(&mut t, t0 + TTL, "a", 100);
    assert_eq!(t.server("a").unwrap().score(), 100);
}

#[test]
fn audio_goes_to_a_while_video_goes_to_c() {
    // a: audio only, less unused; c: video capable, much more unused.
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("c", caps(true, true), 400)],
    );
    report(&mut t, t0, "a", 40);
    assert_eq!(place(&mut t, t0, &audio("talk")).as_deref(), Ok("a"));
    assert_eq!(place(&mut t, t0, &video("show")).as_deref(), Ok("c"));
    assert_eq!(place(&mut t, t0, &audio("chat")).as_deref(), Ok("a"));
}

#[test]
fn audio_spills_onto_video_servers_when_the_others_are_full() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("c", caps(true, true), 400)],
    );
    report(&mut t, t0, "a", 1);
    assert_eq!(place(&mut t, t0, &audio("one")).as_deref(), Ok("a"));
    // a's last unit is now reserved: no room left there.
    assert_eq!(place(&mut t, t0, &audio("two")).as_deref(), Ok("c"));
}

#[test]
fn cost_model_prices_mode_and_media() {
    let cost = CostModel {
        audio_forward: 1,
        video_forward: 5,
        mix: 3,
        mix_video: 9,
        composite: 11,
        ..CostModel::default()
    };
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy {
            cost,
            ..Policy::default()
        },
        &[("a", caps(true, true), 1000)],
    );
    let joins = [
        (audio("r"), 1i64),
        (video("rv"), 5),
        (
            Join {
                mode: Mode::Mix,
                ..audio("m")
            },
            3,
        ),
        (
            Join {
                mode: Mode::Mix,
                ..video("mv")
            },
            9,
        ),
    ];
    let mut expected = 1000;
    for (join, units) in joins {
        place(&mut t, t0, &join).unwrap();
        expected -= units;
        assert_eq!(
            t.server("a").unwrap().score(),
            expected,
            "{}",
            join.conference
        );
        assert_eq!(
            i64::from(t.conference(join.conference).unwrap().units_per_user),
            units
        );
    }
}

/// A running recording is charged its `recording` units from the `recording on` line until
/// its `recording off` (the server's reports count it meanwhile).
#[test]
fn a_recording_is_charged_its_units() {
    let cost = CostModel {
        recording: 7,
        ..CostModel::default()
    };
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy {
            cost,
            ..Policy::default()
        },
        &[("a", caps(true, true), 100)],
    );
    report(&mut t, t0, "a", 100);
    t.recording(1_000, "a", "c", true, "/r/c.mkv", 0.0);
    assert_eq!(t.server("a").unwrap().unused, 93);
    t.recording(2_000, "a", "c", false, "/r/c.mkv", 1.0);
    assert_eq!(t.server("a").unwrap().unused, 100);
}

#[test]
fn a_contracted_conference_consumes_its_reserve_with_one_user() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("b", caps(false, true), 95)],
    );
    let contracted = Join {
        reserved: 10,
        ..audio("board")
    };
    assert_eq!(place(&mut t, t0, &contracted).as_deref(), Ok("a"));
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 0,
        },
        "a",
        "board",
        1,
        "ceo",
        "demo",
    );
    // The media server reports the one user it has; the dispatcher still holds ten.
    report(&mut t, t0, "a", 99);
    assert_eq!(t.server("a").unwrap().score(), 90);
    // So the next conference goes to b, which has more room than a's 90.
    assert_eq!(place(&mut t, t0, &audio("other")).as_deref(), Ok("b"));
    // Joins up to the reserve cost nothing more; the eleventh is charged.
    for i in 2..=10 {
        assert_eq!(place(&mut t, t0, &contracted).as_deref(), Ok("a"));
        t.user_joined(
            Stamp {
                now: t0,
                unix_ms: 0,
            },
            "a",
            "board",
            i,
            "x",
            "demo",
        );
    }
    report(&mut t, t0, "a", 90);
    assert_eq!(t.server("a").unwrap().score(), 90);
    place(&mut t, t0, &contracted).unwrap();
    assert_eq!(t.server("a").unwrap().score(), 89);
    // Everyone leaves: the reserve is held while the conference exists, then released.
    for i in 1..=10 {
        t.user_left(0, "a", "board", i, "x");
    }
    report(&mut t, t0 + TTL, "a", 100);
    assert_eq!(t.server("a").unwrap().score(), 90);
    t.conf_deleted(0, "a", "board");
    assert_eq!(t.server("a").unwrap().score(), 100);
}

#[test]
fn two_random_choices_spread_ties() {
    let t0 = Instant::now();
    let ids = ["a", "b", "c", "d"];
    let servers: Vec<_> = ids.iter().map(|id| (*id, caps(false, true), 100)).collect();
    let mut t = tables(t0, Policy::default(), &servers);
    let mut counts = HashMap::new();
    for _ in 0..400 {
        // `choose` does not commit, so every decision sees the same four-way tie.
        *counts
            .entry(t.choose(t0, 0, &audio("x")).unwrap())
            .or_insert(0) += 1;
    }
    for id in ids {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(n >= 60, "{id} chosen {n} of 400: {counts:?}");
    }
    // The caller's seed makes it replayable.
    let replay = |seed| {
        let mut t = Tables::with_policy(Policy::default(), seed);
        for (i, id) in ids.iter().enumerate() {
            t.register(t0, 0, id, addr(i as u16), caps(false, true), 100);
        }
        (0..20)
            .map(|_| t.choose(t0, 0, &audio("x")).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(replay(3), replay(3));
    // A strictly better score is never lost to the tie break.
    for id in ["a", "b", "d"] {
        report(&mut t, t0, id, 99);
    }
    for _ in 0..20 {
        assert_eq!(t.choose(t0, 0, &audio("x")).unwrap(), "c");
    }
}

#[test]
fn tenant_pools_hold_their_conferences() {
    let t0 = Instant::now();
    let pools = HashMap::from([("acme-1".to_owned(), "acme".to_owned())]);
    let mut t = tables(
        t0,
        Policy {
            pools,
            ..Policy::default()
        },
        &[
            ("acme-1", caps(false, true), 10),
            ("big", caps(false, true), 1000),
        ],
    );
    assert_eq!(t.pool_of("acme-1"), "acme");
    assert_eq!(t.pool_of("big"), DEFAULT_POOL);
    let acme = |c| Join {
        pool: Some("acme"),
        ..audio(c)
    };
    assert_eq!(place(&mut t, t0, &acme("a1")).as_deref(), Ok("acme-1"));
    assert_eq!(place(&mut t, t0, &audio("d1")).as_deref(), Ok("big"));
    assert_eq!(t.conference("a1").unwrap().tenant, "acme");
    // The pool does not spill into the default pool when its servers cannot serve.
    t.set_drain(0, "acme-1", true, "ops").unwrap();
    assert_eq!(
        place(&mut t, t0, &acme("a2")),
        Err(PlaceError::NoServer("reflect"))
    );
    // A running conference is joined where it runs.
    assert_eq!(place(&mut t, t0, &acme("a1")).as_deref(), Ok("acme-1"));
}

#[test]
fn a_customer_over_its_maximum_is_refused() {
    let t0 = Instant::now();
    let mut t = tables(t0, Policy::default(), &[("a", caps(false, true), 100)]);
    let j = |c| Join {
        customer: "Acme",
        max_users: Some(3),
        ..audio(c)
    };
    // Dispatched users count before they arrive, across the customer's conferences.
    place(&mut t, t0, &j("one")).unwrap();
    place(&mut t, t0, &j("one")).unwrap();
    place(&mut t, t0, &j("two")).unwrap();
    let over = PlaceError::OverLimit {
        customer: "Acme".into(),
        max: 3,
    };
    assert_eq!(place(&mut t, t0, &j("three")), Err(over.clone()));
    // Another customer is not affected.
    place(&mut t, t0, &audio("other")).unwrap();
    let stamp = Stamp {
        now: t0,
        unix_ms: 0,
    };
    t.user_joined(stamp, "a", "one", 1, "ann", "acme");
    t.user_joined(stamp, "a", "one", 2, "bob", "acme");
    t.user_joined(stamp, "a", "two", 3, "cy", "acme");
    assert_eq!(t.customer_users("Acme", t0), 3);
    assert_eq!(place(&mut t, t0, &j("one")), Err(over));
    t.user_left(0, "a", "one", 2, "bob");
    assert_eq!(place(&mut t, t0, &j("one")).as_deref(), Ok("a"));
    // A lost server takes its users off the count.
    let g = t.server("a").unwrap().generation;
    t.server_lost(0, "a", g);
    assert_eq!(t.customer_users("Acme", t0), 0);
}

#[test]
fn a_leave_gives_the_stay_for_the_usage_log() {
    let t0 = Instant::now();
    let mut t = tables(t0, Policy::default(), &[("a", caps(true, true), 100)]);
    let j = Join {
        customer: "Acme",
        pool: Some("default"),
        ..video("v")
    };
    place(&mut t, t0, &j).unwrap();
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 5_000,
        },
        "a",
        "v",
        7,
        "ann",
        "demo",
    );
    let u = t.user_left(65_000, "a", "v", 7, "ann").unwrap();
    assert_eq!(
        u,
        Usage {
            account: "demo".into(),
            customer: "Acme".into(),
            tenant: "default".into(),
            conference: "v".into(),
            user: "ann".into(),
            server: "a".into(),
            joined_unix_ms: 5_000,
            left_unix_ms: 65_000,
            media: "audio,video",
            mode: "reflect",
        }
    );
    // A second leave of the same participant is not billed twice.
    assert_eq!(t.user_left(66_000, "a", "v", 7, "ann"), None);
}

#[test]
fn punted_and_lost_stays_are_billed_too() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("b", caps(false, true), 90)],
    );
    assert_eq!(place(&mut t, t0, &audio("c")).as_deref(), Ok("a"));
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 1_000,
        },
        "a",
        "c",
        1,
        "ann",
        "demo",
    );
    let punt = t.punt(t0, 2_000, "c", TTL, "ops").unwrap();
    assert_eq!(punt.to.server, "b");
    // a's leave comes after the conference table moved to b: still billed, on a.
    let u = t.user_left(3_000, "a", "c", 1, "ann").unwrap();
    assert_eq!(
        (u.server.as_str(), u.joined_unix_ms, u.left_unix_ms),
        ("a", 1_000, 3_000)
    );
    assert_eq!(t.user_left(3_500, "a", "c", 1, "ann"), None);
    // Ann rejoins on b, which then dies: no `userleft` will come, the stay ends there.
    t.user_joined(
        Stamp {
            now: t0,
            unix_ms: 4_000,
        },
        "b",
        "c",
        9,
        "ann",
        "demo",
    );
    assert!(t.take_stays().is_empty());
    let g = t.server("b").unwrap().generation;
    t.server_lost(10_000, "b", g);
    let stays = t.take_stays();
    assert_eq!(stays.len(), 1);
    assert_eq!(
        (
            stays[0].server.as_str(),
            stays[0].joined_unix_ms,
            stays[0].left_unix_ms
        ),
        ("b", 4_000, 10_000)
    );
    assert!(t.take_stays().is_empty());
}

#[test]
fn a_punted_members_stay_ends_when_the_old_server_is_lost_before_its_leave() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("b", caps(false, true), 90)],
    );
    assert_eq!(place(&mut t, t0, &audio("c")).as_deref(), Ok("a"));
    let at = |unix_ms| Stamp { now: t0, unix_ms };
    t.user_joined(at(1_000), "a", "c", 1, "ann", "demo");
    t.punt(t0, 2_000, "c", TTL, "ops").unwrap();
    // a dies before its `userleft` for ann: her stay on a ends with it.
    let g = t.server("a").unwrap().generation;
    t.server_lost(5_000, "a", g);
    let stays = t.take_stays();
    assert_eq!(stays.len(), 1, "{stays:?}");
    assert_eq!(
        (stays[0].server.as_str(), stays[0].user.as_str()),
        ("a", "ann")
    );
    assert_eq!(
        (stays[0].joined_unix_ms, stays[0].left_unix_ms),
        (1_000, 5_000)
    );
    assert!(t.conference("c").unwrap().moved.is_empty());
}

#[test]
fn a_merge_keeps_the_books_like_a_punt() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("b", caps(false, true), 90)],
    );
    assert_eq!(place(&mut t, t0, &audio("c")).as_deref(), Ok("a"));
    let at = |unix_ms| Stamp { now: t0, unix_ms };
    t.user_joined(at(1_000), "a", "c", 1, "ann", "demo");
    let customer = t.conference("c").unwrap().customer.clone();
    let before = t.customer_users(&customer, t0);
    let hosted_a = t.server("a").unwrap().hosted;
    // Call resolution moves the conference to b.
    t.move_conference(2_000, "c", "b");
    assert_eq!(t.customer_users(&customer, t0), before - 1);
    assert_eq!(t.server("a").unwrap().hosted, hosted_a - 1);
    // a's leave for ann still bills her stay there.
    let u = t.user_left(3_000, "a", "c", 1, "ann").expect("stay billed");
    assert_eq!((u.server.as_str(), u.joined_unix_ms), ("a", 1_000));
}

#[test]
fn forgetting_a_remote_conference_releases_its_servers_count() {
    let t0 = Instant::now();
    let mut t = tables(
        t0,
        Policy::default(),
        &[("a", caps(false, true), 100), ("b", caps(false, true), 90)],
    );
    assert_eq!(place(&mut t, t0, &audio("c")).as_deref(), Ok("a"));
    let hosted = t.server("a").unwrap().hosted;
    assert!(hosted > 0);
    let later = t0 + Duration::from_secs(60);
    t.forget_remote_conferences(later, Duration::from_secs(10), |s| s == "a", |_, _| false);
    assert!(t.conference("c").is_none());
    assert_eq!(t.server("a").unwrap().hosted, hosted - 1);
}

/// A `mode=composite` conference goes only to a server with the compositor, even with
/// more room elsewhere, and is charged `composite` units per participant.
#[test]
fn a_composite_conference_goes_only_to_a_server_with_the_compositor() {
    let t0 = Instant::now();
    let compositor = Capabilities {
        composite: true,
        ..caps(true, true)
    };
    let mut t = tables(
        t0,
        Policy::default(),
        &[("big", caps(true, true), 1000), ("mcu", compositor, 100)],
    );
    let join = Join {
        pool: Some(DEFAULT_POOL),
        ..Join::new("grid", "demo", Mode::Composite)
    };
    assert_eq!(place(&mut t, t0, &join).unwrap(), "mcu");
    assert_eq!(
        needs(Mode::Composite, Media::Audio),
        Capabilities {
            audio: true,
            video: true,
            reflect: false,
            mix: true,
            composite: true,
        }
    );
    let mut only_big = tables(t0, Policy::default(), &[("big", caps(true, true), 1000)]);
    assert!(
        place(&mut only_big, t0, &join).is_err(),
        "no compositor anywhere"
    );
}
