//! Cascading, the service's side: a conference that runs on several servers is linked
//! pairwise. Each link has an end in the room's mesh (`Endpoint::Peer`: it gets what this
//! server's own members send, once) and mirrors the other server's members
//! (`Endpoint::Remote`: their streams arrive over the link, and the members here see them
//! in the roster like anyone else). The sessions that carry the lines are in
//! `crate::cascade`; everything they change goes through here.

use super::rooms::Rooms;
use super::{lock, Conferences};
use control::{CloseReason, Outbox};
use mesh::{Command, Endpoint, MediaKind, Remote};
use protocol::cascade::LinkActor;
use protocol::cascade::LINK_ACCOUNT;
use protocol::{ticket, Actor, LinkMsg, Mode, ServerMsg};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const AUDIO_RATE: u32 = 48_000;
const VIDEO_RATE: u32 = 90_000;

/// One linked server, in one room.
pub(crate) struct RoomLink {
    /// Lines to the linked server.
    outbox: Outbox,
    /// Our end of the link in the mesh, and the SSRCs it is known by over there.
    end: u32,
    end_ssrcs: [u32; 2],
    /// The linked server's media address for the room, and the SSRC its end is known by
    /// here (our RTCP about its members' streams carries it), once its `relay` came.
    theirs: Option<(SocketAddr, u32)>,
    /// Its members, by its id: our participant id, name and SSRCs.
    mirrors: BTreeMap<u32, Mirror>,
}

pub(crate) struct Mirror {
    pub(crate) local: u32,
    pub(crate) name: String,
    ssrcs: Vec<u32>,
    video: Option<u32>,
    /// Its lower simulcast encodings' SSRCs (claimed here like `ssrcs`).
    layers: Vec<u32>,
}

impl Mirror {
    /// Its (audio, video, lower simulcast encodings) SSRCs.
    pub(crate) fn streams(&self) -> (u32, Option<u32>, &[u32]) {
        (self.ssrcs[0], self.video, &self.layers)
    }
}

impl RoomLink {
    /// Who did something the linked server tells of: its member `by` (mirrored here),
    /// else an operator.
    fn actor(&self, by: Option<u32>) -> Actor {
        by.and_then(|b| self.mirrors.get(&b).map(|m| Actor::Participant(m.local)))
            .unwrap_or(Actor::Operator)
    }

    pub(crate) fn mirrors(&self) -> impl Iterator<Item = &Mirror> {
        self.mirrors.values()
    }

    /// The linked server's id of the member mirrored here as `local`.
    pub(crate) fn mirror_of(&self, local: u32) -> Option<u32> {
        self.mirrors
            .iter()
            .find(|(_, m)| m.local == local)
            .map(|(&id, _)| id)
    }

    pub(crate) fn send(&self, msg: &LinkMsg) {
        self.outbox.send(msg.encode());
    }

    pub(crate) fn close(&self) {
        self.outbox.finish(None, CloseReason::Done);
    }
}

/// Why a link line was refused; the session closes with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkRefusal {
    #[error("no conference {0} here")]
    NoConference(String),
    #[error("already linked with {0}")]
    Duplicate(String),
    #[error("bad link ticket: {0}")]
    Ticket(String),
    #[error("{0}")]
    Order(&'static str),
    #[error("media worker busy")]
    Busy,
}

impl Conferences {
    /// Checks the ticket of a server that wants to link `conference` with us, and spends
    /// it: a ticket opens one link (the connecting side presents it once), so one seen on
    /// the wire cannot open another.
    pub(crate) fn check_link_ticket(
        &self,
        conference: &str,
        peer: &str,
        t: &str,
    ) -> Result<(), LinkRefusal> {
        let claims = ticket::Claims {
            conference,
            account: LINK_ACCOUNT,
            user: peer,
            server: &self.settings.id,
        };
        ticket::verify(&self.settings.secret, t, &claims, super::unix_now())
            .map_err(|e| LinkRefusal::Ticket(e.to_string()))?;
        let expires = ticket::expiry(t).unwrap_or(0);
        lock(&self.spent)
            .claim(t, expires)
            .map_err(|_| LinkRefusal::Ticket("this link ticket was used already".into()))
    }

