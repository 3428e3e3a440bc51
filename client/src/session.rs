//! One client session: the join flow ([`crate::flow`], driven by [`Control`]), then
//! media until told to leave.
//!
//! Everything runs on one task: the control connection, the UDP socket, the 20 ms send
//! clock, the recorder tick, the receiver reports and the script (scheduled chat and
//! commands) are branches of one `select!`. When the flow fails over to another media
//! server, the session keeps its local RTP socket and points it at the new server's
//! channel.
//!
//! Each audio packet carries its frame's RFC 6464 level, from which the media server's
//! speaking, level and dominant-speaker indicators come in a forwarding conference; once a
//! second the client reports what it receives (RTCP RR), from which the server's quality
//! light for it comes.

use crate::clicks::{quantile, ClickTrain};
use crate::control::{Control, Event, Step, Summary};
use crate::flow::FlowConfig;
use crate::packet::{audio_level, classify, Datagram, Reports, RtpSender};
use crate::recorder::Recorder;
use crate::script::{self, Script};
use crate::tone::Sine;
use crate::ClientError;
use codecs::g711::{Law, TelephonyEncoder};
use codecs::opus::{Encoder, FRAME_SAMPLES, SAMPLE_RATE};
use protocol::{ChannelAddr, ClientMsg, JoinOpts, MediaKind, Mode, ServerMsg};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};

pub use crate::flow::{backoff, FAILOVER_FOR};

/// One frame of audio: 20 ms.
pub const FRAME: Duration = Duration::from_millis(20);
/// Level of the test tone: about -12 dBFS leaves headroom when streams are summed.
pub const TONE_DBFS: f64 = -12.0;
/// A sender further behind its clock than this skips frames instead of bursting them.
const MAX_BURST: Duration = Duration::from_millis(200);
/// Receiver reports go out this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a session needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Dispatcher (or any server speaking the control protocol) as `host:port`.
    pub dispatcher: String,
    pub conference: String,
    pub account: String,
    pub name: String,
    pub mode: Mode,
    /// Send a sine at this frequency; Opus-encoded silence when `None`.
    pub tone: Option<f64>,
    /// Record the received mix to this WAV file.
    pub record: Option<PathBuf>,
    /// Push-to-talk intervals in seconds from `accept`; `None` talks all the time.
    pub talk: Option<Vec<(f64, f64)>>,
    /// Impairment of our own sending: random extra delay of 0..=this many ms per packet.
    pub jitter_ms: u32,
    /// Impairment of our own sending: percent of packets dropped at random.
    pub loss_pct: f64,
    /// Speak G.711 of this law (a telephony endpoint, `mode=mix` only) instead of Opus.
    pub g711: Option<Law>,
    /// The user's domain (`join ... domain=`), which the dispatcher maps to a tenant pool.
    pub domain: Option<String>,
    /// The account's moderator PIN (`join ... pin=`): the dispatcher makes us a moderator.
    pub moderator_pin: Option<String>,
    /// Chat and control lines to send, at seconds from joining (`--say`, `--command`).
    pub script: Vec<(f64, script::Action)>,
    /// The tone's level in dBFS from each time on (`--volume`); [`TONE_DBFS`] before.
    pub volume: Vec<(f64, f64)>,
    /// Send the latency bench's click train instead of the tone (`--clicks`).
    pub clicks: bool,
    /// Find the bench's clicks in what we play out and report their latency.
    pub detect_clicks: bool,
    /// `--ca`: the CA file TLS servers are verified with; `None`: the system's roots.
    pub ca: Option<PathBuf>,
}

impl SessionConfig {
    /// The trust of TLS links (`--ca`), read once per session.
    pub fn client_tls(&self) -> Result<Option<::control::ClientTls>, ClientError> {
        self.ca
            .as_deref()
            .map(::control::ClientTls::from_ca_file)
            .transpose()
            .map_err(|e| ClientError::Config(format!("--ca: {e}")))
    }

