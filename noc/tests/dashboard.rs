//! The operators' dashboard in a real browser: Debian's Chromium driven through
//! chromedriver (WebDriver), against a real `noc` with real clients.

mod support;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::json;
use std::time::{Duration, Instant};
use support::chrome::chromedriver;
use testkit::harness::{Client, Noc};

const TOKEN: &str = "dashboard-test-token";

async fn browser(port: u16) -> Browser {
    // One profile per browser: tests in this binary run at once.
    let profile = std::env::temp_dir().join(format!("noc-chromium-{}-{port}", std::process::id()));
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--window-size=1500,1200",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

/// Polls `f` until it returns `Some`, failing with `what` after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text(b: &Browser, css: &str) -> Option<String> {
    let e = b.find(Locator::Css(css)).await.ok()?;
    e.text().await.ok()
}

/// Issue acceptance: two media servers, one conference of three in the rendered DOM with
/// non-zero packet rates; a drain clicked on the page turns the server to draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_noc_and_drains_a_server() {
    let noc = Noc::start(&["--admin-token", TOKEN]);
    let mut clients: Vec<Client> = [("ann", "440"), ("bob", "660"), ("cat", "880")]
        .iter()
        .map(|(n, hz)| {
            Client::spawn(
                noc.dispatcher,
                "xyz",
                "demo",
                n,
                &["--tone", hz, "--duration", "40"],
            )
        })
        .collect();
    noc.wait_api("/api/conferences", Duration::from_secs(15), |v| {
        v[0]["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 3)
    });
    let host = noc.server_of("xyz").expect("xyz placed");

    let (_driver, port) = chromedriver();
    let b = browser(port).await;
    b.goto(&format!("http://{}/", noc.http)).await.unwrap();

    for (id, _) in &noc.media_servers {
        let css = format!("#servers tr[data-server='{id}'] td.state");
        let state = eventually(Duration::from_secs(10), &format!("row of {id}"), || {
            text(&b, &css)
        })
        .await;
        assert_eq!(state, "in-service");
    }
    let count = eventually(Duration::from_secs(10), "the conference row", || {
        text(&b, "#conferences tr[data-conference='xyz'] td.participants")
    })
    .await;
    assert_eq!(count, "3");
    let names = text(&b, "#conferences tr[data-conference='xyz'] .people")
        .await
        .unwrap();
    for n in ["ann", "bob", "cat"] {
        assert!(names.contains(n), "{names}");
    }
    let server_cell = text(&b, "#conferences tr[data-conference='xyz'] td.server")
        .await
        .unwrap();
    assert_eq!(server_cell, host);
    // Packets flow: the host's packet rate becomes non-zero (reports come every second).
    let pps_css = format!("#servers tr[data-server='{host}'] td.pps");
    eventually(
        Duration::from_secs(10),
        "a non-zero packet rate",
        || async { text(&b, &pps_css).await.filter(|t| t != "0") },
    )
    .await;
    let live = text(&b, "#live-text").await.unwrap();
    assert_eq!(live, "Live", "the page is not on live updates");

    // Drain from the page, as an operator: token first, then the button.
    b.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    b.find(Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let button = format!("button[data-action='drain'][data-server='{host}']");
    // The table is redrawn on every refresh: a button found just before one is stale, and
    // a click on it does nothing, so find and click again.
    eventually(Duration::from_secs(10), "a click on drain", || async {
        b.find(Locator::Css(&button)).await.ok()?.click().await.ok()
    })
    .await;
    let state_css = format!("#servers tr[data-server='{host}'] td.state");
    eventually(Duration::from_secs(10), "the draining state", || async {
        text(&b, &state_css).await.filter(|t| t == "draining")
    })
    .await;
    // The dispatcher agrees, and logged who did it.
    let servers = noc.api("/api/servers");
    let row = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == host.as_str())
        .unwrap();
    assert_eq!(row["state"], "draining");
    let events = noc.api("/api/events");
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "drain" && e["who"] == "admin"));

    let shot = b.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot: {}", path.display());
    b.close().await.unwrap();
    for c in &mut clients {
        c.kill();
    }
}

/// Cascading on the dashboard: a conference spread over three linked servers shows its
/// first server and, beside it, the servers it is linked with; everyone is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_conference_shows_its_linked_servers() {
    let noc = Noc::start(&["--media-servers", "3", "--capacity", "1"]);
    let mut clients = Vec::new();
    for n in ["ann", "bob", "cat"] {
        let c = Client::spawn(noc.dispatcher, "town", "demo", n, &["--duration", "40"]);
        c.stdout
            .wait_for("accept", Duration::from_secs(10))
            .expect("accepted");
        clients.push(c);
    }
    let (_driver, port) = chromedriver();
    let b = browser(port).await;
    b.goto(&format!("http://{}/", noc.http)).await.unwrap();
    let cell = eventually(Duration::from_secs(10), "the conference row", || {
        text(&b, "#conferences tr[data-conference='town'] td.server")
    })
    .await;
    let host = noc.server_of("town").expect("town placed");
    assert!(cell.starts_with(&host), "{cell}");
    for (id, _) in &noc.media_servers {
        assert!(cell.contains(id.as_str()), "{id} missing from {cell:?}");
    }
    assert!(cell.contains('⇄'), "{cell}");
    let count = text(
        &b,
        "#conferences tr[data-conference='town'] td.participants",
    )
    .await
    .unwrap();
    assert_eq!(count, "3");
    let shot = b.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-spread.png");
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot: {}", path.display());
    b.close().await.unwrap();
    for c in &mut clients {
        c.kill();
    }
}
