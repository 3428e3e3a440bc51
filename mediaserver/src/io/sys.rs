//! Socket plumbing shared by the backends: raw socket addresses, the transmit message arrays
//! with their `UDP_SEGMENT` control messages, the receive buffer pool, and a GSO probe.
//!
//! These call `libc` directly: no maintained crate exposes recvmmsg/sendmmsg over buffers
//! that the caller pre-allocates once (nix's wrappers build their headers per call), and the
//! `UDP_SEGMENT` cmsg has no safe wrapper in std or socket2. Every pointer written into a
//! header points into storage owned by the same struct, which is heap-allocated and never
//! resized while a header that points into it is in use.

use super::plan::Plan;
use mesh::TxBatch;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams one receive call takes at most.
pub const RX_BATCH: usize = 64;
/// Bytes per receive buffer. RTP stays under a 1500-byte MTU; a longer datagram arrives
/// truncated and is dropped (counted as `rx_truncated`).
pub const RX_BUF: usize = 2048;
/// Messages one `sendmmsg` takes at most (`UIO_MAXIOV`).
pub const SENDMMSG_MAX: usize = 1024;

/// Room for an IPv4 or IPv6 socket address.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl Default for RawAddr {
    fn default() -> Self {
        // SAFETY: all-zero is a valid value of both C structs.
        unsafe { zeroed() }
    }
}

pub const RAW_ADDR_LEN: libc::socklen_t = size_of::<RawAddr>() as libc::socklen_t;

impl RawAddr {
    /// Writes `a` and returns its length.
    pub fn set(&mut self, a: &SocketAddr) -> libc::socklen_t {
        match a {
            SocketAddr::V4(v) => {
                self.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(v) => {
                self.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v.port().to_be(),
                    sin6_flowinfo: v.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v.ip().octets(),
                    },
                    sin6_scope_id: v.scope_id(),
                };
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    /// Reads the address the kernel wrote, `len` bytes of it.
    pub fn get(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        // SAFETY: the family field is at the same offset in both variants, and every bit
        // pattern is a valid integer.
        let family = unsafe { self.v4.sin_family } as libc::c_int;
        match family {
            libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in.
                let v = unsafe { self.v4 };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(v.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(v.sin_port),
                )))
            }
            libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the kernel wrote a sockaddr_in6.
                let v = unsafe { self.v6 };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v.sin6_addr.s6_addr),
                    u16::from_be(v.sin6_port),
                    v.sin6_flowinfo,
                    v.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Room for one `UDP_SEGMENT` control message (`CMSG_SPACE(sizeof(u16))`), aligned as a
/// `cmsghdr` must be.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct CmsgBuf([u8; 32]);

fn gso_cmsg_space() -> usize {
    // SAFETY: pure arithmetic.
    unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) as usize }
}

/// Writes a `UDP_SEGMENT` control message for `seg`-byte segments into `hdr`'s buffer.
///
/// # Safety
/// `hdr.msg_control` must point at a [`CmsgBuf`] that outlives the send.
unsafe fn set_gso(hdr: &mut libc::msghdr, seg: u16) {
    hdr.msg_controllen = gso_cmsg_space() as _;
    // SAFETY: msg_control/msg_controllen describe a buffer large enough for one cmsg.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
    }
}

/// What one send of a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Packets the kernel accepted.
    pub packets: u64,
    /// Packets that failed to send.
    pub errors: u64,
    /// System calls made (sendmmsg, or io_uring_enter for sends).
    pub calls: u64,
    /// GSO messages sent and the packets they carried.
    pub gso_msgs: u64,
    pub gso_packets: u64,
    /// A GSO send failed in a way that means the path cannot do GSO (EIO: no checksum
    /// offload); the caller turns GSO off.
    pub gso_broken: bool,
}

impl SendReport {
    /// Accounts a failed message of `count` packets with `errno`.
    pub fn failed(&mut self, count: u32, errno: i32) {
        self.errors += u64::from(count);
        if count > 1 && errno == libc::EIO {
            self.gso_broken = true;
        }
    }
}

/// The headers, iovecs, addresses and control messages for one planned batch.
pub struct TxMsgs {
    pub hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    cmsgs: Vec<CmsgBuf>,
}

impl TxMsgs {
    pub fn with_capacity(packets: usize) -> Self {
        Self {
            hdrs: Vec::with_capacity(packets),
            iovs: Vec::with_capacity(packets * 2),
            addrs: Vec::with_capacity(packets),
            cmsgs: Vec::with_capacity(packets),
        }
    }

