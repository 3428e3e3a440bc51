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
