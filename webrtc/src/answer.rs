//! Our answer to a browser's offer (JSEP, RFC 8829): one BUNDLE transport, ICE-lite with one
//! host candidate on the worker's port, DTLS as the passive side.
//!
//! What each offered section becomes:
//! - the first audio section that sends Opus: the browser's voice (we receive it);
//! - the first video section that sends VP8 or H.264 (packetization-mode 1): its camera;
//! - each receive-only audio or video section: a receive slot ([`crate::slots`]), whose
//!   SSRC the answer declares, so every member's stream plays on a track of its own; a
//!   video slot also gets an RTX stream (RFC 4588) where the browser offers RTX, and the
//!   server's retransmissions to it go out as RTX;
//! - anything else (data channels, codecs we do not carry, slots past [`MAX_SLOTS`]):
//!   rejected with port 0, as RFC 3264 §6 says.
//!
//! An offer without receive-only sections gets the voice section as `sendrecv` and the
//! members' streams unsignalled on it (a browser plays one such stream per section); one
//! that only sends (WHIP) is sent nothing but RTCP. A receive-only offer (WHEP) is all
//! slots.

use protocol::codec::{H264, OPUS, VP8};

use crate::sdp::{Local, Offer, OfferedMedia, AUDIO_LEVEL_URI};
use crate::slots::{SlotKind, Slots, MAX_SLOTS};
use crate::Error;

/// What a section of the answer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The browser's voice.
    Voice,
    /// The browser's camera.
    Camera,
    /// A receive slot (its index in the session's [`Slots`]).
    Slot(usize),
    Rejected,
}

/// The answer and what the session needs from it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The SDP, CRLF line ends.
    pub sdp: String,
    /// The receive slots and payload-type maps, for the worker's session.
    pub slots: Slots,
    /// The mid of each slot, in slot order: signalling names slots by mid.
    pub slot_mids: Vec<String>,
    /// The camera's SSRC, when the browser sends video.
    pub video_ssrc: Option<u32>,
    /// Each offered section's role, in offer order.
    pub roles: Vec<Role>,
    /// The transport-wide sequence number's extension id on what the browser sends, when
    /// the answer takes it: the session then sends transport-cc feedback.
    pub twcc_id: Option<u8>,
    /// The camera's simulcast encodings by rid, lowest quality first, and the RID
    /// extension's id: the caller gives each an SSRC ([`crate::Slots::set_simulcast`]).
    pub rids: Vec<String>,
    pub rid_id: Option<u8>,
}

impl Answer {
    /// Whether the browser takes retransmissions as RTX (its receive slots declare it).
    pub fn rtx(&self) -> bool {
        self.slots.has_rtx()
    }
}

fn direction(offered: &str, role: Role, with_slots: bool) -> &'static str {
    match (role, offered) {
        (Role::Slot(_), _) => "sendonly",
        (_, "sendonly") => "recvonly",
        (_, "recvonly") => "sendonly",
        // With slots the members' streams come on them; the voice section only receives.
        (Role::Voice, _) if !with_slots => "sendrecv",
        _ => "recvonly",
    }
}

/// The SSRC the answer gives slot `i`: spread from the session id, never 0 and never one the
/// browser sends with.
fn slot_ssrc(session_id: u64, i: usize, offer: &Offer, taken: &[u32]) -> u32 {
    let mut x = (session_id as u32) ^ 0x9e37_79b9u32.wrapping_mul(i as u32 + 1);
    while x == 0 || taken.contains(&x) || offer.media.iter().any(|m| m.ssrc == Some(x)) {
        x = x.wrapping_mul(0x0101_0101).wrapping_add(0x6b43_a9b5);
    }
    x
}

/// Decides each section's role and declares the slots.
/// The payload type `m` offers for the room's video codec (`vp8`, `h264`).
fn room_pt(m: &OfferedMedia, codec: &str) -> Option<u8> {
    match codec {
        "vp8" => m.vp8_pt,
        "h264" => m.h264_pt,
        _ => None,
    }
}

