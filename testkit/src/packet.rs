//! RTP and RTCP packets as the tests send them.
//!
//! Well-formed packets are written by the webrtc-rs crates (`rtp`, `rtcp`), so the mesh's
//! own parsers and writers are checked against an independent implementation; a test that
//! needs malformed input takes the bytes and breaks them by hand.
//!
//! ```
//! use testkit::packet::{vp8, Rtp};
//!
//! let key = Rtp::new(0x5001).pt(96).seq(7).ts(3000).payload(&vp8(true, true, None)).size(1000).build();
//! assert_eq!((key.len(), key[12], key[13]), (1000, 0x10, 0x50));
//! ```

use bytes::Bytes;
use rtc_shared::marshal::Marshal;
use rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtcp::receiver_report::ReceiverReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtp::header::Header;
use rtp::packet::Packet;

/// One report block of an SR or RR.
pub use rtcp::reception_report::ReceptionReport as ReportBlock;

/// Size of the fixed RTP header.
pub const RTP_HEADER: usize = 12;

/// What fills a packet past its payload up to [`Rtp::size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    Byte(u8),
    /// Byte `i` of the packet is `i ^ ssrc ^ seq`, so a corrupted or mixed-up copy shows.
    Tagged,
}

/// An RTP packet to build: version 2, payload type 96, sequence number and timestamp 0 until
/// set.
#[derive(Clone, Debug)]
pub struct Rtp {
    header: Header,
    payload: Vec<u8>,
    size: usize,
    fill: Fill,
}

impl Rtp {
    pub fn new(ssrc: u32) -> Rtp {
        Rtp {
            header: Header {
                version: 2,
                payload_type: 96,
                ssrc,
                ..Header::default()
            },
            payload: Vec::new(),
            size: 0,
            fill: Fill::Byte(0xab),
        }
    }

    pub fn pt(mut self, pt: u8) -> Rtp {
        self.header.payload_type = pt;
        self
    }

    pub fn seq(mut self, seq: u16) -> Rtp {
        self.header.sequence_number = seq;
        self
    }

    pub fn ts(mut self, ts: u32) -> Rtp {
        self.header.timestamp = ts;
        self
    }

    pub fn marker(mut self, marker: bool) -> Rtp {
        self.header.marker = marker;
        self
    }

    /// An RFC 6464 audio level (0 loudest, 127 silence, no voice flag) in a one-byte header
    /// extension (RFC 8285) under `id`.
    pub fn audio_level(mut self, id: u8, level: u8) -> Rtp {
        // The first extension of up to 16 bytes picks the one-byte form.
        self.header
            .set_extension(id, Bytes::copy_from_slice(&[level & 0x7f]))
            .expect("a one-byte extension id is 1..=14");
        self
    }

    /// The first bytes of the payload (a codec's descriptor, an encoded frame).
    pub fn payload(mut self, bytes: &[u8]) -> Rtp {
        self.payload = bytes.to_vec();
        self
    }

    /// The whole packet's size in bytes, header included: the payload is filled up to it.
    /// A packet is never cut shorter than its header and payload.
    pub fn size(mut self, size: usize) -> Rtp {
        self.size = size;
        self
    }

    /// The byte the payload is filled up with (0xab unless set).
    pub fn fill(mut self, byte: u8) -> Rtp {
        self.fill = Fill::Byte(byte);
        self
    }

    /// Fills with bytes that tell the packet's position, SSRC and sequence number, so a test
    /// can see that a forwarded copy is intact and not another packet's.
    pub fn tagged(mut self) -> Rtp {
        self.fill = Fill::Tagged;
        self
    }

    /// The packet's bytes.
    pub fn build(&self) -> Vec<u8> {
        let packet = Packet {
            header: self.header.clone(),
            payload: Bytes::copy_from_slice(&self.payload),
        };
        let mut v = packet.marshal().expect("a valid header").to_vec();
        let (ssrc, seq) = (self.header.ssrc, u32::from(self.header.sequence_number));
        for i in v.len()..self.size {
            v.push(match self.fill {
                Fill::Byte(b) => b,
                Fill::Tagged => (i as u32 ^ ssrc ^ seq) as u8,
            });
        }
        v
    }
}

/// The plainest RTP packet: payload type 96, `size` bytes in all.
pub fn rtp(ssrc: u32, seq: u16, ts: u32, size: usize) -> Vec<u8> {
    Rtp::new(ssrc).seq(seq).ts(ts).size(size).build()
}

/// The start of a VP8 payload (RFC 7741): the payload descriptor, with S set on a frame's
/// first packet and, with `tid`, the X and T bits and the temporal layer index; then the
/// first byte of the VP8 payload header, whose P bit is clear on keyframes.
pub fn vp8(start: bool, key: bool, tid: Option<u8>) -> Vec<u8> {
    let s = if start { 0x10 } else { 0 };
    let p = if key { 0x50 } else { 0x51 };
    match tid {
        Some(t) => vec![0x80 | s, 0x20, (t & 3) << 6, p],
        None => vec![s, p],
    }
}

/// H.264 payloads (RFC 6184).
pub mod h264 {
    use bytes::Bytes;
    use rtp::codec::h264::H264Payloader;
    use rtp::packetizer::Payloader;

    /// NAL unit types.
    pub const NON_IDR: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;

    /// A slice's NAL unit header: an IDR slice (type 5, NRI 3, a keyframe start) or a
    /// non-IDR reference slice (type 1, NRI 2).
    pub fn slice(key: bool) -> u8 {
        if key {
            0x60 | IDR
        } else {
            0x40 | NON_IDR
        }
    }

