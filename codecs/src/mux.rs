//! Recording containers (issue 14): Opus audio and H.264 video muxed by FFmpeg's libavformat
//! into Matroska, or Opus alone into Ogg.
//!
//! Crash safety comes from the container settings, not from a final pass: Matroska clusters
//! close every second and each write is flushed to the file, so a process killed mid-way
//! leaves every closed cluster playable (only the index and the total duration, written by
//! [`Muxer::finish`], are missing). Ogg pages are self-delimiting in the same way.
//!
//! Timestamps come in as microseconds on one clock for both streams; the muxer only
//! rescales them to each stream's time base, so audio and video stay in sync as the caller
//! timed them.

use std::path::Path;
use std::ptr;

use ff::ffi;
use ffmpeg_next as ff;

use crate::ffmpeg::init;
use crate::CodecError;

/// What a recording is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// Opus and H.264 in Matroska (`.mkv`).
    Matroska,
    /// Opus alone in Ogg (`.ogg`).
    Ogg,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Matroska => "mkv",
            Container::Ogg => "ogg",
        }
    }

    fn format(self) -> &'static str {
        match self {
            Container::Matroska => "matroska",
            Container::Ogg => "ogg",
        }
    }
}

/// The streams of a recording.
#[derive(Clone, Debug)]
pub struct MuxSettings {
    pub container: Container,
    /// Opus channels (1 or 2) at 48 kHz.
    pub channels: u8,
    /// Samples the decoder drops at the start (the encoder's lookahead).
    pub pre_skip: u16,
    /// H.264 picture size and its SPS and PPS (Annex B, with start codes); `None` for
    /// audio alone. Matroska carries them in its header, so video starts on a keyframe.
    pub video: Option<VideoTrack>,
}

/// The H.264 stream of a recording.
#[derive(Clone, Debug)]
pub struct VideoTrack {
    pub width: usize,
    pub height: usize,
    pub parameter_sets: Vec<u8>,
}

/// An open recording file.
pub struct Muxer {
    ctx: ff::format::context::Output,
    audio: usize,
    video: Option<usize>,
    /// Last timestamp written per stream (µs), to keep each strictly increasing.
    last: [Option<i64>; 2],
    finished: bool,
}

// The muxer is used from one recording thread at a time; libavformat contexts are not
// tied to the thread that made them.
unsafe impl Send for Muxer {}

const MICROS: ff::Rational = ff::Rational(1, 1_000_000);

