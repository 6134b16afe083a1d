//! Responses on leg B (or on either leg for relayed requests): dialog state from 1xx/2xx,
//! relay to the other leg, 2xx retransmissions and forked 2xx (RFC 3261 §13.2.2.4).

#[allow(unused_imports)]
use super::*;

impl Border {
    // === Responses ===

    pub(super) fn on_response(&mut self, now: Instant, msg: Message) {
        match self.tx.on_response(now, &msg) {
            ResponseDisposition::Absorbed => {}
            ResponseDisposition::Retransmitted2xx(ctx) => {
                self.on_2xx_retransmission(now, ctx, &msg)
            }
            ResponseDisposition::Deliver(ctx) => self.on_client_response(now, ctx, msg),
        }
    }

    pub(super) fn on_2xx_retransmission(&mut self, now: Instant, ctx: ClientTxId, msg: &Message) {
        let Some(p) = self.pending.get(&ctx) else {
            return;
        };
        let (sid, side, initial) = (p.session, p.side, matches!(p.kind, PendingKind::Initial));
        if matches!(p.kind, PendingKind::Transfer(_)) {
            return self.transfer_reack(sid, ctx);
        }
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        let tag = tag_of(msg.headers.get("To"));
        if initial && tag.is_some() && tag != sess.legs[side].remote_tag {
            // Another branch of a forked INVITE answered too: that dialog is not wanted.
            return self.ack_and_bye_fork(now, sid, side, msg);
        }
        if let Some(sent) = sess.usage.last_ack().filter(|s| s.ctx == ctx) {
            let (ack, dest) = (sent.ack.clone(), sent.dest);
            self.tx.send_stateless(&ack, dest);
        }
    }

    /// RFC 3261 §13.2.2.4: a 2xx from a second branch is ACKed and its dialog ended with BYE.
    pub(super) fn ack_and_bye_fork(&mut self, now: Instant, sid: u64, side: usize, resp: &Message) {
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        let mut fork = sess.clone();
        let leg = &mut fork.legs[side];
        leg.remote_tag = tag_of(resp.headers.get("To"));
        leg.remote_target = contact_uri(resp);
        leg.route_set = uac_route_set(resp);
        let cseq = cseq_of(resp).map(|c| c.seq).unwrap_or(1);
        leg.local_cseq = cseq;
        let ack = self.build_ack(&mut fork, side, cseq, &Message::empty_request());
        let dest = self.leg_dest(&fork.legs[side]);
        self.tx.send_stateless(&ack, dest);
        let bye = self.build_request(&mut fork, side, Method::Bye, None, None);
        self.send_local(now, sid, side, &bye, dest);
    }

    pub(super) fn on_client_response(&mut self, now: Instant, ctx: ClientTxId, msg: Message) {
        let Some(status) = msg.status() else { return };
        let Some(p) = self.pending.get(&ctx) else {
            return;
        };
        let (sid, side) = (p.session, p.side);
        let kind = p.kind.clone();
        if let PendingKind::Transfer(step) = kind {
            // Its own leg, not the session's: the dialog state is kept in `transfer.rs`.
            return self.on_transfer_response(now, (sid, side), ctx, step, &msg);
        }
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        sess.last_activity = now;
        let initial = matches!(kind, PendingKind::Initial);
        if !matches!(kind, PendingKind::Local) && !sess.select_for(side, &msg) {
            // A tag that names no early dialog of this call: a new branch of a forked INVITE
            // (RFC 3261 §13.2.2.4) gets its own early dialog, on both legs, when it creates one.
            if initial && status > 100 && status < 300 {
                if let Some(b_tag) = tag_of(msg.headers.get("To")) {
                    let a_tag = self.token(10);
                    let sess = self.sessions.get_mut(&sid).expect("looked up above");
                    let call_id = sess.legs[0].call_id.clone();
                    sess.add_fork(a_tag.clone(), b_tag);
                    self.dialogs.insert((call_id, a_tag), (sid, 0));
                }
            }
        }
        let sess = self.sessions.get_mut(&sid).expect("looked up above");
        if status > 100 && status < 300 {
            let leg = &mut sess.legs[side];
            // RFC 3261 §12.1.2: the 2xx fixes the dialog's route set; an early dialog's comes
            // from its first provisional.
            let confirms = initial && status >= 200;
            if leg.remote_tag.is_none() {
                leg.remote_tag = tag_of(msg.headers.get("To"));
            }
            if let Some(c) = contact_uri(&msg) {
                leg.remote_target = Some(c);
            }
            if initial && (leg.route_set.is_empty() || confirms) {
                leg.route_set = uac_route_set(&msg);
            }
        }
        match kind {
            PendingKind::Local | PendingKind::Transfer(_) => {}
            PendingKind::Initial => self.on_initial_response(now, sid, ctx, status, msg),
            PendingKind::Relay {
                stx,
                request,
                out_cseq,
            } => self.on_relay_response(now, sid, side, ctx, stx, &request, out_cseq, msg),
        }
    }

