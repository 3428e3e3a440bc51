//! The sans-IO media core of one media-server worker.
//!
//! A worker thread owns one [`Mesh`]: it feeds in datagrams, control commands and clock ticks,
//! and drains transmits and events. The mesh never touches sockets, threads or the clock, so
//! the whole media path is deterministic and testable with virtual time.
//!
//! Each RTP packet goes through sorter -> [`Path`] -> filter -> scheduler -> sender:
//! - the **sorter** (one per conference) maps address and SSRC to a participant stream and keeps
//!   RFC 3550 reception statistics;
//! - the **path** (reflector or transcoder, supplied by the caller) chooses the receivers;
//! - the **filter** (one per receiver) decides *whether* (no echo, mute);
//! - the **scheduler** (one per receiver) decides *when* (budget, video shed before audio);
//! - the **sender** (one per receiver) decides *how*, writing into the transmit batch.
//!
//! Forwarding allocates nothing on the heap once the tables and batch have warmed up, and
//! every packet that is not forwarded is counted under a [`DropReason`].

mod command;
mod filter;
mod mesh;
pub mod rtcp;
pub mod rtcp_write;
pub mod rtp;
mod scheduler;
mod sender;
mod sorter;
mod stats;
pub mod talk;
mod tx;

use std::time::Instant;

pub use command::{Command, Event, MeshConfig};
pub use mesh::{Mesh, PathOut};
pub use rtp::RtpView;
pub use sorter::StreamReport;
pub use stats::{DropReason, MeshStats, QualitySummary, StreamStats};
pub use tx::{TxBatch, TxPacket, TX_HEAD_MAX};

/// The hot path's maps: std's map with aHash instead of SipHash. SipHash was about a
/// quarter of the 1->1 forwarding cost in `benches/benches/mesh.rs`; aHash keeps random
/// per-process keys, so lookups of attacker-chosen addresses stay collision-resistant.
/// Build them with a [`Hasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// How the keys of every [`FastMap`] of a mesh and its paths are chosen.
///
/// The default draws random keys for each map, as production must (hash flooding). A seed
/// ([`MeshConfig::hash_seed`]) derives them from it instead, so that a sans-IO run repeats
/// exactly, down to the order in which maps are walked (keyframe requests to several
/// senders, ticks of several conferences). The keys are chosen when a map is made, never
/// per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hasher {
    seed: Option<u64>,
}

impl Hasher {
    /// Random keys with `None`, keys from the seed otherwise.
    pub const fn new(seed: Option<u64>) -> Hasher {
        Hasher { seed }
    }

    /// Keys from `seed`.
    pub const fn seeded(seed: u64) -> Hasher {
        Hasher { seed: Some(seed) }
    }

    /// The keys for one map.
    pub fn build(self) -> ahash::RandomState {
        match self.seed {
            None => ahash::RandomState::new(),
            // Four different words from one seed; ahash mixes each with its own constant.
            Some(s) => ahash::RandomState::with_seeds(
                s,
                s.rotate_left(16) ^ 0x243f_6a88_85a3_08d3,
                s.rotate_left(32) ^ 0x1319_8a2e_0370_7344,
                s.rotate_left(48) ^ 0xa409_3822_299f_31d0,
            ),
        }
    }

    /// An empty map.
    pub fn map<K, V>(self) -> FastMap<K, V> {
        FastMap::with_hasher(self.build())
    }

    /// An empty map with room for `n` entries.
    pub fn map_with_capacity<K, V>(self, n: usize) -> FastMap<K, V> {
        FastMap::with_capacity_and_hasher(n, self.build())
    }
}

/// Worker-local conference key chosen by the control plane.
pub type ConfId = u32;
/// Server-wide participant id chosen by the control plane.
pub type ParticipantId = u32;

/// The kind of media a channel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    /// Both kinds, in index order.
    pub const ALL: [MediaKind; 2] = [MediaKind::Audio, MediaKind::Video];

    /// Dense index for per-kind arrays.
    pub const fn index(self) -> usize {
        match self {
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
        }
    }
}

/// Where a participant's channel sends from and receives at (symmetric RTP, except
/// [`Remote::LatchTo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    /// A fixed address announced by the client.
    Addr(std::net::SocketAddr),
    /// Learned from the first packet from this IP carrying the channel's SSRC (NAT traversal).
    Latch(std::net::IpAddr),
    /// Asymmetric, for plain-RTP tools (ffmpeg, GStreamer) that send from an unknown port
    /// and receive at a declared one: the source is latched like `Latch(from)`, and packets
    /// for the participant go to `to` from the start.
    LatchTo {
        from: std::net::IpAddr,
        to: std::net::SocketAddr,
    },
    /// A linked media server's media address (cascading). Every stream of every conference
    /// the two servers share comes from it, so packets from it are told apart by SSRC (RTP)
    /// or sender SSRC (RTCP), not by address.
    Relay(std::net::SocketAddr),
}

