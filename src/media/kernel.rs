//! Kernel fast path: latched flows are forwarded by nftables NAT, so user space stops seeing them.
//!
//! # Ruleset
//!
//! One Palisade-owned table (`inet`, name chosen by the caller) holds named maps keyed by the
//! flow's *original* 4-tuple (`far end . port . local endpoint . port`), referenced by ONE rule
//! per chain, so installing the 10,000th flow costs what the first did (a map element add):
//!
//! ```text
//! table inet NAME {
//!   map dnat4 { type ipv4_addr . inet_service . ipv4_addr . inet_service : ipv4_addr . inet_service; flags timeout; }
//!   map snat4 { type ipv4_addr . inet_service . ipv4_addr . inet_service : ipv4_addr . inet_service; flags timeout; }
//!   set cnt4  { type ipv4_addr . inet_service . ipv4_addr . inet_service; counter; }
//!   (dnat6, snat6, cnt6: the same with ipv6_addr)
//!   chain pre  { type nat hook prerouting priority dstnat; policy accept;
//!     meta l4proto udp dnat ip to ip saddr . udp sport . ip daddr . udp dport map @dnat4
//!     meta l4proto udp dnat ip6 to ip6 saddr . udp sport . ip6 daddr . udp dport map @dnat6 }
//!   chain out  { type nat hook output priority -100; policy accept;   (same two rules) }
//!   chain post { type nat hook postrouting priority srcnat; policy accept;
//!     ct status dnat meta l4proto udp snat ip to ct original ip saddr . ct original proto-src . ct original ip daddr . ct original proto-dst map @snat4
//!     (same for ip6) }
//!   chain cnt_fwd { type filter hook forward priority filter; policy accept;
//!     ct status dnat meta l4proto udp ct original ip saddr . ct original proto-src . ct original ip daddr . ct original proto-dst @cnt4
//!     (same for ip6) }
//!   chain cnt_out { type filter hook output priority filter; policy accept; (same two rules) }
//! }
//! ```
//!
//! A flow puts two keys in each map: `a_remote . a_local → b_remote` (dnat4) / `→ b_local`
//! (snat4), and `b_remote . b_local → a_remote` / `→ a_local`. Keying on the far end too means
//! only the *latched* source is forwarded; anything else still reaches the user-space socket
//! (which can re-latch and reinstall). The conntrack of the first packet carries both directions:
//! its reply direction is exactly the other half of the flow, so one conntrack per flow.
//!
//! Counting: NAT chains only see the first packet of a conntrack, so the filter chains `cnt_fwd`
//! (forwarding between interfaces) and `cnt_out` (locally generated, the loopback lab) look the
//! conntrack's original tuple up in `cnt4`, whose elements carry a per-element `counter` (updated
//! on lookup). A flow's counters are the sum of its two keys; [`KernelPath::counters`] reads them
//! with one `nft -j list set` per family (slow cycle only: ~1 s for 20 k elements).
//!
//! Timeouts: NAT map elements carry a timeout (default 1 h, [`KernelOptions::element_timeout`]),
//! refreshed by the programmer at half-life, so a crashed Palisade that is never restarted
//! cannot forward stale media forever (conntracks already set up keep forwarding only while
//! packets keep coming). The table is deleted and recreated atomically at start and deleted on
//! shutdown / drop. The counter sets carry no timeout (a stale counter forwards nothing and the
//! re-add of a refresh would reset it).
//!
//! # Driving `nft`
//!
//! The design card named the `nftables` crate; this module instead writes the *text* syntax to
//! one `nft -f -` process per batch. Measured reason (nft 1.0.6, kernel 6.18, see
//! `benches/kernel_install.rs` and research/ecosystem.md §5): the crate does exactly the same
//! thing (one `nft -j -f -` process per apply), JSON and text cost the same for 10 k adds
//! (190–295 ms vs ~250 ms), and the per-process spawn (~7 ms) dominates a single update in both,
//! so the crate buys no speed; the text form, however, is exactly what `nft list` prints for
//! concatenated map keys, `ct original` keys and per-element counters, which was verified
//! against the kernel here, whereas the crate's JSON model of those was not. Counters and
//! element listings are read back as JSON (`nft -j`, parsed with `serde_json`). A long-lived
//! `nft -i` child (~0.5 ms per command) was rejected: it gives no per-batch transaction boundary
//! nor a reliable end-of-reply marker for error reporting.
//!
//! Batching: the "flow programmer" thread coalesces install/remove requests for
//! [`KernelOptions::coalesce`] (15 ms) and applies them as one transaction; a batch that fails is
//! retried op by op so one bad flow cannot block the others. Removal is written as
//! `add element` (same data) + `delete element`, so deleting an element that has already timed
//! out never fails the batch (nft 1.0.6 has no `destroy`).
//!
//! Measured (`cargo bench --bench kernel_install`, nft 1.0.6, kernel 6.18, private netns):
//! install+flush of flow #1 6.6 ms, #1,000 3.1 ms, #10,000 5.1 ms (constant: one process spawn);
//! 1,000 installs in one batch with 10 k present 92 ms (~10,800 flows/s, 0.11 ms/flow for 9 k);
//! counter read-out of 11 k flows 0.6 s; removing one flow at 11 k present 28 ms and 1,000 in
//! one batch 172 ms. Removal is the one cost that grows with the table: nft 1.0.6 loads the
//! set's elements into its cache before `delete element` (one delete: 14 ms on an empty set,
//! 21–24 ms with 20 k elements), so removals rely on coalescing (paid once per batch).
//!
//! # Stale conntrack entries
//!
//! Packets that went to user space before the install created conntrack entries with a null NAT
//! binding (e.g. `a_remote→a_local`, or the relay's own `b_local→b_remote` whose reply tuple is
//! `b_remote→b_local`); while they live, packets keep bypassing the new NAT. After each applied
//! batch the programmer deletes, over ctnetlink (`NETLINK_NETFILTER`, `IPCTNL_MSG_CT_DELETE`,
//! no `conntrack` binary needed), the entries whose tuple — in either direction, the kernel's
//! lookup hashes both — is `a_remote→a_local` or `b_remote→b_local`. The same is done on removal,
//! so the NAT-ed conntrack goes away and the next packet reaches user space again.
//!
//! # Namespaces and `ip_forward`
//!
//! The programmer thread optionally enters a named network namespace (`/run/netns/NAME`) with
//! `setns`; `nft` children and the ctnetlink socket it creates live in that namespace. Forwarding
//! between interfaces needs `net.ipv4.ip_forward = 1` (and `net.ipv6.conf.all.forwarding` for
//! IPv6); `start` enables it when [`KernelOptions::enable_ip_forward`] is set (the default) and
//! fails clearly if it cannot; otherwise it only warns. Locally generated traffic (loopback lab)
//! does not need it.
//!
//! # Loopback lab (all parties processes on one host, 127.0.x.y on `lo`)
//!
//! Locally generated packets are NAT-ed in the `out` chain and counted in `cnt_out`, so the same
//! ruleset works without forwarding. Each border needs its own table name (e.g.
//! `palisade_<instance>`). Conntrack NATs a connection once per hook: when two borders share
//! one namespace, a packet DNAT-ed by border 1 towards border 2's local endpoint is not NAT-ed
//! again; it reaches border 2's socket and border 2 relays it in user space (correct, just not
//! offloaded); the reply direction matches border 1's conntrack and is un-NAT-ed by it. (This
//! paragraph follows from the kernel's NAT code; it has not been exercised in the lab yet.)
//! The user-space relay must keep its sockets bound while a flow is installed (the NAT reuses
//! their ports).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::FlowId;

