//! Forwarding, commands and latching, through the public API on a simulated network.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use mesh::{
    Command, DropReason, Event, MediaKind, MeshConfig, ParticipantId, Path, Remote, RtpView,
};

const TICK: Duration = Duration::from_millis(10);

fn three() -> Net<Everyone> {
    let mut net = Net::new(MeshConfig::default());
    net.conference(Everyone, &[1, 2, 3]);
    net
}

#[test]
fn everyone_gets_the_others_never_themselves() {
    let mut net = three();
    assert_eq!(net.mesh.conference_count(), 1);
    assert_eq!(net.mesh.participant_count(), 3);
    for _ in 0..10 {
        for id in 1..=3 {
            for kind in MediaKind::ALL {
                assert_eq!(net.send(id, kind), 2);
            }
        }
    }
    for me in 1..=3 {
        let got = net.received(addr(me));
        assert_eq!(got.len(), 40, "participant {me}");
        for other in (1..=3).filter(|&o| o != me) {
            for kind in MediaKind::ALL {
                assert_eq!(net.count_from(addr(me), ssrc(other, kind)), 10);
            }
        }
        for kind in MediaKind::ALL {
            assert_eq!(net.count_from(addr(me), ssrc(me, kind)), 0);
        }
    }
    let st = net.mesh.stats();
    assert_eq!(st.datagrams_in, 60);
    assert_eq!(st.packets_out, 120);
    assert_eq!(st.bytes_out, 120 * 200);
    // The path offers every packet back to its sender; the filter refuses each one.
    assert_eq!(st.drops(DropReason::OwnStream), 60);
    assert_eq!(st.total_drops(), 60);
    // Bytes are forwarded unchanged.
    let first = &net.inbox[&addr(2)][0];
    assert_eq!(first, &rtp(ssrc(1, MediaKind::Audio), 0, 0, 200));
}

#[test]
fn commands_wait_for_the_tick() {
    let mut net: Net<Everyone> = Net::new(MeshConfig::default());
    let t0 = net.now;
    assert_eq!(net.mesh.poll_timeout(), t0);
    net.command(Command::CreateConference {
        conf: CONF,
        path: Box::new(Everyone),
    });
    net.join(1, Remote::Addr(addr(1)));
    net.join(2, Remote::Addr(addr(2)));
    assert_eq!(net.mesh.conference_count(), 0);
    assert_eq!(net.send(1, MediaKind::Audio), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 1);

    net.mesh.handle_tick(t0);
    assert_eq!(net.mesh.poll_timeout(), t0 + TICK);
    assert_eq!(net.mesh.stats().commands_applied, 7);
    assert_eq!(net.send(1, MediaKind::Audio), 1);

    // A mute queued now does not apply until the next tick.
    net.command(Command::Mute {
        conf: CONF,
        participant: 1,
        muted: true,
    });
    assert_eq!(net.send(1, MediaKind::Audio), 1);
    net.tick(TICK);
    assert_eq!(net.send(1, MediaKind::Audio), 0);
    assert_eq!(net.mesh.poll_timeout(), t0 + 2 * TICK);

    // After a stall the cadence restarts from now instead of bursting.
    net.tick(Duration::from_millis(95));
    assert_eq!(net.mesh.poll_timeout(), net.now + TICK);
}

