//! The raw baseline: the least work a forwarder on plain sockets can do for the same packet
//! mix. One thread, `recvmmsg` in, one hash lookup of the source address, and `sendmmsg`
//! out with every copy pointing at the received bytes (zero-copy fan-out). No mesh, no
//! statistics, no filtering beyond "not back to the sender".
//!
//! Members register with a [`crate::wire::RAW_JOIN`] datagram from the socket they will use;
//! `loadgen --raw` does that. Whatever the media server achieves is reported as a ratio to
//! this, measured on the same machine in the same run.

use crate::netio::{self, RawAddr, RecvBatch};
use crate::wire::{parse_raw_msg, raw_msg, RAW_JOIN, RAW_OK};
use crate::BenchError;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 64;
/// Datagrams per `sendmmsg`.
pub const SEND_BATCH: usize = 1024;
/// Largest datagram forwarded.
const MAX_DATAGRAM: usize = 9216;

/// What the forwarder did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub send_errors: u64,
    /// From addresses that never registered.
    pub unknown: u64,
    pub members: u64,
}

/// The forwarding table: members by address, and each conference's member list.
#[derive(Default)]
struct Table {
    by_addr: HashMap<SocketAddr, (u32, usize)>,
    confs: HashMap<u32, Vec<usize>>,
    dests: Vec<RawAddr>,
}

impl Table {
    /// Adds `from` to `conf` (again: no change).
    fn register(&mut self, from: SocketAddr, conf: u32) {
        if self.by_addr.contains_key(&from) {
            return;
        }
        let idx = self.dests.len();
        self.dests.push(RawAddr::new(from));
        self.by_addr.insert(from, (conf, idx));
        self.confs.entry(conf).or_default().push(idx);
    }
}

/// Most segments in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send.
const GSO_MAX_BYTES: usize = 65_000;

/// Forwards on `socket` until `stop` is set; checks it at least every 100 ms.
///
/// With `gso`, the copies of one receive batch that go to the same member are sent as one
/// `UDP_SEGMENT` message (equal-sized runs), the raw counterpart of the media server's GSO
/// fan-out; without, every copy is its own `sendmmsg` entry.
pub fn serve(socket: &UdpSocket, stop: &AtomicBool, gso: bool) -> Result<RawStats, BenchError> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(BenchError::io("set timeout"))?;
    netio::size_buffers(socket, 8 << 20);
    let fd = socket.as_raw_fd();
    let mut table = Table::default();
    let mut stats = RawStats::default();
    let mut batch = RecvBatch::new(RECV_BATCH, MAX_DATAGRAM);
    let mut send_iov: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        };
        RECV_BATCH
    ];
    let mut out: Vec<libc::mmsghdr> = Vec::with_capacity(SEND_BATCH);
    let mut g = GsoScratch::default();
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.recv(fd, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                continue
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(BenchError::io("recvmmsg")(e)),
        };
        #[allow(clippy::needless_range_loop)] // `i` picks the batch slot and its send iovec
        for i in 0..n {
            stats.packets_in += 1;
            let Some(from) = batch.source(i) else {
                continue;
            };
            let data = batch.data(i);
            if let Some((conf, part)) = parse_raw_msg(RAW_JOIN, data) {
                // The headers pending in `out` point into the table: send them first.
                flush(fd, &mut out, &mut stats);
                table.register(from, conf);
                stats.members = table.dests.len() as u64;
                let _ = socket.send_to(&raw_msg(RAW_OK, conf, part), from);
                continue;
            }
            let Some(&(conf, me)) = table.by_addr.get(&from) else {
                stats.unknown += 1;
                continue;
            };
            send_iov[i] = batch.iovec(i);
            let Some(members) = table.confs.get(&conf) else {
                continue;
            };
            for &m in members {
                if m == me {
                    continue;
                }
                if gso {
                    g.add(m, i, table.dests.len());
                    continue;
                }
                if out.len() == SEND_BATCH {
                    flush(fd, &mut out, &mut stats);
                }
                let dest = &table.dests[m];
                // SAFETY: plain data; zero is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = &mut send_iov[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (&dest.storage as *const libc::sockaddr_storage)
                    .cast_mut()
                    .cast();
                h.msg_hdr.msg_namelen = dest.len;
                out.push(h);
            }
        }
        if gso {
            g.send(fd, &send_iov, &table, &mut stats);
        } else {
            flush(fd, &mut out, &mut stats);
        }
    }
    Ok(stats)
}

fn flush(fd: std::os::fd::RawFd, out: &mut Vec<libc::mmsghdr>, stats: &mut RawStats) {
    if out.is_empty() {
        return;
    }
    // SAFETY: the headers point at `send_iov` slots, the receive batch and the table's
    // addresses, none of which change until this returns.
    let sent = unsafe { netio::send_all(fd, out, |_| stats.send_errors += 1) };
    stats.packets_out += sent as u64;
    out.clear();
}

/// Reused buffers of the GSO mode: which batch slots go to which member, and the messages.
#[derive(Default)]
struct GsoScratch {
    /// Per member: batch slots to send it, in arrival order.
    per_dest: Vec<Vec<usize>>,
    /// Members with something in `per_dest`.
    touched: Vec<usize>,
    iov: Vec<libc::iovec>,
    ctrl: Vec<[u64; 4]>,
    hdrs: Vec<libc::mmsghdr>,
    /// Segments per header.
    segs: Vec<usize>,
}

