//! The SIP message model and its wire codec.

use std::fmt;

use super::headers::{CSeq, NameAddr, Via};
use super::uri::Uri;

/// Caps applied before and during parsing, so hostile input costs bounded work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (start line + headers + body) accepted, in bytes.
    pub max_message_size: usize,
    /// Most header fields accepted in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65_535,
            max_headers: 256,
        }
    }
}

/// A request method. Unknown methods are kept (a B2BUA must parse them to answer 501 or relay
/// them in a dialog).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Message,
    Refer,
    Subscribe,
    Notify,
    Publish,
    Other(String),
}

impl Method {
    /// Parses a method token (case-sensitive, RFC 3261 §7.1). `None` when not a valid token.
    pub fn parse(token: &str) -> Option<Method> {
        if !is_token(token) {
            return None;
        }
        Some(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "MESSAGE" => Method::Message,
            "REFER" => Method::Refer,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

/// RFC 3261 `token` character.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Non-empty string made only of RFC 3261 `token` characters.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Compact header forms (RFC 3261 §7.3.3 and the IANA registry).
const COMPACT: &[(u8, &str)] = &[
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'e', "Content-Encoding"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'f', "From"),
    (b's', "Subject"),
    (b'k', "Supported"),
    (b't', "To"),
    (b'v', "Via"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b'b', "Referred-By"),
    (b'u', "Allow-Events"),
    (b'x', "Session-Expires"),
    (b'a', "Accept-Contact"),
    (b'j', "Reject-Contact"),
    (b'd', "Request-Disposition"),
    (b'y', "Identity"),
    (b'n', "Identity-Info"),
];

/// Well-known header names in their RFC spelling; matched case-insensitively.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Resource-Priority",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Answer-Mode",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "Feature-Caps",
    "Flow-Timer",
    "From",
    "Geolocation",
    "Geolocation-Error",
    "Geolocation-Routing",
    "History-Info",
    "Identity",
    "Identity-Info",
    "Info-Package",
    "In-Reply-To",
    "Join",
    "Max-Breadth",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Access-Network-Info",
    "P-Asserted-Identity",
    "P-Asserted-Service",
    "P-Associated-URI",
    "P-Called-Party-ID",
    "P-Charging-Function-Addresses",
    "P-Charging-Vector",
    "P-Early-Media",
    "P-Preferred-Identity",
    "P-Preferred-Service",
    "P-Served-User",
    "P-Visited-Network-ID",
    "Path",
    "Permission-Missing",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Recv-Info",
    "Refer-Sub",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Resource-Priority",
    "Retry-After",
    "Route",
    "RSeq",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Session-ID",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Target-Dialog",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// Canonical form of a header name: compact forms expanded, well-known names in their RFC
/// spelling, anything else returned unchanged.
pub fn canonical_name(name: &str) -> &str {
    if let [b] = name.as_bytes() {
        let lower = b.to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| *c == lower) {
            return long;
        }
    }
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(name)
}

fn name_matches(header_name: &str, query: &str) -> bool {
    header_name.eq_ignore_ascii_case(canonical_name(query))
}

/// Splits a comma-separated header value, ignoring commas inside quoted strings and `<...>`.
/// Returns every element trimmed, including empty ones.
pub fn split_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let mut in_quote = false;
    let mut in_angle = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' if !in_angle => in_quote = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                out.push(value.get(start..i).unwrap_or("").trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value.get(start..).unwrap_or("").trim());
    out
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: String },
}

/// One header field as it appeared on the wire, with its name in canonical long form
/// (compact forms expanded, known names in their RFC spelling, unknown names as received) and its
/// value unfolded and trimmed. A line carrying several comma-separated values stays one `Header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Header fields in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// First value of the named header (case-insensitive name match, compact forms accepted).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| name_matches(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value of the named header, in order, with comma-separated lines split into separate
    /// values (splitting respects quotes and `<...>`). For headers that are not comma-lists
    /// (e.g. WWW-Authenticate, Date) use [`Headers::lines`]. Empty elements are dropped.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|h| name_matches(&h.name, name))
            .flat_map(|h| split_commas(&h.value))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Each header line of that name, unsplit.
    pub fn lines<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let canon = canonical_name(name);
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(canon))
            .map(|h| h.value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of header lines with that name.
    pub fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|h| name_matches(&h.name, name))
            .count()
    }

    /// Appends a header line at the end.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: canonical_name(name).to_string(),
            value: value.into(),
        });
    }

    /// Inserts a header line before all others (used for Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name: canonical_name(name).to_string(),
                value: value.into(),
            },
        );
    }

    /// Replaces every line of that name with one line holding `value` (at the first one's
    /// position, or appended when absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| name_matches(&h.name, name)) {
            Some(pos) => {
                let mut i = 0;
                self.0.retain(|h| {
                    let keep = i == pos || !name_matches(&h.name, name);
                    i += 1;
                    keep
                });
                if let Some(h) = self.0.get_mut(pos) {
                    h.value = value;
                }
            }
            None => self.push(name, value),
        }
    }

    /// Removes every line of that name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|h| !name_matches(&h.name, name));
        before - self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