#[test]
fn strangers_get_nothing() {
    let mut net = three();
    let stranger: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    assert_eq!(net.send_raw(stranger, &rtp(1001, 0, 0, 100)), 0);
    // Known address, but an SSRC its channels did not declare.
    assert_eq!(net.send_raw(addr(1), &rtp(4242, 0, 0, 100)), 0);
    // Known address and SSRC, but that SSRC belongs to participant 2.
    assert_eq!(
        net.send_raw(addr(1), &rtp(ssrc(2, MediaKind::Audio), 0, 0, 100)),
        0
    );
    // RTCP receiver report from a stranger, then from a participant (handed to the path,
    // which sends nothing here), then a truncated one from the participant.
    let rr = testkit::packet::receiver_report(ssrc(1, MediaKind::Audio), &[]);
    assert_eq!(net.send_raw(stranger, &rr), 0);
    assert_eq!(net.send_raw(addr(1), &rr), 0);
    assert_eq!(net.send_raw(addr(1), &rr[..6]), 0);
    // Garbage.
    assert_eq!(net.send_raw(addr(1), &[0x80, 96, 0]), 0);
    assert_eq!(net.send_raw(stranger, &[0u8; 40]), 0);

    let st = net.mesh.stats();
    assert_eq!(st.drops(DropReason::UnknownSource), 4);
    assert_eq!(st.drops(DropReason::Rtcp), 1);
    assert_eq!(st.rtcp_in, 1);
    assert_eq!(st.drops(DropReason::Malformed), 2);
    assert_eq!(st.packets_out, 0);
    assert!(net.inbox.is_empty());
    assert_eq!(net.mesh.poll_event(), None);
}

#[test]
fn latch_binds_on_first_packet_from_its_ip() {
    let mut net: Net<Everyone> = Net::new(MeshConfig::default());
    net.command(Command::CreateConference {
        conf: CONF,
        path: Box::new(Everyone),
    });
    net.join(1, Remote::Addr(addr(1)));
    net.join(3, Remote::Latch(ip(3)));
    net.tick(TICK);

    // Nowhere to send to 3 yet.
    assert_eq!(net.send(1, MediaKind::Audio), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::NoReceiveAddress), 1);

    let nat: SocketAddr = SocketAddr::new(ip(3), 61_000);
    let elsewhere: SocketAddr = "10.0.0.4:61000".parse().unwrap();
    // Right SSRC from another IP, and right IP with another SSRC: both strangers.
    assert_eq!(net.send_from(elsewhere, 3, MediaKind::Audio), 0);
    assert_eq!(net.send_raw(nat, &rtp(777, 0, 0, 100)), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 2);
    assert_eq!(net.mesh.poll_event(), None);

    // The first real packet latches and is forwarded.
    assert_eq!(net.send_from(nat, 3, MediaKind::Audio), 1);
    assert_eq!(
        net.mesh.poll_event(),
        Some(Event::Latched {
            conf: CONF,
            participant: 3,
            kind: MediaKind::Audio,
            addr: nat,
        })
    );
    assert_eq!(net.mesh.poll_event(), None);
    // Symmetric RTP: 3's audio now goes to the latched address.
    assert_eq!(net.send(1, MediaKind::Audio), 1);
    assert_eq!(net.count_from(nat, ssrc(1, MediaKind::Audio)), 1);
    // Video has its own latch, still pending.
    assert_eq!(net.send(1, MediaKind::Video), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::NoReceiveAddress), 2);
    // Video from the same NAT port latches too.
    assert_eq!(net.send_from(nat, 3, MediaKind::Video), 1);
    assert!(matches!(
        net.mesh.poll_event(),
        Some(Event::Latched {
            kind: MediaKind::Video,
            ..
        })
    ));
    assert_eq!(net.send(1, MediaKind::Video), 1);

    // Once bound, the same SSRC from another port or IP is a stranger.
    let other_port = SocketAddr::new(ip(3), 61_001);
    assert_eq!(net.send_from(other_port, 3, MediaKind::Audio), 0);
    assert_eq!(net.send_from(elsewhere, 3, MediaKind::Audio), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 4);
    assert_eq!(net.mesh.poll_event(), None);
}

#[test]
fn removed_participant_is_forgotten() {
    let mut net = three();
    net.command(Command::RemoveParticipant {
        conf: CONF,
        participant: 3,
    });
    // Still there until the tick.
    assert_eq!(net.send(1, MediaKind::Audio), 2);
    net.tick(TICK);
    assert_eq!(net.mesh.participant_count(), 2);
    assert_eq!(net.mesh.members(CONF), Some(&[1, 2][..]));
    assert_eq!(net.send(1, MediaKind::Audio), 1);
    assert_eq!(net.count_from(addr(3), ssrc(1, MediaKind::Audio)), 1);
    assert_eq!(net.count_from(addr(2), ssrc(1, MediaKind::Audio)), 2);
    // And 3's packets are now from a stranger.
    assert_eq!(net.send(3, MediaKind::Audio), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 1);
    assert_eq!(net.mesh.stream_stats(CONF, 3, MediaKind::Audio), None);
}

