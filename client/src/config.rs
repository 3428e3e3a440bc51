//! `confclient` settings: command-line flags, optionally from a TOML file or the environment.
//!
//! Every flag can also be a key of the `--config` file (same name, e.g. `dispatcher =
//! "127.0.0.1:3450"`, `tone = 440`) or a `NOC_*` variable (`NOC_TONE=440`); a flag given on
//! the command line wins over the environment, which wins over the file (the `settings`
//! crate merges them).

use crate::external::ExternalConfig;
use crate::session::SessionConfig;
use crate::ClientError;
use clap::Parser;
use protocol::Mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use settings::SettingsError;
use std::path::PathBuf;
use std::time::Duration;

/// Join a conference, send a tone or silence, record what you hear.
#[derive(Debug, Clone, Default, Parser, Serialize, Deserialize)]
#[command(name = "confclient", version)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// TOML file with any of the settings below; flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_deserializing)]
    pub config: Option<PathBuf>,
    /// Dispatcher to contact first: `HOST[:PORT]` (TCP), or its WebSocket URL
    /// (`ws://HOST:PORT/ws`, the control lines over a WebSocket).
    #[arg(long, value_name = "HOST:PORT|URL")]
    pub dispatcher: Option<String>,
    /// Reach the dispatcher, and every server it sends us to, over TLS (`HOST:PORT`
    /// becomes `tls://HOST:PORT`, `ws://` becomes `wss://`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// PEM CA certificate(s) that TLS servers are verified with (a self-signed server
    /// certificate works too) [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Conference to join.
    #[arg(long, value_name = "NAME")]
    pub conference: Option<String>,
    /// Account code.
    #[arg(long, value_name = "CODE")]
    pub account: Option<String>,
    /// Our user name in the roster.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Send a sine tone at HZ (about -12 dBFS) instead of silence.
    #[arg(long, value_name = "HZ")]
    pub tone: Option<f64>,
    /// Record the received mix to a WAV file (48 kHz, 16-bit, mono).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// Leave after SECS seconds; without it, run until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// The user's domain, e.g. `acme.com`: the dispatcher sends tenants with their own
    /// pool of media servers there.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Conference mode to ask for: reflect (forwarding), mix, or composite (mixed audio and
    /// one composited picture of everyone's video).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Push-to-talk schedule in seconds from joining, e.g. `0-3,5-8`: sends `talk on|off`
    /// and transmits only while talking. Without it the client talks all the time.
    #[arg(long, value_name = "SCHEDULE")]
    pub talk: Option<String>,
    /// Impair our own sending: delay each packet by a random 0..MS milliseconds.
    #[arg(long, value_name = "MS")]
    pub jitter: Option<u32>,
    /// Impair our own sending: drop PCT percent of the packets at random.
    #[arg(long, value_name = "PCT")]
    pub loss: Option<f64>,
    /// Audio codec: opus, or G.711 pcmu / pcma (8 kHz telephony; needs `--mode mix`).
    #[arg(long, value_name = "CODEC", value_parser = parse_codec)]
    pub codec: Option<Codec>,
    /// Control only: a plain-RTP tool (ffmpeg, GStreamer) sends and receives the media.
    /// Writes DIR/receive.sdp and DIR/send.txt and stays joined until killed.
    #[arg(long, value_name = "DIR")]
    pub external_media: Option<PathBuf>,
    /// With --external-media: the conference sends audio to this port of our IP, video
    /// to PORT+2.
    #[arg(long, value_name = "PORT")]
    pub recv_port: Option<u16>,
    /// With --external-media: the SSRC the external tool sends audio with (default: the
    /// server's choice, written to send.txt).
    #[arg(long, value_name = "SSRC")]
    pub ssrc: Option<u32>,
    /// With --external-media: also a video channel (H.264 packetization-mode 1, or VP8
    /// with --vcodec vp8).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub video: bool,
    /// With --external-media --video: the external tool's video SSRC (default: SSRC+1).
    #[arg(long, value_name = "SSRC")]
    pub video_ssrc: Option<u32>,
    /// With --external-media --video: the video codec, `h264` (default) or `vp8`. The
    /// reflector forwards video as it is sent, so a room's members agree on one.
    #[arg(long, value_name = "CODEC", value_parser = ["h264", "vp8"])]
    pub vcodec: Option<String>,
    /// With --external-media: one stream, as a legacy room system takes it: the mixed
    /// audio and one composite video (H.264) of everyone, in any conference, instead of
    /// every sender's streams (`stream=single`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_stream: bool,
    /// The account's moderator PIN: join as a moderator (mute, kick, lock, end).
    #[arg(long, value_name = "PIN")]
    pub moderator_pin: Option<String>,
    /// Chat on a schedule, seconds from joining: `2:hello,5:@3 private` (`@ID` or `@NAME`
    /// sends to that member only). Every text received is printed.
    #[arg(long, value_name = "SCHEDULE")]
    pub say: Option<String>,
    /// Control lines on a schedule, seconds from joining: `3:mute @bob on,6:mute @bob off,
    /// 7:mute all on,8:kick @bob REASON,9:lock on,10:raise,11:record on,12:endconference` (a member by
    /// `@NAME` or id; `me` for oneself).
    #[arg(long, value_name = "SCHEDULE")]
    pub command: Option<String>,
    /// The tone's level over time, dBFS from seconds after joining: `0:-30,3:-10,6:-30`.
    #[arg(long, value_name = "SCHEDULE")]
    pub volume: Option<String>,
    /// Latency bench: send a click every 500 ms of the wall clock instead of the tone.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clicks: bool,
    /// Latency bench: find the clicks in what we play out, print each one's mouth-to-ear
    /// latency (`click latency_ms=...`) and a `clicks` summary when leaving.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detect_clicks: bool,
}

