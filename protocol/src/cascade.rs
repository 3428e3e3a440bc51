//! Lines between two linked media servers (cascading: one conference on several servers).
//!
//! The server that was told to link (`link` on its registry link, [`crate::DispMsg::Link`])
//! connects to the other's client port and opens with [`LinkMsg::Hello`], carrying a ticket
//! the dispatcher signed for the pair. Then each side says where its media for the
//! conference comes from and goes to ([`LinkMsg::Relay`]) and who its members are
//! ([`LinkMsg::Member`], [`LinkMsg::Gone`]); media flows as plain RTP between the two
//! servers' worker ports, told apart by SSRC.

use crate::fields::{clean, name, num, on_off, Fields};
use crate::ProtoError;
use std::net::SocketAddr;

/// The account a link ticket names, so that no client's ticket passes for one.
pub const LINK_ACCOUNT: &str = "link";

/// One server-to-server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMsg {
    /// `link CONFERENCE SERVER TICKET`: the first line from the connecting server, `SERVER`
    /// (its id), for `CONFERENCE`.
    Hello {
        conference: String,
        server: String,
        ticket: String,
    },
    /// `relay HOST:PORT AUDIO_SSRC VIDEO_SSRC`: the sender's media address for the
    /// conference, and the SSRCs its end of the link is known by there: RTCP about the
    /// sender's streams goes back with `AUDIO_SSRC` as its sender SSRC.
    Relay {
        addr: SocketAddr,
        audio_ssrc: u32,
        video_ssrc: u32,
    },
    /// `member ID NAME AUDIO_SSRC [video=SSRC]`: a member of the sender's side, with the
    /// SSRCs it sends with (the sender's participant id).
    Member {
        id: u32,
        name: String,
        audio_ssrc: u32,
        video_ssrc: Option<u32>,
    },
    /// `simulcast ID SSRC[,SSRC]|none`: the sender's member `ID` sends simulcast video,
    /// with these lower encodings (lowest first) under its video SSRC; `none`: no longer.
    /// The sender relays every encoding, and the receiver picks one per member of its own.
    Simulcast { id: u32, layers: Vec<u32> },
    /// `gone ID`: that member left.
    Gone { id: u32 },
    /// `mute ID on|off [by=ID]`: a moderator of the sender's side (`by`, its id there; none:
    /// an operator) mutes or unmutes the receiver's member `ID`, which the receiver applies
    /// as a moderator's mute.
    Mute { id: u32, on: bool, by: Option<u32> },
    /// `muted ID on|off BY`: the sender's member `ID` was muted or unmuted, by `BY`: one of
    /// the sender's members (`mine:ID`), one of the receiver's (`yours:ID`) or `operator`.
    Muted { id: u32, on: bool, by: LinkActor },
    /// `kick ID REASON [by=ID]`: a moderator of the sender's side (`by`; none: an
    /// operator) removes the receiver's member `ID`, which the receiver does as a
    /// moderator's kick.
    Kick {
        id: u32,
        reason: String,
        by: Option<u32>,
    },
    /// `lock on|off [by=ID]`: a moderator of the sender's side (`by`, its id there; none:
    /// an operator) locked or unlocked the conference; the receiver locks its part too.
    Lock { on: bool, by: Option<u32> },
    /// `muteall on|off [by=ID]`: a moderator of the sender's side muted or unmuted
    /// everyone but the moderators; the receiver does the same to its own members.
    MuteAll { on: bool, by: Option<u32> },
    /// `ping`: keepalive, every few seconds both ways.
    Ping,
}

/// The `by=ID` option of `mute`, `lock` and `muteall`.
fn by_option<'a>(
    verb: &'static str,
    opts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<u32>, ProtoError> {
    let mut by = None;
    for (k, v) in opts {
        match k {
            "by" => by = Some(num(verb, "by", v)?),
            _ => {
                return Err(ProtoError::BadValue {
                    verb,
                    field: "option",
                    value: format!("{k}={v}"),
                })
            }
        }
    }
    Ok(by)
}