#[test]
fn removed_conference_is_forgotten() {
    let mut net = three();
    net.command(Command::RemoveConference { conf: CONF });
    net.tick(TICK);
    assert_eq!(net.mesh.conference_count(), 0);
    assert_eq!(net.mesh.participant_count(), 0);
    for id in 1..=3 {
        assert_eq!(net.send(id, MediaKind::Audio), 0);
    }
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 3);
    // The ids and addresses are free for a new conference.
    net.conference(Everyone, &[1, 2]);
    assert_eq!(net.send(1, MediaKind::Audio), 1);
}

#[test]
fn mute_stops_audio_until_unmuted() {
    let mut net = three();
    net.command(Command::Mute {
        conf: CONF,
        participant: 1,
        muted: true,
    });
    net.tick(TICK);
    assert_eq!(net.send(1, MediaKind::Audio), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::Muted), 2);
    // Video still shows and the others are unaffected.
    assert_eq!(net.send(1, MediaKind::Video), 2);
    assert_eq!(net.send(2, MediaKind::Audio), 2);
    net.command(Command::Mute {
        conf: CONF,
        participant: 1,
        muted: false,
    });
    net.tick(TICK);
    assert_eq!(net.send(1, MediaKind::Audio), 2);
}

#[test]
fn budget_sheds_video_not_audio() {
    let mut net = three();
    net.command(Command::SetBudget {
        conf: CONF,
        participant: 2,
        bits_per_sec: Some(150_000),
    });
    net.tick(TICK);
    // Two seconds of 1: 50 audio packets/s of 160 B, 30 video packets/s of 1200 B (~290 kbit/s).
    let (mut audio_seq, mut video_seq) = (0u16, 0u16);
    for ms in (0..2000u64).step_by(10) {
        if ms % 20 == 0 {
            let p = rtp(ssrc(1, MediaKind::Audio), audio_seq, 0, 160);
            audio_seq += 1;
            net.send_raw(addr(1), &p);
        }
        if ms % 30 == 0 {
            let p = rtp(ssrc(1, MediaKind::Video), video_seq, 0, 1200);
            video_seq += 1;
            net.send_raw(addr(1), &p);
        }
        net.tick(TICK);
    }
    assert_eq!((audio_seq, video_seq), (100, 67));
    // 2 gets all the audio and only what is left of its budget in video: 300 kbit plus a
    // 24 kbit burst, less 128 kbit of audio, is room for about 20 video packets.
    assert_eq!(net.count_from(addr(2), ssrc(1, MediaKind::Audio)), 100);
    let video = net.count_from(addr(2), ssrc(1, MediaKind::Video));
    assert!((15..=21).contains(&video), "video to 2: {video}");
    // 3 is unlimited.
    assert_eq!(net.count_from(addr(3), ssrc(1, MediaKind::Video)), 67);
    assert_eq!(
        net.mesh.stats().drops(DropReason::OverBudget),
        67 - video as u64
    );
    // Lifting the budget restores video.
    net.command(Command::SetBudget {
        conf: CONF,
        participant: 2,
        bits_per_sec: None,
    });
    net.tick(TICK);
    net.send_raw(addr(1), &rtp(ssrc(1, MediaKind::Video), video_seq, 0, 1200));
    assert_eq!(
        net.count_from(addr(2), ssrc(1, MediaKind::Video)),
        video + 1
    );
}