    /// The codec name as `join` and `channel` spell it.
    pub fn codec_name(&self) -> &'static str {
        self.g711.map_or("opus", Law::name)
    }

    /// The `join` line's options (the flow adds the ticket).
    pub fn join_opts(&self) -> JoinOpts {
        JoinOpts {
            ticket: None,
            mode: self.mode,
            media: vec![MediaKind::Audio],
            codec: Some(self.codec_name().into()),
            app: Some("confclient".into()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            os: Some(std::env::consts::OS.into()),
            domain: self.domain.clone(),
            extra: self
                .moderator_pin
                .iter()
                .map(|p| ("pin".to_owned(), p.clone()))
                .collect(),
        }
    }

    /// The join flow of this session.
    pub fn flow_config(&self) -> FlowConfig {
        let mut f = FlowConfig::new(
            &self.dispatcher,
            &self.conference,
            &self.account,
            &self.name,
        );
        f.opts = self.join_opts();
        f.seed = rand::random();
        f
    }
}

/// The audio channel once the media server assigned it.
struct Media {
    socket: UdpSocket,
    server: SocketAddr,
    payload_type: u8,
    tx: RtpSender,
    encoder: MediaEncoder,
    /// RTP timestamp ticks per 20 ms frame (960 Opus, 160 G.711).
    frame_ts: u32,
    tone: Option<Sine>,
    /// The tone's level over time (`--volume`).
    volume: Vec<(f64, f64)>,
    /// `--clicks`: the latency bench's click train instead of the tone.
    clicks: Option<ClickTrain>,
    pcm: Vec<i16>,
    next_send: Instant,
    /// Origin of the talk schedule (our `accept`).
    origin: Instant,
    talk: Option<Vec<(f64, f64)>>,
    talking: bool,
    jitter_ms: u32,
    loss_pct: f64,
    /// Impaired packets waiting for their send time.
    delayed: Vec<(Instant, Vec<u8>)>,
    /// False between leaving a server and the next server's `channel`: nothing is sent.
    live: bool,
}

impl Media {
    /// Binds the media socket on the control connection's local IP (same family as the
    /// server), so the server sees RTP from the host it is talking to.
    async fn open(
        local_ip: IpAddr,
        server: SocketAddr,
        payload_type: u8,
        ssrc: u32,
        cfg: &SessionConfig,
        origin: Instant,
    ) -> Result<Self, ClientError> {
        let tone = cfg.tone;
        let ip = match (local_ip, server) {
            (IpAddr::V4(_), SocketAddr::V4(_)) | (IpAddr::V6(_), SocketAddr::V6(_)) => local_ip,
            (_, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (_, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        Ok(Media {
            socket,
            server,
            payload_type,
            tx: RtpSender::new(payload_type, ssrc),
            encoder: match cfg.g711 {
                None => {
                    let mut e = Encoder::new()?;
                    if cfg.loss_pct > 0.0 {
                        // A lossy sender adds in-band FEC, so the next packet can rebuild
                        // a lost one at the receiver.
                        e.set_fec(cfg.loss_pct.ceil() as i32)?;
                    }
                    MediaEncoder::Opus(e)
                }
                Some(l) => MediaEncoder::G711(Box::new(TelephonyEncoder::new(l)?)),
            },
            frame_ts: if cfg.g711.is_some() {
                (FRAME_SAMPLES / 6) as u32
            } else {
                FRAME_SAMPLES as u32
            },
            tone: tone.map(|hz| Sine::new(hz, TONE_DBFS, SAMPLE_RATE)),
            volume: cfg.volume.clone(),
            clicks: cfg.clicks.then(ClickTrain::new),
            pcm: vec![0; FRAME_SAMPLES],
            next_send: Instant::now(),
            origin,
            talk: cfg.talk.clone(),
            talking: false,
            jitter_ms: cfg.jitter_ms,
            loss_pct: cfg.loss_pct,
            delayed: Vec::new(),
            live: true,
        })
    }

    /// Stops sending: the server we sent to is gone or being left.
    fn pause(&mut self) {
        self.live = false;
        self.delayed.clear();
    }

    /// Points the same socket at a new server's channel and resumes sending, with the
    /// time spent away skipped (timestamps and tone phase stay on the wall clock).
    fn retarget(&mut self, server: SocketAddr, payload_type: u8, ssrc: u32) {
        let away = Instant::now().saturating_duration_since(self.next_send);
        let frames = (away.as_micros() / FRAME.as_micros()) as u32;
        if let Some(t) = self.tone.as_mut() {
            t.skip(u64::from(frames) * FRAME_SAMPLES as u64);
        }
        self.next_send += FRAME * frames;
        self.server = server;
        self.payload_type = payload_type;
        // A new server assigns a new SSRC: a new stream, with its own numbering.
        self.tx = RtpSender::new(payload_type, ssrc);
        self.live = true;
    }

    /// Whether the schedule says we talk at `at` (always without a schedule).
    fn wants_talk(&self, at: Instant) -> bool {
        match &self.talk {
            None => true,
            Some(s) => {
                let t = at.saturating_duration_since(self.origin).as_secs_f64();
                s.iter().any(|&(a, b)| a <= t && t < b)
            }
        }
    }

    /// When the next delayed packet is due.
    fn next_delayed(&self) -> Option<Instant> {
        self.delayed.iter().map(|d| d.0).min()
    }

    /// Sends every delayed packet that is due.
    async fn flush_delayed(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, bytes) = self.delayed.swap_remove(i);
                if let Err(e) = self.socket.send_to(&bytes, self.server).await {
                    tracing::debug!("rtp send failed: {e}");
                }
            } else {
                i += 1;
            }
        }
    }

