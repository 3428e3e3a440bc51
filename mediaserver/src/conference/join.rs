//! Members: join (ticket, codecs, room, roster, channels), their lines while in the room,
//! and leave.

use super::rooms::{ChatBucket, Member, Room, Rooms};
use super::{unix_now, Conferences, Refusal};
use crate::path::MediaPath;
use control::Outbox;
use mesh::{Command, Remote};
use protocol::codec;
use protocol::ticket::{self, Claims};
use protocol::{
    Actor, ChannelAddr, ChannelOpts, ErrorCode, JoinOpts, MediaKind, Mode, MsMsg, Role, ServerMsg,
};
use reflector::VideoCodec;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

/// Opus on the wire, as announced in `channel` (`protocol::codec` is the table).
const OPUS_PT: u8 = codec::OPUS.payload_type;
const OPUS_RATE: u32 = codec::OPUS.clock_rate;
/// Video on the wire: H.264 (packetization-mode 1) or VP8, 90 kHz (RFC 6184, RFC 7741).
pub(super) const H264_PT: u8 = codec::H264.payload_type;
pub(super) const VP8_PT: u8 = codec::VP8.payload_type;
const VIDEO_RATE: u32 = codec::VIDEO_CLOCK_RATE;

/// A joined client's place in its conference, held by its session.
#[derive(Debug)]
pub(crate) struct Membership {
    pub conference: String,
    pub participant: u32,
    /// The audio SSRC: the one from our `channel` line, or an external sender's own
    /// (`latch:PORT`).
    pub(super) ssrc: u32,
    /// RTP clock rate of the client's codec.
    clock_rate: u32,
    /// The video SSRC, when the join asked for `media=audio,video`.
    pub(super) video_ssrc: Option<u32>,
    /// The conference's video codec as this member was given it (`h264`, `vp8`).
    pub(super) video_codec: Option<&'static str>,
    /// The lower simulcast encodings' SSRCs the client declared (`simulcast=`), or the
    /// server gave a browser's simulcast camera.
    pub(super) simulcast: Vec<u32>,
    /// What the client asked about the video it receives (`rtx=`, `layer`).
    pub(super) prefs: mesh::ReceiverPrefs,
    /// A browser's WebRTC session (our ICE ufrag), once its offer was answered.
    pub(super) rtc_ufrag: Option<String>,
}

/// What a `join` asked for, as the host parsed it.
pub(crate) struct JoinRequest<'a> {
    pub conference: &'a str,
    pub account: &'a str,
    pub name: &'a str,
    pub opts: &'a JoinOpts,
}

/// The codec a `join` asks for: (payload type, name, clock rate). G.711 needs the mixer.
fn codec_of(opts: &JoinOpts) -> Result<(u8, &'static str, u32), ServerMsg> {
    match opts
        .codec
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("opus") => Ok((OPUS_PT, "opus", OPUS_RATE)),
        Some(c @ ("pcmu" | "pcma")) if opts.mode.mixes() => {
            let g711 = if c == "pcmu" {
                codec::PCMU
            } else {
                codec::PCMA
            };
            Ok((g711.payload_type, g711.name, g711.clock_rate))
        }
        Some("pcmu" | "pcma") => Err(ServerMsg::reject(
            ErrorCode::BadRequest,
            "G.711 (pcmu, pcma) needs mode=mix",
        )),
        Some(_) => Err(ServerMsg::reject(
            ErrorCode::BadRequest,
            "codecs offered: opus; pcmu and pcma with mode=mix",
        )),
    }
}

/// Whether a join asks for one stream (`stream=single`): the mix and one composite.
fn single_stream(opts: &JoinOpts) -> bool {
    opts.extra
        .iter()
        .any(|(k, v)| k == "stream" && v == "single")
}

