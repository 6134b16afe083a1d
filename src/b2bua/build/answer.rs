//! Answers: responses relayed from the other leg (screened, anchored, with this leg's RSeq),
//! the border's own answers, and the one place every response leaves through.

use std::net::SocketAddr;
use std::time::Instant;

use super::Sealed;
use crate::b2bua::hiding::{
    self, copy_body, copy_screened, map_status, reason_phrase, BodyRules, Crossing, DialogIds,
};
use crate::b2bua::media::AnchorError;
use crate::b2bua::{cseq_of, tag_of, Border, Event};
use crate::config::Transport;
use crate::sip::{Headers, Message, Method, ParseError, StartLine, Via};
use crate::transaction::{Flow, ServerTxId};

impl Border {
    /// Builds the response on leg `side` to `request` (received on that leg), carrying the status
    /// and the screened content of `src` (the response received on the other leg).
    pub(in crate::b2bua) fn relay_response(
        &mut self,
        sid: u64,
        side: usize,
        request: &Message,
        status: u16,
        src: &Message,
    ) -> Sealed {
        let status = map_status(status);
        let mut resp = self.response_to(sid, side, request, status);
        let sess = self.sessions.get(&sid).expect("caller checked");
        let (realm, party) = (sess.legs[side].realm, sess.legs[side].party);
        let src_leg = &sess.legs[1 - side];
        let crossing = Crossing {
            from_trust: self.party_trust(src_leg.realm, src_leg.party),
            to_trust: self.party_trust(realm, party),
            to_policy: self.party_headers(realm, party),
            public: self.public_toward(party),
        };
        if status > 100 && status < 300 {
            let transport = self.leg_transport(sid, side);
            let contact = self.contact(realm, transport) + &hiding::feature_tags(src);
            resp.headers.push("Contact", contact);
        }
        copy_screened(src, &mut resp.headers, crossing);
        // The body of an error response is the far side's own text; the border's answer is its
        // status alone.
        if status < 300 {
            let ends = ((src_leg.realm, src_leg.party), (realm, party));
            let dialogs = |d: &DialogIds| self.dialog_view(None, ends.0, ends.1, d);
            let rules = BodyRules {
                allowed: &crossing.to_policy.bodies,
                public: crossing.public,
                dialogs: &dialogs,
            };
            resp.body = copy_body(src, &mut resp.headers, rules);
        }
        let answered = (101..300).contains(&status);
        self.with_session(sid, |this, sess| {
            if this.anchor_body(sess, 1 - side, &mut resp).is_err() {
                // An answer that cannot be anchored is not passed on: its addresses would leak.
                resp.body.clear();
                resp.headers.remove("Content-Type");
            } else if answered && !resp.body.is_empty() {
                if let Some(media) = sess.media_mut() {
                    this.anchoring.open_gates(media);
                }
            }
        });
        let sess = self.sessions.get(&sid).expect("caller checked");
        if request.method() == Some(&Method::Invite) {
            let pcv = self.charging_for(sess, src, side, false);
            resp.headers.push("P-Charging-Vector", pcv);
        }
        // Reliable provisionals (RFC 3262, INVITE only) carry an RSeq per leg.
        if (101..200).contains(&status) && src.headers.has_option_tag("Require", "100rel") {
            let sess = self.sessions.get_mut(&sid).expect("caller checked");
            let rseq = sess.usage.call_mut().map(|c| &mut c.rseq);
            if let (Some(rseq), Some(theirs), Some(c)) =
                (rseq, src.headers.rseq().map(|r| r.0), cseq_of(src))
            {
                let ours = rseq.ours_for(side, theirs, c.seq);
                if !resp.headers.has_option_tag("Require", "100rel") {
                    resp.headers.push("Require", "100rel");
                }
                resp.headers
                    .push("RSeq", crate::sip::RSeq(ours).to_string());
            }
        }
        Sealed::new(resp)
    }

    pub(in crate::b2bua) fn leg_transport(&self, sid: u64, side: usize) -> Transport {
        self.sessions
            .get(&sid)
            .map(|s| s.legs[side].flow.transport)
            .unwrap_or(Transport::Udp)
    }

    /// A response skeleton for a request received on leg `side` of a session (our tag in To).
    pub(in crate::b2bua::build) fn response_to(
        &self,
        sid: u64,
        side: usize,
        request: &Message,
        status: u16,
    ) -> Message {
        let tag = self
            .sessions
            .get(&sid)
            .map(|s| s.legs[side].local_tag.clone());
        let mut resp = make_response(request, status, tag.as_deref());
        echo_record_route(request, &mut resp);
        resp
    }

    /// Sends a response through its server transaction: the one place the border answers, so a
    /// final answer is reported exactly once ([`Event::RequestAnswered`]).
    pub(in crate::b2bua) fn respond(&mut self, now: Instant, stx: ServerTxId, resp: &Sealed) {
        let status = resp.status().unwrap_or(0);
        if status >= 200 && self.tx.server_pending(stx) {
            if let Some((method, realm, party)) = self.stx_origin.remove(&stx) {
                if let crate::b2bua::Party::Peer(p) = party {
                    self.partners.pending(p, false);
                }
                let from = self.origin(realm, party);
                self.emit(Event::RequestAnswered {
                    method,
                    status,
                    from,
                });
            }
        }
        self.tx.respond(now, stx, resp);
    }

