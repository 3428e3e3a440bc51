//! ICE over TCP (RFC 6544), passive: for browsers behind firewalls that let no UDP out.
//! Each worker listens on TCP at its own UDP port's number (one port number for both), and
//! answers carry a `tcptype passive` host candidate. A connection carries the same STUN,
//! DTLS and SRTP datagrams as UDP, each framed with a 16-bit length (RFC 4571), so the
//! worker feeds each frame to its WebRTC port as a datagram from the connection's peer
//! address, and what that port sends to such an address goes out on the connection.
//!
//! The worker polls the listener and its connections once per turn (non-blocking), so a
//! TCP client waits up to one turn (at most [`POLL`]) more than a UDP one; the UDP path is
//! untouched. Buffers are per connection and reused; a connection whose peer does not read
//! fast enough has frames dropped past [`MAX_QUEUED`] bytes, as a full UDP socket would.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The longest a worker with TCP enabled waits for UDP before it polls TCP.
pub const POLL: Duration = Duration::from_millis(10);
/// Connections one worker keeps; more are refused (closed at once).
const MAX_CONNS: usize = 512;
/// Unsent bytes a connection may hold before frames to it are dropped.
const MAX_QUEUED: usize = 256 * 1024;
/// A connection that brings no frame for this long is closed (consent freshness gives up
/// on a silent browser after as long): an idle or abandoned one holds no slot for ever.
const IDLE: Duration = Duration::from_secs(30);
/// A frame is at most 65,535 bytes; a read buffer holds two.
const READ_BUF: usize = 2 * (2 + 65_535);

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: Box<[u8]>,
    rlen: usize,
    wbuf: Vec<u8>,
    dead: bool,
    /// When its last frame arrived (or it was accepted).
    last: Instant,
}

/// Counters of the TCP side, published with the worker's.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpCounters {
    pub accepted: u64,
    pub refused: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames not sent: the connection's queue was full or it was gone.
    pub dropped: u64,
}

/// A worker's passive ICE-TCP listener and its connections.
pub struct IceTcp {
    listener: TcpListener,
    /// By peer address: the worker asks per packet whether a destination is one.
    conns: HashMap<SocketAddr, Conn>,
    pub counters: TcpCounters,
}

impl IceTcp {
    /// Listens on `addr` (the worker's UDP address: same IP, same port number).
    pub fn bind(addr: SocketAddr) -> std::io::Result<IceTcp> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(IceTcp {
            listener,
            conns: HashMap::new(),
            counters: TcpCounters::default(),
        })
    }

    /// Whether `addr` is one of this listener's connections.
    pub fn is_peer(&self, addr: &SocketAddr) -> bool {
        self.conns.contains_key(addr)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Accepts new connections and reads what arrived: `frame(peer, datagram)` for each
    /// complete frame, `closed(peer)` for each connection that ended.
    pub fn poll(
        &mut self,
        now: Instant,
        mut frame: impl FnMut(SocketAddr, &[u8]),
        mut closed: impl FnMut(SocketAddr),
    ) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.conns.len() >= MAX_CONNS || stream.set_nonblocking(true).is_err() {
                        self.counters.refused += 1;
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.counters.accepted += 1;
                    self.conns.insert(
                        peer,
                        Conn {
                            stream,
                            peer,
                            rbuf: vec![0; READ_BUF].into_boxed_slice(),
                            rlen: 0,
                            wbuf: Vec::new(),
                            dead: false,
                            last: now,
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        for c in self.conns.values_mut() {
            loop {
                match c.stream.read(&mut c.rbuf[c.rlen..]) {
                    Ok(0) => {
                        c.dead = true;
                        break;
                    }
                    Ok(n) => c.rlen += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.dead = true;
                        break;
                    }
                }
                // Frames out of the buffer before reading more.
                let (counters, last) = (&mut self.counters, &mut c.last);
                let at = webrtc::ice::tcp_frames(&c.rbuf[..c.rlen], |f| {
                    *last = now;
                    counters.frames_in += 1;
                    frame(c.peer, f);
                });
                c.rbuf.copy_within(at..c.rlen, 0);
                c.rlen -= at;
            }
        }
        for c in self.conns.values_mut() {
            if now.saturating_duration_since(c.last) >= IDLE {
                c.dead = true;
            }
        }
        self.conns.retain(|_, c| {
            if c.dead {
                closed(c.peer);
            }
            !c.dead
        });
    }

    /// Queues `data` as one frame to connection `to`; false (and counted) when it cannot.
    pub fn send(&mut self, to: SocketAddr, data: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&to) else {
            self.counters.dropped += 1;
            return false;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            self.counters.dropped += 1;
            return false;
        };
        if c.wbuf.len() + 2 + data.len() > MAX_QUEUED {
            self.counters.dropped += 1;
            return false;
        }
        c.wbuf.extend_from_slice(&len.to_be_bytes());
        c.wbuf.extend_from_slice(data);
        self.counters.frames_out += 1;
        true
    }

    /// Writes what the connections can take now.
    pub fn flush(&mut self) {
        for c in self.conns.values_mut() {
            let mut sent = 0;
            while sent < c.wbuf.len() {
                match c.stream.write(&c.wbuf[sent..]) {
                    Ok(0) => {
                        c.dead = true;
                        break;
                    }
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.dead = true;
                        break;
                    }
                }
            }
            c.wbuf.drain(..sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_a_connection_both_ways() {
        let mut t = IceTcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = t.listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // Two frames, the second split across writes, and an empty one (skipped).
        client
            .write_all(&[0, 3, b'a', b'b', b'c', 0, 0, 0, 2, b'x'])
            .unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while got.is_empty() && std::time::Instant::now() < deadline {
            t.poll(Instant::now(), |p, f| got.push((p, f.to_vec())), |_| {});
        }
        assert_eq!(got.len(), 1);
        let peer = got[0].0;
        assert!(t.is_peer(&peer));
        client.write_all(b"y").unwrap();
        while got.len() < 2 && std::time::Instant::now() < deadline {
            t.poll(Instant::now(), |p, f| got.push((p, f.to_vec())), |_| {});
        }
        assert_eq!(got[1].1, b"xy");
        assert!(t.send(peer, b"hello"));
        t.flush();
        let mut buf = [0u8; 7];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"\0\x05hello");
        // Too long for a frame, or to nobody: refused and counted.
        assert!(!t.send(peer, &vec![0; 70_000]));
        assert!(!t.send("127.0.0.1:1".parse().unwrap(), b"x"));
        assert_eq!(t.counters.dropped, 2);
        drop(client);
        let mut closed = Vec::new();
        while closed.is_empty() && std::time::Instant::now() < deadline {
            t.poll(Instant::now(), |_, _| {}, |p| closed.push(p));
        }
        assert_eq!(closed, vec![peer]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_silent_connection_is_closed() {
        let mut t = IceTcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = t.listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(2);
        while t.is_empty() && Instant::now() < deadline {
            t.poll(t0, |_, _| {}, |_| {});
        }
        assert_eq!(t.len(), 1);
        let mut closed = 0;
        t.poll(t0 + IDLE, |_, _| {}, |_| closed += 1);
        assert_eq!((closed, t.len()), (1, 0));
    }
}