#[test]
fn bad_commands_are_rejected_and_counted() {
    let mut net = three();
    let before = net.mesh.stats().commands_rejected;
    let cmds = [
        Command::CreateConference {
            conf: CONF,
            path: Box::new(Everyone),
        },
        Command::AddParticipant {
            conf: 99,
            participant: 4,
        },
        // Already in the conference.
        Command::AddParticipant {
            conf: CONF,
            participant: 2,
        },
        Command::RemoveParticipant {
            conf: CONF,
            participant: 42,
        },
        // 2's address cannot become 1's.
        Command::SetChannel {
            conf: CONF,
            participant: 1,
            kind: MediaKind::Audio,
            remote: Remote::Addr(addr(2)),
            ssrc: 5,
            clock_rate: 48_000,
        },
        Command::SetChannel {
            conf: CONF,
            participant: 1,
            kind: MediaKind::Audio,
            remote: Remote::Addr(addr(1)),
            ssrc: 5,
            clock_rate: 0,
        },
        Command::SetBudget {
            conf: CONF,
            participant: 42,
            bits_per_sec: None,
        },
        Command::Mute {
            conf: 99,
            participant: 1,
            muted: true,
        },
        Command::RemoveConference { conf: 99 },
    ];
    let n = cmds.len() as u64;
    for c in cmds {
        net.command(c);
    }
    net.tick(TICK);
    assert_eq!(net.mesh.stats().commands_rejected - before, n);
    // Nothing changed: everyone still hears everyone.
    assert_eq!(net.send(1, MediaKind::Audio), 2);
    assert_eq!(net.send(2, MediaKind::Audio), 2);
}

#[test]
fn video_to_audio_only_receiver_is_no_channel() {
    let mut net = three();
    net.command(Command::AddParticipant {
        conf: CONF,
        participant: 4,
    });
    net.command(Command::SetChannel {
        conf: CONF,
        participant: 4,
        kind: MediaKind::Audio,
        remote: Remote::Addr(addr(4)),
        ssrc: ssrc(4, MediaKind::Audio),
        clock_rate: 8000,
    });
    net.tick(TICK);
    assert_eq!(net.send(1, MediaKind::Video), 2);
    assert_eq!(net.mesh.stats().drops(DropReason::NoChannel), 1);
    assert_eq!(net.send(1, MediaKind::Audio), 3);
}

/// Routes to a member that does not exist.
struct Ghost;

impl Path for Ghost {
    fn route(
        &mut self,
        _now: std::time::Instant,
        _src: ParticipantId,
        _kind: MediaKind,
        _pkt: &RtpView<'_>,
        _members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        out.push(999);
    }
}

#[test]
fn route_to_non_member_is_dropped() {
    let mut net = Net::new(MeshConfig::default());
    net.conference(Ghost, &[1, 2]);
    assert_eq!(net.send(1, MediaKind::Audio), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownReceiver), 1);
}

#[test]
fn full_batch_drops_instead_of_growing() {
    let cfg = MeshConfig {
        tx_packets: 5,
        ..MeshConfig::default()
    };
    let mut net: Net<Everyone> = Net::new(cfg);
    net.conference(Everyone, &[1, 2, 3]);
    // Without polling, only 5 copies fit.
    for _ in 0..4 {
        net.mesh
            .handle_datagram(net.now, addr(1), &rtp(ssrc(1, MediaKind::Audio), 0, 0, 100));
    }
    assert_eq!(net.mesh.stats().drops(DropReason::TxFull), 3);
    assert_eq!(net.drain(), 5);
    assert_eq!(net.send(1, MediaKind::Audio), 2);
}

#[test]
fn fan_out_stores_the_body_once() {
    let ids: Vec<ParticipantId> = (1..=10).collect();
    let mut net: Net<Everyone> = Net::new(MeshConfig::default());
    net.conference(Everyone, &ids);
    let pkt = rtp(ssrc(1, MediaKind::Video), 7, 7 * 960, 1000);
    net.mesh.handle_datagram(net.now, addr(1), &pkt);
    assert_eq!(net.mesh.pending_transmit(), 9);
    let mut out = mesh::TxBatch::default();
    net.mesh.poll_transmit(&mut out);
    // Nine receivers, one copy of the body; each has only its own 12-byte header.
    assert_eq!(out.arena_len(), pkt.len() - mesh::TX_HEAD_MAX);
    assert_eq!(out.byte_len(), 9 * pkt.len());
    let body = out.get(0).unwrap().body.as_ptr();
    for (dest, p) in out.iter() {
        assert_ne!(dest, addr(1));
        assert_eq!(p.head.len(), mesh::TX_HEAD_MAX);
        assert_eq!(p.body.as_ptr(), body, "shared, not copied");
        assert_eq!(p.to_vec(), pkt);
    }
}

