//! Input: source screening, parsing, the transaction layer, then the first decision on a
//! new request (extensions, scheme, method policy, routing, limits) before a session exists.

#[allow(unused_imports)]
use super::*;

impl Border {
    /// Option tags in `Require` and `Proxy-Require` that are not in `sip.extensions`, in the
    /// order they appear, each once.
    pub(super) fn unsupported_options(&self, msg: &Message) -> Vec<String> {
        let mut unknown: Vec<String> = Vec::new();
        for header in ["Require", "Proxy-Require"] {
            for tag in msg.headers.option_tags(header) {
                if self
                    .cfg
                    .sip
                    .extensions
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(tag))
                    || unknown.iter().any(|u| u.eq_ignore_ascii_case(tag))
                {
                    continue;
                }
                unknown.push(tag.to_string());
            }
        }
        unknown
    }

    // === Input ===

    pub fn handle_input(&mut self, now: Instant, input: Inbound<'_>) {
        let Some(party) = self.classify(&input) else {
            // Scanners learn nothing: no answer at all. The log says why, for whoever is
            // setting up a client and wonders where its request went.
            self.stats.dropped_unknown_source += 1;
            let realm = self.realm_name(input.realm);
            self.emit(Event::Dropped {
                reason: DropReason::UnknownSource,
                realm,
                partner: None,
                source: input.remote,
            });
            tracing::debug!(
                realm = %self.cfg.realms.get(input.realm).map_or("?", |r| r.name.as_str()),
                source = %input.remote,
                "dropped: not a configured core or partner address"
            );
            return;
        };
        if let Party::Peer(p) = party {
            self.partners.heard(p, now);
            let (n, floor) = (input.bytes.len(), self.cfg.sip.max_message_size);
            if !self.partners.admit_bytes(p, now, n, floor) {
                // Over its byte rate: dropped before parsing, at the lowest cost, unanswered.
                self.stats.dropped_byte_rate += 1;
                let realm = self.realm_name(input.realm);
                let partner = Some(self.partners.name(p));
                return self.emit(Event::Dropped {
                    reason: DropReason::ByteRate,
                    realm,
                    partner,
                    source: input.remote,
                });
            }
        }
        if input.bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return; // RFC 5626 keepalive
        }
        let flow = Flow {
            realm: input.realm,
            transport: input.transport,
            remote: input.remote,
        };
        match parse_message(input.bytes, &self.limits) {
            Ok(msg) if msg.is_request() => self.on_request(now, msg, flow, party),
            Ok(msg) => self.on_response(now, msg),
            Err(e) => self.on_malformed(e, flow),
        }
        self.drain_tx_events(now);
    }

    /// Who sent `input`: the core by its source address; a partner by the identity its TLS
    /// connection proved, or, for a partner without a TLS policy, by its source address. A
    /// TLS-only partner's address sending over plain UDP/TCP is nobody.
    pub(super) fn classify(&self, input: &Inbound<'_>) -> Option<Party> {
        let realm = input.realm;
        let ip = input.remote.ip();
        let r = self.cfg.realms.get(realm)?;
        match r.kind {
            RealmKind::Home => r.core_sources.contains(&ip).then_some(Party::Core),
            RealmKind::Peer if input.transport == Transport::Tls => self
                .partners
                .by_identity(realm, input.peer?)
                .map(|(id, _)| Party::Peer(id)),
            RealmKind::Peer => {
                let (id, _) = self.partners.by_source(realm, ip)?;
                if self.partners.get(id).tls.is_some() {
                    tracing::debug!(source = %input.remote, partner = %self.partners.name(id),
                        "dropped: this partner is TLS-only and sent over {}", input.transport.as_str());
                    return None;
                }
                Some(Party::Peer(id))
            }
        }
    }

    /// A request over a stream connection: where its responses go if the connection is gone
    /// (the source address, the Via's sent-by port: RFC 3261 §18.2.2), and, for a partner's
    /// TLS request with `alias` in its Via (RFC 5923), whether the connection may carry our
    /// requests to that sent-by. The alias is taken only for an address of the very partner the
    /// certificate proved (§5), so a partner cannot pull another's traffic onto its connection.
    fn note_connection(&mut self, flow: Flow, via: &Via, party: Party) {
        let default_port = if flow.transport == Transport::Tls {
            5061
        } else {
            5060
        };
        let port = via.port.unwrap_or(default_port);
        let sent_by = SocketAddr::new(flow.remote.ip(), port);
        let alias = flow.transport == Transport::Tls
            && via.params.get("alias").is_some()
            && matches!(party, Party::Peer(_))
            && via
                .host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| self.party_ips(flow.realm, party).contains(&ip));
        let alias_to = via
            .host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| SocketAddr::new(ip, port))
            .unwrap_or(sent_by);
        if sent_by != flow.remote {
            let hint = ConnectionHint {
                conn: flow,
                sent_by,
                alias: false,
            };
            if !self.conn_hints.contains(&hint) {
                self.conn_hints.push_back(hint);
            }
        }
        if alias && alias_to != flow.remote {
            let hint = ConnectionHint {
                conn: flow,
                sent_by: alias_to,
                alias: true,
            };
            if !self.conn_hints.contains(&hint) {
                self.conn_hints.push_back(hint);
            }
        }
    }

    /// The next thing the transport should know of a connection (see [`ConnectionHint`]).
    pub fn poll_connection_hint(&mut self) -> Option<ConnectionHint> {
        self.conn_hints.pop_front()
    }

    /// The transport cannot reach `flow` (connection refused or timed out, TLS handshake
    /// refused): what was sent over it fails now, as a 503, and a call moves to its next target.
    pub fn transport_failed(&mut self, now: Instant, flow: Flow) {
        self.tx.transport_failed(flow);
        self.drain_tx_events(now);
    }

    pub(super) fn drop_malformed(&mut self, flow: Flow) {
        self.stats.dropped_malformed += 1;
        let realm = self.realm_name(flow.realm);
        self.emit(Event::Dropped {
            reason: DropReason::Malformed,
            realm,
            partner: None,
            source: flow.remote,
        });
    }

    pub(super) fn on_malformed(&mut self, e: ParseError, flow: Flow) {
        let answerable = e.is_request
            && ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .all(|h| e.headers.contains(h));
        let Some(via) = e
            .headers
            .get("Via")
            .and_then(Via::parse)
            .filter(|_| answerable)
        else {
            self.drop_malformed(flow);
            return;
        };
        self.stats.rejected_malformed += 1;
        let status = e.kind.status();
        self.emit(Event::MalformedRejected {
            status,
            source: flow.remote,
        });
        let resp = Border::malformed_answer(&e, status);
        let flow = response_flow(flow, &via);
        self.tx.send_stateless(&resp, flow);
    }

    pub(super) fn on_request(&mut self, now: Instant, msg: Message, flow: Flow, party: Party) {
        let Some(via) = msg.headers.get("Via").and_then(Via::parse) else {
            self.drop_malformed(flow);
            return;
        };
        if let Party::Peer(p) = party {
            let new = tag_of(msg.headers.get("To")).is_none()
                && !matches!(msg.method(), Some(Method::Cancel | Method::Ack));
            if new && self.partners.is_retired(p) {
                // A partner removed by a reload finishes its calls but starts nothing new: to
                // a new request it is as unknown as any other source.
                self.stats.dropped_unknown_source += 1;
                let realm = self.realm_name(flow.realm);
                return self.emit(Event::Dropped {
                    reason: DropReason::UnknownSource,
                    realm,
                    partner: None,
                    source: flow.remote,
                });
            }
        }
        if flow.reliable() {
            self.note_connection(flow, &via, party);
        }
        let rflow = response_flow(flow, &via);
        match self.tx.on_request(now, &msg, rflow) {
            RequestDisposition::Absorbed => {}
            RequestDisposition::AckFor2xx(stx) => self.on_ack(now, &msg, stx, flow),
            RequestDisposition::New(stx) => self.on_new_request(now, msg, stx, flow, party),
        }
    }

    pub(super) fn on_new_request(
        &mut self,
        now: Instant,
        msg: Message,
        stx: ServerTxId,
        flow: Flow,
        party: Party,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let max_forwards = msg
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok());
        if method != Method::Ack {
            self.stx_origin
                .insert(stx, (method.clone(), flow.realm, party));
            if let Party::Peer(p) = party {
                self.partners.pending(p, true);
            }
            let from = self.origin(flow.realm, party);
            self.emit(Event::RequestReceived {
                method: method.clone(),
                from,
            });
        }
        if let Party::Peer(p) = party {
            if !matches!(method, Method::Ack | Method::Cancel)
                && !self.partners.within_transactions(p)
            {
                // Beyond its concurrent transactions: refused at once, before it holds anything
                // more. ACK has no transaction and CANCEL ends one, so both always pass.
                let retry = ("Retry-After", "1".to_string());
                let why = RejectReason::TransactionLimit;
                return self.reject(now, stx, &msg, 503, Some(retry), why);
            }
        }
        if method == Method::Cancel {
            return self.on_cancel(now, &msg, stx);
        }
        if method != Method::Ack {
            let unknown = self.unsupported_options(&msg);
            if !unknown.is_empty() {
                // RFC 3261 §8.2.2.3 / §16.3: refuse what neither leg could honour, naming it.
                let unsupported = Some(("Unsupported", unknown.join(", ")));
                let why = RejectReason::UnsupportedExtension;
                return self.reject(now, stx, &msg, 420, unsupported, why);
            }
        }
        if let Some(tag) = tag_of(msg.headers.get("To")) {
            if max_forwards == Some(0) {
                return self.reject(now, stx, &msg, 483, None, RejectReason::TooManyHops);
            }
            return self.on_in_dialog(now, msg, stx, &tag, flow);
        }
        if self.refuse_while_draining(now, stx, &msg) {
            return;
        }
        if request_uri(&msg).is_some_and(|u| !understood_scheme(u)) {
            // RFC 3261 §8.2.2.1: a scheme the border cannot route is 416, not 404.
            return self.reject(now, stx, &msg, 416, None, RejectReason::UnsupportedScheme);
        }
        let to_border = request_uri(&msg)
            .and_then(Uri::as_sip)
            .is_some_and(|u| u.user.is_none());
        if method == Method::Options && (matches!(party, Party::Peer(_)) || to_border) {
            return self.reply_options(now, stx, &msg);
        }
        if max_forwards == Some(0) {
            return self.reject(now, stx, &msg, 483, None, RejectReason::TooManyHops);
        }
        if let Party::Peer(p) = party {
            let peer = self.partners.get(p);
            if !peer
                .allowed_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method.as_str()))
            {
                let allow = peer.allowed_methods.join(", ");
                let why = RejectReason::MethodNotAllowed;
                return self.reject(now, stx, &msg, 405, Some(("Allow", allow)), why);
            }
            let what = if method == Method::Invite {
                partners::Rate::Call
            } else {
                partners::Rate::Request
            };
            if !self.partners.admit(p, now, what) {
                // RFC 3261 §21.5.4: come back in a second, when the bucket has refilled.
                let retry = ("Retry-After", "1".to_string());
                return self.reject(now, stx, &msg, 503, Some(retry), RejectReason::RateLimit);
            }
        }
        if method == Method::Invite && self.overloaded {
            // Shed new calls first and fast (RFC 6357): what is in progress keeps the capacity.
            let retry = ("Retry-After", "2".to_string());
            return self.reject(now, stx, &msg, 503, Some(retry), RejectReason::Overload);
        }
        if method == Method::Invite {
            if let Err(e) = self.check_dialog_refs(&msg, (flow.realm, party)) {
                return self.refuse_ref(now, stx, &msg, e, false);
            }
        }
        let kind = match method {
            Method::Invite => Kind::Invite,
            Method::Subscribe | Method::Refer => Kind::Subscribe,
            Method::Message | Method::Options | Method::Notify | Method::Publish => {
                Kind::Standalone
            }
            Method::Register => {
                let why = RejectReason::RegisterNotServed;
                return self.reject(now, stx, &msg, 403, None, why);
            }
            Method::Ack | Method::Cancel => return,
            Method::Bye | Method::Prack | Method::Update | Method::Info => {
                return self.reply(now, stx, &msg, 481, None)
            }
            Method::Other(_) => return self.reply(now, stx, &msg, 501, None),
        };
        if method == Method::Invite {
            self.reply(now, stx, &msg, 100, None);
        }
        let from_home = self.cfg.realms[flow.realm].kind == RealmKind::Home;
        let Some(target) = request_uri(&msg).cloned() else {
            return;
        };
        let parked = Parked {
            msg,
            stx,
            flow,
            party,
            kind,
        };
        if self.router.defer(&self.cfg, from_home, &target) {
            return self.park(now, parked, target, from_home);
        }
        let route = self.router.route(&self.cfg, from_home, &target);
        self.route_and_start(now, parked, Ok(route));
    }

    /// The rest of a new request's handling once its route is known (at once, or after a
    /// lookup): partner identity, limits, then the session.
    pub(super) fn route_and_start(&mut self, now: Instant, p: Parked, route: LookupResult) {
        let Parked {
            mut msg,
            stx,
            flow,
            party,
            kind,
        } = p;
        let route = match route {
            Ok(route) => route,
            Err(status) => return self.reject(now, stx, &msg, status, None, RejectReason::NoRoute),
        };
        let (out_realm, out_party, targets) = match route {
            Route::NotFound => {
                return self.reject(now, stx, &msg, 404, None, RejectReason::NoRoute)
            }
            Route::Peer {
                realm,
                peer,
                targets,
                uri,
            } => {
                if let (Some(uri), StartLine::Request { uri: ruri, .. }) = (uri, &mut msg.start) {
                    *ruri = uri;
                }
                // The router speaks in positions of the configuration it was given; the leg
                // keeps the partner's stable identity.
                let name = &self.cfg.realms[realm].peers[peer].name;
                match self.partners.find(realm, name) {
                    Some(id) => (realm, Party::Peer(id), targets),
                    None => return self.reject(now, stx, &msg, 404, None, RejectReason::NoRoute),
                }
            }
            Route::Home { realm, targets } => (realm, Party::Core, targets),
        };
        if kind == Kind::Invite && self.over_limit(flow.realm, party, out_realm, out_party) {
            let retry = ("Retry-After", "5".to_string());
            let why = RejectReason::CallLimit;
            return self.reject(now, stx, &msg, 503, Some(retry), why);
        }
        let mut flows = targets.iter().map(|t| Flow {
            realm: out_realm,
            transport: t.transport,
            remote: t.addr,
        });
        let Some(out_flow) = flows.next() else {
            return self.reject(now, stx, &msg, 404, None, RejectReason::NoRoute);
        };
        let alternates = flows.collect();
        let out = (out_flow, out_party);
        self.start_session(now, kind, msg, stx, flow, party, out, alternates);
    }

    pub(super) fn over_limit(
        &self,
        in_realm: usize,
        in_party: Party,
        out_realm: usize,
        out: Party,
    ) -> bool {
        if self.active_sessions() >= self.cfg.sip.max_calls {
            return true;
        }
        let peer_limit = |_realm: usize, party: Party| match party {
            Party::Peer(p) => self.partners.active(p) >= self.partners.get(p).max_calls,
            Party::Core => false,
        };
        peer_limit(in_realm, in_party) || peer_limit(out_realm, out)
    }
}
