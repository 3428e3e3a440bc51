//! The transmit batch: packets ready to send, as per-receiver headers over shared bodies.
//!
//! Fan-out writes one incoming packet to many receivers. The batch keeps the packet's body
//! (everything after the fixed RTP header) once in its byte arena, and each receiver's entry
//! holds only its own copy of the 12-byte fixed header, which the sender may rewrite (SSRC,
//! sequence, timestamp). A packet on the wire is `head ++ body`; a socket layer sends it with
//! a two-element iovec, so nothing is copied per receiver beyond the header.

use std::net::SocketAddr;

use crate::rtp::RTP_HEADER_LEN;

/// Bytes of per-receiver header an entry holds inline: the fixed RTP header.
pub const TX_HEAD_MAX: usize = RTP_HEADER_LEN;

/// Packets ready to send. One byte arena for bodies plus one entry per packet; both keep
/// their capacity across [`TxBatch::clear`], so a batch that is reused allocates nothing
/// after warm-up.
#[derive(Clone, Debug, Default)]
pub struct TxBatch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// Sum of the packets' lengths on the wire.
    wire_bytes: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    dest: SocketAddr,
    head: [u8; TX_HEAD_MAX],
    head_len: u8,
    /// Body range in the arena.
    start: u32,
    end: u32,
}

/// A body stored once in the arena, to be referenced by many entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shared {
    start: u32,
    end: u32,
}

/// One packet of a batch: `head` followed by `body` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPacket<'a> {
    pub dest: SocketAddr,
    /// Per-receiver header (possibly rewritten); empty for packets pushed whole.
    pub head: &'a [u8],
    /// The rest of the packet, shared with every other receiver of the same packet.
    pub body: &'a [u8],
}

impl TxPacket<'_> {
    /// Length on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The two slices to send in order, as an iovec would take them.
    pub fn parts(&self) -> [&[u8]; 2] {
        [self.head, self.body]
    }

    /// The packet as one contiguous buffer (allocates; for tests and tools).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(self.head);
        v.extend_from_slice(self.body);
        v
    }

    /// Copies the packet into `out` and returns its length; `out` must be long enough.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let h = self.head.len();
        out[..h].copy_from_slice(self.head);
        out[h..h + self.body.len()].copy_from_slice(self.body);
        self.len()
    }
}

impl PartialEq<&[u8]> for TxPacket<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        other.len() == self.len()
            && other[..self.head.len()] == *self.head
            && other[self.head.len()..] == *self.body
    }
}

