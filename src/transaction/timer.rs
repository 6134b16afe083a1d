//! RFC 3261 timer base values (§17.1.1.1, Table 4) and the schedule of the transaction
//! timers: arming, lazy cancellation, and what each one does when it fires.

use std::time::{Duration, Instant};

use super::client::ClientState;
use super::server::ServerState;
use super::{ClientTxId, ServerTxId, TransactionLayer, Transmit, TxEvent};

/// T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE requests and INVITE
/// responses) and T4 (how long the network keeps a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Due {
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

impl TransactionLayer {
    /// Arms a timer: records the deadline on the transaction and schedules it. Re-arming or
    /// clearing the field cancels the earlier entry, which is skipped when it comes due.
    pub(super) fn arm(&mut self, at: Instant, due: Due) {
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
    pub(super) fn is_armed(&self, at: Instant, due: Due) -> bool {
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
        self.shrink_tables();
    }

    pub(super) fn fire(&mut self, now: Instant, due: Due) {
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
