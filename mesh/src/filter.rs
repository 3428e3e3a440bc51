//! The filter, one per receiver: decides *whether* a packet goes to that receiver.
//!
//! Later it also applies smart duplex, last-N and simulcast thinning; each rule is one check
//! that returns the [`DropReason`] it stands for.

use crate::{DropReason, Endpoint, MediaKind, ParticipantId};

/// What the filter needs to know about a packet's source.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub(crate) src: ParticipantId,
    pub(crate) kind: MediaKind,
    /// Moderator mute of the source.
    pub(crate) src_muted: bool,
    pub(crate) src_endpoint: Endpoint,
}

#[derive(Clone, Debug)]
pub(crate) struct Filter {
    receiver: ParticipantId,
    endpoint: Endpoint,
}

impl Filter {
    pub(crate) fn new(receiver: ParticipantId) -> Self {
        Self {
            receiver,
            endpoint: Endpoint::Client,
        }
    }

    pub(crate) fn set_endpoint(&mut self, endpoint: Endpoint) {
        self.endpoint = endpoint;
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    pub(crate) fn check(&self, c: &Candidate) -> Result<(), DropReason> {
        if c.src == self.receiver {
            return Err(DropReason::OwnStream);
        }
        if !self.endpoint.receives(c.src_endpoint) {
            return Err(match self.endpoint.mirror_ssrc() {
                Some(_) => DropReason::RemoteMember,
                None => DropReason::Relayed,
            });
        }
        // Mute silences a participant; their video still shows.
        if c.src_muted && c.kind == MediaKind::Audio {
            return Err(DropReason::Muted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(src: ParticipantId, kind: MediaKind, src_muted: bool) -> Candidate {
        Candidate {
            src,
            kind,
            src_muted,
            src_endpoint: Endpoint::Client,
        }
    }

    /// Participant 6's audio, come by way of `src_endpoint`.
    fn from(src_endpoint: Endpoint) -> Candidate {
        Candidate {
            src_endpoint,
            ..cand(6, MediaKind::Audio, false)
        }
    }

    #[test]
    fn links_carry_only_local_media_and_mirrors_get_none() {
        let remote = Endpoint::Remote { link_ssrc: 9 };
        let mut peer = Filter::new(5);
        peer.set_endpoint(Endpoint::Peer);
        assert_eq!(peer.check(&from(Endpoint::Client)), Ok(()));
        assert_eq!(peer.check(&from(remote)), Err(DropReason::Relayed));
        assert_eq!(peer.check(&from(Endpoint::Peer)), Err(DropReason::Relayed));
        let mut mirror = Filter::new(5);
        mirror.set_endpoint(remote);
        assert_eq!(
            mirror.check(&from(Endpoint::Client)),
            Err(DropReason::RemoteMember)
        );
        // A client here hears the mirrored member.
        assert_eq!(Filter::new(5).check(&from(remote)), Ok(()));
    }

    /// A room over workers and linked servers: a link carries every worker's members and
    /// nothing that came over a link; a worker's end carries its part's clients and what
    /// its links brought, never what came from another worker.
    #[test]
    fn links_and_worker_ends_never_send_back_what_came_their_way() {
        let remote = Endpoint::Remote { link_ssrc: 9 };
        let shard_remote = Endpoint::ShardRemote { link_ssrc: 8 };
        let mut peer = Filter::new(5);
        peer.set_endpoint(Endpoint::Peer);
        assert_eq!(peer.check(&from(shard_remote)), Ok(()));
        assert_eq!(peer.check(&from(remote)), Err(DropReason::Relayed));
        let mut shard = Filter::new(5);
        shard.set_endpoint(Endpoint::ShardPeer);
        assert_eq!(shard.check(&from(Endpoint::Client)), Ok(()));
        assert_eq!(shard.check(&from(remote)), Ok(()));
        assert_eq!(shard.check(&from(shard_remote)), Err(DropReason::Relayed));
        assert_eq!(shard.check(&from(Endpoint::Peer)), Err(DropReason::Relayed));
        assert_eq!(
            shard.check(&from(Endpoint::ShardPeer)),
            Err(DropReason::Relayed)
        );
        let mut mirror = Filter::new(5);
        mirror.set_endpoint(shard_remote);
        assert_eq!(
            mirror.check(&from(Endpoint::Client)),
            Err(DropReason::RemoteMember)
        );
        assert_eq!(Filter::new(5).check(&from(shard_remote)), Ok(()));
    }

    #[test]
    fn never_echoes() {
        let f = Filter::new(5);
        assert_eq!(
            f.check(&cand(5, MediaKind::Audio, false)),
            Err(DropReason::OwnStream)
        );
        assert_eq!(
            f.check(&cand(5, MediaKind::Video, true)),
            Err(DropReason::OwnStream)
        );
        assert_eq!(f.check(&cand(6, MediaKind::Audio, false)), Ok(()));
    }

    #[test]
    fn mute_stops_audio_only() {
        let f = Filter::new(5);
        assert_eq!(
            f.check(&cand(6, MediaKind::Audio, true)),
            Err(DropReason::Muted)
        );
        assert_eq!(f.check(&cand(6, MediaKind::Video, true)), Ok(()));
    }
}