/// The `--codec` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    G711(codecs::g711::Law),
}

impl Codec {
    /// The name in `--codec` and in the protocol's codec table.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => protocol::codec::OPUS.name,
            Codec::G711(l) => l.name(),
        }
    }
}

impl Serialize for Codec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Codec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_codec(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    use codecs::g711::Law;
    match s.to_ascii_lowercase().as_str() {
        "opus" => Ok(Codec::Opus),
        "pcmu" => Ok(Codec::G711(Law::Mu)),
        "pcma" => Ok(Codec::G711(Law::A)),
        _ => Err(format!("unknown codec {s:?} (opus, pcmu or pcma)")),
    }
}

/// Parses a talk schedule `A-B,C-D` (seconds, A < B) into intervals.
pub fn parse_talk(s: &str) -> Result<Vec<(f64, f64)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| format!("talk interval {part:?}: expected START-END"))?;
        let a: f64 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad start in {part:?}"))?;
        let b: f64 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad end in {part:?}"))?;
        if !(a >= 0.0 && b > a && b.is_finite()) {
            return Err(format!("talk interval {part:?}: need 0 <= START < END"));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// Settings after merging flags and file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub session: SessionConfig,
    /// Leave after this long; `None` = until a signal.
    pub duration: Option<Duration>,
    /// `--external-media`: control only, media by a plain-RTP tool.
    pub external: Option<ExternalConfig>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
        .map_err(|()| format!("unknown mode {s:?} (reflect, mix or composite)"))
}

/// `host` alone means the well-known control port.
fn with_default_port(addr: String) -> String {
    if addr.starts_with("ws://") || addr.starts_with("wss://") {
        // A WebSocket URL names its port (or the scheme's).
        return addr;
    }
    if let Some(rest) = addr.strip_prefix("tls://") {
        return format!("tls://{}", with_default_port(rest.to_owned()));
    }
    let has_port = match addr.rsplit_once(':') {
        // A bare IPv6 address has colons but no port unless bracketed.
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        addr
    } else if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{}", protocol::DEFAULT_PORT)
    } else {
        format!("{addr}:{}", protocol::DEFAULT_PORT)
    }
}

/// The dispatcher's address with `--tls`: `tls://HOST:PORT` or a `wss://` URL.
fn with_tls(addr: String, tls: bool) -> String {
    if !tls || addr.starts_with("tls://") || addr.starts_with("wss://") {
        return addr;
    }
    match addr.strip_prefix("ws://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("tls://{addr}"),
    }
}

/// A settings error as the client reports it: an unreadable file as such, the rest as a
/// config error.
pub fn settings_error(e: SettingsError) -> ClientError {
    match e {
        SettingsError::Read { path, source } => ClientError::ConfigFile { path, source },
        other => ClientError::Config(other.to_string()),
    }
}

