//! Plain-RTP peers for the end-to-end tests: UDP port blocks and ffmpeg children.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An even port P with P..P+3 free on 127.0.0.1 (RTP and RTCP of audio and video).
pub fn free_port_block() -> u16 {
    free_ports(4)
}

/// An even port P with P..P+n free on 127.0.0.1, below the kernel's ephemeral range: no
/// socket bound to port 0 anywhere on the machine can take one of them between this check
/// and the child that binds them (coturn's relay ports once lost that race on a busy
/// machine). The start is random, so tests running side by side pick different blocks.
pub fn free_ports(n: u16) -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (lo, hi) = (10_000u16, ephemeral.saturating_sub(n + 2).max(10_002));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16);
    for _ in 0..200 {
        // xorshift: a fresh start per try.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let p = (lo + (seed % u32::from(hi - lo)) as u16) & !1;
        let held: Vec<_> = (p..p + n)
            .map(|q| UdpSocket::bind(("127.0.0.1", q)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return p;
        }
    }
    panic!("no block of {n} free UDP ports");
}

/// An ffmpeg child whose stderr goes to a file (its logs are long).
pub fn ffmpeg(args: &[&str], log: &str) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "info"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("ffmpeg runs (Debian's ffmpeg; `make test` installs it)")
}

/// Waits for a child, killing it after `timeout`; true if it exited by itself.
pub fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait works").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The level (dBFS) of each of `tones` (Hz) in a WAV a confclient recorded, over
/// `seconds` after the first 1.5 s.
pub fn wav_tones(path: &std::path::Path, seconds: f64, tones: &[f64]) -> Vec<f64> {
    use client::tone::{read_wav, ToneAnalysis, Window};
    let (samples, rate) = read_wav(path).expect("the confclient's WAV");
    let t = ToneAnalysis::new(
        &samples,
        rate,
        Window {
            skip: 1.5,
            duration: seconds,
            block: 0.1,
        },
    )
    .expect("a WAV long enough");
    tones.iter().map(|&hz| t.level_db(hz)).collect()
}

/// Waits for `path` to exist (written whole by the client) and returns its text.
pub fn wait_file(path: &std::path::Path, who: &testkit::harness::Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared: {:?} {:?}",
            path.display(),
            who.stdout.all(),
            who.stderr.all()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A coturn TURN server on 127.0.0.1 (Debian's `coturn`), for browsers forced to relay.
/// It checks TURN REST credentials made with `secret` and relays to loopback peers.
pub struct Turn {
    child: Child,
    pub port: u16,
    /// The ports it relays from.
    pub relay: std::ops::RangeInclusive<u16>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many ports coturn may relay from.
const RELAY_PORTS: u16 = 16;

impl Turn {
    pub fn start(secret: &str, dir: &std::path::Path) -> Turn {
        std::fs::create_dir_all(dir).expect("turn dir");
        let port = free_port_block();
        let relay = free_ports(RELAY_PORTS);
        let log = std::fs::File::create(dir.join("turnserver.log")).expect("log");
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            // Relay ports of our own, free a moment ago.
            .arg(format!("--min-port={relay}"))
            .arg(format!("--max-port={}", relay + RELAY_PORTS - 1))
            .args(["--use-auth-secret", "--realm=noc.test"])
            .arg(format!("--static-auth-secret={secret}"))
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
            ])
            .args(["--log-file=stdout", "--simple-log"])
            .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
            .arg(format!("--userdb={}", dir.join("turndb").display()))
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver runs (Debian package coturn; `make test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Listening: a UDP socket on its port can no longer be bound.
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "turnserver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Turn {
            child,
            port,
            relay: relay..=relay + RELAY_PORTS - 1,
        }
    }
}

/// The value of `key=` in a confclient's `send.txt`.
pub fn field<'a>(send_txt: &'a str, key: &str) -> &'a str {
    send_txt
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in send.txt:\n{send_txt}"))
}

/// A log file's text (empty when it is missing).
pub fn log_of(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// ffmpeg sending `seconds` of a 640x360 H.264 picture of one colour (lavfi `color=`, as
/// `0xRRGGBB`) to the address in a confclient's `send.txt`.
pub fn send_video(send_txt: &str, colour: &str, seconds: u32, log: &str) -> Child {
    ffmpeg(
        &[
            "-re",
            "-f",
            "lavfi",
            "-i",
            &format!("color=c={colour}:size=640x360:rate=25"),
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-payload_type",
            field(send_txt, "video_payload_type"),
            "-ssrc",
            field(send_txt, "video_ssrc"),
            "-f",
            "rtp",
            field(send_txt, "video_target"),
        ],
        log,
    )
}

/// ffmpeg sending `seconds` of a sine tone as Opus to the address in a confclient's
/// `send.txt`.
pub fn send_tone(send_txt: &str, tone: f64, seconds: u32, log: &str) -> Child {
    ffmpeg(
        &[
            "-re",
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency={tone}:sample_rate=48000"),
            "-t",
            &seconds.to_string(),
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-frame_duration",
            "20",
            "-application",
            "audio",
            "-payload_type",
            field(send_txt, "audio_payload_type"),
            "-ssrc",
            field(send_txt, "audio_ssrc"),
            "-f",
            "rtp",
            field(send_txt, "audio_target"),
        ],
        log,
    )
}

/// Children killed when this goes out of scope, a failed assertion included: a sender left
/// running would load the machine for the tests after it.
#[derive(Default)]
pub struct Reaper(pub Vec<Child>);

impl Reaper {
    pub fn push(&mut self, c: Child) {
        self.0.push(c);
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
