//! The kernel-side drop set (`[sip] kernel_filter`): packets to a peer realm's SIP listeners
//! from sources that are none of its partners are dropped by nftables before they reach
//! Palisade, and counted (`palisade_sip_kernel_dropped_total{realm}`). [`rules`] builds the
//! table text from the configuration; this file applies it (`nft -f -`), replaces the sets'
//! contents on reload, removes the table on stop, and reads the counters on a thread of its
//! own every second, so the drive loop never waits for `nft`.
//!
//! Addresses a partner's route resolves to through DNS join the partner's realm's set as the
//! lookups give them ([`KernelFilter::allow`]); each stays for its answer's DNS TTL, at least
//! `[sip] kernel_filter_learned_hold_s` after the last lookup that gave it (kept over a reload),
//! and the counter thread deletes it once that has passed. Established connections are never
//! cut by that: the chain only looks at SYNs and datagrams.
//!
//! The user-space check stays: whatever the kernel lets through is still classified by the
//! engine, so a filter that could not be installed costs protection, not correctness.

pub mod rules;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

use crate::config::Config;
use crate::media::kernel::{nft, KernelError};
use rules::FilterRules;

/// How often the drop counters are read.
const READ_EVERY: Duration = Duration::from_secs(1);

pub struct KernelFilter {
    rules: Arc<Mutex<FilterRules>>,
    /// `[sip] kernel_filter_learned_hold_s`, replaced on reload.
    hold: Mutex<Duration>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn why(e: KernelError) -> String {
    match e {
        KernelError::NotPermitted(s) => format!("needs root or CAP_NET_ADMIN ({s})"),
        KernelError::NftMissing(s) => format!("cannot run `nft` (install nftables): {s}"),
        KernelError::Nft { stderr, .. } => format!("nft refused the table: {stderr}"),
        e => e.to_string(),
    }
}

impl KernelFilter {
    /// Installs the table if the configuration asks for it; `None` when it does not, or
    /// when it cannot be installed (logged once: the user-space check still drops).
    pub fn start(cfg: &Config, dropped: IntCounterVec) -> Option<KernelFilter> {
        if !cfg.sip.kernel_filter {
            return None;
        }
        let rules = FilterRules::from_config(cfg);
        if let Err(e) = nft::script(&rules.create()) {
            tracing::warn!(
                "kernel SIP filter unavailable, unknown sources are dropped in user space only: {}",
                why(e)
            );
            return None;
        }
        tracing::info!(table = %rules.table, "kernel SIP filter installed");
        let rules = Arc::new(Mutex::new(rules));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (rules, stop) = (rules.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sip-filter-counters".into())
                .spawn(move || read_counters(&rules, &stop, &dropped))
                .ok()
        };
        Some(KernelFilter {
            rules,
            hold: Mutex::new(cfg.sip.kernel_filter_learned_hold),
            stop,
            reader,
        })
    }

    /// A reload: the partners' addresses are replaced in one transaction (what DNS gave is
    /// kept); the counters go on.
    pub fn reload(&self, cfg: &Config) {
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = cfg.sip.kernel_filter_learned_hold;
        let mut new = FilterRules::from_config(cfg);
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        new.keep_learned(&rules);
        match nft::script(&new.elements()) {
            Ok(()) => *rules = new,
            Err(e) => tracing::error!("kernel SIP filter not updated: {}", why(e)),
        }
    }

    /// A partner's route in realm `realm` resolved to `ip` through DNS, valid for `ttl` (`None`:
    /// not from DNS, kept for good): it joins the realm's set until the TTL or the configured
    /// hold, whichever is longer, has passed. New addresses only run `nft` (a lookup per call
    /// would otherwise run it per call), on a thread of its own, so the drive loop never waits.
    pub fn allow(&self, realm: usize, ip: IpAddr, ttl: Option<Duration>) {
        let hold = *self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let until = ttl.map(|t| Instant::now() + t.max(hold));
        let script = self
            .rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .learn(realm, ip, until);
        if let Some(script) = script {
            let spawned = std::thread::Builder::new()
                .name("sip-filter-learn".into())
                .spawn(move || match nft::script(&script) {
                    Ok(()) => tracing::info!(%ip, "kernel SIP filter: DNS-found partner address allowed"),
                    Err(e) => tracing::error!(%ip, "kernel SIP filter: DNS-found address not allowed: {}", why(e)),
                });
            if let Err(e) = spawned {
                tracing::error!(%ip, "kernel SIP filter: DNS-found address not allowed: {e}");
            }
        }
    }

    /// Removes the table (at stop).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        match nft::script(&rules.delete()) {
            Ok(()) => tracing::info!(table = %rules.table, "kernel SIP filter removed"),
            Err(e) => tracing::warn!("kernel SIP filter not removed: {}", why(e)),
        }
    }
}

/// Every second: the drop counters into the metric, and the learned addresses whose time ran
/// out out of the sets.
fn read_counters(rules: &Mutex<FilterRules>, stop: &AtomicBool, dropped: &IntCounterVec) {
    while !stop.load(Ordering::Relaxed) {
        let due = rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expire(Instant::now());
        if let Some(script) = due {
            match nft::script(&script) {
                Ok(()) => tracing::info!(
                    "kernel SIP filter: DNS-found partner addresses expired: {}",
                    script.trim()
                ),
                Err(e) => tracing::error!(
                    "kernel SIP filter: expired addresses not removed: {}",
                    why(e)
                ),
            }
        }
        let table = rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .table
            .clone();
        if let Ok(out) = nft::run(&["-j", "list", "table", "inet", &table], None) {
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out) {
                let r = rules.lock().unwrap_or_else(|p| p.into_inner());
                for (name, packets) in rules::counters(&json) {
                    if let Some(realm) = r.realm_of_counter(&name) {
                        super::metrics::raise_to(&dropped.with_label_values(&[realm]), packets);
                    }
                }
            }
        }
        std::thread::sleep(READ_EVERY);
    }
}
