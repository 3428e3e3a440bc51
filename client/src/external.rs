//! `confclient --external-media DIR`: the control half of a member whose media a plain-RTP
//! tool (ffmpeg, GStreamer, VLC) sends and receives.
//!
//! Such tools cannot speak the control protocol, and they send from a port nobody knows in
//! advance. So this client joins, declares each channel as `latch:PORT` with the external
//! sender's SSRC (the media server latches the source by the control connection's IP and that
//! SSRC, and sends to PORT on that IP), writes `DIR/receive.sdp` for the receiving tool and
//! `DIR/send.txt` for the sending one, and stays joined until it is told to leave.
//!
//! Ports: audio is received at `recv_port`, video at `recv_port + 2`, so an SDP receiver can
//! bind RTP and RTCP (P, P+1, P+2, P+3). SSRCs: audio `ssrc`, video `video_ssrc` or
//! `ssrc + 1`; without `ssrc` the ones from the server's `channel` lines.

use crate::control::{Control, Event, Step, Summary};
use crate::flow::ChannelOffer;
use crate::session::SessionConfig;
use crate::ClientError;
use protocol::codec::RtpCodec;
use protocol::{ChannelAddr, MediaKind};
use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The `--external-media` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalConfig {
    /// Where `receive.sdp` and `send.txt` go.
    pub dir: PathBuf,
    /// Audio is received here, video at `recv_port + 2`.
    pub recv_port: u16,
    /// The external sender's audio SSRC; the server's choice when `None`.
    pub ssrc: Option<u32>,
    /// Also open a video channel (H.264 packetization-mode 1, or VP8 with `vcodec`).
    pub video: bool,
    /// The external sender's video SSRC; `ssrc + 1` when `None` and `ssrc` is given.
    pub video_ssrc: Option<u32>,
    /// The video codec asked for (`vcodec=`); the server's default (H.264) when `None`.
    pub vcodec: Option<String>,
    /// One stream: the mix and one composite (`stream=single`).
    pub single_stream: bool,
}

impl ExternalConfig {
    /// The port the conference sends `kind` to.
    pub fn recv_port_of(&self, kind: MediaKind) -> u16 {
        match kind {
            MediaKind::Audio => self.recv_port,
            MediaKind::Video => self.recv_port + 2,
        }
    }

    /// The SSRC the external sender uses for `kind`, given the server's offer.
    fn ssrc_of(&self, kind: MediaKind, offered: u32) -> u32 {
        match kind {
            MediaKind::Audio => self.ssrc.unwrap_or(offered),
            MediaKind::Video => self
                .video_ssrc
                .or(self.ssrc.map(|s| s.wrapping_add(1)))
                .unwrap_or(offered),
        }
    }

    fn kinds(&self) -> &'static [MediaKind] {
        if self.video {
            &[MediaKind::Audio, MediaKind::Video]
        } else {
            &[MediaKind::Audio]
        }
    }
}

/// One channel as the server offered it and we declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub kind: MediaKind,
    /// Where the media server receives it.
    pub server: SocketAddr,
    pub payload_type: u8,
    pub codec: String,
    /// The SSRC the external sender must use.
    pub ssrc: u32,
    /// Where the conference sends it to.
    pub recv: SocketAddr,
}

/// The RTP map and format parameters of a codec as the server names it; one the table
/// does not know gets the clock of its kind's default codec.
fn rtpmap(kind: MediaKind, codec: &str) -> (String, Option<&'static str>) {
    match RtpCodec::by_name(codec) {
        Some(c) => (c.rtpmap(), c.fmtp),
        None => (
            format!(
                "{}/{}",
                codec.to_ascii_lowercase(),
                RtpCodec::default_for(kind).clock_rate
            ),
            None,
        ),
    }
}

fn ip_kind(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

/// `receive.sdp`: what the conference sends to the receive ports, for ffmpeg's SDP demuxer,
/// GStreamer's `sdpdemux` or VLC.
pub fn receive_sdp(conference: &str, channels: &[Channel]) -> String {
    let ip = channels
        .first()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.recv.ip());
    let mut s = format!(
        "v=0\r\no=- 0 0 IN {k} {ip}\r\ns=conference {conference}\r\nc=IN {k} {ip}\r\nt=0 0\r\n",
        k = ip_kind(ip)
    );
    for c in channels {
        let (map, fmtp) = rtpmap(c.kind, &c.codec);
        let pt = c.payload_type;
        let _ = write!(
            s,
            "m={} {} RTP/AVP {pt}\r\na=rtpmap:{pt} {map}\r\n",
            c.kind.as_str(),
            c.recv.port()
        );
        if let Some(f) = fmtp {
            let _ = write!(s, "a=fmtp:{pt} {f}\r\n");
        }
        s += "a=recvonly\r\n";
    }
    s
}

