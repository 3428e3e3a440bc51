//! The path's tick and talk hooks: packets a path produces on a tick go out through each
//! receiver's sender and scheduler; `Command::Talk` and channel set-ups reach the path
//! between ticks; talk and quality notices become events.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh::{
    Command, DropReason, Event, MediaKind, MeshConfig, ParticipantId, Path, PathOut, RtpView,
};
use testkit::packet;

/// A path that forwards nothing and, on every tick, sends each member one packet and
/// reports the talk commands it got.
#[derive(Default)]
struct Ticker {
    talks: Vec<(ParticipantId, bool)>,
    ticks: u32,
    channels: Vec<(ParticipantId, MediaKind)>,
    simulcast: Vec<(ParticipantId, Vec<u32>)>,
}

impl Path for Ticker {
    fn route(
        &mut self,
        _now: Instant,
        _src: ParticipantId,
        _kind: MediaKind,
        _pkt: &RtpView<'_>,
        _members: &[ParticipantId],
        _out: &mut Vec<ParticipantId>,
    ) {
    }

    fn on_tick(&mut self, _now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        self.ticks += 1;
        for &m in members {
            out.send(m, &rtp(0x5000 + m, self.ticks as u16, 0, 60));
        }
        // A receiver that is not a member is dropped and counted.
        assert!(!out.send(999, &rtp(1, 1, 0, 60)));
        for (p, on) in self.talks.drain(..) {
            out.speaking(p, on);
            out.quality(p, 25, 40);
        }
    }

    fn on_talk(&mut self, _now: Instant, participant: ParticipantId, on: bool) {
        self.talks.push((participant, on));
    }

    fn on_channel(&mut self, _now: Instant, participant: ParticipantId, kind: MediaKind) {
        self.channels.push((participant, kind));
    }

    fn on_simulcast(&mut self, _now: Instant, participant: ParticipantId, layers: &[u32]) {
        self.simulcast.push((participant, layers.to_vec()));
    }
}

/// Each channel that is set up reaches the path (a keyframe-gating path restarts the
/// receiver there); one that is refused does not.
#[test]
fn channel_set_ups_reach_the_path() {
    let mut net: Net<Ticker> = Net::new(MeshConfig::default());
    net.conference(Ticker::default(), &[1, 2]);
    let want = vec![
        (1, MediaKind::Audio),
        (1, MediaKind::Video),
        (2, MediaKind::Audio),
        (2, MediaKind::Video),
    ];
    assert_eq!(net.mesh.path(CONF).unwrap().channels, want);
    net.command(Command::SetChannel {
        conf: CONF,
        participant: 9,
        kind: MediaKind::Video,
        remote: mesh::Remote::Addr(addr(9)),
        ssrc: 0x9999,
        clock_rate: 90_000,
    });
    net.tick(Duration::from_millis(10));
    assert_eq!(net.mesh.path(CONF).unwrap().channels, want);
}

/// A video channel line with a new SSRC drops its simulcast layers, and the path hears of
/// it; one with the same SSRC keeps them silently.
#[test]
fn a_new_video_ssrc_drops_the_layers_in_the_path_too() {
    let mut net: Net<Ticker> = Net::new(MeshConfig::default());
    net.conference(Ticker::default(), &[1, 2]);
    let video = ssrc(1, MediaKind::Video);
    net.command(Command::SetSimulcast {
        conf: CONF,
        participant: 1,
        layers: vec![0x9001, video],
    });
    let channel = |ssrc: u32| Command::SetChannel {
        conf: CONF,
        participant: 1,
        kind: MediaKind::Video,
        remote: mesh::Remote::Addr(addr(1)),
        ssrc,
        clock_rate: 90_000,
    };
    net.command(channel(video));
    net.tick(Duration::from_millis(10));
    let layers = vec![(1, vec![0x9001, video])];
    assert_eq!(net.mesh.path(CONF).unwrap().simulcast, layers);
    net.command(channel(0x7777));
    net.tick(Duration::from_millis(10));
    let dropped = vec![(1, vec![0x9001, video]), (1, vec![])];
    assert_eq!(net.mesh.path(CONF).unwrap().simulcast, dropped);
}

