//! The filter, one per receiver: decides *whether* a packet goes to that receiver.
//!
//! Later it also applies smart duplex, last-N and simulcast thinning; each rule is one check
//! that returns the [`DropReason`] it stands for.

use crate::{DropReason, MediaKind, ParticipantId};

/// What the filter needs to know about a packet's source.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub(crate) src: ParticipantId,
    pub(crate) kind: MediaKind,
    /// Moderator mute of the source.
    pub(crate) src_muted: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Filter {
    receiver: ParticipantId,
}

impl Filter {
    pub(crate) fn new(receiver: ParticipantId) -> Self {
        Self { receiver }
    }

    pub(crate) fn check(&self, c: &Candidate) -> Result<(), DropReason> {
        if c.src == self.receiver {
            return Err(DropReason::OwnStream);
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
        }
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
