//! Per-source video state of the reflector: who waits for a keyframe, the keyframe requests
//! sent to the source, and the retransmission cache.
//!
//! A receiver that starts a stream mid-way cannot decode until the next keyframe, so a new
//! receiver of a source is held back until a packet starts one, and the source is asked for
//! one at once (PLI, or FIR for senders that only support that). Requests from joins and
//! from receivers' own PLI/FIR are merged into one pending flag per source and sent at most
//! once per [`KEYFRAME_INTERVAL`], so N receivers asking cost the sender one keyframe.
//!
//! Receivers that thinning keeps droppable frames from get their own continuous numbering
//! ([`SeqMap`]), created at the first packet withheld from them and kept while they stay.

use std::time::{Duration, Instant};

use mesh::{rtcp_write, FastMap, Hasher, MediaKind, ParticipantId, PathOut, Rewrite, RtpView};

use crate::keyframe::{self, VideoCodec};
use crate::nack::RetransmitCache;
use crate::picture_ids::PictureIds;
use crate::renumber::SeqMap;

/// Stream bitrates are measured over this window.
const RATE_WINDOW: Duration = Duration::from_millis(500);
/// At most one keyframe request per source this often (aggregation and throttling).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);
/// The SSRC the reflector signs its own RTCP with. Receivers and senders only need it to be
/// stable and distinct from media SSRCs they use, which are random 32-bit values.
pub const SFU_SSRC: u32 = 1;

/// How a source wants to be asked for a keyframe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyframeMethod {
    /// RFC 4585 picture loss indication (what browsers and ffmpeg answer).
    #[default]
    Pli,
    /// RFC 5104 full intra request, for senders that only support that.
    Fir,
}

/// Bitrate of a stream as received, over [`RATE_WINDOW`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RateMeter {
    start: Option<Instant>,
    bytes: u64,
    pub(crate) bits_per_sec: u64,
    /// The last packet's arrival.
    last: Option<Instant>,
}

/// A simulcast encoding with no packet for this long is paused (a browser stops its upper
/// encodings when its own uplink estimate cannot carry them).
const PAUSED_AFTER: Duration = Duration::from_secs(1);

impl RateMeter {
    /// Whether packets arrive: one within [`PAUSED_AFTER`] of `now`.
    pub(crate) fn is_active(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|t| now.saturating_duration_since(t) < PAUSED_AFTER)
    }

    pub(crate) fn add(&mut self, now: Instant, len: usize) {
        self.last = Some(now);
        let start = *self.start.get_or_insert(now);
        self.bytes += len as u64;
        let span = now.saturating_duration_since(start);
        if span >= RATE_WINDOW {
            self.bits_per_sec = self.bytes * 8 * 1000 / span.as_millis().max(1) as u64;
            self.bytes = 0;
            self.start = Some(now);
        }
    }
}

/// How many receivers one packet was held back from, by reason (see
/// [`crate::ReflectorStats`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Held {
    pub(crate) keyframe: u64,
    pub(crate) thinned: u64,
    pub(crate) other_layer: u64,
    pub(crate) unknown_layer: u64,
}

/// Everything the reflector keeps for one source's video stream.
#[derive(Debug)]
pub(crate) struct VideoSource {
    /// The stream's SSRC, as last seen; feedback names the stream by it.
    pub(crate) ssrc: u32,
    /// Codec of the last packet, when its payload type is configured.
    pub(crate) codec: Option<VideoCodec>,
    pub(crate) cache: RetransmitCache,
    pub(crate) rate: RateMeter,
    /// Receivers held back until a keyframe starts.
    pub(crate) waiting: Vec<ParticipantId>,
    /// A keyframe is wanted and not yet seen.
    pub(crate) pending: bool,
    /// The newest source sequence number seen. Only packets newer than it are thinned:
    /// withholding a late or repeated one would shift numbers already given out.
    pub(crate) highest: Option<u16>,
    /// When this stream's last SR was relayed (simulcast layers; plain streams keep it with
    /// their report state).
    pub(crate) last_sr_relay: Option<Instant>,
    last_request: Option<Instant>,
    fir_seq: u8,
    /// Per receiver ever thinned on this stream: its numbering of packets and of VP8
    /// pictures. Room for every receiver is reserved at membership changes, so adding one
    /// on the packet path does not allocate.
    renumbered: FastMap<ParticipantId, (SeqMap, PictureIds)>,
}

