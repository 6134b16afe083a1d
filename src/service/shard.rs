//! One B2BUA engine (shard) and the task that drives it. The service runs one per core
//! (`[service] shards`); each owns the calls whose Call-IDs steer to it
//! ([`crate::sip::steer`]), so no lock is taken on the message path and the shards share
//! nothing but the transports' sockets and the media plane.
//!
//! A shard is fed the messages its Call-IDs steer to (straight from the transport readers, see
//! [`crate::transport::Inbox`]), its timers, its route lookups' answers, and [`Control`]s from
//! the coordinating loop in `service::run`. What it produces goes out in the order the engine
//! documents (media, then transmits): a batch that opens or changes a relay flow, names a
//! connection, or needs a TLS target's partner registered goes through the coordinator, which
//! owns the media plane and the connection table; UDP datagrams otherwise leave from the shard
//! itself. While a batch of a shard is with the coordinator, the shard's later datagrams follow
//! it there, so nothing of one shard overtakes what it sent before.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{admin, dns, log_event, spawn_lookup};
use crate::b2bua::{Border, ConnectionHint, Inbound, PartnerStatus, ReconfigureError};
use crate::config::{Config, Transport};
use crate::media::control::MediaCommand;
use crate::media::FlowId;
use crate::routing::dns::DnsRouter;
use crate::routing::{LookupId, LookupResult};
use crate::transaction::{Flow, Transmit};
use crate::transport::Received;

/// How many engines a configuration asks for: `[service] shards`, or one per available core.
pub fn count(cfg: &Config) -> usize {
    match cfg.service.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// What the coordinating loop tells a shard.
#[derive(Debug)]
pub enum Control {
    /// A connection could not be opened: what was sent over it failed (every shard may have
    /// used it).
    TransportFailed(Flow),
    /// Relay flows of this shard without media for too long.
    MediaIdle(HashSet<FlowId>),
    /// A reload: this shard's share of the new configuration; the answer says if it took it.
    /// When taken, the answer names the sources each realm now knows (for the UDP screens).
    Reconfigure(
        Arc<Config>,
        oneshot::Sender<Result<Vec<Vec<IpAddr>>, ReconfigureError>>,
    ),
    BeginDrain,
    /// Hang up everything; the answer comes once the shard counts what it waits for.
    HangUpAll(oneshot::Sender<()>),
}

/// A TLS target a route lookup gave: who must answer there, and for how long DNS vouches for
/// it (`None`: not from DNS).
#[derive(Debug, Clone)]
pub struct Expect {
    pub realm: usize,
    pub addr: SocketAddr,
    pub partner: Arc<str>,
    pub ttl: Option<Duration>,
}

/// What a lookup task hands back: the route (or status) and the shortest TTL it relied on.
pub type LookupAnswer = (LookupId, LookupResult, Option<Duration>);

/// What a shard hands the coordinator, in the order it must be performed.
#[derive(Debug, Default)]
pub struct Batch {
    pub shard: usize,
    /// TLS targets a route lookup gave, with the partner their certificate must prove.
    pub expect: Vec<Expect>,
    pub media: Vec<MediaCommand>,
    pub hints: Vec<ConnectionHint>,
    pub transmits: Vec<Transmit>,
}

/// What the coordinator reads of a shard without asking it (status, drain, metrics).
#[derive(Debug, Default)]
pub struct Gauges {
    pub active: AtomicUsize,
    pub hangups_outstanding: AtomicUsize,
    pub events_lost: AtomicU64,
    /// `Border::held_bytes().total()`, refreshed once a second with the partners: it walks
    /// every session, which is too much to do after each message.
    pub held_bytes: AtomicUsize,
    /// `Border::held_state`, refreshed with `held_bytes`: entries per table, in the order of
    /// [`crate::service::metrics::ENGINE_TABLES`].
    pub entries: [AtomicUsize; 4],
    /// Batches sent to the coordinator and not yet performed.
    pub in_flight: AtomicUsize,
    /// The shard's partners, refreshed once a second.
    pub partners: Mutex<Vec<PartnerStatus>>,
}

/// The coordinator's handle of one shard.
pub struct Handle {
    pub control: mpsc::UnboundedSender<Control>,
    pub gauges: Arc<Gauges>,
}

/// Everything a shard task needs besides its engine.
pub struct Parts {
    pub index: usize,
    pub border: Border,
    pub input: mpsc::Receiver<Received>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub out: mpsc::UnboundedSender<Batch>,
    pub gauges: Arc<Gauges>,
    /// The UDP listening socket of each realm, for datagrams sent from the shard itself.
    pub udp: Vec<Option<Arc<tokio::net::UdpSocket>>>,
    pub admin: Arc<admin::AdminState>,
    pub resolver: Arc<dns::DnsResolver>,
    /// Where this shard publishes its queue delay for the transports' admission stage.
    pub admission: Arc<crate::transport::Admission>,
}

/// How often a shard refreshes the partner table the coordinator shows in `/status`.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Makes shard `index` of `count` for a configuration, its relay ports slice `index` of
/// `slices` (one more than the shards when the ng control path takes a slice too).
pub fn engine(cfg: &Config, index: usize, count: usize, slices: usize) -> Border {
    let share = Arc::new(cfg.shard_in(index, count, slices));
    let shard = crate::b2bua::Shard { index, count };
    Border::sharded(share, rand::random::<u64>(), Box::new(DnsRouter), shard)
}

/// Drives one engine until the coordinator goes away.
pub async fn run(mut p: Parts) {
    let (lookup_tx, mut lookup_rx) = mpsc::unbounded_channel::<LookupAnswer>();
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = p.border.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut expect = Vec::new();
        tokio::select! {
            ev = p.input.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                // What is still queued behind this message is the load the engine is behind by.
                let sip = &p.border.config().sip;
                let waited = match &ev {
                    Received::Message { at, .. } => now.saturating_duration_since(*at),
                    _ => Duration::ZERO,
                };
                let overloaded = p.input.len() > sip.overload_backlog || waited > sip.overload_delay;
                p.border.set_overloaded(overloaded);
                // Zero once nothing waits behind: the readers must not go on refusing calls to
                // an idle shard on the delay of the last burst.
                let behind = if p.input.is_empty() { Duration::ZERO } else { waited };
                p.admission.publish(p.index, behind);
                if let Received::Message { flow, bytes, peer, .. } = ev {
                    p.border.handle_input(now, Inbound {
                        realm: flow.realm,
                        transport: flow.transport,
                        remote: flow.remote,
                        bytes: &bytes,
                        peer: peer.as_deref(),
                    });
                }
            }
            _ = sleep => p.border.handle_timeout(Instant::now()),
            Some((id, result, ttl)) = lookup_rx.recv() => {
                // A TLS target DNS gave must prove the partner the route is for, not merely
                // any partner of the realm: the transport learns who lives there first.
                if let Ok(crate::routing::Route::Peer { realm, peer, targets, .. }) = &result {
                    let cfg = p.border.config();
                    if let Some(name) = cfg.realms.get(*realm).and_then(|r| r.peers.get(*peer)) {
                        let name: Arc<str> = Arc::from(name.name.as_str());
                        for t in targets.iter().filter(|t| t.transport == Transport::Tls) {
                            expect.push(Expect {
                                realm: *realm,
                                addr: t.addr,
                                partner: name.clone(),
                                ttl,
                            });
                        }
                    }
                }
                p.border.handle_lookup(Instant::now(), id, result)
            }
            c = p.control.recv() => {
                let Some(c) = c else { break };
                let now = Instant::now();
                match c {
                    Control::TransportFailed(flow) => p.border.transport_failed(now, flow),
                    Control::MediaIdle(idle) => p.border.media_idle(now, &idle),
                    Control::Reconfigure(cfg, answer) => {
                        let realms = cfg.realms.len();
                        let taken = p.border.reconfigure(cfg).map(|()| {
                            (0..realms).map(|ri| p.border.known_sources(ri)).collect()
                        });
                        let _ = answer.send(taken);
                    }
                    Control::BeginDrain => p.border.begin_drain(),
                    Control::HangUpAll(done) => {
                        p.border.hang_up_all(now);
                        drain_outputs(&mut p, Vec::new(), &lookup_tx);
                        let _ = done.send(());
                        continue;
                    }
                }
            }
            _ = status_tick.tick() => {
                let partners = p.border.partner_status(Instant::now());
                if let Ok(mut g) = p.gauges.partners.lock() {
                    *g = partners;
                }
                p.gauges.held_bytes.store(p.border.held_bytes().total(), Ordering::Relaxed);
                let (sessions, dialogs, pending, transactions) = p.border.held_state();
                for (g, n) in p.gauges.entries.iter().zip([sessions, dialogs, pending, transactions]) {
                    g.store(n, Ordering::Relaxed);
                }
            }
        }
        drain_outputs(&mut p, expect, &lookup_tx);
    }
}

