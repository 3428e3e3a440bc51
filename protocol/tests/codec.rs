//! Round trips and hostile input for every message kind.

use protocol::*;
use std::net::SocketAddr;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn client_messages_round_trip() {
    let msgs = vec![
        ClientMsg::Join {
            conference: "xyz".into(),
            account: "demo".into(),
            name: "Ann Smith".into(),
            opts: JoinOpts {
                ticket: Some("1700000000.abcd".into()),
                mode: Mode::Mix,
                media: vec![MediaKind::Audio, MediaKind::Video],
                codec: Some("opus".into()),
                app: Some("confclient".into()),
                version: Some("0.1".into()),
                os: Some("linux".into()),
                domain: Some("acme.com".into()),
                extra: vec![("browser".into(), "none".into())],
            },
        },
        ClientMsg::Channel {
            kind: MediaKind::Audio,
            addr: ChannelAddr::Addr(addr("127.0.0.1:5000")),
            ssrc: 42,
            opts: Default::default(),
        },
        ClientMsg::Channel {
            kind: MediaKind::Video,
            addr: ChannelAddr::Latch,
            ssrc: u32::MAX,
            opts: ChannelOpts {
                simulcast: vec![7, 8],
                rtx: Some(97),
            },
        },
        ClientMsg::Layer { max: Some(1) },
        ClientMsg::Layer { max: None },
        ClientMsg::Channel {
            kind: MediaKind::Video,
            addr: ChannelAddr::LatchRecv(5006),
            ssrc: 1112,
            opts: Default::default(),
        },
        ClientMsg::Talk { on: true },
        ClientMsg::Text {
            text: "a=b is fine in text".into(),
            to: None,
        },
        ClientMsg::Text {
            text: "to=3 is text too".into(),
            to: Some(3),
        },
        ClientMsg::Mute {
            participant: 7,
            muted: false,
        },
        ClientMsg::MuteAll { muted: true },
        ClientMsg::MuteAll { muted: false },
        ClientMsg::Kick {
            participant: 9,
            reason: "reason=spam, twice".into(),
        },
        ClientMsg::Lock { on: true },
        ClientMsg::Lock { on: false },
        ClientMsg::EndConference,
        ClientMsg::Layout {
            layout: protocol::Layout::Speaker,
        },
        ClientMsg::Layout {
            layout: protocol::Layout::Grid,
        },
        ClientMsg::Record { on: true },
        ClientMsg::Record { on: false },
        ClientMsg::Raise { on: true },
        ClientMsg::Raise { on: false },
        ClientMsg::Ping { token: None },
        ClientMsg::Ping {
            token: Some("t1".into()),
        },
        ClientMsg::EndSession,
    ];
    for m in msgs {
        let line = m.encode();
        assert!(line.ends_with('\n'));
        assert_eq!(ClientMsg::parse(line.trim_end()).unwrap(), m, "{line:?}");
    }
}

#[test]
fn server_messages_round_trip() {
    let msgs = vec![
        ServerMsg::Connect {
            kind: ServerKind::Dispatcher,
            id: "disp-1".into(),
            version: VERSION,
        },
        ServerMsg::Dispatch {
            addr: addr("127.0.0.1:3451").into(),
            ticket: "1.ab".into(),
            conference: None,
        },
        ServerMsg::Dispatch {
            addr: Endpoint::Ws("ws://127.0.0.1:8081/ws".into()),
            ticket: "1.ab".into(),
            conference: None,
        },
        ServerMsg::Dispatch {
            addr: addr("127.0.0.1:3451").into(),
            ticket: "1.ab".into(),
            conference: Some("manager".into()),
        },
        ServerMsg::Accept {
            conference: "xyz".into(),
            participant: 3,
        },
        ServerMsg::reject(ErrorCode::UnknownAccount, "unknown account nope"),
        ServerMsg::Error {
            code: ErrorCode::LineTooLong,
            text: "too long".into(),
        },
        ServerMsg::Channel {
            kind: MediaKind::Audio,
            addr: addr("127.0.0.1:40000"),
            payload_type: 111,
            codec: "opus".into(),
            ssrc: 123456,
        },
        ServerMsg::Channel {
            kind: MediaKind::Video,
            addr: addr("127.0.0.1:40000"),
            payload_type: 96,
            codec: "h264".into(),
            ssrc: 123457,
        },
        ServerMsg::AddUser {
            participant: 1,
            name: "bob".into(),
        },
        ServerMsg::DelUser {
            participant: 1,
            name: "bob".into(),
        },
        ServerMsg::Text {
            from: "bob".into(),
            text: "hi".into(),
            id: None,
            to: None,
        },
        ServerMsg::Text {
            from: "bob".into(),
            text: "psst, id=1".into(),
            id: Some(2),
            to: Some(5),
        },
        ServerMsg::Role {
            participant: 2,
            role: Role::Moderator,
        },
        ServerMsg::Muted {
            participant: 3,
            muted: true,
            by: Actor::Participant(2),
        },
        ServerMsg::Muted {
            participant: 3,
            muted: false,
            by: Actor::Operator,
        },
        ServerMsg::Kicked {
            participant: 3,
            by: Actor::Participant(2),
            reason: "off topic".into(),
        },
        ServerMsg::Locked {
            on: true,
            by: Actor::Operator,
        },
        ServerMsg::Ended {
            by: Actor::Participant(2),
        },
        ServerMsg::Layout {
            layout: protocol::Layout::Presentation,
            by: Actor::Operator,
        },
        ServerMsg::Recording {
            on: true,
            by: Actor::Participant(4),
        },
        ServerMsg::Recording {
            on: false,
            by: Actor::Operator,
        },
        ServerMsg::Raise {
            participant: 3,
            on: true,
        },
        ServerMsg::Level {
            participant: 3,
            dbov: -23,
        },
        ServerMsg::Level {
            participant: 4,
            dbov: 0,
        },
        ServerMsg::Dominant { participant: 3 },
        ServerMsg::Slot {
            mid: "4".into(),
            participant: 9,
        },
        ServerMsg::Pong { token: None },
        ServerMsg::Speaking {
            participant: 3,
            on: true,
        },
        ServerMsg::Speaking {
            participant: 3,
            on: false,
        },
        ServerMsg::Quality {
            participant: 2,
            quality: protocol::Quality::Yellow,
        },
    ];
    for m in msgs {
        let line = m.encode();
        assert_eq!(ServerMsg::parse(line.trim_end()).unwrap(), m, "{line:?}");
    }
}

