//! Starts real `noc` and `confclient` processes on 127.0.0.1 with ephemeral ports, and
//! reads the dispatcher's JSON API. Every process is killed when its handle drops.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary of this workspace, built on demand when `cargo test -p noc` ran alone.
pub fn bin(name: &str) -> PathBuf {
    if name == "noc" {
        return PathBuf::from(env!("CARGO_BIN_EXE_noc"));
    }
    // target/debug/deps/e2e-HASH -> target/debug/NAME
    let exe = std::env::current_exe().expect("test binary has a path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/PROFILE/deps");
    let path = dir.join(name);
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--bin", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(ok.success(), "building {name} failed");
    }
    path
}

/// Output lines of a child, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                l.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The first line containing `text` anywhere (log lines start with a timestamp),
    /// waiting up to `timeout` for it.
    pub fn wait_for_containing(&self, text: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.all().into_iter().find(|l| l.contains(text)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first line starting with `prefix`, waiting up to `timeout` for it.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.all().into_iter().find(|l| l.starts_with(prefix)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `noc`.
pub struct Noc {
    child: Child,
    pub dispatcher: SocketAddr,
    pub http: SocketAddr,
    /// (id, client address) of each media server.
    pub media_servers: Vec<(String, SocketAddr)>,
    /// (id, `/metrics` URL) of each media server.
    pub metrics: Vec<(String, String)>,
    pub stderr: Lines,
}

impl Noc {
    pub fn start(extra: &[&str]) -> Noc {
        let mut child = Command::new(bin("noc"))
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("noc starts");
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let stderr = Lines::collect(child.stderr.take().expect("piped"));
        if stdout.wait_for("ready", Duration::from_secs(20)).is_none() {
            let _ = child.kill();
            panic!(
                "noc not ready: {:?}\n{}",
                stdout.all(),
                stderr.all().join("\n")
            );
        }
        let mut dispatcher = None;
        let mut http = None;
        let mut media_servers = Vec::new();
        let mut metrics = Vec::new();
        for l in stdout.all() {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["dispatcher", a] => dispatcher = a.parse().ok(),
                ["http", a] => http = a.parse().ok(),
                ["mediaserver", id, a] => {
                    media_servers.push((id.to_string(), a.parse().expect("address")))
                }
                ["metrics", id, url] => metrics.push((id.to_string(), url.to_string())),
                _ => {}
            }
        }
        Noc {
            child,
            dispatcher: dispatcher.expect("noc printed its dispatcher"),
            http: http.expect("noc printed its http address"),
            media_servers,
            metrics,
            stderr,
        }
    }

    /// GET a JSON document from the dispatcher's API.
    pub fn api(&self, path: &str) -> Value {
        let body = http_get(self.http, path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Polls the API until `pred` holds.
    pub fn wait_api(&self, path: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.api(path);
            if pred(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("{path} never satisfied the condition: {v:#}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server hosting `conference`, from the conference table.
    pub fn server_of(&self, conference: &str) -> Option<String> {
        self.api("/api/conferences")
            .as_array()?
            .iter()
            .find(|c| c["name"] == conference)
            .and_then(|c| c["server"].as_str().map(str::to_owned))
    }
}

impl Drop for Noc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any other binary of the workspace, with its output collected.
pub struct Proc {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let stderr = Lines::collect(child.stderr.take().expect("piped"));
        Proc {
            child,
            stdout,
            stderr,
        }
    }
}

impl Proc {
    /// Sends `signal` (a name such as `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -s {signal} failed");
    }

    /// kill -9: no goodbye, its sockets just close.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, waiting up to `timeout`; `None` if it is still running.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait works") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address on this process's `KEY ADDR` stdout line.
    pub fn addr(&self, key: &str) -> SocketAddr {
        let l = self
            .stdout
            .wait_for(&format!("{key} "), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no {key} line: {:?}", self.stderr.all()));
        l.split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad {key} line: {l}"))
    }
}

/// A split deployment from the shipped config files: a `dispatcher` process and
/// `mediaserver` processes, each its own process so a test can kill or signal one.
pub struct Split {
    pub dispatcher: Proc,
    /// Where clients connect.
    pub client: SocketAddr,
    pub registry: SocketAddr,
    pub http: SocketAddr,
    /// Media servers by id.
    pub media: Vec<(String, Proc)>,
}

impl Split {
    /// Starts the dispatcher (config/dispatcher.toml, ephemeral ports).
    pub fn start() -> Split {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let any = "127.0.0.1:0";
        let dispatcher = Proc::spawn(
            "dispatcher",
            &[
                "--config",
                &format!("{root}/config/dispatcher.toml"),
                "--listen",
                any,
                "--registry",
                any,
                "--http",
                any,
            ],
        );
        Split {
            client: dispatcher.addr("dispatcher"),
            registry: dispatcher.addr("registry"),
            http: dispatcher.addr("http"),
            dispatcher,
            media: Vec::new(),
        }
    }

    /// Starts media server `id` (config/mediaserver.toml plus `extra` flags) and waits
    /// until the dispatcher lists it in service.
    pub fn add_media(&mut self, id: &str, extra: &[&str]) {
        let registry = self.registry.to_string();
        let mut args = vec![
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config/mediaserver.toml"),
            "--listen",
            "127.0.0.1:0",
            "--dispatcher",
            &registry,
            "--id",
            id,
            "--workers",
            "1",
        ];
        args.extend_from_slice(extra);
        let ms = Proc::spawn("mediaserver", &args);
        ms.stdout
            .wait_for(&format!("mediaserver {id}"), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{id} did not start: {:?}", ms.stderr.all()));
        self.media.push((id.to_owned(), ms));
        let id = id.to_owned();
        self.wait_api("/api/servers", Duration::from_secs(10), |v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s["id"] == id.as_str() && s["state"] == "in-service")
            })
        });
    }

    /// The media server process `id`.
    pub fn media(&mut self, id: &str) -> &mut Proc {
        self.media
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no media server {id}"))
    }

    pub fn api(&self, path: &str) -> Value {
        let body = http_get(self.http, path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Polls the API until `pred` holds.
    pub fn wait_api(&self, path: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.api(path);
            if pred(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("{path} never satisfied the condition: {v:#}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The conference's entry in the conference table, with its participant count.
    pub fn conference(&self, name: &str) -> Option<(String, usize)> {
        self.api("/api/conferences")
            .as_array()?
            .iter()
            .find_map(|c| {
                (c["name"] == name).then(|| {
                    (
                        c["server"].as_str().unwrap_or_default().to_owned(),
                        c["participants"].as_array().map_or(0, Vec::len),
                    )
                })
            })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `confclient`.
pub struct Client {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Client {
    pub fn spawn(
        dispatcher: SocketAddr,
        conference: &str,
        account: &str,
        name: &str,
        extra: &[&str],
    ) -> Client {
        let mut child = Command::new(bin("confclient"))
            .args(["--dispatcher", &dispatcher.to_string()])
            .args([
                "--conference",
                conference,
                "--account",
                account,
                "--name",
                name,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("confclient starts");
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let stderr = Lines::collect(child.stderr.take().expect("piped"));
        Client {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for exit, killing the client after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait works") {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "confclient did not exit: {:?} {:?}",
                    self.stdout.all(),
                    self.stderr.all()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process without a goodbye: its TCP connection just drops.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The `channel audio ADDR PT CODEC SSRC` line the media server gave this client.
    pub fn channel(&self) -> (SocketAddr, u32) {
        let l = self
            .stdout
            .wait_for("channel audio", Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no channel line: {:?} {:?}",
                    self.stdout.all(),
                    self.stderr.all()
                )
            });
        let f: Vec<&str> = l.split_whitespace().collect();
        (
            f[2].parse().expect("channel address"),
            f[5].parse().expect("channel ssrc"),
        )
    }

    /// The address in this client's `dispatch` line.
    pub fn dispatched_to(&self) -> SocketAddr {
        let l = self
            .stdout
            .wait_for("dispatch ", Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no dispatch line: {:?} {:?}",
                    self.stdout.all(),
                    self.stderr.all()
                )
            });
        l.split_whitespace()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .expect("dispatch address")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` over HTTP/1.1 and return the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("http reachable");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// POST a JSON body with a bearer token; returns the status and the body.
pub fn http_post(addr: SocketAddr, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("http reachable");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends raw lines on a fresh control connection and returns everything the server said
/// until it closed (or 3 s passed).
pub fn raw_session(addr: SocketAddr, payload: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("server reachable");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(payload);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {
                out.extend_from_slice(b"<no close>");
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A temporary directory under target/, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