/// A parsed SIP message. The body is opaque bytes, framed by Content-Length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// Why a message was refused. `reason` is short, printable ASCII, and suitable as a 400 reason
/// phrase ("Missing Call-ID", "Bad Content-Length", ...). `headers` holds whatever header lines
/// could still be read, so the caller can answer a broken request with a 400 when it has a Via,
/// From, To, Call-ID and CSeq to echo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SIP message: {reason}")]
pub struct ParseError {
    /// What class of fault, deciding the answer (see [`ParseErrorKind::status`]).
    pub kind: ParseErrorKind,
    /// The fault in words, used as the reason phrase of the 400.
    pub reason: String,
    pub is_request: bool,
    pub headers: Headers,
}

/// The class of a parse failure: what a receiver answers depends on it, never on the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Over `Limits::max_message_size`.
    TooLarge,
    /// A well-formed start line with a SIP version other than 2.0 (RFC 3261 §8.2.2 / 21.5.6).
    UnsupportedVersion,
    /// Anything else: start line, header, Content-Length or semantic faults.
    Syntax,
}

impl ParseErrorKind {
    /// The status a UAS answers a request with this fault (when it answers at all).
    pub fn status(self) -> u16 {
        match self {
            ParseErrorKind::UnsupportedVersion => 505,
            ParseErrorKind::TooLarge | ParseErrorKind::Syntax => 400,
        }
    }
}

/// Outcome of looking for one message at the start of a stream buffer (TCP/TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Incomplete,
    /// A whole message occupies `buf[skip..len]`; `buf[..skip]` are CRLF keepalives.
    Complete { skip: usize, len: usize },
    /// The stream cannot be framed (no or bad Content-Length, or over the size cap); the
    /// connection must be closed.
    Invalid(&'static str),
}

/// Finds the next whole message in a stream buffer. Stream transports require Content-Length
/// (RFC 3261 §18.3).
///
/// On `Complete { skip, len }` the message is `buf[skip..len]` and the caller consumes `len`
/// bytes; `buf[..skip]` are CRLF keepalives (RFC 5626 §4.4.1). A buffer holding nothing but
/// keepalives yields `Complete { skip: n, len: n }` (an empty message: consume it, answer a
/// double-CRLF ping with a CRLF pong, and parse nothing).
pub fn frame_stream(buf: &[u8], limits: &Limits) -> Framing {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead == buf.len() {
        // Only keepalives (or nothing). Keep a trailing lone CR: it may be half of a CRLF.
        let complete = if buf.last() == Some(&b'\r') {
            lead - 1
        } else {
            lead
        };
        return if complete == 0 {
            Framing::Incomplete
        } else {
            Framing::Complete {
                skip: complete,
                len: complete,
            }
        };
    }
    let skip = lead;
    let data = buf.get(skip..).unwrap_or_default();
    let window = data.get(..limits.max_message_size).unwrap_or(data);
    let sections = split_sections(window);
    let Some(body_start) = sections.body_start else {
        return if data.len() > limits.max_message_size {
            Framing::Invalid("Message too large")
        } else {
            Framing::Incomplete
        };
    };
    let (headers, header_err) = read_headers(&sections.header_lines, limits);
    let mut cl: Option<usize> = None;
    for h in headers.iter().filter(|h| h.name == "Content-Length") {
        let Some(v) = parse_usize(&h.value) else {
            return Framing::Invalid("Bad Content-Length");
        };
        match cl {
            Some(prev) if prev != v => return Framing::Invalid("Multiple Content-Length values"),
            _ => cl = Some(v),
        }
    }
    let Some(cl) = cl else {
        return Framing::Invalid(match header_err {
            Some("Too many headers") => "Too many headers",
            _ => "Missing Content-Length",
        });
    };
    let Some(msg_len) = body_start.checked_add(cl) else {
        return Framing::Invalid("Message too large");
    };
    if msg_len > limits.max_message_size {
        return Framing::Invalid("Message too large");
    }
    let Some(total) = skip.checked_add(msg_len) else {
        return Framing::Invalid("Message too large");
    };
    if buf.len() < total {
        Framing::Incomplete
    } else {
        Framing::Complete { skip, len: total }
    }
}

