//! Recording (issue 14): conferences recorded through the admin API and a moderator's
//! `record` line into the media server's `--recordings` directory, read back with Debian's
//! ffprobe and ffmpeg: the streams and their length, every sender's tone, the senders'
//! colours in the composite, flash-to-beep sync, a kill -9 in the middle, and audio-only
//! conferences in Ogg.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::harness::{http, http_post, Client, Noc, TempDir};

mod support;
use support::media::{
    ffmpeg, free_port_block, log_of, media_metrics, opus_out, send_tone, send_video, video_out,
    wait_file, wav_tones, Reaper,
};

const TOKEN: &str = "recording-test-token";
const PIN: &str = "4711";

/// A noc with a moderator PIN on `demo`, a known admin token and `dir` for recordings.
fn noc(tmp: &TempDir, dir: &Path) -> Noc {
    let cfg = tmp.file("noc.toml");
    std::fs::write(
        &cfg,
        format!("[[accounts]]\ncode = \"demo\"\ncustomer = \"Demo\"\nmoderator_pin = \"{PIN}\"\n"),
    )
    .unwrap();
    Noc::start(&[
        "--config",
        &cfg,
        "--admin-token",
        TOKEN,
        "--recordings",
        dir.to_str().expect("utf-8 path"),
    ])
}

/// A plain-RTP member whose media ffmpeg sends; `n` makes its SSRCs its own.
fn member(noc: &Noc, conf: &str, mode: &str, dir: &Path, n: usize, video: bool) -> Client {
    let port = free_port_block().to_string();
    let ssrc = (7000 + 10 * n).to_string();
    let name = format!("tx{n}");
    let mut args = vec![
        "--mode",
        mode,
        "--external-media",
        dir.to_str().expect("utf-8 path"),
        "--recv-port",
        &port,
        "--ssrc",
        &ssrc,
    ];
    if video {
        args.push("--video");
    }
    Client::spawn(noc.dispatcher, conf, "demo", &name, &args)
}

fn start(noc: &Noc, conf: &str) {
    let path = format!("/api/admin/conferences/{conf}/recording");
    let (status, body) = http_post(noc.http, &path, TOKEN, "");
    assert_eq!(status, 200, "{body}");
}

fn stop(noc: &Noc, conf: &str) -> u16 {
    let addr = noc.http;
    let (status, _, body) = http(
        addr,
        &format!(
            "DELETE /api/admin/conferences/{conf}/recording HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        ),
    );
    assert!(status == 200 || status == 404, "{status} {body}");
    status
}

/// The one recording of `conf` the dispatcher lists, once `done` holds for it.
fn listed(noc: &Noc, conf: &str, done: bool) -> Value {
    let list = noc.wait_api("/api/recordings", Duration::from_secs(10), |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["conference"] == conf && r["stopped_unix_ms"].is_u64() == done)
        })
    });
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["conference"] == conf)
        .cloned()
        .unwrap()
}

/// ffprobe's streams: (codec_type, codec_name, duration in s from the packets).
fn streams(file: &Path) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for kind in ["a", "v"] {
        let o = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", kind])
            .args([
                "-show_entries",
                "stream=codec_type,codec_name:packet=pts_time",
            ])
            .args(["-of", "csv=p=0"])
            .arg(file)
            .output()
            .expect("ffprobe runs");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let mut name = None;
        let mut last: f64 = 0.0;
        let mut first = f64::MAX;
        for l in text.lines() {
            let f: Vec<&str> = l.split(',').filter(|x| !x.is_empty()).collect();
            match f.as_slice() {
                [n, t] if t.parse::<f64>().is_err() => name = Some((t.to_string(), n.to_string())),
                [t] => {
                    if let Ok(t) = t.parse::<f64>() {
                        last = last.max(t);
                        first = first.min(t);
                    }
                }
                _ => {}
            }
        }
        if let Some((t, n)) = name {
            out.push((t, n, (last - first.min(last)).max(0.0)));
        }
    }
    out
}

/// Decodes the whole file; ffmpeg's error output (empty when clean).
fn decode_errors(file: &Path) -> String {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The audio of `file` as a mono 48 kHz WAV.
fn audio_wav(file: &Path, out: &str) {
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:a",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-c:a",
            "pcm_s16le",
            "-y",
            out,
        ])
        .status()
        .expect("ffmpeg runs");
    assert!(ok.success());
}