/// A latched flow: what arrives at `a_local` from `a_remote` leaves from `b_local` to `b_remote`,
/// and what arrives at `b_local` from `b_remote` leaves from `a_local` to `a_remote`. All four
/// addresses must be of one family (NAT cannot translate IPv4 ↔ IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelFlow {
    pub a_local: SocketAddr,
    pub a_remote: SocketAddr,
    pub b_local: SocketAddr,
    pub b_remote: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) are treated as IPv4.
fn normalize(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

impl KernelFlow {
    fn normalized(self) -> KernelFlow {
        KernelFlow {
            a_local: normalize(self.a_local),
            a_remote: normalize(self.a_remote),
            b_local: normalize(self.b_local),
            b_remote: normalize(self.b_remote),
        }
    }

    fn family(&self) -> Result<Family, KernelError> {
        let f = self.normalized();
        let all = [f.a_local, f.a_remote, f.b_local, f.b_remote];
        if all.iter().all(|a| a.is_ipv4()) {
            Ok(Family::V4)
        } else if all.iter().all(|a| a.is_ipv6()) {
            Ok(Family::V6)
        } else {
            Err(KernelError::MixedFamily(Box::new(*self)))
        }
    }

    /// Whether the kernel path can carry this flow (one address family, no port 0).
    pub fn validate(&self) -> Result<(), KernelError> {
        self.family()?;
        let f = self;
        if [f.a_local, f.a_remote, f.b_local, f.b_remote]
            .iter()
            .any(|a| a.port() == 0)
        {
            return Err(KernelError::InvalidFlow(Box::new(*self), "port 0"));
        }
        Ok(())
    }

    /// The two original tuples (far end → local endpoint) and their DNAT/SNAT targets.
    fn halves(&self) -> [Half; 2] {
        let f = self.normalized();
        [
            Half {
                from: f.a_remote,
                to: f.a_local,
                dnat: f.b_remote,
                snat: f.b_local,
            },
            Half {
                from: f.b_remote,
                to: f.b_local,
                dnat: f.a_remote,
                snat: f.a_local,
            },
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct Half {
    from: SocketAddr,
    to: SocketAddr,
    dnat: SocketAddr,
    snat: SocketAddr,
}

/// Errors of the kernel path. `start` failing means "stay in user space" (log once).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel media path not permitted: needs root or CAP_NET_ADMIN ({0})")]
    NotPermitted(String),
    #[error("kernel media path unavailable: cannot run `nft` (install the nftables package): {0}")]
    NftMissing(String),
    #[error("`nft {command}` failed: {stderr}")]
    Nft { command: String, stderr: String },
    #[error("cannot enter network namespace {name}: {source}")]
    Netns {
        name: String,
        source: std::io::Error,
    },
    #[error("invalid nftables table name {0:?} (letters, digits, '_' and '-', at most 64)")]
    BadTable(String),
    #[error("forwarding is off: {0}")]
    IpForward(String),
    #[error("flow mixes IPv4 and IPv6, which kernel NAT cannot translate: {0:?}")]
    MixedFamily(Box<KernelFlow>),
    #[error("invalid flow {0:?}: {1}")]
    InvalidFlow(Box<KernelFlow>, &'static str),
    #[error("cannot parse `nft -j` output: {0}")]
    Parse(String),
    #[error("conntrack netlink: {0}")]
    Conntrack(std::io::Error),
    #[error("the kernel flow programmer has stopped")]
    Stopped,
}

/// Per-flow counters, both directions summed (packets that took the kernel path only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Tuning of [`KernelPath`].
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// Named network namespace (`/run/netns/NAME`) to program instead of the caller's.
    pub netns: Option<String>,
    /// How long install/remove requests are coalesced into one transaction.
    pub coalesce: Duration,
    /// Timeout of the NAT map elements (refreshed at half-life); `None`: no timeout.
    pub element_timeout: Option<Duration>,
    /// Enable `net.ipv4.ip_forward` (and IPv6 forwarding) if off; otherwise only warn.
    pub enable_ip_forward: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            netns: None,
            coalesce: Duration::from_millis(15),
            element_timeout: Some(Duration::from_secs(3600)),
            enable_ip_forward: true,
        }
    }
}

type Reply<T> = mpsc::Sender<Result<T, KernelError>>;

enum Cmd {
    Install(FlowId, KernelFlow),
    Remove(FlowId),
    Flush(Reply<()>),
    Counters(Reply<HashMap<FlowId, KernelCounters>>),
    Elements(Reply<usize>),
    Shutdown(Reply<()>),
}

/// Handle on the kernel fast path (Send + Sync). Dropping it deletes the table (best effort).
pub struct KernelPath {
    tx: mpsc::Sender<Cmd>,
    installed: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<()>>>,
    table: String,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("table", &self.table)
            .finish()
    }
}

