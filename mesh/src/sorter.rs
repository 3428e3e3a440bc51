//! The sorter: which participant stream a datagram belongs to, and how that stream is doing.
//!
//! [`SourceIndex`] is mesh-wide (an address belongs to at most one participant on the worker);
//! [`Sorter`] is per conference and holds each source's channels and RFC 3550 statistics.

use crate::FastMap as HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::stats::StreamStats;
use crate::{ConfId, Endpoint, Hasher, MediaKind, ParticipantId, Remote, RtpView};

/// RFC 3550 A.1: a forward jump below this is a gap, not a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a backward step below this is a late packet, not a restart.
const MAX_MISORDER: u16 = 100;

/// Sequence and jitter tracking of one incoming stream (RFC 3550 A.1, A.3, A.8).
#[derive(Clone, Debug)]
pub(crate) struct StreamState {
    clock_rate: u32,
    started: bool,
    max_seq: u16,
    /// Sequence wraparounds since the base, times 2^16.
    cycles: u64,
    base_seq: u64,
    /// Sequence number that confirms a restart after a large jump.
    bad_seq: Option<u16>,
    /// Packets counted towards loss since the base.
    received: u64,
    packets: u64,
    reordered: u64,
    /// Arrival clock origin, so arrivals can be expressed in RTP timestamp units.
    epoch: Option<Instant>,
    last_transit: u32,
    /// In timestamp units.
    jitter: f64,
}