#[test]
fn registry_messages_round_trip() {
    let ms = vec![
        MsMsg::Register {
            id: "ms-1".into(),
            client_addr: addr("127.0.0.1:3451"),
            caps: Capabilities {
                audio: true,
                reflect: true,
                ..Default::default()
            },
            total: 500,
            ws: None,
        },
        MsMsg::Register {
            id: "ms-2".into(),
            client_addr: addr("127.0.0.1:3452"),
            caps: Capabilities {
                audio: true,
                ..Default::default()
            },
            total: 10,
            ws: Some("ws://127.0.0.1:8082/ws".into()),
        },
        MsMsg::Report {
            unused: 497,
            conferences: 1,
            users: 3,
            cpu_pct: 12.5,
            pps: 300,
            loss_pct: 0.25,
        },
        MsMsg::UserJoined {
            conference: "xyz".into(),
            participant: 1,
            name: "ann".into(),
            account: "demo".into(),
        },
        MsMsg::UserLeft {
            conference: "xyz".into(),
            participant: 1,
            name: "ann".into(),
        },
        MsMsg::ConfDeleted {
            conference: "xyz".into(),
        },
    ];
    for m in ms {
        let line = m.encode();
        assert_eq!(MsMsg::parse(line.trim_end()).unwrap(), m, "{line:?}");
    }
    let disp = vec![
        DispMsg::Connect {
            kind: ServerKind::Dispatcher,
            id: "d".into(),
            version: 1,
        },
        DispMsg::Reserve {
            conference: "xyz".into(),
            account: "demo".into(),
            user: "ann".into(),
            mode: Mode::Reflect,
            expires: 1_700_000_000,
        },
        DispMsg::Error {
            code: ErrorCode::BadRequest,
            text: "no".into(),
        },
        DispMsg::Dispatch {
            conference: "xyz".into(),
            participant: 4,
            addr: addr("127.0.0.1:3452"),
            ticket: "5.cd".into(),
            to_conference: "manager".into(),
            ws: None,
        },
        DispMsg::Dispatch {
            conference: "xyz".into(),
            participant: 4,
            addr: addr("127.0.0.1:3452"),
            ticket: "5.cd".into(),
            to_conference: "xyz".into(),
            ws: Some("ws://127.0.0.1:9000/ws".into()),
        },
    ];
    for m in disp {
        let line = m.encode();
        assert_eq!(DispMsg::parse(line.trim_end()).unwrap(), m, "{line:?}");
    }
}

