//! Batched UDP I/O for the load generator and the raw baseline: `recvmmsg`, `sendmmsg` and
//! `epoll` through `libc`, plus socket buffer sizing.
//!
//! Kept small and Linux-only on purpose: the harness must cost as little CPU per packet as
//! the best the server could do, or it would measure itself.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// A `sockaddr_storage` with its length, ready for `msg_name`.
#[derive(Clone, Copy)]
pub struct RawAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(addr: SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// Reads a socket address the kernel wrote; `None` for families other than IPv4 and IPv6.
pub fn to_socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Control-message bytes per slot (room for a UDP_GRO segment size and then some).
const CTRL_WORDS: usize = 8;

/// Buffers for one `recvmmsg` call of up to `slots` datagrams of up to `size` bytes.
///
/// The header array points into the other arrays, so a batch is built once on the thread
/// that uses it and never moved between threads (it is not `Send`).
pub struct RecvBatch {
    size: usize,
    bufs: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Per slot, u64-aligned as `cmsghdr` needs.
    ctrl: Vec<u64>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

impl RecvBatch {
    pub fn new(slots: usize, size: usize) -> RecvBatch {
        let slots = slots.max(1);
        let mut bufs = vec![0u8; slots * size];
        let mut iovecs: Vec<libc::iovec> = (0..slots)
            .map(|i| libc::iovec {
                // SAFETY: i * size is within `bufs`.
                iov_base: unsafe { bufs.as_mut_ptr().add(i * size) }.cast(),
                iov_len: size,
            })
            .collect();
        // SAFETY: plain data; zero is valid.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; slots];
        let mut ctrl = vec![0u64; slots * CTRL_WORDS];
        let hdrs = (0..slots)
            .map(|i| {
                // SAFETY: plain data; zero is valid.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_iov = &mut iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_control = ctrl[i * CTRL_WORDS..].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CTRL_WORDS * 8;
                h
            })
            .collect();
        RecvBatch {
            size,
            bufs,
            iovecs,
            addrs,
            ctrl,
            hdrs,
            filled: 0,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `recvmmsg` with `flags` (e.g. `MSG_DONTWAIT` or `MSG_WAITFORONE`). Returns the
    /// number of datagrams now in the batch; `WouldBlock` when there was none.
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CTRL_WORDS * 8;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers owned by `self`.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// Datagrams received by the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The bytes of datagram `i` (truncated to the slot size).
    pub fn data(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(self.size);
        &self.bufs[i * self.size..i * self.size + len]
    }

    /// The segment size of datagram `i` when the kernel coalesced several equal-sized
    /// datagrams into it (`UDP_GRO`, see [`enable_gro`]); `None` for a plain datagram.
    pub fn segment_size(&self, i: usize) -> Option<usize> {
        let h = &self.hdrs[i].msg_hdr;
        debug_assert!(self.ctrl.len() >= CTRL_WORDS * (i + 1));
        // SAFETY: the kernel filled `msg_control` up to `msg_controllen` with cmsgs; the CMSG
        // macros stay within that length.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                    let mut v: libc::c_int = 0;
                    std::ptr::copy_nonoverlapping(
                        libc::CMSG_DATA(c),
                        (&mut v as *mut libc::c_int).cast::<u8>(),
                        size_of::<libc::c_int>(),
                    );
                    return usize::try_from(v).ok().filter(|&s| s > 0);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Where datagram `i` came from.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        to_socket_addr(&self.addrs[i])
    }

    /// An iovec covering exactly datagram `i`, for zero-copy resending with `sendmmsg`.
    pub fn iovec(&self, i: usize) -> libc::iovec {
        libc::iovec {
            iov_base: self.iovecs[i].iov_base,
            iov_len: self.hdrs[i].msg_len as usize,
        }
    }
}

/// Sends `hdrs` with `sendmmsg` until all went out, skipping a message whose send fails
/// (an ICMP error from a departed peer, say) and passing its index to `failed`. Returns the
/// number of messages sent.
///
/// # Safety
/// Every header must point at live iovecs, control data and address for the duration of
/// the call.
pub unsafe fn send_all(
    fd: RawFd,
    hdrs: &mut [libc::mmsghdr],
    mut failed: impl FnMut(usize),
) -> usize {
    let (mut done, mut sent) = (0, 0);
    while done < hdrs.len() {
        let rest = &mut hdrs[done..];
        // SAFETY: the caller guarantees the headers' pointers.
        let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if n > 0 {
            done += n as usize;
            sent += n as usize;
        } else {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => std::thread::yield_now(),
                _ => {
                    failed(done);
                    done += 1;
                }
            }
        }
    }
    sent
}

/// Lets the kernel hand over a burst of equal-sized datagrams from one sender as one
/// coalesced read (`UDP_GRO`), as a GSO send produces them; [`RecvBatch::segment_size`] tells
/// how to split it. The receive buffer must then hold 64 KiB per slot.
pub fn enable_gro(sock: &UdpSocket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for `bytes` of receive and send buffer, past `rmem_max`/`wmem_max` when we may
/// (root: `SO_RCVBUFFORCE`). Best effort: a loaded receiver drops what does not fit, and
/// that shows up as loss and in `udp_rcvbuf_errors`.
pub fn size_buffers(sock: &UdpSocket, bytes: usize) {
    let fd = sock.as_raw_fd();
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(fd, force, v).is_err() {
            let _ = setsockopt_int(fd, plain, v);
        }
    }
}

fn setsockopt_int(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A level-triggered epoll set whose events carry a caller-chosen `u64` token.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    /// Watches `fd` for input.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is live for the call.
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and returns the tokens of ready descriptors.
    pub fn wait(&mut self, timeout_ms: i32, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        // SAFETY: the events buffer is live and its length is passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        ready.extend(self.events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GSO send of three 100-byte segments arrives at a GRO socket as one read of 300 bytes
    /// with a segment size of 100 (or, on kernels that segment anyway, as three datagrams).
    #[test]
    fn gro_reports_segment_size() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        if enable_gro(&b).is_err() {
            return; // kernel without UDP_GRO
        }
        let seg: u16 = 100;
        let payload = vec![7u8; 300];
        let dest = RawAddr::new(b.local_addr().unwrap());
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        };
        let mut cbuf = [0u64; 8];
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&dest.storage as *const libc::sockaddr_storage)
            .cast_mut()
            .cast();
        msg.msg_namelen = dest.len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            std::ptr::copy_nonoverlapping(
                (&seg as *const u16).cast::<u8>(),
                libc::CMSG_DATA(c),
                size_of::<u16>(),
            );
        }
        if unsafe { libc::sendmsg(a.as_raw_fd(), &msg, 0) } < 0 {
            return; // no GSO here
        }
        let mut batch = RecvBatch::new(8, 65536);
        let mut bytes = 0;
        while bytes < 300 {
            let n = batch.recv(b.as_raw_fd(), libc::MSG_WAITFORONE).unwrap();
            for i in 0..n {
                let len = batch.data(i).len();
                if len > 100 {
                    assert_eq!(batch.segment_size(i), Some(100));
                }
                bytes += len;
            }
        }
        assert_eq!(bytes, 300);
    }

    #[test]
    fn raw_addr_round_trip() {
        for a in ["127.0.0.1:4000", "[::1]:5000"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(to_socket_addr(&RawAddr::new(a).storage), Some(a));
        }
    }

    #[test]
    fn recvmmsg_and_zero_copy_sendmmsg() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        size_buffers(&b, 1 << 20);
        for i in 0..3u8 {
            a.send_to(&[i; 10], b.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::new(8, 64);
        let mut got = 0;
        while got < 3 {
            got += batch.recv(b.as_raw_fd(), libc::MSG_WAITFORONE).unwrap();
        }
        assert_eq!(batch.data(batch.len() - 1).len(), 10);
        assert_eq!(batch.source(0), Some(a.local_addr().unwrap()));
        // Forward slot 0 to c twice, pointing at the same bytes.
        let mut iov = batch.iovec(0);
        let mut dest = RawAddr::new(c.local_addr().unwrap());
        let mut hdrs: Vec<libc::mmsghdr> = (0..2)
            .map(|_| {
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_iov = &mut iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (&mut dest.storage as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = dest.len;
                h
            })
            .collect();
        let mut failed = 0;
        let sent = unsafe { send_all(b.as_raw_fd(), &mut hdrs, |_| failed += 1) };
        assert_eq!((sent, failed), (2, 0));
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (10, b.local_addr().unwrap()));
        }
        let mut ep = Epoll::new(4).unwrap();
        let mut ready = Vec::new();
        ep.add(c.as_raw_fd(), 7).unwrap();
        ep.wait(0, &mut ready).unwrap();
        assert!(ready.is_empty());
        a.send_to(b"x", c.local_addr().unwrap()).unwrap();
        ep.wait(1000, &mut ready).unwrap();
        assert_eq!(ready, vec![7]);
    }
}