/// `send.txt`: `key=value` lines (easy to read from a shell: `grep ^audio_target=`), then
/// an example ffmpeg command line.
pub fn send_txt(conference: &str, channels: &[Channel]) -> String {
    let mut s = format!(
        "# Send plain RTP into conference {conference} with exactly these payload types and\n\
         # SSRCs, from this host. RTCP may go to the same port (rtcpport=).\n"
    );
    for c in channels {
        let k = c.kind.as_str();
        let (map, fmtp) = rtpmap(c.kind, &c.codec);
        let _ = writeln!(
            s,
            "{k}_target=rtp://{a}?pkt_size=1200&rtcpport={p}",
            a = c.server,
            p = c.server.port()
        );
        let _ = writeln!(s, "{k}_payload_type={}", c.payload_type);
        let _ = writeln!(s, "{k}_ssrc={}", c.ssrc);
        let _ = writeln!(
            s,
            "{k}_codec={map}{}",
            fmtp.map(|f| format!(" {f}")).unwrap_or_default()
        );
        let _ = writeln!(s, "{k}_receive_port={}", c.recv.port());
    }
    s += "# For example, with ffmpeg:\n";
    for c in channels {
        let target = format!(
            "rtp://{}?pkt_size=1200&rtcpport={}",
            c.server,
            c.server.port()
        );
        let (pt, ssrc) = (c.payload_type, c.ssrc);
        let cmd = match (c.kind, c.codec.to_ascii_lowercase().as_str()) {
            (MediaKind::Audio, "opus") => format!(
                "ffmpeg -re -f lavfi -i sine=frequency=440:sample_rate=48000 -ac 2 -c:a libopus \
                 -b:a 64k -frame_duration 20 -application audio -payload_type {pt} -ssrc {ssrc} \
                 -f rtp '{target}'"
            ),
            (MediaKind::Video, "h264") => format!(
                "ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=25 -c:v libx264 -profile:v \
                 baseline -preset ultrafast -tune zerolatency -pix_fmt yuv420p -g 25 -bf 0 \
                 -flags +global_header -bsf:v dump_extra=freq=keyframe -payload_type {pt} \
                 -ssrc {ssrc} -f rtp '{target}'"
            ),
            (MediaKind::Video, "vp8") => format!(
                "ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=25 -c:v libvpx -deadline \
                 realtime -g 25 -payload_type {pt} -ssrc {ssrc} -f rtp '{target}'"
            ),
            _ => continue,
        };
        let _ = writeln!(s, "#   {cmd}");
    }
    s += "# Receive with: ffmpeg -protocol_whitelist file,udp,rtp -i receive.sdp ...\n";
    s
}

/// Writes `name` in `dir` whole: a reader never sees half a file.
fn write_atomic(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(name))
}

struct State<'a> {
    ext: &'a ExternalConfig,
    channels: Vec<Channel>,
}

/// Runs an external-media session until `shutdown` completes (then says `endsession`) or
/// something fails. Control events, and `left` at the end, go to `events`. If its media
/// server dies it fails over like any session and rewrites both files for the new server.
pub async fn run(
    cfg: &SessionConfig,
    ext: &ExternalConfig,
    shutdown: impl Future<Output = ()>,
    events: &mut (dyn FnMut(&Event) + Send),
) -> Result<Summary, ClientError> {
    std::fs::create_dir_all(&ext.dir)?;
    let mut flow = cfg.flow_config();
    flow.opts.media = ext.kinds().to_vec();
    if let Some(v) = &ext.vcodec {
        flow.opts.extra.push(("vcodec".into(), v.clone()));
    }
    if ext.single_stream {
        flow.opts.extra.push(("stream".into(), "single".into()));
    }
    flow.opts.app = Some("confclient-external".into());
    let mut ctrl = Control::new(flow).with_tls(cfg.client_tls()?);
    let mut st = State {
        ext,
        channels: Vec::new(),
    };
    let outcome = async {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    ctrl.finish().await;
                    return Ok::<(), ClientError>(());
                }
                step = ctrl.next() => match step {
                    Step::Event(e) => events(&e),
                    Step::ChannelOffered(o) => st.on_channel(&mut ctrl, o)?,
                    // The next server assigns new channels; the files are rewritten then.
                    Step::PauseMedia => st.channels.clear(),
                    Step::Finished(r) => return r,
                }
            }
        }
    }
    .await;
    outcome?;
    let summary = Summary {
        conference: ctrl.conference().to_owned(),
        ..Summary::default()
    };
    events(&Event::Left(summary.clone()));
    Ok(summary)
}

