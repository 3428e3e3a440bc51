//! What the receivers count, and how counts become the figures of one step.
//!
//! Every receiving participant keeps, per source stream, a sliding window of sequences seen
//! (duplicates, reordering). Per stream and overall, latency goes into HDR histograms in
//! microseconds. Loss is exact: the senders say how many packets each stream sent, and in
//! reflect mode every other member of the conference should get each one.

use crate::wire::Kind;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Histogram range: 1 µs to 60 s.
const HIST_MAX_US: u64 = 60_000_000;
/// Sequences a receiver remembers per source stream for duplicate detection.
const WINDOW: u64 = 1024;
const WINDOW_WORDS: usize = (WINDOW / 64) as usize;

/// How streams are numbered: conference-major, then sender, then kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub conferences: u32,
    pub participants: u32,
    pub senders: u32,
    /// 1 (audio) or 2 (audio and video).
    pub kinds: u32,
}

impl Layout {
    pub fn streams_per_conf(&self) -> u32 {
        self.senders * self.kinds
    }

    pub fn total_streams(&self) -> usize {
        (self.conferences * self.streams_per_conf()) as usize
    }

    pub fn stream(&self, conf: u32, sender: u32, kind: Kind) -> u32 {
        (conf * self.senders + sender) * self.kinds + kind_index(kind)
    }

    /// (conference, sender index, kind) of a stream.
    pub fn decode(&self, stream: u32) -> (u32, u32, Kind) {
        let kind = if self.kinds == 2 && stream % 2 == 1 {
            Kind::Video
        } else {
            Kind::Audio
        };
        let s = stream / self.kinds;
        (s / self.senders, s % self.senders, kind)
    }

    /// Every stream goes to every other member of its conference (reflect, no echo).
    pub fn receivers_per_stream(&self) -> u64 {
        u64::from(self.participants - 1)
    }
}

fn kind_index(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => 0,
        Kind::Video => 1,
    }
}

fn new_hist<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    Histogram::new_with_bounds(1, HIST_MAX_US, sigfig).expect("valid histogram bounds")
}

/// What happened to one arriving packet, from one receiver's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    New,
    /// New, but after a higher sequence of the same stream.
    Reordered,
    Duplicate,
}

/// One receiver's memory of one source stream.
#[derive(Clone, Debug, Default)]
pub struct PairState {
    highest: Option<u64>,
    seen: [u64; WINDOW_WORDS],
}

impl PairState {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn test_and_set(&mut self, seq: u64) -> bool {
        let (w, b) = Self::bit(seq);
        let was = self.seen[w] & b != 0;
        self.seen[w] |= b;
        was
    }

    pub fn record(&mut self, seq: u64) -> Arrival {
        match self.highest {
            Some(h) if seq <= h => {
                if h - seq >= WINDOW {
                    // Too old to tell; count it as a late newcomer.
                    Arrival::Reordered
                } else if self.test_and_set(seq) {
                    Arrival::Duplicate
                } else {
                    Arrival::Reordered
                }
            }
            prev => {
                let from = prev.map_or(seq, |h| h + 1);
                if seq - from >= WINDOW {
                    self.seen = [0; WINDOW_WORDS];
                } else {
                    for s in from..=seq {
                        let (w, b) = Self::bit(s);
                        self.seen[w] &= !b;
                    }
                }
                self.highest = Some(seq);
                self.test_and_set(seq);
                Arrival::New
            }
        }
    }
}

/// One source stream as seen by all receivers of one receiver thread in one step.
#[derive(Clone, Debug, Default)]
pub struct StreamRx {
    /// Distinct packets (summed over receivers).
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub late: u64,
    pub latency_us: Option<Histogram<u32>>,
}

impl StreamRx {
    fn merge(&mut self, o: &StreamRx) {
        self.received += o.received;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.late += o.late;
        if let Some(h) = &o.latency_us {
            let mine = self.latency_us.get_or_insert_with(|| new_hist(2));
            let _ = mine.add(h);
        }
    }
}

/// Everything the receivers counted in one step.
#[derive(Clone, Debug)]
pub struct RxStep {
    pub streams: Vec<StreamRx>,
    /// Latency of every distinct packet, µs.
    pub latency_us: Histogram<u64>,
    /// The same, by the media server the receiver joined (index into the run's server
    /// list): with a conference spread over linked servers, the relay hop's share shows.
    pub by_server: Vec<Histogram<u64>>,
    /// Probes of a stream from another conference: the server crossed conferences.
    pub misrouted: u64,
    /// A participant's own stream came back to it.
    pub echoed: u64,
    /// Probes of another step (stragglers after a step closed).
    pub stray: u64,
    /// Datagrams that were not loadgen probes.
    pub foreign: u64,
}

