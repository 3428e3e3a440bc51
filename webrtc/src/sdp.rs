//! The browser's offer, read with rtc-sdp (the answer is written by [`crate::answer`]).

use std::io::Cursor;
use std::net::SocketAddr;

use sdp::description::session::SessionDescription;

use crate::Error;

/// The RFC 6464 audio-level extension, forwarded so the server's speaking detection and
/// last-N see a browser like any member.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The RID header extension (RFC 8852): which simulcast encoding a packet belongs to.
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// One m-section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// `audio`, `video`, `application`.
    pub kind: String,
    pub mid: String,
    pub protos: String,
    pub formats: Vec<String>,
    /// The Opus payload type, for audio sections that offer Opus at 48 kHz stereo.
    pub opus_pt: Option<u8>,
    /// The id the offer gives the audio-level extension.
    pub audio_level_id: Option<u8>,
    /// The id the offer gives the transport-wide sequence number extension.
    pub twcc_id: Option<u8>,
    /// The VP8 payload type, for video sections that offer it.
    pub vp8_pt: Option<u8>,
    /// An H.264 payload type with packetization-mode=1 (constrained baseline preferred).
    pub h264_pt: Option<u8>,
    /// RTX payload types (RFC 4588) and the payload type each repairs (`apt=`).
    pub rtx: Vec<(u8, u8)>,
    /// The SSRC the section sends with (`a=ssrc:`; the first of an `a=ssrc-group:FID`), if
    /// it sends.
    pub ssrc: Option<u32>,
    /// The direction the offer asks for (`sendrecv` when absent).
    pub direction: String,
    /// The RID extension's id, when offered.
    pub rid_id: Option<u8>,
    /// The simulcast encodings the section sends (`a=simulcast:send`, else its
    /// `a=rid:ID send` lines), in the offer's order; empty unless two or more.
    pub rids: Vec<String>,
}

impl OfferedMedia {
    /// Whether the browser sends on this section.
    pub fn sends(&self) -> bool {
        matches!(self.direction.as_str(), "sendrecv" | "sendonly")
    }

    /// The RTX payload type that repairs `pt`, if offered.
    pub fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.rtx.iter().find(|(_, apt)| *apt == pt).map(|(r, _)| *r)
    }

    /// Whether the section offers a video codec the server carries.
    pub fn has_video_codec(&self) -> bool {
        self.kind == "video" && (self.vp8_pt.is_some() || self.h264_pt.is_some())
    }
}

/// The encodings a section sends: those of `a=simulcast:send` that an `a=rid` declares,
/// else the `a=rid` order; none unless 2 to [`crate::rids::MAX_RIDS`].
fn send_rids(simulcast: Vec<String>, declared: Vec<String>) -> Vec<String> {
    let mut rids: Vec<String> = if simulcast.is_empty() {
        declared
    } else {
        let mut out = Vec::new();
        for r in simulcast {
            if declared.contains(&r) && !out.contains(&r) {
                out.push(r);
            }
        }
        out
    };
    rids.truncate(crate::rids::MAX_RIDS);
    if rids.len() < 2 {
        rids.clear();
    }
    rids
}

/// What the server needs from a browser's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// The SHA-256 certificate fingerprint, as bytes.
    pub fingerprint: Vec<u8>,
    pub media: Vec<OfferedMedia>,
    /// The UDP addresses of the peer's RTP candidates (component 1), in order: where a
    /// client reaches a server that offers or answers (loadgen against Janus).
    pub udp_candidates: Vec<SocketAddr>,
}

