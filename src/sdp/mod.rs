//! SDP bodies (RFC 8866) as seen by the TrGW.
//!
//! The border anchors every media stream on itself: for each offer/answer crossing it, the
//! call logic reads the far-end addresses of each m-line ([`Sdp::media`],
//! [`MediaInfo::rtp_remote`], [`MediaInfo::rtcp_remote`]) to program the relay, then
//! [`Sdp::rewrite`]s the body so the other side sees only the border's relay endpoints.
//!
//! The model is a lossless list of lines: parsing keeps every `x=value` line verbatim, and
//! rewriting touches only the lines Palisade owns (`o=`, `c=`, `m=` ports, `a=rtcp`,
//! `a=candidate`, `a=remote-candidates`). Everything else (codecs, ICE credentials, DTLS
//! fingerprints, SDES keys, preconditions, unknown attributes) is carried in order, byte for
//! byte. Input may use CRLF or bare LF; output is always CRLF. Blank lines are ignored.
//!
//! The module is pure and total: any byte string either parses or yields an [`SdpError`]
//! naming the (1-based) line at fault and the [`SdpErrorKind`] of fault; nothing here panics on
//! input.

use std::net::{IpAddr, SocketAddr};

mod rewrite;
#[cfg(test)]
mod tests;

/// Upper bound on the number of lines in a body (hostile traffic guard).
pub const MAX_LINES: usize = 2000;

/// A parsed SDP body: its lines, verbatim (without line terminators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    lines: Vec<String>,
}

/// Why a body was refused. `line` is 1-based and counts physical lines of the input; `kind`
/// says what class of fault it is (for callers and tests to match on), `reason` says it in
/// words for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason}")]
pub struct SdpError {
    pub kind: SdpErrorKind,
    pub line: usize,
    pub reason: String,
}

/// The class of an SDP fault, one per check [`parse`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpErrorKind {
    /// No non-blank line at all.
    Empty,
    /// The body is not UTF-8 (`line` is where the first bad byte is).
    NotUtf8,
    /// More than [`MAX_LINES`] lines.
    TooManyLines,
    /// The first line is not `v=0`.
    MissingVersion,
    /// Not `x=value` with `x` a lowercase letter.
    BadLine,
    /// A control character (tab aside) in a line.
    ControlCharacter,
    /// `o=` without its 6 fields.
    BadOrigin,
    /// `c=` that is not `IN IP4|IP6 <address literal>` with matching address type.
    BadConnection,
    /// `m=` without media, a valid port and a proto.
    BadMedia,
    /// An attribute the rewriter owns (`a=rtcp`) that does not parse.
    BadAttribute,
}

/// Media direction (RFC 3264 §5.1); media-level attributes override the session level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// One `a=candidate` line (RFC 8839 §5.1). Candidates whose address is not an IP literal
/// (e.g. mDNS `*.local` names) or that are otherwise malformed are not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub foundation: String,
    pub component: u16,
    pub transport: String,
    pub priority: u32,
    pub addr: IpAddr,
    pub port: u16,
    pub typ: String,
}

/// What one m-line says about its far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Position of the m-line (0-based), the index into `anchors` for [`Sdp::rewrite`].
    pub index: usize,
    /// `audio`, `video`, `application`, `image`, ... as written.
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// Media-level `c=` else session-level `c=`.
    pub connection: Option<IpAddr>,
    pub rtcp_mux: bool,
    pub mid: Option<String>,
    pub direction: Direction,
    pub candidates: Vec<Candidate>,
    /// Explicit `a=rtcp:port [IN IP4 addr]`, its address defaulting to `connection`.
    pub rtcp: Option<SocketAddr>,
}

/// The border's relay endpoint for one m-line. `rtcp_port` `None` means RTCP is muxed (or not
/// relayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub addr: IpAddr,
    pub rtp_port: u16,
    pub rtcp_port: Option<u16>,
}

