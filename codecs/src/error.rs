//! The one error type of the codecs crate.

/// Why a codec call failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus refused a call (bad packet, bad argument, allocation failure, ...).
    #[error("opus {op} failed: {source}")]
    Opus {
        op: &'static str,
        #[source]
        source: ::opus::Error,
    },
    /// An empty payload: libopus would read it as loss, so loss must be asked for explicitly.
    #[error("empty opus packet")]
    EmptyPacket,
    /// A PCM frame or picture buffer does not have the length the codec is configured for.
    #[error("frame has {got} samples, expected {expected}")]
    FrameSize { expected: usize, got: usize },
    /// A concealment length that Opus cannot produce (it works in 2.5 ms steps up to 120 ms).
    #[error("cannot conceal {0} samples: must be a multiple of 120 up to 5760")]
    ConcealLength(usize),
    /// The resampler could not be built or refused a frame.
    #[error("resampler: {0}")]
    Resample(String),
    /// A picture size the video codecs cannot take (zero, odd, above 8192, or not the
    /// encoder's).
    #[error("unsupported picture size {width}x{height}")]
    Dimensions { width: usize, height: usize },
    /// Encoder settings that make no sense.
    #[error("bad encoder settings: {0}")]
    Settings(&'static str),
    /// openh264 refused a call (its error type carries only a message and a native code).
    #[error("openh264 {op} failed: {message}")]
    H264 { op: &'static str, message: String },
    /// FFmpeg (libavcodec, libswscale) refused a call.
    #[error("ffmpeg {op} failed: {source}")]
    Ffmpeg {
        op: &'static str,
        #[source]
        source: ffmpeg_next::Error,
    },
    /// An RTP video payload could not be used.
    #[error(transparent)]
    Payload(#[from] rtpvideo::PayloadError),
}

impl CodecError {
    pub(crate) fn opus(op: &'static str) -> impl FnOnce(::opus::Error) -> CodecError {
        move |source| CodecError::Opus { op, source }
    }

    pub(crate) fn ffmpeg(op: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> CodecError {
        move |source| CodecError::Ffmpeg { op, source }
    }
}
