//! Messages on the registry link between a media server and the dispatcher.

use crate::fields::{clean, name, num, on_off, Fields};
use crate::types::word;
use crate::{Capabilities, Endpoint, ErrorCode, MediaKind, Mode, ProtoError, ServerKind};
use std::net::SocketAddr;

/// Media server to dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub enum MsMsg {
    /// First line on the link: who the server is, where clients reach it, what it can host.
    Register {
        id: String,
        client_addr: SocketAddr,
        caps: Capabilities,
        total: u32,
        /// Where WebSocket clients reach the server's control lines (option `ws=`).
        ws: Option<String>,
    },
    /// Sent every second. `loss_pct` (option `loss=`) is the packet loss of the streams
    /// the server receives, over the last interval.
    Report {
        unused: u32,
        conferences: u32,
        users: u32,
        cpu_pct: f32,
        pps: u64,
        loss_pct: f32,
    },
    /// The bare `userjoined` (no options), as media servers before the billing options
    /// sent it; the dispatcher takes the conference's mode and media as the defaults.
    UserJoined {
        conference: String,
        participant: u32,
        name: String,
        account: String,
    },
    /// `userjoined` with the options that let any dispatcher bill the member as the one
    /// that placed it would (after a failover the roster replay is all it has).
    Member(Member),
    UserLeft {
        conference: String,
        participant: u32,
        name: String,
    },
    ConfDeleted {
        conference: String,
    },
    /// Past its high-water mark, or draining: asks the dispatcher to move `conference`
    /// elsewhere. The dispatcher answers with a `dispatch` per participant (or `error`).
    Punt {
        conference: String,
    },
    /// The server's own service state: `draining` (no new conferences, please) or
    /// `in-service`.
    State {
        draining: bool,
    },
    /// A recording of `conference` started (`on`) or ended, into `file` (the path on the
    /// media server); `seconds`: how long it ran (0 at the start).
    Recording {
        conference: String,
        on: bool,
        file: String,
        seconds: f64,
    },
}

/// A member as `userjoined` with options announces it: who, in which conference, and
/// what the dispatcher bills by (`mode=`, `media=`, `domain=`, `joined=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub conference: String,
    pub participant: u32,
    pub name: String,
    pub account: String,
    /// The conference's mode on the media server.
    pub mode: Mode,
    /// The media the member joined with (audio when empty).
    pub media: Vec<MediaKind>,
    /// The member's `domain=` from its join (the dispatcher's tenant map reads it).
    pub domain: Option<String>,
    /// When the media server accepted the member, Unix ms (0: unknown).
    pub joined_unix_ms: u64,
}

impl Member {
    fn parse(a: &[&str], opts: &[(&str, &str)]) -> Result<Member, ProtoError> {
        const V: &str = "userjoined";
        let mut m = Member {
            conference: name(V, "conference", a[0])?,
            participant: num(V, "participant", a[1])?,
            name: name(V, "name", a[2])?,
            account: name(V, "account", a[3])?,
            mode: Mode::default(),
            media: Vec::new(),
            domain: None,
            joined_unix_ms: 0,
        };
        for &(k, v) in opts {
            match k {
                "mode" => m.mode = word(V, "mode", v)?,
                "media" => {
                    m.media = v
                        .split(',')
                        .map(|x| word(V, "media", x))
                        .collect::<Result<_, _>>()?
                }
                "domain" => m.domain = Some(name(V, "domain", v)?),
                "joined" => m.joined_unix_ms = num(V, "joined", v)?,
                // Keys of newer media servers are left to them.
                _ => {}
            }
        }
        Ok(m)
    }

    fn encode(&self) -> String {
        let media: Vec<&str> = if self.media.is_empty() {
            vec![MediaKind::Audio.as_str()]
        } else {
            self.media.iter().map(|k| k.as_str()).collect()
        };
        let domain = self
            .domain
            .as_ref()
            .map(|d| format!("\tdomain={}", clean(d)))
            .unwrap_or_default();
        format!(
            "userjoined\t{}\t{}\t{}\t{}\tmode={}\tmedia={}\tjoined={}{domain}\n",
            clean(&self.conference),
            self.participant,
            clean(&self.name),
            clean(&self.account),
            self.mode,
            media.join(","),
            self.joined_unix_ms
        )
    }
}

