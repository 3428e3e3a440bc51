//! Messages between a client and a server (the dispatcher or a media server).

use crate::fields::{clean, name, num, Fields};
use crate::sdp::{self, SdpKind};
use crate::types::word;
use crate::{
    Actor, ChannelAddr, Endpoint, ErrorCode, MediaKind, Mode, ProtoError, Quality, Role, ServerKind,
};
use std::net::SocketAddr;

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

pub(crate) fn on_off(verb: &'static str, s: &str) -> Result<bool, ProtoError> {
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

pub(crate) fn on_off_str(b: bool) -> &'static str {
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
                // `start` and `stop` read as `on` and `off`.
                let on = match a[0] {
                    "start" => true,
                    "stop" => false,
                    v => on_off("record", v)?,
                };
                Ok(ClientMsg::Record { on })
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
