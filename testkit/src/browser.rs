//! A Rust WebRTC peer that plays a browser over a real UDP socket, for tests that need a
//! keyed session without Chromium: a blocking socket loop around `webrtc::client` (its
//! offer, the ICE check, the DTLS handshake as client and the SRTP keys).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use webrtc::client::Peer;
use webrtc::srtp::Context;

/// One browser: a UDP socket and its peer identity.
pub struct Browser {
    pub socket: UdpSocket,
    pub ufrag: String,
    pub pwd: String,
    /// SHA-256 of the certificate, as the offer's `a=fingerprint` carries it.
    pub fingerprint: Vec<u8>,
    peer: Peer,
}

/// The browser's SRTP contexts once DTLS is done.
pub struct Keys {
    /// Browser -> server.
    pub outbound: Context,
    /// Server -> browser.
    pub inbound: Context,
}

impl Browser {
    /// A browser on a fresh 127.0.0.1 socket (200 ms read timeout) with ICE user `ufrag`.
    pub fn new(ufrag: &str) -> Browser {
        let peer = Peer::new(ufrag).expect("a peer identity");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        Browser {
            socket,
            ufrag: peer.ufrag.clone(),
            pwd: peer.pwd.clone(),
            fingerprint: peer.fingerprint.clone(),
            peer,
        }
    }

    /// The lines of an offer with one Opus audio section sending `ssrc` (no CRLFs).
    pub fn offer(&self, ssrc: u32) -> Vec<String> {
        self.peer.offer(ssrc)
    }

    /// A nominating binding request to a server whose answer had `ufrag` and `pwd`.
    pub fn check_request(&self, ufrag: &str, pwd: &str) -> Vec<u8> {
        self.peer
            .check_request(ufrag, pwd)
            .expect("a binding request")
    }

    /// Connects to `server`: the ICE check (answered with a binding success), then the
    /// DTLS handshake with AES-GCM. `pump` runs between steps, for a server that the test
    /// thread itself turns; a server in another process needs none.
    pub fn connect(
        &self,
        server: SocketAddr,
        ufrag: &str,
        pwd: &str,
        mut pump: impl FnMut(),
    ) -> Keys {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        self.socket
            .send_to(&self.check_request(ufrag, pwd), server)
            .expect("send check");
        loop {
            assert!(Instant::now() < deadline, "no binding success");
            pump();
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                if webrtc::ice::is_success(&buf[..n]) {
                    break;
                }
            }
        }
        let local = self.socket.local_addr().expect("local address");
        let mut hs = self
            .peer
            .handshake(Instant::now(), local, server)
            .expect("dtls connect");
        while !hs.is_done() {
            assert!(Instant::now() < deadline, "DTLS handshake did not finish");
            while let Some(m) = hs.poll_transmit() {
                self.socket.send_to(&m, server).expect("send dtls");
            }
            pump();
            match self.socket.recv_from(&mut buf) {
                // RFC 7983: DTLS records start with 20-63.
                Ok((n, _)) if (20..=63).contains(&buf[0]) => {
                    hs.handle(Instant::now(), &buf[..n]).expect("dtls read");
                }
                Ok(_) => {}
                Err(_) => hs.handle_timeout(Instant::now()),
            }
        }
        let k = hs.keying().expect("keying material");
        Keys {
            outbound: k.outbound(),
            inbound: k.inbound(),
        }
    }
}