/// A message split at its line ends: start line, physical header lines (line ends removed)
/// and where the body starts (`None` when no empty line closes the header section).
struct Sections<'a> {
    start_line: &'a [u8],
    header_lines: Vec<&'a [u8]>,
    body_start: Option<usize>,
}

/// Splits at LF, accepting CRLF or a bare LF as line end.
fn split_sections(data: &[u8]) -> Sections<'_> {
    let mut out = Sections {
        start_line: &[],
        header_lines: Vec::new(),
        body_start: None,
    };
    let mut pos = 0;
    let mut first = true;
    while pos < data.len() {
        let rest = data.get(pos..).unwrap_or_default();
        let (mut line, next, had_nl) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (rest.get(..i).unwrap_or_default(), pos + i + 1, true),
            None => (rest, data.len(), false),
        };
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if first {
            out.start_line = line;
            first = false;
        } else if line.is_empty() {
            if had_nl {
                out.body_start = Some(next);
            }
            break;
        } else {
            out.header_lines.push(line);
        }
        pos = next;
    }
    out
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_bytes(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_wsp(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_wsp(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Unfolds continuation lines and parses every header line. Returns the headers that could be
/// read and the first error met.
fn read_headers(lines: &[&[u8]], limits: &Limits) -> (Vec<Header>, Option<&'static str>) {
    let mut err: Option<&'static str> = None;
    let mut logical: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        if line.first().copied().is_some_and(is_wsp) {
            match logical.last_mut() {
                Some(last) => {
                    while last.last().copied().is_some_and(is_wsp) {
                        last.pop();
                    }
                    last.push(b' ');
                    last.extend_from_slice(trim_bytes(line));
                }
                None => {
                    err.get_or_insert("Bad header folding");
                }
            }
        } else {
            if logical.len() >= limits.max_headers {
                err.get_or_insert("Too many headers");
                break;
            }
            logical.push(line.to_vec());
        }
    }
    let mut headers = Vec::with_capacity(logical.len());
    for line in &logical {
        match parse_header_line(line) {
            Ok(h) => headers.push(h),
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    (headers, err)
}

fn parse_header_line(line: &[u8]) -> Result<Header, &'static str> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("Bad header line")?;
    let name = trim_bytes(line.get(..colon).unwrap_or_default());
    let value = trim_bytes(line.get(colon + 1..).unwrap_or_default());
    let name = std::str::from_utf8(name).map_err(|_| "Bad header name")?;
    if !is_token(name) {
        return Err("Bad header name");
    }
    check_controls(value)?;
    let value = std::str::from_utf8(value).map_err(|_| "Invalid UTF-8 in header")?;
    Ok(Header {
        name: canonical_name(name).to_string(),
        value: value.to_string(),
    })
}

/// Refuses NUL and other control characters (HTAB excepted) in a header value, except as a
/// quoted-pair inside a quoted string (RFC 3261 §25.1; RFC 4475 intmeth has `\` NUL there).
fn check_controls(value: &[u8]) -> Result<(), &'static str> {
    let mut in_quote = false;
    let mut escaped = false;
    for &b in value {
        if escaped {
            escaped = false;
            continue;
        }
        if in_quote && b == b'\\' {
            escaped = true;
            continue;
        }
        if b == b'"' {
            in_quote = !in_quote;
            continue;
        }
        if b == 0 {
            return Err("NUL byte in header");
        }
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err("Control character in header");
        }
    }
    Ok(())
}

/// A non-empty run of ASCII digits that fits in `usize`.
pub(crate) fn parse_usize(s: &str) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0usize, |acc, b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
        } else {
            None
        }
    })
}

fn is_ctl_in_line(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || c == '\u{7f}'
}

const VERSION_NOT_SUPPORTED: &str = "Version Not Supported";

