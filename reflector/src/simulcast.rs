//! Simulcast: a sender publishes up to three encodings, each receiver gets the one that fits.
//!
//! Each receiver has a current encoding (what it gets now) and a target (what fits its
//! bandwidth estimate). A switch happens only where the target encoding starts a keyframe,
//! and the reflector asks for one at once. The receiver must see one continuous stream, so
//! its copies go out under one SSRC (the top encoding's) with sequence numbers and
//! timestamps shifted at each switch to follow on from the last packet it got; NACKs and
//! sender reports are translated back and forth with the same offsets. Frames that thinning
//! withholds from a receiver shift its sequence numbers too, so they leave no gap.

use std::time::{Duration, Instant};

use mesh::{FastMap, Hasher, MediaKind, ParticipantId, PathOut, Rewrite, RtpView};

use crate::feedback::{sr_info, SR_LEN};
use crate::keyframe::{self, VideoCodec};
use crate::picture_ids::PictureIds;
use crate::renumber::SeqMap;
use crate::video::{Held, RateMeter, VideoSource};

/// Timestamp step put between the last packet before a switch and the keyframe after it:
/// one frame at 30 frames/s in the 90 kHz video clock.
const SWITCH_TS_STEP: u32 = 3000;
/// Going up needs this much headroom (in percent of the layer's rate), so a receiver does
/// not flap between two layers at the edge of its estimate.
const UP_HEADROOM_PCT: u64 = 110;
/// A move down this soon after a move up says the move up did not fit.
const FAILED_UP_WITHIN: Duration = Duration::from_secs(5);
/// After such a failed try, going up to that layer again needs this much more budget (in
/// percent) than the failed try had, for [`CEILING_FOR`]: without probing, an estimate that
/// grows back after each cut would otherwise try the layer every second or two, and each
/// try fills the receiver's queue. A lifted link grows past the mark.
const CEILING_PCT: u64 = 130;
const CEILING_FOR: Duration = Duration::from_secs(10);
/// Each failed try of the same layer while its last mark stands, or soon after, asks
/// for more again (30 points more budget) and holds twice as long (up to
/// [`CEILING_MAX_STRIKES`]): a path the layer never fits stops being tried every few
/// seconds, and a lifted one still grows past the mark.
const CEILING_MAX_STRIKES: u32 = 3;

/// A layer a receiver went up to and came back from: the budget it had then, and when;
/// `strikes` counts the failed tries of that layer in a row.
#[derive(Clone, Copy, Debug)]
struct Ceiling {
    layer: usize,
    bps: u64,
    at: Instant,
    strikes: u32,
}

impl Ceiling {
    /// Strikes beyond the first, as far as they count.
    fn more(&self) -> u32 {
        self.strikes.clamp(1, CEILING_MAX_STRIKES) - 1
    }

    fn lasts(&self) -> Duration {
        CEILING_FOR * (1 << self.more())
    }

    /// Budget (bits/s) a move up to its layer needs while it stands.
    fn needs(&self) -> u64 {
        self.bps * (CEILING_PCT + 30 * u64::from(self.more())) / 100
    }
}

/// A receiver of a simulcast source.
#[derive(Clone, Debug)]
pub(crate) struct Sub {
    pub(crate) rx: ParticipantId,
    /// Layer it gets now; `None` until the first keyframe.
    pub(crate) current: Option<usize>,
    pub(crate) target: usize,
    /// Its sequence numbers for the current layer's.
    seqs: SeqMap,
    ts_offset: u32,
    /// Highest (sequence, timestamp) sent out, in the receiver's numbering.
    last: Option<(u16, u32)>,
    /// The last move up of `target` by the budget: (layer, budget, when).
    raised: Option<Ceiling>,
    ceiling: Option<Ceiling>,
    /// Its VP8 picture numbering, continued across switches and withheld frames.
    pictures: PictureIds,
}

impl Sub {
    fn new(rx: ParticipantId, target: usize) -> Self {
        Self {
            rx,
            current: None,
            target,
            seqs: SeqMap::default(),
            ts_offset: 0,
            last: None,
            raised: None,
            ceiling: None,
            pictures: PictureIds::default(),
        }
    }

