//! The UDP listener of a realm: one socket, one reader task. The reader screens sources
//! before anything is queued for the engine: a datagram from an address that is neither the
//! realm's core nor one of its partners is counted and dropped at the cost of one set lookup,
//! so a flood from unknown sources neither fills the engine's queue nor, by its depth, makes
//! the border shed real calls as overloaded. While the shard a datagram steers to is behind,
//! a new out-of-dialog INVITE is answered 503 here and never queued ([`super::Inbox::refuse`]).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use socket2::{Domain, Protocol, Socket, Type};
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
        match sock.recv_from(&mut buf).await {
            Ok((_, remote)) if !screen.admits(remote.ip()) => {}
            Ok((n, remote)) => {
                // Admission: a shard that is behind refuses a new call here, at once, rather
                // than after the queue it would wait in (the source is screened already, so
                // strangers get no answer to reflect).
                if let Some((resp, to)) = events.refuse(realm, &buf[..n], &limits, remote) {
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
                    at: std::time::Instant::now(),
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
