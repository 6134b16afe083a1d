//! The RFC 3261 §17 transaction layer, sans-IO: INVITE and non-INVITE client and server
//! transactions with their timers (A–K, plus RFC 6026's Accepted state, timers L and M).
//!
//! Fed parsed messages and `now`; returns what to transmit, what to tell the call logic, and when
//! it next needs to be woken. It never reads a clock or touches a socket.

mod timer;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Transport;
use crate::sip::{Message, Method, Via};

pub use timer::Timers;

/// Where a message comes from or goes to: the realm it belongs to, the transport, and the remote
/// socket address (for TCP the connection is identified by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub realm: usize,
    pub transport: Transport,
    pub remote: SocketAddr,
}

impl Flow {
    pub fn reliable(&self) -> bool {
        self.transport != Transport::Udp
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(pub u64);

/// Bytes to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub bytes: Vec<u8>,
}

/// What an incoming request means for the call logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestDisposition {
    /// A new request; answer it through this server transaction.
    New(ServerTxId),
    /// A retransmission, already handled (the last response was re-sent if there was one).
    Absorbed,
    /// An ACK that matched no transaction: the ACK for a 2xx, which belongs to the dialog.
    /// If it matched an INVITE server transaction in the Accepted state, that transaction stopped
    /// retransmitting its 2xx.
    AckFor2xx(Option<ServerTxId>),
}

/// What an incoming response means for the call logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseDisposition {
    /// Pass it up: the first copy of a response for this client transaction.
    Deliver(ClientTxId),
    /// A retransmitted 2xx to an INVITE (the ACK was lost): the call logic re-sends its ACK.
    Retransmitted2xx(ClientTxId),
    /// A retransmission or a response for no known transaction; nothing to do.
    Absorbed,
}