/// The address of an `a=candidate` value for RTP over UDP (RFC 8839 §5.1), or `None`.
fn udp_candidate(v: &str) -> Option<SocketAddr> {
    let f: Vec<&str> = v.split(' ').collect();
    let (component, transport, ip, port) = (f.get(1)?, f.get(2)?, f.get(4)?, f.get(5)?);
    if *component != "1" || !transport.eq_ignore_ascii_case("udp") {
        return None;
    }
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

impl Offer {
    /// Parses an offer; it must carry ICE credentials and a SHA-256 fingerprint.
    pub fn parse(text: &str) -> Result<Offer, Error> {
        let desc = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|e| Error::Sdp(format!("offer does not parse: {e}")))?;
        let session = |k: &str| desc.attribute(k).cloned();
        let mut ufrag = session("ice-ufrag");
        let mut pwd = session("ice-pwd");
        let mut fp = session("fingerprint");
        let mut media = Vec::new();
        let mut udp_candidates: Vec<SocketAddr> = Vec::new();
        for m in &desc.media_descriptions {
            let attr = |k: &str| m.attribute(k).flatten().map(str::to_owned);
            ufrag = ufrag.or_else(|| attr("ice-ufrag"));
            pwd = pwd.or_else(|| attr("ice-pwd"));
            fp = fp.or_else(|| attr("fingerprint"));
            let mut opus_pt = None;
            let mut vp8_pt = None;
            let mut h264 = Vec::new();
            let mut rtx_pts = Vec::new();
            let mut rtx = Vec::new();
            let mut audio_level_id = None;
            let mut twcc_id = None;
            let mut ssrc = None;
            let mut fid = None;
            let mut direction = "sendrecv".to_owned();
            let mut rid_id = None;
            let mut rid_send: Vec<String> = Vec::new();
            let mut simulcast: Vec<String> = Vec::new();
            for a in &m.attributes {
                let v = a.value.as_deref().unwrap_or("");
                match a.key.as_str() {
                    "rtpmap" => {
                        if let Some((pt, codec)) = v.split_once(' ') {
                            let pt = pt.parse::<u8>().ok().filter(|p| *p < 128);
                            // RFC 7587 says `opus/48000/2`; GStreamer's receive-only
                            // offer leaves out the channels.
                            if codec.eq_ignore_ascii_case("opus/48000/2")
                                || codec.eq_ignore_ascii_case("opus/48000")
                            {
                                opus_pt = opus_pt.or(pt);
                            } else if codec.eq_ignore_ascii_case("vp8/90000") {
                                vp8_pt = vp8_pt.or(pt);
                            } else if codec.eq_ignore_ascii_case("h264/90000") {
                                h264.extend(pt.map(|p| (p, false, false)));
                            } else if codec.eq_ignore_ascii_case("rtx/90000") {
                                rtx_pts.extend(pt);
                            }
                        }
                    }
                    "extmap" => {
                        if let Some((id, uri)) = v.split_once(' ') {
                            let id = id.split('/').next().and_then(|i| i.parse().ok());
                            match uri.trim() {
                                AUDIO_LEVEL_URI => audio_level_id = id,
                                crate::twcc::TWCC_URI => {
                                    twcc_id = id.filter(|i| (1..=14).contains(i))
                                }
                                RID_URI => rid_id = id.filter(|i| (1..=14).contains(i)),
                                _ => {}
                            }
                        }
                    }
                    "fmtp" => {
                        // H.264: packetization-mode=1 is required, baseline preferred.
                        if let Some((pt, params)) = v.split_once(' ') {
                            if let (Ok(r), Some(apt)) = (
                                pt.parse::<u8>(),
                                params
                                    .strip_prefix("apt=")
                                    .and_then(|a| a.trim().parse().ok()),
                            ) {
                                rtx.push((r, apt));
                            }
                            let pm1 = params.contains("packetization-mode=1");
                            let base = params.contains("profile-level-id=42e0")
                                || params.contains("profile-level-id=4200");
                            for h in h264.iter_mut().filter(|h| pt.parse() == Ok(h.0)) {
                                *h = (h.0, pm1, base);
                            }
                        }
                    }
                    "ssrc" if ssrc.is_none() => {
                        ssrc = v.split(' ').next().and_then(|s| s.parse().ok());
                    }
                    "ssrc-group" if fid.is_none() => {
                        let mut f = v.split(' ');
                        if f.next() == Some("FID") {
                            fid = f.next().and_then(|s| s.parse().ok());
                        }
                    }
                    "sendrecv" | "sendonly" | "recvonly" | "inactive" => direction = a.key.clone(),
                    "candidate" => {
                        if let Some(c) = udp_candidate(v).filter(|c| !udp_candidates.contains(c)) {
                            udp_candidates.push(c);
                        }
                    }
                    "rid" => {
                        let mut f = v.split(' ');
                        if let (Some(id), Some("send")) = (f.next(), f.next()) {
                            if crate::rids::valid_rid(id) && !rid_send.iter().any(|r| r == id) {
                                rid_send.push(id.to_owned());
                            }
                        }
                    }
                    "simulcast" => {
                        // `send A;B;C` (alternatives after `,`, paused ones with `~`).
                        if let Some(list) = v.strip_prefix("send ") {
                            simulcast = list
                                .split(' ')
                                .next()
                                .unwrap_or("")
                                .split(';')
                                .filter_map(|alt| alt.split(',').next())
                                .map(|r| r.trim_start_matches('~').to_owned())
                                .collect();
                        }
                    }
                    _ => {}
                }
            }
            let h264_pt = h264
                .iter()
                .find(|h| h.1 && h.2)
                .or_else(|| h264.iter().find(|h| h.1))
                .map(|h| h.0);
            media.push(OfferedMedia {
                kind: m.media_name.media.clone(),
                mid: attr("mid").unwrap_or_default(),
                protos: m.media_name.protos.join("/"),
                formats: m.media_name.formats.clone(),
                opus_pt,
                vp8_pt,
                h264_pt,
                rtx: rtx
                    .into_iter()
                    .filter(|(r, apt)| rtx_pts.contains(r) && *r < 128 && *apt < 128)
                    .collect(),
                audio_level_id,
                twcc_id,
                ssrc: fid.or(ssrc),
                direction,
                rid_id,
                rids: send_rids(simulcast, rid_send),
            });
        }
        let ice_ufrag = ufrag.ok_or_else(|| Error::Sdp("offer has no a=ice-ufrag".into()))?;
        let ice_pwd = pwd.ok_or_else(|| Error::Sdp("offer has no a=ice-pwd".into()))?;
        let fp = fp.ok_or_else(|| Error::Sdp("offer has no a=fingerprint".into()))?;
        let (alg, hexed) = fp
            .split_once(' ')
            .ok_or_else(|| Error::Sdp("a=fingerprint without a hash".into()))?;
        if !alg.eq_ignore_ascii_case("sha-256") {
            return Err(Error::Sdp(format!("fingerprint hash {alg}: only sha-256")));
        }
        let fingerprint = hex::decode(hexed.trim().replace(':', ""))
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::Sdp("a=fingerprint is not 32 hex bytes".into()))?;
        if media.iter().any(|m| m.mid.is_empty()) {
            return Err(Error::Sdp("every m-section needs an a=mid (BUNDLE)".into()));
        }
        // RFC 8843 §7.2.1: a mid names one section. The answer tells sections apart by it.
        for (i, m) in media.iter().enumerate() {
            if media[..i].iter().any(|o| o.mid == m.mid) {
                return Err(Error::Sdp(format!("a=mid:{} names two m-sections", m.mid)));
            }
        }
        Ok(Offer {
            ice_ufrag,
            ice_pwd,
            fingerprint,
            media,
            udp_candidates,
        })
    }

    /// The first audio section that sends Opus: the browser's voice.
    pub fn voice(&self) -> Option<&OfferedMedia> {
        self.media
            .iter()
            .find(|m| m.kind == "audio" && m.opus_pt.is_some() && m.sends())
    }

    /// The audio section the server takes the browser's voice from: the first that sends
    /// Opus, else the first with Opus that is not inactive.
    pub fn audio(&self) -> Option<&OfferedMedia> {
        let opus = |m: &&OfferedMedia| m.kind == "audio" && m.opus_pt.is_some();
        self.media
            .iter()
            .filter(opus)
            .find(|m| m.sends())
            .or_else(|| {
                self.media
                    .iter()
                    .filter(opus)
                    .find(|m| m.direction != "inactive")
            })
    }
}