    /// The receiver's header for a packet of the current layer.
    pub(crate) fn map(&self, seq: u16, ts: u32) -> (u16, u32) {
        (self.seqs.map(seq), ts.wrapping_add(self.ts_offset))
    }

    /// The layer's sequence number for the receiver's `seq`, if it is still known.
    pub(crate) fn unmap_seq(&self, seq: u16) -> Option<u16> {
        self.seqs.unmap(seq)
    }

    pub(crate) fn ts_offset(&self) -> u32 {
        self.ts_offset
    }
}

/// The simulcast state of one source.
#[derive(Debug)]
pub(crate) struct Simulcast {
    /// Layer SSRCs, lowest quality first.
    pub(crate) ssrcs: Vec<u32>,
    /// Per layer: cache and keyframe requests (its `waiting` list stays empty).
    pub(crate) layers: Vec<VideoSource>,
    rates: Vec<RateMeter>,
    pub(crate) subs: Vec<Sub>,
    /// Receivers that get every layer as it comes, unchanged: linked servers
    /// ([`mesh::Endpoint::Peer`]), whose own reflectors pick a layer per member.
    pub(crate) peers: Vec<ParticipantId>,
    /// Index in `subs` by receiver, rebuilt in `sync`, so a packet's rewrites do not search.
    by_rx: FastMap<ParticipantId, usize>,
    /// Layer switches done, for tests and metrics.
    pub(crate) switches: u64,
}

impl Simulcast {
    /// `ssrcs` is not empty.
    pub(crate) fn new(
        ssrcs: &[u32],
        receivers: &[ParticipantId],
        is_peer: impl Fn(ParticipantId) -> bool,
        hasher: Hasher,
    ) -> Self {
        let mut s = Self {
            ssrcs: ssrcs.to_vec(),
            layers: ssrcs
                .iter()
                .map(|&x| VideoSource::new(x, &[], hasher))
                .collect(),
            rates: vec![RateMeter::default(); ssrcs.len()],
            subs: Vec::with_capacity(receivers.len()),
            peers: Vec::new(),
            by_rx: hasher.map(),
            switches: 0,
        };
        s.sync(receivers, is_peer);
        s
    }

    /// The rate of the layer `rx` gets now, bits/s.
    pub(crate) fn rate_for(&self, rx: ParticipantId) -> u64 {
        self.sub(rx)
            .and_then(|s| s.current)
            .map_or(0, |l| self.rates[l].bits_per_sec)
    }

    /// The one SSRC receivers see.
    pub(crate) fn out_ssrc(&self) -> u32 {
        // Invariant: `Reflector::on_simulcast` never builds one from an empty list.
        *self
            .ssrcs
            .last()
            .expect("a simulcast source has at least one layer")
    }

    pub(crate) fn layer_of(&self, ssrc: u32) -> Option<usize> {
        self.ssrcs.iter().position(|&s| s == ssrc)
    }

    fn sub(&self, rx: ParticipantId) -> Option<&Sub> {
        self.by_rx.get(&rx).map(|&i| &self.subs[i])
    }

    pub(crate) fn sub_mut(&mut self, rx: ParticipantId) -> Option<&mut Sub> {
        self.by_rx.get(&rx).map(|&i| &mut self.subs[i])
    }

    /// Follows the receiver list; newcomers aim for the top layer and wait for its keyframe.
    /// Peers (links) are kept apart: they get every layer.
    pub(crate) fn sync(
        &mut self,
        receivers: &[ParticipantId],
        is_peer: impl Fn(ParticipantId) -> bool,
    ) {
        self.peers.clear();
        self.peers
            .extend(receivers.iter().copied().filter(|&r| is_peer(r)));
        self.subs
            .retain(|s| receivers.contains(&s.rx) && !is_peer(s.rx));
        let top = self.layers.len() - 1;
        for &r in receivers {
            if !is_peer(r) && !self.subs.iter().any(|s| s.rx == r) {
                self.subs.push(Sub::new(r, top));
                self.layers[top].pending = true;
            }
        }
        self.by_rx.clear();
        self.by_rx
            .extend(self.subs.iter().enumerate().map(|(i, s)| (s.rx, i)));
    }

