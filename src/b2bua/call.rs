//! A call: the INVITE usage of a session (RFC 3261 §13–15), as a state enum whose variants own
//! what that state needs. Early: the initial INVITE's setup, CANCEL state, Timer C and the
//! forked early dialogs; confirmed: the ACK awaited and the last ACK sent; terminating: who
//! ended it; ended: only the ACK kept for late 2xx retransmissions. The transitions are methods
//! here; `Border` (in `responses.rs`, `cancel.rs`, `in_dialog.rs`, `timers.rs`) carries out the
//! sends they call for.

use std::time::Instant;

use super::build::Sealed;
use super::fork::{Forks, Rseqs};
use super::media::CallMedia;
use super::session::Setup;
use super::EndedBy;
use crate::transaction::{ClientTxId, Flow, ServerTxId};

/// A 2xx to an INVITE relayed to `from_side`, whose ACK is still to come and be relayed.
#[derive(Debug, Clone)]
pub(super) struct AwaitAck {
    pub from_side: usize,
    pub stx: ServerTxId,
    /// The client transaction on the other leg that got the 2xx.
    pub ctx: ClientTxId,
    /// CSeq number of that INVITE on the other leg.
    pub out_cseq: u32,
}

/// An ACK the border sent for a 2xx on leg B, re-sent when that 2xx is retransmitted.
#[derive(Debug, Clone)]
pub(super) struct SentAck {
    pub ctx: ClientTxId,
    pub ack: Sealed,
    pub dest: Flow,
}

/// CANCEL of the initial INVITE (RFC 3261 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cancel {
    /// Not asked for.
    None,
    /// The caller cancelled (it has its 487); leg B has sent no provisional yet, so the CANCEL
    /// waits for one.
    Waiting,
    /// The caller cancelled and the CANCEL went out on leg B (or was not needed there).
    Sent,
}

/// The initial INVITE is out on leg B and has no final answer yet.
#[derive(Debug, Clone)]
pub(super) struct Early {
    pub setup: Setup,
    pub cancel: Cancel,
    /// The Reason the caller's CANCEL gave (RFC 3326, screened), carried on leg B's CANCEL.
    pub cancel_reason: Option<String>,
    /// RFC 3261 §16.6 Timer C.
    pub timer_c_at: Option<Instant>,
    /// The early dialogs of a forked INVITE besides the one the legs hold.
    pub forks: Forks,
}

/// What a provisional response to the initial INVITE calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provisional {
    /// The caller cancelled before any provisional: the CANCEL goes out now.
    SendCancel,
    /// Nothing crosses (100 Trying, or the caller has cancelled).
    Absorb,
    /// Relayed to the caller.
    Relay,
}

impl Early {
    pub fn cancelled(&self) -> bool {
        self.cancel != Cancel::None
    }

    /// A provisional arrived from the current target: any of them, 100 Trying included, lets a
    /// CANCEL follow (RFC 3261 §9.1).
    pub fn provisional(&mut self, status: u16) -> Provisional {
        self.setup.got_provisional = true;
        if self.cancel == Cancel::Waiting {
            Provisional::SendCancel
        } else if self.cancelled() || status == 100 {
            Provisional::Absorb
        } else {
            Provisional::Relay
        }
    }

    /// The caller cancelled, giving `reason` (screened). True when the CANCEL may go out on
    /// leg B now; otherwise it waits for the first provisional (RFC 3261 §9.1).
    pub fn cancel(&mut self, reason: Option<String>) -> bool {
        let now = self.setup.got_provisional;
        self.cancel_reason = reason;
        self.cancel = if now { Cancel::Sent } else { Cancel::Waiting };
        now
    }

    /// The CANCEL to build for leg B: the INVITE as sent, its transaction and the Reason to
    /// carry. A waiting CANCEL counts as sent from here on.
    pub fn cancel_to_send(&mut self) -> Option<(&Sealed, ClientTxId, Option<&str>)> {
        if self.cancel == Cancel::Waiting {
            self.cancel = Cancel::Sent;
        }
        let (Some(invite), Some(ctx)) = (&self.setup.request, self.setup.ctx) else {
            return None;
        };
        Some((invite, ctx, self.cancel_reason.as_deref()))
    }
}

/// A 2xx made the dialog: what the confirmed call needs.
#[derive(Debug, Clone)]
pub(super) struct Answered {
    pub at: Instant,
    /// A 2xx to an INVITE relayed to one side, whose ACK is still to come and be relayed.
    pub awaiting_ack: Option<AwaitAck>,
    pub last_ack: Option<SentAck>,
}

