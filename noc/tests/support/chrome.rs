//! Headless Chromium for the WebRTC tests: chromedriver, a browser with fake devices
//! (a tone file as its microphone, the fake camera), and what the web client's page
//! (`noc` in its console) says.
#![allow(dead_code)]

use fantoccini::{Client as Browser, ClientBuilder};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver in a process group of its own: dropping it (a test that ends or panics)
/// kills the group, Chromium and its helpers included, so none outlives its test.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// Kills `child`'s process group (it was started with `process_group(0)`) and reaps it.
pub fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) on the negated pid names the child's own group and nothing else.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn chromedriver() -> (Driver, u16) {
    chromedriver_cmd(Command::new("chromedriver"))
}

/// chromedriver and its Chromium as user `nobody` (a firewall rule can then single out
/// the browser's traffic by its owner), with `home` as their home. Its profile must be a
/// [`writable_by_all`] directory too.
pub fn chromedriver_as_nobody(home: &Path) -> (Driver, u16) {
    writable_by_all(home);
    let mut c = Command::new("runuser");
    c.args(["-u", "nobody", "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg("chromedriver");
    chromedriver_cmd(c)
}

/// Creates `dir` for a browser that does not run as root.
pub fn writable_by_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// chromedriver (and the Chromium it starts) inside `peer`'s network namespace; the port
/// returned reaches it from here.
pub fn chromedriver_in(peer: &super::netns::Peer) -> (Driver, u16) {
    // Any port: the namespace holds nothing else.
    let inside = 9515;
    let driver = spawn_driver(peer.command("chromedriver"), inside);
    let port = peer
        .forward(inside, Duration::from_secs(20))
        .expect("chromedriver listens in the namespace");
    (driver, port)
}

fn chromedriver_cmd(cmd: Command) -> (Driver, u16) {
    let port = free_port();
    let driver = spawn_driver(cmd, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, port)
}

/// Starts `cmd` (chromedriver) on `port` in a process group of its own.
fn spawn_driver(mut cmd: Command, port: u16) -> Driver {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (Debian package chromium-driver; `make test` installs it)");
    Driver(child)
}

/// Two seconds of 640x480 noise at 30 frames a second, as Y4M (ffmpeg): a camera picture
/// no encoder can squeeze, so the send rate follows the bandwidth estimate.
pub fn noise_y4m(path: &Path) {
    let ok = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=640x480:rate=30,noise=alls=80:allf=t+u")
        .args(["-t", "2", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .expect("ffmpeg runs")
        .success();
    assert!(ok, "ffmpeg made no Y4M");
}

/// A 48 kHz mono WAV of a sine at `hz`, -12 dBFS, `secs` long: the fake microphone.
pub fn tone_wav(path: &Path, hz: f64, secs: u32) {
    let mut sine = client::tone::Sine::new(hz, -12.0, 48_000);
    let mut pcm = vec![0i16; 48_000 * secs as usize];
    sine.fill(&mut pcm);
    let mut w = Vec::with_capacity(44 + pcm.len() * 2);
    let data = (pcm.len() * 2) as u32;
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&48_000u32.to_le_bytes());
    w.extend_from_slice(&96_000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for s in pcm {
        w.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, w).unwrap();
}

pub async fn browser(port: u16, mic: &Path, profile: &Path) -> Browser {
    browser_with(port, mic, None, profile).await
}

/// [`browser`] whose fake camera plays `camera` (a Y4M file) instead of its animation.
pub async fn browser_with(port: u16, mic: &Path, camera: Option<&Path>, profile: &Path) -> Browser {
    browser_args(port, mic, camera, profile, &[]).await
}

/// [`browser_with`] with `extra` command-line switches.
pub async fn browser_args(
    port: u16,
    mic: &Path,
    camera: Option<&Path>,
    profile: &Path,
    extra: &[&str],
) -> Browser {
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--window-size=1280,800".into(),
        "--use-fake-ui-for-media-stream".into(),
        "--use-fake-device-for-media-stream".into(),
        format!("--use-file-for-fake-audio-capture={}", mic.display()),
        "--allow-loopback-in-peer-connection".into(),
        "--disable-features=WebRtcHideLocalIpsWithMdns".into(),
        "--autoplay-policy=no-user-gesture-required".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if let Some(c) = camera {
        args.push(format!("--use-file-for-fake-video-capture={}", c.display()));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let caps = json!({
        "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

pub async fn page_state(b: &Browser) -> Value {
    b.execute(
        "return {phase: noc.phase, participant: noc.participant, f440: noc.audio.f440, \
         f550: noc.audio.f550, f660: noc.audio.f660, f770: noc.audio.f770, \
         frames: noc.audio.frames, joins: noc.joins, server: noc.server, slots: noc.slots, \
         log: noc.log.slice(-20)};",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

/// Audio packets and bytes the page's PeerConnection received (getStats `inbound-rtp`).
pub async fn inbound_audio(b: &Browser) -> (u64, u64) {
    let v = b
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             if (!noc.pc) { done([0, 0]); return; }\
             noc.pc.getStats().then((r) => { let p = 0, n = 0;\
               r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') {\
                 p += s.packetsReceived; n += s.bytesReceived; } });\
               done([p, n]); });",
            vec![],
        )
        .await
        .unwrap();
    (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0))
}

pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("webrtc-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Waits until the page's PeerConnection is connected (ICE and DTLS done).
pub async fn wait_in_room(b: &Browser, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = page_state(b).await;
        if s["phase"] == "in-room" {
            return s;
        }
        assert!(Instant::now() < deadline, "the page did not connect: {s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's video, from getStats: (frames decoded, width, height) of what it receives,
/// summed over its slots (the size of the busiest), and (width, height) of what it sends.
pub async fn video_stats(b: &Browser) -> Value {
    b.execute_async(
        "const done = arguments[arguments.length - 1];\
         if (!noc.pc) { done(null); return; }\
         noc.pc.getStats().then((r) => { const v = {decoded: 0, w: 0, h: 0, sentW: 0, sentH: 0, sent: 0, best: -1};\
           r.forEach((s) => {\
             if (s.type === 'inbound-rtp' && s.kind === 'video') {\
               v.decoded += s.framesDecoded || 0;\
               if ((s.framesDecoded || 0) > v.best) { v.best = s.framesDecoded || 0; v.w = s.frameWidth || 0; v.h = s.frameHeight || 0; } }\
             if (s.type === 'outbound-rtp' && s.kind === 'video') {\
               v.sent += s.framesEncoded || 0; v.sentW = s.frameWidth || 0; v.sentH = s.frameHeight || 0; } });\
           done(v); });",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}
