//! Conference recording (issue 14): one thread per recording encodes the all-party mix to
//! Opus and muxes it with the composite's H.264 frames (Matroska), or alone (Ogg), into the
//! server's `--recordings` directory, next to a sidecar JSON of participants and speaking
//! events.
//!
//! Both streams are timed on the server's one clock: the mix by its mix time, the composite
//! by the compositor's frame time. A video recording starts at the first composite keyframe
//! (audio before it is dropped), so the file starts on a keyframe. The packet worker and the
//! compositor only `try_send` here; a recording that falls behind loses frames (counted)
//! rather than slowing either.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use codecs::mux::{h264_parameter_sets, Container, MuxSettings, Muxer, VideoTrack};
use codecs::opus::FRAME_SAMPLES;
use mesh::ParticipantId;
use serde::Serialize;

/// What the recording thread is handed. Bounded: about 10 s of audio and video.
const QUEUE: usize = 1024;
/// Audio kept while a video recording waits for its first keyframe.
const WAIT_FOR_KEYFRAME: Duration = Duration::from_secs(3);
/// The sidecar is rewritten at most this often while recording (and at the end).
const SIDECAR_EVERY: Duration = Duration::from_secs(1);

/// One input of a recording.
#[derive(Debug)]
pub enum RecMsg {
    /// All-party mix, 48 kHz mono, whose first sample was mixed at `at`.
    Audio {
        at: Instant,
        pcm: Vec<i16>,
    },
    /// A composite access unit (Annex B) made at `at`.
    Video {
        at: Instant,
        data: Vec<u8>,
        keyframe: bool,
    },
    Joined {
        at: Instant,
        participant: ParticipantId,
        name: String,
    },
    Left {
        at: Instant,
        participant: ParticipantId,
    },
    Speaking {
        at: Instant,
        participant: ParticipantId,
        on: bool,
    },
    Stop,
}

/// Counters of every recording on this server, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecordingStats {
    pub started: AtomicU64,
    /// Inputs a full recording queue refused.
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

/// A running recording, as the control plane holds it.
#[derive(Debug)]
pub struct Recording {
    tx: SyncSender<RecMsg>,
    pub file: PathBuf,
    pub started: SystemTime,
    stats: Arc<RecordingStats>,
}

impl Recording {
    /// Starts the thread of a recording of `conference` in `dir`: Matroska with video,
    /// Ogg without. The file appears at the first keyframe (video) or mix (audio).
    pub fn start(
        dir: &Path,
        conference: &str,
        video: Option<(usize, usize)>,
        stats: Arc<RecordingStats>,
    ) -> std::io::Result<Recording> {
        std::fs::create_dir_all(dir)?;
        let started = SystemTime::now();
        let ms = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let container = if video.is_some() {
            Container::Matroska
        } else {
            Container::Ogg
        };
        let safe: String = conference
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = dir.join(format!("{safe}-{ms}.{}", container.extension()));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let job = Job {
            file: file.clone(),
            sidecar: Sidecar {
                conference: conference.to_owned(),
                file: file.display().to_string(),
                container: container.extension(),
                started_unix_ms: ms as u64,
                ..Sidecar::default()
            },
            video,
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || job.run(rx))?;
        stats.started.fetch_add(1, Ordering::Relaxed);
        Ok(Recording {
            tx,
            file,
            started,
            stats,
        })
    }

    /// A sender for the packet worker or the compositor.
    pub fn input(&self) -> SyncSender<RecMsg> {
        self.tx.clone()
    }

    /// Hands `msg` over without waiting; a full queue drops it (counted).
    pub fn send(&self, msg: RecMsg) {
        send(&self.tx, msg, &self.stats);
    }

    /// The sidecar's path: the recording's, with `.json`.
    pub fn sidecar(&self) -> PathBuf {
        self.file.with_extension("json")
    }

    /// Ends the recording: the thread writes the trailer and the sidecar and exits.
    pub fn stop(self) -> Duration {
        self.send(RecMsg::Stop);
        self.started.elapsed().unwrap_or_default()
    }
}

