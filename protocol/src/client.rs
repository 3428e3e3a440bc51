//! Messages between a client and a server (the dispatcher or a media server).

use crate::fields::{clean, name, num, Fields};
use crate::sdp::{self, SdpKind};
use crate::types::word;
use crate::{
    Actor, ChannelAddr, Endpoint, ErrorCode, MediaKind, Mode, ProtoError, Quality, Role, ServerKind,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Optional `key=value` fields of `join`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinOpts {
    /// Will-call ticket from `dispatch`; required by media servers.
    pub ticket: Option<String>,
    pub mode: Mode,
    /// Media the client wants; audio when absent.
    pub media: Vec<MediaKind>,
    /// Audio codec the client sends and wants (`opus` when absent).
    pub codec: Option<String>,
    pub app: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    /// The user's organization domain (`domain=acme.com`): the dispatcher's tenant map
    /// sends it to its tenant's pool of media servers.
    pub domain: Option<String>,
    /// Keys this build does not know, kept so newer clients still join.
    pub extra: Vec<(String, String)>,
}

impl JoinOpts {
    /// The value of an option this build keeps in `extra` (`pin=`, `vcodec=`).
    pub fn extra_value(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The account's moderator PIN, when the join asks to moderate (`pin=`).
    pub fn pin(&self) -> Option<&str> {
        self.extra_value("pin")
    }
}

/// Optional `key=value` fields of `channel` (video only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelOpts {
    /// Simulcast: the SSRCs of the sender's other encodings, lowest first; the channel's
    /// own SSRC is the top one (`simulcast=A,B`, at most 2 more).
    pub simulcast: Vec<u32>,
    /// The receiver takes retransmissions as RTX (RFC 4588) with this payload type.
    pub rtx: Option<u8>,
}

/// Most encodings a `simulcast=` option may list besides the channel's own SSRC.
pub const MAX_SIMULCAST_EXTRA: usize = 2;

/// Client to server.
// Control lines are few per session; boxing `join`'s options would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    Join {
        conference: String,
        account: String,
        name: String,
        opts: JoinOpts,
    },
    /// Where the client receives `kind` (or `latch`), and the SSRC it sends with.
    Channel {
        kind: MediaKind,
        addr: ChannelAddr,
        ssrc: u32,
        opts: ChannelOpts,
    },
    /// The highest simulcast layer the client wants (0 = lowest); `None` (`layer auto`):
    /// whatever its bandwidth estimate allows.
    Layer {
        max: Option<u8>,
    },
    Talk {
        on: bool,
    },
    /// Chat: to every other member, or with `to` (option `to=ID`) to that one alone.
    Text {
        text: String,
        to: Option<u32>,
    },
    /// Mutes (or unmutes) a member: oneself, or anyone for a moderator.
    Mute {
        participant: u32,
        muted: bool,
    },
    /// `mute all on|off` (moderators): every member who is not a moderator.
    MuteAll {
        muted: bool,
    },
    /// Removes a member from the conference (moderators); the reason is shown to all.
    Kick {
        participant: u32,
        reason: String,
    },
    /// Locks the room against new joins, or unlocks it (moderators).
    Lock {
        on: bool,
    },
    /// Ends the conference for everyone (moderators).
    EndConference,
    /// Lays the composite out anew (moderators of a `composite` conference).
    Layout {
        layout: crate::Layout,
    },
    /// Starts (`on`) or stops recording the conference (moderators).
    Record {
        on: bool,
    },
    /// Raises (or lowers) one's hand: a member muted by a moderator asks to speak.
    Raise {
        on: bool,
    },
    Ping {
        token: Option<String>,
    },
    EndSession,
    /// One line of the client's session description (a WebRTC offer), see [`crate::sdp`].
    Sdp {
        kind: SdpKind,
        line: String,
    },
    /// The end of a description of `lines` lines.
    SdpEnd {
        kind: SdpKind,
        lines: u32,
    },
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    Connect {
        kind: ServerKind,
        id: String,
        version: u32,
    },
    /// Go to the media server at `addr` and join there with `ticket`; with `conference`,
    /// join that conference instead of the current one (an operator's move, seed 003's
    /// "send to the manager"). A client on a WebSocket is sent the server's WebSocket URL.
    Dispatch {
        addr: Endpoint,
        ticket: String,
        conference: Option<String>,
    },
    Accept {
        conference: String,
        participant: u32,
    },
    Reject {
        code: ErrorCode,
        text: String,
    },
    Error {
        code: ErrorCode,
        text: String,
    },
    /// The server receives `kind` at `addr`; the client must send with `ssrc`.
    Channel {
        kind: MediaKind,
        addr: SocketAddr,
        payload_type: u8,
        codec: String,
        ssrc: u32,
    },
    AddUser {
        participant: u32,
        name: String,
    },
    DelUser {
        participant: u32,
        name: String,
    },
    /// Chat from member `from` (its name; `id=`: its participant id). `to` (option `to=`):
    /// a private line, to the receiver alone.
    Text {
        from: String,
        text: String,
        id: Option<u32>,
        to: Option<u32>,
    },
    Pong {
        token: Option<String>,
    },
    /// A talk run of `participant` started (`on`) or stopped (mix conferences).
    Speaking {
        participant: u32,
        on: bool,
    },
    /// The connection quality of `participant`, sent when it changes.
    Quality {
        participant: u32,
        quality: Quality,
    },
    /// One line of the server's session description (a WebRTC answer), see [`crate::sdp`].
    Sdp {
        kind: SdpKind,
        line: String,
    },
    /// The end of a description of `lines` lines.
    SdpEnd {
        kind: SdpKind,
        lines: u32,
    },
    /// `participant` has this role (sent after its `adduser` when it is not a plain
    /// participant).
    Role {
        participant: u32,
        role: Role,
    },
    /// `participant` was muted or unmuted by `by` (itself, a moderator or an operator).
    Muted {
        participant: u32,
        muted: bool,
        by: Actor,
    },
    /// `participant` was removed by `by`; the server closes its connection.
    Kicked {
        participant: u32,
        by: Actor,
        reason: String,
    },
    /// The room was locked or unlocked by `by`.
    Locked {
        on: bool,
        by: Actor,
    },
    /// `by` ended the conference; the server closes every member's connection.
    Ended {
        by: Actor,
    },
    /// The composite is laid out as `layout` now, by `by`.
    Layout {
        layout: crate::Layout,
        by: Actor,
    },
    /// The conference is being recorded (`on`) or no longer, by `by`'s doing: every
    /// member is told.
    Recording {
        on: bool,
        by: Actor,
    },
    /// `participant` raised (or lowered) its hand; sent to the moderators and to it.
    Raise {
        participant: u32,
        on: bool,
    },
    /// The audio level of an active talker in dBov (-127 silence to 0 full scale); the
    /// lines of one period (at most 5 a second per conference) go out together.
    Level {
        participant: u32,
        dbov: i8,
    },
    /// The dominant speaker changed to `participant`.
    Dominant {
        participant: u32,
    },
    /// A browser's receive slot (the answer's section `mid`) now plays `participant`'s
    /// stream; 0 when it is no member's own (the mix of a `mode=mix` room).
    Slot {
        mid: String,
        participant: u32,
    },
}

