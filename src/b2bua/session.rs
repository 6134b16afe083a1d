//! One session: the two legs (dialogs) of a call, subscription or standalone transaction, the
//! phase it is in, and what is pending between them.
//!
//! The phase is an enum whose variants own what only that phase needs, so states that cannot
//! happen (a cancelled call that is also confirmed, an ACK awaited before any answer) cannot be
//! written down either.

use std::collections::VecDeque;
use std::time::Instant;

use super::build::Sealed;
use super::{EndedBy, Party};
use crate::sip::{Headers, Message, Method, Uri};
use crate::transaction::{ClientTxId, Flow, ServerTxId};

pub(super) use super::fork::{Forks, RseqMap, Rseqs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Invite,
    /// SUBSCRIBE or REFER: a dialog that lives until its NOTIFY says terminated.
    Subscribe,
    /// MESSAGE, OPTIONS, NOTIFY, PUBLISH outside a dialog: one transaction relayed.
    Standalone,
}

/// One dialog, as this border's UA sees it.
#[derive(Debug, Clone)]
pub(super) struct Leg {
    pub realm: usize,
    pub party: Party,
    /// Where requests on this leg go when the remote target does not say otherwise.
    pub flow: Flow,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our identity on this leg (name-addr without tag).
    pub local_uri: String,
    pub remote_uri: String,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    pub remote_target: Option<Uri>,
    pub route_set: Vec<String>,
}

/// A request on a dialog whose CSeq is not above the last one (RFC 3261 §12.2.2: 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutOfOrder;

impl Leg {
    /// A request the remote party sent on this dialog (RFC 3261 §12.2.2): its CSeq must rise;
    /// a target refresh (INVITE, UPDATE, SUBSCRIBE, NOTIFY, REFER) moves the remote target to its
    /// Contact; a dialog whose remote tag is not known yet (a NOTIFY before the SUBSCRIBE's 2xx)
    /// learns it. Returns the CSeq number.
    pub fn accept_request(&mut self, msg: &Message, method: &Method) -> Result<u32, OutOfOrder> {
        let seq = super::cseq_of(msg).map(|c| c.seq).unwrap_or(0);
        if self.remote_cseq.is_some_and(|prev| seq <= prev) {
            return Err(OutOfOrder);
        }
        self.remote_cseq = Some(seq);
        let refresh = matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        );
        if refresh {
            if let Some(c) = super::contact_uri(msg) {
                self.remote_target = Some(c);
            }
        }
        if self.remote_tag.is_none() {
            self.remote_tag = super::tag_of(msg.headers.get("From"));
        }
        Ok(seq)
    }

    /// From, To, Call-ID, CSeq and Route of a request this border sends on the leg
    /// (RFC 3261 §12.2.1.1).
    pub fn push_dialog_headers(&self, h: &mut Headers, seq: u32, method: &Method) {
        h.push("From", format!("{};tag={}", self.local_uri, self.local_tag));
        match &self.remote_tag {
            Some(t) => h.push("To", format!("{};tag={t}", self.remote_uri)),
            None => h.push("To", self.remote_uri.clone()),
        }
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{seq} {method}"));
        for r in &self.route_set {
            h.push("Route", r.clone());
        }
    }
}

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

#[derive(Debug, Clone)]
pub(super) enum PendingKind {
    /// The request that created the session, sent on leg B.
    Initial,
    /// An in-dialog request relayed from the other leg: its response is relayed back.
    Relay {
        stx: ServerTxId,
        request: Box<Message>,
        out_cseq: u32,
    },
    /// A request of the border's own (BYE on teardown, CANCEL): responses end here.
    Local,
    /// A request of a REFER the border terminates (`transfer.rs`).
    Transfer(super::transfer::TransferStep),
}

/// A client transaction started on `side` of `session`.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub session: u64,
    pub side: usize,
    pub kind: PendingKind,
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

/// The initial request is out on leg B and has no final answer yet.
#[derive(Debug, Clone)]
pub(super) struct Early {
    /// The client transaction of the request on leg B (`None` only while it is being built).
    pub ctx: Option<ClientTxId>,
    /// The request as sent on leg B: CANCEL and the next target's retry are built from it.
    pub request: Option<Sealed>,
    /// Further targets of the route, tried in order when the current one fails (RFC 3263 §4.3).
    pub alternates: VecDeque<Flow>,
    /// Any provisional arrived from the current target: a CANCEL may follow.
    pub got_provisional: bool,
    pub cancel: Cancel,
    /// The Reason the caller's CANCEL gave (RFC 3326, screened), carried on leg B's CANCEL.
    pub cancel_reason: Option<String>,
    /// RFC 3261 §16.6 Timer C (INVITE only).
    pub timer_c_at: Option<Instant>,
    /// The early dialogs of a forked INVITE besides the one the legs hold.
    pub forks: Forks,
}

impl Early {
    pub fn cancelled(&self) -> bool {
        self.cancel != Cancel::None
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

impl Phase {
    pub fn early(&self) -> Option<&Early> {
        match self {
            Phase::Early(e) => Some(e),
            _ => None,
        }
    }

    pub fn early_mut(&mut self) -> Option<&mut Early> {
        match self {
            Phase::Early(e) => Some(e),
            _ => None,
        }
    }

    pub fn answered(&self) -> Option<&Answered> {
        match self {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => Some(a),
            _ => None,
        }
    }

    pub fn answered_mut(&mut self) -> Option<&mut Answered> {
        match self {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => Some(a),
            _ => None,
        }
    }

    pub fn last_ack(&self) -> Option<&SentAck> {
        match self {
            Phase::Confirmed(a) | Phase::Terminating { answered: a, .. } => a.last_ack.as_ref(),
            Phase::Ended { last_ack } => last_ack.as_ref(),
            Phase::Early(_) => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self, Phase::Ended { .. })
    }

    /// A BYE crossed (or the border hangs up): a confirmed call is terminating, and the first
    /// to end it is remembered. A BYE on an early dialog leaves the call early: its INVITE still
    /// gets its answer.
    pub fn ending(&mut self, by: EndedBy) {
        if let Phase::Confirmed(answered) = self {
            *self = Phase::Terminating {
                answered: answered.clone(),
                by,
            };
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    pub kind: Kind,
    pub phase: Phase,
    /// Leg 0 faces the party that sent the initial request, leg 1 the one it was routed to.
    /// During a forked INVITE they hold the early dialog selected last (see [`Forks`]).
    pub legs: [Leg; 2],
    /// Reliable provisional numbering between the legs' dialogs (per early dialog while forked).
    pub rseq: Rseqs,
    /// The initial request as received on leg 0, and its server transaction (`None` for a call
    /// restored from a snapshot: that transaction lived in another engine).
    pub initial: Message,
    pub initial_stx: Option<ServerTxId>,
    pub last_activity: Instant,
    /// When the initial request arrived, for setup time and duration.
    pub created: Instant,
    /// Charging identifier used when the originating side sent none we may keep.
    pub icid: String,
    /// The call's anchored streams.
    pub media: super::media::CallMedia,
    /// REFERs relayed in this session: (the leg it was sent on, its CSeq there, its CSeq on the
    /// leg it came from). The implicit subscription's NOTIFYs name the REFER by that CSeq
    /// (`Event: refer;id=N`, RFC 3515 §2.4.6), which differs per leg.
    pub refers: Vec<(usize, u32, u32)>,
}