impl KernelPath {
    /// Checks privilege and the `nft` binary, deletes any stale table of this name, creates it.
    pub fn start(table: &str) -> Result<KernelPath, KernelError> {
        Self::start_with(table, KernelOptions::default())
    }

    /// [`start`](Self::start) programming the named network namespace (tests, bench).
    pub fn start_in_netns(table: &str, netns: Option<&str>) -> Result<KernelPath, KernelError> {
        Self::start_with(
            table,
            KernelOptions {
                netns: netns.map(str::to_owned),
                ..Default::default()
            },
        )
    }

    pub fn start_with(table: &str, opts: KernelOptions) -> Result<KernelPath, KernelError> {
        if table.is_empty()
            || table.len() > 64
            || !table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || !table.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            return Err(KernelError::BadTable(table.to_owned()));
        }
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let installed = Arc::new(AtomicUsize::new(0));
        let table_name = table.to_owned();
        let count = installed.clone();
        let thread = std::thread::Builder::new()
            .name("kernel-flows".into())
            .spawn(move || {
                let mut p = match Programmer::start(table_name, opts, count) {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                p.run(rx);
            })
            .map_err(|e| KernelError::Nft {
                command: "(thread)".into(),
                stderr: e.to_string(),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(KernelError::Stopped),
        }
        Ok(KernelPath {
            tx,
            installed,
            thread: Mutex::new(Some(thread)),
            table: table.to_owned(),
        })
    }

    /// Queues the installation (or update) of a flow; applied in the next batch. Invalid flows
    /// (mixed families) are logged and ignored: they stay in user space.
    pub fn install(&self, id: FlowId, flow: KernelFlow) {
        if let Err(e) = flow.validate() {
            tracing::warn!(flow = id.0, "not offloading flow: {e}");
            return;
        }
        let _ = self.tx.send(Cmd::Install(id, flow));
    }

    /// Queues the removal of a flow (no-op if it is not installed).
    pub fn remove(&self, id: FlowId) {
        let _ = self.tx.send(Cmd::Remove(id));
    }

    /// Applies everything queued now and waits; returns the first error since the last flush.
    pub fn flush(&self) -> Result<(), KernelError> {
        self.call(Cmd::Flush)
    }

    /// Per-flow counters of installed flows (one `nft -j list set` per family: slow cycle only).
    pub fn counters(&self) -> Result<HashMap<FlowId, KernelCounters>, KernelError> {
        self.call(Cmd::Counters)
    }

    /// Number of elements in all maps and sets of the table as the kernel lists them (leak
    /// checks: a flow is 6 elements; 0 when nothing is installed).
    pub fn kernel_elements(&self) -> Result<usize, KernelError> {
        self.call(Cmd::Elements)
    }

    /// Flows currently installed (as applied; queued requests not included).
    pub fn installed(&self) -> usize {
        self.installed.load(Ordering::Relaxed)
    }

    /// The nftables table name (family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deletes the table and stops the programmer thread.
    pub fn shutdown(self) -> Result<(), KernelError> {
        self.stop()
    }

    fn stop(&self) -> Result<(), KernelError> {
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let r = self.call(Cmd::Shutdown);
        let _ = thread.join();
        r
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, KernelError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(make(tx)).map_err(|_| KernelError::Stopped)?;
        rx.recv().map_err(|_| KernelError::Stopped)?
    }
}

impl Drop for KernelPath {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(table = %self.table, "kernel path shutdown: {e}");
        }
    }
}

