//! The transmit batch: packets ready to send, in one reusable byte arena.

use std::net::SocketAddr;

/// Packets ready to send. One byte arena plus (destination, range) entries; both keep their
/// capacity across [`TxBatch::clear`], so a batch that is reused allocates nothing after
/// warm-up. The arena also lets a sender rewrite headers in place after copying.
#[derive(Clone, Debug, Default)]
pub struct TxBatch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    dest: SocketAddr,
    start: usize,
    end: usize,
}

impl TxBatch {
    /// A batch pre-sized for `packets` entries and `bytes` of payload.
    pub fn with_capacity(packets: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(packets),
        }
    }

    /// Appends a copy of `bytes` addressed to `dest`.
    pub fn push(&mut self, dest: SocketAddr, bytes: &[u8]) {
        self.push_mut(dest, bytes);
    }

    /// Appends a copy of `bytes` and returns it for in-place rewriting.
    pub(crate) fn push_mut(&mut self, dest: SocketAddr, bytes: &[u8]) -> &mut [u8] {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        let end = self.bytes.len();
        self.entries.push(Entry { dest, start, end });
        &mut self.bytes[start..end]
    }

    /// The packets in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|e| (e.dest, &self.bytes[e.start..e.end]))
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of all packets.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
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
        t.push_mut(b, b"two")[0] = b'T';
        assert_eq!(t.len(), 2);
        assert_eq!(t.byte_len(), 6);
        let got: Vec<_> = t.iter().collect();
        assert_eq!(got, vec![(a, &b"one"[..]), (b, &b"Two"[..])]);
        let cap = (t.bytes.capacity(), t.entries.capacity());
        t.clear();
        assert!(t.is_empty());
        assert_eq!(cap, (t.bytes.capacity(), t.entries.capacity()));
    }
}
