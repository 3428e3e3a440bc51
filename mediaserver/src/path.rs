//! The media paths a conference can take through the mesh, as one enum so the mesh
//! dispatches statically.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use mesh::{MediaKind, ParticipantId, PathOut, ReceiverPrefs, Rewrite, RtpView};
use reflector::VideoCodec;
use transcoder::composite::CompositeVideo;
use transcoder::Transcoder;

use crate::composite::Link;
use crate::recording::{self, RecMsg, RecordingStats};

/// The path of one conference: how its media goes, and the tap of a recording when one
/// runs.
pub struct MediaPath {
    kind: Kind,
    tap: Option<Box<Tap>>,
    /// Recordings start and stop through here (read at each tick, never blocking).
    switch: Receiver<PathCmd>,
    /// Senders' simulcast layers, for a recording's own composite.
    simulcast: Vec<(ParticipantId, Vec<u32>)>,
    /// Reflect and mix rooms on a server that composites: video transcoded for members
    /// that decode another codec than its sender's.
    transcoding: Option<Box<crate::transcode::Transcoding>>,
    /// Single-stream endpoints of a reflect or mix room, once one joined.
    single: Option<Box<crate::single::SingleStream>>,
    /// The compositor service, for those (reflect and mix rooms on a server with one).
    service: Option<crate::composite::Service>,
}

/// What the control plane tells a conference's path about recording.
pub enum PathCmd {
    /// Hand the all-party mix to `to`; `video`: feed a composite made for the recording
    /// (a reflect or mix room's; a composite room's compositor sends its own frames).
    Start {
        to: SyncSender<RecMsg>,
        stats: Arc<RecordingStats>,
        video: Option<Link>,
    },
    Stop,
    /// What a member decodes (and sends): its video codec as it joined.
    VideoCodec {
        participant: ParticipantId,
        codec: codecs::payload::keyframe::VideoCodec,
    },
    /// A single-stream endpoint: the mix and one composite instead of every stream.
    SingleStream {
        participant: ParticipantId,
    },
}

/// A running recording's view of the path.
struct Tap {
    to: SyncSender<RecMsg>,
    stats: Arc<RecordingStats>,
    /// A reflect room has no mixer: this one mixes for the recording alone.
    mix: Option<Box<Transcoder>>,
    video: Option<(Box<CompositeVideo>, Link)>,
    scratch: Vec<ParticipantId>,
}

/// How a conference's media goes.
enum Kind {
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
        Self::of(Self::mix_kind()).0
    }

    fn of(kind: Kind) -> (Self, SyncSender<PathCmd>) {
        // Room for a burst of joins' codecs between two ticks.
        let (tx, switch) = mpsc::sync_channel(64);
        let path = MediaPath {
            kind,
            tap: None,
            switch,
            simulcast: Vec::new(),
            transcoding: None,
            single: None,
            service: None,
        };
        (path, tx)
    }

    fn mix_kind() -> Kind {
        let mut video = reflector::Reflector::new();
        // The mixer reports levels and the dominant speaker from the audio it mixes.
        video.set_indicators(false);
        Kind::Mix(Box::default(), video)
    }

    /// A `mode=composite` conference: the compositor's frames come through `link` (none:
    /// the server has no compositor, and members get the mixed audio alone).
    fn composite(link: Option<Link>) -> Kind {
        let pt = |c: VideoCodec| match c {
            VideoCodec::H264 => protocol::codec::H264.payload_type,
            VideoCodec::Vp8 => protocol::codec::VP8.payload_type,
        };
        let video = CompositeVideo::new(COMPOSITE_SSRC, pt(VideoCodec::H264), pt(VideoCodec::Vp8));
        Kind::Composite(Box::default(), Box::new(video), link)
    }

    /// The path of a new conference: the reflector knows the video payload types this
    /// server offers (keyframe gating, thinning) and the server's last-N; `transcoder`
    /// transcodes video between members' codecs. With it, the switch its recordings start
    /// and stop and members' codecs come through.
    pub fn new(
        mode: protocol::Mode,
        last_n: Option<usize>,
        video: &[(u8, VideoCodec)],
        composite: Option<Link>,
        transcoder: Option<crate::composite::Service>,
    ) -> (Self, SyncSender<PathCmd>) {
        let mut kind = match mode {
            protocol::Mode::Mix => Self::mix_kind(),
            protocol::Mode::Composite => return Self::of(Self::composite(composite)),
            protocol::Mode::Reflect => {
                let mut r = reflector::Reflector::new();
                r.set_quality_reports(true);
                Kind::Reflect(r)
            }
        };
        let (Kind::Reflect(r) | Kind::Mix(_, r)) = &mut kind else {
            unreachable!("composite returned above");
        };
        for &(pt, codec) in video {
            r.set_video_codec(pt, codec);
        }
        if last_n.is_some() {
            r.set_last_n(last_n, reflector::DEFAULT_AUDIO_LEVEL_ID);
        }
        let (mut path, switch) = Self::of(kind);
        path.transcoding = transcoder
            .clone()
            .map(|s| Box::new(crate::transcode::Transcoding::new(s)));
        path.service = transcoder;
        (path, switch)
    }
}

