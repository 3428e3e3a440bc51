//! The deployment under soak: Redis, two dispatchers on it behind the dispatcher switch,
//! and two media servers, each linked to one dispatcher with the other as fallback. All
//! are this build's binaries (testkit's harness finds them beside the soak), on loopback.
//! Dispatchers listen on fixed ports picked at start, so one killed comes back where the
//! switch and the media servers look for it.

use crate::verdict::ProcSample;
use benches::cpu;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use testkit::harness::redis::Redis;
use testkit::harness::{config, try_http, Proc};

/// A free loopback port (bound, then released for the process that takes it).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A process the soak can kill and start again with the same arguments.
pub struct Slot {
    pub name: String,
    bin: &'static str,
    args: Vec<String>,
    /// The stdout line that says it started.
    ready: String,
    pub proc: Proc,
    /// Output of the instances killed before this one.
    earlier: Vec<String>,
}

impl Slot {
    fn start(name: &str, bin: &'static str, args: Vec<String>, ready: String) -> Slot {
        let proc = spawn(bin, &args, &ready);
        Slot {
            name: name.to_owned(),
            bin,
            args,
            ready,
            proc,
            earlier: Vec::new(),
        }
    }

    /// kill -9, then nothing: the caller restarts it when the fault calls for it.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    pub fn restart(&mut self) {
        let old = std::mem::replace(&mut self.proc, spawn(self.bin, &self.args, &self.ready));
        self.earlier.extend(output(&old));
        self.earlier.push("---- killed; restarted ----".into());
    }

    /// Everything every instance printed, the earlier ones first.
    pub fn log(&self) -> Vec<String> {
        let mut all = self.earlier.clone();
        all.extend(output(&self.proc));
        all
    }
}

fn output(p: &Proc) -> Vec<String> {
    let mut v = p.stdout.all();
    v.extend(p.stderr.all());
    v
}

fn spawn(bin: &str, args: &[String], ready: &str) -> Proc {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc::spawn(bin, &a);
    p.stdout
        .wait_for(ready, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{bin} did not start: {:?}", p.stderr.all()));
    p
}

/// A dispatcher's fixed addresses.
#[derive(Debug, Clone, Copy)]
pub struct DispatcherAddrs {
    pub client: SocketAddr,
    pub registry: SocketAddr,
    pub http: SocketAddr,
}

pub struct Deployment {
    pub redis: Redis,
    pub dispatchers: Vec<(Slot, DispatcherAddrs)>,
    pub switch: Proc,
    pub switch_addr: SocketAddr,
    pub media: Vec<Slot>,
    /// Each media server's `--capacity`.
    capacity: u32,
}

impl Deployment {
    /// Starts Redis, the dispatchers, the switch and `ms-1` (each media server with
    /// `capacity`), and waits until both dispatchers see it.
    pub fn start(capacity: u32) -> Deployment {
        let redis =
            Redis::start().expect("redis-server is installed (apt-get install redis-server)");
        let dispatchers: Vec<(Slot, DispatcherAddrs)> = ["disp-1", "disp-2"]
            .into_iter()
            .map(|id| {
                let a = DispatcherAddrs {
                    client: free_port(),
                    registry: free_port(),
                    http: free_port(),
                };
                let args = [
                    "--config",
                    &config("dispatcher.toml"),
                    "--id",
                    id,
                    "--store",
                    &redis.url(),
                    "--listen",
                    &a.client.to_string(),
                    "--registry",
                    &a.registry.to_string(),
                    "--http",
                    &a.http.to_string(),
                ]
                .map(str::to_owned)
                .to_vec();
                let slot = Slot::start(id, "dispatcher", args, "http ".into());
                (slot, a)
            })
            .collect();
        let clients = format!("{},{}", dispatchers[0].1.client, dispatchers[1].1.client);
        let switch = Proc::spawn(
            "dispatcher",
            &["--switch", "127.0.0.1:0", "--backends", &clients],
        );
        let switch_addr = switch.addr("switch");
        let mut d = Deployment {
            redis,
            dispatchers,
            switch,
            switch_addr,
            media: Vec::new(),
            capacity,
        };
        d.start_media("ms-1");
        d
    }

    /// Starts media server `id` (`ms-1` links to `disp-1` first, `ms-2` to `disp-2`) and
    /// waits until both dispatchers see every media server.
    pub fn start_media(&mut self, id: &str) {
        let regs = [
            self.dispatchers[0].1.registry,
            self.dispatchers[1].1.registry,
        ];
        let regs = if self.media.is_empty() {
            regs
        } else {
            [regs[1], regs[0]]
        };
        let args = [
            "--config",
            &config("mediaserver.toml"),
            "--id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--dispatcher",
            &format!("{},{}", regs[0], regs[1]),
            "--workers",
            "1",
            "--capacity",
            &self.capacity.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        self.media.push(Slot::start(
            id,
            "mediaserver",
            args,
            format!("mediaserver {id}"),
        ));
        assert!(
            self.wait_servers(Duration::from_secs(20)),
            "the dispatchers never saw {id}"
        );
    }

    /// Waits until every dispatcher has every media server in communication.
    pub fn wait_servers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.dispatchers.iter().all(|(_, a)| {
                let rows = api(a.http, "/api/servers");
                self.media.iter().all(|m| {
                    let id = m.name.as_str();
                    rows.as_array().is_some_and(|r| {
                        r.iter()
                            .any(|s| s["id"] == id && s["in_communication"] == true)
                    })
                })
            });
            if ok {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes each process's output to `dir/NAME.log`.
    pub fn write_logs(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let slots = self.dispatchers.iter().map(|(s, _)| s).chain(&self.media);
        for s in slots {
            std::fs::write(dir.join(format!("{}.log", s.name)), s.log().join("\n"))?;
        }
        std::fs::write(dir.join("switch.log"), output(&self.switch).join("\n"))
    }

    /// The dispatcher holding the lease, by index.
    pub fn active_dispatcher(&self) -> Option<usize> {
        let id = self.redis.try_cmd(&["GET", "noc:lease"])?;
        self.dispatchers.iter().position(|(s, _)| s.name == id)
    }

    /// RSS and descriptors of every process of the deployment.
    pub fn sample(&self) -> Vec<ProcSample> {
        let mut out = vec![probe("redis", self.redis.pid())];
        for (s, _) in &self.dispatchers {
            out.push(probe(&s.name, s.proc.id()));
        }
        out.push(probe("switch", self.switch.id()));
        for s in &self.media {
            out.push(probe(&s.name, s.proc.id()));
        }
        out
    }

    /// Every dispatcher's conference table, rows together: a dispatcher lists the
    /// conferences of the media servers linked to it.
    pub fn conferences(&self) -> Vec<Value> {
        self.dispatchers
            .iter()
            .filter_map(|(_, a)| match api(a.http, "/api/conferences") {
                Value::Array(rows) => Some(rows),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn probe(name: &str, pid: u32) -> ProcSample {
    ProcSample {
        name: name.to_owned(),
        rss_kib: cpu::rss_kib(pid),
        fds: cpu::fd_count(pid),
    }
}

/// GET `path` as JSON; `Null` when the process does not answer (it may be the one killed).
fn api(http: SocketAddr, path: &str) -> Value {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    match try_http(http, &req) {
        Ok((200, _, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}
