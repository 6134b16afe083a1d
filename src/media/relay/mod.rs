//! User-space relay.
//!
//! Dedicated OS threads (not tokio), each running an epoll loop over the sockets of its flows.
//! Datagrams are received in batches with `recvmmsg` and forwarded in batches with `sendmmsg`
//! into preallocated buffers and `mmsghdr` arrays: nothing is allocated per packet. Payloads are
//! never parsed.
//!
//! This file is the control handle ([`Relay`]) and its figures. The rest: `worker` (the relay
//! thread's loop and flow slots), `forward` (the rules below, per datagram), `shared` (what the
//! handle and the threads share: atomics, event queue, commands) and `sys` (every syscall and
//! every `unsafe` block of the relay).
//!
//! Control ([`Relay::open`], [`Relay::set_remote`], [`Relay::close`], ...) crosses from any
//! thread over a channel plus an eventfd that wakes the loop; the loop applies pending commands
//! before it reads the sockets that woke it. Per-flow counters are atomics updated once per
//! received batch, readable from any thread ([`Relay::stats`]).
//!
//! Rules applied to a datagram arriving at `sides[i].local` from source S:
//! 1. gate closed: dropped (no latching either, so a closed gate never latches and never
//!    reports [`RelayEvent::Latched`]);
//! 2. side i not latched yet: S latches if latching is not strict, or if S's IP equals the IP of
//!    `sides[i].remote` (the port may differ; with no SDP remote, strict mode latches nothing);
//!    otherwise dropped;
//! 3. side i latched to another address than S: dropped;
//! 4. the far end of side 1-i (its latched address, else its SDP remote) unknown: dropped;
//! 5. otherwise sent unchanged from `sides[1-i].local` to that far end.
//!
//! Drops (including truncated datagrams larger than [`MAX_DATAGRAM`] and send failures such as a
//! full socket buffer) are counted in [`FlowStats::dropped`].

mod forward;
mod shared;
mod sys;
mod worker;

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{FlowId, FlowSpec};
use shared::{Cmd, Events, FlowShared};
use sys::{Epoll, EventFd};
use worker::{Worker, WAKE_TOKEN};

/// Largest datagram relayed (a jumbo frame); longer ones are truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 9216;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Relay threads; flows are spread over them by `FlowId % threads`. Default 1.
    pub threads: usize,
    /// Latch only onto sources whose IP is the SDP remote's IP (port may differ).
    pub strict_latching: bool,
    /// Datagrams per `recvmmsg`/`sendmmsg`. Default 32.
    pub batch: usize,
    /// SO_RCVBUF of every relay socket in bytes; 0 keeps the system default. Default 256 KiB.
    pub recv_buffer: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            threads: 1,
            strict_latching: false,
            batch: 32,
            recv_buffer: 256 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// Both sides of the flow are latched (reported once; again after a [`Relay::set_remote`]
    /// reset latching and both sides are latched anew). `remotes[i]` is side i's far end.
    Latched {
        id: FlowId,
        remotes: [SocketAddr; 2],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    /// Datagrams received at side i and forwarded to side 1-i.
    pub packets: [u64; 2],
    /// Bytes (UDP payload) received at side i and forwarded.
    pub bytes: [u64; 2],
    /// Datagrams received at either side and not forwarded (gate, foreign source, no far end,
    /// truncated, send failed).
    pub dropped: u64,
    pub latched: [Option<SocketAddr>; 2],
    /// Time since the last datagram received at either side (since open if none yet).
    /// Measured in user space only: an offloaded flow's packets bypass the relay.
    pub idle_for: Duration,
    pub offloaded: bool,
}

/// Relay-wide counters (closed flows included) and the flows currently open, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Datagrams forwarded, both directions, since start.
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub flows_opened: u64,
    pub flows_closed: u64,
    /// Flows open now (the sum of the four states below).
    pub flows: usize,
    /// Gate closed.
    pub flows_gate_closed: usize,
    /// Gate open, not both sides latched.
    pub flows_latching: usize,
    /// Gate open, both sides latched, relayed in user space.
    pub flows_latched: usize,
    /// Gate open and marked offloaded (forwarded by the kernel).
    pub flows_offloaded: usize,
}

/// Handle to the relay threads: `Send + Sync`, cheap to clone (an `Arc`). The threads stop on
/// [`Relay::shutdown`] or when the last handle is dropped.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RelayConfig,
    epoch: Instant,
    workers: Vec<WorkerCtl>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    flows: Mutex<HashMap<FlowId, Entry>>,
    events: Arc<Events>,
    closed: Closed,
}

#[derive(Default)]
struct Closed {
    packets: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
}

struct Entry {
    worker: usize,
    locals: [SocketAddr; 2],
    shared: Arc<FlowShared>,
}

struct WorkerCtl {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<EventFd>,
}

