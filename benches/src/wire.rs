//! What loadgen puts on the wire: RTP packets whose payload carries a probe (which stream,
//! which step of a sweep, a per-stream sequence and the send time), and the two datagrams
//! of the raw baseline's registration.
//!
//! After the 12-byte RTP header comes one codec byte, then the probe; the rest of the packet
//! is filler up to the configured size. The codec byte is what a server that looks into
//! payloads sees first: for video an H.264 NAL unit header (IDR slice on a keyframe's
//! packet, non-IDR slice otherwise), because the media server declares PT 96 as H.264 and
//! its reflector holds a receiver's video until a keyframe starts; for audio an Opus TOC
//! byte. The media server forwards RTP payloads unchanged in reflect mode, so the probe
//! comes back intact.

/// Marks a loadgen probe: "LGv1".
pub const MAGIC: u32 = 0x4c47_7631;
/// Fixed RTP header without CSRCs or extensions.
pub const RTP_HEADER: usize = 12;
/// The codec byte between the RTP header and the probe.
pub const CODEC_BYTE: usize = 1;
/// Probe bytes after the codec byte.
pub const PROBE_LEN: usize = 28;
/// The smallest packet that carries a probe.
pub const MIN_PACKET: usize = RTP_HEADER + CODEC_BYTE + PROBE_LEN;

/// H.264 NAL unit header of an IDR slice (F 0, NRI 3, type 5): a keyframe starts here.
pub const H264_IDR: u8 = 0x65;
/// H.264 NAL unit header of a non-IDR slice (F 0, NRI 2, type 1): a reference P frame, so
/// temporal thinning never drops it.
pub const H264_NON_IDR: u8 = 0x41;
/// Opus TOC byte (config 15: hybrid fullband 20 ms, mono, one frame).
pub const OPUS_TOC: u8 = 0x78;
/// Largest packet we build; one UDP datagram on loopback without fragmentation concerns.
pub const MAX_PACKET: usize = 9000;

/// Audio- or video-like stream; the index of the probe's `kind` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Audio),
            1 => Some(Kind::Video),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Kind::Audio => 0,
            Kind::Video => 1,
        }
    }

    /// RTP clock rate used for the header timestamp.
    pub fn clock_rate(self) -> u64 {
        match self {
            Kind::Audio => protocol::codec::OPUS.clock_rate.into(),
            Kind::Video => protocol::codec::VIDEO_CLOCK_RATE.into(),
        }
    }
}

/// The measurement fields of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Sweep step the packet belongs to; packets of a finished step are ignored.
    pub step: u16,
    pub kind: Kind,
    /// Global stream index (see [`crate::stats::Layout`]).
    pub stream: u32,
    /// Per-stream, per-step sequence starting at 0.
    pub seq: u64,
    /// Monotonic nanoseconds since loadgen started, taken just before the send call.
    pub send_ns: u64,
}

/// RTP header fields a sender keeps per SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHead {
    /// Last packet of a frame; every video-like packet is a whole frame (one NAL unit).
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Writes the RTP header, the codec byte (e.g. [`H264_IDR`]) and the probe into `buf`; the
/// filler after them is left as is, so a sender fills its buffer once and rewrites only the
/// first [`MIN_PACKET`] bytes.
pub fn write(buf: &mut [u8], head: &RtpHead, codec_byte: u8, probe: &Probe) {
    assert!(buf.len() >= MIN_PACKET, "packet too small for a probe");
    buf[0] = 0x80;
    buf[1] = (head.payload_type & 0x7f) | if head.marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&head.seq.to_be_bytes());
    buf[4..8].copy_from_slice(&head.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&head.ssrc.to_be_bytes());
    buf[RTP_HEADER] = codec_byte;
    let p = &mut buf[RTP_HEADER + CODEC_BYTE..MIN_PACKET];
    p[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    p[4..6].copy_from_slice(&probe.step.to_be_bytes());
    p[6] = probe.kind.byte();
    p[7] = 0;
    p[8..12].copy_from_slice(&probe.stream.to_be_bytes());
    p[12..20].copy_from_slice(&probe.seq.to_be_bytes());
    p[20..28].copy_from_slice(&probe.send_ns.to_be_bytes());
}

