//! The video compositor of a `composite` conference (issue 14): every video sender decoded,
//! its latest picture scaled into its tile of the conference's [`Layout`], and the canvas
//! encoded once per output for every receiver of that output to share, as the audio mix is
//! encoded once for its listeners.
//!
//! Frames are made on a clock (`interval`, 30 per second by default). Between two frames each
//! sender's access units queue up; at the frame, all senders decode their queues in
//! parallel on a rayon pool, then the canvas is drawn and encoded there too. A sender with
//! nothing new by then keeps its last picture in its tile (counted as a reuse): a slow or
//! lost input never holds the composite back. A sender whose queue overflows, or whose
//! access unit fails to decode, drops to waiting for a keyframe and asks for one
//! ([`Compositor::keyframe_requests`]).
//!
//! Sans-IO: `now` comes in, nothing reads the clock. The pool is the caller's (one per media
//! server, sized apart from the packet workers), and the caller runs [`Compositor::poll`]
//! off the packet path: a codec never stalls forwarding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codecs::h264::{FfmpegH264Decoder, H264Encoder};
use codecs::payload::keyframe::VideoCodec;
use codecs::vp8::{Vp8Decoder, Vp8Encoder};
use codecs::{CodecError, EncodedFrame, EncoderSettings, I420Frame};
use rayon::prelude::*;

use crate::layout::{tiles, Canvas, Layout, MAX_TILES};

/// Access units a sender may have waiting for the next frame. More means it is far ahead
/// of the frame clock (or the pool is behind): the queue is dropped and the sender waits
/// for a keyframe.
pub const QUEUE_MAX: usize = 16;

/// Frames per second of a composite.
pub const FRAME_RATE: u32 = 30;

/// The encoder of a `width` x `height` composite at `bitrate_bps`, as the media server runs
/// it: a keyframe at least every 2 s, so plain-RTP receivers (ffmpeg, room systems) that
/// start listening after they joined and never send a PLI get a picture within 2 s; and
/// openh264's low complexity, 9-12% less encode time (`composite_cpu` bench).
pub fn output_settings(width: usize, height: usize, bitrate_bps: u32) -> EncoderSettings {
    let mut s = EncoderSettings::new(width, height);
    s.bitrate_bps = bitrate_bps;
    s.keyframe_interval = 2 * FRAME_RATE;
    s.fast = true;
    s
}

/// H.264 on FFmpeg's decoder, which the `composite_cpu` bench measured a third faster
/// than openh264's (decoding is most of a grid's CPU); the encoder stays openh264.
enum Decoder {
    H264(FfmpegH264Decoder),
    Vp8(Vp8Decoder),
}

impl Decoder {
    fn new(codec: VideoCodec) -> Result<Decoder, CodecError> {
        Ok(match codec {
            VideoCodec::H264 => Decoder::H264(FfmpegH264Decoder::new()?),
            VideoCodec::Vp8 => Decoder::Vp8(Vp8Decoder::new()?),
        })
    }

    fn decode(&mut self, unit: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        match self {
            Decoder::H264(d) => d.decode(unit),
            Decoder::Vp8(d) => d.decode(unit),
        }
    }
}

enum Encoder {
    /// Boxed: openh264's state is kilobytes, the VP8 handle a few words.
    H264(Box<H264Encoder>),
    Vp8(Vp8Encoder),
}

impl Encoder {
    fn new(codec: VideoCodec, settings: EncoderSettings) -> Result<Encoder, CodecError> {
        Ok(match codec {
            VideoCodec::H264 => Encoder::H264(Box::new(H264Encoder::new(settings)?)),
            VideoCodec::Vp8 => Encoder::Vp8(Vp8Encoder::new(settings)?),
        })
    }

    fn encode(&mut self, frame: &I420Frame) -> Result<Option<EncodedFrame>, CodecError> {
        match self {
            Encoder::H264(e) => e.encode(frame),
            Encoder::Vp8(e) => e.encode(frame),
        }
    }

    fn request_keyframe(&mut self) {
        match self {
            Encoder::H264(e) => e.request_keyframe(),
            Encoder::Vp8(e) => e.request_keyframe(),
        }
    }

    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        match self {
            Encoder::H264(e) => e.set_bitrate(bps),
            Encoder::Vp8(e) => e.set_bitrate(bps),
        }
    }
}

