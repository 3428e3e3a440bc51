//! A conference set up in a mesh: the commands every sans-IO test and bench queues before
//! its first packet, applied at the mesh's next tick.
//!
//! ```
//! use std::time::Instant;
//! use mesh::{Mesh, MeshConfig, Remote};
//! use testkit::conference::{self, Channel};
//! # #[derive(Default)] struct Nobody;
//! # impl mesh::Path for Nobody {
//! #     fn route(&mut self, _: Instant, _: u32, _: mesh::MediaKind, _: &mesh::RtpView<'_>,
//! #         _: &[u32], _: &mut Vec<u32>) {}
//! # }
//!
//! let now = Instant::now();
//! let mut mesh = Mesh::new(now, MeshConfig::default());
//! conference::create(&mut mesh, now, 1, Nobody);
//! let at = Remote::Addr("10.0.0.1:5000".parse().unwrap());
//! conference::join(&mut mesh, now, 1, 7, at, &[Channel::audio(0x70)]);
//! mesh.handle_tick(now);
//! assert_eq!(mesh.participant_count(), 1);
//! ```

use std::time::Instant;

use ::mesh::{Command, ConfId, MediaKind, Mesh, ParticipantId, Path, Remote};

/// One channel a member sends and receives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub kind: MediaKind,
    pub ssrc: u32,
    pub clock_rate: u32,
}

impl Channel {
    /// Audio with `ssrc` at 48 kHz (Opus).
    pub const fn audio(ssrc: u32) -> Channel {
        Channel {
            kind: MediaKind::Audio,
            ssrc,
            clock_rate: 48_000,
        }
    }

    /// Video with `ssrc` at 90 kHz.
    pub const fn video(ssrc: u32) -> Channel {
        Channel {
            kind: MediaKind::Video,
            ssrc,
            clock_rate: 90_000,
        }
    }

    /// The same channel at another clock rate (8000 for G.711).
    pub const fn at(self, clock_rate: u32) -> Channel {
        Channel { clock_rate, ..self }
    }
}

/// Queues conference `conf` on `path`.
pub fn create<P: Path>(mesh: &mut Mesh<P>, now: Instant, conf: ConfId, path: P) {
    mesh.handle_command(
        now,
        Command::CreateConference {
            conf,
            path: Box::new(path),
        },
    );
}

/// Queues `id`'s join to `conf` with `channels`, all at `remote`.
pub fn join<P: Path>(
    mesh: &mut Mesh<P>,
    now: Instant,
    conf: ConfId,
    id: ParticipantId,
    remote: Remote,
    channels: &[Channel],
) {
    mesh.handle_command(
        now,
        Command::AddParticipant {
            conf,
            participant: id,
        },
    );
    for c in channels {
        mesh.handle_command(
            now,
            Command::SetChannel {
                conf,
                participant: id,
                kind: c.kind,
                remote,
                ssrc: c.ssrc,
                clock_rate: c.clock_rate,
            },
        );
    }
}
