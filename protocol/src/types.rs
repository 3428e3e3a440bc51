use crate::fields::num;
use crate::ProtoError;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Which kind of server sent `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Dispatcher,
    MediaServer,
}

impl ServerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Dispatcher => "dispatcher",
            ServerKind::MediaServer => "mediaserver",
        }
    }
}

impl FromStr for ServerKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "dispatcher" => Ok(ServerKind::Dispatcher),
            "mediaserver" => Ok(ServerKind::MediaServer),
            _ => Err(()),
        }
    }
}

/// A participant's connection quality, as a traffic light (seed 003: "a traditional
/// red-yellow-green traffic signal"), from the loss and jitter of their stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    Green,
    Yellow,
    Red,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Green => "green",
            Quality::Yellow => "yellow",
            Quality::Red => "red",
        }
    }

    /// The light for a loss fraction in percent and an interarrival jitter in ms: green
    /// below 2% and 30 ms, red from 10% or 100 ms, yellow between.
    pub fn from_loss_jitter(loss_pct: f64, jitter_ms: f64) -> Self {
        if loss_pct >= 10.0 || jitter_ms >= 100.0 {
            Quality::Red
        } else if loss_pct >= 2.0 || jitter_ms >= 30.0 {
            Quality::Yellow
        } else {
            Quality::Green
        }
    }
}

impl FromStr for Quality {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "green" => Ok(Quality::Green),
            "yellow" => Ok(Quality::Yellow),
            "red" => Ok(Quality::Red),
            _ => Err(()),
        }
    }
}

/// What a participant may do in its conference: a moderator (its join carried the
/// account's moderator PIN, and the dispatcher signed the role into its ticket) may mute,
/// kick, lock and end; everyone else is a plain participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    #[default]
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "participant" => Ok(Role::Participant),
            "moderator" => Ok(Role::Moderator),
            _ => Err(()),
        }
    }
}

/// Who took a moderator action, as the notices name it: a moderator by participant id, or
/// an operator through the dispatcher's admin API (`operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    Participant(u32),
    Operator,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Participant(id) => write!(f, "{id}"),
            Actor::Operator => f.write_str("operator"),
        }
    }
}

impl FromStr for Actor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "operator" => Ok(Actor::Operator),
            // Decimal digits only: no sign, no spaces.
            _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map(Actor::Participant).map_err(|_| ())
            }
            _ => Err(()),
        }
    }
}

/// A media kind of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

impl FromStr for MediaKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "audio" => Ok(MediaKind::Audio),
            "video" => Ok(MediaKind::Video),
            _ => Err(()),
        }
    }
}

/// How a conference carries media: forwarded (SFU), mixed (MCU), or mixed with its video
/// composited into one picture (MCU with a compositor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Reflect,
    Mix,
    Composite,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Reflect => "reflect",
            Mode::Mix => "mix",
            Mode::Composite => "composite",
        }
    }

    /// Whether the server mixes the audio (mix and composite).
    pub fn mixes(self) -> bool {
        matches!(self, Mode::Mix | Mode::Composite)
    }
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "reflect" => Ok(Mode::Reflect),
            "mix" => Ok(Mode::Mix),
            "composite" => Ok(Mode::Composite),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `mode = "mix"` in the binaries' settings files, as in `join`.
impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|()| {
            serde::de::Error::custom(format!("unknown mode {s:?} (reflect, mix or composite)"))
        })
    }
}

/// How a composite conference's picture is laid out (`layout grid|speaker|presentation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// Equal tiles: 1, 2x2, 3x3 or 4x4, the smallest grid that holds everyone.
    #[default]
    Grid,
    /// The dominant speaker large on top, the others as a row of thumbnails under it.
    Speaker,
    /// The first picture (the shared screen) large on the left, the others as a column of
    /// thumbnails on the right.
    Presentation,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Grid => "grid",
            Layout::Speaker => "speaker",
            Layout::Presentation => "presentation",
        }
    }
}

