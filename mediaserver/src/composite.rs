//! The compositor service of a media server (issue 14): one thread that runs every
//! `composite` conference's [`Compositor`] at its frame clock, decoding and encoding on a
//! rayon pool of its own, so no packet worker ever waits on a codec.
//!
//! Each composite conference's path holds a [`Link`]: at its tick (on the worker) it hands
//! the units its depacketizers completed to the service and takes back the frames made
//! since, all without blocking (bounded channels; what does not fit is dropped and
//! counted, and a sender then sends a keyframe).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codecs::payload::keyframe::VideoCodec;
use mesh::ParticipantId;
use rayon::prelude::*;
use transcoder::composite::{CompositeVideo, Unit};
use transcoder::compositor::{output_settings, Compositor};
use transcoder::layout::Layout;

use crate::recording::{RecMsg, RecordingStats};

/// The composite every receiver gets: 1280x720 H.264.
pub const WIDTH: usize = 1280;
pub const HEIGHT: usize = 720;
const BITRATE_BPS: u32 = 1_500_000;
/// Messages waiting for the service, and frames waiting for a path, at most.
const QUEUE: usize = 1024;
const BACK_QUEUE: usize = 64;

enum ToService {
    Open {
        key: u64,
        back: SyncSender<FromService>,
        /// False for a recording's own composite: its frames go to the recorder alone.
        deliver: bool,
        output: Output,
    },
    Record {
        key: u64,
        to: Option<(SyncSender<RecMsg>, Arc<RecordingStats>)>,
    },
    Unit {
        key: u64,
        unit: Unit,
    },
    Gone {
        key: u64,
        sender: ParticipantId,
    },
    Keyframe {
        key: u64,
    },
    Layout {
        key: u64,
        layout: Layout,
    },
    Bitrate {
        key: u64,
        bps: u32,
    },
    Speaker {
        key: u64,
        participant: Option<ParticipantId>,
    },
    Close {
        key: u64,
    },
}

/// What a compositor makes.
#[derive(Clone, Copy, Debug)]
struct Output {
    codec: VideoCodec,
    width: usize,
    height: usize,
    bitrate_bps: u32,
}

/// The conferences' composite: 1280x720 H.264.
const COMPOSITE: Output = Output {
    codec: VideoCodec::H264,
    width: WIDTH,
    height: HEIGHT,
    bitrate_bps: BITRATE_BPS,
};

/// A transcoded stream (one sender into another codec): 640x360 at 800 kbit/s.
pub const TRANSCODE_WIDTH: usize = 640;
pub const TRANSCODE_HEIGHT: usize = 360;
const TRANSCODE_BPS: u32 = 800_000;

enum FromService {
    Frame {
        data: Vec<u8>,
        timestamp: u32,
        /// When the senders' pictures new in it arrived.
        inputs: Vec<Instant>,
    },
    AskKeyframe(ParticipantId),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub frames: AtomicU64,
    /// Units or frames a full queue refused.
    pub dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    /// From a sender's picture arriving to the first composite that shows it being sent.
    pub latency: LatencyHistogram,
}

/// Upper bounds of [`LatencyHistogram`]'s buckets, in milliseconds.
pub const LATENCY_BOUNDS_MS: [u64; 12] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 150, 250];

/// A latency histogram of plain atomics: the packet workers observe it at their tick (a
/// few times per composite frame) and `/metrics` reads it, with no lock between them
/// (prometheus-client's histogram takes a mutex per observation).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// One count per bound, then the overflow.
    counts: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // Prometheus' `le`: a bucket holds what is at most its bound (10.5 ms is not <= 10).
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| us <= b * 1000)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts by upper bound in seconds, not
    /// cumulative; the last bound is infinite), as Prometheus' encoder takes them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_MS
            .iter()
            .map(|&b| b as f64 / 1000.0)
            .chain([f64::INFINITY])
            .zip(&self.counts)
            .map(|(b, c)| (b, c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }
}

/// The handle conferences open their links with.
#[derive(Clone)]
pub struct Service {
    tx: SyncSender<ToService>,
    next_key: Arc<AtomicU64>,
    pub stats: Arc<ServiceStats>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// Starts the service thread with a pool of `threads` codec threads.
    pub fn start(threads: usize) -> std::io::Result<Service> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("compositor-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(ServiceStats::default());
        let s = stats.clone();
        std::thread::Builder::new()
            .name("compositor".into())
            .spawn(move || run(rx, Arc::new(pool), &s))?;
        Ok(Service {
            tx,
            next_key: Arc::new(AtomicU64::new(1)),
            stats,
        })
    }

    /// A new composite conference: the link for its path (on the worker) and the control
    /// for its room (layout, speaker).
    pub fn open(&self) -> (Link, Control) {
        self.open_with(true, COMPOSITE)
    }