    pub(super) fn on_initial_response(
        &mut self,
        now: Instant,
        sid: u64,
        ctx: ClientTxId,
        status: u16,
        msg: Message,
    ) {
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        let usage = &mut sess.usage;
        if usage.setup().is_none() {
            // Already decided (a final answer, a timeout): a late 2xx is a forked answer or
            // a retransmission the transaction layer passed on.
            return;
        }
        if status < 200 {
            let step = match usage.early_mut() {
                Some(early) => early.provisional(status),
                None => {
                    // A subscription or standalone request cannot be cancelled: only the
                    // provisional's crossing is decided here.
                    usage.setup_mut().expect("checked above").got_provisional = true;
                    match status {
                        100 => Provisional::Absorb,
                        _ => Provisional::Relay,
                    }
                }
            };
            match step {
                Provisional::SendCancel => return self.send_cancel(now, sid),
                Provisional::Absorb => return,
                Provisional::Relay => {}
            }
        }
        let cancelled = usage.cancelled();
        if status == 503 && self.try_next_target(now, sid, Some(503)) {
            return;
        }
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        let Some(stx) = sess.initial_stx else {
            return;
        };
        if cancelled || !self.tx.server_pending(stx) {
            // Leg A is already answered (CANCEL, timeout): a late 2xx on leg B is ACKed and
            // hung up so the far side is not left with a half call.
            let hang_up = (200..300).contains(&status) && sess.kind() == Kind::Invite;
            if status >= 200 {
                self.end(now, sid);
            }
            if hang_up {
                self.ack_and_bye(now, sid, ctx, &msg);
            }
            return;
        }
        let initial = sess.initial.clone();
        let resp = self.relay_response(sid, 0, &initial, status, &msg);
        self.respond(now, stx, &resp);
        if status < 200 {
            return;
        }
        self.leave_early(sid);
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        match status {
            200..=299 => {
                let await_ack = AwaitAck {
                    from_side: 0,
                    stx,
                    ctx,
                    out_cseq: cseq_of(&msg).map(|c| c.seq).unwrap_or(1),
                };
                let confirmed = sess.usage.confirm(now, await_ack);
                if confirmed != Confirmed::Done {
                    sess.settle();
                }
                match confirmed {
                    Confirmed::Call => {
                        if let Some(media) = sess.media_mut() {
                            self.anchoring.open_gates(media);
                        }
                        self.stats.calls_answered += 1;
                        let ev = Event::CallAnswered {
                            call_id: sess.legs[0].call_id.clone(),
                            corr: corr_id(self.corr_salt, sid),
                            setup: now.saturating_duration_since(sess.created),
                        };
                        self.emit(ev);
                        if let Some(sess) = self.sessions.get(&sid) {
                            self.publish_dialogs(sess);
                        }
                    }
                    Confirmed::Subscription => {}
                    Confirmed::Done => self.end(now, sid),
                }
            }
            300..=699 => {
                if sess.kind() == Kind::Invite {
                    self.stats.calls_failed += 1;
                    let call_id = sess.legs[0].call_id.clone();
                    let corr = corr_id(self.corr_salt, sid);
                    self.emit(Event::CallFailed {
                        call_id,
                        corr,
                        status,
                    });
                }
                self.end(now, sid);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_relay_response(
        &mut self,
        now: Instant,
        sid: u64,
        side: usize,
        ctx: ClientTxId,
        stx: ServerTxId,
        request: &Message,
        out_cseq: u32,
        msg: Message,
    ) {
        let Some(status) = msg.status() else { return };
        if status == 100 {
            return;
        }
        let back = 1 - side;
        let resp = self.relay_response(sid, back, request, status, &msg);
        self.respond(now, stx, &resp);
        if status < 200 {
            return;
        }
        let method = request.method().cloned().unwrap_or(Method::Invite);
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        match method {
            Method::Invite if (200..300).contains(&status) => {
                if let Some(answered) = sess.usage.answered_mut() {
                    answered.awaiting_ack = Some(AwaitAck {
                        from_side: back,
                        stx,
                        ctx,
                        out_cseq,
                    });
                }
            }
            Method::Bye => self.end(now, sid),
            Method::Notify => {
                let terminated = request
                    .headers
                    .subscription_state()
                    .is_some_and(|s| s.is_terminated());
                if let Usage::Subscription(sub) = &sess.usage {
                    if sub.notified(terminated) {
                        self.end(now, sid);
                    }
                }
            }
            _ => {}
        }
    }

    /// A 2xx that nobody wants any more (the caller cancelled or was answered already), on an
    /// ended session: ACKed (the ACK kept for the 2xx's retransmissions) and hung up.
    pub(super) fn ack_and_bye(&mut self, now: Instant, sid: u64, ctx: ClientTxId, resp: &Message) {
        let cseq = cseq_of(resp).map(|c| c.seq).unwrap_or(1);
        let Some((bye, dest)) = self.with_session(sid, |this, sess| {
            let ack = this.build_ack(sess, 1, cseq, &Message::empty_request());
            let dest = this.leg_dest(&sess.legs[1]);
            this.tx.send_stateless(&ack, dest);
            let bye = this.build_request(sess, 1, Method::Bye, None, None);
            if let Some(call) = sess.usage.call_mut().filter(|c| c.is_ended()) {
                call.keep_ack(SentAck { ctx, ack, dest });
            }
            (bye, dest)
        }) else {
            return;
        };
        self.send_local(now, sid, 1, &bye, dest);
    }
}
