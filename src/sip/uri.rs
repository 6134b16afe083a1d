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
        todo!("{s}")
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
    /// Parses an absolute URI: `sip:`/`sips:` into parts, any other `scheme:` opaque. `None` when
    /// there is no scheme or the text contains whitespace or `<>`.
    pub fn parse(s: &str) -> Option<Uri> {
        todo!("{s}")
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
        let _ = f;
        todo!()
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other(s) => f.write_str(s),
        }
    }
}
