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
use build::{anchor_status, response_flow, Sealed};
mod call;
mod cancel;
mod dispatch;
mod drain;
mod setup;
mod subscription;
pub use drain::DRAIN_RETRY_AFTER_S;
mod parking;
use correlation::corr_id;
use parking::Parked;
mod correlation;
mod dialog_index;
pub use dialog_index::DialogIndex;
pub mod events;
mod failover;
mod outbox;
use outbox::Outbox;
mod fork;
mod partners;
use partners::Partners;
pub use partners::{PartnerStatus, PeerId};
pub mod hiding;
mod in_dialog;
mod leg;
mod memory;
pub use memory::HeldBytes;
pub mod media;
mod privacy;
mod replaces;
#[doc(hidden)]
pub mod replay;
mod responses;
mod session;
mod shard;
pub use shard::Shard;
mod snapshot;
pub use snapshot::{
    CallSnapshot, LegSnapshot, PartySnapshot, ReferSnapshot, RestoreError, SnapshotError,
    SNAPSHOT_VERSION,
};
mod timers;
mod transfer;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::{Config, RealmKind, Transport};
use crate::routing::{LookupId, LookupRequest, LookupResult, Route, Router, StaticRouter};
use crate::sip::{
    parse_message, CSeq, Limits, Message, Method, NameAddr, ParseError, StartLine, Uri, Via,
};
use crate::transaction::{
    ClientTxId, Flow, RequestDisposition, ResponseDisposition, ServerTxId, Timers, Transmit,
    TxEvent,
};

use crate::media::FlowId;
use call::{AwaitAck, Provisional, SentAck};
pub use events::{DropReason, EndedBy, Event, Origin, RejectReason};
use media::{Anchoring, LegRealm, MediaCommand};
use session::{Confirmed, Kind, Leg, Pending, PendingKind, Session, Setup, Usage};
use subscription::Refer;

/// One message as received by a transport.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Index of the realm whose listener received it.
    pub realm: usize,
    pub transport: Transport,
    pub remote: SocketAddr,
    pub bytes: &'a [u8],
    /// The partner a TLS connection proved with its certificate (the name in its policy); the
    /// engine selects the partner by it, not by `remote`. `None` on UDP and TCP.
    pub peer: Option<&'a str>,
}

/// What a request over a stream connection (TCP, TLS) tells the transport about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionHint {
    /// The connection (its flow as the transport keys it).
    pub conn: Flow,
    /// The source address with the Via sent-by port (or the transport's default): where a
    /// response goes if the connection is gone before it is sent (RFC 3261 §18.2.2).
    pub sent_by: SocketAddr,
    /// The partner offered the connection for our requests to `sent_by` (RFC 5923 alias,
    /// checked against the addresses of the partner the certificate proved).
    pub alias: bool,
}

/// Who sent a message: this operator's core, or one of the peers of the realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Core,
    Peer(PeerId),
}

/// Why [`Border::reconfigure`] refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigureError {
    #[error("realms, listeners or relay port ranges changed: a restart is needed to apply them")]
    RealmsChanged,
}

/// Counters kept by the engine; the service exports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub dropped_unknown_source: u64,
    pub dropped_malformed: u64,
    /// Messages from partners over their `max_bytes_per_second`.
    pub dropped_byte_rate: u64,
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
    /// The service is stopping ([`Border::hang_up_all`]).
    Shutdown,
}