impl GsoScratch {
    fn add(&mut self, member: usize, slot: usize, members: usize) {
        if self.per_dest.len() < members {
            self.per_dest.resize_with(members, Vec::new);
        }
        let list = &mut self.per_dest[member];
        if list.is_empty() {
            self.touched.push(member);
        }
        list.push(slot);
    }

    /// Builds one message per run of equal-sized packets to a member and sends them all.
    fn send(&mut self, fd: std::os::fd::RawFd, iov: &[libc::iovec], t: &Table, st: &mut RawStats) {
        let total: usize = self.touched.iter().map(|&m| self.per_dest[m].len()).sum();
        self.iov.clear();
        self.ctrl.clear();
        self.hdrs.clear();
        self.segs.clear();
        // Reserved up front: the headers point into these vectors, which must not move.
        self.iov.reserve(total);
        self.ctrl.reserve(total);
        for &m in &self.touched {
            let slots = &self.per_dest[m];
            let dest = &t.dests[m];
            let mut k = 0;
            while k < slots.len() {
                let seg = iov[slots[k]].iov_len;
                let first = self.iov.len();
                let mut bytes = 0;
                while k < slots.len() && self.iov.len() - first < GSO_MAX_SEGMENTS {
                    let len = iov[slots[k]].iov_len;
                    if len > seg || bytes + len > GSO_MAX_BYTES {
                        break;
                    }
                    self.iov.push(iov[slots[k]]);
                    bytes += len;
                    k += 1;
                    if len < seg {
                        break; // only the last segment may be shorter
                    }
                }
                let count = self.iov.len() - first;
                // SAFETY: plain data; zero is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = self.iov[first..].as_mut_ptr();
                h.msg_hdr.msg_iovlen = count;
                h.msg_hdr.msg_name = (&dest.storage as *const libc::sockaddr_storage)
                    .cast_mut()
                    .cast();
                h.msg_hdr.msg_namelen = dest.len;
                if count > 1 {
                    self.ctrl.push([0; 4]);
                    let buf = self.ctrl.last_mut().expect("just pushed");
                    segment_cmsg(&mut h.msg_hdr, buf, seg as u16);
                }
                self.hdrs.push(h);
                self.segs.push(count);
            }
        }
        let segs = &self.segs;
        let mut failed_segs = 0;
        // SAFETY: the headers point into `self.iov`, `self.ctrl` (not reallocated since they
        // were reserved), the receive batch and the table, all live for the call.
        unsafe { netio::send_all(fd, &mut self.hdrs, |i| failed_segs += segs[i]) };
        st.packets_out += (total - failed_segs) as u64;
        st.send_errors += failed_segs as u64;
        for &m in &self.touched {
            self.per_dest[m].clear();
        }
        self.touched.clear();
    }
}

/// Points `msg`'s control data at `buf`, holding one `UDP_SEGMENT` cmsg of `seg` bytes.
fn segment_cmsg(msg: &mut libc::msghdr, buf: &mut [u64; 4], seg: u16) {
    msg.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte buffer; the CMSG macros
    // address within it.
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::copy_nonoverlapping(
            (&seg as *const u16).cast::<u8>(),
            libc::CMSG_DATA(c),
            std::mem::size_of::<u16>(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn forwards_to_the_others_of_the_conference_only() {
        forwards(false);
    }

    #[test]
    fn forwards_with_gso() {
        forwards(true);
    }

    fn forwards(gso: bool) {
        let fwd = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = fwd.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || serve(&fwd, &s2, gso).unwrap());
        let socks: Vec<UdpSocket> = (0..4)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                s
            })
            .collect();
        let mut buf = [0u8; 64];
        for (i, s) in socks.iter().enumerate() {
            // Three in conference 0, one alone in conference 1.
            let conf = u32::from(i == 3);
            s.send_to(&raw_msg(RAW_JOIN, conf, i as u32), addr).unwrap();
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(parse_raw_msg(RAW_OK, &buf[..n]), Some((conf, i as u32)));
        }
        socks[0].send_to(b"hello media", addr).unwrap();
        for s in &socks[1..3] {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"hello media"[..], addr));
        }
        // A burst of equal-sized packets (a GSO run when they share a batch) and a shorter
        // one arrives as separate datagrams, in order.
        for p in [&b"aaaa"[..], b"bbbb", b"cc"] {
            socks[0].send_to(p, addr).unwrap();
        }
        for s in &socks[1..3] {
            for p in [&b"aaaa"[..], b"bbbb", b"cc"] {
                let (n, _) = s.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], p);
            }
        }
        socks[0]
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(socks[0].recv_from(&mut buf).is_err(), "no echo");
        socks[3]
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(socks[3].recv_from(&mut buf).is_err(), "no cross-talk");
        stop.store(true, Ordering::Relaxed);
        let stats = t.join().unwrap();
        assert_eq!((stats.members, stats.packets_out), (4, 8));
    }
}
