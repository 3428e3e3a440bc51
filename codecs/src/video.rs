//! The picture type shared by the video codecs, and the settings their encoders take.
//!
//! Decoders hand out, and encoders and the scaler take, one packed I420 picture (Y plane,
//! then U, then V, no row padding), so the compositor can move tiles between openh264 and
//! FFmpeg without caring which library made them. Even dimensions only: 4:2:0 chroma
//! halves both, and both encoders want it so.

use crate::CodecError;

/// A planar YUV 4:2:0 picture (BT.601 limited range, as the encoders assume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I420Frame {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

/// The biggest picture accepted (8K UHD): larger ones are a bug or an attack.
const MAX_SIDE: usize = 8192;

pub(crate) fn check_dims(width: usize, height: usize) -> Result<(), CodecError> {
    if width == 0
        || height == 0
        || !width.is_multiple_of(2)
        || !height.is_multiple_of(2)
        || width > MAX_SIDE
        || height > MAX_SIDE
    {
        return Err(CodecError::Dimensions { width, height });
    }
    Ok(())
}

impl I420Frame {
    /// A picture of one colour, given as (Y, U, V).
    pub fn solid(width: usize, height: usize, yuv: (u8, u8, u8)) -> Result<I420Frame, CodecError> {
        check_dims(width, height)?;
        let luma = width * height;
        let mut data = vec![yuv.0; luma + luma / 2];
        data[luma..luma + luma / 4].fill(yuv.1);
        data[luma + luma / 4..].fill(yuv.2);
        Ok(I420Frame {
            width,
            height,
            data,
        })
    }

    /// Wraps packed I420 bytes; their length must match the dimensions.
    pub fn from_vec(width: usize, height: usize, data: Vec<u8>) -> Result<I420Frame, CodecError> {
        check_dims(width, height)?;
        let expected = width * height * 3 / 2;
        if data.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                got: data.len(),
            });
        }
        Ok(I420Frame {
            width,
            height,
            data,
        })
    }

    /// Copies three planes with row strides (as decoders hand them out) into a packed frame.
    pub(crate) fn from_planes(
        width: usize,
        height: usize,
        planes: [(&[u8], usize); 3],
    ) -> Result<I420Frame, CodecError> {
        check_dims(width, height)?;
        let mut data = Vec::with_capacity(width * height * 3 / 2);
        for (i, (plane, stride)) in planes.into_iter().enumerate() {
            let (w, h) = if i == 0 {
                (width, height)
            } else {
                (width / 2, height / 2)
            };
            if stride < w || plane.len() < stride * (h - 1) + w {
                return Err(CodecError::FrameSize {
                    expected: stride * h,
                    got: plane.len(),
                });
            }
            for row in 0..h {
                data.extend_from_slice(&plane[row * stride..row * stride + w]);
            }
        }
        Ok(I420Frame {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The packed bytes: Y, U, V.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    fn split(&self) -> (usize, usize) {
        let luma = self.width * self.height;
        (luma, luma + luma / 4)
    }

    pub fn y(&self) -> &[u8] {
        &self.data[..self.split().0]
    }

    pub fn u(&self) -> &[u8] {
        let (a, b) = self.split();
        &self.data[a..b]
    }

    pub fn v(&self) -> &[u8] {
        &self.data[self.split().1..]
    }

    /// The three planes, writable (for drawing and compositing).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (a, b) = self.split();
        let (y, rest) = self.data.split_at_mut(a);
        let (u, v) = rest.split_at_mut(b - a);
        (y, u, v)
    }

    /// Mean (Y, U, V) over the rectangle at (`x`, `y`) of `w` x `h` luma pixels (chroma over
    /// the matching half-size rectangle). Used to check colours after a codec round trip.
    pub fn mean_rect(&self, x: usize, y: usize, w: usize, h: usize) -> (f64, f64, f64) {
        let x1 = (x + w).min(self.width);
        let y1 = (y + h).min(self.height);
        let mean = |plane: &[u8], stride: usize, x0: usize, y0: usize, x1: usize, y1: usize| {
            let n = (x1.saturating_sub(x0) * y1.saturating_sub(y0)).max(1);
            let sum: u64 = (y0..y1)
                .flat_map(|r| plane[r * stride + x0..r * stride + x1].iter())
                .map(|&b| u64::from(b))
                .sum();
            sum as f64 / n as f64
        };
        let cw = self.width / 2;
        (
            mean(self.y(), self.width, x, y, x1, y1),
            mean(self.u(), cw, x / 2, y / 2, x1 / 2, y1 / 2),
            mean(self.v(), cw, x / 2, y / 2, x1 / 2, y1 / 2),
        )
    }

    /// Mean (Y, U, V) of the whole picture.
    pub fn mean(&self) -> (f64, f64, f64) {
        self.mean_rect(0, 0, self.width, self.height)
    }

    /// Luma PSNR in dB against another picture of the same size (`f64::INFINITY` when equal).
    pub fn psnr_y(&self, other: &I420Frame) -> Result<f64, CodecError> {
        if (self.width, self.height) != (other.width, other.height) {
            return Err(CodecError::FrameSize {
                expected: self.data.len(),
                got: other.data.len(),
            });
        }
        let se: u64 = self
            .y()
            .iter()
            .zip(other.y())
            .map(|(&a, &b)| u64::from(a.abs_diff(b)).pow(2))
            .sum();
        if se == 0 {
            return Ok(f64::INFINITY);
        }
        let mse = se as f64 / self.y().len() as f64;
        Ok(10.0 * (255.0 * 255.0 / mse).log10())
    }
}

impl openh264::formats::YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        I420Frame::y(self)
    }

    fn u(&self) -> &[u8] {
        I420Frame::u(self)
    }

    fn v(&self) -> &[u8] {
        I420Frame::v(self)
    }
}

/// What a video encoder is asked to make.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderSettings {
    pub width: usize,
    pub height: usize,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Frames per second the encoder is fed (rate control divides the bitrate by it).
    pub framerate: u32,
    /// A keyframe at least every this many frames (0: only when asked).
    pub keyframe_interval: u32,
    /// Speed before quality: openh264's low complexity (a composite, encoded on a
    /// budget). VP8 runs at libvpx's fastest real-time setting either way.
    pub fast: bool,
}

impl EncoderSettings {
    /// Conferencing defaults for a size: 30 fps, a keyframe every 10 s, ~0.1 bit per pixel.
    pub fn new(width: usize, height: usize) -> EncoderSettings {
        EncoderSettings {
            width,
            height,
            bitrate_bps: ((width * height * 30) / 10).clamp(100_000, 4_000_000) as u32,
            framerate: 30,
            keyframe_interval: 300,
            fast: false,
        }
    }

    pub(crate) fn check(&self) -> Result<(), CodecError> {
        check_dims(self.width, self.height)?;
        if self.framerate == 0 || self.bitrate_bps == 0 {
            return Err(CodecError::Settings(
                "framerate and bitrate must be above 0",
            ));
        }
        Ok(())
    }
}

/// One encoded frame: H.264 Annex-B access unit or VP8 frame, ready for a packetizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    /// A decoder can start here.
    pub keyframe: bool,
}