impl TxBatch {
    /// A batch pre-sized for `packets` entries and `bytes` of payload.
    pub fn with_capacity(packets: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(packets),
            wire_bytes: 0,
        }
    }

    /// Appends a copy of `bytes` addressed to `dest` (no shared body).
    pub fn push(&mut self, dest: SocketAddr, bytes: &[u8]) {
        let s = self.share(bytes);
        self.push_shared(dest, &[], s);
    }

    /// Stores `body` once in the arena for [`TxBatch::push_shared`].
    pub(crate) fn share(&mut self, body: &[u8]) -> Shared {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(body);
        Shared {
            start: start as u32,
            end: self.bytes.len() as u32,
        }
    }

    /// The bytes of a body stored by [`TxBatch::share`].
    pub(crate) fn body_mut(&mut self, body: Shared) -> &mut [u8] {
        &mut self.bytes[body.start as usize..body.end as usize]
    }

    /// Appends a packet `head ++ shared body` for `dest` and returns its header slot for
    /// in-place rewriting. `head` is at most [`TX_HEAD_MAX`] bytes.
    pub(crate) fn push_shared(&mut self, dest: SocketAddr, head: &[u8], body: Shared) -> &mut [u8] {
        let mut e = Entry {
            dest,
            head: [0; TX_HEAD_MAX],
            head_len: head.len() as u8,
            start: body.start,
            end: body.end,
        };
        e.head[..head.len()].copy_from_slice(head);
        self.wire_bytes += head.len() + (body.end - body.start) as usize;
        self.entries.push(e);
        let e = self.entries.last_mut().expect("just pushed");
        &mut e.head[..usize::from(e.head_len)]
    }

    /// Packet `i` in push order.
    pub fn get(&self, i: usize) -> Option<TxPacket<'_>> {
        self.entries.get(i).map(|e| self.packet(e))
    }

    fn packet<'a>(&'a self, e: &'a Entry) -> TxPacket<'a> {
        TxPacket {
            dest: e.dest,
            head: &e.head[..usize::from(e.head_len)],
            body: &self.bytes[e.start as usize..e.end as usize],
        }
    }

    /// Destination of packet `i`; panics when out of range.
    pub fn dest(&self, i: usize) -> SocketAddr {
        self.entries[i].dest
    }

    /// Wire length of packet `i`; panics when out of range.
    pub fn packet_len(&self, i: usize) -> usize {
        let e = &self.entries[i];
        usize::from(e.head_len) + (e.end - e.start) as usize
    }

    /// The packets in the order they were pushed, with their destinations.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, TxPacket<'_>)> + '_ {
        self.entries.iter().map(|e| (e.dest, self.packet(e)))
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of all packets on the wire.
    pub fn byte_len(&self) -> usize {
        self.wire_bytes
    }

    /// Bytes held in the arena: each shared body counts once however many receive it.
    pub fn arena_len(&self) -> usize {
        self.bytes.len()
    }

    /// Keeps only the packets whose destination `keep` accepts, in order (the media
    /// server moves a WebRTC receiver's packets to its own encrypted batch). Dropped
    /// packets' bodies stay in the arena until [`TxBatch::clear`]; nothing is allocated.
    pub fn retain_dest(&mut self, mut keep: impl FnMut(&SocketAddr) -> bool) {
        let mut wire = self.wire_bytes;
        self.entries.retain(|e| {
            let k = keep(&e.dest);
            if !k {
                wire -= usize::from(e.head_len) + (e.end - e.start) as usize;
            }
            k
        });
        self.wire_bytes = wire;
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.wire_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_iter_clear() {
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let mut t = TxBatch::with_capacity(4, 64);
        assert!(t.is_empty());
        t.push(a, b"one");
        let s = t.share(b"wo");
        t.push_shared(b, b"t", s)[0] = b'T';
        assert_eq!(t.len(), 2);
        assert_eq!(t.byte_len(), 6);
        assert_eq!(t.arena_len(), 5);
        let got: Vec<_> = t.iter().map(|(d, p)| (d, p.to_vec())).collect();
        assert_eq!(got, vec![(a, b"one".to_vec()), (b, b"Two".to_vec())]);
        assert_eq!(t.packet_len(1), 3);
        assert_eq!(t.dest(1), b);
        let cap = (t.bytes.capacity(), t.entries.capacity());
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.byte_len(), 0);
        assert_eq!(cap, (t.bytes.capacity(), t.entries.capacity()));
    }

    #[test]
    fn shared_body_is_stored_once() {
        let mut t = TxBatch::with_capacity(8, 64);
        let body = [9u8; 20];
        let s = t.share(&body);
        for port in 1..=3u16 {
            let h = t.push_shared(SocketAddr::from(([10, 0, 0, 1], port)), &[0x80; 12], s);
            h[11] = port as u8;
        }
        assert_eq!(t.arena_len(), 20);
        assert_eq!(t.byte_len(), 3 * 32);
        for (i, (_, p)) in t.iter().enumerate() {
            assert_eq!(p.head[11], i as u8 + 1);
            assert_eq!(p.body, &body[..]);
            assert_eq!(p.len(), 32);
            let mut buf = [0u8; 64];
            assert_eq!(p.copy_to(&mut buf), 32);
            assert_eq!(p, &buf[..32]);
        }
    }

    #[test]
    fn retain_dest_drops_some_receivers_and_their_bytes() {
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let mut t = TxBatch::with_capacity(4, 64);
        t.push(a, b"one");
        t.push(b, b"three");
        t.push(a, b"five5");
        t.retain_dest(|d| *d != b);
        assert_eq!(t.len(), 2);
        assert_eq!(t.byte_len(), 8);
        assert_eq!(t.get(1).unwrap().to_vec(), b"five5");
    }
}
