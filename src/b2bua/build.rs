//! Building the messages of each leg: Via, Contact and dialog headers from the realm's own
//! addresses, screened copies of what the other leg sent, anchored SDP, and local answers.
//! Also where a dialog request on a leg is sent (loose routing within the leg's party).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand::Rng;

use super::hiding::{self, copy_body, copy_screened, map_status, reason_phrase, Crossing};
use super::media::AnchorError;
use super::session::{self, Leg, Session};
use super::{cseq_of, has_option, request_uri, tag_of, Border, Event, Party};
use crate::config::{HeaderPolicy, Transport, Trust};
use crate::sip::{Headers, Message, Method, NameAddr, StartLine, Uri, Via};
use crate::transaction::{Flow, ServerTxId};

impl Border {
    pub(super) fn token(&mut self, bytes: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(bytes * 2);
        for _ in 0..bytes {
            let b: u8 = self.rng.random();
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    pub(super) fn local_port(&self, realm: usize, transport: Transport) -> u16 {
        let r = &self.cfg.realms[realm];
        r.listen
            .iter()
            .find(|l| l.transport == transport)
            .or_else(|| r.listen.first())
            .map(|l| l.addr.port())
            .unwrap_or(5060)
    }

    pub(super) fn host_port(&self, realm: usize, transport: Transport) -> String {
        let ip = self.cfg.realms[realm].advertise;
        let port = self.local_port(realm, transport);
        match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        }
    }

    pub(super) fn via(&mut self, realm: usize, transport: Transport) -> String {
        let branch = self.token(12);
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{branch};rport",
            transport.as_str(),
            self.host_port(realm, transport)
        )
    }

    pub(super) fn contact(&self, realm: usize, transport: Transport) -> String {
        let tp = match transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        format!("<sip:{}{tp}>", self.host_port(realm, transport))
    }

    pub(super) fn party_trust(&self, realm: usize, party: Party) -> Trust {
        match party {
            Party::Core => self.cfg.realms[realm].trust,
            Party::Peer(p) => self.partners.get(p).trust,
        }
    }

    pub(super) fn party_headers(&self, realm: usize, party: Party) -> &HeaderPolicy {
        match party {
            Party::Core => &self.cfg.realms[realm].headers,
            Party::Peer(p) => &self.partners.get(p).headers,
        }
    }

    pub(super) fn party_flow(&self, realm: usize, party: Party) -> Option<Flow> {
        let r = &self.cfg.realms[realm];
        let hop = match party {
            Party::Core => r.core.as_ref()?,
            Party::Peer(p) => &self.partners.get(p).next_hop,
        };
        Some(Flow {
            realm,
            transport: hop.transport,
            remote: hop.addr,
        })
    }

    pub(super) fn party_ips(&self, realm: usize, party: Party) -> Vec<IpAddr> {
        let r = &self.cfg.realms[realm];
        match party {
            Party::Core => {
                let mut ips = r.core_sources.clone();
                ips.extend(r.core.as_ref().map(|c| c.addr.ip()));
                ips
            }
            Party::Peer(p) => {
                let peer = self.partners.get(p);
                let mut ips = peer.sources.clone();
                ips.push(peer.next_hop.addr.ip());
                ips
            }
        }
    }

