//! The driver of the join flow: [`Control`] runs [`crate::flow::JoinFlow`] over real
//! control connections (TCP, TLS or WebSocket, through the `control` crate's links) and hands
//! the application only what it must act on: channels to open, media to pause, events to
//! print, the end. Also the [`Event`] lines the client reports.

use crate::flow::{Action, ChannelOffer, FlowConfig, Input, JoinFlow, Peer};
use crate::ClientError;
use ::control::{ControlError, Link, Recv};
use protocol::{ChannelAddr, ChannelOpts, ClientMsg, MediaKind, ServerMsg};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Instant;

/// How long a leave may take to say `endsession` before we go anyway.
const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

type Connecting = Pin<Box<dyn Future<Output = Result<Link, ControlError>> + Send>>;

/// What the application must act on.
#[derive(Debug)]
pub enum Step {
    /// Open our side of this channel, then [`Control::declare_channel`].
    ChannelOffered(ChannelOffer),
    /// Stop sending media until the next channel (we are leaving its server).
    PauseMedia,
    /// Print this.
    Event(Event),
    /// The session is over; do not call [`Control::next`] again.
    Finished(Result<(), ClientError>),
}

/// A client's control plane: the join flow and its current connection.
pub struct Control {
    flow: JoinFlow,
    /// Steps for the application, in order, until [`Control::next`] hands them out.
    ready: std::collections::VecDeque<Step>,
    link: Option<Link>,
    connecting: Option<(Connecting, Peer, String)>,
    /// The last link closed, until its writer has sent what was queued (`endsession`).
    closing: Option<::control::Outbox>,
    /// Lines that framed fine but did not parse; skipped.
    pub bad_lines: u64,
    /// The trust of `tls://` and `wss://` links; `None`: the system's roots.
    tls: Option<::control::ClientTls>,
}

fn connect_error(peer: Peer, addr: &str, e: ControlError) -> ClientError {
    let source = match e {
        ControlError::Connect { source, .. } => source,
        ControlError::ConnectTimeout(_) => std::io::ErrorKind::TimedOut.into(),
        other => std::io::Error::other(other.to_string()),
    };
    ClientError::Connect {
        what: peer.as_str(),
        addr: addr.to_owned(),
        source,
    }
}

impl Control {
    pub fn new(cfg: FlowConfig) -> Self {
        Control {
            flow: JoinFlow::new(cfg, Instant::now()),
            ready: Default::default(),
            link: None,
            connecting: None,
            closing: None,
            bad_lines: 0,
            tls: None,
        }
    }

