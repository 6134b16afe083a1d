//! The media plane of a running instance: performs the B2BUA's [`MediaCommand`]s on the
//! user-space relay, moves latched flows into the kernel fast path when enabled, and reports
//! idle flows back for the inactivity timeout.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::b2bua::media::MediaCommand;
use crate::config::Config;
use crate::media::kernel::{KernelFlow, KernelPath};
use crate::media::relay::{Relay, RelayConfig, RelayEvent};
use crate::media::{FlowId, FlowSpec};

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
        Ok(MediaPlane {
            relay,
            kernel,
            flows: HashMap::new(),
            inactivity: cfg.media.inactivity_timeout,
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

    pub fn shutdown(self) {
        if let Some(k) = self.kernel {
            if let Err(e) = k.shutdown() {
                tracing::warn!("removing the nftables table failed: {e}");
            }
        }
        self.relay.shutdown();
    }
}
