//! Headless Firefox for the web client's tests, driven over WebDriver BiDi (Firefox speaks
//! it itself on `--remote-debugging-port`; Debian has no geckodriver). The profile fakes
//! the microphone and camera and turns off everything that would reach out (updates,
//! telemetry, remote settings, safe browsing, captive portal checks, DNS-over-HTTPS,
//! prefetch), with a dead loopback proxy behind it all.
//!
//! Firefox gathers no ICE candidate on `lo` (whatever `media.peerconnection.ice.loopback`
//! says) and none at all without a default route. So its test runs in a network namespace
//! of its own ([`isolate`]): `lo`, and a veth pair whose one address (10.99.0.1) carries
//! the default route and the media server's `--media-host`. Nothing in it reaches the
//! machine's real network.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PREFS: &[(&str, &str)] = &[
    ("media.navigator.streams.fake", "true"),
    ("media.navigator.permission.disabled", "true"),
    ("media.peerconnection.ice.loopback", "true"),
    ("media.peerconnection.ice.tcp", "false"),
    ("media.peerconnection.ice.obfuscate_host_addresses", "false"),
    ("media.autoplay.default", "0"),
    ("media.autoplay.blocking_policy", "0"),
    ("media.autoplay.block-webaudio", "false"),
    // No sound server here: Web Audio runs on Firefox's own clock.
    ("media.cubeb.force_mock_context", "true"),
    // Nothing leaves loopback: every proxied request goes to a closed local port.
    ("network.proxy.type", "1"),
    ("network.proxy.http", "\"127.0.0.1\""),
    ("network.proxy.http_port", "9"),
    ("network.proxy.ssl", "\"127.0.0.1\""),
    ("network.proxy.ssl_port", "9"),
    ("network.proxy.no_proxies_on", "\"127.0.0.1,localhost\""),
    ("network.trr.mode", "5"),
    ("network.dns.disablePrefetch", "true"),
    ("network.prefetch-next", "false"),
    ("network.http.speculative-parallel-limit", "0"),
    ("network.connectivity-service.enabled", "false"),
    ("network.captive-portal-service.enabled", "false"),
    ("browser.safebrowsing.malware.enabled", "false"),
    ("browser.safebrowsing.phishing.enabled", "false"),
    ("browser.safebrowsing.downloads.enabled", "false"),
    ("browser.safebrowsing.provider.mozilla.updateURL", "\"\""),
    ("services.settings.server", "\"http://127.0.0.1:9/v1\""),
    ("app.update.enabled", "false"),
    ("app.normandy.enabled", "false"),
    ("messaging-system.rsexperimentloader.enabled", "false"),
    ("extensions.update.enabled", "false"),
    ("extensions.getAddons.cache.enabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("datareporting.healthreport.uploadEnabled", "false"),
    ("toolkit.telemetry.enabled", "false"),
    ("toolkit.telemetry.unified", "false"),
    ("browser.newtabpage.enabled", "false"),
    ("browser.startup.homepage", "\"about:blank\""),
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.ping-centre.telemetry", "false"),
];

/// A running Firefox and its BiDi session.
pub struct Firefox {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
    context: String,
}

impl Drop for Firefox {
    fn drop(&mut self) {
        super::chrome::kill_group(&mut self.child);
    }
}

impl Firefox {
    /// Starts headless Firefox with a fresh profile in `profile` and opens a BiDi session.
    pub async fn start(profile: &Path) -> Firefox {
        std::fs::create_dir_all(profile).unwrap();
        let prefs: String = PREFS
            .iter()
            .map(|(k, v)| format!("user_pref(\"{k}\", {v});\n"))
            .collect();
        std::fs::write(profile.join("user.js"), prefs).unwrap();
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("firefox-esr")
            .process_group(0)
            .args([
                "--headless",
                "--no-remote",
                "--remote-debugging-port=0",
                "--profile",
            ])
            .arg(profile)
            .arg("about:blank")
            .env("MOZ_HEADLESS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("firefox-esr runs (Debian package firefox-esr; `make test` installs it)");
        // It prints where BiDi listens; the rest of its stderr is drained in the background.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("WebDriver BiDi listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Firefox started its WebDriver BiDi listener");
        let (ws, _) = tokio_tungstenite::connect_async(format!("{url}/session"))
            .await
            .expect("a BiDi session");
        let mut ff = Firefox {
            child,
            ws,
            next: 0,
            context: String::new(),
        };
        ff.call("session.new", json!({"capabilities": {}})).await;
        let tree = ff.call("browsingContext.getTree", json!({})).await;
        ff.context = tree["contexts"][0]["context"]
            .as_str()
            .expect("a browsing context")
            .to_owned();
        ff
    }

    /// One BiDi command; its result (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("BiDi send");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("BiDi open")
                .expect("BiDi message");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("BiDi JSON");
            if v["id"] == id {
                assert!(v["type"] != "error", "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    pub async fn goto(&mut self, url: &str) {
        let ctx = self.context.clone();
        self.call(
            "browsingContext.navigate",
            json!({"context": ctx, "url": url, "wait": "complete"}),
        )
        .await;
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value as JSON.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let ctx = self.context.clone();
        let r = self
            .call(
                "script.evaluate",
                json!({
                    "expression": format!("Promise.resolve({expr}).then((v) => JSON.stringify(v ?? null))"),
                    "target": {"context": ctx},
                    "awaitPromise": true,
                }),
            )
            .await;
        match r["result"]["value"].as_str() {
            Some(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            None => Value::Null,
        }
    }

    /// What the web client's page says (as `chrome::page_state` does for Chromium).
    pub async fn page_state(&mut self) -> Value {
        self.eval(
            "({phase: noc.phase, participant: noc.participant, f440: noc.audio.f440, \
             f660: noc.audio.f660, f1000: noc.audio.f1000, frames: noc.audio.frames, \
             slots: noc.slots, log: noc.log.slice(-20)})",
        )
        .await
    }

    /// A PNG of the page.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let ctx = self.context.clone();
        let r = self
            .call("browsingContext.captureScreenshot", json!({"context": ctx}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .unwrap_or_default()
    }
}