    /// The two FU-A bytes of one fragment of a slice: the indicator (the slice's NRI, type
    /// 28) and the header (start, end, the slice's type).
    pub fn fu_a(key: bool, start: bool, end: bool) -> [u8; 2] {
        let nal = slice(key);
        let se = if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 };
        [(nal & 0x60) | FU_A, se | (nal & 0x1f)]
    }

    /// A STAP-A aggregating `nalus`, each with its 16-bit size; its NRI is the highest of
    /// theirs.
    pub fn stap_a(nalus: &[&[u8]]) -> Vec<u8> {
        let nri = nalus
            .iter()
            .filter_map(|n| n.first())
            .map(|b| b & 0x60)
            .max();
        let mut v = vec![nri.unwrap_or(0) | STAP_A];
        for n in nalus {
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    /// The payloads of one access unit as an encoder's packetizer sends it: a keyframe is a
    /// STAP-A with a (made-up) SPS and PPS, then an IDR slice; a delta frame a non-IDR slice.
    /// The slice is `size` bytes and goes as FU-A fragments when it exceeds `mtu`.
    pub fn frame(key: bool, size: usize, mtu: usize) -> Vec<Vec<u8>> {
        const START: [u8; 4] = [0, 0, 0, 1];
        let mut annex_b = Vec::new();
        if key {
            for nal in [
                &[0x67, 0x42, 0xc0, 0x1f, 0xda][..],
                &[0x68, 0xce, 0x3c, 0x80],
            ] {
                annex_b.extend_from_slice(&START);
                annex_b.extend_from_slice(nal);
            }
        }
        annex_b.extend_from_slice(&START);
        annex_b.push(slice(key));
        // No zero bytes, so no start code can appear inside the slice.
        annex_b.resize(annex_b.len() + size.max(2) - 1, 0x5a);
        H264Payloader::default()
            .payload(mtu, &Bytes::from(annex_b))
            .expect("an Annex B access unit")
            .into_iter()
            .map(|p| p.to_vec())
            .collect()
    }

    /// An RTP packet (payload type `pt`, marker set) holding one whole frame: an IDR or a
    /// non-IDR slice whose payload carries `mark` and the original sequence number, so a
    /// test can tell which encoding and packet a forwarded copy came from.
    pub fn marked(
        pt: u8,
        ssrc: u32,
        seq: u16,
        ts: u32,
        key: bool,
        mark: u8,
        len: usize,
    ) -> Vec<u8> {
        let [hi, lo] = seq.to_be_bytes();
        super::Rtp::new(ssrc)
            .pt(pt)
            .marker(true)
            .seq(seq)
            .ts(ts)
            .payload(&[slice(key), mark, hi, lo])
            .size(len.max(16))
            .fill(0x5a)
            .build()
    }
}

fn marshal(p: &impl Marshal) -> Vec<u8> {
    p.marshal()
        .expect("an RTCP packet the tests build")
        .to_vec()
}

/// A sender report with `blocks` (RFC 3550).
pub fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    blocks: &[ReportBlock],
) -> Vec<u8> {
    marshal(&SenderReport {
        ssrc,
        ntp_time: ntp,
        rtp_time: rtp_ts,
        packet_count: packets,
        octet_count: octets,
        reports: blocks.to_vec(),
        profile_extensions: Bytes::new(),
    })
}

/// A receiver report with `blocks` (RFC 3550).
pub fn receiver_report(ssrc: u32, blocks: &[ReportBlock]) -> Vec<u8> {
    marshal(&ReceiverReport {
        ssrc,
        reports: blocks.to_vec(),
        profile_extensions: Bytes::new(),
    })
}

/// An SDES with one chunk: `ssrc`'s CNAME.
pub fn sdes(ssrc: u32, cname: &str) -> Vec<u8> {
    marshal(&SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: ssrc,
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::copy_from_slice(cname.as_bytes()),
            }],
        }],
    })
}

/// A generic NACK (RFC 4585) from `sender` for `lost` packets of `media`, packed into
/// (PID, bitmask) pairs; `lost` in ascending order packs tightest.
pub fn nack(sender: u32, media: u32, lost: &[u16]) -> Vec<u8> {
    marshal(&TransportLayerNack {
        sender_ssrc: sender,
        media_ssrc: media,
        nacks: nack_pairs_from_sequence_numbers(lost),
    })
}

/// A picture loss indication (RFC 4585).
pub fn pli(sender: u32, media: u32) -> Vec<u8> {
    marshal(&PictureLossIndication {
        sender_ssrc: sender,
        media_ssrc: media,
    })
}

/// A full intra request (RFC 5104) for `media` with command sequence number `seq`.
pub fn fir(sender: u32, media: u32, seq: u8) -> Vec<u8> {
    marshal(&FullIntraRequest {
        sender_ssrc: sender,
        media_ssrc: 0,
        fir: vec![FirEntry {
            ssrc: media,
            sequence_number: seq,
        }],
    })
}

/// A receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb) for `ssrcs`.
pub fn remb(sender: u32, bits_per_sec: u64, ssrcs: &[u32]) -> Vec<u8> {
    marshal(&ReceiverEstimatedMaximumBitrate {
        sender_ssrc: sender,
        bitrate: bits_per_sec as f32,
        ssrcs: ssrcs.to_vec(),
    })
}

/// RTCP packets sent as one compound datagram.
pub fn compound(packets: &[Vec<u8>]) -> Vec<u8> {
    packets.concat()
}