impl Muxer {
    /// Creates `path` and writes the container header.
    pub fn create(path: &Path, settings: &MuxSettings) -> Result<Muxer, CodecError> {
        init()?;
        if settings.video.is_some() && settings.container == Container::Ogg {
            return Err(CodecError::Settings("Ogg recordings carry audio only"));
        }
        if !(1..=2).contains(&settings.channels) {
            return Err(CodecError::Settings("Opus recordings are mono or stereo"));
        }
        let mut ctx = ff::format::output_as(path, settings.container.format())
            .map_err(CodecError::ffmpeg("open recording"))?;
        let audio = {
            let mut st = ctx
                .add_stream(None::<ff::Codec>)
                .map_err(CodecError::ffmpeg("add audio stream"))?;
            st.set_time_base(ff::Rational(1, 48_000));
            // SAFETY: the stream was just created by this context; its codecpar is allocated.
            unsafe {
                let par = (*st.as_mut_ptr()).codecpar;
                (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
                (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_OPUS;
                (*par).sample_rate = 48_000;
                ffi::av_channel_layout_default(&mut (*par).ch_layout, settings.channels.into());
                set_extradata(par, &opus_head(settings.channels, settings.pre_skip))?;
            }
            st.index()
        };
        let video = match &settings.video {
            Some(v) => {
                if v.parameter_sets.is_empty() {
                    return Err(CodecError::Settings("H.264 recording without SPS and PPS"));
                }
                let mut st = ctx
                    .add_stream(None::<ff::Codec>)
                    .map_err(CodecError::ffmpeg("add video stream"))?;
                st.set_time_base(ff::Rational(1, 1000));
                // SAFETY: as above.
                unsafe {
                    let par = (*st.as_mut_ptr()).codecpar;
                    (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
                    (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_H264;
                    (*par).width = v.width as i32;
                    (*par).height = v.height as i32;
                    (*par).format = ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32;
                    set_extradata(par, &v.parameter_sets)?;
                }
                Some(st.index())
            }
            None => None,
        };
        let mut opts = ff::Dictionary::new();
        // Every write reaches the file, and Matroska closes a cluster every second: a kill
        // loses at most the open cluster.
        opts.set("flush_packets", "1");
        if settings.container == Container::Matroska {
            opts.set("cluster_time_limit", "1000");
        }
        ctx.write_header_with(opts)
            .map_err(CodecError::ffmpeg("write recording header"))?;
        Ok(Muxer {
            ctx,
            audio,
            video,
            last: [None, None],
            finished: false,
        })
    }

    /// One Opus packet whose first sample plays at `at_us`.
    pub fn write_audio(&mut self, at_us: i64, packet: &[u8]) -> Result<(), CodecError> {
        self.write(self.audio, 0, at_us, packet, true)
    }

    /// One H.264 access unit (Annex B) shown at `at_us`.
    pub fn write_video(
        &mut self,
        at_us: i64,
        access_unit: &[u8],
        keyframe: bool,
    ) -> Result<(), CodecError> {
        let Some(index) = self.video else {
            return Err(CodecError::Settings("this recording has no video stream"));
        };
        self.write(index, 1, at_us, access_unit, keyframe)
    }

    fn write(
        &mut self,
        index: usize,
        slot: usize,
        at_us: i64,
        data: &[u8],
        keyframe: bool,
    ) -> Result<(), CodecError> {
        if self.finished {
            return Err(CodecError::Settings("recording already finished"));
        }
        let Some(tb) = self.ctx.stream(index).map(|s| s.time_base()) else {
            return Err(CodecError::Settings("recording stream missing"));
        };
        // Strictly increasing in the stream's own time base (a muxer refuses equal DTS).
        let mut ts = ff::rescale::Rescale::rescale(&at_us, MICROS, tb);
        if let Some(last) = self.last[slot] {
            ts = ts.max(last + 1);
        }
        self.last[slot] = Some(ts);
        let mut pkt = ff::Packet::copy(data);
        pkt.set_stream(index);
        pkt.set_pts(Some(ts));
        pkt.set_dts(Some(ts));
        if keyframe {
            pkt.set_flags(ff::packet::Flags::KEY);
        }
        pkt.write_interleaved(&mut self.ctx)
            .map_err(CodecError::ffmpeg("write recording packet"))
    }

    /// Writes the index and closes the file. Without it (a crash) the file still plays up
    /// to its last closed cluster or page.
    pub fn finish(&mut self) -> Result<(), CodecError> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        self.ctx
            .write_trailer()
            .map_err(CodecError::ffmpeg("write recording trailer"))
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The Opus identification header (RFC 7845 section 5.1) both containers carry.
fn opus_head(channels: u8, pre_skip: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// Copies `data` into FFmpeg-owned, padded extradata (freed with the context).
///
/// # Safety
/// `par` must be a valid codec parameters block with no extradata yet.
unsafe fn set_extradata(par: *mut ffi::AVCodecParameters, data: &[u8]) -> Result<(), CodecError> {
    let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: av_mallocz returns zeroed memory of the size asked, or null.
    let buf = unsafe { ffi::av_mallocz(data.len() + pad) } as *mut u8;
    if buf.is_null() {
        return Err(CodecError::Settings("out of memory for codec extradata"));
    }
    // SAFETY: buf holds data.len() + pad bytes; par is valid per the contract.
    unsafe {
        ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        (*par).extradata = buf;
        (*par).extradata_size = data.len() as i32;
    }
    Ok(())
}

/// The SPS and PPS NAL units of an H.264 keyframe (Annex B), with their start codes: what
/// a recording's header needs. Empty when the access unit has none.
pub fn h264_parameter_sets(access_unit: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in annex_b_units(access_unit) {
        if matches!(nal.first().map(|b| b & 0x1f), Some(7 | 8)) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
    out
}

/// The NAL units of an Annex B byte stream, without start codes.
fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next start code, less a leading zero of a 4-byte one.
            let mut e = s - 3;
            while e > 0 && data[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(s, e)| s < e)
        .map(move |(s, e)| &data[s..e])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_are_picked_from_an_access_unit() {
        let au = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9, 9,
        ];
        assert_eq!(
            h264_parameter_sets(&au),
            [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3]
        );
        assert!(h264_parameter_sets(&[0, 0, 1, 0x41, 5]).is_empty());
        assert!(h264_parameter_sets(&[]).is_empty());
    }

    #[test]
    fn opus_head_is_rfc_7845() {
        let h = opus_head(1, 312);
        assert_eq!(h.len(), 19);
        assert_eq!(&h[..8], b"OpusHead");
        assert_eq!(h[9], 1);
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312);
    }
}
