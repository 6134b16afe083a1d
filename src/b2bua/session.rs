//! One session: the two legs (dialogs) of a call, subscription or standalone transaction, and
//! what is pending between them.

use std::time::Instant;

use super::Party;
use crate::sip::{Headers, Message, Method, Uri};
use crate::transaction::{ClientTxId, Flow, ServerTxId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Invite,
    /// SUBSCRIBE or REFER: a dialog that lives until its NOTIFY says terminated.
    Subscribe,
    /// MESSAGE, OPTIONS, NOTIFY, PUBLISH outside a dialog: one transaction relayed.
    Standalone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Early,
    Confirmed,
    Terminating,
    Ended,
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

impl Leg {
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

/// RSeq of a reliable provisional on one leg ↔ the one received on the other.
#[derive(Debug, Clone)]
pub(super) struct RseqMap {
    pub side: usize,
    pub ours: u32,
    pub theirs: u32,
    pub their_cseq: u32,
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
}

/// A client transaction started on `side` of `session`.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub session: u64,
    pub side: usize,
    pub kind: PendingKind,
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    pub kind: Kind,
    pub state: State,
    /// Leg 0 faces the party that sent the initial request, leg 1 the one it was routed to.
    pub legs: [Leg; 2],
    /// The initial request as received on leg 0.
    pub initial: Message,
    pub invite_stx: Option<ServerTxId>,
    pub invite_ctx: Option<ClientTxId>,
    /// The initial request as sent on leg 1 (CANCEL is built from it).
    pub invite_b: Option<Message>,
    /// Further targets of the route, tried in order when the current one fails (RFC 3263 §4.3).
    pub alternates: std::collections::VecDeque<Flow>,
    pub got_provisional: bool,
    pub cancel_pending: bool,
    pub cancelled: bool,
    pub awaiting_ack: Option<AwaitAck>,
    /// The last ACK sent for a 2xx, re-sent when that 2xx is retransmitted.
    pub last_ack: Option<(ClientTxId, Message, Flow)>,
    pub rseq: Vec<RseqMap>,
    pub next_rseq: [u32; 2],
    pub timer_c_at: Option<Instant>,
    pub last_activity: Instant,
    /// When the initial request arrived, for setup time and duration.
    pub created: Instant,
    pub answered_at: Option<Instant>,
    /// Who sent the BYE (or the border's reason), once known.
    pub ended_by: Option<super::EndedBy>,
    /// Charging identifier used when the originating side sent none we may keep.
    pub icid: String,
    /// The call's anchored streams.
    pub media: super::media::CallMedia,
}