/// Parses a body. It must start with `v=0`; every other non-blank line must be `x=...` with
/// `x` a lowercase letter; it must be UTF-8 without control characters (tab aside) and have at
/// most [`MAX_LINES`] lines. `o=`, `c=`, `m=` and `a=rtcp` lines are checked because the
/// rewriter owns them; other lines are not interpreted.
pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            let valid = body.get(..e.valid_up_to()).unwrap_or(&[]);
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            return Err(err(SdpErrorKind::NotUtf8, line, "not UTF-8"));
        }
    };
    let mut lines = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        if lines.len() >= MAX_LINES {
            return Err(err(
                SdpErrorKind::TooManyLines,
                no,
                format!("more than {MAX_LINES} lines"),
            ));
        }
        check_line(line).map_err(|(kind, reason)| err(kind, no, reason))?;
        if lines.is_empty() && line != "v=0" {
            return Err(err(
                SdpErrorKind::MissingVersion,
                no,
                "SDP must start with v=0",
            ));
        }
        lines.push(line.to_owned());
    }
    if lines.is_empty() {
        return Err(err(SdpErrorKind::Empty, 1, "empty body"));
    }
    Ok(Sdp { lines })
}

fn err(kind: SdpErrorKind, line: usize, reason: impl Into<String>) -> SdpError {
    SdpError {
        kind,
        line,
        reason: reason.into(),
    }
}

