//! RTP at the client edge: numbering outgoing packets and sorting incoming datagrams.
//!
//! Packets are built and parsed with the `rtp` crate (`rtc-rtp`); this module adds what the
//! client needs around it: random initial sequence number and timestamp, the marker on the
//! first packet, and the RFC 5761 RTP/RTCP demux with the extra checks (version 2) that
//! `rtc-rtp` leaves to its caller.

use bytes::Bytes;
use rtc_shared::marshal::{Marshal, Unmarshal};
use rtp::header::Header;
use rtp::Packet;

/// The sending side of one RTP stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    first: bool,
}

impl RtpSender {
    /// A stream with random initial sequence number and timestamp (RFC 3550 section 5.1).
    pub fn new(payload_type: u8, ssrc: u32) -> Self {
        Self::with_start(payload_type, ssrc, rand::random(), rand::random())
    }

    /// A stream with a chosen start, for tests.
    pub fn with_start(payload_type: u8, ssrc: u32, seq: u16, timestamp: u32) -> Self {
        RtpSender {
            payload_type,
            ssrc,
            seq,
            timestamp,
            first: true,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Builds the next packet carrying `payload`, covering `samples` of media time.
    pub fn packet(&mut self, payload: &[u8], samples: u32) -> Vec<u8> {
        let packet = Packet {
            header: Header {
                version: 2,
                marker: self.first,
                payload_type: self.payload_type,
                sequence_number: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Header::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        // A plain header (no CSRC, no extensions) into a Vec sized by the crate cannot fail.
        packet
            .marshal()
            .map(|b| b.to_vec())
            .expect("a plain RTP header always marshals")
    }

    /// Marks the next packet as the start of a talkspurt (RTP marker bit).
    pub fn talkspurt(&mut self) {
        self.first = true;
    }

    /// Advances the timestamp without sending (the sender stalled and skips frames), so
    /// timestamps keep matching wall-clock time; the sequence number is untouched because
    /// no packet was lost.
    pub fn advance_time(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

/// An RTP packet as the receiver needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpIn {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Bytes,
}

/// What one received datagram turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    Rtp(RtpIn),
    /// RTCP (RFC 5761 demux); the client ignores it.
    Rtcp,
    /// Not a usable RTP packet; the reason is for logs.
    Malformed(&'static str),
}

/// Sorts a datagram into RTP, RTCP or garbage. Never panics.
pub fn classify(data: &[u8]) -> Datagram {
    if data.len() < 12 {
        return Datagram::Malformed("shorter than an RTP header");
    }
    if data[0] >> 6 != 2 {
        return Datagram::Malformed("not RTP version 2");
    }
    if (64..=95).contains(&(data[1] & 0x7f)) {
        return Datagram::Rtcp;
    }
    let mut buf = Bytes::copy_from_slice(data);
    match Packet::unmarshal(&mut buf) {
        Ok(p) if p.payload.is_empty() => Datagram::Malformed("empty payload"),
        Ok(p) => Datagram::Rtp(RtpIn {
            payload_type: p.header.payload_type,
            marker: p.header.marker,
            seq: p.header.sequence_number,
            timestamp: p.header.timestamp,
            ssrc: p.header.ssrc,
            payload: p.payload,
        }),
        Err(_) => Datagram::Malformed("bad RTP header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_packets_and_marks_the_first() {
        let mut tx = RtpSender::with_start(111, 0xdead_beef, 65_535, u32::MAX - 100);
        let a = tx.packet(&[1, 2, 3], 960);
        let b = tx.packet(&[4, 5], 960);
        let Datagram::Rtp(a) = classify(&a) else {
            panic!("not RTP")
        };
        let Datagram::Rtp(b) = classify(&b) else {
            panic!("not RTP")
        };
        assert_eq!(
            (a.payload_type, a.marker, a.seq, a.timestamp, a.ssrc),
            (111, true, 65_535, u32::MAX - 100, 0xdead_beef)
        );
        assert_eq!(&a.payload[..], &[1, 2, 3]);
        assert_eq!((b.marker, b.seq, b.timestamp), (false, 0, 859));
        assert_eq!(&b.payload[..], &[4, 5]);
    }

    #[test]
    fn demuxes_rtcp_and_rejects_garbage() {
        // An RTCP receiver report header: V=2, PT=201.
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(classify(&rr), Datagram::Rtcp);
        assert!(matches!(classify(&[0x80; 5]), Datagram::Malformed(_)));
        assert!(matches!(classify(&[0x40; 20]), Datagram::Malformed(_)));
        // Header only, no payload.
        let mut tx = RtpSender::with_start(111, 1, 0, 0);
        let p = tx.packet(&[], 960);
        assert!(matches!(classify(&p), Datagram::Malformed(_)));
        // CSRC count claiming more than is there.
        let mut p = tx.packet(&[9; 4], 960);
        p[0] |= 0x0f;
        assert!(matches!(classify(&p), Datagram::Malformed(_)));
        // Padding longer than the payload.
        let mut p = tx.packet(&[9; 4], 960);
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200;
        assert!(matches!(classify(&p), Datagram::Malformed(_)));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator keeps the test reproducible.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = data.first_mut() {
                // Mostly version 2, to get past the first check and into the parser.
                *b = (*b & 0x3f) | 0x80;
            }
            let _ = classify(&data);
        }
    }
}
