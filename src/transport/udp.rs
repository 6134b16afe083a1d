//! The UDP listener of a realm: one socket, one reader task. The reader screens sources
//! before anything is queued for the engine: a datagram from an address that is neither the
//! realm's core nor one of its partners is counted and dropped at the cost of one set lookup,
//! so a flood from unknown sources neither fills the engine's queue nor, by its depth, makes
//! the border shed real calls as overloaded. While the shard a datagram steers to is behind,
//! a new out-of-dialog INVITE is answered 503 here and never queued ([`super::Inbox::refuse`]).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::{Inbox, Received};
use crate::config::Transport;
use crate::sip::Limits;
use crate::transaction::Flow;

pub(super) fn socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // No SO_REUSEADDR: on Linux it would let a second instance bind the same UDP address and
    // silently take over the first one's signalling.
    // Bursts of retransmissions must not be dropped by a small default buffer.
    let _ = sock.set_recv_buffer_size(4 << 20);
    // The kernel stamps each datagram as it arrives: how long it then waited in this buffer is
    // part of the queue delay the admission stage judges (a 4 MiB buffer holds seconds of a
    // flood that the shards' own queues never see).
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and option value of the size passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// Who a realm's UDP listener lets through to the engine, and how many it did not.
#[derive(Debug, Default)]
pub struct Screen {
    allowed: RwLock<HashSet<IpAddr>>,
    dropped: AtomicU64,
}

