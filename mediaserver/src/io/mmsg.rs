//! The `mmsg` backend: recvmmsg and sendmmsg in batches, waiting in ppoll(2) when idle.

use super::plan::Plan;
use super::sys::{errno, RxPool, SendReport, TxMsgs, RX_BATCH, SENDMMSG_MAX};
use mesh::TxBatch;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub struct Mmsg {
    fd: RawFd,
    rx: RxPool,
    /// Datagrams in `rx` from the last receive.
    n: usize,
    tx: TxMsgs,
}

impl Mmsg {
    pub fn new(fd: RawFd, tx_packets: usize) -> Self {
        Self {
            fd,
            rx: RxPool::new(RX_BATCH),
            n: 0,
            tx: TxMsgs::with_capacity(tx_packets),
        }
    }

    /// Receives up to [`RX_BATCH`] datagrams, waiting up to `timeout` for the first. Returns
    /// how many arrived and the nanoseconds spent blocked.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<(usize, u64)> {
        let mut idle = 0u64;
        let mut waited = false;
        loop {
            self.rx.reset_all();
            // SAFETY: the pool's headers point into its own boxed buffers.
            let r = unsafe {
                libc::recvmmsg(
                    self.fd,
                    self.rx.hdrs.as_mut_ptr(),
                    self.rx.len() as _,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r > 0 {
                self.n = r as usize;
                return Ok((self.n, idle));
            }
            self.n = 0;
            match errno() {
                libc::EAGAIN | libc::EINTR => {}
                // An ICMP error for an earlier send: consumed by this call, read on.
                libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH => continue,
                e => return Err(io::Error::from_raw_os_error(e)),
            }
            if waited || timeout.is_zero() {
                return Ok((0, idle));
            }
            let t0 = Instant::now();
            wait_readable(self.fd, timeout)?;
            idle += t0.elapsed().as_nanos() as u64;
            waited = true;
        }
    }

    /// Datagram `i` of the last receive; `None` if it was truncated.
    pub fn datagram(&self, i: usize) -> Option<(std::net::SocketAddr, &[u8])> {
        debug_assert!(i < self.n);
        self.rx.datagram(i)
    }

    /// Sends the planned batch with as few sendmmsg calls as it takes.
    pub fn send(&mut self, batch: &TxBatch, plan: &Plan) -> SendReport {
        let mut rep = SendReport::default();
        self.tx.fill(batch, plan);
        let n = plan.msgs.len();
        let mut i = 0;
        while i < n {
            let chunk = (n - i).min(SENDMMSG_MAX);
            // SAFETY: headers i..i+chunk were filled above and point into `batch` and
            // `self.tx`, both untouched until this returns.
            let r =
                unsafe { libc::sendmmsg(self.fd, self.tx.hdrs[i..].as_mut_ptr(), chunk as _, 0) };
            rep.calls += 1;
            if r > 0 {
                for m in &plan.msgs[i..i + r as usize] {
                    rep.packets += u64::from(m.count);
                    if m.count > 1 {
                        rep.gso_msgs += 1;
                        rep.gso_packets += u64::from(m.count);
                    }
                }
                i += r as usize;
                continue;
            }
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            // The first message of the chunk failed: skip it and go on with the rest.
            rep.failed(plan.msgs[i].count, e);
            i += 1;
        }
        rep
    }
}

/// Blocks until `fd` is readable or `timeout` passes.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if r < 0 && errno() != libc::EINTR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
