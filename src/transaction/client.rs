//! Client transactions (RFC 3261 §17.1, RFC 6026): sending a request with its retransmission
//! and timeout timers, matching responses to it, the ACK of a non-2xx final, and the end of
//! the transactions of a flow the transport lost.

use std::time::{Duration, Instant};

use super::timer::Due;
use super::{ClientTxId, Flow, ResponseDisposition, TransactionLayer, Transmit, TxEvent};
use crate::sip::{Message, Method, Via};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientState {
    /// INVITE: Calling; non-INVITE: Trying.
    Trying,
    Proceeding,
    Completed,
    /// RFC 6026: a 2xx arrived for an INVITE; later copies are retransmissions.
    Accepted,
}

/// What a client transaction keeps is what it may still have to send: the request bytes until
/// its final response (Timers A/E), then only the ACK of an INVITE's non-2xx final, re-sent for
/// the final's retransmissions. Parsed messages are never kept past the call that needs them.
pub(super) struct ClientTx {
    pub(super) key: String,
    pub(super) invite: bool,
    pub(super) state: ClientState,
    pub(super) flow: Flow,
    /// The request as sent, for Timers A/E; emptied once a final response arrived.
    pub(super) request: Vec<u8>,
    /// INVITE, no final response yet: what of the request builds the ACK of a non-2xx final.
    pub(super) ack_base: Option<Box<Message>>,
    /// INVITE, non-2xx final: that ACK, re-sent for each retransmission of the final.
    pub(super) ack: Option<Vec<u8>>,
    pub(super) interval: Duration,
    /// Armed deadlines; a schedule entry fires only if it still matches (lazy cancellation).
    pub(super) retransmit_at: Option<Instant>,
    pub(super) timeout_at: Option<Instant>,
    pub(super) linger_at: Option<Instant>,
}

/// Key of a client transaction: our branch and the CSeq method (CANCEL shares INVITE's branch).
pub(super) fn client_key(msg: &Message) -> Option<String> {
    let via = Via::parse(msg.headers.get("Via")?)?;
    let cseq = crate::sip::CSeq::parse(msg.headers.get("CSeq")?)?;
    let m = match cseq.method {
        Method::Ack => Method::Invite,
        m => m,
    };
    Some(format!("{}|{}", via.branch()?, m.as_str()))
}

impl TransactionLayer {
    /// Starts a client transaction and transmits the request.
    pub fn send_request(&mut self, now: Instant, msg: &Message, flow: Flow) -> ClientTxId {
        let id = ClientTxId(self.id());
        let key = client_key(msg).unwrap_or_default();
        let invite = msg.method() == Some(&Method::Invite);
        let bytes = msg.to_bytes();
        let t1 = self.timers.t1;
        self.transmits.push_back(Transmit {
            flow,
            bytes: bytes.clone(),
        });
        if !key.is_empty() {
            self.client_keys.insert(key.clone(), id);
        }
        self.clients.insert(
            id,
            ClientTx {
                key,
                invite,
                state: ClientState::Trying,
                flow,
                request: bytes,
                ack_base: invite.then(|| Box::new(ack_skeleton(msg))),
                ack: None,
                interval: t1,
                retransmit_at: None,
                timeout_at: None,
                linger_at: None,
            },
        );
        if !flow.reliable() {
            self.arm(now + t1, Due::ClientRetransmit(id));
        }
        self.arm(now + t1 * 64, Due::ClientTimeout(id));
        id
    }

    /// Sends a request that has no transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4).
    pub fn send_stateless(&mut self, msg: &Message, flow: Flow) {
        self.transmits.push_back(Transmit {
            flow,
            bytes: msg.to_bytes(),
        });
    }

