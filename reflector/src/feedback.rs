//! The RTCP the reflector terminates, and what it answers.
//!
//! An SFU sits between senders and receivers, so RTCP is not relayed blindly: receivers'
//! NACKs are answered from the source's retransmission cache, their PLI/FIR become one
//! throttled keyframe request to the source, REMB, transport-cc and receiver reports feed the
//! receiver's bandwidth estimate, and a sender's SR (its SSRC unchanged on the way out) goes
//! to that source's receivers for lip sync. Senders get the reflector's own receiver reports
//! about their streams every [`REPORT_INTERVAL`], as the first hop that receives them.

use std::time::{Duration, Instant};

use mesh::rtcp::{self, ReportBlock, Rtcp};
use mesh::FastMap as HashMap;

use mesh::{rtcp_write, MediaKind, ParticipantId, PathOut, ReceiverPrefs, RtpView};

use crate::nack;
use crate::Reflector;

/// Sends a retransmission of `packet` (in the receiver's numbering) to `rx`: as RTX when it
/// negotiated it, else as is.
pub(crate) fn resend(
    prefs: &HashMap<ParticipantId, ReceiverPrefs>,
    rtx_seqs: &mut HashMap<(ParticipantId, u32), u16>,
    rx: ParticipantId,
    packet: &[u8],
    out: &mut PathOut<'_>,
) -> bool {
    let Some(pt) = prefs.get(&rx).and_then(|p| p.rtx_payload_type) else {
        return out.send_media(rx, MediaKind::Video, packet);
    };
    let Ok(view) = RtpView::parse(packet) else {
        return false;
    };
    let seq = rtx_seqs.entry((rx, view.ssrc())).or_insert(0);
    *seq = seq.wrapping_add(1);
    let mut buf = [0u8; nack::SLOT_LEN + 2];
    match nack::rtx_packet(&mut buf, &view, pt, nack::rtx_ssrc(view.ssrc()), *seq) {
        Some(n) => out.send_media(rx, MediaKind::Video, &buf[..n]),
        None => false,
    }
}

/// Counters of the reflector's RTCP work, all monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReflectorStats {
    /// Lost packets receivers asked for.
    pub nacked: u64,
    /// Of those, resent from the cache.
    pub retransmitted: u64,
    /// Keyframe requests received from receivers (PLI or FIR entries).
    pub keyframe_asks: u64,
    /// Keyframe requests sent to sources, after aggregation and throttling.
    pub keyframe_requests: u64,
    /// Sender reports relayed to receivers.
    pub reports_relayed: u64,
    /// Receiver reports the reflector sent to senders.
    pub reports_sent: u64,
    /// REMBs sent to video senders with those reports.
    pub rembs_sent: u64,
    /// Packets held back, one per (packet, receiver) not sent, by reason:
    /// the receiver waits for a keyframe to start decoding.
    pub held_for_keyframe: u64,
    /// Thinning withheld a droppable frame's packet (or a late copy of one).
    pub held_thinned: u64,
    /// Last-N: the source is not among the last N speakers.
    pub held_last_n: u64,
    /// Simulcast: the packet's layer is not the one the receiver gets.
    pub held_other_layer: u64,
    /// Simulcast: the packet's SSRC is none of the source's declared layers.
    pub held_unknown_layer: u64,
    /// NACKs naming a media SSRC the reflector does not forward.
    pub nack_unknown_ssrc: u64,
    /// NACKed packets not resent: no longer cached, never sent to that receiver (thinned),
    /// or the send failed.
    pub nack_not_resent: u64,
    /// NACKs refused whole: the asker is not being sent that stream (its own, waiting for a
    /// keyframe, or outside last-N).
    pub nack_refused: u64,
    /// NACKed packets the same receiver asked for within [`crate::nack::NACK_REPEAT_WINDOW`].
    pub nack_repeats: u64,
    /// Sender reports not relayed: one per stream per [`SR_RELAY_INTERVAL`] goes on.
    pub reports_throttled: u64,
}