    /// Sends the frame due at `next_send`; returns whether a packet went out.
    async fn send_frame(&mut self) -> Result<bool, ClientError> {
        let late = Instant::now().saturating_duration_since(self.next_send);
        if late > MAX_BURST {
            // Stalled (suspended, overloaded): skip the lost time, keeping timestamps and
            // tone phase on the wall clock rather than bursting old frames.
            let frames = (late.as_micros() / FRAME.as_micros()) as u32;
            tracing::warn!(frames, "sender stalled, skipping frames");
            self.tx.advance_time(frames * self.frame_ts);
            if let Some(t) = self.tone.as_mut() {
                t.skip(u64::from(frames) * FRAME_SAMPLES as u64);
            }
            self.next_send += FRAME * frames;
        }
        if self.talk.is_some() && !self.talking {
            // Push to talk, key up: nothing goes out, but media time runs on.
            self.tx.advance_time(self.frame_ts);
            if let Some(t) = self.tone.as_mut() {
                t.skip(FRAME_SAMPLES as u64);
            }
            self.next_send += FRAME;
            return Ok(false);
        }
        match (self.clicks.as_mut(), self.tone.as_mut()) {
            (Some(c), _) => c.fill(&mut self.pcm, unix_ns()),
            (None, Some(t)) => {
                if !self.volume.is_empty() {
                    let at = Instant::now().saturating_duration_since(self.origin);
                    t.set_level(script::volume_at(&self.volume, at.as_secs_f64(), TONE_DBFS));
                }
                t.fill(&mut self.pcm)
            }
            (None, None) => self.pcm.fill(0),
        }
        let level = audio_level(&self.pcm);
        let packet = self.encoder.encode(&self.pcm)?;
        let bytes = self
            .tx
            .packet_with_level(packet, self.frame_ts, Some(level));
        self.next_send += FRAME;
        if self.loss_pct > 0.0 && rand::random::<f64>() * 100.0 < self.loss_pct {
            return Ok(true);
        }
        if self.jitter_ms > 0 {
            let delay = rand::random::<u32>() % (self.jitter_ms + 1);
            self.delayed.push((
                Instant::now() + Duration::from_millis(u64::from(delay)),
                bytes,
            ));
            return Ok(true);
        }
        match self.socket.send_to(&bytes, self.server).await {
            Ok(_) => Ok(true),
            Err(e) => {
                // UDP send errors (ICMP unreachable, buffer full) are transient for RTP.
                tracing::debug!("rtp send failed: {e}");
                Ok(false)
            }
        }
    }
}

/// What we send with: Opus, or G.711 downsampled from the 48 kHz tone.
enum MediaEncoder {
    Opus(Encoder),
    G711(Box<TelephonyEncoder>),
}

impl MediaEncoder {
    fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], codecs::CodecError> {
        match self {
            MediaEncoder::Opus(e) => e.encode(pcm),
            MediaEncoder::G711(e) => e.encode(pcm),
        }
    }
}

/// Now, in nanoseconds since the Unix epoch (the latency bench's common clock).
fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Everything that changes while a session runs.
struct State<'a> {
    cfg: &'a SessionConfig,
    media: Option<Media>,
    recorder: Recorder,
    sent: u64,
    malformed: u64,
    /// When we were first accepted: the origin of the talk schedule and the script.
    joined_at: Option<Instant>,
    /// Accepted by a media server (the recorder's timeline runs).
    joined: bool,
    /// Who is in the conference (id -> name), and who we are, for the script's targets.
    roster: BTreeMap<u32, String>,
    me: Option<u32>,
    script: Script,
    reports: Reports,
}