impl LinkMsg {
    pub fn parse(line: &str) -> Result<Self, ProtoError> {
        let f = Fields::split(line)?;
        match f.verb {
            "link" => {
                let a = f.exact("link", 3, 3)?;
                Ok(LinkMsg::Hello {
                    conference: name("link", "conference", a[0])?,
                    server: name("link", "server", a[1])?,
                    ticket: name("link", "ticket", a[2])?,
                })
            }
            "relay" => {
                let a = f.exact("relay", 3, 3)?;
                Ok(LinkMsg::Relay {
                    addr: num("relay", "address", a[0])?,
                    audio_ssrc: nonzero("relay", "audio ssrc", a[1])?,
                    video_ssrc: nonzero("relay", "video ssrc", a[2])?,
                })
            }
            "member" => {
                let (a, opts) = f.args("member", 3, 3)?;
                let mut video_ssrc = None;
                for (k, v) in opts {
                    match k {
                        "video" => video_ssrc = Some(nonzero("member", "video", v)?),
                        _ => {
                            return Err(ProtoError::BadValue {
                                verb: "member",
                                field: "option",
                                value: format!("{k}={v}"),
                            })
                        }
                    }
                }
                Ok(LinkMsg::Member {
                    id: num("member", "id", a[0])?,
                    name: name("member", "name", a[1])?,
                    audio_ssrc: nonzero("member", "audio ssrc", a[2])?,
                    video_ssrc,
                })
            }
            "simulcast" => {
                let a = f.exact("simulcast", 2, 2)?;
                let layers = match a[1] {
                    "none" => Vec::new(),
                    v => v
                        .split(',')
                        .map(|x| nonzero("simulcast", "ssrc", x))
                        .collect::<Result<Vec<u32>, _>>()?,
                };
                if layers.len() > crate::MAX_SIMULCAST_EXTRA {
                    return Err(ProtoError::BadValue {
                        verb: "simulcast",
                        field: "ssrc",
                        value: a[1].to_owned(),
                    });
                }
                Ok(LinkMsg::Simulcast {
                    id: num("simulcast", "id", a[0])?,
                    layers,
                })
            }
            "gone" => {
                let a = f.exact("gone", 1, 1)?;
                Ok(LinkMsg::Gone {
                    id: num("gone", "id", a[0])?,
                })
            }
            "ping" => {
                f.exact("ping", 0, 0)?;
                Ok(LinkMsg::Ping)
            }
            "mute" => {
                let (a, opts) = f.args("mute", 2, 2)?;
                Ok(LinkMsg::Mute {
                    id: num("mute", "id", a[0])?,
                    on: on_off("mute", a[1])?,
                    by: by_option("mute", opts)?,
                })
            }
            "kick" => {
                let (a, opts) = f.args("kick", 2, 2)?;
                Ok(LinkMsg::Kick {
                    id: num("kick", "id", a[0])?,
                    reason: a[1].to_owned(),
                    by: by_option("kick", opts)?,
                })
            }
            "lock" => {
                let (a, opts) = f.args("lock", 1, 1)?;
                Ok(LinkMsg::Lock {
                    on: on_off("lock", a[0])?,
                    by: by_option("lock", opts)?,
                })
            }
            "muteall" => {
                let (a, opts) = f.args("muteall", 1, 1)?;
                Ok(LinkMsg::MuteAll {
                    on: on_off("muteall", a[0])?,
                    by: by_option("muteall", opts)?,
                })
            }
            "muted" => {
                let a = f.exact("muted", 3, 3)?;
                Ok(LinkMsg::Muted {
                    id: num("muted", "id", a[0])?,
                    on: on_off("muted", a[1])?,
                    by: LinkActor::parse(a[2])?,
                })
            }
            v => Err(ProtoError::UnknownVerb(v.to_owned())),
        }
    }

    /// The wire line, LF included.
    pub fn encode(&self) -> String {
        match self {
            LinkMsg::Hello {
                conference,
                server,
                ticket,
            } => format!(
                "link\t{}\t{}\t{}\n",
                clean(conference),
                clean(server),
                clean(ticket)
            ),
            LinkMsg::Relay {
                addr,
                audio_ssrc,
                video_ssrc,
            } => format!("relay\t{addr}\t{audio_ssrc}\t{video_ssrc}\n"),
            LinkMsg::Member {
                id,
                name,
                audio_ssrc,
                video_ssrc,
            } => {
                let video = video_ssrc
                    .map(|v| format!("\tvideo={v}"))
                    .unwrap_or_default();
                format!("member\t{id}\t{}\t{audio_ssrc}{video}\n", clean(name))
            }
            LinkMsg::Simulcast { id, layers } => {
                let list = match layers.is_empty() {
                    true => "none".to_owned(),
                    false => layers
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                };
                format!("simulcast\t{id}\t{list}\n")
            }
            LinkMsg::Gone { id } => format!("gone\t{id}\n"),
            LinkMsg::Mute { id, on, by } => {
                let by = by.map(|b| format!("\tby={b}")).unwrap_or_default();
                format!("mute\t{id}\t{}{by}\n", if *on { "on" } else { "off" })
            }
            LinkMsg::Muted { id, on, by } => {
                format!("muted\t{id}\t{}\t{by}\n", if *on { "on" } else { "off" })
            }
            LinkMsg::Kick { id, reason, by } => {
                let by = by.map(|b| format!("\tby={b}")).unwrap_or_default();
                format!("kick\t{id}\t{}{by}\n", clean(reason))
            }
            LinkMsg::Lock { on, by } => {
                let by = by.map(|b| format!("\tby={b}")).unwrap_or_default();
                format!("lock\t{}{by}\n", if *on { "on" } else { "off" })
            }
            LinkMsg::MuteAll { on, by } => {
                let by = by.map(|b| format!("\tby={b}")).unwrap_or_default();
                format!("muteall\t{}{by}\n", if *on { "on" } else { "off" })
            }
            LinkMsg::Ping => "ping\n".to_owned(),
        }
    }
}

