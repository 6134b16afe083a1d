//! The UDP listener of a realm: one socket, one reader task.

use super::Inbox;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::Received;
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

pub(super) async fn reader(realm: usize, sock: Arc<UdpSocket>, events: Inbox, limits: Limits) {
    // One byte more than the cap, so an oversized datagram is seen as such, not truncated.
    let mut buf = vec![0u8; limits.max_message_size.saturating_add(1).max(2048)];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, remote)) => {
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