    /// A link with `peer` for `conference` is up: our end joins the room's mesh, and the
    /// peer is told where our media comes from and who is here. `mode`: create the room if
    /// needed (the side the dispatcher told to link); `None`: it must exist.
    pub(crate) fn link_open(
        &self,
        conference: &str,
        mode: Option<Mode>,
        peer: &str,
        outbox: &Outbox,
    ) -> Result<(), LinkRefusal> {
        let mut rooms = self.rooms();
        match mode {
            Some(mode) => {
                self.ensure_room(&mut rooms, conference, mode)
                    .map_err(|_| LinkRefusal::NoConference(conference.to_owned()))?;
            }
            None if rooms.get(conference).is_none() => {
                return Err(LinkRefusal::NoConference(conference.to_owned()))
            }
            None => {}
        }
        if rooms
            .get(conference)
            .is_some_and(|r| r.links.contains_key(peer))
        {
            return Err(LinkRefusal::Duplicate(peer.to_owned()));
        }
        let end = rooms.next_participant();
        let room = rooms.get(conference).expect("checked above");
        let (worker, conf) = (room.worker(), room.conf());
        let added = self
            .command(
                worker,
                Command::AddParticipant {
                    conf,
                    participant: end,
                },
            )
            .and_then(|()| {
                self.command(
                    worker,
                    Command::SetEndpoint {
                        conf,
                        participant: end,
                        endpoint: Endpoint::Peer,
                    },
                )
            });
        if added.is_err() {
            self.teardown(
                worker,
                Command::RemoveParticipant {
                    conf,
                    participant: end,
                },
            );
            return Err(LinkRefusal::Busy);
        }
        let end_ssrcs = [rooms.new_ssrc(end), rooms.new_ssrc(end)];
        let room = rooms.get_mut(conference).expect("checked above");
        let link = RoomLink {
            outbox: outbox.clone(),
            end,
            end_ssrcs,
            theirs: None,
            mirrors: BTreeMap::new(),
        };
        link.send(&LinkMsg::Relay {
            addr: self.workers[worker].addr,
            audio_ssrc: end_ssrcs[0],
            video_ssrc: end_ssrcs[1],
        });
        for (&id, m) in room.members() {
            link.send(&m.link_line(id));
            if let Some(line) = m.simulcast_line(id) {
                link.send(&line);
            }
        }
        room.links.insert(peer.to_owned(), link);
        tracing::info!(conference, peer, "linked");
        Ok(())
    }