    /// Picks each receiver's target from its estimate (`None`: unlimited) under its requested
    /// maximum, and asks for a keyframe on every layer someone is waiting to switch to.
    pub(crate) fn choose(
        &mut self,
        now: Instant,
        estimate: impl Fn(ParticipantId) -> Option<u64>,
        max_layer: impl Fn(ParticipantId) -> Option<u8>,
    ) {
        // Only encodings that flow can be switched to: a paused one never brings the
        // keyframe a switch waits for. None flowing yet: all count, as at the start.
        let n = self.layers.len();
        let any = (0..n).any(|i| self.rates[i].is_active(now));
        let active = |i: usize| !any || self.rates[i].is_active(now);
        let lowest = (0..n).find(|&i| active(i)).unwrap_or(0);
        for sub in &mut self.subs {
            let cap = max_layer(sub.rx).map_or(n - 1, |m| usize::from(m).min(n - 1));
            let budget = estimate(sub.rx);
            let fits = |i: usize, headroom: u64| {
                budget.is_none_or(|b| self.rates[i].bits_per_sec * headroom / 100 <= b)
            };
            let ceiling = sub
                .ceiling
                .filter(|c| now.saturating_duration_since(c.at) < c.lasts());
            let below_ceiling = |i: usize| {
                ceiling.is_some_and(|c| i >= c.layer && budget.is_some_and(|b| b < c.needs()))
            };
            let mut target = lowest;
            for i in lowest + 1..=cap {
                let up = sub.current.is_none_or(|c| i > c);
                if active(i)
                    && fits(i, if up { UP_HEADROOM_PCT } else { 100 })
                    && !(up && below_ceiling(i))
                {
                    target = i;
                }
            }
            // Asked for less than the lowest that flows: the lowest that flows.
            let target = target.max(lowest.min(cap)).min(n - 1);
            if let Some(b) = budget {
                if target > sub.target && sub.current.is_some() {
                    sub.raised = Some(Ceiling {
                        layer: target,
                        bps: b,
                        at: now,
                        strikes: 0,
                    });
                } else if target < sub.target && sub.target <= cap {
                    // Down by the budget soon after going up: that move up did not fit.
                    sub.ceiling = sub
                        .raised
                        .filter(|r| {
                            sub.target >= r.layer
                                && now.saturating_duration_since(r.at) < FAILED_UP_WITHIN
                        })
                        .map(|r| {
                            // Again the same layer, while its last mark stood or within as
                            // long again after: one strike more.
                            let again = sub.ceiling.filter(|c| {
                                c.layer == r.layer
                                    && now.saturating_duration_since(c.at) < 2 * c.lasts()
                            });
                            Ceiling {
                                at: now,
                                strikes: again
                                    .map_or(1, |c| (c.strikes + 1).min(CEILING_MAX_STRIKES)),
                                ..r
                            }
                        })
                        .or(sub.ceiling);
                }
            }
            sub.target = target;
            if sub.current != Some(target) {
                self.layers[target].pending = true;
            }
        }
    }

