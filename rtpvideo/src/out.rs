//! The sending side shared by the packetizers: RTP headers, sequence numbers, size limits.

use bytes::Bytes;
use rtp::header::Header;
use rtp::packet::Packet;

use crate::PayloadError;

/// Bytes of a plain RTP header (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// Where and how a packetizer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketizerConfig {
    pub ssrc: u32,
    pub payload_type: u8,
    /// The sequence number of the first packet (RFC 3550 wants it random; the caller picks).
    pub first_seq: u16,
    /// The largest RTP packet to make, header included.
    pub mtu: usize,
}

impl PacketizerConfig {
    /// Payload bytes one packet can hold.
    pub(crate) fn max_payload(&self, descriptor: usize) -> Result<usize, PayloadError> {
        match self.mtu.checked_sub(RTP_HEADER_LEN + descriptor) {
            Some(n) if n >= 2 => Ok(n),
            _ => Err(PayloadError::Mtu(self.mtu)),
        }
    }
}

/// Numbers and stamps the packets of one stream.
#[derive(Clone, Debug)]
pub(crate) struct Stream {
    pub(crate) cfg: PacketizerConfig,
    seq: u16,
}

impl Stream {
    pub(crate) fn new(cfg: PacketizerConfig) -> Stream {
        Stream {
            cfg,
            seq: cfg.first_seq,
        }
    }

    pub(crate) fn packet(&mut self, timestamp: u32, marker: bool, payload: Bytes) -> Packet {
        let header = Header {
            version: 2,
            marker,
            payload_type: self.cfg.payload_type,
            sequence_number: self.seq,
            timestamp,
            ssrc: self.cfg.ssrc,
            ..Default::default()
        };
        self.seq = self.seq.wrapping_add(1);
        Packet { header, payload }
    }
}