impl Args {
    /// Merges the `--config` file under the flags and checks the result.
    pub fn resolve(self) -> Result<ClientConfig, ClientError> {
        let a = settings::load(&self).map_err(settings_error)?;
        let external = external_config(&a)?;
        let required = |flag: &str, v: Option<String>| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| ClientError::Config(format!("--{flag} is required")))
        };
        if let Some(hz) = a.tone {
            if !(hz > 0.0 && hz < 24_000.0) {
                return Err(ClientError::Config(format!(
                    "--tone {hz}: must be between 0 and 24000 Hz"
                )));
            }
        }
        let duration = match a.duration {
            Some(secs) => Some(Duration::try_from_secs_f64(secs).map_err(|_| {
                ClientError::Config(format!(
                    "--duration {secs}: must be a number of seconds >= 0"
                ))
            })?),
            None => None,
        };
        let talk = a
            .talk
            .map(|t| parse_talk(&t))
            .transpose()
            .map_err(|e| ClientError::Config(format!("--talk: {e}")))?;
        let loss_pct = a.loss.unwrap_or(0.0);
        if !(0.0..=100.0).contains(&loss_pct) {
            return Err(ClientError::Config(format!(
                "--loss {loss_pct}: must be between 0 and 100"
            )));
        }
        let mut script = a
            .say
            .as_deref()
            .map(crate::script::parse_say)
            .transpose()
            .map_err(|e| ClientError::Config(format!("--say: {e}")))?
            .unwrap_or_default();
        script.extend(
            a.command
                .as_deref()
                .map(crate::script::parse_commands)
                .transpose()
                .map_err(|e| ClientError::Config(format!("--command: {e}")))?
                .unwrap_or_default(),
        );
        let volume = a
            .volume
            .as_deref()
            .map(crate::script::parse_volume)
            .transpose()
            .map_err(|e| ClientError::Config(format!("--volume: {e}")))?
            .unwrap_or_default();
        if !volume.is_empty() && a.tone.is_none() {
            return Err(ClientError::Config("--volume needs --tone".into()));
        }
        if a.clicks && a.tone.is_some() {
            return Err(ClientError::Config(
                "--clicks sends clicks instead of the tone; drop --tone".into(),
            ));
        }
        if a.moderator_pin
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(ClientError::Config(
                "--moderator-pin: no spaces or control characters".into(),
            ));
        }
        let jitter_ms = a.jitter.unwrap_or(0);
        if jitter_ms > 10_000 {
            return Err(ClientError::Config(format!(
                "--jitter {jitter_ms}: at most 10000 ms"
            )));
        }
        Ok(ClientConfig {
            external,
            session: SessionConfig {
                dispatcher: with_tls(
                    with_default_port(required("dispatcher", a.dispatcher)?),
                    a.tls,
                ),
                ca: a.ca,
                conference: required("conference", a.conference)?,
                account: required("account", a.account)?,
                name: required("name", a.name)?,
                mode: a.mode.unwrap_or_default(),
                tone: a.tone,
                record: a.record,
                talk,
                jitter_ms,
                loss_pct,
                g711: match a.codec.unwrap_or(Codec::Opus) {
                    Codec::Opus => None,
                    Codec::G711(l) => Some(l),
                },
                domain: a.domain,
                moderator_pin: a.moderator_pin,
                script,
                volume,
                clicks: a.clicks,
                detect_clicks: a.detect_clicks,
            },
            duration,
        })
    }
}

