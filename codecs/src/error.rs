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
    /// A PCM frame does not have the length the codec is configured for.
    #[error("frame has {got} samples, expected {expected}")]
    FrameSize { expected: usize, got: usize },
    /// A concealment length that Opus cannot produce (it works in 2.5 ms steps up to 120 ms).
    #[error("cannot conceal {0} samples: must be a multiple of 120 up to 5760")]
    ConcealLength(usize),
    /// The resampler could not be built or refused a frame.
    #[error("resampler: {0}")]
    Resample(String),
}

impl CodecError {
    pub(crate) fn opus(op: &'static str) -> impl FnOnce(::opus::Error) -> CodecError {
        move |source| CodecError::Opus { op, source }
    }
}
