//! Typed views of the few headers the B2BUA acts on. Each parses one header *value* (one element
//! of a comma list, see [`super::Headers::values`]) and prints back to wire form.

use std::fmt;

use super::message::{is_token, is_token_char, Method};
use super::uri::{is_hostname, is_ipv6_reference, parse_port, Uri};

/// Header parameters (`;name=value`, `;flag`) in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Value of a `name=value` parameter; `None` if absent or a flag.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// One Via value: `SIP/2.0/UDP host:port;branch=...` (RFC 3261 §20.42). Accepts LWS around the
/// slashes and IPv6 sent-by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-cased transport token (`UDP`, `TCP`, `TLS`, `SCTP`, or an unknown token).
    pub transport: String,
    /// Host as written, IPv6 in brackets.
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(value: &str) -> Option<Via> {
        let s = skip_ws(value);
        let (proto, s) = take_token(s);
        if !proto.eq_ignore_ascii_case("SIP") {
            return None;
        }
        let s = skip_ws(skip_ws(s).strip_prefix('/')?);
        let (version, s) = take_token(s);
        if version != "2.0" {
            return None;
        }
        let s = skip_ws(skip_ws(s).strip_prefix('/')?);
        let (transport, s) = take_token(s);
        if transport.is_empty() || !s.starts_with([' ', '\t']) {
            return None;
        }
        let s = skip_ws(s);
        let host_len = if s.starts_with('[') {
            s.find(']')? + 1
        } else {
            s.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
                .unwrap_or(s.len())
        };
        let host = s.get(..host_len)?;
        if !(is_hostname(host) || is_ipv6_reference(host)) {
            return None;
        }
        let mut s = skip_ws(s.get(host_len..)?);
        let mut port = None;
        if let Some(r) = s.strip_prefix(':') {
            let r = skip_ws(r);
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            port = Some(parse_port(r.get(..end)?)?);
            s = r.get(end..)?;
        }
        let params = parse_params(s)?;
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        self.params.fmt(f)
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route,
/// Refer-To, P-Asserted-Identity (RFC 3261 §20.10). `Contact: *` is not a NameAddr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quotes kept when it was quoted).
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str) -> Option<NameAddr> {
        let s = value.trim_matches([' ', '\t']);
        if s.is_empty() {
            return None;
        }
        if s.starts_with('"') {
            let end = quoted_end(s)?;
            let display = s.get(..end)?.to_string();
            let rest = skip_ws(s.get(end..)?);
            return parse_angle(Some(display), rest);
        }
        if let Some(lt) = s.find('<') {
            let display = s.get(..lt)?.trim_matches([' ', '\t']);
            if !display
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .all(is_token)
            {
                return None;
            }
            let display = (!display.is_empty()).then(|| display.to_string());
            return parse_angle(display, s.get(lt..)?);
        }
        // addr-spec form: parameters after it belong to the header (RFC 3261 §20.10), and a
        // URI holding `,`, `?` or `;` must have been enclosed in `<>` (RFC 4475 regbadct).
        let end = s.find(';').unwrap_or(s.len());
        let uri_text = s.get(..end)?.trim_end_matches([' ', '\t']);
        if uri_text.contains([',', '?']) {
            return None;
        }
        let uri = Uri::parse(uri_text)?;
        let params = parse_params(s.get(end..)?)?;
        Some(NameAddr {
            display: None,
            uri,
            params,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }
}

impl fmt::Display for NameAddr {
    /// Always prints the `<uri>` form, so URI parameters are never confused with header ones.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        self.params.fmt(f)
    }
}

/// `CSeq: 4711 INVITE` (RFC 3261 §20.16); the number is < 2^31.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(value: &str) -> Option<CSeq> {
        let s = value.trim_matches([' ', '\t']);
        let (num, method) = s.split_once([' ', '\t'])?;
        if num.is_empty() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq: u64 = num.parse().ok()?;
        if seq >= 1 << 31 {
            return None;
        }
        let method = Method::parse(method.trim_matches([' ', '\t']))?;
        Some(CSeq {
            seq: u32::try_from(seq).ok()?,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Splits off the longest prefix of token characters.
fn take_token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|b| !is_token_char(b)).unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

/// `s` starts with `"`: index just past the closing quote, honouring quoted-pairs.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `<uri>` followed by header parameters.
fn parse_angle(display: Option<String>, s: &str) -> Option<NameAddr> {
    let inner_and_rest = s.strip_prefix('<')?;
    let gt = inner_and_rest.find('>')?;
    let uri = Uri::parse(inner_and_rest.get(..gt)?)?;
    let params = parse_params(inner_and_rest.get(gt + 1..)?)?;
    Some(NameAddr {
        display,
        uri,
        params,
    })
}

/// `*( SEMI generic-param )` with optional LWS around `;` and `=`; values are tokens, hosts
/// (IPv6 with or without brackets) or quoted strings, kept as written.
fn parse_params(s: &str) -> Option<Params> {
    let mut params = Params::default();
    let mut rest = skip_ws(s);
    while !rest.is_empty() {
        rest = skip_ws(rest.strip_prefix(';')?);
        let (name, r) = take_token(rest);
        if name.is_empty() {
            return None;
        }
        rest = skip_ws(r);
        if let Some(r) = rest.strip_prefix('=') {
            let r = skip_ws(r);
            let len = if r.starts_with('"') {
                quoted_end(r)?
            } else {
                r.bytes()
                    .position(|b| !(is_token_char(b) || matches!(b, b':' | b'[' | b']')))
                    .unwrap_or(r.len())
            };
            if len == 0 {
                return None;
            }
            params
                .0
                .push((name.to_string(), Some(r.get(..len)?.to_string())));
            rest = skip_ws(r.get(len..)?);
        } else {
            params.0.push((name.to_string(), None));
        }
    }
    Some(params)
}