struct Applied {
    flow: KernelFlow,
    refreshed: Instant,
}

/// The flow programmer: owns the table, batches updates, runs on one (namespace-pinned) thread.
struct Programmer {
    table: String,
    opts: KernelOptions,
    installed: HashMap<FlowId, Applied>,
    /// Original tuple (far end, local endpoint) → flow, for reading counters back.
    keys: HashMap<(SocketAddr, SocketAddr), FlowId>,
    pending: HashMap<FlowId, Option<KernelFlow>>,
    count: Arc<AtomicUsize>,
    error: Option<KernelError>,
    ct: Option<CtNetlink>,
    /// Tuples to clear once more, and when: a packet that was inside netfilter while the batch
    /// committed can confirm a conntrack entry without NAT just after the first sweep, which
    /// would keep that flow in user space for as long as it stays busy.
    resweep: Option<(Instant, Vec<(SocketAddr, SocketAddr)>)>,
}

/// Delay of the second conntrack sweep after a batch.
const RESWEEP_AFTER: Duration = Duration::from_millis(50);

impl Programmer {
    fn start(
        table: String,
        opts: KernelOptions,
        count: Arc<AtomicUsize>,
    ) -> Result<Self, KernelError> {
        if let Some(ns) = &opts.netns {
            enter_netns(ns)?;
        }
        check_forwarding(opts.enable_ip_forward)?;
        let p = Programmer {
            table,
            opts,
            installed: HashMap::new(),
            keys: HashMap::new(),
            pending: HashMap::new(),
            count,
            error: None,
            ct: match CtNetlink::open() {
                Ok(ct) => Some(ct),
                Err(e) => {
                    tracing::warn!("conntrack netlink unavailable ({e}); stale conntrack entries will delay offload");
                    None
                }
            },
            resweep: None,
        };
        p.create_table()?;
        Ok(p)
    }

    fn create_table(&self) -> Result<(), KernelError> {
        let t = &self.table;
        let mut s = format!("table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{\n");
        for fam in ["4", "6"] {
            let addr = if fam == "4" { "ipv4_addr" } else { "ipv6_addr" };
            let key = format!("{addr} . inet_service . {addr} . inet_service");
            s += &format!(
                "  map dnat{fam} {{ type {key} : {addr} . inet_service; flags timeout; }}\n"
            );
            s += &format!(
                "  map snat{fam} {{ type {key} : {addr} . inet_service; flags timeout; }}\n"
            );
            s += &format!("  set cnt{fam} {{ type {key}; counter; }}\n");
        }
        let dnat = |ip: &str, fam: &str| {
            format!("    meta l4proto udp dnat {ip} to {ip} saddr . udp sport . {ip} daddr . udp dport map @dnat{fam}\n")
        };
        let orig = |ip: &str| {
            format!("ct original {ip} saddr . ct original proto-src . ct original {ip} daddr . ct original proto-dst")
        };
        let both = |f: &dyn Fn(&str, &str) -> String| f("ip", "4") + &f("ip6", "6");
        s += "  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n";
        s += &both(&dnat);
        s += "  }\n  chain out {\n    type nat hook output priority -100; policy accept;\n";
        s += &both(&dnat);
        s += "  }\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n";
        s += &both(&|ip, fam| {
            format!(
                "    ct status dnat meta l4proto udp snat {ip} to {} map @snat{fam}\n",
                orig(ip)
            )
        });
        let count = |ip: &str, fam: &str| {
            format!(
                "    ct status dnat meta l4proto udp {} @cnt{fam}\n",
                orig(ip)
            )
        };
        s += "  }\n  chain cnt_fwd {\n    type filter hook forward priority filter; policy accept;\n";
        s += &both(&count);
        s +=
            "  }\n  chain cnt_out {\n    type filter hook output priority filter; policy accept;\n";
        s += &both(&count);
        s += "  }\n}\n";
        nft_script(&s)
    }

