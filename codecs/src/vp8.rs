//! VP8 encode (libvpx) and decode (FFmpeg's own decoder) through `ffmpeg-next` against
//! Debian's FFmpeg.
//!
//! The encoder is set up for real-time conferencing: `deadline=realtime`, no look-ahead
//! (`lag-in-frames=0`, so each picture comes out at once), error-resilient partitions, one
//! token partition (what the RTP packetizer's partition boundary assumes). As for H.264, a
//! bitrate change rebuilds the encoder and so starts on a keyframe.

use ffmpeg_next as ff;

use crate::ffmpeg::{self, is_again, to_av};
use crate::video::{EncodedFrame, EncoderSettings, I420Frame};
use crate::CodecError;

/// A VP8 encoder for one output.
pub struct Vp8Encoder {
    settings: EncoderSettings,
    encoder: ff::encoder::video::Encoder,
    pts: i64,
    keyframe_requested: bool,
}

impl std::fmt::Debug for Vp8Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Encoder")
            .field("settings", &self.settings)
            .field("pts", &self.pts)
            .finish_non_exhaustive()
    }
}

fn open_encoder(s: &EncoderSettings) -> Result<ff::encoder::video::Encoder, CodecError> {
    ffmpeg::init()?;
    let codec = ff::encoder::find_by_name("libvpx").ok_or(CodecError::Ffmpeg {
        op: "find the libvpx encoder",
        source: ff::Error::EncoderNotFound,
    })?;
    let mut enc = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(CodecError::ffmpeg("VP8 encoder context"))?;
    enc.set_width(s.width as u32);
    enc.set_height(s.height as u32);
    enc.set_format(ff::format::Pixel::YUV420P);
    let fps = s.framerate as i32;
    enc.set_time_base(ff::Rational::new(1, fps));
    enc.set_frame_rate(Some(ff::Rational::new(fps, 1)));
    enc.set_bit_rate(s.bitrate_bps as usize);
    enc.set_max_b_frames(0);
    if s.keyframe_interval > 0 {
        enc.set_gop(s.keyframe_interval);
    }
    let mut opts = ff::Dictionary::new();
    opts.set("deadline", "realtime");
    opts.set("cpu-used", "8");
    opts.set("lag-in-frames", "0");
    opts.set("error-resilient", "1");
    opts.set("auto-alt-ref", "0");
    enc.open_as_with(codec, opts)
        .map_err(CodecError::ffmpeg("open the VP8 encoder"))
}

impl Vp8Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Vp8Encoder, CodecError> {
        settings.check()?;
        Ok(Vp8Encoder {
            encoder: open_encoder(&settings)?,
            settings,
            pts: 0,
            keyframe_requested: false,
        })
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// The next frame will be a key frame.
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Changes the target bitrate; the next frame is a key frame.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        if bps == self.settings.bitrate_bps {
            return Ok(());
        }
        let settings = EncoderSettings {
            bitrate_bps: bps,
            ..self.settings
        };
        settings.check()?;
        self.encoder = open_encoder(&settings)?;
        self.settings = settings;
        Ok(())
    }

    /// Encodes one picture of the configured size; `None` when libvpx dropped it.
    pub fn encode(&mut self, frame: &I420Frame) -> Result<Option<EncodedFrame>, CodecError> {
        if (frame.width(), frame.height()) != (self.settings.width, self.settings.height) {
            return Err(CodecError::Dimensions {
                width: frame.width(),
                height: frame.height(),
            });
        }
        let mut av = to_av(frame);
        av.set_pts(Some(self.pts));
        self.pts += 1;
        if std::mem::take(&mut self.keyframe_requested) {
            // libvpxenc turns an I picture type into VPX_EFLAG_FORCE_KF.
            av.set_kind(ff::picture::Type::I);
        }
        self.encoder
            .send_frame(&av)
            .map_err(CodecError::ffmpeg("VP8 encode"))?;
        let mut out: Option<EncodedFrame> = None;
        let mut pkt = ff::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut pkt) {
                Ok(()) => {
                    let data = pkt.data().unwrap_or_default();
                    match &mut out {
                        // With no look-ahead there is one packet per picture; keep any
                        // extra rather than lose it.
                        Some(o) => o.data.extend_from_slice(data),
                        None => {
                            out = Some(EncodedFrame {
                                data: data.to_vec(),
                                keyframe: pkt.is_key(),
                            })
                        }
                    }
                }
                Err(e) if is_again(&e) || e == ff::Error::Eof => break,
                Err(e) => return Err(CodecError::ffmpeg("VP8 encode")(e)),
            }
        }
        Ok(out.filter(|o| !o.data.is_empty()))
    }
}

/// A VP8 decoder for one sender.
pub struct Vp8Decoder(ffmpeg::VideoDecoder);

impl std::fmt::Debug for Vp8Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Decoder").finish_non_exhaustive()
    }
}

impl Vp8Decoder {
    pub fn new() -> Result<Vp8Decoder, CodecError> {
        ffmpeg::VideoDecoder::new(ff::codec::Id::VP8, "VP8 decode").map(Vp8Decoder)
    }

    /// Decodes one frame (as the depacketizer rebuilds it); `None` when it shows nothing.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        self.0.decode(data)
    }
}
