//! Batched UDP I/O for the media workers.
//!
//! A worker's socket is driven by one of two backends, chosen with `--io`:
//! - [`IoKind::Mmsg`]: recvmmsg/sendmmsg, waiting in ppoll(2) when idle;
//! - [`IoKind::Uring`]: io_uring with standing RecvMsg requests and batched SendMsg.
//!
//! On top of either, [`plan::Plan`] groups a transmit batch into GSO runs (`UDP_SEGMENT`) of
//! equal-sized packets to one destination, when `--gso` is on and the kernel supports it.
//! A backend that cannot start falls back to `mmsg` with a warning.
//!
//! Receive buffers and every header, iovec and address a send needs are allocated once per
//! worker; a send points iovecs at the mesh's [`TxBatch`] (each packet's own header, then the
//! body it shares with the other receivers) and copies nothing.

mod mmsg;
pub mod plan;
mod sys;
mod uring;

use mesh::TxBatch;
use plan::Plan;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

pub use sys::{SendReport, RX_BATCH, RX_BUF};

/// Which UDP backend a worker uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoKind {
    /// recvmmsg/sendmmsg.
    Mmsg,
    /// io_uring.
    Uring,
}

impl IoKind {
    /// The default backend: `uring`, which won the benchmark with GSO on (the default)
    /// and tied without it (docs/benchmarks.md, "Default backend"). Where io_uring cannot
    /// start, the worker falls back to `mmsg` with a warning.
    pub const DEFAULT: IoKind = IoKind::Uring;

    pub const fn as_str(self) -> &'static str {
        match self {
            IoKind::Mmsg => "mmsg",
            IoKind::Uring => "uring",
        }
    }
}

impl Default for IoKind {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for IoKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a worker's I/O is set up.
#[derive(Clone, Copy, Debug)]
pub struct IoOptions {
    pub kind: IoKind,
    /// Send equal-sized packets to one destination as one GSO message.
    pub gso: bool,
    /// Largest transmit batch the backend pre-sizes for.
    pub tx_packets: usize,
}

impl Default for IoOptions {
    fn default() -> Self {
        Self {
            kind: IoKind::DEFAULT,
            gso: true,
            tx_packets: 4096,
        }
    }
}

enum Backend {
    Mmsg(mmsg::Mmsg),
    Uring(Box<uring::Uring>),
}

/// A worker's socket with its backend and GSO planner.
pub struct Io {
    // Declared before `socket`: the backend (a ring with requests on the socket) goes first.
    backend: Backend,
    plan: Plan,
    gso: bool,
    socket: UdpSocket,
}

impl Io {
    /// Starts the requested backend on `socket`, falling back to `mmsg` with a warning if it
    /// cannot start.
    pub fn open(socket: UdpSocket, opts: IoOptions) -> Io {
        Self::open_with(socket, opts, |fd, n| uring::Uring::new(fd, n).map(Box::new))
    }

    /// [`Io::open`] with the io_uring start-up supplied, so tests can make it fail.
    fn open_with(
        socket: UdpSocket,
        opts: IoOptions,
        start_uring: impl FnOnce(std::os::fd::RawFd, usize) -> io::Result<Box<uring::Uring>>,
    ) -> Io {
        let fd = socket.as_raw_fd();
        let backend = match opts.kind {
            IoKind::Mmsg => Backend::Mmsg(mmsg::Mmsg::new(fd, opts.tx_packets)),
            IoKind::Uring => match start_uring(fd, opts.tx_packets) {
                Ok(u) => Backend::Uring(u),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring backend cannot start; falling back to mmsg");
                    Backend::Mmsg(mmsg::Mmsg::new(fd, opts.tx_packets))
                }
            },
        };
        let gso = opts.gso && sys::gso_supported(&socket);
        if opts.gso && !gso {
            tracing::warn!("UDP GSO (UDP_SEGMENT) not supported here; sending without it");
        }
        Io {
            backend,
            plan: Plan::with_capacity(opts.tx_packets),
            gso,
            socket,
        }
    }

    /// The backend actually running (after any fallback).
    pub fn kind(&self) -> IoKind {
        match self.backend {
            Backend::Mmsg(_) => IoKind::Mmsg,
            Backend::Uring(_) => IoKind::Uring,
        }
    }

    /// Whether sends use GSO (requested, supported, and not turned off by a failure).
    pub fn gso(&self) -> bool {
        self.gso
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives a batch of datagrams, waiting up to `timeout` for the first. Returns how many
    /// (read them with [`Io::datagram`]) and the nanoseconds spent blocked.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<(usize, u64)> {
        match &mut self.backend {
            Backend::Mmsg(b) => b.recv(timeout),
            Backend::Uring(b) => b.recv(timeout),
        }
    }

    /// Datagram `i` of the last receive, or `None` if it was truncated.
    pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        match &self.backend {
            Backend::Mmsg(b) => b.datagram(i),
            Backend::Uring(b) => b.datagram(i),
        }
    }

    /// Sends every packet of `batch` (which the caller then clears).
    pub fn send(&mut self, batch: &TxBatch) -> SendReport {
        if batch.is_empty() {
            return SendReport::default();
        }
        self.plan.build(batch, self.gso);
        let rep = match &mut self.backend {
            Backend::Mmsg(b) => b.send(batch, &self.plan),
            Backend::Uring(b) => b.send(batch, &self.plan),
        };
        if rep.gso_broken {
            tracing::warn!("a GSO send failed with EIO (no checksum offload?); GSO off");
            self.gso = false;
        }
        rep
    }
}

/// Whether the `uring` backend can start here: Ok, or the error that would make a worker
/// fall back to `mmsg`.
pub fn probe_uring() -> io::Result<()> {
    let s = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    uring::Uring::new(s.as_raw_fd(), 16).map(drop)
}

/// Binds a worker's UDP socket on `addr` with generous kernel buffers.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Bursts of fan-out need room; the kernel caps these at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> UdpSocket {
        bind(([127, 0, 0, 1], 0).into()).unwrap()
    }

    #[test]
    fn failed_backend_start_falls_back_to_mmsg() {
        let opts = IoOptions {
            kind: IoKind::Uring,
            ..IoOptions::default()
        };
        let io = Io::open_with(loopback(), opts, |_, _| {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        });
        assert_eq!(io.kind(), IoKind::Mmsg);
        let io = Io::open_with(loopback(), opts, |_, _| {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        });
        assert_eq!(io.kind(), IoKind::Mmsg);
    }

    #[test]
    fn kinds_parse_from_config_and_flags() {
        #[derive(Deserialize)]
        struct C {
            io: IoKind,
        }
        let c: C = toml::from_str("io = \"uring\"").unwrap();
        assert_eq!(c.io, IoKind::Uring);
        assert!(toml::from_str::<C>("io = \"epoll\"").is_err());
        use clap::ValueEnum;
        assert_eq!(IoKind::from_str("mmsg", false), Ok(IoKind::Mmsg));
        assert_eq!(IoKind::DEFAULT.to_string(), "uring");
    }
}