    fn delete_table(&self) -> Result<(), KernelError> {
        let t = &self.table;
        nft_script(&format!("table inet {t} {{}}\ndelete table inet {t}\n"))
    }

    fn run(&mut self, rx: mpsc::Receiver<Cmd>) {
        let mut deadline: Option<Instant> = None;
        let tick = self
            .opts
            .element_timeout
            .map_or(Duration::from_secs(60), |t| {
                (t / 8).clamp(Duration::from_millis(100), Duration::from_secs(60))
            });
        loop {
            if self
                .resweep
                .as_ref()
                .is_some_and(|(due, _)| *due <= Instant::now())
            {
                if let (Some((_, tuples)), Some(ct)) = (self.resweep.take(), &mut self.ct) {
                    if let Err(e) = ct.delete(&tuples) {
                        tracing::warn!("deleting stale conntrack entries (second sweep): {e}");
                    }
                }
            }
            let wait = deadline.map_or(tick, |d| d.saturating_duration_since(Instant::now()));
            let wait = match &self.resweep {
                Some((due, _)) => wait.min(due.saturating_duration_since(Instant::now())),
                None => wait,
            };
            match rx.recv_timeout(wait) {
                Ok(Cmd::Install(id, flow)) => {
                    self.pending.insert(id, Some(flow));
                    deadline.get_or_insert(Instant::now() + self.opts.coalesce);
                }
                Ok(Cmd::Remove(id)) => {
                    self.pending.insert(id, None);
                    deadline.get_or_insert(Instant::now() + self.opts.coalesce);
                }
                Ok(Cmd::Flush(reply)) => {
                    deadline = None;
                    self.apply();
                    let _ = reply.send(self.error.take().map_or(Ok(()), Err));
                }
                Ok(Cmd::Counters(reply)) => {
                    deadline = None;
                    self.apply();
                    let _ = reply.send(self.read_counters());
                }
                Ok(Cmd::Elements(reply)) => {
                    deadline = None;
                    self.apply();
                    let _ = reply.send(self.count_elements());
                }
                Ok(Cmd::Shutdown(reply)) => {
                    let _ = reply.send(self.delete_table());
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| d <= Instant::now()) || deadline.is_none() {
                        deadline = None;
                        self.queue_refreshes();
                        self.apply();
                        if let Some(e) = self.error.take() {
                            tracing::error!(table = %self.table, "kernel flow batch failed: {e}");
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.delete_table();
                    return;
                }
            }
        }
    }

    /// Re-adds NAT elements past half their timeout (counters untouched).
    fn queue_refreshes(&mut self) {
        let Some(timeout) = self.opts.element_timeout else {
            return;
        };
        let now = Instant::now();
        for (id, a) in &self.installed {
            if now.duration_since(a.refreshed) >= timeout / 2 && !self.pending.contains_key(id) {
                self.pending.insert(*id, Some(a.flow));
            }
        }
    }

    fn apply(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut ops: Vec<(FlowId, Option<KernelFlow>, Option<KernelFlow>)> = self
            .pending
            .drain()
            .map(|(id, new)| (id, self.installed.get(&id).map(|a| a.flow), new))
            .collect();
        ops.sort_by_key(|o| o.0);
        let script = self.script(&ops);
        if script.is_empty() {
            return;
        }
        match nft_script(&script) {
            Ok(()) => {
                for op in &ops {
                    self.commit(op);
                }
                self.clear_conntrack(&ops);
            }
            Err(e) if ops.len() == 1 => self.record(e),
            Err(e) => {
                tracing::warn!(table = %self.table, ops = ops.len(), "batch failed ({e}); retrying one by one");
                for op in &ops {
                    match nft_script(&self.script(std::slice::from_ref(op))) {
                        Ok(()) => {
                            self.commit(op);
                            self.clear_conntrack(std::slice::from_ref(op));
                        }
                        Err(e) => {
                            tracing::error!(flow = op.0 .0, "kernel flow update failed: {e}");
                            self.record(e);
                        }
                    }
                }
            }
        }
        self.count.store(self.installed.len(), Ordering::Relaxed);
    }

    fn record(&mut self, e: KernelError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn commit(&mut self, (id, old, new): &(FlowId, Option<KernelFlow>, Option<KernelFlow>)) {
        if let Some(old) = old {
            for h in old.halves() {
                self.keys.remove(&(h.from, h.to));
            }
            self.installed.remove(id);
        }
        if let Some(new) = new {
            for h in new.halves() {
                self.keys.insert((h.from, h.to), *id);
            }
            self.installed.insert(
                *id,
                Applied {
                    flow: *new,
                    refreshed: Instant::now(),
                },
            );
        }
    }

    /// One transaction: removals (add + delete, never fails on a timed-out element), then adds.
    /// A re-install of the same flow (refresh) leaves its counter element alone.
    fn script(&self, ops: &[(FlowId, Option<KernelFlow>, Option<KernelFlow>)]) -> String {
        let timeout = self.opts.element_timeout.map_or(String::new(), |t| {
            format!(" timeout {}s", t.as_secs().max(1))
        });
        // Per set name: (re-adds for removal, deletes, adds).
        let mut readd: HashMap<String, Vec<String>> = HashMap::new();
        let mut del: HashMap<String, Vec<String>> = HashMap::new();
        let mut add: HashMap<String, Vec<String>> = HashMap::new();
        for (_, old, new) in ops {
            let same = old.is_some() && old == new;
            if let Some(old) = old {
                let fam = old.family().map(Family::suffix).unwrap_or("4");
                for h in old.halves() {
                    let k = key(h.from, h.to);
                    readd
                        .entry(format!("dnat{fam}"))
                        .or_default()
                        .push(format!("{k}{timeout} : {}", ep(h.dnat)));
                    readd
                        .entry(format!("snat{fam}"))
                        .or_default()
                        .push(format!("{k}{timeout} : {}", ep(h.snat)));
                    del.entry(format!("dnat{fam}")).or_default().push(k.clone());
                    del.entry(format!("snat{fam}")).or_default().push(k.clone());
                    if !same {
                        readd
                            .entry(format!("cnt{fam}"))
                            .or_default()
                            .push(k.clone());
                        del.entry(format!("cnt{fam}")).or_default().push(k);
                    }
                }
            }
            if let Some(new) = new {
                let Ok(fam) = new.family().map(Family::suffix) else {
                    continue;
                };
                for h in new.halves() {
                    let k = key(h.from, h.to);
                    add.entry(format!("dnat{fam}"))
                        .or_default()
                        .push(format!("{k}{timeout} : {}", ep(h.dnat)));
                    add.entry(format!("snat{fam}"))
                        .or_default()
                        .push(format!("{k}{timeout} : {}", ep(h.snat)));
                    if !same {
                        add.entry(format!("cnt{fam}")).or_default().push(k);
                    }
                }
            }
        }
        let mut s = String::new();
        for (verb, group) in [("add", readd), ("delete", del), ("add", add)] {
            let mut names: Vec<_> = group.into_iter().collect();
            names.sort();
            for (set, elems) in names {
                for chunk in elems.chunks(2000) {
                    s += &format!(
                        "{verb} element inet {} {set} {{ {} }}\n",
                        self.table,
                        chunk.join(", ")
                    );
                }
            }
        }
        s
    }

    /// Deletes conntrack entries of flows whose NAT state just changed (see module docs).
    fn clear_conntrack(&mut self, ops: &[(FlowId, Option<KernelFlow>, Option<KernelFlow>)]) {
        let Some(ct) = &mut self.ct else { return };
        let mut tuples = Vec::new();
        for (_, old, new) in ops {
            if old.is_some() && old == new {
                continue; // refresh: the NAT is unchanged
            }
            for f in old.iter().chain(new.iter()) {
                for h in f.halves() {
                    tuples.push((h.from, h.to));
                }
            }
        }
        if let Err(e) = ct.delete(&tuples) {
            tracing::warn!("deleting stale conntrack entries: {e}");
            self.record(KernelError::Conntrack(e));
        }
        if !tuples.is_empty() {
            let (_, pending) = self
                .resweep
                .get_or_insert_with(|| (Instant::now() + RESWEEP_AFTER, Vec::new()));
            pending.extend(tuples);
        }
    }

    /// `nft -j list KIND inet TABLE [NAME]`.
    fn list_json(&self, kind: &str, name: Option<&str>) -> Result<serde_json::Value, KernelError> {
        let mut args = vec!["-j", "list", kind, "inet", &self.table];
        args.extend(name);
        let out = nft_run(&args, None)?;
        serde_json::from_slice(&out).map_err(|e| KernelError::Parse(e.to_string()))
    }

    fn read_counters(&self) -> Result<HashMap<FlowId, KernelCounters>, KernelError> {
        let mut out: HashMap<FlowId, KernelCounters> = self
            .installed
            .keys()
            .map(|id| (*id, KernelCounters::default()))
            .collect();
        for fam in ["4", "6"] {
            let v = self.list_json("set", Some(&format!("cnt{fam}")))?;
            for obj in v["nftables"].as_array().into_iter().flatten() {
                for e in obj["set"]["elem"].as_array().into_iter().flatten() {
                    let e = &e["elem"];
                    let Some(parts) = e["val"]["concat"].as_array() else {
                        continue;
                    };
                    let (Some(from), Some(to)) = (sockaddr(parts, 0), sockaddr(parts, 2)) else {
                        continue;
                    };
                    let Some(id) = self.keys.get(&(from, to)) else {
                        continue;
                    };
                    let c = out.entry(*id).or_default();
                    c.packets += e["counter"]["packets"].as_u64().unwrap_or(0);
                    c.bytes += e["counter"]["bytes"].as_u64().unwrap_or(0);
                }
            }
        }
        Ok(out)
    }

    fn count_elements(&self) -> Result<usize, KernelError> {
        let v = self.list_json("table", None)?;
        let mut n = 0;
        for obj in v["nftables"].as_array().into_iter().flatten() {
            for kind in ["set", "map"] {
                n += obj[kind]["elem"].as_array().map_or(0, Vec::len);
            }
        }
        Ok(n)
    }
}

fn sockaddr(parts: &[serde_json::Value], i: usize) -> Option<SocketAddr> {
    let ip: IpAddr = parts.get(i)?.as_str()?.parse().ok()?;
    let port = u16::try_from(parts.get(i + 1)?.as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

fn ep(a: SocketAddr) -> String {
    format!("{} . {}", a.ip(), a.port())
}

fn key(from: SocketAddr, to: SocketAddr) -> String {
    format!("{} . {}", ep(from), ep(to))
}

/// Runs `nft -f -` with `script` on stdin (one transaction).
fn nft_script(script: &str) -> Result<(), KernelError> {
    nft_run(&["-f", "-"], Some(script)).map(|_| ())
}

fn nft_run(args: &[&str], stdin: Option<&str>) -> Result<Vec<u8>, KernelError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::NftMissing(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Errors here surface as nft's exit status below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| KernelError::NftMissing(e.to_string()))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        return Err(KernelError::NotPermitted(stderr));
    }
    let mut command = args.join(" ");
    if let Some(text) = stdin {
        let first: String = text.lines().take(3).collect::<Vec<_>>().join(" / ");
        command = format!(
            "{command} <<< {}",
            first.chars().take(300).collect::<String>()
        );
    }
    Err(KernelError::Nft {
        command,
        stderr: stderr.chars().take(2000).collect(),
    })
}

fn enter_netns(name: &str) -> Result<(), KernelError> {
    use std::os::fd::AsRawFd;
    let err = |source| KernelError::Netns {
        name: name.to_owned(),
        source,
    };
    let path = if name.contains('/') {
        name.to_owned()
    } else {
        format!("/run/netns/{name}")
    };
    let f = std::fs::File::open(&path).map_err(err)?;
    // SAFETY: setns on a valid fd; affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EPERM) {
            KernelError::NotPermitted(format!("setns {name}: {e}"))
        } else {
            err(e)
        });
    }
    Ok(())
}