/// Dispatcher to media server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispMsg {
    Connect {
        kind: ServerKind,
        id: String,
        version: u32,
    },
    /// Seed 003's reserve 207: a client holding a ticket for this conference is on its way;
    /// create the conference if it does not exist.
    Reserve {
        conference: String,
        account: String,
        user: String,
        mode: Mode,
        expires: u64,
    },
    /// Cascading: `conference` (in `mode`) also runs on server `peer`, whose clients reach
    /// it at `addr`; connect there and link the two with `ticket` (signed for this pair).
    Link {
        conference: String,
        mode: Mode,
        peer: String,
        addr: SocketAddr,
        ticket: String,
    },
    Error {
        code: ErrorCode,
        text: String,
    },
    /// Send `participant` of `conference` to the media server at `addr` with `ticket`,
    /// to join `to_conference` there: a punt (same conference, new server) or an
    /// operator's move (another conference).
    Dispatch {
        conference: String,
        participant: u32,
        addr: SocketAddr,
        ticket: String,
        to_conference: String,
        /// The target server's WebSocket URL (option `ws=`), for members on a WebSocket.
        ws: Option<String>,
    },
    /// An operator's mute (`on`) or unmute of `participant` (admin API), as a moderator's:
    /// the member cannot lift it itself.
    Mute {
        conference: String,
        participant: u32,
        on: bool,
        operator: String,
    },
    /// An operator removes `participant` from `conference`, telling everyone `reason`.
    Kick {
        conference: String,
        participant: u32,
        operator: String,
        reason: String,
    },
    /// An operator locks (`on`) or unlocks `conference`.
    Lock {
        conference: String,
        on: bool,
        operator: String,
    },
    /// An operator lays a composite conference out anew (admin API).
    Layout {
        conference: String,
        layout: crate::Layout,
        operator: String,
    },
    /// An operator starts (`on`) or stops recording `conference` (admin API).
    Record {
        conference: String,
        on: bool,
        operator: String,
    },
}

/// A `ws=` option: a WebSocket URL.
fn ws_url(verb: &'static str, v: &str) -> Result<String, ProtoError> {
    match Endpoint::parse(verb, v)? {
        Endpoint::Ws(url) => Ok(url),
        Endpoint::Tcp(_) | Endpoint::Tls(_) => Err(ProtoError::BadValue {
            verb,
            field: "ws",
            value: v.to_owned(),
        }),
    }
}

/// A non-negative finite decimal, such as a CPU or loss percentage.
fn percent(verb: &'static str, field: &'static str, v: &str) -> Result<f32, ProtoError> {
    let x: f32 = num(verb, field, v)?;
    if !x.is_finite() || x < 0.0 {
        return Err(ProtoError::BadValue {
            verb,
            field,
            value: v.to_owned(),
        });
    }
    Ok(x)
}

impl MsMsg {
    pub fn parse(line: &str) -> Result<Self, ProtoError> {
        let f = Fields::split(line)?;
        match f.verb {
            "register" => {
                let (a, opts) = f.args("register", 4, 4)?;
                let mut ws = None;
                for (k, v) in opts {
                    if k == "ws" {
                        ws = Some(ws_url("register", v)?);
                    }
                }
                Ok(MsMsg::Register {
                    id: name("register", "id", a[0])?,
                    client_addr: num("register", "address", a[1])?,
                    caps: Capabilities::parse_list("register", a[2])?,
                    total: num("register", "total", a[3])?,
                    ws,
                })
            }
            "report" => {
                let (a, opts) = f.args("report", 5, 5)?;
                let mut loss_pct = 0.0;
                for (k, v) in opts {
                    if k == "loss" {
                        loss_pct = percent("report", "loss", v)?;
                    }
                }
                Ok(MsMsg::Report {
                    unused: num("report", "unused", a[0])?,
                    conferences: num("report", "conferences", a[1])?,
                    users: num("report", "users", a[2])?,
                    cpu_pct: percent("report", "cpu", a[3])?,
                    pps: num("report", "pps", a[4])?,
                    loss_pct,
                })
            }
            "userjoined" => {
                let (a, opts) = f.args("userjoined", 4, 4)?;
                if !opts.is_empty() {
                    return Member::parse(&a, &opts).map(MsMsg::Member);
                }
                Ok(MsMsg::UserJoined {
                    conference: name("userjoined", "conference", a[0])?,
                    participant: num("userjoined", "participant", a[1])?,
                    name: name("userjoined", "name", a[2])?,
                    account: name("userjoined", "account", a[3])?,
                })
            }
            "userleft" => {
                let a = f.exact("userleft", 3, 3)?;
                Ok(MsMsg::UserLeft {
                    conference: name("userleft", "conference", a[0])?,
                    participant: num("userleft", "participant", a[1])?,
                    name: name("userleft", "name", a[2])?,
                })
            }
            "confdeleted" => {
                let a = f.exact("confdeleted", 1, 1)?;
                Ok(MsMsg::ConfDeleted {
                    conference: name("confdeleted", "conference", a[0])?,
                })
            }
            "recording" => {
                const V: &str = "recording";
                let a = f.exact(V, 4, 4)?;
                let file = a[2];
                if file.is_empty() || file.len() > 4096 || file.chars().any(char::is_control) {
                    return Err(ProtoError::BadValue {
                        verb: V,
                        field: "file",
                        value: file.to_owned(),
                    });
                }
                let seconds: f64 = a[3].parse().map_err(|_| ProtoError::BadValue {
                    verb: V,
                    field: "seconds",
                    value: a[3].to_owned(),
                })?;
                if !seconds.is_finite() || seconds < 0.0 {
                    return Err(ProtoError::BadValue {
                        verb: V,
                        field: "seconds",
                        value: a[3].to_owned(),
                    });
                }
                Ok(MsMsg::Recording {
                    conference: name(V, "conference", a[0])?,
                    on: on_off(V, a[1])?,
                    file: file.to_owned(),
                    seconds,
                })
            }
            "punt" => {
                let a = f.exact("punt", 1, 1)?;
                Ok(MsMsg::Punt {
                    conference: name("punt", "conference", a[0])?,
                })
            }
            "state" => {
                let a = f.exact("state", 1, 1)?;
                let draining = match a[0] {
                    "draining" => true,
                    "in-service" => false,
                    v => {
                        return Err(ProtoError::BadValue {
                            verb: "state",
                            field: "state",
                            value: v.to_owned(),
                        })
                    }
                };
                Ok(MsMsg::State { draining })
            }
            v => Err(ProtoError::UnknownVerb(v.to_owned())),
        }
    }

