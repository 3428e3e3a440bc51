//! The client side of the join flow, sans-IO: one state machine for every client of the
//! NOC (confclient, its external-media mode, loadgen, and the WebRTC clients to come).
//!
//! dispatcher `connect` -> `join` -> `dispatch` (a redirect, at most [`MAX_REDIRECTS`]) ->
//! media server `connect` -> `join ... ticket=` -> `accept` -> `channel` (the application
//! answers with its own) -> roster and media. While joined it sends a keepalive `ping` and
//! watches the server's silence; when the media server's link is lost it goes back to the
//! dispatcher with a backoff and joins the same conference again (failover). A `dispatch`
//! in the middle of a session (a punt, an operator's move) is followed the same way. A
//! retryable `reject` (480: a media server registering or restarting) is asked again
//! through the dispatcher after the wait it names, growing, with jitter, for up to
//! [`FlowConfig::failover_for`], whether failover is on or not.
//!
//! Once joined, a `reject` or `error` answers one request (a moderator verb from a plain
//! participant, chat over the rate) and the session goes on; only when the server then
//! closes the connection is it the end. Being kicked, or the conference being ended by a
//! moderator, ends the session for good: no failover brings it back.
//!
//! Nothing here touches a socket or reads the clock: lines and connection outcomes come in
//! through [`JoinFlow::handle`], time through `now`, and what to do comes out of
//! [`JoinFlow::poll_action`]; [`JoinFlow::poll_timeout`] says when to call
//! [`JoinFlow::handle_timeout`]. `crate::control` drives it over real connections.

use crate::control::Event;
use crate::ClientError;
use protocol::{ChannelAddr, ChannelOpts, ClientMsg, ErrorCode, JoinOpts, MediaKind, ServerMsg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Redirects (`dispatch`) followed before joining, so two servers cannot bounce us forever.
pub const MAX_REDIRECTS: usize = 8;
/// How long a lost session keeps trying to get back into its conference.
pub const FAILOVER_FOR: Duration = Duration::from_secs(30);
/// A `ping` goes to the media server this often while we are in its conference...
pub const KEEPALIVE: Duration = Duration::from_secs(1);
/// ...and a server that has sent nothing for this long is taken for dead (a host that died
/// without closing its connections), so failover starts without waiting for TCP.
pub const SILENT_FOR: Duration = Duration::from_secs(4);
/// First and longest wait between two failover attempts (doubling in between).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The longest wait between two retries of a retryable reject (the server's wait,
/// growing by half each time).
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The wait before retry `attempt` (0-based) of a join refused with a retryable reject
/// that named `after`: `after` the first time, then half as long again each time, at most
/// [`RETRY_BACKOFF_MAX`] (never less than `after`). Jitter is added on top.
pub fn retry_backoff(after: Duration, attempt: u32) -> Duration {
    after
        .mul_f64(1.5f64.powi(attempt.min(16) as i32))
        .min(RETRY_BACKOFF_MAX)
        .max(after)
}

/// The wait before failover attempt `attempt` (0-based): none for the first, then 100 ms
/// doubling up to 1 s.
pub fn backoff(attempt: u32) -> Duration {
    match attempt {
        0 => Duration::ZERO,
        n => BACKOFF_FIRST
            .saturating_mul(1 << (n - 1).min(10))
            .min(BACKOFF_MAX),
    }
}

/// Which server a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Dispatcher,
    MediaServer,
}

impl Peer {
    pub fn as_str(self) -> &'static str {
        match self {
            Peer::Dispatcher => "dispatcher",
            Peer::MediaServer => "media server",
        }
    }
}

/// What a flow is set up with.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowConfig {
    /// The dispatcher: `host:port`, or a `ws://` URL.
    pub dispatcher: String,
    pub conference: String,
    pub account: String,
    pub name: String,
    /// The `join` line's options; the flow fills in `ticket`.
    pub opts: JoinOpts,
    /// Go back to the dispatcher when the media server is lost.
    pub failover: bool,
    pub keepalive: Duration,
    pub silent_for: Duration,
    pub failover_for: Duration,
    /// Seeds the backoff's jitter, so a run repeats exactly.
    pub seed: u64,
}

