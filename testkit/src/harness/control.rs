//! Control-protocol clients over raw TCP, for tests that speak the lines themselves: a
//! line-by-line connection, tickets signed with a shared secret, and a member joined at a
//! media server that reads its `channel` offers.

use protocol::ticket::{self, Claims};
use protocol::{Endpoint, MediaKind, ServerMsg};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as tickets count expiry.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A will-call ticket for `user` in `conference` at `server`, valid for five minutes.
pub fn ticket(secret: &[u8], conference: &str, account: &str, user: &str, server: &str) -> String {
    let claims = Claims {
        conference,
        account,
        user,
        server,
    };
    ticket::sign(secret, &claims, unix_now() + 300)
}

/// A control connection, read line by line.
pub struct Line {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Line {
    /// Connects with a 5 s read timeout.
    pub fn connect(addr: SocketAddr) -> Line {
        Line::try_connect(addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{addr} reachable: {e}"))
    }

    /// Connects with `timeout` for each read.
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Line> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(timeout))?;
        Ok(Line {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends one line; the LF is added when missing.
    pub fn send(&mut self, line: &str) {
        let _ = self.try_send(line);
    }

    /// Like [`Line::send`], saying whether the write went through.
    pub fn try_send(&mut self, line: &str) -> std::io::Result<()> {
        let lf = if line.ends_with('\n') { "" } else { "\n" };
        self.writer.write_all(format!("{line}{lf}").as_bytes())
    }

    /// The next line without its line end; `None` when the server closed the connection or
    /// the read timed out.
    pub fn read(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
            _ => None,
        }
    }

    /// Reads until a line starting with `prefix` and returns its TAB-separated fields;
    /// panics with the lines seen when the connection ends or a read times out first.
    pub fn expect(&mut self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.read() {
                Some(l) if l.starts_with(prefix) => {
                    return l.split('\t').map(str::to_owned).collect()
                }
                Some(l) => seen.push(l),
                None => panic!("no {prefix:?} line; got {seen:?}"),
            }
        }
    }

    /// Reads lines until one starts with `prefix`, for up to `timeout` (read timeouts on the
    /// way are waited through); `None` when the connection closes or time runs out.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.starts_with(prefix) => return Some(line.trim_end().to_owned()),
                _ => {}
            }
        }
        None
    }

    /// The next server line, parsed; panics when the server closed or sent a bad line.
    pub fn next_msg(&mut self) -> ServerMsg {
        let line = self.read().expect("server closed the control connection");
        ServerMsg::parse(&line).unwrap_or_else(|e| panic!("bad server line {line:?}: {e}"))
    }
}

/// Where and how to join a media server directly, with a ticket signed here.
#[derive(Clone, Copy, Debug)]
pub struct MediaServer<'a> {
    /// Its control (client host) address.
    pub client: SocketAddr,
    pub id: &'a str,
    /// The ticket secret it shares with its dispatcher (and here, the test).
    pub secret: &'a [u8],
    /// Its first worker's media address (the offers' address until they come).
    pub media: SocketAddr,
}

/// What a server `channel` line offered.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    pub addr: SocketAddr,
    pub payload_type: u8,
    pub ssrc: u32,
}

/// A member joined at a media server, holding its control connection.
pub struct Member {
    pub participant: u32,
    pub audio: Offer,
    pub video: Offer,
    pub line: Line,
    pings: u32,
}

impl Member {
    /// Joins `conference` as `name` with `mode=reflect` and `media=audio,video`, and reads
    /// until accepted with both `channel` offers.
    pub fn join(server: &MediaServer<'_>, conference: &str, name: &str) -> Member {
        let t = ticket(server.secret, conference, "acct", name, server.id);
        let line = Line::connect(server.client);
        Member::join_at(line, server.media, conference, "acct", name, &t)
    }

