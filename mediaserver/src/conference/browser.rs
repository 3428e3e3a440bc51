//! Browser members: a joined member's SDP offer (after `accept`: the ticket was checked by
//! `join`) becomes a WebRTC session on its room's worker, and the answer goes back as `sdp`
//! lines. The member's audio SSRC becomes the browser's own, from its offer, as an external
//! sender's does.

use super::join::Membership;
use super::{Conferences, Refusal};
use crate::rtc::{RtcCommand, Tag};
use protocol::{ErrorCode, ServerMsg};
use webrtc::sdp::{self, Offer};

/// One answer per session; a second offer (an ICE restart) is refused for now.
fn bad(text: impl Into<String>) -> Refusal {
    Refusal::Reply(ServerMsg::Error {
        code: ErrorCode::BadRequest,
        text: text.into(),
    })
}

impl Conferences {
    /// Takes a browser's offer and returns the answer (CRLF line ends).
    pub(crate) fn offer(&self, m: &mut Membership, text: &str) -> Result<String, Refusal> {
        if m.rtc_ufrag.is_some() {
            return Err(Refusal::Reply(ServerMsg::Error {
                code: ErrorCode::WrongState,
                text: "this session already has an answer".into(),
            }));
        }
        let offer = Offer::parse(text).map_err(|e| bad(e.to_string()))?;
        let audio = offer
            .audio()
            .ok_or_else(|| bad("sdp: the offer has no audio section with Opus"))?;
        let ssrc = audio
            .ssrc
            .ok_or_else(|| bad("sdp: the audio section announces no a=ssrc"))?;
        let Some((worker, conf)) = self.place_of(m) else {
            return Err(bad("not in a conference"));
        };
        {
            let mut rooms = self.rooms();
            if ssrc != m.ssrc {
                if !rooms.claim_ssrc(ssrc) {
                    return Err(bad(format!(
                        "sdp: ssrc {ssrc} is in use on this server; offer another"
                    )));
                }
                rooms.free_ssrc(m.ssrc);
                m.ssrc = ssrc;
            }
        }
        let w = &self.workers[worker];
        let local = sdp::Local {
            ice_ufrag: sdp::ice_token(8),
            ice_pwd: sdp::ice_token(24),
            fingerprint: w.identity.fingerprint().to_owned(),
            addr: w.addr,
        };
        let answer = sdp::answer(&offer, &local, rand::random::<u32>().into())
            .map_err(|e| bad(e.to_string()))?;
        let cmd = RtcCommand::Add(webrtc::Params {
            local_ufrag: local.ice_ufrag.clone(),
            local_pwd: local.ice_pwd,
            remote_ufrag: offer.ice_ufrag.clone(),
            remote_fingerprint: offer.fingerprint.clone(),
            tag: Tag {
                conf,
                participant: m.participant,
                ssrc,
                clock_rate: protocol::codec::OPUS.clock_rate,
            },
        });
        if w.send_rtc(cmd).is_err() {
            return Err(Refusal::Reply(ServerMsg::Error {
                code: ErrorCode::Internal,
                text: "media worker busy; offer again".into(),
            }));
        }
        tracing::info!(conference = %m.conference, participant = m.participant, ssrc, "webrtc offer answered");
        m.rtc_ufrag = Some(local.ice_ufrag);
        Ok(answer)
    }

    /// Ends a leaving member's WebRTC session.
    pub(crate) fn end_webrtc(&self, m: &Membership) {
        let (Some(ufrag), Some((worker, _))) = (&m.rtc_ufrag, self.place_of(m)) else {
            return;
        };
        let _ = self.workers[worker].send_rtc(RtcCommand::Remove {
            ufrag: ufrag.clone(),
        });
    }
}
