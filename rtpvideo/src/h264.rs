//! H.264 over RTP (RFC 6184, packetization-mode 1): single NAL unit packets, STAP-A
//! aggregates and FU-A fragments.
//!
//! The packetizer leaves the splitting to the `rtp` crate's payloader (parameter sets go
//! out in one STAP-A ahead of the slice, large NAL units as FU-A) and adds the RTP headers.
//! The depacketizer rebuilds an Annex-B access unit per timestamp for a decoder, and is
//! strict about loss: a frame missing a packet is dropped, and after a loss nothing but a
//! keyframe comes out, because a decoder fed a delta frame on a broken reference shows
//! garbage until the next IDR.

use bytes::Bytes;
use rtp::codec::h264::H264Payloader;
use rtp::packet::Packet;
use rtp::packetizer::Payloader;

use crate::assemble::{Assembler, Format};
use crate::keyframe::{self, VideoCodec};
use crate::out::Stream;
use crate::{Frame, PacketizerConfig, PayloadError};

/// NAL unit types this module cares about (RFC 6184 section 5.2, H.264 table 7-1).
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_STAP_A: u8 = 24;
pub const NAL_FU_A: u8 = 28;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

fn malformed(what: &'static str) -> PayloadError {
    PayloadError::Malformed {
        codec: "H.264",
        what,
    }
}

/// Splits Annex-B access units into RTP packets.
#[derive(Debug)]
pub struct H264Packetizer {
    stream: Stream,
    payloader: H264Payloader,
}

impl H264Packetizer {
    pub fn new(cfg: PacketizerConfig) -> Result<H264Packetizer, PayloadError> {
        // FU-A needs two bytes of header; below that nothing fits.
        cfg.max_payload(2)?;
        Ok(H264Packetizer {
            stream: Stream::new(cfg),
            payloader: H264Payloader::default(),
        })
    }

    /// Appends the packets of one access unit (Annex-B, as encoders write it) to `out`; the
    /// last one carries the marker bit.
    pub fn packetize(
        &mut self,
        access_unit: &[u8],
        timestamp: u32,
        out: &mut Vec<Packet>,
    ) -> Result<(), PayloadError> {
        let mtu = self.stream.cfg.mtu - crate::RTP_HEADER_LEN;
        let payloads = self
            .payloader
            .payload(mtu, &Bytes::copy_from_slice(access_unit))
            .map_err(|_| malformed("payloader refused the access unit"))?;
        if payloads.is_empty() {
            return Err(PayloadError::EmptyFrame);
        }
        let last = payloads.len() - 1;
        out.extend(
            payloads
                .into_iter()
                .enumerate()
                .map(|(i, p)| self.stream.packet(timestamp, i == last, p)),
        );
        Ok(())
    }
}

/// Rebuilds Annex-B access units from the packets of one SSRC, in arrival order.
#[derive(Debug)]
pub struct H264Depacketizer(Assembler<H264Format>);

impl Default for H264Depacketizer {
    fn default() -> Self {
        H264Depacketizer::new()
    }
}

impl H264Depacketizer {
    /// A depacketizer that waits for the first keyframe.
    pub fn new() -> H264Depacketizer {
        H264Depacketizer(Assembler::new(H264Format::default()))
    }

    /// Takes one packet; returns the access unit it completes, if any (see [`crate`] for
    /// the loss rules).
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

    /// True while delta frames are dropped for want of a keyframe: time to send a PLI.
    pub fn needs_keyframe(&self) -> bool {
        self.0.needs_keyframe()
    }
}

#[derive(Debug, Default)]
struct H264Format {
    keyframe: bool,
    /// A FU-A fragment started and has not ended.
    in_fu: bool,
}

impl H264Format {
    fn nal(&mut self, unit: &[u8], buf: &mut Vec<u8>) {
        self.keyframe |= unit[0] & 0x1f == NAL_IDR;
        buf.extend_from_slice(&START_CODE);
        buf.extend_from_slice(unit);
    }
}

impl Format for H264Format {
    fn starts_keyframe(payload: &[u8]) -> bool {
        keyframe::is_keyframe_start(VideoCodec::H264, payload)
    }

    fn add(&mut self, p: &[u8], _first: bool, buf: &mut Vec<u8>) -> Result<(), PayloadError> {
        let Some(&head) = p.first() else {
            return Err(malformed("empty payload"));
        };
        if head & 0x80 != 0 {
            return Err(malformed("forbidden zero bit set"));
        }
        match head & 0x1f {
            0 | 30 | 31 => Err(malformed("reserved NAL unit type")),
            1..=23 => {
                if self.in_fu {
                    return Err(malformed("NAL unit inside an unfinished FU-A"));
                }
                self.nal(p, buf);
                Ok(())
            }
            NAL_STAP_A => {
                if self.in_fu {
                    return Err(malformed("STAP-A inside an unfinished FU-A"));
                }
                // Check every unit before copying any, so a bad one leaves nothing behind.
                let mut units = 0;
                let mut rest = &p[1..];
                while !rest.is_empty() {
                    let [a, b, tail @ ..] = rest else {
                        return Err(malformed("STAP-A size cut short"));
                    };
                    let size = usize::from(u16::from_be_bytes([*a, *b]));
                    if size == 0 || size > tail.len() {
                        return Err(malformed("STAP-A unit size out of range"));
                    }
                    if tail[0] & 0x80 != 0 || matches!(tail[0] & 0x1f, 0 | 24..=31) {
                        return Err(malformed("STAP-A unit of a forbidden type"));
                    }
                    rest = &tail[size..];
                    units += 1;
                }
                if units == 0 {
                    return Err(malformed("empty STAP-A"));
                }
                let mut rest = &p[1..];
                while let [a, b, tail @ ..] = rest {
                    let size = usize::from(u16::from_be_bytes([*a, *b]));
                    let (unit, next) = tail.split_at(size);
                    self.nal(unit, buf);
                    rest = next;
                }
                Ok(())
            }
            NAL_FU_A => {
                let [_, fu, data @ ..] = p else {
                    return Err(malformed("FU-A header cut short"));
                };
                let (start, end, t) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1f);
                if start && end {
                    return Err(malformed("FU-A with both start and end bits"));
                }
                if start {
                    if self.in_fu {
                        return Err(malformed("FU-A start inside an unfinished FU-A"));
                    }
                    if matches!(t, 0 | 24..=31) {
                        return Err(malformed("FU-A carries a forbidden type"));
                    }
                    buf.extend_from_slice(&START_CODE);
                    // The NAL header: F and NRI from the indicator, the type from the FU header.
                    buf.push((head & 0xe0) | t);
                    self.keyframe |= t == NAL_IDR;
                    self.in_fu = true;
                } else if !self.in_fu {
                    // Joined mid-NAL (or its start was lost): nothing to attach it to.
                    return Err(PayloadError::Incomplete { timestamp: 0 });
                }
                buf.extend_from_slice(data);
                if end {
                    self.in_fu = false;
                }
                Ok(())
            }
            t => Err(PayloadError::Unsupported(t)),
        }
    }

    fn complete(&self) -> bool {
        !self.in_fu
    }

    fn keyframe(&self) -> bool {
        self.keyframe
    }

    fn reset(&mut self) {
        *self = H264Format::default();
    }
}