/// Why a start line was refused: a version other than SIP/2.0 (505) or bad syntax (400).
enum StartLineError {
    Version,
    Syntax(&'static str),
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, StartLineError> {
    start_line(line).map_err(|reason| {
        if reason == VERSION_NOT_SUPPORTED {
            StartLineError::Version
        } else {
            StartLineError::Syntax(reason)
        }
    })
}

fn start_line(line: &[u8]) -> Result<StartLine, &'static str> {
    let is_response = line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
    let line = std::str::from_utf8(line).map_err(|_| {
        if is_response {
            "Invalid UTF-8 in Status-Line"
        } else {
            "Invalid UTF-8 in Request-Line"
        }
    })?;
    if is_response {
        let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            if version.chars().any(is_ctl_in_line) {
                return Err("Bad Status-Line");
            }
            return Err(VERSION_NOT_SUPPORTED);
        }
        let code = rest.get(..3).ok_or("Bad Status-Code")?;
        let after = rest.get(3..).ok_or("Bad Status-Code")?;
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Bad Status-Code");
        }
        let reason = match after.strip_prefix(' ') {
            Some(r) => r,
            None if after.is_empty() => "",
            None => return Err("Bad Status-Code"),
        };
        let status: u16 = code.parse().map_err(|_| "Bad Status-Code")?;
        if !(100..=699).contains(&status) {
            return Err("Bad Status-Code");
        }
        if reason.chars().any(is_ctl_in_line) {
            return Err("Bad Reason-Phrase");
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_string(),
        });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err("Bad Request-Line");
    };
    if method.is_empty() || uri.is_empty() || version.is_empty() {
        return Err("Bad Request-Line");
    }
    let method = Method::parse(method).ok_or("Bad Method")?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let looks_like_version = version.len() > 4
            && version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            && !version
                .chars()
                .any(|c| c.is_whitespace() || is_ctl_in_line(c));
        return Err(if looks_like_version {
            VERSION_NOT_SUPPORTED
        } else {
            "Bad Request-Line"
        });
    }
    let uri = Uri::parse(uri).ok_or("Bad Request-URI")?;
    if let Uri::Sip(u) = &uri {
        // RFC 3261 §19.1.5: header components are not allowed in a Request-URI (RFC 4475
        // escruri).
        if u.headers.is_some() {
            return Err("Bad Request-URI");
        }
    }
    Ok(StartLine::Request { method, uri })
}

/// Checks that make a message unanswerable or unsafe to relay.
fn check_semantics(start: &StartLine, headers: &Headers) -> Result<(), &'static str> {
    // Via: every comma element of every line must parse (empty elements are errors, RFC 4475
    // badinv01).
    if headers.count("Via") == 0 {
        return Err("Missing Via");
    }
    for line in headers.lines("Via") {
        for v in split_commas(line) {
            if Via::parse(v).is_none() {
                return Err("Bad Via");
            }
        }
    }
    for (name, missing, bad) in [
        ("From", "Missing From", "Bad From"),
        ("To", "Missing To", "Bad To"),
    ] {
        match headers.count(name) {
            0 => return Err(missing),
            1 => {}
            _ => return Err("Multiple values in single-value header"),
        }
        if headers.get(name).and_then(NameAddr::parse).is_none() {
            return Err(bad);
        }
    }
    match headers.count("Call-ID") {
        0 => return Err("Missing Call-ID"),
        1 => {}
        _ => return Err("Multiple values in single-value header"),
    }
    let call_id = headers.get("Call-ID").unwrap_or("");
    if call_id.is_empty() || call_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("Bad Call-ID");
    }
    match headers.count("CSeq") {
        0 => return Err("Missing CSeq"),
        1 => {}
        _ => return Err("Multiple values in single-value header"),
    }
    let cseq = headers
        .get("CSeq")
        .and_then(CSeq::parse)
        .ok_or("Bad CSeq")?;
    if let StartLine::Request { method, .. } = start {
        if cseq.method != *method {
            return Err("CSeq method mismatch");
        }
        match headers.count("Max-Forwards") {
            0 => {}
            1 => {
                let ok = headers
                    .get("Max-Forwards")
                    .and_then(parse_usize)
                    .is_some_and(|v| v <= 255);
                if !ok {
                    return Err("Bad Max-Forwards");
                }
            }
            _ => return Err("Multiple values in single-value header"),
        }
    }
    for c in headers.values("Contact") {
        if c != "*" && NameAddr::parse(c).is_none() {
            return Err("Bad Contact");
        }
    }
    // RFC 3261 §20.17: the Date is always GMT (RFC 4475 baddate).
    for d in headers.lines("Date") {
        if d.rsplit(' ').next() != Some("GMT") {
            return Err("Bad Date");
        }
    }
    Ok(())
}

