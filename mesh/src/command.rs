//! What the control plane tells the mesh, what the mesh tells it back, and how it is sized.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{ConfId, Endpoint, MediaKind, ParticipantId, Remote};

/// A control-plane change. Queued by [`crate::Mesh::handle_command`] and applied at the next
/// [`crate::Mesh::handle_tick`], so media sees the tables change only between clock ticks
/// (seed 003). A command that does not fit the current state (unknown conference, duplicate
/// participant, address owned by someone else) is skipped and counted in
/// [`crate::MeshStats::commands_rejected`].
pub enum Command<P> {
    /// The path is boxed so that every command stays small in the worker's queue (a
    /// reflector's tables are kilobytes); the mesh keeps it unboxed.
    CreateConference {
        conf: ConfId,
        path: Box<P>,
    },
    RemoveConference {
        conf: ConfId,
    },
    AddParticipant {
        conf: ConfId,
        participant: ParticipantId,
    },
    RemoveParticipant {
        conf: ConfId,
        participant: ParticipantId,
    },
    /// The participant sends `kind` media with `ssrc` from `remote` and receives it at the same
    /// address (symmetric RTP). `Remote::Latch(ip)`: the address is learned from the first
    /// packet from `ip` carrying `ssrc`. `Remote::LatchTo { from, to }`: learned the same way,
    /// but the participant receives at `to` (a plain-RTP tool). Replaces any earlier channel
    /// of that kind.
    SetChannel {
        conf: ConfId,
        participant: ParticipantId,
        kind: MediaKind,
        remote: Remote,
        ssrc: u32,
        clock_rate: u32,
    },
    /// Simulcast: the participant's video channel sends several encodings. `layers` lists
    /// every encoding's SSRC, the channel's own included, from lowest to highest quality (at
    /// most [`crate::MAX_LAYERS`]). They all come from the channel's address; the path learns
    /// them through [`crate::Path::on_simulcast`]. Rejected without a video channel.
    SetSimulcast {
        conf: ConfId,
        participant: ParticipantId,
        layers: Vec<u32>,
    },
    /// Per-receiver send budget in bits/s (None = unlimited). Over budget, video is shed
    /// before audio.
    SetBudget {
        conf: ConfId,
        participant: ParticipantId,
        bits_per_sec: Option<u64>,
    },
    /// Mute: the participant's audio is not forwarded (nor mixed) while muted. Handed to
    /// the path too ([`crate::Path::on_mute`]).
    Mute {
        conf: ConfId,
        participant: ParticipantId,
        muted: bool,
    },
    /// Push to talk (`talk on|off`): handed to the conference's [`crate::Path::on_talk`].
    Talk {
        conf: ConfId,
        participant: ParticipantId,
        on: bool,
    },
    /// Cascading: the participant is a linked server's end or one of its members mirrored
    /// here (see [`Endpoint`]). Handed to the path too ([`crate::Path::on_endpoint`]).
    SetEndpoint {
        conf: ConfId,
        participant: ParticipantId,
        endpoint: Endpoint,
    },
    /// What a receiver negotiated or asked for about the video it gets: handed to the
    /// conference's [`crate::Path::on_receiver_prefs`].
    ReceiverPrefs {
        conf: ConfId,
        participant: ParticipantId,
        prefs: crate::ReceiverPrefs,
    },
}

/// Something the control plane should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A Latch channel learned its address.
    Latched {
        conf: ConfId,
        participant: ParticipantId,
        kind: MediaKind,
        addr: SocketAddr,
    },
    /// A talk run of `participant` started (`on`) or stopped, as the path detected it.
    Speaking {
        conf: ConfId,
        participant: ParticipantId,
        on: bool,
    },
    /// Reception quality of `participant`'s stream over the last interval, as the path
    /// measured it: lost or too-late frames in per mille, interarrival jitter in ms.
    Quality {
        conf: ConfId,
        participant: ParticipantId,
        loss_permille: u32,
        jitter_ms: u32,
    },
    /// The audio levels of the active talkers over the last level period
    /// ([`crate::talk::LEVEL_PERIOD`]), one batch per conference and period.
    Levels {
        conf: ConfId,
        levels: crate::talk::Levels,
    },
    /// The dominant speaker changed (after the hysteresis of
    /// [`crate::talk::DominantSpeaker`]).
    Dominant {
        conf: ConfId,
        participant: ParticipantId,
    },
}

/// Sizing of one mesh. The counts are pre-sizing hints, not limits: going past them works
/// but allocates while the tables grow.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Period of [`crate::Mesh::handle_tick`].
    pub tick: Duration,
    pub max_conferences: usize,
    pub max_participants: usize,
    /// Packets the transmit batch holds before further packets are dropped as
    /// [`crate::DropReason::TxFull`]; bounds memory when the caller polls too rarely.
    pub tx_packets: usize,
    /// Bytes the transmit batch holds before further packets are dropped as `TxFull`.
    pub tx_bytes: usize,
    /// Keys for the mesh's hash maps: `None` (production) draws random ones; a seed makes a
    /// test run repeat exactly (see [`crate::Hasher`]).
    pub hash_seed: Option<u64>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(10),
            max_conferences: 64,
            max_participants: 1024,
            tx_packets: 4096,
            tx_bytes: 4096 * 1500,
            hash_seed: None,
        }
    }
}
