//! A network namespace of the test's own: libnice (GStreamer) and Firefox leave the loopback
//! interface out of ICE, so the media server gets an address on a veth pair there.
#![allow(dead_code)]

use std::process::Command;

/// The media host inside the namespace [`isolate`] makes.
pub const MEDIA_HOST: &str = "10.99.0.1";

/// Moves the calling thread (and every thread and process it starts afterwards) into a new
/// network namespace: `lo` up, a veth pair with [`MEDIA_HOST`] and the default route. Needs
/// root (CI runs as root).
pub fn isolate() -> Result<(), String> {
    // SAFETY: unshare only changes this thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {} (the test needs root)",
            std::io::Error::last_os_error()
        ));
    }
    let host = format!("{MEDIA_HOST}/24");
    let steps: [&[&str]; 6] = [
        &["link", "set", "lo", "up"],
        &[
            "link", "add", "nocv0", "type", "veth", "peer", "name", "nocv1",
        ],
        &["addr", "add", &host, "dev", "nocv0"],
        &["link", "set", "nocv0", "up"],
        &["link", "set", "nocv1", "up"],
        &["route", "add", "default", "dev", "nocv0"],
    ];
    steps.iter().try_for_each(|args| ip(args))
}

/// The far end of [`isolate`]'s veth pair, once [`Peer::add`] moved it into a namespace of
/// its own: a second host on the link, whose traffic to the first crosses the veth (and
/// whatever `tc` puts on it) instead of loopback.
pub const PEER_HOST: &str = "10.99.0.2";

/// A named network namespace holding `nocv1` as [`PEER_HOST`]; deleted on drop.
pub struct Peer {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `program args` (`ip`, `tc`, `nft`), which must succeed; the error names the command
/// and carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Peer {
    /// After [`isolate`]: a namespace `name` with `nocv1` in it as [`PEER_HOST`].
    pub fn add(name: &str) -> Result<Peer, String> {
        ip(&["netns", "add", name])?;
        let p = Peer {
            name: name.to_owned(),
        };
        let host = format!("{PEER_HOST}/24");
        ip(&["link", "set", "nocv1", "netns", name])?;
        ip(&["-n", name, "addr", "add", &host, "dev", "nocv1"])?;
        ip(&["-n", name, "link", "set", "nocv1", "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(p)
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Forwards connections to 127.0.0.1:(the port returned) here to 127.0.0.1:`port`
    /// inside the namespace (a thread per connection, which enters the namespace to
    /// connect), once something listens there (`within`).
    pub fn forward(&self, port: u16, within: std::time::Duration) -> Result<u16, String> {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let path = format!("/run/netns/{}", self.name);
        let inside = move || -> std::io::Result<TcpStream> {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on this thread only, with an open namespace file.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            TcpStream::connect(("127.0.0.1", port))
        };
        // Wait for the listener inside, from a thread that enters the namespace.
        let probe = inside.clone();
        let deadline = std::time::Instant::now() + within;
        let ready = std::thread::spawn(move || loop {
            if probe().is_ok() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        })
        .join()
        .unwrap_or(false);
        if !ready {
            return Err(format!("nothing listens on port {port} in {}", self.name));
        }
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let here = listener.local_addr().map_err(|e| e.to_string())?.port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let connect = inside.clone();
                std::thread::spawn(move || {
                    let Ok(server) = connect() else { return };
                    let pipe = |mut from: TcpStream, mut to: TcpStream| {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    };
                    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                        (Ok(c), Ok(s)) => (c, s),
                        _ => return,
                    };
                    let back = std::thread::spawn(move || pipe(s2, c2));
                    pipe(client, server);
                    let _ = back.join();
                });
            }
        });
        Ok(here)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
