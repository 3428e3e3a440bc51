//! `Remote::LatchTo`, the channel of a plain-RTP tool behind `confclient --external-media`:
//! the source is latched by IP and SSRC from whatever port the tool sends from, and media
//! for the participant goes to its declared receive port, before the latch and after.

mod common;

use common::{addr, ip, ssrc, Everyone, Net, CONF};
use mesh::{Command, DropReason, Event, MediaKind, MeshConfig, Remote};
use std::net::SocketAddr;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(10);

#[test]
fn latch_to_receives_at_its_port_before_and_after_the_latch() {
    let mut net: Net<Everyone> = Net::new(MeshConfig::default());
    net.command(Command::CreateConference {
        conf: CONF,
        path: Box::new(Everyone),
    });
    net.join(1, Remote::Addr(addr(1)));
    let recv = SocketAddr::new(ip(3), 5004);
    net.join(
        3,
        Remote::LatchTo {
            from: ip(3),
            to: recv,
        },
    );
    net.tick(TICK);

    // Before the tool has sent anything, 1's audio already reaches its receive port.
    assert_eq!(net.send(1, MediaKind::Audio), 1);
    assert_eq!(net.count_from(recv, ssrc(1, MediaKind::Audio)), 1);

    // The tool sends from a port nobody announced: latched and forwarded.
    let tool = SocketAddr::new(ip(3), 47_123);
    assert_eq!(net.send_from(tool, 3, MediaKind::Audio), 1);
    assert_eq!(net.count_from(addr(1), ssrc(3, MediaKind::Audio)), 1);
    assert_eq!(
        net.mesh.poll_event(),
        Some(Event::Latched {
            conf: CONF,
            participant: 3,
            kind: MediaKind::Audio,
            addr: tool,
        })
    );

    // Media still goes to the receive port, never back to the tool's source port.
    assert_eq!(net.send(1, MediaKind::Audio), 1);
    assert_eq!(net.count_from(recv, ssrc(1, MediaKind::Audio)), 2);
    assert!(net.received(tool).is_empty());

    // The receive port is not a source, and the SSRC from another IP is a stranger.
    let before = net.mesh.stats().drops(DropReason::UnknownSource);
    assert_eq!(net.send_from(recv, 3, MediaKind::Audio), 0);
    assert_eq!(net.send_from(addr(2), 3, MediaKind::Audio), 0);
    assert_eq!(
        net.mesh.stats().drops(DropReason::UnknownSource),
        before + 2
    );
}