    /// One sender's video transcoded into `codec` (for receivers that cannot decode the
    /// sender's): a one-tile composite encoded once for all of them. Called on a packet
    /// worker, so it never waits: `None` when the service's queue is full.
    pub fn try_open_transcoder(&self, codec: VideoCodec) -> Option<Link> {
        self.try_open(Output {
            codec,
            width: TRANSCODE_WIDTH,
            height: TRANSCODE_HEIGHT,
            bitrate_bps: TRANSCODE_BPS,
        })
    }

    /// A conference's composite (1280x720 H.264), opened from a packet worker: never
    /// waits; `None` when the service's queue is full.
    pub fn try_open_composite(&self) -> Option<Link> {
        self.try_open(COMPOSITE)
    }

    fn try_open(&self, output: Output) -> Option<Link> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (back, rx) = mpsc::sync_channel(BACK_QUEUE);
        let open = ToService::Open {
            key,
            back,
            deliver: true,
            output,
        };
        self.tx.try_send(open).ok()?;
        Some(Link {
            key,
            tx: self.tx.clone(),
            rx,
            stats: self.stats.clone(),
        })
    }

    pub fn open_for_recording(&self) -> (Link, Control) {
        self.open_with(false, COMPOSITE)
    }

    fn open_with(&self, deliver: bool, output: Output) -> (Link, Control) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (back, rx) = mpsc::sync_channel(BACK_QUEUE);
        // Opening waits for room: it happens once per conference, on the control path.
        let _ = self.tx.send(ToService::Open {
            key,
            back,
            deliver,
            output,
        });
        let link = Link {
            key,
            tx: self.tx.clone(),
            rx,
            stats: self.stats.clone(),
        };
        let control = Control {
            key,
            tx: self.tx.clone(),
        };
        (link, control)
    }
}

/// A composite conference's layout and speaker, set from the control plane.
#[derive(Clone)]
pub struct Control {
    key: u64,
    tx: SyncSender<ToService>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("key", &self.key).finish()
    }
}

impl Control {
    /// From the next frame on.
    pub fn set_layout(&self, layout: Layout) {
        self.send(ToService::Layout {
            key: self.key,
            layout,
        });
    }

    /// The dominant speaker: the large tile of the speaker layout.
    pub fn set_speaker(&self, participant: Option<ParticipantId>) {
        self.send(ToService::Speaker {
            key: self.key,
            participant,
        });
    }

    /// Where the composite's frames also go (a recording), from its next keyframe on;
    /// `None` stops.
    pub fn set_recording(&self, to: Option<(SyncSender<RecMsg>, Arc<RecordingStats>)>) {
        self.send(ToService::Record { key: self.key, to });
    }

    /// Never blocks the control plane: a service that far behind loses the change.
    fn send(&self, msg: ToService) {
        if self.tx.try_send(msg).is_err() {
            tracing::warn!("compositor service queue full: a layout or speaker change was lost");
        }
    }
}

/// One conference's end of the service.
pub struct Link {
    key: u64,
    tx: SyncSender<ToService>,
    rx: Receiver<FromService>,
    stats: Arc<ServiceStats>,
}

impl Link {
    fn send(&self, msg: ToService) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(msg) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// At the path's tick (`now`): units and requests to the service, frames back into
    /// `video` (sent at this tick, so their latency is counted here). Never blocks.
    pub fn exchange(&self, now: Instant, video: &mut CompositeVideo) {
        let key = self.key;
        for unit in video.take_units() {
            self.send(ToService::Unit { key, unit });
        }
        for sender in video.take_gone() {
            self.send(ToService::Gone { key, sender });
        }
        if video.take_keyframe_wanted() {
            self.send(ToService::Keyframe { key });
        }
        if let Some(bps) = video.take_bitrate() {
            self.send(ToService::Bitrate { key, bps });
        }
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                FromService::Frame {
                    data,
                    timestamp,
                    inputs,
                } => {
                    video.deliver(&data, timestamp);
                    for t in inputs {
                        self.stats.latency.observe(now.saturating_duration_since(t));
                    }
                }
                FromService::AskKeyframe(sender) => video.ask_keyframe(sender),
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.tx.try_send(ToService::Close { key: self.key });
    }
}

struct Conf {
    comp: Compositor,
    back: SyncSender<FromService>,
    deliver: bool,
    record: Option<(SyncSender<RecMsg>, Arc<RecordingStats>)>,
}

