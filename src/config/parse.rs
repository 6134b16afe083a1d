//! Reading the TOML files into the typed model: a hand-written walker over toml's spanned
//! document tree (`toml::de::DeTable`), so that every problem (unknown key, wrong type, bad
//! value, cross-file conflict) is collected with its position instead of stopping at the first.
//!
//! Field paths: dotted, following the TOML keys, with a realm or inline peer named by its `name`
//! once that is known (`realm.interconnect.listen[0]`, `realm.interconnect.peer.operator-b.sources[0]`)
//! and by index before (`realm[1].name`). Inside a peer policy file the path is relative to that
//! file (`sources[0]`), since the error already names the file.
//!
//! Layout: this file holds the key lists, defaults and [`parse`], which drives the rest:
//! `reader` (the parse context and the spanned-table getters), `values` (addresses, domains,
//! header policies...), `settings` (`[sip]`, `[media]`), `realm` (realms, inline peers, peer
//! policy files) and `checks` (everything that spans realms, peers and files). The submodules
//! share this file's imports through `use super::*`.

mod checks;
mod dns;
mod ng;
mod reader;
mod realm;
mod settings;
mod tls;
mod values;

use super::ConfigErrorKind as Kind;
use super::*;
use checks::{cross_checks, media_overlaps};
use reader::{document, Ctx, Reader, Sp, Tab};
use realm::{realm, RawRealm};
use settings::{admin_settings, media_settings, service_settings, sip_settings};
use std::collections::HashMap;
use std::ops::Range;
use std::str::FromStr;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use values::{
    domain_list, headers, is_token, parse_ip, parse_next_hop, parse_port_range, parse_refer,
    parse_transport_addr, parse_trust,
};

pub(super) const DEFAULT_ALLOW_HEADERS: &[&str] = &[
    "Allow",
    "Supported",
    "Require",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "MIME-Version",
    "Session-Expires",
    "Min-SE",
    "RSeq",
    "RAck",
    "Event",
    "Allow-Events",
    "Subscription-State",
    "Refer-To",
    "Referred-By",
    "Replaces",
    "Join",
    "Expires",
    "Reason",
    "Unsupported",
    "Min-Expires",
    "Retry-After",
    "Info-Package",
    "Recv-Info",
    "Privacy",
    "History-Info",
    "Diversion",
    "P-Asserted-Identity",
    "P-Charging-Vector",
    "P-Early-Media",
    "Accept-Contact",
    "Subject",
    "Priority",
    "Date",
];

pub(super) const DEFAULT_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "PRACK",
    "UPDATE",
    "INFO",
    "MESSAGE",
    "REFER",
    "SUBSCRIBE",
    "NOTIFY",
];

pub(super) const DEFAULT_PEER_MAX_CALLS: usize = 1000;
/// A partner's new calls and out-of-dialog requests per second, before 503 (a burst of one
/// second's worth is allowed).
pub(super) const DEFAULT_PEER_MAX_CPS: u32 = 200;
pub(super) const DEFAULT_PEER_MAX_RPS: u32 = 1000;
/// Requests from a partner awaiting our final answer: its calls ringing (up to `max_calls`)
/// and as many other requests again.
pub(super) const DEFAULT_PEER_MAX_TRANSACTIONS: usize = 2000;
/// Signalling bytes per second from a partner: about 4,000 messages of 1 kB, so twenty times
/// `max_cps` worth of calls of ten messages each before anything is dropped.
pub(super) const DEFAULT_PEER_MAX_BYTES_PER_SECOND: u32 = 4_000_000;

const NODE_KEYS: &[&str] = &[
    "name",
    "home_domains",
    "ioi",
    "log",
    "log_format",
    "sip",
    "media",
    "service",
    "admin",
    "dns",
    "enum",
    "ng",
    "realm",
];
const SERVICE_KEYS: &[&str] = &["drain_timeout_s", "shards"];
const ADMIN_KEYS: &[&str] = &["enabled", "listen", "token"];
const MEDIA_KEYS: &[&str] = &[
    "kernel",
    "latching",
    "inactivity_timeout_s",
    "relay_threads",
    "nft_table",
];
const SIP_KEYS: &[&str] = &[
    "t1_ms",
    "t2_ms",
    "t4_ms",
    "timer_c_s",
    "lookup_timeout_ms",
    "overload_backlog",
    "overload_delay_ms",
    "admission_delay_ms",
    "max_message_size",
    "max_headers",
    "max_forwards",
    "max_calls",
    "max_tcp_connections",
    "tcp_idle_timeout_s",
    "keepalive_interval_s",
    "partial_message_timeout_ms",
    "max_connections_per_source",
    "max_connections_per_partner",
    "tls_handshake_timeout_ms",
    "reconnect_backoff_max_s",
    "dialog_idle_timeout_s",
    "kernel_filter",
    "kernel_filter_learned_hold_s",
    "extensions",
];
const REALM_KEYS: &[&str] = &[
    "name",
    "kind",
    "listen",
    "advertise",
    "core",
    "core_sources",
    "trust",
    "headers",
    "peers",
    "peer",
    "media_address",
    "media_ports",
    "dns_servers",
    "tls",
];
const REALM_TLS_KEYS: &[&str] = &["certificate", "key"];
const PEER_TLS_KEYS: &[&str] = &["fingerprints", "ca", "identities", "crl"];
const HEADERS_KEYS: &[&str] = &["allow", "bodies"];