impl VideoSource {
    /// A source seen for the first time: everyone who receives it waits for a keyframe.
    pub(crate) fn new(ssrc: u32, receivers: &[ParticipantId], hasher: Hasher) -> Self {
        Self {
            ssrc,
            codec: None,
            cache: RetransmitCache::new(),
            rate: RateMeter::default(),
            waiting: receivers.to_vec(),
            pending: !receivers.is_empty(),
            highest: None,
            last_sr_relay: None,
            last_request: None,
            fir_seq: 0,
            renumbered: hasher.map_with_capacity(receivers.len()),
        }
    }

    /// Follows the membership: drops the numbering of members who left and makes room for
    /// everyone else's.
    pub(crate) fn sync(&mut self, members: &[ParticipantId]) {
        self.waiting.retain(|w| members.contains(w));
        self.renumbered.retain(|r, _| members.contains(r));
        self.renumbered
            .reserve(members.len().saturating_sub(self.renumbered.len()));
    }

    /// Whether some receiver has its own numbering.
    pub(crate) fn renumbers(&self) -> bool {
        !self.renumbered.is_empty()
    }

    fn seq_map(&self, rx: ParticipantId) -> Option<&SeqMap> {
        match self.renumbered.is_empty() {
            true => None,
            false => self.renumbered.get(&rx).map(|r| &r.0),
        }
    }

    /// `rx`'s header for a packet it was routed; `None` while its numbering is the source's.
    /// The SSRC and timestamp stay: only thinning renumbers a plain stream (and its VP8
    /// pictures).
    pub(crate) fn rewrite(&mut self, rx: ParticipantId, pkt: &RtpView<'_>) -> Option<Rewrite> {
        if self.renumbered.is_empty() {
            return None;
        }
        let vp8 = self.codec == Some(VideoCodec::Vp8);
        let (seqs, pictures) = self.renumbered.get_mut(&rx)?;
        let seq = pkt.sequence_number();
        let mapped = seqs.map(seq);
        let patch = match vp8 {
            true => pictures.patch(pkt.payload(), pkt.header_len()),
            false => mesh::Patch::default(),
        };
        (mapped != seq || !patch.is_empty()).then(|| Rewrite {
            ssrc: pkt.ssrc(),
            sequence_number: mapped,
            timestamp: pkt.timestamp(),
            patch,
        })
    }

    /// The picture IDs `rx` got packet `pkt` with, for a resend; None when unknown.
    pub(crate) fn resend_patch(&self, rx: ParticipantId, pkt: &[u8]) -> Option<mesh::Patch> {
        let Some((_, pictures)) = self.renumbered.get(&rx) else {
            return Some(mesh::Patch::default());
        };
        if self.codec != Some(VideoCodec::Vp8) {
            return Some(mesh::Patch::default());
        }
        let v = RtpView::parse(pkt).ok()?;
        pictures.resend_patch(v.payload(), v.header_len())
    }

    /// The source's sequence number for `rx`'s `seq` (from its NACK), if still known.
    pub(crate) fn source_seq(&self, rx: ParticipantId, seq: u16) -> Option<u16> {
        match self.seq_map(rx) {
            Some(m) => m.unmap(seq),
            None => Some(seq),
        }
    }

    /// A receiver starts receiving this source.
    pub(crate) fn add_receiver(&mut self, r: ParticipantId) {
        if !self.waiting.contains(&r) {
            self.waiting.push(r);
        }
        self.pending = true;
    }

    /// Caches `pkt` and pushes the receivers it goes to; waiting receivers join at a keyframe
    /// start. Without a configured codec the start cannot be seen, so nobody is held back.
    /// `thinned` receivers miss droppable frames.
    pub(crate) fn route(
        &mut self,
        now: Instant,
        pkt: &RtpView<'_>,
        codec: Option<VideoCodec>,
        receivers: &[ParticipantId],
        thinned: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) -> Held {
        if self.ssrc != pkt.ssrc() {
            // A new stream numbers afresh.
            self.highest = None;
        }
        self.ssrc = pkt.ssrc();
        self.rate.add(now, pkt.len());
        let seq = pkt.sequence_number();
        let newest = self.note_seq(seq);
        self.codec = codec;
        self.cache.store(pkt.sequence_number(), pkt.as_bytes());
        let key = match codec {
            Some(c) => keyframe::is_keyframe_start(c, pkt.payload()),
            None => true,
        };
        if key {
            self.waiting.clear();
            // Whatever was asked for has come (unseen without a codec: then the request
            // goes out once, see `request_keyframe`).
            self.pending &= codec.is_none();
        }
        // Parsed only when someone is thinned.
        let thin = newest
            && !thinned.is_empty()
            && codec.is_some_and(|c| keyframe::is_droppable(c, pkt.payload()));
        if thin {
            self.skip(pkt, receivers, thinned);
        }
        // A late or repeated packet goes out under the number its place says, unless it
        // was withheld: that number went to the packet after it.
        let late = !newest && self.renumbers();
        let mut held = Held::default();
        if self.waiting.is_empty() && !thin && !late {
            out.extend_from_slice(receivers);
            return held;
        }
        for &r in receivers {
            if self.waiting.contains(&r) {
                held.keyframe += 1;
            } else if (thin && thinned.contains(&r))
                || (late && self.seq_map(r).is_some_and(|m| m.withheld(seq)))
            {
                held.thinned += 1;
            } else {
                out.push(r);
            }
        }
        held
    }

