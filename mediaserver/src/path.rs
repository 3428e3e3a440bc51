//! The media paths a conference can take through the mesh, as one enum so the mesh
//! dispatches statically.

use mesh::{MediaKind, ParticipantId, PathOut, ReceiverPrefs, Rewrite, RtpView};
use reflector::VideoCodec;
use std::time::Instant;

/// The path of one conference.
pub enum MediaPath {
    /// SFU: forward, never decode.
    Reflect(reflector::Reflector),
    /// MCU (`mode=mix`): decode, mix-minus with smart duplex, encode. Hybrid mode: video
    /// still goes through a reflector, its forwarding table and filter.
    Mix(Box<transcoder::Transcoder>, reflector::Reflector),
    /// MCU with a compositor (`mode=composite`): the audio mixed as in `Mix`; senders' video
    /// depacketized for the compositor service (through the link, off the worker), and
    /// its one encoded composite sent to every member.
    Composite(
        Box<transcoder::Transcoder>,
        Box<transcoder::composite::CompositeVideo>,
        Option<crate::composite::Link>,
    ),
}

/// The SSRC of a composite stream (the one video stream members of a composite
/// conference get).
pub const COMPOSITE_SSRC: u32 = 0x00c0_4d05;

impl MediaPath {
    /// A `mode=mix` conference.
    pub fn mix() -> Self {
        let mut video = reflector::Reflector::new();
        // The mixer reports levels and the dominant speaker from the audio it mixes.
        video.set_indicators(false);
        MediaPath::Mix(Box::default(), video)
    }

    /// A `mode=composite` conference: the compositor's frames come through `link` (none:
    /// the server has no compositor, and members get the mixed audio alone).
    pub fn composite(link: Option<crate::composite::Link>) -> Self {
        let pt = |c: VideoCodec| match c {
            VideoCodec::H264 => protocol::codec::H264.payload_type,
            VideoCodec::Vp8 => protocol::codec::VP8.payload_type,
        };
        let video = transcoder::composite::CompositeVideo::new(
            COMPOSITE_SSRC,
            pt(VideoCodec::H264),
            pt(VideoCodec::Vp8),
        );
        MediaPath::Composite(Box::default(), Box::new(video), link)
    }

