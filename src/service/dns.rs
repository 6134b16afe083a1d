//! The IO edge of DNS routing: queries through hickory-resolver to the configured name servers,
//! answered from Palisade's own cache when it can ([`crate::routing::cache`]), and the lookup
//! that turns a [`LookupRequest`] into a route: ENUM for numbers (RFC 6116), then RFC 3263
//! (NAPTR, SRV, A/AAAA) for the partner's domain, each step written to a trace that
//! `palisade resolve` prints. The decisions are the pure functions of [`crate::routing`]; this
//! file only asks and records. Lookups run in their own tasks, never on the SIP loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::TokioResolver;
use prometheus::IntCounterVec;

use crate::config::{Config, DnsSettings, NextHop, PeerRoute, Transport};
use crate::routing::cache::{Answer, Cache, HoldDown};
use crate::routing::dns::{
    default_port, explicit, is_home_domain, peer_by_name, peer_for_domain, tls_identity,
};
use crate::routing::enum_::{self, RuleOutcome};
use crate::routing::naptr::{self, Naptr, ServiceOutcome};
use crate::routing::srv::{self, Srv};
use crate::routing::{LookupResult, Route, Router};
use crate::sip::{SipUri, Uri};

pub use super::resolve::{explain, Trace};

/// One record as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    Naptr(Naptr),
    Srv(Srv),
    Ip(IpAddr),
}