/// At most one sender report per stream is relayed this often, so a sender flooding SRs
/// does not multiply its flood by the number of receivers.
pub const SR_RELAY_INTERVAL: Duration = Duration::from_millis(250);

/// Length of an SR's header and sender info; relayed SRs are cut to it (their report
/// blocks are about streams the receivers do not see, and anything after is not theirs).
pub(crate) const SR_LEN: usize = 28;

/// Copies the sender info of `sr` into `buf` as a block-less SR; `None` when too short.
pub(crate) fn sr_info(sr: &[u8], buf: &mut [u8; SR_LEN]) -> Option<()> {
    buf.copy_from_slice(sr.get(..SR_LEN)?);
    // Version 2, no padding, no report blocks; length 6 words after the first.
    buf[0] = 0x80;
    buf[2..4].copy_from_slice(&6u16.to_be_bytes());
    Some(())
}

/// Whether a relay is due after the one at `last`; records `now` when it is.
pub(crate) fn relay_due(last: &mut Option<Instant>, now: Instant) -> bool {
    let due = last.is_none_or(|t| now.saturating_duration_since(t) >= SR_RELAY_INTERVAL);
    if due {
        *last = Some(now);
    }
    due
}

/// Most lost packets one RTCP compound may ask for; the rest of it is ignored. A receiver
/// asks again for what it still misses.
pub const MAX_NACKED_PER_COMPOUND: usize = 64;

/// How often senders get a receiver report from the reflector (RFC 3550's 5 s minimum is
/// for large sessions; one per second is what WebRTC stacks send).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A member's receiver report counts towards its quality light for this long.
pub const RECEIVER_REPORT_FRESH: Duration = Duration::from_secs(3);

/// The least a REMB to a video sender asks for, bits/s: one bad receiver (or a forged
/// REMB) must not starve the others of a picture.
pub const REMB_FLOOR: u64 = 100_000;

/// Per incoming stream: what the last receiver report said, and the last SR, for the next.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReportState {
    expected: u64,
    lost: u64,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// When the last SR was relayed to receivers.
    last_relay: Option<Instant>,
}

/// The loss-based estimate's cap is twice the video a receiver gets, but never below this
/// (bits/s), so a receiver getting little can still climb.
pub const LOSS_ESTIMATE_FLOOR: u64 = 30_000;

/// What a receiver's feedback says about its downlink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// The last REMB, bits/s.
    pub remb: Option<u64>,
    /// The last receiver report's fraction lost (worst block), of 256.
    pub fraction_lost: u8,
    /// From receiver reports' loss: unknown until loss shows, then GCC's loss-based rule.
    pub loss_based: Option<u64>,
    /// Transport-cc totals: packets reported received and lost.
    pub twcc_received: u64,
    pub twcc_lost: u64,
}

impl Estimate {
    /// What the receiver can take, bits/s: its REMB, else the loss-based estimate, else
    /// unknown (no limit).
    pub fn bits_per_sec(&self) -> Option<u64> {
        self.remb.or(self.loss_based)
    }

    /// The loss-based controller of GCC (draft-ietf-rmcat-gcc-02 6): over 10% loss, back off
    /// to the rate the receiver gets times (1 - loss/2); under 2%, grow 8% per report; in
    /// between, hold. `current` is the video rate the receiver gets, bits/s.
    ///
    /// Reports are network input a member can send as fast as it likes, so the estimate stays
    /// bounded: growth is capped at twice `current` (at least [`LOSS_ESTIMATE_FLOOR`]), and
    /// with no video flowing (`current == 0`) loss says nothing about the downlink's room,
    /// so the report is ignored.
    pub fn on_loss(&mut self, fraction_lost: u8, current: u64) {
        self.fraction_lost = fraction_lost;
        if current == 0 {
            return;
        }
        let lost = u64::from(fraction_lost);
        let cap = current.saturating_mul(2).max(LOSS_ESTIMATE_FLOOR);
        self.loss_based = match self.loss_based {
            // `lost` is at most 255: the result is at most `current`, so it fits.
            _ if lost > 26 => Some((u128::from(current) * u128::from(512 - lost) / 512) as u64),
            // At least one bit/s, so a tiny estimate still grows.
            Some(e) if lost < 5 => Some(
                e.saturating_add((e.saturating_mul(8) / 100).max(1))
                    .min(cap),
            ),
            e => e,
        };
    }
}