    /// Records `seq` as seen; true when it is newer than every packet before it.
    pub(crate) fn note_seq(&mut self, seq: u16) -> bool {
        let newest = self
            .highest
            .is_none_or(|h| (seq.wrapping_sub(h) as i16) > 0);
        if newest {
            self.highest = Some(seq);
        }
        newest
    }

    /// Source packet `seq` is withheld from the `thinned` receivers: their numbering closes
    /// the gap.
    fn skip(&mut self, pkt: &RtpView<'_>, receivers: &[ParticipantId], thinned: &[ParticipantId]) {
        let vp8 = self.codec == Some(VideoCodec::Vp8);
        for &r in thinned.iter().filter(|r| receivers.contains(r)) {
            // A new entry fits the capacity `sync` reserved.
            let (seqs, pictures) = self.renumbered.entry(r).or_default();
            seqs.skip(pkt.sequence_number());
            if vp8 {
                pictures.skip(pkt.payload());
            }
        }
    }

    /// Sends the pending keyframe request to `src` if the throttle allows; true when sent.
    pub(crate) fn request_keyframe(
        &mut self,
        src: ParticipantId,
        method: KeyframeMethod,
        out: &mut PathOut<'_>,
    ) -> bool {
        let now = out.now();
        if !self.pending
            || self
                .last_request
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_INTERVAL)
        {
            return false;
        }
        let mut buf = [0u8; 32];
        let len = match method {
            KeyframeMethod::Pli => rtcp_write::pli(&mut buf, SFU_SSRC, self.ssrc),
            KeyframeMethod::Fir => {
                self.fir_seq = self.fir_seq.wrapping_add(1);
                rtcp_write::fir(&mut buf, SFU_SSRC, self.ssrc, self.fir_seq)
            }
        };
        // Invariant: the buffer holds the largest of the two (20 bytes).
        let len = len.expect("32-byte buffer fits a PLI or FIR");
        self.last_request = Some(now);
        if self.codec.is_none() {
            // No way to see the keyframe arrive: ask once.
            self.pending = false;
        }
        out.send_rtcp(src, MediaKind::Video, &buf[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// H.264: 0x65 starts an IDR, 0x41 is a reference slice, 0x01 a droppable one (NRI 0).
    fn h264(seq: u16, nal: u8) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7, nal];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p
    }

    /// Routes source packets in order `seqs` (droppable when in `drop`) with receiver 2
    /// thinned; returns the numbers 2 was sent, in order.
    fn sent_to_thinned(seqs: &[u16], drop: &[u16]) -> Vec<u16> {
        let mut v = VideoSource::new(7, &[], Hasher::default());
        v.sync(&[1, 2, 3]);
        let now = Instant::now();
        let mut got = Vec::new();
        for (i, &s) in seqs.iter().enumerate() {
            let nal = match (i, drop.contains(&s)) {
                (0, _) => 0x65,
                (_, true) => 0x01,
                (_, false) => 0x41,
            };
            let data = h264(s, nal);
            let pkt = RtpView::parse(&data).unwrap();
            let mut out = Vec::new();
            v.route(now, &pkt, Some(VideoCodec::H264), &[2, 3], &[2], &mut out);
            if out.contains(&2) {
                got.push(v.rewrite(2, &pkt).map_or(s, |r| r.sequence_number));
            }
        }
        got
    }

    fn assert_distinct(got: &[u16]) {
        let mut d = got.to_vec();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), got.len(), "two packets share a number: {got:?}");
    }

    #[test]
    fn a_late_droppable_packet_is_not_withheld_again() {
        // 11 overtakes the droppable 10: 10 goes out late under its own number.
        let got = sent_to_thinned(&[8, 9, 11, 10, 12, 13], &[10]);
        assert_distinct(&got);
        assert_eq!(got, vec![8, 9, 11, 10, 12, 13]);
    }

    #[test]
    fn a_repeated_withheld_packet_stays_withheld() {
        let got = sent_to_thinned(&[8, 9, 10, 11, 10, 12, 10, 13], &[10]);
        assert_distinct(&got);
        assert_eq!(got, vec![8, 9, 10, 11, 12]);
    }
}
