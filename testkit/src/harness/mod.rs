//! Real processes of this workspace on 127.0.0.1 with ephemeral ports: `noc`, a split
//! `dispatcher` + `mediaserver` deployment, `confclient`s, and any other binary; their output
//! lines, the dispatcher's HTTP API and temporary directories. Every process is killed when
//! its handle drops.
//!
//! Binaries are found beside the test executable (`target/PROFILE/`), and built on demand
//! when a crate's tests run alone and the binary is missing.

pub mod control;
pub mod redis;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sets its flag when dropped, so a test's helper threads end with the test, also when it
/// fails.
pub struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A [`Stop`] and the flag it sets, for helper threads to watch.
pub fn stop_flag() -> (Stop, Arc<AtomicBool>) {
    let f = Arc::new(AtomicBool::new(false));
    (Stop(f.clone()), f)
}

/// A loopback UDP socket with a short (5 ms) read timeout, for tests that poll.
pub fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    s.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("a read timeout");
    s
}

/// The workspace's root directory (config files live in `config/`).
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `target/PROFILE` of the running executable: a test's (`target/PROFILE/deps/NAME-HASH`)
/// or an example's such as the soak (`target/PROFILE/examples/NAME`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running binary has a path");
    let dir = exe
        .parent()
        .expect("the running binary lives in a directory");
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.parent()
            .expect("deps/ and examples/ live in target/PROFILE")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of this workspace, built on demand (with the test's own profile) when missing.
pub fn bin(name: &str) -> PathBuf {
    let dir = profile_dir();
    let path = dir.join(name);
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--profile", profile, "--bin", name])
            .current_dir(root())
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
    /// Collects the lines of `stream` from now on.
    pub fn collect(stream: impl Read + Send + 'static) -> Lines {
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

    /// The first line satisfying `pred`, waiting up to `timeout` for it.
    fn wait(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.all().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first line containing `text` anywhere (log lines start with a timestamp),
    /// waiting up to `timeout` for it.
    pub fn wait_for_containing(&self, text: &str, timeout: Duration) -> Option<String> {
        self.wait(timeout, |l| l.contains(text))
    }

    /// The first line starting with `prefix`, waiting up to `timeout` for it.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> Option<String> {
        self.wait(timeout, |l| l.starts_with(prefix))
    }
}

/// Polls `get` until `pred` holds; panics with the last value after `timeout`.
fn poll_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    get: impl Fn() -> Value,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = get();
        if pred(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what} never satisfied the condition: {v:#}");
        }
        std::thread::sleep(every);
    }
}