/// Mean (Y, U, V) of a rectangle of a picture `at` seconds into `file`, 1280x720.
fn colour_at(
    file: &Path,
    at: f64,
    rect: (usize, usize, usize, usize),
    raw: &str,
) -> (f64, f64, f64) {
    let ok = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-ss",
            &at.to_string(),
            "-i",
        ])
        .arg(file)
        .args([
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-y",
            raw,
        ])
        .status()
        .expect("ffmpeg runs");
    assert!(ok.success());
    let yuv = std::fs::read(raw).unwrap();
    let (w, h) = (1280, 720);
    assert_eq!(yuv.len(), w * h * 3 / 2, "a 1280x720 picture");
    let (x, y, rw, rh) = rect;
    let (mut sy, mut su, mut sv) = (0u64, 0u64, 0u64);
    for r in y..y + rh {
        for c in x..x + rw {
            sy += u64::from(yuv[r * w + c]);
            su += u64::from(yuv[w * h + (r / 2) * (w / 2) + c / 2]);
            sv += u64::from(yuv[w * h * 5 / 4 + (r / 2) * (w / 2) + c / 2]);
        }
    }
    let n = (rw * rh) as f64;
    (sy as f64 / n, su as f64 / n, sv as f64 / n)
}

/// A sender's colour for lavfi and its BT.601 limited-range (Y, U, V).
type Picture = (&'static str, (f64, f64, f64));

fn stop_all(children: Reaper) {
    drop(children);
}

/// Three tone senders, two of them with a picture, in a `mix` conference (which forwards
/// video: the server composites it for the recording alone). 20 s recorded through the
/// admin API: one audio and one video stream of about 20 s, every tone, both colours, and
/// a sidecar naming everyone.
#[test]
fn a_mixed_conference_records_every_tone_and_both_pictures() {
    let tmp = TempDir::new("recording-mix");
    let dir = tmp.path().join("recordings");
    let noc = noc(&tmp, &dir);
    let senders: [(Option<Picture>, f64); 3] = [
        (Some(("0xFF0000", (81.0, 90.0, 240.0))), 400.0),
        (Some(("0x0000FF", (41.0, 240.0, 110.0))), 700.0),
        (None, 1000.0),
    ];
    let mut clients = Vec::new();
    let mut media = Reaper::default();
    for (i, (picture, tone)) in senders.iter().enumerate() {
        let d = tmp.path().join(format!("tx{i}"));
        let c = member(&noc, "rec", "mix", &d, i, picture.is_some());
        let txt = wait_file(&d.join("send.txt"), &c);
        media.push(send_tone(&txt, *tone, 40, &tmp.file(&format!("a{i}.log"))));
        if let Some((colour, _)) = picture {
            media.push(send_video(
                &txt,
                colour,
                40,
                &tmp.file(&format!("v{i}.log")),
            ));
        }
        clients.push(c);
    }
    std::thread::sleep(Duration::from_secs(2));
    start(&noc, "rec");
    // Starting again changes nothing.
    start(&noc, "rec");
    let started = listed(&noc, "rec", false);
    assert!(
        clients[0]
            .stdout
            .wait_for("recording on", Duration::from_secs(5))
            .is_some(),
        "members are told: {:?}",
        clients[0].stdout.all()
    );
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(stop(&noc, "rec"), 200);
    let done = listed(&noc, "rec", true);
    stop_all(media);
    assert_eq!(started["file"], done["file"]);
    let file = PathBuf::from(done["file"].as_str().expect("a file"));
    assert!(file.starts_with(&dir), "{file:?} not in {dir:?}");
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("mkv"));
    let secs = done["seconds"].as_f64().unwrap();
    assert!((19.0..=22.0).contains(&secs), "{done}");

    // The file is finished a moment after the stop.
    std::thread::sleep(Duration::from_secs(1));
    let s = streams(&file);
    eprintln!("streams: {s:?}");
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(
        (s[0].0.as_str(), s[0].1.as_str()),
        ("audio", "opus"),
        "{s:?}"
    );
    assert_eq!(
        (s[1].0.as_str(), s[1].1.as_str()),
        ("video", "h264"),
        "{s:?}"
    );
    for (_, _, d) in &s {
        assert!((18.5..=21.0).contains(d), "{s:?}");
    }
    let errors = decode_errors(&file);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");

    let wav = tmp.file("rec.wav");
    audio_wav(&file, &wav);
    let levels = wav_tones(Path::new(&wav), 15.0, &[400.0, 700.0, 1000.0]);
    eprintln!("tone levels (dBFS): {levels:?}");
    for (hz, db) in [400.0, 700.0, 1000.0].iter().zip(&levels) {
        assert!(*db > -40.0, "{hz} Hz at {db} dBFS: {levels:?}");
    }

    // Two pictures: the top quadrants of a 2x2 grid, in join order.
    let raw = tmp.file("frame.yuv");
    for (i, (x, y)) in [(0, 0), (640, 0)].into_iter().enumerate() {
        let m = colour_at(&file, 15.0, (x + 160, y + 90, 320, 180), &raw);
        let want = senders[i].0.unwrap().1;
        let off = (m.0 - want.0)
            .abs()
            .max((m.1 - want.1).abs())
            .max((m.2 - want.2).abs());
        assert!(off < 14.0, "tile {i}: {m:?}, want {want:?}");
    }

    let sidecar: Value = serde_json::from_str(
        &std::fs::read_to_string(file.with_extension("json")).expect("the sidecar"),
    )
    .expect("sidecar JSON");
    assert_eq!(sidecar["complete"], true, "{sidecar}");
    let names: Vec<&str> = sidecar["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{sidecar}");
    assert!(
        !sidecar["speaking"].as_array().unwrap().is_empty(),
        "the tones are talkers: {sidecar}"
    );
    let events = noc.api("/api/events");
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"recording-started"), "{kinds:?}");
    assert!(kinds.contains(&"recording-stopped"), "{kinds:?}");
}

