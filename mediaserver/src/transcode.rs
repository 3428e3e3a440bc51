//! Video transcoding in reflect and mix rooms (issue 14): a member that can only decode
//! H.264 gets a VP8 sender's video transcoded, and the other way round.
//!
//! The reflector forwards video as it is sent; here, after it chose the receivers of a
//! packet, those whose codec differs from the packet's are taken out of the forward and
//! the packet goes to one transcoded stream per (sender, target codec) instead: its
//! depacketizer on the packet path, decoding and encoding on the compositor service's
//! codec pool (a one-tile composite), one encode shared by every receiver of that codec.

use std::time::Instant;

use codecs::payload::keyframe::VideoCodec;
use mesh::{ParticipantId, PathOut, RtpView};
use transcoder::composite::CompositeVideo;

use crate::composite::{Link, Service};

/// The SSRCs of transcoded streams: this base, the sender and the target codec.
const SSRC_BASE: u32 = 0x7c00_0000;

/// The sender a transcoded stream's SSRC carries, if it is one (a browser's slot then
/// names that sender).
pub fn source_of(ssrc: u32) -> Option<ParticipantId> {
    (ssrc & 0xfe00_0000 == SSRC_BASE).then_some((ssrc & 0x01ff_ffff) >> 1)
}

/// Ticks between prunes of members' codecs.
const PRUNE_EVERY: u32 = 100;

fn codec_of(payload_type: u8) -> Option<VideoCodec> {
    match payload_type {
        pt if pt == protocol::codec::H264.payload_type => Some(VideoCodec::H264),
        pt if pt == protocol::codec::VP8.payload_type => Some(VideoCodec::Vp8),
        _ => None,
    }
}

fn other(codec: VideoCodec) -> VideoCodec {
    match codec {
        VideoCodec::H264 => VideoCodec::Vp8,
        VideoCodec::Vp8 => VideoCodec::H264,
    }
}

/// One sender's video in another codec.
struct Stream {
    src: ParticipantId,
    codec: VideoCodec,
    video: Box<CompositeVideo>,
    link: Link,
    receivers: Vec<ParticipantId>,
}

/// A room's transcoded streams and what its members decode.
pub struct Transcoding {
    service: Service,
    /// Members' video codecs, as they joined.
    codecs: Vec<(ParticipantId, VideoCodec)>,
    streams: Vec<Stream>,
    /// Whether members decode both codecs: otherwise a packet passes untouched (the
    /// common case costs one branch).
    mixed: bool,
    /// Ticks since members' codecs were last pruned of those who left.
    ticks: u32,
    /// Opens the service refused (its queue was full); retried at the next packet.
    pub open_refused: u64,
}

impl Transcoding {
    pub fn new(service: Service) -> Transcoding {
        Transcoding {
            service,
            codecs: Vec::new(),
            streams: Vec::new(),
            mixed: false,
            ticks: 0,
            open_refused: 0,
        }
    }

    /// What `participant` decodes (and sends).
    pub fn set_codec(&mut self, participant: ParticipantId, codec: VideoCodec) {
        self.codecs.retain(|(p, _)| *p != participant);
        self.codecs.push((participant, codec));
        self.update_mixed();
    }

    fn update_mixed(&mut self) {
        let first = self.codecs.first().map(|&(_, c)| c);
        self.mixed = self.codecs.iter().any(|&(_, c)| Some(c) != first);
    }

    /// After the reflector chose `out` for a video packet of `src`: receivers of another
    /// codec leave `out`, and the packet feeds their transcoded stream.
    pub fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        pkt: &RtpView<'_>,
        out: &mut Vec<ParticipantId>,
    ) {
        if !self.mixed && self.streams.is_empty() {
            return;
        }
        let Some(from) = codec_of(pkt.payload_type()) else {
            return;
        };
        let before = out.len();
        let codecs = &self.codecs;
        out.retain(|m| {
            codecs
                .iter()
                .find(|(p, _)| p == m)
                .is_none_or(|&(_, c)| c == from)
        });
        let to = other(from);
        let wanted = out.len() < before || self.codecs.iter().any(|&(p, c)| p != src && c == to);
        if !wanted {
            return;
        }
        let i = match self
            .streams
            .iter()
            .position(|s| s.src == src && s.codec == to)
        {
            Some(i) => i,
            None => {
                let Some(link) = self.service.try_open_transcoder(to) else {
                    self.open_refused += 1;
                    return;
                };
                let ssrc =
                    SSRC_BASE | ((src & 0x00ff_ffff) << 1) | u32::from(to == VideoCodec::Vp8);
                let video = CompositeVideo::with_output(
                    ssrc,
                    protocol::codec::H264.payload_type,
                    protocol::codec::VP8.payload_type,
                    to,
                );
                self.streams.push(Stream {
                    src,
                    codec: to,
                    video: Box::new(video),
                    link,
                    receivers: Vec::new(),
                });
                self.streams.len() - 1
            }
        };
        self.streams[i].video.on_video(now, src, pkt);
    }

    /// A sender's simulcast layers: its transcoded stream decodes one.
    pub fn on_simulcast(&mut self, src: ParticipantId, layers: &[u32]) {
        for s in self.streams.iter_mut().filter(|s| s.src == src) {
            s.video.on_simulcast(src, layers);
        }
    }

    /// Units to the service and frames back; each stream's packets to its receivers, and
    /// keyframe requests to its sender. Streams whose sender left, or that nobody needs,
    /// close.
    pub fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        // Pruned now and then, not per tick: a large room's lists are long, and a stale
        // entry for someone who left routes nothing.
        self.ticks += 1;
        if self.ticks >= PRUNE_EVERY || !self.streams.is_empty() {
            self.ticks = 0;
            let before = self.codecs.len();
            self.codecs.retain(|(p, _)| members.contains(p));
            if self.codecs.len() != before {
                self.update_mixed();
            }
        }
        if self.streams.is_empty() {
            return;
        }
        let codecs = &self.codecs;
        self.streams.retain_mut(|s| {
            s.receivers.clear();
            s.receivers.extend(
                codecs
                    .iter()
                    .filter(|&&(p, c)| p != s.src && c == s.codec)
                    .map(|&(p, _)| p),
            );
            members.contains(&s.src) && !s.receivers.is_empty()
        });
        for s in &mut self.streams {
            s.link.exchange(now, &mut s.video);
            s.video.on_tick_to(now, members, &s.receivers, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcoded_streams_ssrc_names_its_sender() {
        for (src, codec) in [
            (1, VideoCodec::H264),
            (77, VideoCodec::Vp8),
            (0x00ff_ffff, VideoCodec::H264),
        ] {
            let ssrc = SSRC_BASE | ((src & 0x00ff_ffff) << 1) | u32::from(codec == VideoCodec::Vp8);
            assert_eq!(source_of(ssrc), Some(src));
        }
        assert_eq!(source_of(crate::path::COMPOSITE_SSRC), None);
        assert_eq!(source_of(12345), None);
    }
}