impl Answered {
    /// An ACK arrived on `side`: the 2xx it acknowledges, when one relayed to that side was
    /// awaiting it (a retransmitted ACK finds none).
    pub fn take_ack(&mut self, side: usize) -> Option<AwaitAck> {
        match &self.awaiting_ack {
            Some(w) if w.from_side == side => self.awaiting_ack.take(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Phase {
    Early(Box<Early>),
    Confirmed(Answered),
    /// A BYE is crossing (or the border hung up): who ended it is known.
    Terminating {
        answered: Answered,
        by: EndedBy,
    },
    /// Signalling is over; the state lingers 64·T1 for late retransmissions, then is freed.
    Ended {
        last_ack: Option<SentAck>,
    },
}

/// What ending a call leaves to report: when it was answered (`None`: it never was) and who
/// ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CallEnd {
    pub answered_at: Option<Instant>,
    pub by: EndedBy,
}

/// The INVITE usage of a session.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub phase: Phase,
    /// Reliable provisional numbering between the legs' dialogs (per early dialog while forked).
    pub rseq: Rseqs,
    /// The call's anchored streams.
    pub media: CallMedia,
}

impl Call {
    pub fn new(setup: Setup, timer_c_at: Option<Instant>) -> Call {
        Call {
            phase: Phase::Early(Box::new(Early {
                setup,
                cancel: Cancel::None,
                cancel_reason: None,
                timer_c_at,
                forks: Forks::default(),
            })),
            rseq: Rseqs::default(),
            media: CallMedia::default(),
        }
    }

    /// A call taken over from a snapshot: confirmed since `at`, nothing awaited.
    pub fn restored(at: Instant, rseq: Rseqs, media: CallMedia) -> Call {
        Call {
            phase: Phase::Confirmed(Answered {
                at,
                awaiting_ack: None,
                last_ack: None,
            }),
            rseq,
            media,
        }
    }

    pub fn early(&self) -> Option<&Early> {
        match &self.phase {
            Phase::Early(e) => Some(e),
            _ => None,
        }
    }

    pub fn early_mut(&mut self) -> Option<&mut Early> {
        match &mut self.phase {
            Phase::Early(e) => Some(e),
            _ => None,
        }
    }

    pub fn answered(&self) -> Option<&Answered> {
        match &self.phase {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => Some(a),
            _ => None,
        }
    }

    pub fn answered_mut(&mut self) -> Option<&mut Answered> {
        match &mut self.phase {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => Some(a),
            _ => None,
        }
    }

    /// Confirmed, with no ACK awaited and no BYE crossing: what a snapshot may carry.
    pub fn settled(&self) -> Option<&Answered> {
        match &self.phase {
            Phase::Confirmed(a) if a.awaiting_ack.is_none() => Some(a),
            _ => None,
        }
    }

    pub fn last_ack(&self) -> Option<&SentAck> {
        match &self.phase {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => a.last_ack.as_ref(),
            Phase::Ended { last_ack } => last_ack.as_ref(),
            Phase::Early(_) => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended { .. })
    }

    /// A 2xx answered the initial INVITE: the caller's ACK is awaited.
    pub fn answer(&mut self, now: Instant, await_ack: AwaitAck) {
        self.phase = Phase::Confirmed(Answered {
            at: now,
            awaiting_ack: Some(await_ack),
            last_ack: None,
        });
    }

    /// The ACK the border sent for a 2xx, kept for that 2xx's retransmissions (also once the
    /// call has ended: a 2xx nobody wanted is ACKed then).
    pub fn keep_ack(&mut self, sent: SentAck) {
        match &mut self.phase {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => a.last_ack = Some(sent),
            Phase::Ended { last_ack } => *last_ack = Some(sent),
            Phase::Early(_) => {}
        }
    }

    /// The client transaction `ctx` ended: the ACK kept for its 2xx is not needed any more.
    pub fn forget_ack(&mut self, ctx: ClientTxId) {
        let kept = match &mut self.phase {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => &mut a.last_ack,
            Phase::Ended { last_ack } => last_ack,
            Phase::Early(_) => return,
        };
        if kept.as_ref().is_some_and(|a| a.ctx == ctx) {
            *kept = None;
        }
    }

    /// A BYE crossed (or the border hangs up): a confirmed call is terminating, and the first
    /// to end it is remembered. A BYE on an early dialog leaves the call early: its INVITE still
    /// gets its answer.
    pub fn ending(&mut self, by: EndedBy) {
        if let Phase::Confirmed(answered) = &self.phase {
            self.phase = Phase::Terminating {
                answered: answered.clone(),
                by,
            };
        }
    }

    /// Signalling is over; `None` when it already was.
    pub fn end(&mut self) -> Option<CallEnd> {
        let end = match &self.phase {
            Phase::Ended { .. } => return None,
            Phase::Terminating { answered, by } => CallEnd {
                answered_at: Some(answered.at),
                by: *by,
            },
            // A BYE that was never seen (both legs gone quiet) is the border's.
            Phase::Confirmed(a) => CallEnd {
                answered_at: Some(a.at),
                by: EndedBy::Border("Dialog ended"),
            },
            Phase::Early(_) => CallEnd {
                answered_at: None,
                by: EndedBy::Border("Dialog ended"),
            },
        };
        self.phase = Phase::Ended {
            last_ack: self.last_ack().cloned(),
        };
        Some(end)
    }
}
