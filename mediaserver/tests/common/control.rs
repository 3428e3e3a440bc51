//! A real media server started in-process on loopback, joined over TCP by testkit's
//! control client with tickets signed here (no dispatcher needed: the server and the test
//! share the ticket secret). Media goes over real UDP sockets; the SFU tests build on it.

use mediaserver::io::IoKind;
use mediaserver::{Running, Settings};
pub use testkit::harness::control::{MediaServer, Member};
// Not every test that shares this module uses them.
#[allow(unused_imports)]
pub use testkit::harness::{stop_flag, udp, Stop};
use testkit::packet::{h264, Rtp};

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

impl Server {
    /// How testkit's control client reaches this server.
    pub fn endpoint(&self) -> MediaServer<'_> {
        MediaServer {
            client: self.running.client_addr,
            id: &self.running.id,
            secret: SECRET,
            media: self.running.media_addrs[0],
        }
    }

    /// Joins `conference` as `name` with `media=audio,video`, with a ticket signed here, and
    /// reads both `channel` offers.
    pub fn join(&self, conference: &str, name: &str) -> Member {
        Member::join(&self.endpoint(), conference, name)
    }
}

/// An H.264 RTP packet holding one whole frame (marker set): an IDR slice (NAL type 5,
/// a keyframe start) or a non-IDR reference slice (type 1). The payload carries `mark`
/// and the original sequence number, so the test can tell where a copy came from.
pub fn h264(ssrc: u32, seq: u16, ts: u32, key: bool, mark: u8, len: usize) -> Vec<u8> {
    h264::marked(H264_PT, ssrc, seq, ts, key, mark, len)
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
    Rtp::new(ssrc)
        .pt(111)
        .seq(seq)
        .ts(u32::from(seq) * 960)
        .audio_level(reflector::DEFAULT_AUDIO_LEVEL_ID, level)
        .size(100)
        .fill(0x55)
        .build()
}
