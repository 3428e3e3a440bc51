//! Sequence renumbering for one receiver of one video stream, and its way back for NACKs.
//!
//! A receiver that misses packets on purpose (thinning leaves droppable frames out) must not
//! see holes in the sequence numbers: real receivers (libwebrtc, ffmpeg) NACK every hole and,
//! getting no answer, ask for keyframes. So its copies go out with `source seq + offset`,
//! where every packet withheld from it takes one off the offset and a simulcast switch sets
//! it anew. Its NACKs name those numbers; answering them needs the offset that was in force
//! when each packet went out, so the changes are kept in a fixed ring
//! ([`HISTORY`] entries, enough for every packet the retransmission cache still holds).

use crate::nack;

/// Offset changes kept. A change is made at the end of each run of withheld packets, and
/// runs are at least one forwarded packet apart, so the cache's window of [`nack::SLOTS`]
/// packets spans at most `SLOTS / 2` changes, plus the one in force at its oldest packet.
pub(crate) const HISTORY: usize = nack::SLOTS / 2 + 1;

/// Maps a stream's sequence numbers to one receiver's and back.
#[derive(Clone, Debug)]
pub(crate) struct SeqMap {
    /// Ring of (first source sequence number, offset from it on), oldest at `head`.
    changes: [(u16, u16); HISTORY],
    head: usize,
    len: usize,
    /// The offset in force before the oldest change; `None` once that is no longer known
    /// (the ring overflowed, or numbering restarted there).
    base: Option<u16>,
}

impl Default for SeqMap {
    fn default() -> Self {
        Self {
            changes: [(0, 0); HISTORY],
            head: 0,
            len: 0,
            base: Some(0),
        }
    }
}

/// Whether sequence number `a` is at or after `b` (RFC 3550 wrap-around order).
fn at_or_after(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) >= 0
}

impl SeqMap {
    /// The newest change, if any.
    fn last(&self) -> Option<(u16, u16)> {
        (self.len > 0).then(|| self.changes[(self.head + self.len - 1) % HISTORY])
    }

