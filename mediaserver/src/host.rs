//! The client host: admits a client holding a will-call ticket, opens its audio channel,
//! keeps the roster (seed 003, Fig. 2 messages 210-222) and tears down on leave.

use crate::path::MediaPath;
use crate::rooms::{offered, Member, Room};
use crate::Server;
use mesh::{Command, Remote};
use protocol::codec;
use protocol::ticket::{self, Claims};
use protocol::{
    ChannelAddr, ChannelOpts, ClientMsg, ErrorCode, JoinOpts, MediaKind, Mode, MsMsg, ServerKind,
    ServerMsg,
};
use reflector::VideoCodec;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Opus on the wire, as announced in `channel` (`protocol::codec` is the table).
const OPUS_PT: u8 = codec::OPUS.payload_type;
const OPUS_RATE: u32 = codec::OPUS.clock_rate;
/// Video on the wire: H.264 (packetization-mode 1) or VP8, 90 kHz (RFC 6184, RFC 7741).
const H264_PT: u8 = codec::H264.payload_type;
const VP8_PT: u8 = codec::VP8.payload_type;
const VIDEO_RATE: u32 = codec::VIDEO_CLOCK_RATE;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) async fn serve(listener: TcpListener, server: Arc<Server>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Err(e) = session(stream, peer.ip(), &server).await {
                        tracing::debug!(%peer, error = %e, "client connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A joined client, for the rest of its session.
struct Joined {
    conference: String,
    participant: u32,
    /// The audio SSRC: the one from our `channel` line, or an external sender's own
    /// (`latch:PORT`).
    ssrc: u32,
    /// RTP clock rate of the client's codec.
    clock_rate: u32,
    /// The video SSRC, when the join asked for `media=audio,video`.
    video_ssrc: Option<u32>,
    /// The lower simulcast encodings' SSRCs the client declared (`simulcast=`).
    simulcast: Vec<u32>,
    /// What the client asked about the video it receives (`rtx=`, `layer`).
    prefs: mesh::ReceiverPrefs,
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
        Some(c @ ("pcmu" | "pcma")) if opts.mode == Mode::Mix => {
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

/// The video codec a `join` with `media=...,video` asks for (`vcodec=h264|vp8`, H.264 when
/// absent): (payload type, name). The reflector forwards video unchanged, so every member
/// of a conference should ask for the same one.
fn video_codec_of(opts: &JoinOpts) -> Result<Option<(u8, &'static str)>, ServerMsg> {
    if !opts.media.contains(&MediaKind::Video) {
        return Ok(None);
    }
    let asked = opts
        .extra
        .iter()
        .find(|(k, _)| k == "vcodec")
        .map(|(_, v)| v.to_ascii_lowercase());
    match asked.as_deref() {
        None | Some("h264") => Ok(Some((H264_PT, "h264"))),
        Some("vp8") => Ok(Some((VP8_PT, "vp8"))),
        Some(_) => Err(ServerMsg::reject(
            ErrorCode::BadRequest,
            "video codecs offered: h264, vp8",
        )),
    }
}

async fn write(w: &mut OwnedWriteHalf, msg: &ServerMsg) -> std::io::Result<()> {
    w.write_all(msg.encode().as_bytes()).await
}

async fn refuse(w: &mut OwnedWriteHalf, msg: ServerMsg) -> std::io::Result<()> {
    tracing::info!(line = %msg.encode().trim_end(), "refusing client");
    write(w, &msg).await?;
    w.shutdown().await
}

async fn session(stream: TcpStream, peer_ip: IpAddr, server: &Server) -> std::io::Result<()> {
    let (mut r, mut w) = stream.into_split();
    let hello = ServerMsg::Connect {
        kind: ServerKind::MediaServer,
        id: server.settings.id.clone(),
        version: protocol::VERSION,
    };
    write(&mut w, &hello).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<ServerMsg>();
    let mut lines = protocol::LineBuffer::new();
    let mut buf = vec![0u8; 4096];
    let mut joined: Option<Joined> = None;
    let result: std::io::Result<()> = async {
        loop {
            // Drain every complete line before reading more.
            while let Some(line) = lines.next_line() {
                let msg = match line.and_then(|l| ClientMsg::parse(&l)) {
                    Ok(m) => m,
                    Err(e) => return refuse(&mut w, ServerMsg::error(&e)).await,
                };
                let step = handle(server, peer_ip, &mut joined, &tx, msg);
                // Lines a handler queued (accept, roster, channel) go out before its reply.
                while let Ok(out) = rx.try_recv() {
                    write(&mut w, &out).await?;
                }
                match step {
                    Step::Reply(m) => write(&mut w, &m).await?,
                    Step::Continue => {}
                    Step::Refuse(m) => return refuse(&mut w, m).await,
                    Step::End => return w.shutdown().await,
                }
            }
            tokio::select! {
                n = r.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(n) => lines.extend(&buf[..n]),
                },
                Some(out) = rx.recv() => write(&mut w, &out).await?,
            }
        }
    }
    .await;
    if let Some(j) = joined {
        leave(server, &j);
    }
    result
}

enum Step {
    Reply(ServerMsg),
    Continue,
    Refuse(ServerMsg),
    End,
}

fn handle(
    server: &Server,
    peer_ip: IpAddr,
    joined: &mut Option<Joined>,
    tx: &mpsc::UnboundedSender<ServerMsg>,
    msg: ClientMsg,
) -> Step {
    match (msg, joined.as_mut()) {
        (ClientMsg::Ping { token }, _) => Step::Reply(ServerMsg::Pong { token }),
        (ClientMsg::EndSession, _) => Step::End,
        (
            ClientMsg::Join {
                conference,
                account,
                name,
                opts,
            },
            None,
        ) => match join(server, &conference, &account, &name, &opts, tx) {
            Ok(j) => {
                *joined = Some(j);
                Step::Continue
            }
            Err(reject) => Step::Refuse(reject),
        },
        (ClientMsg::Join { .. }, Some(_)) => {
            Step::Refuse(ServerMsg::reject(ErrorCode::WrongState, "already joined"))
        }
        (_, None) => Step::Refuse(ServerMsg::reject(ErrorCode::WrongState, "join first")),
        (
            ClientMsg::Channel {
                kind,
                addr,
                ssrc,
                opts,
            },
            Some(j),
        ) => match open_channel(server, peer_ip, j, kind, addr, ssrc) {
            Step::Continue if kind == MediaKind::Video => video_options(server, j, &opts),
            step => step,
        },
        (ClientMsg::Layer { max }, Some(j)) => {
            j.prefs.max_layer = max;
            send_prefs(server, j);
            Step::Continue
        }
        (ClientMsg::Mute { participant, muted }, Some(j)) => {
            let found = with_room(server, &j.conference, |room| {
                let present = room.members.contains_key(&participant);
                if present {
                    server.workers[room.worker].send(Command::Mute {
                        conf: room.conf,
                        participant,
                        muted,
                    });
                }
                present
            });
            match found {
                Some(true) => Step::Continue,
                _ => Step::Reply(ServerMsg::reject(
                    ErrorCode::NotFound,
                    format!("no participant {participant} here"),
                )),
            }
        }
        (ClientMsg::Text { text }, Some(j)) => {
            with_room(server, &j.conference, |room| {
                let from = room
                    .members
                    .get(&j.participant)
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                room.broadcast(&ServerMsg::Text { from, text }, Some(j.participant));
            });
            Step::Continue
        }
        // Push to talk drives the mixer's talk runs; a reflector ignores it.
        (ClientMsg::Talk { on }, Some(j)) => {
            with_room(server, &j.conference, |room| {
                server.workers[room.worker].send(Command::Talk {
                    conf: room.conf,
                    participant: j.participant,
                    on,
                });
                // A mixer reports run edges itself (`speaking` from its events); a reflector
                // knows only push to talk, so the line goes out here.
                if room.mode != Mode::Mix {
                    room.broadcast(
                        &ServerMsg::Speaking {
                            participant: j.participant,
                            on,
                        },
                        None,
                    );
                }
            });
            Step::Continue
        }
    }
}

/// A client's `channel` line: checks it against what we offered and installs the channel
/// in the mesh.
fn open_channel(
    server: &Server,
    peer_ip: IpAddr,
    j: &mut Joined,
    kind: MediaKind,
    addr: ChannelAddr,
    ssrc: u32,
) -> Step {
    let offered_ssrc = match (kind, j.video_ssrc) {
        (MediaKind::Audio, _) if offered(kind) => j.ssrc,
        (MediaKind::Video, Some(v)) if offered(kind) => v,
        _ => {
            return Step::Refuse(ServerMsg::reject(
                ErrorCode::WrongState,
                format!("no {} channel offered", kind.as_str()),
            ))
        }
    };
    let remote = match addr {
        ChannelAddr::Addr(a) => Remote::Addr(a),
        ChannelAddr::Latch => Remote::Latch(peer_ip),
        // Only ever towards the host on the control connection, so a client cannot aim
        // the conference's media at a third party.
        ChannelAddr::LatchRecv(port) => Remote::LatchTo {
            from: peer_ip,
            to: std::net::SocketAddr::new(peer_ip, port),
        },
    };
    if ssrc != offered_ssrc {
        // An external sender (`latch:PORT`) brings its own SSRC: take it if it is free on
        // this server, so the sorter never confuses two senders.
        let mut rooms = server.rooms();
        if !matches!(addr, ChannelAddr::LatchRecv(_)) {
            return Step::Refuse(ServerMsg::reject(
                ErrorCode::BadRequest,
                format!("send with the ssrc {offered_ssrc} from our channel line"),
            ));
        }
        if !rooms.claim_ssrc(ssrc) {
            return Step::Refuse(ServerMsg::reject(
                ErrorCode::BadRequest,
                format!("ssrc {ssrc} is zero or in use on this server; pick another"),
            ));
        }
        rooms.free_ssrc(offered_ssrc);
        match kind {
            MediaKind::Audio => j.ssrc = ssrc,
            MediaKind::Video => {
                j.video_ssrc = Some(ssrc);
                // A new top SSRC drops the simulcast layers in the mesh; forget ours too,
                // so the next `simulcast=` is sent again.
                for s in j.simulcast.drain(..) {
                    rooms.free_ssrc(s);
                }
            }
        }
    }
    let (mesh_kind, clock_rate) = match kind {
        MediaKind::Audio => (mesh::MediaKind::Audio, j.clock_rate),
        MediaKind::Video => (mesh::MediaKind::Video, VIDEO_RATE),
    };
    with_room(server, &j.conference, |room| {
        server.workers[room.worker].send(Command::SetChannel {
            conf: room.conf,
            participant: j.participant,
            kind: mesh_kind,
            remote,
            ssrc,
            clock_rate,
        });
    });
    Step::Continue
}

/// A video `channel` line's options: simulcast encodings (SSRCs the client picks, held
/// server-wide like an external sender's) and RTX for the video it receives.
fn video_options(server: &Server, j: &mut Joined, opts: &ChannelOpts) -> Step {
    if opts.rtx != j.prefs.rtx_payload_type {
        j.prefs.rtx_payload_type = opts.rtx;
        send_prefs(server, j);
    }
    if opts.simulcast == j.simulcast {
        return Step::Continue;
    }
    let Some(top) = j.video_ssrc else {
        return Step::Continue;
    };
    {
        let mut rooms = server.rooms();
        for &s in &j.simulcast {
            rooms.free_ssrc(s);
        }
        j.simulcast.clear();
        let mut seen = vec![top];
        for &s in &opts.simulcast {
            if seen.contains(&s) || !rooms.claim_ssrc(s) {
                for &c in &j.simulcast {
                    rooms.free_ssrc(c);
                }
                j.simulcast.clear();
                return Step::Refuse(ServerMsg::reject(
                    ErrorCode::BadRequest,
                    format!("simulcast ssrc {s} is zero, repeated or in use; pick another"),
                ));
            }
            seen.push(s);
            j.simulcast.push(s);
        }
    }
    // Lowest first, the channel's own SSRC on top.
    let mut layers = j.simulcast.clone();
    layers.push(top);
    with_room(server, &j.conference, |room| {
        server.workers[room.worker].send(Command::SetSimulcast {
            conf: room.conf,
            participant: j.participant,
            layers,
        });
    });
    Step::Continue
}

/// Hands the client's receive preferences to its worker's reflector.
fn send_prefs(server: &Server, j: &Joined) {
    with_room(server, &j.conference, |room| {
        server.workers[room.worker].send(Command::ReceiverPrefs {
            conf: room.conf,
            participant: j.participant,
            prefs: j.prefs,
        });
    });
}

fn with_room<T>(server: &Server, conference: &str, f: impl FnOnce(&mut Room) -> T) -> Option<T> {
    server.rooms().rooms.get_mut(conference).map(f)
}

/// Checks the ticket, creates the room if needed, adds the member and tells everyone.
fn join(
    server: &Server,
    conference: &str,
    account: &str,
    name: &str,
    opts: &JoinOpts,
    tx: &mpsc::UnboundedSender<ServerMsg>,
) -> Result<Joined, ServerMsg> {
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
        server: &server.settings.id,
    };
    ticket::verify(&server.settings.secret, t, &claims, unix_now())
        .map_err(|e| ServerMsg::reject(e.code(), e.to_string()))?;
    if !matches!(opts.mode, Mode::Reflect | Mode::Mix) {
        return Err(ServerMsg::reject(
            ErrorCode::WrongState,
            format!("mode {} is not offered by this server", opts.mode),
        ));
    }
    let (payload_type, codec, clock_rate) = codec_of(opts)?;
    let video = video_codec_of(opts)?;
    if video.is_some() && !server.settings.video {
        return Err(ServerMsg::reject(
            ErrorCode::WrongState,
            "this server carries audio only (video = false)",
        ));
    }
    let mut rooms = server.rooms();
    if let Some(room) = rooms.rooms.get(conference).filter(|r| r.mode != opts.mode) {
        return Err(ServerMsg::reject(
            ErrorCode::WrongState,
            format!("conference {conference} runs in {} mode", room.mode),
        ));
    }
    let participant = rooms.next_participant();
    let ssrc = rooms.new_ssrc();
    let video_ssrc = video.map(|_| rooms.new_ssrc());
    let room = ensure_room(server, &mut rooms, conference, opts.mode)?;
    room.arrived(name, ticket::expiry(t).unwrap_or(0));
    let me = ServerMsg::AddUser {
        participant,
        name: name.to_owned(),
    };
    server.workers[room.worker].send(Command::AddParticipant {
        conf: room.conf,
        participant,
    });
    let media_addr = server.workers[room.worker].addr;
    let _ = tx.send(ServerMsg::Accept {
        conference: conference.to_owned(),
        participant,
    });
    room.broadcast(&me, None);
    for (id, m) in &room.members {
        let _ = tx.send(ServerMsg::AddUser {
            participant: *id,
            name: m.name.clone(),
        });
    }
    let _ = tx.send(me);
    room.members.insert(
        participant,
        Member {
            name: name.to_owned(),
            account: account.to_owned(),
            tx: tx.clone(),
            video: video.is_some(),
        },
    );
    let _ = tx.send(ServerMsg::Channel {
        kind: MediaKind::Audio,
        addr: media_addr,
        payload_type,
        codec: codec.into(),
        ssrc,
    });
    if let (Some((payload_type, codec)), Some(ssrc)) = (video, video_ssrc) {
        let _ = tx.send(ServerMsg::Channel {
            kind: MediaKind::Video,
            addr: media_addr,
            payload_type,
            codec: codec.into(),
            ssrc,
        });
    }
    server.notify(MsMsg::UserJoined {
        conference: conference.to_owned(),
        participant,
        name: name.to_owned(),
        account: account.to_owned(),
    });
    tracing::info!(conference, participant, name, "joined");
    Ok(Joined {
        conference: conference.to_owned(),
        participant,
        ssrc,
        clock_rate,
        video_ssrc,
        simulcast: Vec::new(),
        prefs: mesh::ReceiverPrefs::default(),
    })
}

/// The room of `conference`, created on the least loaded worker if it does not exist
/// (and the server is not draining).
pub(crate) fn ensure_room<'a>(
    server: &Server,
    rooms: &'a mut crate::rooms::Rooms,
    conference: &str,
    mode: Mode,
) -> Result<&'a mut Room, ServerMsg> {
    if !rooms.rooms.contains_key(conference) {
        if server.is_draining() {
            // The client goes back to the dispatcher, which no longer places here.
            return Err(ServerMsg::reject(
                ErrorCode::NoCapacity,
                "server is draining: no new conferences",
            ));
        }
        let load = rooms.load(server.workers.len());
        let worker = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
        let conf = rooms.next_conf();
        let path = MediaPath::new(
            mode == Mode::Mix,
            server.settings.last_n,
            &[(H264_PT, VideoCodec::H264), (VP8_PT, VideoCodec::Vp8)],
        );
        if !server.workers[worker].send(Command::CreateConference { conf, path }) {
            return Err(ServerMsg::reject(
                ErrorCode::Internal,
                "media worker unavailable",
            ));
        }
        tracing::info!(conference, worker, "conference created");
        rooms.rooms.insert(
            conference.to_owned(),
            Room {
                conf,
                worker,
                mode,
                members: Default::default(),
                reservations: Vec::new(),
                early_joins: Vec::new(),
                quality: Default::default(),
            },
        );
    }
    // Inserted just above when it was missing.
    Ok(rooms
        .rooms
        .get_mut(conference)
        .expect("room exists after insert"))
}

/// Removes a member; deletes the room when it is left idle.
fn leave(server: &Server, j: &Joined) {
    let mut rooms = server.rooms();
    rooms.free_ssrc(j.ssrc);
    for &s in &j.simulcast {
        rooms.free_ssrc(s);
    }
    if let Some(v) = j.video_ssrc {
        rooms.free_ssrc(v);
    }
    let Some(room) = rooms.rooms.get_mut(&j.conference) else {
        return;
    };
    let Some(m) = room.members.remove(&j.participant) else {
        return;
    };
    server.workers[room.worker].send(Command::RemoveParticipant {
        conf: room.conf,
        participant: j.participant,
    });
    room.broadcast(
        &ServerMsg::DelUser {
            participant: j.participant,
            name: m.name.clone(),
        },
        None,
    );
    server.notify(MsMsg::UserLeft {
        conference: j.conference.clone(),
        participant: j.participant,
        name: m.name,
    });
    tracing::info!(conference = %j.conference, participant = j.participant, "left");
    if room.is_idle() {
        delete_room(server, &mut rooms, &j.conference);
    }
}

/// Deletes a room and tells the dispatcher (seed 003: "deleted when the last client exits").
pub(crate) fn delete_room(server: &Server, rooms: &mut crate::rooms::Rooms, conference: &str) {
    if let Some(room) = rooms.rooms.remove(conference) {
        server.workers[room.worker].send(Command::RemoveConference { conf: room.conf });
        server.notify(MsMsg::ConfDeleted {
            conference: conference.to_owned(),
        });
        tracing::info!(conference, "conference deleted");
    }
}