/// Who muted a member, as a linked server says it: in its ids or in the receiver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkActor {
    Operator,
    /// A member of the sending server, by its id there.
    Mine(u32),
    /// A member of the receiving server, by its id there.
    Yours(u32),
}

impl LinkActor {
    fn parse(v: &str) -> Result<Self, ProtoError> {
        let bad = || ProtoError::BadValue {
            verb: "muted",
            field: "by",
            value: v.to_owned(),
        };
        match v.split_once(':') {
            None if v == "operator" => Ok(LinkActor::Operator),
            Some(("mine", id)) => Ok(LinkActor::Mine(id.parse().map_err(|_| bad())?)),
            Some(("yours", id)) => Ok(LinkActor::Yours(id.parse().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for LinkActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkActor::Operator => f.write_str("operator"),
            LinkActor::Mine(id) => write!(f, "mine:{id}"),
            LinkActor::Yours(id) => write!(f, "yours:{id}"),
        }
    }
}

/// An SSRC: zero is not one (it marks "none" in places).
fn nonzero(verb: &'static str, field: &'static str, v: &str) -> Result<u32, ProtoError> {
    match num(verb, field, v)? {
        0 => Err(ProtoError::BadValue {
            verb,
            field,
            value: v.to_owned(),
        }),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_round_trips() {
        let lines = [
            LinkMsg::Hello {
                conference: "town hall".into(),
                server: "ms-2".into(),
                ticket: "123.abc.def".into(),
            },
            LinkMsg::Relay {
                addr: "127.0.0.1:40000".parse().expect("addr"),
                audio_ssrc: 7,
                video_ssrc: 8,
            },
            LinkMsg::Member {
                id: 3,
                name: "a=b c".into(),
                audio_ssrc: 11,
                video_ssrc: Some(12),
            },
            LinkMsg::Member {
                id: 4,
                name: "d".into(),
                audio_ssrc: 13,
                video_ssrc: None,
            },
            LinkMsg::Gone { id: 3 },
            LinkMsg::Simulcast {
                id: 3,
                layers: vec![21, 22],
            },
            LinkMsg::Simulcast {
                id: 3,
                layers: Vec::new(),
            },
            LinkMsg::Lock {
                on: true,
                by: Some(2),
            },
            LinkMsg::Lock {
                on: false,
                by: None,
            },
            LinkMsg::Kick {
                id: 4,
                reason: "spam = bad".into(),
                by: Some(2),
            },
            LinkMsg::Kick {
                id: 4,
                reason: "x".into(),
                by: None,
            },
            LinkMsg::MuteAll {
                on: true,
                by: Some(2),
            },
            LinkMsg::MuteAll {
                on: false,
                by: None,
            },
            LinkMsg::Ping,
            LinkMsg::Mute {
                id: 4,
                on: true,
                by: Some(9),
            },
            LinkMsg::Mute {
                id: 4,
                on: false,
                by: None,
            },
            LinkMsg::Muted {
                id: 4,
                on: true,
                by: LinkActor::Yours(9),
            },
            LinkMsg::Muted {
                id: 4,
                on: false,
                by: LinkActor::Mine(4),
            },
            LinkMsg::Muted {
                id: 4,
                on: true,
                by: LinkActor::Operator,
            },
        ];
        for m in lines {
            let text = m.encode();
            assert_eq!(LinkMsg::parse(text.trim_end()), Ok(m), "{text:?}");
        }
    }

    #[test]
    fn bad_lines_are_refused_with_the_field() {
        for bad in [
            "relay\tnowhere\t1\t2",
            "relay\t127.0.0.1:1\t0\t2",
            "member\tx\tname\t1",
            "simulcast\t1\t0",
            "simulcast\t1\t1,2,3",
            "simulcast\t1",
            "lock\tmaybe",
            "muteall\ton\tby=x",
            "lock\ton\tcolour=red",
            "member\t1\tname\t1\tcolour=red",
            "gone",
            "link\tc\ts",
            "ping\textra",
            "mute\t1\tmaybe",
            "muted\t1\ton\tsomeone",
            "muted\t1\ton\tmine:x",
            "hello",
        ] {
            assert!(LinkMsg::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
