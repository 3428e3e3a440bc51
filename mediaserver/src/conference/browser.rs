//! Browser members: a joined member's SDP offer (after `accept`: the ticket was checked by
//! `join`) becomes a WebRTC session on its room's worker, and the answer goes back as `sdp`
//! lines. The member's audio SSRC becomes the browser's own, from its offer, as an external
//! sender's does.

use super::join::Membership;
use super::{Conferences, Refusal};
use crate::rtc::{RtcCommand, SlotTaken, Tag};
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
        // A receive-only offer (a WHEP viewer) has no voice: the member keeps our SSRC.
        let voice = match offer.voice() {
            Some(v) => Some(
                v.ssrc
                    .ok_or_else(|| bad("sdp: the audio section announces no a=ssrc"))?,
            ),
            None => None,
        };
        let Some((worker, conf)) = self.place_of(m) else {
            return Err(bad("not in a conference"));
        };
        let w = &self.workers[worker];
        let local = sdp::Local {
            ice_ufrag: sdp::ice_token(8),
            ice_pwd: sdp::ice_token(24),
            fingerprint: w.identity.fingerprint().to_owned(),
            addr: w.addr,
            tcp: w.ice_tcp,
        };
        // Video only for a member that joined with it (it is charged for it), in the
        // room's codec.
        let mut answer =
            webrtc::answer::answer(&offer, &local, rand::random::<u32>().into(), m.video_codec)
                .map_err(|e| bad(e.to_string()))?;
        let mut simulcast = [0u32; 2];
        {
            let mut rooms = self.rooms();
            // The browser picks its own SSRCs: take them in place of the ones we offered.
            let mut take = |have: &mut u32, want: u32| -> Result<(), Refusal> {
                if want != *have {
                    if !rooms.claim_ssrc(want, m.participant) {
                        return Err(bad(format!(
                            "sdp: ssrc {want} is in use on this server; offer another"
                        )));
                    }
                    rooms.free_ssrc(*have);
                    *have = want;
                }
                Ok(())
            };
            if let Some(ssrc) = voice {
                take(&mut m.ssrc, ssrc)?;
            }
            if let (Some(v), Some(cam)) = (m.video_ssrc.as_mut(), answer.video_ssrc) {
                take(v, cam)?;
            }
            if let Some(member) = rooms
                .get_mut(&m.conference)
                .and_then(|r| r.member_mut(m.participant))
            {
                member.slot_mids = answer.slot_mids.clone();
            }
            // A simulcast camera: its lower encodings get SSRCs of their own, the top one
            // the member's video SSRC, and the mesh sees a simulcast sender.
            if let (Some(top), Some(ext)) = (m.video_ssrc, answer.rid_id) {
                for s in m.simulcast.drain(..) {
                    rooms.free_ssrc(s);
                }
                let n = answer.rids.len().min(simulcast.len() + 1);
                let mut ssrcs: Vec<u32> = (1..n).map(|_| rooms.new_ssrc(m.participant)).collect();
                m.simulcast = ssrcs.clone();
                ssrcs.push(top);
                let layers: Vec<(&str, u32)> = answer
                    .rids
                    .iter()
                    .map(String::as_str)
                    .zip(ssrcs.iter().copied())
                    .collect();
                if let Some(r) = webrtc::rids::Rids::new(ext, &layers) {
                    answer.slots.set_simulcast(r);
                    simulcast[..n - 1].copy_from_slice(&ssrcs[..n - 1]);
                }
                self.share_simulcast(&mut rooms, &m.conference, m.participant, &m.simulcast);
            }
        }
        let (rtx, twcc_id) = (answer.rtx(), answer.twcc_id);
        let cmd = RtcCommand::Add(Box::new(webrtc::Params {
            local_ufrag: local.ice_ufrag.clone(),
            local_pwd: local.ice_pwd,
            remote_ufrag: offer.ice_ufrag.clone(),
            remote_fingerprint: offer.fingerprint.clone(),
            tag: Tag {
                conf,
                participant: m.participant,
                ssrc: m.ssrc,
                clock_rate: protocol::codec::OPUS.clock_rate,
                video_ssrc: m.video_ssrc,
                simulcast,
            },
            slots: answer.slots,
            twcc_id,
        }));
        if w.send_rtc(cmd).is_err() {
            return Err(Refusal::Reply(ServerMsg::Error {
                code: ErrorCode::Internal,
                text: "media worker busy; offer again".into(),
            }));
        }
        // Its video slots declare RTX: the reflector's retransmissions to it go as RTX.
        if rtx {
            m.prefs.rtx_payload_type = Some(protocol::codec::BROWSER_RTX_PT);
            self.send_prefs(m)?;
        }
        tracing::info!(conference = %m.conference, participant = m.participant, ssrc = m.ssrc, "webrtc offer answered");
        m.rtc_ufrag = Some(local.ice_ufrag);
        Ok(answer.sdp)
    }

    /// A member's stream took a browser's receive slot: the page learns whose it is.
    pub(crate) fn on_slot(&self, worker: usize, s: SlotTaken) {
        let mut rooms = self.rooms();
        // A member's own stream, a sender's transcoded one, or the room's mix or composite.
        let owner = rooms
            .ssrc_owner(s.source)
            .or_else(|| crate::transcode::source_of(s.source))
            .unwrap_or(0);
        let Some(member) = rooms
            .by_conf(worker, s.conf)
            .and_then(|r| r.member(s.participant))
        else {
            return;
        };
        if let Some(mid) = member.slot_mids.get(s.slot) {
            member.outbox.send(
                ServerMsg::Slot {
                    mid: mid.clone(),
                    participant: owner,
                }
                .encode(),
            );
        }
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
