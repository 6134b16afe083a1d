//! User-space relay.
//!
//! Dedicated OS threads (not tokio), each running an epoll loop over the sockets of its flows.
//! Datagrams are received in batches with `recvmmsg` and forwarded in batches with `sendmmsg`
//! into preallocated buffers and `mmsghdr` arrays: nothing is allocated per packet. Payloads are
//! never parsed.
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

use super::{FlowId, FlowSpec};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest datagram relayed (a jumbo frame); longer ones are truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 9216;

/// Batches of one socket read back to back before the loop moves on (fairness between flows).
const ROUNDS_PER_WAKE: usize = 8;

/// epoll token of the wake-up eventfd (flow tokens never reach it: see [`token`]).
const WAKE_TOKEN: u64 = u64::MAX;

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
    wake: Arc<OwnedFd>,
}

type Notifier = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Events {
    queue: Mutex<VecDeque<RelayEvent>>,
    notify: Mutex<Option<Notifier>>,
}

/// What the loop and the control side share about a flow. Written by the flow's thread once per
/// batch (counters) or on a latch change; the gate and offload flags by the control side.
#[derive(Default)]
struct FlowShared {
    packets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    dropped: AtomicU64,
    /// Milliseconds since the relay's epoch of the last received datagram.
    last_ms: AtomicU64,
    gate: AtomicBool,
    offloaded: AtomicBool,
    latched: Mutex<[Option<SocketAddr>; 2]>,
}