fn run(rx: Receiver<ToService>, pool: Arc<rayon::ThreadPool>, stats: &ServiceStats) {
    let epoch = Instant::now();
    let mut confs: HashMap<u64, Conf> = HashMap::new();
    loop {
        let next = confs.values().filter_map(|c| c.comp.poll_timeout()).min();
        let msg = match next {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(m) => handle(m, &mut confs, &pool),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let mut due: Vec<&mut Conf> = confs
            .values_mut()
            .filter(|c| c.comp.poll_timeout().is_none_or(|t| t <= now))
            .collect();
        // The due conferences' frames in parallel on the pool (each also decodes its
        // senders in parallel there), so composites use every codec thread.
        let made: Vec<_> = pool.install(|| {
            due.par_iter_mut()
                .map(|c| {
                    let errors = c.comp.stats.decode_errors;
                    // The frame's time on the frame clock, not the wake-up: a
                    // recording's frames are evenly spaced as a player expects.
                    let at = c.comp.poll_timeout().unwrap_or(now);
                    (errors, at, c.comp.poll(now))
                })
                .collect()
        });
        for (c, (errors, at, frame)) in due.into_iter().zip(made) {
            match frame {
                Ok(Some(f)) => {
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                    let mut data = Some(f.data);
                    if let Some((to, rstats)) = &c.record {
                        // A copy only when the members get the frame too.
                        let d = if c.deliver { data.clone() } else { data.take() };
                        if let Some(d) = d {
                            let msg = RecMsg::Video {
                                at,
                                data: d,
                                keyframe: f.keyframe,
                            };
                            crate::recording::send(to, msg, rstats);
                        }
                    }
                    if let Some(data) = data.filter(|_| c.deliver) {
                        let ticks = now.duration_since(epoch).as_micros() * 9 / 100;
                        let frame = FromService::Frame {
                            data,
                            timestamp: ticks as u32,
                            inputs: c.comp.frame_inputs().to_vec(),
                        };
                        if c.back.try_send(frame).is_err() {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "compositor: frame failed"),
            }
            stats
                .decode_errors
                .fetch_add(c.comp.stats.decode_errors - errors, Ordering::Relaxed);
            for s in c.comp.keyframe_requests() {
                let _ = c.back.try_send(FromService::AskKeyframe(s));
            }
        }
    }
}

fn handle(msg: ToService, confs: &mut HashMap<u64, Conf>, pool: &Arc<rayon::ThreadPool>) {
    match msg {
        ToService::Open {
            key,
            back,
            deliver,
            output,
        } => {
            let settings = output_settings(output.width, output.height, output.bitrate_bps);
            match Compositor::new(output.codec, settings, Layout::Grid, pool.clone()) {
                Ok(comp) => {
                    confs.insert(
                        key,
                        Conf {
                            comp,
                            back,
                            deliver,
                            record: None,
                        },
                    );
                }
                Err(e) => tracing::warn!(error = %e, "compositor: cannot open"),
            }
        }
        ToService::Unit { key, unit } => {
            if let Some(c) = confs.get_mut(&key) {
                if c.comp.add_sender(unit.sender, unit.codec).is_ok() {
                    let _ = c.comp.push(
                        unit.sender,
                        unit.frame.data,
                        unit.frame.keyframe,
                        unit.arrived,
                    );
                }
            }
        }
        ToService::Gone { key, sender } => {
            if let Some(c) = confs.get_mut(&key) {
                c.comp.remove_sender(sender);
            }
        }
        ToService::Keyframe { key } => {
            if let Some(c) = confs.get_mut(&key) {
                c.comp.request_keyframe();
            }
        }
        ToService::Layout { key, layout } => {
            if let Some(c) = confs.get_mut(&key) {
                c.comp.set_layout(layout);
            }
        }
        ToService::Bitrate { key, bps } => {
            if let Some(c) = confs.get_mut(&key) {
                if let Err(e) = c.comp.set_bitrate(bps) {
                    tracing::warn!(error = %e, bps, "compositor: bitrate refused");
                }
            }
        }
        ToService::Speaker { key, participant } => {
            if let Some(c) = confs.get_mut(&key) {
                c.comp.set_speaker(participant);
            }
        }
        ToService::Record { key, to } => {
            if let Some(c) = confs.get_mut(&key) {
                // The recording starts on a keyframe: make the next frame one.
                if to.is_some() {
                    c.comp.request_keyframe();
                }
                c.record = to;
            }
        }
        ToService::Close { key } => {
            confs.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_count_each_observation_once_by_its_upper_bound() {
        let h = LatencyHistogram::default();
        for us in [3_000, 10_000, 10_500, 95_000, 400_000] {
            h.observe(Duration::from_micros(us));
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 5);
        assert!((sum - 0.5185).abs() < 1e-9, "{sum}");
        let at = |le: f64| buckets.iter().find(|b| b.0 == le).map(|b| b.1);
        assert_eq!(at(0.01), Some(2), "3 and 10 ms");
        assert_eq!(at(0.02), Some(1), "10.5 ms");
        assert_eq!(at(0.1), Some(1), "95 ms");
        assert_eq!(at(f64::INFINITY), Some(1), "400 ms");
        assert_eq!(buckets.len(), LATENCY_BOUNDS_MS.len() + 1);
    }
}
