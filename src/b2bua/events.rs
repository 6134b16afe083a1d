//! What the engine tells the outside about what it did: typed events drained with
//! [`Border::poll_event`]. The service logs them today; metrics, call-detail records and HA state
//! consume the same stream, so none of them has to edit the reply sites of the call logic.
//!
//! Parties are named by realm and partner *name*, never by their position in the configuration,
//! so a consumer's counters stay right across a reload that reorders partners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Border, Party};
use crate::sip::Method;

/// Who a request came from or went to: a realm and, on a peer realm, the partner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub realm: Arc<str>,
    /// The partner's name; `None` for this operator's core.
    pub peer: Option<Arc<str>>,
}

/// Why the border refused a request itself (a policy decision, not a far end's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `Require`/`Proxy-Require` named an option not in `sip.extensions` (420).
    UnsupportedExtension,
    /// A Request-URI scheme the border cannot route (416).
    UnsupportedScheme,
    /// Max-Forwards reached zero (483).
    TooManyHops,
    /// The partner's policy does not allow the method (405).
    MethodNotAllowed,
    /// Registration is not served at the interconnect (403).
    RegisterNotServed,
    /// The router found no partner or core for the target (404).
    NoRoute,
    /// The border, or a partner's share of it, is at its call limit (503).
    CallLimit,
    /// The partner sends new calls or requests faster than its policy allows (503).
    RateLimit,
    /// The partner has more requests awaiting our answer than its `max_transactions` (503).
    TransactionLimit,
    /// The border is overloaded (its input backlog is deep): new calls are shed (503).
    Overload,
    /// The SDP could not be anchored (no ports, or a malformed body).
    MediaAnchoring,
    /// The border is draining before a stop (503 + Retry-After).
    Draining,
    /// A `Replaces`/`Join` (481) or a Refer-To's embedded `Replaces` (403) names no dialog that
    /// crosses this border toward where the request goes; or is malformed (400).
    DialogReference,
    /// A REFER to or from a partner whose policy says `refer = "refuse"` (403).
    ReferRefused,
}

/// Why an input was discarded without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The source address is neither the core nor a partner of the realm that received it.
    UnknownSource,
    /// A response, or a request too broken to answer (no usable Via, From, To, Call-ID, CSeq).
    Malformed,
    /// The partner sends more bytes per second than its `max_bytes_per_second`: what is over
    /// is dropped unread (an answer would only add to the load).
    ByteRate,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndedBy {
    /// The party that placed the call (leg A) sent BYE.
    Caller,
    /// The party that answered (leg B) sent BYE.
    Callee,
    /// The border hung up itself; the text is the Reason it sent.
    Border(&'static str),
}

/// One thing the engine did, in the order it did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request (not a retransmission) was received.
    RequestReceived { method: Method, from: Origin },
    /// The border sent a final response to a request it received.
    RequestAnswered {
        method: Method,
        status: u16,
        from: Origin,
    },
    /// The border refused a request by its own policy.
    Rejected {
        method: Method,
        status: u16,
        reason: RejectReason,
        from: Origin,
    },
    /// A malformed request was answered (400, 505, 413).
    MalformedRejected { status: u16, source: SocketAddr },
    /// An input was discarded without an answer.
    Dropped {
        reason: DropReason,
        realm: Arc<str>,
        /// The partner it came from, when one is known (a byte-rate breach).
        partner: Option<Arc<str>>,
        source: SocketAddr,
    },
    /// An INVITE was relayed toward `to`: a call is being set up.
    CallStarted {
        call_id: String,
        /// The call's correlation id in the logs (never on the wire).
        corr: Arc<str>,
        from: Origin,
        to: Origin,
    },
    /// The call was answered (2xx relayed to the caller) after `setup`.
    CallAnswered {
        call_id: String,
        corr: Arc<str>,
        setup: Duration,
    },
    /// The call ended before it was answered: the final status the caller got.
    CallFailed {
        call_id: String,
        corr: Arc<str>,
        status: u16,
    },
    /// The caller cancelled the call before it was answered.
    CallCancelled { call_id: String, corr: Arc<str> },
    /// An answered call ended.
    CallEnded {
        call_id: String,
        corr: Arc<str>,
        duration: Duration,
        by: EndedBy,
    },
    /// A target of the route failed (timeout: `status` None, or 503) and the next is tried.
    TargetFailed {
        call_id: String,
        corr: Arc<str>,
        target: SocketAddr,
        status: Option<u16>,
    },
    /// A request the border sent got no final response in time.
    TransactionTimeout { method: Option<Method>, to: Origin },
}

impl Event {
    /// The correlation id of the call the event is about, if it is about one.
    pub fn corr(&self) -> Option<&str> {
        match self {
            Event::CallStarted { corr, .. }
            | Event::CallAnswered { corr, .. }
            | Event::CallFailed { corr, .. }
            | Event::CallCancelled { corr, .. }
            | Event::CallEnded { corr, .. }
            | Event::TargetFailed { corr, .. } => Some(corr),
            _ => None,
        }
    }
}

impl Border {
    pub(super) fn origin(&self, realm: usize, party: Party) -> Origin {
        // Names are shared, not copied: an event per request must stay cheap.
        Origin {
            realm: self.realm_name(realm),
            peer: match party {
                Party::Core => None,
                Party::Peer(p) => Some(self.partners.name(p)),
            },
        }
    }

    pub(super) fn realm_name(&self, realm: usize) -> Arc<str> {
        self.realm_names
            .get(realm)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    pub(super) fn emit(&mut self, ev: Event) {
        // Bounded: a service that never drains must not make the engine grow without limit.
        if self.events.len() >= EVENT_BACKLOG {
            self.events.pop_front();
            self.events_lost += 1;
        }
        self.events.push_back(ev);
    }
}

/// Events kept for a consumer that has not drained them yet; the oldest go first beyond this.
pub const EVENT_BACKLOG: usize = 65_536;
