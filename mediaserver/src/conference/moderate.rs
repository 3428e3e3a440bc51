//! Conference control: what members do to each other and say to each other while in a
//! room. Moderators (their ticket's signed role) and operators (the dispatcher's admin
//! API, over the registry link) mute and unmute, mute all, kick, lock and end; everyone may
//! mute itself, raise its hand, and chat, publicly or to one member, within a rate.
//!
//! Every action is enforced here, whatever the room's mode (the mesh's filter and the
//! mixer both leave a muted member out), and every member is told of it with one line
//! naming who did what to whom. A refused request is answered with a `reject` that ends
//! nothing: the member stays, and nothing changed.

use super::rooms::Room;
use super::{unix_now, Conferences, Membership, Refusal};
use control::CloseReason;
use mesh::Command;
use protocol::ticket;
use protocol::{Actor, ErrorCode, ServerMsg};
use std::sync::atomic::Ordering;
use std::time::Instant;

fn not_here(participant: u32) -> Refusal {
    Refusal::Reply(ServerMsg::reject(
        ErrorCode::NotFound,
        format!("no participant {participant} here"),
    ))
}

/// Who acted, as a link line names it: a member by its id here, none for an operator.
fn link_by(by: Actor) -> Option<u32> {
    match by {
        Actor::Participant(p) => Some(p),
        Actor::Operator => None,
    }
}

fn forbidden(what: &str) -> Refusal {
    Refusal::Reply(ServerMsg::reject(
        ErrorCode::Forbidden,
        format!("{what} needs a moderator (join with the account's moderator PIN)"),
    ))
}

/// A moderator action of `m`: refused unless `m` moderates `room`.
pub(super) fn must_moderate(room: &Room, m: &Membership, what: &str) -> Result<(), Refusal> {
    match room.member(m.participant) {
        Some(me) if me.is_moderator() => Ok(()),
        _ => {
            tracing::info!(conference = %m.conference, participant = m.participant, what, "refused: not a moderator");
            Err(forbidden(what))
        }
    }
}