#[test]
fn bad_lines_get_the_right_code() {
    let cases: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::BadRequest),
        ("frobnicate\tx", ErrorCode::UnknownVerb),
        ("join\txyz\tdemo", ErrorCode::BadRequest),
        ("join\txyz\tdemo\tann\textra", ErrorCode::BadRequest),
        (
            "join\txyz\tdemo\tann\tmode=broadcast",
            ErrorCode::BadRequest,
        ),
        ("join\t\tdemo\tann", ErrorCode::BadRequest),
        ("layout\tmosaic", ErrorCode::BadRequest),
        ("layout", ErrorCode::BadRequest),
        ("layout\tgrid\tspeaker", ErrorCode::BadRequest),
        (
            "channel\taudio\t127.0.0.1:5000\tnot-a-number",
            ErrorCode::BadRequest,
        ),
        (
            "channel\taudio\t127.0.0.1:5000\t99999999999",
            ErrorCode::BadRequest,
        ),
        ("channel\tsmell\t127.0.0.1:5000\t1", ErrorCode::BadRequest),
        ("channel\taudio\tnowhere\t1", ErrorCode::BadRequest),
        ("channel\taudio\tlatch:0\t1", ErrorCode::BadRequest),
        ("channel\taudio\tlatch:65536\t1", ErrorCode::BadRequest),
        (
            "channel\tvideo\tlatch\t1\tsimulcast=2,3,4",
            ErrorCode::BadRequest,
        ),
        (
            "channel\tvideo\tlatch\t1\tsimulcast=2,x",
            ErrorCode::BadRequest,
        ),
        ("channel\tvideo\tlatch\t1\trtx=128", ErrorCode::BadRequest),
        ("layer\t3", ErrorCode::BadRequest),
        ("layer\thigh", ErrorCode::BadRequest),
        ("layer", ErrorCode::BadRequest),
        ("talk\tmaybe", ErrorCode::BadRequest),
        ("endsession\tnow", ErrorCode::BadRequest),
        ("mute\teveryone\ton", ErrorCode::BadRequest),
        ("mute\tall", ErrorCode::BadRequest),
        ("kick\t3", ErrorCode::BadRequest),
        ("kick\tbob\tspam", ErrorCode::BadRequest),
        ("lock\tyes", ErrorCode::BadRequest),
        ("endconference\tnow", ErrorCode::BadRequest),
        ("raise\thigh", ErrorCode::BadRequest),
        ("text\thi\tto=bob", ErrorCode::BadRequest),
        ("text\thi\tthere", ErrorCode::BadRequest),
    ];
    for (line, code) in cases {
        let e = ClientMsg::parse(line).unwrap_err();
        assert_eq!(e.code(), *code, "{line:?}: {e}");
    }
    for bad in [
        "level\t3\t5",
        "level\t3\t-128",
        "level\t3\tloud",
        "muted\t3\ton\tsomeone",
        "muted\t3\ton",
        "kicked\t3\toperator",
        "role\t3\tadmin",
        "ended",
        "dominant\tnobody",
    ] {
        let e = ServerMsg::parse(bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest, "{bad:?}: {e}");
    }
    assert_eq!(
        ClientMsg::parse("raise").unwrap(),
        ClientMsg::Raise { on: true }
    );
    let e = MsMsg::parse("report\t1\t2\t3\tNaN\t5").unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadRequest);
    let e = MsMsg::parse("register\tms\t127.0.0.1:1\taudio,teleport\t5").unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadRequest);
}

#[test]
fn names_with_equals_are_positional() {
    let m = ClientMsg::parse("join\ta=b\tdemo\tx=y\tmode=reflect").unwrap();
    match m {
        ClientMsg::Join {
            conference, name, ..
        } => {
            assert_eq!(conference, "a=b");
            assert_eq!(name, "x=y");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_codes_are_stable() {
    for c in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(c.as_u16()), c);
    }
    assert_eq!(ErrorCode::from_u16(999), ErrorCode::Other(999));
}

/// Every code is unique, and docs/protocol.md's table has a row for it with its name.
#[test]
fn error_codes_are_unique_and_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md");
    let mut seen = std::collections::HashSet::new();
    for c in ErrorCode::ALL {
        assert!(seen.insert(c.as_u16()), "{} used twice", c.as_u16());
        let row = format!("| {} | {} |", c.as_u16(), c.name());
        assert!(doc.contains(&row), "docs/protocol.md lacks the row {row:?}");
    }
}

/// Pseudo-random bytes and mutations of valid lines never panic the codec. The cargo-fuzz
/// target `control_line` runs the same entry point under libFuzzer.
#[test]
fn random_input_never_panics() {
    let seeds = [
        "join\txyz\tdemo\tann\tmode=reflect\tticket=1.ab",
        "channel\taudio\t127.0.0.1:5000\t42",
        "report\t1\t2\t3\t4.5\t6",
        "reserve\txyz\tdemo\tann\tmix\t17",
        "register\tms\t127.0.0.1:1\taudio,video\t5",
        "mute\tall\ton",
        "kick\t3\tflooding the chat",
        "text\thello\tto=3",
        "muted\t3\ton\toperator",
        "level\t3\t-20",
        "text\tann\thi\tid=2\tto=3",
        "kick\txyz\t3\talice\tbye",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..(next() % 6) {
            let r = next();
            let pos = (r as usize >> 8) % (bytes.len() + 1);
            match r % 4 {
                0 => bytes.insert(pos, (r >> 32) as u8),
                1 if pos < bytes.len() => {
                    bytes.remove(pos);
                }
                2 => bytes.insert(pos, b'\t'),
                _ => bytes.insert(pos, b"=.:,"[(r >> 40) as usize % 4]),
            }
        }
        protocol::fuzz_parse(&bytes);
    }
}