    /// Changes, newest first.
    fn newest_first(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.len)
            .rev()
            .map(|i| self.changes[(self.head + i) % HISTORY])
    }

    fn push(&mut self, first: u16, offset: u16) {
        if self.len == HISTORY {
            // The oldest change goes; what was before it is beyond the cache anyway.
            self.base = None;
            self.head = (self.head + 1) % HISTORY;
            self.len -= 1;
        }
        self.changes[(self.head + self.len) % HISTORY] = (first, offset);
        self.len += 1;
    }

    /// The offset for packets arriving now.
    pub(crate) fn offset(&self) -> u16 {
        self.last().map_or(self.base.unwrap_or(0), |(_, o)| o)
    }

    /// The receiver's number for source packet `seq`: the offset in force at `seq`, so a
    /// packet arriving late still gets the number its place in the stream says.
    pub(crate) fn map(&self, seq: u16) -> u16 {
        let off = match self.last() {
            // The common case: at or after the newest change.
            Some((first, o)) if at_or_after(seq, first) => o,
            None => self.base.unwrap_or(0),
            Some(_) => self
                .newest_first()
                .find(|&(first, _)| at_or_after(seq, first))
                .map(|(_, o)| o)
                .or(self.base)
                .unwrap_or_else(|| self.offset()),
        };
        seq.wrapping_add(off)
    }

    /// Source packet `seq` is withheld from the receiver: later ones close the gap.
    pub(crate) fn skip(&mut self, seq: u16) {
        let next = seq.wrapping_add(1);
        match self.last() {
            // Runs of withheld packets (a frame's) make one change.
            Some((first, o)) if first == seq => {
                let i = (self.head + self.len - 1) % HISTORY;
                self.changes[i] = (next, o.wrapping_sub(1));
            }
            // A late packet from before the newest change: its number was already given.
            Some((first, _)) if !at_or_after(next, first) => {}
            _ => {
                let o = self.offset().wrapping_sub(1);
                self.push(next, o);
            }
        }
    }

    /// Whether source packet `seq` was withheld (by [`SeqMap::skip`]): its number went to the
    /// packet after its run, so a late copy of it must not go out. Unknown (before the
    /// history or a restart) counts as withheld: such a packet has no free number.
    pub(crate) fn withheld(&self, seq: u16) -> bool {
        // The offset in force just before each change, oldest first.
        let mut before = self.base;
        for i in 0..self.len {
            let (first, o) = self.changes[(self.head + i) % HISTORY];
            if at_or_after(seq, first) {
                before = Some(o);
                continue;
            }
            // The first change after `seq`: the run it ends is `before - o` packets long.
            let Some(b) = before else {
                return true;
            };
            return first.wrapping_sub(seq) <= b.wrapping_sub(o);
        }
        // After the newest change: not withheld yet.
        false
    }

    /// Numbering starts again at source packet `first` with `offset` (a simulcast switch):
    /// earlier receiver numbers no longer map to this stream.
    pub(crate) fn restart(&mut self, first: u16, offset: u16) {
        self.head = 0;
        self.len = 0;
        self.base = None;
        self.push(first, offset);
    }

    /// The source's sequence number for the receiver's `seq`, if it is still known.
    pub(crate) fn unmap(&self, seq: u16) -> Option<u16> {
        for (first, o) in self.newest_first() {
            let src = seq.wrapping_sub(o);
            if at_or_after(src, first) {
                return Some(src);
            }
        }
        self.base.map(|o| seq.wrapping_sub(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Forwards `total` packets from `start`, withholding those `thin` picks; returns what
    /// the receiver got as (source, receiver) numbers.
    fn run(m: &mut SeqMap, start: u16, total: u16, thin: impl Fn(u16) -> bool) -> Vec<(u16, u16)> {
        let mut got = Vec::new();
        for i in 0..total {
            let s = start.wrapping_add(i);
            if thin(i) {
                m.skip(s);
            } else {
                got.push((s, m.map(s)));
            }
        }
        got
    }

    #[test]
    fn withheld_packets_leave_no_gap_and_every_number_maps_back() {
        let mut m = SeqMap::default();
        // Three-packet frames, every other one withheld, across the wrap.
        let got = run(&mut m, 65_000, 1200, |i| i / 3 % 2 == 1);
        for w in got.windows(2) {
            assert_eq!(w[1].1, w[0].1.wrapping_add(1), "continuous at {w:?}");
        }
        assert_eq!(got[0], (65_000, 65_000), "starts unchanged");
        // Every packet of the cache's window maps back; older ones may not.
        let newest = got.last().unwrap().0;
        for &(s, r) in got
            .iter()
            .rev()
            .take_while(|(s, _)| newest.wrapping_sub(*s) < nack::SLOTS as u16)
        {
            assert_eq!(m.unmap(r), Some(s));
        }
    }

    #[test]
    fn alternating_single_packets_fit_the_history() {
        let mut m = SeqMap::default();
        let got = run(&mut m, 7, 1000, |i| i % 2 == 1);
        let newest = got.last().unwrap().0;
        let window: Vec<_> = got
            .iter()
            .filter(|(s, _)| newest.wrapping_sub(*s) < nack::SLOTS as u16)
            .collect();
        assert_eq!(window.len(), nack::SLOTS / 2);
        for &&(s, r) in &window {
            assert_eq!(m.unmap(r), Some(s));
        }
        // The first packets are beyond the history.
        assert_eq!(m.unmap(got[0].1), None);
    }

    #[test]
    fn without_changes_numbers_are_the_sources() {
        let m = SeqMap::default();
        assert_eq!((m.map(5), m.unmap(5), m.offset()), (5, Some(5), 0));
    }

    #[test]
    fn a_late_packet_keeps_its_place() {
        let mut m = SeqMap::default();
        m.skip(10);
        // 9 arrives after 10 was withheld: it still gets 9; 11 follows on as 10.
        assert_eq!((m.map(11), m.map(9)), (10, 9));
        // A late withheld packet from before changes nothing.
        m.skip(12);
        m.skip(8);
        assert_eq!(m.map(13), 11);
    }

    #[test]
    fn withheld_packets_are_known_as_such() {
        let mut m = SeqMap::default();
        assert!(!m.withheld(10));
        m.skip(10);
        m.skip(11);
        m.skip(20);
        let w: Vec<u16> = (5..25).filter(|&s| m.withheld(s)).collect();
        assert_eq!(w, vec![10, 11, 20]);
        // Forwarded packets keep distinct numbers.
        let fwd: BTreeSet<u16> = (5..25)
            .filter(|&s| !m.withheld(s))
            .map(|s| m.map(s))
            .collect();
        assert_eq!(fwd.len(), 17);
        m.restart(5000, 7);
        assert!(m.withheld(4999), "before a restart: no number to give");
        assert!(!m.withheld(5000));
    }

    #[test]
    fn a_restart_forgets_older_numbers() {
        let mut m = SeqMap::default();
        m.skip(100);
        m.restart(5000, 0u16.wrapping_sub(4900));
        assert_eq!(m.map(5000), 100);
        assert_eq!(m.unmap(100), Some(5000));
        assert_eq!(m.unmap(99), None);
    }
}
