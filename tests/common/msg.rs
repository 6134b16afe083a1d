//! Minimal, independent, string-based SIP message parsing and building for tests.
//! Deliberately does not use palisade's parser.

use std::fmt::Write as _;

/// Compact header forms (RFC 3261 7.3.3 and extensions).
const COMPACT: &[(&str, &str)] = &[
    ("i", "call-id"),
    ("m", "contact"),
    ("e", "content-encoding"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("f", "from"),
    ("s", "subject"),
    ("k", "supported"),
    ("t", "to"),
    ("v", "via"),
    ("o", "event"),
    ("r", "refer-to"),
    ("b", "referred-by"),
    ("u", "allow-events"),
    ("x", "session-expires"),
];

/// Canonical lower-case long form of a header name.
pub fn canon(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    for (short, long) in COMPACT {
        if n == *short {
            return (*long).to_string();
        }
    }
    n
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Msg {
    /// Parse one message from `buf`. Header section must be valid UTF-8-ish
    /// (lossy conversion is applied). Returns None when there is no header end.
    /// The body is the rest of the datagram, cut to Content-Length if present.
    pub fn parse(buf: &[u8]) -> Option<Msg> {
        let (head_end, sep_len) = find_head_end(buf)?;
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let mut lines: Vec<String> = Vec::new();
        for raw in head.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if (line.starts_with(' ') || line.starts_with('\t')) && !lines.is_empty() {
                // header folding
                let last = lines.last_mut().unwrap();
                last.push(' ');
                last.push_str(line.trim());
            } else {
                lines.push(line.to_string());
            }
        }
        let mut it = lines.into_iter();
        let start = it.next()?.trim_end().to_string();
        if start.is_empty() {
            return None;
        }
        let mut headers = Vec::new();
        for l in it {
            if l.is_empty() {
                continue;
            }
            let (n, v) = l.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let rest = &buf[head_end + sep_len..];
        let mut m = Msg {
            start,
            headers,
            body: Vec::new(),
        };
        let body = match m.content_length() {
            Some(cl) if cl <= rest.len() => rest[..cl].to_vec(),
            _ => rest.to_vec(),
        };
        m.body = body;
        Some(m)
    }

    pub fn is_request(&self) -> bool {
        !self.start.starts_with("SIP/")
    }
    pub fn is_response(&self) -> bool {
        self.start.starts_with("SIP/2.0 ")
    }
    /// Request method, or None for responses.
    pub fn method(&self) -> Option<&str> {
        if self.is_request() {
            self.start.split_whitespace().next()
        } else {
            None
        }
    }
    pub fn request_uri(&self) -> Option<&str> {
        if self.is_request() {
            self.start.split_whitespace().nth(1)
        } else {
            None
        }
    }
    /// Response status code, or 0 for requests.
    pub fn status(&self) -> u16 {
        if self.is_response() {
            self.start
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        } else {
            0
        }
    }
    /// First value of a header (compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        let c = canon(name);
        self.headers
            .iter()
            .find(|(n, _)| canon(n) == c)
            .map(|(_, v)| v.as_str())
    }
    /// All values of a header, splitting comma-separated lists outside quotes and <>.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let c = canon(name);
        let mut out = Vec::new();
        for (n, v) in &self.headers {
            if canon(n) == c {
                out.extend(split_list(v));
            }
        }
        out
    }
    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }
    /// (number, method) of CSeq.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = it.next()?.to_string();
        Some((n, m))
    }
    pub fn cseq_method(&self) -> Option<String> {
        self.cseq().map(|c| c.1)
    }
    pub fn top_via(&self) -> Option<String> {
        self.header_values("via").into_iter().next()
    }
    pub fn branch(&self) -> Option<String> {
        param(&self.top_via()?, "branch")
    }
    #[allow(clippy::wrong_self_convention)]
    pub fn from_tag(&self) -> Option<String> {
        param(self.header("from")?, "tag")
    }
    pub fn to_tag(&self) -> Option<String> {
        param(self.header("to")?, "tag")
    }
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
    /// URI inside the first Contact.
    pub fn contact_uri(&self) -> Option<String> {
        self.header_values("contact")
            .first()
            .map(|c| uri_of(c).to_string())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Serialize. Content-Length is (re)computed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        let _ = write!(s, "{}\r\n", self.start);
        for (n, v) in &self.headers {
            if canon(n) == "content-length" {
                continue;
            }
            let _ = write!(s, "{}: {}\r\n", n, v);
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut b = s.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }
    pub fn set_header(&mut self, name: &str, value: &str) {
        let c = canon(name);
        self.headers.retain(|(n, _)| canon(n) != c);
        self.headers.push((name.to_string(), value.to_string()));
    }
    pub fn remove_header(&mut self, name: &str) {
        let c = canon(name);
        self.headers.retain(|(n, _)| canon(n) != c);
    }
    pub fn summary(&self) -> String {
        format!(
            "{} [{}]",
            self.start,
            self.header("cseq").unwrap_or("no CSeq")
        )
    }
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) if b < a => Some((b, 2)),
        (Some(a), _) => Some((a, 4)),
        (None, Some(b)) => Some((b, 2)),
        (None, None) => None,
    }
}