impl RxStep {
    pub fn new(layout: &Layout) -> RxStep {
        RxStep {
            streams: vec![StreamRx::default(); layout.total_streams()],
            latency_us: new_hist(3),
            by_server: Vec::new(),
            misrouted: 0,
            echoed: 0,
            stray: 0,
            foreign: 0,
        }
    }

    /// Accounts a packet of `stream` that arrived `latency_ns` after it was sent, at a
    /// receiver of media server `server`.
    pub fn record(
        &mut self,
        stream: u32,
        server: u16,
        arrival: Arrival,
        latency_ns: u64,
        late_ns: u64,
    ) {
        let Some(s) = self.streams.get_mut(stream as usize) else {
            self.foreign += 1;
            return;
        };
        match arrival {
            Arrival::Duplicate => {
                s.duplicates += 1;
                return;
            }
            Arrival::Reordered => s.reordered += 1,
            Arrival::New => {}
        }
        s.received += 1;
        if latency_ns > late_ns {
            s.late += 1;
        }
        let us = (latency_ns / 1000).max(1);
        s.latency_us
            .get_or_insert_with(|| new_hist(2))
            .saturating_record(us);
        self.latency_us.saturating_record(us);
        let server = usize::from(server);
        if self.by_server.len() <= server {
            // Once per server and step: the servers are known before the first packet.
            self.by_server.resize_with(server + 1, || new_hist(3));
        }
        self.by_server[server].saturating_record(us);
    }