impl Reflector {
    /// Handles one validated compound RTCP packet from `src`.
    pub(crate) fn handle_rtcp(
        &mut self,
        src: ParticipantId,
        kind: Option<MediaKind>,
        data: &[u8],
        out: &mut PathOut<'_>,
    ) {
        // Only a compound that leads with an SR carries one (RFC 3550 6.1).
        self.relay_report(src, kind, data, out);
        // One small NACK can name thousands of packets; answer a bounded number.
        let mut budget = MAX_NACKED_PER_COMPOUND;
        let mut keyframe_asked = false;
        for pkt in rtcp::packets(data).flatten() {
            match pkt {
                Rtcp::ReceiverReport { blocks, .. } => {
                    // The worst stream speaks for the downlink.
                    if let Some(lost) = blocks.iter().map(|b| b.fraction_lost).max() {
                        let current = self.video_rate_to(src);
                        self.estimate_mut(src).on_loss(lost, current);
                        let jitter_ms = blocks
                            .iter()
                            .map(|b| f64::from(b.jitter) / self.ticks_per_ms(b.ssrc))
                            .fold(0.0, f64::max);
                        self.downlink.insert(src, (lost, jitter_ms, out.now()));
                    }
                }
                Rtcp::Nack(n) => {
                    let now = out.now();
                    let lost = n.lost().take(budget);
                    // A link asks for a layer by its own SSRC and numbers.
                    if let Some((&sid, sim)) = self
                        .simulcast
                        .iter()
                        .find(|(_, s)| s.is_peer(src) && s.layer_of(n.media).is_some())
                    {
                        if sid == src {
                            self.stats.nack_refused += 1;
                            continue;
                        }
                        let (prefs, seqs) = (&self.prefs, &mut self.rtx_seqs);
                        let (asked, sent) = sim.retransmit_to_peer(n.media, lost, |p| {
                            resend(prefs, seqs, src, p, out)
                        });
                        budget -= asked as usize;
                        self.stats.nacked += asked;
                        self.stats.retransmitted += sent;
                        self.stats.nack_not_resent += asked - sent;
                        continue;
                    }
                    if let Some((&sid, sim)) =
                        self.simulcast.iter().find(|(_, s)| s.out_ssrc() == n.media)
                    {
                        if sid == src || !self.last_n.forwards(sid) {
                            self.stats.nack_refused += 1;
                            continue;
                        }
                        let (prefs, seqs, memory) =
                            (&self.prefs, &mut self.rtx_seqs, &mut self.nack_memory);
                        let mut repeats = 0;
                        let fresh = lost.filter(|&q| {
                            let r = memory.repeat(now, src, n.media, q);
                            repeats += u64::from(r);
                            !r
                        });
                        let (asked, sent) =
                            sim.retransmit(src, fresh, |p| resend(prefs, seqs, src, p, out));
                        budget -= (asked + repeats) as usize;
                        self.stats.nacked += asked + repeats;
                        self.stats.nack_repeats += repeats;
                        self.stats.retransmitted += sent;
                        self.stats.nack_not_resent += asked - sent;
                        continue;
                    }
                    let Some((&sid, v)) = self.video.iter().find(|(_, v)| v.ssrc == n.media) else {
                        self.stats.nack_unknown_ssrc += 1;
                        continue;
                    };
                    // Only a receiver being sent the stream may ask for its packets.
                    if sid == src || v.waiting.contains(&src) || !self.last_n.forwards(sid) {
                        self.stats.nack_refused += 1;
                        continue;
                    }
                    // The NACK names the receiver's numbers. A thinned receiver's map back
                    // only to packets it was sent, so thinned frames are never resent.
                    let mut buf = [0u8; nack::SLOT_LEN];
                    for seq in lost {
                        budget -= 1;
                        self.stats.nacked += 1;
                        if self.nack_memory.repeat(now, src, n.media, seq) {
                            self.stats.nack_repeats += 1;
                            continue;
                        }
                        let Some(bytes) = v.source_seq(src, seq).and_then(|s| v.cache.get(s))
                        else {
                            self.stats.nack_not_resent += 1;
                            continue;
                        };
                        // The resend (and an RTX packet's OSN) carries the receiver's number,
                        // and the picture ID its first copy had.
                        let Some(patch) = v.resend_patch(src, bytes) else {
                            self.stats.nack_not_resent += 1;
                            continue;
                        };
                        let copy = &mut buf[..bytes.len()];
                        copy.copy_from_slice(bytes);
                        copy[2..4].copy_from_slice(&seq.to_be_bytes());
                        patch.apply(copy);
                        if resend(&self.prefs, &mut self.rtx_seqs, src, copy, out) {
                            self.stats.retransmitted += 1;
                        } else {
                            self.stats.nack_not_resent += 1;
                        }
                    }
                }
                Rtcp::Pli { media, .. } => {
                    keyframe_asked = true;
                    self.keyframe_asked(src, media);
                }
                Rtcp::Fir(f) => {
                    keyframe_asked = true;
                    for (media, _) in f.entries() {
                        self.keyframe_asked(src, media);
                    }
                }
                Rtcp::Remb(r) => self.estimate_mut(src).remb = Some(r.bits_per_sec),
                Rtcp::TransportCc(t) => {
                    let e = self.estimate_mut(src);
                    e.twcc_received += u64::from(t.received);
                    e.twcc_lost += u64::from(t.lost);
                }
                Rtcp::SenderReport(_) | Rtcp::Sdes | Rtcp::Bye(_) | Rtcp::Other { .. } => {}
            }
        }
        // Only a PLI or FIR makes a request pending; the rest wait for the tick.
        if keyframe_asked {
            self.request_keyframes(out);
        }
    }