/// Takes everything the engine produced after one input, in the engine's drain order.
fn drain_outputs(
    p: &mut Parts,
    expect: Vec<Expect>,
    lookups: &mpsc::UnboundedSender<LookupAnswer>,
) {
    let mut batch = Batch {
        shard: p.index,
        expect,
        ..Batch::default()
    };
    while let Some(cmd) = p.border.poll_media() {
        batch.media.push(cmd);
    }
    while let Some(h) = p.border.poll_connection_hint() {
        batch.hints.push(h);
    }
    let through_coordinator = !batch.media.is_empty()
        || !batch.hints.is_empty()
        || !batch.expect.is_empty()
        || p.gauges.in_flight.load(Ordering::Acquire) > 0;
    while let Some(t) = p.border.poll_transmit() {
        let direct = match (&p.udp.get(t.flow.realm), t.flow.transport) {
            (Some(Some(sock)), Transport::Udp) if !through_coordinator => Some(sock),
            _ => None,
        };
        match direct {
            Some(sock) => {
                // As the transports do: a full socket buffer loses the datagram, and SIP's
                // retransmissions recover it, as for loss on the network.
                if let Err(e) = sock.try_send_to(&t.bytes, t.flow.remote) {
                    tracing::debug!(remote = %t.flow.remote, "udp send failed: {e}");
                }
            }
            None => batch.transmits.push(t),
        }
    }
    while let Some(req) = p.border.poll_lookup() {
        spawn_lookup(&p.resolver, p.border.config_shared(), req, lookups.clone());
    }
    let m = &p.admin.metrics;
    while let Some(ev) = p.border.poll_event() {
        log_event(&ev);
        m.observe(&ev);
        if let crate::b2bua::Event::TargetFailed { target, .. } = &ev {
            p.resolver.target_failed(Instant::now(), *target);
        }
    }
    let g = &p.gauges;
    g.active
        .store(p.border.active_sessions(), Ordering::Relaxed);
    g.hangups_outstanding
        .store(p.border.hangups_outstanding(), Ordering::Relaxed);
    g.events_lost
        .store(p.border.events_lost(), Ordering::Relaxed);
    let empty = batch.expect.is_empty()
        && batch.media.is_empty()
        && batch.hints.is_empty()
        && batch.transmits.is_empty();
    if !empty {
        g.in_flight.fetch_add(1, Ordering::AcqRel);
        if p.out.send(batch).is_err() {
            g.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
