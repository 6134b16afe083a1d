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
//! on lookup). A flow's counters are the sum of its two keys, read with one `nft -j list set` per
//! family (slow cycle only: ~1 s for 20 k elements). That is far too long for the service's drive
//! loop, so [`KernelPath::request_counters`] only queues the request and returns; a reader thread
//! of the kernel path runs the listing and sends a [`CountersReport`] on a channel the caller
//! polls ([`KernelPath::counters`] waits for it instead: tests and bench).
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

mod activity;
mod conntrack;
mod counters;
mod flow;
mod netns;
pub(crate) mod nft;
mod programmer;
mod ruleset;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use activity::KernelActivity;
pub use counters::KernelCounters;
pub use flow::KernelFlow;

use super::control::CountersReport;
use super::FlowId;
use programmer::Programmer;

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
    /// Read the counters on the reader thread; the report goes to `reply`.
    ReadCounters {
        seq: u64,
        reply: mpsc::Sender<CountersReport>,
    },
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

    /// Per-flow counters of installed flows (one `nft -j list set` per family), waiting for
    /// them: ~0.6 s at 11 k flows, so for tests and the bench only. The service uses
    /// [`request_counters`](Self::request_counters).
    pub fn counters(&self) -> Result<HashMap<FlowId, KernelCounters>, KernelError> {
        self.call(Cmd::Counters)
    }

    /// Asks for the counters of the flows installed once everything queued before is applied,
    /// and returns at once: a reader thread of the kernel path runs the listing and sends a
    /// [`CountersReport`] carrying `seq` to `reply` later. Fails only if the programmer has
    /// stopped (then no report comes).
    pub fn request_counters(
        &self,
        seq: u64,
        reply: mpsc::Sender<CountersReport>,
    ) -> Result<(), KernelError> {
        self.tx
            .send(Cmd::ReadCounters { seq, reply })
            .map_err(|_| KernelError::Stopped)
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
