//! The media paths a conference can take through the mesh, as one enum so the mesh
//! dispatches statically.

use mesh::{MediaKind, ParticipantId, RtpView};
use std::time::Instant;

/// The path of one conference.
pub enum MediaPath {
    /// SFU: forward, never decode.
    Reflect(reflector::Reflector),
}

impl mesh::Path for MediaPath {
    fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        match self {
            MediaPath::Reflect(r) => r.route(now, src, kind, pkt, members, out),
        }
    }
}
