//! Forwarding one flow's datagrams: the relay thread's view of a flow (sockets, SDP remotes,
//! latched sources, destinations) and [`relay_socket`], which applies the rules of the module
//! docs of [`super`] to each datagram of a batch and forwards what passes, byte for byte.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use socket2::Socket;

use super::shared::FlowShared;
use super::sys::{Batch, SendOutcome};
use super::{lock, FlowId, RelayEvent};

/// Batches of one socket read back to back before the loop moves on (fairness between flows).
const ROUNDS_PER_WAKE: usize = 8;

/// A flow as its relay thread holds it.
pub(super) struct Flow {
    pub(super) id: FlowId,
    pub(super) socks: [Socket; 2],
    pub(super) remote: [Option<SocketAddr>; 2],
    pub(super) latched: [Option<SocketAddr>; 2],
    /// Where datagrams sent from `socks[i]` go: `latched[i]`, else `remote[i]`, in the socket's
    /// address family.
    pub(super) dest: [Option<SocketAddr>; 2],
    pub(super) reported: bool,
    /// Whether `socks[i]` is an IPv6 socket.
    pub(super) v6: [bool; 2],
    pub(super) shared: Arc<FlowShared>,
}

impl Flow {
    pub(super) fn update_dest(&mut self, side: usize) {
        let local_v6 = self.v6[side];
        self.dest[side] =
            self.latched[side]
                .or(self.remote[side])
                .and_then(|d| match (d, local_v6) {
                    (SocketAddr::V4(v4), true) => Some(SocketAddr::V6(SocketAddrV6::new(
                        v4.ip().to_ipv6_mapped(),
                        v4.port(),
                        0,
                        0,
                    ))),
                    (SocketAddr::V6(v6), false) => v6
                        .ip()
                        .to_ipv4_mapped()
                        .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, v6.port()))),
                    (d, _) => Some(d),
                });
    }

    /// Makes the latch state visible to [`Relay::stats`](super::Relay::stats).
    pub(super) fn publish_latch(&self) {
        *lock(&self.shared.latched) = self.latched;
    }
}

/// Reads up to [`ROUNDS_PER_WAKE`] batches from `flow.socks[side]` and forwards what passes.
/// Returns the Latched event when this call completed the flow's latching.
pub(super) fn relay_socket(
    flow: &mut Flow,
    side: usize,
    b: &mut Batch,
    strict: bool,
    now_ms: u64,
) -> Option<RelayEvent> {
    let other = 1 - side;
    let in_fd = flow.socks[side].as_raw_fd();
    let out_fd = flow.socks[other].as_raw_fd();
    let mut forwarded = 0u64;
    let mut fwd_bytes = 0u64;
    let mut dropped = 0u64;
    let mut received_any = false;
    for _ in 0..ROUNDS_PER_WAKE {
        let m = b.recv(in_fd);
        if m == 0 {
            // Drained. Any error (e.g. a queued ICMP error) is consumed by this read and
            // concerns this socket only.
            break;
        }
        received_any = true;
        if !flow.shared.gate.load(Relaxed) {
            dropped += m as u64;
            continue;
        }
        let mut nsend = 0;
        for k in 0..m {
            if b.truncated(k) {
                dropped += 1;
                continue;
            }
            let Some(src) = b.source(k) else {
                dropped += 1;
                continue;
            };
            match flow.latched[side] {
                Some(l) if l == src => {}
                Some(_) => {
                    dropped += 1;
                    continue;
                }
                None => {
                    let ok = !strict
                        || flow.remote[side]
                            .is_some_and(|r| r.ip().to_canonical() == src.ip().to_canonical());
                    if !ok {
                        dropped += 1;
                        continue;
                    }
                    flow.latched[side] = Some(src);
                    flow.update_dest(side);
                    flow.publish_latch();
                }
            }
            if flow.dest[other].is_none() {
                dropped += 1;
                continue;
            }
            b.queue(nsend, k);
            nsend += 1;
        }
        if nsend == 0 {
            continue;
        }
        let Some(dest) = flow.dest[other] else {
            dropped += nsend as u64;
            continue;
        };
        b.set_dest(&dest, nsend);
        let mut off = 0;
        while off < nsend {
            match b.send(out_fd, off, nsend) {
                SendOutcome::Sent { count, bytes } => {
                    fwd_bytes += bytes;
                    forwarded += count as u64;
                    off += count;
                }
                SendOutcome::Interrupted => continue,
                SendOutcome::Full => {
                    // Socket buffer full: drop the rest of the batch rather than wait.
                    dropped += (nsend - off) as u64;
                    break;
                }
                SendOutcome::Failed => {
                    // This datagram failed (e.g. a pending ICMP error, unreachable): skip it.
                    dropped += 1;
                    off += 1;
                }
            }
        }
        if m < b.capacity() {
            break;
        }
    }
    let sh = &flow.shared;
    if received_any {
        sh.last_ms.store(now_ms, Relaxed);
    }
    if forwarded > 0 {
        sh.packets[side].fetch_add(forwarded, Relaxed);
        sh.bytes[side].fetch_add(fwd_bytes, Relaxed);
    }
    if dropped > 0 {
        sh.dropped.fetch_add(dropped, Relaxed);
    }
    if !flow.reported {
        if let [Some(a), Some(b)] = flow.latched {
            flow.reported = true;
            return Some(RelayEvent::Latched {
                id: flow.id,
                remotes: [a, b],
            });
        }
    }
    None
}