enum Cmd {
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
            // SAFETY: plain syscalls; the returned fds are checked and owned right away.
            let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if epfd < 0 {
                return Err(io::Error::last_os_error());
            }
            let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
            let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if efd < 0 {
                return Err(io::Error::last_os_error());
            }
            let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
            epoll_add(epfd.as_raw_fd(), wake.as_raw_fd(), WAKE_TOKEN)?;
            let (tx, rx) = mpsc::channel();
            let worker = Worker {
                epfd,
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
        let s0 = bind(spec.sides[0].local, inner.cfg.recv_buffer)?;
        let s1 = bind(spec.sides[1].local, inner.cfg.recv_buffer)?;
        let locals = [
            local_addr(&s0, spec.sides[0].local),
            local_addr(&s1, spec.sides[1].local),
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
        wake(w.wake.as_raw_fd());
        Ok(())
    }

    fn stop(&self) {
        for w in &self.workers {
            if w.tx.send(Cmd::Shutdown).is_ok() {
                wake(w.wake.as_raw_fd());
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

fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 into an eventfd. A full counter (EAGAIN) still
    // leaves the eventfd readable, which is all that matters.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn epoll_add(epfd: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: valid fds and a live epoll_event.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
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

fn local_addr(s: &Socket, fallback: SocketAddr) -> SocketAddr {
    s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(fallback)
}

/// Epoll token of a flow socket: slot index, slot generation (so an event returned for a socket
/// closed during the same loop pass never reaches the flow that reused its slot), side.
fn token(slot: usize, gen: u32, side: usize) -> u64 {
    ((slot as u64) << 32) | (u64::from(gen & 0x7fff_ffff) << 1) | side as u64
}

// ---- the relay thread ----

struct Worker {
    epfd: OwnedFd,
    wake: Arc<OwnedFd>,
    rx: mpsc::Receiver<Cmd>,
    strict: bool,
    batch_size: usize,
    epoch: Instant,
    events: Arc<Events>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    index: HashMap<FlowId, usize>,
}

struct Slot {
    gen: u32,
    flow: Option<Flow>,
}

struct Flow {
    id: FlowId,
    socks: [Socket; 2],
    remote: [Option<SocketAddr>; 2],
    latched: [Option<SocketAddr>; 2],
    /// Where datagrams sent from `socks[i]` go: `latched[i]`, else `remote[i]`, in the socket's
    /// address family.
    dest: [Option<SocketAddr>; 2],
    reported: bool,
    /// Whether `socks[i]` is an IPv6 socket.
    v6: [bool; 2],
    shared: Arc<FlowShared>,
}

impl Flow {
    fn update_dest(&mut self, side: usize) {
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

    fn publish_latch(&self) {
        *lock(&self.shared.latched) = self.latched;
    }
}

/// Preallocated per-thread packet buffers and message headers, reused for every batch.
struct Batch {
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
    fn new(n: usize) -> Batch {
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
}

impl Worker {
    fn run(mut self) {
        let mut batch = Batch::new(self.batch_size);
        // SAFETY: zeroed epoll_event is valid.
        let mut evs: Vec<libc::epoll_event> = (0..256).map(|_| unsafe { mem::zeroed() }).collect();
        loop {
            // SAFETY: evs is a live buffer of evs.len() entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    evs.as_mut_ptr(),
                    evs.len() as i32,
                    -1,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("relay epoll_wait failed: {}", io::Error::last_os_error());
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let evs = &evs[..n as usize];
            // Commands first: a flow opened, re-targeted or gated before its packets arrived
            // is treated as such. Generations in the tokens keep events of sockets closed
            // here away from flows that reuse their slots.
            if evs.iter().any(|e| e.u64 == WAKE_TOKEN) && !self.commands() {
                return;
            }
            let now_ms = self.epoch.elapsed().as_millis() as u64;
            for ev in evs {
                let tok = ev.u64;
                if tok == WAKE_TOKEN {
                    continue;
                }
                let slot = (tok >> 32) as usize;
                let side = (tok & 1) as usize;
                let gen = ((tok >> 1) & 0x7fff_ffff) as u32;
                if let Some(s) = self.slots.get_mut(slot) {
                    if s.gen & 0x7fff_ffff == gen {
                        if let Some(flow) = s.flow.as_mut() {
                            let ev = relay_socket(flow, side, &mut batch, self.strict, now_ms);
                            if let Some(ev) = ev {
                                self.events.push(ev);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies queued commands; false on shutdown.
    fn commands(&mut self) -> bool {
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a live u64 (drains the eventfd; EAGAIN when already 0).
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Open {
                    id,
                    socks,
                    remotes,
                    shared,
                } => self.open(id, socks, remotes, shared),
                Cmd::SetRemote { id, side, remote } => {
                    if let Some(flow) = self.flow_mut(id) {
                        flow.remote[side] = remote;
                        flow.latched[side] = None;
                        flow.reported = false;
                        flow.update_dest(side);
                        flow.publish_latch();
                    }
                }
                Cmd::Close { id, done } => {
                    if let Some(slot) = self.index.remove(&id) {
                        if let Some(flow) = self.slots[slot].flow.take() {
                            for s in &flow.socks {
                                // SAFETY: live fds; closing them would deregister them too.
                                unsafe {
                                    libc::epoll_ctl(
                                        self.epfd.as_raw_fd(),
                                        libc::EPOLL_CTL_DEL,
                                        s.as_raw_fd(),
                                        std::ptr::null_mut(),
                                    )
                                };
                            }
                            drop(flow);
                        }
                        self.free.push(slot);
                    }
                    let _ = done.send(());
                }
                Cmd::Shutdown => return false,
            }
        }
        true
    }

    fn flow_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        let slot = *self.index.get(&id)?;
        self.slots[slot].flow.as_mut()
    }

    fn open(
        &mut self,
        id: FlowId,
        socks: [Socket; 2],
        remote: [Option<SocketAddr>; 2],
        shared: Arc<FlowShared>,
    ) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s].gen = self.slots[s].gen.wrapping_add(1);
                s
            }
            None => {
                self.slots.push(Slot { gen: 0, flow: None });
                self.slots.len() - 1
            }
        };
        let gen = self.slots[slot].gen;
        let v6 = socks.each_ref().map(|s| {
            s.local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.is_ipv6())
        });
        for (side, s) in socks.iter().enumerate() {
            if let Err(e) = epoll_add(self.epfd.as_raw_fd(), s.as_raw_fd(), token(slot, gen, side))
            {
                tracing::error!("relay flow {id:?}: cannot watch its socket: {e}");
            }
        }
        let mut flow = Flow {
            id,
            socks,
            remote,
            latched: [None; 2],
            dest: [None; 2],
            reported: false,
            v6,
            shared,
        };
        flow.update_dest(0);
        flow.update_dest(1);
        self.slots[slot].flow = Some(flow);
        self.index.insert(id, slot);
    }
}

impl Events {
    fn push(&self, ev: RelayEvent) {
        lock(&self.queue).push_back(ev);
        if let Some(f) = lock(&self.notify).as_ref() {
            f();
        }
    }
}

/// Reads up to [`ROUNDS_PER_WAKE`] batches from `flow.socks[side]` and forwards what passes.
/// Returns the Latched event when this call completed the flow's latching.
fn relay_socket(
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
        for h in b.rx.iter_mut() {
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: rx holds b.n headers whose pointers target live buffers owned by `b`.
        let m = unsafe {
            libc::recvmmsg(
                in_fd,
                b.rx.as_mut_ptr(),
                b.n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if m <= 0 {
            // EAGAIN: drained. Any other error (e.g. a queued ICMP error) is consumed by this
            // read and concerns this socket only.
            break;
        }
        let m = m as usize;
        received_any = true;
        if !flow.shared.gate.load(Relaxed) {
            dropped += m as u64;
            continue;
        }
        let mut nsend = 0;
        for k in 0..m {
            let h = &b.rx[k].msg_hdr;
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                dropped += 1;
                continue;
            }
            let Some(src) = from_raw(&b.addrs[k], h.msg_namelen) else {
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
            let len = b.rx[k].msg_len as usize;
            // SAFETY: msg_iov points at the live rx iovec k.
            b.tx_iov[nsend].iov_base = unsafe { (*b.rx[k].msg_hdr.msg_iov).iov_base };
            b.tx_iov[nsend].iov_len = len;
            nsend += 1;
        }
        if nsend == 0 {
            continue;
        }
        let Some(dest) = flow.dest[other] else {
            dropped += nsend as u64;
            continue;
        };
        let namelen = to_raw(&dest, &mut b.dest);
        for h in b.tx[..nsend].iter_mut() {
            h.msg_hdr.msg_namelen = namelen;
            h.msg_len = 0;
        }
        let mut off = 0;
        while off < nsend {
            // SAFETY: tx[off..nsend] are initialised headers pointing at live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    out_fd,
                    b.tx.as_mut_ptr().add(off),
                    (nsend - off) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let r = r as usize;
                for t in &b.tx_iov[off..off + r] {
                    fwd_bytes += t.iov_len as u64;
                }
                forwarded += r as u64;
                off += r;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    // Socket buffer full: drop the rest of the batch rather than wait.
                    dropped += (nsend - off) as u64;
                    break;
                }
                _ => {
                    // This datagram failed (e.g. a pending ICMP error, unreachable): skip it.
                    dropped += 1;
                    off += 1;
                }
            }
        }
        if m < b.n {
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

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Relay>();
}
