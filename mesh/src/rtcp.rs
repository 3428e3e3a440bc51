//! Zero-allocation RTCP compound-packet parser (RFC 3550, 4585, 5104, REMB, transport-cc).
//!
//! RTCP arrives multiplexed on the RTP port (RFC 5761). An SFU terminates most of it: it reads
//! receivers' feedback (NACK, PLI, FIR, REMB, transport-cc, RR) and senders' reports (SR), and
//! writes its own (see [`crate::rtcp_write`]). [`RtcpIter`] walks a compound packet in place
//! and hands out borrowed views, so reading feedback allocates nothing; every length is
//! checked against the buffer, so the views never panic on network input.

use crate::ParseError;

/// RTCP packet types (RFC 3550, RFC 4585).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
/// Transport-layer feedback (RFC 4585): generic NACK (fmt 1), transport-cc (fmt 15).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585): PLI (fmt 1), FIR (fmt 4), REMB (fmt 15).
pub const PT_PSFB: u8 = 206;

pub const FMT_NACK: u8 = 1;
pub const FMT_TWCC: u8 = 15;
pub const FMT_PLI: u8 = 1;
pub const FMT_FIR: u8 = 4;
pub const FMT_AFB: u8 = 15;

/// Length of one RR/SR report block.
pub const REPORT_BLOCK_LEN: usize = 24;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// One RFC 3550 report block: how a receiver sees one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed cumulative loss.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> Self {
        let lost = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        // Sign-extend the 24-bit field.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        Self {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost,
            highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }
}

/// The report blocks of an SR or RR, read on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0.chunks_exact(REPORT_BLOCK_LEN).map(ReportBlock::read)
    }

    pub fn len(&self) -> usize {
        self.0.len() / REPORT_BLOCK_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An RFC 3550 sender report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
    pub blocks: ReportBlocks<'a>,
}

/// A list of 32-bit SSRCs (BYE, REMB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsrcList<'a>(&'a [u8]);

impl<'a> SsrcList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() < 4
    }
}

/// A generic NACK (RFC 4585 6.2.1): lost sequence numbers of `media`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nack<'a> {
    pub sender: u32,
    pub media: u32,
    /// FCI entries of (PID, BLP), 4 bytes each.
    items: &'a [u8],
}

impl<'a> Nack<'a> {
    /// Every sequence number the NACK reports lost, in FCI order.
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.items.chunks_exact(4).flat_map(|c| {
            let pid = u16::from_be_bytes([c[0], c[1]]);
            let blp = u16::from_be_bytes([c[2], c[3]]);
            std::iter::once(pid).chain(
                (0..16u16)
                    .filter(move |i| blp & (1 << i) != 0)
                    .map(move |i| pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// A FIR (RFC 5104 4.3.1) asking for a full intra frame from each listed SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fir<'a> {
    pub sender: u32,
    entries: &'a [u8],
}

impl<'a> Fir<'a> {
    /// (media SSRC, command sequence number) per entry.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.entries.chunks_exact(8).map(|c| (be32(c, 0), c[4]))
    }
}

/// REMB (draft-alvestrand-rmcat-remb): the receiver's estimate of what it can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remb<'a> {
    pub sender: u32,
    pub bits_per_sec: u64,
    pub ssrcs: SsrcList<'a>,
}

/// Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
/// extensions-01), summarized: what was received and lost, and over how much arrival time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportCc {
    pub sender: u32,
    pub media: u32,
    pub base_seq: u16,
    pub status_count: u16,
    /// In units of 64 ms.
    pub reference_time: i32,
    pub feedback_count: u8,
    pub received: u16,
    pub lost: u16,
    /// Sum of the receive deltas, in 250 us units: the arrival span of the received packets.
    pub delta_sum: i64,
}

/// One packet of a compound RTCP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rtcp<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport {
        ssrc: u32,
        blocks: ReportBlocks<'a>,
    },
    /// Source descriptions: not needed by the SFU, skipped.
    Sdes,
    Bye(SsrcList<'a>),
    Nack(Nack<'a>),
    Pli {
        sender: u32,
        media: u32,
    },
    Fir(Fir<'a>),
    Remb(Remb<'a>),
    TransportCc(TransportCc),
    /// A type the SFU does not read (APP, XR, other feedback formats).
    Other {
        pt: u8,
        count: u8,
    },
}

/// Walks the packets of a compound RTCP packet. Yields an error once and then stops when a
/// header or body does not fit.
#[derive(Clone, Debug)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
}

impl<'a> RtcpIter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }
}

/// Iterates over the packets of compound RTCP `data`.
pub fn packets(data: &[u8]) -> RtcpIter<'_> {
    RtcpIter::new(data)
}

