//! Graceful shutdown, sans-IO: [`Border::begin_drain`] stops the border taking anything new (new
//! requests outside a dialog get 503 with Retry-After, so a partner or core routes them
//! elsewhere) while calls in progress go on; [`Border::hang_up_all`] then ends whatever is left
//! on both legs (BYE with a Reason header on answered calls, 503 and CANCEL on calls still
//! ringing, 503 to requests waiting for their route). The service decides when: after the
//! drain timeout, or at once on a second stop signal.

#[allow(unused_imports)]
use super::*;

/// Retry-After (seconds) on the 503 a draining border answers with: long enough for the
/// sender to pick another route, short enough to come back once a restart is done.
pub const DRAIN_RETRY_AFTER_S: u32 = 30;

impl Border {
    /// Stops taking new requests outside a dialog (503 + Retry-After); dialogs and transactions
    /// in progress are served as before. Idempotent.
    pub fn begin_drain(&mut self) {
        if !self.draining {
            self.draining = true;
            tracing::info!(active = self.active, "draining: new requests get 503");
        }
    }

    /// Whether [`Border::begin_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The refusal of a new request while draining; `true` when it was refused.
    pub(super) fn refuse_while_draining(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        msg: &Message,
    ) -> bool {
        if !self.draining || msg.method() == Some(&Method::Ack) {
            return false;
        }
        let retry = ("Retry-After", DRAIN_RETRY_AFTER_S.to_string());
        self.reject(now, stx, msg, 503, Some(retry), RejectReason::Draining);
        true
    }

    /// Ends every call and dialog still running: answered calls get a BYE on both legs with
    /// `Reason: SIP;cause=503;text="Border shutting down"`, calls still being set up get 503 on
    /// leg A and CANCEL on leg B, requests parked for a route lookup get 503. Implies
    /// [`Border::begin_drain`]. Drain the outputs afterwards as after any input.
    pub fn hang_up_all(&mut self, now: Instant) {
        self.begin_drain();
        let mut parked: Vec<LookupId> = self.parked.keys().copied().collect();
        parked.sort_by_key(|id| id.0);
        for id in parked {
            if let Some(p) = self.parked.remove(&id) {
                self.parked_by_stx.remove(&p.stx);
                self.reply(now, p.stx, &p.msg, 503, None);
            }
        }
        let mut live: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.usage.is_ended())
            .map(|(id, _)| *id)
            .collect();
        live.sort_unstable();
        for sid in live {
            self.teardown(now, sid, Hangup::Shutdown);
        }
        self.drain_tx_events(now);
    }

    /// Requests the border sent itself (BYE and CANCEL of a teardown) still waiting for their
    /// final response: after [`Border::hang_up_all`], the service may exit once this is 0.
    pub fn hangups_outstanding(&self) -> usize {
        self.pending
            .iter()
            .filter(|(ctx, p)| {
                matches!(p.kind, PendingKind::Local) && self.tx.client_pending(**ctx)
            })
            .count()
    }
}