/// `try_send`, counting what a full queue refused.
pub fn send(tx: &SyncSender<RecMsg>, msg: RecMsg, stats: &RecordingStats) {
    if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(msg) {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sidecar JSON: who was there and who spoke when, in ms of the recording's media
/// time (0 is the file's first frame; negative: before the file started).
#[derive(Debug, Default, Serialize)]
struct Sidecar {
    conference: String,
    file: String,
    container: &'static str,
    started_unix_ms: u64,
    /// Media time written so far.
    duration_ms: i64,
    /// Whether the recording was stopped (false in a file a crash left behind).
    complete: bool,
    participants: Vec<Participant>,
    speaking: Vec<Speaking>,
}

#[derive(Debug, Serialize)]
struct Participant {
    id: ParticipantId,
    name: String,
    joined_ms: i64,
    left_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Speaking {
    participant: ParticipantId,
    on: bool,
    at_ms: i64,
}

struct Job {
    file: PathBuf,
    sidecar: Sidecar,
    video: Option<(usize, usize)>,
    stats: Arc<RecordingStats>,
}

/// The thread's state: the file once it exists and the clock it is timed by.
struct Writer {
    mux: Option<Muxer>,
    /// The instant of media time 0.
    zero: Option<Instant>,
    opus: Option<codecs::opus::Encoder>,
    /// Mix samples not yet encoded, and the instant of the first.
    pcm: Vec<i16>,
    pcm_at: Option<Instant>,
    /// Mixes that came before the first keyframe.
    early: VecDeque<(Instant, Vec<i16>)>,
    last_us: i64,
}

impl Job {
    fn run(mut self, rx: Receiver<RecMsg>) {
        let mut w = Writer {
            mux: None,
            zero: None,
            opus: codecs::opus::Encoder::new().ok(),
            pcm: Vec::with_capacity(FRAME_SAMPLES * 4),
            pcm_at: None,
            early: VecDeque::new(),
            last_us: 0,
        };
        // Events before media time 0 are kept as instants and converted when written.
        let mut events: Vec<(Instant, RecMsg)> = Vec::new();
        let mut sidecar_at = Instant::now();
        loop {
            let msg = match rx.recv_timeout(SIDECAR_EVERY) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                // Every sender gone (the room ended without a stop): finish as a stop.
                Err(RecvTimeoutError::Disconnected) => Some(RecMsg::Stop),
            };
            match msg {
                Some(RecMsg::Audio { at, pcm }) => self.audio(&mut w, at, pcm),
                Some(RecMsg::Video { at, data, keyframe }) => {
                    self.video_frame(&mut w, at, &data, keyframe)
                }
                Some(RecMsg::Stop) => break,
                Some(ev) => {
                    let at = match &ev {
                        RecMsg::Joined { at, .. }
                        | RecMsg::Left { at, .. }
                        | RecMsg::Speaking { at, .. } => *at,
                        _ => Instant::now(),
                    };
                    events.push((at, ev));
                }
                None => {}
            }
            if sidecar_at.elapsed() >= SIDECAR_EVERY {
                sidecar_at = Instant::now();
                self.flush_events(&w, &mut events);
                self.write_sidecar(&w);
            }
        }
        if let Some(m) = &mut w.mux {
            if let Err(e) = m.finish() {
                self.error("finish", &e);
            }
        }
        self.flush_events(&w, &mut events);
        self.sidecar.complete = true;
        self.write_sidecar(&w);
        tracing::info!(file = %self.file.display(), ms = w.last_us / 1000, "recording ended");
    }

    fn error(&self, op: &str, e: &dyn std::fmt::Display) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(file = %self.file.display(), op, error = %e, "recording");
    }

    fn audio(&mut self, w: &mut Writer, at: Instant, pcm: Vec<i16>) {
        if w.mux.is_none() {
            if self.video.is_some() {
                // Until the first keyframe, a few seconds: then the composite is not
                // coming, and the recording goes on with audio alone (still Matroska).
                w.early.push_back((at, pcm));
                let first = w.early.front().map_or(at, |(t, _)| *t);
                if at.saturating_duration_since(first) < WAIT_FOR_KEYFRAME {
                    return;
                }
                tracing::warn!(file = %self.file.display(), "no composite keyframe: recording audio alone");
                self.video = None;
                self.open(w, first, None);
                for (t, pcm) in std::mem::take(&mut w.early) {
                    self.encode(w, t, &pcm);
                }
                return;
            }
            self.open(w, at, None);
        }
        self.encode(w, at, &pcm);
    }

    fn video_frame(&mut self, w: &mut Writer, at: Instant, data: &[u8], keyframe: bool) {
        if w.mux.is_none() {
            let sets = h264_parameter_sets(data);
            if !keyframe || sets.is_empty() {
                return;
            }
            self.open(w, at, Some(sets));
            for (t, pcm) in std::mem::take(&mut w.early) {
                // Trim what was mixed before media time 0.
                let end = t + Duration::from_micros(pcm.len() as u64 * 1_000_000 / 48_000);
                if end <= at {
                    continue;
                }
                let skip = (at.saturating_duration_since(t).as_micros() * 48 / 1000) as usize;
                let from = t + Duration::from_micros(skip as u64 * 1000 / 48);
                self.encode(w, from, &pcm[skip.min(pcm.len())..]);
            }
        }
        let Some(zero) = w.zero else { return };
        let us = at.saturating_duration_since(zero).as_micros() as i64;
        if let Some(m) = &mut w.mux {
            if let Err(e) = m.write_video(us, data, keyframe) {
                self.error("video", &e);
            }
        }
        w.last_us = w.last_us.max(us);
    }

    /// Creates the file, with media time 0 at `at`.
    fn open(&mut self, w: &mut Writer, at: Instant, sets: Option<Vec<u8>>) {
        let settings = MuxSettings {
            // The extension chosen at the start decides (a video recording whose
            // composite never came stays Matroska, with audio alone).
            container: if self.file.extension().is_some_and(|e| e == "mkv") {
                Container::Matroska
            } else {
                Container::Ogg
            },
            channels: 1,
            pre_skip: 312,
            video: sets.zip(self.video).map(|(s, (width, height))| VideoTrack {
                width,
                height,
                parameter_sets: s,
            }),
        };
        match Muxer::create(&self.file, &settings) {
            Ok(m) => {
                w.mux = Some(m);
                w.zero = Some(at);
                tracing::info!(file = %self.file.display(), "recording file opened");
            }
            Err(e) => {
                self.error("create", &e);
                // Nothing to write into: stop trying for the rest of this recording.
                self.video = None;
                w.zero = Some(at);
            }
        }
    }

    /// Encodes whole 20 ms frames of the mix; a gap in mix time restarts the frame clock
    /// later, and mix that overlaps what is written already is cut (audio never goes back).
    fn encode(&mut self, w: &mut Writer, at: Instant, pcm: &[i16]) {
        let Some(zero) = w.zero else { return };
        // Mix heard before media time 0 (it can come after the first keyframe: audio is
        // timed back by the jitter buffers' depth) is cut, as is the early mix's.
        let (at, pcm) = if at < zero {
            let skip = (zero.duration_since(at).as_micros() * 48 / 1000) as usize;
            if skip >= pcm.len() {
                return;
            }
            (zero, &pcm[skip..])
        } else {
            (at, pcm)
        };
        let slack = Duration::from_millis(30);
        let expected = w
            .pcm_at
            .map(|t| t + Duration::from_micros(w.pcm.len() as u64 * 1_000_000 / 48_000));
        let (at, pcm) = match expected {
            Some(e) if e.saturating_duration_since(at) > slack => {
                let overlap = (e.duration_since(at).as_micros() * 48 / 1000) as usize;
                if overlap >= pcm.len() {
                    return;
                }
                (e, &pcm[overlap..])
            }
            _ => (at, pcm),
        };
        if expected.is_none_or(|e| at.saturating_duration_since(e) > slack) {
            w.pcm.clear();
            w.pcm_at = Some(at);
        }
        w.pcm.extend_from_slice(pcm);
        while w.pcm.len() >= FRAME_SAMPLES {
            let t = w.pcm_at.unwrap_or(at);
            let us = t.saturating_duration_since(zero).as_micros() as i64;
            if let (Some(enc), Some(m)) = (&mut w.opus, &mut w.mux) {
                match enc.encode(&w.pcm[..FRAME_SAMPLES]) {
                    Ok(p) => {
                        if let Err(e) = m.write_audio(us, p) {
                            self.stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "recording: audio packet refused");
                        }
                    }
                    Err(e) => self.error("opus", &e),
                }
            }
            w.last_us = w.last_us.max(us + 20_000);
            w.pcm.drain(..FRAME_SAMPLES);
            w.pcm_at = Some(t + Duration::from_millis(20));
        }
    }

    fn flush_events(&mut self, w: &Writer, events: &mut Vec<(Instant, RecMsg)>) {
        let Some(zero) = w.zero else { return };
        let ms = |t: Instant| -> i64 {
            if t >= zero {
                t.duration_since(zero).as_millis() as i64
            } else {
                -(zero.duration_since(t).as_millis() as i64)
            }
        };
        for (at, ev) in events.drain(..) {
            match ev {
                RecMsg::Joined {
                    participant, name, ..
                } => self.sidecar.participants.push(Participant {
                    id: participant,
                    name,
                    joined_ms: ms(at),
                    left_ms: None,
                }),
                RecMsg::Left { participant, .. } => {
                    if let Some(p) = self
                        .sidecar
                        .participants
                        .iter_mut()
                        .rev()
                        .find(|p| p.id == participant && p.left_ms.is_none())
                    {
                        p.left_ms = Some(ms(at));
                    }
                }
                RecMsg::Speaking {
                    participant, on, ..
                } => self.sidecar.speaking.push(Speaking {
                    participant,
                    on,
                    at_ms: ms(at),
                }),
                _ => {}
            }
        }
    }

    /// Writes the sidecar next to the file, whole, through a rename: a crash leaves the
    /// previous version.
    fn write_sidecar(&mut self, w: &Writer) {
        if w.mux.is_none() {
            return;
        }
        self.sidecar.duration_ms = w.last_us / 1000;
        let path = self.file.with_extension("json");
        let tmp = self.file.with_extension("json.tmp");
        let body = match serde_json::to_vec_pretty(&self.sidecar) {
            Ok(b) => b,
            Err(e) => return self.error("sidecar", &e),
        };
        if let Err(e) = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path)) {
            self.error("sidecar", &e);
        }
    }
}