/// What our side puts in the answer.
#[derive(Debug, Clone)]
pub struct Local {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// Our certificate's SHA-256 fingerprint, `AB:CD:...`.
    pub fingerprint: String,
    /// The worker's UDP address: the host candidate.
    pub addr: SocketAddr,
    /// The worker also takes ICE over TCP at that address (a passive TCP candidate).
    pub tcp: bool,
}

/// A random ICE credential of `len` characters from the ice-char set (RFC 8839 §5.4).
pub fn ice_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut r = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[r.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// `AB:CD:...` for a digest.
pub fn fingerprint_text(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shaped like Chromium's offer for one microphone and a data channel.
    pub(crate) const CHROMIUM_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0\r\n\
a=ice-ufrag:Zk3q\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 4F:2A:7C:61:E4:13:9B:0D:55:AA:10:3E:8F:21:C4:97:06:BD:3A:77:E2:59:1C:48:D0:6F:AB:92:35:E8:7B:C1\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:stream track\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=ssrc:3735928559 cname:abc\r\n\
a=ssrc:3735928559 msid:stream track\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Zk3q\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 4F:2A:7C:61:E4:13:9B:0D:55:AA:10:3E:8F:21:C4:97:06:BD:3A:77:E2:59:1C:48:D0:6F:AB:92:35:E8:7B:C1\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sctp-port:5000\r\n";

    #[test]
    fn a_chromium_offer_is_read() {
        let o = Offer::parse(CHROMIUM_OFFER).unwrap();
        assert_eq!(o.ice_ufrag, "Zk3q");
        assert_eq!(o.ice_pwd, "0123456789abcdefghijklmn");
        assert_eq!(o.fingerprint[0], 0x4f);
        let a = o.audio().unwrap();
        assert_eq!(
            (a.opus_pt, a.audio_level_id, a.ssrc, a.mid.as_str()),
            (Some(111), Some(1), Some(3735928559), "0")
        );
        assert_eq!(o.media[1].kind, "application");
        assert_eq!(
            o.udp_candidates,
            ["127.0.0.1:50000".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn udp_candidates_of_rtp_in_order_and_nothing_else() {
        let more = CHROMIUM_OFFER.replace(
            "a=ice-ufrag:Zk3q\r\na=ice-pwd",
            "a=candidate:2 1 UDP 2113937150 10.1.0.1 5002 typ host\r\n\
             a=candidate:3 2 udp 2113937150 10.1.0.1 5003 typ host\r\n\
             a=candidate:4 1 tcp 1518280447 10.1.0.1 9 typ host tcptype active\r\n\
             a=candidate:5 1 udp 1 not-an-ip 5004 typ host\r\n\
             a=candidate:6 1 udp\r\n\
             a=candidate:7 1 udp 2113937150 ::1 5005 typ host\r\n\
             a=ice-ufrag:Zk3q\r\na=ice-pwd",
        );
        let o = Offer::parse(&more).unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:50000", "10.1.0.1:5002", "[::1]:5005"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(o.udp_candidates, want);
    }

    #[test]
    fn offers_without_credentials_or_with_other_hashes_are_refused() {
        let no_pwd = CHROMIUM_OFFER.replace("a=ice-pwd:0123456789abcdefghijklmn\r\n", "");
        assert!(Offer::parse(&no_pwd).is_err());
        let sha1 = CHROMIUM_OFFER.replace("sha-256", "sha-1");
        assert!(Offer::parse(&sha1).is_err());
        assert!(Offer::parse("hello").is_err());
        let no_audio = CHROMIUM_OFFER.replace("opus/48000/2", "foo/8000");
        let o = Offer::parse(&no_audio).unwrap();
        assert!(o.audio().is_none());
    }

    #[test]
    fn opus_without_its_channel_count_is_opus() {
        // GStreamer's webrtcbin writes `OPUS/48000` in a receive-only section.
        let gst = CHROMIUM_OFFER.replace("opus/48000/2", "OPUS/48000");
        let o = Offer::parse(&gst).unwrap();
        assert_eq!(o.audio().and_then(|a| a.opus_pt), Some(111));
    }

    /// Found by the `sdp` fuzz target: a second section with the audio section's mid made
    /// the answer's writer take it for the Opus section and panic on network input.
    #[test]
    fn two_sections_with_one_mid_are_refused_not_a_panic() {
        let dup = CHROMIUM_OFFER.replace("a=mid:1", "a=mid:0");
        let e = Offer::parse(&dup).unwrap_err();
        assert!(e.to_string().contains("names two m-sections"), "{e}");
        // An offer built by hand with the same flaw gets an error from the answer too.
        let mut o = Offer::parse(CHROMIUM_OFFER).unwrap();
        o.media[1].mid = "0".into();
        let local = Local {
            ice_ufrag: "srv1".into(),
            ice_pwd: ice_token(24),
            fingerprint: fingerprint_text(&[0xab; 32]),
            addr: "127.0.0.1:40000".parse().unwrap(),
            tcp: false,
        };
        assert!(crate::answer::answer(&o, &local, 1, Some("vp8")).is_err());
    }
}
