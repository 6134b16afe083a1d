//! The RFC 3261 §17 transaction layer, sans-IO: INVITE and non-INVITE client and server
//! transactions with their timers (A–K, plus RFC 6026's Accepted state, timers L and M).
//!
//! Fed parsed messages and `now`; returns what to transmit, what to tell the call logic, and when
//! it next needs to be woken. It never reads a clock or touches a socket.
//!
//! This file owns the layer's types and its queues; `client` the client transactions,
//! `server` the server transactions, `timer` the timer values and the schedule that fires them.

mod client;
mod server;
mod timer;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::Transport;

pub use client::ack_for;
use client::ClientTx;
use server::ServerTx;
use timer::Due;
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

    /// Number of live transactions (client, server), for leak checks and metrics.
    pub fn len(&self) -> (usize, usize) {
        (self.clients.len(), self.servers.len())
    }

    /// Bytes of messages and keys the live transactions hold (parsed skeletons aside): what a
    /// completed transaction kept for retransmissions costs, for tests and memory sizing.
    pub fn held_bytes(&self) -> usize {
        let clients = self
            .clients
            .values()
            .map(|t| t.key.len() + t.request.len() + t.ack.as_ref().map_or(0, Vec::len));
        let servers = self
            .servers
            .values()
            .map(|t| t.key.len() + t.last_response.as_ref().map_or(0, Vec::len));
        clients.sum::<usize>() + servers.sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.servers.is_empty()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
