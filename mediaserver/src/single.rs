//! Single-stream endpoints (seed 001's legacy endpoints, issue 14): a plain-RTP member that
//! joins with `stream=single` (`confclient --external-media ... --video --single-stream`)
//! gets one composite video and one mixed audio stream in any conference, as a room system
//! would, instead of every sender's streams.
//!
//! In a reflect room nothing is mixed: a mixer of its own mixes for these members alone
//! (each its mix-minus). In a reflect or mix room nothing is composited: a composite of its
//! own, on the compositor service, goes to these members alone. A composite room gives
//! every member that already.

use std::time::Instant;

use mesh::{MediaKind, ParticipantId, PathOut, RtpView};
use transcoder::composite::CompositeVideo;
use transcoder::Transcoder;

use crate::composite::{Link, Service};

/// The SSRC of the single-stream endpoints' composite.
const SSRC: u32 = 0x00c0_4d07;

/// A room's single-stream endpoints and what is made for them.
pub struct SingleStream {
    members: Vec<ParticipantId>,
    service: Option<Service>,
    /// Senders' simulcast layers, for a composite opened later.
    simulcast: Vec<(ParticipantId, Vec<u32>)>,
    /// A reflect room's mixer for them (a mix room mixes for everyone already).
    mix: Option<Box<Transcoder>>,
    video: Option<(Box<CompositeVideo>, Link)>,
    scratch: Vec<ParticipantId>,
    /// Members since the mixer's receivers were last set.
    changed: bool,
}

impl SingleStream {
    /// For a reflect room (`mix`: it needs a mixer), composited through `service` when the
    /// server composites (and its queue takes the opening: this runs on a packet worker).
    pub fn new(mix: bool, service: Option<&Service>) -> SingleStream {
        SingleStream {
            members: Vec::new(),
            service: service.cloned(),
            simulcast: Vec::new(),
            mix: mix.then(|| Box::new(Transcoder::for_some())),
            video: None,
            scratch: Vec::new(),
            changed: true,
        }
    }

    pub fn add(&mut self, participant: ParticipantId) {
        if !self.members.contains(&participant) {
            self.members.push(participant);
            self.changed = true;
        }
    }

    /// Whether `p` is a single-stream endpoint.
    pub fn has(&self, p: ParticipantId) -> bool {
        self.members.contains(&p)
    }

    /// After the room routed a packet: single-stream endpoints leave `out` (they get the
    /// mix and the composite instead), and the packet feeds those.
    pub fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        let singles = &self.members;
        out.retain(|m| !singles.contains(m));
        match kind {
            MediaKind::Audio => {
                if let Some(t) = &mut self.mix {
                    mesh::Path::route(&mut **t, now, src, kind, pkt, members, &mut self.scratch);
                    self.scratch.clear();
                }
            }
            MediaKind::Video => {
                if let Some((v, _)) = &mut self.video {
                    v.on_video(now, src, pkt);
                }
            }
        }
    }

    /// The mix-minus and the composite to the single-stream endpoints.
    pub fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        let before = self.members.len();
        self.members.retain(|m| members.contains(m));
        self.changed |= self.members.len() != before;
        if let Some(t) = &mut self.mix {
            if std::mem::take(&mut self.changed) {
                t.set_receivers(&self.members);
            }
            mesh::Path::on_tick(&mut **t, now, members, out);
        }
        if self.members.is_empty() {
            // Nobody to composite for: the compositor stops (it opens again for the next).
            self.video = None;
        } else if self.video.is_none() {
            // Opened here, and again after a full service queue refused it.
            self.video = self
                .service
                .as_ref()
                .and_then(Service::try_open_composite)
                .map(|link| {
                    let mut v = CompositeVideo::new(
                        SSRC,
                        protocol::codec::H264.payload_type,
                        protocol::codec::VP8.payload_type,
                    );
                    for (p, layers) in &self.simulcast {
                        v.on_simulcast(*p, layers);
                    }
                    (Box::new(v), link)
                });
        }
        if let Some((v, link)) = &mut self.video {
            link.exchange(now, v);
            v.on_tick_to(now, members, &self.members, out);
        }
    }

    pub fn on_mute(&mut self, now: Instant, participant: ParticipantId, muted: bool) {
        if let Some(t) = &mut self.mix {
            mesh::Path::on_mute(&mut **t, now, participant, muted);
        }
    }

    pub fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        if let Some(t) = &mut self.mix {
            mesh::Path::on_talk(&mut **t, now, participant, on);
        }
    }

    pub fn on_simulcast(&mut self, participant: ParticipantId, layers: &[u32]) {
        self.simulcast.retain(|(p, _)| *p != participant);
        self.simulcast.push((participant, layers.to_vec()));
        if let Some((v, _)) = &mut self.video {
            v.on_simulcast(participant, layers);
        }
    }

    /// A single-stream endpoint's PLI or REMB about the composite.
    pub fn on_rtcp(&mut self, now: Instant, src: ParticipantId, data: &[u8]) {
        if let Some((v, _)) = &mut self.video {
            v.on_rtcp(now, src, data);
        }
    }
}