/// The video codec of a `join` with `media=...,video`: (payload type, name). `vcodec=` lists
/// the codecs the client takes, in its order of preference (`vp8,h264`; one for a
/// plain-RTP tool). A conference's video codec is its first video member's, which later
/// members get when they take it; one that cannot keeps its own and the server transcodes
/// between the two (`transcodes`), or, on a server that cannot, is refused (`reject 409`).
/// Without `vcodec=`: the room's, or H.264 in a new room.
fn video_codec_of(
    opts: &JoinOpts,
    room: Option<&'static str>,
    conference: &str,
    transcodes: bool,
) -> Result<Option<(u8, &'static str)>, ServerMsg> {
    if !opts.media.contains(&MediaKind::Video) {
        return Ok(None);
    }
    let of = |name: &'static str| match name {
        "vp8" => (VP8_PT, "vp8"),
        _ => (H264_PT, "h264"),
    };
    let asked = opts
        .extra
        .iter()
        .find(|(k, _)| k == "vcodec")
        .map(|(_, v)| v.as_str());
    // A single-stream endpoint, and every member of a composite room, gets the composite,
    // which is H.264.
    let asked = match (single_stream(opts) || opts.mode == Mode::Composite, asked) {
        (false, a) => a,
        (true, None) => Some("h264"),
        (true, Some(a)) if a.split(',').any(|c| c.trim().eq_ignore_ascii_case("h264")) => {
            Some("h264")
        }
        (true, Some(_)) => {
            return Err(ServerMsg::reject(
                ErrorCode::BadRequest,
                "the composite is H.264 (stream=single, mode=composite): join with vcodec=h264",
            ))
        }
    };
    let Some(asked) = asked else {
        return Ok(Some(of(room.unwrap_or("h264"))));
    };
    let mut list = Vec::new();
    for c in asked.split(',') {
        match c.trim().to_ascii_lowercase().as_str() {
            "h264" => list.push("h264"),
            "vp8" => list.push("vp8"),
            _ => {
                return Err(ServerMsg::reject(
                    ErrorCode::BadRequest,
                    "video codecs offered: h264, vp8",
                ))
            }
        }
    }
    match room {
        Some(r) if list.contains(&r) => Ok(Some(of(r))),
        // Its own codec: the others' video is transcoded for it, and its for them.
        Some(_) if transcodes => Ok(list.first().map(|&c| of(c))),
        Some(r) => Err(ServerMsg::reject(
            ErrorCode::WrongState,
            format!(
                "conference {} sends its video as {r}; join with vcodec={r}",
                protocol::clip(conference)
            ),
        )),
        None => Ok(list.first().map(|&c| of(c))),
    }
}

/// What a newcomer is told after the roster: who moderates, who is muted (and by whom),
/// whose hand is up (moderators only), and whether the room is locked.
fn state_lines(room: &Room, me: u32, my_role: Role) -> Vec<ServerMsg> {
    let mut lines = Vec::new();
    for (&id, m) in room.members() {
        if m.role != Role::Participant {
            lines.push(ServerMsg::Role {
                participant: id,
                role: m.role,
            });
        }
        if let Some(by) = m
            .hard_muted
            .or(m.self_muted.then_some(Actor::Participant(id)))
        {
            lines.push(ServerMsg::Muted {
                participant: id,
                muted: true,
                by,
            });
        }
        if m.raised && my_role == Role::Moderator {
            lines.push(ServerMsg::Raise {
                participant: id,
                on: true,
            });
        }
    }
    if my_role != Role::Participant {
        lines.push(ServerMsg::Role {
            participant: me,
            role: my_role,
        });
    }
    if let Some(by) = room.locked() {
        lines.push(ServerMsg::Locked { on: true, by });
    }
    if let Some(participant) = room.dominant() {
        lines.push(ServerMsg::Dominant { participant });
    }
    // Who talks now, so the newcomer's highlight matches everyone else's at once.
    for participant in room.speaking() {
        lines.push(ServerMsg::Speaking {
            participant,
            on: true,
        });
    }
    lines
}

fn busy() -> ServerMsg {
    ServerMsg::reject(
        ErrorCode::NoCapacity,
        "media worker busy; try again or elsewhere",
    )
}

