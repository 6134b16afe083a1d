//! Building the messages of each leg: Via, Contact and dialog headers from the realm's own
//! addresses, screened copies of what the other leg sent, anchored SDP, and local answers.
//! Also where a dialog request on a leg is sent (loose routing within the leg's party).

use std::net::{IpAddr, SocketAddr};

use rand::Rng;

use super::hiding::{self, copy_body, copy_screened, BodyRules, Crossing, DialogIds};
use super::media::AnchorError;
use super::session::{Leg, Session};
use super::{cseq_of, request_uri, Border, Party};
use crate::config::{HeaderPolicy, ReferPolicy, Transport, Trust};
use crate::sip::multipart::{self, Part};
use crate::sip::{Headers, Message, Method, NameAddr, StartLine, Uri};
use crate::transaction::Flow;

mod answer;
pub use answer::make_response;
pub(super) use answer::{anchor_status, response_flow};
mod sealed;
pub use sealed::Sealed;

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
        // On TLS, `alias` (RFC 5923) offers the partner our connection for its requests too,
        // so it need not open a second one toward us.
        let alias = if transport == Transport::Tls {
            ";alias"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{branch};rport{alias}",
            transport.as_str(),
            self.host_port(realm, transport)
        )
    }

    pub(super) fn contact(&self, realm: usize, transport: Transport) -> String {
        let tp = match transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        format!("<sip:{}{tp}>", self.host_port(realm, transport))
    }

    pub(super) fn party_trust(&self, realm: usize, party: Party) -> Trust {
        match party {
            Party::Core => self.cfg.realms[realm].trust,
            Party::Peer(p) => self.partners.get(p).trust,
        }
    }

    /// A REFER between these parties is answered by the border (403) instead of crossing: one of
    /// them is a partner whose policy says `refer = "refuse"`.
    pub(super) fn refer_refused(&self, parties: [Party; 2]) -> bool {
        parties.iter().any(|p| match p {
            Party::Peer(p) => self.partners.get(*p).refer == ReferPolicy::Refuse,
            Party::Core => false,
        })
    }

    /// What URIs in headers are rewritten to toward `party` (see [`Crossing::public`]).
    pub(super) fn public_toward(&self, party: Party) -> Option<(&[String], &str)> {
        matches!(party, Party::Peer(_)).then(|| {
            (
                self.public_domains.as_slice(),
                hiding::public_domain(&self.cfg),
            )
        })
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
            Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
            // A dialog set up over TLS stays on TLS whatever the peer's URIs say (RFC 5630).
            _ => leg.flow.transport,
        };
        let transport = if leg.flow.transport == Transport::Tls {
            Transport::Tls
        } else {
            transport
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
    ) -> Sealed {
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
            let contact = self.contact(realm, transport) + &hiding::feature_tags(src);
            h.push("Contact", contact);
        }
        let src_leg = &sess.legs[src_side];
        let from_trust = self.party_trust(src_leg.realm, src_leg.party);
        let crossing = Crossing {
            from_trust,
            to_trust: self.party_trust(realm, party),
            to_policy: self.party_headers(realm, party),
            public: self.public_toward(party),
        };
        if method != Method::Bye || src.method() == Some(&Method::Bye) {
            copy_screened(src, &mut h, crossing);
        }
        let body = if method == Method::Bye && src.method() != Some(&Method::Bye) {
            Vec::new()
        } else {
            let ends = ((src_leg.realm, src_leg.party), (realm, party));
            let dialogs = |d: &DialogIds| self.dialog_view(Some(sess), ends.0, ends.1, d);
            let rules = BodyRules {
                allowed: &crossing.to_policy.bodies,
                public: crossing.public,
                dialogs: &dialogs,
            };
            copy_body(src, &mut h, rules)
        };
        if matches!(method, Method::Invite | Method::Message | Method::Subscribe)
            || method == Method::Refer
        {
            let pcv = self.charging_for(sess, src, side, true);
            h.push("P-Charging-Vector", pcv);
        }
        Sealed::new(Message {
            start: StartLine::Request { method, uri },
            headers: h,
            body,
        })
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
        // TS 24.229 §5.10: the icid is kept only inside one trust relation; toward an untrusted
        // destination (or from an untrusted source) the border's own icid is used.
        let from_trusted = self.party_trust(src_leg.realm, src_leg.party) == Trust::Trusted
            && self.party_trust(dst_leg.realm, dst_leg.party) == Trust::Trusted;
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
    ) -> Sealed {
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
        let from = &sess.legs[1 - side];
        let ends = ((from.realm, from.party), (leg.realm, leg.party));
        let dialogs = |d: &DialogIds| self.dialog_view(Some(sess), ends.0, ends.1, d);
        let rules = BodyRules {
            allowed: &self.party_headers(leg.realm, leg.party).bodies,
            public: self.public_toward(leg.party),
            dialogs: &dialogs,
        };
        let body = copy_body(src, &mut h, rules);
        Sealed::new(Message {
            start: StartLine::Request {
                method: Method::Ack,
                uri,
            },
            headers: h,
            body,
        })
    }

    /// Anchors the SDP body of a message built for the leg opposite `from` on the relay, or the
    /// SDP part of a `multipart/mixed` one (already screened by `hiding::copy_body`). SDP
    /// outside offer/answer (a MESSAGE, a 200 to OPTIONS) is not a media description the relay
    /// can stand for: it is removed, never passed with the addresses it names.
    pub(in crate::b2bua::build) fn anchor_body(
        &mut self,
        sess: &mut Session,
        from: usize,
        msg: &mut Message,
    ) -> Result<(), AnchorError> {
        if msg.body.is_empty() {
            return Ok(());
        }
        // SDP offer/answer happens in INVITE, UPDATE, PRACK and ACK and their responses
        // (RFC 3264, RFC 3311, RFC 3262); other bodies are not media descriptions.
        let offer_answer = cseq_of(msg).is_some_and(|c| {
            matches!(
                c.method,
                Method::Invite | Method::Update | Method::Prack | Method::Ack
            )
        });
        let ct = msg.headers.content_type();
        if let Some(boundary) = ct
            .as_ref()
            .filter(|c| c.is("multipart", "mixed"))
            .map(|c| c.param("boundary").unwrap_or_default())
        {
            return self.anchor_parts(sess, from, msg, &boundary, offer_answer);
        }
        // A Content-Type the typed parser refuses (say a parameter without a value) still names
        // SDP when it starts so: such a body is anchored, never passed through unrewritten.
        let is_sdp = match ct {
            Some(ct) => ct.is_sdp(),
            None => msg
                .headers
                .get("Content-Type")
                .is_some_and(crate::sip::ContentType::names_sdp),
        };
        if !is_sdp {
            return Ok(());
        }
        let legs = self.leg_realms(sess);
        // Only a call negotiates media: SDP in anything else (or in a subscription's dialog)
        // is removed, never passed on with its addresses.
        match sess.media_mut().filter(|_| offer_answer) {
            Some(media) => msg.body = self.anchoring.anchor(media, legs, from, &msg.body)?,
            None => strip_body(msg),
        }
        Ok(())
    }

    /// The SDP part of a multipart body anchored (or removed outside offer/answer), the other
    /// parts as they are; the boundary is the one `hiding::copy_body` chose.
    fn anchor_parts(
        &mut self,
        sess: &mut Session,
        from: usize,
        msg: &mut Message,
        boundary: &str,
        offer_answer: bool,
    ) -> Result<(), AnchorError> {
        let Some(mut parts) = multipart::parse(&msg.body, boundary) else {
            strip_body(msg);
            return Ok(());
        };
        let is_sdp = |p: &Part| p.content_type().is_some_and(|c| c.is_sdp());
        let legs = self.leg_realms(sess);
        match sess.media_mut().filter(|_| offer_answer) {
            Some(media) => {
                for p in parts.iter_mut().filter(|p| is_sdp(p)) {
                    p.body = self.anchoring.anchor(media, legs, from, &p.body)?;
                }
            }
            None => parts.retain(|p| !is_sdp(p)),
        }
        if parts.is_empty() {
            strip_body(msg);
        } else {
            msg.body = multipart::write(&parts, boundary);
        }
        Ok(())
    }

    /// Anchors the SDP body of a sealed message (see [`Border::anchor_body`]).
    pub(in crate::b2bua) fn anchor_msg(
        &mut self,
        sess: &mut Session,
        from: usize,
        msg: &mut Sealed,
    ) -> Result<(), AnchorError> {
        self.anchor_body(sess, from, msg.get_mut())
    }

    /// Like [`Border::anchor_msg`], but a body that cannot be anchored is removed rather than
    /// sent: its addresses would leak. False when that happened.
    pub(in crate::b2bua) fn anchor_or_strip(
        &mut self,
        sess: &mut Session,
        from: usize,
        msg: &mut Sealed,
    ) -> bool {
        let m = msg.get_mut();
        if self.anchor_body(sess, from, m).is_err() {
            strip_body(m);
            return false;
        }
        true
    }

    /// The CANCEL of a request this border sent (RFC 3261 §9.1): its Via (the branch), From,
    /// To, Call-ID, CSeq number and Route, and the caller's screened Reason (RFC 3326, e.g.
    /// "call completed elsewhere" as cause 200).
    pub(in crate::b2bua) fn build_cancel(invite: &Sealed, reason: Option<&str>) -> Sealed {
        let mut headers = Headers::default();
        if let Some(v) = invite.headers.values("Via").first() {
            headers.push("Via", *v);
        }
        for h in ["Max-Forwards", "From", "To", "Call-ID"] {
            if let Some(v) = invite.headers.get(h) {
                headers.push(h, v);
            }
        }
        if let Some(c) = cseq_of(invite) {
            headers.push("CSeq", format!("{} CANCEL", c.seq));
        }
        for r in invite.headers.lines("Route") {
            headers.push("Route", r);
        }
        // Already screened (see `hiding::screened_reason`).
        if let Some(r) = reason {
            headers.push("Reason", r);
        }
        Sealed::new(Message {
            start: StartLine::Request {
                method: Method::Cancel,
                uri: request_uri(invite)
                    .cloned()
                    .unwrap_or(Uri::Other(String::new())),
            },
            headers,
            body: Vec::new(),
        })
    }

    /// The initial request again, for the route's next target (RFC 3263 §4.3): the same
    /// dialog identifiers and body, a new Via (a new transaction) and this realm's Contact
    /// for the target's transport.
    pub(in crate::b2bua) fn retarget(&mut self, req: &Sealed, next: Flow) -> Sealed {
        let mut req = req.clone();
        let via = self.via(next.realm, next.transport);
        let contact = self.contact(next.realm, next.transport);
        let m = req.get_mut();
        m.headers.set("Via", via);
        if m.headers.get("Contact").is_some() {
            m.headers.set("Contact", contact);
        }
        req
    }

    /// RFC 3262: the RAck of a PRACK relayed to the other leg names that leg's RSeq, which the
    /// border mapped (see `fork::Rseqs`).
    pub(in crate::b2bua) fn set_rack(req: &mut Sealed, rack: &crate::sip::RAck) {
        req.get_mut().headers.set("RAck", rack.to_string());
    }

    /// A header naming a dialog (`Replaces`, `Join`, `Refer-To` with its embedded Replaces),
    /// translated to this leg's identifiers by `replaces.rs`: the received value never crosses.
    pub(in crate::b2bua) fn set_dialog_ref(req: &mut Sealed, name: &'static str, value: String) {
        req.get_mut().headers.set(name, value);
    }

    /// A header of the border's own on a request it builds (a NOTIFY of a REFER it handles).
    pub(in crate::b2bua) fn set_own(req: &mut Sealed, name: &'static str, value: String) {
        req.get_mut().headers.set(name, value);
    }

    /// A body of the border's own (a sipfrag it writes, an SDP already anchored).
    pub(in crate::b2bua) fn set_own_body(req: &mut Sealed, content_type: &str, body: Vec<u8>) {
        let m = req.get_mut();
        m.headers.set("Content-Type", content_type.to_string());
        m.body = body;
    }

    /// RFC 3515 §2.4.6: the `id` of a refer NOTIFY's Event names the REFER by its CSeq, which
    /// the border renumbers per leg; the mapped value is set here.
    pub(in crate::b2bua) fn set_event(req: &mut Sealed, event: &crate::sip::Event) {
        req.get_mut().headers.set("Event", event.to_string());
    }
}

/// Removes a body that must not cross, with its Content-Type.
fn strip_body(m: &mut Message) {
    m.body.clear();
    m.headers.remove("Content-Type");
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
