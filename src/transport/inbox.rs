//! Where what the transports received goes: each SIP message straight to the engine (shard)
//! that owns its dialog, steered by its Call-ID before anything parses it
//! ([`crate::sip::steer`]); everything about connections (up, closed, unreachable, a refused
//! handshake) to the service's coordinating loop, which owns the connection table.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::SendError, error::TrySendError};

use super::Received;
use crate::sip::steer;

/// A cheap handle every reader task holds.
#[derive(Debug, Clone)]
pub struct Inbox {
    control: mpsc::Sender<Received>,
    shards: Arc<[mpsc::Sender<Received>]>,
}

impl Inbox {
    /// Messages to `shards` (one sender per engine, by index), the rest to `control`.
    pub fn new(control: mpsc::Sender<Received>, shards: Vec<mpsc::Sender<Received>>) -> Inbox {
        Inbox {
            control,
            shards: shards.into(),
        }
    }

    /// Everything, messages too, to one channel (one engine driven by one loop).
    pub fn single(tx: mpsc::Sender<Received>) -> Inbox {
        Inbox::new(tx.clone(), vec![tx])
    }

    fn route(&self, ev: &Received) -> &mpsc::Sender<Received> {
        match ev {
            Received::Message { bytes, .. } if !self.shards.is_empty() => {
                &self.shards[steer::shard_of(bytes, self.shards.len())]
            }
            _ => &self.control,
        }
    }

    /// Waits while the receiving loop is behind (back-pressure on the reader).
    pub async fn send(&self, ev: Received) -> Result<(), SendError<Received>> {
        self.route(&ev).send(ev).await
    }

    pub fn try_send(&self, ev: Received) -> Result<(), TrySendError<Received>> {
        self.route(&ev).try_send(ev)
    }
}
