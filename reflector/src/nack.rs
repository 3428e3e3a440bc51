//! The retransmission cache: the last packets of one video source, to answer NACKs.
//!
//! A receiver that lost a packet asks for it by sequence number (RFC 4585 generic NACK). The
//! cache is a fixed ring of full-size slots indexed by sequence number, allocated once when
//! the source is first seen, so storing a packet is one copy and no allocation. Receivers
//! that negotiated RTX (RFC 4588) get the resend as an RTX packet ([`rtx_packet`]).

use std::time::{Duration, Instant};

use mesh::{ParticipantId, RtpView};

/// Packets kept per source: about 1.5 s of 1 Mbit/s video, enough for a NACK round trip.
pub const SLOTS: usize = 256;
/// Largest packet kept; larger ones are not cached (and cannot be retransmitted).
pub const SLOT_LEN: usize = 1500;

/// Recent NACKed packets remembered to spot repeats.
pub(crate) const NACK_MEMORY: usize = 64;
/// A receiver asking again for the same packet within this long gets no second copy: the
/// first is likely still on its way, and answering every repeat amplifies a NACK storm.
pub const NACK_REPEAT_WINDOW: Duration = Duration::from_millis(100);

/// The last [`NACK_MEMORY`] (receiver, media SSRC, sequence number) asked for, in a fixed
/// ring, so spotting a repeat neither allocates nor grows.
#[derive(Clone, Debug)]
pub(crate) struct NackMemory {
    ring: [Option<(ParticipantId, u32, u16, Instant)>; NACK_MEMORY],
    next: usize,
}

impl Default for NackMemory {
    fn default() -> Self {
        Self {
            ring: [None; NACK_MEMORY],
            next: 0,
        }
    }
}

impl NackMemory {
    /// Whether `rx` asked for `seq` of `ssrc` within [`NACK_REPEAT_WINDOW`]; if not, the ask
    /// is remembered.
    pub(crate) fn repeat(&mut self, now: Instant, rx: ParticipantId, ssrc: u32, seq: u16) -> bool {
        let recent = self.ring.iter().flatten().any(|&(r, s, q, at)| {
            (r, s, q) == (rx, ssrc, seq) && now.saturating_duration_since(at) < NACK_REPEAT_WINDOW
        });
        if !recent {
            self.ring[self.next] = Some((rx, ssrc, seq, now));
            self.next = (self.next + 1) % NACK_MEMORY;
        }
        recent
    }
}

#[derive(Clone, Debug)]
pub struct RetransmitCache {
    data: Box<[u8]>,
    /// Per slot: sequence number held and its length (0 = empty).
    meta: Box<[(u16, u16)]>,
}

impl Default for RetransmitCache {
    fn default() -> Self {
        Self::new()
    }
}

impl RetransmitCache {
    pub fn new() -> Self {
        Self {
            data: vec![0; SLOTS * SLOT_LEN].into_boxed_slice(),
            meta: vec![(0, 0); SLOTS].into_boxed_slice(),
        }
    }

    /// Keeps a copy of `packet` (whole RTP packet) under `seq`, replacing the oldest.
    pub fn store(&mut self, seq: u16, packet: &[u8]) {
        let i = usize::from(seq) % SLOTS;
        if packet.len() > SLOT_LEN {
            self.meta[i] = (seq, 0);
            return;
        }
        self.data[i * SLOT_LEN..i * SLOT_LEN + packet.len()].copy_from_slice(packet);
        self.meta[i] = (seq, packet.len() as u16);
    }

    /// The packet with `seq`, if it is still held.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let i = usize::from(seq) % SLOTS;
        match self.meta[i] {
            (s, len) if s == seq && len > 0 => {
                Some(&self.data[i * SLOT_LEN..i * SLOT_LEN + usize::from(len)])
            }
            _ => None,
        }
    }
}

/// The SSRC of the RTX stream that carries a stream's retransmissions (a wire rule, so
/// it lives with the codec table: a browser session maps it to its slot's RTX SSRC).
pub use protocol::codec::rtx_ssrc;

/// Writes `orig` as an RTX packet (RFC 4588 4): same header (marker, timestamp, CSRCs,
/// extension) with payload type `pt`, SSRC `ssrc` and RTX sequence number `seq`, then the
/// original sequence number, then the original payload without padding. Returns its length,
/// `None` when `buf` is too small.
pub fn rtx_packet(
    buf: &mut [u8],
    orig: &RtpView<'_>,
    pt: u8,
    ssrc: u32,
    seq: u16,
) -> Option<usize> {
    let head = &orig.as_bytes()[..orig.header_len()];
    let payload = orig.payload();
    let len = head.len() + 2 + payload.len();
    let buf = buf.get_mut(..len)?;
    buf[..head.len()].copy_from_slice(head);
    buf[0] &= !0x20;
    buf[1] = (head[1] & 0x80) | (pt & 0x7f);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[head.len()..head.len() + 2].copy_from_slice(&orig.sequence_number().to_be_bytes());
    buf[head.len() + 2..].copy_from_slice(payload);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_slots_packets() {
        let mut c = RetransmitCache::new();
        for n in 0..600u16 {
            let seq = 65000u16.wrapping_add(n);
            c.store(seq, &seq.to_be_bytes());
        }
        let last = 65000u16.wrapping_add(599);
        assert_eq!(c.get(last), Some(&last.to_be_bytes()[..]));
        let oldest_kept = last.wrapping_sub(SLOTS as u16 - 1);
        assert!(c.get(oldest_kept).is_some());
        assert_eq!(c.get(oldest_kept.wrapping_sub(1)), None);
        assert_eq!(c.get(1234), None);
    }

    #[test]
    fn rtx_carries_the_original_sequence_number() {
        // Marker, one CSRC, 3 bytes of padding.
        let mut p = vec![
            0xa1,
            0x80 | 96,
            0x12,
            0x34,
            0,
            0,
            0,
            9,
            0,
            0,
            0,
            7,
            0,
            0,
            0,
            5,
        ];
        p.extend_from_slice(b"vp8!");
        p.extend_from_slice(&[0, 0, 3]);
        let v = RtpView::parse(&p).unwrap();
        let mut buf = [0u8; 64];
        let n = rtx_packet(&mut buf, &v, 97, rtx_ssrc(7), 1).unwrap();
        let r = RtpView::parse(&buf[..n]).unwrap();
        assert_eq!(
            (r.payload_type(), r.marker(), r.ssrc()),
            (97, true, 0x8000_0007)
        );
        assert_eq!((r.sequence_number(), r.timestamp()), (1, 9));
        assert_eq!(r.csrcs().collect::<Vec<_>>(), vec![5]);
        assert_eq!(r.payload(), &[0x12, 0x34, b'v', b'p', b'8', b'!']);
        assert_eq!(rtx_packet(&mut buf[..10], &v, 97, 1, 1), None);
    }

    #[test]
    fn oversized_packets_are_not_kept() {
        let mut c = RetransmitCache::new();
        c.store(5, &[1; 10]);
        c.store(5 + SLOTS as u16, &[0; SLOT_LEN + 1]);
        assert_eq!(c.get(5), None);
        assert_eq!(c.get(5 + SLOTS as u16), None);
    }
}