/// The NAPTRs among `records` (a query for one type answers only that type; this keeps the
/// code honest if a cache entry ever holds more).
fn only_naptrs(records: Vec<Rdata>) -> Vec<Naptr> {
    records
        .into_iter()
        .filter_map(|r| match r {
            Rdata::Naptr(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The SRVs among `records`.
fn only_srvs(records: Vec<Rdata>) -> Vec<Srv> {
    records
        .into_iter()
        .filter_map(|r| match r {
            Rdata::Srv(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The record types routing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Naptr,
    Srv,
    A,
    Aaaa,
}

impl Kind {
    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Naptr => "naptr",
            Kind::Srv => "srv",
            Kind::A => "a",
            Kind::Aaaa => "aaaa",
        }
    }
    fn record_type(self) -> RecordType {
        match self {
            Kind::Naptr => RecordType::NAPTR,
            Kind::Srv => RecordType::SRV,
            Kind::A => RecordType::A,
            Kind::Aaaa => RecordType::AAAA,
        }
    }
}

/// Where a negative answer without an SOA (so without an RFC 2308 TTL) is kept this long.
const NEGATIVE_TTL_WITHOUT_SOA: Duration = Duration::from_secs(30);

/// Counters the resolver feeds (the service's `/metrics`).
#[derive(Clone)]
pub struct DnsMetrics {
    pub lookups: IntCounterVec,
    pub cache_hits: IntCounterVec,
}

/// One list of name servers and the hickory resolver that asks them.
struct ServerSet {
    servers: Vec<SocketAddr>,
    resolver: TokioResolver,
}

/// The resolver shared by every lookup task of one service.
pub struct DnsResolver {
    /// `[dns]` servers first, then each distinct list of `[enum]` or realm servers.
    sets: Vec<ServerSet>,
    /// The set ENUM asks.
    enum_set: usize,
    /// The set the RFC 3263 lookups of each realm's partners ask, by realm index.
    realm_sets: Vec<usize>,
    /// Keyed by server set too: private trees may answer differently.
    cache: Mutex<Cache<(usize, String, Kind), Rdata>>,
    hold: Mutex<HoldDown>,
    hold_down: Duration,
    metrics: Option<DnsMetrics>,
}

/// A query that got no usable answer (timeout, refused, server failure).
#[derive(Debug, Clone)]
pub struct QueryError(pub String);

impl DnsResolver {
    /// A resolver for `cfg.dns`: its name servers (UDP, TCP for truncated answers) or, without
    /// any, the system's `/etc/resolv.conf`. hickory's own cache is off: ours counts hits and
    /// is bounded by the configuration.
    pub fn new(cfg: &Config, metrics: Option<DnsMetrics>) -> anyhow::Result<DnsResolver> {
        let d = &cfg.dns;
        let mut sets = vec![ServerSet {
            servers: d.servers.clone(),
            resolver: hickory(&d.servers, d)?,
        }];
        let mut set_for = |servers: &[SocketAddr]| -> anyhow::Result<usize> {
            if servers.is_empty() {
                return Ok(0);
            }
            if let Some(i) = sets.iter().position(|s| s.servers == servers) {
                return Ok(i);
            }
            sets.push(ServerSet {
                servers: servers.to_vec(),
                resolver: hickory(servers, d)?,
            });
            Ok(sets.len() - 1)
        };
        let enum_set = match &cfg.enum_routing {
            Some(e) => set_for(&e.servers)?,
            None => 0,
        };
        let realm_sets = cfg
            .realms
            .iter()
            .map(|r| set_for(&r.dns_servers))
            .collect::<anyhow::Result<Vec<usize>>>()?;
        Ok(DnsResolver {
            sets,
            enum_set,
            realm_sets,
            cache: Mutex::new(Cache::new(d.cache_size, d.max_ttl, d.max_negative_ttl)),
            hold: Mutex::new(HoldDown::default()),
            hold_down: d.hold_down,
            metrics,
        })
    }

    /// The name servers of a set, for traces.
    fn servers_of(&self, set: usize) -> String {
        let s = &self.sets[set].servers;
        if s.is_empty() {
            "the system resolver".to_string()
        } else {
            s.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// A target failed (timeout, 503, connection failure): later routes try it last.
    pub fn target_failed(&self, now: Instant, addr: SocketAddr) {
        if let Ok(mut h) = self.hold.lock() {
            h.hold(now, addr, self.hold_down);
        }
    }

    /// The records of `kind` at `name` (absolute), from the cache or DNS. An empty list is a
    /// negative answer (NXDOMAIN or no data); `Err` is no answer at all.
    pub async fn query(
        &self,
        set: usize,
        name: &str,
        kind: Kind,
        trace: &mut Trace,
    ) -> Result<Vec<Rdata>, QueryError> {
        let key = (set, name.to_ascii_lowercase(), kind);
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(Instant::now(), &key));
        if let Some((answer, left)) = cached {
            if let Some(m) = &self.metrics {
                m.cache_hits.with_label_values(&[kind.label()]).inc();
            }
            let records = match answer {
                Answer::Records(r) => r,
                Answer::Negative => Vec::new(),
            };
            tracing::debug!(
                name,
                r#type = kind.label(),
                records = records.len(),
                "DNS answer from the cache"
            );
            trace.query(name, kind, &Ok(records.clone()), Some(left));
            trace.lasts(left);
            return Ok(records);
        }
        let result = self.ask(set, name, kind).await;
        let count = |r: &str| {
            if let Some(m) = &self.metrics {
                m.lookups.with_label_values(&[kind.label(), r]).inc();
            }
        };
        let out = match result {
            Ok((records, ttl)) => {
                count(if records.is_empty() {
                    "none"
                } else {
                    "records"
                });
                let answer = if records.is_empty() {
                    Answer::Negative
                } else {
                    Answer::Records(records.clone())
                };
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(Instant::now(), key, answer, ttl);
                }
                trace.lasts(ttl);
                Ok(records)
            }
            Err(e) => {
                count("error");
                Err(e)
            }
        };
        match &out {
            Ok(r) => tracing::debug!(name, r#type = kind.label(), records = r.len(), "DNS answer"),
            Err(e) => {
                tracing::info!(name, r#type = kind.label(), error = %e.0, "DNS query got no answer")
            }
        }
        trace.query(name, kind, &out, None);
        out
    }

    /// One query to the name servers: the records and how long they may be kept (the smallest
    /// TTL; for a negative answer the RFC 2308 TTL hickory took from the SOA).
    async fn ask(
        &self,
        set: usize,
        name: &str,
        kind: Kind,
    ) -> Result<(Vec<Rdata>, Duration), QueryError> {
        match self.sets[set]
            .resolver
            .lookup(name, kind.record_type())
            .await
        {
            Ok(lookup) => {
                let mut ttl = u32::MAX;
                let mut out = Vec::new();
                for r in lookup.records() {
                    let rd = match r.data() {
                        RData::NAPTR(n) if kind == Kind::Naptr => Rdata::Naptr(Naptr {
                            order: n.order(),
                            preference: n.preference(),
                            flags: String::from_utf8_lossy(n.flags()).into_owned(),
                            services: String::from_utf8_lossy(n.services()).into_owned(),
                            regexp: String::from_utf8_lossy(n.regexp()).into_owned(),
                            replacement: n.replacement().to_ascii(),
                        }),
                        RData::SRV(s) if kind == Kind::Srv => Rdata::Srv(Srv {
                            priority: s.priority(),
                            weight: s.weight(),
                            port: s.port(),
                            target: s.target().to_ascii(),
                        }),
                        RData::A(a) if kind == Kind::A => Rdata::Ip(IpAddr::V4(a.0)),
                        RData::AAAA(a) if kind == Kind::Aaaa => Rdata::Ip(IpAddr::V6(a.0)),
                        // CNAMEs on the way and anything else: not an answer to keep.
                        _ => continue,
                    };
                    ttl = ttl.min(r.ttl());
                    out.push(rd);
                }
                let ttl = if out.is_empty() { 0 } else { ttl };
                Ok((out, Duration::from_secs(u64::from(ttl))))
            }
            Err(e) => {
                if let Some(p) = e.proto() {
                    // Only NXDOMAIN and an empty NOERROR say the records do not exist (RFC
                    // 2308); SERVFAIL, REFUSED and the like are failures, never cached.
                    if let ProtoErrorKind::NoRecordsFound {
                        negative_ttl,
                        response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                        ..
                    } = p.kind()
                    {
                        let ttl = negative_ttl
                            .map(|t| Duration::from_secs(u64::from(t)))
                            .unwrap_or(NEGATIVE_TTL_WITHOUT_SOA);
                        return Ok((Vec::new(), ttl));
                    }
                }
                Err(QueryError(e.to_string()))
            }
        }
    }

    /// Routes `target` (a request from the home core when `from_home`): ENUM when it is a
    /// number and `[enum]` is configured, then RFC 3263 for the partner the domain belongs to.
    /// Never a route to anything but a configured partner or the home core.
    pub async fn resolve(
        &self,
        cfg: &Config,
        target: &Uri,
        from_home: bool,
        trace: &mut Trace,
    ) -> LookupResult {
        if !from_home {
            trace.step("request from a partner: static routing only");
            return Ok(crate::routing::StaticRouter.route(cfg, from_home, target));
        }
        let mut uri = None;
        let sip: SipUri = match (&cfg.enum_routing, enum_::e164_of(target)) {
            (Some(e), Some(number)) => {
                trace.step(&format!("E.164 number {number} (from {target})"));
                match self.enum_lookup(&e.suffixes, &number, trace).await {
                    EnumResult::Uri(u) => {
                        uri = Some(Uri::Sip(u.clone()));
                        u
                    }
                    EnumResult::NoRecord => match &e.fallback {
                        Some(name) => {
                            let Some((ri, pi)) = peer_by_name(cfg, name) else {
                                return Err(500);
                            };
                            trace.step(&format!("no ENUM record: fallback partner {name}"));
                            return self.partner_route(cfg, ri, pi, None, None, trace).await;
                        }
                        None => {
                            trace.step(&format!(
                                "no ENUM record and no fallback: answer {}",
                                e.no_record_status
                            ));
                            return Err(e.no_record_status);
                        }
                    },
                    EnumResult::Failed => {
                        trace.step("ENUM gave no answer (name servers failed): answer 503");
                        return Err(503);
                    }
                }
            }
            _ => match target {
                Uri::Sip(u) => u.clone(),
                Uri::Other(_) => {
                    trace.step(&format!(
                        "{target} is not a SIP URI nor an E.164 number: 404"
                    ));
                    return Err(404);
                }
            },
        };
        let domain = sip.host_bare();
        if is_home_domain(cfg, &domain) {
            trace.step(&format!("{domain} is a home domain: to the home core"));
            return Ok(crate::routing::StaticRouter.route(cfg, false, &Uri::Sip(sip)));
        }
        let Some((ri, pi)) = peer_for_domain(cfg, &domain) else {
            tracing::warn!(%target, %domain, "DNS routing: the domain is not a configured partner's; refusing (404)");
            trace.step(&format!(
                "{domain} is not a configured partner's domain: refused with 404, nothing sent"
            ));
            return Err(404);
        };
        self.partner_route(cfg, ri, pi, Some(&sip), uri, trace)
            .await
    }

    /// The route to partner `(ri, pi)`: its policy's static next hop, or RFC 3263 on `sip`'s
    /// host (its first domain when there is no URI, as for the ENUM fallback).
    async fn partner_route(
        &self,
        cfg: &Config,
        ri: usize,
        pi: usize,
        sip: Option<&SipUri>,
        uri: Option<Uri>,
        trace: &mut Trace,
    ) -> LookupResult {
        let peer = &cfg.realms[ri].peers[pi];
        trace.step(&format!(
            "partner {} (realm {}, policy {}): route {}, transports {}",
            peer.name,
            peer.realm,
            peer.origin.display(),
            match peer.dns.route {
                PeerRoute::Static => "static",
                PeerRoute::Dns => "dns",
            },
            peer.dns
                .transports
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let targets = if peer.dns.route == PeerRoute::Static {
            vec![peer.next_hop.clone()]
        } else {
            let fallback_uri;
            let sip = match sip {
                Some(s) => s,
                None => {
                    let d = peer.domains.first().cloned().unwrap_or_default();
                    fallback_uri = SipUri::parse(&format!("sip:{d}")).ok_or(500u16)?;
                    &fallback_uri
                }
            };
            let set = self.realm_sets.get(ri).copied().unwrap_or(0);
            trace.step(&format!(
                "RFC 3263 for {} (asking {})",
                sip.host_bare(),
                self.servers_of(set)
            ));
            let found = self.locate(set, sip, &peer.dns.transports, trace).await?;
            let now = Instant::now();
            match self.hold.lock() {
                Ok(h) => {
                    for t in &found {
                        if h.is_held(now, t.addr) {
                            trace
                                .step(&format!("{} is held down (failed recently): tried last", t));
                        }
                    }
                    h.order(now, found)
                }
                Err(_) => found,
            }
        };
        if targets.iter().any(|t| t.transport == Transport::Tls) {
            trace.step(&format!(
                "TLS: the partner must prove {}",
                tls_identity(peer)
            ));
        }
        if targets.is_empty() {
            trace.step("no target found: answer 404");
            return Err(404);
        }
        trace.targets = targets.clone();
        Ok(Route::Peer {
            realm: ri,
            peer: pi,
            targets,
            uri,
        })
    }

    /// ENUM: the number's domain under each suffix in turn; the first with a usable
    /// `E2U+sip` rule gives the URI. "No record" only when every suffix answered: a tree that
    /// did not answer might have had one, so that is a failure (503, the caller may retry).
    async fn enum_lookup(
        &self,
        suffixes: &[String],
        number: &str,
        trace: &mut Trace,
    ) -> EnumResult {
        let mut failed = false;
        for suffix in suffixes {
            let name = enum_::enum_domain(number, suffix);
            let servers = self.servers_of(self.enum_set);
            trace.step(&format!("ENUM: query NAPTR {name} (asking {servers})"));
            let records = match self.query(self.enum_set, &name, Kind::Naptr, trace).await {
                Ok(r) => r,
                Err(_) => {
                    failed = true;
                    continue;
                }
            };
            let naptrs = only_naptrs(records);
            let (steps, chosen) = enum_::choose(&naptrs, number);
            for (n, outcome) in &steps {
                let what = match outcome {
                    RuleOutcome::OtherService => "skipped: not E2U+sip".to_string(),
                    RuleOutcome::NonTerminal => "skipped: non-terminal rule".to_string(),
                    RuleOutcome::Failed(e) => format!("skipped: {e}"),
                    RuleOutcome::Applied(u) => format!("applied: {number} -> {u}"),
                    RuleOutcome::NotReached => "not reached".to_string(),
                };
                trace.step(&format!(
                    "  order {} pref {}: {n}: {what}",
                    n.order, n.preference
                ));
            }
            if let Some(Uri::Sip(u)) = chosen {
                return EnumResult::Uri(u);
            }
        }
        if failed {
            EnumResult::Failed
        } else {
            EnumResult::NoRecord
        }
    }

    /// RFC 3263 §4: the ordered targets for `uri` within the transports the partner allows.
    async fn locate(
        &self,
        set: usize,
        uri: &SipUri,
        allowed: &[Transport],
        trace: &mut Trace,
    ) -> Result<Vec<NextHop>, u16> {
        let host = uri.host_bare();
        let (want, port) = explicit(uri).map_err(|e| {
            trace.step(&format!("{uri}: {e}: 404"));
            404u16
        })?;
        if let Some(t) = want {
            if !allowed.contains(&t) {
                trace.step(&format!(
                    "{uri} asks for {} which the partner's policy does not allow: 404",
                    t.as_str()
                ));
                return Err(404);
            }
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            let t = want.unwrap_or(Transport::Udp);
            let addr = SocketAddr::new(ip, port.unwrap_or(default_port(t)));
            trace.step(&format!("{host} is an address: no DNS"));
            return Ok(vec![NextHop { transport: t, addr }]);
        }
        // §4.2: an explicit port means A/AAAA only.
        if let Some(port) = port {
            // §4.1 says UDP for a sip: URI; a partner that does not allow it gets the first
            // transport it does.
            let t = want.unwrap_or_else(|| first_allowed(allowed));
            trace.step(&format!("explicit port {port}: A/AAAA of {host} only"));
            return self.addresses(set, &host, port, t, trace).await;
        }
        // §4.1: a sips: URI without a transport parameter still goes through NAPTR, for TLS
        // services only; a transport parameter skips NAPTR.
        let sips_only = uri.secure && uri.param("transport").is_none();
        let allowed: Vec<Transport> = if sips_only {
            vec![Transport::Tls]
        } else {
            allowed.to_vec()
        };
        let services: Vec<(Transport, String)> = match want {
            Some(t) if !sips_only => {
                trace.step(&format!("explicit transport {}: SRV only", t.as_str()));
                vec![(t, naptr::srv_name(t, &host))]
            }
            _ => {
                let name = format!("{}.", host.trim_end_matches('.'));
                let records = self
                    .query(set, &name, Kind::Naptr, trace)
                    .await
                    .map_err(|_| 503u16)?;
                let naptrs = only_naptrs(records);
                let (steps, chosen) = naptr::sip_services(&naptrs, &allowed);
                for (n, outcome) in &steps {
                    let what = match outcome {
                        ServiceOutcome::Use(t) => format!("use {}", t.as_str()),
                        ServiceOutcome::Ignored(why) => format!("ignored: {why}"),
                        ServiceOutcome::NotAllowed(t) if sips_only => {
                            format!("skipped: {} cannot carry a sips: URI", t.as_str())
                        }
                        ServiceOutcome::NotAllowed(t) => {
                            format!(
                                "skipped: {} not allowed by the partner's policy",
                                t.as_str()
                            )
                        }
                    };
                    trace.step(&format!(
                        "  order {} pref {}: {n}: {what}",
                        n.order, n.preference
                    ));
                }
                if naptrs.is_empty() {
                    // §4.1: no NAPTR: SRV for each transport we may use, TLS first.
                    [Transport::Tls, Transport::Tcp, Transport::Udp]
                        .into_iter()
                        .filter(|t| allowed.contains(t))
                        .map(|t| (t, naptr::srv_name(t, &host)))
                        .collect()
                } else {
                    chosen
                }
            }
        };
        let mut out = Vec::new();
        let mut any_srv = false;
        let mut failed = false;
        for (t, name) in &services {
            let records = match self.query(set, name, Kind::Srv, trace).await {
                Ok(r) => r,
                Err(_) => {
                    failed = true;
                    continue;
                }
            };
            let srvs = only_srvs(records);
            any_srv |= !srvs.is_empty();
            let ordered = srv::order(&srvs, &mut rand::rng());
            for s in ordered {
                let target = s.target.trim_end_matches('.').to_string();
                match self.addresses(set, &target, s.port, *t, trace).await {
                    Ok(hops) => out.extend(hops),
                    Err(_) => failed = true,
                }
            }
        }
        if !any_srv && out.is_empty() && !failed {
            // §4.2: no SRV at all: the host's own addresses on the default port.
            let t = want.unwrap_or_else(|| first_allowed(&allowed));
            trace.step(&format!("no SRV: A/AAAA of {host} with the default port"));
            out = self
                .addresses(set, &host, default_port(t), t, trace)
                .await?;
        }
        if out.is_empty() && failed {
            return Err(503);
        }
        out.dedup();
        Ok(out)
    }

    /// A then AAAA of `host`.
    async fn addresses(
        &self,
        set: usize,
        host: &str,
        port: u16,
        transport: Transport,
        trace: &mut Trace,
    ) -> Result<Vec<NextHop>, u16> {
        let name = format!("{}.", host.trim_end_matches('.'));
        let mut out = Vec::new();
        let mut errors = 0;
        for kind in [Kind::A, Kind::Aaaa] {
            match self.query(set, &name, kind, trace).await {
                Ok(records) => out.extend(records.into_iter().filter_map(|r| match r {
                    Rdata::Ip(ip) => Some(NextHop {
                        transport,
                        addr: SocketAddr::new(ip, port),
                    }),
                    _ => None,
                })),
                Err(_) => errors += 1,
            }
        }
        if out.is_empty() && errors > 0 {
            return Err(503);
        }
        Ok(out)
    }
}

/// UDP, else TCP, else TLS: the first of them `allowed` lists.
fn first_allowed(allowed: &[Transport]) -> Transport {
    [Transport::Udp, Transport::Tcp, Transport::Tls]
        .into_iter()
        .find(|t| allowed.contains(t))
        .unwrap_or(Transport::Udp)
}

/// Every list of name servers the configuration names (`[dns]`, `[enum]`, each realm's): the
/// resolver is built from them at start, so a change needs a restart.
pub fn server_lists(cfg: &Config) -> Vec<Vec<SocketAddr>> {
    let mut v = vec![cfg.dns.servers.clone()];
    v.extend(cfg.enum_routing.iter().map(|e| e.servers.clone()));
    v.extend(cfg.realms.iter().map(|r| r.dns_servers.clone()));
    v
}

/// A hickory resolver asking `servers` (UDP, TCP for truncated answers), or the system's
/// `/etc/resolv.conf` when there are none, with the `[dns]` limits. hickory's own cache is off:
/// ours counts hits and is bounded by the configuration.
fn hickory(servers: &[SocketAddr], d: &DnsSettings) -> anyhow::Result<TokioResolver> {
    let (rc, mut opts) = if servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| anyhow::anyhow!("reading the system resolver configuration: {e}"))?
    } else {
        let mut rc = ResolverConfig::new();
        for s in servers {
            rc.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
            rc.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
        }
        (rc, ResolverOpts::default())
    };
    opts.timeout = d.timeout;
    opts.attempts = d.attempts;
    opts.cache_size = 0;
    opts.ndots = 0;
    // Ask the servers in the configured order rather than by hickory's latency statistics, so
    // the one listed first is asked first.
    opts.server_ordering_strategy =
        hickory_resolver::config::ServerOrderingStrategy::UserProvidedOrder;
    Ok(
        hickory_resolver::Resolver::builder_with_config(rc, TokioConnectionProvider::default())
            .with_options(opts)
            .build(),
    )
}

enum EnumResult {
    Uri(SipUri),
    NoRecord,
    Failed,
}