fn plan(offer: &Offer, room_video: Option<&str>, session_id: u64) -> Result<Answer, Error> {
    let video = room_video.is_some();
    // The browser's voice: the first audio section that sends Opus. A receive-only offer
    // (a WHEP player) has none; its audio sections are slots.
    let voice = offer.voice();
    // Sections are told apart by mid (`Offer::parse` checks it; a hand-built offer may not).
    for (i, m) in offer.media.iter().enumerate() {
        if offer.media[..i].iter().any(|o| o.mid == m.mid) {
            return Err(Error::Sdp(format!("a=mid:{} names two m-sections", m.mid)));
        }
    }
    let mut slots = Slots::default();
    let mut slot_mids = Vec::new();
    let mut taken = Vec::new();
    let mut roles = Vec::with_capacity(offer.media.len());
    let mut camera = None;
    let mut have_camera = false;
    for m in &offer.media {
        // A simulcast camera names its encodings by rid, often with no SSRC in the SDP.
        let simulcast = m.rid_id.is_some() && !m.rids.is_empty();
        let role = if voice.is_some_and(|v| v.mid == m.mid) {
            Role::Voice
        } else if !have_camera
            && room_video.is_some_and(|c| room_pt(m, c).is_some())
            && m.sends()
            && (m.ssrc.is_some() || simulcast)
        {
            have_camera = true;
            // Simulcast: the server gives each encoding its SSRC; the member's video SSRC
            // (the top encoding's) stays the server's.
            camera = if simulcast { None } else { m.ssrc };
            Role::Camera
        } else if m.direction == "recvonly"
            && ((m.kind == "audio" && m.opus_pt.is_some()) || (video && m.has_video_codec()))
        {
            let kind = if m.kind == "audio" {
                SlotKind::Audio
            } else {
                SlotKind::Video
            };
            let ssrc = slot_ssrc(session_id, slots.len(), offer, &taken);
            match slots.add_slot(kind, ssrc) {
                Some(i) => {
                    taken.push(ssrc);
                    // Video slots whose codecs the browser repairs with RTX get an RTX
                    // stream of their own.
                    let repaired = [m.vp8_pt, m.h264_pt]
                        .into_iter()
                        .flatten()
                        .any(|pt| m.rtx_for(pt).is_some());
                    if kind == SlotKind::Video && repaired {
                        let rtx = slot_ssrc(session_id, MAX_SLOTS + i, offer, &taken);
                        taken.push(rtx);
                        slots.set_rtx(i, rtx);
                    }
                    slot_mids.push(m.mid.clone());
                    Role::Slot(i)
                }
                None => Role::Rejected,
            }
        } else {
            Role::Rejected
        };
        roles.push(role);
    }
    debug_assert!(MAX_SLOTS >= slots.len());
    if voice.is_none() && !have_camera && slots.is_empty() {
        return Err(Error::Sdp(
            "the offer neither sends Opus nor receives anything this room carries".into(),
        ));
    }
    // Nothing that receives (a WHIP publisher): media to it would only be dropped.
    if slots.is_empty() && voice.is_none_or(|v| v.direction == "sendonly") {
        slots.set_send_only();
    }
    // One payload type per codec across the bundle (RFC 8843 §9.1), the browser's numbers.
    let first = |f: fn(&OfferedMedia) -> Option<u8>| {
        offer
            .media
            .iter()
            .zip(&roles)
            .filter(|(_, r)| **r != Role::Rejected)
            .find_map(|(m, _)| f(m))
    };
    if let Some(pt) = first(|m| m.opus_pt) {
        slots.map_pt(SlotKind::Audio, OPUS.payload_type, pt);
    }
    if let Some(pt) = first(|m| m.vp8_pt) {
        slots.map_pt(SlotKind::Video, VP8.payload_type, pt);
    }
    if let Some(pt) = first(|m| m.h264_pt) {
        slots.map_pt(SlotKind::Video, H264.payload_type, pt);
    }
    // RTX as the receive slots declare it (the camera sends none: see `answer`).
    if let Some(m) = offer
        .media
        .iter()
        .zip(&roles)
        .find(|(m, r)| matches!(r, Role::Slot(i) if slots.rtx_ssrc(*i) != 0) && m.kind == "video")
        .map(|(m, _)| m)
    {
        for pt in [m.vp8_pt, m.h264_pt].into_iter().flatten() {
            if let Some(rtx) = m.rtx_for(pt) {
                slots.map_rtx(pt, rtx);
            }
        }
    }
    // Transport-cc, one id across the bundle: feedback on what the browser sends (voice
    // and camera), and on receive slots for what the server sends it (the downlink
    // estimate). The sending sections' id first.
    let twcc_id = offer
        .media
        .iter()
        .zip(&roles)
        .filter(|(_, r)| matches!(r, Role::Voice | Role::Camera))
        .find_map(|(m, _)| m.twcc_id)
        .or_else(|| {
            offer
                .media
                .iter()
                .zip(&roles)
                .filter(|(_, r)| matches!(r, Role::Slot(_)))
                .find_map(|(m, _)| m.twcc_id)
        });
    // Simulcast from the camera, when it names its encodings by rid.
    let cam = offer
        .media
        .iter()
        .zip(&roles)
        .find(|(_, r)| **r == Role::Camera)
        .map(|(m, _)| m);
    let (rids, rid_id) = match cam {
        Some(m) if m.rid_id.is_some() && !m.rids.is_empty() => {
            (crate::rids::lowest_first(&m.rids), m.rid_id)
        }
        _ => (Vec::new(), None),
    };
    Ok(Answer {
        sdp: String::new(),
        slots,
        slot_mids,
        video_ssrc: camera,
        roles,
        twcc_id,
        rids,
        rid_id,
    })
}