    /// Routes a packet of this source: receivers on its layer get it; receivers switching
    /// to its layer join at a keyframe start; `thinned` receivers miss droppable frames.
    pub(crate) fn route(
        &mut self,
        now: Instant,
        pkt: &RtpView<'_>,
        codec: Option<VideoCodec>,
        receivers: &[ParticipantId],
        thinned: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) -> Held {
        let mut held = Held::default();
        let Some(l) = self.layer_of(pkt.ssrc()) else {
            held.unknown_layer = receivers.len() as u64;
            return held;
        };
        self.rates[l].add(now, pkt.len());
        let v = &mut self.layers[l];
        let seq = pkt.sequence_number();
        // Only packets newer than any before are thinned, see `VideoSource::highest`.
        let newest = v.note_seq(seq);
        let thin = newest
            && !thinned.is_empty()
            && codec.is_some_and(|c| keyframe::is_droppable(c, pkt.payload()));
        v.codec = codec;
        v.cache.store(pkt.sequence_number(), pkt.as_bytes());
        let key = codec.is_none_or(|c| keyframe::is_keyframe_start(c, pkt.payload()));
        if key && codec.is_some() {
            v.pending = false;
        }
        // Links first (see `Reflector::sync`), each layer as it came: the linked server
        // picks per member.
        out.extend_from_slice(&self.peers);
        // `subs` mirror the other `receivers` (see `sync`).
        for sub in &mut self.subs {
            if thin && thinned.contains(&sub.rx) {
                if sub.current == Some(l) {
                    // Withheld on purpose: its numbering closes the gap.
                    sub.seqs.skip(seq);
                    if codec == Some(VideoCodec::Vp8) {
                        sub.pictures.skip(pkt.payload());
                    }
                    held.thinned += 1;
                } else {
                    held.other_layer += 1;
                }
                continue;
            }
            if !newest && sub.current == Some(l) && sub.seqs.withheld(seq) {
                // A late copy of a withheld packet: its number went to the next one.
                held.thinned += 1;
                continue;
            }
            if sub.current != Some(l) {
                if sub.target != l || !key {
                    match sub.current {
                        None => held.keyframe += 1,
                        Some(_) => held.other_layer += 1,
                    }
                    continue;
                }
                // Switch: continue the receiver's numbering from its last packet.
                let mut seq_offset = 0;
                if let Some((seq, ts)) = sub.last {
                    seq_offset = seq.wrapping_add(1).wrapping_sub(pkt.sequence_number());
                    sub.ts_offset = ts
                        .wrapping_add(SWITCH_TS_STEP)
                        .wrapping_sub(pkt.timestamp());
                }
                sub.seqs.restart(pkt.sequence_number(), seq_offset);
                if codec == Some(VideoCodec::Vp8) {
                    sub.pictures.switch(pkt.payload());
                }
                sub.current = Some(l);
                self.switches += 1;
            }
            out.push(sub.rx);
        }
        held
    }

    /// The receiver's header for a packet it was routed.
    pub(crate) fn rewrite(&mut self, rx: ParticipantId, pkt: &RtpView<'_>) -> Option<Rewrite> {
        let ssrc = self.out_ssrc();
        let vp8 = self
            .layer_of(pkt.ssrc())
            .is_some_and(|l| self.layers[l].codec == Some(VideoCodec::Vp8));
        let sub = self.sub_mut(rx)?;
        let (seq, ts) = sub.map(pkt.sequence_number(), pkt.timestamp());
        let newer = sub
            .last
            .is_none_or(|(s, _)| (seq.wrapping_sub(s) as i16) > 0);
        if newer {
            sub.last = Some((seq, ts));
        }
        let patch = if vp8 {
            sub.pictures.patch(pkt.payload(), pkt.header_len())
        } else {
            mesh::Patch::default()
        };
        Some(Rewrite {
            ssrc,
            sequence_number: seq,
            timestamp: ts,
            patch,
        })
    }

    /// Answers `rx`'s NACK for the receiver's sequence numbers `lost`, from the cache of the
    /// layer it gets now, with its header rewritten, through `send`. Returns (asked, resent).
    /// Numbers map back only to packets the receiver was sent, so frames thinning withheld
    /// are never resent.
    pub(crate) fn retransmit(
        &self,
        rx: ParticipantId,
        lost: impl Iterator<Item = u16>,
        mut send: impl FnMut(&[u8]) -> bool,
    ) -> (u64, u64) {
        let (mut asked, mut sent) = (0, 0);
        let Some(sub) = self.sub(rx) else {
            return (0, 0);
        };
        let Some(cur) = sub.current else {
            return (0, 0);
        };
        let mut buf = [0u8; crate::nack::SLOT_LEN];
        for seq in lost {
            asked += 1;
            let cache = &self.layers[cur].cache;
            let Some(orig) = sub.unmap_seq(seq).and_then(|s| cache.get(s)) else {
                continue;
            };
            let Ok(view) = RtpView::parse(orig) else {
                continue;
            };
            let buf = &mut buf[..orig.len()];
            buf.copy_from_slice(orig);
            let (s, ts) = sub.map(view.sequence_number(), view.timestamp());
            buf[2..4].copy_from_slice(&s.to_be_bytes());
            buf[4..8].copy_from_slice(&ts.to_be_bytes());
            buf[8..12].copy_from_slice(&self.out_ssrc().to_be_bytes());
            if self.layers[cur].codec == Some(VideoCodec::Vp8) {
                // The picture IDs it was first sent with.
                let Some(patch) = sub.pictures.resend_patch(view.payload(), view.header_len())
                else {
                    continue;
                };
                patch.apply(buf);
            }
            sent += u64::from(send(buf));
        }
        (asked, sent)
    }

