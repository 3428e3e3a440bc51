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

/// ffmpeg output options that encode its video input as `vcodec` (`h264` or `vp8`) and send
/// it as RTP to the video address in a confclient's `send.txt`.
pub fn video_out(send_txt: &str, vcodec: &str) -> Vec<String> {
    let codec: &[&str] = match vcodec {
        "vp8" => &[
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "600k",
        ],
        _ => &[
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ],
    };
    let rtp = [
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
    ];
    codec.iter().chain(&rtp).map(|s| s.to_string()).collect()
}

/// ffmpeg output options that encode its audio input as Opus and send it as RTP to the
/// audio address in a confclient's `send.txt`.
pub fn opus_out(send_txt: &str) -> Vec<String> {
    [
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// ffmpeg reading `seconds` of a lavfi source in real time, then `out`.
fn send_lavfi(source: &str, seconds: u32, out: Vec<String>, log: &str) -> Child {
    let mut args: Vec<String> = ["-re", "-f", "lavfi", "-i", source, "-t"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(seconds.to_string());
    args.extend(out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&args, log)
}

/// ffmpeg sending `seconds` of a 640x360 picture of one colour (lavfi `color=`, as
/// `0xRRGGBB`) in `vcodec` to the address in a confclient's `send.txt`.
pub fn send_picture(send_txt: &str, vcodec: &str, colour: &str, seconds: u32, log: &str) -> Child {
    let source = format!("color=c={colour}:size=640x360:rate=25");
    send_lavfi(&source, seconds, video_out(send_txt, vcodec), log)
}

/// [`send_picture`] in H.264.
pub fn send_video(send_txt: &str, colour: &str, seconds: u32, log: &str) -> Child {
    send_picture(send_txt, "h264", colour, seconds, log)
}

/// ffmpeg sending `seconds` of a sine tone as Opus to the address in a confclient's
/// `send.txt`.
pub fn send_tone(send_txt: &str, tone: f64, seconds: u32, log: &str) -> Child {
    let source = format!("sine=frequency={tone}:sample_rate=48000");
    send_lavfi(&source, seconds, opus_out(send_txt), log)
}

/// ffmpeg recording what a member's `receive.sdp` describes for `seconds`: the audio as a
/// mono WAV to `wav` (when given) and the video, as it came, to `video`.
pub fn receive(
    sdp: &std::path::Path,
    wav: Option<&str>,
    video: &str,
    seconds: f64,
    log: &str,
) -> Child {
    let secs = seconds.to_string();
    let mut args = vec![
        "-protocol_whitelist",
        "file,udp,rtp",
        "-reorder_queue_size",
        "100",
        "-i",
        sdp.to_str().expect("utf-8 path"),
    ];
    if let Some(wav) = wav {
        args.extend_from_slice(&[
            "-map",
            "0:a",
            "-t",
            &secs,
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            "-y",
            wav,
        ]);
    }
    args.extend_from_slice(&["-map", "0:v", "-t", &secs, "-c:v", "copy", "-y", video]);
    ffmpeg(&args, log)
}

/// Decodes a whole video file: the frames decoded and ffmpeg's error output (empty when
/// clean).
pub fn decoded_frames(video: &str) -> (usize, String) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i", video])
        .args(["-f", "framecrc", "-"])
        .output()
        .expect("ffmpeg runs");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    (frames, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The last picture of a video file (from its last 3 s) as raw 4:2:0, scaled to
/// `size` (`WxH`) when given, written to `raw` and read back.
pub fn last_picture(video: &str, size: Option<&str>, raw: &str) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-sseof",
        "-3",
        "-i",
        video,
        "-an",
    ]);
    if let Some(s) = size {
        cmd.args(["-s", s]);
    }
    // Every frame of the last 3 s overwrites the one before (`-update 1`): the file's end
    // may be audio only (video that stalled or ended early), so a shorter window can hold
    // no picture at all.
    let ok = cmd
        .args(["-pix_fmt", "yuv420p", "-c:v", "rawvideo"])
        .args(["-f", "image2", "-update", "1", "-y", raw])
        .status()
        .expect("ffmpeg runs");
    assert!(ok.success(), "no last picture in {video}");
    std::fs::read(raw).expect("the raw picture")
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

/// The media servers' `noc_media_composite_latency_seconds` histograms added up:
/// (pictures counted, p50 and p99 as the upper bounds of their buckets, in ms; `inf`
/// past the last). For the latency figure in docs/benchmarks.md, not a timing assert.
pub fn composite_latency(noc: &testkit::harness::Noc) -> (u64, f64, f64) {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for text in media_metrics(noc) {
        for l in text.lines() {
            let Some(rest) = l.strip_prefix("noc_media_composite_latency_seconds_bucket{le=\"")
            else {
                continue;
            };
            let Some((le, n)) = rest.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("a bucket bound")
            };
            let n: u64 = n.trim().parse().expect("a bucket count");
            match buckets.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += n,
                None => buckets.push((le, n)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0, |b| b.1);
    // Cumulative counts: the first bound holding the quantile's share.
    let q = |share: f64| {
        let want = (total as f64 * share).ceil() as u64;
        buckets
            .iter()
            .find(|b| b.1 >= want)
            .map_or(f64::NAN, |b| b.0 * 1000.0)
    };
    (total, q(0.5), q(0.99))
}

/// Each media server's `/metrics` page.
pub fn media_metrics(noc: &testkit::harness::Noc) -> Vec<String> {
    noc.metrics
        .iter()
        .map(|(_, url)| {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .parse()
                .expect("a metrics address");
            testkit::harness::http_get(addr, "/metrics")
        })
        .collect()
}
