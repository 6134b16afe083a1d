//! The message parser: [`parse_message`] for one datagram or framed message, the [`Limits`] it
//! enforces, and the start-line, header-line and semantic checks behind it.

use super::error::{ParseError, ParseErrorKind};
use super::fields::{canonical_name, split_commas, Header, Headers};
use super::headers::{CSeq, NameAddr, Via};
use super::message::{is_token, Message, Method, StartLine};
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

/// A message split at its line ends: start line, physical header lines (line ends removed)
/// and where the body starts (`None` when no empty line closes the header section).
pub(super) struct Sections<'a> {
    pub(super) start_line: &'a [u8],
    pub(super) header_lines: Vec<&'a [u8]>,
    pub(super) body_start: Option<usize>,
}

/// Splits at LF, accepting CRLF or a bare LF as line end.
pub(super) fn split_sections(data: &[u8]) -> Sections<'_> {
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
pub(super) fn read_headers(
    lines: &[&[u8]],
    limits: &Limits,
) -> (Vec<Header>, Option<&'static str>) {
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

/// Whether the first line is a header field (`token *WSP ":"`), i.e. the start line is missing.
/// Such a datagram is neither a request nor a response: it is dropped, never answered with a
/// 400 built from whatever headers it happens to carry (engine fuzz finding 76cdee1d, README).
fn starts_with_header(data: &[u8]) -> bool {
    let name = data
        .iter()
        .take_while(|&&b| super::message::is_token_char(b))
        .count();
    let after = data.get(name..).unwrap_or_default();
    let wsp = after.iter().take_while(|&&b| is_wsp(b)).count();
    name > 0 && after.get(wsp) == Some(&b':')
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
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        && !starts_with_header(data);
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
