//! Proves that forwarding SRTP allocates nothing on the heap per packet (issue 12): two Rust
//! peers playing browsers pass ICE and DTLS against a real worker engine on loopback, then
//! one sends SRTP that the engine decrypts in place, forwards through the mesh, encrypts again
//! for the other browser and sends in plain to a plain-RTP member, while the counting
//! allocator watches the engine's thread.

mod common;

use common::*;
use mediaserver::io::IoKind;
use mediaserver::rtc::{RtcCommand, RtcReport, Tag};
use mesh::Command;
use std::time::{Duration, Instant};
use testkit::alloc::{counted, CountingAlloc};
use testkit::browser::Browser;
use webrtc::{Identity, Params};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const SENDER: u32 = 2;
const RECEIVER: u32 = 3;

fn ssrc(id: u32) -> u32 {
    0x5000 + id
}

fn server_pwd(id: u32) -> String {
    format!("server-password-for-member-{id}")
}

/// Reads every datagram waiting at `s`; returns the RTP ones (payload type 111).
fn drain(s: &std::net::UdpSocket) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        // Media only: the plain member's Opus, the browser's in its own payload type.
        if n >= 12 && matches!(buf[1] & 0x7f, 111 | BROWSER_OPUS) {
            out.push(buf[..n].to_vec());
        }
    }
    out
}

/// The receive slots the answer would give each browser: two audio slots, Opus as 109
/// (Firefox's number, so the payload type is rewritten on the measured path).
const BROWSER_OPUS: u8 = 109;
const SLOT_SSRC: u32 = 0x5107_0001;

fn slots() -> webrtc::Slots {
    let mut s = webrtc::Slots::default();
    s.add_slot(webrtc::SlotKind::Audio, SLOT_SSRC);
    s.add_slot(webrtc::SlotKind::Audio, SLOT_SSRC + 1);
    s.map_pt(webrtc::SlotKind::Audio, 111, BROWSER_OPUS);
    s
}

#[test]
fn srtp_is_forwarded_without_allocating() {
    let mut rig = Rig::new(IoKind::Mmsg, false, 1);
    rig.engine
        .enable_webrtc(Identity::generate().expect("a server certificate"));
    let sender = Browser::new("sender");
    let receiver = Browser::new("receiver");
    for (id, b) in [(SENDER, &sender), (RECEIVER, &receiver)] {
        rig.engine.command(Command::AddParticipant {
            conf: CONF,
            participant: id,
        });
        rig.engine.rtc_command(RtcCommand::Add(Box::new(Params {
            local_ufrag: format!("srv{id}"),
            local_pwd: server_pwd(id),
            remote_ufrag: b.ufrag.clone(),
            remote_fingerprint: b.fingerprint.clone(),
            tag: Tag {
                conf: CONF,
                participant: id,
                ssrc: ssrc(id),
                clock_rate: 48_000,
                video_ssrc: None,
                simulcast: [0; 2],
            },
            slots: slots(),
            // Transport-cc on: what goes to the receiver is stamped on the way.
            twcc_id: Some(3),
        })));
    }
    let server = rig.addr;
    let mut keys = Vec::new();
    for (id, b) in [(SENDER, &sender), (RECEIVER, &receiver)] {
        let engine = &mut rig.engine;
        keys.push(b.connect(server, &format!("srv{id}"), &server_pwd(id), || {
            engine.turn(Duration::from_millis(5)).expect("turn");
        }));
    }
    // The channels ICE opened are mesh commands, applied at its next tick.
    for _ in 0..3 {
        rig.engine.turn(Duration::from_millis(20)).expect("turn");
    }
    let (mut out, mut inb) = {
        let mut it = keys.into_iter();
        let s = it.next().expect("the sender's keys");
        let r = it.next().expect("the receiver's keys");
        (s.outbound, r.inbound)
    };
    receiver.socket.set_nonblocking(true).expect("nonblocking");
    rig.peers[0].set_nonblocking(true).expect("nonblocking");

    // Rounds of 4 packets; the first 20 warm up (rings, maps, batches), the rest count.
    let (warm, rounds) = (20u16, 80u16);
    let mut allocs = 0;
    let (mut plain_got, mut secure_got, mut sent_counted) = (0usize, 0usize, 0usize);
    let mut seq = 0u16;
    for round in 0..rounds {
        let mut sent = Vec::new();
        for _ in 0..4 {
            seq += 1;
            let plain = rtp(ssrc(SENDER), seq, 160);
            let mut buf = [0u8; 1500];
            buf[..plain.len()].copy_from_slice(&plain);
            let n = out.protect_rtp(&mut buf, plain.len()).expect("protect");
            sender.socket.send_to(&buf[..n], server).expect("send");
            sent.push(plain);
        }
        let (mut to_plain, mut to_secure) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while (to_plain < 4 || to_secure < 4) && Instant::now() < deadline {
            let (r, during) = counted(|| rig.engine.turn(Duration::from_millis(20)));
            r.expect("turn");
            if round >= warm {
                allocs += during;
            }
            for p in drain(&rig.peers[0]) {
                assert!(sent.contains(&p), "the plain member got what was sent");
                to_plain += 1;
            }
            for mut p in drain(&receiver.socket) {
                let m = inb.unprotect_rtp(&mut p).expect("the receiver decrypts");
                // It plays in the receiver's slot, in its payload type, with a
                // transport-wide sequence number added (8 bytes); the rest as sent.
                assert_eq!(p[1] & 0x7f, BROWSER_OPUS);
                assert_eq!(p[8..12], SLOT_SSRC.to_be_bytes());
                assert!(webrtc::twcc::sequence(&p[..m], 3).is_some(), "stamped");
                assert!(
                    sent.iter()
                        .any(|s| s[12..] == p[20..m] && s[2..8] == p[2..8]),
                    "decrypted to what was sent"
                );
                to_secure += 1;
            }
        }
        let c = &rig.counters;
        let rtc: Vec<(&str, u64)> = mediaserver::rtc::REASONS
            .iter()
            .zip(c.rtc.drops.iter())
            .map(|(r, v)| (*r, v.load(std::sync::atomic::Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let mesh: Vec<(&str, u64)> = mesh::DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), c.drops(*r)))
            .filter(|(_, v)| *v > 0)
            .collect();
        assert_eq!(
            (to_plain, to_secure),
            (4, 4),
            "round {round}: WebRTC drops {rtc:?}, mesh drops {mesh:?}"
        );
        plain_got += to_plain;
        secure_got += to_secure;
        if round >= warm {
            sent_counted += 4;
        }
    }
    assert_eq!((plain_got, secure_got), (320, 320));
    // The one stream took the receiver's first slot, once.
    let mut slot_events = 0;
    rig.engine.drain_rtc(|r| {
        let RtcReport::Slot(s) = r else {
            panic!("only a slot report: {r:?}");
        };
        assert_eq!(
            (s.participant, s.slot, s.source),
            (RECEIVER, 0, ssrc(SENDER))
        );
        slot_events += 1;
    });
    assert_eq!(slot_events, 1);
    assert_eq!(
        allocs, 0,
        "{allocs} heap allocations while forwarding {sent_counted} SRTP packets"
    );
}
