//! The dialogs one shard's engine may be asked to name although another shard owns them: a
//! `Replaces`/`Join` on a new INVITE, or a `Replaces` embedded in a REFER's Refer-To, names a
//! dialog by its Call-ID and tags, and the request carrying it steers by its *own* Call-ID
//! (`sip::steer`), so it may reach an engine that does not hold the session. The translation
//! needs only the identifiers of the named leg and of its session's other leg, so each engine
//! publishes those here when a call is answered and withdraws them when it ends; the engine
//! that gets the request translates from this index when its own table has no such dialog.
//!
//! Why a shared table and not a message to the owning shard: the engines are sans-IO and
//! answer a request in the step that received it. Why it costs nothing on the message path:
//! it is written twice per answered call (answer, end) and read only for a dialog reference
//! the engine does not hold, under one of [`BUCKETS`] locks chosen by Call-ID. One engine
//! alone (one shard) has no index at all.
//!
//! A leg's party is stored by name (`Facing`): `PeerId`s are numbered per engine.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

/// Locks of the index, chosen by Call-ID: enough that engines on many cores rarely meet.
pub const BUCKETS: usize = 64;

/// Who a leg faces: the home core, or a partner by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Facing {
    Core,
    Peer(Arc<str>),
}

/// One leg's dialog as another engine needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NamedLeg {
    pub realm: usize,
    pub faces: Facing,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
}

/// A leg (the one a reference names) and its session's other leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Named {
    pub leg: NamedLeg,
    pub other: NamedLeg,
}

type Key = (String, String);

/// The answered calls' legs of every shard of a process, by (Call-ID, local tag).
#[derive(Debug)]
pub struct DialogIndex {
    buckets: Vec<Mutex<HashMap<Key, Named>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for DialogIndex {
    fn default() -> Self {
        DialogIndex {
            buckets: (0..BUCKETS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl DialogIndex {
    pub fn new() -> Arc<DialogIndex> {
        Arc::new(DialogIndex::default())
    }

    fn bucket(&self, call_id: &str) -> std::sync::MutexGuard<'_, HashMap<Key, Named>> {
        let i = (self.hasher.hash_one(call_id) % BUCKETS as u64) as usize;
        // A poisoned lock only means another engine panicked mid-insert: the map is intact.
        self.buckets[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes both legs of a session (each named from its own side).
    pub(super) fn publish(&self, legs: [NamedLeg; 2]) {
        let [a, b] = legs;
        for (leg, other) in [(a.clone(), b.clone()), (b, a)] {
            let key = (leg.call_id.clone(), leg.local_tag.clone());
            self.bucket(&leg.call_id).insert(key, Named { leg, other });
        }
    }

    /// Withdraws a leg's dialog.
    pub(super) fn withdraw(&self, call_id: &str, local_tag: &str) {
        self.bucket(call_id)
            .remove(&(call_id.to_string(), local_tag.to_string()));
    }

    /// The leg whose dialog is (`call_id`, `local_tag`) on the border's side, with its other leg.
    pub(super) fn get(&self, call_id: &str, local_tag: &str) -> Option<Named> {
        self.bucket(call_id)
            .get(&(call_id.to_string(), local_tag.to_string()))
            .cloned()
    }

    /// Dialogs published (both legs of each call count).
    pub fn len(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
