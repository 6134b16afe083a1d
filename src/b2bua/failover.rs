//! Trying the next target of a route (RFC 3263 §4.3): when the initial request on leg B times
//! out or is answered 503 before any early dialog exists, the same request (same Call-ID, tags
//! and body, a new transaction: new branch) goes to the next target the router gave, within the
//! same Timer C budget. The caller sees only the last target's answer.

#[allow(unused_imports)]
use super::*;

impl Border {
    /// Sends the initial request to the session's next target; `false` when there is none (or
    /// the call may no longer move: cancelled, or an early dialog already exists).
    pub(super) fn try_next_target(&mut self, now: Instant, sid: u64, status: Option<u16>) -> bool {
        let _call = self.call_span(sid);
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return false;
        };
        let no_dialog = sess.legs[1].remote_tag.is_none();
        if sess.usage.cancelled() || !no_dialog {
            return false;
        }
        let Some(setup) = sess.usage.setup_mut() else {
            return false;
        };
        let (Some(sent), Some(next)) = (setup.request.clone(), setup.alternates.pop_front()) else {
            return false;
        };
        // The new target has sent nothing yet: a later CANCEL waits for its first provisional.
        setup.got_provisional = false;
        let failed = sess.legs[1].flow.remote;
        let call_id = sess.legs[0].call_id.clone();
        sess.legs[1].flow = next;
        let req = self.retarget(&sent, next);
        tracing::info!(%call_id, %failed, next = %next.remote, ?status, "target failed, trying the next");
        self.emit(Event::TargetFailed {
            call_id,
            corr: corr_id(self.corr_salt, sid),
            target: failed,
            status,
        });
        self.with_session(sid, |this, sess| {
            this.send_initial(now, sid, sess, req, next)
        });
        true
    }

    /// Sends the initial request on leg B as a new client transaction whose responses drive
    /// the session; CANCEL is built from it.
    pub(super) fn send_initial(
        &mut self,
        now: Instant,
        sid: u64,
        sess: &mut Session,
        req: Sealed,
        dest: Flow,
    ) {
        let ctx = self.tx.send_request(now, &req, dest);
        if let Some(setup) = sess.usage.setup_mut() {
            setup.ctx = Some(ctx);
            setup.request = Some(req);
        }
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side: 1,
                kind: PendingKind::Initial,
            },
        );
    }
}
