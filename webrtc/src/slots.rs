//! Receive slots: how a browser's one PeerConnection carries every other member's streams
//! without renegotiating as members come and go.
//!
//! The page offers a pool of receive-only sections; the answer declares one SSRC for each
//! (`a=ssrc`), so the browser routes each slot's packets to its own track. On the way out a
//! member's stream takes a free slot of its kind on first sight and keeps it while it flows;
//! its packets get the slot's SSRC, the browser's payload type, and sequence numbers and
//! timestamps that continue the slot's previous stream, so a slot handed to a new member
//! after [`IDLE`] plays on without a jump. RTCP is mapped both ways: the browser's reports
//! and feedback about a slot name the member's own SSRC when they reach the mesh, and a
//! member's sender report reaches the browser under its slot's SSRC.
//!
//! The table is fixed-size and lives in the session: nothing here allocates per packet.
//! Without declared slots it only maps payload types, and streams go out under their own
//! SSRCs (a browser plays one unsignalled stream per section: enough for two members).

use std::time::{Duration, Instant};

use protocol::codec::{rtx_ssrc, BROWSER_RTX_PT};

/// Slots one session can hold (both kinds together).
pub const MAX_SLOTS: usize = 32;

/// A slot whose stream sent nothing for this long may carry another member's.
pub const IDLE: Duration = Duration::from_secs(3);

const NO_PT: u8 = 0xff;

/// The media kind of a slot or payload type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    Audio,
    Video,
}

impl SlotKind {
    /// RTP clock ticks per second (Opus and every video codec).
    fn clock(self) -> u64 {
        match self {
            SlotKind::Audio => 48_000,
            SlotKind::Video => 90_000,
        }
    }
}

/// Why an outgoing packet could not be sent to the browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotDrop {
    /// A codec the answer did not give the browser.
    NoCodec,
    /// Every slot of the packet's kind carries a live stream.
    NoSlot,
    /// Shorter than an RTP header.
    Malformed,
    /// A stream the browser does not take: it only sends (a WHIP publisher), or the
    /// session follows other sources of that kind ([`Slots::follow`]).
    NotWanted,
}

/// Sources one kind can follow at once (a member's audio, or its video).
const FOLLOW: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Slot {
    kind: SlotKind,
    /// The SSRC the answer declared for it.
    out: u32,
    /// The SSRC of its RTX stream, declared with it (0: no RTX).
    rtx: u32,
    /// The browser's payload type of what it carried last (what an RTX packet repairs).
    pt: u8,
    /// The member stream it carries (meaningful while `taken`).
    source: u32,
    taken: bool,
    seq_delta: u16,
    ts_delta: u32,
    /// The last sequence number and timestamp sent on the slot, in its own numbering.
    last_seq: u16,
    last_ts: u32,
    sent: bool,
    last: Option<Instant>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        kind: SlotKind::Audio,
        out: 0,
        rtx: 0,
        pt: 0,
        source: 0,
        taken: false,
        seq_delta: 0,
        ts_delta: 0,
        last_seq: 0,
        last_ts: 0,
        sent: false,
        last: None,
    };

    fn free_at(&self, now: Instant) -> bool {
        !self.taken
            || self
                .last
                .is_none_or(|t| now.saturating_duration_since(t) >= IDLE)
    }
}

/// One session's receive slots and payload-type maps.
#[derive(Clone, Debug)]
pub struct Slots {
    slots: [Slot; MAX_SLOTS],
    len: usize,
    /// The NOC's payload type -> the browser's (for what we send).
    out_pt: [u8; 128],
    out_kind: [Option<SlotKind>; 128],
    /// The browser's payload type -> the NOC's (for what it sends).
    in_pt: [u8; 128],
    /// The browser's RTX payload type for each of its payload types (`apt=`): the
    /// server's retransmissions ([`protocol::codec::BROWSER_RTX_PT`]) go out in the one that
    /// repairs what the slot carries.
    rtx_of: [u8; 128],
    /// The sources each kind follows (audio, video; 0 = unused); none set: every
    /// stream takes a free slot as it comes.
    follow: [[u32; FOLLOW]; 2],
    /// The browser takes no media from us (sendonly): only RTCP goes to it.
    send_only: bool,
    /// Its camera's simulcast encodings, by rid.
    rids: crate::rids::Rids,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            slots: [Slot::EMPTY; MAX_SLOTS],
            len: 0,
            out_pt: [NO_PT; 128],
            out_kind: [None; 128],
            in_pt: [NO_PT; 128],
            rtx_of: [NO_PT; 128],
            follow: [[0; FOLLOW]; 2],
            send_only: false,
            rids: crate::rids::Rids::default(),
        }
    }
}

