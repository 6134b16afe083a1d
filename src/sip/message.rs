//! The SIP message model and its wire codec.

use std::fmt;

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
        todo!("{token}")
    }

    pub fn as_str(&self) -> &str {
        todo!()
    }
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
        todo!("{name}")
    }

    /// Every value of the named header, in order, with comma-separated lines split into separate
    /// values (splitting respects quotes and `<...>`). For headers that are not comma-lists
    /// (e.g. WWW-Authenticate, Date) use [`Headers::lines`].
    pub fn values(&self, name: &str) -> Vec<&str> {
        todo!("{name}")
    }

    /// Each header line of that name, unsplit.
    pub fn lines<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let _ = name;
        std::iter::empty::<&str>()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of header lines with that name.
    pub fn count(&self, name: &str) -> usize {
        todo!("{name}")
    }

    /// Appends a header line at the end.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        let _ = (name, value.into());
        todo!()
    }

    /// Inserts a header line before all others (used for Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let _ = (name, value.into());
        todo!()
    }

    /// Replaces every line of that name with one line holding `value` (at the first one's
    /// position, or appended when absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let _ = (name, value.into());
        todo!()
    }

    /// Removes every line of that name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        todo!("{name}")
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
    pub reason: String,
    pub is_request: bool,
    pub headers: Headers,
}

/// Outcome of looking for one message at the start of a stream buffer (TCP/TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Incomplete,
    /// A whole message occupies `buf[..len]` (leading CRLF keepalives are part of `skip`).
    Complete { skip: usize, len: usize },
    /// The stream cannot be framed (no or bad Content-Length, or over the size cap); the
    /// connection must be closed.
    Invalid(&'static str),
}

/// Finds the next whole message in a stream buffer. Stream transports require Content-Length
/// (RFC 3261 §18.3).
pub fn frame_stream(buf: &[u8], limits: &Limits) -> Framing {
    let _ = (buf, limits);
    todo!()
}

/// Parses one datagram or one framed stream message.
///
/// Over UDP, bytes past Content-Length are discarded (RFC 3261 §18.3); a Content-Length larger
/// than the body is an error; a missing Content-Length means "the rest of the datagram".
/// Semantic checks that make a request unanswerable or unsafe to relay (missing mandatory
/// headers, CSeq method mismatch, unknown SIP version, ...) are also reported here as errors.
pub fn parse_message(buf: &[u8], limits: &Limits) -> Result<Message, ParseError> {
    let _ = (buf, limits);
    todo!()
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
        todo!()
    }
}