impl FromStr for Layout {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "grid" => Ok(Layout::Grid),
            "speaker" => Ok(Layout::Speaker),
            "presentation" => Ok(Layout::Presentation),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a media server can host, as a set of flags (seed 003's capacity table 601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub audio: bool,
    pub video: bool,
    pub reflect: bool,
    pub mix: bool,
    pub composite: bool,
}

impl Capabilities {
    const NAMES: [&'static str; 5] = ["audio", "video", "reflect", "mix", "composite"];

    fn flags(&self) -> [bool; 5] {
        [
            self.audio,
            self.video,
            self.reflect,
            self.mix,
            self.composite,
        ]
    }

    /// True when every capability in `need` is in `self`.
    pub fn covers(&self, need: &Capabilities) -> bool {
        self.flags()
            .iter()
            .zip(need.flags())
            .all(|(have, want)| *have || !want)
    }

    /// Parses a comma list such as `audio,video,reflect`.
    pub fn parse_list(verb: &'static str, s: &str) -> Result<Self, ProtoError> {
        let mut c = Capabilities::default();
        for item in s.split(',') {
            match item {
                "audio" => c.audio = true,
                "video" => c.video = true,
                "reflect" => c.reflect = true,
                "mix" => c.mix = true,
                "composite" => c.composite = true,
                _ => {
                    return Err(ProtoError::BadValue {
                        verb,
                        field: "capabilities",
                        value: s.to_owned(),
                    })
                }
            }
        }
        Ok(c)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .zip(self.flags())
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Where a client receives a channel: an explicit address, `latch` to let the media
/// server learn it from the first packet that comes from the control connection's IP, or
/// `latch:PORT` for a plain-RTP tool (ffmpeg, GStreamer) that sends from a port nobody
/// knows in advance and receives elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAddr {
    Addr(SocketAddr),
    Latch,
    /// Asymmetric: the source is latched by the control connection's IP and the SSRC, and
    /// the server sends to this port on that same IP. The SSRC on such a line is the
    /// client's own choice (the external sender's), not the one from the server's `channel`.
    LatchRecv(u16),
}

impl ChannelAddr {
    pub(crate) fn parse(verb: &'static str, s: &str) -> Result<Self, ProtoError> {
        if s == "latch" {
            Ok(ChannelAddr::Latch)
        } else if let Some(port) = s.strip_prefix("latch:") {
            // Port 0 cannot be a destination.
            match num::<u16>(verb, "port", port)? {
                0 => Err(ProtoError::BadValue {
                    verb,
                    field: "port",
                    value: s.to_owned(),
                }),
                p => Ok(ChannelAddr::LatchRecv(p)),
            }
        } else {
            num(verb, "address", s).map(ChannelAddr::Addr)
        }
    }
}

impl fmt::Display for ChannelAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelAddr::Addr(a) => write!(f, "{a}"),
            ChannelAddr::Latch => f.write_str("latch"),
            ChannelAddr::LatchRecv(p) => write!(f, "latch:{p}"),
        }
    }
}

/// Where a client reaches a server's control lines: a TCP `host:port`, the same over TLS
/// (`tls://host:port`), or a WebSocket URL (`ws://host:port/ws`, `wss://...`) for clients
/// that joined over a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// The control port of a server with TLS configured.
    Tls(SocketAddr),
    Ws(String),
}

/// Longest WebSocket URL an `Endpoint` may hold.
const MAX_URL: usize = 512;

impl Endpoint {
    pub(crate) fn parse(verb: &'static str, s: &str) -> Result<Self, ProtoError> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Endpoint::Tcp(a));
        }
        if let Some(a) = s.strip_prefix("tls://").and_then(|a| a.parse().ok()) {
            return Ok(Endpoint::Tls(a));
        }
        let is_url = (s.starts_with("ws://") || s.starts_with("wss://"))
            && s.len() <= MAX_URL
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if is_url {
            Ok(Endpoint::Ws(s.to_owned()))
        } else {
            Err(ProtoError::BadValue {
                verb,
                field: "address",
                value: s.to_owned(),
            })
        }
    }

    /// The TCP address (plain or TLS), if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(a) | Endpoint::Tls(a) => Some(*a),
            Endpoint::Ws(_) => None,
        }
    }

    /// Where to send a client of a server whose control port is `tcp` and whose WebSocket
    /// URL is `ws`: the URL to a client on a WebSocket, the TCP port otherwise. A server
    /// that announces a `wss://` URL has TLS on every port (one setting covers them all),
    /// so its TCP port is named `tls://`.
    pub fn for_client(websocket: bool, tcp: SocketAddr, ws: Option<String>) -> Endpoint {
        let tls = ws.as_deref().is_some_and(|u| u.starts_with("wss://"));
        match ws {
            Some(url) if websocket => Endpoint::Ws(url),
            _ if tls => Endpoint::Tls(tcp),
            _ => Endpoint::Tcp(tcp),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint::Tcp(a)
    }
}

