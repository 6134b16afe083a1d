//! `[[realm]]` tables and the peers they reach: inline `[[realm.peer]]` tables and peer policy
//! files, read into raw (still spanned) values for the cross-checks.

use super::*;

pub(super) struct RawPeer {
    pub(super) name: Option<Sp<String>>,
    pub(super) domains: Vec<Sp<String>>,
    pub(super) sources: Vec<Sp<IpAddr>>,
    pub(super) next_hop: Option<NextHop>,
    pub(super) trust: Trust,
    pub(super) refer: ReferPolicy,
    pub(super) ioi: Option<String>,
    pub(super) allowed_methods: Vec<String>,
    pub(super) headers: HeaderPolicy,
    pub(super) max_calls: usize,
    pub(super) max_cps: u32,
    pub(super) max_rps: u32,
    pub(super) max_transactions: usize,
    pub(super) max_bytes_per_second: u32,
    pub(super) dns: PeerDns,
    pub(super) tls: Option<PeerTls>,
    pub(super) origin: PathBuf,
}

/// Reads one peer table (inline `[[realm.peer]]` or a whole policy file).
pub(super) fn peer(cx: &mut Ctx, mut t: Tab, realm: Option<&str>, inline: bool) -> RawPeer {
    let name = t.req_str(cx, "name");
    if inline {
        if let Some(n) = &name {
            let base = t.path.rsplit_once('[').map(|(b, _)| b).unwrap_or(&t.path);
            t.path = format!("{base}.{}", n.v);
        }
    }
    t.check_keys(cx, PEER_KEYS);
    if let (Some(r), Some(realm)) = (t.str(cx, "realm"), realm) {
        if r.v != realm {
            cx.err_at(
                &r,
                Kind::Conflict,
                format!(
                    "peer is referenced from realm `{realm}` but says realm = \"{}\"",
                    r.v
                ),
            );
        }
    }
    let domains = t
        .req_list(cx, "domains")
        .map(|l| domain_list(cx, l))
        .unwrap_or_default();
    let sources = t
        .req_list(cx, "sources")
        .map(|l| {
            l.v.into_iter()
                .filter_map(|s| parse_ip(cx, s))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for s in &sources {
        if s.v.is_unspecified() {
            cx.err_at(
                s,
                Kind::BadValue,
                format!("`{}`: a source must be a concrete address", s.v),
            );
        }
    }
    let next_hop_at = t.req_str(cx, "next_hop");
    let next_hop = next_hop_at
        .clone()
        .and_then(|s| parse_next_hop(cx, s))
        .map(|n| n.v);
    let tls = super::tls::peer_tls(cx, &t, &domains);
    if let (Some(at), Some(hop)) = (&next_hop_at, &next_hop) {
        match (hop.transport, &tls) {
            (Transport::Tls, None) => cx.err_at(
                at,
                Kind::MissingField,
                "a partner reached over TLS needs a `[tls]` table saying how it proves its identity (mutual TLS is always on toward partners)",
            ),
            (Transport::Udp | Transport::Tcp, Some(_)) => cx.err_at(
                at,
                Kind::Conflict,
                format!(
                    "`{}`: this partner has a `[tls]` policy, so it is TLS-only; write its next hop as tls:ip:port",
                    at.v
                ),
            ),
            _ => {}
        }
    }
    let trust = t
        .str(cx, "trust")
        .and_then(|s| parse_trust(cx, s))
        .unwrap_or(Trust::Untrusted);
    let refer = t
        .str(cx, "refer")
        .and_then(|s| parse_refer(cx, s))
        .unwrap_or_default();
    let ioi = t.str(cx, "ioi").map(|s| s.v);
    let allowed_methods = match t.str_list(cx, "allowed_methods") {
        None => DEFAULT_METHODS.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for m in list.v {
                if !is_token(&m.v) || m.v.chars().any(|c| c.is_ascii_lowercase()) {
                    cx.err_at(
                        &m,
                        Kind::BadValue,
                        format!(
                            "`{}`: expected an upper-case SIP method name such as \"INVITE\"",
                            m.v
                        ),
                    );
                } else if out.contains(&m.v) {
                    cx.err_at(&m, Kind::Duplicate, format!("`{}` is listed twice", m.v));
                } else {
                    out.push(m.v);
                }
            }
            out
        }
    };
    let max_calls = t
        .int(cx, "max_calls", 1, u32::MAX as u64)
        .map(|v| v.v as usize)
        .unwrap_or(DEFAULT_PEER_MAX_CALLS);
    let rate = |cx: &mut Ctx, key: &str, default: u32| {
        t.int(cx, key, 0, 1_000_000)
            .map(|v| v.v as u32)
            .unwrap_or(default)
    };
    let max_cps = rate(cx, "max_cps", DEFAULT_PEER_MAX_CPS);
    let max_rps = rate(cx, "max_rps", DEFAULT_PEER_MAX_RPS);
    let max_transactions = t
        .int(cx, "max_transactions", 1, u32::MAX as u64)
        .map(|v| v.v as usize)
        .unwrap_or(DEFAULT_PEER_MAX_TRANSACTIONS);
    let max_bytes_per_second = t
        .int(cx, "max_bytes_per_second", 0, u32::MAX as u64)
        .map(|v| v.v as u32)
        .unwrap_or(DEFAULT_PEER_MAX_BYTES_PER_SECOND);
    let headers = headers(cx, &t);
    RawPeer {
        name,
        domains,
        sources,
        next_hop,
        trust,
        refer,
        ioi,
        allowed_methods,
        headers,
        max_calls,
        max_cps,
        max_rps,
        max_transactions,
        max_bytes_per_second,
        dns: super::dns::peer_dns(cx, &t),
        tls,
        origin: cx.srcs[t.src].file.clone(),
    }
}

/// Reads a peer policy file named in a realm's `peers` list.
pub(super) fn peer_file(
    cx: &mut Ctx,
    base: &Path,
    rel: Sp<String>,
    realm: Option<&str>,
) -> Option<RawPeer> {
    let path = base.join(&rel.v);
    if let Some(first) = cx.peer_files.get(&path) {
        let msg = format!("{} is already named by {first}", path.display());
        cx.err_at(&rel, Kind::Duplicate, msg);
        return None;
    }
    cx.peer_files.insert(path.clone(), rel.field.clone());
    let text = match (cx.read)(&path) {
        Ok(t) => t,
        Err(e) => {
            cx.err_at(
                &rel,
                Kind::Io,
                format!("cannot read peer policy file {}: {e}", path.display()),
            );
            return None;
        }
    };
    let src = cx.add_src(&path, &text);
    let doc = document(cx, src, &text)?;
    let t = Tab {
        t: doc.get_ref(),
        span: doc.span(),
        src,
        path: String::new(),
    };
    Some(peer(cx, t, realm, false))
}

pub(super) struct RawRealm {
    pub(super) name: Option<Sp<String>>,
    pub(super) kind: Option<Sp<RealmKind>>,
    pub(super) listen: Vec<Sp<Listen>>,
    pub(super) advertise: Option<IpAddr>,
    pub(super) core: Option<Sp<NextHop>>,
    pub(super) core_sources: Vec<Sp<IpAddr>>,
    pub(super) trust: Trust,
    pub(super) headers: HeaderPolicy,
    pub(super) peers: Vec<RawPeer>,
    pub(super) media_address: Option<IpAddr>,
    pub(super) media_ports: Option<Sp<(u16, u16)>>,
    pub(super) dns_servers: Vec<SocketAddr>,
    pub(super) tls: Option<RealmTls>,
}

/// `taken`: names of the realms before this one (a duplicate keeps its index path).
pub(super) fn realm(cx: &mut Ctx, mut t: Tab, base: &Path, taken: &[String]) -> RawRealm {
    let name = t.req_str(cx, "name");
    if let Some(n) = name.as_ref().filter(|n| !taken.contains(&n.v)) {
        t.path = format!("realm.{}", n.v);
    }
    t.check_keys(cx, REALM_KEYS);
    let kind = t.req_str(cx, "kind").and_then(|k| match k.v.as_str() {
        "home" => Some(k.map(|_| RealmKind::Home)),
        "peer" => Some(k.map(|_| RealmKind::Peer)),
        other => {
            cx.err_at(
                &k,
                Kind::BadValue,
                format!("`{other}`: expected \"home\" or \"peer\""),
            );
            None
        }
    });
    let listen: Vec<Sp<Listen>> = t
        .req_list(cx, "listen")
        .map(|l| {
            l.v.into_iter()
                .filter_map(|s| match parse_transport_addr(&s.v) {
                    Ok((transport, addr)) => Some(s.map(|_| Listen { transport, addr })),
                    Err(m) => {
                        cx.err_at(&s, Kind::BadValue, m);
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let advertise = match t.str(cx, "advertise").and_then(|s| parse_ip(cx, s)) {
        Some(a) if a.v.is_unspecified() => {
            cx.err_at(
                &a,
                Kind::BadValue,
                format!("`{}`: must be a concrete address peers can reach", a.v),
            );
            None
        }
        Some(a) => Some(a.v),
        None if t.get("advertise").is_some() => None,
        None => match listen.first() {
            Some(l) if l.v.addr.ip().is_unspecified() => {
                cx.err_at(
                    l,
                    Kind::MissingField,
                    format!(
                        "listening on {} needs `advertise` (the address written into Via, Contact and Record-Route)",
                        l.v.addr.ip()
                    ),
                );
                None
            }
            Some(l) => Some(l.v.addr.ip()),
            None => None,
        },
    };
    let is_home = kind.as_ref().map(|k| k.v == RealmKind::Home);
    let only = |cx: &mut Ctx, key: &str, allowed_in: &str| {
        if let Some(span) = t.key_span(key) {
            cx.err(
                t.src,
                span,
                &t.field(key),
                Kind::Misplaced,
                format!("`{key}` is only allowed in a {allowed_in} realm"),
            );
        }
    };
    let mut core = None;
    let mut core_sources = Vec::new();
    let mut trust = Trust::Trusted;
    let mut peers = Vec::new();
    let mut dns_servers = Vec::new();
    match is_home {
        Some(true) => {
            only(cx, "dns_servers", "peer");
            only(cx, "peers", "peer");
            only(cx, "peer", "peer");
            core = t.req_str(cx, "core").and_then(|s| parse_next_hop(cx, s));
            core_sources = match t.str_list(cx, "core_sources") {
                Some(l) => {
                    if l.v.is_empty()
                        && t.get("core_sources")
                            .is_some_and(|v| v.get_ref().as_array().is_some_and(|a| a.is_empty()))
                    {
                        cx.err_at(&l, Kind::BadValue, "must list at least one entry (or leave it out to use the core's address)");
                    }
                    l.v.into_iter().filter_map(|s| parse_ip(cx, s)).collect()
                }
                None => core
                    .iter()
                    .map(|c| c.clone().map(|n| n.addr.ip()))
                    .collect(),
            };
            trust = t
                .str(cx, "trust")
                .and_then(|s| parse_trust(cx, s))
                .unwrap_or(Trust::Trusted);
        }
        Some(false) => {
            only(cx, "core", "home");
            only(cx, "core_sources", "home");
            only(cx, "trust", "home");
            dns_servers = super::dns::servers(cx, &t, "dns_servers");
            let realm_name = name.as_ref().map(|n| n.v.clone());
            if let Some(list) = t.str_list(cx, "peers") {
                for rel in list.v {
                    if let Some(p) = peer_file(cx, base, rel, realm_name.as_deref()) {
                        peers.push(p);
                    }
                }
            }
            if let Some(tabs) = t.tables(cx, "peer") {
                for pt in tabs {
                    peers.push(peer(cx, pt, realm_name.as_deref(), true));
                }
            }
        }
        None => {}
    }
    let headers = headers(cx, &t);
    let tls = super::tls::realm_tls(cx, &t);
    if t.get("tls").is_none() {
        for l in listen.iter().filter(|l| l.v.transport == Transport::Tls) {
            cx.err_at(
                l,
                Kind::MissingField,
                format!(
                    "listening on {} needs the realm's `tls = {{ certificate = \"...\", key = \"...\" }}`",
                    l.v
                ),
            );
        }
    }
    let tls_listener = listen.iter().any(|l| l.v.transport == Transport::Tls);
    if !tls_listener && peers.iter().any(|p| p.tls.is_some()) {
        if let Some(span) = t.key_span("listen") {
            cx.err(
                t.src,
                span,
                &t.field("listen"),
                Kind::MissingField,
                "a partner of this realm is TLS-only, so the realm needs a tls: listener for its connections",
            );
        }
    }
    let media_address = t
        .str(cx, "media_address")
        .and_then(|s| parse_ip(cx, s))
        .map(|a| a.v);
    let media_ports = t.str(cx, "media_ports").and_then(|s| {
        let span = s.clone();
        parse_port_range(cx, s).map(|r| span.map(|_| r))
    });
    RawRealm {
        media_address,
        media_ports,
        name,
        kind,
        listen,
        advertise,
        core,
        core_sources,
        trust,
        headers,
        peers,
        dns_servers,
        tls,
    }
}
