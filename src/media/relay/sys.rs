//! The relay's system calls, and every `unsafe` block of the relay: socket creation (socket2),
//! epoll, the wake-up eventfd, and batched datagram I/O with `recvmmsg` / `sendmmsg` over
//! preallocated buffers and message headers. Everything above this module is safe code that sees
//! tokens, slices of datagrams and `SocketAddr`s.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::MAX_DATAGRAM;

/// A non-blocking UDP socket bound to `addr` (errors name the address).
pub(super) fn bind(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("relay socket {addr}: {e}"));
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(named)?;
    s.set_nonblocking(true).map_err(named)?;
    if recv_buffer > 0 {
        // Best effort: capped by net.core.rmem_max without error.
        let _ = s.set_recv_buffer_size(recv_buffer);
    }
    s.bind(&addr.into()).map_err(named)?;
    Ok(s)
}

/// The address the socket is bound to, if the kernel tells.
pub(super) fn bound_addr(s: &Socket) -> Option<SocketAddr> {
    s.local_addr().ok().and_then(|a| a.as_socket())
}

/// An epoll instance watching sockets for input; each registration carries a `u64` token.
pub(super) struct Epoll {
    fd: OwnedFd,
}

/// The tokens of the descriptors found ready by one [`Epoll::wait`].
pub(super) struct Ready {
    evs: Vec<libc::epoll_event>,
    n: usize,
}

impl Ready {
    pub(super) fn with_capacity(cap: usize) -> Ready {
        // SAFETY: zeroed epoll_event is valid.
        let evs = (0..cap).map(|_| unsafe { mem::zeroed() }).collect();
        Ready { evs, n: 0 }
    }

