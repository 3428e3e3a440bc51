//! The reflector path (SFU) of a conference: forward media without decoding it.
//!
//! The mesh asks a [`mesh::Path`] which members receive each packet. The reflector answers
//! from a forwarding table, one receiver list per source and media kind, rebuilt only when the
//! membership changes. Keeping an explicit table (rather than "everyone but the sender"
//! computed per packet) is what later lets a receiver subscribe to a simulcast layer or be
//! thinned per source.

use std::collections::HashMap;
use std::time::Instant;

use mesh::talk::{self, TalkDetector};
use mesh::{MediaKind, ParticipantId, Path, RtpView};

/// Who receives one source's media.
#[derive(Clone, Debug, Default)]
struct Entry {
    /// Indexed by [`MediaKind::index`].
    receivers: [Vec<ParticipantId>; 2],
}

/// The forwarding table of one conference.
#[derive(Clone, Debug, Default)]
pub struct Reflector {
    /// The membership the table was built for; compared on every packet to spot changes.
    members: Vec<ParticipantId>,
    table: HashMap<ParticipantId, Entry>,
    rebuilds: u64,
    /// Push-to-talk runs (`talk on|off`), for smart duplex when forwarding audio.
    talk: HashMap<ParticipantId, TalkDetector>,
}

impl Reflector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The receivers of `src`'s `kind` media under the current table.
    pub fn receivers(&self, src: ParticipantId, kind: MediaKind) -> &[ParticipantId] {
        self.table
            .get(&src)
            .map_or(&[], |e| &e.receivers[kind.index()][..])
    }

    /// How many times the table was rebuilt; for tests and metrics.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// Brings the table in line with `members`. Cheap when nothing changed: one slice compare.
    pub fn sync(&mut self, members: &[ParticipantId]) {
        if self.members == members {
            return;
        }
        self.members.clear();
        self.members.extend_from_slice(members);
        // Reuse the vectors of sources that stay, so a join does not reallocate every list.
        self.table.retain(|src, _| members.contains(src));
        for &src in members {
            let entry = self.table.entry(src).or_default();
            for list in &mut entry.receivers {
                list.clear();
                // Everyone but the source itself: never echo.
                list.extend(members.iter().copied().filter(|&m| m != src));
            }
        }
        self.rebuilds += 1;
    }
}

impl Path for Reflector {
    fn route(
        &mut self,
        _now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        _pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        self.sync(members);
        let src_run = match kind {
            MediaKind::Audio => self.talk.get(&src).and_then(TalkDetector::run),
            MediaKind::Video => None,
        };
        match src_run {
            // Smart duplex: a receiver talking since before this run began does not get it.
            Some(run) => out.extend(self.receivers(src, kind).iter().copied().filter(|r| {
                talk::audible(self.talk.get(r).and_then(TalkDetector::duplex_run), run)
            })),
            None => out.extend_from_slice(self.receivers(src, kind)),
        }
    }

    fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        self.talk.entry(participant).or_default().control(now, on);
        // Forget runs of members who left (bounded by the membership).
        let members = &self.members;
        if self.talk.len() > members.len() + 16 {
            self.talk.retain(|p, _| members.contains(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(r: &mut Reflector, src: ParticipantId, kind: MediaKind, members: &[u32]) -> Vec<u32> {
        let data = [0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        let pkt = RtpView::parse(&data).unwrap();
        let mut out = Vec::new();
        r.route(Instant::now(), src, kind, &pkt, members, &mut out);
        out
    }

    #[test]
    fn forwards_to_everyone_else() {
        let mut r = Reflector::new();
        let m = [1, 2, 3];
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &m), vec![2, 3]);
        assert_eq!(route(&mut r, 2, MediaKind::Video, &m), vec![1, 3]);
        assert_eq!(route(&mut r, 3, MediaKind::Audio, &m), vec![1, 2]);
        assert_eq!(r.rebuilds(), 1, "unchanged membership must not rebuild");
    }

    #[test]
    fn follows_membership_changes() {
        let mut r = Reflector::new();
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &[1, 2]), vec![2]);
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &[1, 2, 3]), vec![2, 3]);
        // 2 leaves: its entry goes and nobody routes to it.
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &[1, 3]), vec![3]);
        assert!(r.receivers(2, MediaKind::Audio).is_empty());
        assert_eq!(r.rebuilds(), 3);
        // Same size, different member: still a change.
        assert_eq!(route(&mut r, 1, MediaKind::Video, &[1, 4]), vec![4]);
        assert_eq!(r.rebuilds(), 4);
    }

    #[test]
    fn alone_or_unknown_source_gets_nothing() {
        let mut r = Reflector::new();
        assert!(route(&mut r, 1, MediaKind::Audio, &[1]).is_empty());
        assert!(route(&mut r, 9, MediaKind::Audio, &[1]).is_empty());
        assert!(route(&mut r, 9, MediaKind::Audio, &[]).is_empty());
    }

    #[test]
    fn smart_duplex_when_forwarding_audio() {
        let mut r = Reflector::new();
        let m = [1, 2, 3];
        let t0 = Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        route(&mut r, 1, MediaKind::Audio, &m);
        // A talks from 0 s, B interrupts at 3 s, C at 4 s.
        r.on_talk(at(0), 1, true);
        r.on_talk(at(3), 2, true);
        r.on_talk(at(4), 3, true);
        // B and C began after A: neither gets A's audio; A gets both.
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &m), Vec::<u32>::new());
        assert_eq!(route(&mut r, 2, MediaKind::Audio, &m), vec![1]);
        assert_eq!(route(&mut r, 3, MediaKind::Audio, &m), vec![1, 2]);
        // Video is never held back.
        assert_eq!(route(&mut r, 1, MediaKind::Video, &m), vec![2, 3]);
        // B stops: A's run, still going, resumes for B.
        r.on_talk(at(6), 2, false);
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &m), vec![2]);
    }

    #[test]
    fn steady_state_reuses_lists() {
        let mut r = Reflector::new();
        let m: Vec<u32> = (0..50).collect();
        route(&mut r, 0, MediaKind::Audio, &m);
        let before = r.receivers(0, MediaKind::Audio).as_ptr();
        for src in 0..50 {
            assert_eq!(route(&mut r, src, MediaKind::Audio, &m).len(), 49);
        }
        assert_eq!(r.receivers(0, MediaKind::Audio).as_ptr(), before);
        assert_eq!(r.rebuilds(), 1);
    }
}
