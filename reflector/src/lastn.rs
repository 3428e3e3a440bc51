//! Last-N and the dominant speaker: only the N most recent speakers' video is forwarded.
//!
//! In a large conference nobody watches everyone, and forwarding every camera to every
//! receiver costs N^2 bandwidth. Speech is what people look at, so the reflector ranks
//! sources by when they last started talking, detected from the RFC 6464 audio level each
//! sender puts in its audio packets (no decoding), and forwards video from the first N only.
//! The most recent speaker is the dominant one. Talk-run edges also become `speaking`
//! notices for the control plane.

use mesh::FastMap as HashMap;
use std::time::Instant;

use mesh::talk::{self, TalkDetector, TalkEdge};
use mesh::{Hasher, ParticipantId, PathOut, RtpView};

/// The RFC 8285 one-byte extension id senders use for the audio level unless told otherwise
/// (what browsers offer first for `urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
pub const DEFAULT_AUDIO_LEVEL_ID: u8 = 1;

#[derive(Debug)]
pub(crate) struct LastN {
    /// `None`: every source's video is forwarded.
    n: Option<usize>,
    ext_id: u8,
    /// Members by when they last started talking, most recent first; members who have not
    /// talked follow in join order.
    order: Vec<ParticipantId>,
    detectors: HashMap<ParticipantId, TalkDetector>,
    /// Talk edges not yet reported.
    edges: Vec<(ParticipantId, bool)>,
}

impl LastN {
    pub(crate) fn new(hasher: Hasher) -> Self {
        Self {
            n: None,
            ext_id: DEFAULT_AUDIO_LEVEL_ID,
            order: Vec::new(),
            detectors: hasher.map(),
            edges: Vec::new(),
        }
    }

    pub(crate) fn set(&mut self, n: Option<usize>, ext_id: u8) {
        self.n = n;
        self.ext_id = ext_id;
    }

    pub(crate) fn enabled(&self) -> bool {
        self.n.is_some()
    }

    /// Follows the membership; newcomers rank last. Only on membership changes.
    pub(crate) fn sync(&mut self, members: &[ParticipantId]) {
        self.order.retain(|p| members.contains(p));
        for &m in members {
            if !self.order.contains(&m) {
                self.order.push(m);
            }
        }
        self.detectors.retain(|p, _| members.contains(p));
        for &m in members {
            self.detectors.entry(m).or_default();
        }
        self.edges.reserve(2 * members.len());
    }

    /// Whether `src`'s video is forwarded now.
    pub(crate) fn forwards(&self, src: ParticipantId) -> bool {
        match self.n {
            None => true,
            Some(n) => self.order.iter().take(n).any(|&p| p == src),
        }
    }

    /// The dominant speaker: who started talking most recently.
    pub(crate) fn dominant(&self) -> Option<ParticipantId> {
        self.order
            .first()
            .copied()
            .filter(|p| self.detectors.get(p).is_some_and(|d| d.run().is_some()))
    }

    /// Reads the audio level of `src`'s packet. Returns `src` when it just started talking
    /// and so entered the forwarded set (its video needs a keyframe for its receivers).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        src: ParticipantId,
        pkt: &RtpView<'_>,
    ) -> Option<ParticipantId> {
        let voice = talk::audio_level(pkt, self.ext_id)
            .is_some_and(|(_, level)| level <= talk::LEVEL_VOICE_MAX);
        let d = self.detectors.get_mut(&src)?;
        match d.observe(now, false, voice)? {
            TalkEdge::Started(_) => {
                self.edges.push((src, true));
                let was_in = self.forwards(src);
                if let Some(i) = self.order.iter().position(|&p| p == src) {
                    // Move to the front, keeping everyone else's order.
                    self.order[..=i].rotate_right(1);
                }
                (!was_in).then_some(src)
            }
            TalkEdge::Stopped => {
                self.edges.push((src, false));
                None
            }
        }
    }

    /// Ends runs that went quiet and reports every edge as a `speaking` notice.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut PathOut<'_>) {
        for (&p, d) in &mut self.detectors {
            if let Some(TalkEdge::Stopped) = d.expire(now) {
                self.edges.push((p, false));
            }
        }
        for (p, on) in self.edges.drain(..) {
            out.speaking(p, on);
        }
    }
}
