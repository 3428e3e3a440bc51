//! `loadgen`'s flags, checked once and echoed into the JSON so every figure carries the
//! load that produced it. A `--config` TOML file and `NOC_*` variables can set them too (the
//! `settings` crate merges them under the flags).

use crate::wire::{MAX_PACKET, MIN_PACKET};
use crate::BenchError;
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Drives real participants against a dispatcher (or `rawfwd`) and measures what comes back.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "loadgen", version, about)]
#[serde(deny_unknown_fields)]
pub struct LoadArgs {
    /// TOML file with any of these settings (`audio_pps = 100`); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// The dispatcher's client address (`noc` prints it as `dispatcher HOST:PORT`).
    #[arg(long, required_unless_present_any = ["raw", "janus"])]
    pub dispatcher: Option<String>,
    /// Drive the raw baseline forwarder (`rawfwd`) at this address instead of the NOC.
    #[arg(long, conflicts_with = "dispatcher")]
    pub raw: Option<SocketAddr>,
    /// Account code for `join`.
    #[arg(long, default_value = "demo")]
    pub account: String,
    /// Number of conferences.
    #[arg(long, default_value_t = 10)]
    pub conferences: u32,
    /// Participants per conference; every one receives.
    #[arg(long, default_value_t = 5)]
    pub participants: u32,
    /// Senders per conference (the first K participants).
    #[arg(long, default_value_t = 5)]
    pub senders: u32,
    /// Seconds of load (per step with `--sweep`).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Audio-like packets per second per sender (0 with `--video-pps`: video only, e.g. to
    /// compare the video path with the audio path at the same packet rate and size).
    #[arg(long, default_value_t = 50.0)]
    pub audio_pps: f64,
    /// Bytes per audio-like datagram, RTP header included.
    #[arg(long, default_value_t = 100)]
    pub audio_size: usize,
    /// Video-like packets per second per sender (0: no video). They look like H.264 (one
    /// NAL unit per packet, an IDR slice every second) and go on the `channel video`.
    #[arg(long, default_value_t = 0.0)]
    pub video_pps: f64,
    /// Bytes per video-like datagram, RTP header included.
    #[arg(long, default_value_t = 1200)]
    pub video_size: usize,
    /// Step the offered load up (doubling the packet rates) until loss or latency blows up.
    #[arg(long)]
    pub sweep: bool,
    /// One step per listed multiplier of the packet rates (e.g. `1,8`), in that order,
    /// whatever their loss: fixed loads instead of a sweep.
    #[arg(long, value_delimiter = ',', conflicts_with = "sweep")]
    #[serde(default)]
    pub scales: Vec<f64>,
    /// Most steps of a sweep.
    #[arg(long, default_value_t = 10)]
    pub max_steps: u16,
    /// After the doubling finds a failing rate, bisect this many times between it and the
    /// last good rate to place saturation more closely.
    #[arg(long, default_value_t = 2)]
    pub refine: u16,
    /// A sweep stops after the first step whose loss is above this percentage.
    #[arg(long, default_value_t = 1.0)]
    pub max_loss_pct: f64,
    /// A sweep stops after the first step whose median latency is above this many ms: queues
    /// are building up. (The median, not p99: on a shared machine a p99 spike can be noise.)
    #[arg(long, default_value_t = 10.0)]
    pub max_p50_ms: f64,
    /// The headline figures come from the highest step with at most this loss.
    #[arg(long, default_value_t = 0.1)]
    pub headline_loss_pct: f64,
    /// A packet received more than this many ms after it was sent counts as late.
    #[arg(long, default_value_t = 20.0)]
    pub late_ms: f64,
    /// Server process whose CPU time (utime + stime in /proc/PID/stat) is measured.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prometheus endpoint whose `process_cpu_seconds_total` gives the server's CPU time.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Sender threads.
    #[arg(long, default_value_t = 1)]
    pub send_threads: usize,
    /// Receiver threads.
    #[arg(long, default_value_t = 1)]
    pub recv_threads: usize,
    /// Receiver threads never sleep: they poll epoll without waiting. On loopback the
    /// sender's kernel path wakes a sleeping receiver and the server is charged for it,
    /// which a real network charges to the receiving host; pin loadgen to cores of its own
    /// (`taskset`) when using this, as the spinning takes them whole.
    #[arg(long)]
    #[serde(default)]
    pub busy_poll: bool,
    /// Make the kernel split GSO bursts instead of reading them coalesced (UDP_GRO). With
    /// GRO (the default) the server's CPU does not pay for segmenting, as with a real NIC.
    #[arg(long)]
    pub no_gro: bool,
    /// Pause after joining, so the server applies every `channel` before media flows (ms).
    #[arg(long, default_value_t = 500)]
    pub settle_ms: u64,
    /// Wait after each step's last send for stragglers before counting (ms).
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// A participant whose media server dies goes back to the dispatcher and rejoins, as
    /// confclient does (the soak); without it the participant is counted as closed early.
    #[arg(long)]
    #[serde(default)]
    pub failover: bool,
    /// Participants join as WebRTC peers (webrtc-rs's DTLS, as a browser does): an offer,
    /// the ICE check, DTLS-SRTP with AES-GCM, then SRTP both ways and consent checks every
    /// 5 s. Audio only (video-like packets go on the audio channel); not with --failover.
    #[arg(long)]
    #[serde(default)]
    pub webrtc: bool,
    /// Join a Janus VideoRoom at this API URL (`http://HOST:PORT/janus`) instead of the
    /// NOC, as WebRTC peers (with --webrtc and --senders 1): participant 0 of each
    /// conference publishes into a room of its own, the others subscribe. Janus must run
    /// with `ice_lite = true` (benches/peers/webrtc/run.sh sets it up).
    #[arg(long, conflicts_with_all = ["dispatcher", "raw"])]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub janus: Option<String>,
    /// With --janus: the address the participants' sockets bind to and name as their host
    /// candidate. Janus's libnice skips loopback, so this is the far end of a veth pair
    /// when Janus gathers on the near one.
    #[arg(long, requires = "janus")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub janus_local: Option<std::net::IpAddr>,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 32)]
    pub join_concurrency: usize,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write one CSV row per step here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Plot latency percentiles and server CPU against offered load (PNG; best with --sweep).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// TrueType font for the plot's text.
    #[arg(long)]
    pub font: Option<PathBuf>,
    /// A raw-baseline JSON from `loadgen --raw` of the same load: adds ratios to it.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Label for this run in tables and JSON (e.g. `noc-mmsg`, `raw`).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadArgs {
    /// Rejects loads that cannot be generated or measured.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Args(m));
        if self.conferences == 0 || self.participants < 2 {
            return bad("need at least 1 conference of at least 2 participants".into());
        }
        if self.senders == 0 || self.senders > self.participants {
            return bad(format!(
                "--senders must be 1..={} (the participants)",
                self.participants
            ));
        }
        if self.duration.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return bad("--duration must be positive".into());
        }
        if !(self.audio_pps >= 0.0 && self.audio_pps.is_finite()) {
            return bad("--audio-pps must be 0 or more".into());
        }
        if !(self.video_pps >= 0.0 && self.video_pps.is_finite()) {
            return bad("--video-pps must be 0 or more".into());
        }
        if self.audio_pps == 0.0 && self.video_pps == 0.0 {
            return bad("--audio-pps or --video-pps must be positive".into());
        }
        // clap checks these among the flags; the file may add the other half.
        if self.sweep && !self.scales.is_empty() {
            return bad("--scales and --sweep exclude each other".into());
        }
        if self.raw.is_some() && self.dispatcher.is_some() {
            return bad("--raw and --dispatcher exclude each other".into());
        }
        if self.scales.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
            return bad("--scales must be positive numbers".into());
        }
        for (flag, size) in [
            ("--audio-size", self.audio_size),
            ("--video-size", self.video_size),
        ] {
            if !(MIN_PACKET..=MAX_PACKET).contains(&size) {
                return bad(format!("{flag} must be {MIN_PACKET}..={MAX_PACKET} bytes"));
            }
        }
        if self.send_threads == 0 || self.recv_threads == 0 || self.join_concurrency == 0 {
            return bad("thread and concurrency counts must be at least 1".into());
        }
        if self.webrtc && (self.failover || self.raw.is_some()) {
            return bad(
                "--webrtc joins through the dispatcher, without --failover or --raw".into(),
            );
        }
        if self.janus.is_some() {
            if self.dispatcher.is_some() || self.raw.is_some() {
                return bad("--janus replaces --dispatcher and --raw".into());
            }
            if self.janus_local.is_none() {
                return bad("--janus needs --janus-local".into());
            }
            if !self.webrtc || self.failover || self.senders != 1 || self.has_video() {
                return bad(
                    "--janus needs --webrtc and --senders 1, without --failover or video".into(),
                );
            }
        }
        if self.server_pid.is_some() && self.metrics.is_some() {
            return bad("give --server-pid or --metrics, not both".into());
        }
        Ok(())
    }

    /// Whether video-like streams are sent.
    pub fn has_video(&self) -> bool {
        self.video_pps > 0.0
    }

    /// The run's label: given, or derived from the target.
    pub fn label(&self) -> String {
        match (&self.label, self.raw, &self.janus) {
            (Some(l), _, _) => l.clone(),
            (None, Some(_), _) => "raw".into(),
            (None, None, Some(_)) => "janus".into(),
            (None, None, None) => "server".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> LoadArgs {
        let mut v = vec!["loadgen", "--dispatcher", "127.0.0.1:3450"];
        v.extend_from_slice(extra);
        LoadArgs::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let a = args(&[]);
        a.validate().unwrap();
        assert_eq!(a.account, "demo");
        assert!(!a.has_video());
        assert_eq!(a.label(), "server");
    }

    #[test]
    fn rejects_impossible_loads() {
        assert!(args(&["--senders", "9"]).validate().is_err());
        assert!(args(&["--participants", "1", "--senders", "1"])
            .validate()
            .is_err());
        assert!(args(&["--video-size", "20"]).validate().is_err());
        assert!(args(&["--duration", "0"]).validate().is_err());
        assert!(args(&["--audio-pps", "0"]).validate().is_err());
        assert!(args(&["--scales", "1,0"]).validate().is_err());
        assert!(LoadArgs::try_parse_from([
            "loadgen",
            "--raw",
            "127.0.0.1:9",
            "--sweep",
            "--scales",
            "1"
        ])
        .is_err());
        assert!(
            args(&["--server-pid", "1", "--metrics", "http://x/metrics"])
                .validate()
                .is_err()
        );
    }

    #[test]
    fn video_only_and_fixed_scales() {
        let a = args(&["--audio-pps", "0", "--video-pps", "100", "--scales", "1,8"]);
        a.validate().unwrap();
        assert!(a.has_video());
        assert_eq!(a.scales, [1.0, 8.0]);
    }

    #[test]
    fn file_and_environment_under_the_flags() {
        let path = std::env::temp_dir().join(format!("loadgen-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "conferences = 3\naudio_pps = 100\nscales = [1, 8]\nlabel = \"file\"\n",
        )
        .unwrap();
        let load = |flags: &[&str], env: &[(&str, &str)]| {
            let argv = ["loadgen", "--dispatcher", "127.0.0.1:3450"];
            settings::parse_from::<LoadArgs, _, _, _, _, _>(
                argv.iter()
                    .chain(["--config", path.to_str().unwrap()].iter())
                    .chain(flags),
                env.iter().copied(),
            )
            .unwrap()
        };
        let a = load(&[], &[("NOC_CONFERENCES", "4")]);
        a.validate().unwrap();
        // The file wins over clap's defaults, the environment over the file.
        assert_eq!((a.conferences, a.audio_pps, a.participants), (4, 100.0, 5));
        assert_eq!(
            (a.scales.as_slice(), a.label()),
            (&[1.0, 8.0][..], "file".into())
        );
        let a = load(&["--conferences", "6"], &[("NOC_CONFERENCES", "4")]);
        assert_eq!(a.conferences, 6);
        // A sweep from the command line and scales from the file are caught after the merge.
        assert!(load(&["--sweep"], &[]).validate().is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn janus_mode_is_one_webrtc_publisher_per_room() {
        let j = |extra: &[&str]| {
            let mut v = vec![
                "loadgen",
                "--janus",
                "http://127.0.0.1:8088/janus",
                "--janus-local",
                "10.0.0.2",
            ];
            v.extend_from_slice(extra);
            LoadArgs::try_parse_from(v)
        };
        let a = j(&["--webrtc", "--senders", "1"]).unwrap();
        a.validate().unwrap();
        assert_eq!(a.label(), "janus");
        assert!(j(&["--senders", "1"]).unwrap().validate().is_err());
        assert!(j(&["--webrtc"]).unwrap().validate().is_err());
        assert!(j(&["--webrtc", "--senders", "1", "--video-pps", "10"])
            .unwrap()
            .validate()
            .is_err());
        assert!(j(&["--webrtc", "--dispatcher", "127.0.0.1:1"]).is_err());
    }

    #[test]
    fn raw_mode_needs_no_dispatcher() {
        let a = LoadArgs::try_parse_from(["loadgen", "--raw", "127.0.0.1:9"]).unwrap();
        a.validate().unwrap();
        assert_eq!(a.label(), "raw");
        assert!(LoadArgs::try_parse_from(["loadgen"]).is_err());
    }
}
