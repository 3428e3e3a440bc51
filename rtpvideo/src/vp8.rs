//! VP8 over RTP (RFC 7741): the payload descriptor, a packetizer and a depacketizer.
//!
//! Every packet starts with a payload descriptor: S marks the start of a partition and PID
//! names it, the optional picture ID numbers frames, TL0PICIDX/TID/KEYIDX describe temporal
//! layers. The packetizer always sends a 15-bit picture ID (so a receiver can tell frames
//! apart and see loss across them) and starts a packet at the boundary between the first
//! partition (modes, motion vectors) and the token partition, as RFC 7741 section 4.3
//! recommends, so a lost token packet never takes the first partition with it. The `rtp`
//! crate's VP8 payloader knows neither, hence this one.

use bytes::{BufMut, BytesMut};
use rtp::packet::Packet;

use crate::assemble::{Assembler, Format};
use crate::out::Stream;
use crate::{Frame, PacketizerConfig, PayloadError};

fn malformed(what: &'static str) -> PayloadError {
    PayloadError::Malformed { codec: "VP8", what }
}

/// The fields of a VP8 payload descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Bytes the descriptor takes; the VP8 data follows.
    pub len: usize,
    /// N: no other frame references this one.
    pub non_reference: bool,
    /// S: the payload starts a partition.
    pub start: bool,
    /// PID: the partition the first payload byte belongs to.
    pub partition: u8,
    /// The 7- or 15-bit picture ID, when present (at byte 2).
    pub picture_id: Option<u16>,
    /// Whether the picture ID takes 15 bits (two bytes).
    pub long_picture_id: bool,
    /// TL0PICIDX, when present (after the picture ID).
    pub tl0_pic_idx: Option<u8>,
    /// The temporal layer (TID), when present.
    pub temporal_id: Option<u8>,
}

/// Where a descriptor keeps its picture ID.
pub const PICTURE_ID_AT: usize = 2;

impl Descriptor {
    /// Parses the descriptor at the start of `p`; `None` when it is cut short.
    pub fn parse(p: &[u8]) -> Option<Descriptor> {
        let b0 = *p.first()?;
        let mut d = Descriptor {
            len: 1,
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition: b0 & 0x07,
            picture_id: None,
            long_picture_id: false,
            tl0_pic_idx: None,
            temporal_id: None,
        };
        if b0 & 0x80 != 0 {
            let x = *p.get(1)?;
            d.len = 2;
            if x & 0x80 != 0 {
                // PictureID: 15 bits when its M bit is set.
                let m = *p.get(d.len)?;
                if m & 0x80 != 0 {
                    let lo = *p.get(d.len + 1)?;
                    d.picture_id = Some(u16::from_be_bytes([m & 0x7f, lo]));
                    d.long_picture_id = true;
                    d.len += 2;
                } else {
                    d.picture_id = Some(u16::from(m));
                    d.len += 1;
                }
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(*p.get(d.len)?);
                d.len += 1;
            }
            if x & 0x30 != 0 {
                let t = *p.get(d.len)?;
                if x & 0x20 != 0 {
                    d.temporal_id = Some(t >> 6);
                }
                d.len += 1;
            }
        }
        (d.len <= p.len()).then_some(d)
    }
}

/// Bytes of the descriptor this packetizer writes: X, I with a 15-bit picture ID.
const DESCRIPTOR_LEN: usize = 4;

/// Size of the first partition and where it starts: the frame tag (RFC 6386 section 9.1)
/// holds it, after 3 bytes (interframe) or 10 (key frame: start code and dimensions).
/// `None` for a frame too short to say.
pub fn first_partition_end(frame: &[u8]) -> Option<usize> {
    let [a, b, c, ..] = *frame else {
        return None;
    };
    let tag = u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16;
    let header = if tag & 1 == 0 { 10 } else { 3 };
    let size = (tag >> 5) as usize;
    let end = header + size;
    (end <= frame.len()).then_some(end)
}

/// True when a VP8 frame (no descriptor) is a key frame: bit 0 of its frame tag is 0.
pub fn is_key_frame(frame: &[u8]) -> bool {
    frame.first().is_some_and(|&b| b & 1 == 0)
}

/// Splits VP8 frames into RTP packets.
#[derive(Debug)]
pub struct Vp8Packetizer {
    stream: Stream,
    picture_id: u16,
}

