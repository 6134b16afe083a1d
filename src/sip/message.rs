//! The SIP message model: request methods, start lines and [`Message`], and printing a message
//! back to wire form. Header fields live in `fields.rs`, the parser in `parse.rs`, stream framing
//! in `framing.rs` and parse errors in `error.rs`.

use std::fmt;

use super::fields::canonical_name;
use super::uri::Uri;

// Kept so the `sip::message::*` paths of items that moved out of this file keep working.
pub use super::error::{ParseError, ParseErrorKind};
pub use super::fields::{split_commas, Header, Headers};
pub use super::framing::{frame_stream, Framing};
pub use super::parse::{parse_message, Limits};

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

/// A parsed SIP message. The body is opaque bytes, framed by Content-Length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Headers,
    pub body: Vec<u8>,
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

    /// Heap bytes the message holds (string and vector capacities; allocator overhead aside):
    /// what keeping it costs, for the engine's memory accounting (`Border::held_bytes`).
    pub fn heap_bytes(&self) -> usize {
        let start = match &self.start {
            StartLine::Request { uri, .. } => uri.heap_bytes(),
            StartLine::Response { reason, .. } => reason.capacity(),
        };
        start + self.headers.heap_bytes() + self.body.capacity()
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
mod tests;