impl State<'_> {
    /// Declares an offered channel as `latch:PORT` with the external sender's SSRC, and
    /// writes the files once every channel is there.
    fn on_channel(&mut self, ctrl: &mut Control, offer: ChannelOffer) -> Result<(), ClientError> {
        let ChannelOffer {
            kind,
            addr,
            payload_type,
            codec,
            ssrc,
        } = offer;
        if !self.ext.kinds().contains(&kind) {
            tracing::info!(kind = kind.as_str(), "ignoring channel we did not ask for");
            return Ok(());
        }
        let ip = ctrl.local_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let ch = Channel {
            kind,
            server: addr,
            payload_type,
            codec,
            ssrc: self.ext.ssrc_of(kind, ssrc),
            recv: SocketAddr::new(ip, self.ext.recv_port_of(kind)),
        };
        ctrl.declare_channel(
            kind,
            ChannelAddr::LatchRecv(ch.recv.port()),
            ch.ssrc,
            Default::default(),
        );
        tracing::info!(kind = kind.as_str(), recv = %ch.recv, ssrc = ch.ssrc, "external channel declared");
        self.channels.retain(|c| c.kind != kind);
        self.channels.push(ch);
        self.channels.sort_by_key(|c| c.kind == MediaKind::Video);
        if self.ext.kinds().len() == self.channels.len() {
            self.write_files(ctrl.conference())?;
        }
        Ok(())
    }

    /// `receive.sdp` first: a script that waits for `send.txt` finds both.
    fn write_files(&self, conference: &str) -> Result<(), ClientError> {
        let dir = &self.ext.dir;
        write_atomic(dir, "receive.sdp", &receive_sdp(conference, &self.channels))?;
        write_atomic(dir, "send.txt", &send_txt(conference, &self.channels))?;
        tracing::info!(dir = %dir.display(), "wrote receive.sdp and send.txt");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> Vec<Channel> {
        vec![
            Channel {
                kind: MediaKind::Audio,
                server: "127.0.0.1:40000".parse().unwrap(),
                payload_type: 111,
                codec: "opus".into(),
                ssrc: 1111,
                recv: "127.0.0.1:5004".parse().unwrap(),
            },
            Channel {
                kind: MediaKind::Video,
                server: "127.0.0.1:40000".parse().unwrap(),
                payload_type: 96,
                codec: "h264".into(),
                ssrc: 1112,
                recv: "127.0.0.1:5006".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn sdp_describes_both_receive_ports() {
        let sdp = receive_sdp("xyz", &channels());
        for line in [
            "c=IN IP4 127.0.0.1",
            "m=audio 5004 RTP/AVP 111",
            "a=rtpmap:111 opus/48000/2",
            "m=video 5006 RTP/AVP 96",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 packetization-mode=1",
        ] {
            assert!(sdp.lines().any(|l| l == line), "{line} missing:\n{sdp}");
        }
        assert!(sdp.find("m=audio") < sdp.find("m=video"));
    }

    #[test]
    fn send_txt_names_target_payload_type_and_ssrc() {
        let txt = send_txt("xyz", &channels());
        for line in [
            "audio_target=rtp://127.0.0.1:40000?pkt_size=1200&rtcpport=40000",
            "audio_payload_type=111",
            "audio_ssrc=1111",
            "video_payload_type=96",
            "video_ssrc=1112",
            "video_codec=H264/90000 packetization-mode=1",
        ] {
            assert!(txt.lines().any(|l| l == line), "{line} missing:\n{txt}");
        }
        assert!(txt.contains("-payload_type 111 -ssrc 1111"), "{txt}");
        assert!(txt.contains("-payload_type 96 -ssrc 1112"), "{txt}");
    }

    #[test]
    fn ssrcs_and_ports_by_kind() {
        let mut ext = ExternalConfig {
            dir: PathBuf::from("."),
            recv_port: 5004,
            ssrc: Some(1111),
            video: true,
            video_ssrc: None,
            vcodec: None,
            single_stream: false,
        };
        assert_eq!(ext.recv_port_of(MediaKind::Video), 5006);
        assert_eq!(ext.ssrc_of(MediaKind::Audio, 7), 1111);
        assert_eq!(ext.ssrc_of(MediaKind::Video, 8), 1112);
        ext.video_ssrc = Some(99);
        assert_eq!(ext.ssrc_of(MediaKind::Video, 8), 99);
        ext.ssrc = None;
        ext.video_ssrc = None;
        assert_eq!(ext.ssrc_of(MediaKind::Audio, 7), 7);
        assert_eq!(ext.ssrc_of(MediaKind::Video, 8), 8);
        assert_eq!(ext.kinds(), [MediaKind::Audio, MediaKind::Video]);
    }
}