    /// Classifies an incoming response.
    pub fn on_response(&mut self, now: Instant, msg: &Message) -> ResponseDisposition {
        let (Some(status), Some(key)) = (msg.status(), client_key(msg)) else {
            return ResponseDisposition::Absorbed;
        };
        let Some(&id) = self.client_keys.get(&key) else {
            return ResponseDisposition::Absorbed;
        };
        let t1 = self.timers.t1;
        let t4 = self.timers.t4;
        let tx = self
            .clients
            .get_mut(&id)
            .expect("client key index is in sync");
        match (tx.state, status) {
            (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                tx.state = ClientState::Proceeding;
                if tx.invite {
                    // Timers A and B stop on any provisional: from here the call logic's Timer C
                    // bounds the wait (RFC 3261 §17.1.1.2, §16.6).
                    tx.retransmit_at = None;
                    tx.timeout_at = None;
                }
                ResponseDisposition::Deliver(id)
            }
            (ClientState::Trying | ClientState::Proceeding, 200..=299) if tx.invite => {
                tx.state = ClientState::Accepted;
                tx.retransmit_at = None;
                tx.timeout_at = None;
                // The call logic ACKs a 2xx itself: nothing is sent from here any more.
                tx.request = Vec::new();
                tx.ack_base = None;
                self.arm(now + t1 * 64, Due::ClientLinger(id));
                ResponseDisposition::Deliver(id)
            }
            (ClientState::Trying | ClientState::Proceeding, 200..=699) => {
                tx.state = ClientState::Completed;
                tx.retransmit_at = None;
                tx.timeout_at = None;
                let reliable = tx.flow.reliable();
                tx.request = Vec::new();
                if let Some(req) = tx.ack_base.take() {
                    let ack = ack_for(&req, msg).to_bytes();
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        bytes: ack.clone(),
                    });
                    tx.ack = Some(ack);
                }
                let linger = match (tx.invite, reliable) {
                    (_, true) => Duration::ZERO,
                    (true, false) => Duration::from_secs(32),
                    (false, false) => t4,
                };
                self.arm(now + linger, Due::ClientLinger(id));
                ResponseDisposition::Deliver(id)
            }
            (ClientState::Accepted, 200..=299) => ResponseDisposition::Retransmitted2xx(id),
            (ClientState::Completed, 300..=699) => {
                if let Some(ack) = &tx.ack {
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        bytes: ack.clone(),
                    });
                }
                ResponseDisposition::Absorbed
            }
            _ => ResponseDisposition::Absorbed,
        }
    }

    /// Whether a client transaction is still waiting for its final response (used to decide
    /// whether a CANCEL may still be sent).
    pub fn client_pending(&self, id: ClientTxId) -> bool {
        self.clients
            .get(&id)
            .is_some_and(|tx| matches!(tx.state, ClientState::Trying | ClientState::Proceeding))
    }

    /// The transport reports that `flow` cannot be reached: every client transaction still
    /// waiting for a final response over it ends now with a transport error (§17.1.4), instead
    /// of waiting out Timer B/F.
    pub fn transport_failed(&mut self, flow: Flow) {
        let failed: Vec<ClientTxId> = self
            .clients
            .iter()
            .filter(|(_, t)| {
                t.flow == flow && matches!(t.state, ClientState::Trying | ClientState::Proceeding)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            if let Some(tx) = self.clients.remove(&id) {
                self.client_keys.remove(&tx.key);
                self.events.push_back(TxEvent::ClientTransportError(id));
            }
        }
    }
}

/// What [`ack_for`] reads of an INVITE, and nothing else (no body, no other header): kept
/// while the INVITE waits for its final response.
fn ack_skeleton(request: &Message) -> Message {
    let mut headers = crate::sip::Headers::default();
    if let Some(v) = request.headers.values("Via").first() {
        headers.push("Via", *v);
    }
    for name in ["Max-Forwards", "From", "Call-ID", "CSeq"] {
        if let Some(v) = request.headers.get(name) {
            headers.push(name, v);
        }
    }
    for r in request.headers.lines("Route") {
        headers.push("Route", r);
    }
    Message {
        start: request.start.clone(),
        headers,
        body: Vec::new(),
    }
}

/// Builds the ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI, Call-ID,
/// From, top Via and CSeq number as the request, To from the response.
pub fn ack_for(request: &Message, response: &Message) -> Message {
    let mut headers = crate::sip::Headers::default();
    if let Some(v) = request.headers.values("Via").first() {
        headers.push("Via", *v);
    }
    for name in ["Max-Forwards", "From"] {
        if let Some(v) = request.headers.get(name) {
            headers.push(name, v);
        }
    }
    if let Some(v) = response.headers.get("To") {
        headers.push("To", v);
    }
    if let Some(v) = request.headers.get("Call-ID") {
        headers.push("Call-ID", v);
    }
    if let Some(c) = request
        .headers
        .get("CSeq")
        .and_then(crate::sip::CSeq::parse)
    {
        headers.push("CSeq", format!("{} ACK", c.seq));
    }
    for r in request.headers.lines("Route") {
        headers.push("Route", r);
    }
    let uri = match &request.start {
        crate::sip::StartLine::Request { uri, .. } => uri.clone(),
        crate::sip::StartLine::Response { .. } => unreachable!("ack_for is given the request"),
    };
    Message {
        start: crate::sip::StartLine::Request {
            method: Method::Ack,
            uri,
        },
        headers,
        body: Vec::new(),
    }
}
