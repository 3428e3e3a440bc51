//! Which packets of a transmit batch go out together: the GSO planner.
//!
//! A plan is a list of messages, each one `sendmsg` worth: either one packet, or a GSO run of
//! several packets to the same destination that the kernel splits at `seg` bytes
//! (`UDP_SEGMENT`). A run is packets to one destination, in the order the mesh queued them,
//! all `seg` bytes long except the last, which may be shorter. Packets to different
//! destinations may be reordered relative to each other; packets to one destination never are.
//!
//! Grouping is O(n) with a pre-sized open-addressing table, and allocates nothing once the
//! planner has seen its largest batch.

use mesh::TxBatch;
use std::net::SocketAddr;

/// Most segments the kernel takes in one GSO send (`UDP_MAX_SEGMENTS`, 64 before Linux 6.9).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Largest GSO payload: the IPv4 total-length limit less IP and UDP headers, with margin.
pub const GSO_MAX_BYTES: usize = 65_000;
/// Largest segment sent with GSO: a 1500-byte MTU less IPv6 and UDP headers, so that a segment
/// never needs IP fragmentation (the kernel refuses GSO segments over the path MTU).
pub const GSO_MAX_SEG: usize = 1452;

/// One `sendmsg`: `count` packets starting at `first` in [`Plan::order`], sent as GSO
/// segments of `seg` bytes when `count > 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub first: u32,
    pub count: u32,
    pub seg: u32,
}

/// A reusable plan for one batch.
#[derive(Debug, Default)]
pub struct Plan {
    /// Batch indices in send order; each message covers a contiguous range of it.
    pub order: Vec<u32>,
    pub msgs: Vec<Msg>,
    /// Open addressing: slot -> (first batch index of a destination + 1, its chain's tail).
    table: Vec<(u32, u32)>,
    used: Vec<u32>,
    /// Chain links: next batch index to the same destination, or `NONE`.
    next: Vec<u32>,
    /// True for the first packet of each destination.
    head: Vec<bool>,
}

const NONE: u32 = u32::MAX;

impl Plan {
    /// A planner pre-sized for batches of up to `packets`.
    pub fn with_capacity(packets: usize) -> Self {
        let slots = (packets * 2).next_power_of_two().max(16);
        Self {
            order: Vec::with_capacity(packets),
            msgs: Vec::with_capacity(packets),
            table: vec![(0, 0); slots],
            used: Vec::with_capacity(packets),
            next: Vec::with_capacity(packets),
            head: Vec::with_capacity(packets),
        }
    }

    /// Plans `batch`: with `gso` off, one message per packet in batch order.
    pub fn build(&mut self, batch: &TxBatch, gso: bool) {
        self.build_with(batch.len(), |i| batch.dest(i), |i| batch.packet_len(i), gso);
    }

    /// The planner over any packet list given by destination and length (for tests).
    pub fn build_with(
        &mut self,
        n: usize,
        dest: impl Fn(usize) -> SocketAddr,
        len: impl Fn(usize) -> usize,
        gso: bool,
    ) {
        self.order.clear();
        self.msgs.clear();
        if !gso {
            for i in 0..n {
                self.order.push(i as u32);
                self.msgs.push(Msg {
                    first: i as u32,
                    count: 1,
                    seg: len(i) as u32,
                });
            }
            return;
        }
        self.chain(n, &dest);
        for i in 0..n {
            if self.next_is_head(i) {
                self.runs_from(i, &len);
            }
        }
        self.reset_table();
    }

    /// Links every packet to the next one for the same destination.
    fn chain(&mut self, n: usize, dest: &impl Fn(usize) -> SocketAddr) {
        if self.table.len() < n * 2 {
            // A batch bigger than planned for: grow once (warm-up only).
            self.table = vec![(0, 0); (n * 2).next_power_of_two()];
        }
        let mask = self.table.len() - 1;
        self.next.clear();
        self.next.resize(n, NONE);
        self.head.clear();
        self.head.resize(n, false);
        for i in 0..n {
            let d = dest(i);
            let mut h = hash(&d) & mask;
            loop {
                let (first1, tail) = self.table[h];
                if first1 == 0 {
                    self.table[h] = (i as u32 + 1, i as u32);
                    self.used.push(h as u32);
                    self.head[i] = true;
                    break;
                }
                if dest(first1 as usize - 1) == d {
                    self.next[tail as usize] = i as u32;
                    self.table[h].1 = i as u32;
                    break;
                }
                h = (h + 1) & mask;
            }
        }
    }

    fn next_is_head(&self, i: usize) -> bool {
        self.head[i]
    }

    fn link(&self, i: usize) -> Option<usize> {
        let v = self.next[i];
        (v != NONE).then_some(v as usize)
    }

    /// Cuts the chain that starts at `head` into GSO runs.
    fn runs_from(&mut self, head: usize, len: &impl Fn(usize) -> usize) {
        let mut cur = Some(head);
        while let Some(i) = cur {
            let seg = len(i);
            let first = self.order.len() as u32;
            self.order.push(i as u32);
            let mut count = 1usize;
            let mut total = seg;
            cur = self.link(i);
            if seg <= GSO_MAX_SEG {
                while let Some(j) = cur {
                    let l = len(j);
                    if l > seg || count == GSO_MAX_SEGMENTS || total + l > GSO_MAX_BYTES {
                        break;
                    }
                    self.order.push(j as u32);
                    count += 1;
                    total += l;
                    cur = self.link(j);
                    if l < seg {
                        // A shorter segment can only be the last of a run.
                        break;
                    }
                }
            }
            self.msgs.push(Msg {
                first,
                count: count as u32,
                seg: seg as u32,
            });
        }
    }

