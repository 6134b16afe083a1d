//! Where what the transports received goes: each SIP message straight to the engine (shard)
//! that owns its dialog, steered by its Call-ID before anything parses it
//! ([`crate::sip::steer`]); everything about connections (up, closed, unreachable, a refused
//! handshake) to the service's coordinating loop, which owns the connection table.
//!
//! It also owns the admission stage in front of the shards' queues ([`Admission`]): each shard
//! publishes how long its messages waited (a datagram's wait counted from the kernel's arrival
//! stamp, so its time in the socket buffer too), and while that is over `[sip] admission_delay_ms`
//! every reader, UDP datagram or TCP/TLS connection, answers a new out-of-dialog INVITE itself
//! ([`Inbox::refuse`]) instead of queueing it behind the backlog that makes the border refuse it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{self, error::SendError, error::TrySendError};

use super::Received;
use crate::sip::{parse_message, steer, Limits, Method, NameAddr, Via};

/// Retry-After of the admission stage's 503, as the engine's own overload 503 has it.
pub const ADMISSION_RETRY_AFTER_S: u32 = 2;

/// Each shard's queue delay as it last measured it, and the threshold over which new calls are
/// refused before they are queued.
#[derive(Debug)]
pub struct Admission {
    /// Microseconds the message a shard last took had waited in its queue; zero once the queue
    /// is empty (so an idle shard never looks behind on a stale measure).
    delay_us: Box<[AtomicU64]>,
    /// Zero: the stage is off.
    threshold_us: AtomicU64,
    /// New INVITEs refused here since the last [`Admission::take_rejected`], by realm index.
    /// A lock, not a counter per realm: it is taken only while refusing, i.e. under overload,
    /// once per refused call, and the readers do not know how many realms there are.
    rejected: Mutex<BTreeMap<usize, u64>>,
}

impl Admission {
    fn new(shards: usize) -> Admission {
        Admission {
            delay_us: (0..shards.max(1)).map(|_| AtomicU64::new(0)).collect(),
            threshold_us: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
        }
    }

    /// New INVITEs refused since the last call, by realm index (for the metric).
    pub fn take_rejected(&self) -> Vec<(usize, u64)> {
        let mut m = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *m).into_iter().collect()
    }

    fn count_rejected(&self, realm: usize) {
        let mut m = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(realm).or_insert(0) += 1;
    }

    /// Shard `shard`'s queue delay now (the shard calls this for every message it takes).
    pub fn publish(&self, shard: usize, delay: Duration) {
        if let Some(d) = self.delay_us.get(shard) {
            d.store(micros(delay), Ordering::Relaxed);
        }
    }

    /// `[sip] admission_delay_ms`, at start and on every reload.
    pub fn set_threshold(&self, delay: Duration) {
        self.threshold_us.store(micros(delay), Ordering::Relaxed);
    }

    /// Whether any shard is behind: the per-datagram check, before the Call-ID is looked for.
    fn any_over(&self) -> bool {
        let t = self.threshold_us.load(Ordering::Relaxed);
        t > 0 && self.delay_us.iter().any(|d| d.load(Ordering::Relaxed) > t)
    }

    fn over(&self, shard: usize) -> bool {
        let t = self.threshold_us.load(Ordering::Relaxed);
        t > 0
            && self
                .delay_us
                .get(shard)
                .is_some_and(|d| d.load(Ordering::Relaxed) > t)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What the admission stage answers `bytes` (from `remote`) with, and where it goes, when it is
/// a new out-of-dialog INVITE: 503 + Retry-After with the request's Via, From, To (a To tag
/// added), Call-ID and CSeq (RFC 3261 §8.2.6), sent as the engine would (source address; the
/// source port with `rport`, else the Via's port). `None` for anything else, which is queued:
/// in-dialog requests, CANCEL, ACK, responses and what does not parse (the engine answers that).
pub fn admission_answer(
    bytes: &[u8],
    limits: &Limits,
    remote: SocketAddr,
) -> Option<(Vec<u8>, SocketAddr)> {
    let msg = parse_message(bytes, limits).ok()?;
    if msg.method() != Some(&Method::Invite) {
        return None;
    }
    let to = msg.headers.get("To").and_then(NameAddr::parse)?;
    if to.tag().is_some() {
        return None;
    }
    let via = msg.headers.get("Via").and_then(Via::parse)?;
    let port = if via.params.get("rport").is_some() {
        remote.port()
    } else {
        via.port.unwrap_or(5060)
    };
    let tag = format!("{:016x}", rand::random::<u64>());
    let mut resp = crate::b2bua::make_response(&msg, 503, Some(&tag));
    resp.headers
        .push("Retry-After", ADMISSION_RETRY_AFTER_S.to_string());
    Some((resp.to_bytes(), SocketAddr::new(remote.ip(), port)))
}

/// A cheap handle every reader task holds.
#[derive(Debug, Clone)]
pub struct Inbox {
    control: mpsc::Sender<Received>,
    shards: Arc<[mpsc::Sender<Received>]>,
    admission: Arc<Admission>,
}

impl Inbox {
    /// Messages to `shards` (one sender per engine, by index), the rest to `control`. The
    /// admission stage starts off ([`Admission::set_threshold`]).
    pub fn new(control: mpsc::Sender<Received>, shards: Vec<mpsc::Sender<Received>>) -> Inbox {
        Inbox {
            control,
            admission: Arc::new(Admission::new(shards.len())),
            shards: shards.into(),
        }
    }

    /// Everything, messages too, to one channel (one engine driven by one loop).
    pub fn single(tx: mpsc::Sender<Received>) -> Inbox {
        Inbox::new(tx.clone(), vec![tx])
    }

    /// The admission stage the shards publish their queue delay to.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    fn shard_of(&self, bytes: &[u8]) -> usize {
        steer::shard_of(bytes, self.shards.len())
    }

    /// Whether the shard `bytes` steers to is behind by more than the admission threshold:
    /// only then is [`admission_answer`] asked (a parse, paid only under overload).
    fn behind(&self, bytes: &[u8]) -> bool {
        // Steering scans for the Call-ID: done here only while some shard is behind (the
        // route scans it again then), never for every datagram of a border keeping up.
        !self.shards.is_empty()
            && self.admission.any_over()
            && self.admission.over(self.shard_of(bytes))
    }

    /// The admission stage for one message read on `realm` from `remote` after it `waited` in
    /// the socket's own buffer: while that wait or the queue delay of the shard it steers to is
    /// over the threshold, a new out-of-dialog INVITE gets its 503 here (counted), and the
    /// reader sends that instead of queueing the request. A datagram's answer goes to the
    /// returned address; a stream's goes back over its own connection (RFC 3261 §18.2.2).
    pub fn refuse(
        &self,
        realm: usize,
        bytes: &[u8],
        limits: &Limits,
        remote: SocketAddr,
        waited: Duration,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let t = self.admission.threshold_us.load(Ordering::Relaxed);
        let late = t > 0 && micros(waited) > t;
        if !late && !self.behind(bytes) {
            return None;
        }
        let answer = admission_answer(bytes, limits, remote)?;
        self.admission.count_rejected(realm);
        Some(answer)
    }

    fn route(&self, ev: &Received) -> &mpsc::Sender<Received> {
        match ev {
            Received::Message { bytes, .. } if !self.shards.is_empty() => {
                &self.shards[self.shard_of(bytes)]
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