/// Runs a session until `shutdown` completes (then leaves cleanly and returns the summary)
/// or something fails. Every reportable event, `left` included, goes to `events`.
/// The WAV, if any, is finalized on every path.
pub async fn run(
    cfg: &SessionConfig,
    shutdown: impl Future<Output = ()>,
    events: &mut (dyn FnMut(&Event) + Send),
) -> Result<Summary, ClientError> {
    // Open the recording before connecting: a bad path should fail before we join.
    let recorder = Recorder::with_clicks(
        cfg.record.as_deref(),
        std::time::Instant::now(),
        cfg.detect_clicks,
    )?;
    let mut ctrl = Control::new(cfg.flow_config()).with_tls(cfg.client_tls()?);
    let mut st = State {
        cfg,
        media: None,
        recorder,
        sent: 0,
        malformed: 0,
        joined_at: None,
        joined: false,
        roster: BTreeMap::new(),
        me: None,
        script: Script::new(cfg.script.clone()),
        reports: Reports::default(),
    };
    let outcome = st.run(&mut ctrl, shutdown, events).await;
    if cfg.detect_clicks {
        events(&clicks_summary(
            st.recorder.click_latencies(),
            st.recorder.delay_ms(),
        ));
    }
    let State {
        recorder,
        sent,
        malformed,
        ..
    } = st;
    let stats = recorder.finish(std::time::Instant::now());
    outcome?;
    let stats = stats?;
    let summary = Summary {
        conference: ctrl.conference().to_owned(),
        sent,
        received: stats.packets,
        streams: stats.streams,
        lost: stats.lost,
        malformed: malformed + stats.decode_errors + ctrl.bad_lines,
        late: stats.late,
        duplicates: stats.duplicates,
    };
    events(&Event::Left(summary.clone()));
    Ok(summary)
}

