//! Frame assembly shared by the depacketizers: sequence numbers, frame boundaries, loss.
//!
//! The rules are the same for every codec: packets of one frame share a timestamp and the
//! last carries the marker bit; a gap in sequence numbers loses the frame it falls in; and
//! after a loss only a keyframe may come out, since a delta frame on a lost reference
//! decodes to garbage. The codec only says how a payload adds to the frame.

use crate::{Frame, PayloadError};

/// How one payload format adds packets to a frame.
pub(crate) trait Format {
    /// True when the packet surely begins a frame a decoder can start from even after a
    /// loss (a keyframe's first packet).
    fn starts_keyframe(payload: &[u8]) -> bool;
    /// Appends the payload's media bytes to `buf`; `first` is true for the frame's first
    /// packet. An error leaves the frame to be dropped; `Incomplete` (its timestamp is
    /// filled in here) says the frame's start was never seen.
    fn add(&mut self, payload: &[u8], first: bool, buf: &mut Vec<u8>) -> Result<(), PayloadError>;
    /// The frame so far ends cleanly (no fragment left open).
    fn complete(&self) -> bool;
    /// The frame so far is a keyframe.
    fn keyframe(&self) -> bool;
    /// Forgets the frame in progress.
    fn reset(&mut self);
}

/// Packets this far behind the newest are late arrivals; farther, a restarted sequence.
const MAX_REORDER: u16 = 1000;

/// What a packet's sequence number says about the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The expected one (or the first packet seen).
    InOrder,
    /// Newer than expected: this many packets in between are missing (0: the sender
    /// restarted its sequence numbers).
    Gap(u16),
    /// Older than expected: a duplicate or a late, reordered packet.
    Late,
}

#[derive(Debug)]
pub(crate) struct Assembler<F> {
    format: F,
    /// The sequence number expected next, once a packet has been seen.
    next_seq: Option<u16>,
    /// The timestamp of the frame in progress.
    current: Option<u32>,
    buf: Vec<u8>,
    /// The frame in progress lost something and will be dropped.
    broken: bool,
    /// No keyframe since the start or since the last loss.
    need_keyframe: bool,
}

impl<F: Format> Assembler<F> {
    pub(crate) fn new(format: F) -> Assembler<F> {
        Assembler {
            format,
            next_seq: None,
            current: None,
            buf: Vec::new(),
            broken: false,
            need_keyframe: true,
        }
    }

    fn step(&mut self, seq: u16) -> Step {
        let Some(next) = self.next_seq else {
            self.next_seq = Some(seq.wrapping_add(1));
            return Step::InOrder;
        };
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 && next.wrapping_sub(seq) <= MAX_REORDER {
            return Step::Late;
        }
        // Far behind is no reordering but a sender that restarted its numbering: follow it
        // (as a gap, so the frame in progress is dropped) rather than refuse it for ever.
        let ahead = if ahead >= 0x8000 { 0 } else { ahead };
        self.next_seq = Some(seq.wrapping_add(1));
        if seq == next {
            Step::InOrder
        } else {
            Step::Gap(ahead)
        }
    }

    /// Takes one packet; returns the frame it completes, if any. A frame completes at its
    /// marker bit, or when the next timestamp follows it with no gap (for senders that leave
    /// the marker out).
    pub(crate) fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<Frame>, PayloadError> {
        let step = self.step(seq);
        if step == Step::Late {
            return Err(PayloadError::Late { seq });
        }
        let mut ended = Ok(None);
        if self.current.is_some_and(|t| t != timestamp) {
            ended = if step == Step::InOrder {
                self.finish()
            } else {
                self.abandon();
                Ok(None)
            };
        }
        let first = self.current.is_none();
        let mut result = Ok(());
        if let Step::Gap(missing) = step {
            self.need_keyframe = true;
            // Unless this packet starts a keyframe afresh, its frame lost a part.
            if !(first && F::starts_keyframe(payload)) {
                self.broken = true;
            }
            result = Err(PayloadError::Gap { seq, missing });
        }
        self.current = Some(timestamp);
        if !self.broken {
            if let Err(e) = self.format.add(payload, first, &mut self.buf) {
                self.broken = true;
                self.need_keyframe = true;
                result = Err(match e {
                    PayloadError::Incomplete { .. } => PayloadError::Incomplete { timestamp },
                    e => e,
                });
            }
        }
        let done = if marker { self.finish() } else { Ok(None) };
        // One packet can end two frames only when a markerless frame is followed by a
        // one-packet frame; the later one wins, the earlier was already superseded.
        match (ended, done, result) {
            (_, Ok(Some(f)), _) => Ok(Some(f)),
            (Ok(Some(f)), _, _) => Ok(Some(f)),
            (_, _, Err(e)) => Err(e),
            (Err(e), _, _) | (_, Err(e), _) => Err(e),
            _ => Ok(None),
        }
    }

    /// Ends the frame in progress: the frame when it is whole and decodable.
    fn finish(&mut self) -> Result<Option<Frame>, PayloadError> {
        let Some(timestamp) = self.current.take() else {
            return Ok(None);
        };
        let whole = !self.broken && self.format.complete() && !self.buf.is_empty();
        let keyframe = self.format.keyframe();
        let data = std::mem::take(&mut self.buf);
        self.format.reset();
        self.broken = false;
        if !whole {
            // The loss was reported when it was seen.
            self.need_keyframe = true;
            return Ok(None);
        }
        if self.need_keyframe && !keyframe {
            return Err(PayloadError::NeedKeyframe { timestamp });
        }
        self.need_keyframe = false;
        Ok(Some(Frame {
            data,
            timestamp,
            keyframe,
        }))
    }

    /// Drops the frame in progress; the decoder needs a keyframe after it.
    fn abandon(&mut self) {
        if self.current.take().is_some() {
            self.need_keyframe = true;
        }
        self.buf.clear();
        self.format.reset();
        self.broken = false;
    }

    /// True while frames are dropped until a keyframe (the caller should ask for one).
    pub(crate) fn needs_keyframe(&self) -> bool {
        self.need_keyframe
    }
}