    /// Where a dialog request on this leg goes (RFC 3261 §12.2.1.1, loose routing): the first
    /// Route, else the remote target — but only to an address of that leg's own party. A target
    /// naming anything else (a host name, an address outside the agreement) goes to the party's
    /// configured next hop, so a peer cannot steer the border toward arbitrary hosts.
    pub(super) fn leg_dest(&self, leg: &Leg) -> Flow {
        let first_route = leg
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|n| n.uri);
        let target = first_route.or_else(|| leg.remote_target.clone());
        let Some(Uri::Sip(u)) = target else {
            return leg.flow;
        };
        let Ok(ip) = u.host_bare().parse::<IpAddr>() else {
            return leg.flow;
        };
        if !self.party_ips(leg.realm, leg.party).contains(&ip) {
            return leg.flow;
        }
        let transport = match u.param("transport").flatten() {
            Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
            _ => leg.flow.transport,
        };
        if leg.flow.reliable() && transport == leg.flow.transport && leg.flow.remote.ip() == ip {
            // Reuse the connection the dialog came in on.
            return leg.flow;
        }
        Flow {
            realm: leg.realm,
            transport,
            remote: SocketAddr::new(ip, u.port.unwrap_or(5060)),
        }
    }

    /// Builds a request on one leg of a session: the leg's own identifiers, the route set, and
    /// the screened headers and body of `src` (the request received on the other leg).
    pub(super) fn build_request(
        &mut self,
        sess: &mut Session,
        side: usize,
        method: Method,
        uri: Option<Uri>,
        src: Option<&Message>,
    ) -> Message {
        let src = src.unwrap_or(&sess.initial);
        let src_side = 1 - side;
        let (realm, party) = (sess.legs[side].realm, sess.legs[side].party);
        let dest = self.leg_dest(&sess.legs[side]);
        let transport = dest.transport;
        let via = self.via(realm, transport);
        let leg = &mut sess.legs[side];
        leg.local_cseq += 1;
        let seq = leg.local_cseq;
        let uri = uri
            .or_else(|| leg.remote_target.clone())
            .or_else(|| request_uri(&sess.initial).cloned())
            .unwrap_or(Uri::Other(String::new()));
        let mut h = Headers::default();
        h.push("Via", via);
        let mf = src
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|m| m.saturating_sub(1).min(255))
            .unwrap_or(u32::from(self.cfg.sip.max_forwards));
        h.push("Max-Forwards", mf.to_string());
        leg.push_dialog_headers(&mut h, seq, &method);
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        ) {
            h.push("Contact", self.contact(realm, transport));
        }
        let src_leg = &sess.legs[src_side];
        let from_trust = self.party_trust(src_leg.realm, src_leg.party);
        let crossing = Crossing {
            from_trust,
            to_trust: self.party_trust(realm, party),
            to_policy: self.party_headers(realm, party),
        };
        if method != Method::Bye || src.method() == Some(&Method::Bye) {
            copy_screened(src, &mut h, crossing);
        }
        let body = if method == Method::Bye && src.method() != Some(&Method::Bye) {
            Vec::new()
        } else {
            copy_body(src, &mut h)
        };
        if matches!(method, Method::Invite | Method::Message | Method::Subscribe)
            || method == Method::Refer
        {
            let pcv = self.charging_for(sess, src, side, true);
            h.push("P-Charging-Vector", pcv);
        }
        Message {
            start: StartLine::Request { method, uri },
            headers: h,
            body,
        }
    }

    pub(super) fn charging_for(
        &self,
        sess: &Session,
        src: &Message,
        side: usize,
        request: bool,
    ) -> String {
        let src_leg = &sess.legs[1 - side];
        let dst_leg = &sess.legs[side];
        let from_trusted = self.party_trust(src_leg.realm, src_leg.party) == Trust::Trusted;
        let ioi_of = |leg: &Leg| match leg.party {
            Party::Peer(p) => self.partners.get(p).ioi.clone(),
            Party::Core => self.cfg.ioi.clone(),
        };
        // The originating network's IOI goes in orig-ioi; on responses the terminating one is added.
        let (caller, callee) = if side == 1 {
            (ioi_of(src_leg), ioi_of(dst_leg))
        } else {
            (ioi_of(dst_leg), ioi_of(src_leg))
        };
        let term = (!request).then_some(callee.as_str());
        hiding::charging_vector(
            src.headers.get("P-Charging-Vector"),
            from_trusted,
            &sess.icid,
            &caller,
            term,
        )
    }

    pub(super) fn build_ack(
        &mut self,
        sess: &mut Session,
        side: usize,
        cseq: u32,
        src: &Message,
    ) -> Message {
        let dest = self.leg_dest(&sess.legs[side]);
        let via = self.via(sess.legs[side].realm, dest.transport);
        let leg = &sess.legs[side];
        let uri = leg
            .remote_target
            .clone()
            .unwrap_or(Uri::Other(String::new()));
        let mut h = Headers::default();
        h.push("Via", via);
        h.push("Max-Forwards", "70");
        leg.push_dialog_headers(&mut h, cseq, &Method::Ack);
        let body = copy_body(src, &mut h);
        Message {
            start: StartLine::Request {
                method: Method::Ack,
                uri,
            },
            headers: h,
            body,
        }
    }

    /// Builds the response on leg `side` to `request` (received on that leg), carrying the status
    /// and the screened content of `src` (the response received on the other leg).
    pub(super) fn relay_response(
        &mut self,
        sid: u64,
        side: usize,
        request: &Message,
        status: u16,
        src: &Message,
    ) -> Message {
        let status = map_status(status);
        let mut resp = self.response_to(sid, side, request, status);
        let sess = self.sessions.get(&sid).expect("caller checked");
        let (realm, party) = (sess.legs[side].realm, sess.legs[side].party);
        let src_leg = &sess.legs[1 - side];
        let crossing = Crossing {
            from_trust: self.party_trust(src_leg.realm, src_leg.party),
            to_trust: self.party_trust(realm, party),
            to_policy: self.party_headers(realm, party),
        };
        if status > 100 && status < 300 {
            let transport = self.leg_transport(sid, side);
            resp.headers.push("Contact", self.contact(realm, transport));
        }
        copy_screened(src, &mut resp.headers, crossing);
        resp.body = copy_body(src, &mut resp.headers);
        let answered = (101..300).contains(&status);
        self.with_session(sid, |this, sess| {
            if this.anchor_msg(sess, 1 - side, &mut resp).is_err() {
                // An answer that cannot be anchored is not passed on: its addresses would leak.
                resp.body.clear();
                resp.headers.remove("Content-Type");
            } else if answered && !resp.body.is_empty() {
                this.anchoring.open_gates(&mut sess.media);
            }
        });
        let sess = self.sessions.get(&sid).expect("caller checked");
        if request.method() == Some(&Method::Invite) {
            let pcv = self.charging_for(sess, src, side, false);
            resp.headers.push("P-Charging-Vector", pcv);
        }
        // Reliable provisionals (RFC 3262) carry an RSeq per leg.
        if (101..200).contains(&status) && has_option(src, "Require", "100rel") {
            if let (Some(theirs), Some(c)) = (src.headers.rseq().map(|r| r.0), cseq_of(src)) {
                let sess = self.sessions.get_mut(&sid).expect("caller checked");
                let ours = match sess
                    .rseq
                    .maps
                    .iter()
                    .find(|m| m.side == side && m.theirs == theirs && m.their_cseq == c.seq)
                {
                    Some(m) => m.ours,
                    None => {
                        let ours = sess.rseq.next[side];
                        sess.rseq.next[side] += 1;
                        sess.rseq.maps.push(session::RseqMap {
                            side,
                            ours,
                            theirs,
                            their_cseq: c.seq,
                        });
                        ours
                    }
                };
                if !has_option(&resp, "Require", "100rel") {
                    resp.headers.push("Require", "100rel");
                }
                resp.headers
                    .push("RSeq", crate::sip::RSeq(ours).to_string());
            }
        }
        resp
    }

    pub(super) fn leg_transport(&self, sid: u64, side: usize) -> Transport {
        self.sessions
            .get(&sid)
            .map(|s| s.legs[side].flow.transport)
            .unwrap_or(Transport::Udp)
    }

    /// A response skeleton for a request received on leg `side` of a session (our tag in To).
    pub(super) fn response_to(
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
    pub(super) fn respond(&mut self, now: Instant, stx: ServerTxId, resp: &Message) {
        let status = resp.status().unwrap_or(0);
        if status >= 200 && self.tx.server_pending(stx) {
            if let Some((method, realm, party)) = self.stx_origin.remove(&stx) {
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
    pub(super) fn reject(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        request: &Message,
        status: u16,
        extra: Option<(&str, String)>,
        reason: super::RejectReason,
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
    pub(super) fn reply(
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
        self.respond(now, stx, &resp);
    }

    /// Answers the initial request of a session with the To tag its leg 0 already uses, so a
    /// final response after relayed provisionals belongs to the same (early) dialog.
    pub(super) fn reply_in_session(
        &mut self,
        now: Instant,
        sid: u64,
        stx: ServerTxId,
        request: &Message,
        status: u16,
    ) {
        let resp = self.response_to(sid, 0, request, status);
        self.respond(now, stx, &resp);
    }

    pub(super) fn reply_options(&mut self, now: Instant, stx: ServerTxId, request: &Message) {
        let tag = self.token(8);
        let mut resp = make_response(request, 200, Some(&tag));
        resp.headers.push(
            "Allow",
            "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, MESSAGE, REFER, SUBSCRIBE, NOTIFY",
        );
        resp.headers.push("Accept", "application/sdp");
        resp.headers.push("Supported", "100rel, timer");
        self.respond(now, stx, &resp);
    }
}

/// The answer to a request whose SDP could not be anchored.
pub(super) fn anchor_status(e: &AnchorError) -> u16 {
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
pub(super) fn response_flow(flow: Flow, via: &Via) -> Flow {
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

impl Message {
    pub(super) fn empty_request() -> Message {
        Message {
            start: StartLine::Request {
                method: Method::Ack,
                uri: Uri::Other(String::new()),
            },
            headers: Headers::default(),
            body: Vec::new(),
        }
    }
}
