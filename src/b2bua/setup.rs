//! Setting up a session: both legs built from the initial request, its usage (call,
//! subscription, standalone) chosen, the request sent on leg B.

#[allow(unused_imports)]
use super::*;

impl Border {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_session(
        &mut self,
        now: Instant,
        kind: Kind,
        msg: Message,
        stx: ServerTxId,
        in_flow: Flow,
        in_party: Party,
        (out_flow, out_party): (Flow, Party),
        alternates: VecDeque<Flow>,
    ) {
        let method = msg.method().cloned().unwrap_or(Method::Invite);
        let sid = self.next_session;
        self.next_session += 1;
        let _call = self.call_span(sid);
        let toward_peer = matches!(out_party, Party::Peer(_));
        let public = hiding::public_domain(&self.cfg).to_string();
        let peer_domains = match out_party {
            Party::Peer(p) => self.partners.get(p).domains.clone(),
            Party::Core => self.cfg.home_domains.clone(),
        };
        let target = request_uri(&msg)
            .cloned()
            .unwrap_or(Uri::Other(String::new()));
        let callee_domain = target
            .as_sip()
            .map(|u| u.host_bare())
            .unwrap_or_else(|| public.clone());

        let a_flow = if in_flow.reliable() {
            in_flow
        } else {
            self.party_flow(in_flow.realm, in_party).unwrap_or(in_flow)
        };
        let leg_a = Leg {
            realm: in_flow.realm,
            party: in_party,
            flow: a_flow,
            call_id: msg.headers.get("Call-ID").unwrap_or_default().to_string(),
            local_tag: self.token(10),
            remote_tag: tag_of(msg.headers.get("From")),
            local_uri: hiding::identity_for_leg(
                msg.headers.get("To").unwrap_or_default(),
                false,
                &[],
                &public,
            ),
            remote_uri: hiding::identity_for_leg(
                msg.headers.get("From").unwrap_or_default(),
                false,
                &[],
                &public,
            ),
            local_cseq: 0,
            remote_cseq: cseq_of(&msg).map(|c| c.seq),
            remote_target: contact_uri(&msg),
            route_set: msg
                .headers
                .values("Record-Route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let (from_domains, from_public) = (self.cfg.home_domains.clone(), public.clone());
        // RFC 3323: toward an untrusted party the caller's display name goes when it asked for
        // privacy (see `privacy.rs`).
        let anonymous = self.party_trust(out_flow.realm, out_party)
            != crate::config::Trust::Trusted
            && privacy::Privacy::of(&msg).hides_identity();
        let caller = hiding::identity_for_leg(
            msg.headers.get("From").unwrap_or_default(),
            toward_peer,
            &from_domains,
            &from_public,
        );
        let caller = if anonymous {
            privacy::without_display_name(&caller)
        } else {
            caller
        };
        let leg_b = Leg {
            realm: out_flow.realm,
            party: out_party,
            flow: out_flow,
            call_id: self.new_call_id(),
            local_tag: self.token(10),
            remote_tag: None,
            local_uri: caller,
            remote_uri: hiding::identity_for_leg(
                msg.headers.get("To").unwrap_or_default(),
                toward_peer,
                &peer_domains,
                &callee_domain,
            ),
            local_cseq: 0,
            remote_cseq: None,
            remote_target: None,
            route_set: Vec::new(),
        };
        let mut out_uri = target.clone();
        if let Uri::Sip(u) = &mut out_uri {
            u.params.retain(|(n, _)| !n.eq_ignore_ascii_case("maddr"));
        }
        // Out of a dialog there is no call to connect the target to: a partner whose REFERs
        // are terminated takes none this way either.
        let terminated = self.refer_terminated(out_party);
        if method == Method::Refer && (terminated || self.refer_refused([in_party, out_party])) {
            let why = RejectReason::ReferRefused;
            return self.reject(now, stx, &msg, 403, None, why);
        }
        let ends = ((in_flow.realm, in_party), (out_flow.realm, out_party));
        let refs = match kind {
            Kind::Invite => self.dialog_refs_for(&msg, ends.0, ends.1),
            _ => Ok(Vec::new()),
        };
        let refs = match refs {
            Ok(refs) => refs,
            Err(e) => return self.refuse_ref(now, stx, &msg, e, false),
        };
        let timer_c_at = (kind == Kind::Invite).then(|| now + self.cfg.sip.timer_c);
        let mut sess = Session {
            legs: [leg_a, leg_b],
            usage: Usage::new(kind, Setup::new(alternates), timer_c_at),
            initial: msg,
            initial_stx: Some(stx),
            last_activity: now,
            created: now,
            icid: self.token(16),
            refers: Default::default(),
        };
        let mut req = self.build_request(&mut sess, 1, method.clone(), Some(out_uri), None);
        for (name, value) in refs {
            Border::set_dialog_ref(&mut req, name, value);
        }
        match self.refer_to_for(&sess.initial, &req, ends.0, ends.1) {
            Ok(Some(refer_to)) => Border::set_dialog_ref(&mut req, "Refer-To", refer_to),
            Ok(None) => {}
            Err(e) => return self.refuse_ref(now, stx, &sess.initial, e, true),
        }
        if let Err(e) = self.anchor_msg(&mut sess, 0, &mut req) {
            let initial = sess.initial.clone();
            let legs = self.leg_realms(&sess);
            if let Some(media) = sess.media_mut() {
                self.anchoring.release(media, legs);
            }
            return self.reply(now, stx, &initial, anchor_status(&e), None);
        }
        if method == Method::Refer {
            // The REFER's implicit subscription: its NOTIFYs name it by its CSeq on each leg.
            let (sent, received) = (cseq_of(&req).map(|c| c.seq), cseq_of(&sess.initial));
            if let (Some(sent), Some(received)) = (sent, received) {
                sess.refers.relayed(Refer {
                    sent_on: 1,
                    sent,
                    received: received.seq,
                });
            }
        }
        let dest = sess.legs[1].flow;
        self.dialogs.insert(
            (sess.legs[0].call_id.clone(), sess.legs[0].local_tag.clone()),
            (sid, 0),
        );
        self.dialogs.insert(
            (sess.legs[1].call_id.clone(), sess.legs[1].local_tag.clone()),
            (sid, 1),
        );
        self.invites.insert(stx, sid);
        self.send_initial(now, sid, &mut sess, req, dest);
        if kind == Kind::Invite {
            self.stats.calls_started += 1;
            let ev = Event::CallStarted {
                call_id: sess.legs[0].call_id.clone(),
                corr: corr_id(self.corr_salt, sid),
                from: self.origin(sess.legs[0].realm, sess.legs[0].party),
                to: self.origin(sess.legs[1].realm, sess.legs[1].party),
            };
            self.emit(ev);
        }
        if let Some(at) = timer_c_at {
            self.timers.insert((at, sid, SessTimer::TimerC));
        }
        self.active += 1;
        for leg in &sess.legs {
            if let Party::Peer(p) = leg.party {
                self.partners.hold(p);
            }
        }
        self.sessions.insert(sid, Box::new(sess));
        self.arm_idle(now, sid);
    }

    pub(super) fn arm_idle(&mut self, now: Instant, sid: u64) {
        let at = now + self.cfg.sip.dialog_idle_timeout;
        self.timers.insert((at, sid, SessTimer::Idle));
    }
}
