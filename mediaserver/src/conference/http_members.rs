//! Members without a control connection: WHIP publishers and WHEP viewers (RFC 9725), who
//! join with one HTTP request and leave with a `DELETE` on the resource it created. Each
//! holds a headless link ([`control::Link::headless`]): the join flow is the same one a
//! `join` line takes, the lines sent to it go nowhere, and closing its link (a `DELETE`, a
//! kick, the conference's end, or its WebRTC session ending) is how it leaves.
//!
//! A viewer follows the speaker: its one audio and one video slot carry the dominant
//! speaker's streams, switched by SSRC rewriting in its session (no renegotiation). In a
//! mix room its audio is the mix, so only its video follows; a speaker without a camera
//! leaves the video on the last one that had one.

use super::join::Membership;
use super::{lock, Conferences};
use crate::rtc::RtcCommand;
use control::{CloseReason, Outbox, Transport};
use protocol::Mode;

/// A WHIP or WHEP resource: where it is, and the link that ends it.
pub(crate) struct Resource {
    pub conference: String,
    pub participant: u32,
    outbox: Outbox,
}

impl Conferences {
    /// Keeps a new resource; its id goes in the `Location` of the `201`.
    pub(crate) fn add_resource(
        &self,
        conference: &str,
        participant: u32,
        outbox: Outbox,
    ) -> String {
        // 128 random bits, in hex: a path segment as it is.
        let id = format!("{:032x}", rand::random::<u128>());
        lock(&self.resources).insert(
            id.clone(),
            Resource {
                conference: conference.to_owned(),
                participant,
                outbox,
            },
        );
        id
    }

    /// Forgets a resource whose member left.
    pub(crate) fn forget_resource(&self, id: &str) {
        lock(&self.resources).remove(id);
    }

    /// `DELETE` on a resource of `conference`: its member leaves. False when there is none.
    pub(crate) fn end_resource(&self, conference: &str, id: &str) -> bool {
        let r = lock(&self.resources);
        let Some(r) = r.get(id).filter(|r| r.conference == conference) else {
            return false;
        };
        tracing::info!(
            conference,
            participant = r.participant,
            "http member ends its session"
        );
        r.outbox.close(CloseReason::Done);
        true
    }

    /// Whether resource `id` of `conference` exists (for `PATCH`).
    pub(crate) fn has_resource(&self, conference: &str, id: &str) -> bool {
        lock(&self.resources)
            .get(id)
            .is_some_and(|r| r.conference == conference)
    }

    /// A member's WebRTC session ended: a member that joined over HTTP has no other way
    /// out, so it leaves now.
    pub(crate) fn on_rtc_closed(&self, worker: usize, conf: mesh::ConfId, participant: u32) {
        let mut rooms = self.rooms();
        let Some(m) = rooms
            .by_conf(worker, conf)
            .and_then(|r| r.member(participant))
        else {
            return;
        };
        if m.outbox.transport() == Transport::Http {
            tracing::info!(
                participant,
                "webrtc session of an http member ended: it leaves"
            );
            m.outbox.close(CloseReason::Done);
        }
    }

    /// The mode conference `name` runs in here, if it does.
    pub(crate) fn room_mode(&self, name: &str) -> Option<Mode> {
        self.rooms().get(name).map(|r| r.mode())
    }

    /// The viewer `m` (its offer answered) follows the speaker from now on.
    pub(crate) fn follow_speaker(&self, m: &Membership) {
        let Some(ufrag) = m.rtc_ufrag.clone() else {
            return;
        };
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return;
        };
        if let Some(member) = room.member_mut(m.participant) {
            member.follows = Some(ufrag);
        }
        if let Some(d) = room.dominant() {
            drop(rooms);
            self.refollow(&m.conference, d);
        }
    }

    /// The dominant speaker of `conference` is now `speaker`: every viewer that follows
    /// the speaker switches to its streams.
    pub(super) fn refollow(&self, conference: &str, speaker: u32) {
        let rooms = self.rooms();
        let Some(room) = rooms.get(conference) else {
            return;
        };
        // Each viewer's session lives on its own part's worker.
        let viewers: Vec<(String, usize)> = room
            .members()
            .values()
            .filter_map(|m| m.follows.clone().map(|f| (f, room.place(m.shard).0)))
            .collect();
        if viewers.is_empty() {
            return;
        }
        let sources = rooms.ssrcs_of(speaker);
        let audio = !room.mode().mixes();
        // A speaker without a camera leaves viewers on the last picture they had.
        let video = room.member(speaker).is_some_and(|m| m.video);
        drop(rooms);
        if !audio && !video {
            return;
        }
        for (ufrag, worker) in viewers {
            let cmd = RtcCommand::Follow {
                ufrag,
                audio,
                video,
                sources: sources.clone(),
            };
            if self.workers[worker].send_rtc(cmd).is_err() {
                tracing::warn!(conference, "worker busy: a viewer keeps its last speaker");
            }
        }
    }
}
