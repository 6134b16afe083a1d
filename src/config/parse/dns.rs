//! The `[dns]` and `[enum]` tables and the peer keys `route` and `transports`.

use super::*;

const DNS_KEYS: &[&str] = &[
    "servers",
    "timeout_ms",
    "attempts",
    "cache_size",
    "max_ttl_s",
    "max_negative_ttl_s",
    "hold_down_s",
];
const ENUM_KEYS: &[&str] = &["servers", "suffixes", "fallback", "no_record_status"];

/// A list of name servers (`IP:PORT`); bad entries are reported and left out.
pub(super) fn servers(cx: &mut Ctx, t: &Tab, key: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in t.str_list(cx, key).map(|l| l.v).unwrap_or_default() {
        match s.v.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => out.push(a),
            _ => cx.err_at(
                &s,
                Kind::BadValue,
                format!(
                    "`{}`: expected a name server as IP:PORT, e.g. \"127.0.53.53:53\"",
                    s.v
                ),
            ),
        }
    }
    out
}

pub(super) fn dns_settings(cx: &mut Ctx, root: &Tab) -> DnsSettings {
    let mut d = DnsSettings::default();
    let Some(t) = root.table(cx, "dns") else {
        return d;
    };
    t.check_keys(cx, DNS_KEYS);
    d.servers = servers(cx, &t, "servers");
    if let Some(v) = t.int(cx, "timeout_ms", 1, 60_000) {
        d.timeout = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "attempts", 1, 10) {
        d.attempts = v.v as usize;
    }
    if let Some(v) = t.int(cx, "cache_size", 0, 10_000_000) {
        d.cache_size = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_ttl_s", 0, 7 * 86_400) {
        d.max_ttl = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "max_negative_ttl_s", 0, 86_400) {
        d.max_negative_ttl = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "hold_down_s", 0, 86_400) {
        d.hold_down = Duration::from_secs(v.v);
    }
    d
}

/// `[enum]`, with the span of `fallback` for the check that it names a partner.
pub(super) fn enum_settings(
    cx: &mut Ctx,
    root: &Tab,
) -> Option<(EnumSettings, Option<Sp<String>>)> {
    let t = root.table(cx, "enum")?;
    t.check_keys(cx, ENUM_KEYS);
    let mut e = EnumSettings {
        servers: servers(cx, &t, "servers"),
        ..EnumSettings::default()
    };
    if let Some(list) = t.req_list(cx, "suffixes") {
        let suffixes = domain_list(cx, list);
        if !suffixes.is_empty() {
            e.suffixes = suffixes.into_iter().map(|s| s.v).collect();
        }
    }
    let fallback = t.str(cx, "fallback");
    e.fallback = fallback.as_ref().map(|f| f.v.clone());
    if let Some(v) = t.int(cx, "no_record_status", 404, 604) {
        if v.v == 404 || v.v == 604 {
            e.no_record_status = v.v as u16;
        } else {
            cx.err_at(&v, Kind::BadValue, "must be 404 or 604");
        }
    }
    Some((e, fallback))
}

/// The ENUM fallback must be a configured partner.
pub(super) fn enum_checks(
    cx: &mut Ctx,
    enum_routing: &Option<(EnumSettings, Option<Sp<String>>)>,
    realms: &[RawRealm],
) {
    let Some((_, Some(fallback))) = enum_routing else {
        return;
    };
    let known = realms
        .iter()
        .flat_map(|r| r.peers.iter())
        .any(|p| p.name.as_ref().is_some_and(|n| n.v == fallback.v));
    if !known {
        cx.err_at(
            fallback,
            Kind::BadValue,
            format!("`{}` is not the name of a configured peer", fallback.v),
        );
    }
}

/// A peer's `route` ("static" or "dns") and `transports` (which DNS may choose).
pub(super) fn peer_dns(cx: &mut Ctx, t: &Tab) -> PeerDns {
    let mut p = PeerDns::default();
    if let Some(r) = t.str(cx, "route") {
        match r.v.as_str() {
            "static" => p.route = PeerRoute::Static,
            "dns" => p.route = PeerRoute::Dns,
            other => cx.err_at(
                &r,
                Kind::BadValue,
                format!("`{other}`: expected \"static\" or \"dns\""),
            ),
        }
    }
    if let Some(list) = t.req_list_opt(cx, "transports") {
        let mut out = Vec::new();
        for s in list.v {
            let tr = match s.v.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                "tls" => Transport::Tls,
                other => {
                    cx.err_at(
                        &s,
                        Kind::BadValue,
                        format!("`{other}`: expected \"udp\", \"tcp\" or \"tls\""),
                    );
                    continue;
                }
            };
            if out.contains(&tr) {
                cx.err_at(&s, Kind::Duplicate, format!("`{}` listed twice", s.v));
            } else {
                out.push(tr);
            }
        }
        if !out.is_empty() {
            p.transports = out;
        }
    }
    p
}
