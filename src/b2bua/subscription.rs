//! The non-INVITE usages of a session: a subscription (SUBSCRIBE, or the implicit one of a REFER
//! outside a dialog, RFC 6665, RFC 3515) and a standalone transaction (MESSAGE, OPTIONS, NOTIFY,
//! PUBLISH outside a dialog), each with the states it can be in; and the REFER id map that a
//! REFER's implicit subscription needs on whatever dialog carried it.

use std::time::Instant;

use super::session::Setup;

/// A subscription dialog pair.
#[derive(Debug, Clone)]
pub(super) enum Subscription {
    /// The SUBSCRIBE (or REFER) is out on leg B without a final answer.
    Setup(Box<Setup>),
    /// A 2xx created the dialogs: NOTIFYs cross until one says `terminated`.
    Active { since: Instant },
    /// Over; the state lingers for late retransmissions, then is freed.
    Terminated,
}

impl Subscription {
    pub fn new(setup: Setup) -> Subscription {
        Subscription::Setup(Box::new(setup))
    }

    /// Taken over from a snapshot, active since `since`.
    pub fn restored(since: Instant) -> Subscription {
        Subscription::Active { since }
    }

    pub fn setup(&self) -> Option<&Setup> {
        match self {
            Subscription::Setup(s) => Some(s),
            _ => None,
        }
    }

    pub fn setup_mut(&mut self) -> Option<&mut Setup> {
        match self {
            Subscription::Setup(s) => Some(s),
            _ => None,
        }
    }

    pub fn activate(&mut self, now: Instant) {
        if matches!(self, Subscription::Setup(_)) {
            *self = Subscription::Active { since: now };
        }
    }

    /// Active since when; `None` before the 2xx and after the end.
    pub fn active_since(&self) -> Option<Instant> {
        match self {
            Subscription::Active { since } => Some(*since),
            _ => None,
        }
    }

    /// A NOTIFY got its final answer: `terminated` is whether its Subscription-State said so
    /// (RFC 6665 §4.1.3). True when that ends the subscription.
    pub fn notified(&self, terminated: bool) -> bool {
        terminated && !self.is_ended()
    }

    /// Over; false when it already was.
    pub fn end(&mut self) -> bool {
        let was = !self.is_ended();
        *self = Subscription::Terminated;
        was
    }

    pub fn is_ended(&self) -> bool {
        matches!(self, Subscription::Terminated)
    }
}

/// One transaction relayed outside any dialog.
#[derive(Debug, Clone)]
pub(super) enum Standalone {
    Out(Box<Setup>),
    /// Answered (or failed); lingers for late retransmissions, then is freed.
    Done,
}

impl Standalone {
    pub fn new(setup: Setup) -> Standalone {
        Standalone::Out(Box::new(setup))
    }

    pub fn setup(&self) -> Option<&Setup> {
        match self {
            Standalone::Out(s) => Some(s),
            Standalone::Done => None,
        }
    }

    pub fn setup_mut(&mut self) -> Option<&mut Setup> {
        match self {
            Standalone::Out(s) => Some(s),
            Standalone::Done => None,
        }
    }

    /// Answered or failed; false when it already was.
    pub fn end(&mut self) -> bool {
        let was = !self.is_ended();
        *self = Standalone::Done;
        was
    }

    pub fn is_ended(&self) -> bool {
        matches!(self, Standalone::Done)
    }
}

/// A REFER relayed across the session: the leg it was sent on, its CSeq there, and its CSeq on
/// the leg it came from. The implicit subscription's NOTIFYs name the REFER by that CSeq
/// (`Event: refer;id=N`, RFC 3515 §2.4.6), which differs per leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refer {
    pub sent_on: usize,
    pub sent: u32,
    pub received: u32,
}

/// The REFERs of one session, newest last; at most [`Refers::KEPT`], the oldest forgotten
/// first (a NOTIFY naming one of those crosses with its id as written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Refers(Vec<Refer>);

impl Refers {
    /// Enough for any transfer or conference scenario; bounds what a peer sending REFER after
    /// REFER in one dialog can make the border keep.
    pub const KEPT: usize = 16;

    pub fn relayed(&mut self, refer: Refer) {
        if self.0.len() == Self::KEPT {
            self.0.remove(0);
        }
        self.0.push(refer);
    }

    /// A NOTIFY received on `side` names `id`: the id the REFER had on the other leg.
    pub fn received_id(&self, side: usize, id: u32) -> Option<u32> {
        self.0
            .iter()
            .rev()
            .find(|r| r.sent_on == side && r.sent == id)
            .map(|r| r.received)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Refer> {
        self.0.iter()
    }

    pub fn from_vec(refers: Vec<Refer>) -> Refers {
        let skip = refers.len().saturating_sub(Self::KEPT);
        Refers(refers.into_iter().skip(skip).collect())
    }
}