impl State<'_> {
    async fn run(
        &mut self,
        ctrl: &mut Control,
        shutdown: impl Future<Output = ()>,
        events: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<(), ClientError> {
        tokio::pin!(shutdown);
        let mut mix_tick = tokio::time::interval(FRAME);
        mix_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut report_tick = tokio::time::interval(REPORT_EVERY);
        report_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut buf = vec![0u8; 65_536];
        loop {
            let script_at = match (self.joined_at, self.script.next_at()) {
                (Some(origin), Some(secs)) => Some(origin + Duration::from_secs_f64(secs)),
                _ => None,
            };
            let next_send =
                self.media
                    .as_ref()
                    .filter(|m| m.live)
                    .map(|m| match m.next_delayed() {
                        Some(d) => d.min(m.next_send),
                        None => m.next_send,
                    });
            tokio::select! {
                () = &mut shutdown => {
                    ctrl.finish().await;
                    return Ok(());
                }
                step = ctrl.next() => match step {
                    Step::Event(e) => {
                        match &e {
                            Event::Server(ServerMsg::Accept { participant, .. }) => {
                                self.recorder.restart(std::time::Instant::now());
                                self.joined_at.get_or_insert_with(Instant::now);
                                self.joined = true;
                                // A new server (failover, move) sends its roster anew.
                                self.roster.clear();
                                self.me = Some(*participant);
                            }
                            Event::Server(ServerMsg::AddUser { participant, name }) => {
                                self.roster.insert(*participant, name.clone());
                            }
                            Event::Server(ServerMsg::DelUser { participant, .. }) => {
                                self.roster.remove(participant);
                            }
                            _ => {}
                        }
                        events(&e);
                    }
                    Step::ChannelOffered(o) if o.kind == MediaKind::Audio => {
                        self.open_audio(ctrl, o.addr, o.payload_type, &o.codec, o.ssrc).await?;
                    }
                    Step::ChannelOffered(o) => {
                        tracing::info!(kind = o.kind.as_str(), "ignoring channel we did not ask for");
                    }
                    Step::PauseMedia => {
                        if let Some(m) = self.media.as_mut() {
                            m.pause();
                        }
                    }
                    Step::Finished(r) => return r,
                },
                got = recv(self.media.as_ref(), &mut buf) => match got {
                    Ok((n, _from)) => self.on_datagram(&buf[..n]),
                    Err(e) => tracing::debug!("rtp receive failed: {e}"),
                },
                () = sleep_until(next_send) => {
                    if let Some(m) = self.media.as_mut().filter(|m| m.live) {
                        m.flush_delayed().await;
                        let now = Instant::now();
                        if now >= m.next_send {
                            // Push to talk: the control line goes first, then the audio.
                            let want = m.wants_talk(now);
                            if m.talk.is_some() && want != m.talking {
                                m.talking = want;
                                if want {
                                    m.tx.talkspurt();
                                }
                                ctrl.send(ClientMsg::Talk { on: want });
                            }
                            if m.send_frame().await? {
                                self.sent += 1;
                            }
                            m.flush_delayed().await;
                        }
                    }
                }
                // The timeline starts at `accept`; ticking earlier would pin it to connect time.
                _ = mix_tick.tick(), if self.joined => {
                    self.recorder.tick(std::time::Instant::now())?;
                    for ms in self.recorder.take_clicks() {
                        events(&Event::Click { latency_us: (ms * 1000.0) as u64 });
                    }
                }
                _ = report_tick.tick(), if self.joined => self.send_report().await,
                () = sleep_until(script_at) => {
                    let t = self
                        .joined_at
                        .map_or(0.0, |o| Instant::now().saturating_duration_since(o).as_secs_f64());
                    let (lines, skipped) = self.script.due(t, &self.roster, self.me);
                    for msg in lines {
                        ctrl.send(msg);
                    }
                    for what in skipped {
                        events(&Event::Skipped { what });
                    }
                }
            }
        }
    }

    /// The server's audio channel: opens our socket (or points the one we have at the new
    /// server after a failover or a move) and declares it.
    async fn open_audio(
        &mut self,
        ctrl: &mut Control,
        addr: SocketAddr,
        payload_type: u8,
        codec: &str,
        ssrc: u32,
    ) -> Result<(), ClientError> {
        let ours = self.cfg.codec_name();
        if !codec.eq_ignore_ascii_case(ours) {
            return Err(ClientError::Unexpected(format!(
                "server wants codec {codec}, we asked for {ours}"
            )));
        }
        self.recorder.set_telephony(self.cfg.g711);
        let origin = *self.joined_at.get_or_insert_with(Instant::now);
        let media = match self.media.take() {
            Some(mut m) => {
                m.retarget(addr, payload_type, ssrc);
                m
            }
            None => {
                let ip = ctrl.local_ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                Media::open(ip, addr, payload_type, ssrc, self.cfg, origin).await?
            }
        };
        let local = media.socket.local_addr()?;
        ctrl.declare_channel(
            MediaKind::Audio,
            ChannelAddr::Addr(local),
            ssrc,
            Default::default(),
        );
        tracing::info!(%local, server = %addr, ssrc, "audio channel open");
        self.media = Some(media);
        Ok(())
    }

    /// A receiver report about every stream we receive, to the server we send to.
    async fn send_report(&mut self) {
        let Some(media) = self.media.as_ref().filter(|m| m.live) else {
            return;
        };
        let streams = self.recorder.reception();
        if let Some(rr) = self.reports.build(media.tx.ssrc(), &streams) {
            if let Err(e) = media.socket.send_to(&rr, media.server).await {
                tracing::debug!("rtcp send failed: {e}");
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8]) {
        let Some(media) = self.media.as_ref() else {
            return;
        };
        match classify(data) {
            Datagram::Rtp(p) if p.payload_type == media.payload_type => {
                self.recorder.push(std::time::Instant::now(), &p)
            }
            Datagram::Rtp(p) => {
                self.malformed += 1;
                tracing::debug!(
                    pt = p.payload_type,
                    "dropping RTP with unexpected payload type"
                );
            }
            Datagram::Rtcp => {}
            Datagram::Malformed(why) => {
                self.malformed += 1;
                tracing::debug!(len = data.len(), "dropping datagram: {why}");
            }
        }
    }
}

/// The `clicks` line: how many clicks were heard, and their latency.
fn clicks_summary(latencies_ms: &[f64], buffer_ms: f64) -> Event {
    let us = |q: f64| quantile(latencies_ms, q).map_or(0, |ms| (ms * 1000.0) as u64);
    Event::Clicks {
        count: latencies_ms.len(),
        p50_us: us(0.5),
        p99_us: us(0.99),
        max_us: us(1.0),
        buffer_us: (buffer_ms * 1000.0) as u64,
    }
}

/// Receives on the media socket, or never when there is none yet.
async fn recv(media: Option<&Media>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match media {
        Some(m) => m.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when nothing is scheduled.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