/// GET `path` from a JSON API and parse it.
pub fn api(http: SocketAddr, path: &str) -> Value {
    let body = http_get(http, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A running workspace binary, with its output collected; killed on drop.
pub struct Proc {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        Proc::spawn_with(name, args, &[])
    }

    /// Like [`Proc::spawn`], with extra environment variables.
    pub fn spawn_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(bin(name))
            .args(args)
            .envs(env.iter().copied())
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

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

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

    /// The address on this process's first `KEY ADDR` stdout line (the line's last field),
    /// waiting up to 30 s for it.
    pub fn addr(&self, key: &str) -> SocketAddr {
        let l = self
            .stdout
            .wait_for(&format!("{key} "), Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no {key} line: {:?}", self.stderr.all()));
        l.split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad {key} line: {l}"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `noc`: a dispatcher and its media servers in one process.
pub struct Noc {
    proc: Proc,
    pub dispatcher: SocketAddr,
    pub http: SocketAddr,
    /// (id, client address) of each media server.
    pub media_servers: Vec<(String, SocketAddr)>,
    /// (id, `/metrics` URL) of each media server.
    pub metrics: Vec<(String, String)>,
    /// (id, WebSocket URL) of the dispatcher (`dispatcher`) and each media server.
    pub websockets: Vec<(String, String)>,
    pub stderr: Lines,
}

impl Noc {
    /// Starts `noc` on ephemeral ports with `extra` flags and waits for its `ready` line.
    pub fn start(extra: &[&str]) -> Noc {
        Noc::start_with_log(extra, "info")
    }

    /// [`Noc::start`] with `RUST_LOG` set to `log`.
    pub fn start_with_log(extra: &[&str], log: &str) -> Noc {
        let mut args = vec!["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn_with("noc", &args, &[("RUST_LOG", log)]);
        let stdout = proc.stdout.clone();
        if stdout.wait_for("ready", Duration::from_secs(20)).is_none() {
            proc.kill9();
            panic!(
                "noc not ready: {:?}\n{}",
                stdout.all(),
                proc.stderr.all().join("\n")
            );
        }
        let mut dispatcher = None;
        let mut http = None;
        let mut media_servers = Vec::new();
        let mut metrics = Vec::new();
        let mut websockets = Vec::new();
        for l in stdout.all() {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["dispatcher", a] => dispatcher = a.parse().ok(),
                ["http", a] => http = a.parse().ok(),
                ["mediaserver", id, a] => {
                    media_servers.push((id.to_string(), a.parse().expect("address")))
                }
                ["metrics", id, url] => metrics.push((id.to_string(), url.to_string())),
                ["websocket", id, url] => websockets.push((id.to_string(), url.to_string())),
                _ => {}
            }
        }
        Noc {
            stderr: proc.stderr.clone(),
            dispatcher: dispatcher.expect("noc printed its dispatcher"),
            http: http.expect("noc printed its http address"),
            media_servers,
            metrics,
            websockets,
            proc,
        }
    }

    /// The WebSocket URL of `id` (`dispatcher`, `ms-1`, ...).
    pub fn websocket(&self, id: &str) -> String {
        self.websockets
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| panic!("no websocket line for {id}: {:?}", self.websockets))
    }

    /// Resident memory of the noc process, in KiB (Linux `VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("noc's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// kill -9 the whole NOC (its embedded media servers with it).
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// GET a JSON document from the dispatcher's API.
    pub fn api(&self, path: &str) -> Value {
        api(self.http, path)
    }

    /// Polls the API until `pred` holds.
    pub fn wait_api(&self, path: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let every = Duration::from_millis(50);
        poll_until(path, timeout, every, || self.api(path), pred)
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

/// `config/NAME` in the workspace.
pub fn config(name: &str) -> String {
    root().join("config").join(name).display().to_string()
}

impl Split {
    /// Starts the dispatcher (config/dispatcher.toml, ephemeral ports).
    pub fn start() -> Split {
        Split::start_with(&[])
    }

    /// [`Split::start`] with `extra` dispatcher flags.
    pub fn start_with(extra: &[&str]) -> Split {
        let any = "127.0.0.1:0";
        let config = config("dispatcher.toml");
        let mut args = vec![
            "--config",
            &config,
            "--listen",
            any,
            "--registry",
            any,
            "--http",
            any,
        ];
        args.extend_from_slice(extra);
        let dispatcher = Proc::spawn("dispatcher", &args);
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
        let ms = media_server(id, &[self.registry], extra);
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
        api(self.http, path)
    }

    /// Polls the API until `pred` holds.
    pub fn wait_api(&self, path: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let every = Duration::from_millis(20);
        poll_until(path, timeout, every, || self.api(path), pred)
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

/// A `mediaserver` process `id` from config/mediaserver.toml with one worker, linked to the
/// first of `dispatchers` that takes it (plus `extra` flags); returns once it has started.
pub fn media_server(id: &str, dispatchers: &[SocketAddr], extra: &[&str]) -> Proc {
    let list: Vec<String> = dispatchers.iter().map(|d| d.to_string()).collect();
    let list = list.join(",");
    let config = config("mediaserver.toml");
    let mut args = vec![
        "--config",
        &config,
        "--listen",
        "127.0.0.1:0",
        "--dispatcher",
        &list,
        "--id",
        id,
        "--workers",
        "1",
    ];
    args.extend_from_slice(extra);
    let ms = Proc::spawn("mediaserver", &args);
    ms.stdout
        .wait_for(&format!("mediaserver {id}"), Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{id} did not start: {:?}", ms.stderr.all()));
    ms
}

/// A running `confclient`.
pub struct Client {
    proc: Proc,
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
        Client::spawn_at(&dispatcher.to_string(), conference, account, name, extra)
    }

    /// Like [`Client::spawn`], with the dispatcher as confclient takes it: `host:port` or
    /// a WebSocket URL (`ws://...`).
    pub fn spawn_at(
        dispatcher: &str,
        conference: &str,
        account: &str,
        name: &str,
        extra: &[&str],
    ) -> Client {
        let mut args = vec![
            "--dispatcher",
            dispatcher,
            "--conference",
            conference,
            "--account",
            account,
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn("confclient", &args);
        Client {
            stdout: proc.stdout.clone(),
            stderr: proc.stderr.clone(),
            proc,
        }
    }

    /// Waits for exit, killing the client after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match self.proc.wait(timeout) {
            Some(s) => {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                s
            }
            None => {
                self.proc.kill9();
                panic!(
                    "confclient did not exit: {:?} {:?}",
                    self.stdout.all(),
                    self.stderr.all()
                );
            }
        }
    }

    /// Kills the process without a goodbye: its TCP connection just drops.
    pub fn kill(&mut self) {
        self.proc.kill9();
    }

    /// Sends `signal` (a name such as `STOP`) to the process.
    pub fn signal(&self, signal: &str) {
        self.proc.signal(signal);
    }

    /// The first stdout line starting with `prefix`, or a panic with the client's output.
    fn line(&self, prefix: &str) -> String {
        self.stdout
            .wait_for(prefix, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix:?} line: {:?} {:?}",
                    self.stdout.all(),
                    self.stderr.all()
                )
            })
    }

    /// The `channel audio ADDR PT CODEC SSRC` line the media server gave this client.
    pub fn channel(&self) -> (SocketAddr, u32) {
        let l = self.line("channel audio");
        let f: Vec<&str> = l.split_whitespace().collect();
        (
            f[2].parse().expect("channel address"),
            f[5].parse().expect("channel ssrc"),
        )
    }

    /// The address in this client's `dispatch` line.
    pub fn dispatched_to(&self) -> SocketAddr {
        let l = self.line("dispatch ");
        l.split_whitespace()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .expect("dispatch address")
    }
}

/// GET `path` over HTTP/1.1 and return the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let (status, head, body) = http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    body
}

/// POST a JSON body with a bearer token; returns the status and the body.
pub fn http_post(addr: SocketAddr, path: &str, token: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    (status, body)
}

/// Sends a raw HTTP/1.1 request (with `Connection: close`); returns (status, head, body).
pub fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    try_http(addr, request).expect("http reachable")
}

/// [`http`] for a server that may be down: the I/O error instead of a panic.
pub fn try_http(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request.as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head.to_owned(), body.to_owned()))
}

/// Sends raw lines on a fresh control connection and returns everything the server said
/// until it closed (or 3 s passed, marked `<no close>`).
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

/// A temporary directory under `target/tmp`, removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let parent = profile_dir()
            .parent()
            .map_or_else(std::env::temp_dir, |t| t.join("tmp"));
        std::fs::create_dir_all(&parent).unwrap();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-"))
            .tempdir_in(parent)
            .expect("temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The path of `name` inside, as a string for command lines.
    pub fn file(&self, name: &str) -> String {
        self.path().join(name).display().to_string()
    }
}
