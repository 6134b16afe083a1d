//! URIs: `sip`/`sips` parsed into parts (RFC 3261 §19.1), every other scheme (`tel`, `urn`, ...)
//! kept as opaque text so it can still be routed or relayed.

use std::fmt;

/// A `sip:` or `sips:` URI. `host` keeps IPv6 references in brackets (`[2001:db8::1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// User part as on the wire (still %-escaped), may contain `;` parameters (RFC 4475 semiuri).
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters in order, names as received; `None` for a flag parameter such as `;lr`.
    pub params: Vec<(String, Option<String>)>,
    /// The `?h=v&...` part without the `?`.
    pub headers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// Any other absolute URI (`tel:+1555...`, `urn:service:sos`, `http://...`), verbatim.
    Other(String),
}

impl SipUri {
    pub fn parse(s: &str) -> Option<SipUri> {
        if has_forbidden(s) {
            return None;
        }
        let (secure, rest) = if let Some(r) = strip_prefix_ci(s, "sips:") {
            (true, r)
        } else {
            (false, strip_prefix_ci(s, "sip:")?)
        };
        // The user part may hold `;`, `?` and `,` (RFC 4475 semiuri, intmeth) but never an
        // unescaped `@`, so the first `@` ends the userinfo.
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() || !valid_chars(u, is_user_char) {
                    return None;
                }
                if let Some(p) = p {
                    if !valid_chars(p, is_password_char) {
                        return None;
                    }
                }
                (Some(u.to_string()), p.map(str::to_string))
            }
        };
        let (main, headers) = match hostpart.split_once('?') {
            Some((m, h)) => {
                if !valid_chars(h, is_header_char) {
                    return None;
                }
                (m, Some(h.to_string()))
            }
            None => (hostpart, None),
        };
        let mut pieces = main.split(';');
        let hostport = pieces.next().unwrap_or("");
        let (host, port) = parse_hostport(hostport)?;
        let mut params = Vec::new();
        for piece in pieces {
            let (name, value) = match piece.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (piece, None),
            };
            if name.is_empty() || !valid_chars(name, is_param_char) {
                return None;
            }
            if let Some(v) = value {
                if !valid_chars(v, is_param_char) {
                    return None;
                }
            }
            params.push((name.to_string(), value.map(str::to_string)));
        }
        Some(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// Value of a URI parameter (`None` when absent, `Some(None)` for a flag).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Host without IPv6 brackets, lower-cased.
    pub fn host_bare(&self) -> String {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    }
}

