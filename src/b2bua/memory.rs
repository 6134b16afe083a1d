//! What the engine keeps in memory per call, and the cut of what a call no longer needs.
//!
//! Accounting: [`Border::held_bytes`] adds up the heap a session holds (legs, usage state, the
//! initial request, media), the engine's indexes by their tables' capacity, and what the
//! transaction layer keeps for retransmissions (`TransactionLayer::held_bytes`). It is an
//! estimate from capacities (allocator overhead aside), cheap enough for a gauge, and exact
//! enough to see a call's state grow or shrink in a test.
//!
//! Trimming: once a final answer has decided a session (a call or a subscription is
//! confirmed, or the session ended), nothing reads the initial request past its start line
//! and a few dialog headers, so [`trimmed`] replaces it with that skeleton; the ACK the border
//! sent on leg B for the 2xx is dropped when that INVITE's client transaction ends, since a
//! retransmitted 2xx can no longer reach the session after that (`timers.rs`).

use std::mem::size_of;

use super::call::{Call, Phase, SentAck};
use super::session::{Leg, Session, Setup, Usage};
use super::subscription::{Refer, Standalone, Subscription};
use super::Border;
use crate::sip::{Headers, Message};

/// Bytes an engine holds, by what holds them (see [`Border::held_bytes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldBytes {
    /// Sessions, ended ones lingering 64·T1 included: legs, usage state, the initial request
    /// (trimmed once answered), media slots and the SDPs last sent.
    pub sessions: usize,
    /// The engine's tables (sessions, dialogs, pending client transactions, open server
    /// transactions, timers), by capacity, with the keys and requests they own.
    pub index: usize,
    /// Messages and keys the transaction layer keeps for what it may still send.
    pub transactions: usize,
}

impl HeldBytes {
    pub fn total(&self) -> usize {
        self.sessions + self.index + self.transactions
    }
}

/// The headers of the initial request that are read once the session is decided:
/// Max-Forwards (the border's own BYE counts down from it), the dialog's identifiers (so a
/// snapshot's `initial` still names its dialog) and the top Via. The start line is kept too:
/// its Request-URI is the target of last resort (`build_request`).
pub(super) const KEPT_HEADERS: [&str; 6] = ["Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq"];

/// The initial request cut to what a decided session still reads (see [`KEPT_HEADERS`]): no
/// body, no other header, allocations at their length.
pub(super) fn trimmed(initial: &Message, kept: &[&str]) -> Message {
    let mut headers = Headers::default();
    for &name in kept {
        // One Via: the top one, which is the caller's (a clone is allocated at its length).
        let value = match name {
            "Via" => initial.headers.values(name).first().copied(),
            _ => initial.headers.get(name),
        };
        if let Some(v) = value {
            headers.push(name, v);
        }
    }
    headers.0.shrink_to_fit();
    Message {
        start: initial.start.clone(),
        headers,
        body: Vec::new(),
    }
}

fn opt(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::capacity)
}

fn leg_bytes(l: &Leg) -> usize {
    l.call_id.capacity()
        + l.local_tag.capacity()
        + opt(&l.remote_tag)
        + l.local_uri.capacity()
        + l.remote_uri.capacity()
        + l.remote_target
            .as_ref()
            .map_or(0, crate::sip::Uri::heap_bytes)
        + l.route_set.capacity() * size_of::<String>()
        + l.route_set.iter().map(String::capacity).sum::<usize>()
}

fn setup_bytes(s: &Setup) -> usize {
    s.request.as_ref().map_or(0, |r| r.heap_bytes())
        + s.alternates.capacity() * size_of::<crate::transaction::Flow>()
}

fn ack_bytes(a: &Option<SentAck>) -> usize {
    a.as_ref().map_or(0, |a| a.ack.heap_bytes())
}

fn call_bytes(c: &Call) -> usize {
    let phase = match &c.phase {
        Phase::Early(e) => {
            size_of::<super::call::Early>()
                + setup_bytes(&e.setup)
                + opt(&e.cancel_reason)
                + e.forks.heap_bytes()
        }
        Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => ack_bytes(&a.last_ack),
        Phase::Ended { last_ack } => ack_bytes(last_ack),
    };
    size_of::<Call>() + phase + c.rseq.heap_bytes() + c.media.heap_bytes()
}

impl Session {
    /// Heap and inline bytes of the session (its table entry aside, see [`HeldBytes::index`]).
    pub fn held_bytes(&self) -> usize {
        let usage = match &self.usage {
            Usage::Call(c) => call_bytes(c),
            Usage::Subscription(Subscription::Setup(s)) | Usage::Standalone(Standalone::Out(s)) => {
                size_of::<Setup>() + setup_bytes(s)
            }
            Usage::Subscription(_) | Usage::Standalone(_) => 0,
        };
        self.legs.iter().map(leg_bytes).sum::<usize>()
            + usage
            + self.initial.heap_bytes()
            + self.icid.capacity()
            + self.refers.iter().count() * size_of::<Refer>()
    }

    /// A final answer decided the session: the initial request is cut to what is still read
    /// of it (see [`trimmed`]).
    pub fn settle(&mut self) {
        self.initial = trimmed(&self.initial, &KEPT_HEADERS);
    }

    /// The session ended: it is never written to a snapshot again, and what it may still send
    /// (the BYE for a late 2xx) reads only Max-Forwards of the initial request.
    pub fn ended(&mut self) {
        self.initial = trimmed(&self.initial, &["Max-Forwards"]);
    }
}

use crate::transaction::{shrink_sparse, table_bytes as table};

impl Border {
    /// What this engine holds, by part (see [`HeldBytes`]); `total()` is what
    /// `palisade_engine_held_bytes` reports. A few hundred bytes of empty tables when idle.
    pub fn held_bytes(&self) -> HeldBytes {
        let sessions = self
            .sessions
            .values()
            .map(|s| size_of::<Session>() + s.held_bytes())
            .sum();
        let dialogs_keys: usize = self
            .dialogs
            .keys()
            .map(|(c, t)| c.capacity() + t.capacity())
            .sum();
        let pending: usize = self
            .pending
            .values()
            .map(|p| match &p.kind {
                super::session::PendingKind::Relay { request, .. } => {
                    size_of::<Message>() + request.heap_bytes()
                }
                _ => 0,
            })
            .sum();
        let timers = self.timers.len() * size_of::<(std::time::Instant, u64, super::SessTimer)>();
        let index = table(&self.sessions)
            + table(&self.dialogs)
            + dialogs_keys
            + table(&self.invites)
            + table(&self.pending)
            + pending
            + table(&self.stx_origin)
            + table(&self.parked)
            + table(&self.parked_by_stx)
            + table(&self.transfers)
            + timers;
        HeldBytes {
            sessions,
            index,
            transactions: self.tx.held_bytes() + self.tx.table_bytes(),
        }
    }

    /// Gives back what the engine's tables grew to under a peak once they are mostly empty
    /// (`transaction::shrink_sparse`); run after timers, when sessions are reaped.
    pub(super) fn shrink_tables(&mut self) {
        shrink_sparse(&mut self.sessions);
        shrink_sparse(&mut self.dialogs);
        shrink_sparse(&mut self.invites);
        shrink_sparse(&mut self.pending);
        shrink_sparse(&mut self.stx_origin);
        shrink_sparse(&mut self.parked);
        shrink_sparse(&mut self.parked_by_stx);
        shrink_sparse(&mut self.transfers);
    }
}
