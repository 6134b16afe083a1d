//! The resolver's memory, pure (time is passed in): a DNS answer cache that honours each
//! answer's TTL, keeps negative answers (NXDOMAIN / no data, RFC 2308) for their SOA-derived
//! TTL, caps both TTLs and holds at most a configured number of entries; and the hold-down list
//! of targets that failed recently, which later routes try last.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::NextHop;

/// A cached answer: records, or "this name has none of this type" (RFC 2308).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<V> {
    Records(Vec<V>),
    Negative,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    answer: Answer<V>,
    expires: Instant,
}

/// Bounded TTL cache.
#[derive(Debug, Clone)]
pub struct Cache<K, V> {
    entries: HashMap<K, Entry<V>>,
    max_entries: usize,
    max_ttl: Duration,
    max_negative_ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    pub fn new(max_entries: usize, max_ttl: Duration, max_negative_ttl: Duration) -> Self {
        Cache {
            entries: HashMap::new(),
            max_entries,
            max_ttl,
            max_negative_ttl,
        }
    }

    /// The answer if one is cached and its TTL has not run out, with the time it has left.
    pub fn get(&mut self, now: Instant, key: &K) -> Option<(Answer<V>, Duration)> {
        match self.entries.get(key) {
            Some(e) if e.expires > now => Some((e.answer.clone(), e.expires - now)),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers an answer for `ttl` (capped). A zero TTL is not cached (RFC 1035 §3.2.1: use
    /// once). When full, expired entries go first, then the one that would expire soonest.
    pub fn insert(&mut self, now: Instant, key: K, answer: Answer<V>, ttl: Duration) {
        let cap = match answer {
            Answer::Records(_) => self.max_ttl,
            Answer::Negative => self.max_negative_ttl,
        };
        let ttl = ttl.min(cap);
        if ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.max_entries {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                answer,
                expires: now + ttl,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Targets that failed (timeout, 503, connection failure) and until when they are held down.
#[derive(Debug, Clone, Default)]
pub struct HoldDown {
    until: HashMap<SocketAddr, Instant>,
}

/// Most targets remembered; beyond it expired ones are dropped, then the oldest.
const MAX_HELD: usize = 4096;

impl HoldDown {
    pub fn hold(&mut self, now: Instant, addr: SocketAddr, hold: Duration) {
        if hold.is_zero() {
            return;
        }
        if self.until.len() >= MAX_HELD {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_HELD {
                if let Some(k) = self.until.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                    self.until.remove(&k);
                }
            }
        }
        self.until.insert(addr, now + hold);
    }

    pub fn is_held(&self, now: Instant, addr: SocketAddr) -> bool {
        self.until.get(&addr).is_some_and(|t| *t > now)
    }

    /// The targets with the held-down ones moved to the end (kept: when every target is held
    /// down, trying one is better than failing the call), order otherwise unchanged.
    pub fn order(&self, now: Instant, targets: Vec<NextHop>) -> Vec<NextHop> {
        let (mut up, held): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|t| !self.is_held(now, t.addr));
        up.extend(held);
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ttl_honoured_and_capped() {
        let t0 = Instant::now();
        let mut c: Cache<&str, u32> = Cache::new(10, secs(60), secs(5));
        c.insert(t0, "a", Answer::Records(vec![1]), secs(10));
        assert_eq!(
            c.get(t0 + secs(9), &"a").unwrap().0,
            Answer::Records(vec![1])
        );
        assert!(c.get(t0 + secs(10), &"a").is_none(), "expired at its TTL");
        c.insert(t0, "b", Answer::Records(vec![2]), secs(3600));
        assert_eq!(c.get(t0, &"b").unwrap().1, secs(60), "capped by max_ttl");
        c.insert(t0, "zero", Answer::Records(vec![3]), Duration::ZERO);
        assert!(c.get(t0, &"zero").is_none(), "TTL 0 is not cached");
    }

    #[test]
    fn negative_answers_cached_for_their_own_capped_ttl() {
        let t0 = Instant::now();
        let mut c: Cache<&str, u32> = Cache::new(10, secs(60), secs(5));
        c.insert(t0, "nx", Answer::Negative, secs(30));
        assert_eq!(c.get(t0 + secs(4), &"nx").unwrap().0, Answer::Negative);
        assert!(c.get(t0 + secs(5), &"nx").is_none());
    }

    #[test]
    fn bounded_size_evicts_expired_then_soonest() {
        let t0 = Instant::now();
        let mut c: Cache<u32, u32> = Cache::new(3, secs(600), secs(600));
        c.insert(t0, 1, Answer::Records(vec![]), secs(100));
        c.insert(t0, 2, Answer::Records(vec![]), secs(5));
        c.insert(t0, 3, Answer::Records(vec![]), secs(200));
        c.insert(t0, 4, Answer::Records(vec![]), secs(300));
        assert_eq!(c.len(), 3);
        assert!(c.get(t0, &2).is_none(), "the soonest to expire went");
        c.insert(t0 + secs(150), 5, Answer::Records(vec![]), secs(10));
        assert!(
            c.get(t0 + secs(150), &1).is_none(),
            "expired entry went first"
        );
        assert!(c.get(t0 + secs(150), &3).is_some());
        assert!(c.get(t0 + secs(150), &4).is_some());
    }

    #[test]
    fn held_down_targets_go_last_until_the_hold_ends() {
        let t0 = Instant::now();
        let hop = |p: u16| NextHop {
            transport: Transport::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], p)),
        };
        let mut h = HoldDown::default();
        h.hold(t0, hop(1).addr, secs(30));
        let got = h.order(t0 + secs(1), vec![hop(1), hop(2), hop(3)]);
        assert_eq!(got, vec![hop(2), hop(3), hop(1)]);
        let got = h.order(t0 + secs(30), vec![hop(1), hop(2)]);
        assert_eq!(got, vec![hop(1), hop(2)], "hold over");
    }
}