/// Parses one datagram or one framed stream message.
///
/// Over UDP, bytes past Content-Length are discarded (RFC 3261 §18.3); a Content-Length larger
/// than the body is an error; a missing Content-Length means "the rest of the datagram".
/// Semantic checks that make a request unanswerable or unsafe to relay (missing mandatory
/// headers, CSeq method mismatch, unknown SIP version, ...) are also reported here as errors.
///
/// Leniencies: leading CRLFs are skipped (RFC 3261 §7.5), bare LF line ends are accepted, and a
/// header section that is not closed by an empty line ends at the end of the datagram (no body).
pub fn parse_message(buf: &[u8], limits: &Limits) -> Result<Message, ParseError> {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let data = buf.get(lead..).unwrap_or_default();
    let is_request = !data
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
    let fail_as = |kind: ParseErrorKind, reason: &str, headers: &[Header]| ParseError {
        kind,
        reason: reason.to_string(),
        is_request,
        headers: Headers(headers.to_vec()),
    };
    let fail = |reason: &str, headers: &[Header]| ParseError {
        kind: ParseErrorKind::Syntax,
        reason: reason.to_string(),
        is_request,
        headers: Headers(headers.to_vec()),
    };
    if buf.len() > limits.max_message_size {
        return Err(fail_as(ParseErrorKind::TooLarge, "Message too large", &[]));
    }
    if data.is_empty() {
        return Err(fail("Empty message", &[]));
    }
    let sections = split_sections(data);
    let (headers, header_err) = read_headers(&sections.header_lines, limits);
    let start = parse_start_line(sections.start_line).map_err(|e| match e {
        StartLineError::Version => fail_as(
            ParseErrorKind::UnsupportedVersion,
            VERSION_NOT_SUPPORTED,
            &headers,
        ),
        StartLineError::Syntax(reason) => fail(reason, &headers),
    })?;
    if let Some(e) = header_err {
        return Err(fail(e, &headers));
    }
    let available = match sections.body_start {
        Some(b) => data.get(b..).unwrap_or_default(),
        None => &[],
    };
    let cls: Vec<&str> = headers
        .iter()
        .filter(|h| h.name == "Content-Length")
        .map(|h| h.value.as_str())
        .collect();
    let body = match cls.as_slice() {
        [] => available,
        [cl] => {
            let n = parse_usize(cl).ok_or_else(|| fail("Bad Content-Length", &headers))?;
            available
                .get(..n)
                .ok_or_else(|| fail("Content-Length larger than message", &headers))?
        }
        _ => return Err(fail("Multiple values in single-value header", &headers)),
    };
    let headers = Headers(headers);
    check_semantics(&start, &headers).map_err(|e| fail(e, &headers.0))?;
    Ok(Message {
        start,
        headers,
        body: body.to_vec(),
    })
}