/// Checks (and, if asked, enables) forwarding in the current thread's network namespace.
fn check_forwarding(enable: bool) -> Result<(), KernelError> {
    for (path, v6) in [
        ("/proc/sys/net/ipv4/ip_forward", false),
        ("/proc/sys/net/ipv6/conf/all/forwarding", true),
    ] {
        let Ok(cur) = std::fs::read_to_string(path) else {
            continue;
        };
        if cur.trim() == "1" {
            continue;
        }
        if !enable {
            tracing::warn!("{path} is 0: the kernel path only forwards locally generated traffic");
            continue;
        }
        match std::fs::write(path, "1") {
            Ok(()) => tracing::info!("kernel media path: enabled {path}"),
            Err(e) if v6 => tracing::warn!(
                "cannot enable {path} ({e}): IPv6 flows between interfaces will not be forwarded"
            ),
            Err(e) => {
                return Err(if e.kind() == std::io::ErrorKind::PermissionDenied {
                    KernelError::NotPermitted(format!("writing {path}: {e}"))
                } else {
                    KernelError::IpForward(format!("cannot enable {path}: {e}"))
                })
            }
        }
    }
    Ok(())
}

/// Minimal ctnetlink client: deletes conntrack entries by tuple (UDP).
struct CtNetlink {
    sock: socket2::Socket,
    seq: u32,
}

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const IPCTNL_MSG_CT_DELETE: u16 = (1 << 8) | 2; // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

