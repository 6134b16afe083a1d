//! Checks across realms, peers and files: unique names, one home realm, non-overlapping
//! listeners and media ports, domains and sources that identify one peer.

use super::*;

/// Two realms relaying on the same address must not share ports.
pub(super) fn media_overlaps(cx: &mut Ctx, realms: &[RawRealm]) {
    let effective = |r: &RawRealm| {
        let addr = r.media_address.or(r.advertise)?;
        let ports = r
            .media_ports
            .as_ref()
            .map(|p| p.v)
            .unwrap_or(DEFAULT_MEDIA_PORTS);
        Some((addr, ports))
    };
    for (i, later) in realms.iter().enumerate() {
        let Some((addr, (lo, hi))) = effective(later) else {
            continue;
        };
        for earlier in &realms[..i] {
            let Some((a2, (lo2, hi2))) = effective(earlier) else {
                continue;
            };
            // Two realms on the same listen address are already reported as such.
            let same_listen = later
                .listen
                .iter()
                .any(|l| earlier.listen.iter().any(|e| e.v.addr == l.v.addr));
            if a2 == addr && lo <= hi2 && lo2 <= hi && !same_listen {
                let other = earlier.name.as_ref().map(|n| n.v.as_str()).unwrap_or("?");
                let msg = format!(
                    "media ports {lo}-{hi} on {addr} overlap realm `{other}` ({lo2}-{hi2}); give each realm its own range or media_address"
                );
                match (&later.media_ports, &later.name) {
                    (Some(p), _) => cx.err_at(p, Kind::Conflict, msg),
                    (None, Some(n)) => cx.err_at(n, Kind::Conflict, msg),
                    (None, None) => {}
                }
            }
        }
    }
}

pub(super) fn cross_checks(
    cx: &mut Ctx,
    root: &Tab,
    home_domains: &[Sp<String>],
    realms: &[RawRealm],
) {
    // Realm names.
    let mut names: HashMap<&str, &Sp<String>> = HashMap::new();
    for n in realms.iter().filter_map(|r| r.name.as_ref()) {
        if let Some(first) = names.get(n.v.as_str()) {
            let msg = format!("realm name `{}` is already used by {}", n.v, first.field);
            cx.err_at(n, Kind::Duplicate, msg);
        } else {
            names.insert(&n.v, n);
        }
    }

    // Realm kinds: exactly one home, at least one peer (only when realms were given at all).
    if root
        .get("realm")
        .is_some_and(|v| v.get_ref().as_array().is_some())
    {
        let homes: Vec<&Sp<RealmKind>> = realms
            .iter()
            .filter_map(|r| r.kind.as_ref())
            .filter(|k| k.v == RealmKind::Home)
            .collect();
        let all_kinds_known = realms.iter().all(|r| r.kind.is_some());
        let realm_span = root.key_span("realm").unwrap_or(0..0);
        if homes.is_empty() && all_kinds_known {
            cx.err(
                root.src,
                realm_span.clone(),
                "realm",
                Kind::MissingField,
                "no home realm: exactly one realm must have kind = \"home\"",
            );
        }
        for extra in homes.iter().skip(1) {
            let msg = format!(
                "only one home realm is allowed; {} is already home",
                homes[0].field.trim_end_matches(".kind")
            );
            cx.err_at(extra, Kind::Duplicate, msg);
        }
        let has_peer = realms
            .iter()
            .any(|r| r.kind.as_ref().is_some_and(|k| k.v == RealmKind::Peer));
        if !has_peer && all_kinds_known {
            cx.err(
                root.src,
                realm_span,
                "realm",
                Kind::MissingField,
                "no peer realm: at least one realm must have kind = \"peer\"",
            );
        }
    }

    // Listening sockets: no two on the same transport, port and (overlapping) address.
    let mut seen: Vec<&Sp<Listen>> = Vec::new();
    for l in realms.iter().flat_map(|r| r.listen.iter()) {
        let clash = seen.iter().find(|o| {
            o.v.transport == l.v.transport
                && o.v.addr.port() == l.v.addr.port()
                && o.v.addr.is_ipv4() == l.v.addr.is_ipv4()
                && (o.v.addr.ip() == l.v.addr.ip()
                    || o.v.addr.ip().is_unspecified()
                    || l.v.addr.ip().is_unspecified())
        });
        if let Some(o) = clash {
            let msg = format!("{} overlaps {} of {}", l.v, o.v, o.field);
            cx.err_at(l, Kind::Conflict, msg);
        } else {
            seen.push(l);
        }
    }

    // Peers: unique names, domains and sources across the node.
    let core_sources: Vec<&Sp<IpAddr>> = realms
        .iter()
        .filter(|r| r.kind.as_ref().is_some_and(|k| k.v == RealmKind::Home))
        .flat_map(|r| r.core_sources.iter())
        .collect();
    let mut peer_names: HashMap<&str, &Sp<String>> = HashMap::new();
    // Domain -> owning peer (index, name); `None` for a home domain.
    let mut domains: HashMap<&str, Option<(usize, &str)>> = HashMap::new();
    for d in home_domains {
        if domains.contains_key(d.v.as_str()) {
            cx.err_at(d, Kind::Duplicate, format!("`{}` is listed twice", d.v));
        } else {
            domains.insert(&d.v, None);
        }
    }
    let mut sources: HashMap<IpAddr, (usize, &str)> = HashMap::new();
    for (pi, p) in realms.iter().flat_map(|r| r.peers.iter()).enumerate() {
        let pname = p.name.as_ref().map(|n| n.v.as_str()).unwrap_or("?");
        if let Some(n) = &p.name {
            if let Some(first) = peer_names.get(n.v.as_str()) {
                let msg = format!(
                    "peer name `{}` is already used by the peer in {}",
                    n.v,
                    cx.srcs[first.src].file.display()
                );
                cx.err_at(n, Kind::Duplicate, msg);
            } else {
                peer_names.insert(&n.v, n);
            }
        }
        for d in &p.domains {
            match domains.get(d.v.as_str()) {
                Some(None) => cx.err_at(
                    d,
                    Kind::Conflict,
                    format!("`{}` is one of this operator's home_domains", d.v),
                ),
                Some(Some((owner, _))) if *owner == pi => {
                    cx.err_at(d, Kind::Duplicate, format!("`{}` is listed twice", d.v))
                }
                Some(Some((_, owner))) => {
                    let msg = format!("`{}` is already claimed by peer `{owner}`", d.v);
                    cx.err_at(d, Kind::Duplicate, msg)
                }
                None => {
                    domains.insert(&d.v, Some((pi, pname)));
                }
            }
        }
        for s in &p.sources {
            if let Some(c) = core_sources.iter().find(|c| c.v == s.v) {
                let msg = format!("`{}` is a core source of the home realm ({})", s.v, c.field);
                cx.err_at(s, Kind::Conflict, msg);
            } else if let Some((owner_idx, owner)) = sources.get(&s.v) {
                let msg = if *owner_idx == pi {
                    format!("`{}` is listed twice", s.v)
                } else {
                    format!(
                        "`{}` is already a source of peer `{owner}`; a source must identify one peer",
                        s.v
                    )
                };
                cx.err_at(s, Kind::Duplicate, msg);
            } else {
                sources.insert(s.v, (pi, pname));
            }
        }
    }
}
