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
    /// Per realm (same order), what flows no longer counted live relayed: closed flows, and
    /// flows that left the kernel (whose kernel counters go with their nftables rules).
    banked: Vec<Relayed>,
}

/// Packets and bytes relayed, by forwarding path: index [`USER`] or [`KERNEL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

pub const USER: usize = 0;
pub const KERNEL: usize = 1;

impl Relayed {
    fn add(&mut self, path: usize, packets: u64, bytes: u64) {
        self.packets[path] += packets;
        self.bytes[path] += bytes;
    }
}

/// Media figures of one realm, for the metrics endpoint: flows by forwarding path, and packets
/// and bytes relayed through the realm's relay address since start, by path (both directions;
/// a packet crossing the border counts in both realms it touches). Kernel figures are as of the
/// last counters report, so they lag by up to a second and a flow leaving the kernel loses what
/// it forwarded since that report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealmMedia {
    pub realm: String,
    pub flows_user: usize,
    pub flows_kernel: usize,
    pub relayed: Relayed,
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
            banked: vec![Relayed::default(); cfg.realms.len()],
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
                if let Some(s) = self.relay.stats(id) {
                    let (p, b) = (s.packets[0] + s.packets[1], s.bytes[0] + s.bytes[1]);
                    self.bank(id, USER, p, b);
                }
                self.relay.close(id);
                self.flows.remove(&id);
            }
        }
    }

    /// The realms (indices) whose relay addresses the flow's two sides use.
    fn flow_realms(&self, id: FlowId) -> impl Iterator<Item = usize> + '_ {
        self.flows.get(&id).into_iter().flat_map(move |spec| {
            spec.sides.iter().filter_map(move |side| {
                self.realms
                    .iter()
                    .position(|(_, addr)| *addr == side.local.ip())
            })
        })
    }

    /// Keeps what a flow relayed on `path` in its realms' totals, before its live counters go.
    fn bank(&mut self, id: FlowId, path: usize, packets: u64, bytes: u64) {
        let realms: Vec<usize> = self.flow_realms(id).collect();
        for r in realms {
            self.banked[r].add(path, packets, bytes);
        }
    }

    fn leave_kernel(&mut self, id: FlowId) {
        if self.kernel.is_some() && self.activity.contains(id) {
            let c = self.activity.counters(id);
            self.bank(id, KERNEL, c.packets, c.bytes);
        }
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
            .zip(&self.banked)
            .map(|((name, _), banked)| RealmMedia {
                realm: name.clone(),
                relayed: *banked,
                ..RealmMedia::default()
            })
            .collect();
        for id in self.flows.keys() {
            let stats = self.relay.stats(*id);
            let user_packets = stats.as_ref().map_or(0, |s| s.packets[0] + s.packets[1]);
            let user_bytes = stats.as_ref().map_or(0, |s| s.bytes[0] + s.bytes[1]);
            let in_kernel = self.activity.contains(*id);
            let k = self.activity.counters(*id);
            for r in self.flow_realms(*id) {
                let m = &mut out[r];
                if in_kernel {
                    m.flows_kernel += 1;
                } else {
                    m.flows_user += 1;
                }
                m.relayed.add(USER, user_packets, user_bytes);
                m.relayed.add(KERNEL, k.packets, k.bytes);
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