/// Reads the probe of a received datagram; `None` for anything loadgen did not send (RTCP,
/// other traffic, a truncated packet).
pub fn read(data: &[u8]) -> Option<Probe> {
    if data.len() < MIN_PACKET || data[0] >> 6 != 2 {
        return None;
    }
    // Skip CSRCs and a header extension, should a middlebox ever add them, then the codec
    // byte.
    let csrcs = usize::from(data[0] & 0x0f);
    let mut off = RTP_HEADER + 4 * csrcs;
    if data[0] & 0x10 != 0 {
        let ext = data.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    off += CODEC_BYTE;
    let p = data.get(off..off + PROBE_LEN)?;
    if u32::from_be_bytes(p[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    Some(Probe {
        step: u16::from_be_bytes([p[4], p[5]]),
        kind: Kind::from_byte(p[6])?,
        stream: u32::from_be_bytes(p[8..12].try_into().ok()?),
        seq: u64::from_be_bytes(p[12..20].try_into().ok()?),
        send_ns: u64::from_be_bytes(p[20..28].try_into().ok()?),
    })
}

/// Raw baseline registration, participant -> rawfwd: "put my address in conference `conf`".
pub const RAW_JOIN: &[u8; 8] = b"RAWJOIN\0";
/// rawfwd's answer, echoing the conference and participant.
pub const RAW_OK: &[u8; 8] = b"RAWOK\0\0\0";
/// Length of both registration datagrams.
pub const RAW_MSG_LEN: usize = 16;

/// A registration datagram (`tag` is [`RAW_JOIN`] or [`RAW_OK`]).
pub fn raw_msg(tag: &[u8; 8], conf: u32, participant: u32) -> [u8; RAW_MSG_LEN] {
    let mut m = [0u8; RAW_MSG_LEN];
    m[..8].copy_from_slice(tag);
    m[8..12].copy_from_slice(&conf.to_be_bytes());
    m[12..16].copy_from_slice(&participant.to_be_bytes());
    m
}

/// Parses a registration datagram with the given tag into (conference, participant).
pub fn parse_raw_msg(tag: &[u8; 8], data: &[u8]) -> Option<(u32, u32)> {
    if data.len() != RAW_MSG_LEN || &data[..8] != tag {
        return None;
    }
    Some((
        u32::from_be_bytes(data[8..12].try_into().ok()?),
        u32::from_be_bytes(data[12..16].try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe {
            step: 3,
            kind: Kind::Video,
            stream: 77,
            seq: 1 << 40,
            send_ns: 123_456_789,
        }
    }

    #[test]
    fn probe_round_trip() {
        let mut buf = vec![0xaa; 1200];
        let head = RtpHead {
            marker: false,
            payload_type: 111,
            seq: 65535,
            timestamp: 42,
            ssrc: 0xdead_beef,
        };
        write(&mut buf, &head, OPUS_TOC, &probe());
        assert_eq!(read(&buf), Some(probe()));
        assert_eq!(buf[1], 111);
        assert_eq!(&buf[8..12], &0xdead_beef_u32.to_be_bytes());
        assert_eq!(buf[RTP_HEADER], OPUS_TOC);
        assert_eq!(buf[MIN_PACKET], 0xaa, "filler untouched");
        assert_eq!(read(&buf[..MIN_PACKET]), Some(probe()));
    }

    #[test]
    fn video_looks_like_h264() {
        let mut buf = vec![0xaa; 1200];
        let head = RtpHead {
            marker: true,
            payload_type: 96,
            seq: 7,
            timestamp: 90_000,
            ssrc: 5,
        };
        write(&mut buf, &head, H264_IDR, &probe());
        assert_eq!(buf[1], 0x80 | 96, "marker and PT 96");
        // The payload's first byte is the NAL unit header: IDR, NRI 3.
        assert_eq!((buf[RTP_HEADER] & 0x1f, buf[RTP_HEADER] >> 5 & 3), (5, 3));
        assert_eq!(read(&buf), Some(probe()));
        write(&mut buf, &head, H264_NON_IDR, &probe());
        assert_eq!((buf[RTP_HEADER] & 0x1f, buf[RTP_HEADER] >> 5 & 3), (1, 2));
        assert_eq!(read(&buf), Some(probe()));
        // A CSRC added on the way moves the payload, and the probe is still found.
        let mut with_csrc = buf[..RTP_HEADER].to_vec();
        with_csrc[0] |= 1;
        with_csrc.extend_from_slice(&[0, 0, 0, 9]);
        with_csrc.extend_from_slice(&buf[RTP_HEADER..]);
        assert_eq!(read(&with_csrc), Some(probe()));
    }

    #[test]
    fn rejects_foreign_packets() {
        assert_eq!(read(&[]), None);
        let mut buf = [0u8; MIN_PACKET];
        write(
            &mut buf,
            &RtpHead {
                marker: false,
                payload_type: 111,
                seq: 0,
                timestamp: 0,
                ssrc: 1,
            },
            OPUS_TOC,
            &probe(),
        );
        let mut bad = buf;
        bad[RTP_HEADER + CODEC_BYTE] ^= 1;
        assert_eq!(read(&bad), None, "wrong magic");
        let mut bad = buf;
        bad[0] = 0x40;
        assert_eq!(read(&bad), None, "RTP version 1");
        assert_eq!(read(&buf[..MIN_PACKET - 1]), None, "truncated");
        // A CSRC count pushes the probe out of a packet that has no room for it.
        let mut bad = buf;
        bad[0] = 0x81;
        assert_eq!(read(&bad), None);
    }

    #[test]
    fn raw_messages() {
        let m = raw_msg(RAW_JOIN, 5, 9);
        assert_eq!(parse_raw_msg(RAW_JOIN, &m), Some((5, 9)));
        assert_eq!(parse_raw_msg(RAW_OK, &m), None);
        assert_eq!(parse_raw_msg(RAW_JOIN, &m[..15]), None);
    }
}
