//! The one error type of the rtpvideo crate.

/// Why a packet could not be used or a frame could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is cut short or its fields contradict its length.
    #[error("malformed {codec} payload: {what}")]
    Malformed {
        codec: &'static str,
        what: &'static str,
    },
    /// A payload structure that packetization-mode 1 does not allow (STAP-B, MTAP, FU-B).
    #[error("unsupported H.264 NAL unit type {0} in packetization-mode 1")]
    Unsupported(u8),
    /// Packets are missing before this one (`missing` 0: the sequence numbers restarted):
    /// the frame in progress is dropped.
    #[error("{missing} packet(s) missing before sequence number {seq}")]
    Gap { seq: u16, missing: u16 },
    /// A packet older than the one before it (duplicate or reordered): ignored.
    #[error("late or duplicate packet {seq}")]
    Late { seq: u16 },
    /// A frame whose start was never seen or whose fragments do not fit together.
    #[error("frame at timestamp {timestamp} is incomplete")]
    Incomplete { timestamp: u32 },
    /// A delta frame after a loss: dropped until a keyframe arrives (ask the sender for one).
    #[error("frame at timestamp {timestamp} dropped: waiting for a keyframe")]
    NeedKeyframe { timestamp: u32 },
    /// A packetizer was given nothing to send.
    #[error("empty frame")]
    EmptyFrame,
    /// The packet size limit leaves no room for payload.
    #[error("mtu {0} too small")]
    Mtu(usize),
}
