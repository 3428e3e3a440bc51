//! SDP over control lines. A browser's session description is longer than one 4096-byte
//! control line, so it travels as one `sdp` line per SDP line followed by an `sdpend` line
//! that counts them (docs/protocol.md, "SDP framing"). [`frame`] writes a description as
//! those messages and [`SdpAssembler`] puts one back together, refusing a description that
//! is too long, whose count does not match, or that mixes an offer with an answer.

use crate::ProtoError;

/// Most SDP lines one description may have: a browser offering the web client's receive
/// slots (8 audio, 8 video, about 30 lines each) stays well inside it.
pub const MAX_SDP_LINES: usize = 1024;
/// Most bytes one description may have (its lines joined with CRLF).
pub const MAX_SDP_BYTES: usize = 128 * 1024;

/// Which side of the offer/answer exchange (RFC 3264) a description is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

impl SdpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        }
    }

    pub(crate) fn parse(verb: &'static str, v: &str) -> Result<Self, ProtoError> {
        match v {
            "offer" => Ok(SdpKind::Offer),
            "answer" => Ok(SdpKind::Answer),
            _ => Err(ProtoError::BadValue {
                verb,
                field: "offer|answer",
                value: v.to_owned(),
            }),
        }
    }
}

/// Checks one SDP line as a field: 1..=1024 bytes, no control characters (TAB included).
pub(crate) fn line(verb: &'static str, v: &str) -> Result<String, ProtoError> {
    if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
        return Err(ProtoError::BadValue {
            verb,
            field: "sdp line",
            value: v.to_owned(),
        });
    }
    Ok(v.to_owned())
}

/// The (kind, line) pairs and the final count that carry `sdp`: empty lines and line ends
/// are dropped, as SDP (RFC 8866 §5) has no empty lines.
pub fn frame(sdp: &str) -> (Vec<String>, u32) {
    let lines: Vec<String> = sdp
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let n = lines.len() as u32;
    (lines, n)
}

/// Collects `sdp` lines until `sdpend`.
#[derive(Debug, Default)]
pub struct SdpAssembler {
    kind: Option<SdpKind>,
    text: String,
    lines: usize,
}

/// Why a framed description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpFrameError {
    #[error("sdp: more than {MAX_SDP_LINES} lines or {MAX_SDP_BYTES} bytes")]
    TooLong,
    #[error("sdp: an offer and an answer interleaved")]
    Mixed,
    #[error("sdpend: {got} lines arrived, {said} announced")]
    Count { got: usize, said: u32 },
    #[error("sdpend without any sdp line")]
    Empty,
}

impl SdpAssembler {
    /// Adds one line of a description of `kind`.
    pub fn push(&mut self, kind: SdpKind, line: &str) -> Result<(), SdpFrameError> {
        if *self.kind.get_or_insert(kind) != kind {
            self.reset();
            return Err(SdpFrameError::Mixed);
        }
        if self.lines >= MAX_SDP_LINES || self.text.len() + line.len() + 2 > MAX_SDP_BYTES {
            self.reset();
            return Err(SdpFrameError::TooLong);
        }
        self.text.push_str(line);
        self.text.push_str("\r\n");
        self.lines += 1;
        Ok(())
    }

    /// Ends the description: returns it (CRLF line ends) when `count` lines of `kind` came.
    /// The assembler is empty again either way.
    pub fn end(&mut self, kind: SdpKind, count: u32) -> Result<String, SdpFrameError> {
        let got = self.lines;
        let same = self.kind.is_none_or(|k| k == kind);
        let text = std::mem::take(&mut self.text);
        self.reset();
        if got == 0 {
            return Err(SdpFrameError::Empty);
        }
        if !same {
            return Err(SdpFrameError::Mixed);
        }
        if got != count as usize {
            return Err(SdpFrameError::Count { got, said: count });
        }
        Ok(text)
    }

    /// Whether a description is half received.
    pub fn is_open(&self) -> bool {
        self.lines > 0
    }

    fn reset(&mut self) {
        self.kind = None;
        self.text.clear();
        self.lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMsg, ServerMsg};

    const OFFER: &str = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
a=fingerprint:sha-256 AB:CD\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";

    /// An offer goes out as client lines and comes back whole through the assembler.
    #[test]
    fn an_offer_round_trips_through_client_lines() {
        let (lines, n) = frame(OFFER);
        let mut wire = String::new();
        for l in &lines {
            wire += &ClientMsg::Sdp {
                kind: SdpKind::Offer,
                line: l.clone(),
            }
            .encode();
        }
        wire += &ClientMsg::SdpEnd {
            kind: SdpKind::Offer,
            lines: n,
        }
        .encode();
        let mut asm = SdpAssembler::default();
        let mut out = None;
        for l in wire.lines() {
            match ClientMsg::parse(l).unwrap() {
                ClientMsg::Sdp { kind, line } => asm.push(kind, &line).unwrap(),
                ClientMsg::SdpEnd { kind, lines } => out = Some(asm.end(kind, lines).unwrap()),
                m => panic!("unexpected {m:?}"),
            }
        }
        assert_eq!(out.as_deref(), Some(OFFER));
        assert!(!asm.is_open());
    }

