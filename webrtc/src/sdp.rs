//! The browser's offer, read with rtc-sdp, and our answer (JSEP, RFC 8829): one BUNDLE
//! transport, ICE-lite with one host candidate on the worker's port, DTLS as the passive
//! side, Opus. What the server does not carry (data channels, video in an audio-only
//! answer, further audio sections) is rejected with port 0, as RFC 3264 §6 says.

use std::io::Cursor;
use std::net::SocketAddr;

use sdp::description::session::SessionDescription;

use crate::Error;

/// The RFC 6464 audio-level extension, forwarded so the server's speaking detection and
/// last-N see a browser like any member.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

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
    /// The first SSRC the section sends with (`a=ssrc:`), if it sends.
    pub ssrc: Option<u32>,
    /// The direction the offer asks for (`sendrecv` when absent).
    pub direction: String,
}

/// What the server needs from a browser's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// The SHA-256 certificate fingerprint, as bytes.
    pub fingerprint: Vec<u8>,
    pub media: Vec<OfferedMedia>,
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
        for m in &desc.media_descriptions {
            let attr = |k: &str| m.attribute(k).flatten().map(str::to_owned);
            ufrag = ufrag.or_else(|| attr("ice-ufrag"));
            pwd = pwd.or_else(|| attr("ice-pwd"));
            fp = fp.or_else(|| attr("fingerprint"));
            let mut opus_pt = None;
            let mut audio_level_id = None;
            let mut ssrc = None;
            let mut direction = "sendrecv".to_owned();
            for a in &m.attributes {
                let v = a.value.as_deref().unwrap_or("");
                match a.key.as_str() {
                    "rtpmap" => {
                        if let Some((pt, codec)) = v.split_once(' ') {
                            if codec.eq_ignore_ascii_case("opus/48000/2") {
                                opus_pt = opus_pt.or(pt.parse().ok());
                            }
                        }
                    }
                    "extmap" => {
                        if let Some((id, uri)) = v.split_once(' ') {
                            if uri.trim() == AUDIO_LEVEL_URI {
                                audio_level_id = id.split('/').next().and_then(|i| i.parse().ok());
                            }
                        }
                    }
                    "ssrc" if ssrc.is_none() => {
                        ssrc = v.split(' ').next().and_then(|s| s.parse().ok());
                    }
                    "sendrecv" | "sendonly" | "recvonly" | "inactive" => direction = a.key.clone(),
                    _ => {}
                }
            }
            media.push(OfferedMedia {
                kind: m.media_name.media.clone(),
                mid: attr("mid").unwrap_or_default(),
                protos: m.media_name.protos.join("/"),
                formats: m.media_name.formats.clone(),
                opus_pt,
                audio_level_id,
                ssrc,
                direction,
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
        })
    }

    /// The audio section the server takes: the first that offers Opus and is not inactive.
    pub fn audio(&self) -> Option<&OfferedMedia> {
        self.media
            .iter()
            .find(|m| m.kind == "audio" && m.opus_pt.is_some() && m.direction != "inactive")
    }
}

/// What our side puts in the answer.
#[derive(Debug, Clone)]
pub struct Local {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// Our certificate's SHA-256 fingerprint, `AB:CD:...`.
    pub fingerprint: String,
    /// The worker's UDP address: the one host candidate.
    pub addr: SocketAddr,
}

fn answer_direction(offered: &str) -> &'static str {
    match offered {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        _ => "sendrecv",
    }
}

/// Writes the answer to `offer` (CRLF line ends).
pub fn answer(offer: &Offer, local: &Local, session_id: u64) -> Result<String, Error> {
    let audio = offer
        .audio()
        .ok_or_else(|| Error::Sdp("the offer has no audio section with Opus".into()))?;
    let ip = local.addr.ip();
    let port = local.addr.port();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(2048);
    let mut line = |l: &str| {
        s.push_str(l);
        s.push_str("\r\n");
    };
    line("v=0");
    line(&format!("o=- {session_id} 2 IN {family} {ip}"));
    line("s=-");
    line("t=0 0");
    line(&format!("a=group:BUNDLE {}", audio.mid));
    line("a=ice-lite");
    line("a=msid-semantic: WMS noc");
    for m in &offer.media {
        if m.mid != audio.mid {
            // Rejected: port 0, the offer's first format, its mid, nothing else.
            let fmt = m.formats.first().map_or("0", String::as_str);
            line(&format!("m={} 0 {} {fmt}", m.kind, m.protos));
            line(&format!("c=IN {family} {ip}"));
            line(&format!("a=mid:{}", m.mid));
            line("a=inactive");
            continue;
        }
        let Some(pt) = m.opus_pt else {
            // Unreachable with unique mids (parse checks them); refused, never a panic.
            return Err(Error::Sdp(format!(
                "a=mid:{} is not the Opus section",
                m.mid
            )));
        };
        line(&format!("m=audio {port} {} {pt}", m.protos));
        line(&format!("c=IN {family} {ip}"));
        line(&format!("a=ice-ufrag:{}", local.ice_ufrag));
        line(&format!("a=ice-pwd:{}", local.ice_pwd));
        line("a=ice-options:ice2");
        line(&format!("a=fingerprint:sha-256 {}", local.fingerprint));
        line("a=setup:passive");
        line(&format!("a=mid:{}", m.mid));
        if let Some(id) = m.audio_level_id {
            line(&format!("a=extmap:{id} {AUDIO_LEVEL_URI}"));
        }
        line(&format!("a={}", answer_direction(&m.direction)));
        line("a=rtcp-mux");
        line(&format!("a=rtpmap:{pt} opus/48000/2"));
        line(&format!("a=fmtp:{pt} minptime=10;useinbandfec=1;usedtx=1"));
        line(&format!("a=rtcp-fb:{pt} nack"));
        // No a=ssrc: the members' streams arrive with SSRCs the answer cannot know, and a
        // browser plays an unsignalled SSRC on the section's receiver.
        line("a=msid:noc audio");
        line(&format!(
            "a=candidate:1 1 udp 2130706431 {ip} {port} typ host generation 0"
        ));
        line("a=end-of-candidates");
    }
    Ok(s)
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
mod tests {
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
    }

    #[test]
    fn the_answer_takes_audio_and_rejects_the_rest() {
        let o = Offer::parse(CHROMIUM_OFFER).unwrap();
        let local = Local {
            ice_ufrag: "srv1".into(),
            ice_pwd: ice_token(24),
            fingerprint: fingerprint_text(&[0xab; 32]),
            addr: "127.0.0.1:40000".parse().unwrap(),
        };
        let a = answer(&o, &local, 1).unwrap();
        assert!(a.contains("m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"), "{a}");
        assert!(a.contains("a=group:BUNDLE 0\r\n"));
        assert!(a.contains("a=ice-lite\r\na="));
        assert!(a.contains("a=setup:passive"));
        assert!(a.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"));
        assert!(a.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        // The answer itself parses, and offers nothing the server does not do.
        let back = Offer::parse(&a).unwrap();
        assert_eq!(back.ice_ufrag, "srv1");
        assert_eq!(back.audio().unwrap().opus_pt, Some(111));
        assert!(!a.contains("PCMU"));
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
        };
        assert!(answer(&o, &local, 1).is_err());
    }
}