/// Something the call logic must hear about without a message having arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// Timer B or F fired: no final response came. The call logic acts as if a 408 arrived.
    ClientTimeout(ClientTxId),
    /// Timer L fired: a 2xx was sent and no ACK came.
    AckTimeout(ServerTxId),
    /// A client transaction ended (after its final response was handled and its linger timer).
    ClientTerminated(ClientTxId),
    /// The transport could not carry the request (a connection that could not be opened, a
    /// TLS handshake refused): RFC 3261 §8.1.3.1, the call logic acts as if a 503 arrived.
    ClientTransportError(ClientTxId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// INVITE: Calling; non-INVITE: Trying.
    Trying,
    Proceeding,
    Completed,
    /// RFC 6026: a 2xx arrived for an INVITE; later copies are retransmissions.
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// INVITE: Proceeding; non-INVITE: Trying/Proceeding.
    Proceeding,
    Completed,
    Accepted,
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Due {
    /// Timer A / E: retransmit the request.
    ClientRetransmit(ClientTxId),
    /// Timer B / F.
    ClientTimeout(ClientTxId),
    /// Timer D / K / M: the client transaction ends.
    ClientLinger(ClientTxId),
    /// Timer G or the 2xx retransmission of the Accepted state.
    ServerRetransmit(ServerTxId),
    /// Timer H / L: no ACK came.
    ServerTimeout(ServerTxId),
    /// Timer I / J: the server transaction ends.
    ServerLinger(ServerTxId),
}

struct ClientTx {
    key: String,
    invite: bool,
    state: ClientState,
    flow: Flow,
    request: Vec<u8>,
    /// The request, kept to build the ACK of a non-2xx final.
    ack_base: Option<Message>,
    interval: Duration,
    /// Armed deadlines; a schedule entry fires only if it still matches (lazy cancellation).
    retransmit_at: Option<Instant>,
    timeout_at: Option<Instant>,
    linger_at: Option<Instant>,
}

struct ServerTx {
    key: String,
    invite: bool,
    state: ServerState,
    flow: Flow,
    last_response: Option<Vec<u8>>,
    interval: Duration,
    retransmit_at: Option<Instant>,
    timeout_at: Option<Instant>,
    linger_at: Option<Instant>,
}

/// All transactions of one border instance.
pub struct TransactionLayer {
    timers: Timers,
    next_id: u64,
    clients: HashMap<ClientTxId, ClientTx>,
    client_keys: HashMap<String, ClientTxId>,
    servers: HashMap<ServerTxId, ServerTx>,
    server_keys: HashMap<String, ServerTxId>,
    schedule: BTreeSet<(Instant, Due)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

/// RFC 3261 §17.2.3 matching key of a request, for the server side. ACK and INVITE share a key so
/// an ACK finds its INVITE's transaction; CANCEL gets its own.
fn server_key(msg: &Message) -> Option<String> {
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

/// Key of a client transaction: our branch and the CSeq method (CANCEL shares INVITE's branch).
fn client_key(msg: &Message) -> Option<String> {
    let via = Via::parse(msg.headers.get("Via")?)?;
    let cseq = crate::sip::CSeq::parse(msg.headers.get("CSeq")?)?;
    let m = match cseq.method {
        Method::Ack => Method::Invite,
        m => m,
    };
    Some(format!("{}|{}", via.branch()?, m.as_str()))
}

impl TransactionLayer {
    pub fn new(timers: Timers) -> Self {
        TransactionLayer {
            timers,
            next_id: 1,
            clients: HashMap::new(),
            client_keys: HashMap::new(),
            servers: HashMap::new(),
            server_keys: HashMap::new(),
            schedule: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Arms a timer: records the deadline on the transaction and schedules it. Re-arming or
    /// clearing the field cancels the earlier entry, which is skipped when it comes due.
    fn arm(&mut self, at: Instant, due: Due) {
        let slot = match due {
            Due::ClientRetransmit(id) => self.clients.get_mut(&id).map(|t| &mut t.retransmit_at),
            Due::ClientTimeout(id) => self.clients.get_mut(&id).map(|t| &mut t.timeout_at),
            Due::ClientLinger(id) => self.clients.get_mut(&id).map(|t| &mut t.linger_at),
            Due::ServerRetransmit(id) => self.servers.get_mut(&id).map(|t| &mut t.retransmit_at),
            Due::ServerTimeout(id) => self.servers.get_mut(&id).map(|t| &mut t.timeout_at),
            Due::ServerLinger(id) => self.servers.get_mut(&id).map(|t| &mut t.linger_at),
        };
        if let Some(slot) = slot {
            *slot = Some(at);
            self.schedule.insert((at, due));
        }
    }

    /// Whether a scheduled entry is still the armed deadline of its transaction.
    fn is_armed(&self, at: Instant, due: Due) -> bool {
        let slot = match due {
            Due::ClientRetransmit(id) => self.clients.get(&id).map(|t| t.retransmit_at),
            Due::ClientTimeout(id) => self.clients.get(&id).map(|t| t.timeout_at),
            Due::ClientLinger(id) => self.clients.get(&id).map(|t| t.linger_at),
            Due::ServerRetransmit(id) => self.servers.get(&id).map(|t| t.retransmit_at),
            Due::ServerTimeout(id) => self.servers.get(&id).map(|t| t.timeout_at),
            Due::ServerLinger(id) => self.servers.get(&id).map(|t| t.linger_at),
        };
        slot == Some(Some(at))
    }

    /// Number of live transactions (client, server), for leak checks and metrics.
    pub fn len(&self) -> (usize, usize) {
        (self.clients.len(), self.servers.len())
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.servers.is_empty()
    }

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
                ack_base: invite.then(|| msg.clone()),
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
                self.arm(now + t1 * 64, Due::ClientLinger(id));
                ResponseDisposition::Deliver(id)
            }
            (ClientState::Trying | ClientState::Proceeding, 200..=699) => {
                tx.state = ClientState::Completed;
                tx.retransmit_at = None;
                tx.timeout_at = None;
                let reliable = tx.flow.reliable();
                if let Some(ack) = tx.ack_base.as_ref().map(|req| ack_for(req, msg)) {
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        bytes: ack.to_bytes(),
                    });
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
                if let Some(ack) = tx.ack_base.as_ref().map(|req| ack_for(req, msg)) {
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        bytes: ack.to_bytes(),
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

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, due)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            if self.is_armed(at, due) {
                self.fire(now, due);
            }
        }
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

    fn fire(&mut self, now: Instant, due: Due) {
        let t2 = self.timers.t2;
        match due {
            Due::ClientRetransmit(id) => {
                let Some(tx) = self.clients.get_mut(&id) else {
                    return;
                };
                self.transmits.push_back(Transmit {
                    flow: tx.flow,
                    bytes: tx.request.clone(),
                });
                // Timer A doubles without bound; Timer E caps at T2 and sits at T2 once a
                // provisional arrived.
                tx.interval = if tx.invite {
                    tx.interval * 2
                } else if tx.state == ClientState::Proceeding {
                    t2
                } else {
                    (tx.interval * 2).min(t2)
                };
                let next = now + tx.interval;
                self.arm(next, Due::ClientRetransmit(id));
            }
            Due::ClientTimeout(id) => {
                if let Some(tx) = self.clients.remove(&id) {
                    self.client_keys.remove(&tx.key);
                    self.events.push_back(TxEvent::ClientTimeout(id));
                }
            }
            Due::ClientLinger(id) => {
                if let Some(tx) = self.clients.remove(&id) {
                    self.client_keys.remove(&tx.key);
                    self.events.push_back(TxEvent::ClientTerminated(id));
                }
            }
            Due::ServerRetransmit(id) => {
                let Some(tx) = self.servers.get_mut(&id) else {
                    return;
                };
                if let Some(resp) = &tx.last_response {
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        bytes: resp.clone(),
                    });
                }
                tx.interval = (tx.interval * 2).min(t2);
                let next = now + tx.interval;
                self.arm(next, Due::ServerRetransmit(id));
            }
            Due::ServerTimeout(id) => {
                if let Some(tx) = self.servers.remove(&id) {
                    self.server_keys.remove(&tx.key);
                    if tx.state == ServerState::Accepted {
                        self.events.push_back(TxEvent::AckTimeout(id));
                    }
                }
            }
            Due::ServerLinger(id) => {
                if let Some(tx) = self.servers.remove(&id) {
                    self.server_keys.remove(&tx.key);
                }
            }
        }
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

#[cfg(test)]
mod tests;