#[test]
fn join_carries_a_moderator_pin() {
    let line = "join\txyz\tdemo\tann\tmode=reflect\tpin=4711";
    let ClientMsg::Join { opts, .. } = ClientMsg::parse(line).unwrap() else {
        panic!("not a join");
    };
    assert_eq!(opts.pin(), Some("4711"));
    assert!(ClientMsg::parse("join\txyz\tdemo\tann").is_ok());
}

#[test]
fn join_carries_the_domain() {
    let line = "join\txyz\tdemo\tann\tmode=reflect\tdomain=acme.com";
    let ClientMsg::Join { opts, .. } = ClientMsg::parse(line).unwrap() else {
        panic!("not a join");
    };
    assert_eq!(opts.domain.as_deref(), Some("acme.com"));
    assert!(opts.extra.is_empty());
    assert!(ClientMsg::Join {
        conference: "xyz".into(),
        account: "demo".into(),
        name: "ann".into(),
        opts,
    }
    .encode()
    .contains("\tdomain=acme.com"));
}

#[test]
fn userjoined_with_billing_options_round_trips_and_the_bare_form_stays() {
    use protocol::{MediaKind, Member};
    let m = MsMsg::Member(Member {
        conference: "xyz".into(),
        participant: 3,
        name: "ann".into(),
        account: "acme-1".into(),
        mode: Mode::Mix,
        media: vec![MediaKind::Audio, MediaKind::Video],
        domain: Some("acme.com".into()),
        joined_unix_ms: 1_700_000_000_123,
    });
    let line = m.encode();
    assert_eq!(
        line,
        "userjoined\txyz\t3\tann\tacme-1\tmode=mix\tmedia=audio,video\tjoined=1700000000123\tdomain=acme.com\n"
    );
    assert_eq!(MsMsg::parse(line.trim_end()).unwrap(), m);
    // Without options it is the bare form older media servers send.
    assert!(matches!(
        MsMsg::parse("userjoined\txyz\t3\tann\tdemo").unwrap(),
        MsMsg::UserJoined { .. }
    ));
    // Options of newer servers are ignored; bad values of known ones are refused.
    let MsMsg::Member(m) = MsMsg::parse("userjoined\tx\t1\tb\tdemo\tfuture=1").unwrap() else {
        panic!("not a member");
    };
    assert_eq!((m.mode, m.joined_unix_ms), (Mode::Reflect, 0));
    for bad in [
        "userjoined\tx\t1\tb\tdemo\tmode=loud",
        "userjoined\tx\t1\tb\tdemo\tmedia=smell",
        "userjoined\tx\t1\tb\tdemo\tjoined=soon",
    ] {
        assert_eq!(MsMsg::parse(bad).unwrap_err().code(), ErrorCode::BadRequest);
    }
    let long = format!("userjoined\tx\t1\tb\tdemo\tdomain={}", "d".repeat(200));
    assert!(MsMsg::parse(&long).is_err());
}

#[test]
fn a_retryable_reject_says_retry_and_when() {
    let r = ServerMsg::retry(
        std::time::Duration::from_millis(500),
        "media server ms-2 is restarting",
    );
    let line = r.encode();
    assert_eq!(
        line,
        "reject\t480\tretry after 500 ms: media server ms-2 is restarting\n"
    );
    let back = ServerMsg::parse(line.trim_end()).unwrap();
    assert_eq!(back, r);
    assert_eq!(
        back.retry_after(),
        Some(std::time::Duration::from_millis(500))
    );
    assert_eq!(ErrorCode::Retry.name(), "retry");
    assert_eq!(ErrorCode::from_u16(480), ErrorCode::Retry);
    // A 480 without a readable wait: the default; any other reject: none.
    let vague = ServerMsg::parse("reject\t480\tlater").unwrap();
    assert_eq!(vague.retry_after(), Some(protocol::RETRY_DEFAULT));
    let huge = ServerMsg::parse("reject\t480\tretry after 99999999 ms: x").unwrap();
    assert_eq!(huge.retry_after(), Some(protocol::RETRY_MAX));
    let final_ = ServerMsg::parse("reject\t503\tno media server").unwrap();
    assert_eq!(final_.retry_after(), None);
}
