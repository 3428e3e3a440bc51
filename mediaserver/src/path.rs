//! The media paths a conference can take through the mesh, as one enum so the mesh
//! dispatches statically.

use mesh::{MediaKind, ParticipantId, PathOut, RtpView};
use std::time::Instant;

/// The path of one conference.
pub enum MediaPath {
    /// SFU: forward, never decode.
    Reflect(reflector::Reflector),
    /// MCU (`mode=mix`): decode, mix-minus with smart duplex, encode; video is forwarded.
    Mix(Box<transcoder::Transcoder>),
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
            MediaPath::Mix(t) => t.route(now, src, kind, pkt, members, out),
        }
    }

    fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        match self {
            MediaPath::Reflect(r) => r.on_tick(now, members, out),
            MediaPath::Mix(t) => t.on_tick(now, members, out),
        }
    }

    fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        match self {
            MediaPath::Reflect(r) => r.on_talk(now, participant, on),
            MediaPath::Mix(t) => t.on_talk(now, participant, on),
        }
    }
}
