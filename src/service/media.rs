//! The media plane of a running instance: performs the B2BUA's [`MediaCommand`]s on the
//! user-space relay, moves latched flows into the kernel fast path when enabled, and reports
//! idle flows back for the inactivity timeout.
//!
//! Nothing here blocks the drive loop that calls it. Kernel counters in particular are only
//! requested ([`MediaPlane::idle_flows`] queues a request with the kernel path); the
//! [`CountersReport`] comes back on a channel drained by [`MediaPlane::poll`], and idle checks
//! judge kernel flows by the most recent report received ([`KernelActivity`]).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::media::kernel::{KernelActivity, KernelFlow, KernelPath};
use crate::media::relay::{Relay, RelayConfig, RelayEvent};
use crate::media::{CountersReport, FlowId, FlowSpec, MediaCommand};

pub struct MediaPlane {
    relay: Relay,
    kernel: Option<KernelPath>,
    flows: HashMap<FlowId, FlowSpec>,
    inactivity: Duration,
    /// Flows in the kernel: their idle clocks and last reported counters (kernel flows bypass
    /// the relay's own idle clock).
    activity: KernelActivity,
    /// Where the kernel path sends counters reports (the sender goes with each request).
    reports_tx: mpsc::Sender<CountersReport>,
    reports_rx: mpsc::Receiver<CountersReport>,
    /// (realm name, media address) of every realm, to attribute flows.
    realms: Vec<(String, std::net::IpAddr)>,
}

/// Media figures of one realm, for the metrics endpoint: flows by forwarding path, and packets
/// and bytes relayed through the realm's relay address (both directions; a packet crossing the
/// border counts in both realms it touches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealmMedia {
    pub realm: String,
    pub flows_user: usize,
    pub flows_kernel: usize,
    pub packets: u64,
    pub bytes: u64,
}

impl MediaPlane {
    pub fn start(cfg: &Config) -> anyhow::Result<MediaPlane> {
        let relay = Relay::start(RelayConfig {
            threads: cfg.media.relay_threads,
            strict_latching: cfg.media.strict_latching,
            ..RelayConfig::default()
        })?;
        let kernel = if cfg.media.kernel {
            match KernelPath::start(&cfg.media.nft_table) {
                Ok(k) => {
                    tracing::info!(table = %cfg.media.nft_table, "kernel fast path enabled");
                    Some(k)
                }
                Err(e) => {
                    tracing::warn!("kernel fast path unavailable, relaying in user space: {e}");
                    None
                }
            }
        } else {
            None
        };
        if kernel.is_none() {
            tracing::info!(
                threads = cfg.media.relay_threads,
                "media relayed in user space"
            );
        }
        let (reports_tx, reports_rx) = mpsc::channel();
        Ok(MediaPlane {
            relay,
            kernel,
            flows: HashMap::new(),
            inactivity: cfg.media.inactivity_timeout,
            activity: KernelActivity::new(),
            reports_tx,
            reports_rx,
            realms: cfg
                .realms
                .iter()
                .map(|r| (r.name.clone(), r.media_address))
                .collect(),
        })
    }

