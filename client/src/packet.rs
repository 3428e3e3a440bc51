//! RTP at the client edge: numbering outgoing packets and sorting incoming datagrams.
//!
//! Packets are built and parsed with the `rtp` crate (`rtc-rtp`); this module adds what the
//! client needs around it: random initial sequence number and timestamp, the marker on the
//! first packet, and the RFC 5761 RTP/RTCP demux with the extra checks (version 2) that
//! `rtc-rtp` leaves to its caller.

use bytes::Bytes;
use rtc_shared::marshal::{Marshal, Unmarshal};
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtp::header::Header;
use rtp::Packet;
use std::collections::HashMap;

/// The RFC 8285 one-byte extension id of the RFC 6464 audio level (what browsers offer
/// first, and what the media server reads).
pub const AUDIO_LEVEL_EXT_ID: u8 = 1;

/// The RFC 6464 level of a 16-bit PCM frame: (voice, -dBov 0..=127). Voice is a level of
/// 50 -dBov or louder, the media server's own threshold.
pub fn audio_level(pcm: &[i16]) -> (bool, u8) {
    if pcm.is_empty() {
        return (false, 127);
    }
    let mean_square = pcm
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / pcm.len() as f64;
    let dbov = if mean_square > 0.0 {
        10.0 * (mean_square / (32768.0 * 32768.0)).log10()
    } else {
        -127.0
    };
    let level = (-dbov).round().clamp(0.0, 127.0) as u8;
    (level <= 50, level)
}

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
        self.packet_with_level(payload, samples, None)
    }

    /// [`RtpSender::packet`] with the RFC 6464 client-to-mixer audio level of the frame
    /// (voice flag, level in -dBov) in a one-byte header extension with id
    /// [`AUDIO_LEVEL_EXT_ID`], which the media server reads for its speaking and level
    /// indicators without decoding.
    pub fn packet_with_level(
        &mut self,
        payload: &[u8],
        samples: u32,
        level: Option<(bool, u8)>,
    ) -> Vec<u8> {
        let mut header = Header {
            version: 2,
            marker: self.first,
            payload_type: self.payload_type,
            sequence_number: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            ..Header::default()
        };
        if let Some((voice, level)) = level {
            let byte = (u8::from(voice) << 7) | level.min(127);
            // Id 1 and one byte always fit the one-byte form (RFC 8285).
            header
                .set_extension(AUDIO_LEVEL_EXT_ID, Bytes::copy_from_slice(&[byte]))
                .expect("a one-byte extension with id 1 is valid");
        }
        let packet = Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        };
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        // A header without CSRCs and at most one valid extension always marshals.
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

/// What the client's receiver reports say about each stream it receives: the fraction
/// lost since the last report needs the counts at that report, kept here.
#[derive(Debug, Default)]
pub struct Reports {
    /// Per SSRC, (expected, received) at the last report.
    last: HashMap<u32, (u64, u64)>,
}

impl Reports {
    /// A receiver report (RFC 3550) from `sender_ssrc` about `streams`: (SSRC, expected,
    /// received, highest extended sequence number, jitter in RTP timestamp units). `None`
    /// when there is nothing to report.
    pub fn build(
        &mut self,
        sender_ssrc: u32,
        streams: &[(u32, u64, u64, u64, u32)],
    ) -> Option<Vec<u8>> {
        // At most 31 blocks fit one RR.
        let reports: Vec<ReceptionReport> = streams
            .iter()
            .take(31)
            .map(|&(ssrc, expected, received, highest, jitter)| {
                let (e0, r0) = self
                    .last
                    .insert(ssrc, (expected, received))
                    .unwrap_or((0, 0));
                let d_exp = expected.saturating_sub(e0);
                let d_lost = d_exp.saturating_sub(received.saturating_sub(r0));
                let fraction_lost = match d_exp {
                    0 => 0,
                    e => (d_lost * 256 / e).min(255) as u8,
                };
                ReceptionReport {
                    ssrc,
                    fraction_lost,
                    total_lost: expected.saturating_sub(received).min(0x7f_ffff) as u32,
                    last_sequence_number: highest as u32,
                    jitter,
                    last_sender_report: 0,
                    delay: 0,
                }
            })
            .collect();
        let live: Vec<u32> = streams.iter().map(|s| s.0).collect();
        self.last.retain(|ssrc, _| live.contains(ssrc));
        if reports.is_empty() {
            return None;
        }
        ReceiverReport {
            ssrc: sender_ssrc,
            reports,
            profile_extensions: Bytes::new(),
        }
        .marshal()
        .ok()
        .map(|b| b.to_vec())
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
    fn audio_level_rides_in_a_one_byte_extension() {
        let mut tx = RtpSender::with_start(111, 7, 1, 100);
        let bytes = tx.packet_with_level(&[1, 2, 3], 960, Some((true, 23)));
        // X bit, then 0xBEDE with one 32-bit word: id 1, length 0, V|23, padding.
        assert_eq!(bytes[0] & 0x10, 0x10);
        assert_eq!(&bytes[12..16], &[0xbe, 0xde, 0, 1]);
        assert_eq!(bytes[16], 0x10);
        assert_eq!(bytes[17], 0x80 | 23);
        let Datagram::Rtp(p) = classify(&bytes) else {
            panic!("not RTP")
        };
        assert_eq!(&p.payload[..], &[1, 2, 3]);
        assert_eq!(audio_level(&[0; 960]), (false, 127));
        // A -12 dBFS sine is 15 dB under full scale.
        let mut pcm = vec![0; 960];
        crate::tone::Sine::new(440.0, -12.0, 48_000).fill(&mut pcm);
        assert_eq!(audio_level(&pcm), (true, 15));
        crate::tone::Sine::new(440.0, -60.0, 48_000).fill(&mut pcm);
        assert!(!audio_level(&pcm).0);
    }

    #[test]
    fn receiver_reports_carry_the_loss_since_the_last_one() {
        let mut r = Reports::default();
        assert_eq!(r.build(9, &[]), None);
        let rr = r.build(9, &[(42, 100, 80, 1099, 480)]).unwrap();
        // RR header (PT 201, one block), then the block about SSRC 42.
        assert_eq!((rr[0] & 0x1f, rr[1]), (1, 201));
        assert_eq!(&rr[4..8], &9u32.to_be_bytes());
        assert_eq!(&rr[8..12], &42u32.to_be_bytes());
        assert_eq!(rr[12], (20 * 256 / 100) as u8);
        assert_eq!(&rr[13..16], &[0, 0, 20]);
        assert_eq!(&rr[16..20], &1099u32.to_be_bytes());
        assert_eq!(&rr[20..24], &480u32.to_be_bytes());
        // The next interval: 50 more expected, all received.
        let rr = r.build(9, &[(42, 150, 130, 1149, 0)]).unwrap();
        assert_eq!(rr[12], 0);
        assert_eq!(&rr[13..16], &[0, 0, 20]);
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