impl MediaPath {
    /// Starts or stops a recording's tap, as the control plane asked.
    fn poll_switch(&mut self) {
        while let Ok(cmd) = self.switch.try_recv() {
            match cmd {
                PathCmd::VideoCodec { participant, codec } => {
                    if let Some(t) = &mut self.transcoding {
                        t.set_codec(participant, codec);
                    }
                    continue;
                }
                PathCmd::SingleStream { participant } => {
                    if !matches!(self.kind, Kind::Composite(..)) {
                        let reflect = matches!(self.kind, Kind::Reflect(_));
                        let service = self.service.as_ref();
                        let single = self.single.get_or_insert_with(|| {
                            Box::new(crate::single::SingleStream::new(reflect, service))
                        });
                        single.add(participant);
                        for (p, layers) in &self.simulcast {
                            single.on_simulcast(*p, layers);
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let on = matches!(cmd, PathCmd::Start { .. });
            if let Kind::Mix(t, _) | Kind::Composite(t, _, _) = &mut self.kind {
                t.set_recording(on);
            }
            self.tap = match cmd {
                PathCmd::Start { to, stats, video } => {
                    let reflect = matches!(self.kind, Kind::Reflect(_));
                    let video = video.map(|link| {
                        let mut v = CompositeVideo::new(
                            COMPOSITE_SSRC ^ 1,
                            protocol::codec::H264.payload_type,
                            protocol::codec::VP8.payload_type,
                        );
                        for (p, layers) in &self.simulcast {
                            v.on_simulcast(*p, layers);
                        }
                        (Box::new(v), link)
                    });
                    Some(Box::new(Tap {
                        to,
                        stats,
                        mix: reflect.then(|| Box::new(Transcoder::recorder_only())),
                        video,
                        scratch: Vec::new(),
                    }))
                }
                PathCmd::Stop | PathCmd::VideoCodec { .. } | PathCmd::SingleStream { .. } => None,
            };
        }
    }

    /// The mix since the last tick to the recording; the recording's own composite fed.
    fn tick_tap(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        let Some(tap) = &mut self.tap else {
            return;
        };
        let mixed = match (&mut self.kind, &mut tap.mix) {
            (Kind::Mix(t, _) | Kind::Composite(t, _, _), _) => t.take_recorded(),
            (Kind::Reflect(_), Some(t)) => {
                // Silent: it sends and reports nothing through `out`.
                mesh::Path::on_tick(&mut **t, now, members, out);
                t.take_recorded()
            }
            (Kind::Reflect(_), None) => None,
        };
        if let Some((at, pcm)) = mixed {
            recording::send(&tap.to, RecMsg::Audio { at, pcm }, &tap.stats);
        }
        if let Some((v, link)) = &mut tap.video {
            link.exchange(now, v);
            // Keyframe requests to senders; the frames go to the recording, not here.
            v.on_tick(now, members, out);
        }
    }
}

impl Tap {
    fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        members: &[ParticipantId],
    ) {
        match kind {
            MediaKind::Video => {
                if let Some((v, _)) = &mut self.video {
                    v.on_video(now, src, pkt);
                }
            }
            MediaKind::Audio => {
                if let Some(t) = &mut self.mix {
                    mesh::Path::route(&mut **t, now, src, kind, pkt, members, &mut self.scratch);
                    self.scratch.clear();
                }
            }
        }
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
        match &mut self.kind {
            Kind::Reflect(r) => r.route(now, src, kind, pkt, members, out),
            Kind::Mix(_, r) if kind == MediaKind::Video => {
                r.route(now, src, kind, pkt, members, out)
            }
            Kind::Mix(t, _) => t.route(now, src, kind, pkt, members, out),
            // Video goes to the compositor, never forwarded as it came.
            Kind::Composite(_, v, _) if kind == MediaKind::Video => v.on_video(now, src, pkt),
            Kind::Composite(t, _, _) => t.route(now, src, kind, pkt, members, out),
        }
        if let Some(s) = &mut self.single {
            s.route(now, src, kind, pkt, members, out);
        }
        if let (Some(t), MediaKind::Video) = (&mut self.transcoding, kind) {
            t.route(now, src, pkt, out);
        }
        if let Some(tap) = &mut self.tap {
            tap.route(now, src, kind, pkt, members);
        }
    }

    fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        match &mut self.kind {
            Kind::Reflect(r) => r.on_tick(now, members, out),
            Kind::Mix(t, r) => {
                t.on_tick(now, members, out);
                // Keyframe requests, receiver reports and last-N of the video reflector.
                r.on_tick(now, members, out);
            }
            Kind::Composite(t, v, link) => {
                t.on_tick(now, members, out);
                if let Some(link) = link {
                    link.exchange(now, v);
                }
                v.on_tick(now, members, out);
            }
        }
        self.poll_switch();
        self.tick_tap(now, members, out);
        if let Some(t) = &mut self.transcoding {
            t.on_tick(now, members, out);
        }
        if let Some(s) = &mut self.single {
            s.on_tick(now, members, out);
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
        if let Some(s) = self.single.as_mut().filter(|s| s.has(src)) {
            s.on_rtcp(now, src, data);
        }
        match &mut self.kind {
            Kind::Reflect(r) | Kind::Mix(_, r) => r.on_rtcp(now, src, kind, data, members, out),
            Kind::Composite(_, v, _) => v.on_rtcp(now, src, data),
        }
    }

    fn on_simulcast(&mut self, now: Instant, participant: ParticipantId, layers: &[u32]) {
        self.simulcast.retain(|(p, _)| *p != participant);
        self.simulcast.push((participant, layers.to_vec()));
        if let Some((v, _)) = self.tap.as_mut().and_then(|t| t.video.as_mut()) {
            v.on_simulcast(participant, layers);
        }
        if let Some(t) = &mut self.transcoding {
            t.on_simulcast(participant, layers);
        }
        if let Some(s) = &mut self.single {
            s.on_simulcast(participant, layers);
        }
        match &mut self.kind {
            Kind::Reflect(r) | Kind::Mix(_, r) => r.on_simulcast(now, participant, layers),
            Kind::Composite(_, v, _) => v.on_simulcast(participant, layers),
        }
    }

    fn on_receiver_prefs(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        prefs: ReceiverPrefs,
    ) {
        match &mut self.kind {
            Kind::Reflect(r) | Kind::Mix(_, r) => r.on_receiver_prefs(now, participant, prefs),
            Kind::Composite(..) => {}
        }
    }

    fn rewrite(
        &mut self,
        src: ParticipantId,
        receiver: ParticipantId,
        pkt: &RtpView<'_>,
    ) -> Option<Rewrite> {
        match &mut self.kind {
            Kind::Reflect(r) | Kind::Mix(_, r) => r.rewrite(src, receiver, pkt),
            Kind::Composite(..) => None,
        }
    }

    fn on_channel(&mut self, now: Instant, participant: ParticipantId, kind: MediaKind) {
        match &mut self.kind {
            Kind::Reflect(r) | Kind::Mix(_, r) => r.on_channel(now, participant, kind),
            // A receiver whose video channel just opened starts on a keyframe.
            Kind::Composite(_, v, _) if kind == MediaKind::Video => v.receiver_joined(now),
            Kind::Composite(..) => {}
        }
    }

    fn on_endpoint(&mut self, now: Instant, participant: ParticipantId, endpoint: mesh::Endpoint) {
        // The recording's and single streams' mixers take every source, mirrored members
        // included, and send nothing over links; only the room's own path needs to know.
        match &mut self.kind {
            Kind::Reflect(r) => r.on_endpoint(now, participant, endpoint),
            Kind::Mix(t, r) => {
                t.on_endpoint(now, participant, endpoint);
                r.on_endpoint(now, participant, endpoint);
            }
            Kind::Composite(t, _, _) => t.on_endpoint(now, participant, endpoint),
        }
    }

    fn on_mute(&mut self, now: Instant, participant: ParticipantId, muted: bool) {
        if let Some(t) = self.tap.as_mut().and_then(|t| t.mix.as_mut()) {
            t.on_mute(now, participant, muted);
        }
        if let Some(s) = &mut self.single {
            s.on_mute(now, participant, muted);
        }
        match &mut self.kind {
            Kind::Reflect(r) => r.on_mute(now, participant, muted),
            Kind::Mix(t, r) => {
                t.on_mute(now, participant, muted);
                r.on_mute(now, participant, muted);
            }
            Kind::Composite(t, _, _) => t.on_mute(now, participant, muted),
        }
    }

    fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        if let Some(t) = self.tap.as_mut().and_then(|t| t.mix.as_mut()) {
            t.on_talk(now, participant, on);
        }
        if let Some(s) = &mut self.single {
            s.on_talk(now, participant, on);
        }
        match &mut self.kind {
            Kind::Reflect(r) => r.on_talk(now, participant, on),
            Kind::Mix(t, r) => {
                t.on_talk(now, participant, on);
                r.on_talk(now, participant, on);
            }
            Kind::Composite(t, _, _) => t.on_talk(now, participant, on),
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
