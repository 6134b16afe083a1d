//! Transaction events and the session timers (Timer C, dialog idle, reap), and the end of a
//! session: teardown with BYE and Reason, release of media and limits.

#[allow(unused_imports)]
use super::*;

impl Border {
    // === Timers and transaction events ===

    pub(super) fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tx.poll_event() {
            match ev {
                TxEvent::ClientTimeout(ctx) => {
                    if let Some(p) = self.pending.remove(&ctx) {
                        self.on_client_timeout(now, p, 408);
                    }
                }
                TxEvent::ClientTransportError(ctx) => {
                    if let Some(p) = self.pending.remove(&ctx) {
                        self.on_client_timeout(now, p, 503);
                    }
                }
                TxEvent::ClientTerminated(ctx) => {
                    // A 2xx retransmitted after this finds no transaction: the ACK kept for
                    // it is never sent again.
                    let sid = self.pending.remove(&ctx).map(|p| p.session);
                    let call = sid.and_then(|sid| self.sessions.get_mut(&sid));
                    if let Some(call) = call.and_then(|s| s.usage.call_mut()) {
                        call.forget_ack(ctx);
                    }
                }
                TxEvent::AckTimeout(stx) => {
                    let found = self
                        .sessions
                        .iter()
                        .find(|(_, s)| {
                            s.usage
                                .answered()
                                .and_then(|a| a.awaiting_ack.as_ref())
                                .is_some_and(|w| w.stx == stx)
                        })
                        .map(|(id, _)| *id);
                    if let Some(sid) = found {
                        self.teardown(now, sid, Hangup::AckTimeout);
                    }
                }
            }
        }
    }

    /// No final response will come: Timer B/F fired (`status` 408) or the transport failed
    /// (503, RFC 3261 §8.1.3.1). The initial request moves to the next target if there is one.
    pub(super) fn on_client_timeout(&mut self, now: Instant, p: Pending, status: u16) {
        let sid = p.session;
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        let leg = &sess.legs[p.side];
        let method = match &p.kind {
            PendingKind::Local | PendingKind::Transfer(_) => None,
            PendingKind::Initial => sess.initial.method().cloned(),
            PendingKind::Relay { request, .. } => request.method().cloned(),
        };
        let to = self.origin(leg.realm, leg.party);
        if status == 408 {
            self.emit(Event::TransactionTimeout { method, to });
        }
        match p.kind {
            PendingKind::Local => {}
            PendingKind::Transfer(step) => self.on_transfer_timeout(now, sid, p.side, step),
            PendingKind::Initial => {
                if self.try_next_target(now, sid, (status != 408).then_some(status)) {
                    return;
                }
                let Some(sess) = self.sessions.get(&sid) else {
                    return;
                };
                let kind = sess.kind();
                if let Some(stx) = sess.initial_stx.filter(|_| sess.usage.setup().is_some()) {
                    let initial = sess.initial.clone();
                    self.reply_in_session(now, sid, stx, &initial, status);
                }
                if kind == Kind::Invite {
                    self.stats.calls_failed += 1;
                    self.emit_failed(sid, status);
                }
                self.end(now, sid);
            }
            PendingKind::Relay { stx, request, .. } => {
                self.reply(now, stx, &request, status, None);
                if request.method() == Some(&Method::Bye) {
                    self.end(now, sid);
                }
            }
        }
    }

    pub(super) fn fire(&mut self, now: Instant, at: Instant, sid: u64, which: SessTimer) {
        if which == SessTimer::Lookup {
            return self.lookup_expired(now, sid);
        }
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        match which {
            SessTimer::TimerC => {
                if sess.usage.early().and_then(|e| e.timer_c_at) != Some(at) {
                    return;
                }
                if let Some(stx) = sess.initial_stx {
                    let initial = sess.initial.clone();
                    self.reply_in_session(now, sid, stx, &initial, 408);
                }
                self.send_cancel(now, sid);
                self.stats.calls_failed += 1;
                self.emit_failed(sid, 408);
                self.end(now, sid);
            }
            SessTimer::Idle => {
                if sess.usage.is_ended() {
                    return;
                }
                let idle_until = sess.last_activity + self.cfg.sip.dialog_idle_timeout;
                if idle_until > now {
                    self.timers.insert((idle_until, sid, SessTimer::Idle));
                } else {
                    self.teardown(now, sid, Hangup::DialogIdle);
                }
            }
            SessTimer::Lookup => {} // handled above: its id is a lookup's, not a session's
            SessTimer::Reap => {
                if !sess.usage.is_ended() {
                    return;
                }
                let sess = self.sessions.remove(&sid).expect("looked up above");
                for leg in &sess.legs {
                    self.dialogs
                        .remove(&(leg.call_id.clone(), leg.local_tag.clone()));
                    if let Party::Peer(p) = leg.party {
                        self.partners.release(p);
                    }
                }
                if let Some(stx) = sess.initial_stx {
                    self.invites.remove(&stx);
                }
            }
        }
    }

    fn emit_failed(&mut self, sid: u64, status: u16) {
        if let Some(sess) = self.sessions.get(&sid) {
            let call_id = sess.legs[0].call_id.clone();
            let corr = corr_id(self.corr_salt, sid);
            self.emit(Event::CallFailed {
                call_id,
                corr,
                status,
            });
        }
    }

    /// Ends a session whose signalling is finished; its state lingers 64·T1 so that late
    /// retransmissions still find it, then is freed.
    pub(super) fn end(&mut self, now: Instant, sid: u64) {
        if let Some(sess) = self.sessions.get(&sid) {
            self.withdraw_dialogs(&sess.legs);
        }
        self.leave_early(sid);
        self.forget_transfer(sid);
        if let Some(sess) = self.sessions.get_mut(&sid) {
            let ended = match &mut sess.usage {
                Usage::Call(call) => call.end().map(|end| {
                    end.answered_at.map(|at| Event::CallEnded {
                        call_id: sess.legs[0].call_id.clone(),
                        corr: corr_id(self.corr_salt, sid),
                        duration: now.saturating_duration_since(at),
                        by: end.by,
                    })
                }),
                Usage::Subscription(sub) => sub.end().then_some(None),
                Usage::Standalone(s) => s.end().then_some(None),
            };
            if let Some(ended) = ended {
                sess.ended();
                self.active -= 1;
                for leg in &sess.legs {
                    if let Party::Peer(p) = leg.party {
                        self.partners.ended(p);
                    }
                }
                let legs = [0, 1].map(|i| LegRealm {
                    realm: sess.legs[i].realm,
                    addr: self.cfg.realms[sess.legs[i].realm].media_address,
                });
                if let Some(media) = sess.media_mut() {
                    self.anchoring.release(media, legs);
                }
                let at = now + self.cfg.sip.t1 * 64;
                self.timers.insert((at, sid, SessTimer::Reap));
                if let Some(ev) = ended {
                    self.emit(ev);
                }
            }
        }
    }

    /// Hangs up both legs (BYE on each confirmed dialog) and ends the session.
    pub(super) fn teardown(&mut self, now: Instant, sid: u64, why: Hangup) {
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        if sess.usage.is_ended() {
            return;
        }
        let _call = self.call_span(sid);
        tracing::info!(
            call_id = %sess.legs[0].call_id,
            "border hangs up the call: {}",
            why.text()
        );
        let kind = sess.kind();
        let answered = sess.usage.answered().is_some();
        let invite_stx = sess.initial_stx.filter(|_| sess.usage.setup().is_some());
        if let Some(call) = self.sessions.get_mut(&sid).and_then(|s| s.usage.call_mut()) {
            call.ending(EndedBy::Border(why.text()));
        }
        if answered && kind == Kind::Invite {
            for side in 0..2 {
                let Some((mut bye, dest)) = self.with_session(sid, |this, sess| {
                    let bye = this.build_request(sess, side, Method::Bye, None, None);
                    (bye, this.leg_dest(&sess.legs[side]))
                }) else {
                    return;
                };
                // RFC 3326: say why the border, not a user, ended the call.
                bye.push_reason(why.cause(), why.text());
                self.send_local(now, sid, side, &bye, dest);
            }
        } else if let Some(stx) = invite_stx {
            // Not answered yet: the caller gets the cause as the final answer (408 for a
            // timeout, 503 "try elsewhere" when the border stops), the callee a CANCEL.
            let initial = self.sessions[&sid].initial.clone();
            self.reply_in_session(now, sid, stx, &initial, why.cause());
            self.send_cancel(now, sid);
            if kind == Kind::Invite {
                self.stats.calls_failed += 1;
                self.emit_failed(sid, why.cause());
            }
        }
        self.end(now, sid);
    }
}