    /// Fills one header per planned message. The headers point into `batch` and into `self`,
    /// so both must stay untouched until the sends complete.
    pub fn fill(&mut self, batch: &TxBatch, plan: &Plan) {
        let n = plan.msgs.len();
        let packets = plan.order.len();
        // Size everything first: no resize may move storage once pointers are taken.
        // SAFETY (zeroed): all-zero is a valid mmsghdr (null pointers, zero lengths).
        self.hdrs.resize(n, unsafe { zeroed() });
        self.addrs.resize(n, RawAddr::default());
        self.cmsgs.resize(n, CmsgBuf::default());
        self.iovs.resize(
            packets * 2,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        let mut iov = 0usize;
        for (k, m) in plan.msgs.iter().enumerate() {
            let first_iov = iov;
            for &i in plan.packets(m) {
                let p = batch.get(i as usize).expect("planned index in batch");
                for part in p.parts() {
                    if !part.is_empty() {
                        self.iovs[iov] = libc::iovec {
                            iov_base: part.as_ptr() as *mut libc::c_void,
                            iov_len: part.len(),
                        };
                        iov += 1;
                    }
                }
            }
            let dest = batch.dest(plan.order[m.first as usize] as usize);
            let namelen = self.addrs[k].set(&dest);
            // SAFETY: all-zero is a valid msghdr.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_name = &mut self.addrs[k] as *mut RawAddr as *mut libc::c_void;
            h.msg_namelen = namelen;
            h.msg_iov = self.iovs[first_iov..].as_mut_ptr();
            h.msg_iovlen = (iov - first_iov) as _;
            if m.count > 1 {
                h.msg_control = &mut self.cmsgs[k] as *mut CmsgBuf as *mut libc::c_void;
                // SAFETY: msg_control points at this message's CmsgBuf, owned by self.
                unsafe { set_gso(&mut h, m.seg as u16) };
            }
            self.hdrs[k] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
    }
}

/// Pre-allocated receive buffers with their headers, for recvmmsg.
pub struct RxPool {
    bufs: Box<[[u8; RX_BUF]]>,
    addrs: Box<[RawAddr]>,
    iovs: Box<[libc::iovec]>,
    pub hdrs: Box<[libc::mmsghdr]>,
}

impl RxPool {
    pub fn new(slots: usize) -> Self {
        let mut p = Self {
            bufs: vec![[0u8; RX_BUF]; slots].into_boxed_slice(),
            addrs: vec![RawAddr::default(); slots].into_boxed_slice(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                slots
            ]
            .into_boxed_slice(),
            // SAFETY: all-zero is a valid mmsghdr.
            hdrs: vec![unsafe { zeroed::<libc::mmsghdr>() }; slots].into_boxed_slice(),
        };
        // Boxed slices never move, so these pointers stay valid for the pool's life.
        for i in 0..slots {
            p.iovs[i] = libc::iovec {
                iov_base: p.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: RX_BUF,
            };
            let h = &mut p.hdrs[i].msg_hdr;
            h.msg_name = &mut p.addrs[i] as *mut RawAddr as *mut libc::c_void;
            h.msg_iov = &mut p.iovs[i];
            h.msg_iovlen = 1;
        }
        p.reset_all();
        p
    }

    pub fn len(&self) -> usize {
        self.hdrs.len()
    }

    /// Restores the fields the kernel overwrites, before a slot is received into again.
    fn reset(&mut self, i: usize) {
        let h = &mut self.hdrs[i];
        h.msg_hdr.msg_namelen = RAW_ADDR_LEN;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }

    pub fn reset_all(&mut self) {
        for i in 0..self.hdrs.len() {
            self.reset(i);
        }
    }

    /// Datagram in slot `i`: `None` when truncated or from an unknown address family.
    pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let from = self.addrs[i].get(h.msg_hdr.msg_namelen)?;
        Some((from, &self.bufs[i][..h.msg_len as usize]))
    }
}

/// Whether the kernel takes `UDP_SEGMENT` (Linux 4.18+), tried on a throwaway socket so the
/// real one keeps no default segment size.
pub fn gso_supported(like: &UdpSocket) -> bool {
    let Ok(local) = like.local_addr() else {
        return false;
    };
    let mut any = local;
    any.set_port(0);
    let Ok(probe) = UdpSocket::bind(any) else {
        return false;
    };
    let seg: libc::c_int = 1200;
    // SAFETY: setsockopt with a valid fd and an int option value.
    let r = unsafe {
        libc::setsockopt(
            probe.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &seg as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// The calling thread's errno after a failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addr_round_trips() {
        for s in ["127.0.0.1:5004", "[::1]:6000", "10.1.2.3:1"] {
            let a: SocketAddr = s.parse().unwrap();
            let mut r = RawAddr::default();
            let len = r.set(&a);
            assert_eq!(r.get(len), Some(a));
        }
        assert_eq!(RawAddr::default().get(RAW_ADDR_LEN), None);
    }

    #[test]
    fn gso_cmsg_fits() {
        assert!(gso_cmsg_space() <= size_of::<CmsgBuf>());
    }
}