impl StreamState {
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            received: 0,
            packets: 0,
            reordered: 0,
            epoch: None,
            last_transit: 0,
            jitter: 0.0,
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.started = true;
        self.max_seq = seq;
        self.cycles = 0;
        self.base_seq = u64::from(seq);
        self.bad_seq = None;
        self.received = 0;
        self.epoch = None;
        self.jitter = 0.0;
    }

    /// Accounts one packet arriving at `now`.
    pub(crate) fn update(&mut self, now: Instant, seq: u16, timestamp: u32) {
        self.packets += 1;
        if !self.started {
            self.init_seq(seq);
        } else {
            let udelta = seq.wrapping_sub(self.max_seq);
            if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
                // A big jump: the source probably restarted. Believe it only when the next
                // packet follows on; until then keep it out of the statistics.
                if self.bad_seq == Some(seq) {
                    self.init_seq(seq);
                } else {
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return;
                }
            } else {
                self.reordered += 1;
            }
        }
        self.received += 1;
        self.update_jitter(now, timestamp);
    }

    fn update_jitter(&mut self, now: Instant, timestamp: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let since = now.saturating_duration_since(epoch);
        // Whole seconds and the fraction apart keep this in u64 (a 128-bit division was a
        // measurable share of the per-packet cost). Only differences matter, so wrapping
        // to 32 bits like RTP timestamps is fine.
        let rate = u64::from(self.clock_rate);
        let ticks = since.as_secs().wrapping_mul(rate)
            + u64::from(since.subsec_nanos()) * rate / 1_000_000_000;
        let arrival = ticks as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if self.received > 1 {
            let d = f64::from((transit.wrapping_sub(self.last_transit) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = transit;
    }

    fn highest_seq_ext(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    pub(crate) fn stats(&self) -> StreamStats {
        if !self.started {
            return StreamStats::default();
        }
        let expected = self.highest_seq_ext() - self.base_seq + 1;
        StreamStats {
            packets: self.packets,
            lost: expected.saturating_sub(self.received),
            jitter_ms: self.jitter * 1000.0 / f64::from(self.clock_rate),
            highest_seq_ext: self.highest_seq_ext(),
            reordered: self.reordered,
        }
    }
}

/// What a receiver report says about one incoming stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamReport {
    pub ssrc: u32,
    pub clock_rate: u32,
    pub stats: StreamStats,
}

/// One declared incoming stream of a participant.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    remote: Remote,
    ssrc: u32,
    /// Where packets come from and go to; `None` while a latch is pending.
    addr: Option<SocketAddr>,
    stream: StreamState,
    /// Simulcast: the other encodings' SSRCs, each with its own statistics.
    layers: Vec<(u32, StreamState)>,
}

#[derive(Clone, Debug, Default)]
struct Source {
    muted: bool,
    endpoint: Endpoint,
    channels: [Option<Channel>; 2],
}

impl Source {
    /// True when the channel of kind other than `kind` uses `addr`.
    fn other_uses(&self, kind: MediaKind, addr: SocketAddr) -> bool {
        let other = 1 - kind.index();
        matches!(&self.channels[other], Some(c) if c.addr == Some(addr))
    }
}

type Key = (ConfId, ParticipantId);

/// Mesh-wide map from source address (and pending latch) to participant.
#[derive(Debug)]
pub(crate) struct SourceIndex {
    addrs: HashMap<SocketAddr, Key>,
    latches: HashMap<(IpAddr, u32), (ConfId, ParticipantId, MediaKind)>,
    /// [`Remote::Relay`] streams: a linked server's address is shared by all of them.
    shared: HashMap<(SocketAddr, u32), Key>,
}

impl SourceIndex {
    pub(crate) fn with_capacity(participants: usize, hasher: Hasher) -> Self {
        Self {
            addrs: hasher.map_with_capacity(2 * participants),
            latches: hasher.map_with_capacity(2 * participants),
            shared: hasher.map_with_capacity(2 * participants),
        }
    }

    pub(crate) fn owner(&self, addr: &SocketAddr) -> Option<Key> {
        self.addrs.get(addr).copied()
    }

    /// The owner of a stream from a linked server's shared address.
    pub(crate) fn relayed(&self, addr: SocketAddr, ssrc: u32) -> Option<Key> {
        self.shared.get(&(addr, ssrc)).copied()
    }

    fn release_shared(&mut self, addr: SocketAddr, ssrc: u32, key: Key) {
        if self.shared.get(&(addr, ssrc)) == Some(&key) {
            self.shared.remove(&(addr, ssrc));
        }
    }

    pub(crate) fn pending_latch(
        &self,
        ip: IpAddr,
        ssrc: u32,
    ) -> Option<(ConfId, ParticipantId, MediaKind)> {
        self.latches.get(&(ip, ssrc)).copied()
    }

    fn addr_free_for(&self, addr: &SocketAddr, key: Key) -> bool {
        !matches!(self.addrs.get(addr), Some(&k) if k != key)
    }

    /// Turns a pending latch into a bound address. The caller has checked the address is free.
    fn bind(&mut self, ip: IpAddr, ssrc: u32, addr: SocketAddr, key: Key) {
        self.latches.remove(&(ip, ssrc));
        self.addrs.insert(addr, key);
    }

    /// Removes what `ch` (of `kind`, owned by `key`) put into the index.
    fn release(&mut self, key: Key, kind: MediaKind, ch: &Channel, src: &Source) {
        if let Remote::Relay(a) = ch.remote {
            self.release_shared(a, ch.ssrc, key);
            for (s, _) in &ch.layers {
                self.release_shared(a, *s, key);
            }
            return;
        }
        match (ch.addr, ch.remote) {
            (Some(a), _) => {
                if !src.other_uses(kind, a) && self.addrs.get(&a) == Some(&key) {
                    self.addrs.remove(&a);
                }
            }
            (None, Remote::Latch(ip) | Remote::LatchTo { from: ip, .. }) => {
                self.latches.remove(&(ip, ch.ssrc));
            }
            (None, Remote::Addr(_) | Remote::Relay(_)) => {}
        }
    }

    #[cfg(test)]
    pub(crate) fn address_count(&self) -> usize {
        self.addrs.len()
    }
}

/// Why a channel could not be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelConflict {
    NoSuchParticipant,
    ZeroClockRate,
    /// The SSRC is the one of the participant's other channel.
    SsrcInUse,
    /// The address or latch belongs to another participant.
    RemoteInUse,
}