/// What kind of endpoint a participant is, across linked servers (cascading; see
/// [`Command::SetEndpoint`]). Who receives what follows from it in one place,
/// [`Endpoint::receives`], which the filter applies to every packet and paths use to build
/// their tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Endpoint {
    /// A client of this server.
    #[default]
    Client,
    /// A linked server's receiving end: it gets what this server's own clients send, once,
    /// and its server fans that out to its members.
    Peer,
    /// A linked server's member, mirrored here: its streams come over the link (a
    /// [`Remote::Relay`] channel) and its own server sends it media. RTCP for it (feedback
    /// to its sender) goes over the link with `link_ssrc` as the sender SSRC: the SSRC the
    /// linked server knows this server's side of the link by.
    Remote { link_ssrc: u32 },
    /// The end towards another worker's part of the same room on this server: it gets
    /// this part's clients' media and what came over a link to this part (the other part
    /// has no link of its own), once.
    ShardPeer,
    /// A member of another worker's part of this room, mirrored here (its streams come
    /// from that worker), or a linked server's member that another part mirrors from its
    /// link. RTCP for it goes to that worker under `link_ssrc`, as for [`Endpoint::Remote`].
    ShardRemote { link_ssrc: u32 },
}

impl Endpoint {
    /// Whether a receiver of this kind gets media from a source of kind `src`: a mirrored
    /// member gets nothing here; a link carries this server's members only (from any
    /// worker), and a worker's end this part's clients and what this part's links brought,
    /// so nothing comes back the way it came.
    pub const fn receives(self, src: Endpoint) -> bool {
        match self {
            Endpoint::Client => true,
            Endpoint::Remote { .. } | Endpoint::ShardRemote { .. } => false,
            Endpoint::Peer => matches!(src, Endpoint::Client | Endpoint::ShardRemote { .. }),
            Endpoint::ShardPeer => matches!(src, Endpoint::Client | Endpoint::Remote { .. }),
        }
    }

    /// True for the ends of links and worker parts and the members mirrored through them,
    /// none of which is a client of this server.
    pub const fn is_link(self) -> bool {
        !matches!(self, Endpoint::Client)
    }

    /// True for an end that forwards to another server or worker ([`Endpoint::Peer`],
    /// [`Endpoint::ShardPeer`]): it gets each stream as it comes, every simulcast encoding.
    pub const fn is_end(self) -> bool {
        matches!(self, Endpoint::Peer | Endpoint::ShardPeer)
    }

    /// The SSRC RTCP about a mirrored member's streams goes back under.
    pub const fn mirror_ssrc(self) -> Option<u32> {
        match self {
            Endpoint::Remote { link_ssrc } | Endpoint::ShardRemote { link_ssrc } => Some(link_ssrc),
            _ => None,
        }
    }
}

