//! Parsing and writing what a server says to a client (the `ServerMsg` lines).

use crate::client::{on_off, on_off_str, ServerMsg};
use crate::fields::{clean, name, num, Fields};
use crate::sdp::{self, SdpKind};
use crate::types::word;
use crate::{Endpoint, ErrorCode, ProtoError};
use std::time::Duration;

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