fn kind_index(kind: SlotKind) -> usize {
    match kind {
        SlotKind::Audio => 0,
        SlotKind::Video => 1,
    }
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

impl Slots {
    /// Declares a slot with the SSRC the answer gives it; returns its index (None when full).
    pub fn add_slot(&mut self, kind: SlotKind, ssrc: u32) -> Option<usize> {
        let i = self.len;
        let s = self.slots.get_mut(i)?;
        *s = Slot {
            kind,
            out: ssrc,
            ..Slot::EMPTY
        };
        self.len += 1;
        Some(i)
    }

    /// Slot `i` gets an RTX stream with SSRC `ssrc` (the answer's `a=ssrc-group:FID`).
    pub fn set_rtx(&mut self, i: usize, ssrc: u32) {
        if let Some(s) = self.slots[..self.len].get_mut(i) {
            s.rtx = ssrc;
        }
    }

    /// The SSRC of slot `i`'s RTX stream (0: none).
    pub fn rtx_ssrc(&self, i: usize) -> u32 {
        self.slots[..self.len].get(i).map_or(0, |s| s.rtx)
    }

    /// The browser's RTX payload type `rtx` repairs its payload type `apt`.
    pub fn map_rtx(&mut self, apt: u8, rtx: u8) {
        if apt < 128 && rtx < 128 {
            self.rtx_of[usize::from(apt)] = rtx;
        }
    }

    /// Whether retransmissions go to the browser as RTX.
    pub fn has_rtx(&self) -> bool {
        self.rtx_of.iter().any(|&r| r != NO_PT)
    }

    /// The browser calls `ours` (the NOC's payload type of that codec) `theirs`.
    pub fn map_pt(&mut self, kind: SlotKind, ours: u8, theirs: u8) {
        if ours < 128 && theirs < 128 {
            self.out_pt[usize::from(ours)] = theirs;
            self.out_kind[usize::from(ours)] = Some(kind);
            self.in_pt[usize::from(theirs)] = ours;
        }
    }

    /// The browser only sends (its answer has no section that receives): media to it is
    /// dropped as [`SlotDrop::NotWanted`], RTCP still goes.
    pub fn set_send_only(&mut self) {
        self.send_only = true;
    }

    /// The slots of `kind` carry only `sources` (a member's SSRCs: the speaker a WHEP viewer
    /// watches); a source not yet on a slot takes one from a source no longer followed, its
    /// numbering continued. An empty list: streams take free slots as they come.
    pub fn follow(&mut self, kind: SlotKind, sources: &[u32]) {
        let f = &mut self.follow[kind_index(kind)];
        *f = [0; FOLLOW];
        for (d, &s) in f.iter_mut().zip(sources.iter().filter(|&&s| s != 0)) {
            *d = s;
        }
    }

    fn following(&self, kind: SlotKind) -> Option<&[u32; FOLLOW]> {
        let f = &self.follow[kind_index(kind)];
        (f[0] != 0).then_some(f)
    }

    /// Declared slots.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SSRC declared for slot `i`.
    pub fn ssrc(&self, i: usize) -> Option<u32> {
        self.slots[..self.len].get(i).map(|s| s.out)
    }

    /// The member stream slot `i` carries now.
    pub fn source(&self, i: usize) -> Option<u32> {
        self.slots[..self.len]
            .get(i)
            .filter(|s| s.taken)
            .map(|s| s.source)
    }

    /// The browser's camera sends simulcast: its encodings get the SSRCs in `rids`.
    pub fn set_simulcast(&mut self, rids: crate::rids::Rids) {
        self.rids = rids;
    }

    /// Rewrites a packet from the browser for the mesh: RTP gets the NOC's payload type
    /// (and a simulcast encoding its SSRC), RTCP about a slot names the member stream the
    /// slot carries.
    pub fn inbound(&mut self, pkt: &mut [u8]) {
        if crate::session::is_rtcp(pkt) {
            self.rtcp_in(pkt);
            self.rids.rtcp_in(pkt);
        } else if pkt.len() >= 12 {
            let pt = self.in_pt[usize::from(pkt[1] & 0x7f)];
            if pt != NO_PT {
                pkt[1] = (pkt[1] & 0x80) | pt;
            }
            self.rids.inbound(pkt);
        }
    }

    /// Rewrites a packet from the mesh for the browser. `Ok(Some(i))`: the packet's stream
    /// just took slot `i` (signalling tells the page whose it is now).
    pub fn outbound(&mut self, now: Instant, pkt: &mut [u8]) -> Result<Option<usize>, SlotDrop> {
        if crate::session::is_rtcp(pkt) {
            self.rtcp_out(pkt);
            self.rids.rtcp_out(pkt);
            return Ok(None);
        }
        if pkt.len() < 12 {
            return Err(SlotDrop::Malformed);
        }
        if self.send_only {
            return Err(SlotDrop::NotWanted);
        }
        let ours = usize::from(pkt[1] & 0x7f);
        if ours == usize::from(BROWSER_RTX_PT) && self.has_rtx() {
            return self.rtx_out(pkt).map(|()| None);
        }
        let theirs = self.out_pt[ours];
        let Some(kind) = self.out_kind[ours] else {
            // Nothing mapped at all: the caller asked for no rewriting.
            if self.len == 0 && self.out_kind.iter().all(Option::is_none) {
                return Ok(None);
            }
            return Err(SlotDrop::NoCodec);
        };
        pkt[1] = (pkt[1] & 0x80) | theirs;
        if self.len == 0 {
            return Ok(None);
        }
        let ssrc = be32(pkt, 8);
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ts = be32(pkt, 4);
        let followed = self.following(kind).copied();
        if followed.is_some_and(|f| !f.contains(&ssrc)) {
            return Err(SlotDrop::NotWanted);
        }
        let live = &mut self.slots[..self.len];
        let (i, assigned) = match live
            .iter()
            .position(|s| s.taken && s.source == ssrc && s.kind == kind)
        {
            Some(i) => (i, false),
            None => {
                // Following: the slot of a source no longer followed switches now, so the
                // player's track goes on with the new speaker. Otherwise a never-used slot
                // first, then the longest idle one.
                let unfollowed = followed.and_then(|f| {
                    live.iter()
                        .enumerate()
                        .filter(|(_, s)| s.kind == kind && s.taken && !f.contains(&s.source))
                        .min_by_key(|(_, s)| s.last)
                        .map(|(i, _)| i)
                });
                let i = unfollowed
                    .or_else(|| live.iter().position(|s| s.kind == kind && !s.taken))
                    .or_else(|| {
                        live.iter()
                            .enumerate()
                            .filter(|(_, s)| s.kind == kind && s.free_at(now))
                            .min_by_key(|(_, s)| s.last)
                            .map(|(i, _)| i)
                    })
                    .ok_or(SlotDrop::NoSlot)?;
                let s = &mut live[i];
                if s.sent {
                    // Continue the slot's numbering, with its clock run on over the gap.
                    let gap = s
                        .last
                        .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64);
                    let ticks = (gap.max(20) * kind.clock() / 1000) as u32;
                    s.seq_delta = s.last_seq.wrapping_add(1).wrapping_sub(seq);
                    s.ts_delta = s.last_ts.wrapping_add(ticks).wrapping_sub(ts);
                } else {
                    s.seq_delta = 0;
                    s.ts_delta = 0;
                }
                s.source = ssrc;
                s.taken = true;
                (i, true)
            }
        };
        let s = &mut self.slots[i];
        let out_seq = seq.wrapping_add(s.seq_delta);
        let out_ts = ts.wrapping_add(s.ts_delta);
        if !s.sent || assigned || (out_seq.wrapping_sub(s.last_seq) as i16) > 0 {
            s.last_seq = out_seq;
            s.last_ts = out_ts;
        }
        s.sent = true;
        s.last = Some(now);
        s.pt = theirs;
        pkt[2..4].copy_from_slice(&out_seq.to_be_bytes());
        put32(pkt, 4, out_ts);
        put32(pkt, 8, s.out);
        Ok(assigned.then_some(i))
    }

    /// A retransmission as RTX (RFC 4588) goes out on the RTX stream of the slot that
    /// carries the repaired stream, its original sequence number in the slot's numbering.
    fn rtx_out(&mut self, pkt: &mut [u8]) -> Result<(), SlotDrop> {
        let media = rtx_ssrc(be32(pkt, 8));
        let s = self.slots[..self.len]
            .iter()
            .find(|s| s.taken && s.source == media && s.rtx != 0)
            .ok_or(SlotDrop::NoSlot)?;
        let h = crate::srtp::rtp_header_len(pkt).ok_or(SlotDrop::Malformed)?;
        if pkt.len() < h + 2 {
            return Err(SlotDrop::Malformed);
        }
        let pt = self.rtx_of[usize::from(s.pt)];
        if pt == NO_PT {
            return Err(SlotDrop::NoCodec);
        }
        let osn = u16::from_be_bytes([pkt[h], pkt[h + 1]]).wrapping_add(s.seq_delta);
        let (rtx, delta) = (s.rtx, s.ts_delta);
        pkt[h..h + 2].copy_from_slice(&osn.to_be_bytes());
        pkt[1] = (pkt[1] & 0x80) | pt;
        let ts = be32(pkt, 4).wrapping_add(delta);
        put32(pkt, 4, ts);
        put32(pkt, 8, rtx);
        Ok(())
    }

    fn slot_of_source(&self, ssrc: u32) -> Option<&Slot> {
        self.slots[..self.len]
            .iter()
            .find(|s| s.taken && s.source == ssrc)
    }

    fn source_of_slot(&self, ssrc: u32) -> Option<u32> {
        self.slots[..self.len]
            .iter()
            .find(|s| s.taken && s.out == ssrc)
            .map(|s| s.source)
    }

    /// A member's sender report goes out under its slot's SSRC and timeline.
    fn rtcp_out(&self, pkt: &mut [u8]) {
        if self.len == 0 {
            return;
        }
        for_each_packet(pkt, |p| {
            if p[1] == 200 && p.len() >= 20 {
                if let Some(s) = self.slot_of_source(be32(p, 4)) {
                    let (out, delta) = (s.out, s.ts_delta);
                    put32(p, 4, out);
                    let ts = be32(p, 16).wrapping_add(delta);
                    put32(p, 16, ts);
                }
            }
        });
    }

    /// Reports and feedback about a slot name the stream it carries.
    fn rtcp_in(&self, pkt: &mut [u8]) {
        if self.len == 0 {
            return;
        }
        rtcp_media_sources(pkt, |p, at| {
            if let Some(src) = self.source_of_slot(be32(p, at)) {
                put32(p, at, src);
            }
        });
    }
}

