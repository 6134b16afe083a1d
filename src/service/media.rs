//! The media plane of a running instance: performs the B2BUA's [`MediaCommand`]s on the
//! user-space relay, moves latched flows into the kernel fast path when enabled, and reports
//! idle flows back for the inactivity timeout.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::media::kernel::{KernelFlow, KernelPath};
use crate::media::relay::{Relay, RelayConfig, RelayEvent};
use crate::media::{FlowId, FlowSpec, MediaCommand};

struct Flow {
    spec: FlowSpec,
    /// Kernel packet count last seen and when it last changed (kernel flows bypass the relay's
    /// own idle clock).
    kernel_seen: Option<(u64, Instant)>,
}

pub struct MediaPlane {
    relay: Relay,
    kernel: Option<KernelPath>,
    flows: HashMap<FlowId, Flow>,
    inactivity: Duration,
    /// Kernel counters as last read (on the inactivity cycle), for metrics.
    kernel_counters: HashMap<FlowId, u64>,
    kernel_bytes: HashMap<FlowId, u64>,
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
        Ok(MediaPlane {
            relay,
            kernel,
            flows: HashMap::new(),
            inactivity: cfg.media.inactivity_timeout,
            kernel_counters: HashMap::new(),
            kernel_bytes: HashMap::new(),
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
                    self.flows.insert(
                        spec.id,
                        Flow {
                            spec,
                            kernel_seen: None,
                        },
                    );
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
        if let (Some(k), Some(f)) = (&self.kernel, self.flows.get_mut(&id)) {
            if f.kernel_seen.take().is_some() {
                k.remove(id);
                self.relay.set_offloaded(id, false);
            }
        }
    }

    /// Handles relay events: a flow latched in both directions moves into the kernel.
    pub fn poll(&mut self, now: Instant) {
        while let Some(ev) = self.relay.poll_event() {
            match ev {
                RelayEvent::Latched { id, remotes } => {
                    let (Some(k), Some(f)) = (&self.kernel, self.flows.get_mut(&id)) else {
                        continue;
                    };
                    k.install(
                        id,
                        KernelFlow {
                            a_local: f.spec.sides[0].local,
                            a_remote: remotes[0],
                            b_local: f.spec.sides[1].local,
                            b_remote: remotes[1],
                        },
                    );
                    f.kernel_seen = Some((0, now));
                    self.relay.set_offloaded(id, true);
                }
            }
        }
    }

    /// Flows without a packet for the inactivity timeout, in user space or in the kernel.
    pub fn idle_flows(&mut self, now: Instant) -> HashSet<FlowId> {
        let counters = match &self.kernel {
            Some(k) if self.flows.values().any(|f| f.kernel_seen.is_some()) => {
                k.counters().unwrap_or_default()
            }
            _ => HashMap::new(),
        };
        self.kernel_counters = counters.iter().map(|(id, c)| (*id, c.packets)).collect();
        self.kernel_bytes = counters.iter().map(|(id, c)| (*id, c.bytes)).collect();
        let mut idle = HashSet::new();
        for (id, f) in &mut self.flows {
            let idle_for = match &mut f.kernel_seen {
                Some((seen, since)) => {
                    let packets = counters.get(id).map_or(0, |c| c.packets);
                    if packets != *seen {
                        *seen = packets;
                        *since = now;
                    }
                    now.saturating_duration_since(*since)
                }
                None => self.relay.stats(*id).map_or(Duration::ZERO, |s| s.idle_for),
            };
            if idle_for >= self.inactivity {
                idle.insert(*id);
            }
        }
        idle
    }

    /// Whether latched flows are moved into the kernel (the fast path started).
    pub fn kernel_enabled(&self) -> bool {
        self.kernel.is_some()
    }

    /// Flows currently forwarded by the kernel.
    pub fn kernel_flows(&self) -> usize {
        self.flows
            .values()
            .filter(|f| f.kernel_seen.is_some())
            .count()
    }

    /// Flows open in the relay (user space or kernel).
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Per-realm figures for the metrics endpoint (kernel counters as of the last idle check).
    pub fn snapshot(&self) -> Vec<RealmMedia> {
        let mut out: Vec<RealmMedia> = self
            .realms
            .iter()
            .map(|(name, _)| RealmMedia {
                realm: name.clone(),
                ..RealmMedia::default()
            })
            .collect();
        for (id, f) in &self.flows {
            let stats = self.relay.stats(*id);
            let user_packets = stats.as_ref().map_or(0, |s| s.packets[0] + s.packets[1]);
            let user_bytes = stats.as_ref().map_or(0, |s| s.bytes[0] + s.bytes[1]);
            let k_packets = self.kernel_counters.get(id).copied().unwrap_or(0);
            let k_bytes = self.kernel_bytes.get(id).copied().unwrap_or(0);
            for side in &f.spec.sides {
                let Some(r) = self
                    .realms
                    .iter()
                    .position(|(_, addr)| *addr == side.local.ip())
                else {
                    continue;
                };
                let m = &mut out[r];
                if f.kernel_seen.is_some() {
                    m.flows_kernel += 1;
                } else {
                    m.flows_user += 1;
                }
                m.packets += user_packets + k_packets;
                m.bytes += user_bytes + k_bytes;
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
