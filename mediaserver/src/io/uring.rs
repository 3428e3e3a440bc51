//! The `uring` backend: io_uring with one multishot RecvMsg over a ring of provided buffers
//! (Linux 6.0+), and one SendMsg per planned message, all submitted together (batched sends).
//! When idle it waits in `io_uring_enter` with a timeout.
//!
//! One multishot request, not many single ones: with many RecvMsg requests parked on one
//! socket, every datagram would wake them all. The kernel picks a buffer from the ring for each
//! datagram and posts one completion per datagram, in arrival order. Buffers handed to the mesh
//! go back to the ring at the start of the next receive.

use super::plan::Plan;
use super::sys::{RawAddr, SendReport, TxMsgs, RAW_ADDR_LEN, RX_BATCH, RX_BUF};
use io_uring::types::{BufRingEntry, RecvMsgOut};
use io_uring::{cqueue, opcode, types, IoUring, Probe};
use mesh::TxBatch;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Provided buffers (a power of two): datagrams the kernel can hold for us between receives.
const BUFS: usize = 512;
/// Bytes per provided buffer: the `io_uring_recvmsg_out` header, the source address, and a
/// payload of up to [`RX_BUF`].
const BUF_LEN: usize = 16 + RAW_ADDR_LEN as usize + RX_BUF;
/// The buffer group id of the ring.
const BGID: u16 = 0;
/// Submission queue entries; the completion queue gets four times as many.
const SQ_ENTRIES: u32 = 1024;
/// Sends in flight before the backend stops to reap them, so the CQ never overflows.
const MAX_SENDS_IN_FLIGHT: usize = 2048;
/// `user_data` of the multishot receive.
const RECV: u64 = 1;
/// `user_data` bit that marks a send; the rest is the message index.
const SEND: u64 = 1 << 63;
/// `user_data` of cancel requests, whose completions carry nothing of interest.
const CANCEL: u64 = 1 << 62;

/// The provided-buffer ring and the buffers it hands out. Freed only after the ring that
/// references it (field order in [`Uring`]).
struct Buffers {
    /// `BUFS` ring entries, page-aligned as the kernel requires.
    ring: *mut BufRingEntry,
    layout: std::alloc::Layout,
    slab: Box<[u8]>,
    /// Our copy of the ring's tail.
    tail: u16,
}