    /// Joins as [`Member::join`] does, but through a dispatcher: `join` there, then at the
    /// media server its `dispatch` names, with the ticket it hands out.
    pub fn dispatched(
        dispatcher: SocketAddr,
        conference: &str,
        account: &str,
        name: &str,
    ) -> Member {
        let mut d = Line::connect(dispatcher);
        d.send(&format!(
            "join\t{conference}\t{account}\t{name}\tmode=reflect\tmedia=audio,video"
        ));
        let (addr, t) = loop {
            match d.next_msg() {
                ServerMsg::Dispatch {
                    addr: Endpoint::Tcp(addr),
                    ticket,
                    ..
                } => break (addr, ticket),
                ServerMsg::Dispatch { addr, .. } => panic!("{name}: dispatched to {addr:?}"),
                ServerMsg::Reject { code, text } | ServerMsg::Error { code, text } => {
                    panic!("{name}: dispatcher refused: {code:?} {text}")
                }
                _ => {}
            }
        };
        // The control address stands in for the offers' address until they come.
        Member::join_at(Line::connect(addr), addr, conference, account, name, &t)
    }

    /// Sends the `join` with `ticket` on `line` and reads until accepted with both offers.
    fn join_at(
        mut line: Line,
        media: SocketAddr,
        conference: &str,
        account: &str,
        name: &str,
        ticket: &str,
    ) -> Member {
        line.send(&format!(
            "join\t{conference}\t{account}\t{name}\tmode=reflect\tticket={ticket}\tmedia=audio,video"
        ));
        let none = Offer {
            addr: media,
            payload_type: 0,
            ssrc: 0,
        };
        let mut m = Member {
            participant: 0,
            audio: none,
            video: none,
            line,
            pings: 0,
        };
        let (mut audio, mut video) = (false, false);
        while !(audio && video && m.participant != 0) {
            match m.line.next_msg() {
                ServerMsg::Accept { participant, .. } => m.participant = participant,
                ServerMsg::Channel {
                    kind,
                    addr,
                    payload_type,
                    ssrc,
                    ..
                } => {
                    let offer = Offer {
                        addr,
                        payload_type,
                        ssrc,
                    };
                    match kind {
                        MediaKind::Audio => (m.audio, audio) = (offer, true),
                        MediaKind::Video => (m.video, video) = (offer, true),
                    }
                }
                ServerMsg::Reject { code, text } | ServerMsg::Error { code, text } => {
                    panic!("{name}: join refused: {code:?} {text}")
                }
                _ => {}
            }
        }
        m
    }

    /// Sends one control line.
    pub fn send(&mut self, line: &str) {
        self.line.send(line);
    }

    /// `ping` round trip: every line sent before it has been handled (refusals panic), then
    /// a little time for the worker to apply the commands at its next tick. Returns the
    /// other lines that came meanwhile.
    pub fn sync(&mut self) -> Vec<ServerMsg> {
        self.pings += 1;
        let token = format!("p{}", self.pings);
        self.send(&format!("ping\t{token}"));
        let mut other = Vec::new();
        loop {
            match self.line.next_msg() {
                ServerMsg::Pong { token: Some(t) } if t == token => break,
                ServerMsg::Reject { code, text } | ServerMsg::Error { code, text } => {
                    panic!("line refused: {code:?} {text}")
                }
                m => other.push(m),
            }
        }
        std::thread::sleep(Duration::from_millis(40));
        other
    }

    /// `channel video ADDR SSRC` with the offered SSRC and extra `opts` (`\tkey=value`...).
    pub fn video_channel(&mut self, addr: SocketAddr, opts: &str) {
        let ssrc = self.video.ssrc;
        self.send(&format!("channel\tvideo\t{addr}\t{ssrc}{opts}"));
    }

    /// `channel audio ADDR SSRC` with the offered SSRC.
    pub fn audio_channel(&mut self, addr: SocketAddr) {
        let ssrc = self.audio.ssrc;
        self.send(&format!("channel\taudio\t{addr}\t{ssrc}"));
    }
}