impl Conferences {
    /// `mute ID on|off`: a member mutes or unmutes itself (unless a moderator muted it),
    /// or a moderator anyone.
    pub(crate) fn mute(&self, m: &Membership, target: u32, on: bool) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let room = rooms
            .get_mut(&m.conference)
            .ok_or_else(|| not_here(target))?;
        if target != m.participant {
            must_moderate(room, m, "muting someone else")?;
        }
        self.set_mute(room, target, on, Actor::Participant(m.participant))
    }

    /// `mute all on|off` (moderators): every member who is not a moderator.
    pub(crate) fn mute_all(&self, m: &Membership, on: bool) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        must_moderate(room, m, "mute all")?;
        // Linked servers mute their own members the same way.
        let line = protocol::LinkMsg::MuteAll {
            on,
            by: Some(m.participant),
        };
        for link in room.links.values() {
            link.send(&line);
        }
        self.mute_all_here(room, on, Actor::Participant(m.participant))
    }

    /// Mutes or unmutes every member of this server's part of `room` who is not a
    /// moderator, `by` a moderator here or on a linked server.
    pub(super) fn mute_all_here(
        &self,
        room: &mut Room,
        on: bool,
        by: Actor,
    ) -> Result<(), Refusal> {
        let targets: Vec<u32> = room
            .members()
            .iter()
            .filter(|(_, x)| !x.is_moderator())
            .map(|(&id, _)| id)
            .collect();
        for t in targets {
            self.set_mute(room, t, on, by)?;
        }
        Ok(())
    }

    /// An operator's mute or unmute (admin API), as a moderator's.
    pub(crate) fn operator_mute(&self, conference: &str, target: u32, on: bool, operator: &str) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(conference) else {
            tracing::warn!(
                conference,
                operator,
                "operator mute: no such conference here"
            );
            return;
        };
        match self.set_mute(room, target, on, Actor::Operator) {
            Ok(()) => {
                tracing::info!(
                    conference,
                    participant = target,
                    on,
                    operator,
                    "operator mute"
                )
            }
            Err(e) => {
                tracing::warn!(conference, participant = target, operator, refusal = ?e, "operator mute not applied")
            }
        }
    }

    /// Mutes or unmutes `target` for `by`: itself (a soft mute it may lift) or a moderator
    /// or operator (a hard mute only they may lift). Applies the change in the mesh and
    /// tells every member.
    pub(super) fn set_mute(
        &self,
        room: &mut Room,
        target: u32,
        on: bool,
        by: Actor,
    ) -> Result<(), Refusal> {
        // A linked server's member: its own server mutes it (and tells everyone).
        if room.member(target).is_none() {
            let (peer, id) = room.mirror_origin(target).ok_or_else(|| not_here(target))?;
            let by = link_by(by);
            if let Some(link) = room.links.get(&peer) {
                link.send(&protocol::LinkMsg::Mute { id, on, by });
            }
            return Ok(());
        }
        // The member's own part of the room: its mirrors elsewhere get only what it lets out.
        let (worker, conf) = room.place(room.home(target));
        let member = room.member_mut(target).ok_or_else(|| not_here(target))?;
        let was = member.muted();
        let (self_before, hard_before, raised) =
            (member.self_muted, member.hard_muted, member.raised);
        if by == Actor::Participant(target) {
            if !on && member.hard_muted.is_some() {
                return Err(Refusal::Reply(ServerMsg::reject(
                    ErrorCode::Forbidden,
                    "a moderator muted you; raise your hand to ask to speak",
                )));
            }
            member.self_muted = on;
        } else {
            member.hard_muted = on.then_some(by);
            // Lifting the mute answers a raised hand.
            if !on {
                member.raised = false;
            }
        }
        let muted = member.muted();
        if muted != was {
            let applied = self.apply(
                worker,
                Command::Mute {
                    conf,
                    participant: target,
                    muted,
                },
            );
            if let Err(e) = applied {
                if let Some(member) = room.member_mut(target) {
                    (member.self_muted, member.hard_muted) = (self_before, hard_before);
                }
                return Err(e);
            }
        }
        self.stats.moderations.fetch_add(1, Ordering::Relaxed);
        room.broadcast(
            &ServerMsg::Muted {
                participant: target,
                muted: on,
                by,
            },
            None,
        );
        // Linked servers tell their members, naming who did it in ids they know.
        let mirrored_by = match by {
            Actor::Participant(p) if room.member(p).is_none() => room.mirror_origin(p),
            _ => None,
        };
        for (peer, link) in &room.links {
            let by = match (by, &mirrored_by) {
                (Actor::Participant(_), Some((from, id))) if from == peer => {
                    protocol::cascade::LinkActor::Yours(*id)
                }
                (Actor::Participant(p), None) => protocol::cascade::LinkActor::Mine(p),
                _ => protocol::cascade::LinkActor::Operator,
            };
            link.send(&protocol::LinkMsg::Muted { id: target, on, by });
        }
        if raised && !on && by != Actor::Participant(target) {
            room.to_moderators(
                &ServerMsg::Raise {
                    participant: target,
                    on: false,
                },
                Some(target),
            );
        }
        Ok(())
    }

    /// `kick ID REASON` (moderators).
    pub(crate) fn kick(&self, m: &Membership, target: u32, reason: String) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Err(not_here(target));
        };
        must_moderate(room, m, "kick")?;
        if target == m.participant {
            return Err(Refusal::Reply(ServerMsg::reject(
                ErrorCode::BadRequest,
                "you cannot kick yourself; send endsession to leave",
            )));
        }
        self.remove_member(room, target, Actor::Participant(m.participant), reason)
    }

    /// An operator's kick (admin API).
    pub(crate) fn operator_kick(
        &self,
        conference: &str,
        target: u32,
        operator: &str,
        reason: String,
    ) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(conference) else {
            tracing::warn!(
                conference,
                operator,
                "operator kick: no such conference here"
            );
            return;
        };
        match self.remove_member(room, target, Actor::Operator, reason) {
            Ok(()) => tracing::info!(conference, participant = target, operator, "operator kick"),
            Err(e) => {
                tracing::warn!(conference, participant = target, operator, refusal = ?e, "operator kick not applied")
            }
        }
    }

    /// Tells everyone that `target` is removed and why, revokes its ticket (it cannot come
    /// back with it) and closes its connection; its session then leaves as any other does,
    /// so the others get `deluser`.
    pub(super) fn remove_member(
        &self,
        room: &mut Room,
        target: u32,
        by: Actor,
        reason: String,
    ) -> Result<(), Refusal> {
        let reason = match reason.trim() {
            "" => "removed by a moderator".to_owned(),
            r => protocol::clip(r),
        };
        // A linked server's member: its own server removes it (its leave comes back as
        // `gone`); the members here are told now, with the reason.
        let local = match room.member(target) {
            Some(m) => Some((m.ticket.clone(), m.outbox.clone())),
            None => {
                let (peer, id) = room.mirror_origin(target).ok_or_else(|| not_here(target))?;
                let line = protocol::LinkMsg::Kick {
                    id,
                    reason: reason.clone(),
                    by: link_by(by),
                };
                if let Some(link) = room.links.get(&peer) {
                    link.send(&line);
                }
                None
            }
        };
        tracing::info!(participant = target, %by, reason, "kicked");
        room.broadcast(
            &ServerMsg::Kicked {
                participant: target,
                by,
                reason,
            },
            None,
        );
        self.stats.moderations.fetch_add(1, Ordering::Relaxed);
        let Some((ticket, outbox)) = local else {
            return Ok(());
        };
        self.revoke(&ticket);
        outbox.finish(None, CloseReason::Done);
        Ok(())
    }

    /// `lock on|off` (moderators).
    pub(crate) fn lock(&self, m: &Membership, on: bool) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        must_moderate(room, m, "lock")?;
        self.set_lock(room, on, Actor::Participant(m.participant));
        tracing::info!(conference = %m.conference, on, by = m.participant, "lock");
        Ok(())
    }

    /// An operator's lock or unlock (admin API).
    pub(crate) fn operator_lock(&self, conference: &str, on: bool, operator: &str) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(conference) else {
            tracing::warn!(
                conference,
                operator,
                "operator lock: no such conference here"
            );
            return;
        };
        self.set_lock(room, on, Actor::Operator);
        tracing::info!(conference, on, operator, "operator lock");
    }

    /// Locks or unlocks the room here and on every linked server, which lock their parts
    /// so that a join spread to them is refused too.
    fn set_lock(&self, room: &mut Room, on: bool, by: Actor) {
        let line = protocol::LinkMsg::Lock {
            on,
            by: link_by(by),
        };
        for link in room.links.values() {
            link.send(&line);
        }
        self.lock_here(room, on, by);
    }

    /// Locks or unlocks this server's part of `room` and tells its members.
    pub(super) fn lock_here(&self, room: &mut Room, on: bool, by: Actor) {
        room.set_locked(on.then_some(by));
        self.stats.moderations.fetch_add(1, Ordering::Relaxed);
        room.broadcast(&ServerMsg::Locked { on, by }, None);
    }

    /// `layout grid|speaker|presentation` (moderators of a composite conference).
    pub(crate) fn layout(&self, m: &Membership, layout: protocol::Layout) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        must_moderate(room, m, "layout")?;
        self.set_layout(room, layout, Actor::Participant(m.participant))?;
        tracing::info!(conference = %m.conference, %layout, by = m.participant, "layout");
        Ok(())
    }

    /// An operator's layout (admin API).
    pub(crate) fn operator_layout(
        &self,
        conference: &str,
        layout: protocol::Layout,
        operator: &str,
    ) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(conference) else {
            tracing::warn!(
                conference,
                operator,
                "operator layout: no such conference here"
            );
            return;
        };
        match self.set_layout(room, layout, Actor::Operator) {
            Ok(()) => tracing::info!(conference, %layout, operator, "operator layout"),
            Err(_) => tracing::warn!(
                conference,
                operator,
                "operator layout: not a composite conference"
            ),
        }
    }

    fn set_layout(
        &self,
        room: &mut Room,
        layout: protocol::Layout,
        by: Actor,
    ) -> Result<(), Refusal> {
        let Some(control) = &room.composite else {
            return Err(Refusal::Reply(ServerMsg::reject(
                ErrorCode::BadRequest,
                "layout: this conference is not composited (join it with mode=composite)",
            )));
        };
        control.set_layout(layout);
        self.stats.moderations.fetch_add(1, Ordering::Relaxed);
        room.broadcast(&ServerMsg::Layout { layout, by }, None);
        Ok(())
    }

    /// `endconference` (moderators): everyone is told, then every connection is closed.
    pub(crate) fn end_conference(&self, m: &Membership) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        must_moderate(room, m, "endconference")?;
        let by = Actor::Participant(m.participant);
        room.broadcast(&ServerMsg::Ended { by }, None);
        for (_, member) in room.members_mut() {
            member.outbox.finish(None, CloseReason::Done);
        }
        self.stats.moderations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(conference = %m.conference, by = m.participant, "conference ended by a moderator");
        Ok(())
    }

    /// `raise on|off`: the moderators (and the member itself) see the hand.
    pub(crate) fn raise(&self, m: &Membership, on: bool) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        let Some(me) = room.member_mut(m.participant) else {
            return Ok(());
        };
        if me.raised == on {
            return Ok(());
        }
        me.raised = on;
        room.to_moderators(
            &ServerMsg::Raise {
                participant: m.participant,
                on,
            },
            Some(m.participant),
        );
        Ok(())
    }

    /// `text`: to every other member, or with `to` to that one only, within the sender's
    /// chat rate. Past it the first refused line is answered and the rest of the flood is
    /// dropped quietly; nobody else sees any of it.
    pub(crate) fn text(
        &self,
        m: &Membership,
        text: String,
        to: Option<u32>,
    ) -> Result<(), Refusal> {
        let (rate, burst) = (self.settings.chat_rate, self.settings.chat_burst);
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        let Some(me) = room.member_mut(m.participant) else {
            return Ok(());
        };
        if let Err(answer) = me.chat.take(Instant::now(), rate, burst) {
            self.stats.chat_refused.fetch_add(1, Ordering::Relaxed);
            if !answer {
                return Ok(());
            }
            return Err(Refusal::Reply(ServerMsg::reject(
                ErrorCode::RateLimited,
                format!(
                    "chat is limited to {rate} lines a second (bursts of {burst}); line dropped"
                ),
            )));
        }
        let from = me.name.clone();
        let line = ServerMsg::Text {
            from,
            text,
            id: Some(m.participant),
            to,
        };
        match to {
            None => room.broadcast(&line, Some(m.participant)),
            Some(t) => {
                let target = room.member(t).ok_or_else(|| not_here(t))?;
                target.outbox.send(line.encode());
            }
        }
        self.stats.chat_lines.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Marks a kicked member's ticket, until it expires: it cannot bring it back.
    fn revoke(&self, t: &str) {
        let expires = ticket::expiry(t).unwrap_or_else(|| unix_now() + 3600);
        super::lock(&self.spent).kick(t, expires);
    }
}
