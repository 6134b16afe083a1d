//! Server transactions (RFC 3261 §17.2, RFC 6026): matching a request to its transaction,
//! absorbing retransmissions, and sending responses with their retransmission and linger
//! timers.

use std::time::{Duration, Instant};

use super::timer::Due;
use super::{Flow, RequestDisposition, ServerTxId, TransactionLayer, Transmit};
use crate::sip::{Message, Method, Via};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerState {
    /// INVITE: Proceeding; non-INVITE: Trying/Proceeding.
    Proceeding,
    Completed,
    Accepted,
    Confirmed,
}

/// A server transaction keeps the bytes of its last response only while a retransmission of
/// the request may still be answered with them.
pub(super) struct ServerTx {
    pub(super) key: String,
    pub(super) invite: bool,
    pub(super) state: ServerState,
    pub(super) flow: Flow,
    pub(super) last_response: Option<Vec<u8>>,
    pub(super) interval: Duration,
    pub(super) retransmit_at: Option<Instant>,
    pub(super) timeout_at: Option<Instant>,
    pub(super) linger_at: Option<Instant>,
}

/// RFC 3261 §17.2.3 matching key of a request, for the server side. ACK and INVITE share a key so
/// an ACK finds its INVITE's transaction; CANCEL gets its own.
pub(super) fn server_key(msg: &Message) -> Option<String> {
    let method = msg.method()?;
    let via = Via::parse(msg.headers.get("Via")?)?;
    let sent_by = format!(
        "{}:{}",
        via.host.to_ascii_lowercase(),
        via.port.unwrap_or(0)
    );
    let m = match method {
        Method::Ack => "INVITE",
        other => other.as_str(),
    };
    match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => Some(format!("{b}|{sent_by}|{m}")),
        // RFC 2543 peers: no unique branch, fall back to the dialog and CSeq identifiers.
        _ => {
            let call_id = msg.headers.get("Call-ID")?;
            let cseq = crate::sip::CSeq::parse(msg.headers.get("CSeq")?)?;
            let from_tag = crate::sip::NameAddr::parse(msg.headers.get("From")?)
                .and_then(|n| n.tag().map(str::to_string))
                .unwrap_or_default();
            Some(format!(
                "2543|{call_id}|{from_tag}|{}|{sent_by}|{m}",
                cseq.seq
            ))
        }
    }
}

impl TransactionLayer {
    /// Classifies an incoming request. The caller has already parsed and validated it.
    pub fn on_request(&mut self, now: Instant, msg: &Message, flow: Flow) -> RequestDisposition {
        let Some(key) = server_key(msg) else {
            // Validation guarantees a Via; treat the impossible as a fresh request anyway.
            return self.new_server(String::new(), msg, flow);
        };
        let is_ack = msg.method() == Some(&Method::Ack);
        if let Some(&id) = self.server_keys.get(&key) {
            let tx = self
                .servers
                .get_mut(&id)
                .expect("server key index is in sync");
            if is_ack {
                return match tx.state {
                    ServerState::Completed => {
                        tx.state = ServerState::Confirmed;
                        tx.retransmit_at = None;
                        tx.timeout_at = None;
                        // Confirmed absorbs retransmissions without answering them.
                        tx.last_response = None;
                        let linger = if tx.flow.reliable() {
                            Duration::ZERO
                        } else {
                            self.timers.t4
                        };
                        self.arm(now + linger, Due::ServerLinger(id));
                        RequestDisposition::Absorbed
                    }
                    ServerState::Accepted => {
                        // The ACK of a 2xx normally has a new branch; some UAs reuse the INVITE's.
                        tx.state = ServerState::Confirmed;
                        tx.retransmit_at = None;
                        tx.timeout_at = None;
                        tx.last_response = None;
                        self.arm(now, Due::ServerLinger(id));
                        RequestDisposition::AckFor2xx(Some(id))
                    }
                    _ => RequestDisposition::Absorbed,
                };
            }
            if tx.state != ServerState::Confirmed {
                if let Some(resp) = &tx.last_response {
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        bytes: resp.clone(),
                    });
                }
            }
            return RequestDisposition::Absorbed;
        }
        if is_ack {
            return RequestDisposition::AckFor2xx(None);
        }
        self.new_server(key, msg, flow)
    }

    fn new_server(&mut self, key: String, msg: &Message, flow: Flow) -> RequestDisposition {
        let id = ServerTxId(self.id());
        let invite = msg.method() == Some(&Method::Invite);
        if !key.is_empty() {
            self.server_keys.insert(key.clone(), id);
        }
        self.servers.insert(
            id,
            ServerTx {
                key,
                invite,
                state: ServerState::Proceeding,
                flow,
                last_response: None,
                interval: self.timers.t1,
                retransmit_at: None,
                timeout_at: None,
                linger_at: None,
            },
        );
        RequestDisposition::New(id)
    }

    /// Confirms the 2xx of an INVITE server transaction: its ACK arrived as a dialog request.
    pub fn confirm_2xx(&mut self, now: Instant, id: ServerTxId) {
        if let Some(tx) = self.servers.get_mut(&id) {
            if tx.state == ServerState::Accepted {
                tx.state = ServerState::Confirmed;
                tx.retransmit_at = None;
                tx.timeout_at = None;
                tx.last_response = None;
                // Keep absorbing INVITE retransmissions for a while (RFC 6026 Timer L).
                let linger = self.timers.t1 * 64;
                self.arm(now + linger, Due::ServerLinger(id));
            }
        }
    }

    /// Finds the INVITE server transaction a CANCEL refers to (same branch and sent-by).
    pub fn invite_for_cancel(&self, cancel: &Message) -> Option<ServerTxId> {
        let key = server_key(cancel)?;
        let key = key.strip_suffix("|CANCEL")?.to_string() + "|INVITE";
        self.server_keys.get(&key).copied()
    }

    /// Whether a server transaction has not sent a final response yet.
    pub fn server_pending(&self, id: ServerTxId) -> bool {
        self.servers
            .get(&id)
            .is_some_and(|tx| tx.state == ServerState::Proceeding)
    }

    /// Sends a response through a server transaction.
    pub fn respond(&mut self, now: Instant, id: ServerTxId, msg: &Message) {
        let Some(status) = msg.status() else { return };
        let Some(tx) = self.servers.get_mut(&id) else {
            return;
        };
        if tx.state != ServerState::Proceeding {
            return;
        }
        let bytes = msg.to_bytes();
        tx.last_response = Some(bytes.clone());
        let flow = tx.flow;
        let invite = tx.invite;
        self.transmits.push_back(Transmit { flow, bytes });
        if status < 200 {
            return;
        }
        let t1 = self.timers.t1;
        let t64 = t1 * 64;
        let reliable = flow.reliable();
        if invite {
            tx.state = if status < 300 {
                ServerState::Accepted
            } else {
                ServerState::Completed
            };
            tx.interval = t1;
            // Timer G for a non-2xx over UDP; for a 2xx the same schedule drives the
            // retransmission RFC 3261 §13.3.1.4 gives the UAS core, on every transport.
            if !reliable || status < 300 {
                self.arm(now + t1, Due::ServerRetransmit(id));
            }
            self.arm(now + t64, Due::ServerTimeout(id));
        } else {
            tx.state = ServerState::Completed;
            let linger = if reliable { Duration::ZERO } else { t64 };
            self.arm(now + linger, Due::ServerLinger(id));
        }
    }
}
