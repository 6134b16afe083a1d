//! One session: the two legs (dialogs) the border's UAs hold for one exchange, and what the
//! exchange is ([`Usage`], after RFC 5057's dialog usages): a call ([`super::call`]), a
//! subscription ([`super::subscription`]) or a standalone transaction. Each usage is a type of
//! its own whose state enum owns what only that state needs, so states that cannot happen (a
//! cancelled call that is also confirmed, an ACK awaited on a subscription, media on a MESSAGE)
//! cannot be written down either. What the legs share (Call-ID, tags, CSeq, route sets, the
//! initial request, the REFER id map) is here; the transitions live on the usage types, and
//! `Border` dispatches to them and carries out what they decide.

use std::collections::VecDeque;
use std::time::Instant;

use super::build::Sealed;
use super::call::{Answered, AwaitAck, Call, Early, SentAck};
pub(super) use super::leg::Leg;
use super::subscription::{Refers, Standalone, Subscription};
use crate::sip::Message;
use crate::transaction::{ClientTxId, Flow, ServerTxId};

/// What a new request creates, known before the session exists (while its route is looked up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Invite,
    /// SUBSCRIBE or REFER: a dialog that lives until its NOTIFY says terminated.
    Subscribe,
    /// MESSAGE, OPTIONS, NOTIFY, PUBLISH outside a dialog: one transaction relayed.
    Standalone,
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

/// The initial request is out on leg B and has no final answer yet: what every usage needs
/// while it is being set up (and to move to the next target, RFC 3263 §4.3).
#[derive(Debug, Clone, Default)]
pub(super) struct Setup {
    /// The client transaction of the request on leg B (`None` only while it is being built).
    pub ctx: Option<ClientTxId>,
    /// The request as sent on leg B: CANCEL and the next target's retry are built from it.
    pub request: Option<Sealed>,
    /// Further targets of the route, tried in order when the current one fails.
    pub alternates: VecDeque<Flow>,
    /// Any provisional arrived from the current target: a CANCEL may follow.
    pub got_provisional: bool,
}

impl Setup {
    pub fn new(alternates: VecDeque<Flow>) -> Setup {
        Setup {
            alternates,
            ..Setup::default()
        }
    }
}

/// What the session's dialogs are used for.
#[derive(Debug, Clone)]
pub(super) enum Usage {
    Call(Box<Call>),
    Subscription(Subscription),
    Standalone(Standalone),
}

/// What a final 2xx to the initial request did to the usage (see [`Usage::confirm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirmed {
    /// A call is answered: its ACK is awaited, its media gates open.
    Call,
    /// A subscription is active until a NOTIFY ends it.
    Subscription,
    /// A standalone transaction is answered: the session is to be ended.
    Done,
}

impl Usage {
    pub fn new(kind: Kind, setup: Setup, timer_c_at: Option<Instant>) -> Usage {
        match kind {
            Kind::Invite => Usage::Call(Box::new(Call::new(setup, timer_c_at))),
            Kind::Subscribe => Usage::Subscription(Subscription::new(setup)),
            Kind::Standalone => Usage::Standalone(Standalone::new(setup)),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Usage::Call(_) => Kind::Invite,
            Usage::Subscription(_) => Kind::Subscribe,
            Usage::Standalone(_) => Kind::Standalone,
        }
    }

    pub fn call(&self) -> Option<&Call> {
        match self {
            Usage::Call(c) => Some(c),
            _ => None,
        }
    }

    pub fn call_mut(&mut self) -> Option<&mut Call> {
        match self {
            Usage::Call(c) => Some(c),
            _ => None,
        }
    }

    /// The initial request's state on leg B, while no final answer has decided the session.
    pub fn setup(&self) -> Option<&Setup> {
        match self {
            Usage::Call(c) => c.early().map(|e| &e.setup),
            Usage::Subscription(s) => s.setup(),
            Usage::Standalone(s) => s.setup(),
        }
    }

    pub fn setup_mut(&mut self) -> Option<&mut Setup> {
        match self {
            Usage::Call(c) => c.early_mut().map(|e| &mut e.setup),
            Usage::Subscription(s) => s.setup_mut(),
            Usage::Standalone(s) => s.setup_mut(),
        }
    }

    /// The early state of a call (CANCEL, Timer C, forks); `None` for other usages.
    pub fn early(&self) -> Option<&Early> {
        self.call().and_then(Call::early)
    }

    pub fn early_mut(&mut self) -> Option<&mut Early> {
        self.call_mut().and_then(Call::early_mut)
    }

    /// The answered state of a call (awaited ACK, last ACK sent).
    pub fn answered(&self) -> Option<&Answered> {
        self.call().and_then(Call::answered)
    }

    pub fn answered_mut(&mut self) -> Option<&mut Answered> {
        self.call_mut().and_then(Call::answered_mut)
    }

    pub fn last_ack(&self) -> Option<&SentAck> {
        self.call().and_then(Call::last_ack)
    }

    /// The caller cancelled the initial INVITE.
    pub fn cancelled(&self) -> bool {
        self.early().is_some_and(Early::cancelled)
    }

    pub fn is_ended(&self) -> bool {
        match self {
            Usage::Call(c) => c.is_ended(),
            Usage::Subscription(s) => s.is_ended(),
            Usage::Standalone(s) => s.is_ended(),
        }
    }

    /// A 2xx answered the initial request (see [`Confirmed`]). `await_ack` is what a call
    /// waits for from the caller.
    pub fn confirm(&mut self, now: Instant, await_ack: AwaitAck) -> Confirmed {
        match self {
            Usage::Call(c) => {
                c.answer(now, await_ack);
                Confirmed::Call
            }
            Usage::Subscription(s) => {
                s.activate(now);
                Confirmed::Subscription
            }
            // Ended by the caller of this (`Border::end`), which frees what it held.
            Usage::Standalone(_) => Confirmed::Done,
        }
    }
}

/// One exchange across the border: its two legs and what they are used for.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// Leg 0 faces the party that sent the initial request, leg 1 the one it was routed to.
    /// During a forked INVITE they hold the early dialog selected last (see `fork.rs`).
    pub legs: [Leg; 2],
    pub usage: Usage,
    /// The initial request as received on leg 0, and its server transaction (`None` for a call
    /// restored from a snapshot: that transaction lived in another engine).
    pub initial: Message,
    pub initial_stx: Option<ServerTxId>,
    pub last_activity: Instant,
    /// When the initial request arrived, for setup time and duration.
    pub created: Instant,
    /// Charging identifier used when the originating side sent none we may keep.
    pub icid: String,
    /// REFERs relayed in this session, each one's CSeq per leg (`Event: refer;id=`).
    pub refers: Refers,
}

impl Session {
    pub fn kind(&self) -> Kind {
        self.usage.kind()
    }

    /// The call's anchored streams; `None` for usages that carry no media.
    pub fn media(&self) -> Option<&super::media::CallMedia> {
        self.usage.call().map(|c| &c.media)
    }

    pub fn media_mut(&mut self) -> Option<&mut super::media::CallMedia> {
        self.usage.call_mut().map(|c| &mut c.media)
    }
}