/// The `--external-media` group of flags, checked.
fn external_config(a: &Args) -> Result<Option<ExternalConfig>, ClientError> {
    let (video, recv_port, ssrc, video_ssrc) = (a.video, a.recv_port, a.ssrc, a.video_ssrc);
    if a.vcodec.is_some() && !video {
        return Err(ClientError::Config(
            "--vcodec needs --external-media --video".into(),
        ));
    }
    let Some(dir) = a.external_media.clone() else {
        if recv_port.is_some() || ssrc.is_some() || video || video_ssrc.is_some() || a.single_stream
        {
            return Err(ClientError::Config(
                "--recv-port, --ssrc, --video, --video-ssrc and --single-stream need --external-media"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let recv_port = recv_port
        .ok_or_else(|| ClientError::Config("--external-media needs --recv-port".into()))?;
    // RTP at P (and P+2 for video), RTCP at the next port up, all within range.
    let top = u32::from(recv_port) + if video { 3 } else { 1 };
    if recv_port == 0 || top > u32::from(u16::MAX) {
        return Err(ClientError::Config(format!(
            "--recv-port {recv_port}: need 1..={}",
            if video { 65532 } else { 65534 }
        )));
    }
    if ssrc == Some(0) || video_ssrc == Some(0) {
        return Err(ClientError::Config("--ssrc 0 is not allowed".into()));
    }
    Ok(Some(ExternalConfig {
        dir,
        recv_port,
        ssrc,
        video,
        video_ssrc,
        vcodec: a.vcodec.clone(),
        single_stream: a.single_stream,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("confclient").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn talk_schedule_and_impairments() {
        assert_eq!(parse_talk("0-3,5-8"), Ok(vec![(0.0, 3.0), (5.0, 8.0)]));
        assert_eq!(parse_talk(""), Ok(vec![]));
        assert!(parse_talk("3-1").is_err());
        assert!(parse_talk("x").is_err());
        let c = args(&[
            "--dispatcher",
            "h:1",
            "--conference",
            "c",
            "--account",
            "a",
            "--name",
            "n",
            "--talk",
            "0-3,5-8",
            "--jitter",
            "30",
            "--loss",
            "5",
            "--codec",
            "pcmu",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.session.g711, Some(codecs::g711::Law::Mu));
        assert_eq!(c.session.codec_name(), "pcmu");
        assert_eq!(c.session.talk, Some(vec![(0.0, 3.0), (5.0, 8.0)]));
        assert_eq!((c.session.jitter_ms, c.session.loss_pct), (30, 5.0));
        let bad = args(&[
            "--dispatcher",
            "h:1",
            "--conference",
            "c",
            "--account",
            "a",
            "--name",
            "n",
            "--loss",
            "150",
        ]);
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn flags_alone() {
        let c = args(&[
            "--dispatcher",
            "127.0.0.1:3450",
            "--conference",
            "xyz",
            "--account",
            "demo",
            "--name",
            "ann",
            "--tone",
            "440",
            "--duration",
            "2.5",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.session.dispatcher, "127.0.0.1:3450");
        assert_eq!(
            with_tls("127.0.0.1:3450".into(), true),
            "tls://127.0.0.1:3450"
        );
        assert_eq!(with_tls("ws://h:1/ws".into(), true), "wss://h:1/ws");
        assert_eq!(with_tls("127.0.0.1:3450".into(), false), "127.0.0.1:3450");
        assert_eq!(with_default_port("tls://h".into()), "tls://h:3450");
        assert_eq!(c.session.tone, Some(440.0));
        assert_eq!(c.session.mode, Mode::Reflect);
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        assert_eq!(c.session.record, None);
    }

    #[test]
    fn file_under_flags() {
        let dir = std::env::temp_dir().join(format!("client-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "dispatcher = \"localhost\"\nconference = \"xyz\"\naccount = \"demo\"\n\
             name = \"file\"\ntone = 660\nrecord = \"out.wav\"\nmode = \"mix\"\n",
        )
        .unwrap();
        let c = args(&["--config", path.to_str().unwrap(), "--name", "flag"])
            .resolve()
            .unwrap();
        assert_eq!(c.session.dispatcher, "localhost:3450");
        assert_eq!(c.session.name, "flag");
        assert_eq!(c.session.tone, Some(660.0));
        assert_eq!(c.session.mode, Mode::Mix);
        assert_eq!(c.session.record, Some(PathBuf::from("out.wav")));
        assert_eq!(c.duration, None);

        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        let e = args(&["--config", path.to_str().unwrap()]).resolve();
        assert!(matches!(e, Err(ClientError::Config(_))));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn environment_between_flags_and_file() {
        let path = std::env::temp_dir().join(format!("client-env-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "dispatcher = \"h\"\nconference = \"c\"\naccount = \"a\"\nname = \"file\"\n\
             tone = 660\nmode = \"mix\"\n",
        )
        .unwrap();
        let load = |flags: &[&str], env: &[(&str, &str)]| {
            let argv = ["confclient", "--config", path.to_str().unwrap()];
            settings::parse_from::<Args, _, _, _, _, _>(
                argv.iter().chain(flags),
                env.iter().copied(),
            )
            .map_err(settings_error)
            .and_then(Args::resolve)
        };
        let env = [
            ("NOC_NAME", "env"),
            ("NOC_CODEC", "pcma"),
            ("NOC_TONE", "440"),
        ];
        let c = load(&[], &env).unwrap();
        assert_eq!(c.session.name, "env", "env over file");
        assert_eq!((c.session.tone, c.session.mode), (Some(440.0), Mode::Mix));
        assert_eq!(c.session.g711, Some(codecs::g711::Law::A));
        let c = load(&["--name", "flag"], &env).unwrap();
        assert_eq!(c.session.name, "flag", "flag over env");
        let e = load(&[], &[("NOC_MODE", "sideways")]).unwrap_err();
        assert!(e.to_string().contains("NOC_MODE"), "{e}");
        std::fs::write(&path, "mode = \"sideways\"\n").unwrap();
        let e = load(&[], &[]).unwrap_err();
        assert!(e.to_string().contains("reflect, mix or composite"), "{e}");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn missing_and_bad_values() {
        let e = args(&["--conference", "xyz"]).resolve().unwrap_err();
        assert_eq!(e.to_string(), "config: --dispatcher is required");
        let base = [
            "--dispatcher",
            "h:1",
            "--conference",
            "c",
            "--account",
            "a",
            "--name",
            "n",
        ];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            args(&v).resolve()
        };
        assert!(with(&["--tone", "0"]).is_err());
        assert!(with(&["--tone", "30000"]).is_err());
        assert!(with(&["--duration=-1"]).is_err());
        assert!(with(&["--duration", "0"]).is_ok());
        assert!(Args::try_parse_from(["confclient", "--mode", "sideways"]).is_err());
    }

    #[test]
    fn external_media_flags() {
        let base = [
            "--dispatcher",
            "h:1",
            "--conference",
            "c",
            "--account",
            "a",
            "--name",
            "n",
        ];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            args(&v).resolve()
        };
        assert_eq!(with(&[]).unwrap().external, None);
        let c = with(&[
            "--external-media",
            "/tmp/x",
            "--recv-port",
            "5004",
            "--ssrc",
            "1111",
            "--video",
        ])
        .unwrap();
        assert_eq!(
            c.external,
            Some(ExternalConfig {
                dir: PathBuf::from("/tmp/x"),
                recv_port: 5004,
                ssrc: Some(1111),
                video: true,
                video_ssrc: None,
                vcodec: None,
                single_stream: false,
            })
        );
        assert!(with(&["--external-media", "/tmp/x"]).is_err());
        assert!(with(&["--recv-port", "5004"]).is_err());
        assert!(with(&["--external-media", "d", "--recv-port", "65534", "--video"]).is_err());
        assert!(with(&[
            "--external-media",
            "d",
            "--recv-port",
            "5004",
            "--ssrc",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn moderation_chat_and_volume_flags() {
        let base = [
            "--dispatcher",
            "h:1",
            "--conference",
            "c",
            "--account",
            "a",
            "--name",
            "n",
        ];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            args(&v).resolve()
        };
        let c = with(&[
            "--moderator-pin",
            "4711",
            "--say",
            "2:hello,5:@3 private",
            "--command",
            "3:mute @bob on",
            "--tone",
            "440",
            "--volume",
            "0:-30,3:-10",
        ])
        .unwrap();
        assert_eq!(c.session.moderator_pin.as_deref(), Some("4711"));
        assert_eq!(
            c.session.join_opts().pin(),
            Some("4711"),
            "the PIN rides on the join"
        );
        assert_eq!(c.session.script.len(), 3);
        assert_eq!(c.session.volume, vec![(0.0, -30.0), (3.0, -10.0)]);
        assert!(with(&["--say", "x:hi"]).is_err());
        assert!(with(&["--command", "1:shout"]).is_err());
        assert!(with(&["--volume", "0:-10"]).is_err(), "volume needs a tone");
        assert!(with(&["--clicks", "--tone", "440"]).is_err());
        assert!(with(&["--moderator-pin", "12 34"]).is_err());
        let c = with(&["--clicks", "--detect-clicks"]).unwrap();
        assert!(c.session.clicks && c.session.detect_clicks);
    }

    #[test]
    fn default_port() {
        assert_eq!(with_default_port("a.b".into()), "a.b:3450");
        assert_eq!(with_default_port("a.b:99".into()), "a.b:99");
        assert_eq!(with_default_port("::1".into()), "[::1]:3450");
        assert_eq!(with_default_port("[::1]:5".into()), "[::1]:5");
    }
}
