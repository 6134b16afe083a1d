//! Value checks shared by the sections: addresses, next hops, trust, domains, header policies,
//! port ranges.

use super::*;

pub(super) fn parse_transport_addr(s: &str) -> Result<(Transport, SocketAddr), String> {
    const EXPECTED: &str =
        "expected transport:ip:port, e.g. \"udp:192.0.2.1:5060\" or \"tcp:[2001:db8::1]:5060\"";
    if SocketAddr::from_str(s).is_ok() || IpAddr::from_str(s).is_ok() {
        return Err(format!("`{s}`: missing transport; {EXPECTED}"));
    }
    let Some((t, rest)) = s.split_once(':') else {
        return Err(format!("`{s}`: {EXPECTED}"));
    };
    let transport = match t.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => {
            return Err(format!(
                "`{s}`: unknown transport `{t}` (udp, tcp or tls); {EXPECTED}"
            ))
        }
    };
    let addr = SocketAddr::from_str(rest).map_err(|_| format!("`{s}`: {EXPECTED}"))?;
    if addr.port() == 0 {
        return Err(format!("`{s}`: port 0 is not allowed"));
    }
    Ok((transport, addr))
}

pub(super) fn parse_ip(cx: &mut Ctx, s: Sp<String>) -> Option<Sp<IpAddr>> {
    match IpAddr::from_str(&s.v) {
        Ok(ip) => Some(s.map(|_| ip)),
        Err(_) => {
            cx.err_at(
                &s,
                Kind::BadValue,
                format!("`{}`: expected an IP address", s.v),
            );
            None
        }
    }
}

pub(super) fn parse_next_hop(cx: &mut Ctx, s: Sp<String>) -> Option<Sp<NextHop>> {
    match parse_transport_addr(&s.v) {
        Ok((_, addr)) if addr.ip().is_unspecified() => {
            cx.err_at(
                &s,
                Kind::BadValue,
                format!("`{}`: cannot send to an unspecified address", s.v),
            );
            None
        }
        Ok((transport, addr)) => Some(s.map(|_| NextHop { transport, addr })),
        Err(m) => {
            cx.err_at(&s, Kind::BadValue, m);
            None
        }
    }
}

pub(super) fn parse_trust(cx: &mut Ctx, s: Sp<String>) -> Option<Trust> {
    match s.v.as_str() {
        "trusted" => Some(Trust::Trusted),
        "untrusted" => Some(Trust::Untrusted),
        other => {
            cx.err_at(
                &s,
                Kind::BadValue,
                format!("`{other}`: expected \"trusted\" or \"untrusted\""),
            );
            None
        }
    }
}

pub(super) fn parse_refer(cx: &mut Ctx, s: Sp<String>) -> Option<ReferPolicy> {
    match s.v.as_str() {
        "relay" => Some(ReferPolicy::Relay),
        "refuse" => Some(ReferPolicy::Refuse),
        "terminate" => Some(ReferPolicy::Terminate),
        other => {
            cx.err_at(
                &s,
                Kind::BadValue,
                format!("`{other}`: expected \"relay\", \"refuse\" or \"terminate\""),
            );
            None
        }
    }
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
}

pub(super) fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

pub(super) fn domain_list(cx: &mut Ctx, list: Sp<Vec<Sp<String>>>) -> Vec<Sp<String>> {
    let mut out = Vec::new();
    for d in list.v {
        if is_domain(&d.v) {
            out.push(d.map(|s| s.to_ascii_lowercase()));
        } else {
            cx.err_at(
                &d,
                Kind::BadValue,
                format!(
                    "`{}`: expected a domain name such as \"operator-b.example\"",
                    d.v
                ),
            );
        }
    }
    out
}

pub(super) fn headers(cx: &mut Ctx, parent: &Tab) -> HeaderPolicy {
    let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let Some(t) = parent.table(cx, "headers") else {
        return HeaderPolicy {
            allow: owned(DEFAULT_ALLOW_HEADERS),
            bodies: owned(DEFAULT_BODIES),
        };
    };
    t.check_keys(cx, HEADERS_KEYS);
    let allow = match t.str_list(cx, "allow") {
        Some(list) => names(cx, list.v, is_token, "header name"),
        None => owned(DEFAULT_ALLOW_HEADERS),
    };
    let bodies = match t.str_list(cx, "bodies") {
        Some(list) => names(cx, list.v, is_media_type, "body type (type/subtype)"),
        None => owned(DEFAULT_BODIES),
    };
    HeaderPolicy { allow, bodies }
}

/// `type/subtype`, each a token (RFC 3261 §20.15).
fn is_media_type(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(t, st)| is_token(t) && is_token(st))
}

/// A list of names, each checked by `valid`, without duplicates (case-insensitive).
fn names(cx: &mut Ctx, list: Vec<Sp<String>>, valid: fn(&str) -> bool, what: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in list {
        if !valid(&h.v) {
            cx.err_at(&h, Kind::BadValue, format!("`{}`: not a valid {what}", h.v));
        } else if out.iter().any(|a| a.eq_ignore_ascii_case(&h.v)) {
            cx.err_at(&h, Kind::Duplicate, format!("`{}` is listed twice", h.v));
        } else {
            out.push(h.v);
        }
    }
    out
}

/// `"20000-29999"`: an inclusive range of at least two ports, starting on an even port.
pub(super) fn parse_port_range(cx: &mut Ctx, s: Sp<String>) -> Option<(u16, u16)> {
    let parsed = s
        .v
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((lo, hi)) if lo >= 1024 && lo % 2 == 0 && hi > lo => Some((lo, hi)),
        _ => {
            cx.err_at(
                &s,
                Kind::BadValue,
                format!(
                    "`{}`: expected \"LOW-HIGH\" with an even LOW of at least 1024 and HIGH > LOW",
                    s.v
                ),
            );
            None
        }
    }
}
