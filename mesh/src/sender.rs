//! The sender, one per receiver: decides *how* a packet goes out, and writes it into the
//! transmit batch.
//!
//! The packet's body is stored once in the batch's arena for all receivers; each receiver's
//! entry gets its own copy of the 12-byte fixed header only, which is where SSRC, sequence and
//! timestamp rewriting goes. So fan-out copies nothing per receiver beyond the header.

use std::net::SocketAddr;

use crate::rtp::RTP_HEADER_LEN;
use crate::tx::Shared;
use crate::{DropReason, MediaKind, Rewrite, RtpView, TxBatch};

/// Batch limits from the mesh configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxLimits {
    pub(crate) packets: usize,
    pub(crate) bytes: usize,
}

/// Per-kind totals, as RTCP sender reports will need them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SendCounters {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Sender {
    /// Per kind: `None` no channel, `Some(None)` channel waiting for its latch.
    dest: [Option<Option<SocketAddr>>; 2],
    sent: [SendCounters; 2],
}

impl Sender {
    /// Records the receiver's channel of `kind`; `addr` is `None` while a latch is pending.
    pub(crate) fn set_channel(&mut self, kind: MediaKind, addr: Option<SocketAddr>) {
        self.dest[kind.index()] = Some(addr);
    }

    /// Where a packet of `kind` and `len` bytes would go, if it fits in the batch.
    pub(crate) fn prepare(
        &self,
        kind: MediaKind,
        len: usize,
        tx: &TxBatch,
        limits: TxLimits,
    ) -> Result<SocketAddr, DropReason> {
        let dest = self.dest[kind.index()]
            .ok_or(DropReason::NoChannel)?
            .ok_or(DropReason::NoReceiveAddress)?;
        // Arena use, not wire bytes: a shared body is held once however many receive it.
        if tx.len() >= limits.packets || tx.arena_len() + len > limits.bytes {
            return Err(DropReason::TxFull);
        }
        Ok(dest)
    }

    /// Writes `pkt` for `dest` into the batch: its own fixed header over `body`, the rest of
    /// `pkt` already stored once in the batch by [`store_body`].
    pub(crate) fn write(
        &mut self,
        tx: &mut TxBatch,
        dest: SocketAddr,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        body: Shared,
        rewrite: Option<Rewrite>,
    ) {
        // A receiver whose payload bytes differ gets a body of its own (rare: VP8 picture
        // IDs after a simulcast switch); everyone else shares the one stored.
        let patch = rewrite.map(|r| r.patch).filter(|p| !p.is_empty());
        let body = match patch {
            Some(_) => store_body(tx, pkt),
            None => body,
        };
        let head = tx.push_shared(dest, &pkt.as_bytes()[..RTP_HEADER_LEN], body);
        // The receiver's own view of a switched stream: the fixed header changes.
        if let Some(r) = rewrite {
            head[2..4].copy_from_slice(&r.sequence_number.to_be_bytes());
            head[4..8].copy_from_slice(&r.timestamp.to_be_bytes());
            head[8..12].copy_from_slice(&r.ssrc.to_be_bytes());
        }
        if let Some(p) = patch {
            // Offsets count from the packet's start; the body starts after the header.
            p.apply_from(tx.body_mut(body), RTP_HEADER_LEN);
        }
        let c = &mut self.sent[kind.index()];
        c.packets += 1;
        c.bytes += pkt.len() as u64;
    }

    #[cfg(test)]
    pub(crate) fn sent(&self, kind: MediaKind) -> SendCounters {
        self.sent[kind.index()]
    }
}