/// Calls `f(packet, offset)` for each media-source SSRC field of a compound RTCP datagram:
/// report blocks of SR and RR, the media source of NACK, PLI and other feedback, each FIR
/// entry, and the SSRCs a REMB covers.
pub(crate) fn rtcp_media_sources(pkt: &mut [u8], mut f: impl FnMut(&mut [u8], usize)) {
    for_each_packet(pkt, |p| {
        let count = usize::from(p[0] & 0x1f);
        match p[1] {
            // SR and RR: report blocks of 24 bytes after the sender's part.
            200 | 201 => {
                let first = if p[1] == 200 { 28 } else { 8 };
                for b in 0..count {
                    let at = first + 24 * b;
                    if at + 24 <= p.len() {
                        f(p, at);
                    }
                }
            }
            // Generic NACK and the rest of RTPFB: the media source.
            205 if p.len() >= 12 => f(p, 8),
            206 if p.len() >= 12 => match count {
                // FIR: one 8-byte entry per stream asked.
                4 => {
                    let mut at = 12;
                    while at + 8 <= p.len() {
                        f(p, at);
                        at += 8;
                    }
                }
                // REMB: "REMB", the count, then the SSRCs it covers.
                15 if p.len() >= 20 && &p[12..16] == b"REMB" => {
                    let n = usize::from(p[16]);
                    for k in 0..n {
                        let at = 20 + 4 * k;
                        if at + 4 <= p.len() {
                            f(p, at);
                        }
                    }
                }
                _ => f(p, 8),
            },
            _ => {}
        }
    });
}

/// Calls `f` on each packet of a compound RTCP datagram (each at least 8 bytes long).
pub(crate) fn for_each_packet(pkt: &mut [u8], mut f: impl FnMut(&mut [u8])) {
    let mut at = 0;
    while at + 8 <= pkt.len() {
        let words = usize::from(u16::from_be_bytes([pkt[at + 2], pkt[at + 3]]));
        let end = at + 4 * (words + 1);
        if end > pkt.len() {
            return;
        }
        f(&mut pkt[at..end]);
        at = end;
    }
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
