//! Stream framing (TCP/TLS): finding where one message ends by its Content-Length.

use super::parse::{parse_usize, read_headers, split_sections, Limits};

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