/// Stores everything after `pkt`'s fixed header in the batch, once for all its receivers.
pub(crate) fn store_body(tx: &mut TxBatch, pkt: &RtpView<'_>) -> Shared {
    tx.share(&pkt.as_bytes()[RTP_HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TxLimits = TxLimits {
        packets: 2,
        bytes: 100,
    };

    fn pkt() -> Vec<u8> {
        let mut v = vec![0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        v.extend_from_slice(&[7; 28]);
        v
    }

    #[test]
    fn needs_channel_and_address() {
        let tx = TxBatch::default();
        let mut s = Sender::default();
        assert_eq!(
            s.prepare(MediaKind::Audio, 40, &tx, LIMITS),
            Err(DropReason::NoChannel)
        );
        s.set_channel(MediaKind::Audio, None);
        assert_eq!(
            s.prepare(MediaKind::Audio, 40, &tx, LIMITS),
            Err(DropReason::NoReceiveAddress)
        );
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        s.set_channel(MediaKind::Audio, Some(a));
        assert_eq!(s.prepare(MediaKind::Audio, 40, &tx, LIMITS), Ok(a));
        assert_eq!(
            s.prepare(MediaKind::Video, 40, &tx, LIMITS),
            Err(DropReason::NoChannel)
        );
    }

    #[test]
    fn rewrite_changes_only_this_receivers_header() {
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let mut s = Sender::default();
        s.set_channel(MediaKind::Video, Some(a));
        let data = pkt();
        let view = RtpView::parse(&data).unwrap();
        let mut tx = TxBatch::default();
        let body = store_body(&mut tx, &view);
        let r = Rewrite {
            ssrc: 0xaabb_ccdd,
            sequence_number: 0x1234,
            timestamp: 0x0102_0304,
            patch: crate::Patch::default(),
        };
        s.write(&mut tx, a, MediaKind::Video, &view, body, Some(r));
        s.write(&mut tx, a, MediaKind::Video, &view, body, None);
        let out: Vec<Vec<u8>> = tx.iter().map(|(_, p)| p.to_vec()).collect();
        let mut want = data.clone();
        want[2..12].copy_from_slice(&[0x12, 0x34, 1, 2, 3, 4, 0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(out, vec![want, data]);
    }

    #[test]
    fn a_patched_copy_gets_a_body_of_its_own() {
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let mut s = Sender::default();
        s.set_channel(MediaKind::Video, Some(a));
        let data = pkt();
        let view = RtpView::parse(&data).unwrap();
        let mut tx = TxBatch::default();
        let body = store_body(&mut tx, &view);
        let mut patch = crate::Patch::default();
        assert!(patch.set(14, 0xee) && patch.set(15, 0xff) && patch.set(2, 0x55));
        assert!(!patch.set(16, 0), "three bytes at most");
        let r = Rewrite {
            ssrc: 3,
            sequence_number: 1,
            timestamp: 2,
            patch,
        };
        s.write(&mut tx, a, MediaKind::Video, &view, body, None);
        s.write(&mut tx, a, MediaKind::Video, &view, body, Some(r));
        s.write(&mut tx, a, MediaKind::Video, &view, body, None);
        let out: Vec<Vec<u8>> = tx.iter().map(|(_, p)| p.to_vec()).collect();
        assert_eq!(out[0], data);
        assert_eq!(out[2], data, "the shared body is untouched");
        assert_eq!(&out[1][14..16], &[0xee, 0xff]);
        assert_eq!(&out[1][2..4], &[0, 1], "the header is the rewrite's");
        assert_eq!(out[1][16..], data[16..]);
    }

    #[test]
    fn writes_unchanged_and_respects_limits() {
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let mut s = Sender::default();
        s.set_channel(MediaKind::Video, Some(a));
        let data = pkt();
        let view = RtpView::parse(&data).unwrap();
        let mut tx = TxBatch::default();
        let body = store_body(&mut tx, &view);
        for _ in 0..2 {
            let dest = s
                .prepare(MediaKind::Video, data.len(), &tx, LIMITS)
                .unwrap();
            s.write(&mut tx, dest, MediaKind::Video, &view, body, None);
        }
        let (dest, first) = tx.iter().next().unwrap();
        assert_eq!((dest, first.to_vec()), (a, data.clone()));
        // The body is held once for both copies.
        assert_eq!(tx.arena_len(), data.len() - RTP_HEADER_LEN);
        assert_eq!(tx.byte_len(), 2 * data.len());
        assert_eq!(
            s.sent(MediaKind::Video),
            SendCounters {
                packets: 2,
                bytes: 80
            }
        );
        // Third packet: over the packet limit; a big one with room in count: over bytes.
        assert_eq!(
            s.prepare(MediaKind::Video, 40, &tx, LIMITS),
            Err(DropReason::TxFull)
        );
        let tx = TxBatch::default();
        assert_eq!(
            s.prepare(MediaKind::Video, 101, &tx, LIMITS),
            Err(DropReason::TxFull)
        );
    }
}
