//! `multipart/*` bodies (RFC 2046 §5.1, as SIP uses them: RFC 5621; SIP-I carries SDP and ISUP
//! this way, ITU-T Q.1912.5): split into parts by the boundary the Content-Type names, and
//! written back with a boundary the writer chooses.
//!
//! Pure and byte-exact: a part's content is never touched, whatever its type (ISUP is binary).
//! Delimiters are recognised at the start of the body or after CRLF; the preamble and epilogue
//! are ignored; a body without its closing delimiter is refused (`None`), so a truncated body is
//! never taken for a complete one.

use std::fmt::Write;

use super::typed::ContentType;

/// One body part: its header fields (as written, unfolded) and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    /// The first value of a header field, the name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> Option<ContentType> {
        self.header("Content-Type").and_then(ContentType::parse)
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of `body`, delimited by `--boundary`. `None` when the first delimiter or the
/// closing one is missing, or a part's header section is not `name: value` lines.
pub fn parse(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    if boundary.is_empty() || boundary.len() > 70 {
        return None; // RFC 2046 §5.1.1: 1 to 70 characters
    }
    let dash = format!("--{boundary}");
    let delim = format!("\r\n{dash}");
    // The first delimiter may open the body (no preamble) or follow the preamble's CRLF.
    let mut at = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(body, delim.as_bytes(), 0)? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        // Transport padding, then the CRLF that ends the delimiter line.
        while matches!(body.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return None;
        }
        let start = at + 2;
        let end = find(body, delim.as_bytes(), start)?;
        parts.push(part(&body[start..end])?);
        at = end + delim.len();
    }
}

/// One part: header lines up to an empty line, then the content.
fn part(raw: &[u8]) -> Option<Part> {
    let (head, body) = if raw.starts_with(b"\r\n") {
        (&raw[..0], &raw[2..])
    } else {
        let split = find(raw, b"\r\n\r\n", 0)?;
        (&raw[..split], &raw[split + 4..])
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous field.
            let (_, v) = headers.last_mut()?;
            v.push(' ');
            v.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Some(Part {
        headers,
        body: body.to_vec(),
    })
}

/// A boundary that occurs in no part (`palisade-N`, the first N that fits): it says nothing
/// about the sender, unlike the one received.
pub fn fresh_boundary(parts: &[Part]) -> String {
    (0u32..)
        .map(|n| format!("palisade-{n}"))
        .find(|b| {
            let dash = format!("--{b}");
            parts
                .iter()
                .all(|p| find(&p.body, dash.as_bytes(), 0).is_none())
        })
        .expect("some boundary is free")
}

/// The parts written as a multipart body delimited by `boundary`.
pub fn write(parts: &[Part], boundary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let mut head = format!("--{boundary}\r\n");
        for (n, v) in &p.headers {
            let _ = write!(head, "{n}: {v}\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIP_I: &[u8] = b"preamble\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 192.0.2.1\r\n\r\n--b1  \r\nContent-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;\r\n handling=optional\r\n\r\n\x01\x00\r\n--b\x02\r\n--b1--\r\nepilogue";

    #[test]
    fn parts_are_split_exactly_and_written_back() {
        let parts = parse(SIP_I, "b1").expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, b"v=0\r\nc=IN IP4 192.0.2.1\r\n");
        assert!(parts[0].content_type().is_some_and(|c| c.is_sdp()));
        assert_eq!(parts[1].body, b"\x01\x00\r\n--b\x02");
        assert_eq!(
            parts[1].header("content-disposition"),
            Some("signal; handling=optional")
        );
        let b = fresh_boundary(&parts);
        assert_eq!(b, "palisade-0");
        assert_eq!(parse(&write(&parts, &b), &b), Some(parts));
    }

    #[test]
    fn the_fresh_boundary_avoids_the_content() {
        let p = Part {
            headers: Vec::new(),
            body: b"x--palisade-0y".to_vec(),
        };
        assert_eq!(fresh_boundary(&[p]), "palisade-1");
    }

    #[test]
    fn truncated_or_foreign_bodies_are_refused() {
        assert_eq!(parse(&SIP_I[..SIP_I.len() - 20], "b1"), None);
        assert_eq!(parse(SIP_I, "other"), None);
        assert_eq!(
            parse(b"--b1\r\nno header colon\r\n\r\nx\r\n--b1--", "b1"),
            None
        );
        assert_eq!(
            parse(b"--b1\r\n\r\nbare\r\n--b1--", "b1").map(|p| p[0].body.clone()),
            Some(b"bare".to_vec())
        );
    }
}