impl Screen {
    pub fn new(allowed: impl IntoIterator<Item = IpAddr>) -> Screen {
        Screen {
            allowed: RwLock::new(allowed.into_iter().collect()),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn set(&self, allowed: impl IntoIterator<Item = IpAddr>) {
        *self.allowed.write().unwrap_or_else(|p| p.into_inner()) = allowed.into_iter().collect();
    }

    fn admits(&self, ip: IpAddr) -> bool {
        let ok = self
            .allowed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ip);
        if !ok {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Datagrams dropped since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

pub(super) async fn reader(
    realm: usize,
    sock: Arc<UdpSocket>,
    events: Inbox,
    limits: Limits,
    screen: Arc<Screen>,
) {
    // One byte more than the cap, so an oversized datagram is seen as such, not truncated.
    let mut buf = vec![0u8; limits.max_message_size.saturating_add(1).max(2048)];
    loop {
        let got = sock
            .async_io(Interest::READABLE, || recv_stamped(&sock, &mut buf))
            .await;
        match got {
            Ok((_, remote, _)) if !screen.admits(remote.ip()) => {}
            Ok((n, remote, waited)) => {
                // Admission: a shard that is behind refuses a new call here, at once, rather
                // than after the queue it would wait in (the source is screened already, so
                // strangers get no answer to reflect).
                if let Some((resp, to)) = events.refuse(realm, &buf[..n], &limits, remote, waited) {
                    if let Err(e) = sock.try_send_to(&resp, to) {
                        tracing::debug!(remote = %to, "udp send failed: {e}");
                    }
                    continue;
                }
                let flow = Flow {
                    realm,
                    transport: Transport::Udp,
                    remote,
                };
                let ev = Received::Message {
                    flow,
                    bytes: buf[..n].to_vec(),
                    peer: None,
                    // When it arrived, so the shard's measure includes the socket's wait.
                    at: Instant::now()
                        .checked_sub(waited)
                        .unwrap_or_else(Instant::now),
                };
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; they are not fatal.
                tracing::debug!("udp receive error: {e}");
            }
        }
    }
}

/// One datagram: its length, source and how long it waited in the socket buffer (from the
/// kernel's `SO_TIMESTAMPNS` stamp; zero when there is none).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Duration)> {
    // SAFETY: zeroed C structs are valid for recvmsg to fill; every pointer in `msg` points at
    // a live local of the size given; the cmsg walk stays within `control` (CMSG_* macros).
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                    u16::from_be(a.sin_port),
                )
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }
            _ => return Err(io::Error::other("datagram from an unknown address family")),
        };
        let mut waited = Duration::ZERO;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                let stamped = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                waited = now.saturating_sub(stamped);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, remote, waited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real sockets on loopback: only the allowed source's datagram reaches the queue, the
    /// other is counted; a new allowed set takes effect at once.
    #[tokio::test]
    async fn unknown_sources_never_reach_the_queue() {
        let sock = Arc::new(socket("127.0.0.1:0".parse().unwrap()).unwrap());
        let to = sock.local_addr().unwrap();
        let screen = Arc::new(Screen::new(["127.0.0.1".parse().unwrap()]));
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let limits = Limits::default();
        tokio::spawn(reader(0, sock, Inbox::single(tx), limits, screen.clone()));
        let stranger = std::net::UdpSocket::bind("127.0.0.77:0").unwrap();
        let friend = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger.send_to(b"from a stranger", to).unwrap();
        friend.send_to(b"from a friend", to).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let Received::Message { bytes, .. } = got else {
            panic!("a message")
        };
        assert_eq!(bytes, b"from a friend");
        assert_eq!(screen.take_dropped(), 1);
        screen.set(["127.0.0.77".parse().unwrap()]);
        stranger.send_to(b"now known", to).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(got, Received::Message { bytes, .. } if bytes == b"now known"));
    }

    fn request(method: &str, to_tag: &str, seq: u32) -> String {
        format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bKadm{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n\
             To: <sip:bob@127.0.0.1>{to_tag}\r\nCall-ID: admission-{seq}\r\n\
             CSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// Real sockets on loopback, the shard side driven through the same `Admission` a shard
    /// publishes to: while the shard is behind, a new INVITE is answered 503 + Retry-After (a
    /// To tag added, the rest echoed) by the reader and never queued; an in-dialog request, a
    /// CANCEL, an ACK and a response are still queued; once the shard catches up, new INVITEs
    /// are queued again.
    // Two workers: the UA's blocking receive must not stall the reader task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_answers_new_invites_while_the_shard_is_behind() {
        let sock = Arc::new(socket("127.0.0.1:0".parse().unwrap()).unwrap());
        let to = sock.local_addr().unwrap();
        let screen = Arc::new(Screen::new(["127.0.0.1".parse().unwrap()]));
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let inbox = Inbox::single(tx);
        let admission = inbox.admission().clone();
        let counted = admission.clone();
        admission.set_threshold(std::time::Duration::from_millis(5));
        admission.publish(0, std::time::Duration::from_millis(50));
        let limits = Limits::default();
        tokio::spawn(reader(0, sock, inbox, limits, screen.clone()));
        let ua = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        ua.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let wait = std::time::Duration::from_secs(2);

        ua.send_to(request("INVITE", "", 1).as_bytes(), to).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = ua.recv_from(&mut buf).expect("503 from the reader");
        let resp = crate::sip::parse_message(&buf[..n], &limits).expect("parses");
        assert_eq!(resp.status(), Some(503));
        assert_eq!(resp.headers.get("Retry-After"), Some("2"));
        assert_eq!(resp.headers.get("Call-ID"), Some("admission-1"));
        assert_eq!(resp.headers.get("CSeq"), Some("1 INVITE"));
        assert!(resp.headers.get("Via").unwrap().contains("z9hG4bKadm1"));
        assert!(resp.headers.get("To").unwrap().contains(";tag="));
        assert_eq!(counted.take_rejected(), vec![(0, 1)]);

        // Everything else still queues, in order, while the shard is behind.
        let queued = [
            request("INVITE", ";tag=b1", 2),
            request("BYE", ";tag=b1", 3),
            request("CANCEL", "", 4),
            request("ACK", "", 5),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
        ];
        for m in &queued {
            ua.send_to(m.as_bytes(), to).unwrap();
            let got = tokio::time::timeout(wait, rx.recv())
                .await
                .unwrap()
                .unwrap();
            let Received::Message { bytes, .. } = got else {
                panic!("a message")
            };
            assert_eq!(bytes, m.as_bytes());
        }
        assert_eq!(counted.take_rejected(), vec![]);

        // An INVITE that waited in the socket's buffer beyond the threshold is refused too, even
        // while the shard keeps up: the kernel's arrival stamp says how long it sat there.
        admission.publish(0, std::time::Duration::ZERO);
        let late_sock = Arc::new(socket("127.0.0.1:0".parse().unwrap()).unwrap());
        let late_to = late_sock.local_addr().unwrap();
        let (ltx, mut lrx) = tokio::sync::mpsc::channel(16);
        let late_inbox = Inbox::single(ltx);
        late_inbox
            .admission()
            .set_threshold(std::time::Duration::from_millis(5));
        ua.send_to(request("INVITE", "", 7).as_bytes(), late_to)
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let late_counted = late_inbox.admission().clone();
        tokio::spawn(reader(0, late_sock, late_inbox, limits, screen.clone()));
        let (n, _) = ua.recv_from(&mut buf).expect("503 for the late INVITE");
        let resp = crate::sip::parse_message(&buf[..n], &limits).expect("parses");
        assert_eq!(resp.status(), Some(503));
        assert_eq!(resp.headers.get("Call-ID"), Some("admission-7"));
        assert_eq!(late_counted.take_rejected(), vec![(0, 1)]);
        assert!(lrx.try_recv().is_err(), "never queued");

        // Caught up: a new INVITE is the engine's again.
        admission.publish(0, std::time::Duration::ZERO);
        let inv = request("INVITE", "", 6);
        ua.send_to(inv.as_bytes(), to).unwrap();
        let got = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(got, Received::Message { bytes, .. } if bytes == inv.as_bytes()));
    }
}
