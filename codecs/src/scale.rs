//! Scaling and pixel-format conversion through FFmpeg's swscale.
//!
//! The compositor scales each sender's picture to its tile, and pictures that come from
//! outside in another layout (RGB from a test pattern or a screen grab, NV12 from hardware)
//! are converted to I420 here. One [`Scaler`] is made per (input size, output size, format)
//! and reused: swscale precomputes its filters, and that is where its cost lies.

use ff::software::scaling;
use ffmpeg_next as ff;

use crate::ffmpeg::{self, from_av, to_av};
use crate::video::{check_dims, I420Frame};
use crate::CodecError;

/// Packed or semi-planar layouts a [`Scaler`] can take in and give out besides I420.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Planar YUV 4:2:0, the codecs' own.
    I420,
    /// Y plane then interleaved UV (hardware decoders, cameras).
    Nv12,
    /// 8-bit R, G, B per pixel.
    Rgb24,
    /// 8-bit B, G, R, A per pixel (screen captures).
    Bgra,
}

impl PixelFormat {
    fn av(self) -> ff::format::Pixel {
        match self {
            PixelFormat::I420 => ff::format::Pixel::YUV420P,
            PixelFormat::Nv12 => ff::format::Pixel::NV12,
            PixelFormat::Rgb24 => ff::format::Pixel::RGB24,
            PixelFormat::Bgra => ff::format::Pixel::BGRA,
        }
    }

    /// Bytes of a packed `width` x `height` picture in this format.
    pub fn frame_len(self, width: usize, height: usize) -> usize {
        match self {
            PixelFormat::I420 | PixelFormat::Nv12 => width * height * 3 / 2,
            PixelFormat::Rgb24 => width * height * 3,
            PixelFormat::Bgra => width * height * 4,
        }
    }

    /// (bytes per row, rows) of each plane of a packed picture.
    fn planes(self, width: usize, height: usize) -> Vec<(usize, usize)> {
        match self {
            PixelFormat::I420 => vec![
                (width, height),
                (width / 2, height / 2),
                (width / 2, height / 2),
            ],
            PixelFormat::Nv12 => vec![(width, height), (width, height / 2)],
            PixelFormat::Rgb24 => vec![(width * 3, height)],
            PixelFormat::Bgra => vec![(width * 4, height)],
        }
    }
}

/// A reusable swscale context from one size and format to another.
pub struct Scaler {
    ctx: scaling::Context,
    src: (PixelFormat, usize, usize),
    dst: (PixelFormat, usize, usize),
    out: ff::frame::Video,
}

// SAFETY: an SwsContext holds no thread-local state and is only used through `&mut self`,
// so moving it to another thread (a rayon worker taking a tile) is sound; it is not Sync.
unsafe impl Send for Scaler {}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .finish_non_exhaustive()
    }
}

impl Scaler {
    /// I420 of one size to I420 of another (bilinear: the compositor's tiles are small and
    /// many, and sharper filters cost more than they show).
    pub fn new(src: (usize, usize), dst: (usize, usize)) -> Result<Scaler, CodecError> {
        Scaler::convert(
            (PixelFormat::I420, src.0, src.1),
            (PixelFormat::I420, dst.0, dst.1),
        )
    }

    /// Any supported (format, width, height) to any other.
    pub fn convert(
        src: (PixelFormat, usize, usize),
        dst: (PixelFormat, usize, usize),
    ) -> Result<Scaler, CodecError> {
        ffmpeg::init()?;
        // Even sizes only, as for I420Frame: every format here can then go through it.
        check_dims(src.1, src.2)?;
        check_dims(dst.1, dst.2)?;
        let ctx = scaling::Context::get(
            src.0.av(),
            src.1 as u32,
            src.2 as u32,
            dst.0.av(),
            dst.1 as u32,
            dst.2 as u32,
            scaling::Flags::BILINEAR,
        )
        .map_err(CodecError::ffmpeg("swscale context"))?;
        Ok(Scaler {
            ctx,
            src,
            dst,
            out: ff::frame::Video::new(dst.0.av(), dst.1 as u32, dst.2 as u32),
        })
    }

    /// Scales an I420 picture to an I420 picture (a scaler made with [`Scaler::new`]).
    pub fn scale(&mut self, frame: &I420Frame) -> Result<I420Frame, CodecError> {
        if self.src != (PixelFormat::I420, frame.width(), frame.height())
            || self.dst.0 != PixelFormat::I420
        {
            return Err(CodecError::Dimensions {
                width: frame.width(),
                height: frame.height(),
            });
        }
        let input = to_av(frame);
        self.ctx
            .run(&input, &mut self.out)
            .map_err(CodecError::ffmpeg("swscale"))?;
        from_av(&self.out)
    }

    /// Converts a packed picture in the source format to packed bytes in the destination
    /// format (`PixelFormat::frame_len` of each).
    pub fn convert_bytes(&mut self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let (sf, sw, sh) = self.src;
        if data.len() != sf.frame_len(sw, sh) {
            return Err(CodecError::FrameSize {
                expected: sf.frame_len(sw, sh),
                got: data.len(),
            });
        }
        let mut input = ff::frame::Video::new(sf.av(), sw as u32, sh as u32);
        let mut at = 0;
        for (i, (row, rows)) in sf.planes(sw, sh).into_iter().enumerate() {
            let stride = input.stride(i);
            let dst = input.data_mut(i);
            for r in 0..rows {
                dst[r * stride..r * stride + row].copy_from_slice(&data[at..at + row]);
                at += row;
            }
        }
        self.ctx
            .run(&input, &mut self.out)
            .map_err(CodecError::ffmpeg("swscale"))?;
        let (df, dw, dh) = self.dst;
        let mut out = Vec::with_capacity(df.frame_len(dw, dh));
        for (i, (row, rows)) in df.planes(dw, dh).into_iter().enumerate() {
            let stride = self.out.stride(i);
            let src = self.out.data(i);
            for r in 0..rows {
                out.extend_from_slice(&src[r * stride..r * stride + row]);
            }
        }
        Ok(out)
    }
}