impl Buffers {
    fn new() -> io::Result<Self> {
        let size = BUFS * std::mem::size_of::<BufRingEntry>();
        let layout = std::alloc::Layout::from_size_align(size.max(4096), 4096)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: non-zero size; zeroed entries and a zero tail are the empty ring.
        let ring = unsafe { std::alloc::alloc_zeroed(layout) } as *mut BufRingEntry;
        if ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut b = Self {
            ring,
            layout,
            slab: vec![0u8; BUFS * BUF_LEN].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..BUFS as u16 {
            b.give(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Puts buffer `bid` back on the ring (visible to the kernel after [`Buffers::publish`]).
    fn give(&mut self, bid: u16) {
        let i = usize::from(self.tail) & (BUFS - 1);
        // SAFETY: `i < BUFS`, inside the ring allocation; the kernel reads only entries
        // between its head and the published tail, and this one is past the tail.
        let e = unsafe { &mut *self.ring.add(i) };
        e.set_addr(self.slab[usize::from(bid) * BUF_LEN..].as_ptr() as u64);
        e.set_len(BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the tail so the kernel sees the buffers given back.
    fn publish(&self) {
        // SAFETY: the tail field lies in the first entry of our live ring allocation, and
        // the kernel reads it concurrently, hence the atomic release store.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buf(&self, bid: u16) -> &[u8] {
        let at = usize::from(bid) * BUF_LEN;
        &self.slab[at..at + BUF_LEN]
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ring as *mut u8, self.layout) };
    }
}

pub struct Uring {
    ring: IoUring,
    fd: RawFd,
    bufs: Buffers,
    /// The header the multishot receive was armed with: only its name and control lengths
    /// matter, and parsing a buffer needs them. Boxed so its address is stable.
    msg: Box<libc::msghdr>,
    /// Whether the multishot receive is in flight.
    armed: bool,
    /// Received, not yet handed out: (buffer id, bytes used), in arrival order.
    ready: VecDeque<(u16, u32)>,
    /// Handed out by the last receive; their buffers go back at the next.
    current: Vec<(u16, u32)>,
    tx: TxMsgs,
    sends_in_flight: usize,
}

impl Uring {
    /// Sets up the ring, registers the buffers and arms the receive; fails when io_uring is
    /// unavailable (old kernel, seccomp, `kernel.io_uring_disabled`) or lacks what this
    /// backend uses.
    pub fn new(fd: RawFd, tx_packets: usize) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 4)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .build(SQ_ENTRIES)
            // Kernels before 6.0 refuse the flags: try again without them.
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(SQ_ENTRIES * 4)
                    .build(SQ_ENTRIES)
            })?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks EXT_ARG or NODROP (Linux 5.11+ needed)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::RecvMsg::CODE, "RecvMsg"),
            (opcode::SendMsg::CODE, "SendMsg"),
            (opcode::AsyncCancel::CODE, "AsyncCancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring lacks {name}"),
                ));
            }
        }
        let bufs = Buffers::new()?;
        // SAFETY: the ring memory is BUFS page-aligned entries and lives in `bufs`, which is
        // dropped after `ring` (field order).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.ring as u64, BUFS as u16, BGID, 0)?
        };
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_namelen = RAW_ADDR_LEN;
        let mut u = Self {
            ring,
            fd,
            bufs,
            msg,
            armed: false,
            ready: VecDeque::with_capacity(BUFS),
            current: Vec::with_capacity(RX_BATCH),
            tx: TxMsgs::with_capacity(tx_packets),
            sends_in_flight: 0,
        };
        u.arm()?;
        u.ring.submit()?;
        // Multishot RecvMsg needs Linux 6.0; older kernels fail the request at once.
        let ts = types::Timespec::from(Duration::from_millis(1));
        let _ = u
            .ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts));
        let mut none = SendReport::default();
        let failed = u.reap(None, &mut none);
        if let Some(e) = failed {
            return Err(io::Error::new(
                e.kind(),
                format!("multishot RecvMsg with provided buffers: {e}"),
            ));
        }
        Ok(u)
    }

    /// Queues the multishot receive.
    fn arm(&mut self) -> io::Result<()> {
        let e = opcode::RecvMsgMulti::new(types::Fd(self.fd), &*self.msg, BGID)
            .build()
            .user_data(RECV);
        // SAFETY: `self.msg` is boxed and lives as long as the ring (see Drop).
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit()?;
        }
        self.armed = true;
        Ok(())
    }

    /// Moves completions off the CQ: datagrams to `ready`, sends into `rep`. Returns the
    /// error that ended the receive, if it ended for another reason than running out of
    /// buffers.
    fn reap(&mut self, plan: Option<&Plan>, rep: &mut SendReport) -> Option<io::Error> {
        let mut failed = None;
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            let res = cqe.result();
            if ud & CANCEL != 0 {
                continue;
            }
            if ud & SEND != 0 {
                self.sends_in_flight -= 1;
                let Some(m) = plan.and_then(|p| p.msgs.get((ud & !SEND) as usize)) else {
                    continue;
                };
                if res >= 0 {
                    rep.packets += u64::from(m.count);
                    if m.count > 1 {
                        rep.gso_msgs += 1;
                        rep.gso_packets += u64::from(m.count);
                    }
                } else {
                    rep.failed(m.count, -res);
                }
                continue;
            }
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                // Ended: out of buffers (re-armed once they are back) or an error.
                self.armed = false;
                if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
                    failed = Some(io::Error::from_raw_os_error(-res));
                }
            }
            if let Some(bid) = cqueue::buffer_select(flags) {
                if res >= 0 {
                    self.ready.push_back((bid, res as u32));
                } else {
                    self.bufs.give(bid);
                }
            }
        }
        failed
    }

    /// Hands out up to [`RX_BATCH`] received datagrams, waiting up to `timeout` for the
    /// first. Returns how many and the nanoseconds spent blocked.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<(usize, u64)> {
        for &(bid, _) in &self.current {
            self.bufs.give(bid);
        }
        self.current.clear();
        let mut none = SendReport::default();
        if let Some(e) = self.reap(None, &mut none) {
            tracing::debug!(error = %e, "io_uring receive ended; re-arming");
        }
        // Buffers given back above and by `reap` (failed receives) become visible at once.
        self.bufs.publish();
        if !self.armed {
            self.arm()?;
        }
        let mut idle = 0;
        if self.ready.is_empty() {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            let t0 = Instant::now();
            let want = if timeout.is_zero() { 0 } else { 1 };
            match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => return Err(e),
            }
            idle = t0.elapsed().as_nanos() as u64;
            self.reap(None, &mut none);
        }
        while self.current.len() < RX_BATCH {
            match self.ready.pop_front() {
                Some(d) => self.current.push(d),
                None => break,
            }
        }
        Ok((self.current.len(), idle))
    }

    /// Datagram `i` of the last receive; `None` if it was truncated.
    pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let (bid, _) = self.current[i];
        let buf = self.bufs.buf(bid);
        let out = RecvMsgOut::parse(buf, &self.msg).ok()?;
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return None;
        }
        let mut raw = RawAddr::default();
        let name = out.name_data();
        // SAFETY: `name` is at most RAW_ADDR_LEN bytes (the name field we asked for), and
        // RawAddr is plain old data of that size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                name.as_ptr(),
                &mut raw as *mut RawAddr as *mut u8,
                name.len().min(RAW_ADDR_LEN as usize),
            )
        };
        let from = raw.get(name.len() as libc::socklen_t)?;
        // The payload borrows `out`; re-slice it from the buffer itself.
        let payload = out.payload_data();
        let at = payload.as_ptr() as usize - buf.as_ptr() as usize;
        Some((from, &buf[at..at + payload.len()]))
    }

    /// Sends the planned batch: one SendMsg per message, submitted together, and waits until
    /// all have completed (the headers point into `batch`).
    pub fn send(&mut self, batch: &TxBatch, plan: &Plan) -> SendReport {
        let mut rep = SendReport::default();
        self.tx.fill(batch, plan);
        let mut k = 0;
        let n = plan.msgs.len();
        while k < n {
            if self.sends_in_flight >= MAX_SENDS_IN_FLIGHT {
                self.flush_sends(plan, &mut rep, 1);
                continue;
            }
            let e = opcode::SendMsg::new(types::Fd(self.fd), &self.tx.hdrs[k].msg_hdr)
                .build()
                .user_data(SEND | k as u64);
            // SAFETY: the header points into `self.tx` and `batch`, both untouched until
            // every send has completed, which this function waits for.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                self.flush_sends(plan, &mut rep, 0);
                continue;
            }
            self.sends_in_flight += 1;
            k += 1;
        }
        while self.sends_in_flight > 0 {
            self.flush_sends(plan, &mut rep, self.sends_in_flight);
        }
        rep
    }

    /// Submits what is queued, waiting for `want` completions, and reaps.
    fn flush_sends(&mut self, plan: &Plan, rep: &mut SendReport, want: usize) {
        rep.calls += 1;
        let r = if want == 0 {
            self.ring.submit()
        } else {
            self.ring.submit_and_wait(want)
        };
        if let Err(e) = r {
            if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                tracing::warn!(error = %e, "io_uring submit failed");
            }
        }
        self.reap(Some(plan), rep);
    }
}

impl Drop for Uring {
    /// Cancels the receive and waits for it to end, so the kernel never writes into buffers
    /// that are gone.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let e = opcode::AsyncCancel::new(RECV).build().user_data(CANCEL);
        // SAFETY: a cancel request carries no pointers.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            if self.ring.submit().is_err() {
                return;
            }
        }
        let mut none = SendReport::default();
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.armed && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(None, &mut none);
        }
    }
}