    pub(super) fn tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.evs[..self.n].iter().map(|e| e.u64)
    }
}

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the returned fd is checked and owned right away.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(super) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid fds and a live epoll_event.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (done before closing it: a socket closed while registered could
    /// still be reported by the same wait).
    pub(super) fn del(&self, fd: RawFd) {
        // SAFETY: live fds; a failure (not registered) is harmless.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits without timeout until something is ready.
    pub(super) fn wait(&self, out: &mut Ready) -> io::Result<()> {
        out.n = 0;
        // SAFETY: evs is a live buffer of evs.len() entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                out.evs.as_mut_ptr(),
                out.evs.len() as i32,
                -1,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        out.n = n as usize;
        Ok(())
    }
}

/// The eventfd that wakes a relay thread when commands are queued for it.
pub(super) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(super) fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the returned fd is checked and owned right away.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 into an eventfd. A full counter (EAGAIN) still
        // leaves the eventfd readable, which is all that matters.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter (EAGAIN when already 0, which is fine).
    pub(super) fn drain(&self) {
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a live u64.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Outcome of one [`Batch::send`].
pub(super) enum SendOutcome {
    /// The first `count` queued datagrams from the offset were sent, `bytes` in all.
    Sent { count: usize, bytes: u64 },
    /// EINTR: try again.
    Interrupted,
    /// EAGAIN / ENOBUFS: the socket buffer is full.
    Full,
    /// Any other error (e.g. a pending ICMP error): it concerns the first datagram.
    Failed,
}

/// Preallocated per-thread packet buffers and message headers, reused for every batch: nothing
/// is allocated per packet. Received datagram `k` stays in buffer `k`; sending queues pointers
/// to those buffers, so a forwarded datagram is never copied.
pub(super) struct Batch {
    n: usize,
    _bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    _rx_iov: Vec<libc::iovec>,
    rx: Vec<libc::mmsghdr>,
    tx_iov: Vec<libc::iovec>,
    tx: Vec<libc::mmsghdr>,
    dest: Box<libc::sockaddr_storage>,
}

impl Batch {
    pub(super) fn new(n: usize) -> Batch {
        // SAFETY (all zeroed() below): plain C structs for which all-zero is a valid value.
        let mut bufs = vec![0u8; n * MAX_DATAGRAM];
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { mem::zeroed() }; n];
        let mut rx_iov: Vec<libc::iovec> = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0
            };
            n
        ];
        let tx_iov = rx_iov.clone();
        let mut rx: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
        let mut tx: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
        let mut dest: Box<libc::sockaddr_storage> = Box::new(unsafe { mem::zeroed() });
        let mut tx_iov = tx_iov;
        for k in 0..n {
            rx_iov[k].iov_base = bufs[k * MAX_DATAGRAM..].as_mut_ptr().cast();
            rx_iov[k].iov_len = MAX_DATAGRAM;
            rx[k].msg_hdr.msg_iov = &mut rx_iov[k];
            rx[k].msg_hdr.msg_iovlen = 1;
            rx[k].msg_hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_storage).cast();
            tx_iov[k].iov_base = rx_iov[k].iov_base;
            tx[k].msg_hdr.msg_iov = &mut tx_iov[k];
            tx[k].msg_hdr.msg_iovlen = 1;
            tx[k].msg_hdr.msg_name = (&mut *dest as *mut libc::sockaddr_storage).cast();
        }
        // The Vecs' heap blocks (and the Box) never move from here on, so the pointers hold.
        Batch {
            n,
            _bufs: bufs,
            addrs,
            _rx_iov: rx_iov,
            rx,
            tx_iov,
            tx,
            dest,
        }
    }

    /// Datagrams per receive.
    pub(super) fn capacity(&self) -> usize {
        self.n
    }

    /// Receives up to [`capacity`](Self::capacity) datagrams without waiting; how many (0 when
    /// none is queued, or on an error, e.g. a queued ICMP error, which this read consumes).
    pub(super) fn recv(&mut self, fd: RawFd) -> usize {
        for h in self.rx.iter_mut() {
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: rx holds n headers whose pointers target live buffers owned by `self`.
        let m = unsafe {
            libc::recvmmsg(
                fd,
                self.rx.as_mut_ptr(),
                self.n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        m.max(0) as usize
    }

    /// Whether received datagram `k` was longer than [`MAX_DATAGRAM`] (and so cut).
    pub(super) fn truncated(&self, k: usize) -> bool {
        self.rx[k].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// The source of received datagram `k`.
    pub(super) fn source(&self, k: usize) -> Option<SocketAddr> {
        from_raw(&self.addrs[k], self.rx[k].msg_hdr.msg_namelen)
    }

    /// Puts received datagram `k` in send position `slot`.
    pub(super) fn queue(&mut self, slot: usize, k: usize) {
        let len = self.rx[k].msg_len as usize;
        // SAFETY: msg_iov points at the live rx iovec k.
        self.tx_iov[slot].iov_base = unsafe { (*self.rx[k].msg_hdr.msg_iov).iov_base };
        self.tx_iov[slot].iov_len = len;
    }

    /// Addresses the first `count` queued datagrams to `dest`.
    pub(super) fn set_dest(&mut self, dest: &SocketAddr, count: usize) {
        let namelen = to_raw(dest, &mut self.dest);
        for h in self.tx[..count].iter_mut() {
            h.msg_hdr.msg_namelen = namelen;
            h.msg_len = 0;
        }
    }

    /// Sends queued datagrams `off..count` from `fd` without waiting.
    pub(super) fn send(&mut self, fd: RawFd, off: usize, count: usize) -> SendOutcome {
        // SAFETY: tx[off..count] are initialised headers pointing at live buffers.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.tx.as_mut_ptr().add(off),
                (count - off) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            let r = r as usize;
            let bytes = self.tx_iov[off..off + r]
                .iter()
                .map(|t| t.iov_len as u64)
                .sum();
            return SendOutcome::Sent { count: r, bytes };
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => SendOutcome::Interrupted,
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) => SendOutcome::Full,
            _ => SendOutcome::Failed,
        }
    }
}

fn to_raw(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            *sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            *sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_raw(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match st.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say it is a sockaddr_in.
            let sin =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family and length say it is a sockaddr_in6.
            let sin6 =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_survive_the_round_trip() {
        for a in ["10.0.0.1:4000", "[2001:db8::1]:5004", "[::ffff:10.0.0.2]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: zeroed sockaddr_storage is valid.
            let mut st: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let len = to_raw(&a, &mut st);
            assert_eq!(from_raw(&st, len), Some(a));
        }
    }
}