    /// Refuses a request by the border's own policy, reported as [`Event::Rejected`] (method and
    /// sender are those recorded when the request arrived).
    pub(in crate::b2bua) fn reject(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        request: &Message,
        status: u16,
        extra: Option<(&str, String)>,
        reason: crate::b2bua::RejectReason,
    ) {
        if let Some((method, realm, party)) = self.stx_origin.get(&stx).cloned() {
            let from = self.origin(realm, party);
            self.emit(Event::Rejected {
                method,
                status,
                reason,
                from,
            });
        }
        self.reply(now, stx, request, status, extra);
    }

    /// Answers a request locally through its server transaction.
    pub(in crate::b2bua) fn reply(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        request: &Message,
        status: u16,
        extra: Option<(&str, String)>,
    ) {
        let tag = (status > 100).then(|| self.token(8));
        let mut resp = make_response(request, status, tag.as_deref());
        if let Some((name, value)) = extra {
            resp.headers.push(name, value);
        }
        self.respond(now, stx, &Sealed::new(resp));
    }

    /// Answers the initial request of a session with the To tag its leg 0 already uses, so a
    /// final response after relayed provisionals belongs to the same (early) dialog.
    pub(in crate::b2bua) fn reply_in_session(
        &mut self,
        now: Instant,
        sid: u64,
        stx: ServerTxId,
        request: &Message,
        status: u16,
    ) {
        let resp = self.response_to(sid, 0, request, status);
        self.respond(now, stx, &Sealed::new(resp));
    }

    pub(in crate::b2bua) fn reply_options(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        request: &Message,
    ) {
        let tag = self.token(8);
        let mut resp = make_response(request, 200, Some(&tag));
        resp.headers.push(
            "Allow",
            "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, MESSAGE, REFER, SUBSCRIBE, NOTIFY",
        );
        resp.headers.push("Accept", "application/sdp");
        resp.headers.push("Supported", "100rel, timer");
        self.respond(now, stx, &Sealed::new(resp));
    }

    /// The answer to a request that does not parse (RFC 3261 §21.4.1): only the fields that
    /// route a response back to its sender are echoed, the phrase says what was wrong.
    pub(in crate::b2bua) fn malformed_answer(e: &ParseError, status: u16) -> Sealed {
        let mut headers = Headers::default();
        for v in e.headers.values("Via") {
            headers.push("Via", v);
        }
        for h in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = e.headers.get(h) {
                headers.push(h, v);
            }
        }
        let reason: String = e
            .reason
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        Sealed::new(Message {
            start: StartLine::Response {
                status,
                reason: if reason.is_empty() {
                    reason_phrase(status).to_string()
                } else {
                    reason
                },
            },
            headers,
            body: Vec::new(),
        })
    }
}

/// The answer to a request whose SDP could not be anchored.
pub(in crate::b2bua) fn anchor_status(e: &AnchorError) -> u16 {
    match e {
        AnchorError::BadSdp(_) => 488,
        AnchorError::NoPorts => 503,
    }
}

/// RFC 3261 §8.2.6.2: a response copies Via, From, To, Call-ID and CSeq; a To without a tag gets
/// ours (except on 100 Trying).
/// RFC 3261 §12.1.1: a UAS copies the Record-Route of a dialog-creating request, in order, into
/// every response that creates the dialog (101-299), so that a record-routing proxy on that side
/// (an S-CSCF, a partner's proxy) stays in the route set. Each leg echoes the Record-Route it
/// received itself; the other leg's never crosses.
fn echo_record_route(request: &Message, resp: &mut Message) {
    let creates_dialog = matches!(
        request.method(),
        Some(Method::Invite | Method::Subscribe | Method::Refer)
    ) && tag_of(request.headers.get("To")).is_none();
    let status = resp.status().unwrap_or(0);
    if !creates_dialog || !(101..300).contains(&status) {
        return;
    }
    for v in request.headers.lines("Record-Route") {
        resp.headers.push("Record-Route", v);
    }
}

pub fn make_response(request: &Message, status: u16, to_tag: Option<&str>) -> Message {
    let mut h = Headers::default();
    for v in request.headers.lines("Via") {
        h.push("Via", v);
    }
    if let Some(v) = request.headers.get("From") {
        h.push("From", v);
    }
    if let Some(to) = request.headers.get("To") {
        match to_tag {
            Some(tag) if status > 100 && tag_of(Some(to)).is_none() => {
                h.push("To", format!("{to};tag={tag}"))
            }
            _ => h.push("To", to),
        }
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(v) = request.headers.get(name) {
            h.push(name, v);
        }
    }
    Message {
        start: StartLine::Response {
            status,
            reason: reason_phrase(status).to_string(),
        },
        headers: h,
        body: Vec::new(),
    }
}

/// RFC 3261 §18.2.2 and RFC 3581: over a stream, answer on the connection; over UDP, to the
/// source address, at the source port when `rport` was asked for, else at the sent-by port.
pub(in crate::b2bua) fn response_flow(flow: Flow, via: &Via) -> Flow {
    if flow.reliable() {
        return flow;
    }
    let port = if via.params.get("rport").is_some() {
        flow.remote.port()
    } else {
        via.port.unwrap_or(5060)
    };
    Flow {
        remote: SocketAddr::new(flow.remote.ip(), port),
        ..flow
    }
}