/// Per-conference source table.
#[derive(Debug, Default)]
pub(crate) struct Sorter {
    sources: HashMap<ParticipantId, Source>,
}

impl Sorter {
    pub(crate) fn with_capacity(participants: usize, hasher: Hasher) -> Self {
        Self {
            sources: hasher.map_with_capacity(participants),
        }
    }

    pub(crate) fn add(&mut self, pid: ParticipantId) {
        self.sources.entry(pid).or_default();
    }

    /// Forgets the participant and everything it put into the index.
    pub(crate) fn remove(&mut self, index: &mut SourceIndex, conf: ConfId, pid: ParticipantId) {
        if let Some(src) = self.sources.remove(&pid) {
            for kind in MediaKind::ALL {
                if let Some(ch) = &src.channels[kind.index()] {
                    // `other_uses` would keep a shared address alive, so release against an
                    // empty source to drop it regardless.
                    index.release((conf, pid), kind, ch, &Source::default());
                }
            }
        }
    }

    /// Installs or replaces a channel and keeps the index in step. Returns the address to send
    /// to (`None` until a latch binds; a [`Remote::LatchTo`] knows it at once).
    pub(crate) fn set_channel(
        &mut self,
        index: &mut SourceIndex,
        key: Key,
        kind: MediaKind,
        remote: Remote,
        ssrc: u32,
        clock_rate: u32,
    ) -> Result<Option<SocketAddr>, ChannelConflict> {
        let src = self
            .sources
            .get_mut(&key.1)
            .ok_or(ChannelConflict::NoSuchParticipant)?;
        if clock_rate == 0 {
            return Err(ChannelConflict::ZeroClockRate);
        }
        if matches!(&src.channels[1 - kind.index()], Some(c) if c.ssrc == ssrc) {
            return Err(ChannelConflict::SsrcInUse);
        }
        let free = match remote {
            Remote::Addr(a) => index.addr_free_for(&a, key),
            Remote::Relay(a) => !matches!(index.relayed(a, ssrc), Some(k) if k != key),
            Remote::Latch(ip) | Remote::LatchTo { from: ip, .. } => !matches!(
                index.pending_latch(ip, ssrc),
                Some(owner) if owner != (key.0, key.1, kind)
            ),
        };
        if !free {
            return Err(ChannelConflict::RemoteInUse);
        }
        // A new line for the same stream (say, to change `rtx=`) keeps its simulcast
        // layers: the signalling only declares them again when they change.
        let mut layers = Vec::new();
        if let Some(mut old) = src.channels[kind.index()].take() {
            if old.ssrc == ssrc {
                layers = std::mem::take(&mut old.layers);
            }
            index.release(key, kind, &old, src);
        }
        let addr = match remote {
            Remote::Addr(a) => {
                index.addrs.insert(a, key);
                Some(a)
            }
            Remote::Relay(a) => {
                index.shared.insert((a, ssrc), key);
                for (s, _) in &layers {
                    index.shared.insert((a, *s), key);
                }
                Some(a)
            }
            Remote::Latch(ip) => {
                index.latches.insert((ip, ssrc), (key.0, key.1, kind));
                None
            }
            Remote::LatchTo { from, .. } => {
                index.latches.insert((from, ssrc), (key.0, key.1, kind));
                None
            }
        };
        src.channels[kind.index()] = Some(Channel {
            remote,
            ssrc,
            addr,
            stream: StreamState::new(clock_rate),
            layers,
        });
        Ok(match remote {
            Remote::LatchTo { to, .. } => Some(to),
            _ => addr,
        })
    }

