//! CANCEL of an initial INVITE (RFC 3261 §9): answered at once, relayed once leg B may be
//! cancelled (after its first provisional).

#[allow(unused_imports)]
use super::*;

impl Border {
    pub(super) fn on_cancel(&mut self, now: Instant, msg: &Message, stx: ServerTxId) {
        let invite = self.tx.invite_for_cancel(msg);
        if let Some(inv) = invite {
            if self.parked_by_stx.contains_key(&inv) {
                self.reply(now, stx, msg, 200, None);
                self.cancel_parked(now, inv);
                return;
            }
        }
        let Some(sid) = invite.and_then(|inv| self.invites.get(&inv).copied()) else {
            return self.reply(now, stx, msg, 481, None);
        };
        self.reply(now, stx, msg, 200, None);
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(invite_stx) = sess.initial_stx else {
            return;
        };
        let pending = self.tx.server_pending(invite_stx);
        let Some(early) = sess.usage.early_mut().filter(|e| !e.cancelled() && pending) else {
            return;
        };
        let reason = msg.headers.get("Reason").and_then(hiding::screened_reason);
        let send_now = early.cancel(reason);
        let call_id = sess.legs[0].call_id.clone();
        let initial = sess.initial.clone();
        let corr = corr_id(self.corr_salt, sid);
        self.emit(Event::CallCancelled { call_id, corr });
        self.reply_in_session(now, sid, invite_stx, &initial, 487);
        if send_now {
            self.send_cancel(now, sid);
        }
    }

    pub(super) fn send_cancel(&mut self, now: Instant, sid: u64) {
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some((invite, ctx, reason)) = sess.usage.early_mut().and_then(|e| e.cancel_to_send())
        else {
            return;
        };
        if !self.tx.client_pending(ctx) {
            return;
        }
        let cancel = Border::build_cancel(invite, reason);
        let dest = sess.legs[1].flow;
        self.send_local(now, sid, 1, &cancel, dest);
    }
}