/// Split a header value list on commas outside quotes and angle brackets.
pub fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut q, mut a) = (false, false);
    let mut esc = false;
    for ch in v.chars() {
        if esc {
            cur.push(ch);
            esc = false;
            continue;
        }
        match ch {
            '\\' if q => {
                esc = true;
                cur.push(ch)
            }
            '"' => {
                q = !q;
                cur.push(ch)
            }
            '<' if !q => {
                a = true;
                cur.push(ch)
            }
            '>' if !q => {
                a = false;
                cur.push(ch)
            }
            ',' if !q && !a => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(ch),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Header parameter (after the URI / outside <>), e.g. tag or branch.
pub fn param(v: &str, name: &str) -> Option<String> {
    let after = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    for p in after.split(';').skip(1) {
        let (k, val) = match p.split_once('=') {
            Some((k, val)) => (k.trim(), val.trim()),
            None => (p.trim(), ""),
        };
        if k.eq_ignore_ascii_case(name) {
            return Some(val.to_string());
        }
    }
    None
}

/// URI of a name-addr or addr-spec value.
pub fn uri_of(v: &str) -> &str {
    if let (Some(a), Some(b)) = (v.find('<'), v.find('>')) {
        if a < b {
            return &v[a + 1..b];
        }
    }
    v.split(';').next().unwrap_or(v).trim()
}

/// host:port of a SIP URI (default port 5060) if host is an IPv4 literal.
pub fn uri_addr(uri: &str) -> Option<std::net::SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let rest = rest.rsplit_once('@').map(|x| x.1).unwrap_or(rest);
    let hostport = rest.split([';', '?', '>']).next()?;
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 5060),
    };
    let ip: std::net::Ipv4Addr = host.parse().ok()?;
    Some(std::net::SocketAddr::from((ip, port)))
}

/// Where a response to a request with this top Via goes (RFC 3261 18.2.2 / RFC 3581).
pub fn via_response_addr(via: &str) -> Option<std::net::SocketAddr> {
    let sent_by = via.split_whitespace().nth(1)?.split(';').next()?;
    let (host, port) = match sent_by.split_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (sent_by.to_string(), 5060u16),
    };
    let host = param(&format!("<>{}", via_params(via)), "received").unwrap_or(host);
    let port = match param(&format!("<>{}", via_params(via)), "rport") {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => port,
    };
    let ip: std::net::Ipv4Addr = host.parse().ok()?;
    Some(std::net::SocketAddr::from((ip, port)))
}

fn via_params(via: &str) -> &str {
    match via.find(';') {
        Some(i) => &via[i..],
        None => "",
    }
}