    /// The path of a new conference: the reflector knows the video payload types this
    /// server offers (keyframe gating, thinning) and the server's last-N.
    pub fn new(
        mode: protocol::Mode,
        last_n: Option<usize>,
        video: &[(u8, VideoCodec)],
        composite: Option<crate::composite::Link>,
    ) -> Self {
        let mut path = match mode {
            protocol::Mode::Mix => Self::mix(),
            protocol::Mode::Composite => return Self::composite(composite),
            protocol::Mode::Reflect => {
                let mut r = reflector::Reflector::new();
                r.set_quality_reports(true);
                MediaPath::Reflect(r)
            }
        };
        let (MediaPath::Reflect(r) | MediaPath::Mix(_, r)) = &mut path else {
            unreachable!("composite returned above");
        };
        for &(pt, codec) in video {
            r.set_video_codec(pt, codec);
        }
        if last_n.is_some() {
            r.set_last_n(last_n, reflector::DEFAULT_AUDIO_LEVEL_ID);
        }
        path
    }
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
            MediaPath::Mix(_, r) if kind == MediaKind::Video => {
                r.route(now, src, kind, pkt, members, out)
            }
            MediaPath::Mix(t, _) => t.route(now, src, kind, pkt, members, out),
            // Video goes to the compositor, never forwarded as it came.
            MediaPath::Composite(_, v, _) if kind == MediaKind::Video => v.on_video(src, pkt),
            MediaPath::Composite(t, _, _) => t.route(now, src, kind, pkt, members, out),
        }
    }

    fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        match self {
            MediaPath::Reflect(r) => r.on_tick(now, members, out),
            MediaPath::Mix(t, r) => {
                t.on_tick(now, members, out);
                // Keyframe requests, receiver reports and last-N of the video reflector.
                r.on_tick(now, members, out);
            }
            MediaPath::Composite(t, v, link) => {
                t.on_tick(now, members, out);
                if let Some(link) = link {
                    link.exchange(v);
                }
                v.on_tick(now, members, out);
            }
        }
    }

    fn on_rtcp(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: Option<MediaKind>,
        data: &[u8],
        members: &[ParticipantId],
        out: &mut PathOut<'_>,
    ) {
        // RTCP feedback is about video in every mode; the reflector terminates it, or the
        // composite reads keyframe requests about its stream.
        match self {
            MediaPath::Reflect(r) | MediaPath::Mix(_, r) => {
                r.on_rtcp(now, src, kind, data, members, out)
            }
            MediaPath::Composite(_, v, _) => v.on_rtcp(now, src, data),
        }
    }

    fn on_simulcast(&mut self, now: Instant, participant: ParticipantId, layers: &[u32]) {
        match self {
            MediaPath::Reflect(r) | MediaPath::Mix(_, r) => {
                r.on_simulcast(now, participant, layers)
            }
            MediaPath::Composite(_, v, _) => v.on_simulcast(participant, layers),
        }
    }

    fn on_receiver_prefs(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        prefs: ReceiverPrefs,
    ) {
        match self {
            MediaPath::Reflect(r) | MediaPath::Mix(_, r) => {
                r.on_receiver_prefs(now, participant, prefs)
            }
            MediaPath::Composite(..) => {}
        }
    }

    fn rewrite(
        &mut self,
        src: ParticipantId,
        receiver: ParticipantId,
        pkt: &RtpView<'_>,
    ) -> Option<Rewrite> {
        match self {
            MediaPath::Reflect(r) | MediaPath::Mix(_, r) => r.rewrite(src, receiver, pkt),
            MediaPath::Composite(..) => None,
        }
    }

    fn on_channel(&mut self, now: Instant, participant: ParticipantId, kind: MediaKind) {
        match self {
            MediaPath::Reflect(r) | MediaPath::Mix(_, r) => r.on_channel(now, participant, kind),
            // A receiver whose video channel just opened starts on a keyframe.
            MediaPath::Composite(_, v, _) if kind == MediaKind::Video => v.receiver_joined(now),
            MediaPath::Composite(..) => {}
        }
    }

    fn on_mute(&mut self, now: Instant, participant: ParticipantId, muted: bool) {
        match self {
            MediaPath::Reflect(r) => r.on_mute(now, participant, muted),
            MediaPath::Mix(t, r) => {
                t.on_mute(now, participant, muted);
                r.on_mute(now, participant, muted);
            }
            MediaPath::Composite(t, _, _) => t.on_mute(now, participant, muted),
        }
    }

    fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        match self {
            MediaPath::Reflect(r) => r.on_talk(now, participant, on),
            MediaPath::Mix(t, r) => {
                t.on_talk(now, participant, on);
                r.on_talk(now, participant, on);
            }
            MediaPath::Composite(t, _, _) => t.on_talk(now, participant, on),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::Path;

    fn packet(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0u8; 20]);
        p
    }

    /// Hybrid mode: in a mix conference video is forwarded by the reflector to the others,
    /// while audio goes to the mixer and is not forwarded.
    #[test]
    fn mix_rooms_forward_video_through_the_reflector() {
        let mut path = MediaPath::mix();
        let bytes = packet(7);
        let pkt = RtpView::parse(&bytes).unwrap();
        let now = Instant::now();
        let mut out = Vec::new();
        path.route(now, 2, MediaKind::Video, &pkt, &[1, 2, 3], &mut out);
        out.sort();
        assert_eq!(out, [1, 3]);
        out.clear();
        path.route(now, 2, MediaKind::Audio, &pkt, &[1, 2, 3], &mut out);
        assert!(out.is_empty(), "mixed audio is not forwarded: {out:?}");
    }
}