/// True when `data` is a well-formed compound RTCP packet (every header and body fits).
pub fn is_valid(data: &[u8]) -> bool {
    !data.is_empty() && packets(data).all(|p| p.is_ok())
}

/// The SSRC of the packet sender, from the first packet of a compound (every RTCP type the
/// SFU reads starts its body with it).
pub fn sender_ssrc(data: &[u8]) -> Option<u32> {
    (data.len() >= 8).then(|| be32(data, 4))
}

/// The bytes of the first packet of a compound (for relaying one packet of it as is).
pub fn first_packet(data: &[u8]) -> Option<&[u8]> {
    let len = 4 * (usize::from(be16(data.get(..4)?, 2)) + 1);
    data.get(..len)
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<Rtcp<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = split_one(self.rest);
        match r {
            Ok((pkt, rest)) => {
                self.rest = rest;
                Some(Ok(pkt))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Parses the first packet of `data`; returns it and what follows.
fn split_one(data: &[u8]) -> Result<(Rtcp<'_>, &[u8]), ParseError> {
    if data.len() < 4 {
        return Err(ParseError::Truncated);
    }
    let version = data[0] >> 6;
    if version != 2 {
        return Err(ParseError::BadVersion(version));
    }
    let count = data[0] & 0x1f;
    let pt = data[1];
    let len = 4 * (usize::from(be16(data, 2)) + 1);
    if len > data.len() {
        return Err(ParseError::Truncated);
    }
    let mut body = &data[4..len];
    if data[0] & 0x20 != 0 {
        let pad = usize::from(*body.last().ok_or(ParseError::BadPadding)?);
        if pad == 0 || pad > body.len() {
            return Err(ParseError::BadPadding);
        }
        body = &body[..body.len() - pad];
    }
    Ok((parse_body(pt, count, body)?, &data[len..]))
}

fn parse_body(pt: u8, count: u8, b: &[u8]) -> Result<Rtcp<'_>, ParseError> {
    let blocks = |from: usize| -> Result<ReportBlocks<'_>, ParseError> {
        let end = from + REPORT_BLOCK_LEN * usize::from(count);
        b.get(from..end)
            .map(ReportBlocks)
            .ok_or(ParseError::Truncated)
    };
    let need = |n: usize| {
        if b.len() < n {
            Err(ParseError::Truncated)
        } else {
            Ok(())
        }
    };
    Ok(match (pt, count) {
        (PT_SR, _) => {
            need(24)?;
            Rtcp::SenderReport(SenderReport {
                ssrc: be32(b, 0),
                ntp: (u64::from(be32(b, 4)) << 32) | u64::from(be32(b, 8)),
                rtp_timestamp: be32(b, 12),
                packets: be32(b, 16),
                octets: be32(b, 20),
                blocks: blocks(24)?,
            })
        }
        (PT_RR, _) => {
            need(4)?;
            Rtcp::ReceiverReport {
                ssrc: be32(b, 0),
                blocks: blocks(4)?,
            }
        }
        (PT_SDES, _) => Rtcp::Sdes,
        (PT_BYE, _) => {
            let n = 4 * usize::from(count);
            Rtcp::Bye(SsrcList(b.get(..n).ok_or(ParseError::Truncated)?))
        }
        (PT_RTPFB, FMT_NACK) => {
            need(8)?;
            Rtcp::Nack(Nack {
                sender: be32(b, 0),
                media: be32(b, 4),
                items: &b[8..8 + (b.len() - 8) / 4 * 4],
            })
        }
        (PT_RTPFB, FMT_TWCC) => Rtcp::TransportCc(transport_cc(b)?),
        (PT_PSFB, FMT_PLI) => {
            need(8)?;
            Rtcp::Pli {
                sender: be32(b, 0),
                media: be32(b, 4),
            }
        }
        (PT_PSFB, FMT_FIR) => {
            need(8)?;
            Rtcp::Fir(Fir {
                sender: be32(b, 0),
                entries: &b[8..8 + (b.len() - 8) / 8 * 8],
            })
        }
        (PT_PSFB, FMT_AFB) if b.len() >= 16 && &b[8..12] == b"REMB" => {
            let n = usize::from(b[12]);
            let exp = u32::from(b[13] >> 2);
            let mantissa = u64::from(u32::from_be_bytes([0, b[13] & 0x03, b[14], b[15]]));
            // An absurd exponent saturates rather than overflowing.
            let bits_per_sec = mantissa.checked_shl(exp).unwrap_or(u64::MAX);
            let bits_per_sec = if exp >= 46 && mantissa != 0 {
                u64::MAX
            } else {
                bits_per_sec
            };
            Rtcp::Remb(Remb {
                sender: be32(b, 0),
                bits_per_sec,
                ssrcs: SsrcList(b.get(16..16 + 4 * n).ok_or(ParseError::Truncated)?),
            })
        }
        _ => Rtcp::Other { pt, count },
    })
}

/// Tally of transport-cc status symbols.
#[derive(Default)]
struct StatusCount {
    total: u32,
    seen: u32,
    received: u16,
    lost: u16,
    /// Symbol 1 (1-byte delta) and symbol 2 (2-byte delta) counts.
    small: usize,
    large: usize,
}

impl StatusCount {
    /// Adds `n` symbols `sym`, ignoring what goes past the status count (chunk padding).
    fn add(&mut self, sym: u16, n: u32) {
        let n = n.min(self.total - self.seen);
        self.seen += n;
        let n16 = n as u16;
        match sym {
            0 => self.lost += n16,
            1 => {
                self.received += n16;
                self.small += n as usize;
            }
            2 => {
                self.received += n16;
                self.large += n as usize;
            }
            _ => {}
        }
    }
}

/// Reads transport-cc feedback: status chunks, then the receive deltas they announce.
fn transport_cc(b: &[u8]) -> Result<TransportCc, ParseError> {
    if b.len() < 16 {
        return Err(ParseError::Truncated);
    }
    let status_count = be16(b, 10);
    let ref_raw = u32::from_be_bytes([0, b[12], b[13], b[14]]);
    let mut fb = TransportCc {
        sender: be32(b, 0),
        media: be32(b, 4),
        base_seq: be16(b, 8),
        status_count,
        reference_time: ((ref_raw << 8) as i32) >> 8,
        feedback_count: b[15],
        received: 0,
        lost: 0,
        delta_sum: 0,
    };
    let mut acc = StatusCount {
        total: u32::from(status_count),
        ..StatusCount::default()
    };
    let mut pos = 16;
    while acc.seen < acc.total {
        if pos + 2 > b.len() {
            return Err(ParseError::Truncated);
        }
        let chunk = be16(b, pos);
        pos += 2;
        if chunk & 0x8000 == 0 {
            if chunk & 0x1fff == 0 {
                // A zero run would never finish the count.
                return Err(ParseError::BadRtcp);
            }
            acc.add((chunk >> 13) & 3, u32::from(chunk & 0x1fff));
        } else if chunk & 0x4000 == 0 {
            for i in (0..14).rev() {
                acc.add((chunk >> i) & 1, 1);
            }
        } else {
            for i in (0..7).rev() {
                acc.add((chunk >> (2 * i)) & 3, 1);
            }
        }
    }
    fb.received = acc.received;
    fb.lost = acc.lost;
    let (small, large) = (acc.small, acc.large);
    for _ in 0..small {
        let d = *b.get(pos).ok_or(ParseError::Truncated)?;
        fb.delta_sum += i64::from(d);
        pos += 1;
    }
    for _ in 0..large {
        if pos + 2 > b.len() {
            return Err(ParseError::Truncated);
        }
        fb.delta_sum += i64::from(be16(b, pos) as i16);
        pos += 2;
    }
    Ok(fb)
}

#[cfg(test)]
mod tests;
