//! Reading the TOML files into the typed model: a hand-written walker over toml's spanned
//! document tree (`toml::de::DeTable`), so that every problem (unknown key, wrong type, bad
//! value, cross-file conflict) is collected with its position instead of stopping at the first.
//!
//! Field paths: dotted, following the TOML keys, with a realm or inline peer named by its `name`
//! once that is known (`realm.interconnect.listen[0]`, `realm.interconnect.peer.operator-b.sources[0]`)
//! and by index before (`realm[1].name`). Inside a peer policy file the path is relative to that
//! file (`sources[0]`), since the error already names the file.

use super::ConfigErrorKind as Kind;
use super::*;
use std::collections::HashMap;
use std::ops::Range;
use std::str::FromStr;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

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
    "Expires",
    "Reason",
    "Privacy",
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

const NODE_KEYS: &[&str] = &[
    "name",
    "home_domains",
    "ioi",
    "log",
    "sip",
    "media",
    "realm",
];
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
    "max_message_size",
    "max_headers",
    "max_forwards",
    "max_calls",
    "max_tcp_connections",
    "tcp_idle_timeout_s",
    "dialog_idle_timeout_s",
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
];
const HEADERS_KEYS: &[&str] = &["allow"];
const PEER_KEYS: &[&str] = &[
    "name",
    "realm",
    "domains",
    "sources",
    "next_hop",
    "trust",
    "ioi",
    "allowed_methods",
    "max_calls",
    "headers",
];

type Reader<'r> = &'r dyn Fn(&Path) -> std::io::Result<String>;

struct Src {
    file: PathBuf,
    text: String,
}

/// A value with where it came from: source file index, byte span and field path.
#[derive(Debug, Clone)]
struct Sp<T> {
    v: T,
    src: usize,
    span: Range<usize>,
    field: String,
}

impl<T> Sp<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Sp<U> {
        Sp {
            v: f(self.v),
            src: self.src,
            span: self.span,
            field: self.field,
        }
    }
}

struct Ctx<'r> {
    srcs: Vec<Src>,
    errors: Vec<(usize, ConfigError)>,
    read: Reader<'r>,
    /// Peer policy files already read, with the field that named them.
    peer_files: HashMap<PathBuf, String>,
}

