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

use mesh::{rtcp_write, MediaKind, ParticipantId, PathOut, Rewrite, RtpView};

use crate::keyframe::{self, VideoCodec};
use crate::nack::RetransmitCache;
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
}

impl RateMeter {
    pub(crate) fn add(&mut self, now: Instant, len: usize) {
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
    last_request: Option<Instant>,
    fir_seq: u8,
    /// Per receiver ever thinned on this stream: its numbering. Room for every receiver is
    /// reserved at membership changes, so adding one on the packet path does not allocate.
    renumbered: Vec<(ParticipantId, SeqMap)>,
}

impl VideoSource {
    /// A source seen for the first time: everyone who receives it waits for a keyframe.
    pub(crate) fn new(ssrc: u32, receivers: &[ParticipantId]) -> Self {
        Self {
            ssrc,
            codec: None,
            cache: RetransmitCache::new(),
            rate: RateMeter::default(),
            waiting: receivers.to_vec(),
            pending: !receivers.is_empty(),
            last_request: None,
            fir_seq: 0,
            renumbered: Vec::with_capacity(receivers.len()),
        }
    }

    /// Follows the membership: drops the numbering of members who left and makes room for
    /// everyone else's.
    pub(crate) fn sync(&mut self, members: &[ParticipantId]) {
        self.waiting.retain(|w| members.contains(w));
        self.renumbered.retain(|(r, _)| members.contains(r));
        self.renumbered
            .reserve(members.len().saturating_sub(self.renumbered.len()));
    }

    /// Whether some receiver has its own numbering.
    pub(crate) fn renumbers(&self) -> bool {
        !self.renumbered.is_empty()
    }

    fn seq_map(&self, rx: ParticipantId) -> Option<&SeqMap> {
        self.renumbered
            .iter()
            .find(|(r, _)| *r == rx)
            .map(|(_, m)| m)
    }

    /// `rx`'s header for a packet it was routed; `None` while its numbering is the source's.
    /// The SSRC and timestamp stay: only thinning renumbers a plain stream.
    pub(crate) fn rewrite(&self, rx: ParticipantId, pkt: &RtpView<'_>) -> Option<Rewrite> {
        let seq = pkt.sequence_number();
        let mapped = self.seq_map(rx)?.map(seq);
        (mapped != seq).then(|| Rewrite {
            ssrc: pkt.ssrc(),
            sequence_number: mapped,
            timestamp: pkt.timestamp(),
        })
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
    ) {
        self.ssrc = pkt.ssrc();
        self.rate.add(now, pkt.len());
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
        let thin =
            !thinned.is_empty() && codec.is_some_and(|c| keyframe::is_droppable(c, pkt.payload()));
        if thin {
            self.skip(pkt.sequence_number(), receivers, thinned);
        }
        if self.waiting.is_empty() && !thin {
            out.extend_from_slice(receivers);
        } else {
            let held =
                |r: &ParticipantId| self.waiting.contains(r) || (thin && thinned.contains(r));
            out.extend(receivers.iter().filter(|r| !held(r)));
        }
    }

    /// Source packet `seq` is withheld from the `thinned` receivers: their numbering closes
    /// the gap.
    fn skip(&mut self, seq: u16, receivers: &[ParticipantId], thinned: &[ParticipantId]) {
        for &r in thinned.iter().filter(|r| receivers.contains(r)) {
            let i = match self.renumbered.iter().position(|(x, _)| *x == r) {
                Some(i) => i,
                None => {
                    // Within the capacity `sync` reserved.
                    self.renumbered.push((r, SeqMap::default()));
                    self.renumbered.len() - 1
                }
            };
            self.renumbered[i].1.skip(seq);
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
