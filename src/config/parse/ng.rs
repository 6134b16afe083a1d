//! The `[ng]` table (rtpengine's control protocol); read after the realms, whose names the
//! directions must match.

use super::values::parse_ip;
use super::*;

const NG_KEYS: &[&str] = &[
    "listen",
    "sources",
    "directions",
    "default_direction",
    "max_calls",
    "reply_cache",
];

pub(super) fn ng_settings(cx: &mut Ctx, root: &Tab, realms: &[String]) -> NgSettings {
    let mut s = NgSettings::default();
    let Some(t) = root.table(cx, "ng") else {
        return s;
    };
    t.check_keys(cx, NG_KEYS);
    let given = t.str(cx, "listen");
    let listen = match &given {
        None => Some(SocketAddr::from(DEFAULT_NG_LISTEN)),
        Some(l) => match l.v.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Some(a),
            _ => {
                cx.err_at(
                    l,
                    Kind::BadValue,
                    format!("`{}`: expected IP:PORT, e.g. \"127.0.0.1:22223\"", l.v),
                );
                None
            }
        },
    };
    if let Some(list) = t.str_list(cx, "sources") {
        s.sources = list
            .v
            .into_iter()
            .filter_map(|a| parse_ip(cx, a))
            .map(|a| a.v)
            .collect();
    }
    if let (Some(a), Some(l)) = (listen, &given) {
        if !a.ip().is_loopback() && s.sources.is_empty() {
            cx.err_at(
                l,
                Kind::Conflict,
                format!("`{a}` is not a loopback address: list the proxies allowed to send in `sources` (the ng protocol has no authentication)"),
            );
        }
    }
    s.listen = listen;
    let known = |cx: &mut Ctx, v: &Sp<String>| {
        if !realms.contains(&v.v) {
            cx.err_at(
                v,
                Kind::BadValue,
                format!("`{}` is not a realm; realms: {}", v.v, realms.join(", ")),
            );
        }
    };
    if let Some(d) = t.table(cx, "directions") {
        for (k, v) in d.t.iter() {
            let name: &str = k.get_ref().as_ref();
            if let Some(realm) = d.str_value(cx, v, d.field(name)) {
                known(cx, &realm);
                s.directions.push((name.to_string(), realm.v));
            }
        }
    }
    if let Some(list) = t.str_list(cx, "default_direction") {
        if let [a, b] = list.v.as_slice() {
            let alias = |n: &str| {
                s.directions
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, r)| r.clone())
            };
            let (ra, rb) = (alias(&a.v), alias(&b.v));
            if ra.is_none() {
                known(cx, a);
            }
            if rb.is_none() {
                known(cx, b);
            }
            s.default_direction = Some([ra.unwrap_or(a.v.clone()), rb.unwrap_or(b.v.clone())]);
        } else {
            cx.err_at(
                &list,
                Kind::BadValue,
                "expected two realm names: the offerer's, then the answerer's",
            );
        }
    }
    if let Some(v) = t.int(cx, "max_calls", 1, u32::MAX as u64) {
        s.max_calls = v.v as usize;
    }
    if let Some(v) = t.int(cx, "reply_cache", 0, 1_000_000) {
        s.reply_cache = v.v as usize;
    }
    s
}
