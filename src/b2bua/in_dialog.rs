//! Requests inside an established dialog relayed to the other leg, and the ACK of a 2xx.

#[allow(unused_imports)]
use super::*;

impl Border {
    pub(super) fn on_in_dialog(
        &mut self,
        now: Instant,
        msg: Message,
        stx: ServerTxId,
        tag: &str,
        flow: Flow,
    ) {
        let call_id = msg.headers.get("Call-ID").unwrap_or_default().to_string();
        let Some(&(sid, side)) = self.dialogs.get(&(call_id.clone(), tag.to_string())) else {
            return self.reply(now, stx, &msg, 481, None);
        };
        let method = msg.method().cloned().unwrap_or(Method::Invite);
        if self.on_transferor_request(now, sid, &call_id, &msg, stx) {
            return;
        }
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return self.reply(now, stx, &msg, 481, None);
        };
        if sess.usage.is_ended() || sess.legs[side].realm != flow.realm {
            return self.reply(now, stx, &msg, 481, None);
        }
        let offer_answer = matches!(method, Method::Invite | Method::Update | Method::Prack);
        if offer_answer && sess.usage.call().is_none() {
            // An INVITE usage inside a subscription's dialog (RFC 5057 §3) is not carried: the
            // border anchors media per call, and this dialog is none. 403 leaves the
            // subscription alive (a 481 would end it, RFC 5057 §5.3).
            return self.reply(now, stx, &msg, 403, None);
        }
        // While forked, the request is about one early dialog: the legs must hold it.
        if !sess.select_for(side, &msg) {
            return self.reply(now, stx, &msg, 481, None);
        }
        let Ok(seq) = sess.legs[side].accept_request(&msg, &method) else {
            // RFC 3261 §12.2.2: out-of-order dialog request.
            return self.reply(now, stx, &msg, 500, None);
        };
        sess.last_activity = now;
        if method == Method::Invite {
            self.reply(now, stx, &msg, 100, None);
        }
        let other = 1 - side;
        let legs = &self.sessions[&sid].legs;
        let parties = [legs[0].party, legs[1].party];
        if method == Method::Refer && self.refer_refused(parties) {
            return self.reject(now, stx, &msg, 403, None, RejectReason::ReferRefused);
        }
        if method == Method::Refer && self.refer_terminated(parties[other]) {
            return self.terminate_refer(now, (sid, side), stx, &msg, seq);
        }
        let sess = self.sessions.get_mut(&sid).expect("looked up above");
        // PRACK names the reliable provisional by its RSeq, which differs per leg.
        let rack = if method == Method::Prack {
            let rseq = sess.usage.call().map(|c| &c.rseq);
            let mapped = msg.headers.rack().and_then(|r| rseq?.map_rack(side, &r));
            match mapped {
                Some(r) => Some(r),
                None => return self.reply(now, stx, &msg, 481, None),
            }
        } else {
            None
        };
        if method == Method::Bye {
            let by = if side == 0 {
                EndedBy::Caller
            } else {
                EndedBy::Callee
            };
            if let Some(call) = sess.usage.call_mut() {
                call.ending(by);
            }
        }
        let Some(built) = self.with_session(sid, |this, sess| {
            let mut req = this.build_request(sess, other, method.clone(), None, Some(&msg));
            this.anchor_msg(sess, side, &mut req).map(|()| req)
        }) else {
            return;
        };
        let mut req = match built {
            Ok(req) => req,
            Err(e) => return self.reply(now, stx, &msg, anchor_status(&e), None),
        };
        if method == Method::Refer {
            let legs = &self.sessions[&sid].legs;
            let ends = (
                (legs[side].realm, legs[side].party),
                (legs[other].realm, legs[other].party),
            );
            match self.refer_to_for(&msg, &req, ends.0, ends.1) {
                Ok(Some(refer_to)) => Border::set_dialog_ref(&mut req, "Refer-To", refer_to),
                Ok(None) => {}
                Err(e) => return self.refuse_ref(now, stx, &msg, e, true),
            }
        }
        if let Some(r) = rack {
            Border::set_rack(&mut req, &r);
        }
        let out_cseq = cseq_of(&req).map(|c| c.seq).unwrap_or(0);
        let sess = self.sessions.get_mut(&sid).expect("looked up above");
        match method {
            Method::Refer => sess.refers.relayed(Refer {
                sent_on: other,
                sent: out_cseq,
                received: seq,
            }),
            Method::Notify => {
                // The NOTIFY comes from the leg the REFER was sent on, naming its CSeq there.
                if let Some(mut ev) = msg
                    .headers
                    .event()
                    .filter(|e| e.package.eq_ignore_ascii_case("refer"))
                {
                    let named = ev.id.as_deref().and_then(|i| i.parse::<u32>().ok());
                    let mapped = named.and_then(|id| sess.refers.received_id(side, id));
                    if let Some(id) = mapped {
                        ev.id = Some(id.to_string());
                        Border::set_event(&mut req, &ev);
                    }
                }
            }
            _ => {}
        }
        let dest = self.leg_dest(&self.sessions[&sid].legs[other]);
        let ctx = self.tx.send_request(now, &req, dest);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side: other,
                kind: PendingKind::Relay {
                    stx,
                    request: Box::new(msg),
                    out_cseq,
                },
            },
        );
    }

    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        msg: &Message,
        _stx: Option<ServerTxId>,
        flow: Flow,
    ) {
        let call_id = msg.headers.get("Call-ID").unwrap_or_default().to_string();
        let Some(tag) = tag_of(msg.headers.get("To")) else {
            return;
        };
        let Some(&(sid, side)) = self.dialogs.get(&(call_id, tag)) else {
            return;
        };
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        if sess.legs[side].realm != flow.realm {
            return;
        }
        sess.last_activity = now;
        let Some(wait) = sess.usage.answered_mut().and_then(|a| a.take_ack(side)) else {
            return; // a retransmitted ACK (already relayed), or none was awaited from here
        };
        self.tx.confirm_2xx(now, wait.stx);
        let out = 1 - side;
        self.with_session(sid, |this, sess| {
            let mut ack = this.build_ack(sess, out, wait.out_cseq, msg);
            this.anchor_or_strip(sess, side, &mut ack);
            let dest = this.leg_dest(&sess.legs[out]);
            this.tx.send_stateless(&ack, dest);
            if let Some(call) = sess.usage.call_mut() {
                this.anchoring.open_gates(&mut call.media);
                call.keep_ack(SentAck {
                    ctx: wait.ctx,
                    ack,
                    dest,
                });
            }
        });
    }
}