    /// The wire line, LF included.
    pub fn encode(&self) -> String {
        match self {
            MsMsg::Register {
                id,
                client_addr,
                caps,
                total,
                ws,
            } => {
                let ws = ws
                    .as_ref()
                    .map(|u| format!("\tws={}", clean(u)))
                    .unwrap_or_default();
                format!("register\t{}\t{client_addr}\t{caps}\t{total}{ws}\n", clean(id))
            }
            MsMsg::Report {
                unused,
                conferences,
                users,
                cpu_pct,
                pps,
                loss_pct,
            } => format!("report\t{unused}\t{conferences}\t{users}\t{cpu_pct:.1}\t{pps}\tloss={loss_pct:.2}\n"),
            MsMsg::UserJoined {
                conference,
                participant,
                name,
                account,
            } => format!(
                "userjoined\t{}\t{participant}\t{}\t{}\n",
                clean(conference),
                clean(name),
                clean(account)
            ),
            MsMsg::Member(m) => m.encode(),
            MsMsg::UserLeft {
                conference,
                participant,
                name,
            } => format!(
                "userleft\t{}\t{participant}\t{}\n",
                clean(conference),
                clean(name)
            ),
            MsMsg::ConfDeleted { conference } => format!("confdeleted\t{}\n", clean(conference)),
            MsMsg::Punt { conference } => format!("punt\t{}\n", clean(conference)),
            MsMsg::State { draining: true } => "state\tdraining\n".to_owned(),
            MsMsg::State { draining: false } => "state\tin-service\n".to_owned(),
            MsMsg::Recording {
                conference,
                on,
                file,
                seconds,
            } => format!(
                "recording\t{}\t{}\t{}\t{seconds:.3}\n",
                clean(conference),
                if *on { "on" } else { "off" },
                clean(file)
            ),
        }
    }
}