    /// A line from the linked server `peer`.
    pub(crate) fn link_line(
        &self,
        conference: &str,
        peer: &str,
        msg: LinkMsg,
    ) -> Result<(), LinkRefusal> {
        let mut rooms = self.rooms();
        let rooms = &mut *rooms;
        let Some(room) = rooms.get_mut(conference) else {
            return Err(LinkRefusal::NoConference(conference.to_owned()));
        };
        let (worker, conf) = (room.worker(), room.conf());
        let Some(link) = room.links.get_mut(peer) else {
            return Err(LinkRefusal::NoConference(conference.to_owned()));
        };
        match msg {
            LinkMsg::Ping => Ok(()),
            LinkMsg::Hello { .. } => Err(LinkRefusal::Order("already linked")),
            LinkMsg::Relay {
                addr, audio_ssrc, ..
            } => {
                if link.theirs.is_some() {
                    return Err(LinkRefusal::Order("relay sent twice"));
                }
                link.theirs = Some((addr, audio_ssrc));
                for (kind, ssrc) in [
                    (MediaKind::Audio, link.end_ssrcs[0]),
                    (MediaKind::Video, link.end_ssrcs[1]),
                ] {
                    let cmd = relay_channel(conf, link.end, addr, kind, ssrc);
                    self.command(worker, cmd).map_err(|_| LinkRefusal::Busy)?;
                }
                Ok(())
            }
            LinkMsg::Member {
                id,
                name,
                audio_ssrc,
                video_ssrc,
            } => {
                let Some((addr, link_ssrc)) = link.theirs else {
                    return Err(LinkRefusal::Order("member before relay"));
                };
                // A member announced again (its SSRCs changed) is mirrored anew.
                if let Some(old) = link.mirrors.remove(&id) {
                    drop_mirror(self, rooms, conference, peer, old, false);
                }
                let local = rooms.next_participant();
                let mut ssrcs = vec![audio_ssrc];
                ssrcs.extend(video_ssrc);
                if !ssrcs.iter().all(|&s| rooms.claim_ssrc(s, local)) {
                    for &s in &ssrcs {
                        if rooms.ssrc_owner(s) == Some(local) {
                            rooms.free_ssrc(s);
                        }
                    }
                    tracing::warn!(
                        conference,
                        peer,
                        id,
                        "linked member's ssrc in use here; not mirrored"
                    );
                    return Ok(());
                }
                let mut cmds = vec![Command::AddParticipant {
                    conf,
                    participant: local,
                }];
                cmds.push(relay_channel(
                    conf,
                    local,
                    addr,
                    MediaKind::Audio,
                    audio_ssrc,
                ));
                if let Some(v) = video_ssrc {
                    cmds.push(relay_channel(conf, local, addr, MediaKind::Video, v));
                }
                cmds.push(Command::SetEndpoint {
                    conf,
                    participant: local,
                    endpoint: Endpoint::Remote { link_ssrc },
                });
                for cmd in cmds {
                    if self.command(worker, cmd).is_err() {
                        // This member is not mirrored (its media does not reach ours); the
                        // link and everyone else stay.
                        self.teardown(
                            worker,
                            Command::RemoveParticipant {
                                conf,
                                participant: local,
                            },
                        );
                        for &s in &ssrcs {
                            rooms.free_ssrc(s);
                        }
                        tracing::warn!(
                            conference,
                            peer,
                            id,
                            "linked member not mirrored: worker queue full"
                        );
                        return Ok(());
                    }
                }
                let room = rooms.get_mut(conference).expect("looked up above");
                room.broadcast(
                    &ServerMsg::AddUser {
                        participant: local,
                        name: name.clone(),
                    },
                    None,
                );
                // The room's other parts get it from the first, where the link is.
                self.mirror_member(rooms, conference, local, 0, (audio_ssrc, video_ssrc, &[]));
                let room = rooms.get_mut(conference).expect("looked up above");
                let mirror = Mirror {
                    local,
                    name,
                    ssrcs,
                    video: video_ssrc,
                    layers: Vec::new(),
                };
                if let Some(link) = room.links.get_mut(peer) {
                    link.mirrors.insert(id, mirror);
                }
                Ok(())
            }
            LinkMsg::Mute { id, on, by } => {
                // A moderator there (mirrored here) or an operator mutes our member.
                let by = link.actor(by);
                let room = rooms.get_mut(conference).expect("looked up above");
                if room.member(id).is_none() {
                    tracing::info!(conference, peer, id, "linked mute for nobody here");
                    return Ok(());
                }
                if let Err(r) = self.set_mute(room, id, on, by) {
                    tracing::warn!(conference, peer, id, refusal = ?r.line(), "linked mute not applied");
                }
                Ok(())
            }
            LinkMsg::Muted { id, on, by } => {
                let Some(local) = link.mirrors.get(&id).map(|m| m.local) else {
                    return Ok(());
                };
                let by = match by {
                    LinkActor::Operator => Actor::Operator,
                    LinkActor::Yours(p) => Actor::Participant(p),
                    LinkActor::Mine(p) => link
                        .mirrors
                        .get(&p)
                        .map_or(Actor::Operator, |m| Actor::Participant(m.local)),
                };
                let room = rooms.get_mut(conference).expect("looked up above");
                room.broadcast(
                    &ServerMsg::Muted {
                        participant: local,
                        muted: on,
                        by,
                    },
                    None,
                );
                Ok(())
            }
            LinkMsg::Kick { id, reason, by } => {
                let by = link.actor(by);
                let room = rooms.get_mut(conference).expect("looked up above");
                if let Err(r) = self.remove_member(room, id, by, reason) {
                    tracing::warn!(conference, peer, id, refusal = ?r.line(), "linked kick not applied");
                }
                Ok(())
            }
            LinkMsg::Lock { on, by } => {
                let by = link.actor(by);
                let room = rooms.get_mut(conference).expect("looked up above");
                self.lock_here(room, on, by);
                Ok(())
            }
            LinkMsg::MuteAll { on, by } => {
                let by = link.actor(by);
                let room = rooms.get_mut(conference).expect("looked up above");
                if let Err(r) = self.mute_all_here(room, on, by) {
                    tracing::warn!(conference, peer, refusal = ?r.line(), "linked mute all not applied");
                }
                Ok(())
            }
            LinkMsg::Gone { id } => {
                if let Some(old) = link.mirrors.remove(&id) {
                    drop_mirror(self, rooms, conference, peer, old, true);
                }
                Ok(())
            }
            LinkMsg::Simulcast { id, layers } => {
                // Taken out while the SSRCs change hands, put back below.
                let Some(mut m) = link.mirrors.remove(&id) else {
                    return Ok(());
                };
                let top = m.video;
                for s in m.layers.drain(..) {
                    if rooms.ssrc_owner(s) == Some(m.local) {
                        rooms.free_ssrc(s);
                    }
                }
                let claimed = top.is_some_and(|t| !layers.contains(&t))
                    && layers.iter().all(|&s| rooms.claim_ssrc(s, m.local));
                let cmd = match (claimed, top) {
                    (true, Some(top)) => {
                        m.layers = layers.clone();
                        let mut all = layers;
                        all.push(top);
                        Some(Command::SetSimulcast {
                            conf,
                            participant: m.local,
                            layers: all,
                        })
                    }
                    _ => {
                        for &s in &layers {
                            if rooms.ssrc_owner(s) == Some(m.local) {
                                rooms.free_ssrc(s);
                            }
                        }
                        tracing::warn!(conference, peer, id, "linked simulcast not taken");
                        None
                    }
                };
                let local = m.local;
                if let (Some(top), true) = (m.video, cmd.is_some()) {
                    self.resimulcast(rooms, conference, local, &m.layers, top);
                }
                if let Some(link) = rooms
                    .get_mut(conference)
                    .and_then(|r| r.links.get_mut(peer))
                {
                    link.mirrors.insert(id, m);
                }
                tracing::debug!(conference, peer, id, local, "linked simulcast");
                match cmd {
                    Some(cmd) => self.command(worker, cmd).map_err(|_| LinkRefusal::Busy),
                    None => Ok(()),
                }
            }
        }
    }