/// Locks ignoring poisoning: what the relay's mutexes guard (plain values) stays consistent
/// even if a holder panicked, and the relay must keep running.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    /// Starts `cfg.threads` relay threads (at least one).
    pub fn start(cfg: RelayConfig) -> io::Result<Relay> {
        let mut cfg = cfg;
        cfg.threads = cfg.threads.max(1);
        cfg.batch = cfg.batch.clamp(1, 1024);
        let events = Arc::new(Events::default());
        let epoch = Instant::now();
        let mut workers = Vec::with_capacity(cfg.threads);
        let mut threads = Vec::with_capacity(cfg.threads);
        for n in 0..cfg.threads {
            let epoll = Epoll::new()?;
            let wake = Arc::new(EventFd::new()?);
            epoll.add(wake.as_raw_fd(), WAKE_TOKEN)?;
            let (tx, rx) = mpsc::channel();
            let worker = Worker {
                epoll,
                wake: wake.clone(),
                rx,
                strict: cfg.strict_latching,
                batch_size: cfg.batch,
                epoch,
                events: events.clone(),
                slots: Vec::new(),
                free: Vec::new(),
                index: HashMap::new(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("palisade-relay-{n}"))
                .spawn(move || worker.run())?;
            workers.push(WorkerCtl { tx, wake });
            threads.push(handle);
        }
        Ok(Relay {
            inner: Arc::new(Inner {
                cfg,
                epoch,
                workers,
                threads: Mutex::new(threads),
                flows: Mutex::new(HashMap::new()),
                events,
                closed: Closed::default(),
            }),
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.inner.cfg
    }

    /// Binds both local sockets now (a port clash is an error naming the address) and hands the
    /// flow to a relay thread. The gate starts closed. A local port 0 binds an ephemeral port:
    /// see [`Relay::local_addrs`]. An id already open is refused (`AlreadyExists`).
    pub fn open(&self, spec: FlowSpec) -> io::Result<()> {
        let inner = &*self.inner;
        let s0 = sys::bind(spec.sides[0].local, inner.cfg.recv_buffer)?;
        let s1 = sys::bind(spec.sides[1].local, inner.cfg.recv_buffer)?;
        let locals = [
            sys::bound_addr(&s0).unwrap_or(spec.sides[0].local),
            sys::bound_addr(&s1).unwrap_or(spec.sides[1].local),
        ];
        let shared = Arc::new(FlowShared::default());
        shared.last_ms.store(inner.now_ms(), Relaxed);
        let worker = (spec.id.0 % inner.workers.len() as u64) as usize;
        let mut flows = lock(&inner.flows);
        if flows.contains_key(&spec.id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("relay flow {:?} is already open", spec.id),
            ));
        }
        // Sent under the map lock: a concurrent close of the same id is queued after it.
        inner.send(
            worker,
            Cmd::Open {
                id: spec.id,
                socks: [s0, s1],
                remotes: [spec.sides[0].remote, spec.sides[1].remote],
                shared: shared.clone(),
            },
        )?;
        flows.insert(
            spec.id,
            Entry {
                worker,
                locals,
                shared,
            },
        );
        inner.closed.opened.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The addresses the flow's sockets are bound to (useful when opened with port 0).
    pub fn local_addrs(&self, id: FlowId) -> Option<[SocketAddr; 2]> {
        lock(&self.inner.flows).get(&id).map(|e| e.locals)
    }

    /// The SDP's far end of `side` changed (re-INVITE): the side's latch is reset, so the next
    /// acceptable source latches again and [`RelayEvent::Latched`] is reported again once both
    /// sides are latched. An offloaded flow must be taken back from the kernel first (its
    /// packets would never reach the relay to re-latch). Unknown ids and sides > 1 are ignored.
    pub fn set_remote(&self, id: FlowId, side: usize, remote: Option<SocketAddr>) {
        if side > 1 {
            return;
        }
        let flows = lock(&self.inner.flows);
        if let Some(e) = flows.get(&id) {
            let _ = self
                .inner
                .send(e.worker, Cmd::SetRemote { id, side, remote });
        }
    }

    /// Opens or closes the flow's gate (effective immediately).
    pub fn set_gate(&self, id: FlowId, open: bool) {
        if let Some(e) = lock(&self.inner.flows).get(&id) {
            e.shared.gate.store(open, Relaxed);
        }
    }

    /// Informational: the kernel forwards the flow now. The sockets stay bound (ports stay
    /// reserved); offloaded flows are left out of [`Relay::idle_flows`].
    pub fn set_offloaded(&self, id: FlowId, offloaded: bool) {
        if let Some(e) = lock(&self.inner.flows).get(&id) {
            e.shared.offloaded.store(offloaded, Relaxed);
        }
    }

    /// Releases both sockets. Blocks until the relay thread has dropped them (one pass of its
    /// loop, normally microseconds): when it returns the ports can be bound again.
    pub fn close(&self, id: FlowId) {
        let inner = &*self.inner;
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let entry = {
            let mut flows = lock(&inner.flows);
            let Some(entry) = flows.remove(&id) else {
                return;
            };
            if inner
                .send(entry.worker, Cmd::Close { id, done: done_tx })
                .is_err()
            {
                None
            } else {
                Some(entry)
            }
        };
        // Err: the thread is gone (shutdown), and its sockets with it.
        let _ = done_rx.recv();
        if let Some(entry) = entry {
            let s = &entry.shared;
            let c = &inner.closed;
            c.packets.fetch_add(
                s.packets[0].load(Relaxed) + s.packets[1].load(Relaxed),
                Relaxed,
            );
            c.bytes
                .fetch_add(s.bytes[0].load(Relaxed) + s.bytes[1].load(Relaxed), Relaxed);
            c.dropped.fetch_add(s.dropped.load(Relaxed), Relaxed);
        }
        inner.closed.closed.fetch_add(1, Relaxed);
    }

    pub fn stats(&self, id: FlowId) -> Option<FlowStats> {
        let now = self.inner.now_ms();
        let s = lock(&self.inner.flows).get(&id)?.shared.clone();
        let latched = *lock(&s.latched);
        Some(FlowStats {
            packets: [s.packets[0].load(Relaxed), s.packets[1].load(Relaxed)],
            bytes: [s.bytes[0].load(Relaxed), s.bytes[1].load(Relaxed)],
            dropped: s.dropped.load(Relaxed),
            latched,
            idle_for: Duration::from_millis(now.saturating_sub(s.last_ms.load(Relaxed))),
            offloaded: s.offloaded.load(Relaxed),
        })
    }

    /// Flows not offloaded that received no datagram for at least `threshold`.
    pub fn idle_flows(&self, threshold: Duration) -> Vec<FlowId> {
        let now = self.inner.now_ms();
        let limit = threshold.as_millis().min(u64::MAX as u128) as u64;
        let flows = lock(&self.inner.flows);
        let mut out: Vec<FlowId> = flows
            .iter()
            .filter(|(_, e)| {
                !e.shared.offloaded.load(Relaxed)
                    && now.saturating_sub(e.shared.last_ms.load(Relaxed)) >= limit
            })
            .map(|(id, _)| *id)
            .collect();
        out.sort();
        out
    }

    pub fn poll_event(&self) -> Option<RelayEvent> {
        lock(&self.inner.events.queue).pop_front()
    }

    /// `f` is called (on a relay thread) each time an event is queued, e.g. to wake a task
    /// (`tokio::sync::Notify::notify_one`) that then drains [`Relay::poll_event`]. Keep it short,
    /// and do not capture a `Relay` handle in it (that would keep the relay alive forever).
    pub fn set_notifier(&self, f: impl Fn() + Send + Sync + 'static) {
        *lock(&self.inner.events.notify) = Some(Box::new(f));
    }

    pub fn open_flows(&self) -> usize {
        lock(&self.inner.flows).len()
    }

    pub fn totals(&self) -> RelayTotals {
        let c = &self.inner.closed;
        let mut t = RelayTotals {
            packets: c.packets.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            flows_opened: c.opened.load(Relaxed),
            flows_closed: c.closed.load(Relaxed),
            ..RelayTotals::default()
        };
        let flows = lock(&self.inner.flows);
        for e in flows.values() {
            let s = &e.shared;
            t.packets += s.packets[0].load(Relaxed) + s.packets[1].load(Relaxed);
            t.bytes += s.bytes[0].load(Relaxed) + s.bytes[1].load(Relaxed);
            t.dropped += s.dropped.load(Relaxed);
            t.flows += 1;
            let latched = lock(&s.latched);
            if !s.gate.load(Relaxed) {
                t.flows_gate_closed += 1;
            } else if s.offloaded.load(Relaxed) {
                t.flows_offloaded += 1;
            } else if latched[0].is_some() && latched[1].is_some() {
                t.flows_latched += 1;
            } else {
                t.flows_latching += 1;
            }
        }
        t
    }

    /// Stops the relay threads and releases every socket (also when other handles exist: their
    /// later calls find no flows, and `open` fails).
    pub fn shutdown(self) {
        self.inner.stop();
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn send(&self, worker: usize, cmd: Cmd) -> io::Result<()> {
        let w = &self.workers[worker];
        w.tx.send(cmd)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "relay thread has stopped"))?;
        w.wake.wake();
        Ok(())
    }

    fn stop(&self) {
        for w in &self.workers {
            if w.tx.send(Cmd::Shutdown).is_ok() {
                w.wake.wake();
            }
        }
        let threads = mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
        lock(&self.flows).clear();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Relay>();
}
