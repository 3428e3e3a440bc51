//! The control connection (TCP, protocol lines) and the events the client reports.

use crate::ClientError;
use protocol::{ClientMsg, LineBuffer, ServerMsg};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a TCP connect may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One TCP control connection to a dispatcher or a media server.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    lines: LineBuffer,
    buf: Vec<u8>,
    /// What is at the other end, for messages ("dispatcher", "media server").
    peer: &'static str,
    /// Lines that framed fine but did not parse; skipped.
    pub bad_lines: u64,
}

impl Control {
    /// Connects to `addr` (`host:port`), naming the peer `peer` in errors.
    pub async fn connect(addr: &str, peer: &'static str) -> Result<Self, ClientError> {
        let connect_err = |source| ClientError::Connect {
            what: peer,
            addr: addr.to_owned(),
            source,
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
        };
        // Control lines are tiny and latency matters more than batching.
        stream.set_nodelay(true).ok();
        Ok(Control {
            stream,
            lines: LineBuffer::new(),
            buf: vec![0; 4096],
            peer,
            bad_lines: 0,
        })
    }

    pub fn peer(&self) -> &'static str {
        self.peer
    }

    /// Our end of the connection; the media socket binds to the same IP.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        let line = msg.encode();
        tracing::debug!(peer = self.peer, line = line.trim_end(), "send");
        self.stream.write_all(line.as_bytes()).await?;
        Ok(())
    }

    /// The next message. Lines that do not parse are logged, counted and skipped; a line
    /// the codec cannot frame (over-long, not UTF-8) ends the connection with an error.
    /// Cancel-safe: partial input stays buffered in `self`.
    pub async fn recv(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            while let Some(line) = self.lines.next_line() {
                let line = line?;
                match ServerMsg::parse(&line) {
                    Ok(msg) => {
                        tracing::debug!(peer = self.peer, line, "recv");
                        return Ok(msg);
                    }
                    Err(e) => {
                        self.bad_lines += 1;
                        tracing::warn!(peer = self.peer, line, "ignoring line: {e}");
                    }
                }
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ClientError::Closed(self.peer));
            }
            self.lines.extend(&self.buf[..n]);
        }
    }

    /// Says goodbye (`endsession`) and closes our side; errors are irrelevant when leaving.
    /// The connection is of no further use.
    pub async fn end(&mut self) {
        if let Err(e) = self.send(&ClientMsg::EndSession).await {
            tracing::debug!(peer = self.peer, "endsession not sent: {e}");
        }
        self.stream.shutdown().await.ok();
    }
}

/// Counters reported when the client leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub conference: String,
    /// RTP packets sent.
    pub sent: u64,
    /// Distinct RTP packets received (duplicates excluded).
    pub received: u64,
    /// SSRCs heard.
    pub streams: usize,
    /// Packets missing from the received streams' sequence numbers.
    pub lost: u64,
    /// Datagrams that were not usable RTP (bad header, wrong payload type, undecodable).
    pub malformed: u64,
    /// Packets that came after their playout time.
    pub late: u64,
    pub duplicates: u64,
}

/// Something the client reports on stdout, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A control message from a server (`pong` is not reported).
    Server(ServerMsg),
    /// The session ended normally.
    Left(Summary),
    /// Failover: the link to the conference was lost (`reason`), and this is attempt
    /// `attempt` at getting back through the dispatcher.
    Reconnect { attempt: u32, reason: String },
    /// Failover done: accepted into `conference` again, `after_ms` after the loss.
    Rejoined { conference: String, after_ms: u64 },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ServerMsg as M;
        match self {
            Event::Server(m) => match m {
                M::Connect { kind, id, .. } => write!(f, "connect {} {id}", kind.as_str()),
                M::Dispatch {
                    addr,
                    conference: Some(c),
                    ..
                } => write!(f, "dispatch {addr} conference={c}"),
                M::Dispatch { addr, .. } => write!(f, "dispatch {addr}"),
                M::Accept {
                    conference,
                    participant,
                } => write!(f, "accept {conference} {participant}"),
                M::Reject { code, text } => write!(f, "reject {code} {text}"),
                M::Error { code, text } => write!(f, "error {code} {text}"),
                M::Channel {
                    kind,
                    addr,
                    payload_type,
                    codec,
                    ssrc,
                } => write!(
                    f,
                    "channel {} {addr} {payload_type} {codec} {ssrc}",
                    kind.as_str()
                ),
                M::AddUser { participant, name } => write!(f, "adduser {participant} {name}"),
                M::DelUser { participant, name } => write!(f, "deluser {participant} {name}"),
                M::Text { from, text } => write!(f, "text {from} {text}"),
                M::Pong { token: Some(t) } => write!(f, "pong {t}"),
                M::Pong { token: None } => f.write_str("pong"),
                M::Speaking { participant, on } => {
                    write!(
                        f,
                        "speaking {participant} {}",
                        if *on { "on" } else { "off" }
                    )
                }
                M::Quality {
                    participant,
                    quality,
                } => write!(f, "quality {participant} {}", quality.as_str()),
            },
            Event::Reconnect { attempt, reason } => write!(f, "reconnect {attempt} {reason}"),
            Event::Rejoined {
                conference,
                after_ms,
            } => write!(f, "rejoined {conference} after_ms={after_ms}"),
            Event::Left(s) => write!(
                f,
                "left {} sent={} received={} streams={} lost={} malformed={} late={} duplicates={}",
                s.conference,
                s.sent,
                s.received,
                s.streams,
                s.lost,
                s.malformed,
                s.late,
                s.duplicates
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ErrorCode, MediaKind, ServerKind};

    #[test]
    fn event_lines() {
        let line = |m| Event::Server(m).to_string();
        assert_eq!(
            line(ServerMsg::Connect {
                kind: ServerKind::Dispatcher,
                id: "disp-1".into(),
                version: 1
            }),
            "connect dispatcher disp-1"
        );
        assert_eq!(
            line(ServerMsg::Dispatch {
                addr: "127.0.0.1:3451".parse().unwrap(),
                ticket: "t".into(),
                conference: None,
            }),
            "dispatch 127.0.0.1:3451"
        );
        assert_eq!(
            line(ServerMsg::Channel {
                kind: MediaKind::Audio,
                addr: "127.0.0.1:40000".parse().unwrap(),
                payload_type: 111,
                codec: "opus".into(),
                ssrc: 12345
            }),
            "channel audio 127.0.0.1:40000 111 opus 12345"
        );
        assert_eq!(
            line(ServerMsg::Reject {
                code: ErrorCode::UnknownAccount,
                text: "no such account".into()
            }),
            "reject 401 no such account"
        );
        assert_eq!(
            line(ServerMsg::Text {
                from: "bob".into(),
                text: "hello there".into()
            }),
            "text bob hello there"
        );
        let left = Event::Left(Summary {
            conference: "xyz".into(),
            sent: 250,
            received: 498,
            streams: 2,
            ..Summary::default()
        });
        assert_eq!(
            Event::Reconnect {
                attempt: 2,
                reason: "media server closed the connection".into()
            }
            .to_string(),
            "reconnect 2 media server closed the connection"
        );
        assert_eq!(
            Event::Rejoined {
                conference: "xyz".into(),
                after_ms: 120
            }
            .to_string(),
            "rejoined xyz after_ms=120"
        );
        assert_eq!(
            left.to_string(),
            "left xyz sent=250 received=498 streams=2 lost=0 malformed=0 late=0 duplicates=0"
        );
    }
}
