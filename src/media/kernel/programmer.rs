//! The flow programmer: the one thread that owns the table. It coalesces install / remove
//! requests into `nft -f -` transactions (retried op by op when a batch fails), refreshes element
//! timeouts at half-life, clears stale conntrack entries after each batch (twice: see
//! [`RESWEEP_AFTER`]), hands counter reads to the [`Reader`] thread and deletes the table when it
//! stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::conntrack::CtNetlink;
use super::counters::{self, Keys, Query, Reader};
use super::netns::{check_forwarding, enter_netns};
use super::ruleset::{self, Op};
use super::{nft, Cmd, FlowId, KernelError, KernelFlow, KernelOptions};

struct Applied {
    flow: KernelFlow,
    refreshed: Instant,
}

/// The flow programmer: owns the table, batches updates, runs on one (namespace-pinned) thread.
pub(super) struct Programmer {
    table: String,
    opts: KernelOptions,
    installed: HashMap<FlowId, Applied>,
    /// Original tuple (far end, local endpoint) → flow, for reading counters back.
    keys: Arc<Keys>,
    pending: HashMap<FlowId, Option<KernelFlow>>,
    count: Arc<AtomicUsize>,
    error: Option<KernelError>,
    ct: Option<CtNetlink>,
    /// Tuples to clear once more, and when: a packet that was inside netfilter while the batch
    /// committed can confirm a conntrack entry without NAT just after the first sweep, which
    /// would keep that flow in user space for as long as it stays busy.
    resweep: Option<(Instant, Vec<(SocketAddr, SocketAddr)>)>,
    /// Runs the counter listings requested with [`Cmd::ReadCounters`].
    reader: Reader,
}

/// Delay of the second conntrack sweep after a batch.
const RESWEEP_AFTER: Duration = Duration::from_millis(50);

impl Programmer {
    pub(super) fn start(
        table: String,
        opts: KernelOptions,
        count: Arc<AtomicUsize>,
    ) -> Result<Self, KernelError> {
        if let Some(ns) = &opts.netns {
            enter_netns(ns)?;
        }
        check_forwarding(opts.enable_ip_forward)?;
        // Started after `setns`: the thread inherits this thread's namespace.
        let reader = Reader::start(table.clone()).map_err(|e| KernelError::Nft {
            command: "(counter thread)".into(),
            stderr: e.to_string(),
        })?;
        let p = Programmer {
            table,
            opts,
            installed: HashMap::new(),
            keys: Arc::default(),
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
            reader,
        };
        p.create_table()?;
        Ok(p)
    }

    fn create_table(&self) -> Result<(), KernelError> {
        nft::script(&ruleset::create(&self.table))
    }

    fn delete_table(&self) -> Result<(), KernelError> {
        nft::script(&ruleset::delete(&self.table))
    }

    pub(super) fn run(&mut self, rx: mpsc::Receiver<Cmd>) {
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
                    let _ = reply.send(counters::read(
                        &self.table,
                        &self.keys,
                        self.installed.keys().copied(),
                    ));
                }
                Ok(Cmd::ReadCounters { seq, reply }) => {
                    // Applied first, so flows installed or removed before the request are
                    // reported as such (the media plane relies on that ordering).
                    deadline = None;
                    self.apply();
                    self.reader.send(Query {
                        seq,
                        keys: self.keys.clone(),
                        installed: self.installed.keys().copied().collect(),
                        reply,
                    });
                }
                Ok(Cmd::Elements(reply)) => {
                    deadline = None;
                    self.apply();
                    let _ = reply.send(nft::count_elements(&self.table));
                }
                Ok(Cmd::Shutdown(reply)) => {
                    self.reader.stop();
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
                    self.reader.stop();
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
        let mut ops: Vec<Op> = self
            .pending
            .drain()
            .map(|(id, new)| (id, self.installed.get(&id).map(|a| a.flow), new))
            .collect();
        ops.sort_by_key(|o| o.0);
        let script = ruleset::batch(&self.table, self.opts.element_timeout, &ops);
        if script.is_empty() {
            return;
        }
        match nft::script(&script) {
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
                    match nft::script(&ruleset::batch(
                        &self.table,
                        self.opts.element_timeout,
                        std::slice::from_ref(op),
                    )) {
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

    fn commit(&mut self, (id, old, new): &Op) {
        if let Some(old) = old {
            for h in old.halves() {
                Arc::make_mut(&mut self.keys).remove(&(h.from, h.to));
            }
            self.installed.remove(id);
        }
        if let Some(new) = new {
            for h in new.halves() {
                Arc::make_mut(&mut self.keys).insert((h.from, h.to), *id);
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

    /// Deletes conntrack entries of flows whose NAT state just changed (see the module docs of
    /// [`super`])..
    fn clear_conntrack(&mut self, ops: &[Op]) {
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
}