/// Builder helper.
pub fn request(method: &str, uri: &str, headers: &[(&str, String)], body: &[u8]) -> Msg {
    Msg {
        start: format!("{} {} SIP/2.0", method, uri),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
        body: body.to_vec(),
    }
}

/// Find the end of one framed message in a TCP stream buffer.
/// Returns total length if a whole message (head + Content-Length body) is present.
pub fn stream_frame_len(buf: &[u8]) -> Option<usize> {
    // skip leading CRLF keep-alives
    let lead = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let b = &buf[lead..];
    let (he, sl) = find_head_end(b)?;
    let head = String::from_utf8_lossy(&b[..he]);
    let mut cl = 0usize;
    for line in head.split('\n') {
        if let Some((n, v)) = line.split_once(':') {
            if canon(n) == "content-length" {
                cl = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let total = lead + he + sl + cl;
    if buf.len() >= total {
        Some(total)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn parse_compact_and_folding() {
        let raw = b"INVITE sip:cindy@operator-b.example SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKabc;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKdef\r\n\
f: \"Alice, A\" <sip:alice@operator-a.example>;tag=111\r\n\
t: <sip:cindy@operator-b.example>\r\n\
i: call-1@x\r\n\
CSeq: 7\r\n INVITE\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n\
l: 4\r\n\r\nabcdEXTRA";
        let m = Msg::parse(raw).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.request_uri(), Some("sip:cindy@operator-b.example"));
        assert_eq!(m.call_id(), Some("call-1@x"));
        assert_eq!(m.cseq(), Some((7, "INVITE".to_string())));
        assert_eq!(m.branch().as_deref(), Some("z9hG4bKabc"));
        assert_eq!(m.from_tag().as_deref(), Some("111"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.header_values("via").len(), 2);
        assert_eq!(
            m.header_values("record-route"),
            vec!["<sip:p1;lr>", "<sip:p2;lr>"]
        );
        assert_eq!(m.body, b"abcd");
        let again = Msg::parse(&m.to_bytes()).unwrap();
        assert_eq!(again.body, b"abcd");
        assert_eq!(again.call_id(), Some("call-1@x"));
    }

    #[test]
    fn parse_response_and_addrs() {
        let raw = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.10.1:5070;received=127.0.10.9;rport=5099;branch=z9hG4bKx\r\nTo: <sip:a@b>;tag=t1\r\nContact: \"X\" <sip:u@127.0.10.2:5062;transport=udp>;expires=3\r\nContent-Length: 0\r\n\r\n";
        let m = Msg::parse(raw).unwrap();
        assert_eq!(m.status(), 180);
        assert_eq!(m.to_tag().as_deref(), Some("t1"));
        let c = m.contact_uri().unwrap();
        assert_eq!(c, "sip:u@127.0.10.2:5062;transport=udp");
        assert_eq!(uri_addr(&c), Some("127.0.10.2:5062".parse().unwrap()));
        assert_eq!(
            uri_addr("sip:127.0.10.2"),
            Some("127.0.10.2:5060".parse().unwrap())
        );
        assert_eq!(uri_addr("sip:x@host.example"), None);
        let v = m.top_via().unwrap();
        assert_eq!(
            via_response_addr(&v),
            Some("127.0.10.9:5099".parse().unwrap())
        );
        assert_eq!(
            via_response_addr("SIP/2.0/UDP 127.0.40.2:5060;branch=z9hG4bK1"),
            Some("127.0.40.2:5060".parse().unwrap())
        );
    }

    #[test]
    fn tcp_framing() {
        let one = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut two = one.to_vec();
        two.extend_from_slice(b"OPTIONS sip:y SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!(stream_frame_len(&two), Some(one.len()));
        assert_eq!(stream_frame_len(&one[..one.len() - 1]), None);
        assert_eq!(
            stream_frame_len(&two[one.len()..]),
            Some(two.len() - one.len())
        );
    }
}