fn on_off(verb: &'static str, s: &str) -> Result<bool, ProtoError> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ProtoError::BadValue {
            verb,
            field: "on|off",
            value: s.to_owned(),
        }),
    }
}

fn on_off_str(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

impl ClientMsg {
    pub fn parse(line: &str) -> Result<Self, ProtoError> {
        let f = Fields::split(line)?;
        match f.verb {
            "join" => {
                let (a, raw_opts) = f.args("join", 3, 3)?;
                let mut opts = JoinOpts::default();
                for (k, v) in raw_opts {
                    match k {
                        "ticket" => opts.ticket = Some(v.to_owned()),
                        "mode" => opts.mode = word("join", "mode", v)?,
                        "media" => {
                            opts.media = v
                                .split(',')
                                .map(|m| word("join", "media", m))
                                .collect::<Result<_, _>>()?
                        }
                        "codec" => opts.codec = Some(v.to_owned()),
                        "app" => opts.app = Some(v.to_owned()),
                        "version" => opts.version = Some(v.to_owned()),
                        "os" => opts.os = Some(v.to_owned()),
                        "domain" => opts.domain = Some(v.to_owned()),
                        _ => opts.extra.push((k.to_owned(), v.to_owned())),
                    }
                }
                Ok(ClientMsg::Join {
                    conference: name("join", "conference", a[0])?,
                    account: name("join", "account", a[1])?,
                    name: name("join", "name", a[2])?,
                    opts,
                })
            }
            "channel" => {
                let (a, raw_opts) = f.args("channel", 3, 3)?;
                let mut opts = ChannelOpts::default();
                for (k, v) in raw_opts {
                    match k {
                        "simulcast" => {
                            opts.simulcast = v
                                .split(',')
                                .map(|x| num("channel", "simulcast", x))
                                .collect::<Result<_, _>>()?;
                            if opts.simulcast.len() > MAX_SIMULCAST_EXTRA {
                                return Err(ProtoError::BadValue {
                                    verb: "channel",
                                    field: "simulcast",
                                    value: v.to_owned(),
                                });
                            }
                        }
                        "rtx" => {
                            let pt: u8 = num("channel", "rtx", v)?;
                            if pt > 127 {
                                return Err(ProtoError::BadValue {
                                    verb: "channel",
                                    field: "rtx",
                                    value: v.to_owned(),
                                });
                            }
                            opts.rtx = Some(pt);
                        }
                        // Unknown options are kept out, so newer clients still open channels.
                        _ => {}
                    }
                }
                Ok(ClientMsg::Channel {
                    kind: word("channel", "media", a[0])?,
                    addr: ChannelAddr::parse("channel", a[1])?,
                    ssrc: num("channel", "ssrc", a[2])?,
                    opts,
                })
            }
            "layer" => {
                let a = f.exact("layer", 1, 1)?;
                let max = match a[0] {
                    "auto" => None,
                    v => {
                        let n: u8 = num("layer", "layer", v)?;
                        if usize::from(n) > MAX_SIMULCAST_EXTRA {
                            return Err(ProtoError::BadValue {
                                verb: "layer",
                                field: "layer",
                                value: v.to_owned(),
                            });
                        }
                        Some(n)
                    }
                };
                Ok(ClientMsg::Layer { max })
            }
            "talk" => {
                let a = f.exact("talk", 1, 1)?;
                Ok(ClientMsg::Talk {
                    on: on_off("talk", a[0])?,
                })
            }
            "text" => {
                let (a, opts) = f.args("text", 1, 1)?;
                let mut to = None;
                for (k, v) in opts {
                    if k == "to" {
                        to = Some(num("text", "to", v)?);
                    }
                }
                Ok(ClientMsg::Text {
                    text: a[0].to_owned(),
                    to,
                })
            }
            "mute" => {
                let a = f.exact("mute", 2, 2)?;
                let muted = on_off("mute", a[1])?;
                if a[0] == "all" {
                    return Ok(ClientMsg::MuteAll { muted });
                }
                Ok(ClientMsg::Mute {
                    participant: num("mute", "participant", a[0])?,
                    muted,
                })
            }
            "kick" => {
                let a = f.exact("kick", 2, 2)?;
                Ok(ClientMsg::Kick {
                    participant: num("kick", "participant", a[0])?,
                    reason: a[1].to_owned(),
                })
            }
            "lock" => {
                let a = f.exact("lock", 1, 1)?;
                Ok(ClientMsg::Lock {
                    on: on_off("lock", a[0])?,
                })
            }
            "endconference" => {
                f.exact("endconference", 0, 0)?;
                Ok(ClientMsg::EndConference)
            }
            "layout" => {
                let a = f.exact("layout", 1, 1)?;
                Ok(ClientMsg::Layout {
                    layout: crate::types::word("layout", "grid|speaker|presentation", a[0])?,
                })
            }
            "record" => {
                let a = f.exact("record", 1, 1)?;
                Ok(ClientMsg::Record {
                    on: on_off("record", a[0])?,
                })
            }
            "raise" => {
                let a = f.exact("raise", 0, 1)?;
                Ok(ClientMsg::Raise {
                    on: a.first().map_or(Ok(true), |v| on_off("raise", v))?,
                })
            }
            "ping" => {
                let a = f.exact("ping", 0, 1)?;
                Ok(ClientMsg::Ping {
                    token: a.first().map(|t| t.to_string()),
                })
            }
            "endsession" => {
                f.exact("endsession", 0, 0)?;
                Ok(ClientMsg::EndSession)
            }
            "sdp" => {
                let a = f.exact("sdp", 2, 2)?;
                Ok(Self::Sdp {
                    kind: SdpKind::parse("sdp", a[0])?,
                    line: sdp::line("sdp", a[1])?,
                })
            }
            "sdpend" => {
                let a = f.exact("sdpend", 2, 2)?;
                Ok(Self::SdpEnd {
                    kind: SdpKind::parse("sdpend", a[0])?,
                    lines: num("sdpend", "lines", a[1])?,
                })
            }
            v => Err(ProtoError::UnknownVerb(v.to_owned())),
        }
    }

    /// The wire line, LF included.
    pub fn encode(&self) -> String {
        match self {
            ClientMsg::Join {
                conference,
                account,
                name,
                opts,
            } => {
                let mut s = format!(
                    "join\t{}\t{}\t{}\tmode={}",
                    clean(conference),
                    clean(account),
                    clean(name),
                    opts.mode
                );
                if let Some(t) = &opts.ticket {
                    s += &format!("\tticket={}", clean(t));
                }
                if !opts.media.is_empty() {
                    let m: Vec<&str> = opts.media.iter().map(|m| m.as_str()).collect();
                    s += &format!("\tmedia={}", m.join(","));
                }
                for (k, v) in [
                    ("codec", &opts.codec),
                    ("app", &opts.app),
                    ("version", &opts.version),
                    ("os", &opts.os),
                    ("domain", &opts.domain),
                ] {
                    if let Some(v) = v {
                        s += &format!("\t{k}={}", clean(v));
                    }
                }
                for (k, v) in &opts.extra {
                    s += &format!("\t{}={}", clean(k), clean(v));
                }
                s + "\n"
            }
            ClientMsg::Channel {
                kind,
                addr,
                ssrc,
                opts,
            } => {
                let mut s = format!("channel\t{}\t{addr}\t{ssrc}", kind.as_str());
                if !opts.simulcast.is_empty() {
                    let list: Vec<String> = opts.simulcast.iter().map(u32::to_string).collect();
                    s += &format!("\tsimulcast={}", list.join(","));
                }
                if let Some(pt) = opts.rtx {
                    s += &format!("\trtx={pt}");
                }
                s + "\n"
            }
            ClientMsg::Layer { max } => match max {
                Some(n) => format!("layer\t{n}\n"),
                None => "layer\tauto\n".to_owned(),
            },
            ClientMsg::Talk { on } => format!("talk\t{}\n", on_off_str(*on)),
            ClientMsg::Text { text, to: None } => format!("text\t{}\n", clean(text)),
            ClientMsg::Text { text, to: Some(to) } => {
                format!("text\t{}\tto={to}\n", clean(text))
            }
            ClientMsg::Mute { participant, muted } => {
                format!("mute\t{participant}\t{}\n", on_off_str(*muted))
            }
            ClientMsg::MuteAll { muted } => format!("mute\tall\t{}\n", on_off_str(*muted)),
            ClientMsg::Kick {
                participant,
                reason,
            } => format!("kick\t{participant}\t{}\n", clean(reason)),
            ClientMsg::Lock { on } => format!("lock\t{}\n", on_off_str(*on)),
            ClientMsg::EndConference => "endconference\n".to_owned(),
            ClientMsg::Raise { on } => format!("raise\t{}\n", on_off_str(*on)),
            ClientMsg::Layout { layout } => format!("layout\t{layout}\n"),
            ClientMsg::Record { on } => format!("record\t{}\n", on_off_str(*on)),
            ClientMsg::Ping { token: Some(t) } => format!("ping\t{}\n", clean(t)),
            ClientMsg::Ping { token: None } => "ping\n".to_owned(),
            ClientMsg::EndSession => "endsession\n".to_owned(),
            ClientMsg::Sdp { kind, line } => format!("sdp\t{}\t{}\n", kind.as_str(), clean(line)),
            ClientMsg::SdpEnd { kind, lines } => format!("sdpend\t{}\t{lines}\n", kind.as_str()),
        }
    }
}

impl ServerMsg {
    pub fn parse(line: &str) -> Result<Self, ProtoError> {
        let f = Fields::split(line)?;
        match f.verb {
            "connect" => {
                let a = f.exact("connect", 3, 3)?;
                Ok(ServerMsg::Connect {
                    kind: word("connect", "kind", a[0])?,
                    id: name("connect", "id", a[1])?,
                    version: num("connect", "version", a[2])?,
                })
            }
            "dispatch" => {
                let (a, opts) = f.args("dispatch", 2, 2)?;
                let mut conference = None;
                for (k, v) in opts {
                    if k == "conference" {
                        conference = Some(name("dispatch", "conference", v)?);
                    }
                }
                Ok(ServerMsg::Dispatch {
                    addr: Endpoint::parse("dispatch", a[0])?,
                    ticket: name("dispatch", "ticket", a[1])?,
                    conference,
                })
            }
            "accept" => {
                let a = f.exact("accept", 2, 2)?;
                Ok(ServerMsg::Accept {
                    conference: name("accept", "conference", a[0])?,
                    participant: num("accept", "participant", a[1])?,
                })
            }
            "reject" | "error" => {
                let verb = if f.verb == "reject" {
                    "reject"
                } else {
                    "error"
                };
                let a = f.exact(verb, 2, 2)?;
                let code = ErrorCode::from_u16(num(verb, "code", a[0])?);
                let text = a[1].to_owned();
                Ok(if verb == "reject" {
                    ServerMsg::Reject { code, text }
                } else {
                    ServerMsg::Error { code, text }
                })
            }
            "channel" => {
                let a = f.exact("channel", 5, 5)?;
                Ok(ServerMsg::Channel {
                    kind: word("channel", "media", a[0])?,
                    addr: num("channel", "address", a[1])?,
                    payload_type: num("channel", "payload type", a[2])?,
                    codec: name("channel", "codec", a[3])?,
                    ssrc: num("channel", "ssrc", a[4])?,
                })
            }
            "adduser" | "deluser" => {
                let verb = if f.verb == "adduser" {
                    "adduser"
                } else {
                    "deluser"
                };
                let a = f.exact(verb, 2, 2)?;
                let participant = num(verb, "participant", a[0])?;
                let name = name(verb, "name", a[1])?;
                Ok(if verb == "adduser" {
                    ServerMsg::AddUser { participant, name }
                } else {
                    ServerMsg::DelUser { participant, name }
                })
            }
            "text" => {
                let (a, opts) = f.args("text", 2, 2)?;
                let (mut id, mut to) = (None, None);
                for (k, v) in opts {
                    match k {
                        "id" => id = Some(num("text", "id", v)?),
                        "to" => to = Some(num("text", "to", v)?),
                        _ => {}
                    }
                }
                Ok(ServerMsg::Text {
                    from: name("text", "from", a[0])?,
                    text: a[1].to_owned(),
                    id,
                    to,
                })
            }
            "pong" => {
                let a = f.exact("pong", 0, 1)?;
                Ok(ServerMsg::Pong {
                    token: a.first().map(|t| t.to_string()),
                })
            }
            "speaking" => {
                let a = f.exact("speaking", 2, 2)?;
                Ok(ServerMsg::Speaking {
                    participant: num("speaking", "participant", a[0])?,
                    on: on_off("speaking", a[1])?,
                })
            }
            "quality" => {
                let a = f.exact("quality", 2, 2)?;
                Ok(ServerMsg::Quality {
                    participant: num("quality", "participant", a[0])?,
                    quality: word("quality", "quality", a[1])?,
                })
            }
            "sdp" => {
                let a = f.exact("sdp", 2, 2)?;
                Ok(Self::Sdp {
                    kind: SdpKind::parse("sdp", a[0])?,
                    line: sdp::line("sdp", a[1])?,
                })
            }
            "sdpend" => {
                let a = f.exact("sdpend", 2, 2)?;
                Ok(Self::SdpEnd {
                    kind: SdpKind::parse("sdpend", a[0])?,
                    lines: num("sdpend", "lines", a[1])?,
                })
            }
            "role" => {
                let a = f.exact("role", 2, 2)?;
                Ok(ServerMsg::Role {
                    participant: num("role", "participant", a[0])?,
                    role: word("role", "role", a[1])?,
                })
            }
            "muted" => {
                let a = f.exact("muted", 3, 3)?;
                Ok(ServerMsg::Muted {
                    participant: num("muted", "participant", a[0])?,
                    muted: on_off("muted", a[1])?,
                    by: word("muted", "by", a[2])?,
                })
            }
            "kicked" => {
                let a = f.exact("kicked", 3, 3)?;
                Ok(ServerMsg::Kicked {
                    participant: num("kicked", "participant", a[0])?,
                    by: word("kicked", "by", a[1])?,
                    reason: a[2].to_owned(),
                })
            }
            "locked" => {
                let a = f.exact("locked", 2, 2)?;
                Ok(ServerMsg::Locked {
                    on: on_off("locked", a[0])?,
                    by: word("locked", "by", a[1])?,
                })
            }
            "layout" => {
                let a = f.exact("layout", 2, 2)?;
                Ok(ServerMsg::Layout {
                    layout: word("layout", "layout", a[0])?,
                    by: word("layout", "by", a[1])?,
                })
            }
            "recording" => {
                let a = f.exact("recording", 2, 2)?;
                Ok(ServerMsg::Recording {
                    on: on_off("recording", a[0])?,
                    by: word("recording", "by", a[1])?,
                })
            }
            "ended" => {
                let a = f.exact("ended", 1, 1)?;
                Ok(ServerMsg::Ended {
                    by: word("ended", "by", a[0])?,
                })
            }
            "raise" => {
                let a = f.exact("raise", 2, 2)?;
                Ok(ServerMsg::Raise {
                    participant: num("raise", "participant", a[0])?,
                    on: on_off("raise", a[1])?,
                })
            }
            "level" => {
                let a = f.exact("level", 2, 2)?;
                let dbov: i8 = num("level", "level", a[1])?;
                if !(-127..=0).contains(&dbov) {
                    return Err(ProtoError::BadValue {
                        verb: "level",
                        field: "level",
                        value: a[1].to_owned(),
                    });
                }
                Ok(ServerMsg::Level {
                    participant: num("level", "participant", a[0])?,
                    dbov,
                })
            }
            "dominant" => {
                let a = f.exact("dominant", 1, 1)?;
                Ok(ServerMsg::Dominant {
                    participant: num("dominant", "participant", a[0])?,
                })
            }
            "slot" => {
                let a = f.exact("slot", 2, 2)?;
                Ok(ServerMsg::Slot {
                    mid: a[0].to_owned(),
                    participant: num("slot", "participant", a[1])?,
                })
            }
            v => Err(ProtoError::UnknownVerb(v.to_owned())),
        }
    }

    /// The wire line, LF included.
    pub fn encode(&self) -> String {
        match self {
            ServerMsg::Connect { kind, id, version } => {
                format!("connect\t{}\t{}\t{version}\n", kind.as_str(), clean(id))
            }
            ServerMsg::Dispatch {
                addr,
                ticket,
                conference,
            } => {
                let to = conference
                    .as_ref()
                    .map(|c| format!("\tconference={}", clean(c)))
                    .unwrap_or_default();
                format!("dispatch\t{addr}\t{}{to}\n", clean(ticket))
            }
            ServerMsg::Accept {
                conference,
                participant,
            } => format!("accept\t{}\t{participant}\n", clean(conference)),
            ServerMsg::Reject { code, text } => {
                format!("reject\t{code}\t{}\n", text_or_name(text, *code))
            }
            ServerMsg::Error { code, text } => {
                format!("error\t{code}\t{}\n", text_or_name(text, *code))
            }
            ServerMsg::Channel {
                kind,
                addr,
                payload_type,
                codec,
                ssrc,
            } => format!(
                "channel\t{}\t{addr}\t{payload_type}\t{}\t{ssrc}\n",
                kind.as_str(),
                clean(codec)
            ),
            ServerMsg::AddUser { participant, name } => {
                format!("adduser\t{participant}\t{}\n", clean(name))
            }
            ServerMsg::DelUser { participant, name } => {
                format!("deluser\t{participant}\t{}\n", clean(name))
            }
            ServerMsg::Text { from, text, id, to } => {
                let mut s = format!("text\t{}\t{}", clean(from), clean(text));
                if let Some(id) = id {
                    s += &format!("\tid={id}");
                }
                if let Some(to) = to {
                    s += &format!("\tto={to}");
                }
                s + "\n"
            }
            ServerMsg::Pong { token: Some(t) } => format!("pong\t{}\n", clean(t)),
            ServerMsg::Pong { token: None } => "pong\n".to_owned(),
            ServerMsg::Speaking { participant, on } => {
                format!("speaking\t{participant}\t{}\n", on_off_str(*on))
            }
            ServerMsg::Quality {
                participant,
                quality,
            } => format!("quality\t{participant}\t{}\n", quality.as_str()),
            ServerMsg::Sdp { kind, line } => format!("sdp\t{}\t{}\n", kind.as_str(), clean(line)),
            ServerMsg::SdpEnd { kind, lines } => format!("sdpend\t{}\t{lines}\n", kind.as_str()),
            ServerMsg::Role { participant, role } => {
                format!("role\t{participant}\t{}\n", role.as_str())
            }
            ServerMsg::Muted {
                participant,
                muted,
                by,
            } => format!("muted\t{participant}\t{}\t{by}\n", on_off_str(*muted)),
            ServerMsg::Kicked {
                participant,
                by,
                reason,
            } => format!("kicked\t{participant}\t{by}\t{}\n", clean(reason)),
            ServerMsg::Locked { on, by } => format!("locked\t{}\t{by}\n", on_off_str(*on)),
            ServerMsg::Layout { layout, by } => format!("layout\t{layout}\t{by}\n"),
            ServerMsg::Recording { on, by } => {
                format!("recording\t{}\t{by}\n", on_off_str(*on))
            }
            ServerMsg::Ended { by } => format!("ended\t{by}\n"),
            ServerMsg::Raise { participant, on } => {
                format!("raise\t{participant}\t{}\n", on_off_str(*on))
            }
            ServerMsg::Level { participant, dbov } => format!("level\t{participant}\t{dbov}\n"),
            ServerMsg::Dominant { participant } => format!("dominant\t{participant}\n"),
            ServerMsg::Slot { mid, participant } => {
                format!("slot\t{}\t{participant}\n", clean(mid))
            }
        }
    }

    /// An `error` line for a protocol error.
    pub fn error(e: &ProtoError) -> Self {
        ServerMsg::Error {
            code: e.code(),
            text: e.to_string(),
        }
    }

    /// A `reject` line.
    pub fn reject(code: ErrorCode, text: impl Into<String>) -> Self {
        ServerMsg::Reject {
            code,
            text: text.into(),
        }
    }

    /// A retryable `reject`: code 480 (`retry`), its text `retry after N ms: WHY`, so the
    /// client (and a person reading the line) knows both that and when to ask again.
    pub fn retry(after: Duration, why: &str) -> Self {
        ServerMsg::Reject {
            code: ErrorCode::Retry,
            text: format!("{RETRY_PREFIX}{} ms: {why}", after.as_millis()),
        }
    }

    /// For a retryable `reject` (code 480), how long to wait before asking again: the
    /// `retry after N ms` its text starts with, or [`RETRY_DEFAULT`] when the text says
    /// nothing readable. `None` for any other line.
    pub fn retry_after(&self) -> Option<Duration> {
        let ServerMsg::Reject {
            code: ErrorCode::Retry,
            text,
        } = self
        else {
            return None;
        };
        let said = text
            .strip_prefix(RETRY_PREFIX)
            .and_then(|t| t.split_once(" ms"))
            .and_then(|(n, _)| n.parse::<u64>().ok())
            .map(Duration::from_millis);
        Some(said.unwrap_or(RETRY_DEFAULT).min(RETRY_MAX))
    }
}

/// How a retryable reject's text starts: `retry after 500 ms: ...`.
const RETRY_PREFIX: &str = "retry after ";
/// The wait of a retryable reject whose text names none.
pub const RETRY_DEFAULT: Duration = Duration::from_secs(1);
/// The longest wait a retryable reject is taken at its word for.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Error text must not be empty or it would change the field count.
fn text_or_name(text: &str, code: ErrorCode) -> String {
    let t = clean(text);
    if t.is_empty() {
        code.name().to_owned()
    } else {
        t
    }
}