    /// Verifies TLS servers (the dispatcher given as `tls://` or `wss://`, and every
    /// server a `dispatch` names so) against `tls` instead of the system's roots.
    pub fn with_tls(mut self, tls: Option<::control::ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The conference we are in (or joining).
    pub fn conference(&self) -> &str {
        self.flow.conference()
    }

    /// The IP of our end of the control connection: media sockets bind to it, so the
    /// server sees RTP from the host it admitted.
    pub fn local_ip(&self) -> Option<IpAddr> {
        self.link
            .as_ref()
            .and_then(|l| l.outbox.local())
            .map(|a| a.ip())
    }

    /// Answers [`Step::ChannelOffered`].
    pub fn declare_channel(
        &mut self,
        kind: MediaKind,
        addr: ChannelAddr,
        ssrc: u32,
        opts: ChannelOpts,
    ) {
        self.flow.declare_channel(kind, addr, ssrc, opts);
        self.pump();
    }

    /// Sends a line to the media server we are joined to, at once (`talk` before the
    /// audio it announces).
    pub fn send(&mut self, msg: ClientMsg) {
        self.flow.send(msg);
        self.pump();
    }

    /// Leaves (`endsession`); [`Control::next`] then returns `Finished(Ok)`.
    pub fn leave(&mut self) {
        self.flow.leave();
        self.pump();
    }

    /// Leaves and waits (at most [`LEAVE_GRACE`]) for `endsession` to be on its way.
    pub async fn finish(&mut self) {
        if self.flow.phase() == crate::flow::Phase::Done
            && !self.ready.iter().any(|s| matches!(s, Step::Finished(_)))
        {
            return;
        }
        self.leave();
        let _ = tokio::time::timeout(LEAVE_GRACE, async {
            while !matches!(self.next().await, Step::Finished(_)) {}
            // The link's writer sends what was queued, then closes.
            if let Some(o) = self.closing.take() {
                o.closed().await;
            }
        })
        .await;
    }

    fn close_link(&mut self) {
        if let Some(l) = self.link.take() {
            l.outbox.finish(None, ::control::CloseReason::Done);
            self.closing = Some(l.outbox);
        }
    }

    /// Carries out the flow's connection actions at once, and queues the ones the
    /// application must see for [`Control::next`].
    fn pump(&mut self) {
        while let Some(a) = self.flow.poll_action() {
            match a {
                Action::Connect { target, peer } => {
                    self.close_link();
                    let to = target.clone();
                    let tls = self.tls.clone();
                    let fut = async move { ::control::connect_tls(&to, tls.as_ref()).await };
                    self.connecting = Some((Box::pin(fut), peer, target));
                }
                Action::Send(m) => {
                    let line = m.encode();
                    tracing::debug!(line = %protocol::redact_line(&line), "send");
                    if let Some(l) = &self.link {
                        // A closed link is reported by its incoming side.
                        l.outbox.send(line);
                    }
                }
                Action::Disconnect => self.close_link(),
                Action::PauseMedia => self.ready.push_back(Step::PauseMedia),
                Action::ChannelOffered(o) => self.ready.push_back(Step::ChannelOffered(o)),
                Action::Event(e) => self.ready.push_back(Step::Event(e)),
                Action::Finished(r) => {
                    self.close_link();
                    self.connecting = None;
                    self.ready.push_back(Step::Finished(r));
                }
            }
        }
    }

    /// The next step for the application. Cancel-safe: a connect in progress and partial
    /// lines are kept.
    pub async fn next(&mut self) -> Step {
        loop {
            self.pump();
            if let Some(step) = self.ready.pop_front() {
                return step;
            }
            let timeout = self.flow.poll_timeout();
            let timer = async move {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let connecting = async {
                match self.connecting.as_mut() {
                    Some((f, _, _)) => f.await,
                    None => std::future::pending().await,
                }
            };
            let recv = async {
                match self.link.as_mut() {
                    Some(l) => l.incoming.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                linked = connecting => {
                    let Some((_, peer, target)) = self.connecting.take() else { continue };
                    let now = Instant::now();
                    match linked {
                        Ok(link) => {
                            self.link = Some(link);
                            self.flow.handle(now, Input::Connected);
                        }
                        Err(e) => {
                            self.flow.handle(now, Input::ConnectFailed(connect_error(peer, &target, e)));
                        }
                    }
                }
                got = recv => {
                    let now = Instant::now();
                    let peer = self.flow.peer();
                    match got {
                        Recv::Line(l) => match ServerMsg::parse(&l) {
                            Ok(m) => {
                                tracing::debug!(peer = peer.as_str(), line = %protocol::redact_line(&l), "recv");
                                self.flow.handle(now, Input::Line(m));
                            }
                            Err(e) => {
                                self.bad_lines += 1;
                                tracing::warn!(peer = peer.as_str(), line = %protocol::redact_line(&l), "ignoring line: {e}");
                            }
                        },
                        Recv::Bad(e) => {
                            self.link = None;
                            self.flow.handle(now, Input::Lost(ClientError::Protocol(e)));
                        }
                        Recv::Closed(_) => {
                            self.link = None;
                            self.flow.handle(now, Input::Lost(ClientError::Closed(peer.as_str())));
                        }
                    }
                }
                () = timer => self.flow.handle_timeout(Instant::now()),
            }
        }
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
    /// `--detect-clicks`: a click heard this long after it was made (mouth to ear).
    Click { latency_us: u64 },
    /// `--detect-clicks`, at the end: the clicks heard, their latency's median, 99th
    /// percentile and maximum, and the client's playout delay at the end.
    Clicks {
        count: usize,
        p50_us: u64,
        p99_us: u64,
        max_us: u64,
        buffer_us: u64,
    },
    /// A scheduled line (`--say`, `--command`) naming someone not in the roster.
    Skipped { what: String },
    /// A retryable reject (`reason`): retry `attempt` goes to the dispatcher in
    /// `after_ms`.
    Retry {
        attempt: u32,
        after_ms: u64,
        reason: String,
    },
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
                M::Text {
                    from,
                    text,
                    to: None,
                    ..
                } => write!(f, "text {from} {text}"),
                M::Text { from, text, .. } => write!(f, "private {from} {text}"),
                M::Pong { token: Some(t) } => write!(f, "pong {t}"),
                M::Pong { token: None } => f.write_str("pong"),
                M::Speaking { participant, on } => {
                    write!(f, "speaking {participant} {}", on_off(*on))
                }
                M::Quality {
                    participant,
                    quality,
                } => write!(f, "quality {participant} {}", quality.as_str()),
                M::Sdp { kind, line } => write!(f, "sdp {} {line}", kind.as_str()),
                M::SdpEnd { kind, lines } => write!(f, "sdpend {} {lines}", kind.as_str()),
                M::Role { participant, role } => write!(f, "role {participant} {}", role.as_str()),
                M::Muted {
                    participant,
                    muted,
                    by,
                } => write!(f, "muted {participant} {} by={by}", on_off(*muted)),
                M::Kicked {
                    participant,
                    by,
                    reason,
                } => write!(f, "kicked {participant} by={by} {reason}"),
                M::Locked { on, by } => write!(f, "locked {} by={by}", on_off(*on)),
                M::Ended { by } => write!(f, "ended by={by}"),
                M::Layout { layout, by } => write!(f, "layout {layout} by={by}"),
                M::Recording { on, by } => write!(f, "recording {} by={by}", on_off(*on)),
                M::Raise { participant, on } => write!(f, "raise {participant} {}", on_off(*on)),
                M::Level { participant, dbov } => write!(f, "level {participant} {dbov}"),
                M::Dominant { participant } => write!(f, "dominant {participant}"),
                M::Slot { mid, participant } => write!(f, "slot {mid} {participant}"),
            },
            Event::Reconnect { attempt, reason } => write!(f, "reconnect {attempt} {reason}"),
            Event::Click { latency_us } => write!(f, "click latency_ms={}", ms(*latency_us)),
            Event::Clicks {
                count,
                p50_us,
                p99_us,
                max_us,
                buffer_us,
            } => write!(
                f,
                "clicks n={count} p50_ms={} p99_ms={} max_ms={} buffer_ms={}",
                ms(*p50_us),
                ms(*p99_us),
                ms(*max_us),
                ms(*buffer_us)
            ),
            Event::Skipped { what } => write!(f, "skipped {what}"),
            Event::Retry {
                attempt,
                after_ms,
                reason,
            } => write!(f, "retry {attempt} after_ms={after_ms} {reason}"),
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

/// Microseconds as milliseconds with one decimal.
fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Actor, ErrorCode, MediaKind, ServerKind};

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
                text: "hello there".into(),
                id: Some(2),
                to: None,
            }),
            "text bob hello there"
        );
        assert_eq!(
            line(ServerMsg::Text {
                from: "bob".into(),
                text: "just you".into(),
                id: Some(2),
                to: Some(5),
            }),
            "private bob just you"
        );
        assert_eq!(
            line(ServerMsg::Muted {
                participant: 3,
                muted: true,
                by: Actor::Participant(2)
            }),
            "muted 3 on by=2"
        );
        assert_eq!(
            line(ServerMsg::Locked {
                on: false,
                by: Actor::Operator
            }),
            "locked off by=operator"
        );
        assert_eq!(
            line(ServerMsg::Level {
                participant: 3,
                dbov: -17
            }),
            "level 3 -17"
        );
        assert_eq!(line(ServerMsg::Dominant { participant: 4 }), "dominant 4");
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