    #[test]
    fn an_answer_round_trips_through_server_lines() {
        let (lines, n) = frame(OFFER);
        let mut asm = SdpAssembler::default();
        for l in lines {
            let m = ServerMsg::Sdp {
                kind: SdpKind::Answer,
                line: l,
            };
            let back = ServerMsg::parse(m.encode().trim_end()).unwrap();
            assert_eq!(back, m);
            let ServerMsg::Sdp { kind, line } = back else {
                unreachable!()
            };
            asm.push(kind, &line).unwrap();
        }
        let end = ServerMsg::SdpEnd {
            kind: SdpKind::Answer,
            lines: n,
        };
        assert_eq!(ServerMsg::parse(end.encode().trim_end()).unwrap(), end);
        assert_eq!(asm.end(SdpKind::Answer, n).unwrap(), OFFER);
    }

    #[test]
    fn wrong_counts_mixed_kinds_and_floods_are_refused() {
        let mut asm = SdpAssembler::default();
        asm.push(SdpKind::Offer, "v=0").unwrap();
        assert_eq!(
            asm.end(SdpKind::Offer, 2),
            Err(SdpFrameError::Count { got: 1, said: 2 })
        );
        assert_eq!(asm.end(SdpKind::Offer, 0), Err(SdpFrameError::Empty));
        asm.push(SdpKind::Offer, "v=0").unwrap();
        assert_eq!(asm.push(SdpKind::Answer, "s=-"), Err(SdpFrameError::Mixed));
        for _ in 0..MAX_SDP_LINES {
            asm.push(SdpKind::Offer, "a=x").unwrap();
        }
        assert_eq!(asm.push(SdpKind::Offer, "a=x"), Err(SdpFrameError::TooLong));
        assert!(!asm.is_open());
    }

    #[test]
    fn bad_sdp_lines_do_not_parse() {
        assert!(ClientMsg::parse("sdp\toffer").is_err());
        assert!(ClientMsg::parse("sdp\tmaybe\tv=0").is_err());
        assert!(ClientMsg::parse("sdpend\toffer\tmany").is_err());
        assert!(ClientMsg::parse(&format!("sdp\toffer\t{}", "a".repeat(1025))).is_err());
        // An SDP line's own `=` is not taken for an option.
        assert_eq!(
            ClientMsg::parse("sdp\toffer\ta=ice-ufrag:x").unwrap(),
            ClientMsg::Sdp {
                kind: SdpKind::Offer,
                line: "a=ice-ufrag:x".into()
            }
        );
    }
}

/// What an offer posted to WHIP or WHEP carries, as the join needs it: whether it has a
/// video section in the direction that matters, and the video codecs that section offers
/// (`vp8`, `h264`, in the offer's order), for `vcodec=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpMedia {
    pub video: bool,
    pub vcodecs: Vec<&'static str>,
}

/// Reads just enough of an offer for the join (the media server parses it in full):
/// `publish` (WHIP) looks for a video section that sends, otherwise (WHEP) for one that
/// receives. Never fails: what it does not recognise is skipped.
pub fn http_media(sdp: &str, publish: bool) -> HttpMedia {
    let mut out = HttpMedia::default();
    // The video section being read: (port is not 0, its direction, its codecs).
    let mut section: Option<(bool, &str, Vec<&'static str>)> = None;
    let finish = |s: Option<(bool, &str, Vec<&'static str>)>, out: &mut HttpMedia| {
        let Some((open, dir, codecs)) = s else { return };
        let fits = if publish {
            matches!(dir, "sendrecv" | "sendonly")
        } else {
            matches!(dir, "sendrecv" | "recvonly")
        };
        if open && fits && !codecs.is_empty() && !out.video {
            out.video = true;
            out.vcodecs = codecs;
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            finish(section.take(), &mut out);
            let mut f = m.split(' ');
            if f.next() == Some("video") {
                let open = f.next().is_some_and(|p| p != "0");
                section = Some((open, "sendrecv", Vec::new()));
            }
        } else if let Some((_, dir, codecs)) = section.as_mut() {
            match line {
                "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive" => *dir = &line[2..],
                _ => {
                    let name = line
                        .strip_prefix("a=rtpmap:")
                        .and_then(|r| r.split(' ').nth(1))
                        .and_then(|c| c.split('/').next())
                        .map(str::to_ascii_lowercase);
                    let codec = match name.as_deref() {
                        Some("vp8") => Some("vp8"),
                        Some("h264") => Some("h264"),
                        _ => None,
                    };
                    if let Some(c) = codec.filter(|c| !codecs.contains(c)) {
                        codecs.push(c);
                    }
                }
            }
        }
    }
    finish(section, &mut out);
    out
}

#[cfg(test)]
mod http_media_tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n\
        a=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=sendonly\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\n";

    #[test]
    fn a_publishers_video_and_its_codecs() {
        let m = http_media(OFFER, true);
        assert_eq!(
            m,
            HttpMedia {
                video: true,
                vcodecs: vec!["vp8", "h264"]
            }
        );
        // A sendonly video is nothing a viewer receives.
        assert_eq!(http_media(OFFER, false), HttpMedia::default());
        let watch = OFFER.replace("a=sendonly", "a=recvonly");
        assert!(http_media(&watch, false).video);
        assert!(!http_media(&watch, true).video);
    }

    #[test]
    fn rejected_or_codecless_video_and_garbage_are_no_video() {
        assert!(!http_media(&OFFER.replace("m=video 9", "m=video 0"), true).video);
        assert!(!http_media(&OFFER.replace("VP8", "AV1").replace("H264", "H265"), true).video);
        assert_eq!(
            http_media("m=\r\nm=video\r\na=rtpmap:\r\n\u{0}", true),
            HttpMedia::default()
        );
    }
}