/// One video sender: its decoder, what came since the last frame, and its last picture.
struct Source {
    id: u32,
    decoder: Decoder,
    /// Access units and when each arrived.
    queue: Vec<(Vec<u8>, Instant)>,
    latest: Option<I420Frame>,
    /// Waiting for a keyframe (just added, overflowed or broken): other units are dropped.
    waiting: bool,
    /// A keyframe request for the sender is due.
    ask: bool,
    /// Outcome of the last decode pass: (decoded, failed).
    pass: (u32, u32),
    /// Arrival times of the pictures decoded since the last frame went out.
    shown: Vec<Instant>,
}

impl Source {
    /// Decodes everything queued; the last picture stays when nothing new decodes.
    fn decode_queue(&mut self) {
        self.pass = (0, 0);
        for (unit, arrived) in self.queue.drain(..) {
            match self.decoder.decode(&unit) {
                Ok(Some(p)) => {
                    self.latest = Some(p);
                    self.pass.0 += 1;
                    self.shown.push(arrived);
                }
                Ok(None) => {}
                Err(_) => {
                    self.pass.1 += 1;
                    self.waiting = true;
                    self.ask = true;
                }
            }
        }
    }
}

/// Counters for `/metrics` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompositorStats {
    /// Composite frames encoded.
    pub frames: u64,
    /// Sender pictures decoded.
    pub decoded: u64,
    /// Access units that failed to decode.
    pub decode_errors: u64,
    /// Tiles drawn from a picture already used in an earlier frame (a late or idle sender).
    pub reused: u64,
    /// Access units dropped: before a sender's keyframe, or from an overflowing queue.
    pub dropped_units: u64,
}

/// Why a sender or a unit was refused: the transcoder crate's error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompositeError {
    #[error("a composite shows at most {MAX_TILES} senders")]
    Full,
    #[error("no sender {0} in the composite")]
    UnknownSender(u32),
    #[error("no decoder for sender {0}: {1}")]
    Decoder(u32, String),
}

/// One conference's composite, for one output (codec, size, bitrate class).
pub struct Compositor {
    layout: Layout,
    speaker: Option<u32>,
    sources: Vec<Source>,
    canvas: Canvas,
    encoder: Encoder,
    codec: VideoCodec,
    interval: Duration,
    next: Option<Instant>,
    pool: Arc<rayon::ThreadPool>,
    /// Arrival times of the pictures new in the last frame made (and in frames the
    /// encoder skipped just before it).
    inputs: Vec<Instant>,
    /// The last poll made a frame: the next one starts `inputs` afresh.
    made: bool,
    pub stats: CompositorStats,
}

