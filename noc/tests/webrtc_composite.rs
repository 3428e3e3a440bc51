//! Browsers in a composite conference (issue 14): two Chromium pages join
//! `/join?...&mode=composite` with their fake cameras. Each page decodes the one 1280x720
//! composite the server makes, on the room's "Everyone" tile, and keeps decoding; a
//! screenshot of the page is left in the scratch directory for a person to look at.

mod support;

use std::time::{Duration, Instant};
use support::chrome::*;
use testkit::harness::Noc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_in_a_composite_conference_decode_the_composite() {
    let noc = Noc::start(&[]);
    let mic = scratch("tone440-composite.wav");
    tone_wav(&mic, 440.0, 40);
    let (_driver, port) = chromedriver();
    let url = |name: &str| {
        format!(
            "http://{}/join?conference=comp&account=demo&name={name}&mode=composite",
            noc.http
        )
    };
    let a = browser(port, &mic, &scratch("profile-composite-a")).await;
    a.goto(&url("ann")).await.unwrap();
    wait_in_room(&a, Duration::from_secs(20)).await;
    let b = browser(port, &mic, &scratch("profile-composite-b")).await;
    b.goto(&url("bob")).await.unwrap();
    wait_in_room(&b, Duration::from_secs(20)).await;

    for (page, name) in [(&b, "bob"), (&a, "ann")] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let first = loop {
            let rx = video_stats(page).await;
            let tile = page
                .execute("return noc.tileVideo(0);", vec![])
                .await
                .unwrap_or_default();
            let decoded = rx["decoded"].as_u64().unwrap_or(0);
            let size = (rx["w"].as_u64().unwrap_or(0), rx["h"].as_u64().unwrap_or(0));
            let on_tile = (
                tile["w"].as_u64().unwrap_or(0),
                tile["h"].as_u64().unwrap_or(0),
            );
            if decoded > 10 && size == (1280, 720) && on_tile == (1280, 720) {
                break decoded;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {rx} (tile {tile})\n{:#}",
                page_state(page).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = video_stats(page).await["decoded"].as_u64().unwrap_or(0);
        eprintln!("{name} decodes the 1280x720 composite: {first} then {later} frames");
        assert!(later >= first + 10, "{name}: framesDecoded stalled");
    }
    let shot = b.screenshot().await.unwrap();
    let path = scratch("composite-page.png");
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot: {}", path.display());
    a.close().await.unwrap();
    b.close().await.unwrap();
}