impl Message {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// Prints the message; Content-Length is always written last among the headers and always
    /// matches the body, whatever the header list says.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes());
            }
            StartLine::Response { status, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {status} {reason}\r\n").as_bytes());
            }
        }
        for h in self.headers.iter() {
            if h.name.eq_ignore_ascii_case("Content-Length") || h.name.eq_ignore_ascii_case("l") {
                continue;
            }
            out.extend_from_slice(canonical_name(&h.name).as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn lim() -> Limits {
        Limits::default()
    }

    fn parse(s: &str) -> Result<Message, ParseError> {
        parse_message(s.as_bytes(), &lim())
    }

    fn reason(s: &str) -> String {
        parse(s).expect_err("should fail").reason
    }

    #[test]
    fn methods() {
        assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
        assert_eq!(
            Method::parse("invite"),
            Some(Method::Other("invite".into()))
        );
        assert_eq!(
            Method::parse("RE%47IST%45R").unwrap().as_str(),
            "RE%47IST%45R"
        );
        assert_eq!(Method::parse(""), None);
        assert_eq!(Method::parse("IN VITE"), None);
        assert_eq!(Method::parse("<X>"), None);
        assert_eq!(Method::Prack.to_string(), "PRACK");
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("i"), "Call-ID");
        assert_eq!(canonical_name("L"), "Content-Length");
        assert_eq!(canonical_name("call-id"), "Call-ID");
        assert_eq!(canonical_name("CSEQ"), "CSeq");
        assert_eq!(canonical_name("www-authenticate"), "WWW-Authenticate");
        assert_eq!(canonical_name("p-asserted-identity"), "P-Asserted-Identity");
        assert_eq!(canonical_name("mime-version"), "MIME-Version");
        assert_eq!(canonical_name("X-Custom"), "X-Custom");
        assert_eq!(canonical_name("z"), "z");
    }

    #[test]
    fn parses_a_request() {
        let m = parse(INVITE).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.body, b"v=0\n");
        assert_eq!(
            m.headers.get("call-id"),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(m.headers.get("i"), m.headers.get("Call-ID"));
        assert_eq!(m.headers.count("v"), 1);
        let again = parse_message(&m.to_bytes(), &lim()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn compact_folding_and_lws() {
        let msg = "OPTIONS sip:a@b SIP/2.0\r\n\
v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
f : <sip:x@y>\r\n\
\x20;tag=1\r\n\
t:\t<sip:a@b>\r\n\
i:  c1\r\n\
CSEQ: 1\r\n\
\tOPTIONS\r\n\
X-Odd  :  keep  me  \r\n\
l: 0\r\n\r\n";
        let m = parse(msg).unwrap();
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "X-Odd",
                "Content-Length"
            ]
        );
        assert_eq!(m.headers.get("From"), Some("<sip:x@y> ;tag=1"));
        assert_eq!(m.headers.get("cseq"), Some("1 OPTIONS"));
        assert_eq!(m.headers.get("x-odd"), Some("keep  me"));
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.starts_with("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP"));
        assert!(text.ends_with("X-Odd: keep  me\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn bare_lf_and_leading_crlf() {
        let lf = INVITE.replace("\r\n", "\n");
        let m = parse(&lf).unwrap();
        assert_eq!(m.body, b"v=0\n");
        let m2 = parse(&format!("\r\n\r\n{INVITE}")).unwrap();
        assert_eq!(m2.headers, parse(INVITE).unwrap().headers);
    }

    #[test]
    fn content_length_rules() {
        // Trailing bytes past Content-Length are dropped.
        let m = parse(&format!("{INVITE}garbage")).unwrap();
        assert_eq!(m.body, b"v=0\n");
        assert_eq!(
            reason(&INVITE.replace("Content-Length: 4", "Content-Length: 5")),
            "Content-Length larger than message"
        );
        for bad in ["-1", "4a", "", "99999999999999999999999999", "+4", "4, 4"] {
            assert_eq!(
                reason(&INVITE.replace("Content-Length: 4", &format!("Content-Length: {bad}"))),
                "Bad Content-Length",
                "{bad}"
            );
        }
        assert_eq!(
            reason(&INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 4")),
            "Multiple values in single-value header"
        );
        // Absent: rest of the datagram.
        let m = parse(&INVITE.replace("Content-Length: 4\r\n", "")).unwrap();
        assert_eq!(m.body, b"v=0\n");
        // No empty line: header section ends with the datagram.
        let cut = INVITE.split("\r\n\r\n").next().unwrap();
        let m = parse(&cut.replace("Content-Length: 4", "Content-Length: 0")).unwrap();
        assert!(m.body.is_empty());
        assert_eq!(reason(cut), "Content-Length larger than message");
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_message_size: 100,
            max_headers: 256,
        };
        assert_eq!(
            parse_message(INVITE.as_bytes(), &small).unwrap_err().reason,
            "Message too large"
        );
        let few = Limits {
            max_message_size: 65_535,
            max_headers: 3,
        };
        let e = parse_message(INVITE.as_bytes(), &few).unwrap_err();
        assert_eq!(e.reason, "Too many headers");
        assert_eq!(e.headers.0.len(), 3);
    }

    #[test]
    fn start_line_errors() {
        let with_start = |l: &str| {
            let rest = INVITE.split_once("\r\n").unwrap().1;
            reason(&format!("{l}\r\n{rest}"))
        };
        assert_eq!(with_start("INVITE  sip:bob@b SIP/2.0"), "Bad Request-Line");
        assert_eq!(with_start("INVITE sip:bob@b SIP/2.0 "), "Bad Request-Line");
        assert_eq!(with_start("INVITE <sip:bob@b> SIP/2.0"), "Bad Request-URI");
        assert_eq!(
            with_start("INVITE sip:bob@b SIP/3.0"),
            "Version Not Supported"
        );
        assert_eq!(with_start("INVITE sip:bob@b HTTP/1.1"), "Bad Request-Line");
        assert_eq!(with_start("INV<ITE sip:bob@b SIP/2.0"), "Bad Method");
        assert_eq!(with_start("INVITE sip:b?x=y SIP/2.0"), "Bad Request-URI");
        let e = parse(&INVITE.replace("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE x"))
            .unwrap_err();
        assert!(e.is_request);
        assert!(e.headers.contains("Via"));
    }

    fn response(start: &str) -> Result<Message, ParseError> {
        parse(&format!(
            "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn status_lines() {
        let m = response("SIP/2.0 180 Ringing").unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(
            m.start,
            StartLine::Response {
                status: 180,
                reason: "Ringing".into()
            }
        );
        assert!(response("SIP/2.0 200 ").is_ok());
        assert!(response("SIP/2.0 200").is_ok());
        assert!(response("SIP/2.0 200 Très bien").is_ok());
        assert_eq!(
            response("SIP/2.0 099 X").unwrap_err().reason,
            "Bad Status-Code"
        );
        assert_eq!(
            response("SIP/2.0 700 X").unwrap_err().reason,
            "Bad Status-Code"
        );
        assert_eq!(
            response("SIP/2.0 2000 X").unwrap_err().reason,
            "Bad Status-Code"
        );
        assert_eq!(
            response("SIP/2.0 20 X").unwrap_err().reason,
            "Bad Status-Code"
        );
        let e = response("SIP/3.0 200 OK").unwrap_err();
        assert_eq!(e.reason, "Version Not Supported");
        assert_eq!(e.kind, ParseErrorKind::UnsupportedVersion);
        assert_eq!(e.kind.status(), 505);
        assert!(!e.is_request);
    }

    #[test]
    fn header_byte_rules() {
        let with = |h: &[u8]| {
            let mut b = INVITE.as_bytes().to_vec();
            let at = INVITE.find("Content-Type").unwrap();
            b.splice(at..at, h.iter().copied());
            parse_message(&b, &lim())
        };
        assert_eq!(
            with(b"X: a\0b\r\n").unwrap_err().reason,
            "NUL byte in header"
        );
        assert_eq!(
            with(b"X: a\x01b\r\n").unwrap_err().reason,
            "Control character in header"
        );
        assert_eq!(
            with(b"X: a\rb\r\n").unwrap_err().reason,
            "Control character in header"
        );
        assert_eq!(
            with(b"X: \xff\xfe\r\n").unwrap_err().reason,
            "Invalid UTF-8 in header"
        );
        assert_eq!(with(b"no colon\r\n").unwrap_err().reason, "Bad header line");
        assert_eq!(
            with(b"Bad Name: x\r\n").unwrap_err().reason,
            "Bad header name"
        );
        // Escaped NUL inside a quoted string is a quoted-pair (RFC 4475 intmeth).
        assert!(with(b"X: \"a\\\0b\"\r\n").is_ok());
        assert!(with(b"X: \xc3\xa9t\xc3\xa9\r\n").is_ok());
        // Binary bodies are never decoded.
        let mut b = INVITE.replace("v=0\n", "").into_bytes();
        b.extend_from_slice(&[0, 0xff, 0xfe, b'\n']);
        assert_eq!(
            parse_message(&b, &lim()).unwrap().body,
            [0, 0xff, 0xfe, b'\n']
        );
    }

    #[test]
    fn semantic_errors() {
        let without = |name: &str| {
            let kept: Vec<&str> = INVITE
                .split("\r\n")
                .filter(|l| !l.starts_with(&format!("{name}:")))
                .collect();
            reason(&kept.join("\r\n"))
        };
        assert_eq!(without("Via"), "Missing Via");
        assert_eq!(without("From"), "Missing From");
        assert_eq!(without("To"), "Missing To");
        assert_eq!(without("Call-ID"), "Missing Call-ID");
        assert_eq!(without("CSeq"), "Missing CSeq");
        assert!(parse(&INVITE.replace("Max-Forwards: 70\r\n", "")).is_ok());
        let sub = |a: &str, b: &str| reason(&INVITE.replace(a, b));
        assert_eq!(sub("SIP/2.0/UDP pc33", "SIP/2.0/ pc33"), "Bad Via");
        assert_eq!(sub("From: Alice", "From: Al,ice"), "Bad From");
        assert_eq!(sub("To: Bob", "To: \"Bob"), "Bad To");
        assert_eq!(sub("CSeq: 314159 INVITE", "CSeq: x INVITE"), "Bad CSeq");
        assert_eq!(
            sub("CSeq: 314159 INVITE", "CSeq: 1 ACK"),
            "CSeq method mismatch"
        );
        assert_eq!(
            sub("Max-Forwards: 70", "Max-Forwards: 256"),
            "Bad Max-Forwards"
        );
        assert_eq!(
            sub("Max-Forwards: 70", "Max-Forwards: -1"),
            "Bad Max-Forwards"
        );
        assert_eq!(
            sub("Max-Forwards: 70", "Max-Forwards: 70\r\nMax-Forwards: 70"),
            "Multiple values in single-value header"
        );
        assert_eq!(
            sub("CSeq: 314159 INVITE", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE"),
            "Multiple values in single-value header"
        );
        assert_eq!(sub("Call-ID: a84b", "Call-ID: a8 4b"), "Bad Call-ID");
        assert!(parse(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0")).is_ok());
    }

    #[test]
    fn headers_api() {
        let mut h = Headers::default();
        h.push(
            "v",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push("Route", "<sip:p1;lr>, \"x, y\" <sip:p2;lr>");
        h.push("route", "<sip:p3;lr>");
        h.push_front("Via", "SIP/2.0/UDP me;branch=z9hG4bK0");
        assert_eq!(h.0[0].name, "Via");
        assert_eq!(h.0[1].name, "Via");
        assert_eq!(h.count("via"), 2);
        assert_eq!(h.values("Via").len(), 3);
        assert_eq!(
            h.values("Route"),
            ["<sip:p1;lr>", "\"x, y\" <sip:p2;lr>", "<sip:p3;lr>"]
        );
        assert_eq!(h.lines("ROUTE").count(), 2);
        h.set("Route", "<sip:only;lr>");
        assert_eq!(h.lines("Route").collect::<Vec<_>>(), ["<sip:only;lr>"]);
        assert_eq!(h.0[2].name, "Route");
        h.set("Max-Forwards", "70");
        assert_eq!(h.0.last().unwrap().value, "70");
        assert_eq!(h.remove("v"), 2);
        assert!(!h.contains("Via"));
        assert_eq!(h.remove("Via"), 0);
        assert_eq!(
            split_commas("a, \"b,\\\"c\" <d,e>, , f"),
            ["a", "\"b,\\\"c\" <d,e>", "", "f"]
        );
    }

    #[test]
    fn to_bytes_content_length_last() {
        let mut m = parse(INVITE).unwrap();
        m.body = b"hello\0\xff".to_vec();
        m.headers.push("X-After", "1");
        let out = m.to_bytes();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("X-After: 1\r\nContent-Length: 7\r\n\r\nhello"));
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert_eq!(parse_message(&out, &lim()).unwrap().body, m.body);
    }

    #[test]
    fn frame_stream_cases() {
        let l = lim();
        let one = INVITE.as_bytes();
        assert_eq!(
            frame_stream(one, &l),
            Framing::Complete {
                skip: 0,
                len: one.len()
            }
        );
        // Partial: any strict prefix is incomplete.
        for cut in [0, 1, 10, one.len() - 5, one.len() - 1] {
            assert_eq!(frame_stream(&one[..cut], &l), Framing::Incomplete, "{cut}");
        }
        // Two messages back to back.
        let two = [one, one].concat();
        assert_eq!(
            frame_stream(&two, &l),
            Framing::Complete {
                skip: 0,
                len: one.len()
            }
        );
        // CRLF keepalives before a message, and alone.
        let ka = [b"\r\n\r\n".as_slice(), one].concat();
        assert_eq!(
            frame_stream(&ka, &l),
            Framing::Complete {
                skip: 4,
                len: 4 + one.len()
            }
        );
        assert_eq!(
            frame_stream(b"\r\n\r\n", &l),
            Framing::Complete { skip: 4, len: 4 }
        );
        assert_eq!(
            frame_stream(b"\r\n", &l),
            Framing::Complete { skip: 2, len: 2 }
        );
        assert_eq!(
            frame_stream(b"\r\n\r", &l),
            Framing::Complete { skip: 2, len: 2 }
        );
        assert_eq!(frame_stream(b"\r", &l), Framing::Incomplete);
        assert_eq!(frame_stream(b"", &l), Framing::Incomplete);
        // Missing, bad or conflicting Content-Length.
        let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
        assert_eq!(
            frame_stream(no_cl.as_bytes(), &l),
            Framing::Invalid("Missing Content-Length")
        );
        let bad = INVITE.replace("Content-Length: 4", "Content-Length: -4");
        assert_eq!(
            frame_stream(bad.as_bytes(), &l),
            Framing::Invalid("Bad Content-Length")
        );
        let two_cl = INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 5");
        assert!(matches!(
            frame_stream(two_cl.as_bytes(), &l),
            Framing::Invalid(_)
        ));
        // Compact form and bare LF.
        let compact = INVITE
            .replace("Content-Length: 4", "l:4")
            .replace("\r\n", "\n");
        assert_eq!(
            frame_stream(compact.as_bytes(), &l),
            Framing::Complete {
                skip: 0,
                len: compact.len()
            }
        );
        // Oversize: declared body too big, or a header section that never ends.
        let huge = INVITE.replace("Content-Length: 4", "Content-Length: 70000");
        assert_eq!(
            frame_stream(huge.as_bytes(), &l),
            Framing::Invalid("Message too large")
        );
        let endless = vec![b'a'; 70_000];
        assert_eq!(
            frame_stream(&endless, &l),
            Framing::Invalid("Message too large")
        );
        assert_eq!(frame_stream(&endless[..1000], &l), Framing::Incomplete);
        let overflow = INVITE.replace("Content-Length: 4", "Content-Length: 99999999999999999999");
        assert!(matches!(
            frame_stream(overflow.as_bytes(), &l),
            Framing::Invalid(_)
        ));
    }
}
