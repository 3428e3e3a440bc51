//! Browsers' video (issue acceptance): page A sends Chromium's fake camera (VP8) into a
//! reflect room. Page B shows it on A's tile, decoding frames of the size A sends, and
//! ffmpeg, joined through `confclient --external-media --video`, decodes the same video as
//! plain RTP from `receive.sdp` (the room's codec, VP8, set by page A): the browser's SRTP
//! comes out unencrypted, in the NOC's payload type.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::chrome::*;
use support::media::{ffmpeg, free_port_block, wait_child, wait_file};
use testkit::harness::{Client, Noc};

/// Sizes and count of the frames ffmpeg's `showinfo` printed.
fn showinfo_frames(log: &str) -> Vec<(u32, u32)> {
    log.lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains(" s:"))
        .filter_map(|l| {
            let s = l.split(" s:").nth(1)?.split_whitespace().next()?;
            let (w, h) = s.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browsers_camera_reaches_another_page_and_ffmpeg() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-video.wav");
    tone_wav(&mic, 440.0, 40);
    let (_driver, port) = chromedriver();
    let a = browser(port, &mic, &scratch("profile-video-a")).await;
    let url = |name: &str, extra: &str| {
        format!(
            "http://{}/join?conference=vid&account=demo&name={name}{extra}",
            noc.http
        )
    };
    // A link joins with the camera on where there is one.
    a.goto(&url("ann", "")).await.unwrap();
    let sa = wait_in_room(&a, Duration::from_secs(20)).await;
    let ann = sa["participant"].clone();

    // The plain-RTP member, as the issue has it (`confclient --external-media DIR --video`,
    // no codec named): it gets the room's VP8 and writes receive.sdp for ffmpeg.
    let dir = scratch("external-video");
    let rx_port = free_port_block();
    let ext = Client::spawn(
        noc.dispatcher,
        "vid",
        "demo",
        "ff",
        &[
            "--external-media",
            dir.to_str().unwrap(),
            "--recv-port",
            &rx_port.to_string(),
            "--video",
        ],
    );
    let sdp_path = dir.join("receive.sdp");
    let sdp = wait_file(&sdp_path, &ext);
    assert!(sdp.contains("VP8/90000"), "{sdp}");
    let log = scratch("ffmpeg-video.log");
    let mut ff = ffmpeg(
        &[
            "-protocol_whitelist",
            "file,udp,rtp",
            "-reorder_queue_size",
            "50",
            "-i",
            sdp_path.to_str().unwrap(),
            "-map",
            "0:v",
            "-t",
            "6",
            "-vf",
            "showinfo",
            "-f",
            "null",
            "-",
        ],
        log.to_str().unwrap(),
    );
    // ffmpeg listens before page B joins: B's arrival asks A for a keyframe, which both get.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let b = browser(port, &mic, &scratch("profile-video-b")).await;
    // Bob sends no camera: ffmpeg's one video stream must carry Ann's alone.
    b.goto(&url("bob", "&camera=off")).await.unwrap();
    wait_in_room(&b, Duration::from_secs(20)).await;

    // B's video slots take retransmissions as RTX: its offer has RTX, the answer declares an
    // RTX SSRC per video slot.
    let remote = b
        .execute("return noc.pc.remoteDescription.sdp;", vec![])
        .await
        .unwrap();
    let remote = remote.as_str().unwrap_or("");
    assert!(
        remote.contains("rtx/90000") && remote.contains("a=ssrc-group:FID "),
        "{remote}"
    );

    // B decodes A's video, at the size A sends, on A's tile, and keeps decoding.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (first, size) = loop {
        let (rx, tx) = (video_stats(&b).await, video_stats(&a).await);
        let tile = b
            .execute("return noc.tileVideo(arguments[0]);", vec![ann.clone()])
            .await
            .unwrap_or(Value::Null);
        let decoded = rx["decoded"].as_u64().unwrap_or(0);
        let got = (rx["w"].as_u64().unwrap_or(0), rx["h"].as_u64().unwrap_or(0));
        let sent = (
            tx["sentW"].as_u64().unwrap_or(0),
            tx["sentH"].as_u64().unwrap_or(1),
        );
        let on_tile = (
            tile["w"].as_u64().unwrap_or(0),
            tile["h"].as_u64().unwrap_or(0),
        );
        if decoded > 10 && got == sent && on_tile == sent {
            break (decoded, sent);
        }
        assert!(
            Instant::now() < deadline,
            "page B: {rx} (tile {tile}); page A sends {tx}\n{:#}",
            page_state(&b).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = video_stats(&b).await["decoded"].as_u64().unwrap_or(0);
    eprintln!(
        "page B decodes A's {}x{}: {first} then {later} frames",
        size.0, size.1
    );
    assert!(
        later >= first + 10,
        "framesDecoded stalled: {first} -> {later}"
    );

    // ffmpeg decoded A's frames from receive.sdp, at a size A sent.
    assert!(
        wait_child(&mut ff, Duration::from_secs(20)),
        "ffmpeg did not finish"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let frames = showinfo_frames(&text);
    eprintln!(
        "ffmpeg decoded {} frames, sizes {:?}",
        frames.len(),
        frames.iter().collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        frames.len() >= 30,
        "ffmpeg decoded {} frames:\n{text}",
        frames.len()
    );
    let sent = video_stats(&a).await;
    let now = (
        sent["sentW"].as_u64().unwrap_or(0) as u32,
        sent["sentH"].as_u64().unwrap_or(0) as u32,
    );
    assert!(
        frames.contains(&now) || frames.contains(&(size.0 as u32, size.1 as u32)),
        "ffmpeg's frames {:?} are not the size A sends ({now:?})",
        frames.last()
    );
    drop(ext);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
