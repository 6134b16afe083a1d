//! SIP messages: framing, parsing and printing (RFC 3261 §7, §20, §25).
//!
//! Pure: no IO, no clock. The wire layer is our own (see the README's design notes for why not
//! rsip): it frames by Content-Length, unfolds continuation lines, expands compact header names,
//! keeps every header in wire order as text and never touches the body bytes. Typed access is
//! offered only for the headers the B2BUA acts on: Via, NameAddr and CSeq (`headers.rs`), URIs
//! (`uri.rs`) and the extension headers of RFC 3262, 3515, 3891, 4028 and 6665 (`typed.rs`);
//! multipart bodies are split and written by `multipart.rs`.

pub mod error;
pub mod fields;
pub mod framing;
pub mod headers;
pub mod message;
pub mod multipart;
pub mod parse;
pub mod steer;
pub mod typed;
pub mod uri;

pub use error::{ParseError, ParseErrorKind};
pub use fields::{canonical_name, split_commas, Header, Headers};
pub use framing::{frame_stream, Framing};
pub use headers::{CSeq, NameAddr, Params, Via};
pub use message::{Message, Method, StartLine};
pub use parse::{parse_message, Limits};
pub use typed::{
    ContentType, Event, RAck, RSeq, ReferTo, Refresher, Replaces, SessionExpires, SubState,
    SubscriptionState,
};
pub use uri::{SipUri, Uri};