    pub fn merge(&mut self, o: &RxStep) {
        for (a, b) in self.streams.iter_mut().zip(&o.streams) {
            a.merge(b);
        }
        let _ = self.latency_us.add(&o.latency_us);
        if self.by_server.len() < o.by_server.len() {
            self.by_server
                .resize_with(o.by_server.len(), || new_hist(3));
        }
        for (a, b) in self.by_server.iter_mut().zip(&o.by_server) {
            let _ = a.add(b);
        }
        self.misrouted += o.misrouted;
        self.echoed += o.echoed;
        self.stray += o.stray;
        self.foreign += o.foreign;
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of<T: hdrhistogram::Counter>(h: &Histogram<T>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The figures of one stream in one step.
#[derive(Clone, Debug, Serialize)]
pub struct StreamResult {
    pub stream: u32,
    pub conference: u32,
    pub sender: u32,
    pub kind: Kind,
    pub sent: u64,
    /// sent x receivers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub late: u64,
    pub loss_pct: f64,
    #[serde(flatten)]
    pub latency: Latency,
}

/// Percentage, 0 when there is nothing to divide by.
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Per-stream results from the senders' counts and the merged receiver counts.
pub fn stream_results(layout: &Layout, sent: &[u64], rx: &RxStep) -> Vec<StreamResult> {
    rx.streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (conference, sender, kind) = layout.decode(i as u32);
            let sent = sent.get(i).copied().unwrap_or(0);
            let expected = sent * layout.receivers_per_stream();
            let lost = expected.saturating_sub(s.received);
            StreamResult {
                stream: i as u32,
                conference,
                sender,
                kind,
                sent,
                expected,
                received: s.received,
                lost,
                duplicated: s.duplicates,
                reordered: s.reordered,
                late: s.late,
                loss_pct: pct(lost, expected),
                latency: s.latency_us.as_ref().map(Latency::of).unwrap_or_default(),
            }
        })
        .collect()
}

/// One media kind's delivery in one step, so video is reported apart from audio.
#[derive(Clone, Debug, Serialize)]
pub struct KindResult {
    pub kind: Kind,
    pub sent: u64,
    /// sent x receivers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub loss_pct: f64,
    #[serde(flatten)]
    pub latency: Latency,
}

/// Totals per kind of the streams that sent anything (audio first).
pub fn kind_results(layout: &Layout, streams: &[StreamResult], rx: &RxStep) -> Vec<KindResult> {
    [Kind::Audio, Kind::Video]
        .into_iter()
        .filter_map(|kind| {
            let of_kind = || streams.iter().filter(move |s| s.kind == kind);
            let sent: u64 = of_kind().map(|s| s.sent).sum();
            if sent == 0 {
                return None;
            }
            let mut hist = new_hist::<u32>(2);
            for s in of_kind() {
                if let Some(h) = rx
                    .streams
                    .get(s.stream as usize)
                    .and_then(|r| r.latency_us.as_ref())
                {
                    let _ = hist.add(h);
                }
            }
            let expected = sent * layout.receivers_per_stream();
            let received: u64 = of_kind().map(|s| s.received).sum();
            let lost: u64 = of_kind().map(|s| s.lost).sum();
            Some(KindResult {
                kind,
                sent,
                expected,
                received,
                lost,
                late: of_kind().map(|s| s.late).sum(),
                loss_pct: pct(lost, expected),
                latency: Latency::of(&hist),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let l = Layout {
            conferences: 3,
            participants: 5,
            senders: 2,
            kinds: 2,
        };
        assert_eq!(l.total_streams(), 12);
        for c in 0..3 {
            for s in 0..2 {
                for k in [Kind::Audio, Kind::Video] {
                    assert_eq!(l.decode(l.stream(c, s, k)), (c, s, k));
                }
            }
        }
        let a = Layout { kinds: 1, ..l };
        assert_eq!(a.decode(a.stream(2, 1, Kind::Audio)), (2, 1, Kind::Audio));
    }

    #[test]
    fn window_finds_duplicates_and_reordering() {
        let mut p = PairState::default();
        assert_eq!(p.record(0), Arrival::New);
        assert_eq!(p.record(2), Arrival::New);
        assert_eq!(p.record(1), Arrival::Reordered);
        assert_eq!(p.record(1), Arrival::Duplicate);
        assert_eq!(p.record(2), Arrival::Duplicate);
        // A jump past the window forgets everything older.
        assert_eq!(p.record(5000), Arrival::New);
        assert_eq!(p.record(5000 - WINDOW + 1), Arrival::Reordered);
        assert_eq!(p.record(10), Arrival::Reordered, "too old to tell");
        // Slots reused by newer sequences are cleared as the window slides.
        assert_eq!(p.record(5000 + WINDOW), Arrival::New);
        assert_eq!(p.record(5001), Arrival::Reordered);
    }

    #[test]
    fn results_count_loss_exactly() {
        let l = Layout {
            conferences: 1,
            participants: 3,
            senders: 1,
            kinds: 1,
        };
        let mut rx = RxStep::new(&l);
        for seq in 0..10u64 {
            rx.record(0, 0, Arrival::New, 50_000 + seq * 1000, 20_000_000);
        }
        rx.record(0, 0, Arrival::Duplicate, 1, 20_000_000);
        rx.record(0, 0, Arrival::New, 30_000_000, 20_000_000);
        let mut other = RxStep::new(&l);
        other.record(0, 1, Arrival::Reordered, 60_000, 20_000_000);
        rx.merge(&other);
        let r = &stream_results(&l, &[10], &rx)[0];
        assert_eq!((r.expected, r.received, r.lost), (20, 12, 8));
        assert_eq!((r.duplicated, r.reordered, r.late), (1, 1, 1));
        assert!((r.loss_pct - 40.0).abs() < 1e-9);
        assert!(r.latency.p50_ms > 0.04 && r.latency.p50_ms < 0.07);
        assert!(r.latency.max_ms >= 29.0);
        assert_eq!(rx.latency_us.len(), 12);
        // By the server each receiver joined: the other thread's receiver was on server 1.
        let by: Vec<u64> = rx.by_server.iter().map(Histogram::len).collect();
        assert_eq!(by, [11, 1]);
    }

    #[test]
    fn kinds_are_counted_apart() {
        let l = Layout {
            conferences: 1,
            participants: 2,
            senders: 2,
            kinds: 2,
        };
        let mut rx = RxStep::new(&l);
        let video = l.stream(0, 1, Kind::Video);
        for _ in 0..4 {
            rx.record(video, 0, Arrival::New, 2_000_000, 20_000_000);
        }
        // Sender 0 sends video only; sender 1 sends 5 video packets, one of them lost.
        let mut sent = vec![0u64; l.total_streams()];
        sent[l.stream(0, 0, Kind::Video) as usize] = 0;
        sent[video as usize] = 5;
        let streams = stream_results(&l, &sent, &rx);
        let k = kind_results(&l, &streams, &rx);
        assert_eq!(k.len(), 1, "no audio was sent: {k:?}");
        assert_eq!(k[0].kind, Kind::Video);
        assert_eq!(
            (k[0].sent, k[0].expected, k[0].received, k[0].lost),
            (5, 5, 4, 1)
        );
        assert!((k[0].loss_pct - 20.0).abs() < 1e-9);
        assert!(k[0].latency.p99_ms > 1.9 && k[0].latency.p99_ms < 2.1);
    }
}