impl DispMsg {
    pub fn parse(line: &str) -> Result<Self, ProtoError> {
        let f = Fields::split(line)?;
        match f.verb {
            "connect" => {
                let a = f.exact("connect", 3, 3)?;
                Ok(DispMsg::Connect {
                    kind: word("connect", "kind", a[0])?,
                    id: name("connect", "id", a[1])?,
                    version: num("connect", "version", a[2])?,
                })
            }
            "reserve" => {
                let a = f.exact("reserve", 5, 5)?;
                Ok(DispMsg::Reserve {
                    conference: name("reserve", "conference", a[0])?,
                    account: name("reserve", "account", a[1])?,
                    user: name("reserve", "user", a[2])?,
                    mode: word("reserve", "mode", a[3])?,
                    expires: num("reserve", "expires", a[4])?,
                })
            }
            "dispatch" => {
                let (a, opts) = f.args("dispatch", 5, 5)?;
                let mut ws = None;
                for (k, v) in opts {
                    if k == "ws" {
                        ws = Some(ws_url("dispatch", v)?);
                    }
                }
                Ok(DispMsg::Dispatch {
                    ws,
                    conference: name("dispatch", "conference", a[0])?,
                    participant: num("dispatch", "participant", a[1])?,
                    addr: num("dispatch", "address", a[2])?,
                    ticket: name("dispatch", "ticket", a[3])?,
                    to_conference: name("dispatch", "to conference", a[4])?,
                })
            }
            "mute" => {
                let a = f.exact("mute", 4, 4)?;
                Ok(DispMsg::Mute {
                    conference: name("mute", "conference", a[0])?,
                    participant: num("mute", "participant", a[1])?,
                    on: on_off("mute", a[2])?,
                    operator: name("mute", "operator", a[3])?,
                })
            }
            "kick" => {
                let a = f.exact("kick", 4, 4)?;
                Ok(DispMsg::Kick {
                    conference: name("kick", "conference", a[0])?,
                    participant: num("kick", "participant", a[1])?,
                    operator: name("kick", "operator", a[2])?,
                    reason: a[3].to_owned(),
                })
            }
            "lock" => {
                let a = f.exact("lock", 3, 3)?;
                Ok(DispMsg::Lock {
                    conference: name("lock", "conference", a[0])?,
                    on: on_off("lock", a[1])?,
                    operator: name("lock", "operator", a[2])?,
                })
            }
            "layout" => {
                let a = f.exact("layout", 3, 3)?;
                Ok(DispMsg::Layout {
                    conference: name("layout", "conference", a[0])?,
                    layout: crate::types::word("layout", "layout", a[1])?,
                    operator: name("layout", "operator", a[2])?,
                })
            }
            "record" => {
                let a = f.exact("record", 3, 3)?;
                Ok(DispMsg::Record {
                    conference: name("record", "conference", a[0])?,
                    on: on_off("record", a[1])?,
                    operator: name("record", "operator", a[2])?,
                })
            }
            "link" => {
                let a = f.exact("link", 5, 5)?;
                Ok(DispMsg::Link {
                    conference: name("link", "conference", a[0])?,
                    mode: word("link", "mode", a[1])?,
                    peer: name("link", "peer", a[2])?,
                    addr: num("link", "address", a[3])?,
                    ticket: name("link", "ticket", a[4])?,
                })
            }
            "error" => {
                let a = f.exact("error", 2, 2)?;
                Ok(DispMsg::Error {
                    code: ErrorCode::from_u16(num("error", "code", a[0])?),
                    text: a[1].to_owned(),
                })
            }
            v => Err(ProtoError::UnknownVerb(v.to_owned())),
        }
    }

    /// The wire line, LF included.
    pub fn encode(&self) -> String {
        match self {
            DispMsg::Link {
                conference,
                mode,
                peer,
                addr,
                ticket,
            } => format!(
                "link\t{}\t{mode}\t{}\t{addr}\t{}\n",
                clean(conference),
                clean(peer),
                clean(ticket)
            ),
            DispMsg::Connect { kind, id, version } => {
                format!("connect\t{}\t{}\t{version}\n", kind.as_str(), clean(id))
            }
            DispMsg::Reserve {
                conference,
                account,
                user,
                mode,
                expires,
            } => format!(
                "reserve\t{}\t{}\t{}\t{mode}\t{expires}\n",
                clean(conference),
                clean(account),
                clean(user)
            ),
            DispMsg::Dispatch {
                conference,
                participant,
                addr,
                ticket,
                to_conference,
                ws,
            } => {
                let ws = ws
                    .as_ref()
                    .map(|u| format!("\tws={}", clean(u)))
                    .unwrap_or_default();
                format!(
                    "dispatch\t{}\t{participant}\t{addr}\t{}\t{}{ws}\n",
                    clean(conference),
                    clean(ticket),
                    clean(to_conference)
                )
            }
            DispMsg::Mute {
                conference,
                participant,
                on,
                operator,
            } => format!(
                "mute\t{}\t{participant}\t{}\t{}\n",
                clean(conference),
                if *on { "on" } else { "off" },
                clean(operator)
            ),
            DispMsg::Kick {
                conference,
                participant,
                operator,
                reason,
            } => format!(
                "kick\t{}\t{participant}\t{}\t{}\n",
                clean(conference),
                clean(operator),
                clean(reason)
            ),
            DispMsg::Lock {
                conference,
                on,
                operator,
            } => format!(
                "lock\t{}\t{}\t{}\n",
                clean(conference),
                if *on { "on" } else { "off" },
                clean(operator)
            ),
            DispMsg::Layout {
                conference,
                layout,
                operator,
            } => format!(
                "layout\t{}\t{layout}\t{}\n",
                clean(conference),
                clean(operator)
            ),
            DispMsg::Record {
                conference,
                on,
                operator,
            } => format!(
                "record\t{}\t{}\t{}\n",
                clean(conference),
                if *on { "on" } else { "off" },
                clean(operator)
            ),
            DispMsg::Error { code, text } => {
                let t = clean(text);
                let t = if t.is_empty() {
                    code.name().to_owned()
                } else {
                    t
                };
                format!("error\t{code}\t{t}\n")
            }
        }
    }
}

