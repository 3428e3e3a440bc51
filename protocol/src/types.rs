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

/// How a conference carries media: forwarded (SFU) or mixed (MCU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Reflect,
    Mix,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Reflect => "reflect",
            Mode::Mix => "mix",
        }
    }
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "reflect" => Ok(Mode::Reflect),
            "mix" => Ok(Mode::Mix),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Mode {
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

/// Where a client receives a channel: an explicit address, or `latch` to let the media
/// server learn it from the first packet that comes from the control connection's IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAddr {
    Addr(SocketAddr),
    Latch,
}

impl ChannelAddr {
    pub(crate) fn parse(verb: &'static str, s: &str) -> Result<Self, ProtoError> {
        if s == "latch" {
            Ok(ChannelAddr::Latch)
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