impl FromStr for Endpoint {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, ProtoError> {
        Endpoint::parse("endpoint", s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Tls(a) => write!(f, "tls://{a}"),
            Endpoint::Ws(u) => f.write_str(u),
        }
    }
}

/// Parses a field through `FromStr<Err = ()>` enums, naming the field on failure.
pub(crate) fn word<T: FromStr<Err = ()>>(
    verb: &'static str,
    field: &'static str,
    s: &str,
) -> Result<T, ProtoError> {
    s.parse().map_err(|_| ProtoError::BadValue {
        verb,
        field,
        value: s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_lights_from_loss_and_jitter() {
        assert_eq!(Quality::from_loss_jitter(0.0, 5.0), Quality::Green);
        assert_eq!(Quality::from_loss_jitter(2.0, 5.0), Quality::Yellow);
        assert_eq!(Quality::from_loss_jitter(0.5, 30.0), Quality::Yellow);
        assert_eq!(Quality::from_loss_jitter(10.0, 0.0), Quality::Red);
        assert_eq!(Quality::from_loss_jitter(0.0, 150.0), Quality::Red);
        for q in [Quality::Green, Quality::Yellow, Quality::Red] {
            assert_eq!(q.as_str().parse::<Quality>(), Ok(q));
        }
        assert!("blue".parse::<Quality>().is_err());
    }

    #[test]
    fn roles_and_actors() {
        for r in [Role::Participant, Role::Moderator] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("admin".parse::<Role>().is_err());
        assert_eq!("12".parse::<Actor>(), Ok(Actor::Participant(12)));
        assert_eq!("operator".parse::<Actor>(), Ok(Actor::Operator));
        assert_eq!(Actor::Participant(7).to_string(), "7");
        assert_eq!(Actor::Operator.to_string(), "operator");
        for bad in ["", "-1", "+3", "1 ", "op", "99999999999"] {
            assert!(bad.parse::<Actor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        let tcp: Endpoint = "127.0.0.1:3451".parse().unwrap();
        assert_eq!(tcp.tcp(), Some("127.0.0.1:3451".parse().unwrap()));
        let ws: Endpoint = "ws://127.0.0.1:8081/ws".parse().unwrap();
        assert_eq!(ws, Endpoint::Ws("ws://127.0.0.1:8081/ws".into()));
        assert_eq!(ws.to_string(), "ws://127.0.0.1:8081/ws");
        for bad in [
            "",
            "http://x/ws",
            "ws://a b",
            "127.0.0.1",
            "ws://x\u{7}",
            "tls://",
            "tls://host:1",
            "tls://127.0.0.1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        let tls: Endpoint = "tls://127.0.0.1:3451".parse().unwrap();
        assert_eq!(tls, Endpoint::Tls("127.0.0.1:3451".parse().unwrap()));
        assert_eq!(tls.to_string(), "tls://127.0.0.1:3451");
        assert_eq!(tls.tcp(), Some("127.0.0.1:3451".parse().unwrap()));
    }

    #[test]
    fn a_server_with_a_wss_url_is_reached_over_tls() {
        let tcp: SocketAddr = "127.0.0.1:3451".parse().unwrap();
        let url = "wss://127.0.0.1:8081/ws".to_owned();
        let wss = Some(url.clone());
        let ws = Some("ws://127.0.0.1:8081/ws".to_owned());
        assert_eq!(
            Endpoint::for_client(false, tcp, wss.clone()),
            Endpoint::Tls(tcp)
        );
        assert_eq!(
            Endpoint::for_client(true, tcp, wss.clone()),
            Endpoint::Ws(url)
        );
        assert_eq!(Endpoint::for_client(false, tcp, ws), Endpoint::Tcp(tcp));
        assert_eq!(Endpoint::for_client(true, tcp, None), Endpoint::Tcp(tcp));
    }

    #[test]
    fn channel_addr_forms() {
        let p = |s| ChannelAddr::parse("channel", s);
        assert_eq!(p("latch"), Ok(ChannelAddr::Latch));
        assert_eq!(p("latch:40000"), Ok(ChannelAddr::LatchRecv(40000)));
        assert_eq!(
            p("127.0.0.1:9"),
            Ok(ChannelAddr::Addr("127.0.0.1:9".parse().unwrap()))
        );
        for bad in [
            "latch:",
            "latch:0",
            "latch:70000",
            "latch:x",
            "latch:-1",
            "latch 5",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(ChannelAddr::LatchRecv(5004).to_string(), "latch:5004");
    }
}
