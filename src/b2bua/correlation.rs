//! The per-call correlation id (`corr`) that ties together every log line about one call: made
//! by the border from its session number and a per-instance salt, carried by the call's events
//! and by the `call` span the engine enters while it works on the session. It is never written
//! into a message (nothing in `build/` reads it), so logs can be shared with a partner's NOC
//! without handing over anything that could be matched against, or injected into, the wire.
//!
//! Computed, not stored: a session needs no extra state, and a call restored from a snapshot
//! gets the id of its new session number.

use std::sync::Arc;

use super::Border;

/// `<salt>-<session>`: the salt (from the engine's seed, random per process in the service)
/// keeps ids of two instances or two runs apart; the `-` keeps it from reading as one of the
/// hex tokens the border does put on the wire (tags, branches, Call-IDs).
pub(super) fn corr_id(salt: u32, sid: u64) -> Arc<str> {
    Arc::from(format!("{salt:08x}-{sid}"))
}

/// The salt of an engine seeded with `seed`. The seed's own bits, folded: drawing from the
/// engine's random generator would shift every tag and branch the engine makes afterwards.
pub(super) fn salt(seed: u64) -> u32 {
    let mixed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 32) as u32 ^ mixed as u32
}

impl Border {
    /// The span a session's work runs in; its `corr` field is on every line logged inside.
    pub(super) fn call_span(&self, sid: u64) -> tracing::span::EnteredSpan {
        tracing::info_span!("call", corr = %corr_id(self.corr_salt, sid)).entered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_session_and_by_seed() {
        let (a, b) = (salt(1), salt(2));
        assert_ne!(a, b);
        assert_ne!(corr_id(a, 7), corr_id(a, 8));
        assert_ne!(corr_id(a, 7), corr_id(b, 7));
        assert!(corr_id(a, 7).contains('-'));
    }
}