impl std::fmt::Debug for Compositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compositor")
            .field("layout", &self.layout)
            .field("senders", &self.sources.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Compositor {
    /// A composite of `settings.width` x `settings.height` in `codec`, drawn and encoded on
    /// `pool`.
    pub fn new(
        codec: VideoCodec,
        settings: EncoderSettings,
        layout: Layout,
        pool: Arc<rayon::ThreadPool>,
    ) -> Result<Compositor, CodecError> {
        Ok(Compositor {
            layout,
            speaker: None,
            sources: Vec::new(),
            canvas: Canvas::new(settings.width, settings.height)?,
            encoder: Encoder::new(codec, settings)?,
            codec,
            interval: Duration::from_secs(1) / settings.framerate.max(1),
            next: None,
            pool,
            inputs: Vec::new(),
            made: false,
            stats: CompositorStats::default(),
        })
    }

    /// The output's codec.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The conference's layout changed (`layout grid|speaker|presentation`): from the next
    /// frame on.
    pub fn set_layout(&mut self, layout: Layout) {
        self.layout = layout;
    }

    /// The dominant speaker: the large tile of the speaker layout.
    pub fn set_speaker(&mut self, id: Option<u32>) {
        self.speaker = id;
    }

    /// A video sender joins the composite; it shows from its first keyframe.
    pub fn add_sender(&mut self, id: u32, codec: VideoCodec) -> Result<(), CompositeError> {
        if self.sources.iter().any(|s| s.id == id) {
            return Ok(());
        }
        if self.sources.len() >= MAX_TILES {
            return Err(CompositeError::Full);
        }
        let decoder =
            Decoder::new(codec).map_err(|e| CompositeError::Decoder(id, e.to_string()))?;
        // Tiles follow the order senders joined (participant ids grow with joins).
        let at = self.sources.partition_point(|s| s.id < id);
        self.sources.insert(
            at,
            Source {
                id,
                decoder,
                queue: Vec::with_capacity(QUEUE_MAX),
                latest: None,
                waiting: true,
                ask: true,
                pass: (0, 0),
                shown: Vec::new(),
            },
        );
        Ok(())
    }

    pub fn remove_sender(&mut self, id: u32) {
        self.sources.retain(|s| s.id != id);
    }

    /// One access unit (an H.264 Annex-B unit or a VP8 frame, from the depacketizer) from
    /// sender `id`, whole at `arrived`; `keyframe` when a decoder can start there.
    pub fn push(
        &mut self,
        id: u32,
        unit: Vec<u8>,
        keyframe: bool,
        arrived: Instant,
    ) -> Result<(), CompositeError> {
        let s = self
            .sources
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or(CompositeError::UnknownSender(id))?;
        if s.waiting && !keyframe {
            self.stats.dropped_units += 1;
            return Ok(());
        }
        if keyframe {
            s.waiting = false;
            // A keyframe makes what waits before it useless.
            self.stats.dropped_units += s.queue.len() as u64;
            s.queue.clear();
        }
        if s.queue.len() >= QUEUE_MAX {
            self.stats.dropped_units += s.queue.len() as u64 + 1;
            s.queue.clear();
            s.waiting = true;
            s.ask = true;
            return Ok(());
        }
        s.queue.push((unit, arrived));
        Ok(())
    }

    /// Senders a keyframe should be asked of (new, overflowed or broken), once each.
    pub fn keyframe_requests(&mut self) -> Vec<u32> {
        self.sources
            .iter_mut()
            .filter_map(|s| std::mem::take(&mut s.ask).then_some(s.id))
            .collect()
    }

    /// A receiver asked for a keyframe (PLI) or joined: the next frame is one.
    pub fn request_keyframe(&mut self) {
        self.encoder.request_keyframe();
    }

    /// The receivers' estimates moved: the output's bitrate follows.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        self.encoder.set_bitrate(bps)
    }

    /// When the next frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// Makes the frame due at `now`, if one is: decodes every sender's queue in parallel,
    /// draws the layout and encodes it. None before it is due, or when the encoder skipped
    /// the frame (rate control).
    pub fn poll(&mut self, now: Instant) -> Result<Option<EncodedFrame>, CodecError> {
        let next = *self.next.get_or_insert(now);
        if now < next {
            return Ok(None);
        }
        // The clock steps by the interval; after a stall it restarts from now rather than
        // making up frames nobody can use.
        let after = next + self.interval;
        self.next = Some(if after > now {
            after
        } else {
            now + self.interval
        });
        let Compositor {
            sources,
            canvas,
            encoder,
            layout,
            speaker,
            pool,
            inputs,
            made,
            stats,
            ..
        } = self;
        if *made {
            inputs.clear();
        }
        let result = pool.install(|| {
            sources.par_iter_mut().for_each(Source::decode_queue);
            for s in sources.iter_mut() {
                inputs.append(&mut s.shown);
                stats.decoded += u64::from(s.pass.0);
                stats.decode_errors += u64::from(s.pass.1);
                if s.pass.0 == 0 && s.latest.is_some() {
                    stats.reused += 1;
                }
            }
            canvas.clear();
            let showing: Vec<&Source> = order(sources, *layout, *speaker)
                .filter(|s| s.latest.is_some())
                .collect();
            let (w, h) = (canvas.frame().width(), canvas.frame().height());
            for (tile, s) in tiles(*layout, showing.len(), w, h)
                .into_iter()
                .zip(&showing)
            {
                if let Some(p) = &s.latest {
                    canvas.put(tile, p)?;
                }
            }
            let out = encoder.encode(canvas.frame())?;
            stats.frames += u64::from(out.is_some());
            Ok(out)
        });
        // Only a skipped frame (rate control) hands its pictures' times to the next.
        *made = !matches!(result, Ok(None));
        result
    }

    /// When the senders' pictures new in the frame [`Compositor::poll`] last made arrived
    /// (one per picture decoded): the start of the latency each one has when it is sent.
    pub fn frame_inputs(&self) -> &[Instant] {
        &self.inputs
    }

    /// The canvas as last drawn (tests, snapshots).
    pub fn picture(&self) -> &I420Frame {
        self.canvas.frame()
    }
}

/// Senders in tile order: the speaker first where the layout has a large tile, then the
/// others in the order they joined (by participant id).
fn order(
    sources: &[Source],
    layout: Layout,
    speaker: Option<u32>,
) -> impl Iterator<Item = &Source> {
    let first = match layout {
        Layout::Grid => None,
        Layout::Speaker | Layout::Presentation => speaker,
    };
    let lead = sources.iter().filter(move |s| Some(s.id) == first);
    lead.chain(sources.iter().filter(move |s| Some(s.id) != first))
}

#[cfg(test)]
#[path = "compositor_tests.rs"]
mod tests;