impl Uri {
    /// Heap bytes the URI holds (for memory accounting, see [`super::Message::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        let cap = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        match self {
            Uri::Sip(u) => {
                cap(&u.user)
                    + cap(&u.password)
                    + u.host.capacity()
                    + cap(&u.headers)
                    + u.params.capacity() * std::mem::size_of::<(String, Option<String>)>()
                    + u.params
                        .iter()
                        .map(|(n, v)| n.capacity() + cap(v))
                        .sum::<usize>()
            }
            Uri::Other(s) => s.capacity(),
        }
    }

    /// Parses an absolute URI: `sip:`/`sips:` into parts, any other `scheme:` opaque. `None` when
    /// there is no scheme or the text contains whitespace or `<>`.
    pub fn parse(s: &str) -> Option<Uri> {
        if s.is_empty() || has_forbidden(s) {
            return None;
        }
        let (scheme, rest) = s.split_once(':')?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            || rest.is_empty()
        {
            return None;
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(s).map(Uri::Sip)
        } else {
            Some(Uri::Other(s.to_string()))
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Whitespace, control characters, `<`, `>` and `"` never appear in a URI on the wire.
fn has_forbidden(s: &str) -> bool {
    if s.is_ascii() {
        // The common case, byte by byte: ASCII whitespace and controls are all <= ' ' or DEL.
        return s
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'));
    }
    s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
        )
}

/// Every byte allowed by `ok`, or part of a well-formed `%HH` escape.
fn valid_chars(s: &str, ok: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(|x| x.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if ok(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Decodes the `%HH` escapes of a URI component (RFC 3986 §2.1). `None` on a malformed escape
/// or when the decoded bytes are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_value)?;
            let lo = b.get(i + 2).copied().and_then(hex_value)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Escapes a URI header value (`hvalue`, RFC 3261 §25.1): everything but unreserved and
/// `hnv-unreserved` characters becomes `%HH`, so `;`, `=`, `@`, `&` and `%` are always escaped.
pub(crate) fn percent_encode_hvalue(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A hostname or IPv4 address (letters, digits, `-`, `.`, and `_` leniently).
pub(crate) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `[IPv6]` reference whose content is a valid IPv6 address, or the three-colon form
/// (`[2001:db8:::192.0.2.1]`) that RFC 3261's ABNF erroneously allows before an embedded IPv4
/// address: RFC 5118 §4.10 asks receivers to be liberal and take it as the two-colon address.
pub(crate) fn is_ipv6_reference(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(ipv6_address)
        .is_some()
}

/// The address inside an IPv6 reference, accepting the RFC 5118 §4.10 three-colon form.
pub(crate) fn ipv6_address(inner: &str) -> Option<std::net::Ipv6Addr> {
    if let Ok(a) = inner.parse() {
        return Some(a);
    }
    let (head, v4) = inner.split_once(":::")?;
    v4.parse::<std::net::Ipv4Addr>().ok()?;
    format!("{head}::{v4}").parse().ok()
}

/// A port: 1 to 5 digits, at most 65535.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `host[:port]` with IPv6 references in brackets.
pub(crate) fn parse_hostport(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let host = s.get(..=end)?;
        let rest = s.get(end + 1..)?;
        let port = if rest.is_empty() {
            None
        } else {
            Some(rest.strip_prefix(':')?)
        };
        if !is_ipv6_reference(host) {
            return None;
        }
        (host, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if !is_hostname(host) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Some((host.to_string(), port))
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        SipUri::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    fn round_trip(s: &str) {
        let u = Uri::parse(s).unwrap_or_else(|| panic!("{s} should parse"));
        let printed = u.to_string();
        assert_eq!(Uri::parse(&printed), Some(u), "{s} -> {printed}");
    }

    #[test]
    fn basic_parts() {
        let u = sip("sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&x=y");
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "Example.COM");
        assert_eq!(u.host_bare(), "example.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.headers.as_deref(), Some("subject=hi&x=y"));
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&x=y"
        );
    }

    #[test]
    fn ipv6_hosts() {
        let u = sip("sip:bob@[2001:db8::10]:5070;transport=udp");
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.host_bare(), "2001:db8::10");
        assert_eq!(u.port, Some(5070));
        // RFC 5118 4.3: the port is inside the brackets, so it is part of the address.
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        assert_eq!(sip("sip:[::ffff:192.0.2.10]").host, "[::ffff:192.0.2.10]");
        // RFC 5118 §4.10: the RFC 3261 ABNF's three-colon form is accepted as written.
        assert_eq!(
            sip("sip:user@[2001:db8:::192.0.2.1]").host,
            "[2001:db8:::192.0.2.1]"
        );
        assert_eq!(
            ipv6_address("2001:db8:::192.0.2.1"),
            "2001:db8::192.0.2.1".parse().ok()
        );
        assert!(SipUri::parse("sip:[2001:db8:::1]").is_none());
        assert!(SipUri::parse("sip:[2001:::db8::192.0.2.1]").is_none());
        assert_eq!(sip("sip:user@[2001:db8::192.0.2.1]").port, None);
        // RFC 5118 4.2.
        assert!(SipUri::parse("sip:2001:db8::10").is_none());
        assert!(SipUri::parse("sip:[2001:db8::10").is_none());
        assert!(SipUri::parse("sip:[2001:db8::10]x").is_none());
    }

    #[test]
    fn ports() {
        assert_eq!(sip("sip:h:65535").port, Some(65535));
        assert_eq!(sip("sip:h:0").port, Some(0));
        for bad in [
            "sip:h:65536",
            "sip:h:99999999999",
            "sip:h:5o60",
            "sip:h:",
            "sip:h:-1",
        ] {
            assert!(SipUri::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn odd_user_parts() {
        // RFC 4475 semiuri, esc01, escnull, intmeth.
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        assert!(u.params.is_empty());
        assert_eq!(
            sip("sip:null-%00-null@example.com").user.as_deref(),
            Some("null-%00-null")
        );
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert!(u.headers.is_none());
        assert!(SipUri::parse("sip:bad%zzescape@h").is_none());
        assert!(SipUri::parse("sip:@h").is_none());
    }

    #[test]
    fn other_schemes_and_rejections() {
        assert_eq!(
            Uri::parse("tel:+15551234567;phone-context=+1"),
            Some(Uri::Other("tel:+15551234567;phone-context=+1".into()))
        );
        assert_eq!(
            Uri::parse("urn:service:sos"),
            Some(Uri::Other("urn:service:sos".into()))
        );
        assert!(Uri::parse("soap.beep://192.0.2.103:3002").is_some());
        for bad in [
            "",
            "nocolon",
            ":x",
            "tel:",
            "<sip:a@b>",
            "sip:a@b c",
            "sip:a@b\t",
            "1abc:x",
            "sip:",
            "sip:a@",
            "sip:a@b;;lr",
            "sip:a@b;=x",
            "SIP:a@b\u{0}",
        ] {
            assert!(Uri::parse(bad).is_none(), "{bad:?}");
        }
        assert!(matches!(
            Uri::parse("SIP:alice@example.com"),
            Some(Uri::Sip(_))
        ));
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(
            percent_decode("12345%40192.168.118.3%3bto-tag%3D1").as_deref(),
            Some("12345@192.168.118.3;to-tag=1")
        );
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%4g", "%+1", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        let raw = "a@b;to-tag=x y&%\"[]/?:+$";
        let enc = percent_encode_hvalue(raw);
        assert_eq!(enc, "a%40b%3Bto-tag%3Dx%20y%26%25%22[]/?:+$");
        assert_eq!(percent_decode(&enc).as_deref(), Some(raw));
        assert!(valid_chars(&enc, is_header_char));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "sip:a@b",
            "sip:b",
            "sips:a:@b:1",
            "sip:a@[2001:db8::1]:5060;maddr=[2001:db8::2];lr",
            "sip:%41@h;x=;y?",
            "sip:+15551234567@gw.example.net;user=phone",
            "tel:+1-555-123",
            "urn:service:sos",
            "SIP:UPPER@EXAMPLE.COM",
        ] {
            round_trip(s);
        }
    }
}