impl FlowConfig {
    /// The defaults: failover on, a 1 s keepalive, 4 s of silence allowed.
    pub fn new(dispatcher: &str, conference: &str, account: &str, name: &str) -> Self {
        FlowConfig {
            dispatcher: dispatcher.to_owned(),
            conference: conference.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
            opts: JoinOpts::default(),
            failover: true,
            keepalive: KEEPALIVE,
            silent_for: SILENT_FOR,
            failover_for: FAILOVER_FOR,
            seed: 0,
        }
    }
}

/// What the flow asks of its driver, in order.
#[derive(Debug)]
pub enum Action {
    /// Open a control connection to `target` (`host:port` or a `ws://` URL); answer with
    /// [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect { target: String, peer: Peer },
    /// Send this line on the open connection.
    Send(ClientMsg),
    /// Close the open connection once what was queued on it is written.
    Disconnect,
    /// Stop sending media: the server it went to is being left.
    PauseMedia,
    /// The media server offers a channel: the application opens its side and answers with
    /// [`JoinFlow::declare_channel`].
    ChannelOffered(ChannelOffer),
    /// Report this.
    Event(Event),
    /// The session is over: `Ok` after [`JoinFlow::leave`], the error otherwise.
    Finished(Result<(), ClientError>),
}

/// A channel as the media server's `channel` line offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOffer {
    pub kind: MediaKind,
    /// Where the server receives this media.
    pub addr: SocketAddr,
    pub payload_type: u8,
    pub codec: String,
    /// The SSRC to send with.
    pub ssrc: u32,
}

/// What happened on the connection the flow asked for.
#[derive(Debug)]
pub enum Input {
    Connected,
    ConnectFailed(ClientError),
    Line(ServerMsg),
    /// The connection ended (closed, reset, a line the framing refused).
    Lost(ClientError),
}

/// Where the flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A connection was asked for.
    Connecting,
    /// Connected, waiting for the server's `connect`.
    Greeting,
    /// `join` sent, waiting for `accept` (or `dispatch`).
    Joining,
    /// In the conference.
    Joined,
    /// Waiting out a backoff before going back to the dispatcher.
    Waiting,
    Done,
}

/// The join flow of one client session.
#[derive(Debug)]
pub struct JoinFlow {
    cfg: FlowConfig,
    phase: Phase,
    peer: Peer,
    actions: VecDeque<Action>,
    ticket: Option<String>,
    redirects: usize,
    /// The conference we are in or joining (an operator's move changes it).
    conference: String,
    participant: Option<u32>,
    /// Since when we have been trying to get back into the conference, if we are.
    lost_at: Option<Instant>,
    /// Failover attempts since `lost_at`.
    attempts: u32,
    /// Since when a join refused with a retryable reject has been retried (not failing
    /// over), and how many retries that took.
    retry_since: Option<Instant>,
    retries: u32,
    /// The wait in progress is a failover's (announced with `reconnect` when it ends);
    /// a retry announced itself when it began.
    failing_over: bool,
    last_heard: Instant,
    next_ping: Instant,
    retry_at: Instant,
    /// Why we are retrying, for the `reconnect` event.
    retry_reason: String,
    /// A refusal the joined server sent last: if it closes the connection right after,
    /// that refusal is why the session ended (no failover).
    last_refusal: Option<ClientError>,
    rng: StdRng,
}

