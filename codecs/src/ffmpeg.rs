//! What the FFmpeg-backed modules share: library set-up and copying pictures in and out of
//! FFmpeg frames (which pad their rows).

use std::sync::OnceLock;

use ffmpeg_next as ff;

use crate::video::I420Frame;
use crate::CodecError;

/// Registers FFmpeg once per process and keeps it quiet: its log goes to stderr, which
/// belongs to the binaries using this crate, and every failure comes back as an error.
pub(crate) fn init() -> Result<(), CodecError> {
    static INIT: OnceLock<Result<(), ff::Error>> = OnceLock::new();
    let r = *INIT.get_or_init(|| {
        let r = ff::init();
        ff::log::set_level(ff::log::Level::Fatal);
        r
    });
    r.map_err(CodecError::ffmpeg("init"))
}

/// EAGAIN: the codec wants more input before it has output.
pub(crate) fn is_again(e: &ff::Error) -> bool {
    matches!(e, ff::Error::Other { errno } if *errno == ff::error::EAGAIN)
}

/// Copies a packed I420 picture into a new FFmpeg frame.
pub(crate) fn to_av(frame: &I420Frame) -> ff::frame::Video {
    let (w, h) = (frame.width(), frame.height());
    let mut av = ff::frame::Video::new(ff::format::Pixel::YUV420P, w as u32, h as u32);
    for (i, plane) in [frame.y(), frame.u(), frame.v()].into_iter().enumerate() {
        let pw = if i == 0 { w } else { w / 2 };
        let stride = av.stride(i);
        let dst = av.data_mut(i);
        for (row, src) in plane.chunks_exact(pw).enumerate() {
            dst[row * stride..row * stride + pw].copy_from_slice(src);
        }
    }
    av
}

/// Copies an FFmpeg YUV 4:2:0 frame out into a packed picture.
pub(crate) fn from_av(av: &ff::frame::Video) -> Result<I420Frame, CodecError> {
    if !matches!(
        av.format(),
        ff::format::Pixel::YUV420P | ff::format::Pixel::YUVJ420P
    ) {
        return Err(CodecError::Ffmpeg {
            op: "decode (pixel format is not 4:2:0)",
            source: ff::Error::InvalidData,
        });
    }
    I420Frame::from_planes(
        av.width() as usize,
        av.height() as usize,
        [
            (av.data(0), av.stride(0)),
            (av.data(1), av.stride(1)),
            (av.data(2), av.stride(2)),
        ],
    )
}

/// One of FFmpeg's own video decoders (VP8, H.264) fed whole frames or access units, as the
/// depacketizers rebuild them, one picture out per unit (no reordering: low delay).
pub(crate) struct VideoDecoder {
    decoder: ff::decoder::Video,
    frame: ff::frame::Video,
    /// Names the codec in errors.
    op: &'static str,
}

impl VideoDecoder {
    pub(crate) fn new(id: ff::codec::Id, op: &'static str) -> Result<VideoDecoder, CodecError> {
        init()?;
        let codec = ff::decoder::find(id).ok_or(CodecError::Ffmpeg {
            op,
            source: ff::Error::DecoderNotFound,
        })?;
        let mut ctx = ff::codec::context::Context::new_with_codec(codec);
        // One thread per decoder (the caller runs many on a pool) and a picture out for
        // every unit in: conferencing streams have no B-frames to wait for.
        ctx.set_threading(ff::threading::Config::count(1));
        ctx.set_flags(ff::codec::Flags::LOW_DELAY);
        let decoder = ctx.decoder().video().map_err(CodecError::ffmpeg(op))?;
        Ok(VideoDecoder {
            decoder,
            frame: ff::frame::Video::empty(),
            op,
        })
    }

    /// Decodes one unit; `None` when it shows nothing (parameter sets alone).
    pub(crate) fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        if data.is_empty() {
            return Err(rtpvideo::PayloadError::EmptyFrame.into());
        }
        self.decoder
            .send_packet(&ff::Packet::copy(data))
            .map_err(CodecError::ffmpeg(self.op))?;
        let mut last = None;
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => last = Some(from_av(&self.frame)?),
                Err(e) if is_again(&e) || e == ff::Error::Eof => break,
                Err(e) => return Err(CodecError::ffmpeg(self.op)(e)),
            }
        }
        Ok(last)
    }
}