/// Body types that cross by default: session descriptions (anchored), the refer progress of
/// RFC 3515 (cut to its status line), DTMF relay (RFC 2976 INFO), plain text messages, and the
/// conference and dialog state documents (their URIs made public toward peers).
pub(super) const DEFAULT_BODIES: &[&str] = &[
    "application/sdp",
    "message/sipfrag",
    "application/dtmf-relay",
    "application/dtmf",
    "text/plain",
    "application/conference-info+xml",
    "application/dialog-info+xml",
];
const PEER_KEYS: &[&str] = &[
    "name",
    "realm",
    "domains",
    "sources",
    "next_hop",
    "trust",
    "refer",
    "ioi",
    "allowed_methods",
    "max_calls",
    "max_cps",
    "max_rps",
    "max_transactions",
    "max_bytes_per_second",
    "headers",
    "route",
    "transports",
    "tls",
];

pub(super) fn parse(text: &str, origin: &Path, read: Reader) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        srcs: Vec::new(),
        errors: Vec::new(),
        read,
        peer_files: HashMap::new(),
    };
    let src = cx.add_src(origin, text);
    let Some(doc) = document(&mut cx, src, text) else {
        return Err(cx.into_errors());
    };
    let base = origin.parent().unwrap_or(Path::new("")).to_path_buf();
    let root = Tab {
        t: doc.get_ref(),
        span: doc.span(),
        src,
        path: String::new(),
    };
    root.check_keys(&mut cx, NODE_KEYS);
    let name = root.req_str(&mut cx, "name");
    let home_domains = root
        .req_list(&mut cx, "home_domains")
        .map(|l| domain_list(&mut cx, l))
        .unwrap_or_default();
    let ioi = root.str(&mut cx, "ioi");
    let log = root.str(&mut cx, "log");
    let log_format = root
        .str(&mut cx, "log_format")
        .and_then(|f| match LogFormat::from_keyword(&f.v) {
            Some(format) => Some(format),
            None => {
                cx.err_at(
                    &f,
                    Kind::BadValue,
                    format!("`{}`: expected \"auto\", \"text\" or \"json\"", f.v),
                );
                None
            }
        })
        .unwrap_or_default();
    let sip = sip_settings(&mut cx, &root);
    let media = media_settings(&mut cx, &root);
    let service = service_settings(&mut cx, &root);
    let admin = admin_settings(&mut cx, &root);
    let dns = dns::dns_settings(&mut cx, &root);
    let enum_routing = dns::enum_settings(&mut cx, &root);
    let realm_tabs = if root.get("realm").is_none() {
        root.missing(&mut cx, "realm");
        None
    } else {
        root.tables(&mut cx, "realm")
    };
    let mut realms: Vec<RawRealm> = Vec::new();
    for t in realm_tabs.unwrap_or_default() {
        let taken: Vec<String> = realms
            .iter()
            .filter_map(|r| r.name.as_ref().map(|n| n.v.clone()))
            .collect();
        realms.push(realm(&mut cx, t, &base, &taken));
    }

    cross_checks(&mut cx, &root, &home_domains, &realms);
    dns::enum_checks(&mut cx, &enum_routing, &realms);
    media_overlaps(&mut cx, &realms);
    let realm_names: Vec<String> = realms
        .iter()
        .filter_map(|r| r.name.as_ref().map(|n| n.v.clone()))
        .collect();
    let ng = ng::ng_settings(&mut cx, &root, &realm_names);

    if cx.has_errors() {
        return Err(cx.into_errors());
    }
    let home_domains: Vec<String> = home_domains.into_iter().map(|d| d.v).collect();
    let realms = realms
        .into_iter()
        .map(|r| {
            let name = r.name.map(|n| n.v).unwrap_or_default();
            let advertise = r.advertise.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            Realm {
                media_address: r.media_address.unwrap_or(advertise),
                media_ports: r.media_ports.map(|p| p.v).unwrap_or(DEFAULT_MEDIA_PORTS),
                dns_servers: r.dns_servers,
                kind: r.kind.map(|k| k.v).unwrap_or(RealmKind::Peer),
                listen: r.listen.into_iter().map(|l| l.v).collect(),
                advertise,
                core: r.core.map(|c| c.v),
                core_sources: r.core_sources.into_iter().map(|s| s.v).collect(),
                trust: r.trust,
                headers: r.headers,
                tls: r.tls,
                peers: r
                    .peers
                    .into_iter()
                    .map(|p| {
                        let domains: Vec<String> = p.domains.into_iter().map(|d| d.v).collect();
                        Peer {
                            name: p.name.map(|n| n.v).unwrap_or_default(),
                            realm: name.clone(),
                            ioi: p
                                .ioi
                                .unwrap_or_else(|| domains.first().cloned().unwrap_or_default()),
                            domains,
                            sources: p.sources.into_iter().map(|s| s.v).collect(),
                            next_hop: p.next_hop.unwrap_or(NextHop {
                                transport: Transport::Udp,
                                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                            }),
                            trust: p.trust,
                            refer: p.refer,
                            allowed_methods: p.allowed_methods,
                            headers: p.headers,
                            max_calls: p.max_calls,
                            max_cps: p.max_cps,
                            max_rps: p.max_rps,
                            max_transactions: p.max_transactions,
                            max_bytes_per_second: p.max_bytes_per_second,
                            dns: p.dns,
                            tls: p.tls,
                            origin: p.origin,
                        }
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    Ok(Config {
        name: name.map(|n| n.v).unwrap_or_default(),
        ioi: ioi
            .map(|i| i.v)
            .unwrap_or_else(|| home_domains.first().cloned().unwrap_or_default()),
        home_domains,
        sip,
        media,
        service,
        admin,
        ng,
        dns,
        enum_routing: enum_routing.map(|(e, _)| e),
        realms,
        log: log.map(|l| l.v).unwrap_or_else(|| "info".to_string()),
        log_format,
    })
}
