//! Why a message was refused: [`ParseError`] and the [`ParseErrorKind`] that decides the answer.

use super::fields::Headers;

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
    /// A request, or what may have been meant as one (a broken Request-Line included); false
    /// for a response and for a message without a start line (its first line a header field).
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