impl Vp8Packetizer {
    /// `first_picture_id` numbers the first frame (15 bits; pick it at random).
    pub fn new(
        cfg: PacketizerConfig,
        first_picture_id: u16,
    ) -> Result<Vp8Packetizer, PayloadError> {
        cfg.max_payload(DESCRIPTOR_LEN)?;
        Ok(Vp8Packetizer {
            stream: Stream::new(cfg),
            picture_id: first_picture_id & 0x7fff,
        })
    }

    /// Appends the packets of one frame to `out`; the last one carries the marker bit.
    pub fn packetize(
        &mut self,
        frame: &[u8],
        timestamp: u32,
        out: &mut Vec<Packet>,
    ) -> Result<(), PayloadError> {
        if frame.is_empty() {
            return Err(PayloadError::EmptyFrame);
        }
        let max = self.stream.cfg.max_payload(DESCRIPTOR_LEN)?;
        // Partition 0 up to its end, then the token partition (libvpx makes one) as PID 1.
        let boundary = first_partition_end(frame).filter(|&e| e < frame.len());
        let mut at = 0;
        while at < frame.len() {
            let (partition, limit) = match boundary {
                Some(b) if at < b => (0, b),
                Some(_) => (1, frame.len()),
                None => (0, frame.len()),
            };
            let end = limit.min(at + max);
            let start = at == 0 || Some(at) == boundary;
            let mut p = BytesMut::with_capacity(DESCRIPTOR_LEN + end - at);
            p.put_u8(0x80 | if start { 0x10 } else { 0 } | partition);
            p.put_u8(0x80); // I: picture ID present
            p.put_u16(0x8000 | self.picture_id);
            p.put_slice(&frame[at..end]);
            out.push(
                self.stream
                    .packet(timestamp, end == frame.len(), p.freeze()),
            );
            at = end;
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        Ok(())
    }
}

/// Rebuilds VP8 frames from the packets of one SSRC, in arrival order.
#[derive(Debug)]
pub struct Vp8Depacketizer(Assembler<Vp8Format>);

impl Default for Vp8Depacketizer {
    fn default() -> Self {
        Vp8Depacketizer::new()
    }
}

impl Vp8Depacketizer {
    /// A depacketizer that waits for the first key frame.
    pub fn new() -> Vp8Depacketizer {
        Vp8Depacketizer(Assembler::new(Vp8Format::default()))
    }

    /// Takes one packet; returns the frame it completes, if any (see [`crate`] for the loss
    /// rules).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<Frame>, PayloadError> {
        self.0.push(seq, timestamp, marker, payload)
    }

    /// [`push`](Self::push) for a parsed packet.
    pub fn push_packet(&mut self, pkt: &Packet) -> Result<Option<Frame>, PayloadError> {
        let h = &pkt.header;
        self.0
            .push(h.sequence_number, h.timestamp, h.marker, &pkt.payload)
    }

    /// True while delta frames are dropped for want of a key frame: time to send a PLI.
    pub fn needs_keyframe(&self) -> bool {
        self.0.needs_keyframe()
    }
}

#[derive(Debug, Default)]
struct Vp8Format {
    keyframe: bool,
    picture_id: Option<u16>,
    partition: u8,
}

impl Format for Vp8Format {
    fn starts_keyframe(payload: &[u8]) -> bool {
        crate::keyframe::is_keyframe_start(crate::VideoCodec::Vp8, payload)
    }

    fn add(&mut self, p: &[u8], first: bool, buf: &mut Vec<u8>) -> Result<(), PayloadError> {
        let d = Descriptor::parse(p).ok_or_else(|| malformed("descriptor cut short"))?;
        let data = &p[d.len..];
        if data.is_empty() {
            return Err(malformed("no data after the descriptor"));
        }
        if first {
            // A frame begins with the start of partition 0; anything else lost its start.
            if !(d.start && d.partition == 0) {
                return Err(PayloadError::Incomplete { timestamp: 0 });
            }
            self.keyframe = is_key_frame(data);
            self.picture_id = d.picture_id;
        } else {
            if d.picture_id != self.picture_id {
                return Err(malformed("picture ID changes within a frame"));
            }
            if d.partition < self.partition || (d.start && d.partition == 0) {
                return Err(malformed("partitions out of order"));
            }
        }
        self.partition = d.partition;
        buf.extend_from_slice(data);
        Ok(())
    }

    fn complete(&self) -> bool {
        true
    }

    fn keyframe(&self) -> bool {
        self.keyframe
    }

    fn reset(&mut self) {
        *self = Vp8Format::default();
    }
}
