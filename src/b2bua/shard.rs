//! Which part of the process's calls this engine owns, when the service runs one engine per
//! core (`[service] shards`). The engine itself needs to know only two things of it: the
//! Call-IDs it creates must steer back to it ([`crate::sip::steer`]), and the flow ids it gives
//! the shared media plane must not collide with another shard's. Relay ports and per-partner
//! limits are split before the engine sees its configuration ([`crate::config::Config::shard`]).

use std::sync::Arc;

use super::{Border, DialogIndex};
use crate::sip::steer;

/// This engine's place among the process's shards: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole process in one engine.
    pub const ONE: Shard = Shard { index: 0, count: 1 };
}

impl Border {
    /// A Call-ID for a leg this border creates: random, and steering to this shard.
    pub(super) fn new_call_id(&mut self) -> String {
        let Shard { index, count } = self.shard;
        match steer::owned_call_id(index, count, || self.token(16)) {
            Ok(id) => id,
            Err(id) => {
                tracing::error!(
                    shard = index,
                    "no Call-ID steering to this shard was found; the far side's requests of \
                     this leg may reach another shard"
                );
                id
            }
        }
    }

    /// Shares the index of answered dialogs with the process's other shards, so a `Replaces`,
    /// `Join` or embedded Replaces naming a dialog of another shard is translated here (see
    /// [`DialogIndex`]). Every engine of a process gets the same index.
    pub fn share_dialogs(&mut self, index: Arc<DialogIndex>) {
        self.dialog_index = Some(index);
    }

    /// The shard this engine is (its index and the number of shards).
    pub fn shard(&self) -> Shard {
        self.shard
    }
}
