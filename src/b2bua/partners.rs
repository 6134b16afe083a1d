//! The peering partners the engine knows, by stable identity.
//!
//! A leg names its partner by [`PeerId`], a handle this table hands out once per (realm name,
//! partner name) and never reuses, not by the partner's position in the configuration lists.
//! [`Partners::swap`] applies a new configuration: a partner kept under the same name keeps its
//! id (and takes the new policy), a new one gets a fresh id, and a removed one is *retired*: it
//! stays here, with the policy it had, while any session still refers to it, so its calls run to
//! their end on the partner they were set up with and nobody else's call is pointed at it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Peer, RealmKind};

/// A partner's stable identity within one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

#[derive(Debug, Clone)]
struct Entry {
    id: PeerId,
    /// Index of the (peer) realm it is reached through; realms are tied to listeners and do not
    /// change under a running engine (see `Border::reconfigure`).
    realm: usize,
    /// The partner's name, shared with the events that carry it.
    name: Arc<str>,
    peer: Peer,
    /// Removed from the configuration: no new session may use it.
    retired: bool,
    /// Sessions not yet ended with a leg on this partner (its share of the call limit).
    active: usize,
    /// Sessions not yet freed (ended ones linger 64·T1) that still read its policy.
    held: usize,
    /// Its new calls and its out-of-dialog requests per second (`max_cps`, `max_rps`).
    calls: Bucket,
    requests: Bucket,
    /// Its signalling bytes per second (`max_bytes_per_second`).
    bytes: Bucket,
    /// Its requests awaiting our final answer (`max_transactions`).
    pending: usize,
    /// When anything (a request or a response) last arrived from it: its health, for engineers.
    heard: Option<Instant>,
}

/// One partner as `palisade status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerStatus {
    pub realm: Arc<str>,
    pub name: Arc<str>,
    /// Calls (and other sessions) not yet ended with it.
    pub active: usize,
    /// Removed by a reload; its calls run to their end.
    pub retired: bool,
    /// Time since it last sent anything, `None` if it never did.
    pub last_heard: Option<std::time::Duration>,
}

/// A token bucket fed by the engine's clock: `rate` tokens a second, at most one second's worth
/// stored (the burst a partner may send after a quiet spell).
#[derive(Debug, Clone, Default)]
struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// Takes a token if one is there; a rate of 0 is no limit.
    fn take(&mut self, now: Instant, rate: u32) -> bool {
        self.take_n(now, rate, 1, 0)
    }

    /// Takes `n` tokens if they are there, the bucket holding at least `floor` (so that a
    /// message of the largest size allowed can pass after a quiet spell whatever the rate).
    fn take_n(&mut self, now: Instant, rate: u32, n: usize, floor: usize) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = f64::from(rate).max(floor as f64);
        let since = self.last.map_or(cap, |l| {
            now.saturating_duration_since(l).as_secs_f64() * f64::from(rate)
        });
        self.tokens = (self.tokens + since).min(cap);
        self.last = Some(now);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// What a partner is sending, for its rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// A request outside any dialog (counted against `max_rps`).
    Request,
    /// A new call: an out-of-dialog INVITE (counted against both `max_cps` and `max_rps`).
    Call,
}

/// The table of partners; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Partners {
    entries: Vec<Entry>,
    next: u32,
}

impl Partners {
    pub fn new(cfg: &Config) -> Partners {
        let mut t = Partners::default();
        t.swap(cfg);
        t
    }

    /// Applies a new configuration (see the module documentation).
    pub fn swap(&mut self, cfg: &Config) {
        for e in &mut self.entries {
            e.retired = true;
        }
        for (ri, realm) in cfg.realms.iter().enumerate() {
            if realm.kind != RealmKind::Peer {
                continue;
            }
            for peer in &realm.peers {
                let found = self
                    .entries
                    .iter_mut()
                    .find(|e| e.realm == ri && e.peer.name == peer.name);
                match found {
                    Some(e) => {
                        e.peer = peer.clone();
                        e.retired = false;
                    }
                    None => {
                        let id = PeerId(self.next);
                        self.next += 1;
                        self.entries.push(Entry {
                            id,
                            realm: ri,
                            name: Arc::from(peer.name.as_str()),
                            peer: peer.clone(),
                            retired: false,
                            active: 0,
                            held: 0,
                            calls: Bucket::default(),
                            requests: Bucket::default(),
                            bytes: Bucket::default(),
                            pending: 0,
                            heard: None,
                        });
                    }
                }
            }
        }
        self.entries.retain(|e| !e.retired || e.held > 0);
    }

    fn entry(&self, id: PeerId) -> &Entry {
        // Ids come only from this table, and an entry is dropped only when no session holds it.
        self.entries
            .iter()
            .find(|e| e.id == id)
            .expect("a partner held by a session stays in the table")
    }

    /// Something arrived from the partner.
    pub fn heard(&mut self, id: PeerId, now: Instant) {
        if let Some(e) = self.entry_mut(id) {
            e.heard = Some(now);
        }
    }

