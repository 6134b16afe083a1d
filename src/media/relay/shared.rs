//! What the control handle ([`Relay`](super::Relay), any thread) and the relay threads share:
//! per-flow counters and flags (atomics, so reading stats never waits for a relay thread), the
//! event queue, and the commands sent to a thread.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::sync::{mpsc, Mutex};

use socket2::Socket;

use super::{lock, FlowId, RelayEvent};

type Notifier = Box<dyn Fn() + Send + Sync>;

/// Events queued by the relay threads for [`Relay::poll_event`](super::Relay::poll_event).
#[derive(Default)]
pub(super) struct Events {
    pub(super) queue: Mutex<VecDeque<RelayEvent>>,
    pub(super) notify: Mutex<Option<Notifier>>,
}

impl Events {
    pub(super) fn push(&self, ev: RelayEvent) {
        lock(&self.queue).push_back(ev);
        if let Some(f) = lock(&self.notify).as_ref() {
            f();
        }
    }
}

/// What the loop and the control side share about a flow. Written by the flow's thread once per
/// batch (counters) or on a latch change; the gate and offload flags by the control side.
#[derive(Default)]
pub(super) struct FlowShared {
    pub(super) packets: [AtomicU64; 2],
    pub(super) bytes: [AtomicU64; 2],
    pub(super) dropped: AtomicU64,
    /// Milliseconds since the relay's epoch of the last received datagram.
    pub(super) last_ms: AtomicU64,
    pub(super) gate: AtomicBool,
    pub(super) offloaded: AtomicBool,
    pub(super) latched: Mutex<[Option<SocketAddr>; 2]>,
}

/// A command for one relay thread (applied before it reads the sockets that woke it).
pub(super) enum Cmd {
    Open {
        id: FlowId,
        socks: [Socket; 2],
        remotes: [Option<SocketAddr>; 2],
        shared: Arc<FlowShared>,
    },
    SetRemote {
        id: FlowId,
        side: usize,
        remote: Option<SocketAddr>,
    },
    Close {
        id: FlowId,
        done: mpsc::SyncSender<()>,
    },
    Shutdown,
}