#[cfg(test)]
mod punt_and_state_tests {
    use super::*;

    #[test]
    fn punt_and_state_lines_round_trip() {
        for (m, line) in [
            (
                MsMsg::Punt {
                    conference: "xyz".into(),
                },
                "punt\txyz\n",
            ),
            (MsMsg::State { draining: true }, "state\tdraining\n"),
            (MsMsg::State { draining: false }, "state\tin-service\n"),
            (
                MsMsg::Recording {
                    conference: "xyz".into(),
                    on: true,
                    file: "/var/rec/xyz-1.mkv".into(),
                    seconds: 0.0,
                },
                "recording\txyz\ton\t/var/rec/xyz-1.mkv\t0.000\n",
            ),
            (
                MsMsg::Recording {
                    conference: "xyz".into(),
                    on: false,
                    file: "/var/rec/xyz-1.mkv".into(),
                    seconds: 20.5,
                },
                "recording\txyz\toff\t/var/rec/xyz-1.mkv\t20.500\n",
            ),
        ] {
            assert_eq!(m.encode(), line);
            assert_eq!(MsMsg::parse(line.trim_end()).unwrap(), m);
        }
        assert!(MsMsg::parse("punt").is_err());
        assert!(MsMsg::parse("punt\ta\tb").is_err());
        assert!(MsMsg::parse("state\tasleep").is_err());
        assert!(MsMsg::parse("state").is_err());
        for bad in [
            "recording\txyz\ton\tf.mkv",
            "recording\txyz\tmaybe\tf.mkv\t1",
            "recording\txyz\ton\tf.mkv\t-1",
            "recording\txyz\ton\tf.mkv\tNaN",
            "recording\txyz\ton\t\t1",
        ] {
            assert!(MsMsg::parse(bad).is_err(), "{bad:?}");
        }
        assert!(crate::ClientMsg::parse("record\tmaybe").is_err());
        assert_eq!(
            crate::ClientMsg::parse("record\tstart").unwrap(),
            crate::ClientMsg::Record { on: true }
        );
        assert_eq!(
            crate::ClientMsg::parse("record\tstop").unwrap(),
            crate::ClientMsg::Record { on: false }
        );
        assert!(crate::ClientMsg::parse("record").is_err());
    }

    #[test]
    fn operator_moderation_lines_round_trip() {
        for (m, line) in [
            (
                DispMsg::Mute {
                    conference: "xyz".into(),
                    participant: 4,
                    on: true,
                    operator: "alice".into(),
                },
                "mute\txyz\t4\ton\talice\n",
            ),
            (
                DispMsg::Kick {
                    conference: "xyz".into(),
                    participant: 4,
                    operator: "alice".into(),
                    reason: "abuse, see ticket 12".into(),
                },
                "kick\txyz\t4\talice\tabuse, see ticket 12\n",
            ),
            (
                DispMsg::Lock {
                    conference: "xyz".into(),
                    on: false,
                    operator: "alice".into(),
                },
                "lock\txyz\toff\talice\n",
            ),
            (
                DispMsg::Layout {
                    conference: "xyz".into(),
                    layout: crate::Layout::Speaker,
                    operator: "alice".into(),
                },
                "layout\txyz\tspeaker\talice\n",
            ),
            (
                DispMsg::Record {
                    conference: "xyz".into(),
                    on: true,
                    operator: "alice".into(),
                },
                "record\txyz\ton\talice\n",
            ),
        ] {
            assert_eq!(m.encode(), line);
            assert_eq!(DispMsg::parse(line.trim_end()).unwrap(), m);
        }
        for bad in [
            "mute\txyz\t4\tyes\talice",
            "mute\txyz\tfour\ton\talice",
            "kick\txyz\t4\talice",
            "lock\txyz\ton",
        ] {
            assert!(DispMsg::parse(bad).is_err(), "{bad}");
        }
    }
}