impl Conferences {
    /// Checks the ticket, creates the room if needed, adds the member, sends it `accept`,
    /// the roster and its channels, and tells everyone. Nothing is left behind when it
    /// fails.
    pub(crate) fn join(
        &self,
        req: &JoinRequest<'_>,
        outbox: &Outbox,
    ) -> Result<Membership, ServerMsg> {
        let JoinRequest {
            conference,
            account,
            name,
            opts,
        } = *req;
        let Some(t) = &opts.ticket else {
            return Err(ServerMsg::reject(
                ErrorCode::BadTicket,
                "join needs a ticket from the dispatcher",
            ));
        };
        let claims = Claims {
            conference,
            account,
            user: name,
            server: &self.settings.id,
        };
        let role = ticket::verify_role(&self.settings.secret, t, &claims, unix_now())
            .map_err(|e| ServerMsg::reject(e.code(), e.to_string()))?;
        let expires = ticket::expiry(t).unwrap_or(0);
        super::lock(&self.spent)
            .check(t)
            .map_err(|w| self.spent(w))?;
        let (payload_type, codec, clock_rate) = codec_of(opts)?;
        if opts.media.contains(&MediaKind::Video) && !self.settings.video {
            return Err(ServerMsg::reject(
                ErrorCode::WrongState,
                "this server carries audio only (video = false)",
            ));
        }
        let mut rooms = self.rooms();
        // A server that composites transcodes between members' codecs (not in a
        // composite room, whose one stream is H.264 for all).
        let transcodes = self.compositor.is_some() && opts.mode != Mode::Composite;
        let video = video_codec_of(
            opts,
            rooms.get(conference).and_then(Room::video_codec),
            conference,
            transcodes,
        )?;
        if let Some(room) = rooms.get(conference).filter(|r| r.mode() != opts.mode) {
            return Err(ServerMsg::reject(
                ErrorCode::WrongState,
                format!(
                    "conference {} runs in {} mode",
                    protocol::clip(conference),
                    room.mode()
                ),
            ));
        }
        let locked = rooms.get(conference).is_some_and(|r| r.locked().is_some());
        if locked && role != Role::Moderator {
            tracing::info!(conference, name, "join refused: the room is locked");
            return Err(ServerMsg::reject(
                ErrorCode::Locked,
                format!(
                    "conference {} is locked; ask a moderator to unlock it",
                    protocol::clip(conference)
                ),
            ));
        }
        // Spent now, under the rooms lock, so two joins with one ticket cannot both pass;
        // given back if the join fails after all.
        super::lock(&self.spent)
            .claim(t, expires)
            .map_err(|w| self.spent(w))?;
        let created = match self.ensure_room(&mut rooms, conference, opts.mode) {
            Ok(c) => c,
            Err(e) => {
                super::lock(&self.spent).release(t);
                return Err(e);
            }
        };
        let participant = rooms.next_participant();
        // A big room spreads over the workers: the newcomer goes to its emptiest part.
        let shard = self.seat_member(&mut rooms, conference);
        let room = rooms.get(conference).expect("ensure_room made it");
        let (worker, conf) = room.place(shard);
        if self
            .command(worker, Command::AddParticipant { conf, participant })
            .is_err()
        {
            self.stats
                .joins_refused_busy
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conference, worker, "join refused: worker queue full");
            if created && rooms.get(conference).is_some_and(Room::is_idle) {
                self.delete_room(&mut rooms, conference);
            }
            super::lock(&self.spent).release(t);
            return Err(busy());
        }
        let ssrc = rooms.new_ssrc(participant);
        let video_ssrc = video.map(|_| rooms.new_ssrc(participant));
        let room = rooms.get_mut(conference).expect("ensure_room made it");
        room.arrived(name, expires);
        let media_addr = self.workers[worker].addr;
        let me = ServerMsg::AddUser {
            participant,
            name: name.to_owned(),
        };
        outbox.send(
            ServerMsg::Accept {
                conference: conference.to_owned(),
                participant,
            }
            .encode(),
        );
        room.broadcast(&me, None);
        if role != Role::Participant {
            room.broadcast(&ServerMsg::Role { participant, role }, None);
        }
        for (id, m) in room.members() {
            outbox.send(
                ServerMsg::AddUser {
                    participant: *id,
                    name: m.name.clone(),
                }
                .encode(),
            );
        }
        // The members of linked servers, as this server knows them.
        for m in room.links.values().flat_map(|l| l.mirrors()) {
            outbox.send(
                ServerMsg::AddUser {
                    participant: m.local,
                    name: m.name.clone(),
                }
                .encode(),
            );
        }
        outbox.send(me.encode());
        // The room's state, so the newcomer's view matches everyone else's.
        for line in state_lines(room, participant, role) {
            outbox.send(line.encode());
        }
        let member = Member {
            name: name.to_owned(),
            account: account.to_owned(),
            outbox: outbox.clone(),
            video: video.is_some(),
            // Longer than a name could not go back on the registry link.
            domain: opts
                .domain
                .clone()
                .filter(|d| !d.is_empty() && d.len() <= 128 && !d.chars().any(char::is_control)),
            joined_unix_ms: super::unix_ms(),
            role,
            ticket: t.clone(),
            self_muted: false,
            hard_muted: None,
            raised: false,
            slot_mids: Vec::new(),
            follows: None,
            chat: ChatBucket::new(self.settings.chat_burst, std::time::Instant::now()),
            ssrc,
            video_ssrc,
            simulcast: Vec::new(),
            shard,
        };
        let joined = room.announce(conference, participant, &member);
        for link in room.links.values() {
            link.send(&member.link_line(participant));
        }
        room.add(participant, member);
        if let Some((_, name)) = video {
            room.set_video_codec(name);
            if let Some(tap) = &room.tap {
                let codec = if name == "vp8" {
                    VideoCodec::Vp8
                } else {
                    VideoCodec::H264
                };
                // A full switch (a burst of joins): this member is then served as the
                // room's codec, untranscoded.
                let _ = tap.try_send(crate::path::PathCmd::VideoCodec { participant, codec });
            }
        }
        if single_stream(opts) {
            if let Some(tap) = &room.tap {
                if tap
                    .try_send(crate::path::PathCmd::SingleStream { participant })
                    .is_err()
                {
                    tracing::warn!(conference, participant, "single stream not set: path busy");
                }
            }
        }
        outbox.send(
            ServerMsg::Channel {
                kind: MediaKind::Audio,
                addr: media_addr,
                payload_type,
                codec: codec.into(),
                ssrc,
            }
            .encode(),
        );
        if let (Some((payload_type, codec)), Some(ssrc)) = (video, video_ssrc) {
            outbox.send(
                ServerMsg::Channel {
                    kind: MediaKind::Video,
                    addr: media_addr,
                    payload_type,
                    codec: codec.into(),
                    ssrc,
                }
                .encode(),
            );
        }
        self.mirror_member(
            &rooms,
            conference,
            participant,
            shard,
            (ssrc, video_ssrc, &[]),
        );
        self.notify(joined);
        tracing::info!(conference, participant, name, "joined");
        Ok(Membership {
            conference: conference.to_owned(),
            participant,
            ssrc,
            clock_rate,
            video_ssrc,
            video_codec: video.map(|(_, name)| name),
            simulcast: Vec::new(),
            prefs: mesh::ReceiverPrefs::default(),
            rtc_ufrag: None,
        })
    }

    /// Makes sure `conference` has a room, created on the least loaded worker if not (and
    /// the server is not draining); true when it was created now.
    /// The refusal of a spent ticket, counted.
    fn spent(&self, why: super::tickets::Spent) -> ServerMsg {
        self.stats
            .joins_refused_ticket_used
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(?why, "join refused: ticket spent");
        ServerMsg::reject(ErrorCode::TicketUsed, why.why())
    }

    pub(super) fn ensure_room(
        &self,
        rooms: &mut Rooms,
        conference: &str,
        mode: Mode,
    ) -> Result<bool, ServerMsg> {
        if rooms.get(conference).is_some() {
            return Ok(false);
        }
        if self.is_draining() {
            // The client goes back to the dispatcher, which no longer places here.
            return Err(ServerMsg::reject(
                ErrorCode::NoCapacity,
                "server is draining: no new conferences",
            ));
        }
        let load = rooms.load(self.workers.len());
        let worker = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
        let conf = rooms.next_conf();
        let (link, control) = match (mode, &self.compositor) {
            (Mode::Composite, Some(c)) => {
                let (l, c) = c.open();
                (Some(l), Some(c))
            }
            _ => (None, None),
        };
        let (path, tap) = MediaPath::new(
            mode,
            self.settings.last_n,
            &[(H264_PT, VideoCodec::H264), (VP8_PT, VideoCodec::Vp8)],
            link,
            self.compositor.clone().filter(|_| mode != Mode::Composite),
        );
        if self
            .command(
                worker,
                Command::CreateConference {
                    conf,
                    path: Box::new(path),
                },
            )
            .is_err()
        {
            self.stats
                .joins_refused_busy
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                conference,
                worker,
                "conference not created: worker queue full"
            );
            return Err(busy());
        }
        tracing::info!(conference, worker, "conference created");
        let mut room = Room::new(conf, worker, mode);
        room.composite = control;
        room.tap = Some(tap);
        rooms.insert(conference, room);
        Ok(true)
    }

    /// Removes a member; deletes the room when it is left idle.
    pub(crate) fn leave(&self, m: &Membership) {
        self.end_webrtc(m);
        let mut rooms = self.rooms();
        rooms.free_ssrc(m.ssrc);
        for &s in &m.simulcast {
            rooms.free_ssrc(s);
        }
        if let Some(v) = m.video_ssrc {
            rooms.free_ssrc(v);
        }
        let Some(room) = rooms.get_mut(&m.conference) else {
            return;
        };
        let Some(member) = room.remove(m.participant) else {
            return;
        };
        // Out of its part of the room, and of the other parts it is mirrored in.
        for (worker, conf) in room.places() {
            self.teardown(
                worker,
                Command::RemoveParticipant {
                    conf,
                    participant: m.participant,
                },
            );
        }
        room.broadcast(
            &ServerMsg::DelUser {
                participant: m.participant,
                name: member.name.clone(),
            },
            None,
        );
        for link in room.links.values() {
            link.send(&protocol::LinkMsg::Gone { id: m.participant });
        }
        self.notify(MsMsg::UserLeft {
            conference: m.conference.clone(),
            participant: m.participant,
            name: member.name,
        });
        tracing::info!(conference = %m.conference, participant = m.participant, "left");
        if room.is_idle() {
            self.delete_room(&mut rooms, &m.conference);
        }
    }

    /// The room's (worker, conf), for a member's commands.
    pub(super) fn place_of(&self, m: &Membership) -> Option<(usize, mesh::ConfId)> {
        self.rooms()
            .get(&m.conference)
            .map(|r| r.place(r.home(m.participant)))
    }

    /// A client's `channel` line: checks it against what we offered and installs the
    /// channel in the mesh, with a video channel's options (simulcast, RTX).
    pub(crate) fn channel(
        &self,
        peer_ip: IpAddr,
        m: &mut Membership,
        kind: MediaKind,
        addr: ChannelAddr,
        ssrc: u32,
        opts: &ChannelOpts,
    ) -> Result<(), Refusal> {
        let offered_ssrc = match (kind, m.video_ssrc) {
            (MediaKind::Audio, _) => m.ssrc,
            (MediaKind::Video, Some(v)) => v,
            (MediaKind::Video, None) => {
                return Err(Refusal::Fatal(ServerMsg::reject(
                    ErrorCode::WrongState,
                    "no video channel offered",
                )))
            }
        };
        let remote = match addr {
            ChannelAddr::Addr(a) => Remote::Addr(a),
            ChannelAddr::Latch => Remote::Latch(peer_ip),
            // Only ever towards the host on the control connection, so a client cannot aim
            // the conference's media at a third party.
            ChannelAddr::LatchRecv(port) => Remote::LatchTo {
                from: peer_ip,
                to: SocketAddr::new(peer_ip, port),
            },
        };
        if ssrc != offered_ssrc {
            // An external sender (`latch:PORT`) brings its own SSRC: take it if it is free
            // on this server, so the sorter never confuses two senders.
            let mut rooms = self.rooms();
            if !matches!(addr, ChannelAddr::LatchRecv(_)) {
                return Err(Refusal::Fatal(ServerMsg::reject(
                    ErrorCode::BadRequest,
                    format!("send with the ssrc {offered_ssrc} from our channel line"),
                )));
            }
            if !rooms.claim_ssrc(ssrc, m.participant) {
                return Err(Refusal::Fatal(ServerMsg::reject(
                    ErrorCode::BadRequest,
                    format!("ssrc {ssrc} is zero or in use on this server; pick another"),
                )));
            }
            rooms.free_ssrc(offered_ssrc);
            // Linked servers mirror the member under its SSRCs: tell them the new one.
            if let Some(room) = rooms.get_mut(&m.conference) {
                if let Some(member) = room.member_mut(m.participant) {
                    match kind {
                        MediaKind::Audio => member.ssrc = ssrc,
                        MediaKind::Video => {
                            member.video_ssrc = Some(ssrc);
                            member.simulcast.clear();
                        }
                    }
                    let line = member.link_line(m.participant);
                    for link in room.links.values() {
                        link.send(&line);
                    }
                }
            }
            let mesh_kind = match kind {
                MediaKind::Audio => mesh::MediaKind::Audio,
                MediaKind::Video => mesh::MediaKind::Video,
            };
            self.remirror(&rooms, &m.conference, m.participant, mesh_kind, ssrc);
            match kind {
                MediaKind::Audio => m.ssrc = ssrc,
                MediaKind::Video => {
                    m.video_ssrc = Some(ssrc);
                    // A new top SSRC drops the simulcast layers in the mesh; forget ours
                    // too, so the next `simulcast=` is sent again.
                    for s in m.simulcast.drain(..) {
                        rooms.free_ssrc(s);
                    }
                }
            }
        }
        let (mesh_kind, clock_rate) = match kind {
            MediaKind::Audio => (mesh::MediaKind::Audio, m.clock_rate),
            MediaKind::Video => (mesh::MediaKind::Video, VIDEO_RATE),
        };
        let Some((worker, conf)) = self.place_of(m) else {
            return Ok(());
        };
        self.apply(
            worker,
            Command::SetChannel {
                conf,
                participant: m.participant,
                kind: mesh_kind,
                remote,
                ssrc,
                clock_rate,
            },
        )?;
        if kind == MediaKind::Video {
            self.video_options(m, opts)?;
        }
        Ok(())
    }

    /// A video `channel` line's options: simulcast encodings (SSRCs the client picks, held
    /// server-wide like an external sender's) and RTX for the video it receives.
    fn video_options(&self, m: &mut Membership, opts: &ChannelOpts) -> Result<(), Refusal> {
        if opts.rtx != m.prefs.rtx_payload_type {
            m.prefs.rtx_payload_type = opts.rtx;
            self.send_prefs(m)?;
        }
        if opts.simulcast == m.simulcast {
            return Ok(());
        }
        let Some(top) = m.video_ssrc else {
            return Ok(());
        };
        {
            let mut rooms = self.rooms();
            for &s in &m.simulcast {
                rooms.free_ssrc(s);
            }
            m.simulcast.clear();
            let mut seen = vec![top];
            for &s in &opts.simulcast {
                if seen.contains(&s) || !rooms.claim_ssrc(s, m.participant) {
                    for &c in &m.simulcast {
                        rooms.free_ssrc(c);
                    }
                    m.simulcast.clear();
                    return Err(Refusal::Fatal(ServerMsg::reject(
                        ErrorCode::BadRequest,
                        format!("simulcast ssrc {s} is zero, repeated or in use; pick another"),
                    )));
                }
                seen.push(s);
                m.simulcast.push(s);
            }
        }
        // Lowest first, the channel's own SSRC on top.
        let mut layers = m.simulcast.clone();
        layers.push(top);
        let Some((worker, conf)) = self.place_of(m) else {
            return Ok(());
        };
        self.apply(
            worker,
            Command::SetSimulcast {
                conf,
                participant: m.participant,
                layers,
            },
        )?;
        self.share_simulcast(
            &mut self.rooms(),
            &m.conference,
            m.participant,
            &m.simulcast,
        );
        Ok(())
    }

    /// Hands the client's receive preferences to its worker's reflector.
    pub(super) fn send_prefs(&self, m: &Membership) -> Result<(), Refusal> {
        let Some((worker, conf)) = self.place_of(m) else {
            return Ok(());
        };
        self.apply(
            worker,
            Command::ReceiverPrefs {
                conf,
                participant: m.participant,
                prefs: m.prefs,
            },
        )
    }

    /// `layer`: the highest simulcast layer the client wants.
    pub(crate) fn layer(&self, m: &mut Membership, max: Option<u8>) -> Result<(), Refusal> {
        m.prefs.max_layer = max;
        self.send_prefs(m)
    }

    /// `talk on|off`: push to talk drives the mixer's talk runs; a reflector knows only
    /// push to talk, so its `speaking` line goes out here (a mixer reports run edges
    /// itself).
    pub(crate) fn talk(&self, m: &Membership, on: bool) -> Result<(), Refusal> {
        let rooms = self.rooms();
        let Some(room) = rooms.get(&m.conference) else {
            return Ok(());
        };
        // Every part of a room spread over workers mixes this member (mirrored elsewhere).
        for (worker, conf) in room.places() {
            self.apply(
                worker,
                Command::Talk {
                    conf,
                    participant: m.participant,
                    on,
                },
            )?;
        }
        if !room.mode().mixes() {
            room.broadcast(
                &ServerMsg::Speaking {
                    participant: m.participant,
                    on,
                },
                None,
            );
        }
        Ok(())
    }
}