/// Validates one line's shape and, for the lines the rewriter owns, its content.
fn check_line(line: &str) -> Result<(), (SdpErrorKind, String)> {
    let bytes = line.as_bytes();
    let (Some(&kind), Some(&b'=')) = (bytes.first(), bytes.get(1)) else {
        return Err((SdpErrorKind::BadLine, "expected `x=value`".into()));
    };
    if !kind.is_ascii_lowercase() {
        return Err((
            SdpErrorKind::BadLine,
            "expected `x=value` with a lowercase type letter".into(),
        ));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err((SdpErrorKind::ControlCharacter, "control character".into()));
    }
    let value = line.get(2..).unwrap_or("");
    match kind {
        b'o' if value.split_whitespace().count() != 6 => {
            return Err((SdpErrorKind::BadOrigin, "o= needs 6 fields".into()));
        }
        b'c' => {
            parse_connection(value).map_err(|e| (SdpErrorKind::BadConnection, e))?;
        }
        b'm' => {
            parse_m(value).map_err(|e| (SdpErrorKind::BadMedia, e))?;
        }
        b'a' => {
            if let (name, Some(v)) = split_attr(value) {
                if name.eq_ignore_ascii_case("rtcp") {
                    parse_rtcp_attr(v).map_err(|e| (SdpErrorKind::BadAttribute, e))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `c=IN IP4 192.0.2.1[/ttl[/n]]` → the address. The address must be an IP literal matching
/// its addrtype.
fn parse_connection(value: &str) -> Result<IpAddr, String> {
    let mut f = value.split_whitespace();
    let (Some(net), Some(atype), Some(addr), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Err("c= needs `IN IP4|IP6 address`".into());
    };
    parse_addr(net, atype, addr).map_err(|e| format!("c= {e}"))
}

fn parse_addr(net: &str, atype: &str, addr: &str) -> Result<IpAddr, String> {
    if !net.eq_ignore_ascii_case("IN") {
        return Err(format!("unknown network type {net:?}"));
    }
    let host = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = host.parse().map_err(|_| format!("bad address {host:?}"))?;
    let ok = match ip {
        IpAddr::V4(_) => atype.eq_ignore_ascii_case("IP4"),
        IpAddr::V6(_) => atype.eq_ignore_ascii_case("IP6"),
    };
    if !ok {
        return Err(format!("address {host:?} does not match {atype:?}"));
    }
    Ok(ip)
}

/// The fields of an m-line the border cares about.
struct MLine<'a> {
    kind: &'a str,
    port: u16,
    proto: &'a str,
}

/// `m=<media> <port>[/<count>] <proto> <fmt>...`.
fn parse_m(value: &str) -> Result<MLine<'_>, String> {
    let mut f = value.split_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err("m= needs `media port proto fmt...`".into());
    };
    let port_only = port.split('/').next().unwrap_or(port);
    let port: u16 = port_only
        .parse()
        .map_err(|_| format!("m= bad port {port_only:?}"))?;
    Ok(MLine { kind, port, proto })
}

/// `a=rtcp:<port> [IN IP4 <addr>]`.
fn parse_rtcp_attr(value: &str) -> Result<(u16, Option<IpAddr>), String> {
    let mut f = value.split_whitespace();
    let port = f.next().unwrap_or("");
    let port: u16 = port
        .parse()
        .map_err(|_| format!("a=rtcp bad port {port:?}"))?;
    match (f.next(), f.next(), f.next(), f.next()) {
        (None, ..) => Ok((port, None)),
        (Some(net), Some(atype), Some(addr), None) => parse_addr(net, atype, addr)
            .map(|ip| (port, Some(ip)))
            .map_err(|e| format!("a=rtcp {e}")),
        _ => Err("a=rtcp needs `port [IN IP4|IP6 address]`".into()),
    }
}

/// `name[:value]` of an `a=` line's value.
fn split_attr(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (value, None),
    }
}

/// `a=candidate` value (after `candidate:`); `None` if malformed or not an IP literal.
fn parse_candidate(value: &str) -> Option<Candidate> {
    let mut f = value.split_whitespace();
    let foundation = f.next()?.to_owned();
    let component = f.next()?.parse().ok()?;
    let transport = f.next()?.to_owned();
    let priority = f.next()?.parse().ok()?;
    let addr = f.next()?.parse().ok()?;
    let port = f.next()?.parse().ok()?;
    if f.next()? != "typ" {
        return None;
    }
    let typ = f.next()?.to_owned();
    Some(Candidate {
        foundation,
        component,
        transport,
        priority,
        addr,
        port,
        typ,
    })
}

fn direction_attr(name: &str) -> Option<Direction> {
    match name.to_ascii_lowercase().as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

impl Sdp {
    /// The body, CRLF-terminated lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.len() + 2).sum());
        for line in &self.lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The lines, verbatim, without terminators.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// Line ranges: the session part, then one range per m-line section.
    fn sections(&self) -> (std::ops::Range<usize>, Vec<std::ops::Range<usize>>) {
        let starts: Vec<usize> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("m="))
            .map(|(i, _)| i)
            .collect();
        let session_end = starts.first().copied().unwrap_or(self.lines.len());
        let media = starts
            .iter()
            .enumerate()
            .map(|(k, &s)| s..starts.get(k + 1).copied().unwrap_or(self.lines.len()))
            .collect();
        (0..session_end, media)
    }

    fn section(&self, range: std::ops::Range<usize>) -> &[String] {
        self.lines.get(range).unwrap_or(&[])
    }

    /// One entry per m-line, in order.
    pub fn media(&self) -> Vec<MediaInfo> {
        let (session, media) = self.sections();
        let session = self.section(session);
        let session_c = session
            .iter()
            .find_map(|l| l.strip_prefix("c=").and_then(|v| parse_connection(v).ok()));
        let session_dir = attrs(session)
            .filter_map(|(n, _)| direction_attr(n))
            .last()
            .unwrap_or_default();
        media
            .into_iter()
            .enumerate()
            .filter_map(|(index, range)| {
                let lines = self.section(range);
                let m = parse_m(lines.first()?.strip_prefix("m=")?).ok()?;
                let connection = lines
                    .iter()
                    .find_map(|l| l.strip_prefix("c=").and_then(|v| parse_connection(v).ok()))
                    .or(session_c);
                let mut info = MediaInfo {
                    index,
                    kind: m.kind.to_owned(),
                    port: m.port,
                    proto: m.proto.to_owned(),
                    connection,
                    rtcp_mux: false,
                    mid: None,
                    direction: session_dir,
                    candidates: Vec::new(),
                    rtcp: None,
                };
                for (name, value) in attrs(lines) {
                    let lower = name.to_ascii_lowercase();
                    match (lower.as_str(), value) {
                        ("rtcp-mux", _) => info.rtcp_mux = true,
                        ("mid", Some(v)) => info.mid = Some(v.trim().to_owned()),
                        ("candidate", Some(v)) => info.candidates.extend(parse_candidate(v)),
                        ("rtcp", Some(v)) => {
                            if let Ok((port, addr)) = parse_rtcp_attr(v) {
                                info.rtcp = addr.or(connection).map(|ip| SocketAddr::new(ip, port));
                            }
                        }
                        _ => {
                            if let Some(d) = direction_attr(name) {
                                info.direction = d;
                            }
                        }
                    }
                }
                Some(info)
            })
            .collect()
    }

    /// The mids of each session-level `a=group:BUNDLE`.
    pub fn bundle_groups(&self) -> Vec<Vec<String>> {
        let (session, _) = self.sections();
        attrs(self.section(session))
            .filter(|(n, _)| n.eq_ignore_ascii_case("group"))
            .filter_map(|(_, v)| {
                let mut f = v?.split_whitespace();
                let semantics = f.next()?;
                semantics
                    .eq_ignore_ascii_case("BUNDLE")
                    .then(|| f.map(str::to_owned).collect())
            })
            .collect()
    }

    /// True if `a=ice-ufrag` appears in the `session` lines or the `media` section.
    fn uses_ice(&self, session: &[String], media: &[String]) -> bool {
        attrs(session)
            .chain(attrs(media))
            .any(|(n, _)| n.eq_ignore_ascii_case("ice-ufrag"))
    }
}

/// The `(name, value)` of every `a=` line in `lines`.
fn attrs(lines: &[String]) -> impl Iterator<Item = (&str, Option<&str>)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("a="))
        .map(split_attr)
}

