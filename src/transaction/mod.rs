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

    /// Bytes of the layer's tables (transactions are stored in them inline, and each key a
    /// second time in its index), by capacity: what [`TransactionLayer::held_bytes`] leaves out.
    pub fn table_bytes(&self) -> usize {
        table_bytes(&self.clients)
            + table_bytes(&self.client_keys)
            + key_bytes(&self.client_keys)
            + table_bytes(&self.servers)
            + table_bytes(&self.server_keys)
            + key_bytes(&self.server_keys)
            + self.schedule.len() * std::mem::size_of::<(Instant, Due)>()
            + self.transmits.capacity() * std::mem::size_of::<Transmit>()
            + self.events.capacity() * std::mem::size_of::<TxEvent>()
    }

    /// Gives back what the tables grew to under a peak once they are mostly empty (see
    /// [`shrink_sparse`]).
    fn shrink_tables(&mut self) {
        shrink_sparse(&mut self.clients);
        shrink_sparse(&mut self.client_keys);
        shrink_sparse(&mut self.servers);
        shrink_sparse(&mut self.server_keys);
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

/// Bytes of a hash table's slots by capacity: hashbrown has about 8 buckets per 7 usable
/// slots and one control byte per bucket.
pub fn table_bytes<K, V>(m: &HashMap<K, V>) -> usize {
    m.capacity() * 8 / 7 * (std::mem::size_of::<(K, V)>() + 1)
}

fn key_bytes<V>(m: &HashMap<String, V>) -> usize {
    m.keys().map(String::capacity).sum()
}

/// A table smaller than this many slots is left alone: shrinking it saves nothing worth the
/// rehash.
pub const SHRINK_MIN_CAPACITY: usize = 1024;

/// Hash tables keep the capacity of their peak; after a burst of calls that would be held for
/// good. A table filled to under a quarter of its capacity is shrunk to twice its length, so
/// the next shrink needs the length to halve again (amortised O(1) per removal), and a table
/// at a steady size is never rehashed back and forth.
pub fn shrink_sparse<K: Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
    if m.capacity() >= SHRINK_MIN_CAPACITY && m.len() * 4 < m.capacity() {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests;