#[test]
fn quality_sums_over_streams() {
    let mut net = three();
    let q = net.mesh.quality();
    assert_eq!(q.streams, 6);
    assert_eq!(q.lost, 0);
    // Sequence 0, then 5: four lost on one stream.
    let s = ssrc(2, MediaKind::Audio);
    net.send_raw(addr(2), &rtp(s, 0, 0, 100));
    net.send_raw(addr(2), &rtp(s, 5, 5 * 960, 100));
    let q = net.mesh.quality();
    assert_eq!(q.lost, 4);
    assert!(q.max_jitter_ms >= 0.0);
}

#[test]
fn simulcast_layers_are_accepted_from_the_video_channel_only() {
    let mut net = three();
    let video = ssrc(1, MediaKind::Video);
    let layers = |l: Vec<u32>| Command::SetSimulcast {
        conf: CONF,
        participant: 1,
        layers: l,
    };
    // Not declared yet: a stranger's SSRC.
    assert_eq!(net.send_raw(addr(1), &rtp(0x9001, 0, 0, 100)), 0);
    // Rejected: without the channel's SSRC, with the audio SSRC, duplicated, too many.
    net.command(layers(vec![0x9001, 0x9002]));
    net.command(layers(vec![0x9001, ssrc(1, MediaKind::Audio), video]));
    net.command(layers(vec![0x9001, 0x9001, video]));
    net.command(layers(vec![0x9001, 0x9002, 0x9003, video]));
    net.command(layers(vec![0x9001, 0x9002, video]));
    let rejected = net.mesh.stats().commands_rejected;
    net.tick(TICK);
    assert_eq!(net.mesh.stats().commands_rejected, rejected + 4);
    // Each layer is its own stream from the channel's address, forwarded as video.
    assert_eq!(net.send_raw(addr(1), &rtp(0x9001, 0, 0, 100)), 2);
    assert_eq!(net.send_raw(addr(1), &rtp(0x9002, 0, 0, 100)), 2);
    assert_eq!(net.send_raw(addr(2), &rtp(0x9002, 1, 0, 100)), 0);
    assert_eq!(net.count_from(addr(2), 0x9001), 1);
    // Strangers: the layer before it was declared, and from another address.
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 2);
}

/// A second video channel line with the same SSRC (say, a new `rtx=`) keeps the declared
/// layers; a new SSRC drops them.
#[test]
fn a_repeated_video_channel_keeps_its_simulcast_layers() {
    let mut net = three();
    let video = ssrc(1, MediaKind::Video);
    let channel = |ssrc: u32| Command::SetChannel {
        conf: CONF,
        participant: 1,
        kind: MediaKind::Video,
        remote: Remote::Addr(addr(1)),
        ssrc,
        clock_rate: clock_rate(MediaKind::Video),
    };
    net.command(Command::SetSimulcast {
        conf: CONF,
        participant: 1,
        layers: vec![0x9001, video],
    });
    net.tick(TICK);
    assert_eq!(net.send_raw(addr(1), &rtp(0x9001, 0, 0, 100)), 2);
    net.command(channel(video));
    net.tick(TICK);
    assert_eq!(
        net.send_raw(addr(1), &rtp(0x9001, 1, 0, 100)),
        2,
        "layer kept"
    );
    assert_eq!(net.send_raw(addr(1), &rtp(video, 1, 0, 100)), 2);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 0);
    // Another SSRC: the old layers are strangers now.
    net.command(channel(0x7777));
    net.tick(TICK);
    assert_eq!(net.send_raw(addr(1), &rtp(0x9001, 2, 0, 100)), 0);
    assert_eq!(net.mesh.stats().drops(DropReason::UnknownSource), 1);
}