/// Writes the answer to `offer`. `video`: the room's video codec (`vp8`, `h264`), which the
/// camera must send; `None`: an audio-only member.
pub fn answer(
    offer: &Offer,
    local: &Local,
    session_id: u64,
    video: Option<&str>,
) -> Result<Answer, Error> {
    let mut a = plan(offer, video, session_id)?;
    let with_slots = !a.slots.is_empty();
    let ip = local.addr.ip();
    let port = local.addr.port();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(1024 + 900 * offer.media.len());
    let mut line = |l: &str| {
        s.push_str(l);
        s.push_str("\r\n");
    };
    line("v=0");
    line(&format!("o=- {session_id} 2 IN {family} {ip}"));
    line("s=-");
    line("t=0 0");
    let bundle: Vec<&str> = offer
        .media
        .iter()
        .zip(&a.roles)
        .filter(|(_, r)| **r != Role::Rejected)
        .map(|(m, _)| m.mid.as_str())
        .collect();
    line(&format!("a=group:BUNDLE {}", bundle.join(" ")));
    line("a=ice-lite");
    line("a=msid-semantic: WMS noc");
    for (m, &role) in offer.media.iter().zip(&a.roles) {
        if role == Role::Rejected {
            // Rejected: port 0, the offer's first format, its mid, nothing else.
            let fmt = m.formats.first().map_or("0", String::as_str);
            line(&format!("m={} 0 {} {fmt}", m.kind, m.protos));
            line(&format!("c=IN {family} {ip}"));
            line(&format!("a=mid:{}", m.mid));
            line("a=inactive");
            continue;
        }
        // Codecs in our order of preference: the browser sends the first. The camera sends
        // the room's codec alone (the reflector forwards video as it comes).
        let h264_fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        let codecs: Vec<(u8, &str, Option<&str>)> = if m.kind == "audio" {
            m.opus_pt
                .map(|pt| {
                    (
                        pt,
                        "opus/48000/2",
                        Some("minptime=10;useinbandfec=1;usedtx=1"),
                    )
                })
                .into_iter()
                .collect()
        } else {
            let vp8 = m.vp8_pt.map(|pt| (pt, "VP8/90000", None));
            let h264 = m.h264_pt.map(|pt| (pt, "H264/90000", Some(h264_fmtp)));
            match (role, video) {
                (Role::Camera, Some("h264")) => h264.into_iter().collect(),
                (Role::Camera, _) => vp8.into_iter().collect(),
                _ => vp8.into_iter().chain(h264).collect(),
            }
        };
        // RTX only where the server sends video: the receive slots.
        let rtx: Vec<(u8, u8)> = match role {
            Role::Slot(i) if a.slots.rtx_ssrc(i) != 0 => codecs
                .iter()
                .filter_map(|c| m.rtx_for(c.0).map(|r| (r, c.0)))
                .collect(),
            _ => Vec::new(),
        };
        let fmts: Vec<String> = codecs
            .iter()
            .map(|c| c.0)
            .chain(rtx.iter().map(|r| r.0))
            .map(|pt| pt.to_string())
            .collect();
        line(&format!(
            "m={} {port} {} {}",
            m.kind,
            m.protos,
            fmts.join(" ")
        ));
        line(&format!("c=IN {family} {ip}"));
        line(&format!("a=ice-ufrag:{}", local.ice_ufrag));
        line(&format!("a=ice-pwd:{}", local.ice_pwd));
        line("a=ice-options:ice2");
        line(&format!("a=fingerprint:sha-256 {}", local.fingerprint));
        line("a=setup:passive");
        line(&format!("a=mid:{}", m.mid));
        if let (Some(id), "audio") = (m.audio_level_id, m.kind.as_str()) {
            line(&format!("a=extmap:{id} {AUDIO_LEVEL_URI}"));
        }
        let twcc = matches!(role, Role::Voice | Role::Camera | Role::Slot(_))
            && m.twcc_id.is_some()
            && m.twcc_id == a.twcc_id;
        if let (true, Some(id)) = (twcc, a.twcc_id) {
            line(&format!("a=extmap:{id} {}", crate::twcc::TWCC_URI));
        }
        let simulcast = role == Role::Camera && !a.rids.is_empty();
        if let (true, Some(id)) = (simulcast, a.rid_id) {
            line(&format!("a=extmap:{id} {}", crate::sdp::RID_URI));
        }
        line(&format!("a={}", direction(&m.direction, role, with_slots)));
        line("a=rtcp-mux");
        for (pt, map, fmtp) in &codecs {
            line(&format!("a=rtpmap:{pt} {map}"));
            if let Some(f) = fmtp {
                line(&format!("a=fmtp:{pt} {f}"));
            }
            line(&format!("a=rtcp-fb:{pt} nack"));
            if twcc {
                line(&format!("a=rtcp-fb:{pt} transport-cc"));
            }
            if m.kind == "video" {
                line(&format!("a=rtcp-fb:{pt} nack pli"));
                line(&format!("a=rtcp-fb:{pt} ccm fir"));
                line(&format!("a=rtcp-fb:{pt} goog-remb"));
            }
        }
        for (r, apt) in &rtx {
            line(&format!("a=rtpmap:{r} rtx/90000"));
            line(&format!("a=fmtp:{r} apt={apt}"));
        }
        if simulcast {
            // The offer's order: the answer mirrors its `a=simulcast` (RFC 8853 §5.3).
            for r in &m.rids {
                line(&format!("a=rid:{r} recv"));
            }
            line(&format!("a=simulcast:recv {}", m.rids.join(";")));
        }
        match role {
            Role::Slot(i) => {
                let ssrc = a.slots.ssrc(i).expect("plan declared the slot");
                let rtx = a.slots.rtx_ssrc(i);
                line(&format!("a=msid:noc{i} {}{i}", m.kind));
                if rtx != 0 {
                    line(&format!("a=ssrc-group:FID {ssrc} {rtx}"));
                }
                for s in [ssrc, rtx].into_iter().filter(|&s| s != 0) {
                    line(&format!("a=ssrc:{s} cname:noc"));
                    line(&format!("a=ssrc:{s} msid:noc{i} {}{i}", m.kind));
                }
            }
            // Without slots the members' streams come unsignalled on the voice section.
            Role::Voice if !with_slots => line("a=msid:noc audio"),
            _ => {}
        }
        line(&format!(
            "a=candidate:1 1 udp 2130706431 {ip} {port} typ host generation 0"
        ));
        if local.tcp {
            // RFC 6544: the TCP host candidate ranks below UDP (type preference 126, local
            // preference for passive); a browser uses it when UDP fails.
            line(&format!(
                "a=candidate:2 1 tcp 1518280447 {ip} {port} typ host tcptype passive generation 0"
            ));
        }
        line("a=end-of-candidates");
    }
    a.sdp = s;
    Ok(a)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