    /// A sender's SR goes on to its receivers, cut to its sender info and at most one per
    /// stream per [`SR_RELAY_INTERVAL`]. Otherwise unchanged: the reflector does not rewrite that
    /// source's SSRC or timestamps, so its clock mapping stays true. (A thinned receiver's
    /// sequence numbers are renumbered, so for it the SR's packet and octet counts include
    /// the frames it was not sent; receivers use them only for statistics.)
    fn relay_report(
        &mut self,
        src: ParticipantId,
        kind: Option<MediaKind>,
        data: &[u8],
        out: &mut PathOut<'_>,
    ) {
        let (Some(kind), Some(sr)) = (kind, rtcp::first_packet(data)) else {
            return;
        };
        let Some(Ok(Rtcp::SenderReport(r))) = rtcp::packets(sr).next() else {
            return;
        };
        let now = out.now();
        let st = self.reports.entry((src, kind.index())).or_default();
        st.last_sr = Some(((r.ntp >> 16) as u32, now));
        // A simulcast layer's SR goes to that layer's receivers in their numbering.
        if let Some(sim) = self
            .simulcast
            .get_mut(&src)
            .filter(|_| kind == MediaKind::Video)
        {
            if let Some(layer) = sim.layer_of(r.ssrc) {
                if relay_due(&mut sim.layers[layer].last_sr_relay, now) {
                    self.stats.reports_relayed += sim.relay_sr(layer, sr, out);
                } else {
                    self.stats.reports_throttled += 1;
                }
            }
            return;
        }
        if !relay_due(&mut st.last_relay, now) {
            self.stats.reports_throttled += 1;
            return;
        }
        let mut buf = [0u8; SR_LEN];
        if sr_info(sr, &mut buf).is_none() {
            return;
        }
        let receivers = self
            .table
            .get(&src)
            .map_or(&[][..], |e| &e.receivers[kind.index()][..]);
        for &r in receivers {
            if out.send_rtcp(r, kind, &buf) {
                self.stats.reports_relayed += 1;
            }
        }
    }