impl Hangup {
    fn text(self) -> &'static str {
        match self {
            Hangup::MediaInactivity => "Media inactivity",
            Hangup::DialogIdle => "Dialog idle timeout",
            Hangup::AckTimeout => "No ACK",
            Hangup::Shutdown => "Border shutting down",
        }
    }

    /// The SIP status the Reason header carries (RFC 3326).
    fn cause(self) -> u16 {
        match self {
            Hangup::MediaInactivity | Hangup::DialogIdle | Hangup::AckTimeout => 408,
            Hangup::Shutdown => 503,
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
    /// A parked request's route lookup ran out of time (the id is the lookup's, not a session).
    Lookup,
}

/// The B2BUA engine of one border instance.
///
/// # Driving it
/// Feed [`Border::handle_input`] with what the transports received, [`Border::handle_timeout`]
/// when [`Border::poll_timeout`] is due, and [`Border::media_idle`] with the TrGW's idle report.
/// After each input drain, in this order: [`Border::poll_media`] (so a relay port is open before
/// the SDP naming it reaches anyone), [`Border::poll_connection_hint`] (before the messages
/// that may travel on those connections), [`Border::poll_transmit`], [`Border::poll_lookup`] (the
/// routes to find for parked requests: answer each, now or later, with
/// [`Border::handle_lookup`]), then [`Border::poll_event`] (events describe what was just
/// sent; they never have to be consumed for the engine to make progress, and beyond
/// [`events::EVENT_BACKLOG`] the oldest are discarded and counted in [`Border::events_lost`]).
/// Finally re-read [`Border::poll_timeout`].
pub struct Border {
    cfg: Arc<Config>,
    router: Box<dyn Router + Send>,
    tx: Outbox,
    limits: Limits,
    rng: StdRng,
    /// Boxed: a session is about a kilobyte inline, and a table keeps up to twice its length
    /// in slots; a box per session costs a pointer per slot instead.
    sessions: HashMap<u64, Box<Session>>,
    next_session: u64,
    /// Makes the sessions' correlation ids (`correlation`).
    corr_salt: u32,
    /// (Call-ID, our tag) → (session, side). Our tags are unique, so this finds every dialog.
    dialogs: HashMap<(String, String), (u64, usize)>,
    /// The answered calls of every shard, for dialog references to another shard's dialog
    /// (`dialog_index`); none with one shard.
    dialog_index: Option<Arc<DialogIndex>>,
    /// Initial INVITE server transactions, for CANCEL.
    invites: HashMap<ServerTxId, u64>,
    pending: HashMap<ClientTxId, Pending>,
    timers: BTreeSet<(Instant, u64, SessTimer)>,
    anchoring: Anchoring,
    /// Sessions not yet ended, in all and per (realm, peer): the call limits are checked on
    /// every INVITE, so they are counted, not recomputed.
    active: usize,
    partners: Partners,
    /// Realm names by index, shared with events.
    realm_names: Vec<Arc<str>>,
    parked: HashMap<LookupId, Parked>,
    parked_by_stx: HashMap<ServerTxId, LookupId>,
    lookups: VecDeque<LookupRequest>,
    /// What the transport should know of connections requests came over (RFC 5923 aliases,
    /// RFC 3261 §18.2.2 fallbacks).
    conn_hints: VecDeque<ConnectionHint>,
    next_lookup: u64,
    stats: Stats,
    events: VecDeque<Event>,
    /// Events dropped because the backlog was full (the consumer fell behind).
    events_lost: u64,
    /// Domains that are public on the interconnect (ours and every partner's): a URI naming any
    /// other host is rewritten toward a peer.
    public_domains: Vec<String>,
    /// Set by the service while its input backlog is deep: new calls get 503 at once.
    overloaded: bool,
    /// Where each open server transaction's request came from, for [`Event::RequestAnswered`].
    stx_origin: HashMap<ServerTxId, (Method, usize, Party)>,
    /// New requests get 503 ([`Border::begin_drain`], `drain.rs`).
    draining: bool,
    /// Which of the process's engines this is (`shard.rs`).
    shard: Shard,
    /// REFERs the border handles as the referee, by session (`transfer.rs`).
    transfers: HashMap<u64, transfer::Transfer>,
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

/// Our home domains and every partner's: the names that may appear on the interconnect.
fn interconnect_domains(cfg: &Config) -> Vec<String> {
    let mut d = cfg.home_domains.clone();
    for r in &cfg.realms {
        for p in &r.peers {
            d.extend(p.domains.iter().cloned());
        }
    }
    d
}

impl Border {
    pub fn new(cfg: Arc<Config>, seed: u64) -> Self {
        Self::with_router(cfg, seed, Box::new(StaticRouter))
    }

    pub fn with_router(cfg: Arc<Config>, seed: u64, router: Box<dyn Router + Send>) -> Self {
        Self::sharded(cfg, seed, router, Shard::ONE)
    }

    /// Shard `shard.index` of a process that runs `shard.count` engines side by side. `cfg` is
    /// that shard's share ([`Config::shard`]): its slice of the relay ports, its part of each
    /// limit.
    pub fn sharded(
        cfg: Arc<Config>,
        seed: u64,
        router: Box<dyn Router + Send>,
        shard: Shard,
    ) -> Self {
        let timers = Timers {
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            t4: cfg.sip.t4,
        };
        let limits = Limits {
            max_message_size: cfg.sip.max_message_size,
            max_headers: cfg.sip.max_headers,
        };
        let anchoring = Anchoring::new(&cfg, shard);
        let partners = Partners::new(&cfg);
        let realm_names = cfg
            .realms
            .iter()
            .map(|r| Arc::from(r.name.as_str()))
            .collect();
        let public_domains = interconnect_domains(&cfg);
        Border {
            overloaded: false,
            public_domains,
            cfg,
            router,
            tx: Outbox::new(timers),
            limits,
            rng: StdRng::seed_from_u64(seed),
            sessions: HashMap::new(),
            next_session: 0,
            corr_salt: correlation::salt(seed),
            dialogs: HashMap::new(),
            dialog_index: None,
            invites: HashMap::new(),
            pending: HashMap::new(),
            timers: BTreeSet::new(),
            anchoring,
            active: 0,
            partners,
            realm_names,
            parked: HashMap::new(),
            parked_by_stx: HashMap::new(),
            lookups: VecDeque::new(),
            conn_hints: VecDeque::new(),
            next_lookup: 0,
            stats: Stats::default(),
            events: VecDeque::new(),
            events_lost: 0,
            stx_origin: HashMap::new(),
            draining: false,
            shard,
            transfers: HashMap::new(),
        }
    }

    /// Takes a new configuration while calls run (a reload). Partners are matched by name (see
    /// [`PeerId`]): live calls stay on the partner they were set up with, a removed partner's
    /// calls run to their end, new requests use the new policy. Realms are tied to bound
    /// listeners and relay port pools, so a configuration that changes them is refused (the
    /// service must restart for that) and nothing is applied.
    pub fn reconfigure(&mut self, cfg: Arc<Config>) -> Result<(), ReconfigureError> {
        let same_realms = self.cfg.realms.len() == cfg.realms.len()
            && self.cfg.realms.iter().zip(&cfg.realms).all(|(a, b)| {
                a.name == b.name
                    && a.kind == b.kind
                    && a.listen == b.listen
                    && a.advertise == b.advertise
                    && a.media_address == b.media_address
                    && a.media_ports == b.media_ports
            });
        if !same_realms {
            return Err(ReconfigureError::RealmsChanged);
        }
        self.partners.swap(&cfg);
        self.public_domains = interconnect_domains(&cfg);
        self.limits = Limits {
            max_message_size: cfg.sip.max_message_size,
            max_headers: cfg.sip.max_headers,
        };
        self.cfg = cfg;
        Ok(())
    }

    /// Load shedding (RFC 6357): while set, new INVITEs from anyone get 503 with Retry-After at
    /// once, ahead of routing, while requests within dialogs, CANCEL, ACK and responses go on.
    /// The service sets it from what it measures (its input backlog).
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// Every partner with its calls in progress and when it was last heard from (for
    /// `palisade status`).
    pub fn partner_status(&self, now: Instant) -> Vec<PartnerStatus> {
        self.partners.status(now, &self.realm_names)
    }

    /// The addresses a realm may hear from: its core's, or its partners' (those removed by a
    /// reload whose calls still run included). The transport screens UDP sources with it.
    pub fn known_sources(&self, realm: usize) -> Vec<std::net::IpAddr> {
        match self.cfg.realms.get(realm) {
            Some(r) if r.kind == RealmKind::Home => r.core_sources.clone(),
            Some(_) => self.partners.sources(realm),
            None => Vec::new(),
        }
    }

    /// Partners the engine holds, those removed by a reload whose calls still run included.
    pub fn partners_known(&self) -> usize {
        self.partners.known()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The configuration in force, shared (for work done outside the engine, such as lookups).
    pub fn config_shared(&self) -> Arc<Config> {
        self.cfg.clone()
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
            self.dialogs.len()
                + self.invites.len()
                + self.stx_origin.len()
                + self.parked_len()
                + self.transfers_len(),
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
            .filter(|(_, s)| {
                s.usage.call().is_some_and(|c| {
                    matches!(c.phase, call::Phase::Confirmed(_))
                        && !c.media.is_empty()
                        && c.media.flows().all(|f| idle.contains(&f))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for sid in dead {
            self.teardown(now, sid, Hangup::MediaInactivity);
        }
    }

    /// The next event (see [`Event`]), oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Events discarded because nobody drained them (the backlog holds
    /// [`events::EVENT_BACKLOG`]).
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
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
        self.shrink_tables();
    }

    fn leg_realms(&self, sess: &Session) -> [LegRealm; 2] {
        [0, 1].map(|i| LegRealm {
            realm: sess.legs[i].realm,
            addr: self.cfg.realms[sess.legs[i].realm].media_address,
        })
    }

    /// Sends a request of the border's own (CANCEL, BYE on teardown) on one leg of a session;
    /// its response ends here.
    fn send_local(&mut self, now: Instant, sid: u64, side: usize, req: &Sealed, dest: Flow) {
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
        let _call = self.call_span(sid);
        let r = f(self, &mut sess);
        self.sessions.insert(sid, sess);
        Some(r)
    }
}

#[cfg(test)]
mod tests;
