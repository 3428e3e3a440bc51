//! The RTP codecs of the NOC: payload types, clock rates and SDP names, in one table.
//!
//! The media server announces these in `channel` lines, the transcoder reads a source's
//! codec from its payload type, and confclient writes them into SDP for ffmpeg and
//! GStreamer. They must agree to the byte, so every one of them reads this table.

use crate::MediaKind;

/// One codec as it appears on the wire and in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpCodec {
    /// The name in `join codec=`/`vcodec=` and in `channel` lines (lower case).
    pub name: &'static str,
    pub kind: MediaKind,
    pub payload_type: u8,
    /// RTP timestamp ticks per second.
    pub clock_rate: u32,
    /// The encoding name of SDP's `a=rtpmap`.
    pub encoding: &'static str,
    /// Channels in `a=rtpmap`, where the RFC asks for them.
    pub channels: Option<u8>,
    /// SDP's `a=fmtp` parameters.
    pub fmtp: Option<&'static str>,
}

/// Opus; RFC 7587 declares it as two channels whatever is sent.
pub const OPUS: RtpCodec = RtpCodec {
    name: "opus",
    kind: MediaKind::Audio,
    payload_type: 111,
    clock_rate: 48_000,
    encoding: "opus",
    channels: Some(2),
    fmtp: None,
};
/// G.711 mu-law (static payload type, RFC 3551).
pub const PCMU: RtpCodec = RtpCodec {
    name: "pcmu",
    kind: MediaKind::Audio,
    payload_type: 0,
    clock_rate: 8_000,
    encoding: "PCMU",
    channels: None,
    fmtp: None,
};
/// G.711 A-law (static payload type, RFC 3551).
pub const PCMA: RtpCodec = RtpCodec {
    name: "pcma",
    kind: MediaKind::Audio,
    payload_type: 8,
    clock_rate: 8_000,
    encoding: "PCMA",
    channels: None,
    fmtp: None,
};
/// H.264, non-interleaved mode (RFC 6184).
pub const H264: RtpCodec = RtpCodec {
    name: "h264",
    kind: MediaKind::Video,
    payload_type: 96,
    clock_rate: VIDEO_CLOCK_RATE,
    encoding: "H264",
    channels: None,
    fmtp: Some("packetization-mode=1"),
};
/// VP8 (RFC 7741).
pub const VP8: RtpCodec = RtpCodec {
    name: "vp8",
    kind: MediaKind::Video,
    payload_type: 97,
    clock_rate: VIDEO_CLOCK_RATE,
    encoding: "VP8",
    channels: None,
    fmtp: None,
};

/// Every codec the NOC carries.
pub const ALL: [RtpCodec; 5] = [OPUS, PCMU, PCMA, H264, VP8];

/// The clock of every video stream (RFC 6184, RFC 7741).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// The SSRC of the RTX stream (RFC 4588) that carries `media`'s retransmissions to a
/// receiver that negotiated RTX: the media SSRC with its top bit flipped, so receivers can
/// derive it without signalling.
pub const fn rtx_ssrc(media: u32) -> u32 {
    media ^ 0x8000_0000
}

/// The payload type the media server gives RTX towards a browser internally; the
/// browser's session rewrites it to the RTX payload type of the browser's answer.
pub const BROWSER_RTX_PT: u8 = 98;

impl RtpCodec {
    /// The codec a `join` gets when it names none: Opus, and H.264 for video.
    pub const fn default_for(kind: MediaKind) -> &'static RtpCodec {
        match kind {
            MediaKind::Audio => &OPUS,
            MediaKind::Video => &H264,
        }
    }

    /// The codec of a `channel` line's or a join's name, in any case.
    pub fn by_name(name: &str) -> Option<&'static RtpCodec> {
        ALL.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The codec an RTP packet's payload type stands for.
    pub fn by_payload_type(pt: u8) -> Option<&'static RtpCodec> {
        ALL.iter().find(|c| c.payload_type == pt)
    }

    /// The value of SDP's `a=rtpmap:PT ...`, e.g. `opus/48000/2`.
    pub fn rtpmap(&self) -> String {
        match self.channels {
            Some(n) => format!("{}/{}/{n}", self.encoding, self.clock_rate),
            None => format!("{}/{}", self.encoding, self.clock_rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_payload_types_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.payload_type, b.payload_type);
            }
            assert_eq!(RtpCodec::by_name(a.name), Some(a));
            assert_eq!(RtpCodec::by_payload_type(a.payload_type), Some(a));
        }
        assert_eq!(RtpCodec::by_name("H264"), Some(&H264));
        assert_eq!(RtpCodec::by_name("g722"), None);
        assert_eq!(RtpCodec::by_payload_type(98), None);
    }

    #[test]
    fn rtpmaps_as_sdp_writes_them() {
        assert_eq!(OPUS.rtpmap(), "opus/48000/2");
        assert_eq!(PCMU.rtpmap(), "PCMU/8000");
        assert_eq!(PCMA.rtpmap(), "PCMA/8000");
        assert_eq!(H264.rtpmap(), "H264/90000");
        assert_eq!(VP8.rtpmap(), "VP8/90000");
        assert_eq!(H264.fmtp, Some("packetization-mode=1"));
    }

    #[test]
    fn defaults_per_kind() {
        assert_eq!(RtpCodec::default_for(MediaKind::Audio), &OPUS);
        assert_eq!(RtpCodec::default_for(MediaKind::Video), &H264);
        for c in ALL {
            assert_eq!(c.kind == MediaKind::Video, c.clock_rate == VIDEO_CLOCK_RATE);
        }
    }
}
