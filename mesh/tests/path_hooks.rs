//! The path's tick and talk hooks: packets a path produces on a tick go out through each
//! receiver's sender and scheduler; `Command::Talk` reaches the path between ticks; talk
//! and quality notices become events.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh::{
    Command, DropReason, Event, MediaKind, MeshConfig, ParticipantId, Path, PathOut, RtpView,
};

/// A path that forwards nothing and, on every tick, sends each member one packet and
/// reports the talk commands it got.
#[derive(Default)]
struct Ticker {
    talks: Vec<(ParticipantId, bool)>,
    ticks: u32,
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