    /// Every partner held, in configuration order (retired ones after), `realm_names` by index.
    pub fn status(&self, now: Instant, realm_names: &[Arc<str>]) -> Vec<PartnerStatus> {
        let mut out: Vec<PartnerStatus> = self
            .entries
            .iter()
            .map(|e| PartnerStatus {
                realm: realm_names
                    .get(e.realm)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("?")),
                name: e.name.clone(),
                active: e.active,
                retired: e.retired,
                last_heard: e.heard.map(|h| now.saturating_duration_since(h)),
            })
            .collect();
        out.sort_by_key(|p| p.retired);
        out
    }

    /// Whether the partner is within its rates for one more of `what` (and counts it if so).
    pub fn admit(&mut self, id: PeerId, now: Instant, what: Rate) -> bool {
        let Some(e) = self.entry_mut(id) else {
            return false;
        };
        let (cps, rps) = (e.peer.max_cps, e.peer.max_rps);
        if what == Rate::Call && !e.calls.take(now, cps) {
            return false;
        }
        e.requests.take(now, rps)
    }

    /// Every source address of the partners of `realm` held (retired ones included).
    pub fn sources(&self, realm: usize) -> Vec<IpAddr> {
        self.entries
            .iter()
            .filter(|e| e.realm == realm)
            .flat_map(|e| e.peer.sources.iter().copied())
            .collect()
    }

    /// Whether `n` more bytes from the partner are within `max_bytes_per_second` (and counts
    /// them if so). `floor` is the largest message allowed, which the bucket always holds.
    pub fn admit_bytes(&mut self, id: PeerId, now: Instant, n: usize, floor: usize) -> bool {
        let Some(e) = self.entry_mut(id) else {
            return false;
        };
        let rate = e.peer.max_bytes_per_second;
        e.bytes.take_n(now, rate, n, floor)
    }

    /// Whether the partner's requests awaiting our answer, the newest counted, are within its
    /// `max_transactions`.
    pub fn within_transactions(&self, id: PeerId) -> bool {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .is_some_and(|e| e.pending <= e.peer.max_transactions)
    }

    /// A request from the partner now awaits our final answer (`opened`), or got it.
    pub fn pending(&mut self, id: PeerId, opened: bool) {
        if let Some(e) = self.entry_mut(id) {
            if opened {
                e.pending += 1;
            } else {
                e.pending = e.pending.saturating_sub(1);
            }
        }
    }

    fn entry_mut(&mut self, id: PeerId) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }

    /// The partner's policy (the one it was last configured with, if it has been removed).
    pub fn get(&self, id: PeerId) -> &Peer {
        &self.entry(id).peer
    }

    pub fn name(&self, id: PeerId) -> Arc<str> {
        self.entry(id).name.clone()
    }

    /// The live partner of `realm` called `name`.
    pub fn find(&self, realm: usize, name: &str) -> Option<PeerId> {
        self.entries
            .iter()
            .find(|e| e.realm == realm && !e.retired && e.peer.name == name)
            .map(|e| e.id)
    }

    /// Which partner of `realm` sends from `ip`: live partners first, then retired ones whose
    /// calls are still running. The flag says whether it was retired.
    pub fn by_source(&self, realm: usize, ip: IpAddr) -> Option<(PeerId, bool)> {
        let hit = |retired: bool| {
            self.entries
                .iter()
                .find(|e| e.realm == realm && e.retired == retired && e.peer.sources.contains(&ip))
                .map(|e| (e.id, retired))
        };
        hit(false).or_else(|| hit(true))
    }

    /// The partner of `realm` a TLS connection proved by certificate, by the name in its
    /// policy: live partners first, then a retired one whose calls are still running.
    pub fn by_identity(&self, realm: usize, name: &str) -> Option<(PeerId, bool)> {
        let hit = |retired: bool| {
            self.entries
                .iter()
                .find(|e| e.realm == realm && e.retired == retired && &*e.name == name)
                .map(|e| (e.id, retired))
        };
        hit(false).or_else(|| hit(true))
    }

    pub fn is_retired(&self, id: PeerId) -> bool {
        self.entry(id).retired
    }

    /// Sessions not yet ended with this partner.
    pub fn active(&self, id: PeerId) -> usize {
        self.entry(id).active
    }

    /// A session with a leg on `id` starts.
    pub fn hold(&mut self, id: PeerId) {
        if let Some(e) = self.entry_mut(id) {
            e.active += 1;
            e.held += 1;
        }
    }

    /// That session ended (its call-limit share is free; the policy is still read).
    pub fn ended(&mut self, id: PeerId) {
        if let Some(e) = self.entry_mut(id) {
            e.active = e.active.saturating_sub(1);
        }
    }

    /// That session is freed: a retired partner nobody holds any more leaves the table.
    pub fn release(&mut self, id: PeerId) {
        if let Some(e) = self.entry_mut(id) {
            e.held = e.held.saturating_sub(1);
        }
        self.entries.retain(|e| !e.retired || e.held > 0);
    }

    /// Partners in the table, retired ones included.
    pub fn known(&self) -> usize {
        self.entries.len()
    }
}