impl Ctx<'_> {
    fn add_src(&mut self, file: &Path, text: &str) -> usize {
        self.srcs.push(Src {
            file: file.to_path_buf(),
            text: text.to_string(),
        });
        self.srcs.len() - 1
    }

    fn err(
        &mut self,
        src: usize,
        span: Range<usize>,
        field: &str,
        kind: Kind,
        msg: impl Into<String>,
    ) {
        let s = &self.srcs[src];
        let (line, column) = line_col(&s.text, span.start);
        self.errors.push((
            src,
            ConfigError {
                file: s.file.clone(),
                line,
                column,
                field: field.to_string(),
                kind,
                message: msg.into(),
            },
        ));
    }

    fn err_at<T>(&mut self, at: &Sp<T>, kind: Kind, msg: impl Into<String>) {
        self.err(at.src, at.span.clone(), &at.field.clone(), kind, msg);
    }

    fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    fn into_errors(self) -> ConfigErrors {
        let mut errors = self.errors;
        errors.sort_by_key(|(src, e)| (*src, e.line, e.column));
        ConfigErrors(errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A TOML table being read.
struct Tab<'t, 'i> {
    t: &'t DeTable<'i>,
    span: Range<usize>,
    src: usize,
    path: String,
}

impl<'t, 'i> Tab<'t, 'i> {
    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.t
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.t
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }

    fn check_keys(&self, cx: &mut Ctx, allowed: &[&str]) {
        for (k, _) in self.t.iter() {
            let key: &str = k.get_ref().as_ref();
            if !allowed.contains(&key) {
                cx.err(
                    self.src,
                    k.span(),
                    &self.field(key),
                    Kind::UnknownKey,
                    format!("unknown key `{key}`; allowed: {}", allowed.join(", ")),
                );
            }
        }
    }

    fn missing(&self, cx: &mut Ctx, key: &str) {
        cx.err(
            self.src,
            self.span.clone(),
            &self.field(key),
            Kind::MissingField,
            format!("missing required key `{key}`"),
        );
    }

    fn sp<T>(&self, v: T, span: Range<usize>, field: String) -> Sp<T> {
        Sp {
            v,
            src: self.src,
            span,
            field,
        }
    }

    fn wrong(&self, cx: &mut Ctx, v: &Spanned<DeValue<'_>>, field: &str, expected: &str) {
        cx.err(
            self.src,
            v.span(),
            field,
            Kind::WrongType,
            format!("expected {expected}, found {}", type_name(v.get_ref())),
        );
    }

    fn str_value(
        &self,
        cx: &mut Ctx,
        v: &Spanned<DeValue<'_>>,
        field: String,
    ) -> Option<Sp<String>> {
        match v.get_ref() {
            DeValue::String(s) => {
                if s.trim().is_empty() {
                    cx.err(
                        self.src,
                        v.span(),
                        &field,
                        Kind::BadValue,
                        "must not be empty",
                    );
                    None
                } else {
                    Some(self.sp(s.to_string(), v.span(), field))
                }
            }
            _ => {
                self.wrong(cx, v, &field, "a string");
                None
            }
        }
    }

    fn str(&self, cx: &mut Ctx, key: &str) -> Option<Sp<String>> {
        let v = self.get(key)?;
        self.str_value(cx, v, self.field(key))
    }

    fn req_str(&self, cx: &mut Ctx, key: &str) -> Option<Sp<String>> {
        if self.get(key).is_none() {
            self.missing(cx, key);
        }
        self.str(cx, key)
    }

    /// A list of strings; `None` if absent or not an array. Bad elements are reported and skipped.
    fn str_list(&self, cx: &mut Ctx, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        let v = self.get(key)?;
        let field = self.field(key);
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong(cx, v, &field, "an array of strings");
            return None;
        };
        let list = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.str_value(cx, item, format!("{field}[{i}]")))
            .collect();
        Some(self.sp(list, v.span(), field))
    }

    fn req_list(&self, cx: &mut Ctx, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        if self.get(key).is_none() {
            self.missing(cx, key);
            return None;
        }
        let list = self.str_list(cx, key)?;
        if list.v.is_empty()
            && self
                .get(key)
                .is_some_and(|v| v.get_ref().as_array().is_some_and(|a| a.is_empty()))
        {
            cx.err_at(&list, Kind::BadValue, "must list at least one entry");
        }
        Some(list)
    }

    fn int(&self, cx: &mut Ctx, key: &str, min: u64, max: u64) -> Option<Sp<u64>> {
        let v = self.get(key)?;
        let field = self.field(key);
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong(cx, v, &field, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 && (n as u64) >= min && (n as u64) <= max => {
                Some(self.sp(n as u64, v.span(), field))
            }
            _ => {
                let msg = if min == 1 && i.as_str() == "0" {
                    "must be greater than 0".to_string()
                } else {
                    format!("must be between {min} and {max}")
                };
                cx.err(self.src, v.span(), &field, Kind::BadValue, msg);
                None
            }
        }
    }

    fn boolean(&self, cx: &mut Ctx, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong(cx, v, &self.field(key), "true or false");
                None
            }
        }
    }

    fn table(&self, cx: &mut Ctx, key: &str) -> Option<Tab<'t, 'i>> {
        let v = self.get(key)?;
        let field = self.field(key);
        match v.get_ref() {
            DeValue::Table(t) => Some(Tab {
                t,
                span: v.span(),
                src: self.src,
                path: field,
            }),
            _ => {
                self.wrong(cx, v, &field, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[key]]`); elements get the path `key[i]`.
    fn tables(&self, cx: &mut Ctx, key: &str) -> Option<Vec<Tab<'t, 'i>>> {
        let v = self.get(key)?;
        let field = self.field(key);
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong(cx, v, &field, "an array of tables");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(Tab {
                    t,
                    span: item.span(),
                    src: self.src,
                    path: format!("{field}[{i}]"),
                }),
                _ => self.wrong(cx, item, &format!("{field}[{i}]"), "a table"),
            }
        }
        Some(out)
    }
}

fn parse_transport_addr(s: &str) -> Result<(Transport, SocketAddr), String> {
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
        _ => {
            return Err(format!(
                "`{s}`: unknown transport `{t}` (udp or tcp); {EXPECTED}"
            ))
        }
    };
    let addr = SocketAddr::from_str(rest).map_err(|_| format!("`{s}`: {EXPECTED}"))?;
    if addr.port() == 0 {
        return Err(format!("`{s}`: port 0 is not allowed"));
    }
    Ok((transport, addr))
}

fn parse_ip(cx: &mut Ctx, s: Sp<String>) -> Option<Sp<IpAddr>> {
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

fn parse_next_hop(cx: &mut Ctx, s: Sp<String>) -> Option<Sp<NextHop>> {
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

fn parse_trust(cx: &mut Ctx, s: Sp<String>) -> Option<Trust> {
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

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn domain_list(cx: &mut Ctx, list: Sp<Vec<Sp<String>>>) -> Vec<Sp<String>> {
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

fn headers(cx: &mut Ctx, parent: &Tab) -> HeaderPolicy {
    let default = || HeaderPolicy {
        allow: DEFAULT_ALLOW_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let Some(t) = parent.table(cx, "headers") else {
        return default();
    };
    t.check_keys(cx, HEADERS_KEYS);
    let Some(list) = t.str_list(cx, "allow") else {
        return default();
    };
    let mut allow: Vec<String> = Vec::new();
    for h in list.v {
        if !is_token(&h.v) {
            cx.err_at(
                &h,
                Kind::BadValue,
                format!("`{}`: not a valid header name", h.v),
            );
        } else if allow.iter().any(|a| a.eq_ignore_ascii_case(&h.v)) {
            cx.err_at(&h, Kind::Duplicate, format!("`{}` is listed twice", h.v));
        } else {
            allow.push(h.v);
        }
    }
    HeaderPolicy { allow }
}

fn sip_settings(cx: &mut Ctx, root: &Tab) -> SipSettings {
    let mut s = SipSettings::default();
    let Some(t) = root.table(cx, "sip") else {
        return s;
    };
    t.check_keys(cx, SIP_KEYS);
    const MS: u64 = 86_400_000;
    const S: u64 = 86_400 * 365;
    const N: u64 = u32::MAX as u64;
    let t1 = t.int(cx, "t1_ms", 1, MS);
    let t2 = t.int(cx, "t2_ms", 1, MS);
    if let Some(v) = &t1 {
        s.t1 = Duration::from_millis(v.v);
    }
    if let Some(v) = &t2 {
        s.t2 = Duration::from_millis(v.v);
    }
    let t1_bad = t.get("t1_ms").is_some() && t1.is_none();
    let t2_bad = t.get("t2_ms").is_some() && t2.is_none();
    if s.t2 < s.t1 && !t1_bad && !t2_bad {
        // Point at whichever the engineer wrote; t2 if both.
        let at = t2.as_ref().or(t1.as_ref());
        if let Some(at) = at {
            cx.err_at(
                at,
                Kind::Conflict,
                format!(
                    "t2 ({} ms) must not be smaller than t1 ({} ms)",
                    s.t2.as_millis(),
                    s.t1.as_millis()
                ),
            );
        }
    }
    if let Some(v) = t.int(cx, "t4_ms", 1, MS) {
        s.t4 = Duration::from_millis(v.v);
    }
    if let Some(v) = t.int(cx, "timer_c_s", 1, S) {
        s.timer_c = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "max_message_size", 1, N) {
        s.max_message_size = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_headers", 1, N) {
        s.max_headers = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_forwards", 1, 255) {
        s.max_forwards = v.v as u8;
    }
    if let Some(v) = t.int(cx, "max_calls", 1, N) {
        s.max_calls = v.v as usize;
    }
    if let Some(v) = t.int(cx, "max_tcp_connections", 1, N) {
        s.max_tcp_connections = v.v as usize;
    }
    if let Some(v) = t.int(cx, "tcp_idle_timeout_s", 1, S) {
        s.tcp_idle_timeout = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "dialog_idle_timeout_s", 1, S) {
        s.dialog_idle_timeout = Duration::from_secs(v.v);
    }
    if let Some(list) = t.str_list(cx, "extensions") {
        s.extensions = list.v.into_iter().map(|e| e.v).collect();
    }
    s
}

fn media_settings(cx: &mut Ctx, root: &Tab) -> MediaSettings {
    let mut m = MediaSettings::default();
    let Some(t) = root.table(cx, "media") else {
        return m;
    };
    t.check_keys(cx, MEDIA_KEYS);
    if let Some(b) = t.boolean(cx, "kernel") {
        m.kernel = b;
    }
    if let Some(l) = t.str(cx, "latching") {
        match l.v.as_str() {
            "symmetric" => m.strict_latching = false,
            "strict" => m.strict_latching = true,
            other => cx.err_at(
                &l,
                Kind::BadValue,
                format!("`{other}`: expected \"symmetric\" or \"strict\""),
            ),
        }
    }
    if let Some(v) = t.int(cx, "inactivity_timeout_s", 1, 86_400) {
        m.inactivity_timeout = Duration::from_secs(v.v);
    }
    if let Some(v) = t.int(cx, "relay_threads", 1, 256) {
        m.relay_threads = v.v as usize;
    }
    if let Some(v) = t.str(cx, "nft_table") {
        if v.v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            m.nft_table = v.v;
        } else {
            cx.err_at(&v, Kind::BadValue, "only letters, digits, `_` and `-`");
        }
    }
    m
}

/// `"20000-29999"`: an inclusive range of at least two ports, starting on an even port.
fn parse_port_range(cx: &mut Ctx, s: Sp<String>) -> Option<(u16, u16)> {
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

struct RawPeer {
    name: Option<Sp<String>>,
    domains: Vec<Sp<String>>,
    sources: Vec<Sp<IpAddr>>,
    next_hop: Option<NextHop>,
    trust: Trust,
    ioi: Option<String>,
    allowed_methods: Vec<String>,
    headers: HeaderPolicy,
    max_calls: usize,
    origin: PathBuf,
}

/// Reads one peer table (inline `[[realm.peer]]` or a whole policy file).
fn peer(cx: &mut Ctx, mut t: Tab, realm: Option<&str>, inline: bool) -> RawPeer {
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
    let next_hop = t
        .req_str(cx, "next_hop")
        .and_then(|s| parse_next_hop(cx, s))
        .map(|n| n.v);
    let trust = t
        .str(cx, "trust")
        .and_then(|s| parse_trust(cx, s))
        .unwrap_or(Trust::Untrusted);
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
    let headers = headers(cx, &t);
    RawPeer {
        name,
        domains,
        sources,
        next_hop,
        trust,
        ioi,
        allowed_methods,
        headers,
        max_calls,
        origin: cx.srcs[t.src].file.clone(),
    }
}

/// Parses a document, reporting all syntax errors; `None` if there were any.
fn document<'i>(cx: &mut Ctx, src: usize, text: &'i str) -> Option<Spanned<DeTable<'i>>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Some(doc);
    }
    // The parser recovers and goes on, but later errors on the same line are mostly echoes of
    // the first: report one per line.
    let mut lines_seen = Vec::new();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let (line, _) = line_col(text, span.start);
        if !lines_seen.contains(&line) {
            lines_seen.push(line);
            cx.err(
                src,
                span,
                "(syntax)",
                Kind::Syntax,
                e.message().trim().to_string(),
            );
        }
    }
    None
}

/// Reads a peer policy file named in a realm's `peers` list.
fn peer_file(cx: &mut Ctx, base: &Path, rel: Sp<String>, realm: Option<&str>) -> Option<RawPeer> {
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

struct RawRealm {
    name: Option<Sp<String>>,
    kind: Option<Sp<RealmKind>>,
    listen: Vec<Sp<Listen>>,
    advertise: Option<IpAddr>,
    core: Option<Sp<NextHop>>,
    core_sources: Vec<Sp<IpAddr>>,
    trust: Trust,
    headers: HeaderPolicy,
    peers: Vec<RawPeer>,
    media_address: Option<IpAddr>,
    media_ports: Option<Sp<(u16, u16)>>,
}

/// `taken`: names of the realms before this one (a duplicate keeps its index path).
fn realm(cx: &mut Ctx, mut t: Tab, base: &Path, taken: &[String]) -> RawRealm {
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
    match is_home {
        Some(true) => {
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
    }
}

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
    let sip = sip_settings(&mut cx, &root);
    let media = media_settings(&mut cx, &root);
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
    media_overlaps(&mut cx, &realms);

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
                kind: r.kind.map(|k| k.v).unwrap_or(RealmKind::Peer),
                listen: r.listen.into_iter().map(|l| l.v).collect(),
                advertise,
                core: r.core.map(|c| c.v),
                core_sources: r.core_sources.into_iter().map(|s| s.v).collect(),
                trust: r.trust,
                headers: r.headers,
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
                            allowed_methods: p.allowed_methods,
                            headers: p.headers,
                            max_calls: p.max_calls,
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
        realms,
        log: log.map(|l| l.v).unwrap_or_else(|| "info".to_string()),
    })
}

/// Two realms relaying on the same address must not share ports.
fn media_overlaps(cx: &mut Ctx, realms: &[RawRealm]) {
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

fn cross_checks(cx: &mut Ctx, root: &Tab, home_domains: &[Sp<String>], realms: &[RawRealm]) {
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
