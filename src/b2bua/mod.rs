//! The border B2BUA, sans-IO: every call is two SIP dialogs, one per realm, with independent
//! Call-ID, tags, CSeq, Via and Contact. [`Border`] is fed datagrams/stream messages and time and
//! returns what to transmit; the service turns that into IO.
//!
//! Inputs go through, in order: source screening (unknown sources are dropped without an
//! answer), parsing (400 for a broken request, drop for a broken response), the transaction layer
//! (retransmissions are absorbed there), then the call logic in this module, which consults
//! [`crate::routing`] for new requests and [`hiding`] for what may cross.

mod build;
pub use build::make_response;
use build::{anchor_status, response_flow};
pub mod hiding;
pub mod media;
mod session;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::{Config, RealmKind, Transport};
use crate::routing::{Route, Router, StaticRouter};
use crate::sip::{
    parse_message, CSeq, Headers, Limits, Message, Method, NameAddr, ParseError, StartLine, Uri,
    Via,
};
use crate::transaction::{
    ClientTxId, Flow, RequestDisposition, ResponseDisposition, ServerTxId, Timers,
    TransactionLayer, Transmit, TxEvent,
};

use crate::media::FlowId;
use hiding::reason_phrase;
use media::{AnchorError, Anchoring, CallMedia, LegRealm, MediaCommand};
use session::{AwaitAck, Kind, Leg, Pending, PendingKind, Session, State};

/// One message as received by a transport.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Index of the realm whose listener received it.
    pub realm: usize,
    pub transport: Transport,
    pub remote: SocketAddr,
    pub bytes: &'a [u8],
}

/// Who sent a message: this operator's core, or one of the peers of the realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Core,
    Peer(usize),
}

/// Counters kept by the engine; the service exports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub dropped_unknown_source: u64,
    pub dropped_malformed: u64,
    pub rejected_malformed: u64,
    pub calls_started: u64,
    pub calls_answered: u64,
    pub calls_failed: u64,
}

/// Why the border itself ends a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hangup {
    MediaInactivity,
    DialogIdle,
    AckTimeout,
}