/// The per-conference media path (reflector now, transcoder later).
///
/// Static dispatch: the media server implements this for its own enum over paths, since the
/// mesh cannot depend on the path crates.
pub trait Path {
    /// Chooses which members receive this media packet from `src` and pushes their ids into
    /// `out`, which the mesh has already cleared.
    fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    );

    /// Periodic work of the path, called on every mesh tick after queued commands are
    /// applied: a mixing path produces its packets here and hands each receiver its own
    /// through `out`, which applies the receiver's scheduler and sender.
    fn on_tick(&mut self, _now: Instant, _members: &[ParticipantId], _out: &mut PathOut<'_>) {}

    /// A compound RTCP packet (already validated by [`rtcp::is_valid`]) from member `src`.
    /// `kind` is the channel whose SSRC sent it, `None` when the sender SSRC is none of
    /// `src`'s (a receive-only endpoint's reports). The path terminates it and may answer or
    /// relay through `out` (retransmissions, keyframe requests, reports). By default RTCP is
    /// consumed and nothing is sent.
    fn on_rtcp(
        &mut self,
        _now: Instant,
        _src: ParticipantId,
        _kind: Option<MediaKind>,
        _data: &[u8],
        _members: &[ParticipantId],
        _out: &mut PathOut<'_>,
    ) {
    }

    /// A sender's simulcast encodings (SSRCs, lowest quality first), from
    /// [`Command::SetSimulcast`], applied between ticks.
    fn on_simulcast(&mut self, _now: Instant, _participant: ParticipantId, _layers: &[u32]) {}

    /// The header `receiver`'s copy of `src`'s video packet goes out with, when the path
    /// rewrites it (one continuous stream across simulcast switches). Called for video only,
    /// after the filter and scheduler admitted the packet. `None` sends it unchanged.
    fn rewrite(
        &mut self,
        _src: ParticipantId,
        _receiver: ParticipantId,
        _pkt: &RtpView<'_>,
    ) -> Option<Rewrite> {
        None
    }

    /// A receiver's video preferences ([`Command::ReceiverPrefs`]), applied between ticks.
    fn on_receiver_prefs(
        &mut self,
        _now: Instant,
        _participant: ParticipantId,
        _prefs: ReceiverPrefs,
    ) {
    }

    /// Push to talk from the control line (`talk on|off`), applied between ticks.
    fn on_talk(&mut self, _now: Instant, _participant: ParticipantId, _on: bool) {}

    /// `participant` was muted or unmuted ([`Command::Mute`]), applied between ticks. The
    /// mesh's filter already keeps a muted member's audio from being forwarded; a path that
    /// consumes audio itself (a mixer) leaves it out, and no path reports a muted member as
    /// talking.
    fn on_mute(&mut self, _now: Instant, _participant: ParticipantId, _muted: bool) {}

    /// `participant`'s `kind` channel was set up or moved ([`Command::SetChannel`]), applied
    /// between ticks. A member may join a round trip before its channel exists; what was
    /// routed to it meanwhile went nowhere, so a path that starts receivers at a keyframe
    /// starts this one again here.
    fn on_channel(&mut self, _now: Instant, _participant: ParticipantId, _kind: MediaKind) {}

    /// `participant` became a link's end or a mirrored member ([`Command::SetEndpoint`]),
    /// applied between ticks. The mesh's filter already applies [`Endpoint::receives`]; a
    /// path keeps such members out of what it prepares for receivers.
    fn on_endpoint(&mut self, _now: Instant, _participant: ParticipantId, _endpoint: Endpoint) {}
}

/// Most simulcast encodings one sender may declare.
pub const MAX_LAYERS: usize = 3;

/// What a receiver negotiated or asked for about the video it gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverPrefs {
    /// Highest simulcast layer wanted (0 = lowest); `None`: whatever the estimate allows.
    pub max_layer: Option<u8>,
    /// Retransmissions as RTX (RFC 4588) with this payload type; `None`: plain resends.
    pub rtx_payload_type: Option<u8>,
}

/// A receiver's own RTP header fields for one forwarded packet (see [`Path::rewrite`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub ssrc: u32,
    pub sequence_number: u16,
    pub timestamp: u32,
    /// Payload bytes of its own: a VP8 picture ID and TL0PICIDX continued across a
    /// simulcast switch. Empty mostly; when not, the receiver's copy gets a body of its own.
    pub patch: Patch,
}

/// Up to [`Patch::MAX`] bytes of a packet, by offset from its start, that one receiver's
/// copy gets in place of the source's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    len: u8,
    bytes: [(u16, u8); Patch::MAX],
}

impl Patch {
    pub const MAX: usize = 3;

    /// Byte `at` becomes `value`; false when the patch is full.
    pub fn set(&mut self, at: usize, value: u8) -> bool {
        let (Some(slot), Ok(at)) = (self.bytes.get_mut(usize::from(self.len)), u16::try_from(at))
        else {
            return false;
        };
        *slot = (at, value);
        self.len += 1;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Applies it to `pkt` (offsets past its end are left alone).
    pub fn apply(&self, pkt: &mut [u8]) {
        self.apply_from(pkt, 0);
    }

    /// Applies it to `part`, the packet from byte `start` on.
    pub fn apply_from(&self, part: &mut [u8], start: usize) {
        for &(at, v) in &self.bytes[..usize::from(self.len)] {
            let at = usize::from(at);
            if let Some(b) = at.checked_sub(start).and_then(|i| part.get_mut(i)) {
                *b = v;
            }
        }
    }
}

/// Why bytes could not be read as RTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet shorter than its headers say")]
    Truncated,
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("padding count is zero or longer than the body")]
    BadPadding,
    #[error("RTCP packet body does not match its type")]
    BadRtcp,
}
