//! Writers for the RTCP packets the SFU emits: RR, SR, generic NACK, PLI, FIR, REMB.
//!
//! Each writer fills a caller's buffer (a stack array on the hot path) and returns the
//! length written, or `None` when the buffer is too small; nothing allocates.

use crate::rtcp::{
    ReportBlock, FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, PT_PSFB, PT_RR, PT_RTPFB, PT_SR,
    REPORT_BLOCK_LEN,
};

/// Most NACK FCI entries one packet carries; more lost packets wait for the next NACK.
pub const NACK_MAX_ITEMS: usize = 16;

fn header(buf: &mut [u8], count: u8, pt: u8, len: usize) {
    buf[0] = 0x80 | (count & 0x1f);
    buf[1] = pt;
    let words = (len / 4 - 1) as u16;
    buf[2..4].copy_from_slice(&words.to_be_bytes());
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn block(buf: &mut [u8], b: &ReportBlock) {
    put32(buf, 0, b.ssrc);
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
    put32(buf, 4, lost);
    buf[4] = b.fraction_lost;
    put32(buf, 8, b.highest_seq);
    put32(buf, 12, b.jitter);
    put32(buf, 16, b.last_sr);
    put32(buf, 20, b.delay_since_last_sr);
}

/// A receiver report from `ssrc` with up to 31 blocks.
pub fn receiver_report(buf: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Option<usize> {
    let n = blocks.len().min(31);
    let len = 8 + REPORT_BLOCK_LEN * n;
    let buf = buf.get_mut(..len)?;
    header(buf, n as u8, PT_RR, len);
    put32(buf, 4, ssrc);
    for (i, b) in blocks[..n].iter().enumerate() {
        block(&mut buf[8 + i * REPORT_BLOCK_LEN..], b);
    }
    Some(len)
}

/// A sender report without report blocks.
pub fn sender_report(
    buf: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_timestamp: u32,
    packets: u32,
    octets: u32,
) -> Option<usize> {
    let buf = buf.get_mut(..28)?;
    header(buf, 0, PT_SR, 28);
    put32(buf, 4, ssrc);
    put32(buf, 8, (ntp >> 32) as u32);
    put32(buf, 12, ntp as u32);
    put32(buf, 16, rtp_timestamp);
    put32(buf, 20, packets);
    put32(buf, 24, octets);
    Some(28)
}

/// A picture loss indication for `media`.
pub fn pli(buf: &mut [u8], sender: u32, media: u32) -> Option<usize> {
    let buf = buf.get_mut(..12)?;
    header(buf, FMT_PLI, PT_PSFB, 12);
    put32(buf, 4, sender);
    put32(buf, 8, media);
    Some(12)
}

/// A full intra request for `media` with command sequence number `seq`.
pub fn fir(buf: &mut [u8], sender: u32, media: u32, seq: u8) -> Option<usize> {
    let buf = buf.get_mut(..20)?;
    header(buf, FMT_FIR, PT_PSFB, 20);
    put32(buf, 4, sender);
    put32(buf, 8, 0);
    put32(buf, 12, media);
    put32(buf, 16, u32::from(seq) << 24);
    Some(20)
}

/// A generic NACK for the sequence numbers in `lost` (any order; packed into PID+BLP
/// entries, at most [`NACK_MAX_ITEMS`] of them). `None` also when `lost` is empty.
pub fn nack(buf: &mut [u8], sender: u32, media: u32, lost: &[u16]) -> Option<usize> {
    if lost.is_empty() {
        return None;
    }
    let mut items = [(0u16, 0u16); NACK_MAX_ITEMS];
    let mut n = 0;
    for &seq in lost {
        let slot = items[..n]
            .iter()
            .position(|(pid, _)| (1..=16).contains(&seq.wrapping_sub(*pid)));
        match slot {
            Some(i) => items[i].1 |= 1 << (seq.wrapping_sub(items[i].0) - 1),
            None if items[..n].iter().any(|&(pid, _)| pid == seq) => {}
            None if n < NACK_MAX_ITEMS => {
                items[n] = (seq, 0);
                n += 1;
            }
            None => break,
        }
    }
    let len = 12 + 4 * n;
    let buf = buf.get_mut(..len)?;
    header(buf, FMT_NACK, PT_RTPFB, len);
    put32(buf, 4, sender);
    put32(buf, 8, media);
    for (i, (pid, blp)) in items[..n].iter().enumerate() {
        buf[12 + 4 * i..14 + 4 * i].copy_from_slice(&pid.to_be_bytes());
        buf[14 + 4 * i..16 + 4 * i].copy_from_slice(&blp.to_be_bytes());
    }
    Some(len)
}

/// A REMB telling the sender of `ssrcs` to stay under `bits_per_sec`.
pub fn remb(buf: &mut [u8], sender: u32, bits_per_sec: u64, ssrcs: &[u32]) -> Option<usize> {
    let n = ssrcs.len().min(255);
    let len = 20 + 4 * n;
    let buf = buf.get_mut(..len)?;
    header(buf, FMT_AFB, PT_PSFB, len);
    put32(buf, 4, sender);
    put32(buf, 8, 0);
    buf[12..16].copy_from_slice(b"REMB");
    let mut exp = 0u32;
    while (bits_per_sec >> exp) >= 1 << 18 {
        exp += 1;
    }
    let mantissa = (bits_per_sec >> exp) as u32;
    put32(buf, 16, (n as u32) << 24 | exp << 18 | mantissa);
    for (i, s) in ssrcs[..n].iter().enumerate() {
        put32(buf, 20 + 4 * i, *s);
    }
    Some(len)
}
