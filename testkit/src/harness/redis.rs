//! A throwaway `redis-server` for the tests of several dispatchers on one store: started
//! on a free loopback port without persistence, spoken to in RESP, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ANY: &str = "127.0.0.1:0";

/// A throwaway `redis-server` on a free loopback port, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// `None` (with a loud message) only when redis-server is missing outside CI.
    pub fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed; `make deps` installs it (Debian package redis-server)"
            );
            eprintln!(
                "\n*** SKIPPED: redis-server is not installed (apt-get install redis-server) ***\n"
            );
            return None;
        }
        let port = TcpListener::bind(ANY)
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let r = Redis {
            child: spawn(port),
            port,
        };
        r.wait_ready();
        Some(r)
    }

    /// Kills redis-server (SIGKILL: its data goes, as nothing is persisted) and starts a
    /// fresh one on the same port; returns once it answers.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port);
        self.wait_ready();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_cmd(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command in RESP; the reply as text (`nil` for a null bulk string).
    pub fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        match line.as_bytes().first()? {
            b'$' if line == "$-1" => Some("nil".into()),
            b'$' => {
                let n: usize = line[1..].parse().ok()?;
                let mut buf = vec![0u8; n + 2];
                r.read_exact(&mut buf).ok()?;
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
            _ => Some(line[1..].to_owned()),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).expect("redis answers")
    }
}

/// redis-server on `port`, without persistence.
fn spawn(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