impl Hangup {
    fn text(self) -> &'static str {
        match self {
            Hangup::MediaInactivity => "Media inactivity",
            Hangup::DialogIdle => "Dialog idle timeout",
            Hangup::AckTimeout => "No ACK",
        }
    }

    /// The SIP status the Reason header carries (RFC 3326).
    fn cause(self) -> u16 {
        match self {
            Hangup::MediaInactivity | Hangup::DialogIdle | Hangup::AckTimeout => 408,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SessTimer {
    /// RFC 3261 §16.6 Timer C: an INVITE that never gets a final response.
    TimerC,
    /// A dialog without any request for `dialog_idle_timeout`.
    Idle,
    /// An ended session is kept for 64·T1 to answer late retransmissions, then freed.
    Reap,
}

/// The B2BUA engine of one border instance.
pub struct Border {
    cfg: Arc<Config>,
    router: Box<dyn Router + Send>,
    tx: TransactionLayer,
    limits: Limits,
    rng: StdRng,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    /// (Call-ID, our tag) → (session, side). Our tags are unique, so this finds every dialog.
    dialogs: HashMap<(String, String), (u64, usize)>,
    /// Initial INVITE server transactions, for CANCEL.
    invites: HashMap<ServerTxId, u64>,
    pending: HashMap<ClientTxId, Pending>,
    timers: BTreeSet<(Instant, u64, SessTimer)>,
    transmits: VecDeque<Transmit>,
    anchoring: Anchoring,
    /// Sessions not yet ended, in all and per (realm, peer): the call limits are checked on
    /// every INVITE, so they are counted, not recomputed.
    active: usize,
    peer_active: HashMap<(usize, usize), usize>,
    stats: Stats,
}

fn tag_of(value: Option<&str>) -> Option<String> {
    value
        .and_then(NameAddr::parse)
        .and_then(|n| n.tag().map(str::to_string))
}

fn cseq_of(msg: &Message) -> Option<CSeq> {
    msg.headers.get("CSeq").and_then(CSeq::parse)
}

fn request_uri(msg: &Message) -> Option<&Uri> {
    match &msg.start {
        StartLine::Request { uri, .. } => Some(uri),
        StartLine::Response { .. } => None,
    }
}

fn contact_uri(msg: &Message) -> Option<Uri> {
    msg.headers
        .values("Contact")
        .first()
        .and_then(|v| NameAddr::parse(v))
        .map(|n| n.uri)
}

/// RFC 3261 §12.1.2: the UAC's route set is the response's Record-Route in reverse order.
fn uac_route_set(resp: &Message) -> Vec<String> {
    let mut rr: Vec<String> = resp
        .headers
        .values("Record-Route")
        .iter()
        .map(|s| s.to_string())
        .collect();
    rr.reverse();
    rr
}

/// `sip:`/`sips:` (parsed as [`Uri::Sip`]) and `tel:` (RFC 3966, routed by number) are the
/// schemes a border can route; anything else gets 416.
fn understood_scheme(uri: &Uri) -> bool {
    match uri {
        Uri::Sip(_) => true,
        Uri::Other(s) => s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("tel:")),
    }
}

fn has_option(msg: &Message, header: &str, option: &str) -> bool {
    msg.headers
        .values(header)
        .iter()
        .any(|v| v.trim().eq_ignore_ascii_case(option))
}

impl Border {
    /// Option tags in `Require` and `Proxy-Require` that are not in `sip.extensions`, in the
    /// order they appear, each once.
    fn unsupported_options(&self, msg: &Message) -> Vec<String> {
        let mut unknown: Vec<String> = Vec::new();
        for header in ["Require", "Proxy-Require"] {
            for v in msg.headers.values(header) {
                let tag = v.trim();
                if tag.is_empty()
                    || self
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

    pub fn new(cfg: Arc<Config>, seed: u64) -> Self {
        Self::with_router(cfg, seed, Box::new(StaticRouter))
    }

    pub fn with_router(cfg: Arc<Config>, seed: u64, router: Box<dyn Router + Send>) -> Self {
        let timers = Timers {
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            t4: cfg.sip.t4,
        };
        let limits = Limits {
            max_message_size: cfg.sip.max_message_size,
            max_headers: cfg.sip.max_headers,
        };
        let anchoring = Anchoring::new(&cfg);
        Border {
            cfg,
            router,
            tx: TransactionLayer::new(timers),
            limits,
            rng: StdRng::seed_from_u64(seed),
            sessions: HashMap::new(),
            next_session: 0,
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            pending: HashMap::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            anchoring,
            active: 0,
            peer_active: HashMap::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Calls (and other dialogs) not yet ended.
    pub fn active_sessions(&self) -> usize {
        self.active
    }

    /// Everything the engine still holds: sessions (ended ones linger 64·T1), dialog index
    /// entries, pending client transactions and transactions. All zero when idle.
    pub fn held_state(&self) -> (usize, usize, usize, usize) {
        let (c, s) = self.tx.len();
        (
            self.sessions.len(),
            self.dialogs.len() + self.invites.len(),
            self.pending.len(),
            c + s,
        )
    }

    /// The next command for the TrGW (open, update, gate, close a relay flow).
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.anchoring.poll_command()
    }

    /// Free relay port pairs of a realm.
    pub fn free_media_ports(&self, realm: usize) -> usize {
        self.anchoring.pools.available(realm)
    }

    /// The TrGW reports the flows that carried no packet for the inactivity timeout. A call all
    /// of whose flows are idle is dead (a lost BYE, a crashed endpoint): it is hung up on both
    /// legs. A call with an idle RTCP flow but live RTP (rtcp-mux) is not.
    pub fn media_idle(&mut self, now: Instant, idle: &std::collections::HashSet<FlowId>) {
        let dead: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.state == State::Confirmed && !s.media.is_empty())
            .filter(|(_, s)| s.media.flows().all(|f| idle.contains(&f)))
            .map(|(id, _)| *id)
            .collect();
        for sid in dead {
            self.teardown(now, sid, Hangup::MediaInactivity);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.tx.poll_transmit())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.first().map(|(at, _, _)| *at);
        match (own, self.tx.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.drain_tx_events(now);
        while let Some(&(at, sid, which)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.fire(now, at, sid, which);
        }
    }

    // === Input ===

    pub fn handle_input(&mut self, now: Instant, input: Inbound<'_>) {
        let Some(party) = self.classify(input.realm, input.remote.ip()) else {
            // Scanners learn nothing: no answer at all. The log says why, for whoever is
            // setting up a client and wonders where its request went.
            self.stats.dropped_unknown_source += 1;
            tracing::debug!(
                realm = %self.cfg.realms.get(input.realm).map_or("?", |r| r.name.as_str()),
                source = %input.remote,
                "dropped: not a configured core or partner address"
            );
            return;
        };
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

    fn classify(&self, realm: usize, ip: IpAddr) -> Option<Party> {
        let r = self.cfg.realms.get(realm)?;
        match r.kind {
            RealmKind::Home => r.core_sources.contains(&ip).then_some(Party::Core),
            RealmKind::Peer => r
                .peers
                .iter()
                .position(|p| p.sources.contains(&ip))
                .map(Party::Peer),
        }
    }

    fn on_malformed(&mut self, e: ParseError, flow: Flow) {
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
            self.stats.dropped_malformed += 1;
            return;
        };
        self.stats.rejected_malformed += 1;
        let status = e.kind.status();
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
        let resp = Message {
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
        };
        let flow = response_flow(flow, &via);
        self.transmits.push_back(Transmit {
            flow,
            bytes: resp.to_bytes(),
        });
    }

    fn on_request(&mut self, now: Instant, msg: Message, flow: Flow, party: Party) {
        let Some(via) = msg.headers.get("Via").and_then(Via::parse) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let rflow = response_flow(flow, &via);
        match self.tx.on_request(now, &msg, rflow) {
            RequestDisposition::Absorbed => {}
            RequestDisposition::AckFor2xx(stx) => self.on_ack(now, &msg, stx, flow),
            RequestDisposition::New(stx) => self.on_new_request(now, msg, stx, flow, party),
        }
    }

    fn on_new_request(
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
        if method == Method::Cancel {
            return self.on_cancel(now, &msg, stx);
        }
        if method != Method::Ack {
            let unknown = self.unsupported_options(&msg);
            if !unknown.is_empty() {
                // RFC 3261 §8.2.2.3 / §16.3: refuse what neither leg could honour, naming it.
                return self.reply(
                    now,
                    stx,
                    &msg,
                    420,
                    Some(("Unsupported", unknown.join(", "))),
                );
            }
        }
        if let Some(tag) = tag_of(msg.headers.get("To")) {
            if max_forwards == Some(0) {
                return self.reply(now, stx, &msg, 483, None);
            }
            return self.on_in_dialog(now, msg, stx, &tag, flow);
        }
        if request_uri(&msg).is_some_and(|u| !understood_scheme(u)) {
            // RFC 3261 §8.2.2.1: a scheme the border cannot route is 416, not 404.
            return self.reply(now, stx, &msg, 416, None);
        }
        let to_border = request_uri(&msg)
            .and_then(Uri::as_sip)
            .is_some_and(|u| u.user.is_none());
        if method == Method::Options && (matches!(party, Party::Peer(_)) || to_border) {
            return self.reply_options(now, stx, &msg);
        }
        if max_forwards == Some(0) {
            return self.reply(now, stx, &msg, 483, None);
        }
        if let Party::Peer(p) = party {
            let peer = &self.cfg.realms[flow.realm].peers[p];
            if !peer
                .allowed_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method.as_str()))
            {
                let allow = peer.allowed_methods.join(", ");
                return self.reply(now, stx, &msg, 405, Some(("Allow", allow)));
            }
        }
        let kind = match method {
            Method::Invite => Kind::Invite,
            Method::Subscribe | Method::Refer => Kind::Subscribe,
            Method::Message | Method::Options | Method::Notify | Method::Publish => {
                Kind::Standalone
            }
            Method::Register => return self.reply(now, stx, &msg, 403, None),
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
        let route = self.router.route(&self.cfg, from_home, &target);
        let (out_realm, out_party, next_hop) = match route {
            Route::NotFound => return self.reply(now, stx, &msg, 404, None),
            Route::Peer {
                realm,
                peer,
                next_hop,
            } => (realm, Party::Peer(peer), next_hop),
            Route::Home { realm, next_hop } => (realm, Party::Core, next_hop),
        };
        if kind == Kind::Invite && self.over_limit(flow.realm, party, out_realm, out_party) {
            let retry = ("Retry-After", "5".to_string());
            return self.reply(now, stx, &msg, 503, Some(retry));
        }
        let out_flow = Flow {
            realm: out_realm,
            transport: next_hop.transport,
            remote: next_hop.addr,
        };
        self.start_session(now, kind, msg, stx, flow, party, out_flow, out_party);
    }

    fn over_limit(&self, in_realm: usize, in_party: Party, out_realm: usize, out: Party) -> bool {
        if self.active_sessions() >= self.cfg.sip.max_calls {
            return true;
        }
        let peer_limit = |realm: usize, party: Party| match party {
            Party::Peer(p) => {
                let used = self.peer_active.get(&(realm, p)).copied().unwrap_or(0);
                used >= self.cfg.realms[realm].peers[p].max_calls
            }
            Party::Core => false,
        };
        peer_limit(in_realm, in_party) || peer_limit(out_realm, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_session(
        &mut self,
        now: Instant,
        kind: Kind,
        msg: Message,
        stx: ServerTxId,
        in_flow: Flow,
        in_party: Party,
        out_flow: Flow,
        out_party: Party,
    ) {
        let method = msg.method().cloned().unwrap_or(Method::Invite);
        let sid = self.next_session;
        self.next_session += 1;
        let toward_peer = matches!(out_party, Party::Peer(_));
        let public = hiding::public_domain(&self.cfg).to_string();
        let peer_domains = match out_party {
            Party::Peer(p) => self.cfg.realms[out_flow.realm].peers[p].domains.clone(),
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
        let leg_b = Leg {
            realm: out_flow.realm,
            party: out_party,
            flow: out_flow,
            call_id: self.token(16),
            local_tag: self.token(10),
            remote_tag: None,
            local_uri: hiding::identity_for_leg(
                msg.headers.get("From").unwrap_or_default(),
                toward_peer,
                &from_domains,
                &from_public,
            ),
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
        let mut sess = Session {
            kind,
            state: State::Early,
            legs: [leg_a, leg_b],
            initial: msg,
            invite_stx: Some(stx),
            invite_ctx: None,
            invite_b: None,
            got_provisional: false,
            cancel_pending: false,
            cancelled: false,
            awaiting_ack: None,
            last_ack: None,
            rseq: Vec::new(),
            next_rseq: [1, 1],
            timer_c_at: None,
            last_activity: now,
            icid: self.token(16),
            media: CallMedia::default(),
        };
        let mut req = self.build_request(&mut sess, 1, method, Some(out_uri), None);
        if let Err(e) = self.anchor_msg(&mut sess, 0, &mut req) {
            let initial = sess.initial.clone();
            let legs = self.leg_realms(&sess);
            self.anchoring.release(&mut sess.media, legs);
            return self.reply(now, stx, &initial, anchor_status(&e), None);
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
        let ctx = self.tx.send_request(now, &req, dest);
        sess.invite_ctx = Some(ctx);
        sess.invite_b = Some(req);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side: 1,
                kind: PendingKind::Initial,
            },
        );
        if kind == Kind::Invite {
            self.stats.calls_started += 1;
            let at = now + self.cfg.sip.timer_c;
            sess.timer_c_at = Some(at);
            self.timers.insert((at, sid, SessTimer::TimerC));
        }
        self.active += 1;
        for leg in &sess.legs {
            if let Party::Peer(p) = leg.party {
                *self.peer_active.entry((leg.realm, p)).or_default() += 1;
            }
        }
        self.sessions.insert(sid, sess);
        self.arm_idle(now, sid);
    }

    fn arm_idle(&mut self, now: Instant, sid: u64) {
        let at = now + self.cfg.sip.dialog_idle_timeout;
        self.timers.insert((at, sid, SessTimer::Idle));
    }

    fn on_in_dialog(&mut self, now: Instant, msg: Message, stx: ServerTxId, tag: &str, flow: Flow) {
        let call_id = msg.headers.get("Call-ID").unwrap_or_default().to_string();
        let Some(&(sid, side)) = self.dialogs.get(&(call_id, tag.to_string())) else {
            return self.reply(now, stx, &msg, 481, None);
        };
        let method = msg.method().cloned().unwrap_or(Method::Invite);
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return self.reply(now, stx, &msg, 481, None);
        };
        if sess.state == State::Ended || sess.legs[side].realm != flow.realm {
            return self.reply(now, stx, &msg, 481, None);
        }
        let seq = cseq_of(&msg).map(|c| c.seq).unwrap_or(0);
        if let Some(prev) = sess.legs[side].remote_cseq {
            if seq <= prev {
                // RFC 3261 §12.2.2: out-of-order dialog request.
                return self.reply(now, stx, &msg, 500, None);
            }
        }
        sess.legs[side].remote_cseq = Some(seq);
        sess.last_activity = now;
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        ) {
            if let Some(c) = contact_uri(&msg) {
                sess.legs[side].remote_target = Some(c);
            }
        }
        if sess.legs[side].remote_tag.is_none() {
            sess.legs[side].remote_tag = tag_of(msg.headers.get("From"));
        }
        if method == Method::Invite {
            self.reply(now, stx, &msg, 100, None);
        }
        let other = 1 - side;
        let sess = self.sessions.get_mut(&sid).expect("looked up above");
        // PRACK names the reliable provisional by its RSeq, which differs per leg.
        let rack = if method == Method::Prack {
            let mapped = msg
                .headers
                .get("RAck")
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                .and_then(|r| {
                    sess.rseq
                        .iter()
                        .find(|m| m.side == side && m.ours == r)
                        .map(|m| format!("{} {} INVITE", m.theirs, m.their_cseq))
                });
            match mapped {
                Some(r) => Some(r),
                None => return self.reply(now, stx, &msg, 481, None),
            }
        } else {
            None
        };
        if method == Method::Bye {
            sess.state = State::Terminating;
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
        if let Some(r) = rack {
            req.headers.set("RAck", r);
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
                    out_cseq: cseq_of(&req).map(|c| c.seq).unwrap_or(0),
                },
            },
        );
    }

    fn on_cancel(&mut self, now: Instant, msg: &Message, stx: ServerTxId) {
        let Some(sid) = self
            .tx
            .invite_for_cancel(msg)
            .and_then(|inv| self.invites.get(&inv).copied())
        else {
            return self.reply(now, stx, msg, 481, None);
        };
        self.reply(now, stx, msg, 200, None);
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(invite_stx) = sess.invite_stx else {
            return;
        };
        if sess.cancelled || !self.tx.server_pending(invite_stx) {
            return;
        }
        sess.cancelled = true;
        let initial = sess.initial.clone();
        self.reply_in_session(now, sid, invite_stx, &initial, 487);
        let sess = self.sessions.get_mut(&sid).expect("looked up above");
        if sess.got_provisional {
            self.send_cancel(now, sid);
        } else {
            // RFC 3261 §9.1: no CANCEL before a provisional response has arrived.
            sess.cancel_pending = true;
        }
    }

    fn send_cancel(&mut self, now: Instant, sid: u64) {
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        sess.cancel_pending = false;
        let (Some(invite), Some(ctx)) = (&sess.invite_b, sess.invite_ctx) else {
            return;
        };
        if !self.tx.client_pending(ctx) {
            return;
        }
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
        let cancel = Message {
            start: StartLine::Request {
                method: Method::Cancel,
                uri: request_uri(invite)
                    .cloned()
                    .unwrap_or(Uri::Other(String::new())),
            },
            headers,
            body: Vec::new(),
        };
        let dest = sess.legs[1].flow;
        self.send_local(now, sid, 1, &cancel, dest);
    }

    fn on_ack(&mut self, now: Instant, msg: &Message, _stx: Option<ServerTxId>, flow: Flow) {
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
        let Some(wait) = sess.awaiting_ack.clone() else {
            return; // a retransmitted ACK: already relayed
        };
        if wait.from_side != side {
            return;
        }
        sess.awaiting_ack = None;
        self.tx.confirm_2xx(now, wait.stx);
        let out = 1 - side;
        self.with_session(sid, |this, sess| {
            let mut ack = this.build_ack(sess, out, wait.out_cseq, msg);
            if this.anchor_msg(sess, side, &mut ack).is_err() {
                ack.body.clear();
                ack.headers.remove("Content-Type");
            }
            this.anchoring.open_gates(&mut sess.media);
            let dest = this.leg_dest(&sess.legs[out]);
            this.tx.send_stateless(&ack, dest);
            sess.last_ack = Some((wait.ctx, ack, dest));
        });
    }

    // === Responses ===

    fn on_response(&mut self, now: Instant, msg: Message) {
        match self.tx.on_response(now, &msg) {
            ResponseDisposition::Absorbed => {}
            ResponseDisposition::Retransmitted2xx(ctx) => {
                self.on_2xx_retransmission(now, ctx, &msg)
            }
            ResponseDisposition::Deliver(ctx) => self.on_client_response(now, ctx, msg),
        }
    }

    fn on_2xx_retransmission(&mut self, now: Instant, ctx: ClientTxId, msg: &Message) {
        let Some(p) = self.pending.get(&ctx) else {
            return;
        };
        let (sid, side, initial) = (p.session, p.side, matches!(p.kind, PendingKind::Initial));
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        let tag = tag_of(msg.headers.get("To"));
        if initial && tag.is_some() && tag != sess.legs[side].remote_tag {
            // Another branch of a forked INVITE answered too: that dialog is not wanted.
            return self.ack_and_bye_fork(now, sid, side, msg);
        }
        if let Some((id, ack, dest)) = &sess.last_ack {
            if *id == ctx {
                let (ack, dest) = (ack.clone(), *dest);
                self.tx.send_stateless(&ack, dest);
            }
        }
    }

    /// RFC 3261 §13.2.2.4: a 2xx from a second branch is ACKed and its dialog ended with BYE.
    fn ack_and_bye_fork(&mut self, now: Instant, sid: u64, side: usize, resp: &Message) {
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

    fn on_client_response(&mut self, now: Instant, ctx: ClientTxId, msg: Message) {
        let Some(status) = msg.status() else { return };
        let Some(p) = self.pending.get(&ctx) else {
            return;
        };
        let (sid, side) = (p.session, p.side);
        let kind = p.kind.clone();
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        sess.last_activity = now;
        if status > 100 && status < 300 {
            let leg = &mut sess.legs[side];
            let initial = matches!(kind, PendingKind::Initial);
            // RFC 3261 §12.1.2: the 2xx fixes the dialog. A forked INVITE may have produced an
            // early dialog with another branch first; the answering one wins.
            let confirms = initial && status >= 200;
            if leg.remote_tag.is_none() || confirms {
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
            PendingKind::Local => {}
            PendingKind::Initial => self.on_initial_response(now, sid, ctx, status, msg),
            PendingKind::Relay {
                stx,
                request,
                out_cseq,
            } => self.on_relay_response(now, sid, side, ctx, stx, &request, out_cseq, msg),
        }
    }

    fn on_initial_response(
        &mut self,
        now: Instant,
        sid: u64,
        ctx: ClientTxId,
        status: u16,
        msg: Message,
    ) {
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        if status < 200 {
            // Any provisional, 100 Trying included, lets a CANCEL follow (RFC 3261 §9.1).
            sess.got_provisional = true;
            if sess.cancel_pending {
                return self.send_cancel(now, sid);
            }
            if sess.cancelled || status == 100 {
                return;
            }
        }
        let Some(stx) = sess.invite_stx else { return };
        if sess.cancelled || !self.tx.server_pending(stx) {
            // Leg A is already answered (CANCEL, timeout): a late 2xx on leg B is ACKed and
            // hung up so the far side is not left with a half call.
            if (200..300).contains(&status) && sess.kind == Kind::Invite {
                self.ack_and_bye(now, sid, ctx, &msg);
            }
            if status >= 200 {
                self.end(now, sid);
            }
            return;
        }
        let initial = sess.initial.clone();
        let resp = self.relay_response(sid, 0, &initial, status, &msg);
        self.tx.respond(now, stx, &resp);
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        match status {
            200..=299 => {
                sess.state = State::Confirmed;
                sess.timer_c_at = None;
                self.anchoring.open_gates(&mut sess.media);
                if sess.kind == Kind::Invite {
                    self.stats.calls_answered += 1;
                    sess.awaiting_ack = Some(AwaitAck {
                        from_side: 0,
                        stx,
                        ctx,
                        out_cseq: cseq_of(&msg).map(|c| c.seq).unwrap_or(1),
                    });
                } else if sess.kind == Kind::Standalone {
                    self.end(now, sid);
                }
            }
            300..=699 => {
                if sess.kind == Kind::Invite {
                    self.stats.calls_failed += 1;
                }
                self.end(now, sid);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_relay_response(
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
        self.tx.respond(now, stx, &resp);
        if status < 200 {
            return;
        }
        let method = request.method().cloned().unwrap_or(Method::Invite);
        let sess = self.sessions.get_mut(&sid).expect("caller checked");
        match method {
            Method::Invite if (200..300).contains(&status) => {
                sess.awaiting_ack = Some(AwaitAck {
                    from_side: back,
                    stx,
                    ctx,
                    out_cseq,
                });
            }
            Method::Bye => self.end(now, sid),
            Method::Notify
                if request.headers.get("Subscription-State").is_some_and(|s| {
                    s.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("terminated")
                }) && sess.kind == Kind::Subscribe =>
            {
                self.end(now, sid)
            }
            _ => {}
        }
    }

    fn ack_and_bye(&mut self, now: Instant, sid: u64, ctx: ClientTxId, resp: &Message) {
        let cseq = cseq_of(resp).map(|c| c.seq).unwrap_or(1);
        let Some((bye, dest)) = self.with_session(sid, |this, sess| {
            let ack = this.build_ack(sess, 1, cseq, &Message::empty_request());
            let dest = this.leg_dest(&sess.legs[1]);
            this.tx.send_stateless(&ack, dest);
            sess.last_ack = Some((ctx, ack, dest));
            (this.build_request(sess, 1, Method::Bye, None, None), dest)
        }) else {
            return;
        };
        self.send_local(now, sid, 1, &bye, dest);
    }

    // === Timers and transaction events ===

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tx.poll_event() {
            match ev {
                TxEvent::ClientTimeout(ctx) => {
                    if let Some(p) = self.pending.remove(&ctx) {
                        self.on_client_timeout(now, p);
                    }
                }
                TxEvent::ClientTerminated(ctx) => {
                    self.pending.remove(&ctx);
                }
                TxEvent::AckTimeout(stx) => {
                    let found = self
                        .sessions
                        .iter()
                        .find(|(_, s)| s.awaiting_ack.as_ref().is_some_and(|w| w.stx == stx))
                        .map(|(id, _)| *id);
                    if let Some(sid) = found {
                        self.teardown(now, sid, Hangup::AckTimeout);
                    }
                }
            }
        }
    }

    fn on_client_timeout(&mut self, now: Instant, p: Pending) {
        let sid = p.session;
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        match p.kind {
            PendingKind::Local => {}
            PendingKind::Initial => {
                let kind = sess.kind;
                if let Some(stx) = sess.invite_stx {
                    let initial = sess.initial.clone();
                    self.reply_in_session(now, sid, stx, &initial, 408);
                }
                if kind == Kind::Invite {
                    self.stats.calls_failed += 1;
                }
                self.end(now, sid);
            }
            PendingKind::Relay { stx, request, .. } => {
                self.reply(now, stx, &request, 408, None);
                if request.method() == Some(&Method::Bye) {
                    self.end(now, sid);
                }
            }
        }
    }

    fn fire(&mut self, now: Instant, at: Instant, sid: u64, which: SessTimer) {
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        match which {
            SessTimer::TimerC => {
                if sess.timer_c_at != Some(at) || sess.state != State::Early {
                    return;
                }
                if let Some(stx) = sess.invite_stx {
                    let initial = sess.initial.clone();
                    self.reply_in_session(now, sid, stx, &initial, 408);
                }
                self.send_cancel(now, sid);
                self.stats.calls_failed += 1;
                self.end(now, sid);
            }
            SessTimer::Idle => {
                if sess.state == State::Ended {
                    return;
                }
                let idle_until = sess.last_activity + self.cfg.sip.dialog_idle_timeout;
                if idle_until > now {
                    self.timers.insert((idle_until, sid, SessTimer::Idle));
                } else {
                    self.teardown(now, sid, Hangup::DialogIdle);
                }
            }
            SessTimer::Reap => {
                if sess.state != State::Ended {
                    return;
                }
                let sess = self.sessions.remove(&sid).expect("looked up above");
                for leg in &sess.legs {
                    self.dialogs
                        .remove(&(leg.call_id.clone(), leg.local_tag.clone()));
                }
                if let Some(stx) = sess.invite_stx {
                    self.invites.remove(&stx);
                }
            }
        }
    }

    /// Ends a session whose signalling is finished; its state lingers 64·T1 so that late
    /// retransmissions still find it, then is freed.
    fn end(&mut self, now: Instant, sid: u64) {
        if let Some(sess) = self.sessions.get_mut(&sid) {
            if sess.state != State::Ended {
                sess.state = State::Ended;
                self.active -= 1;
                for leg in &sess.legs {
                    if let Party::Peer(p) = leg.party {
                        if let Some(n) = self.peer_active.get_mut(&(leg.realm, p)) {
                            *n -= 1;
                        }
                    }
                }
                let legs = [0, 1].map(|i| LegRealm {
                    realm: sess.legs[i].realm,
                    addr: self.cfg.realms[sess.legs[i].realm].media_address,
                });
                self.anchoring.release(&mut sess.media, legs);
                let at = now + self.cfg.sip.t1 * 64;
                self.timers.insert((at, sid, SessTimer::Reap));
            }
        }
    }

    /// Hangs up both legs (BYE on each confirmed dialog) and ends the session.
    fn teardown(&mut self, now: Instant, sid: u64, why: Hangup) {
        let Some(sess) = self.sessions.get(&sid) else {
            return;
        };
        if sess.state == State::Ended {
            return;
        }
        tracing::info!(
            call_id = %sess.legs[0].call_id,
            "border hangs up the call: {}",
            why.text()
        );
        let (state, kind) = (sess.state, sess.kind);
        if (state == State::Confirmed || state == State::Terminating) && kind == Kind::Invite {
            for side in 0..2 {
                let Some((mut bye, dest)) = self.with_session(sid, |this, sess| {
                    let bye = this.build_request(sess, side, Method::Bye, None, None);
                    (bye, this.leg_dest(&sess.legs[side]))
                }) else {
                    return;
                };
                // RFC 3326: say why the border, not a user, ended the call.
                bye.headers.push(
                    "Reason",
                    format!("SIP;cause={};text=\"{}\"", why.cause(), why.text()),
                );
                self.send_local(now, sid, side, &bye, dest);
            }
        } else if let Some(stx) = sess.invite_stx {
            let initial = sess.initial.clone();
            self.reply_in_session(now, sid, stx, &initial, 408);
            self.send_cancel(now, sid);
        }
        self.end(now, sid);
    }

    fn leg_realms(&self, sess: &Session) -> [LegRealm; 2] {
        [0, 1].map(|i| LegRealm {
            realm: sess.legs[i].realm,
            addr: self.cfg.realms[sess.legs[i].realm].media_address,
        })
    }

    /// Anchors the SDP body of a message built for the leg opposite `from` on the relay.
    fn anchor_msg(
        &mut self,
        sess: &mut Session,
        from: usize,
        msg: &mut Message,
    ) -> Result<(), AnchorError> {
        let is_sdp = msg.headers.get("Content-Type").is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/sdp")
        });
        // SDP offer/answer happens in INVITE, UPDATE, PRACK and ACK and their responses
        // (RFC 3264, RFC 3311, RFC 3262); other bodies are not media descriptions.
        let offer_answer = cseq_of(msg).is_some_and(|c| {
            matches!(
                c.method,
                Method::Invite | Method::Update | Method::Prack | Method::Ack
            )
        });
        if msg.body.is_empty() || !is_sdp || !offer_answer {
            return Ok(());
        }
        let legs = self.leg_realms(sess);
        msg.body = self
            .anchoring
            .anchor(&mut sess.media, legs, from, &msg.body)?;
        Ok(())
    }

    /// Sends a request of the border's own (CANCEL, BYE on teardown) on one leg of a session;
    /// its response ends here.
    fn send_local(&mut self, now: Instant, sid: u64, side: usize, req: &Message, dest: Flow) {
        let ctx = self.tx.send_request(now, req, dest);
        self.pending.insert(
            ctx,
            Pending {
                session: sid,
                side,
                kind: PendingKind::Local,
            },
        );
    }

    /// Runs `f` with a session taken out of the table, so it can call `&mut self` builders.
    fn with_session<R>(
        &mut self,
        sid: u64,
        f: impl FnOnce(&mut Self, &mut Session) -> R,
    ) -> Option<R> {
        let mut sess = self.sessions.remove(&sid)?;
        let r = f(self, &mut sess);
        self.sessions.insert(sid, sess);
        Some(r)
    }
}

#[cfg(test)]
mod tests;
