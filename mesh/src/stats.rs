//! Counters: why packets were not forwarded, and what went in and out.

/// Why a datagram, or one receiver's copy of it, was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid RTP packet.
    Malformed,
    /// An address or SSRC that no channel set up. Nothing is ever sent in response.
    UnknownSource,
    /// RTCP (RFC 5761 demux) from a known source whose compound packet does not parse.
    Rtcp,
    /// Never echo a participant's own stream back to it.
    OwnStream,
    /// The source is muted.
    Muted,
    /// The receiver's budget is spent; only video is shed this way.
    OverBudget,
    /// The receiver's channel for this kind has not latched its address yet.
    NoReceiveAddress,
    /// The receiver has no channel of this kind (for example audio-only).
    NoChannel,
    /// The path routed to an id that is not a member of the conference.
    UnknownReceiver,
    /// The transmit batch is full because the caller has not polled it.
    TxFull,
    /// The receiver is a linked server's member: its own server sends it media.
    RemoteMember,
    /// A link never carries back what came over a link.
    Relayed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::UnknownSource,
        DropReason::Rtcp,
        DropReason::OwnStream,
        DropReason::Muted,
        DropReason::OverBudget,
        DropReason::NoReceiveAddress,
        DropReason::NoChannel,
        DropReason::UnknownReceiver,
        DropReason::TxFull,
        DropReason::RemoteMember,
        DropReason::Relayed,
    ];

    /// A stable snake_case name for metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSource => "unknown_source",
            DropReason::Rtcp => "rtcp",
            DropReason::OwnStream => "own_stream",
            DropReason::Muted => "muted",
            DropReason::OverBudget => "over_budget",
            DropReason::NoReceiveAddress => "no_receive_address",
            DropReason::NoChannel => "no_channel",
            DropReason::UnknownReceiver => "unknown_receiver",
            DropReason::TxFull => "tx_full",
            DropReason::RemoteMember => "remote_member",
            DropReason::Relayed => "relayed",
        }
    }

    /// Position in [`DropReason::ALL`], for arrays of per-reason counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Mesh-wide counters, all monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshStats {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Valid RTCP compounds from members, handed to the path.
    pub rtcp_in: u64,
    /// RTCP packets the path sent (also counted in `packets_out`).
    pub rtcp_out: u64,
    pub commands_applied: u64,
    /// Commands that did not fit the state when applied (see [`crate::Command`]).
    pub commands_rejected: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl MeshStats {
    /// How many drops were counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Every reason with its count, zero counts included, for metrics export.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.drops(r)))
    }

    /// Sum over all reasons.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }
}

/// RFC 3550 reception statistics of one incoming stream, as kept by the sorter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamStats {
    /// Packets accepted from this stream, duplicates and late ones included.
    pub packets: u64,
    /// Cumulative packets lost (expected minus received, RFC 3550 A.3), floored at zero.
    pub lost: u64,
    /// Interarrival jitter (RFC 3550 A.8) in milliseconds.
    pub jitter_ms: f64,
    /// Highest sequence number seen, extended with the wraparound count.
    pub highest_seq_ext: u64,
    /// Packets that arrived after a higher sequence number (late or duplicate).
    pub reordered: u64,
}

/// Reception quality over every incoming stream of a mesh, for worker-level metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QualitySummary {
    /// Declared incoming streams.
    pub streams: u64,
    /// Sum of [`StreamStats::lost`] over the streams.
    pub lost: u64,
    /// Sum of [`StreamStats::reordered`] over the streams.
    pub reordered: u64,
    /// Largest [`StreamStats::jitter_ms`] of any stream.
    pub max_jitter_ms: f64,
}

impl QualitySummary {
    pub(crate) fn add(&mut self, s: &StreamStats) {
        self.streams += 1;
        self.lost += s.lost;
        self.reordered += s.reordered;
        if s.jitter_ms > self.max_jitter_ms {
            self.max_jitter_ms = s.jitter_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let mut s = MeshStats::default();
        s.drop(DropReason::Muted);
        s.drop(DropReason::Muted);
        s.drop(DropReason::TxFull);
        assert_eq!(s.drops(DropReason::Muted), 2);
        assert_eq!(s.drops(DropReason::TxFull), 1);
        assert_eq!(s.total_drops(), 3);
        assert_eq!(s.drop_counts().count(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "ALL must follow declaration order");
        }
    }
}
