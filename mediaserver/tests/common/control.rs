//! A real media server started in-process on loopback, and control-protocol clients that
//! join it over TCP with tickets signed here (no dispatcher needed: the server and the test
//! share the ticket secret). Media goes over real UDP sockets; the SFU tests build on it.

use mediaserver::io::IoKind;
use mediaserver::{Running, Settings};
use protocol::ticket::{self, Claims};
use protocol::{MediaKind, ServerMsg};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Ticket secret shared by the server and the test, as with a dispatcher.
pub const SECRET: &[u8] = b"sfu-test-secret";
/// H.264 as the server offers it in `channel video` lines.
pub const H264_PT: u8 = 96;

/// A media server with one worker, on its own tokio runtime.
pub struct Server {
    pub running: Running,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    /// Starts a server; `last_n` as `--last-n`. Its dispatcher link points at a closed
    /// loopback port and just keeps retrying, which does not matter to clients.
    pub fn start(last_n: Option<usize>) -> Server {
        Server::start_with(|s| s.last_n = last_n)
    }

    /// Starts a server with `adjust` applied to its settings.
    pub fn start_with(adjust: impl FnOnce(&mut Settings)) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut s = Settings::new("ms-sfu".into(), SECRET.to_vec(), ([127, 0, 0, 1], 9).into());
        s.workers = 1;
        s.io = IoKind::Mmsg;
        s.gso = false;
        adjust(&mut s);
        let running = rt
            .block_on(mediaserver::start(s))
            .expect("media server starts");
        Server { running, _rt: rt }
    }
}

/// What a server `channel` line offered.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    pub addr: SocketAddr,
    pub payload_type: u8,
    pub ssrc: u32,
}

/// A joined client's control connection.
pub struct Client {
    pub participant: u32,
    pub audio: Offer,
    pub video: Offer,
    w: TcpStream,
    r: BufReader<TcpStream>,
    pings: u32,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Client {
    /// Joins `conference` as `name` with `media=audio,video` and reads up to both
    /// `channel` offers.
    pub fn join(server: &Server, conference: &str, name: &str) -> Client {
        let w = TcpStream::connect(server.running.client_addr).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        let claims = Claims {
            conference,
            account: "acct",
            user: name,
            server: &server.running.id,
        };
        let t = ticket::sign(SECRET, &claims, unix_now() + 300);
        let mut c = Client {
            participant: 0,
            audio: Offer {
                addr: server.running.media_addrs[0],
                payload_type: 0,
                ssrc: 0,
            },
            video: Offer {
                addr: server.running.media_addrs[0],
                payload_type: 0,
                ssrc: 0,
            },
            w,
            r,
            pings: 0,
        };
        c.send(&format!(
            "join\t{conference}\tacct\t{name}\tmode=reflect\tticket={t}\tmedia=audio,video\n"
        ));
        let (mut audio, mut video) = (false, false);
        while !(audio && video && c.participant != 0) {
            match c.next_msg() {
                ServerMsg::Accept { participant, .. } => c.participant = participant,
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
                        MediaKind::Audio => (c.audio, audio) = (offer, true),
                        MediaKind::Video => (c.video, video) = (offer, true),
                    }
                }
                ServerMsg::Reject { code, text } | ServerMsg::Error { code, text } => {
                    panic!("{name}: join refused: {code:?} {text}")
                }
                _ => {}
            }
        }
        c
    }

    /// Sends one control line (LF included).
    pub fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).expect("control write");
    }

    /// The next server line, parsed.
    pub fn next_msg(&mut self) -> ServerMsg {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("control read");
        assert!(n > 0, "server closed the control connection");
        let line = line.trim_end_matches(['\r', '\n']);
        ServerMsg::parse(line).unwrap_or_else(|e| panic!("bad server line {line:?}: {e}"))
    }

    /// `ping` round trip: every line sent before it has been handled (refusals panic), then
    /// a little time for the worker to apply the commands at its next tick. Returns the
    /// other lines that came meanwhile.
    pub fn sync(&mut self) -> Vec<ServerMsg> {
        self.pings += 1;
        let token = format!("p{}", self.pings);
        self.send(&format!("ping\t{token}\n"));
        let mut other = Vec::new();
        loop {
            match self.next_msg() {
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
        self.send(&format!("channel\tvideo\t{addr}\t{ssrc}{opts}\n"));
    }

    /// `channel audio ADDR SSRC` with the offered SSRC.
    pub fn audio_channel(&mut self, addr: SocketAddr) {
        let ssrc = self.audio.ssrc;
        self.send(&format!("channel\taudio\t{addr}\t{ssrc}\n"));
    }
}

/// A loopback UDP socket with a short read timeout.
pub fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    s
}

/// An H.264 RTP packet holding one whole frame (marker set): an IDR slice (NAL type 5,
/// a keyframe start) or a non-IDR reference slice (type 1). The payload carries `mark`
/// and the original sequence number, so the test can tell where a copy came from.
pub fn h264(ssrc: u32, seq: u16, ts: u32, key: bool, mark: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0x80, 0x80 | H264_PT];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.push(if key { 0x65 } else { 0x41 });
    v.push(mark);
    v.extend_from_slice(&seq.to_be_bytes());
    v.resize(len.max(16), 0x5a);
    v
}

/// `data` as an RTP packet, `None` for RTCP (RFC 5761 muxing) and garbage.
pub fn media_rtp(data: &[u8]) -> Option<mesh::RtpView<'_>> {
    if mesh::rtp::is_rtcp(data) {
        return None;
    }
    mesh::RtpView::parse(data).ok()
}

/// Whether an RTP payload starts an H.264 keyframe, as the reflector judges it.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    reflector::keyframe::is_keyframe_start(reflector::VideoCodec::H264, payload)
}

/// An Opus-sized audio packet with an RFC 6464 level (0 loudest, 127 silence) in a
/// one-byte header extension under the reflector's default id.
pub fn audio_with_level(ssrc: u32, seq: u16, level: u8) -> Vec<u8> {
    let mut v = vec![0x90, 111];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    let id = reflector::DEFAULT_AUDIO_LEVEL_ID;
    v.extend_from_slice(&[0xbe, 0xde, 0, 1, id << 4, level, 0, 0]);
    v.resize(100, 0x55);
    v
}

/// Deterministic xorshift64, for seeded loss.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
