//! New requests parked while the router resolves their target outside the engine (ENUM, DNS):
//! the engine hands out a [`LookupRequest`] ([`Border::poll_lookup`]) and continues when the
//! answer comes back ([`Border::handle_lookup`]), in the same sans-IO shape as its other
//! outputs. While parked, the INVITE has had its 100 Trying, a CANCEL ends it with 487, and
//! `sip.lookup_timeout` bounds the wait (504, RFC 3261 §21.5.5: an external server did not
//! answer in time). A result for a request no longer parked is ignored.

#[allow(unused_imports)]
use super::*;

/// A new request waiting for its route.
#[derive(Debug, Clone)]
pub(super) struct Parked {
    pub msg: Message,
    pub stx: ServerTxId,
    pub flow: Flow,
    pub party: Party,
    pub kind: Kind,
}

impl Border {
    pub(super) fn park(&mut self, now: Instant, p: Parked, target: Uri, from_home: bool) {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.parked_by_stx.insert(p.stx, id);
        self.parked.insert(id, p);
        self.lookups.push_back(LookupRequest {
            id,
            target,
            from_home,
        });
        let at = now + self.cfg.sip.lookup_timeout;
        self.timers.insert((at, id.0, SessTimer::Lookup));
    }

    fn unpark(&mut self, id: LookupId) -> Option<Parked> {
        let p = self.parked.remove(&id)?;
        self.parked_by_stx.remove(&p.stx);
        Some(p)
    }

    /// The next route lookup for the service to run (oldest first).
    pub fn poll_lookup(&mut self) -> Option<LookupRequest> {
        self.lookups.pop_front()
    }

    /// The answer to a lookup: a route (its targets in order) or the status to answer with.
    pub fn handle_lookup(&mut self, now: Instant, id: LookupId, result: LookupResult) {
        if let Some(p) = self.unpark(id) {
            self.route_and_start(now, p, result);
            self.drain_tx_events(now);
        }
    }

    /// The lookup timer: still parked means the resolver did not answer in time.
    pub(super) fn lookup_expired(&mut self, now: Instant, id: u64) {
        if let Some(p) = self.unpark(LookupId(id)) {
            tracing::info!(lookup = id, "route lookup timed out");
            self.reply(now, p.stx, &p.msg, 504, None);
        }
    }

    /// CANCEL of a parked INVITE; `false` when `invite` is not parked.
    pub(super) fn cancel_parked(&mut self, now: Instant, invite: ServerTxId) -> bool {
        let Some(id) = self.parked_by_stx.get(&invite).copied() else {
            return false;
        };
        if let Some(p) = self.unpark(id) {
            self.reply(now, p.stx, &p.msg, 487, None);
        }
        true
    }

    pub(super) fn parked_len(&self) -> usize {
        self.parked.len()
    }
}