    /// Answers a link's NACK for the packets `lost` of the layer with SSRC `media`, from
    /// that layer's cache as they came, through `send`. Returns (asked, resent).
    pub(crate) fn retransmit_to_peer(
        &self,
        media: u32,
        lost: impl Iterator<Item = u16>,
        mut send: impl FnMut(&[u8]) -> bool,
    ) -> (u64, u64) {
        let Some(l) = self.layer_of(media) else {
            return (0, 0);
        };
        let (mut asked, mut sent) = (0, 0);
        for seq in lost {
            asked += 1;
            if let Some(orig) = self.layers[l].cache.get(seq) {
                sent += u64::from(send(orig));
            }
        }
        (asked, sent)
    }

    pub(crate) fn is_peer(&self, rx: ParticipantId) -> bool {
        self.peers.contains(&rx)
    }

    /// Relays a layer's SR to the receivers on that layer, in their numbering: the sender
    /// info only (its report blocks are about streams those receivers do not see). Returns
    /// how many were sent.
    pub(crate) fn relay_sr(&self, layer: usize, sr: &[u8], out: &mut PathOut<'_>) -> u64 {
        let mut buf = [0u8; SR_LEN];
        if sr_info(sr, &mut buf).is_none() {
            return 0;
        }
        buf[4..8].copy_from_slice(&self.out_ssrc().to_be_bytes());
        let ts = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
        let mut n = 0;
        // Links get the layer's own SSRC and clock.
        let own = self.ssrcs[layer];
        buf[4..8].copy_from_slice(&own.to_be_bytes());
        for &p in &self.peers {
            n += u64::from(out.send_rtcp(p, MediaKind::Video, &buf));
        }
        buf[4..8].copy_from_slice(&self.out_ssrc().to_be_bytes());
        for sub in self.subs.iter().filter(|s| s.current == Some(layer)) {
            buf[16..20].copy_from_slice(&ts.wrapping_add(sub.ts_offset()).to_be_bytes());
            n += u64::from(out.send_rtcp(sub.rx, MediaKind::Video, &buf));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-layer H.264 packets in order `seqs` (droppable when in `drop`, the first an IDR)
    /// with receiver 2 thinned; returns the numbers 2 was sent, in order.
    fn sent_to_thinned(seqs: &[u16], drop: &[u16]) -> Vec<u16> {
        let mut sim = Simulcast::new(&[5, 6], &[2, 3], |_| false, Hasher::default());
        let now = Instant::now();
        let mut got = Vec::new();
        for (i, &s) in seqs.iter().enumerate() {
            let nal = match (i, drop.contains(&s)) {
                (0, _) => 0x65,
                (_, true) => 0x01,
                (_, false) => 0x41,
            };
            let mut data = vec![0x80, 96, 0, 0, 0, 0, 0, 1, 0, 0, 0, 6, nal];
            data[2..4].copy_from_slice(&s.to_be_bytes());
            let pkt = RtpView::parse(&data).unwrap();
            let mut out = Vec::new();
            sim.route(now, &pkt, Some(VideoCodec::H264), &[2, 3], &[2], &mut out);
            if out.contains(&2) {
                got.push(sim.rewrite(2, &pkt).unwrap().sequence_number);
            }
        }
        got
    }

    #[test]
    fn late_and_repeated_droppable_packets_never_share_a_number() {
        // 11 overtakes the droppable 10, which then goes out under its own number.
        assert_eq!(
            sent_to_thinned(&[8, 9, 11, 10, 12, 13], &[10]),
            vec![8, 9, 11, 10, 12, 13]
        );
        // A repeat of a withheld packet stays withheld.
        assert_eq!(
            sent_to_thinned(&[8, 9, 10, 11, 10, 12, 10, 13], &[10]),
            vec![8, 9, 10, 11, 12]
        );
    }
}