fn nla(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn nested(buf: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    nla(buf, ty | NLA_F_NESTED, &inner);
}

impl CtNetlink {
    fn open() -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_NETFILTER)),
        )?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(CtNetlink { sock, seq: 0 })
    }

    /// Builds one delete request whose original-or-reply tuple (the kernel's lookup matches
    /// either) is `src → dst`, UDP. The tuple attribute is always present, so the request can
    /// never degrade into a table flush.
    fn message(&self, seq: u32, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let mut body = Vec::new();
        let family = if src.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        } as u8;
        body.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
        nested(&mut body, CTA_TUPLE_ORIG, |t| {
            nested(t, CTA_TUPLE_IP, |ip| match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    nla(ip, CTA_IP_V4_SRC, &s.octets());
                    nla(ip, CTA_IP_V4_DST, &d.octets());
                }
                (s, d) => {
                    let v6 = |a: IpAddr| match a {
                        IpAddr::V6(a) => a.octets(),
                        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    };
                    nla(ip, CTA_IP_V6_SRC, &v6(s));
                    nla(ip, CTA_IP_V6_DST, &v6(d));
                }
            });
            nested(t, CTA_TUPLE_PROTO, |p| {
                nla(p, CTA_PROTO_NUM, &[libc::IPPROTO_UDP as u8]);
                nla(p, CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
                nla(p, CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
            });
        });
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&IPCTNL_MSG_CT_DELETE.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    /// Deletes the entries of each tuple; returns how many existed. Batched: up to 256
    /// requests per datagram.
    fn delete(&mut self, tuples: &[(SocketAddr, SocketAddr)]) -> std::io::Result<usize> {
        let mut deleted = 0;
        let mut rbuf = vec![0u8; 256 * 1024];
        for chunk in tuples.chunks(256) {
            let mut buf = Vec::new();
            for (src, dst) in chunk {
                self.seq = self.seq.wrapping_add(1);
                buf.extend_from_slice(&self.message(self.seq, *src, *dst));
            }
            self.sock.send(&buf)?;
            let mut acks = 0;
            while acks < chunk.len() {
                let n = (&self.sock).read(&mut rbuf)?;
                let mut off = 0;
                while off + 16 <= n {
                    let len = u32::from_ne_bytes(rbuf[off..off + 4].try_into().unwrap_or_default())
                        as usize;
                    let ty =
                        u16::from_ne_bytes(rbuf[off + 4..off + 6].try_into().unwrap_or_default());
                    if len < 16 || off + len > n {
                        break;
                    }
                    if ty == NLMSG_ERROR && len >= 20 {
                        acks += 1;
                        let code = i32::from_ne_bytes(
                            rbuf[off + 16..off + 20].try_into().unwrap_or_default(),
                        );
                        match -code {
                            0 => deleted += 1,
                            libc::ENOENT => {}
                            e => return Err(std::io::Error::from_raw_os_error(e)),
                        }
                    }
                    off += (len + 3) & !3;
                }
                if n == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_and_halves() {
        let f = KernelFlow {
            a_local: sa("10.0.0.1:4000"),
            a_remote: sa("10.0.0.2:5000"),
            b_local: sa("10.1.0.1:4002"),
            b_remote: sa("10.1.0.2:6000"),
        };
        assert_eq!(f.family().unwrap(), Family::V4);
        let [a, b] = f.halves();
        assert_eq!(
            (a.from, a.to, a.dnat, a.snat),
            (f.a_remote, f.a_local, f.b_remote, f.b_local)
        );
        assert_eq!(
            (b.from, b.to, b.dnat, b.snat),
            (f.b_remote, f.b_local, f.a_remote, f.a_local)
        );
        let mixed = KernelFlow {
            b_remote: sa("[2001:db8::1]:6000"),
            ..f
        };
        assert!(matches!(mixed.validate(), Err(KernelError::MixedFamily(_))));
        let mapped = KernelFlow {
            a_remote: sa("[::ffff:10.0.0.2]:5000"),
            ..f
        };
        assert_eq!(mapped.family().unwrap(), Family::V4);
        assert_eq!(
            key(sa("[2001:db8::1]:1"), sa("10.0.0.1:2")),
            "2001:db8::1 . 1 . 10.0.0.1 . 2"
        );
    }

    #[test]
    fn bad_table_names_are_refused() {
        for t in ["", "a b", "x;flush ruleset", "1abc"] {
            assert!(
                matches!(KernelPath::start(t), Err(KernelError::BadTable(_))),
                "{t}"
            );
        }
    }

    #[test]
    fn ct_message_always_carries_the_tuple() {
        let ct = CtNetlink {
            sock: socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap(),
            seq: 0,
        };
        let m = ct.message(7, sa("10.0.0.2:5000"), sa("10.0.0.1:4000"));
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(
            u16::from_ne_bytes(m[20..22].try_into().unwrap()) & !NLA_F_NESTED,
            52
        );
        assert_eq!(
            u16::from_ne_bytes(m[22..24].try_into().unwrap()),
            CTA_TUPLE_ORIG | NLA_F_NESTED
        );
    }
}