    /// The link with `peer` for `conference` ended: its members leave this room's roster,
    /// and our end leaves the mesh. The members here keep talking among themselves.
    pub(crate) fn link_closed(&self, conference: &str, peer: &str) {
        let mut rooms = self.rooms();
        let Some(link) = rooms.get_mut(conference).and_then(|r| r.links.remove(peer)) else {
            return;
        };
        let RoomLink {
            end,
            end_ssrcs,
            mirrors,
            ..
        } = link;
        for (_, m) in mirrors {
            drop_mirror(self, &mut rooms, conference, peer, m, true);
        }
        for s in end_ssrcs {
            rooms.free_ssrc(s);
        }
        if let Some(room) = rooms.get(conference) {
            self.teardown(
                room.worker(),
                Command::RemoveParticipant {
                    conf: room.conf(),
                    participant: end,
                },
            );
        }
        tracing::info!(conference, peer, "link closed");
    }

    /// The conferences linked with other servers.
    pub(crate) fn linked(&self) -> std::collections::BTreeSet<String> {
        let rooms = lock(&self.rooms);
        rooms
            .iter()
            .filter(|(_, r)| !r.links.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// The channel of `participant`'s `kind` stream from (and to) a linked server or worker at
/// `addr`, whose address all its streams share.
pub(super) fn relay_channel(
    conf: mesh::ConfId,
    participant: u32,
    addr: SocketAddr,
    kind: MediaKind,
    ssrc: u32,
) -> Command<crate::path::MediaPath> {
    Command::SetChannel {
        conf,
        participant,
        kind,
        remote: Remote::Relay(addr),
        ssrc,
        clock_rate: match kind {
            MediaKind::Audio => AUDIO_RATE,
            MediaKind::Video => VIDEO_RATE,
        },
    }
}

impl Conferences {
    /// Member `id` sends simulcast video with lower encodings `layers` (none: no longer):
    /// its roster entry, its mirrors on the room's other workers and every linked server
    /// learn them, so each fans out the encoding that fits each of its members.
    pub(super) fn share_simulcast(
        &self,
        rooms: &mut Rooms,
        conference: &str,
        id: u32,
        layers: &[u32],
    ) {
        let Some(room) = rooms.get_mut(conference) else {
            return;
        };
        let Some(member) = room.member_mut(id) else {
            return;
        };
        member.simulcast = layers.to_vec();
        let line = LinkMsg::Simulcast {
            id,
            layers: layers.to_vec(),
        };
        let top = member.video_ssrc;
        for link in room.links.values() {
            link.send(&line);
        }
        if let Some(top) = top {
            self.resimulcast(rooms, conference, id, layers, top);
        }
    }
}

/// Takes a mirrored member out of the mesh and (`tell`) the roster.
fn drop_mirror(
    service: &Conferences,
    rooms: &mut Rooms,
    conference: &str,
    peer: &str,
    m: Mirror,
    tell: bool,
) {
    for &s in m.ssrcs.iter().chain(&m.layers) {
        if rooms.ssrc_owner(s) == Some(m.local) {
            rooms.free_ssrc(s);
        }
    }
    let Some(room) = rooms.get_mut(conference) else {
        return;
    };
    // On every part of the room: the others mirror it from the first.
    for (worker, conf) in room.places() {
        service.teardown(
            worker,
            Command::RemoveParticipant {
                conf,
                participant: m.local,
            },
        );
    }
    room.set_speaking(m.local, false);
    if tell {
        room.broadcast(
            &ServerMsg::DelUser {
                participant: m.local,
                name: m.name,
            },
            None,
        );
    }
    tracing::debug!(conference, peer, participant = m.local, "mirror removed");
}