    /// Binds a pending latch of `pid` to `from`, if the address is not someone else's.
    pub(crate) fn bind_latch(
        &mut self,
        index: &mut SourceIndex,
        key: Key,
        kind: MediaKind,
        from: SocketAddr,
        ssrc: u32,
    ) -> bool {
        if !index.addr_free_for(&from, key) {
            return false;
        }
        let Some(ch) = self
            .sources
            .get_mut(&key.1)
            .and_then(|s| s.channels[kind.index()].as_mut())
        else {
            return false;
        };
        let latch_ip = match ch.remote {
            Remote::Latch(ip) | Remote::LatchTo { from: ip, .. } => Some(ip),
            Remote::Addr(_) | Remote::Relay(_) => None,
        };
        if ch.ssrc != ssrc || ch.addr.is_some() || latch_ip != Some(from.ip()) {
            return false;
        }
        ch.addr = Some(from);
        index.bind(from.ip(), ssrc, from, key);
        true
    }

    /// Finds the stream `pkt` belongs to and accounts it; `None` if `pid` declared no channel
    /// with this SSRC at this address.
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        pid: ParticipantId,
        from: SocketAddr,
        pkt: &RtpView<'_>,
    ) -> Option<MediaKind> {
        let src = self.sources.get_mut(&pid)?;
        let ssrc = pkt.ssrc();
        for kind in MediaKind::ALL {
            if let Some(ch) = &mut src.channels[kind.index()] {
                if ch.ssrc == ssrc && ch.addr == Some(from) {
                    ch.stream
                        .update(now, pkt.sequence_number(), pkt.timestamp());
                    return Some(kind);
                }
                // Another simulcast encoding of this channel, from the same address.
                if ch.addr == Some(from) {
                    if let Some((_, st)) = ch.layers.iter_mut().find(|(s, _)| *s == ssrc) {
                        st.update(now, pkt.sequence_number(), pkt.timestamp());
                        return Some(kind);
                    }
                }
            }
        }
        None
    }

    /// Where `pid`'s `kind` media goes: the bound source address, or a
    /// [`Remote::LatchTo`]'s declared receive address. `None` while a latch is pending.
    pub(crate) fn send_addr(&self, pid: ParticipantId, kind: MediaKind) -> Option<SocketAddr> {
        let ch = self.sources.get(&pid)?.channels[kind.index()].as_ref()?;
        match ch.remote {
            Remote::LatchTo { to, .. } => Some(to),
            _ => ch.addr,
        }
    }

    /// The SSRC, clock rate and reception statistics of `pid`'s `kind` stream, for
    /// receiver reports.
    pub(crate) fn report(&self, pid: ParticipantId, kind: MediaKind) -> Option<StreamReport> {
        let ch = self.sources.get(&pid)?.channels[kind.index()].as_ref()?;
        Some(StreamReport {
            ssrc: ch.ssrc,
            clock_rate: ch.stream.clock_rate,
            stats: ch.stream.stats(),
        })
    }

    /// Declares `pid`'s simulcast encodings (see [`crate::Command::SetSimulcast`]): the
    /// video channel's SSRC among at most [`crate::MAX_LAYERS`] distinct ones, none of them
    /// the audio channel's. False (and nothing changed) otherwise.
    pub(crate) fn set_layers(&mut self, index: &mut SourceIndex, key: Key, layers: &[u32]) -> bool {
        let Some(src) = self.sources.get_mut(&key.1) else {
            return false;
        };
        let audio = src.channels[MediaKind::Audio.index()]
            .as_ref()
            .map(|c| c.ssrc);
        let Some(ch) = &mut src.channels[MediaKind::Video.index()] else {
            return false;
        };
        let distinct = layers
            .iter()
            .enumerate()
            .all(|(i, s)| !layers[..i].contains(s) && Some(*s) != audio);
        let relay = match ch.remote {
            Remote::Relay(a) => Some(a),
            _ => None,
        };
        let taken = relay.is_some_and(|a| {
            layers
                .iter()
                .any(|&s| matches!(index.relayed(a, s), Some(k) if k != key))
        });
        if layers.is_empty()
            || layers.len() > crate::MAX_LAYERS
            || !distinct
            || taken
            || !layers.contains(&ch.ssrc)
        {
            return false;
        }
        if let Some(a) = relay {
            for (s, _) in &ch.layers {
                index.release_shared(a, *s, key);
            }
            for &s in layers {
                index.shared.insert((a, s), key);
            }
        }
        let rate = ch.stream.clock_rate;
        ch.layers = layers
            .iter()
            .filter(|&&s| s != ch.ssrc)
            .map(|&s| (s, StreamState::new(rate)))
            .collect();
        true
    }

    /// Whether `pid`'s `kind` channel has simulcast layers declared.
    pub(crate) fn has_layers(&self, pid: ParticipantId, kind: MediaKind) -> bool {
        self.sources
            .get(&pid)
            .and_then(|s| s.channels[kind.index()].as_ref())
            .is_some_and(|c| !c.layers.is_empty())
    }

    /// Which of `pid`'s channels sends with `ssrc` (RTCP sender SSRCs are media SSRCs).
    pub(crate) fn kind_of(&self, pid: ParticipantId, ssrc: u32) -> Option<MediaKind> {
        let src = self.sources.get(&pid)?;
        MediaKind::ALL.into_iter().find(|k| {
            matches!(&src.channels[k.index()],
                Some(c) if c.ssrc == ssrc || c.layers.iter().any(|(s, _)| *s == ssrc))
        })
    }

    pub(crate) fn set_muted(&mut self, pid: ParticipantId, muted: bool) -> bool {
        self.sources
            .get_mut(&pid)
            .map(|s| s.muted = muted)
            .is_some()
    }

    pub(crate) fn is_muted(&self, pid: ParticipantId) -> bool {
        self.sources.get(&pid).is_some_and(|s| s.muted)
    }

    pub(crate) fn set_endpoint(&mut self, pid: ParticipantId, endpoint: Endpoint) -> bool {
        self.sources
            .get_mut(&pid)
            .map(|s| s.endpoint = endpoint)
            .is_some()
    }

    pub(crate) fn endpoint(&self, pid: ParticipantId) -> Endpoint {
        self.sources
            .get(&pid)
            .map_or(Endpoint::Client, |s| s.endpoint)
    }

    /// Calls `f` with the statistics of every declared stream of every participant.
    pub(crate) fn for_each_stream(&self, mut f: impl FnMut(StreamStats)) {
        for src in self.sources.values() {
            for ch in src.channels.iter().flatten() {
                f(ch.stream.stats());
            }
        }
    }

    pub(crate) fn stream_stats(&self, pid: ParticipantId, kind: MediaKind) -> Option<StreamStats> {
        let ch = self.sources.get(&pid)?.channels[kind.index()].as_ref()?;
        Some(ch.stream.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use testkit::rng::Rng;

    const RATE: u32 = 48_000;
    /// 20 ms of 48 kHz audio per packet.
    const TS_STEP: u32 = 960;

    fn feed(s: &mut StreamState, t0: Instant, seq: u16, n: u32, extra_delay_us: u64) {
        let at =
            t0 + Duration::from_millis(20 * u64::from(n)) + Duration::from_micros(extra_delay_us);
        s.update(at, seq, 1000u32.wrapping_add(n * TS_STEP));
    }

    #[test]
    fn in_order_stream_has_no_loss_or_jitter() {
        let t0 = Instant::now();
        let mut s = StreamState::new(RATE);
        for n in 0..100u32 {
            feed(&mut s, t0, 500 + n as u16, n, 0);
        }
        let st = s.stats();
        assert_eq!(st.packets, 100);
        assert_eq!(st.lost, 0);
        assert_eq!(st.reordered, 0);
        assert_eq!(st.highest_seq_ext, 599);
        assert!(st.jitter_ms < 0.001, "{}", st.jitter_ms);
    }

    #[test]
    fn sequence_wraps() {
        let t0 = Instant::now();
        let mut s = StreamState::new(RATE);
        for n in 0..20u32 {
            feed(&mut s, t0, 65530u16.wrapping_add(n as u16), n, 0);
        }
        let st = s.stats();
        assert_eq!(st.highest_seq_ext, 65530 + 19);
        assert_eq!(st.lost, 0);
        assert_eq!(st.reordered, 0);
    }

    #[test]
    fn seeded_loss_is_counted_exactly() {
        let t0 = Instant::now();
        let mut s = StreamState::new(RATE);
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut dropped = 0;
        for n in 0..1000u32 {
            // Keep the first and last so expected spans the whole run.
            if n != 0 && n != 999 && rng.below(10) == 0 {
                dropped += 1;
                continue;
            }
            feed(&mut s, t0, 65000u16.wrapping_add(n as u16), n, 0);
        }
        let st = s.stats();
        assert!(dropped > 50);
        assert_eq!(st.lost, dropped);
        assert_eq!(st.packets, 1000 - dropped);
        assert_eq!(st.highest_seq_ext, 65000 + 999);
    }

    #[test]
    fn reordering_is_counted_and_not_lost() {
        let t0 = Instant::now();
        let mut s = StreamState::new(RATE);
        // Swap every 4th pair: 0 1 3 2 4 5 7 6 ...
        let mut swaps = 0;
        for n in 0..200u32 {
            let seq = if n % 4 == 2 {
                swaps += 1;
                n + 1
            } else if n % 4 == 3 {
                n - 1
            } else {
                n
            };
            feed(&mut s, t0, seq as u16, n, 0);
        }
        let st = s.stats();
        assert_eq!(st.reordered, swaps);
        assert_eq!(st.lost, 0);
        assert_eq!(st.highest_seq_ext, 199);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        // Alternating 0 / 4 ms extra delay: every |D| is 4 ms, so J converges to 4 ms.
        let t0 = Instant::now();
        let mut s = StreamState::new(RATE);
        for n in 0..400u32 {
            feed(&mut s, t0, n as u16, n, if n % 2 == 1 { 4000 } else { 0 });
        }
        let j = s.stats().jitter_ms;
        assert!((j - 4.0).abs() < 0.01, "{j}");

        // Uniform random delay in [0, 9 ms]: E|D| of two uniforms is a third of the range.
        let mut s = StreamState::new(RATE);
        let mut rng = Rng::new(42);
        for n in 0..20_000u32 {
            feed(&mut s, t0, n as u16, n, rng.below(9000));
        }
        let j = s.stats().jitter_ms;
        assert!((j - 3.0).abs() < 0.6, "{j}");
    }

    #[test]
    fn big_jump_needs_confirmation() {
        let t0 = Instant::now();
        let mut s = StreamState::new(RATE);
        for n in 0..10u32 {
            feed(&mut s, t0, n as u16, n, 0);
        }
        // One stray packet far ahead is ignored by the statistics.
        feed(&mut s, t0, 30_000, 10, 0);
        assert_eq!(s.stats().highest_seq_ext, 9);
        assert_eq!(s.stats().lost, 0);
        // Two in a row mean the source restarted: resync there.
        feed(&mut s, t0, 40_000, 11, 0);
        feed(&mut s, t0, 40_001, 12, 0);
        let st = s.stats();
        assert_eq!(st.highest_seq_ext, 40_001);
        assert_eq!(st.lost, 0);
        assert_eq!(st.packets, 13);
    }

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn channels_keep_index_consistent() {
        let mut idx = SourceIndex::with_capacity(4, Hasher::default());
        let mut so = Sorter::with_capacity(4, Hasher::default());
        so.add(1);
        so.add(2);
        let a = v4("10.0.0.1:4000");
        // Audio and video from one address share one index entry.
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 1),
                MediaKind::Audio,
                Remote::Addr(a),
                11,
                RATE
            ),
            Ok(Some(a))
        );
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 1),
                MediaKind::Video,
                Remote::Addr(a),
                12,
                90_000
            ),
            Ok(Some(a))
        );
        assert_eq!(idx.owner(&a), Some((7, 1)));
        // Someone else cannot take the address, nor reuse an SSRC within one participant.
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 2),
                MediaKind::Audio,
                Remote::Addr(a),
                21,
                RATE
            ),
            Err(ChannelConflict::RemoteInUse)
        );
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 1),
                MediaKind::Video,
                Remote::Addr(a),
                11,
                RATE
            ),
            Err(ChannelConflict::SsrcInUse)
        );
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 9),
                MediaKind::Audio,
                Remote::Addr(a),
                11,
                RATE
            ),
            Err(ChannelConflict::NoSuchParticipant)
        );
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 2),
                MediaKind::Audio,
                Remote::Addr(v4("10.0.0.2:1")),
                1,
                0
            ),
            Err(ChannelConflict::ZeroClockRate)
        );
        // Moving audio to a latch keeps the address for video.
        let ip = a.ip();
        assert_eq!(
            so.set_channel(
                &mut idx,
                (7, 1),
                MediaKind::Audio,
                Remote::Latch(ip),
                11,
                RATE
            ),
            Ok(None)
        );
        assert_eq!(idx.owner(&a), Some((7, 1)));
        assert_eq!(idx.pending_latch(ip, 11), Some((7, 1, MediaKind::Audio)));
        // Binding from a port owned by the same participant is fine.
        assert!(so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, a, 11));
        assert_eq!(idx.pending_latch(ip, 11), None);
        // Removing the participant clears everything.
        so.remove(&mut idx, 7, 1);
        assert_eq!(idx.owner(&a), None);
        assert_eq!(idx.address_count(), 0);
        assert_eq!(so.stream_stats(1, MediaKind::Audio), None);
    }

    #[test]
    fn latch_binds_only_matching_ip_and_free_address() {
        let mut idx = SourceIndex::with_capacity(4, Hasher::default());
        let mut so = Sorter::with_capacity(4, Hasher::default());
        so.add(1);
        so.add(2);
        let taken = v4("10.0.0.5:5000");
        so.set_channel(
            &mut idx,
            (7, 2),
            MediaKind::Audio,
            Remote::Addr(taken),
            5,
            RATE,
        )
        .unwrap();
        so.set_channel(
            &mut idx,
            (7, 1),
            MediaKind::Audio,
            Remote::Latch(taken.ip()),
            9,
            RATE,
        )
        .unwrap();
        // Another participant's exact address cannot be latched.
        assert!(!so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, taken, 9));
        // Wrong IP or SSRC does not bind.
        assert!(!so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, v4("10.0.0.6:5001"), 9));
        assert!(!so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, v4("10.0.0.5:5001"), 8));
        assert!(so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, v4("10.0.0.5:5001"), 9));
        assert_eq!(idx.owner(&v4("10.0.0.5:5001")), Some((7, 1)));
    }

    /// A plain-RTP tool: the source is latched by IP and SSRC, media goes to the declared
    /// receive port from the start and stays there after the latch binds.
    #[test]
    fn latch_to_sends_to_the_declared_port() {
        let mut idx = SourceIndex::with_capacity(4, Hasher::default());
        let mut so = Sorter::with_capacity(4, Hasher::default());
        so.add(1);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let to = v4("127.0.0.1:5004");
        let remote = Remote::LatchTo { from: ip, to };
        assert_eq!(
            so.set_channel(&mut idx, (7, 1), MediaKind::Audio, remote, 1111, RATE),
            Ok(Some(to))
        );
        assert_eq!(so.send_addr(1, MediaKind::Audio), Some(to));
        assert_eq!(idx.pending_latch(ip, 1111), Some((7, 1, MediaKind::Audio)));
        // The receive port is not a source: nothing from it is accepted.
        assert_eq!(idx.owner(&to), None);
        let src = v4("127.0.0.1:40123");
        assert!(!so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, src, 2222));
        assert!(so.bind_latch(&mut idx, (7, 1), MediaKind::Audio, src, 1111));
        assert_eq!(idx.owner(&src), Some((7, 1)));
        assert_eq!(so.send_addr(1, MediaKind::Audio), Some(to));
        so.remove(&mut idx, 7, 1);
        assert_eq!(idx.address_count(), 0);
        assert_eq!(idx.pending_latch(ip, 1111), None);
    }
}