/// Onsets (s) where a signal crosses `high` after at least 300 ms under `low`.
fn onsets(samples: impl Iterator<Item = (f64, f64)>, low: f64, high: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut quiet_since: Option<f64> = Some(f64::MIN);
    for (t, v) in samples {
        if v < low {
            quiet_since.get_or_insert(t);
        } else if v > high {
            if quiet_since.is_some_and(|q| t - q >= 0.3) {
                out.push(t);
            }
            quiet_since = None;
        }
    }
    out
}

/// One sender flashes white and beeps at the same moments (one ffmpeg, one lavfi clock) in
/// a composite conference recorded from a moderator's `record on` line: in the file, every
/// beep onset is within 80 ms of a flash.
#[test]
fn flashes_and_beeps_stay_together_in_the_recording() {
    flash_and_beep("composite");
}

/// The same in a reflect room, whose recording has a mixer and a composite of its own.
#[test]
fn flashes_and_beeps_stay_together_in_a_reflect_rooms_recording() {
    flash_and_beep("reflect");
}

fn flash_and_beep(mode: &str) {
    let tmp = TempDir::new(&format!("recording-sync-{mode}"));
    let dir = tmp.path().join("recordings");
    let noc = noc(&tmp, &dir);
    let d = tmp.path().join("tx");
    let c = member(&noc, "sync", mode, &d, 0, true);
    let txt = wait_file(&d.join("send.txt"), &c);
    let log = tmp.file("flash.log");
    // One ffmpeg, one lavfi clock for both: the flash and the beep leave it together.
    let mut args: Vec<String> = [
        "-re",
        "-f",
        "lavfi",
        "-i",
        "color=c=black:size=640x360:rate=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t\\,1)\\,0.1)'",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000,volume=volume='if(lt(mod(t\\,1)\\,0.1)\\,1\\,0)':eval=frame",
        "-t",
        "30",
        "-map",
        "0:v",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(video_out(&txt, "h264"));
    args.extend(["-map".to_string(), "1:a".to_string()]);
    args.extend(opus_out(&txt));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flash = Reaper(vec![ffmpeg(&args, &log)]);
    // A moderator starts it with its control line.
    let mut moderator = Client::spawn(
        noc.dispatcher,
        "sync",
        "demo",
        "mod",
        &[
            "--mode",
            mode,
            "--moderator-pin",
            PIN,
            "--duration",
            "16",
            "--command",
            "2:record on,14:record off",
        ],
    );
    let done = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = noc.api("/api/recordings");
            if let Some(r) = v
                .as_array()
                .and_then(|a| a.iter().find(|r| r["stopped_unix_ms"].is_u64()).cloned())
            {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "no finished recording: {v}\n{:?}\n{:?}\n{}",
                moderator.stdout.all(),
                moderator.stderr.all(),
                log_of(&log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let _ = moderator.wait(Duration::from_secs(10));
    stop_all(flash);
    std::thread::sleep(Duration::from_secs(1));
    let file = PathBuf::from(done["file"].as_str().unwrap());

    // Flash onsets: frames whose mean luma jumps up, by their timestamps.
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("movie={},signalstats", file.display()))
        .args([
            "-show_entries",
            "frame=best_effort_timestamp_time:frame_tags=lavfi.signalstats.YAVG",
            "-of",
            "csv=p=0",
        ])
        .output()
        .expect("ffprobe runs");
    let frames: Vec<(f64, f64)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    assert!(
        frames.len() > 200,
        "{} frames: {}",
        frames.len(),
        String::from_utf8_lossy(&o.stderr)
    );
    let flashes = onsets(frames.iter().copied(), 40.0, 120.0);

    // Beep onsets: 2 ms windows of the decoded audio.
    let wav = tmp.file("sync.wav");
    audio_wav(&file, &wav);
    let (samples, rate) = client::tone::read_wav(Path::new(&wav)).expect("wav");
    let first_audio = {
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "a",
                "-show_entries",
                "packet=pts_time",
            ])
            .args(["-read_intervals", "%+#1", "-of", "csv=p=0"])
            .arg(&file)
            .output()
            .expect("ffprobe runs");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let win = (rate as usize) / 500;
    let rms = samples.chunks(win).enumerate().map(|(i, c)| {
        let e = c.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / c.len() as f64;
        (first_audio + (i * win) as f64 / f64::from(rate), e.sqrt())
    });
    let mut beeps = onsets(rms, 300.0, 2000.0);
    // Beeps from before the sender's first picture reached the composite have no flash to
    // be measured against (the file starts on the compositor's first keyframe).
    let first_flash = flashes.first().copied().unwrap_or(f64::MAX);
    beeps.retain(|&b| b > first_flash - 0.5);
    eprintln!("flashes: {flashes:?}\nbeeps: {beeps:?}");
    assert!(beeps.len() >= 8, "beeps: {beeps:?}");
    let mut worst: f64 = 0.0;
    for b in &beeps {
        let nearest = flashes
            .iter()
            .map(|f| (f - b).abs())
            .fold(f64::MAX, f64::min);
        worst = worst.max(nearest);
    }
    eprintln!(
        "{mode}: worst beep-to-flash offset: {:.0} ms",
        worst * 1000.0
    );
    assert!(
        worst < 0.080,
        "a beep {:.0} ms from its flash",
        worst * 1000.0
    );
}

/// kill -9 in the middle of a recording: the Matroska file on disk still plays, with both
/// streams, up to about the kill.
#[test]
fn a_killed_server_leaves_a_recording_that_plays() {
    let tmp = TempDir::new("recording-kill");
    let dir = tmp.path().join("recordings");
    let mut noc = noc(&tmp, &dir);
    let d = tmp.path().join("tx");
    let c = member(&noc, "crash", "composite", &d, 0, true);
    let txt = wait_file(&d.join("send.txt"), &c);
    let media = Reaper(vec![
        send_video(&txt, "0x00FF00", 30, &tmp.file("v.log")),
        send_tone(&txt, 500.0, 30, &tmp.file("a.log")),
    ]);
    std::thread::sleep(Duration::from_secs(1));
    start(&noc, "crash");
    let file = PathBuf::from(listed(&noc, "crash", false)["file"].as_str().unwrap());
    std::thread::sleep(Duration::from_secs(7));
    noc.kill9();
    stop_all(media);
    let s = streams(&file);
    eprintln!("after kill -9: {s:?}");
    assert_eq!(s.len(), 2, "{s:?}");
    for (_, _, d) in &s {
        assert!(*d >= 4.0, "only {d} s readable: {s:?}");
    }
    let errors = decode_errors(&file);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(file.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["complete"], false, "{sidecar}");
}

/// A reflect conference of two confclient tones, no video: the server mixes for the
/// recording alone, into Ogg/Opus with both tones. A recording of an unknown conference is
/// refused.
#[test]
fn an_audio_only_reflect_conference_records_to_ogg() {
    let tmp = TempDir::new("recording-ogg");
    let dir = tmp.path().join("recordings");
    let noc = noc(&tmp, &dir);
    let (status, _) = http_post(
        noc.http,
        "/api/admin/conferences/nosuch/recording",
        TOKEN,
        "",
    );
    assert_eq!(status, 404);
    let clients: Vec<Client> = [(440.0, "a"), (880.0, "b")]
        .iter()
        .map(|(hz, name)| {
            Client::spawn(
                noc.dispatcher,
                "talk",
                "demo",
                name,
                &[
                    "--mode",
                    "reflect",
                    "--tone",
                    &hz.to_string(),
                    "--duration",
                    "14",
                ],
            )
        })
        .collect();
    for c in &clients {
        c.stdout
            .wait_for("accept ", Duration::from_secs(15))
            .expect("accepted");
    }
    std::thread::sleep(Duration::from_secs(1));
    start(&noc, "talk");
    std::thread::sleep(Duration::from_secs(8));
    stop(&noc, "talk");
    let done = listed(&noc, "talk", true);
    std::thread::sleep(Duration::from_secs(1));
    let file = PathBuf::from(done["file"].as_str().unwrap());
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("ogg"));
    let s = streams(&file);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].0.as_str(), s[0].1.as_str()), ("audio", "opus"));
    assert!((7.0..=9.5).contains(&s[0].2), "{s:?}");
    let wav = tmp.file("talk.wav");
    audio_wav(&file, &wav);
    let levels = wav_tones(Path::new(&wav), 5.0, &[440.0, 880.0]);
    eprintln!("tone levels (dBFS): {levels:?}");
    assert!(levels.iter().all(|&db| db > -40.0), "{levels:?}");
    // The media servers count it.
    let started: u64 = media_metrics(&noc)
        .iter()
        .map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("noc_media_recordings_started_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(started, 1);
}