impl MediaInfo {
    /// Port 0: the stream is rejected (or bundle-only, not yet accepted).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// True when ICE candidates, not `c=`/`m=`, say where the far end is: the connection is
    /// missing or unspecified (`0.0.0.0`, `::`) or the port is 9 (trickle), and there is a
    /// usable component-1 UDP candidate.
    fn candidates_decide(&self) -> bool {
        let placeholder = self.connection.is_none_or(|c| c.is_unspecified()) || self.port == 9;
        placeholder && self.best_candidate(1, None).is_some()
    }

    /// The highest-priority usable UDP candidate of `component` (first wins ties), preferring
    /// `foundation` when given and present.
    fn best_candidate(&self, component: u16, foundation: Option<&str>) -> Option<&Candidate> {
        let usable = |c: &&Candidate| {
            c.component == component
                && c.transport.eq_ignore_ascii_case("udp")
                && c.port != 0
                && !c.addr.is_unspecified()
        };
        if let Some(f) = foundation {
            let mut same = self
                .candidates
                .iter()
                .filter(usable)
                .filter(|c| c.foundation == f);
            if let Some(c) = highest(&mut same) {
                return Some(c);
            }
        }
        highest(&mut self.candidates.iter().filter(usable))
    }

    /// Where the far end expects RTP: `connection` + `port`; if the connection is missing or
    /// unspecified, or the port is 9 with candidates present, the highest-priority
    /// component-1 UDP candidate. `None` if rejected or no address is known (e.g. the
    /// RFC 2543 hold form `c=0.0.0.0` without candidates).
    pub fn rtp_remote(&self) -> Option<SocketAddr> {
        if self.is_rejected() {
            return None;
        }
        if self.candidates_decide() {
            return self
                .best_candidate(1, None)
                .map(|c| SocketAddr::new(c.addr, c.port));
        }
        let ip = self.connection.filter(|c| !c.is_unspecified())?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// Where the far end expects RTCP: `rtp_remote` if rtcp-mux; else, when candidates decided
    /// RTP, the best component-2 candidate (same foundation preferred); else an explicit
    /// `a=rtcp` with a specified address; else the RTP port + 1 (RFC 3605 default).
    pub fn rtcp_remote(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_remote()?;
        if self.rtcp_mux {
            return Some(rtp);
        }
        if self.candidates_decide() {
            let chosen = self.best_candidate(1, None).map(|c| c.foundation.as_str());
            if let Some(c) = self.best_candidate(2, chosen) {
                return Some(SocketAddr::new(c.addr, c.port));
            }
        } else if let Some(r) = self
            .rtcp
            .filter(|r| !r.ip().is_unspecified() && r.port() != 0)
        {
            return Some(r);
        }
        let port = rtp.port().checked_add(1)?;
        Some(SocketAddr::new(rtp.ip(), port))
    }
}

/// The highest-priority candidate; the first one wins ties.
fn highest<'a>(it: &mut dyn Iterator<Item = &'a Candidate>) -> Option<&'a Candidate> {
    it.fold(None, |best: Option<&'a Candidate>, c| match best {
        Some(b) if b.priority >= c.priority => Some(b),
        _ => Some(c),
    })
}