    /// Receiver `rx` asks for a keyframe of the stream it knows as `media`.
    fn keyframe_asked(&mut self, rx: ParticipantId, media: u32) {
        self.stats.keyframe_asks += 1;
        if let Some(v) = self.video.values_mut().find(|v| v.ssrc == media) {
            v.pending = true;
        }
        // A simulcast receiver asks under the one SSRC it sees: the layer it gets now; a
        // link, under the layer's own.
        for sim in self.simulcast.values_mut() {
            if sim.is_peer(rx) {
                if let Some(l) = sim.layer_of(media) {
                    sim.layers[l].pending = true;
                }
                continue;
            }
            if sim.out_ssrc() == media {
                if let Some(cur) = sim.sub_mut(rx).and_then(|s| s.current) {
                    sim.layers[cur].pending = true;
                }
            }
        }
    }

    fn estimate_mut(&mut self, pid: ParticipantId) -> &mut crate::Estimate {
        self.estimates.entry(pid).or_default()
    }

    /// Sends each member one receiver report per stream it sends, when due.
    pub(crate) fn send_receiver_reports(
        &mut self,
        members: &[ParticipantId],
        out: &mut PathOut<'_>,
    ) {
        let now = out.now();
        if self.next_report.is_some_and(|t| now < t) {
            return;
        }
        self.next_report = Some(now + REPORT_INTERVAL);
        for &src in members {
            for kind in MediaKind::ALL {
                let Some(rep) = out.stream_report(src, kind) else {
                    continue;
                };
                if rep.stats.packets == 0 {
                    continue;
                }
                let st = self.reports.entry((src, kind.index())).or_default();
                let s = rep.stats;
                // Lost counts against what was expected, so received + lost is expected.
                let expected = s.packets + s.lost;
                let (d_exp, d_lost) = (
                    expected.saturating_sub(st.expected),
                    s.lost.saturating_sub(st.lost),
                );
                st.expected = expected;
                st.lost = s.lost;
                let fraction_lost = match d_exp {
                    0 => 0,
                    e => (d_lost.min(e) * 256 / e).min(255) as u8,
                };
                if kind == MediaKind::Audio {
                    self.uplink.insert(src, (fraction_lost, s.jitter_ms));
                }
                let (last_sr, delay_since_last_sr) = match st.last_sr {
                    // DLSR in 1/65536 s.
                    Some((ntp, at)) => (
                        ntp,
                        (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
                    ),
                    None => (0, 0),
                };
                let block = ReportBlock {
                    ssrc: rep.ssrc,
                    fraction_lost,
                    cumulative_lost: s.lost.min(0x7f_ffff) as i32,
                    highest_seq: s.highest_seq_ext as u32,
                    jitter: (s.jitter_ms * f64::from(rep.clock_rate) / 1000.0) as u32,
                    last_sr,
                    delay_since_last_sr,
                };
                let mut buf = [0u8; 32 + 24];
                // Invariant: one block is 8 + 24 bytes.
                let mut len = rtcp_write::receiver_report(&mut buf, crate::SFU_SSRC, &[block])
                    .expect("32 bytes fit a one-block RR");
                // A video sender also hears what its receivers can take (REMB).
                if let Some(bps) = (kind == MediaKind::Video)
                    .then(|| self.remb_for(src, members))
                    .flatten()
                {
                    len += rtcp_write::remb(&mut buf[len..], crate::SFU_SSRC, bps, &[rep.ssrc])
                        .expect("24 bytes fit a one-SSRC REMB");
                    self.stats.rembs_sent += 1;
                }
                if out.send_rtcp(src, kind, &buf[..len]) {
                    self.stats.reports_sent += 1;
                }
            }
        }
        if self.quality_reports {
            self.report_quality(members, out);
        }
    }

    /// The rate a video sender should stay under: the lowest estimate among its receivers
    /// (the highest for a simulcast sender, whose layers serve the rest), never below
    /// [`REMB_FLOOR`]; `None` while no receiver has an estimate.
    fn remb_for(&self, src: ParticipantId, members: &[ParticipantId]) -> Option<u64> {
        let rates = members
            .iter()
            .filter(|&&m| m != src)
            .filter_map(|m| self.estimates.get(m).and_then(Estimate::bits_per_sec));
        let rate = if self.simulcast.contains_key(&src) {
            rates.max()
        } else {
            rates.min()
        };
        rate.map(|r| r.max(REMB_FLOOR))
    }

    /// RTP clock ticks per millisecond of the stream a receiver report block is about:
    /// video's 90 kHz for a video source's SSRC, Opus's 48 kHz otherwise.
    fn ticks_per_ms(&self, ssrc: u32) -> f64 {
        let video = self.video.values().any(|v| v.ssrc == ssrc)
            || self.simulcast.values().any(|s| s.out_ssrc() == ssrc);
        if video {
            90.0
        } else {
            48.0
        }
    }

    /// Each member's light: the worse of what it receives (its receiver reports of the
    /// last [`RECEIVER_REPORT_FRESH`]) and how its audio reaches us, as loss and jitter.
    fn report_quality(&mut self, members: &[ParticipantId], out: &mut PathOut<'_>) {
        let now = out.now();
        for &m in members {
            let down = self
                .downlink
                .get(&m)
                .filter(|d| now.saturating_duration_since(d.2) <= RECEIVER_REPORT_FRESH)
                .map(|d| (d.0, d.1));
            let up = self.uplink.get(&m).copied();
            let (lost, jitter_ms) = match (down, up) {
                (None, None) => continue,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => (a.0.max(b.0), a.1.max(b.1)),
            };
            let permille = u32::from(lost) * 1000 / 256;
            out.quality(m, permille, jitter_ms.round() as u32);
        }
    }

    /// Sends every pending keyframe request the throttle allows.
    pub(crate) fn request_keyframes(&mut self, out: &mut PathOut<'_>) {
        for (&src, v) in &mut self.video {
            let method = self.keyframe_method.get(&src).copied().unwrap_or_default();
            if v.request_keyframe(src, method, out) {
                self.stats.keyframe_requests += 1;
            }
        }
        for (&src, sim) in &mut self.simulcast {
            let method = self.keyframe_method.get(&src).copied().unwrap_or_default();
            for v in &mut sim.layers {
                if v.request_keyframe(src, method, out) {
                    self.stats.keyframe_requests += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_before_any_video_does_not_zero_the_estimate() {
        let mut e = Estimate::default();
        e.on_loss(200, 0);
        assert_eq!(e.loss_based, None, "nothing to judge without video");
        assert_eq!(e.fraction_lost, 200);
        // Once video flows, loss counts.
        e.on_loss(128, 1_000_000);
        assert_eq!(e.loss_based, Some(1_000_000 * 384 / 512));
    }

    #[test]
    fn clean_reports_grow_the_estimate_to_a_cap_without_overflow() {
        let mut e = Estimate::default();
        e.on_loss(255, 1_000_000);
        // Thousands of clean reports, as fast as a member can send them.
        for _ in 0..10_000 {
            e.on_loss(0, 1_000_000);
        }
        assert_eq!(e.loss_based, Some(2_000_000), "capped at twice the rate");
        // A tiny estimate still grows, up to the floor.
        let mut e = Estimate::default();
        e.on_loss(255, 2);
        assert_eq!(e.loss_based, Some(2 * 257 / 512));
        for _ in 0..100_000 {
            e.on_loss(0, 2);
        }
        assert_eq!(e.loss_based, Some(LOSS_ESTIMATE_FLOOR));
        // Huge rates saturate instead of wrapping.
        let mut e = Estimate::default();
        e.on_loss(255, u64::MAX);
        assert_eq!(
            e.loss_based,
            Some((u128::from(u64::MAX) * 257 / 512) as u64)
        );
        e.loss_based = Some(u64::MAX - 1);
        e.on_loss(0, u64::MAX);
        assert_eq!(e.loss_based, Some(u64::MAX));
    }
}