#[test]
fn tick_packets_go_through_each_receivers_sender() {
    let mut net: Net<Ticker> = Net::new(MeshConfig::default());
    net.conference(Ticker::default(), &[1, 2]);
    net.drain();
    net.inbox.clear();
    net.tick(Duration::from_millis(10));
    assert_eq!(net.drain(), 2);
    assert_eq!(net.received(addr(1)), vec![0x5001]);
    assert_eq!(net.received(addr(2)), vec![0x5002]);
    assert!(net.mesh.stats().drops(DropReason::UnknownReceiver) >= 2);
    // A member without a channel gets nothing (NoChannel), like a forwarded packet.
    net.command(Command::AddParticipant {
        conf: CONF,
        participant: 3,
    });
    net.tick(Duration::from_millis(10));
    net.drain();
    assert!(net.mesh.stats().drops(DropReason::NoChannel) >= 1);
    assert!(net.received(addr(3)).is_empty());
}

#[test]
fn talk_commands_reach_the_path_and_come_back_as_events() {
    let mut net: Net<Ticker> = Net::new(MeshConfig::default());
    net.conference(Ticker::default(), &[1, 2]);
    while net.mesh.poll_event().is_some() {}
    net.command(Command::Talk {
        conf: CONF,
        participant: 2,
        on: true,
    });
    // Not a member: rejected.
    net.command(Command::Talk {
        conf: CONF,
        participant: 9,
        on: true,
    });
    let rejected = net.mesh.stats().commands_rejected;
    net.tick(Duration::from_millis(10));
    assert_eq!(net.mesh.stats().commands_rejected, rejected + 1);
    assert_eq!(
        net.mesh.poll_event(),
        Some(Event::Speaking {
            conf: CONF,
            participant: 2,
            on: true
        })
    );
    assert_eq!(
        net.mesh.poll_event(),
        Some(Event::Quality {
            conf: CONF,
            participant: 2,
            loss_permille: 25,
            jitter_ms: 40
        })
    );
    assert_eq!(net.mesh.poll_event(), None);
}

/// A path that answers every RTCP compound with the same bytes to every other member's
/// channel of the kind the mesh resolved (video when it could not), and records the calls.
#[derive(Default)]
struct Echo {
    calls: Vec<(ParticipantId, Option<MediaKind>, usize)>,
}

impl Path for Echo {
    fn route(
        &mut self,
        _now: Instant,
        _src: ParticipantId,
        _kind: MediaKind,
        _pkt: &RtpView<'_>,
        _members: &[ParticipantId],
        _out: &mut Vec<ParticipantId>,
    ) {
    }

    fn on_rtcp(
        &mut self,
        _now: Instant,
        src: ParticipantId,
        kind: Option<MediaKind>,
        data: &[u8],
        members: &[ParticipantId],
        out: &mut PathOut<'_>,
    ) {
        self.calls.push((src, kind, data.len()));
        for &m in members.iter().filter(|&&m| m != src) {
            out.send_rtcp(m, kind.unwrap_or(MediaKind::Video), data);
        }
    }
}

#[test]
fn rtcp_from_members_reaches_the_path_with_its_kind() {
    let mut net: Net<Echo> = Net::new(MeshConfig::default());
    net.conference(Echo::default(), &[1, 2, 3]);
    net.drain();
    // An SR from 1's video SSRC, an RR from an SSRC none of 1's channels use.
    let sr = packet::sender_report(ssrc(1, MediaKind::Video), 0, 0, 0, 0, &[]);
    let rr = packet::receiver_report(0xbad, &[]);
    assert_eq!(net.send_raw(addr(1), &sr), 2);
    assert_eq!(net.send_raw(addr(1), &rr), 2);
    // Malformed (length past the end) and from a stranger: the path never sees them.
    assert_eq!(net.send_raw(addr(1), &[0x80, 201, 0, 9, 0, 0, 0, 1]), 0);
    let stranger = "192.0.2.9:5000".parse().unwrap();
    assert_eq!(net.send_raw(stranger, &rr), 0);
    let calls = &net.mesh.path(CONF).unwrap().calls;
    assert_eq!(calls, &vec![(1, Some(MediaKind::Video), 28), (1, None, 8)]);
    let st = net.mesh.stats();
    assert_eq!((st.rtcp_in, st.rtcp_out), (2, 4));
    assert_eq!(st.drops(DropReason::Rtcp), 1);
    assert_eq!(st.drops(DropReason::UnknownSource), 1);
    assert_eq!(net.inbox[&addr(2)][0], sr);
}
