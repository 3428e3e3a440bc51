//! Zero-copy RTP header view (RFC 3550 section 5.1) and RTP/RTCP demux (RFC 5761).
//!
//! The hot path only needs a handful of header fields, so the view borrows the datagram and
//! decodes fields on demand instead of building an owned packet.

use crate::ParseError;

/// Fixed RTP header length: V/P/X/CC, M/PT, sequence, timestamp, SSRC.
pub const RTP_HEADER_LEN: usize = 12;

/// True when `data` is RTCP multiplexed on the RTP port (RFC 5761 section 4): version 2 and
/// the second byte with the marker bit cleared in 64..=95, i.e. RTCP packet types 192..=223.
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] >> 6 == 2 && (64..=95).contains(&(data[1] & 0x7f))
}

/// A validated RTP packet borrowed from a datagram.
///
/// Every length inside (CSRC list, header extension, padding) has been checked against the
/// buffer, so the accessors never panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpView<'a> {
    data: &'a [u8],
    /// Offset of the payload: fixed header + CSRCs + extension.
    payload_start: usize,
    /// Offset one past the payload: total length minus padding.
    payload_end: usize,
}

impl<'a> RtpView<'a> {
    /// Validates `data` as an RTP packet.
    pub fn parse(data: &'a [u8]) -> Result<Self, ParseError> {
        if data.len() < RTP_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(ParseError::BadVersion(version));
        }
        let csrc_count = usize::from(data[0] & 0x0f);
        let mut pos = RTP_HEADER_LEN + 4 * csrc_count;
        if pos > data.len() {
            return Err(ParseError::Truncated);
        }
        if data[0] & 0x10 != 0 {
            // Extension header: 16-bit profile, 16-bit length in 32-bit words.
            if pos + 4 > data.len() {
                return Err(ParseError::Truncated);
            }
            let words = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
            pos += 4 + 4 * words;
            if pos > data.len() {
                return Err(ParseError::Truncated);
            }
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            // The last octet counts the padding octets, itself included, so 0 is invalid.
            let pad = usize::from(data[data.len() - 1]);
            if pad == 0 || pad > end - pos {
                return Err(ParseError::BadPadding);
            }
            end -= pad;
        }
        Ok(Self {
            data,
            payload_start: pos,
            payload_end: end,
        })
    }

    /// The whole datagram, header included, as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Never true for a parsed packet (the header alone is 12 bytes); here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// RTP version; always 2 after a successful parse.
    pub fn version(&self) -> u8 {
        self.data[0] >> 6
    }

    pub fn has_padding(&self) -> bool {
        self.data[0] & 0x20 != 0
    }

    pub fn has_extension(&self) -> bool {
        self.data[0] & 0x10 != 0
    }

    pub fn csrc_count(&self) -> u8 {
        self.data[0] & 0x0f
    }

    pub fn marker(&self) -> bool {
        self.data[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.data[1] & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.data[2], self.data[3]])
    }

    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.data[4], self.data[5], self.data[6], self.data[7]])
    }

    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.data[8], self.data[9], self.data[10], self.data[11]])
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = RTP_HEADER_LEN + 4 * usize::from(self.csrc_count());
        self.data[RTP_HEADER_LEN..end]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Header extension as (profile, body), body being a whole number of 32-bit words.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if !self.has_extension() {
            return None;
        }
        let at = RTP_HEADER_LEN + 4 * usize::from(self.csrc_count());
        let profile = u16::from_be_bytes([self.data[at], self.data[at + 1]]);
        Some((profile, &self.data[at + 4..self.payload_start]))
    }

    /// Length of the header: fixed part, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        self.payload_start
    }

    /// The payload without header and padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.data[self.payload_start..self.payload_end]
    }

    /// Number of padding octets at the end (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        self.data.len() - self.payload_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u8, second: u8) -> Vec<u8> {
        let mut v = vec![first, second, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef];
        v.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        v
    }

    #[test]
    fn parses_plain_packet() {
        let mut d = header(0x80, 0x80 | 111);
        d.extend_from_slice(b"hello");
        let p = RtpView::parse(&d).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 111);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.padding_len(), 0);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.as_bytes(), &d[..]);
        assert_eq!(p.len(), 17);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        // 2 CSRCs, extension with one word, 3 bytes padding.
        let mut d = header(0x80 | 0x20 | 0x10 | 2, 96);
        d.extend_from_slice(&7u32.to_be_bytes());
        d.extend_from_slice(&8u32.to_be_bytes());
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        d.extend_from_slice(b"xy");
        d.extend_from_slice(&[0, 0, 3]);
        let p = RtpView::parse(&d).unwrap();
        assert!(p.has_padding() && p.has_extension());
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(p.extension(), Some((0xbede, &[0x10, 0xaa, 0, 0][..])));
        assert_eq!(p.header_len(), 12 + 8 + 8);
        assert_eq!(p.payload(), b"xy");
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn padding_may_fill_whole_body() {
        let mut d = header(0xa0, 0);
        d.extend_from_slice(&[0, 0, 0, 4]);
        let p = RtpView::parse(&d).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(p.padding_len(), 4);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(RtpView::parse(&[]), Err(ParseError::Truncated));
        assert_eq!(RtpView::parse(&[0x80; 11]), Err(ParseError::Truncated));
        assert_eq!(
            RtpView::parse(&header(0x40, 0)),
            Err(ParseError::BadVersion(1))
        );
        // CSRC count beyond the buffer.
        assert_eq!(RtpView::parse(&header(0x81, 0)), Err(ParseError::Truncated));
        // Extension bit but no extension header.
        assert_eq!(RtpView::parse(&header(0x90, 0)), Err(ParseError::Truncated));
        // Extension length beyond the buffer.
        let mut d = header(0x90, 0);
        d.extend_from_slice(&[0xbe, 0xde, 0, 2, 0, 0, 0, 0]);
        assert_eq!(RtpView::parse(&d), Err(ParseError::Truncated));
        // Padding count of 0, and padding longer than the body.
        let mut d = header(0xa0, 0);
        d.push(0);
        assert_eq!(RtpView::parse(&d), Err(ParseError::BadPadding));
        let mut d = header(0xa0, 0);
        d.extend_from_slice(&[1, 3]);
        assert_eq!(RtpView::parse(&d), Err(ParseError::BadPadding));
        // Padding bit with nothing after the header.
        assert_eq!(
            RtpView::parse(&header(0xa0, 0)),
            Err(ParseError::BadPadding)
        );
    }

    #[test]
    fn every_prefix_and_bit_pattern_is_safe() {
        // Exhaustive over the first byte and all truncations of a busy packet: no panics,
        // and accessors of any accepted view stay in bounds.
        let mut body = header(0, 0);
        body.extend_from_slice(&[0xff; 40]);
        for first in 0..=255u8 {
            body[0] = first;
            for len in 0..=body.len() {
                if let Ok(p) = RtpView::parse(&body[..len]) {
                    let _ = (
                        p.csrcs().count(),
                        p.extension(),
                        p.payload(),
                        p.padding_len(),
                    );
                    assert!(p.header_len() + p.payload().len() + p.padding_len() == len);
                }
            }
        }
    }

    #[test]
    fn rtcp_demux() {
        // SR (200), RR (201), and the edges of the RFC 5761 range.
        for pt in [192u8, 200, 201, 223] {
            assert!(is_rtcp(&[0x80, pt, 0, 6]), "pt {pt}");
        }
        // RTP payload types 0..=127 with or without marker stay RTP except 64..=95.
        for b in [0u8, 96, 111, 127, 0x80 | 96, 0x80 | 35, 224] {
            assert!(!is_rtcp(&[0x80, b, 0, 0]), "byte {b}");
        }
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[0x40, 200]));
    }
}