    pub fn apply(&mut self, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Open(spec) => match self.relay.open(spec) {
                Ok(()) => {
                    self.flows.insert(spec.id, spec);
                }
                Err(e) => tracing::warn!(flow = spec.id.0, "cannot open relay flow: {e}"),
            },
            MediaCommand::SetRemote { id, side, remote } => {
                self.leave_kernel(id);
                self.relay.set_remote(id, side, remote);
            }
            MediaCommand::Gate { id, open } => self.relay.set_gate(id, open),
            MediaCommand::Close(id) => {
                self.leave_kernel(id);
                self.relay.close(id);
                self.flows.remove(&id);
            }
        }
    }

    fn leave_kernel(&mut self, id: FlowId) {
        if let Some(k) = &self.kernel {
            if self.activity.removed(id) {
                k.remove(id);
                self.relay.set_offloaded(id, false);
            }
        }
    }

    /// Handles relay events (a flow latched in both directions moves into the kernel) and the
    /// kernel counters reports that have arrived.
    pub fn poll(&mut self, now: Instant) {
        while let Some(ev) = self.relay.poll_event() {
            match ev {
                RelayEvent::Latched { id, remotes } => {
                    let (Some(k), Some(spec)) = (&self.kernel, self.flows.get(&id)) else {
                        continue;
                    };
                    k.install(
                        id,
                        KernelFlow {
                            a_local: spec.sides[0].local,
                            a_remote: remotes[0],
                            b_local: spec.sides[1].local,
                            b_remote: remotes[1],
                        },
                    );
                    self.activity.installed(id, now);
                    self.relay.set_offloaded(id, true);
                }
            }
        }
        self.collect_reports(now);
    }

    /// Applies the counters reports received so far (never waits for one).
    fn collect_reports(&mut self, now: Instant) {
        while let Ok(report) = self.reports_rx.try_recv() {
            if let Err(e) = &report.counters {
                tracing::warn!("reading kernel flow counters failed: {e}");
            }
            self.activity.report(&report, now);
        }
    }

    /// Flows without a packet for the inactivity timeout, in user space or in the kernel. Kernel
    /// flows are judged by the counters reports received so far; when flows are in the kernel
    /// and no request is outstanding, this queues the next one (answered on a later `poll`).
    pub fn idle_flows(&mut self, now: Instant) -> HashSet<FlowId> {
        self.collect_reports(now);
        if let Some(k) = &self.kernel {
            if let Some(seq) = self.activity.request() {
                if let Err(e) = k.request_counters(seq, self.reports_tx.clone()) {
                    // No report will come: end the request here, as a failed read.
                    self.activity.report(
                        &CountersReport {
                            seq,
                            counters: Err(e),
                        },
                        now,
                    );
                }
            }
        }
        let mut idle = HashSet::new();
        for id in self.flows.keys() {
            let idle_for = match self.activity.idle_for(*id, now) {
                Some(d) => d,
                None => self.relay.stats(*id).map_or(Duration::ZERO, |s| s.idle_for),
            };
            if idle_for >= self.inactivity {
                idle.insert(*id);
            }
        }
        idle
    }

    /// Whether kernel counters have been requested and their report has not arrived yet.
    pub fn kernel_counters_pending(&self) -> bool {
        self.activity.in_flight()
    }

    /// Whether latched flows are moved into the kernel (the fast path started).
    pub fn kernel_enabled(&self) -> bool {
        self.kernel.is_some()
    }

    /// Flows currently forwarded by the kernel.
    pub fn kernel_flows(&self) -> usize {
        self.activity.len()
    }

    /// Flows open in the relay (user space or kernel).
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Per-realm figures for the metrics endpoint (kernel counters as of the last report
    /// received).
    pub fn snapshot(&self) -> Vec<RealmMedia> {
        let mut out: Vec<RealmMedia> = self
            .realms
            .iter()
            .map(|(name, _)| RealmMedia {
                realm: name.clone(),
                ..RealmMedia::default()
            })
            .collect();
        for (id, spec) in &self.flows {
            let stats = self.relay.stats(*id);
            let user_packets = stats.as_ref().map_or(0, |s| s.packets[0] + s.packets[1]);
            let user_bytes = stats.as_ref().map_or(0, |s| s.bytes[0] + s.bytes[1]);
            let k = self.activity.counters(*id);
            for side in &spec.sides {
                let Some(r) = self
                    .realms
                    .iter()
                    .position(|(_, addr)| *addr == side.local.ip())
                else {
                    continue;
                };
                let m = &mut out[r];
                if self.activity.contains(*id) {
                    m.flows_kernel += 1;
                } else {
                    m.flows_user += 1;
                }
                m.packets += user_packets + k.packets;
                m.bytes += user_bytes + k.bytes;
            }
        }
        out
    }

    pub fn shutdown(self) {
        if let Some(k) = self.kernel {
            if let Err(e) = k.shutdown() {
                tracing::warn!("removing the nftables table failed: {e}");
            }
        }
        self.relay.shutdown();
    }
}
