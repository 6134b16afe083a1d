//! The engine's only way to the wire: the transaction layer behind a wrapper whose sending
//! methods take [`Sealed`] messages, so everything the border transmits went through the
//! per-leg builders and the hiding rules. Reading the layer's state needs no proof and is
//! offered through `Deref`; the inputs and polls are passed through as they are.

use std::ops::Deref;
use std::time::Instant;

use super::build::Sealed;
use crate::sip::Message;
use crate::transaction::{
    ClientTxId, Flow, RequestDisposition, ResponseDisposition, ServerTxId, Timers,
    TransactionLayer, Transmit, TxEvent,
};

pub(super) struct Outbox {
    tx: TransactionLayer,
}

impl Outbox {
    pub fn new(timers: Timers) -> Outbox {
        Outbox {
            tx: TransactionLayer::new(timers),
        }
    }

    pub fn send_request(&mut self, now: Instant, msg: &Sealed, flow: Flow) -> ClientTxId {
        self.tx.send_request(now, msg, flow)
    }

    pub fn send_stateless(&mut self, msg: &Sealed, flow: Flow) {
        self.tx.send_stateless(msg, flow)
    }

    pub fn respond(&mut self, now: Instant, id: ServerTxId, msg: &Sealed) {
        self.tx.respond(now, id, msg)
    }

    pub fn on_request(&mut self, now: Instant, msg: &Message, flow: Flow) -> RequestDisposition {
        self.tx.on_request(now, msg, flow)
    }

    pub fn on_response(&mut self, now: Instant, msg: &Message) -> ResponseDisposition {
        self.tx.on_response(now, msg)
    }

    pub fn confirm_2xx(&mut self, now: Instant, id: ServerTxId) {
        self.tx.confirm_2xx(now, id)
    }

    pub fn transport_failed(&mut self, flow: Flow) {
        self.tx.transport_failed(flow)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.tx.poll_event()
    }
}

impl Deref for Outbox {
    type Target = TransactionLayer;

    fn deref(&self) -> &TransactionLayer {
        &self.tx
    }
}