impl JoinFlow {
    /// A flow that starts by connecting to the dispatcher.
    pub fn new(cfg: FlowConfig, now: Instant) -> Self {
        let mut f = JoinFlow {
            conference: cfg.conference.clone(),
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            phase: Phase::Connecting,
            peer: Peer::Dispatcher,
            actions: VecDeque::new(),
            ticket: None,
            redirects: 0,
            participant: None,
            lost_at: None,
            attempts: 0,
            retry_since: None,
            retries: 0,
            failing_over: false,
            last_heard: now,
            next_ping: now,
            retry_at: now,
            retry_reason: String::new(),
            last_refusal: None,
        };
        f.connect(Peer::Dispatcher, f.cfg.dispatcher.clone());
        f
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The server the current (or next) connection goes to.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    pub fn conference(&self) -> &str {
        &self.conference
    }

    /// Our participant id once accepted.
    pub fn participant(&self) -> Option<u32> {
        self.participant
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`JoinFlow::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.phase, self.peer) {
            (Phase::Waiting, _) => Some(self.retry_at),
            (Phase::Greeting | Phase::Joining, Peer::MediaServer) => {
                Some(self.last_heard + self.cfg.silent_for)
            }
            (Phase::Joined, _) => Some(self.next_ping.min(self.last_heard + self.cfg.silent_for)),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Waiting if now >= self.retry_at => {
                if self.failing_over {
                    let attempt = self.attempts;
                    self.push_event(Event::Reconnect {
                        attempt,
                        reason: self.retry_reason.clone(),
                    });
                }
                self.ticket = None;
                self.redirects = 0;
                self.connect(Peer::Dispatcher, self.cfg.dispatcher.clone());
            }
            Phase::Greeting | Phase::Joining | Phase::Joined
                if self.peer == Peer::MediaServer
                    && now.saturating_duration_since(self.last_heard) >= self.cfg.silent_for =>
            {
                let secs = self.cfg.silent_for.as_secs();
                self.fail(now, ClientError::Silent(Peer::MediaServer.as_str(), secs));
            }
            Phase::Joined if now >= self.next_ping => {
                self.next_ping = now + self.cfg.keepalive;
                self.actions
                    .push_back(Action::Send(ClientMsg::Ping { token: None }));
            }
            _ => {}
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.phase == Phase::Done {
            return;
        }
        match input {
            Input::Connected => {
                self.phase = Phase::Greeting;
                self.last_heard = now;
            }
            Input::Lost(e) if self.phase == Phase::Joined => {
                // The server closed right after refusing something: that refusal ends it.
                let e = self.last_refusal.take().unwrap_or(e);
                self.fail(now, e)
            }
            Input::ConnectFailed(e) | Input::Lost(e) => self.fail(now, e),
            Input::Line(msg) => {
                self.last_heard = now;
                self.on_line(now, msg);
            }
        }
    }

    /// Declares our side of an offered channel (answer to [`Action::ChannelOffered`]).
    pub fn declare_channel(
        &mut self,
        kind: MediaKind,
        addr: ChannelAddr,
        ssrc: u32,
        opts: ChannelOpts,
    ) {
        self.send(ClientMsg::Channel {
            kind,
            addr,
            ssrc,
            opts,
        });
    }

    /// Sends a line to the media server we are joined to (`talk`, `text`, `layer`...);
    /// dropped when not joined.
    pub fn send(&mut self, msg: ClientMsg) {
        if self.phase == Phase::Joined {
            self.actions.push_back(Action::Send(msg));
        }
    }

    /// Leaves: `endsession` on the open connection, then [`Action::Finished`] with `Ok`.
    pub fn leave(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        if matches!(self.phase, Phase::Greeting | Phase::Joining | Phase::Joined) {
            self.actions.push_back(Action::Send(ClientMsg::EndSession));
            self.actions.push_back(Action::Disconnect);
        }
        self.finish(Ok(()));
    }

    fn connect(&mut self, peer: Peer, target: String) {
        self.peer = peer;
        self.phase = Phase::Connecting;
        self.actions.push_back(Action::Connect { target, peer });
    }

    fn push_event(&mut self, e: Event) {
        self.actions.push_back(Action::Event(e));
    }

    fn finish(&mut self, r: Result<(), ClientError>) {
        self.phase = Phase::Done;
        self.actions.push_back(Action::Finished(r));
    }

    fn on_line(&mut self, now: Instant, msg: ServerMsg) {
        // A retryable reject is reported as the retry it starts, not as a refusal.
        if let Some(after) = msg.retry_after() {
            if let ServerMsg::Reject { code, text } = msg {
                return self.retry(now, after, ClientError::Rejected { code, text });
            }
        }
        if !matches!(msg, ServerMsg::Pong { .. }) {
            self.push_event(Event::Server(msg.clone()));
        }
        if self.phase == Phase::Joined {
            self.last_refusal = None;
        }
        match msg {
            ServerMsg::Connect { version, .. } => {
                if version != protocol::VERSION {
                    tracing::warn!(version, "server speaks another protocol version");
                }
                if self.phase != Phase::Greeting {
                    return self.fail(now, ClientError::Unexpected("second connect".into()));
                }
                let mut opts = self.cfg.opts.clone();
                opts.ticket.clone_from(&self.ticket);
                if self.ticket.is_some() {
                    // The PIN is for the dispatcher; the ticket carries the role it grants.
                    opts.extra.retain(|(k, _)| k != "pin");
                }
                self.actions.push_back(Action::Send(ClientMsg::Join {
                    conference: self.conference.clone(),
                    account: self.cfg.account.clone(),
                    name: self.cfg.name.clone(),
                    opts,
                }));
                self.phase = Phase::Joining;
            }
            ServerMsg::Dispatch {
                addr,
                ticket,
                conference,
            } => {
                if let Some(c) = conference {
                    self.conference = c;
                }
                self.redirects += 1;
                if self.redirects > MAX_REDIRECTS {
                    return self.fail(now, ClientError::Unexpected("too many redirects".into()));
                }
                // Leave this server before contacting the next, as seed 003 Fig. 2 does.
                self.actions.push_back(Action::Send(ClientMsg::EndSession));
                self.actions.push_back(Action::Disconnect);
                if self.phase == Phase::Joined {
                    // A move mid-session: the new server assigns new channels.
                    self.actions.push_back(Action::PauseMedia);
                }
                self.ticket = Some(ticket);
                self.connect(Peer::MediaServer, addr.to_string());
            }
            ServerMsg::Accept {
                conference,
                participant,
            } => {
                if self.phase != Phase::Joining {
                    return self.fail(now, ClientError::Unexpected("accept before join".into()));
                }
                if let Some(since) = self.lost_at.take() {
                    let ms = now.saturating_duration_since(since).as_millis() as u64;
                    tracing::warn!(conference, ms, "failover: back in the conference");
                    self.push_event(Event::Rejoined {
                        conference: conference.clone(),
                        after_ms: ms,
                    });
                }
                self.attempts = 0;
                self.retry_since = None;
                self.retries = 0;
                self.conference = conference;
                self.participant = Some(participant);
                self.phase = Phase::Joined;
                self.redirects = 0;
                self.next_ping = now + self.cfg.keepalive;
            }
            ServerMsg::Channel {
                kind,
                addr,
                payload_type,
                codec,
                ssrc,
            } => {
                if self.peer == Peer::MediaServer {
                    self.actions.push_back(Action::ChannelOffered(ChannelOffer {
                        kind,
                        addr,
                        payload_type,
                        codec,
                        ssrc,
                    }));
                }
            }
            // Joined: one request was refused; the server closes the link if that is all.
            ServerMsg::Reject { code, text } if self.phase == Phase::Joined => {
                self.last_refusal = Some(ClientError::Rejected { code, text });
            }
            ServerMsg::Error { code, text } if self.phase == Phase::Joined => {
                self.last_refusal = Some(ClientError::Server { code, text });
            }
            ServerMsg::Reject { code, text } => {
                self.fail(now, ClientError::Rejected { code, text })
            }
            ServerMsg::Error { code, text } => self.fail(now, ClientError::Server { code, text }),
            ServerMsg::Kicked {
                participant,
                by,
                reason,
            } if Some(participant) == self.participant && self.phase == Phase::Joined => {
                self.actions.push_back(Action::Disconnect);
                self.finish(Err(ClientError::Kicked { by, reason }));
            }
            ServerMsg::Ended { .. } if self.phase == Phase::Joined => {
                self.actions.push_back(Action::Disconnect);
                self.finish(Ok(()));
            }
            ServerMsg::AddUser { .. }
            | ServerMsg::DelUser { .. }
            | ServerMsg::Text { .. }
            | ServerMsg::Speaking { .. }
            | ServerMsg::Quality { .. }
            | ServerMsg::Sdp { .. }
            | ServerMsg::SdpEnd { .. }
            | ServerMsg::Pong { .. }
            | ServerMsg::Role { .. }
            | ServerMsg::Muted { .. }
            | ServerMsg::Kicked { .. }
            | ServerMsg::Locked { .. }
            | ServerMsg::Ended { .. }
            | ServerMsg::Layout { .. }
            | ServerMsg::Recording { .. }
            | ServerMsg::Raise { .. }
            | ServerMsg::Level { .. }
            | ServerMsg::Dominant { .. }
            | ServerMsg::Slot { .. } => {}
        }
    }

    /// Whether `err` is one failover handles: the media server's link dropped, a media
    /// server refused us for want of room (draining, full) or could not be reached, or
    /// found our ticket spent (a ticket is good for one join: the dispatcher gives a new
    /// one), or, while already failing over, the dispatcher had nowhere to put us yet.
    fn recoverable(&self, err: &ClientError) -> bool {
        if !self.cfg.failover {
            return false;
        }
        let at_media = self.peer == Peer::MediaServer;
        let failing = self.lost_at.is_some();
        match err {
            ClientError::Closed(_) | ClientError::Io(_) | ClientError::Silent(..) => {
                at_media || failing
            }
            ClientError::Connect { .. } => at_media || failing,
            ClientError::Rejected { code, .. } => {
                matches!(code, ErrorCode::NoCapacity | ErrorCode::Internal) && (at_media || failing)
                    || *code == ErrorCode::TicketUsed && at_media
            }
            _ => false,
        }
    }

    /// A retryable reject (`after`: the wait it named): back to the dispatcher after that
    /// wait, growing by half with each retry, plus up to a quarter more of jitter, so clients
    /// refused together do not all come back together. After [`FlowConfig::failover_for`]
    /// of retrying (counted from the loss, when failing over), the reject is final.
    fn retry(&mut self, now: Instant, after: Duration, err: ClientError) {
        let connected = matches!(self.phase, Phase::Greeting | Phase::Joining | Phase::Joined);
        if connected {
            self.actions.push_back(Action::Disconnect);
        }
        let since = match self.lost_at {
            Some(t) => t,
            None => *self.retry_since.get_or_insert(now),
        };
        if now.saturating_duration_since(since) > self.cfg.failover_for {
            tracing::error!("retry: gave up after {} s", self.cfg.failover_for.as_secs());
            if let ClientError::Rejected { code, text } = &err {
                self.push_event(Event::Server(ServerMsg::Reject {
                    code: *code,
                    text: text.clone(),
                }));
            }
            return self.finish(Err(err));
        }
        if self.phase == Phase::Joined {
            self.actions.push_back(Action::PauseMedia);
        }
        let wait = retry_backoff(after, self.retries);
        let wait = wait + wait.mul_f64(self.rng.gen_range(0.0..0.25));
        self.retries += 1;
        self.retry_at = now + wait;
        self.retry_reason = err.to_string();
        self.failing_over = false;
        tracing::info!(attempt = self.retries, wait_ms = wait.as_millis() as u64, reason = %err, "retry: asking the dispatcher again");
        self.push_event(Event::Retry {
            attempt: self.retries,
            after_ms: wait.as_millis() as u64,
            reason: self.retry_reason.clone(),
        });
        self.ticket = None;
        self.peer = Peer::Dispatcher;
        self.phase = Phase::Waiting;
    }

    /// Handles a failure: back to the dispatcher after a backoff when failover covers it,
    /// else the end of the session.
    fn fail(&mut self, now: Instant, err: ClientError) {
        let connected = matches!(self.phase, Phase::Greeting | Phase::Joining | Phase::Joined);
        if !self.recoverable(&err) {
            if connected {
                self.actions.push_back(Action::Disconnect);
            }
            return self.finish(Err(err));
        }
        let since = *self.lost_at.get_or_insert(now);
        if now.saturating_duration_since(since) > self.cfg.failover_for {
            tracing::error!(
                "failover: gave up after {} s",
                self.cfg.failover_for.as_secs()
            );
            if connected {
                self.actions.push_back(Action::Disconnect);
            }
            return self.finish(Err(err));
        }
        if connected {
            self.actions.push_back(Action::Disconnect);
        }
        if self.phase == Phase::Joined {
            self.actions.push_back(Action::PauseMedia);
        }
        let wait = backoff(self.attempts);
        // Up to a quarter more, so clients cut off together do not come back together.
        let jitter = wait.mul_f64(self.rng.gen_range(0.0..0.25));
        self.attempts += 1;
        self.retry_at = now + wait + jitter;
        self.retry_reason = err.to_string();
        self.failing_over = true;
        tracing::warn!(attempt = self.attempts, reason = %err, "failover: back to the dispatcher");
        self.peer = Peer::Dispatcher;
        self.phase = Phase::Waiting;
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
