//! One leg: a SIP dialog as the border's UA holds it toward one party (RFC 3261 §12): its
//! identifiers, CSeq on each side, remote target and route set, and the two rules every
//! in-dialog request follows (what a received one changes, what a sent one carries).

use super::Party;
use crate::sip::{Headers, Message, Method, Uri};
use crate::transaction::Flow;

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
