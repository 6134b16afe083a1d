//! REFER terminated at the border (`refer = "terminate"` in a partner's policy): for a partner
//! that does not take REFER, a REFER in a dialog that would be relayed to it is handled by the
//! border as the referee would (RFC 3515): 202, a NOTIFY `message/sipfrag` "100 Trying", an
//! INVITE of the border's own to the Refer-To target, and a final NOTIFY with the target's
//! answer (`Subscription-State: terminated`).
//!
//! On success the target's leg takes the transferor's place in the session: the partner's leg is
//! untouched and keeps its relay ports. The target was offered the SDP the transferor had last
//! got (the same relay addresses), its answer moves the relay's far end on that side, and the
//! partner gets a re-INVITE only when what it sees changes (codecs, streams). The transferor's
//! old leg is kept aside until the final NOTIFY is answered, then released with BYE (or its own
//! BYE is answered). On failure the NOTIFY carries the target's status and the call is as it
//! was: the transferor can take it back (RFC 5589 §6, the transferor's "recover" case).
//!
//! The INVITE is routed as a request of the partner's side would be, and the border carries no
//! transit (`routing::StaticRouter`: from a peer, only the home domains have a route, and never
//! through a lookup): so the target is always reached in the transferor's realm, on the relay
//! side the transferor used, and a Refer-To naming a user of the partner's or a third network
//! (or a `tel:` number) gets 404 as a call from the partner to it would. The 403 for a target in
//! another realm guards that invariant, should routing ever allow transit. An embedded
//! `?Replaces=` goes on the INVITE as written: it names a dialog of that realm, where its
//! identifiers mean what they say.

#[allow(unused_imports)]
use super::*;

use crate::config::ReferPolicy;
use crate::routing::Route;

/// What a client transaction of a terminated REFER is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferStep {
    /// The INVITE to the Refer-To target.
    Invite,
    /// The re-INVITE that tells the partner of the new far end's media.
    ReInvite,
    /// The NOTIFY with the final status, on the transferor's leg.
    FinalNotify,
    /// The BYE that releases the transferor's leg.
    Bye,
}

/// A terminated REFER in progress in a session (at most one).
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    /// The side of the session whose party sent the REFER.
    referrer: usize,
    /// The REFER's CSeq on the transferor's leg: the `id` of the NOTIFYs' Event.
    event_id: u32,
    /// The leg toward the target while it is invited; once it answered, the transferor's old
    /// leg, kept until it is released.
    leg: Leg,
    connected: bool,
    bye_sent: bool,
    /// ACKs the border sent for 2xx answers of its own INVITEs, re-sent on retransmissions.
    acks: Vec<(ClientTxId, Sealed, Flow)>,
}

impl Border {
    /// Whether a REFER toward `party` is terminated at the border.
    pub(super) fn refer_terminated(&self, party: Party) -> bool {
        matches!(party, Party::Peer(p) if self.partners.get(p).refer == ReferPolicy::Terminate)
    }

    /// Transfers in progress (for [`Border::held_state`]).
    pub(super) fn transfers_len(&self) -> usize {
        self.transfers.len()
    }

