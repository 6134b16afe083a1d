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
        if let Some(lt) = find_unquoted(s, b'<') {
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

pub(super) fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Splits off the longest prefix of token characters.
pub(super) fn take_token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|b| !is_token_char(b)).unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

/// `s` starts with `"`: index just past the closing quote, honouring quoted-pairs.
pub(super) fn quoted_end(s: &str) -> Option<usize> {
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

/// Index of the first `target` byte outside quoted strings.
fn find_unquoted(s: &str, target: u8) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == target {
            return Some(i);
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
pub(super) fn parse_params(s: &str) -> Option<Params> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr {
        NameAddr::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn via_basic_and_lws() {
        let v =
            Via::parse("SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "pc33.example.com");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.params.get("rport"), Some(None));
        let v =
            Via::parse("SIP  /   2.0 /tls   spindle.example.com   ;  branch  =   z9hG4bK9ikj8 ")
                .unwrap();
        assert_eq!(v.transport, "TLS");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TLS spindle.example.com;branch=z9hG4bK9ikj8"
        );
        let v = Via::parse("SIP/2.0/UDP host;rport=5061;received=192.0.2.1;ttl=16;maddr=224.2.0.1")
            .unwrap();
        assert_eq!(v.params.value("rport"), Some("5061"));
        assert_eq!(v.params.value("ttl"), Some("16"));
        assert_eq!(v.params.value("maddr"), Some("224.2.0.1"));
    }

    #[test]
    fn via_ipv6() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111").unwrap();
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.port, Some(6050));
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
                .unwrap();
        assert_eq!(v.params.value("received"), Some("2001:db8::9:255"));
        let v = Via::parse("SIP/2.0/TCP [::1];received=[2001:db8::9:255]").unwrap();
        assert_eq!(v.params.value("received"), Some("[2001:db8::9:255]"));
        let printed = v.to_string();
        assert_eq!(Via::parse(&printed), Some(v));
    }

    #[test]
    fn via_rejections() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/7.0/UDP host",
            "SIP/2.0UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP [2001:db8:::1]",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host junk",
        ] {
            assert!(Via::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = na("\"Alice \\\"A\\\" Smith\" <sip:alice@example.com>;tag=1928301774");
        assert_eq!(n.display.as_deref(), Some("\"Alice \\\"A\\\" Smith\""));
        assert_eq!(n.tag(), Some("1928301774"));
        // RFC 4475 lwsdisp: no space before `<`.
        let n = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(n.display.as_deref(), Some("caller"));
        // Token display names (RFC 4475 intmeth).
        let n = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam=\"x\"");
        assert_eq!(n.display.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
        assert_eq!(n.params.value("fromParam"), Some("\"x\""));
        // Addr-spec: the parameters belong to the header, not the URI.
        let n = na("sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe");
        assert_eq!(n.tag(), Some("DkfVgjkrtMwaerKKpe"));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        assert_eq!(
            n.to_string(),
            "<sip:watson@example.com>;tag=DkfVgjkrtMwaerKKpe"
        );
        // URI parameters inside <> stay on the URI.
        let n = na("<sip:+19725552222@gw1.example.net;unknownparam>");
        assert_eq!(n.uri.as_sip().unwrap().param("unknownparam"), Some(None));
        assert!(n.params.0.is_empty());
        // tel and urn.
        let n = na("<tel:+15551234567;phone-context=example.com>;tag=x");
        assert_eq!(
            n.uri,
            Uri::Other("tel:+15551234567;phone-context=example.com".into())
        );
        assert_eq!(
            na("<urn:service:sos>").uri,
            Uri::Other("urn:service:sos".into())
        );
        // Escaped NUL inside a quoted display name (RFC 4475 intmeth).
        let n = na("\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:x@example.com>");
        assert!(n.display.unwrap().contains('\u{0}'));
        // LWS around `;` and `=`.
        let n = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(n.tag(), Some("1918181833n"));
    }

    #[test]
    fn contact_forms() {
        let n = na("<sip:a@b;gr>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1;expires=3600;isfocus");
        assert_eq!(n.params.value("reg-id"), Some("1"));
        assert_eq!(n.params.get("isfocus"), Some(None));
        let n = na("sip:a@b;+sip.instance=\"<urn:uuid:1>\"");
        assert_eq!(n.display, None);
        assert_eq!(n.params.value("+sip.instance"), Some("\"<urn:uuid:1>\""));
    }

    #[test]
    fn name_addr_rejections() {
        for bad in [
            "",
            "*",
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "< sip:t.watson@example.org >",
            "<sip:a@b",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"x\" sip:a@b",
            "<sip:a@b>;",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn name_addr_round_trips() {
        for s in [
            "\"A \\\"q\\\"\" <sip:a@b;lr>;tag=x;q=0.5",
            "Bob <sips:bob@[2001:db8::1]:5061>",
            "<tel:+1555>;expires=30",
            "sip:a@b;tag=1",
        ] {
            let n = na(s);
            assert_eq!(NameAddr::parse(&n.to_string()), Some(n.clone()), "{s}");
        }
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse("4711 INVITE").unwrap();
        assert_eq!(c.seq, 4711);
        assert_eq!(c.method, Method::Invite);
        assert_eq!(c.to_string(), "4711 INVITE");
        assert_eq!(CSeq::parse("0009   INVITE").unwrap().seq, 9);
        assert_eq!(CSeq::parse("2147483647 FOO").unwrap().seq, 2_147_483_647);
        assert_eq!(
            CSeq::parse("1 NEWMETHOD").unwrap().method,
            Method::Other("NEWMETHOD".into())
        );
        for bad in [
            "",
            "1",
            "INVITE",
            "2147483648 INVITE",
            "36893488147419103232 REGISTER",
            "-1 INVITE",
            "1 INV ITE",
            "1 <INVITE>",
        ] {
            assert!(CSeq::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn params_helpers() {
        let mut p = Params::default();
        p.set("branch", Some("z9hG4bK1".into()));
        p.set("rport", None);
        p.set("BRANCH", Some("z9hG4bK2".into()));
        assert_eq!(p.value("branch"), Some("z9hG4bK2"));
        assert_eq!(p.to_string(), ";branch=z9hG4bK2;rport");
        p.remove("Rport");
        assert_eq!(p.get("rport"), None);
    }
}