    fn reset_table(&mut self) {
        for &h in &self.used {
            self.table[h as usize] = (0, 0);
        }
        self.used.clear();
    }

    /// Batch indices of message `m`, in send order.
    pub fn packets(&self, m: &Msg) -> &[u32] {
        &self.order[m.first as usize..(m.first + m.count) as usize]
    }
}

fn hash(a: &SocketAddr) -> usize {
    let k: u64 = match a {
        SocketAddr::V4(v) => (u64::from(u32::from(*v.ip())) << 16) | u64::from(v.port()),
        SocketAddr::V6(v) => {
            let o = u128::from(*v.ip());
            ((o as u64) ^ ((o >> 64) as u64)).rotate_left(16) ^ u64::from(v.port())
        }
    };
    // Fibonacci hashing; the high bits are the well-mixed ones.
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Plans `(port, len)` packets and returns each message as (port, [batch index], seg).
    fn plan(pkts: &[(u16, usize)], gso: bool) -> Vec<(u16, Vec<u32>, u32)> {
        let mut p = Plan::with_capacity(4);
        p.build_with(pkts.len(), |i| a(pkts[i].0), |i| pkts[i].1, gso);
        let out: Vec<_> = p
            .msgs
            .iter()
            .map(|m| {
                let idx = p.packets(m).to_vec();
                (pkts[idx[0] as usize].0, idx, m.seg)
            })
            .collect();
        // Every packet exactly once.
        let mut all: Vec<u32> = p.order.clone();
        all.sort();
        assert_eq!(all, (0..pkts.len() as u32).collect::<Vec<_>>());
        out
    }

    #[test]
    fn without_gso_one_message_per_packet_in_order() {
        let got = plan(&[(1, 100), (1, 100), (2, 50)], false);
        assert_eq!(
            got,
            vec![(1, vec![0], 100), (1, vec![1], 100), (2, vec![2], 50)]
        );
    }

    #[test]
    fn fan_out_interleaving_groups_per_destination() {
        // Three packets of 200 bytes, each fanned out to ports 1, 2, 3: the mesh queues
        // them interleaved; the plan makes one run per destination, in queue order.
        let mut pkts = vec![];
        for _ in 0..3 {
            for port in 1..=3 {
                pkts.push((port, 200));
            }
        }
        let got = plan(&pkts, true);
        assert_eq!(
            got,
            vec![
                (1, vec![0, 3, 6], 200),
                (2, vec![1, 4, 7], 200),
                (3, vec![2, 5, 8], 200)
            ]
        );
    }

    #[test]
    fn shorter_last_segment_ends_a_run_and_longer_starts_one() {
        let got = plan(
            &[(1, 100), (1, 100), (1, 60), (1, 100), (1, 300), (1, 300)],
            true,
        );
        assert_eq!(
            got,
            vec![
                (1, vec![0, 1, 2], 100),
                (1, vec![3], 100),
                (1, vec![4, 5], 300)
            ]
        );
    }

    #[test]
    fn runs_respect_segment_count_and_size_limits() {
        let pkts = vec![(7, 100); GSO_MAX_SEGMENTS + 3];
        let got = plan(&pkts, true);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), GSO_MAX_SEGMENTS);
        assert_eq!(got[1].1.len(), 3);

        let big = 1400;
        let pkts = vec![(7, big); 60];
        let got = plan(&pkts, true);
        let per = GSO_MAX_BYTES / big;
        assert_eq!(got[0].1.len(), per);
        assert!(got.iter().all(|m| m.1.len() * big <= GSO_MAX_BYTES));

        // Over the segment limit: never coalesced.
        let got = plan(&[(7, 2000), (7, 2000)], true);
        assert_eq!(got, vec![(7, vec![0], 2000), (7, vec![1], 2000)]);
    }

    #[test]
    fn single_packets_and_many_destinations() {
        let pkts: Vec<(u16, usize)> = (0..500).map(|i| (1000 + (i % 97) as u16, 80)).collect();
        let got = plan(&pkts, true);
        assert_eq!(got.len(), 97);
        for (port, idx, _) in &got {
            assert!(
                idx.windows(2).all(|w| w[0] < w[1]),
                "order kept per destination"
            );
            assert!(idx.iter().all(|&i| pkts[i as usize].0 == *port));
        }
        // Reused planner: a second, different batch plans from a clean table.
        let mut p = Plan::with_capacity(8);
        p.build_with(2, |i| a(i as u16), |_| 10, true);
        p.build_with(2, |_| a(9), |_| 10, true);
        assert_eq!(
            p.msgs,
            vec![Msg {
                first: 0,
                count: 2,
                seg: 10
            }]
        );
    }

    #[test]
    fn ipv6_destinations_group_too() {
        let d6: SocketAddr = "[::1]:5000".parse().unwrap();
        let d6b: SocketAddr = "[::1]:5001".parse().unwrap();
        let dests = [d6, d6b, d6, d6b];
        let mut p = Plan::with_capacity(4);
        p.build_with(4, |i| dests[i], |_| 90, true);
        assert_eq!(p.msgs.len(), 2);
        assert_eq!(p.packets(&p.msgs[0]), &[0, 2]);
        assert_eq!(p.packets(&p.msgs[1]), &[1, 3]);
    }
}