    /// A REFER received on leg `side` of session `sid` (CSeq `seq` there), whose other leg faces
    /// a partner with `refer = "terminate"`.
    pub(super) fn terminate_refer(
        &mut self,
        now: Instant,
        (sid, side): (u64, usize),
        stx: ServerTxId,
        msg: &Message,
        seq: u32,
    ) {
        let why = RejectReason::ReferRefused;
        if self.transfers.contains_key(&sid) {
            return self.reply(now, stx, msg, 491, None);
        }
        let Some(refer_to) = msg.headers.refer_to() else {
            return self.reply(now, stx, msg, 400, None);
        };
        let sess = &self.sessions[&sid];
        let offer = sess.media().and_then(|m| m.sent(side)).map(<[u8]>::to_vec);
        let (Some(offer), true) = (offer, sess.usage.answered().is_some()) else {
            // Nothing to offer the target on the transferor's relay side (a call without SDP,
            // or not answered yet).
            return self.reject(now, stx, msg, 403, None, why);
        };
        let (realm, party) = (sess.legs[side].realm, sess.legs[side].party);
        let mut uri = refer_to.target.uri.clone();
        if let Uri::Sip(u) = &mut uri {
            u.headers = None;
        }
        // The INVITE is sent on the referee's behalf: routed as a request from its side.
        let from_home = sess.legs[1 - side].party == Party::Core;
        if self.router.defer(&self.cfg, from_home, &uri) {
            return self.reject(now, stx, msg, 403, None, why);
        }
        let (to_realm, to_party, targets) = match self.router.route(&self.cfg, from_home, &uri) {
            Route::NotFound => {
                return self.reject(now, stx, msg, 404, None, RejectReason::NoRoute);
            }
            Route::Home { realm, targets } => (realm, Party::Core, targets),
            Route::Peer {
                realm,
                peer,
                targets,
                ..
            } => {
                let name = &self.cfg.realms[realm].peers[peer].name;
                match self.partners.find(realm, name) {
                    Some(id) => (realm, Party::Peer(id), targets),
                    None => return self.reject(now, stx, msg, 404, None, RejectReason::NoRoute),
                }
            }
        };
        let Some(first) = targets
            .first()
            .filter(|_| (to_realm, to_party) == (realm, party))
        else {
            return self.reject(now, stx, msg, 403, None, why);
        };
        let flow = Flow {
            realm,
            transport: first.transport,
            remote: first.addr,
        };
        self.reply(now, stx, msg, 202, None);
        self.refer_notify(now, sid, side, seq, 100, false);

        let local_uri = self.sessions[&sid].legs[side].local_uri.clone();
        let mut leg = Leg {
            realm,
            party,
            flow,
            call_id: self.new_call_id(),
            local_tag: self.token(10),
            remote_tag: None,
            local_uri,
            remote_uri: format!("<{uri}>"),
            local_cseq: 0,
            remote_cseq: None,
            remote_target: None,
            route_set: Vec::new(),
        };
        // RFC 3892: the target learns who referred it (screened like any header of its realm).
        let mut src = Message::empty_request();
        for v in msg.headers.values("Referred-By") {
            src.headers.push("Referred-By", v.to_string());
        }
        let Some((mut invite, dest)) =
            self.build_on(sid, side, &mut leg, Method::Invite, Some(uri), &src)
        else {
            return;
        };
        if let Some(r) = refer_to.replaces {
            Border::set_dialog_ref(&mut invite, "Replaces", r.to_string());
        }
        Border::set_own_body(&mut invite, "application/sdp", offer);
        let ctx = self.tx.send_request(now, &invite, dest);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side,
                kind: PendingKind::Transfer(TransferStep::Invite),
            },
        );
        self.transfers.insert(
            sid,
            Transfer {
                referrer: side,
                event_id: seq,
                leg,
                connected: false,
                bye_sent: false,
                acks: Vec::new(),
            },
        );
    }

    /// Builds a request on `leg`, a leg of session `sid` standing at `side` but not (or no
    /// longer) in it: the session's builders work on its legs, so a copy holds this one.
    fn build_on(
        &mut self,
        sid: u64,
        side: usize,
        leg: &mut Leg,
        method: Method,
        uri: Option<Uri>,
        src: &Message,
    ) -> Option<(Sealed, Flow)> {
        let mut shadow = self.sessions.get(&sid)?.clone();
        shadow.legs[side] = leg.clone();
        let req = if method == Method::Ack {
            let seq = shadow.legs[side].local_cseq;
            self.build_ack(&mut shadow, side, seq, src)
        } else {
            self.build_request(&mut shadow, side, method, uri, Some(src))
        };
        let dest = self.leg_dest(&shadow.legs[side]);
        *leg = shadow.legs[side].clone();
        Some((req, dest))
    }

    /// A refer NOTIFY (RFC 3515 §2.4.5) with `status` as its sipfrag, on the transferor's leg:
    /// the session's leg `side`, or the one set aside once the target answered (`aside`).
    fn refer_notify(
        &mut self,
        now: Instant,
        sid: u64,
        side: usize,
        id: u32,
        status: u16,
        aside: bool,
    ) {
        let last = status >= 200;
        let src = Message::empty_request();
        let built = if aside {
            let Some(mut leg) = self.transfers.get(&sid).map(|t| t.leg.clone()) else {
                return;
            };
            let built = self.build_on(sid, side, &mut leg, Method::Notify, None, &src);
            if let Some(t) = self.transfers.get_mut(&sid) {
                t.leg = leg;
            }
            built
        } else {
            self.with_session(sid, |this, sess| {
                let req = this.build_request(sess, side, Method::Notify, None, Some(&src));
                (req, this.leg_dest(&sess.legs[side]))
            })
        };
        let Some((mut notify, dest)) = built else {
            return;
        };
        Border::set_own(&mut notify, "Event", format!("refer;id={id}"));
        let state = if last {
            "terminated;reason=noresource".to_string()
        } else {
            format!("active;expires={}", self.cfg.sip.timer_c.as_secs().max(60))
        };
        Border::set_own(&mut notify, "Subscription-State", state);
        let frag = format!("SIP/2.0 {status} {}\r\n", hiding::reason_phrase(status));
        Border::set_own_body(
            &mut notify,
            "message/sipfrag;version=2.0",
            frag.into_bytes(),
        );
        let kind = if aside {
            PendingKind::Transfer(TransferStep::FinalNotify)
        } else {
            PendingKind::Local
        };
        let ctx = self.tx.send_request(now, &notify, dest);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side,
                kind,
            },
        );
    }

    /// A response to one of the border's own requests of a terminated REFER.
    pub(super) fn on_transfer_response(
        &mut self,
        now: Instant,
        (sid, side): (u64, usize),
        ctx: ClientTxId,
        step: TransferStep,
        msg: &Message,
    ) {
        let Some(status) = msg.status() else { return };
        if status < 200 {
            return;
        }
        match step {
            TransferStep::Invite => self.on_target_answer(now, sid, side, ctx, status, msg),
            TransferStep::ReInvite if status < 300 => {
                let seq = cseq_of(msg).map(|c| c.seq).unwrap_or(0);
                let empty = Message::empty_request();
                let Some((ack, dest)) = self.with_session(sid, |this, sess| {
                    if let Some(body) = Some(&msg.body).filter(|b| !b.is_empty()) {
                        // The partner's answer moves its side's far end if it changed.
                        let legs = this.leg_realms(sess);
                        if let Some(media) = sess.media_mut() {
                            let _ = this.anchoring.anchor(media, legs, side, body);
                        }
                    }
                    let ack = this.build_ack(sess, side, seq, &empty);
                    (ack, this.leg_dest(&sess.legs[side]))
                }) else {
                    return;
                };
                self.tx.send_stateless(&ack, dest);
                if let Some(t) = self.transfers.get_mut(&sid) {
                    t.acks.push((ctx, ack, dest));
                }
            }
            TransferStep::ReInvite => {}
            TransferStep::FinalNotify => self.release_transferor(now, sid),
            TransferStep::Bye => self.forget_transfer(sid),
        }
    }

    fn on_target_answer(
        &mut self,
        now: Instant,
        sid: u64,
        side: usize,
        ctx: ClientTxId,
        status: u16,
        msg: &Message,
    ) {
        let Some(t) = self.transfers.get(&sid) else {
            return;
        };
        let id = t.event_id;
        if status >= 300 {
            // The call is as it was; the transferor hears why.
            self.transfers.remove(&sid);
            return self.refer_notify(now, sid, side, id, hiding::map_status(status), false);
        }
        let mut leg = t.leg.clone();
        leg.remote_tag = tag_of(msg.headers.get("To"));
        leg.remote_target = contact_uri(msg);
        leg.route_set = uac_route_set(msg);
        let Some((ack, dest)) = self.build_on(
            sid,
            side,
            &mut leg,
            Method::Ack,
            None,
            &Message::empty_request(),
        ) else {
            return;
        };
        self.tx.send_stateless(&ack, dest);
        let other = 1 - side;
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        let before = sess.media().and_then(|m| m.sent(other)).map(<[u8]>::to_vec);
        let legs = self.leg_realms(sess);
        let sess = self.sessions.get_mut(&sid).expect("looked up above");
        let anchoring = &mut self.anchoring;
        let answered = sess
            .media_mut()
            .and_then(|media| anchoring.anchor(media, legs, side, &msg.body).ok());
        let Some(after) = answered else {
            // An answer the relay cannot stand for: the target is hung up, the call goes on.
            self.transfers.remove(&sid);
            if let Some((bye, dest)) = self.build_on(
                sid,
                side,
                &mut leg,
                Method::Bye,
                None,
                &Message::empty_request(),
            ) {
                self.send_local(now, sid, side, &bye, dest);
            }
            return self.refer_notify(now, sid, side, id, 488, false);
        };
        // The target takes the transferor's place; the transferor's leg is set aside.
        let old = std::mem::replace(&mut sess.legs[side], leg);
        let new_key = (
            sess.legs[side].call_id.clone(),
            sess.legs[side].local_tag.clone(),
        );
        self.dialogs.insert(new_key, (sid, side));
        // Other shards now find the target's dialog, and no longer the transferor's.
        self.withdraw_dialogs(std::slice::from_ref(&old));
        if let Some(sess) = self.sessions.get(&sid) {
            self.publish_dialogs(sess);
        }
        let t = self.transfers.get_mut(&sid).expect("looked up above");
        t.leg = old;
        t.connected = true;
        t.acks.push((ctx, ack, dest));
        if let Some(offer) = before.filter(|b| !same_media(b, &after)) {
            self.reinvite_partner(now, sid, other, &offer, after);
        }
        self.refer_notify(now, sid, side, id, 200, true);
    }

    /// A re-INVITE on the partner's leg with the new far end's media (`after`, anchored), its
    /// origin line the one the partner has (`before`) with the version raised (RFC 3264 §8).
    fn reinvite_partner(
        &mut self,
        now: Instant,
        sid: u64,
        side: usize,
        before: &[u8],
        after: Vec<u8>,
    ) {
        let body = with_next_origin(before, &after);
        let empty = Message::empty_request();
        let Some((mut req, dest)) = self.with_session(sid, |this, sess| {
            let req = this.build_request(sess, side, Method::Invite, None, Some(&empty));
            (req, this.leg_dest(&sess.legs[side]))
        }) else {
            return;
        };
        if let Some(media) = self.sessions.get_mut(&sid).and_then(|s| s.media_mut()) {
            media.note_sent(side, &body);
        }
        Border::set_own_body(&mut req, "application/sdp", body);
        let ctx = self.tx.send_request(now, &req, dest);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side,
                kind: PendingKind::Transfer(TransferStep::ReInvite),
            },
        );
    }

    /// The final NOTIFY was answered (or timed out): the transferor's leg is released with a BYE
    /// unless the transferor has sent its own.
    fn release_transferor(&mut self, now: Instant, sid: u64) {
        let Some(t) = self
            .transfers
            .get(&sid)
            .filter(|t| t.connected && !t.bye_sent)
        else {
            return;
        };
        let (side, mut leg) = (t.referrer, t.leg.clone());
        let Some((bye, dest)) = self.build_on(
            sid,
            side,
            &mut leg,
            Method::Bye,
            None,
            &Message::empty_request(),
        ) else {
            return;
        };
        if let Some(t) = self.transfers.get_mut(&sid) {
            t.leg = leg;
            t.bye_sent = true;
        }
        let ctx = self.tx.send_request(now, &bye, dest);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side,
                kind: PendingKind::Transfer(TransferStep::Bye),
            },
        );
    }

    /// The transfer of `sid` is over: the transferor's old leg no longer names a dialog.
    pub(super) fn forget_transfer(&mut self, sid: u64) {
        if let Some(t) = self.transfers.remove(&sid) {
            if t.connected {
                self.dialogs.remove(&(t.leg.call_id, t.leg.local_tag));
            }
        }
    }

    /// A request on the transferor's leg after it was set aside (`call_id` is not the session's
    /// leg's): its BYE is answered and ends it, anything else gets 481. `false` when the request
    /// is not on such a leg.
    pub(super) fn on_transferor_request(
        &mut self,
        now: Instant,
        sid: u64,
        call_id: &str,
        msg: &Message,
        stx: ServerTxId,
    ) -> bool {
        let aside = self
            .transfers
            .get(&sid)
            .is_some_and(|t| t.connected && t.leg.call_id == call_id);
        if !aside {
            return false;
        }
        if msg.method() == Some(&Method::Bye) {
            self.reply(now, stx, msg, 200, None);
            self.forget_transfer(sid);
        } else {
            self.reply(now, stx, msg, 481, None);
        }
        true
    }

    /// A retransmitted 2xx to one of the border's own INVITEs: its ACK again.
    pub(super) fn transfer_reack(&mut self, sid: u64, ctx: ClientTxId) {
        let ack = self
            .transfers
            .get(&sid)
            .and_then(|t| t.acks.iter().find(|a| a.0 == ctx))
            .map(|a| (a.1.clone(), a.2));
        if let Some((ack, dest)) = ack {
            self.tx.send_stateless(&ack, dest);
        }
    }

    /// No final answer came to a transfer request (Timer B/F, a failed transport).
    pub(super) fn on_transfer_timeout(
        &mut self,
        now: Instant,
        sid: u64,
        side: usize,
        step: TransferStep,
    ) {
        match step {
            TransferStep::Invite => {
                if let Some(id) = self.transfers.remove(&sid).map(|t| t.event_id) {
                    self.refer_notify(now, sid, side, id, 408, false);
                }
            }
            TransferStep::ReInvite => {}
            TransferStep::FinalNotify => self.release_transferor(now, sid),
            TransferStep::Bye => self.forget_transfer(sid),
        }
    }
}

/// Whether two SDPs describe the same media (their origin lines aside).
fn same_media(a: &[u8], b: &[u8]) -> bool {
    let lines = |x: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(x)
            .lines()
            .filter(|l| !l.starts_with("o="))
            .map(str::to_string)
            .collect()
    };
    lines(a) == lines(b)
}

/// `after` with the origin line of `before`, its session version raised by one.
fn with_next_origin(before: &[u8], after: &[u8]) -> Vec<u8> {
    let before = String::from_utf8_lossy(before);
    let origin = before.lines().find(|l| l.starts_with("o=")).map(|o| {
        let mut f: Vec<String> = o.trim_end().split(' ').map(str::to_string).collect();
        if let Some(n) = f.get(2).and_then(|v| v.parse::<u64>().ok()) {
            f[2] = (n + 1).to_string();
        }
        f.join(" ")
    });
    let after = String::from_utf8_lossy(after);
    let mut out = String::with_capacity(after.len());
    for line in after.split_inclusive('\n') {
        match (&origin, line.starts_with("o=")) {
            (Some(o), true) => {
                out.push_str(o);
                out.push_str("\r\n");
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}
